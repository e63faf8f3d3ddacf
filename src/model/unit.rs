//! The residual unit F = BN-Conv3x3-BN-ReLU-Conv3x3-BN (paper section 4), used with an identity skip.

use tch::nn::Path;
use tch::Tensor;

use super::layers::{BatchNorm2d, Conv3x3};

/// One residual branch F_i at a fixed width C. The skip connection x + F(x) is added by the warp layer.
#[derive(Debug)]
pub struct ResidualUnit {
    /// BN on the unit's input.
    pub bn0: BatchNorm2d,
    pub conv1: Conv3x3,
    pub bn1: BatchNorm2d,
    pub conv2: Conv3x3,
    pub bn2: BatchNorm2d,
}

/// What the primal pass F(x1) returns, and what a tangent pass F'(x1)v at the same point needs.
#[derive(Debug)]
pub struct UnitPrimal {
    /// F(x1): (B, C, H, W).
    pub output: Tensor,
    /// The 0/1 mask of the ReLU at x1, 1 where its input was > 0: (B, C, H, W), same kind as x1. Kept
    /// only when asked for (a term of the warp layer applies this unit's Jacobian).
    pub relu_mask: Option<Tensor>,
}

impl ResidualUnit {
    /// Unit weights under `path` (e.g. `stage1.unit2`), at `channels` channels.
    pub fn new(path: &Path, channels: i64) -> Self {
        ResidualUnit {
            bn0: BatchNorm2d::new(path / "bn0", channels),
            conv1: Conv3x3::new(path / "conv1", channels, channels),
            bn1: BatchNorm2d::new(path / "bn1", channels),
            conv2: Conv3x3::new(path / "conv2", channels, channels),
            bn2: BatchNorm2d::new(path / "bn2", channels),
        }
    }

    /// Primal pass F(x): (B, C, H, W) -> (B, C, H, W). `keep_mask` keeps the ReLU mask for a later
    /// tangent pass at the same x.
    pub fn primal(&self, x: &Tensor, train: bool, keep_mask: bool) -> UnitPrimal {
        let h = self.bn0.forward(x, train);
        let h = self.conv1.forward(&h);
        let pre_relu = self.bn1.forward(&h, train);
        let relu_mask = keep_mask.then(|| pre_relu.gt(0.0).to_kind(pre_relu.kind()));
        let h = pre_relu.relu();
        let h = self.conv2.forward(&h);
        UnitPrimal { output: self.bn2.forward(&h, train), relu_mask }
    }
}
