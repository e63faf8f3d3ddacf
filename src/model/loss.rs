//! The training loss: mean cross-entropy of the logits against the labels, and the count of images
//! classified correctly. One home for every step (single device, replicas, split homes, bench).
//!
//! The logits are widened to at least fp32 first: under bf16 mixed precision the head computes in
//! bf16, while log-softmax and the loss stay fp32 (as PyTorch's autocast keeps cross_entropy).

use tch::{Kind, Reduction, Tensor};

use super::layers::widened;

/// Mean cross-entropy of `logits` (B, classes) against `labels` (B,), in at least fp32: a scalar. A
/// sequence model's (B, T, classes) against (B, T) is the mean over every position.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Tensor {
    let classes = *logits.size().last().expect("logits");
    widened(logits).reshape([-1, classes]).cross_entropy_for_logits(&labels.reshape([-1]))
}

/// Cross-entropy of `logits` (B, classes) against `labels` (B,) summed over the batch, in at least fp32.
pub fn cross_entropy_sum(logits: &Tensor, labels: &Tensor) -> Tensor {
    /// `ignore_index` that matches no label (every image counts).
    const IGNORE_NONE: i64 = -100;
    const NO_SMOOTHING: f64 = 0.0;
    widened(logits).cross_entropy_loss::<Tensor>(labels, None, Reduction::Sum, IGNORE_NONE, NO_SMOOTHING)
}

/// Images whose highest logit is their label (ties: the first highest, as argmax; `max_dim`'s
/// indices follow the same rule and are the faster reduction on CPUs).
pub fn correct(logits: &Tensor, labels: &Tensor) -> i64 {
    let (_, highest) = logits.max_dim(-1, false);
    highest.eq_tensor(labels).sum(Kind::Int64).int64_value(&[])
}
