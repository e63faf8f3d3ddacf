//! Training: SGD steps over augmented batches, an evaluation on the test split after every epoch, one
//! metrics line and one checkpoint per epoch (and every `checkpoint_every` within one), and the final
//! weights in the run folder (the phases: session.rs). A run interrupted (Ctrl-C, SIGTERM, or killed)
//! continues from its last checkpoint with `--resume` and ends with the same weights, bit for bit on
//! CPU, as if it had never stopped.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device};

use super::checkpoint::Checkpoint;
use super::config::TrainConfig;
use super::progress::Verbosity;
use super::session::Session;
use crate::data::Splits;
use crate::precision::{Precision, PrecisionSetting};

/// The figures of a finished run (the `--json` line of `warpnet train`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub model: String,
    pub data: String,
    pub parameters: i64,
    pub epochs: usize,
    pub steps: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_error: f64,
    pub test_accuracy: f64,
    /// Seconds spent in training steps (evaluation excluded), over all sessions of the run.
    pub train_seconds: f64,
    pub images_per_s: f64,
    /// What the training steps computed in.
    pub precision: Precision,
    pub out: PathBuf,
}

/// Training stopped by Ctrl-C (SIGINT) or a scheduler's SIGTERM after saving a checkpoint.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted by {} at step {step}; checkpoint {checkpoint} saved; continue with `{launcher}warpnet train --resume {run}`",
    signal_name(*signal)
)]
pub struct Interrupted {
    /// The signal's number: `warpnet` exits with 128 + it, as a shell reports a process it killed.
    pub signal: i32,
    pub step: usize,
    pub checkpoint: PathBuf,
    pub run: PathBuf,
    /// "mpirun -np N " for a job over MPI ranks, else empty.
    pub launcher: String,
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "Ctrl-C (SIGINT)",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// The signal that asked training to stop, 0 while none has; the loop checks it after every step.
pub(super) fn interrupt() -> &'static Arc<AtomicUsize> {
    static SIGNAL: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    SIGNAL.get_or_init(|| {
        let signal = Arc::new(AtomicUsize::new(0));
        for number in [libc::SIGINT, libc::SIGTERM] {
            // Fails only for a signal that cannot be caught; these two can.
            let _ = signal_hook::flag::register_usize(number, signal.clone(), number as usize);
        }
        signal
    })
}

/// Trains from scratch as `config` says, writing config.toml, metrics.jsonl, checkpoints/ and
/// model.safetensors to `out_dir` (created if needed).
pub fn train(
    config: &TrainConfig,
    splits: Splits,
    out_dir: &Path,
    verbosity: Verbosity,
) -> anyhow::Result<RunSummary> {
    if out_dir.join("config.toml").exists() {
        crate::bail_input!(
            "--out {}: holds a run already (continue it with --resume, or choose another folder)",
            out_dir.display()
        );
    }
    run(config, splits, out_dir, verbosity, None)
}

/// Continues the run in `run_dir` from its newest checkpoint, with the configuration it was started with.
pub fn resume(
    run_dir: &Path,
    splits: Splits,
    checkpoint: Checkpoint,
    verbosity: Verbosity,
) -> anyhow::Result<RunSummary> {
    if splits.train.classes != checkpoint.sidecar.classes {
        crate::bail_input!(
            "--resume {}: the data has {} classes, the checkpoint {}",
            run_dir.display(),
            splits.train.classes,
            checkpoint.sidecar.classes
        );
    }
    let config = checkpoint.sidecar.config.clone();
    run(&config, splits, run_dir, verbosity, Some(checkpoint))
}

fn run(
    config: &TrainConfig,
    splits: Splits,
    out_dir: &Path,
    verbosity: Verbosity,
    from: Option<Checkpoint>,
) -> anyhow::Result<RunSummary> {
    let mut session = Session::start(config, splits, out_dir, verbosity, from)?;
    while session.position.step < session.total_steps {
        session.epoch()?;
    }
    session.finish()
}

/// The trainer evaluates on the CPU: in the run's precision when the run trains there, and when it
/// trains on GPUs, in bf16 only if the CPU computes bf16 natively (emulated bf16 is many times slower).
pub(super) fn evaluation_precision(run: Precision, devices: Option<&crate::parallel::Devices>) -> Precision {
    let on_cpu = devices.is_none_or(|d| d.workers.iter().all(|w| *w == Device::Cpu));
    if on_cpu {
        return run;
    }
    match PrecisionSetting::Auto.resolve(&[Device::Cpu]).precision {
        Precision::Bf16 => run,
        Precision::Fp32 => Precision::Fp32,
    }
}

/// Trainable parameters (BatchNorm running statistics excluded).
pub fn parameter_count(vs: &VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}
