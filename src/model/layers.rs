//! The two building blocks of every unit: a 3x3 convolution and a 2-D batch normalisation.
//!
//! Written on tch's tensor ops rather than `tch::nn` modules so that the tangent pass (model/unit.rs)
//! can reuse the very same weights with different inputs and a different BN treatment.
//!
//! Every layer computes in the kind of its input (src/precision.rs): the weights are fp32 masters,
//! cast to a bf16 input's kind where they are used (autograd hands fp32 gradients back through the
//! cast), and left as they are for an fp32 or float64 input.

use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

/// PyTorch's BatchNorm defaults: variance epsilon and running-average momentum.
pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

/// Conv3x3, stride 1, zero padding 1, no bias: (B, C_in, H, W) -> (B, C_out, H, W).
#[derive(Debug)]
pub struct Conv3x3 {
    /// (C_out, C_in, 3, 3), He-normal: N(0, 2 / fan_in) with fan_in = C_in * 9.
    pub weight: Tensor,
}

impl Conv3x3 {
    pub fn new(path: Path, c_in: i64, c_out: i64) -> Self {
        let fan_in = (c_in * 9) as f64;
        let he_normal = Init::Randn { mean: 0.0, stdev: (2.0 / fan_in).sqrt() };
        Conv3x3 { weight: path.var("weight", &[c_out, c_in, 3, 3], he_normal) }
    }

    /// (B, C_in, H, W) -> (B, C_out, H, W)
    pub fn forward(&self, x: &Tensor) -> Tensor {
        conv3x3(x, &self.weight)
    }
}

/// x (B, C_in, H, W) convolved with `weight` (C_out, C_in, 3, 3): stride 1, zero padding 1, in x's kind.
pub fn conv3x3(x: &Tensor, weight: &Tensor) -> Tensor {
    const STRIDE: [i64; 2] = [1, 1];
    const PADDING: [i64; 2] = [1, 1]; // keeps H and W
    const DILATION: [i64; 2] = [1, 1];
    const GROUPS: i64 = 1;
    super::op_count::convolutions_add(1);
    x.conv2d(&in_kind_of(weight, x), None::<Tensor>, STRIDE, PADDING, DILATION, GROUPS)
}

/// `weight` in the kind `x` computes in: a bf16 copy under mixed precision, `weight` itself otherwise.
fn in_kind_of(weight: &Tensor, x: &Tensor) -> Tensor {
    weight.to_kind(x.kind())
}

/// `t` in at least float32: bf16 and f16 widened (statistics, the loss), f32 and f64 as they are.
pub fn widened(t: &Tensor) -> Tensor {
    match t.kind() {
        Kind::BFloat16 | Kind::Half => t.to_kind(Kind::Float),
        _ => t.shallow_clone(),
    }
}

/// BatchNorm2d over (B, C, H, W): per-channel affine map of the standardised input.
///
/// Training mode normalises with the batch's mean and biased variance and updates the running
/// statistics (momentum 0.1, unbiased variance, as PyTorch); eval mode uses the running statistics.
#[derive(Debug)]
pub struct BatchNorm2d {
    /// gamma (C,), initialised to 1.
    pub weight: Tensor,
    /// beta (C,), initialised to 0.
    pub bias: Tensor,
    /// (C,) buffers, not trained.
    pub running_mean: Tensor,
    pub running_var: Tensor,
}

impl BatchNorm2d {
    pub fn new(path: Path, channels: i64) -> Self {
        BatchNorm2d {
            weight: path.var("weight", &[channels], Init::Const(1.0)),
            bias: path.var("bias", &[channels], Init::Const(0.0)),
            running_mean: path.zeros_no_train("running_mean", &[channels]),
            running_var: path.ones_no_train("running_var", &[channels]),
        }
    }

    /// (B, C, H, W) -> (B, C, H, W). In training mode this also updates the running statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        x.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            BN_MOMENTUM,
            BN_EPS,
            true,
        )
    }
}

/// Fully connected layer (B, C_in) -> (B, C_out), PyTorch's default init U(-1/sqrt(C_in), 1/sqrt(C_in)).
#[derive(Debug)]
pub struct Linear {
    /// (C_out, C_in)
    pub weight: Tensor,
    /// (C_out,)
    pub bias: Tensor,
}

impl Linear {
    pub fn new(path: Path, c_in: i64, c_out: i64) -> Self {
        let bound = 1.0 / (c_in as f64).sqrt();
        let uniform = Init::Uniform { lo: -bound, up: bound };
        Linear {
            weight: path.var("weight", &[c_out, c_in], uniform),
            bias: path.var("bias", &[c_out], uniform),
        }
    }

    /// (B, C_in) -> (B, C_out), in x's kind.
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&in_kind_of(&self.weight, x), Some(&in_kind_of(&self.bias, x)))
    }
}

/// Per-channel reduction axes of a (B, C, H, W) tensor: batch and space.
const BN_AXES: [i64; 3] = [0, 2, 3];

/// How one BatchNorm enters the tangent pass F'(x1)v, fixed at the primal point.
#[derive(Debug)]
pub enum BnTangent {
    /// Removed from F' (derivative-BN `none`, the paper's choice): v -> v.
    Removed,
    /// The affine map with the statistics held constant: v -> gamma / sqrt(var + eps) * v, scale (1, C, 1, 1).
    Affine { scale: Tensor },
    /// The Jacobian of training-mode BN, whose statistics move with the input:
    /// v -> gamma / sqrt(var + eps) * (v - mean(v) - xhat * mean(v * xhat)), means per channel over
    /// (B, H, W); xhat (B, C, H, W) is the standardised input at the primal point.
    Batch { scale: Tensor, normalized: Tensor },
}

impl BatchNorm2d {
    /// Linearisation of this BN at input `x` (B, C, H, W), as `mode` asks. In eval mode the statistics are
    /// the running ones, constants, so `frozen` and `exact` coincide. The batch statistics are computed
    /// with differentiable ops, so backpropagation through a tangent term reaches x1 through them too;
    /// from a bf16 `x` they are computed in fp32, as the forward BN computes its own.
    pub fn linearize(&self, x: &Tensor, train: bool, mode: super::config::DerivativeBn) -> BnTangent {
        use super::config::DerivativeBn;
        let gamma = self.weight.view([1, -1, 1, 1]);
        if mode == DerivativeBn::None {
            return BnTangent::Removed;
        }
        if !train {
            let invstd = (&self.running_var + BN_EPS).rsqrt().view([1, -1, 1, 1]);
            return BnTangent::Affine { scale: gamma * invstd };
        }
        let x = widened(x);
        let mean = x.mean_dim(BN_AXES.as_slice(), true, None); // (1, C, 1, 1)
        let var = x.var_dim(BN_AXES.as_slice(), false, true); // biased, as the forward pass uses
        let invstd = (var + BN_EPS).rsqrt();
        let scale = gamma * &invstd;
        match mode {
            DerivativeBn::Frozen => BnTangent::Affine { scale },
            _ => BnTangent::Batch { scale, normalized: (&x - mean) * invstd },
        }
    }
}

impl BnTangent {
    /// The BN's Jacobian applied to v: (B, C, H, W) -> (B, C, H, W), in v's kind (a bf16 v is widened to
    /// fp32 for the per-channel means, as BN's own reductions are, and the result cast back).
    pub fn apply(&self, v: &Tensor) -> Tensor {
        match self {
            BnTangent::Removed => v.shallow_clone(),
            BnTangent::Affine { scale } => v * in_kind_of(scale, v),
            BnTangent::Batch { scale, normalized } => {
                let wide = widened(v);
                let mean_v = wide.mean_dim(BN_AXES.as_slice(), true, None);
                let mean_v_xhat = (&wide * normalized).mean_dim(BN_AXES.as_slice(), true, None);
                ((&wide - mean_v - normalized * mean_v_xhat) * scale).to_kind(v.kind())
            }
        }
    }
}
