//! `warpnet analyze taylor`: how far a warp layer's expansion is from the K sequential units it stands
//! for (paper eq. 2-3: exact up to O(eps^2), and "almost exactly" for trained ReLU networks).
//!
//! For every block of K consecutive units of every stage (every warp layer of the WarpNet with that K),
//! on real images in eval mode:
//!   relative error = ||x1 + sum of terms - x_{K+1}|| / ||x_{K+1} - x1||,
//! the sequential output x_{K+1} computed unit after unit. For the `exact` variant this is the whole
//! neglected part (second and higher orders). BN in eval mode is affine and the ReLU piecewise linear,
//! so that part comes only from ReLU masks that differ between x1 and the input a unit really sees:
//! `mask flips` is the fraction of mask entries of units 2..K that differ.

use serde::Serialize;
use tch::{Kind, Tensor};

use super::block::{relative, Sequential};
use crate::model::config::{DerivativeBn, Variant};

/// One warp layer: the K units `first_unit ..` of a stage regrouped, with one variant's terms.
#[derive(Debug, Clone, Serialize)]
pub struct LayerRow {
    pub k: usize,
    pub variant: String,
    /// 1-based stage, and 1-based first unit of the layer within it.
    pub stage: usize,
    pub first_unit: usize,
    /// ||warp - sequential|| / ||sequential - x1||.
    pub relative_error: f64,
    /// Fraction of ReLU mask entries of units 2..K that differ between x1 and the unit's real input
    /// (0 for K = 1).
    pub mask_flips: f64,
}

/// One (K, variant, stage): means over the stage's warp layers.
#[derive(Debug, Clone, Serialize)]
pub struct TaylorRow {
    pub k: usize,
    pub variant: String,
    /// 1-based stage.
    pub stage: usize,
    pub blocks: usize,
    /// Mean of ||warp - sequential|| / ||sequential - x1||.
    pub relative_error: f64,
    /// Mean fraction of ReLU mask entries of units 2..K that differ between x1 and the unit's real
    /// input (0 for K = 1).
    pub mask_flips: f64,
}

/// One row per warp layer for every K in `ks` that fits a stage and every variant: ordered by K, then
/// variant, then stage, then first unit.
pub fn layers(
    seq: &Sequential,
    images: &Tensor,
    ks: &[usize],
    variants: &[Variant],
    derivative_bn: DerivativeBn,
) -> Vec<LayerRow> {
    let trace = seq.trace(images);
    let mut rows = Vec::new();
    for &k in ks.iter().filter(|&&k| k <= seq.units()) {
        for &variant in variants {
            for (s, xs) in trace.iter().enumerate() {
                for first in (0..seq.units()).step_by(k).filter(|f| f + k <= seq.units()) {
                    let block = seq.block(s, first, k, variant, derivative_bn);
                    let (x1, out) = (&xs[first], &xs[first + k]);
                    let warp = block.term_values(x1).into_iter().fold(x1.shallow_clone(), |sum, t| sum + t);
                    rows.push(LayerRow {
                        k,
                        variant: variant.to_string(),
                        stage: s + 1,
                        first_unit: first + 1,
                        relative_error: relative(&(warp - out), &(out - x1)),
                        mask_flips: mask_flips(&block.layer, x1, &xs[first..first + k]),
                    });
                }
            }
        }
    }
    rows
}

/// Per-stage means of [`layers`]' rows: one row per run of consecutive rows of one (K, variant, stage).
pub fn per_stage(layers: &[LayerRow]) -> Vec<TaylorRow> {
    let same = |a: &LayerRow, b: &LayerRow| (a.k, &a.variant, a.stage) == (b.k, &b.variant, b.stage);
    layers
        .chunk_by(same)
        .map(|group| {
            let n = group.len() as f64;
            TaylorRow {
                k: group[0].k,
                variant: group[0].variant.clone(),
                stage: group[0].stage,
                blocks: group.len(),
                relative_error: group.iter().map(|r| r.relative_error).sum::<f64>() / n,
                mask_flips: group.iter().map(|r| r.mask_flips).sum::<f64>() / n,
            }
        })
        .collect()
}

/// Fraction of ReLU mask entries of units 2..K (of `layer`) that differ between their masks at x1 and
/// at their real inputs `inputs[c]` (inputs[0] = x1).
pub fn mask_flips(layer: &crate::model::warp::WarpLayer, x1: &Tensor, inputs: &[Tensor]) -> f64 {
    if inputs.len() < 2 {
        return 0.0;
    }
    tch::no_grad(|| {
        let mask = |c: usize, x: &Tensor| {
            let unit = crate::model::wrn::residual_unit(layer.unit(c));
            unit.primal_with(x, false, false, Some(DerivativeBn::None))
                .linearization
                .expect("linearised")
                .relu_mask
        };
        let flips: f64 = (1..inputs.len())
            .map(|c| mask(c, x1).ne_tensor(&mask(c, &inputs[c])).to_kind(Kind::Double).mean(Kind::Double))
            .map(|t| t.double_value(&[]))
            .sum();
        flips / (inputs.len() - 1) as f64
    })
}
