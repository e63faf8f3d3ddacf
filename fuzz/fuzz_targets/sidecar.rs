//! `warpnet::train::checkpoint::parse_sidecar` on the JSON sidecar of a checkpoint.
//!
//! Input: the sidecar's text (inputs that are not UTF-8 are skipped: the caller reads the file with
//! `read_to_string`, which refuses them before the parser sees them). What `parse_sidecar` accepts must
//! satisfy the checks it promises: format version, a configuration that validates, class names matching
//! the class count, a position that agrees with its progress, finite non-negative sums.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use warpnet::train::checkpoint::{parse_sidecar, CHECKPOINT_FORMAT};
use warpnet_fuzz::check;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let result = parse_sidecar(text, Path::new("fuzz/checkpoints/step-00000001.json"));
    if let Some(sidecar) = check(result, "sidecar") {
        assert_eq!(sidecar.format, CHECKPOINT_FORMAT);
        assert!(sidecar.config.validate().is_ok(), "sidecar: Ok with a configuration that does not validate");
        assert_eq!(sidecar.class_names.len(), sidecar.classes, "sidecar: class names disagree");
        assert!(sidecar.classes >= 2);
        let (position, progress) = (sidecar.position, sidecar.progress);
        assert!(position.batch <= position.step, "sidecar: batch beyond step");
        assert_eq!(position.batch == 0, progress.seen == 0, "sidecar: position disagrees with progress");
        for sum in [progress.loss_sum, progress.seconds, sidecar.train_seconds] {
            assert!(sum.is_finite() && sum >= 0.0, "sidecar: Ok with sum {sum}");
        }
    }
});
