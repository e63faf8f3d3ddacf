//! Writers of the on-disk data formats, shared by the reader tests (each test binary uses part of them).

#![allow(dead_code)]

use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use std::io::Write;
use std::path::Path;
use warpnet::data::{Dataset, IMAGE_BYTES};
use warpnet::error::is_input_error;
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

pub const IDX_IMAGES_MAGIC: u32 = 0x0803;
pub const IDX_LABELS_MAGIC: u32 = 0x0801;
/// Pixels of one 28x28 IDX image.
pub const GREY: usize = 28 * 28;

// ---- writers for each format --------------------------------------------------------------------------

pub fn random_bytes(rng: &mut ChaCha8Rng, n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rng.fill_bytes(&mut bytes);
    bytes
}

pub fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

/// CIFAR records: each header's label bytes followed by the next image.
pub fn records(headers: &[Vec<u8>], images: &[u8]) -> Vec<u8> {
    let pairs = headers.iter().zip(images.chunks_exact(IMAGE_BYTES));
    pairs.flat_map(|(h, im)| h.iter().chain(im).copied()).collect()
}

/// Big-endian header words followed by the body.
pub fn idx(header: &[u32], body: &[u8]) -> Vec<u8> {
    let words = header.iter().flat_map(|w| w.to_be_bytes());
    words.chain(body.iter().copied()).collect()
}

pub fn idx_images(count: u32, side: u32, pixels: &[u8]) -> Vec<u8> {
    idx(&[IDX_IMAGES_MAGIC, count, side, side], pixels)
}

pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    idx(&[IDX_LABELS_MAGIC, labels.len() as u32], labels)
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A `.npy` file as numpy writes it: magic, version, length, dict padded with spaces to a multiple of 64.
pub fn npy_file(descr: &str, shape: &[usize], data: &[u8], major: u8) -> Vec<u8> {
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
pub fn u1_images(n: usize) -> Vec<u8> {
    npy_file("|u1", &[n, IMAGE_BYTES], &vec![1; n * IMAGE_BYTES], 1)
}

/// `labels.npy` as int64.
pub fn i8_labels(labels: &[i64]) -> Vec<u8> {
    let bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    npy_file("<i8", &[labels.len()], &bytes, 1)
}

pub fn write_npz(path: &Path, entries: &[(&str, Vec<u8>)], method: CompressionMethod) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in entries {
        zip.start_file(*name, options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// An npz with `data` (|u1, (N, 3072)) and `labels` (<i8, (N,)).
pub fn imagenet_npz(path: &Path, images: &[u8], labels: &[i64], method: CompressionMethod) {
    let data = npy_file("|u1", &[labels.len(), IMAGE_BYTES], images, 1);
    write_npz(path, &[("data.npy", data), ("labels.npy", i8_labels(labels))], method);
}

/// Checks an error is a one-line input error containing every one of `words`, the first being the file.
pub fn assert_input_error<T: std::fmt::Debug>(result: anyhow::Result<T>, words: &[&str]) {
    let err = result.expect_err("expected an error");
    let message = format!("{err:#}");
    assert!(is_input_error(&err), "not an input error: {message}");
    assert!(!message.contains('\n'), "more than one line: {message}");
    for word in words {
        assert!(message.contains(word), "'{word}' not in: {message}");
    }
}

pub fn check_same(set: &Dataset, images: &[u8], labels: &[u16], classes: usize) {
    assert_eq!(set.labels, labels);
    assert!(set.images == images, "pixels differ");
    assert_eq!(set.classes, classes);
}

/// A CIFAR-10 directory: `per_batch` records in each training file, 3 in the test file.
pub fn cifar10_dir(dir: &Path, rng: &mut ChaCha8Rng, per_batch: usize) -> (Vec<u8>, Vec<u16>) {
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
