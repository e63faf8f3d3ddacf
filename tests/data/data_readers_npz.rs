//! ImageNet32 npz, the embedded subset, and random bytes through every reader: files written here in
//! the exact on-disk formats must read back identically; hostile ones give one-line input errors.

use crate::formats;

use formats::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;
use warpnet::data::{cifar, embedded, idx, imagenet32, npy, IMAGE_BYTES};
use warpnet::error::is_input_error;
use zip::CompressionMethod::{Deflated, Stored};

// ---- ImageNet32 ---------------------------------------------------------------------------------------

#[test]
fn imagenet32_reads_stored_and_deflated_npz() {
    let dir = tempfile::tempdir().unwrap();
    let images = random_bytes(&mut ChaCha8Rng::seed_from_u64(5), 3 * IMAGE_BYTES);
    let path = dir.path().join("a.npz");
    imagenet_npz(&path, &images, &[1, 1000, 500], Stored);
    check_same(&imagenet32::load_npz(&path).unwrap(), &images, &[0, 999, 499], 1000);

    let labels_i4: Vec<u8> = [7i32, 8, 9].iter().flat_map(|l| l.to_le_bytes()).collect();
    let entries = [
        ("labels.npy", npy_file("<i4", &[3], &labels_i4, 2)),
        ("data.npy", npy_file("|u1", &[3, IMAGE_BYTES], &images, 3)),
        ("mean.npy", npy_file("<f8", &[1], &[0; 8], 1)),
    ];
    write_npz(&path, &entries, Deflated);
    check_same(&imagenet32::load_npz(&path).unwrap(), &images, &[6, 7, 8], 1000);

    let data = npy_file("|u1", &[3, IMAGE_BYTES], &images, 1);
    let little = [3u8, 0, 4, 0, 5, 0];
    for (descr, labels) in [("|u1", &[3u8, 4, 5][..]), ("<u2", &little), ("<i2", &little)] {
        let entries = [("data.npy", data.clone()), ("labels.npy", npy_file(descr, &[3], labels, 1))];
        write_npz(&path, &entries, Stored);
        check_same(&imagenet32::load_npz(&path).unwrap(), &images, &[2, 3, 4], 1000);
    }
}

#[test]
fn imagenet32_reads_a_directory_with_class_map() {
    let dir = tempfile::tempdir().unwrap();
    let image = vec![9u8; IMAGE_BYTES];
    for i in 1..=10 {
        let path = dir.path().join(format!("train_data_batch_{i}.npz"));
        imagenet_npz(&path, &image, &[i], Deflated);
    }
    assert_input_error(imagenet32::load(dir.path()), &["missing file val_data.npz"]);
    imagenet_npz(&dir.path().join("val_data.npz"), &image, &[42], Stored);
    let splits = imagenet32::load(dir.path()).unwrap();
    assert_eq!(splits.train.labels, (0..10).collect::<Vec<u16>>());
    assert_eq!(splits.test.labels, [41]);
    assert_eq!(splits.class_names[999], "class 999");

    let map = dir.path().join("map_clsloc.txt");
    let lines: String = (1..=1000).rev().map(|i| format!("n{i:08} {i} name_{i}\n")).collect();
    write(&map, lines.as_bytes());
    let names = imagenet32::load(dir.path()).unwrap().class_names;
    assert_eq!([&names[0], &names[999]], ["name_1", "name_1000"]);
    write(&map, b"n1 1 a\nn2 1 b\n");
    assert_input_error(imagenet32::load(dir.path()), &["map_clsloc.txt", "line 2", "twice"]);
}

/// Writes an npz with the entries given (a missing one left out) and checks the error.
fn assert_npz_error(path: &Path, data: Option<Vec<u8>>, labels: Option<Vec<u8>>, words: &[&str]) {
    let entries = [("data.npy", data), ("labels.npy", labels)];
    let entries: Vec<_> = entries.into_iter().filter_map(|(n, e)| Some((n, e?))).collect();
    write_npz(path, &entries, Deflated);
    let words: Vec<&str> = ["val_data.npz"].into_iter().chain(words.iter().copied()).collect();
    assert_input_error(imagenet32::load_npz(path), &words);
}

#[test]
fn imagenet32_rejects_hostile_npz() {
    let dir = tempfile::tempdir().unwrap();
    let path = &dir.path().join("val_data.npz");
    let (images, labels) = (Some(u1_images(2)), Some(i8_labels(&[1, 2])));
    assert_npz_error(path, None, labels.clone(), &["no 'data' array"]);
    assert_npz_error(path, images.clone(), None, &["no 'labels' array"]);
    let floats = Some(npy_file("<f4", &[5, 100], &[0; 2000], 1));
    assert_npz_error(path, floats, labels.clone(), &["'data' has dtype '<f4', expected '|u1'"]);
    let flat = Some(npy_file("|u1", &[5, 100], &[0; 500], 1));
    let shape = "'data' has shape (5, 100), expected (N, 3072)";
    assert_npz_error(path, flat, labels.clone(), &[shape]);
    let short = Some(npy_file("|u1", &[3, IMAGE_BYTES], &[0; 2 * IMAGE_BYTES], 1));
    assert_npz_error(path, short, labels.clone(), &["'data' holds 6144 data bytes", "9216"]);
    let raw = Some(vec![0; 2 * IMAGE_BYTES]);
    assert_npz_error(path, raw, labels.clone(), &["'data' is not a .npy array"]);
    let (one, three) = (Some(u1_images(1)), Some(i8_labels(&[1, 2, 3])));
    assert_npz_error(path, one, labels.clone(), &["2 labels but 1 images"]);
    assert_npz_error(path, images.clone(), three, &["3 labels but 2 images"]);
    let zero = Some(i8_labels(&[0, 5]));
    assert_npz_error(path, images.clone(), zero, &["label 0 is 0, outside 1..=1000"]);
    let high = Some(npy_file("<i4", &[2], &[1, 0, 0, 0, 0xe9, 3, 0, 0], 1));
    assert_npz_error(path, images.clone(), high, &["label 1 is 1001"]);
    let floats = Some(npy_file("<f8", &[2], &[0; 16], 1));
    assert_npz_error(path, images.clone(), floats, &["'labels' has dtype '<f8'"]);
    let mut fortran = u1_images(2);
    let at = fortran.windows(5).position(|w| w == b"False").unwrap();
    fortran[at..at + 5].copy_from_slice(b"True ");
    assert_npz_error(path, Some(fortran), labels, &["Fortran order"]);
    write(path, b"this is not a zip archive");
    assert_input_error(imagenet32::load_npz(path), &["val_data.npz", "zip"]);
    write(path, b"");
    assert_input_error(imagenet32::load_npz(path), &["val_data.npz", "zip"]);
}

// ---- embedded subset ----------------------------------------------------------------------------------

#[test]
fn embedded_subset_is_balanced_real_data() {
    let splits = embedded::load_fashion_mnist_subset().unwrap();
    assert_eq!(splits.class_names.len(), 10);
    for (set, per_class) in [(&splits.train, 600), (&splits.test, 100)] {
        assert_eq!((set.len(), set.images.len()), (per_class * 10, per_class * 10 * IMAGE_BYTES));
        let mut counts = [0usize; 10];
        set.labels.iter().for_each(|&l| counts[l as usize] += 1);
        assert_eq!(counts, [per_class; 10]);
        assert!(set.images.iter().any(|&p| p != 0));
        assert_eq!(set.image(0)[..64], [0; 64], "the 2-pixel border is zero");
    }
}

// ---- random input never panics ------------------------------------------------------------------------

/// Random bytes, often shaped like the real format: a valid `good` file kept, cut or mutated.
fn hostile_bytes(rng: &mut ChaCha8Rng, good: &[u8]) -> Vec<u8> {
    let mut bytes = match rng.gen_range(0..4) {
        0 => {
            let n = rng.gen_range(0..64);
            random_bytes(rng, n)
        }
        1 => good[..rng.gen_range(0..=good.len())].to_vec(),
        _ => good.to_vec(),
    };
    for _ in 0..rng.gen_range(0..4) {
        if !bytes.is_empty() {
            let at = rng.gen_range(0..bytes.len());
            bytes[at] = rng.gen();
        }
    }
    bytes
}

/// Tallies (ok, error) outcomes, checking that every error is a one-line input error.
fn tally<T>(outcomes: &mut [usize; 2], result: anyhow::Result<T>) {
    if let Err(err) = &result {
        assert!(is_input_error(err), "not an input error: {err:#}");
        assert!(!format!("{err:#}").contains('\n'), "more than one line: {err:#}");
    }
    outcomes[usize::from(result.is_err())] += 1;
}

#[test]
fn random_input_gives_ok_or_input_error() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let (images, labels) = (idx_images(2, 28, &[3; 2 * GREY]), idx_labels(&[1, 2]));
    let mut idx_outcomes = [0; 2];
    for _ in 0..200 {
        let (im, lb) = (hostile_bytes(&mut rng, &images), hostile_bytes(&mut rng, &labels));
        tally(&mut idx_outcomes, idx::parse_idx_pair(&im, &lb, "im", "lb"));
        tally(&mut idx_outcomes, idx::parse_idx_pair(&gzip(&im), &gzip(&lb), "im", "lb"));
    }

    let small_arrays = [npy_file("<i2", &[2, 3], &[1; 12], 1), npy_file("|u1", &[4], &[1; 4], 2)];
    for case in 0..200 {
        let bytes = hostile_bytes(&mut rng, &small_arrays[case % 2]);
        match npy::parse(bytes) {
            Ok(array) => assert!(array.data.len() <= 12),
            Err(err) => assert!(!err.to_string().contains('\n'), "more than one line: {err}"),
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let cifar10 = records(&[vec![3], vec![9]], &[8; 2 * IMAGE_BYTES]);
    let cifar100 = records(&[vec![5, 50], vec![19, 99]], &[8; 2 * IMAGE_BYTES]);
    let npz_path = dir.path().join("good.npz");
    imagenet_npz(&npz_path, &[2; 2 * IMAGE_BYTES], &[1, 1000], Deflated);
    let npz = std::fs::read(&npz_path).unwrap();
    let cifar10_files =
        ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"];
    let mut outcomes = [0; 2];
    for case in 0..200 {
        for name in ["train.bin", "test.bin"] {
            write(&dir.path().join(name), &hostile_bytes(&mut rng, &cifar100));
        }
        tally(&mut outcomes, cifar::load_cifar100(dir.path()));
        for name in cifar10_files {
            write(&dir.path().join(format!("{name}.bin")), &hostile_bytes(&mut rng, &cifar10));
        }
        tally(&mut outcomes, cifar::load_cifar10(dir.path()));
        let path = dir.path().join(format!("case{case}.npz"));
        write(&path, &hostile_bytes(&mut rng, &npz));
        tally(&mut outcomes, imagenet32::load_npz(&path));
        let data = hostile_bytes(&mut rng, &u1_images(1));
        let labels = hostile_bytes(&mut rng, &i8_labels(&[1]));
        write_npz(&path, &[("data.npy", data), ("labels.npy", labels)], Stored);
        tally(&mut outcomes, imagenet32::load_npz(&path));
    }
    assert!(idx_outcomes.iter().chain(&outcomes).all(|&n| n > 0), "{idx_outcomes:?} {outcomes:?}");
}

/// Fuzzing finding 1 (fuzz/README.md): a dtype holding a line break was quoted raw, so the command line
/// printed half a message. The dtype is now escaped: the npy phrase and the npz reader's input error
/// are each one line that shows the break as `\n`.
#[test]
fn a_dtype_with_a_line_break_is_a_one_line_error() {
    let file = npy_file("<i8\n", &[], &[], 1);
    let phrase = npy::parse(file.clone()).expect_err("an unsupported dtype").to_string();
    assert!(!phrase.contains('\n') && !phrase.contains('\r'), "more than one line: {phrase:?}");
    assert!(phrase.contains("unsupported dtype '<i8\\n'"), "{phrase:?}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("val_data.npz");
    assert_npz_error(&path, Some(file), Some(i8_labels(&[1])), &["'data' has unsupported dtype '<i8\\n'"]);
}
