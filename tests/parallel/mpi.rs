//! MPI ranks as devices, launched for real: `mpirun -np 2|3|4` on this machine (loopback).
//!
//! One training step over ranks against the same step in one process: the same loss and the same
//! weights, BatchNorm statistics included. Tolerance: float32, ||a - b|| <= 2e-4 ||b|| + 1e-6 per
//! tensor, as in tests/parallel/parallel_executor.rs: the ranks add the same terms in another association order
//! and with another number of libtorch threads (reduction order inside kernels), which moves results
//! by float32 rounding; a lost or doubled term or gradient moves them by percent or more. The bytes on
//! the wire are exact (tensors travel as their raw elements), so they add no error of their own. The
//! one-process reference runs on one libtorch thread, as every rank does here: on CPUs where fp32 runs
//! channels-last (src/precision.rs), libtorch's channels-last BatchNorm sums its statistics in fp32 per
//! thread (NCHW's sums in float64), so its rounding, ~1e-6 of a BN output, depends on the thread count,
//! and the BN biases' gradients, sums of many cancelling terms, carry it to ~1e-2 of their own small
//! size: a difference of libtorch's kernels, not of the executor, which this test is about.
//!
//! Failures: a rank killed (SIGKILL) or hung (SIGSTOP) mid-training stops the job within the stated
//! time, naming the rank, and the run's last checkpoint still evaluates.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tch::Tensor;

pub(super) use crate::binary::BIN;
const TOLERANCE: f64 = 2e-4;
const ABSOLUTE: f64 = 1e-6;

/// A small WarpNet1 K=2 job on the embedded data: batches of 16 from 64 training images (an epoch is
/// 4 steps, then the test evaluation and a checkpoint).
const SMALL_JOB: &[&str] = &[
    "train",
    "--preset",
    "demo",
    "--model",
    "warp",
    "--k",
    "2",
    "--nwarp",
    "1",
    "--width",
    "1",
    "--limit-train",
    "64",
    "--batch",
    "16",
    "--quiet",
    "--seed",
    "7",
    // The fp32 tolerance above: bf16 over ranks has its own test.
    "--precision",
    "fp32",
];

/// `mpirun -np N` of warpnet with `args`: as root (this machine's CI), more ranks than cores allowed.
pub(super) fn mpirun(ranks: usize, args: &[&str]) -> Command {
    let mut command = Command::new("mpirun");
    command.args(["--allow-run-as-root", "--oversubscribe", "-np", &ranks.to_string(), BIN]).args(args);
    command
}

pub(super) fn run(command: &mut Command) -> Output {
    let output = command.output().expect("mpirun runs (scripts/setup.sh installs OpenMPI)");
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `SMALL_JOB` for `iters` steps with `extra` flags into `out`.
pub(super) fn job(out: &Path, iters: usize, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = SMALL_JOB.iter().chain(extra).map(|s| s.to_string()).collect();
    args.extend(["--iters".into(), iters.to_string(), "--out".into(), out.display().to_string()]);
    args
}

/// One training step.
pub(super) fn one_step(out: &Path, extra: &[&str]) -> Vec<String> {
    job(out, 1, extra)
}

fn weights(run: &Path) -> Vec<(String, Tensor)> {
    let mut named = Tensor::read_safetensors(run.join("model.safetensors")).expect("model.safetensors");
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

fn train_loss(run: &Path) -> f64 {
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).expect("metrics.jsonl");
    let line: serde_json::Value = serde_json::from_str(metrics.lines().last().unwrap()).unwrap();
    line["train_loss"].as_f64().unwrap()
}

pub(super) fn assert_same_step(got: &Path, expected: &Path) {
    assert_same_step_of(got, expected, |_, t| t);
}

/// `assert_same_step` on the part of each tensor that `compared` keeps.
pub(super) fn assert_same_step_of(got: &Path, expected: &Path, compared: impl Fn(&str, Tensor) -> Tensor) {
    let (a, b) = (train_loss(got), train_loss(expected));
    assert!((a - b).abs() <= TOLERANCE * b.abs(), "loss {a} over ranks vs {b} in one process");
    let (got, expected) = (weights(got), weights(expected));
    assert_eq!(got.len(), expected.len(), "the same variables");
    for ((name, a), (other, b)) in got.into_iter().zip(expected) {
        assert_eq!(name, other);
        let (a, b) = (compared(&name, a), compared(&name, b));
        let diff = (&a - &b).norm().double_value(&[]);
        let size = b.norm().double_value(&[]);
        assert!(diff <= TOLERANCE * size + ABSOLUTE, "{name}: |a - b| = {diff:e}, |b| = {size:e}");
    }
}

/// The step over `ranks` MPI ranks with `placement` equals the step in one process on one device.
fn model_parallel_matches_one_device(ranks: usize, placement: &str) {
    variant_over_ranks_matches_one_device(ranks, ("warpnet1", 2), placement);
}

/// `model_parallel_matches_one_device` for `--variant variant` with warp layers of `k` units.
fn variant_over_ranks_matches_one_device(ranks: usize, (variant, k): (&str, usize), placement: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (over_ranks, alone) = (dir.path().join("mpi"), dir.path().join("one-device"));
    let mpi = ["--variant", variant, "--devices", "mpi", "--placement", placement];
    // SMALL_JOB's K replaced by `k`.
    let with_k = |mut args: Vec<String>| {
        let at = args.iter().position(|a| a == "--k").expect("SMALL_JOB gives --k") + 1;
        args[at] = k.to_string();
        args
    };
    run(mpirun(ranks, &[]).args(with_k(one_step(&over_ranks, &mpi))));
    run(Command::new(BIN).args(with_k(one_step(&alone, &["--variant", variant, "--threads", "1"]))));
    assert_same_step(&over_ranks, &alone);
    let config = std::fs::read_to_string(over_ranks.join("config.toml")).unwrap();
    assert!(config.contains("devices = \"mpi\""), "the run records its devices:\n{config}");
}

#[test]
fn two_ranks_model_parallel_step_equals_one_device() {
    model_parallel_matches_one_device(2, "[F1,F2'x1],[F2]");
}

/// F2'x1 split by batch: the piece of the first worker reads unit 2's mask rows from the second's rank.
#[test]
fn split_term_over_ranks_step_equals_one_device() {
    model_parallel_matches_one_device(2, "[F1,F2'x1:0.5],[F2,F2'x1:0.5]");
}

#[test]
fn three_ranks_model_parallel_step_equals_one_device() {
    model_parallel_matches_one_device(3, "[F1],[F2],[F2'x1]");
}

/// WarpNet2 K = 2 with F2'F1 away from F1: its worker receives F1(x1) from F1's rank (through the
/// home) and sends its gradient back, over 2 and 3 ranks.
#[test]
fn an_output_sent_between_ranks_steps_as_one_device() {
    variant_over_ranks_matches_one_device(2, ("warpnet2", 2), "[F1],[F2,F2'F1]");
    variant_over_ranks_matches_one_device(3, ("warpnet2", 2), "[F1],[F2],[F2'F1]");
}

/// K = 3 over 3 ranks, each rank one unit's primal and the Jacobian terms of that unit: WarpNet2's
/// two-phase schedule (F3'(F1 + F2) on the third rank from F1 and F2 received from the other two),
/// and the exact layer, whose F3'F2'F1 needs F2'(F1) computed again beside F3'.
#[test]
fn outputs_sent_between_three_ranks_at_k_3_step_as_one_device() {
    variant_over_ranks_matches_one_device(3, ("warpnet2", 3), "[F1],[F2,F2'F1],[F3,F3'F1,F3'F2]");
    variant_over_ranks_matches_one_device(3, ("exact", 3), "[F1],[F2,F2'F1],[F3,F3'F1,F3'F2,F3'F2'F1]");
}

/// PIDs of the processes whose command line mentions `marker` and whose MPI rank is `rank`.
fn rank_pids(marker: &str, rank: usize) -> Vec<i32> {
    let wanted = format!("OMPI_COMM_WORLD_RANK={rank}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(marker)
                && environ.split(|&b| b == 0).any(|v| v == wanted.as_bytes())
        })
        .collect()
}

/// Starts a long training over 2 ranks, waits for its first checkpoint and sends rank `rank` `signal`;
/// checks that the job stopped within 30 s of it (the failure's own limit, at most the timeout, plus
/// room for a loaded machine) and that its newest checkpoint still evaluates. Returns the job's exit
/// code and stderr.
fn signal_rank(rank: usize, signal: i32, timeout_s: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut command = mpirun(2, &["--mpi-timeout", timeout_s]);
    command
        // Far more steps than the test waits for.
        .args(job(&out, 100_000, &["--devices", "mpi", "--keep-checkpoints", "100"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("mpirun starts");
    let started = Instant::now();
    let marker = out.display().to_string();
    while !std::fs::read_dir(out.join("checkpoints")).is_ok_and(|d| d.count() >= 2) {
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint within 2 minutes");
        std::thread::sleep(Duration::from_millis(100));
    }
    let pids = rank_pids(&marker, rank);
    assert_eq!(pids.len(), 1, "one process is rank {rank}");
    // SAFETY: kill(2) on a PID of this test's own job.
    assert_eq!(unsafe { libc::kill(pids[0], signal) }, 0);
    let signalled = Instant::now();
    let output = child.wait_with_output().unwrap();
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(30), "stopped {took:?} after signal {signal}");
    last_checkpoint_evaluates(&out);
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The newest checkpoint of a stopped run still evaluates.
pub(super) fn last_checkpoint_evaluates(run: &Path) {
    let mut weights: Vec<PathBuf> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    weights.sort();
    let newest = weights.last().expect("a checkpoint");
    let eval = Command::new(BIN).args(["eval", "--checkpoint"]).arg(newest).output().unwrap();
    assert!(eval.status.success(), "eval {}: {}", newest.display(), String::from_utf8_lossy(&eval.stderr));
}

#[test]
fn killed_rank_stops_the_job_and_the_checkpoint_survives() {
    // mpirun itself notices a dead rank and ends the others at once.
    let (code, stderr) = signal_rank(1, libc::SIGKILL, "60");
    assert_ne!(code, Some(0), "the job fails");
    assert!(stderr.contains("rank 1"), "the message names rank 1:\n{stderr}");
}

#[test]
fn hung_rank_stops_the_job_within_the_timeout() {
    // The 4 s timeout, then the abort.
    let (code, stderr) = signal_rank(1, libc::SIGSTOP, "4");
    assert_eq!(code, Some(3), "exit code of a failed rank:\n{stderr}");
    assert!(stderr.contains("error: MPI rank 1 did not"), "the message names rank 1:\n{stderr}");
}

/// Ctrl-C for rank 0 (SIGINT to its process): it saves a checkpoint of the current step, tells the other
/// rank to stop, and the job ends with rank 0's exit code 130.
#[test]
fn interrupted_home_saves_a_checkpoint_and_every_rank_ends() {
    let (code, stderr) = signal_rank(0, libc::SIGINT, "60");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("continue with `mpirun -np 2 warpnet train --resume"), "{stderr}");
}

/// Launches one rank of `first` and one of `second` (binary and arguments each) in one job, which must
/// refuse to start with a line containing `refusal`, exit code 2, and train nothing into `run`.
fn assert_refused(first: (&Path, &[String]), second: (&Path, &[String]), refusal: &str, run: &Path) {
    let mut command = Command::new("mpirun");
    command.args(["--allow-run-as-root", "--oversubscribe", "-np", "1"]).arg(first.0).args(first.1);
    command.args([":", "-np", "1"]).arg(second.0).args(second.1);
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(refusal), "{stderr}");
    assert!(!run.exists(), "nothing was trained");
}

#[test]
fn ranks_with_different_configurations_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let bin = Path::new(BIN);
    let (first, second) = (
        one_step(&run, &["--devices", "mpi", "--lr", "0.1"]),
        one_step(&run, &["--devices", "mpi", "--lr", "0.2"]),
    );
    assert_refused((bin, &first), (bin, &second), "MPI rank 1 runs a different configuration", &run);
}

/// A rank started from another build of warpnet (here: the same bytes plus one, which still runs).
#[test]
fn ranks_with_different_binaries_refuse_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("warpnet-other");
    let mut bytes = std::fs::read(BIN).unwrap();
    bytes.push(0);
    std::fs::write(&other, bytes).unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run = dir.path().join("run");
    let args = one_step(&run, &["--devices", "mpi"]);
    assert_refused((Path::new(BIN), &args), (&other, &args), "MPI rank 1 runs a different binary", &run);
}

#[test]
fn devices_mpi_outside_a_launcher_is_one_line() {
    let output =
        Command::new(BIN).args(one_step(Path::new("/nonexistent"), &["--devices", "mpi"])).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not started by an MPI launcher"), "{stderr}");
}

/// `warpnet bench --devices mpi` over 3 ranks ([F1],[F2],[F2'x1]) counts the bytes its messages carry;
/// they match the analytic volume, which matches a count by hand.
///
/// By hand, WarpNet1-13-1 (K = 2, Nwarp = 1, kw = 1) at batch 16, two remote workers: activations
/// 4 crossings x 16 images x (16x32x32 + 32x16x16 + 64x8x8 = 28,672 elements) x 4 bytes (fp32) =
/// 7,340,032 bytes per worker; each holds unit 2 of every stage, 18C^2 + 6C parameters at C = 16, 32,
/// 64 (two 3x3 convolutions, three BatchNorms) = 97,440 floats, sent as gradients and back with the
/// step: 2 x 389,760 bytes per worker. Total 2 x (7,340,032 + 779,520) = 16,239,104 bytes. Measured
/// adds the messages' headers (names, shapes: a few kB) and lacks the gradients of unit 2's BatchNorm
/// from the F2'x1 worker, whose term does not use them (2 x 6 x 112 x 4 bytes); 1% covers both.
///
/// Per rank, the activations go by the replica group's collectives: x1 and the upstream gradient by
/// broadcast (rank 0 hands over each buffer once, each worker receives it), the sums by reduction
/// (every rank hands over its part, rank 0 receives the sum): a crossing's buffer X = 1,835,008 bytes
/// (a quarter of 7,340,032) moves 3 times at rank 0 and twice at each worker, per direction of the
/// step. Rank 0: 2 x 3X + the gradients of both workers, 2 x 2 x 389,760 = 12,569,088 bytes; each
/// worker: 2 x 2X + 2 x 389,760 = 8,119,552 bytes.
#[test]
fn bench_over_ranks_moves_the_predicted_bytes() {
    bench_over_ranks("fp32", 16_239_104.0, [12_569_088.0, 8_119_552.0]);
}

/// The same under bf16 mixed precision: the activations cross in bf16, 2 bytes each (3,670,016 bytes
/// per worker), the gradients stay fp32 master gradients: 2 x (3,670,016 + 779,520) = 8,899,072 bytes;
/// per rank (X = 917,504), 6X + 1,559,040 = 7,064,064 at rank 0 and 4X + 779,520 = 4,449,536 at each
/// worker (the sums reduced in bf16 too).
#[test]
fn bench_over_ranks_in_bf16_moves_half_the_activation_bytes() {
    bench_over_ranks("bf16", 8_899_072.0, [7_064_064.0, 4_449_536.0]);
}

/// `warpnet bench --devices mpi` over `ranks` ranks with `args` (the model, the batch), a network of
/// one warp layer per stage and width 1, in `precision`, for 1 round of 2 steps: its stdout and the
/// JSON of its last line.
pub(super) fn bench_over(ranks: usize, args: &[&str], precision: &str) -> (String, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let common = ["--nwarp", "1", "--width", "1", "--devices", "mpi", "--steps", "2", "--rounds", "1"];
    let rest = ["--warmup", "1", "--json", "--precision", precision, "--out", &out];
    let output = run(&mut mpirun(ranks, &[&["bench"][..], args, &common, &rest].concat()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let json = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    (stdout, json)
}

/// The bench over 3 ranks in `precision`: the job's bytes against `by_hand`, rank 0's and each
/// worker's against `[home, worker]`.
fn bench_over_ranks(precision: &str, by_hand: f64, [home, worker]: [f64; 2]) {
    let model = ["--model", "warp", "--k", "2", "--batch", "16"];
    // fp32 also predicts each run's step, over the ranks with the link measured to rank 1.
    let predict: &[&str] = if precision == "fp32" { &["--predict"] } else { &[] };
    let (stdout, json) = bench_over(3, &[&model[..], predict].concat(), precision);
    let over_ranks = &json["runs"][1];
    assert_eq!(over_ranks["layout"], "[F1],[F2],[F2'x1]", "{stdout}");
    let traffic = &over_ranks["traffic"];
    let predicted = traffic["predicted_bytes"].as_f64().unwrap();
    assert_eq!(predicted, by_hand, "the analytic volume against the count by hand");
    let measured = traffic["bytes"].as_f64().unwrap();
    assert!((measured - predicted).abs() <= 0.01 * predicted, "measured {measured} vs predicted {predicted}");
    assert!(stdout.contains("MB moved per step"), "the table shows the traffic:\n{stdout}");
    let rank_bytes: Vec<f64> =
        traffic["rank_bytes"].as_array().unwrap().iter().map(|b| b.as_f64().unwrap()).collect();
    assert_eq!(rank_bytes.len(), 3, "one figure per rank: {traffic}");
    for (r, (&got, expected)) in rank_bytes.iter().zip([home, worker, worker]).enumerate() {
        assert!((got - expected).abs() <= 0.01 * expected, "rank {r}: {got} vs {expected} by hand");
    }
    if precision == "fp32" {
        assert!(stdout.contains("MPI link to rank 1, measured: "), "{stdout}");
        let predicted_ms = over_ranks["predicted_ms"].as_f64().unwrap();
        assert!(predicted_ms.is_finite() && predicted_ms > 0.0, "{over_ranks}");
    }
    // Each rank holds only its units: every term worker's weights are a part of the whole network's.
    let whole = json["runs"][0]["memory"][0]["weights"].as_f64().unwrap();
    let devices = over_ranks["memory"].as_array().unwrap();
    assert_eq!(devices.len(), 4, "home and three term workers");
    for (g, device) in devices.iter().skip(1).enumerate() {
        let name = device["device"].as_str().unwrap();
        assert!(name.contains(&format!("rank {g}")), "worker {} runs on rank {g}: {name}", g + 1);
        assert!(device["weights"].as_f64().unwrap() < 0.6 * whole, "{name} holds more than its units");
    }
}
