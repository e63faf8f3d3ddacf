//! What a run shows while it goes: a progress bar per epoch (on a terminal) and one line per epoch.

use indicatif::{ProgressBar, ProgressStyle};

use super::metrics::EpochRecord;

/// How a run reports while it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// A progress bar (on a terminal) and one line per epoch on stdout.
    Normal,
    /// Nothing but errors (tests).
    Quiet,
}

/// The bar of one epoch of `steps` steps (hidden when quiet; indicatif hides it off a terminal).
pub fn epoch_bar(verbosity: Verbosity, steps: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if verbosity == Verbosity::Quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}

/// The bar of a run of `steps` steps counted as one (a language model's; hidden when quiet).
pub fn steps_bar(verbosity: Verbosity, steps: usize) -> ProgressBar {
    if verbosity == Verbosity::Quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("step [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

/// The one line of a finished epoch.
pub fn print_epoch(verbosity: Verbosity, record: &EpochRecord, epochs: usize) {
    if verbosity == Verbosity::Quiet {
        return;
    }
    println!(
        "epoch {:>3}/{epochs}  lr {:<7.4}  train loss {:.4} acc {:5.2}%  test loss {:.4} error {:5.2}%  {:6.1} s  {:5.0} img/s  data wait {:.1}%",
        record.epoch,
        record.lr,
        record.train_loss,
        100.0 * record.train_accuracy,
        record.test_loss,
        100.0 * record.test_error,
        record.seconds,
        record.images_per_s,
        100.0 * record.data_wait_seconds / record.seconds.max(f64::MIN_POSITIVE)
    );
}
