//! The `warpnet` binary as the tests run it, and its one-line refusals.
#![allow(dead_code)]

use std::process::{Command, Output};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_warpnet");

/// Runs `warpnet` with `args` and waits for it.
pub fn warpnet(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("warpnet runs")
}

/// Asserts exit code 2 and exactly one stderr line that starts with "error:" and mentions `needle`.
pub fn assert_rejected(args: &[&str], needle: &str) {
    let out = warpnet(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {stderr:?}");
    assert!(lines[0].starts_with("error:"), "{args:?}: {stderr:?}");
    assert!(lines[0].contains(needle), "{args:?}: {stderr:?} should mention {needle}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr:?}");
}
