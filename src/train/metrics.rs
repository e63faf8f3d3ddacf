//! A run's figures, written one JSON object per line to metrics.jsonl in the run folder: the WRN's
//! per epoch ([`EpochRecord`]), the language model's per evaluation (train/lm.rs); the log is the
//! same for both.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// One epoch's figures. A non-finite figure (a diverged loss) is written as `null` (serde_json's form
/// of NaN) and read back as NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Optimizer steps taken so far.
    pub step: usize,
    #[serde(deserialize_with = "nan_from_null")]
    pub lr: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub train_loss: f64,
    /// Fraction of training images classified correctly (augmented, in training mode).
    #[serde(deserialize_with = "nan_from_null")]
    pub train_accuracy: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub test_loss: f64,
    /// Fraction of test images misclassified.
    #[serde(deserialize_with = "nan_from_null")]
    pub test_error: f64,
    /// Wall-clock seconds of this epoch's training steps (evaluation excluded).
    #[serde(deserialize_with = "nan_from_null")]
    pub seconds: f64,
    /// Training images per second over this epoch.
    #[serde(deserialize_with = "nan_from_null")]
    pub images_per_s: f64,
    /// Of `seconds`, the time spent waiting for the background loader (0 when loading is hidden
    /// behind compute).
    #[serde(default)]
    pub data_wait_seconds: f64,
}

/// A line of a metrics log: its records are kept up to a checkpoint's step on resume.
pub trait Record: Serialize + DeserializeOwned {
    /// Optimizer steps taken when it was written.
    fn step(&self) -> usize;
}

impl Record for EpochRecord {
    fn step(&self) -> usize {
        self.step
    }
}

/// A figure as written: a number, or `null` for one that was not finite.
pub fn nan_from_null<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
}

/// The records of a metrics file's text, each with its 1-based line number; blank lines are skipped.
pub fn parse_records<T: DeserializeOwned>(
    text: &str,
) -> impl Iterator<Item = (usize, serde_json::Result<T>)> + '_ {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| (i + 1, serde_json::from_str(line)))
}

/// Appends records to a JSONL file, flushing each line.
pub struct MetricsLog {
    file: File,
}

impl MetricsLog {
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}: cannot open metrics log", path.display()))?;
        Ok(MetricsLog { file })
    }

    /// The records of an existing log (none if there is no file); a malformed line is an input error
    /// naming the file and the line.
    pub fn read<T: Record>(path: &Path) -> anyhow::Result<Vec<T>> {
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        parse_records(&text)
            .map(|(line, record)| {
                record.map_err(|e| {
                    crate::error::input_error(format!(
                        "{}: line {line}: not a metrics record: {e}",
                        path.display()
                    ))
                })
            })
            .collect()
    }

    /// The records of `path` (none if it does not exist) and, where its last line does not read (an
    /// append cut short by a crash), that line's number: it is left out. A line before the last that
    /// does not read is an error, as in [`MetricsLog::read`].
    pub fn read_tolerating_a_torn_end<T: Record>(path: &Path) -> anyhow::Result<(Vec<T>, Option<usize>)> {
        if !path.exists() {
            return Ok((Vec::new(), None));
        }
        let text =
            std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let mut parsed: Vec<(usize, serde_json::Result<T>)> = parse_records(&text).collect();
        let torn = match parsed.last() {
            Some((line, Err(_))) => Some(*line),
            _ => None,
        };
        if torn.is_some() {
            parsed.pop();
        }
        let records = parsed
            .into_iter()
            .map(|(line, record)| {
                record.map_err(|e| {
                    crate::error::input_error(format!(
                        "{}: line {line}: not a metrics record: {e}",
                        path.display()
                    ))
                })
            })
            .collect::<anyhow::Result<Vec<T>>>()?;
        Ok((records, torn))
    }

    /// Replaces the log with exactly `records`, atomically.
    pub fn rewrite<T: Record>(path: &Path, records: &[T]) -> anyhow::Result<()> {
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r)?);
            text.push('\n');
        }
        crate::base::atomic_file::write_atomic(path, text.as_bytes())
    }

    pub fn append<T: Record>(&mut self, record: &T) -> anyhow::Result<()> {
        let line = serde_json::to_string(record)?;
        writeln!(self.file, "{line}")?;
        self.file.flush()?;
        Ok(())
    }
}

/// The metrics of the run up to step `step` and the log to append to: records after the checkpoint's
/// step (written before a kill) are dropped, they will be redone, and so is a last line cut short (an
/// append a crash interrupted), with one warning.
pub fn open_metrics<T: Record>(out_dir: &Path, step: usize) -> anyhow::Result<(Vec<T>, MetricsLog)> {
    let path = out_dir.join(super::run_folder::METRICS);
    let (records, torn) = MetricsLog::read_tolerating_a_torn_end::<T>(&path)?;
    if let Some(line) = torn {
        eprintln!(
            "warning: {}: line {line} is cut short (a crash during its append); dropped",
            path.display()
        );
    }
    let records: Vec<T> = records.into_iter().filter(|r| r.step() <= step).collect();
    MetricsLog::rewrite(&path, &records)?;
    Ok((records, MetricsLog::create(&path)?))
}
