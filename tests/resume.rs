//! Training never loses more than the work since the last checkpoint, and a resumed run ends exactly
//! where the uninterrupted one does: the same weights, bit for bit, on CPU. The interruptions are real:
//! the process is killed (SIGKILL, no chance to save) or stopped with SIGINT (Ctrl-C, saves mid-epoch).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tch::Tensor;

/// Three epochs of 24 steps (1,536 images, batch 64) of the demo network, the lr dropping after the
/// first: long enough to interrupt in the middle, short enough for CI.
const RUN: [&str; 13] = [
    "train",
    "--preset",
    "demo",
    "--limit-train",
    "1536",
    "--batch",
    "64",
    "--epochs",
    "3",
    "--milestones",
    "1",
    "--quiet",
    "--out",
];
/// Steps of one epoch of RUN.
const EPOCH: usize = 24;

fn warpnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warpnet"))
}

fn finish(args: &[&str]) -> Output {
    let out = warpnet().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn start(out: &Path) -> Child {
    let mut args: Vec<&str> = RUN.to_vec();
    args.push(out.to_str().unwrap());
    warpnet().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits until the run has a complete checkpoint (its .json sidecar) with at least `step` steps.
fn wait_for_checkpoint(run: &Path, step: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let found = std::fs::read_dir(run.join("checkpoints")).ok().is_some_and(|entries| {
            entries.filter_map(|e| e.ok()).any(|e| {
                let name = e.file_name().into_string().unwrap_or_default();
                let n = name.strip_prefix("step-").and_then(|s| s.strip_suffix(".json"));
                n.and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| n >= step)
            })
        });
        if found {
            return;
        }
        assert!(Instant::now() < deadline, "no checkpoint of step {step} in {}", run.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts two weight files hold the same tensors, bit for bit.
fn assert_same_weights(a: &Path, b: &Path) {
    let read = |p: &Path| {
        let mut v = Tensor::read_safetensors(p).unwrap();
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    let (a, b) = (read(a), read(b));
    assert_eq!(a.len(), b.len());
    for ((na, ta), (nb, tb)) in a.iter().zip(&b) {
        assert_eq!(na, nb);
        assert!(ta.equal(tb), "{na} differs after resuming");
    }
}

/// The metrics lines without their timings.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let timings = ["seconds", "images_per_s", "data_wait_seconds"];
            v.as_object_mut().unwrap().retain(|k, _| !timings.contains(&k.as_str()));
            v
        })
        .collect()
}

#[test]
fn killed_and_interrupted_runs_resume_to_identical_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, killed, interrupted) =
        (dir.path().join("whole"), dir.path().join("killed"), dir.path().join("ctrlc"));
    let mut args: Vec<&str> = RUN.to_vec();
    args.push(whole.to_str().unwrap());
    finish(&args);

    // SIGKILL after the first epoch's checkpoint: the rest is redone from it.
    let mut child = start(&killed);
    wait_for_checkpoint(&killed, EPOCH);
    child.kill().unwrap();
    child.wait().unwrap();
    finish(&["train", "--resume", killed.to_str().unwrap(), "--quiet"]);
    assert_same_weights(&whole.join("model.safetensors"), &killed.join("model.safetensors"));
    assert_eq!(metrics(&whole), metrics(&killed));

    // SIGINT in the middle of the second epoch: a checkpoint at that step, exit code 130.
    let child = start(&interrupted);
    wait_for_checkpoint(&interrupted, EPOCH);
    std::thread::sleep(Duration::from_millis(700)); // into the second epoch
                                                    // SAFETY: kill(2) with a live child's pid and SIGINT has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    let checkpoints: Vec<String> = std::fs::read_dir(interrupted.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    let mid_epoch = |n: &String| {
        n.strip_prefix("step-")
            .and_then(|s| s.strip_suffix(".json"))
            .and_then(|s| s.parse::<usize>().ok())
            .is_some_and(|s| s % EPOCH != 0)
    };
    assert!(checkpoints.iter().any(mid_epoch), "a mid-epoch checkpoint: {checkpoints:?}");
    finish(&["train", "--resume", interrupted.to_str().unwrap(), "--quiet"]);
    assert_same_weights(&whole.join("model.safetensors"), &interrupted.join("model.safetensors"));
    assert_eq!(metrics(&whole), metrics(&interrupted));
}

#[test]
fn resume_refuses_other_settings_and_missing_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let out = warpnet().args(["train", "--resume", dir.path().to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checkpoints"));
    let out =
        warpnet().args(["train", "--resume", dir.path().to_str().unwrap(), "--lr", "0.5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no other settings"));
}

/// A loss that turns NaN stops the run with one line; the last good checkpoint stays, the final
/// weights are never written, and a second run into the same folder cannot overwrite it.
#[test]
fn divergence_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // The first epoch trains normally; at the milestone the lr jumps by 1e8 and the weights blow up.
    let out = warpnet()
        .args([
            "train",
            "--preset",
            "demo",
            "--limit-train",
            "256",
            "--batch",
            "64",
            "--epochs",
            "3",
            "--milestones",
            "1",
            "--gamma",
            "1e8",
            "--quiet",
            "--out",
            run.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("diverged"), "{stderr}");
    let good = run.join("checkpoints").join("step-00000004.json");
    assert!(good.is_file(), "the first epoch's checkpoint stays");
    assert!(!run.join("model.safetensors").exists(), "no final weights from a diverged run");
    let before = std::fs::read(&good).unwrap();
    let again =
        warpnet().args(["train", "--preset", "demo", "--out", run.to_str().unwrap()]).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    assert_eq!(std::fs::read(&good).unwrap(), before, "nothing overwritten");
}
