//! `warpnet lm` end to end on a corpus the test writes: a run, its evaluation and its text; and bad
//! input (an empty or too-short file, a missing path, a context past the position table, a placement
//! naming no such term) as one error line and exit 2.

use std::path::Path;

use crate::binary::{assert_rejected, auto_precision_expected, lm_args, tiny_corpus, warpnet, TINY_LM};

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Trains `steps` steps into `out` and asserts it succeeded.
fn train(corpus: &Path, steps: usize, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = lm_args(corpus, steps, steps, out);
    args.extend(extra.iter().map(|s| s.to_string()));
    let output = warpnet(&as_strs(&args));
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn last_json(output: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// The validation figure `lm eval` prints for the saved weights is the one the run logged at its end:
/// the weights round-trip through model.safetensors and the evaluation is one code path. Both are
/// float32 on one thread over the same windows, so they agree to the last printed digit (1e-9).
#[test]
fn a_run_evaluates_and_writes_text_from_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = tiny_corpus(dir.path(), 8_000);
    let run = dir.path().join("run");
    let trained = last_json(&train(&corpus, 20, &run, &["--json"]));
    let run_arg = run.to_str().unwrap();
    let evaluated = last_json(&warpnet(&["lm", "eval", run_arg, "--json"]));
    let logged = trained["validation_bits_per_byte"].as_f64().unwrap();
    let read_back = evaluated["validation_bits_per_byte"].as_f64().unwrap();
    assert!((logged - read_back).abs() < 1e-9, "logged {logged}, evaluated {read_back}");
    assert!(logged < 8.0, "20 AdamW steps learn something of a 12-word corpus: {logged} bits per byte");

    let shorter = last_json(&warpnet(&["lm", "eval", run_arg, "--context", "8", "--json"]));
    assert_eq!(shorter["validation_bytes"].as_u64().unwrap(), 2 * 4 * 8, "2 batches of 4 windows of 8");

    let text =
        last_json(&warpnet(&["lm", "generate", run_arg, "--prompt", "warp ", "--length", "40", "--json"]));
    assert_eq!(text["prompt"], "warp ");
    assert!(!text["text"].as_str().unwrap().is_empty());
    for file in ["config.toml", "metrics.jsonl", "model.safetensors", "validation-bpb.png"] {
        assert!(run.join(file).exists(), "{file} in the run folder");
    }
}

#[test]
fn bad_corpora_are_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    // Context 16: each part must hold 17 bytes; 20 bytes split 18 / 2.
    let short = dir.path().join("short.txt");
    std::fs::write(&short, b"twenty bytes of text").unwrap();
    let missing = dir.path().join("no-such-corpus.txt");
    for (file, needle) in [(&empty, "too short"), (&short, "too short"), (&missing, "cannot read")] {
        let args = lm_args(file, 2, 2, &out);
        assert_rejected(&as_strs(&args), needle);
        assert_rejected(&as_strs(&args), file.file_name().unwrap().to_str().unwrap());
    }
    assert_rejected(&["lm", "train", "--data", "shakespeare"], "--data");
}

#[test]
fn impossible_settings_are_one_line_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = tiny_corpus(dir.path(), 4_000);
    let out = dir.path().join("run");
    let with = |extra: &[&str]| {
        let mut args = lm_args(&corpus, 2, 2, &out);
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    assert_rejected(&as_strs(&with(&["--devices", "cpu:2", "--placement", "[F1,F3],[F2]"])), "F3");
    assert_rejected(&as_strs(&with(&["--devices", "cpu:2", "--placement", "[F1,F2'F1]"])), "F2");
    assert_rejected(&as_strs(&with(&["--k", "3"])), "--k");
    assert_rejected(&["lm", "train", "--width", "30", "--heads", "4"], "--heads");
    assert_rejected(&["lm", "train", "--steps", "0"], "--steps");
    assert!(!out.exists(), "a refused run leaves no folder");

    train(&corpus, 2, &out, &[]);
    let run = out.to_str().unwrap();
    assert_rejected(&["lm", "eval", run, "--context", "17"], "--context 17");
    assert_rejected(&["lm", "eval", run, "--batches", "0"], "--batches");
    assert_rejected(&as_strs(&with(&[])), "lm resume");
    let missing = dir.path().join("no-run-here");
    assert_rejected(&["lm", "eval", missing.to_str().unwrap()], "no-run-here");
    assert_rejected(&["lm", "resume", missing.to_str().unwrap()], "no-run-here");
}

/// `lm bench` times the tiny model and `lm plan` predicts it on one and two devices, each placement
/// naming every term of the warp layer once.
#[test]
fn bench_and_plan_print_their_rows() {
    let tiny = ["--blocks", "1", "--width", "16", "--heads", "2", "--context", "16", "--batch", "4"];
    let mut bench = vec!["lm", "bench", "--steps", "2", "--precision", "fp32", "--json"];
    bench.extend(tiny);
    let row = last_json(&warpnet(&bench));
    assert_eq!(row["model"], "GPT-1x16 warpnet2 K=2");
    assert!(row["ms_per_step"].as_f64().unwrap() > 0.0, "{row}");
    let mut plan = vec!["lm", "plan", "--precision", "fp32", "--json"];
    plan.extend(tiny);
    let rows = last_json(&warpnet(&plan));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in rows {
        let placement = row["placement"].as_str().unwrap();
        for term in ["F1", "F2", "F2'F1"] {
            let named = placement.split(['[', ']', ',']).filter(|t| *t == term).count();
            assert_eq!(named, 1, "{term} once in {placement}");
        }
    }
}

/// `auto` for the GPT: bf16 on matrix units, fp32 without native bf16, and on AVX512-BF16 alone
/// what its timed MLP says (tests/binary: `auto_precision_expected`); the run folder records it.
#[test]
#[cfg_attr(not(target_arch = "x86_64"), ignore = "the rule read from /proc/cpuinfo here is x86's")]
fn auto_precision_of_the_gpt_is_what_pays_here() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = tiny_corpus(dir.path(), 8_000);
    let run = dir.path().join("run");
    let mut args = lm_args(&corpus, 2, 2, &run);
    let at = args.iter().position(|a| a == "--precision").unwrap();
    args[at + 1] = "auto".into();
    args.retain(|a| a != "--quiet"); // the header says what was timed
    let output = warpnet(&as_strs(&args));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = auto_precision_expected(&stdout);
    assert!(stdout.contains(&format!("precision {expected} (auto: ")), "{stdout}");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains(&format!("precision = \"{expected}\"")), "{config}");
}

/// `lm compare` on a tiny model: one row per variant, the table, the JSON and the chart; a second call
/// reads the finished runs back (the same figures, no run trained again).
#[test]
fn compare_trains_each_variant_once_and_tables_them() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = tiny_corpus(dir.path(), 8_000);
    let (data, out) = (format!("text:{}", corpus.display()), dir.path().join("compare"));
    let mut args = vec!["lm", "compare", "--data", &data, "--variants", "sequential,warpnet2:2"];
    args.extend(TINY_LM);
    let out_arg = out.to_str().unwrap();
    args.extend(["--steps", "4", "--eval-every", "2", "--bench-steps", "1", "--out", out_arg, "--json"]);
    let first = last_json(&warpnet(&args));
    let rows = first.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{first}");
    assert_eq!(rows[0]["variant"], "sequential");
    assert_eq!(rows[1]["variant"], "warpnet2 K=2");
    for file in ["compare.md", "compare.json", "validation-bpb.png"] {
        assert!(out.join(file).exists(), "{file}");
    }
    let metrics = out.join("warpnet2-K2-seed0").join("metrics.jsonl");
    let written = std::fs::metadata(&metrics).unwrap().modified().unwrap();
    let second = last_json(&warpnet(&args));
    for (a, b) in rows.iter().zip(second.as_array().unwrap()) {
        assert_eq!(a["bits_per_byte"], b["bits_per_byte"], "read back, not trained again");
    }
    assert_eq!(std::fs::metadata(&metrics).unwrap().modified().unwrap(), written, "no run trained again");
}
