//! LayerNorm over the features of each token, and its tangent: the full Jacobian of the normalisation
//! (its mean and variance move with the input), or the cheaper map with the statistics held constant.

use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

use crate::model::layers::widened;

/// PyTorch's LayerNorm epsilon.
pub const LN_EPS: f64 = 1e-5;

/// How a LayerNorm enters a tangent pass F'(x1)v (`--norm-tangent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NormTangent {
    /// The Jacobian of LayerNorm: v -> gamma / sigma * (v - mean(v) - xhat * mean(v * xhat)).
    Exact,
    /// The statistics of x1 held constant: v -> gamma / sigma * v (one multiplication).
    Frozen,
}

/// LayerNorm over the last dimension D: (..., D) -> (..., D), affine.
#[derive(Debug)]
pub struct LayerNorm {
    /// gamma (D,), initialised to 1.
    pub weight: Tensor,
    /// beta (D,), initialised to 0.
    pub bias: Tensor,
}

/// A LayerNorm linearised at its input x: the standardised input and the inverse deviation, per token.
#[derive(Debug)]
pub struct NormAt {
    /// (x - mean) / sigma: (..., D).
    normalized: Tensor,
    /// 1 / sigma: (..., 1).
    invstd: Tensor,
    mode: NormTangent,
}

impl LayerNorm {
    pub fn new(path: Path, features: i64) -> Self {
        LayerNorm {
            weight: path.var("weight", &[features], Init::Const(1.0)),
            bias: path.var("bias", &[features], Init::Const(0.0)),
        }
    }

    /// (..., D) -> (..., D), in x's kind (statistics in at least fp32, as libtorch computes them).
    pub fn forward(&self, x: &Tensor) -> Tensor {
        let features = *x.size().last().expect("a feature dimension");
        let kind = x.kind();
        let (w, b) = (self.weight.to_kind(kind), self.bias.to_kind(kind));
        x.layer_norm([features], Some(&w), Some(&b), LN_EPS, false)
    }

    /// The linearisation at x (differentiable: a backward through a tangent reaches x and gamma).
    pub fn linearize(&self, x: &Tensor, mode: NormTangent) -> NormAt {
        let wide = widened(x);
        let mean = wide.mean_dim(-1, true, None);
        let var = wide.var_dim(-1, false, true); // biased, as the forward normalises
        let invstd = (var + LN_EPS).rsqrt();
        NormAt { normalized: (&wide - mean) * &invstd, invstd, mode }
    }

    /// The LayerNorm's Jacobian at x applied to v: (..., D) -> (..., D), in v's kind.
    pub fn tangent(&self, at: &NormAt, v: &Tensor) -> Tensor {
        let wide = widened(v);
        let scaled = match at.mode {
            NormTangent::Frozen => wide * &at.invstd,
            NormTangent::Exact => {
                let mean_v = wide.mean_dim(-1, true, None);
                let mean_v_xhat = (&wide * &at.normalized).mean_dim(-1, true, None);
                (&wide - mean_v - &at.normalized * mean_v_xhat) * &at.invstd
            }
        };
        (scaled * &self.weight).to_kind(v.kind())
    }
}

impl NormAt {
    /// Rows [start, start + rows) of the batch (dimension 0).
    pub fn rows(&self, start: i64, rows: i64) -> NormAt {
        NormAt {
            normalized: self.normalized.narrow(0, start, rows),
            invstd: self.invstd.narrow(0, start, rows),
            mode: self.mode,
        }
    }

    /// Its tensors, to send between devices.
    pub fn tensors(&self) -> Vec<Tensor> {
        vec![self.normalized.shallow_clone(), self.invstd.shallow_clone()]
    }

    /// From the tensors [`NormAt::tensors`] gave.
    pub fn from_tensors(tensors: &mut std::vec::IntoIter<Tensor>, mode: NormTangent) -> NormAt {
        let mut next = || tensors.next().expect("a norm's tensors");
        NormAt { normalized: next(), invstd: next(), mode }
    }

    /// Bytes per batch row of its tensors at `tokens` x `features` in fp32.
    pub fn row_bytes(tokens: i64, features: i64) -> u64 {
        (tokens * (features + 1)) as u64 * Kind::Float.elt_size_in_bytes() as u64
    }
}
