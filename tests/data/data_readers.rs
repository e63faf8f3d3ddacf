//! Readers for CIFAR-10/100, IDX (Fashion-MNIST), ImageNet32 npz and the embedded subset: files written
//! here in the exact on-disk formats must read back identically, and hostile files must give one-line
//! input errors naming the file, never a panic.

use crate::formats;

use formats::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use warpnet::data::{cifar, idx, IMAGE_BYTES};

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
