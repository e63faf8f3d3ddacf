//! The two building blocks of every unit: a 3x3 convolution and a 2-D batch normalisation.
//!
//! Written on tch's tensor ops rather than `tch::nn` modules so that the tangent pass (model/unit.rs)
//! can reuse the very same weights with different inputs and a different BN treatment.

use tch::nn::{Init, Path};
use tch::Tensor;

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
        x.conv2d(&self.weight, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1)
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

    /// (B, C_in) -> (B, C_out)
    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}
