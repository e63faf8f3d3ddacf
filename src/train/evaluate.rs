//! Test-set evaluation of the network in eval mode: mean cross-entropy, top-1 and top-5 error, and the
//! error of each class.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use crate::data::augment::Standardizer;
use crate::data::loader::{EpochPlan, Loader};
use crate::data::Dataset;
use crate::model::{loss, Net};
use crate::precision::{Precision, PrecisionSetting, Workload};

/// The k of the top-k error (ImageNet's convention, the paper's Table 4).
pub const TOP_K: i64 = 5;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean cross-entropy over the set.
    pub loss: f64,
    /// Fraction misclassified (top-1).
    pub error: f64,
    /// Fraction whose label is not among the 5 highest logits (top-1 error when there are <= 5 classes).
    pub top5_error: f64,
    /// Top-1 error of each class (NaN for a class with no image in the set).
    pub per_class_error: Vec<f64>,
    pub images: usize,
}

/// Evaluates `net` (BatchNorm with running statistics) on every image of `data`, no augmentation, its
/// forward passes in `precision`.
pub fn evaluate(
    net: &Net,
    data: &Arc<Dataset>,
    standardizer: Standardizer,
    batch: usize,
    device: Device,
    precision: Precision,
) -> Evaluation {
    let plan = EpochPlan::evaluation(data.len(), batch);
    let classes = data.classes as i64;
    let k = TOP_K.min(classes);
    let mut loss_sum = 0.0;
    let mut top1 = 0i64;
    let mut topk = 0i64;
    // Per class: images, and images classified correctly.
    let mut counts = vec![0usize; data.classes];
    let mut correct = vec![0usize; data.classes];
    tch::no_grad(|| {
        for batch in Loader::spawn(data.clone(), standardizer, plan) {
            let labels = batch.labels.to_device(device); // (B,)
            let images = precision.input(&batch.images.to_device(device));
            let logits = net.forward(&images, false); // (B, classes)
            loss_sum += loss::cross_entropy_sum(&logits, &labels).double_value(&[]);
            let hit = logits.argmax(-1, false).eq_tensor(&labels); // (B,)
            top1 += hit.sum(Kind::Int64).int64_value(&[]);
            let (_, best) = logits.topk(k, -1, true, false); // (B, k)
            topk += best.eq_tensor(&labels.unsqueeze(1)).any_dim(1, false).sum(Kind::Int64).int64_value(&[]);
            let labels: Vec<i64> = Vec::try_from(labels.to_device(Device::Cpu)).expect("int64 labels");
            let hit: Vec<bool> = Vec::try_from(hit.to_device(Device::Cpu)).expect("bool hits");
            for (&label, &hit) in labels.iter().zip(&hit) {
                counts[label as usize] += 1;
                correct[label as usize] += usize::from(hit);
            }
        }
    });
    let images = data.len().max(1) as f64;
    Evaluation {
        loss: loss_sum / images,
        error: 1.0 - top1 as f64 / images,
        top5_error: 1.0 - topk as f64 / images,
        per_class_error: counts
            .iter()
            .zip(&correct)
            .map(|(&n, &c)| if n == 0 { f64::NAN } else { 1.0 - c as f64 / n as f64 })
            .collect(),
        images: data.len(),
    }
}

/// The trainer evaluates on the CPU: in the run's precision when the run trains there, and when it
/// trains on GPUs, in bf16 only if `auto` would pick it for `workload` on the CPU (emulated bf16 is many
/// times slower).
pub(super) fn evaluation_precision(
    run: Precision,
    devices: Option<&crate::runtime::Devices>,
    workload: Workload,
) -> Precision {
    let on_cpu = devices.is_none_or(|d| d.workers().iter().all(|w| *w == Device::Cpu));
    if on_cpu {
        return run;
    }
    match PrecisionSetting::Auto.resolve(&[Device::Cpu], workload).precision {
        Precision::Bf16 => run,
        Precision::Fp32 => Precision::Fp32,
    }
}
