//! Training never loses more than the work since the last checkpoint, and a resumed run ends exactly
//! where the uninterrupted one does: the same weights, bit for bit, on CPU. The interruptions are real:
//! the process is killed (SIGKILL, no chance to save) or stopped with SIGINT (Ctrl-C, saves mid-epoch).

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tch::Tensor;

use crate::common;

/// Three epochs of 24 steps (1,536 images, batch 64) of the demo recipe on WRN-7-1, the lr dropping
/// after the first: long enough to interrupt in the middle, short enough for CI.
pub(super) const RUN: [&str; 17] = [
    "train",
    "--preset",
    "demo",
    "--k",
    "1",
    "--limit-train",
    "1536",
    "--batch",
    "64",
    "--epochs",
    "3",
    "--milestones",
    "1",
    "--quiet",
    // Bit-identity is proved here in fp32 on any CPU; tests/numerics/precision.rs resumes a bf16 run.
    "--precision",
    "fp32",
    "--out",
];
/// Steps of one epoch of RUN.
pub(super) const EPOCH: usize = 24;

pub(super) fn warpnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_warpnet"))
}

pub(super) fn finish(args: &[&str]) -> Output {
    let out = warpnet().args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

pub(super) fn start(out: &Path, extra: &[&str]) -> Child {
    let mut args: Vec<&str> = RUN.to_vec();
    args.push(out.to_str().unwrap());
    args.extend(extra);
    warpnet().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits until the run has a complete checkpoint (its .json sidecar) with at least `step` steps.
pub(super) fn wait_for_checkpoint(run: &Path, step: usize) {
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
pub(super) fn assert_same_weights(a: &Path, b: &Path) {
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
pub(super) fn metrics(run: &Path) -> Vec<serde_json::Value> {
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

/// The steps of the run's complete checkpoints, oldest first.
pub(super) fn checkpoint_steps(run: &Path) -> Vec<usize> {
    let mut steps: Vec<usize> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("step-").and_then(|s| s.strip_suffix(".json")).and_then(|s| s.parse().ok())
        })
        .collect();
    steps.sort();
    steps
}

/// Stops the run with `signal` in the middle of its second epoch: exit 128 + signal, a checkpoint at
/// that step, and a line saying how to resume.
fn interrupt_mid_epoch(run: &Path, signal: i32) {
    let child = start(run, &[]);
    wait_for_checkpoint(run, EPOCH);
    std::thread::sleep(Duration::from_millis(700)); // into the second epoch
                                                    // SAFETY: kill(2) with a live child's pid and a signal number has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, signal) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(128 + signal), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    let steps = checkpoint_steps(run);
    assert!(steps.last().is_some_and(|s| s % EPOCH != 0), "a mid-epoch checkpoint last: {steps:?}");
}

#[test]
fn killed_and_interrupted_runs_resume_to_identical_weights() {
    let _cores = common::one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let [whole, killed, every, ctrl_c, term] =
        ["whole", "killed", "every", "ctrlc", "sigterm"].map(|name| dir.path().join(name));
    let mut args: Vec<&str> = RUN.to_vec();
    args.push(whole.to_str().unwrap());
    finish(&args);
    let resumed_to_the_same_end = |run: &Path| {
        finish(&["train", "--resume", run.to_str().unwrap(), "--quiet"]);
        assert_same_weights(&whole.join("model.safetensors"), &run.join("model.safetensors"));
        assert_eq!(metrics(&whole), metrics(run));
    };

    // SIGKILL after the first epoch's checkpoint: the rest is redone from it.
    let mut child = start(&killed, &[]);
    wait_for_checkpoint(&killed, EPOCH);
    child.kill().unwrap();
    child.wait().unwrap();
    resumed_to_the_same_end(&killed);

    // With --checkpoint-every 5, SIGKILL in the second epoch loses less than 5 steps: a checkpoint at
    // step 25 (a multiple of 5 past the epoch's 24) or later.
    let mut child = start(&every, &["--checkpoint-every", "5"]);
    wait_for_checkpoint(&every, EPOCH + 1);
    child.kill().unwrap();
    child.wait().unwrap();
    let steps = checkpoint_steps(&every);
    assert!(steps.iter().any(|s| s % EPOCH != 0 && s % 5 == 0), "mid-epoch checkpoints: {steps:?}");
    resumed_to_the_same_end(&every);

    // Ctrl-C and a scheduler's SIGTERM in the middle of the second epoch: a checkpoint at that step.
    interrupt_mid_epoch(&ctrl_c, libc::SIGINT);
    resumed_to_the_same_end(&ctrl_c);
    interrupt_mid_epoch(&term, libc::SIGTERM);
    resumed_to_the_same_end(&term);
}

#[test]
fn resume_refuses_other_settings_and_missing_checkpoints() {
    let _cores = common::one_training_at_a_time();
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
    let _cores = common::one_training_at_a_time();
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

/// A run that diverges before its first checkpoint has nothing to keep: it says so, and leaves the
/// folder free for the same command with a lower learning rate.
#[test]
fn divergence_before_the_first_checkpoint_frees_the_folder() {
    let _cores = common::one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let args = |lr: &'static str| {
        let mut cmd = warpnet();
        cmd.args(["train", "--preset", "demo", "--limit-train", "256", "--batch", "64", "--epochs", "1"])
            .args(["--lr", lr, "--quiet", "--out", run.to_str().unwrap()]);
        cmd
    };
    // lr 1e30 sends the weights to infinity in the first step: the second step's loss is not finite.
    let out = args("1e30").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("diverged") && stderr.contains("before the first checkpoint"), "{stderr}");
    assert_eq!(files(&run), Vec::<String>::new(), "nothing of the diverged run stays");
    let again = args("0.05").output().unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert!(run.join("model.safetensors").is_file());
}

/// The files of a folder (names, sorted); empty when the folder does not exist.
pub(super) fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().file_name().into_string().unwrap()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// A run refused for bad input (a batch larger than the data; a GPU this machine lacks, whose check
/// loads libtorch's CUDA half) is one error line and exit code 2 and leaves nothing in --out: had it
/// written config.toml there first, a rerun into the same folder would be refused as "holds a run
/// already" and --resume would find no checkpoint. So the corrected command must then train there.
#[test]
fn refused_runs_leave_nothing_behind_and_the_folder_takes_the_corrected_run() {
    let _cores = common::one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let (fresh, empty) = (dir.path().join("fresh"), dir.path().join("empty"));
    std::fs::create_dir(&empty).unwrap();
    let common = ["train", "--preset", "demo", "--quiet"];
    // cuda:999 exists on no machine: without CUDA the library does not load, with it the index is out
    // of range; both are refused at the device check.
    let cases = [
        (&fresh, ["--limit-train", "10", "--batch", "64"], "--batch"),
        (&empty, ["--limit-train", "128", "--devices", "cuda:999"], "--devices"),
    ];
    for (out, bad, flag) in cases {
        let output = warpnet().args(common).args(bad).arg("--out").arg(out).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bad:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{bad:?}: {stderr}");
        assert!(stderr.starts_with("error:") && stderr.contains(flag), "{bad:?}: {stderr}");
        assert_eq!(files(out), Vec::<String>::new(), "{bad:?} left files in {}", out.display());
        assert_eq!(out == &empty, out.exists(), "{bad:?}: the folder was created (or removed)");
    }
    for out in [&fresh, &empty] {
        let mut args = common.to_vec();
        args.extend([
            "--limit-train",
            "128",
            "--batch",
            "64",
            "--iters",
            "2",
            "--out",
            out.to_str().unwrap(),
        ]);
        finish(&args);
        assert!(out.join("model.safetensors").is_file(), "{}: no final weights", out.display());
    }
}

/// `--keep-checkpoints 2` on a run of 4 epochs of 2 steps (128 images, batch 64): one checkpoint per
/// epoch is written (steps 2, 4, 6, 8), and exactly the newest two, each its weights and its sidecar,
/// remain. The default keeps 3, so a flag that were ignored would leave steps 4, 6 and 8.
#[test]
fn the_last_n_checkpoints_are_kept() {
    let _cores = common::one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut args = vec!["train", "--preset", "demo", "--limit-train", "128", "--batch", "64"];
    args.extend(["--epochs", "4", "--keep-checkpoints", "2", "--quiet", "--out", run.to_str().unwrap()]);
    finish(&args);
    let expected = ["step-00000006.json", "step-00000006.safetensors", "step-00000008.json"];
    let mut expected = expected.map(String::from).to_vec();
    expected.push("step-00000008.safetensors".into());
    assert_eq!(files(&run.join("checkpoints")), expected);
}

/// A writer killed between writing a temporary and renaming it leaves `.tmp-PID-NAME` behind; the run
/// that opens the folder again removes those of dead writers. One of a live process (this test's) may
/// belong to a write in flight and stays, and so does every other file.
#[test]
fn resuming_removes_temporaries_of_dead_writers() {
    let _cores = common::one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut args = vec!["train", "--preset", "demo", "--limit-train", "128", "--batch", "64"];
    args.extend(["--iters", "2", "--quiet", "--out", run.to_str().unwrap()]);
    finish(&args);
    let checkpoints = run.join("checkpoints");
    let before = files(&checkpoints);
    // A process that has exited, and been waited for: its PID names no live process.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = [
        checkpoints.join(format!(".tmp-{dead}-step-00000004.safetensors")),
        checkpoints.join(format!(".tmp-{dead}-step-00000004.json")),
        run.join(format!(".tmp-{dead}-model.safetensors")),
    ];
    let live = checkpoints.join(format!(".tmp-{}-step-00000004.json", std::process::id()));
    for path in stale.iter().chain([&live]) {
        std::fs::write(path, b"half written").unwrap();
    }
    finish(&["train", "--resume", run.to_str().unwrap(), "--quiet"]);
    for path in &stale {
        assert!(!path.exists(), "{} stayed", path.display());
    }
    assert!(live.exists(), "the temporary of a live process was removed");
    std::fs::remove_file(&live).unwrap();
    assert_eq!(files(&checkpoints), before, "the checkpoints changed");
}

/// A device thread that fails (a libtorch error inside it: out of memory, a CUDA error; injected
/// here through the executor's test hook) stops the run with one line naming the device and the
/// error, exit code 1, no panic trace, and the checkpoints it wrote intact: the run resumes from them.
#[test]
fn a_failed_device_is_one_line_and_the_run_resumes() {
    let _cores = common::one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let job = [
        "train",
        "--preset",
        "demo",
        "--model",
        "warp",
        "--limit-train",
        "256",
        "--batch",
        "64",
        "--epochs",
        "3",
        "--devices",
        "cpu:2",
        "--placement",
        "[F1],[F2,F2'x1]",
        "--precision",
        "fp32",
        "--quiet",
        "--out",
    ];
    // A term worker answers about ten commands per step and this run takes four steps per epoch:
    // its 40th command is in the second epoch, after the first epoch's checkpoint.
    let out = warpnet().args(job).arg(&run).env("WARPNET_DEVICE_FAILS_AT_COMMAND", "40").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: device cpu, term worker") && stderr.contains("injected failure"),
        "{stderr}"
    );
    let steps = checkpoint_steps(&run);
    assert!(
        steps.contains(&4) && !steps.contains(&12),
        "the first epoch's checkpoint, not the end: {steps:?}"
    );
    let resumed = finish(&["train", "--resume", run.to_str().unwrap(), "--quiet", "--json"]);
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&resumed.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(summary["steps"], 12);
}
