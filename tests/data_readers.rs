//! Readers for CIFAR-10/100, IDX (Fashion-MNIST), ImageNet32 npz and the embedded subset: files written
//! here in the exact on-disk formats must read back identically, and hostile files must give one-line
//! input errors naming the file, never a panic.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::Path;
use warpnet::data::{cifar, embedded, idx, imagenet32, npy, Dataset, IMAGE_BYTES};
use warpnet::error::is_input_error;
use zip::write::SimpleFileOptions;
use zip::CompressionMethod::{self, Deflated, Stored};

const IDX_IMAGES_MAGIC: u32 = 0x0803;
const IDX_LABELS_MAGIC: u32 = 0x0801;
/// Pixels of one 28x28 IDX image.
const GREY: usize = 28 * 28;

// ---- writers for each format --------------------------------------------------------------------------

fn random_bytes(rng: &mut ChaCha8Rng, n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rng.fill_bytes(&mut bytes);
    bytes
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

/// CIFAR records: each header's label bytes followed by the next image.
fn records(headers: &[Vec<u8>], images: &[u8]) -> Vec<u8> {
    let pairs = headers.iter().zip(images.chunks_exact(IMAGE_BYTES));
    pairs.flat_map(|(h, im)| h.iter().chain(im).copied()).collect()
}

/// Big-endian header words followed by the body.
fn idx(header: &[u32], body: &[u8]) -> Vec<u8> {
    let words = header.iter().flat_map(|w| w.to_be_bytes());
    words.chain(body.iter().copied()).collect()
}

fn idx_images(count: u32, side: u32, pixels: &[u8]) -> Vec<u8> {
    idx(&[IDX_IMAGES_MAGIC, count, side, side], pixels)
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    idx(&[IDX_LABELS_MAGIC, labels.len() as u32], labels)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A `.npy` file as numpy writes it: magic, version, length, dict padded with spaces to a multiple of 64.
fn npy_file(descr: &str, shape: &[usize], data: &[u8], major: u8) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let comma = if dims.len() == 1 { "," } else { "" };
    let shape = format!("({}{comma})", dims.join(", "));
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let prefix = if major == 1 { 10 } else { 12 };
    while (prefix + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = b"\x93NUMPY".to_vec();
    out.extend([major, 0]);
    match major {
        1 => out.extend((dict.len() as u16).to_le_bytes()),
        _ => out.extend((dict.len() as u32).to_le_bytes()),
    }
    out.extend(dict.as_bytes());
    out.extend(data);
    out
}

/// `data.npy` of `n` images, all pixels 1.
fn u1_images(n: usize) -> Vec<u8> {
    npy_file("|u1", &[n, IMAGE_BYTES], &vec![1; n * IMAGE_BYTES], 1)
}

/// `labels.npy` as int64.
fn i8_labels(labels: &[i64]) -> Vec<u8> {
    let bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    npy_file("<i8", &[labels.len()], &bytes, 1)
}

fn write_npz(path: &Path, entries: &[(&str, Vec<u8>)], method: CompressionMethod) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// An npz with `data` (|u1, (N, 3072)) and `labels` (<i8, (N,)).
fn imagenet_npz(path: &Path, images: &[u8], labels: &[i64], method: CompressionMethod) {
    let data = npy_file("|u1", &[labels.len(), IMAGE_BYTES], images, 1);
    write_npz(path, &[("data.npy", data), ("labels.npy", i8_labels(labels))], method);
}

/// Checks an error is a one-line input error containing every one of `words`, the first being the file.
fn assert_input_error<T: std::fmt::Debug>(result: anyhow::Result<T>, words: &[&str]) {
    let err = result.expect_err("expected an error");
    let message = format!("{err:#}");
    assert!(is_input_error(&err), "not an input error: {message}");
    assert!(!message.contains('\n'), "more than one line: {message}");
    for word in words {
        assert!(message.contains(word), "'{word}' not in: {message}");
    }
}

fn check_same(set: &Dataset, images: &[u8], labels: &[u16], classes: usize) {
    assert_eq!(set.labels, labels);
    assert!(set.images == images, "pixels differ");
    assert_eq!(set.classes, classes);
}

/// A CIFAR-10 directory: `per_batch` records in each training file, 3 in the test file.
fn cifar10_dir(dir: &Path, rng: &mut ChaCha8Rng, per_batch: usize) -> (Vec<u8>, Vec<u16>) {
    let (mut all_images, mut all_labels) = (Vec::new(), Vec::new());
    let train = (1..=5).map(|i| (format!("data_batch_{i}.bin"), per_batch));
    for (name, n) in train.chain([("test_batch.bin".into(), 3)]) {
        let images = random_bytes(rng, n * IMAGE_BYTES);
        let labels: Vec<u8> = (0..n).map(|_| rng.gen_range(0..10)).collect();
        let headers: Vec<Vec<u8>> = labels.iter().map(|&l| vec![l]).collect();
        write(&dir.join(name), &records(&headers, &images));
        all_images.extend(images);
        all_labels.extend(labels.iter().map(|&l| u16::from(l)));
    }
    (all_images, all_labels)
}

// ---- CIFAR --------------------------------------------------------------------------------------------

#[test]
fn cifar10_reads_back_every_batch_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (images, labels) = cifar10_dir(dir.path(), &mut ChaCha8Rng::seed_from_u64(1), 2);
    let splits = cifar::load_cifar10(dir.path()).unwrap();
    let split_at = 10 * IMAGE_BYTES;
    check_same(&splits.train, &images[..split_at], &labels[..10], 10);
    check_same(&splits.test, &images[split_at..], &labels[10..], 10);
    assert_eq!((splits.class_names[0].as_str(), splits.class_names[9].as_str()), ("airplane", "truck"));

    let meta = dir.path().join("batches.meta.txt");
    write(&meta, b"n0\nn1\nn2\nn3\nn4\nn5\nn6\nn7\nn8\nn9\n\n");
    assert_eq!(cifar::load_cifar10(dir.path()).unwrap().class_names[7], "n7");
    write(&meta, b"a\nb\n");
    assert_input_error(cifar::load_cifar10(dir.path()), &["batches.meta.txt", "2 class names"]);
}

#[test]
fn cifar100_keeps_the_fine_label() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut expected = Vec::new();
    for (name, n) in [("train.bin", 4), ("test.bin", 2)] {
        let images = random_bytes(&mut rng, n * IMAGE_BYTES);
        let headers: Vec<Vec<u8>> = (0..n).map(|i| vec![(i * 5) as u8, 90 + i as u8]).collect();
        write(&dir.path().join(name), &records(&headers, &images));
        expected.push((images, (0..n).map(|i| 90 + i as u16).collect::<Vec<_>>()));
    }
    let splits = cifar::load_cifar100(dir.path()).unwrap();
    check_same(&splits.train, &expected[0].0, &expected[0].1, 100);
    check_same(&splits.test, &expected[1].0, &expected[1].1, 100);
    assert_eq!(splits.class_names.len(), 100);
    assert_eq!(&splits.class_names[..3], ["apple", "aquarium_fish", "baby"]);
    assert_eq!(splits.class_names[99], "worm");

    write(&dir.path().join("fine_label_names.txt"), b"apple\n");
    assert_input_error(cifar::load_cifar100(dir.path()), &["fine_label_names.txt", "expected 100"]);
}

#[test]
fn cifar_rejects_hostile_files() {
    let dir = tempfile::tempdir().unwrap();
    cifar10_dir(dir.path(), &mut ChaCha8Rng::seed_from_u64(3), 2);
    let load = || cifar::load_cifar10(dir.path());
    let batch3 = dir.path().join("data_batch_3.bin");
    let good = std::fs::read(&batch3).unwrap();
    write(&batch3, &good[..good.len() - 5]);
    assert_input_error(load(), &["data_batch_3.bin", "size 6141", "whole number of 3073-byte records"]);
    write(&batch3, b"");
    assert_input_error(load(), &["data_batch_3.bin", "empty"]);
    let mut bad_label = good.clone();
    bad_label[3073] = 10;
    write(&batch3, &bad_label);
    assert_input_error(load(), &["data_batch_3.bin", "record 1 has label 10, outside 0..10"]);
    write(&batch3, &good);
    std::fs::remove_file(dir.path().join("data_batch_4.bin")).unwrap();
    assert_input_error(load(), &["missing file data_batch_4.bin"]);
    let nowhere = dir.path().join("nope");
    assert_input_error(cifar::load_cifar10(&nowhere), &["nope", "no such directory"]);

    let image = vec![0u8; IMAGE_BYTES];
    let fine = records(&[vec![1, 100]], &image);
    assert_input_error(cifar::parse_cifar100(&fine, "train.bin"), &["train.bin", "fine label 100"]);
    let coarse = records(&[vec![20, 1]], &image);
    assert_input_error(cifar::parse_cifar100(&coarse, "test.bin"), &["test.bin", "coarse label 20"]);
    assert_input_error(cifar::parse_cifar100(&image, "x.bin"), &["x.bin", "3074-byte records"]);
}

// ---- IDX ----------------------------------------------------------------------------------------------

/// Pads one 28x28 grey image to (3, 32, 32) independently of the reader.
fn padded(grey: &[u8]) -> Vec<u8> {
    let pixel = |y: usize, x: usize| match (y.checked_sub(2), x.checked_sub(2)) {
        (Some(y), Some(x)) if y < 28 && x < 28 => grey[y * 28 + x],
        _ => 0,
    };
    let plane: Vec<u8> = (0..32 * 32).map(|i| pixel(i / 32, i % 32)).collect();
    plane.repeat(3)
}

#[test]
fn idx_pads_and_repeats_plain_and_gzip() {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let grey: Vec<u8> = (0..3 * GREY).map(|_| rng.gen_range(1..=255)).collect();
    let (images, labels) = (idx_images(3, 28, &grey), idx_labels(&[9, 0, 4]));
    let expected: Vec<u8> = grey.chunks(GREY).flat_map(padded).collect();
    for (im, lb) in [(images.clone(), labels.clone()), (gzip(&images), gzip(&labels))] {
        let set = idx::parse_idx_pair(&im, &lb, "im", "lb").unwrap();
        check_same(&set, &expected, &[9, 0, 4], 10);
        let (first, border) = (2 * 32 + 2, 2 * 32 + 1);
        assert_eq!([set.image(1)[first], set.image(1)[1024 + first]], [grey[GREY]; 2]);
        assert_eq!(set.image(1)[border], 0);
    }

    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("train-images-idx3-ubyte.gz"), &gzip(&images));
    write(&dir.path().join("train-labels-idx1-ubyte"), &labels);
    write(&dir.path().join("t10k-images-idx3-ubyte"), &images);
    let missing = "missing file t10k-labels-idx1-ubyte";
    assert_input_error(idx::load_fashion_mnist(dir.path()), &[missing]);
    write(&dir.path().join("t10k-labels-idx1-ubyte.gz"), &gzip(&labels));
    let splits = idx::load_fashion_mnist(dir.path()).unwrap();
    check_same(&splits.test, &expected, &[9, 0, 4], 10);
    assert_eq!(splits.class_names[9], "Ankle boot");
}

#[test]
fn idx_rejects_hostile_files() {
    let (images, labels) = (idx_images(2, 28, &[7; 2 * GREY]), idx_labels(&[1, 2]));
    let parse = |im: &[u8], lb: &[u8]| idx::parse_idx_pair(im, lb, "a/tr-images", "a/tr-labels");
    let (im, lb) = ("a/tr-images", "a/tr-labels");
    assert_input_error(parse(&images[..100], &labels), &[im, "truncated: 100 bytes", "1584"]);
    assert_input_error(parse(&gzip(&images[..100]), &labels), &[im, "truncated"]);
    assert_input_error(parse(&[], &labels), &[im, "empty"]);
    let mut zero_magic = images.clone();
    zero_magic[..4].fill(0);
    assert_input_error(parse(&zero_magic, &labels), &[im, "magic number 0x00000000", "0x00000803"]);
    assert_input_error(parse(&labels, &images), &[im, "wrong magic number 0x00000801"]);
    let big = idx_images(1, 32, &[0; 1024]);
    assert_input_error(parse(&big, &labels), &[im, "32x32", "expected 28x28"]);
    assert_input_error(parse(&images, &idx_labels(&[1, 10])), &[lb, "label 10, outside 0..10"]);
    assert_input_error(parse(&images, &idx_labels(&[1])), &[lb, "1 labels", "2 images"]);
    assert_input_error(parse(&images, &labels[..9]), &[lb, "truncated"]);
    let broken_gzip = gzip(&images)[..20].to_vec();
    assert_input_error(parse(&broken_gzip, &labels), &[im, "gzip"]);
    let trailing = [&images[..], &[0]].concat();
    assert_input_error(parse(&trailing, &labels), &[im, "1 trailing bytes"]);
}

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
