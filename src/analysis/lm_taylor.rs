//! `warpnet lm taylor`: how far a language model's warp layers are from the K sequential sublayers they
//! stand for, on real text, layer by layer: the transformer's counterpart of `analyze taylor`.
//!
//! The trained weights run as the sequential model (the standard GPT block: every sublayer its own
//! residual step), recording the stream x_i before every sublayer. Each group of K consecutive
//! sublayers is then regrouped as one warp layer of each variant, fed the sequential x1, and compared
//! with the sequential x_{K+1}:
//!   relative error = ||x1 + sum of terms - x_{K+1}|| / ||x_{K+1} - x1||.
//! For `parallel` this is everything the parallel block drops (the F'_j F_i terms and all higher
//! orders); for `exact`, the second and higher orders alone. Unlike a ReLU network, LayerNorm, the
//! softmax and GELU curve everywhere, so even `exact` leaves a remainder; and since LayerNorm ignores
//! its input's scale, LN'(x) x = 0 up to its epsilon, so warpnet1's F'_j(x1) x1 terms all but vanish
//! in a pre-LN block.

use serde::Serialize;
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::block::relative;
use crate::base::named::{assign_variables, Named};
use crate::model::transformer::{LmConfig, LmVariant};
use crate::model::Net;

/// One warp layer of one variant.
#[derive(Debug, Clone, Serialize)]
pub struct LayerRow {
    pub k: usize,
    pub variant: String,
    /// 1-based warp layer, and 1-based first sublayer of it (odd: attention; even: MLP).
    pub layer: usize,
    pub first_sublayer: usize,
    /// ||warp - sequential|| / ||sequential - x1||.
    pub relative_error: f64,
    /// ||sequential - x1|| / ||x1||: how far the K sublayers move the stream, the size the expansion
    /// assumes small.
    pub step: f64,
}

/// `model` with `weights` (named by block, whatever the variant and K), on the CPU, in the weights'
/// kind (float64 weights: a float64 network).
fn with_weights(model: &LmConfig, weights: &Named) -> (VarStore, Net) {
    let mut vs = VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), model);
    if weights.values().next().is_some_and(|w| w.kind() == Kind::Double) {
        vs.double();
    }
    assign_variables(&vs, weights);
    (vs, net)
}

/// The stream before every sublayer of the sequential model and after the last: 2N + 1 tensors of
/// (B, T, D), on `tokens` (B, T).
fn sequential_trace(model: &LmConfig, weights: &Named, tokens: &Tensor) -> Vec<Tensor> {
    let (_vs, sequential) =
        with_weights(&LmConfig { variant: LmVariant::Sequential, ..model.clone() }, weights);
    let mut trace = Vec::new();
    let last = sequential.walk(tokens, false, |_, layer, h| {
        trace.push(h.shallow_clone());
        layer.forward(&h, false)
    });
    trace.push(last);
    trace
}

/// One row per warp layer of `model` with `weights`, for every K in `ks` that divides the sublayers and
/// every variant of `variants`, ordered by K, then variant, then layer.
pub fn layers(
    model: &LmConfig,
    weights: &Named,
    tokens: &Tensor,
    ks: &[usize],
    variants: &[LmVariant],
) -> Vec<LayerRow> {
    tch::no_grad(|| {
        let trace = sequential_trace(model, weights, tokens);
        let sublayers = trace.len() - 1;
        let mut rows = Vec::new();
        for &k in ks.iter().filter(|&&k| k >= 2 && sublayers.is_multiple_of(k)) {
            for &variant in variants {
                let (_vs, grouped) = with_weights(&LmConfig { variant, k, ..model.clone() }, weights);
                let mut index = 0;
                let _head_input = grouped.walk(tokens, false, |_, layer, h| {
                    let (x1, out) = (&trace[index * k], &trace[(index + 1) * k]);
                    let warp = layer.forward(x1, false);
                    rows.push(LayerRow {
                        k,
                        variant: format!("{variant:?}").to_lowercase(),
                        layer: index + 1,
                        first_sublayer: index * k + 1,
                        relative_error: relative(&(warp - out), &(out - x1)),
                        step: relative(&(out - x1), x1),
                    });
                    index += 1;
                    h // the walk's own stream is not used
                });
            }
        }
        rows
    })
}
