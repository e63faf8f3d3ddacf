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
    assert_rejected_naming(args, &[needle]);
}

/// Asserts exit code 2 and exactly one stderr line that starts with "error:" and mentions every one
/// of `needles`.
pub fn assert_rejected_naming(args: &[&str], needles: &[&str]) {
    let out = warpnet(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one line, got {stderr:?}");
    assert!(lines[0].starts_with("error:"), "{args:?}: {stderr:?}");
    for needle in needles {
        assert!(lines[0].contains(needle), "{args:?}: {stderr:?} should mention {needle}");
    }
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr:?}");
}

/// A corpus for `warpnet lm` written into `dir`: `bytes` bytes of words drawn by a fixed LCG from a
/// small vocabulary (made up here, so no corpus text lives in the repository), as `corpus.txt`.
pub fn tiny_corpus(dir: &std::path::Path, bytes: usize) -> std::path::PathBuf {
    const WORDS: [&str; 12] =
        ["warp", "layer", "term", "unit", "residual", "tangent", "the", "of", "and", "to", "x1", "sum"];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut text = String::with_capacity(bytes + 16);
    while text.len() < bytes {
        // Knuth's MMIX LCG; the high bits pick a word.
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        text.push_str(WORDS[(state >> 60) as usize % WORDS.len()]);
        text.push(if state >> 59 & 1 == 0 { ' ' } else { '\n' });
    }
    text.truncate(bytes);
    let path = dir.join("corpus.txt");
    std::fs::write(&path, text).unwrap();
    path
}

/// The shape and batch of the tests' language model: one block of width 16, context 16, batches of 4,
/// evaluated on 2 batches, fp32 on one thread.
pub const TINY_LM: [&str; 16] = [
    "--blocks",
    "1",
    "--width",
    "16",
    "--heads",
    "2",
    "--context",
    "16",
    "--batch",
    "4",
    "--eval-batches",
    "2",
    "--precision",
    "fp32",
    "--threads",
    "1",
];

/// `warpnet lm train` of [`TINY_LM`] on `corpus`: small enough for a test to train in well under a
/// second per hundred steps.
pub fn lm_args(
    corpus: &std::path::Path,
    steps: usize,
    eval_every: usize,
    out: &std::path::Path,
) -> Vec<String> {
    let data = format!("text:{}", corpus.display());
    let flags = ["lm", "train", "--data", &data, "--quiet"].into_iter().chain(TINY_LM);
    let mut args: Vec<String> = flags.map(|s| s.to_string()).collect();
    args.extend(["--steps".into(), steps.to_string(), "--eval-every".into(), eval_every.to_string()]);
    args.extend(["--out".into(), out.display().to_string()]);
    args
}

/// The first CPU's flags in /proc/cpuinfo (Linux).
pub fn cpu_flags() -> Vec<String> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").expect("/proc/cpuinfo (Linux)");
    let flags = cpuinfo.lines().find(|l| l.starts_with("flags")).unwrap_or_default();
    flags.split_whitespace().map(str::to_string).collect()
}

/// What `--precision auto` must have chosen on this x86-64 CPU for a run whose header is in
/// `stdout`, read independently of the binary's CPUID code: fp32 where /proc/cpuinfo lists neither
/// amx_bf16 nor avx512_bf16, bf16 with amx_bf16 (neither timed), and with avx512_bf16 alone what the
/// ratio of the timed kernel printed in the header says: bf16 from 1.1x (src/precision/hardware.rs).
pub fn auto_precision_expected(stdout: &str) -> &'static str {
    let flags = cpu_flags();
    let has = |flag: &str| flags.iter().any(|f| f == flag);
    let before = stdout.split_once("x as fast in bf16").map(|(before, _)| before);
    let ratio = before
        .and_then(|b| b.rsplit(' ').next())
        .map(|r| r.parse::<f64>().unwrap_or_else(|_| panic!("a timed ratio before 'x as fast': {stdout}")));
    match (has("amx_bf16"), has("avx512_bf16")) {
        (false, true) if ratio.expect("a timed ratio in the header") >= 1.1 => "bf16",
        (false, true) => "fp32",
        (amx, _) => {
            assert!(ratio.is_none(), "timed where the flags decide: {stdout}");
            if amx {
                "bf16"
            } else {
                "fp32"
            }
        }
    }
}
