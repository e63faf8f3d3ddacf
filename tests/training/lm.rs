//! A language-model run loses no more than the work since its last checkpoint, and `warpnet lm
//! resume` ends where the uninterrupted run does: the same weights and optimizer moments, bit for bit,
//! on CPU (fp32, one thread: every step's arithmetic is the same sequence of kernels either way).
//! The interruptions are real: Ctrl-C (SIGINT saves at the step it stops), SIGKILL (no chance to
//! save), and a checkpoint write that fails as on a full disk.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use super::resume::{assert_same_weights, checkpoint_steps, wait_for_checkpoint};
use crate::binary::{lm_args, tiny_corpus, BIN};
use crate::common;

/// 1,200 steps of the tiny model, evaluated and checkpointed every 300: a few seconds, long enough to
/// interrupt between two checkpoints.
const STEPS: usize = 1200;
const EVAL_EVERY: usize = 300;

fn lm(corpus: &Path, out: &Path) -> Command {
    let mut command = Command::new(BIN);
    command.args(lm_args(corpus, STEPS, EVAL_EVERY, out));
    command
}

fn succeeded(output: Output) -> Output {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn resume(run: &Path) -> Output {
    succeeded(Command::new(BIN).args(["lm", "resume", run.to_str().unwrap(), "--quiet"]).output().unwrap())
}

/// metrics.jsonl without its timings.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let mut record: serde_json::Value = serde_json::from_str(line).unwrap();
            record.as_object_mut().unwrap().retain(|k, _| !["seconds", "tokens_per_s"].contains(&k.as_str()));
            record
        })
        .collect()
}

/// Starts the run, waits for its first checkpoint and a little more, and sends `signal`.
fn interrupt(corpus: &Path, run: &Path, signal: i32) -> Output {
    let child = lm(corpus, run).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for_checkpoint(run, EVAL_EVERY);
    std::thread::sleep(Duration::from_millis(300)); // past the checkpoint, before the run's end
                                                    // SAFETY: kill(2) with a live child's pid and a signal number has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, signal) };
    child.wait_with_output().unwrap()
}

#[test]
fn an_lm_run_interrupted_three_ways_resumes_to_the_same_weights() {
    let _cores = common::one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let corpus = tiny_corpus(dir.path(), 16_000);
    let whole = dir.path().join("whole");
    succeeded(lm(&corpus, &whole).output().unwrap());
    assert_eq!(checkpoint_steps(&whole), [900, 1200], "the last two checkpoints kept");

    // Ctrl-C: exit 130, a checkpoint at the step it stopped (between two evaluations), and the way on.
    let stopped = dir.path().join("sigint");
    let out = interrupt(&corpus, &stopped, libc::SIGINT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + libc::SIGINT), "{stderr}");
    assert!(stderr.contains("lm resume"), "{stderr}");
    let steps = checkpoint_steps(&stopped);
    assert!(steps.last().is_some_and(|s| s % EVAL_EVERY != 0 && *s < STEPS), "{steps:?}");
    resume(&stopped);
    assert_same_weights(&whole.join("model.safetensors"), &stopped.join("model.safetensors"));
    assert_eq!(metrics(&whole), metrics(&stopped));

    // SIGKILL: the work since the last evaluation is lost and done again.
    let killed = dir.path().join("sigkill");
    let out = interrupt(&corpus, &killed, libc::SIGKILL);
    assert_eq!(out.status.code(), None, "killed by a signal");
    resume(&killed);
    assert_same_weights(&whole.join("model.safetensors"), &killed.join("model.safetensors"));
    assert_eq!(metrics(&whole), metrics(&killed));

    // The second checkpoint's tensors (its 3rd file) fail as on a full disk: one line, exit 1, the
    // first checkpoint intact.
    let full = dir.path().join("full");
    let out = lm(&corpus, &full).env("WARPNET_CHECKPOINT_WRITE_FAILS_AT", "3").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(checkpoint_steps(&full), [EVAL_EVERY]);
    resume(&full);
    assert_same_weights(&whole.join("model.safetensors"), &full.join("model.safetensors"));
    // The final checkpoint holds the optimizer's moments too: they resumed to the same values.
    let last = |run: &Path| run.join(format!("checkpoints/step-{STEPS:08}.safetensors"));
    assert_same_weights(&last(&whole), &last(&full));
}
