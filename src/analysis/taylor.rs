//! `warpnet analyze taylor`: how far a warp layer's expansion is from the K sequential units it stands
//! for (paper eq. 2-3: exact up to O(eps^2), and "almost exactly" for trained ReLU networks).
//!
//! For every block of K consecutive units of every stage, on real images in eval mode:
//!   relative error = ||x1 + sum of terms - x_{K+1}|| / ||x_{K+1} - x1||,
//! the sequential output x_{K+1} computed unit after unit. For the `exact` variant this is the whole
//! neglected part (second and higher orders). BN in eval mode is affine and the ReLU piecewise linear,
//! so that part comes only from ReLU masks that differ between x1 and the input a unit really sees:
//! `mask flips` is the fraction of mask entries of units 2..K that differ.

use serde::Serialize;
use tch::{Kind, Tensor};

use super::block::{relative, Sequential};
use crate::model::config::{DerivativeBn, Variant};

/// One (K, variant, stage): means over the stage's blocks.
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

/// Rows for every K in `ks` that fits a stage and every variant, stage by stage.
pub fn taylor(
    seq: &Sequential,
    images: &Tensor,
    ks: &[usize],
    variants: &[Variant],
    derivative_bn: DerivativeBn,
) -> Vec<TaylorRow> {
    let trace = seq.trace(images);
    let mut rows = Vec::new();
    for &k in ks.iter().filter(|&&k| k <= seq.units()) {
        for &variant in variants {
            for (s, xs) in trace.iter().enumerate() {
                let firsts: Vec<usize> =
                    (0..seq.units()).step_by(k).filter(|f| f + k <= seq.units()).collect();
                let (mut error, mut flips) = (0.0, 0.0);
                for &first in &firsts {
                    let block = seq.block(s, first, k, variant, derivative_bn);
                    let (x1, out) = (&xs[first], &xs[first + k]);
                    let warp = block.term_values(x1).into_iter().fold(x1.shallow_clone(), |sum, t| sum + t);
                    error += relative(&(warp - out), &(out - x1));
                    flips += mask_flips(&block.layer, x1, &xs[first..first + k]);
                }
                let n = firsts.len() as f64;
                rows.push(TaylorRow {
                    k,
                    variant: variant.to_string(),
                    stage: s + 1,
                    blocks: firsts.len(),
                    relative_error: error / n,
                    mask_flips: flips / n,
                });
            }
        }
    }
    rows
}

/// Fraction of ReLU mask entries of units 2..K (of `layer`) that differ between their masks at x1 and
/// at their real inputs `inputs[c]` (inputs[0] = x1).
pub fn mask_flips(layer: &crate::model::warp::WarpLayer, x1: &Tensor, inputs: &[Tensor]) -> f64 {
    if inputs.len() < 2 {
        return 0.0;
    }
    tch::no_grad(|| {
        let mask = |c: usize, x: &Tensor| {
            let pass = layer.unit(c).primal(x, false, false, Some(DerivativeBn::None));
            pass.linearization.expect("linearised").relu_mask
        };
        let flips: f64 = (1..inputs.len())
            .map(|c| mask(c, x1).ne_tensor(&mask(c, &inputs[c])).to_kind(Kind::Double).mean(Kind::Double))
            .map(|t| t.double_value(&[]))
            .sum();
        flips / (inputs.len() - 1) as f64
    })
}
