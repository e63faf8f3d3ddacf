//! `warpnet::data::imagenet32::load_npz` on one npz (zip) archive, written to a temporary file first.
//!
//! Input: one mode byte, then
//! - mode 0 or 1 (mod 4): the archive's bytes as they are (zip structure, CRCs, deflate streams);
//! - mode 2 / 3: two `.npy` files (split as in `warpnet_fuzz::split_two`) that the target packs as
//!   `data.npy` and `labels.npy` into a valid archive, stored (2) or deflated (3), so that the fuzzer
//!   reaches the array checks without having to get zip CRCs right.
#![no_main]

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use warpnet::data::imagenet32::{load_npz, IMAGENET_CLASSES};
use warpnet::data::IMAGE_BYTES;
use warpnet_fuzz::{check, split_two};
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

/// One scratch file per fuzzing process, removed after each input.
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| std::env::temp_dir().join(format!("warpnet-fuzz-npz-{}.npz", std::process::id())))
}

/// A valid zip archive holding `data.npy` and `labels.npy` with the given contents.
fn archive(data: &[u8], labels: &[u8], method: CompressionMethod) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in [("data.npy", data), ("labels.npy", labels)] {
        zip.start_file(name, options).expect("zip writer");
        zip.write_all(bytes).expect("zip writer");
    }
    zip.finish().expect("zip writer").into_inner()
}

fuzz_target!(|input: &[u8]| {
    let Some((&mode, rest)) = input.split_first() else {
        return;
    };
    let bytes = match mode % 4 {
        0 | 1 => rest.to_vec(),
        2 => {
            let (data, labels) = split_two(rest);
            archive(data, labels, CompressionMethod::Stored)
        }
        _ => {
            let (data, labels) = split_two(rest);
            archive(data, labels, CompressionMethod::Deflated)
        }
    };
    std::fs::write(scratch(), &bytes).expect("cannot write the scratch npz file");
    let result = load_npz(scratch());
    let _ = std::fs::remove_file(scratch());
    if let Some(set) = check(result, "npz") {
        assert!(!set.is_empty(), "npz: Ok with no images");
        assert_eq!(set.classes, IMAGENET_CLASSES);
        assert_eq!(set.images.len(), set.len() * IMAGE_BYTES, "npz: images and labels disagree");
        assert!(set.labels.iter().all(|&label| usize::from(label) < set.classes), "npz: label out of range");
    }
});
