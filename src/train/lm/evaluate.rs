//! A language model's figures: the validation loss in nats and bits per byte, the metrics line of an
//! evaluation, and a finished run's summary.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::Kind;

use crate::data::text::TextBatch;
use crate::model::{loss, Net};
use crate::precision::Precision;
use crate::train::metrics::{nan_from_null, Record};

/// Mean cross-entropy (nats per byte) of `net` over every position of `batches`, its forward passes in
/// `precision`. Bits per byte are this over ln 2 (a token is a byte).
pub fn validation_loss(net: &Net, batches: &[TextBatch], precision: Precision) -> f64 {
    tch::no_grad(|| {
        let (mut sum, mut count) = (0.0, 0i64);
        for batch in batches {
            let logits = net.forward(&precision.input(&as_input(&batch.inputs)), false); // (B, T, 256)
            let targets = batch.targets.reshape([-1]); // (B T,)
            let classes = *logits.size().last().expect("logits");
            sum += loss::cross_entropy_sum(&logits.reshape([-1, classes]), &targets).double_value(&[]);
            count += targets.numel() as i64;
        }
        sum / count.max(1) as f64
    })
}

/// One evaluation's figures (a line of metrics.jsonl). A non-finite figure is written as `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LmRecord {
    /// Optimizer steps taken.
    pub step: usize,
    /// The learning rate of the last step.
    #[serde(deserialize_with = "nan_from_null")]
    pub lr: f64,
    /// Mean training loss (nats per byte) over the steps since the last evaluation.
    #[serde(deserialize_with = "nan_from_null")]
    pub train_loss: f64,
    /// Validation loss, nats per byte.
    #[serde(deserialize_with = "nan_from_null")]
    pub validation_loss: f64,
    #[serde(deserialize_with = "nan_from_null")]
    pub validation_bits_per_byte: f64,
    /// Seconds of training steps so far (evaluations excluded).
    #[serde(deserialize_with = "nan_from_null")]
    pub seconds: f64,
    /// Bytes trained on per second since the last evaluation (wall clock, evaluation included).
    #[serde(deserialize_with = "nan_from_null")]
    pub tokens_per_s: f64,
}

impl Record for LmRecord {
    fn step(&self) -> usize {
        self.step
    }
}

/// The line a run prints at each evaluation.
impl std::fmt::Display for LmRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "step {:>6}  lr {:.2e}  train loss {:.4}  validation loss {:.4} ({:.4} bits/byte)  {:7.1} s  {:6.0} tokens/s",
            self.step,
            self.lr,
            self.train_loss,
            self.validation_loss,
            self.validation_bits_per_byte,
            self.seconds,
            self.tokens_per_s
        )
    }
}

/// The figures of a finished run (the `--json` line of `warpnet lm train`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LmSummary {
    pub model: String,
    pub data: String,
    pub parameters: i64,
    pub steps: usize,
    pub train_loss: f64,
    pub validation_loss: f64,
    pub validation_bits_per_byte: f64,
    /// Seconds of training steps over every session of the run.
    pub train_seconds: f64,
    pub tokens_per_s: f64,
    pub precision: Precision,
    pub out: PathBuf,
}

/// Tokens (B, T) as the network takes them: their values in fp32 (cast on to the run's precision by
/// the step; bytes are exact in bf16).
pub fn as_input(tokens: &tch::Tensor) -> tch::Tensor {
    tokens.to_kind(Kind::Float)
}
