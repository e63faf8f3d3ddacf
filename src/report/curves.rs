//! Learning curves read from run folders: one metric of `metrics.jsonl` against epoch
//! ([`crate::train::metrics::EpochRecord`] per line), or a language model's validation bits per byte
//! against step, split where a value is missing.

use std::path::Path;

use crate::error::input_error;
use crate::train::lm::LmRecord;
use crate::train::metrics::{parse_records, EpochRecord};
use crate::train::run_folder::METRICS;

/// Which figure of `metrics.jsonl` to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Metric {
    /// Test error in percent (`test_error`).
    #[default]
    TestError,
    /// Mean training loss over the epoch (`train_loss`).
    TrainLoss,
    /// Test loss (`test_loss`).
    TestLoss,
    /// Training error in percent (1 - `train_accuracy`; augmented images, training mode).
    TrainError,
}

impl Metric {
    /// The y axis label.
    pub fn axis_label(self) -> &'static str {
        match self {
            Metric::TestError => "test error (%)",
            Metric::TrainLoss => "training loss",
            Metric::TestLoss => "test loss",
            Metric::TrainError => "training error (%)",
        }
    }

    /// The metrics.jsonl key of the figure the metric is drawn from (named in messages).
    pub fn field(self) -> &'static str {
        match self {
            Metric::TestError => "test_error",
            Metric::TrainLoss => "train_loss",
            Metric::TestLoss => "test_loss",
            Metric::TrainError => "train_accuracy",
        }
    }

    /// The plotted value of an epoch's record.
    fn plotted(self, record: &EpochRecord) -> f64 {
        match self {
            Metric::TestError => 100.0 * record.test_error,
            Metric::TrainError => 100.0 * (1.0 - record.train_accuracy),
            Metric::TrainLoss => record.train_loss,
            Metric::TestLoss => record.test_loss,
        }
    }
}

/// One run's curve: its label and its (epoch, plotted value) points by epoch, in segments split where a
/// value is missing (a non-finite loss is stored as `null`).
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    pub label: String,
    pub segments: Vec<Vec<(u32, f64)>>,
}

impl Curve {
    /// Every point, in order.
    pub fn points(&self) -> impl Iterator<Item = (u32, f64)> + '_ {
        self.segments.iter().flatten().copied()
    }
}

/// Reads `dir/metrics.jsonl` and returns the metric's curve, labelled with the folder name.
///
/// A line whose epoch is not above the previous one starts the history again from that epoch (a run
/// restarted or resumed into the same folder appends to the file): the records it supersedes are
/// dropped. A value stored as `null` (a non-finite loss) leaves a gap. Blank lines are skipped.
pub fn read_curve(dir: &Path, metric: Metric) -> anyhow::Result<Curve> {
    let (path, text) = metrics_text(dir)?;
    let mut records: Vec<(u32, Option<f64>)> = Vec::new();
    for (line, record) in parse_records::<EpochRecord>(&text) {
        let at = || format!("{} line {line}", path.display());
        let record = record.map_err(|err| {
            // serde's own "at line 1 column C" would contradict the file's line number.
            let what = err.to_string();
            let what = what.split(" at line ").next().unwrap_or_default();
            let field = metric.field();
            input_error(format!(
                "{}: not a metrics record with \"{field}\" ({what} at column {})",
                at(),
                err.column()
            ))
        })?;
        let epoch = match u32::try_from(record.epoch) {
            Ok(epoch) if epoch >= 1 => epoch,
            _ => crate::bail_input!("{}: no \"epoch\" (a positive whole number)", at()),
        };
        records.retain(|(e, _)| *e < epoch);
        records.push((epoch, Some(metric.plotted(&record)).filter(|v| v.is_finite())));
    }
    if records.is_empty() {
        crate::bail_input!("{}: empty (no epoch recorded yet)", path.display());
    }
    Ok(Curve { label: folder_name(dir), segments: segments(records) })
}

/// The metrics log of the run folder `dir`: its path and text; one line naming what is missing.
fn metrics_text(dir: &Path) -> anyhow::Result<(std::path::PathBuf, String)> {
    if !dir.exists() {
        crate::bail_input!("{}: no such run folder", dir.display());
    }
    if !dir.is_dir() {
        crate::bail_input!(
            "{}: not a folder (give the run folder written by `warpnet train`)",
            dir.display()
        );
    }
    let path = dir.join(METRICS);
    if !path.is_file() {
        crate::bail_input!("{}: missing (not a run folder written by `warpnet train`?)", path.display());
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|err| input_error(format!("{}: cannot read: {err}", path.display())))?;
    Ok((path, text))
}

/// A language model's validation bits per byte against step, from `dir/metrics.jsonl`
/// ([`LmRecord`] per line), labelled with the folder name; a missing value leaves a gap.
pub fn read_lm_curve(dir: &Path) -> anyhow::Result<Curve> {
    let (path, text) = metrics_text(dir)?;
    let mut records: Vec<(u32, Option<f64>)> = Vec::new();
    for (line, record) in parse_records::<LmRecord>(&text) {
        let record = record.map_err(|e| {
            input_error(format!(
                "{} line {line}: not a language model's metrics record ({e})",
                path.display()
            ))
        })?;
        let step = u32::try_from(record.step).unwrap_or(u32::MAX);
        records.retain(|(s, _)| *s < step);
        records.push((step, Some(record.validation_bits_per_byte).filter(|v| v.is_finite())));
    }
    if records.is_empty() {
        crate::bail_input!("{}: empty (no evaluation recorded yet)", path.display());
    }
    Ok(Curve { label: folder_name(dir), segments: segments(records) })
}

/// Points in order, split into segments where a value is missing.
fn segments(records: Vec<(u32, Option<f64>)>) -> Vec<Vec<(u32, f64)>> {
    let mut segments: Vec<Vec<(u32, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (epoch, value) in records {
        match value {
            Some(v) => current.push((epoch, v)),
            None if !current.is_empty() => segments.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

/// The last component of `dir`, resolving `.` and `..`; the path itself where there is none.
fn folder_name(dir: &Path) -> String {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    name(dir)
        .filter(|n| n != "." && n != "..")
        .or_else(|| std::fs::canonicalize(dir).ok().as_deref().and_then(name))
        .unwrap_or_else(|| dir.display().to_string())
}
