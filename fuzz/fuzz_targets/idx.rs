//! `warpnet::data::idx::parse_idx_pair` on an images file and a labels file, each plain or gzip.
//!
//! Input: two little-endian bytes giving the length of the images file, the images file, then the labels
//! file (see `warpnet_fuzz::split_two`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use warpnet::data::idx::{parse_idx_pair, FASHION_CLASSES};
use warpnet::data::IMAGE_BYTES;
use warpnet_fuzz::{check, split_two};

fuzz_target!(|data: &[u8]| {
    let (images, labels) = split_two(data);
    let result =
        parse_idx_pair(images, labels, "fuzz/train-images-idx3-ubyte", "fuzz/train-labels-idx1-ubyte");
    if let Some(set) = check(result, "idx") {
        assert!(!set.is_empty(), "idx: Ok with no images");
        assert_eq!(set.classes, FASHION_CLASSES);
        assert_eq!(set.images.len(), set.len() * IMAGE_BYTES, "idx: images and labels disagree");
        assert!(set.labels.iter().all(|&label| usize::from(label) < set.classes), "idx: label out of range");
    }
});
