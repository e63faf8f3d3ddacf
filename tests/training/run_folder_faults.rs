//! A run folder survives its faults: one writer at a time (an OS lock a killed run does not leave
//! behind), resume from the newest checkpoint that verifies (a truncated file, a byte flipped inside a
//! tensor), a checkpoint write that fails on a full disk leaves no temporary and the run resumes, and a
//! torn last metrics line is dropped with one warning. Each resumed run ends with the uninterrupted
//! run's weights, bit for bit.

use std::path::Path;
use std::process::{Output, Stdio};

use super::resume::{
    assert_same_weights, files, finish, metrics, start, wait_for_checkpoint, warpnet, EPOCH, RUN,
};
use crate::common;

/// `RUN` into `out` with `extra` flags, run to its end or failure.
fn run(out: &Path, extra: &[&str], variables: &[(&str, &str)]) -> Output {
    let mut args: Vec<&str> = RUN.to_vec();
    args.push(out.to_str().unwrap());
    warpnet().args(&args).args(extra).envs(variables.iter().copied()).output().unwrap()
}

/// `train --resume run`: its exit status must be success; its stderr.
fn resume(run: &Path) -> String {
    let out = finish(&["train", "--resume", run.to_str().unwrap(), "--quiet"]);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The lines of `stderr` that are warnings.
fn warnings(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("warning:")).collect()
}

#[test]
fn a_second_writer_is_refused_until_the_first_is_gone() {
    let _cores = common::one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("run");
    // RUN for 40 epochs: alive well past the second writer's start.
    let mut args: Vec<&str> = RUN.to_vec();
    let epochs = args.iter().position(|a| *a == "--epochs").unwrap() + 1;
    args[epochs] = "40";
    args.push(folder.to_str().unwrap());
    let mut first = warpnet().args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_checkpoint(&folder, EPOCH);
    // A requeued job's `--resume` beside the live run: refused, naming the folder and the holder,
    // before it reads any checkpoint: a damaged newest one (a copy half done, say) draws no warning.
    let damaged = folder.join("checkpoints").join("step-99999999");
    std::fs::write(damaged.with_extension("json"), b"{").unwrap();
    std::fs::write(damaged.with_extension("safetensors"), b"").unwrap();
    let second = warpnet().args(["train", "--resume", folder.to_str().unwrap(), "--quiet"]).output().unwrap();
    std::fs::remove_file(damaged.with_extension("json")).unwrap();
    std::fs::remove_file(damaged.with_extension("safetensors")).unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let holder = format!("process {}", first.id());
    assert!(stderr.contains(folder.to_str().unwrap()) && stderr.contains(&holder), "{stderr}");
    assert!(first.try_wait().unwrap().is_none(), "the first run goes on");
    // Killed without a chance to clean up: the operating system drops its lock.
    first.kill().unwrap();
    first.wait().unwrap();
    // The resumed run takes the folder; stopped as soon as it has written a checkpoint of its own.
    let mut resumed =
        warpnet().args(["train", "--resume", folder.to_str().unwrap(), "--quiet"]).spawn().unwrap();
    let newest = *super::resume::checkpoint_steps(&folder).last().unwrap();
    wait_for_checkpoint(&folder, newest + 1);
    assert!(resumed.try_wait().unwrap().is_none(), "no stale lock: the resumed run trains");
    resumed.kill().unwrap();
    resumed.wait().unwrap();
}

/// Damage to the newest checkpoint, each on a copy of one killed run: its safetensors cut short, a
/// byte flipped inside a tensor's data (which only the checksum sees), and its sidecar cut short.
/// `--resume` warns once, naming the file, resumes from the checkpoint before, and ends as the
/// uninterrupted run does.
#[test]
fn resume_falls_back_past_a_damaged_checkpoint() {
    let _cores = common::one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    assert!(run(&whole, &[], &[]).status.success());
    let killed = dir.path().join("killed");
    let mut child = start(&killed, &[]);
    wait_for_checkpoint(&killed, 2 * EPOCH);
    child.kill().unwrap();
    child.wait().unwrap();
    let newest =
        |run: &Path, extension: &str| run.join("checkpoints").join(format!("step-00000048.{extension}"));
    let damages: [Damage; 3] = [
        ("safetensors", "truncated", |bytes| bytes.truncate(bytes.len() / 2)),
        ("safetensors", "flipped", |bytes| {
            let inside_the_last_tensor = bytes.len() - 100;
            bytes[inside_the_last_tensor] ^= 0x10;
        }),
        ("json", "sidecar", |bytes| bytes.truncate(bytes.len() / 3)),
    ];
    for (extension, name, damage) in damages {
        let copy = dir.path().join(name);
        copy_folder(&killed, &copy);
        let file = newest(&copy, extension);
        let mut bytes = std::fs::read(&file).unwrap();
        damage(&mut bytes);
        std::fs::write(&file, bytes).unwrap();
        let stderr = resume(&copy);
        let warnings = warnings(&stderr);
        assert_eq!(warnings.len(), 1, "{name}: {stderr}");
        assert!(warnings[0].contains("step-00000048"), "{name}: {stderr}");
        assert_same_weights(&whole.join("model.safetensors"), &copy.join("model.safetensors"));
        assert_eq!(metrics(&whole), metrics(&copy), "{name}");
    }
    // With every checkpoint damaged, one error line.
    let hopeless = dir.path().join("hopeless");
    copy_folder(&killed, &hopeless);
    for step in [EPOCH, 2 * EPOCH] {
        std::fs::write(hopeless.join("checkpoints").join(format!("step-{step:08}.safetensors")), b"")
            .unwrap();
    }
    let out = warpnet().args(["train", "--resume", hopeless.to_str().unwrap()]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| l.starts_with("error:")).count(), 1, "{stderr}");
    assert!(stderr.contains("verifies"), "{stderr}");
}

/// The second checkpoint's write fails as on a full disk (the test hook of train/checkpoint/
/// integrity.rs), once in its tensors and once in its sidecar, after its tensors were renamed into
/// place: one error line saying what space it needs, exit 1, no temporary and no sidecar-less tensors
/// left, the first checkpoint intact; `--resume` completes from it to the uninterrupted run's weights.
/// A torn last line in metrics.jsonl (a crash during its append) is then dropped with one warning.
#[test]
fn a_full_disk_and_a_torn_metrics_line_lose_only_the_unsaved_work() {
    let _cores = common::one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    assert!(run(&whole, &[], &[]).status.success());
    // A checkpoint is two files: the 3rd file written is the second checkpoint's tensors, the 4th its
    // sidecar.
    for (fails_at, which) in [("3", "tensors"), ("4", "sidecar")] {
        let full = dir.path().join(format!("full-{which}"));
        let out = run(&full, &[], &[("WARPNET_CHECKPOINT_WRITE_FAILS_AT", fails_at)]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{which}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{which}: {stderr}");
        assert!(
            stderr.contains("No space left on device") && stderr.contains("MB free"),
            "{which}: {stderr}"
        );
        let left = files(&full.join("checkpoints"));
        let first = ["step-00000024.json", "step-00000024.safetensors"];
        assert_eq!(left, first, "{which}: nothing of the failed write left, the first intact");
        let stderr = resume(&full);
        assert!(warnings(&stderr).is_empty(), "{which}: {stderr}");
        assert_same_weights(&whole.join("model.safetensors"), &full.join("model.safetensors"));
    }

    let torn = dir.path().join("torn");
    let mut child = start(&torn, &[]);
    wait_for_checkpoint(&torn, EPOCH);
    child.kill().unwrap();
    child.wait().unwrap();
    let log = torn.join("metrics.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"epoch\":2,\"step\":48,\"lr\":0.0");
    std::fs::write(&log, text).unwrap();
    let stderr = resume(&torn);
    let warnings = warnings(&stderr);
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("metrics.jsonl") && warnings[0].contains("cut short"), "{stderr}");
    assert_same_weights(&whole.join("model.safetensors"), &torn.join("model.safetensors"));
    assert_eq!(metrics(&whole), metrics(&torn));
}

/// The final weights carry their checksums too (RUN/model.crc32.json): a byte flipped inside a tensor
/// of RUN/model.safetensors, which still reads as safetensors, makes `eval` and `predict` refuse it
/// in one line naming the file, exit 2; the intact folder evaluates.
#[test]
fn a_damaged_final_weights_file_is_refused_by_its_readers() {
    let _cores = common::one_training_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    assert!(run(&whole, &[], &[]).status.success());
    assert!(whole.join("model.crc32.json").is_file(), "the checksums beside the weights");
    finish(&["eval", "--checkpoint", whole.to_str().unwrap()]);
    let damaged = dir.path().join("damaged");
    copy_folder(&whole, &damaged);
    let weights = damaged.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let inside_the_last_tensor = bytes.len() - 100;
    bytes[inside_the_last_tensor] ^= 0x10;
    std::fs::write(&weights, bytes).unwrap();
    let image = damaged.join("image.png");
    image::save_buffer(&image, &[128u8; 28 * 28], 28, 28, image::ColorType::L8).unwrap();
    for args in [vec!["eval", "--checkpoint"], vec!["predict", image.to_str().unwrap(), "--checkpoint"]] {
        let out = warpnet().args(&args).arg(&damaged).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("model.safetensors: damaged"), "{args:?}: {stderr}");
    }
}

/// Damage done to a checkpoint's file: which file (its extension), a name, what is done to its bytes.
type Damage = (&'static str, &'static str, fn(&mut Vec<u8>));

/// `from`'s files into a new folder `to` (one level of subfolders: a run folder's).
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_folder(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}
