//! Training: SGD steps over augmented batches, an evaluation on the test split after every epoch, one
//! metrics line and one checkpoint per epoch (and every `checkpoint_every` within one), and the final
//! weights in the run folder (the phases: session.rs). A run interrupted (Ctrl-C, SIGTERM, or killed)
//! continues from its last checkpoint with `--resume` and ends with the same weights, bit for bit on
//! CPU, as if it had never stopped.

use std::path::Path;

use super::checkpoint::Checkpoint;
use super::config::TrainConfig;
pub use super::outcome::{parameter_count, Interrupted, RunSummary};
use super::progress::Verbosity;
use super::run_folder::WriterLock;
use super::session::Session;
use crate::data::Splits;

/// Trains from scratch as `config` says, writing config.toml, metrics.jsonl, checkpoints/ and
/// model.safetensors to `out_dir` (created if needed).
pub fn train(
    config: &TrainConfig,
    splits: Splits,
    out_dir: &Path,
    verbosity: Verbosity,
) -> anyhow::Result<RunSummary> {
    if out_dir.join(super::run_folder::CONFIG).exists() {
        crate::bail_input!(
            "--out {}: holds a run already (continue it with --resume, or choose another folder)",
            out_dir.display()
        );
    }
    // `auto` resolved here unless the caller did (the CLI does, to print it before reading the data).
    let config = config.clone().with_auto_placement()?;
    run(&config, splits, out_dir, verbosity, None)
}

/// Continues the run in `run_dir` from its newest checkpoint, with the configuration it was started
/// with; `lock` is the folder's, taken before the checkpoint was chosen
/// ([`WriterLock::acquire_for_resume`]).
pub fn resume(
    run_dir: &Path,
    splits: Splits,
    (checkpoint, lock): (Checkpoint, WriterLock),
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
    run(&config, splits, run_dir, verbosity, Some((checkpoint, lock)))
}

fn run(
    config: &TrainConfig,
    splits: Splits,
    out_dir: &Path,
    verbosity: Verbosity,
    from: Option<(Checkpoint, WriterLock)>,
) -> anyhow::Result<RunSummary> {
    let mut session = Session::start(config, splits, out_dir, verbosity, from)?;
    while session.position.step < session.total_steps {
        session.epoch()?;
    }
    session.finish()
}
