//! Test-set evaluation: mean cross-entropy and error of the network in eval mode.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Reduction};

use crate::data::augment::Standardizer;
use crate::data::loader::{EpochPlan, Loader};
use crate::data::Dataset;
use crate::model::Net;

/// `ignore_index` that matches no label (every image counts).
const IGNORE_NONE: i64 = -100;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean cross-entropy over the set.
    pub loss: f64,
    /// Fraction misclassified (top-1).
    pub error: f64,
    pub images: usize,
}

/// Evaluates `net` (BatchNorm with running statistics) on every image of `data`, no augmentation.
pub fn evaluate(
    net: &Net,
    data: &Arc<Dataset>,
    standardizer: Standardizer,
    batch: usize,
    device: Device,
) -> Evaluation {
    let plan = EpochPlan::evaluation(data.len(), batch);
    let mut loss_sum = 0.0;
    let mut correct = 0i64;
    tch::no_grad(|| {
        for batch in Loader::spawn(data.clone(), standardizer, plan) {
            let images = batch.images.to_device(device);
            let labels = batch.labels.to_device(device);
            let logits = net.forward(&images, false);
            loss_sum += logits
                .cross_entropy_loss::<tch::Tensor>(&labels, None, Reduction::Sum, IGNORE_NONE, 0.0)
                .double_value(&[]);
            correct += logits.argmax(-1, false).eq_tensor(&labels).sum(Kind::Int64).int64_value(&[]);
        }
    });
    let images = data.len().max(1);
    Evaluation {
        loss: loss_sum / images as f64,
        error: 1.0 - correct as f64 / images as f64,
        images: data.len(),
    }
}
