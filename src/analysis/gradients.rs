//! `warpnet analyze gradients`: the gradient carried by paths of each length through a block of K units
//! (Veit et al.'s experiment, paper section 2: per-path gradient norm falls as ||F'||^k).
//!
//! To first order the block's input-output Jacobian is prod_c (I + F'_c(x1)) = sum over subsets of
//! products of Jacobians, so the loss gradient g at the block's output reaches x1 as a sum over paths:
//! the path through units c1 < ... < ck carries F'_{c1}^T ... F'_{ck}^T g (length 0: g itself). Every
//! path's norm is measured; per length k their mean is fitted by ||g|| a^k (a least-squares line through
//! ln(mean norm) against k), a being the per-unit factor ||F'||.

use serde::Serialize;
use tch::{Kind, Tensor};

use super::block::Sequential;
use crate::model::config::{DerivativeBn, Variant};
use crate::model::wrn::residual_unit;
use crate::model::wrn::unit::{Linearization, ResidualUnit};

/// Per path length k.
#[derive(Debug, Clone, Serialize)]
pub struct LengthRow {
    pub length: usize,
    /// Paths of this length: C(K, k).
    pub paths: usize,
    /// Mean over those paths of the norm of the gradient each carries.
    pub mean_norm: f64,
    /// ||g|| a^k from the fit.
    pub fitted: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GradientFit {
    pub k: usize,
    /// 1-based stage and first unit of the block.
    pub stage: usize,
    pub first_unit: usize,
    /// The fitted per-unit factor a = ||F'||.
    pub factor: f64,
    /// R^2 of the fit of ln(mean norm) against k.
    pub r_squared: f64,
    pub rows: Vec<LengthRow>,
}

/// dL/dx at the input of unit `unit` (0-based; `units()` is the stage's output) of stage `stage`: the
/// mean cross-entropy of `labels`, eval mode.
pub fn loss_gradient(
    seq: &Sequential,
    images: &Tensor,
    labels: &Tensor,
    stage: usize,
    unit: usize,
) -> Tensor {
    let net = &seq.net;
    let mut leaf = None;
    let mut cut = |h: Tensor| {
        let h = h.detach().set_requires_grad(true);
        leaf = Some(h.shallow_clone());
        h
    };
    // A WRN's layers are its units: the input of unit u is the output of unit u - 1, or the stage's x1.
    let h = net.walk(images, false, |at, layer, h| {
        let h = if (at.stage, at.layer, unit) == (stage, 0, 0) { cut(h) } else { h };
        let out = layer.forward(&h, false);
        if (at.stage, at.layer + 1) == (stage, unit) {
            cut(out)
        } else {
            out
        }
    });
    let loss = net.head.forward(&h, false).cross_entropy_for_logits(labels);
    let leaf = leaf.expect("the cut is inside the network");
    Tensor::run_backward(&[loss], &[&leaf], false, false).remove(0)
}

/// F'(x1)^T u: the transpose of the unit's tangent map, by backpropagating through that linear map.
pub fn tangent_transpose(unit: &ResidualUnit, at: &Linearization, u: &Tensor) -> Tensor {
    let v = u.zeros_like().set_requires_grad(true);
    let dot = (unit.tangent_with(at, &v) * u).sum(Kind::Double);
    Tensor::run_backward(&[dot], &[&v], false, false).remove(0)
}

/// The gradient each path of the block (units `first .. first + k` of `stage`) carries to x1, grouped
/// by length, and the fit.
pub fn gradients(
    seq: &Sequential,
    images: &Tensor,
    labels: &Tensor,
    stage: usize,
    first: usize,
    k: usize,
    derivative_bn: DerivativeBn,
) -> GradientFit {
    let g = loss_gradient(seq, images, labels, stage, first + k);
    let x1 = &seq.trace(images)[stage][first];
    let mut sums = vec![0.0; k + 1];
    let mut counts = vec![0usize; k + 1];
    for (subset, carried) in path_gradients(seq, x1, stage, first, k, derivative_bn, &g) {
        let length = subset.count_ones() as usize;
        sums[length] += carried.norm().double_value(&[]);
        counts[length] += 1;
    }
    let means: Vec<f64> = sums.iter().zip(&counts).map(|(s, &n)| s / n as f64).collect();
    let (intercept, slope, r_squared) = fit_line(&means.iter().map(|m| m.ln()).collect::<Vec<_>>());
    GradientFit {
        k,
        stage: stage + 1,
        first_unit: first + 1,
        factor: slope.exp(),
        r_squared,
        rows: (0..=k)
            .map(|length| LengthRow {
                length,
                paths: counts[length],
                mean_norm: means[length],
                fitted: (intercept + slope * length as f64).exp(),
            })
            .collect(),
    }
}

/// The gradient every path of the block carries from `g` (at the block's output) to its input `x1`
/// (the input of unit `first` of `stage`), the path given
/// as a bit set of the units it passes through (bit c: unit c of the block; 0: the identity path).
pub fn path_gradients(
    seq: &Sequential,
    x1: &Tensor,
    stage: usize,
    first: usize,
    k: usize,
    derivative_bn: DerivativeBn,
    g: &Tensor,
) -> Vec<(u32, Tensor)> {
    let block = seq.block(stage, first, k, Variant::Exact, derivative_bn);
    let at: Vec<Linearization> = (0..k)
        .map(|c| {
            residual_unit(block.layer.unit(c))
                .primal_with(x1, false, false, Some(derivative_bn))
                .linearization
                .expect("linearised")
        })
        .collect();
    (0u32..(1 << k))
        .map(|subset| {
            // Outermost unit first: F'_{c1}^T (... (F'_{ck}^T g)).
            let path = (0..k).rev().filter(|c| subset & (1 << c) != 0);
            let carried = path.fold(g.shallow_clone(), |u, c| {
                tangent_transpose(residual_unit(block.layer.unit(c)), &at[c], &u)
            });
            (subset, carried)
        })
        .collect()
}

/// Least-squares line y = a + b x through (0, y0), (1, y1), ...: (a, b, R^2).
pub fn fit_line(y: &[f64]) -> (f64, f64, f64) {
    let n = y.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = y.iter().sum::<f64>() / n;
    let sxy: f64 = y.iter().enumerate().map(|(x, y)| (x as f64 - mean_x) * (y - mean_y)).sum();
    let sxx: f64 = (0..y.len()).map(|x| (x as f64 - mean_x).powi(2)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let intercept = mean_y - slope * mean_x;
    let residual: f64 = y.iter().enumerate().map(|(x, y)| (y - intercept - slope * x as f64).powi(2)).sum();
    let total: f64 = y.iter().map(|y| (y - mean_y).powi(2)).sum();
    let r_squared = if total > 0.0 { 1.0 - residual / total } else { 1.0 };
    (intercept, slope, r_squared)
}
