//! The paper's Table 1 network: stem, three stages of warp layers joined by 2x2 average pooling and
//! channel concatenation, and the head. A WRN is this network with K = 1 layers.

use tch::nn::Path;
use tch::Tensor;

use super::config::{ModelKind, NetConfig, Variant, STAGES, STEM_CHANNELS};
use super::layers::{BatchNorm2d, Conv3x3, Linear};
use super::terms::{self, Term};
use super::unit::ResidualUnit;
use super::warp::{Jacobian, WarpLayer};

/// Stem Conv3x3(in -> 16)-BN-ReLU.
#[derive(Debug)]
pub struct Stem {
    pub conv: Conv3x3,
    pub bn: BatchNorm2d,
}

/// Head BN-ReLU-global average pool-Linear.
#[derive(Debug)]
pub struct Head {
    pub bn: BatchNorm2d,
    pub fc: Linear,
}

/// One stage: its warp layers, in order.
#[derive(Debug)]
pub struct Stage {
    pub layers: Vec<WarpLayer>,
}

#[derive(Debug)]
pub struct Net {
    pub config: NetConfig,
    pub stem: Stem,
    pub stages: Vec<Stage>,
    pub head: Head,
}

impl Net {
    /// Builds the network's variables under `root`. Names are stable (checkpoints depend on them):
    /// `stem.conv.weight`, `stage1.unit1.bn0.weight`, ..., `head.fc.bias`; units are numbered within
    /// their stage from 1, whatever their grouping into warp layers.
    pub fn new(root: &Path, config: &NetConfig) -> Self {
        let stem = Stem {
            conv: Conv3x3::new(root / "stem" / "conv", config.in_channels as i64, STEM_CHANNELS as i64),
            bn: BatchNorm2d::new(root / "stem" / "bn", STEM_CHANNELS as i64),
        };
        let (units_per_layer, layers_per_stage) = config.layer_grouping();
        let (layer_terms, jacobian) = layer_operator(config);
        let stages = (0..STAGES)
            .map(|s| {
                let channels = config.stage_channels(s) as i64;
                let stage_path = root / format!("stage{}", s + 1);
                let layers = (0..layers_per_stage)
                    .map(|l| {
                        let units = (0..units_per_layer)
                            .map(|j| {
                                let unit_number = l * units_per_layer + j + 1;
                                ResidualUnit::new(&(&stage_path / format!("unit{unit_number}")), channels)
                            })
                            .collect();
                        WarpLayer::new(units, layer_terms.clone(), jacobian)
                    })
                    .collect();
                Stage { layers }
            })
            .collect();
        let last_channels = config.stage_channels(STAGES - 1) as i64;
        let head = Head {
            bn: BatchNorm2d::new(root / "head" / "bn", last_channels),
            fc: Linear::new(root / "head" / "fc", last_channels, config.classes as i64),
        };
        Net { config: config.clone(), stem, stages, head }
    }

    /// Logits: (B, in, 32, 32) -> (B, classes).
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let features = self.features(x, train);
        self.head_forward(features.last().expect("three stages"), train)
    }

    /// The output of every stage: (B, 16kw, 32, 32), (B, 32kw, 16, 16), (B, 64kw, 8, 8).
    pub fn features(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let h = self.stem.bn.forward(&self.stem.conv.forward(x), train).relu(); // (B, 16, 32, 32)
        let mut h = h.repeat([1, self.config.width as i64, 1, 1]); // (B, 16kw, 32, 32)
        let mut outputs = Vec::with_capacity(STAGES);
        for (s, stage) in self.stages.iter().enumerate() {
            if s > 0 {
                h = downsample(&h);
            }
            for layer in &stage.layers {
                h = layer.forward(&h, train);
            }
            outputs.push(h.shallow_clone());
        }
        outputs
    }

    /// (B, 64kw, 8, 8) -> (B, classes)
    fn head_forward(&self, h: &Tensor, train: bool) -> Tensor {
        let h = self.head.bn.forward(h, train).relu();
        let pooled = h.mean_dim([2i64, 3].as_slice(), false, None); // (B, 64kw)
        self.head.fc.forward(&pooled)
    }
}

/// The term list of one warp layer and the meaning of its Jacobians. A WRN layer is [F1].
pub fn layer_operator(config: &NetConfig) -> (Vec<Term>, Jacobian) {
    match config.model {
        ModelKind::Wrn => (terms::exact(1, 1), Jacobian::Tangent(config.derivative_bn)),
        ModelKind::Warp => {
            let jacobian = match config.variant {
                Variant::Released => Jacobian::Released,
                _ => Jacobian::Tangent(config.derivative_bn),
            };
            (terms::build(config.variant, config.k, config.max_order), jacobian)
        }
    }
}

/// Between stages: 2x2 average pooling, then the tensor concatenated with itself along channels, so
/// the skip stays an identity (no 1x1 convolution). (B, C, H, W) -> (B, 2C, H/2, W/2).
pub fn downsample(h: &Tensor) -> Tensor {
    let pooled = h.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
    Tensor::cat(&[&pooled, &pooled], 1)
}
