//! What a run ends with: its summary, or the signal that stopped it after a checkpoint.

use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;

use crate::precision::Precision;
use crate::runtime::Devices;

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
    "interrupted by {} at step {step}; checkpoint {checkpoint} saved; continue with `{launcher}warpnet {resume} {run}`",
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
    /// The command that resumes it, before the run folder: "train --resume", "lm resume".
    pub resume: &'static str,
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "Ctrl-C (SIGINT)",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

impl Interrupted {
    /// The stop of run `run` at `step` by `signal`, after its checkpoint `checkpoint`; `resume` goes on.
    pub fn new(
        signal: i32,
        step: usize,
        checkpoint: PathBuf,
        run: &std::path::Path,
        resume: &'static str,
    ) -> Self {
        let launcher = crate::runtime::mpi::session::running()
            .map_or(String::new(), |ranks| format!("mpirun -np {ranks} "));
        Interrupted { signal, step, checkpoint, run: run.to_path_buf(), launcher, resume }
    }
}

/// Threads, the GPUs' presence, the seed and the signal handlers: what a training process needs first.
pub(super) fn set_up_process(
    threads: Option<usize>,
    devices: Option<&Devices>,
    seed: u64,
) -> anyhow::Result<()> {
    if let Some(threads) = threads {
        tch::set_num_threads(threads as i32);
    }
    // The GPUs are checked, which loads libtorch's CUDA half, before the first seed: seeding asks
    // libtorch's CUDA hooks to seed the GPUs too, and libtorch creates those hooks once per process,
    // as stubs that report no GPU when libtorch_cuda is not loaded yet.
    if let Some(devices) = devices {
        crate::runtime::device::check_available(devices)?;
    }
    tch::manual_seed(seed as i64);
    interrupt();
    Ok(())
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

/// Trainable parameters (BatchNorm running statistics excluded).
pub fn parameter_count(vs: &VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}
