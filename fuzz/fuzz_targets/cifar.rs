//! `warpnet::data::cifar::parse_cifar10` and `parse_cifar100` on one batch file.
//!
//! Input: one byte choosing the reader (even: CIFAR-10, odd: CIFAR-100), then the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warpnet::data::cifar::{parse_cifar10, parse_cifar100, CIFAR100_CLASSES, CIFAR10_CLASSES};
use warpnet::data::IMAGE_BYTES;
use warpnet_fuzz::check;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, file)) = data.split_first() else {
        return;
    };
    let (result, classes) = if selector % 2 == 0 {
        (parse_cifar10(file, "fuzz/data_batch_1.bin"), CIFAR10_CLASSES)
    } else {
        (parse_cifar100(file, "fuzz/train.bin"), CIFAR100_CLASSES)
    };
    if let Some(set) = check(result, "cifar") {
        assert!(!set.is_empty(), "cifar: Ok with no images");
        assert_eq!(set.classes, classes);
        assert_eq!(set.images.len(), set.len() * IMAGE_BYTES, "cifar: images and labels disagree");
        assert!(set.labels.iter().all(|&label| usize::from(label) < classes), "cifar: label out of range");
    }
});
