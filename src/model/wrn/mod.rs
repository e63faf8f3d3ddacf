//! The paper's Table 1 network as an [`Architecture`]: stem, three stages of warp layers over the
//! residual unit of unit.rs, joined by 2x2 average pooling and channel concatenation, and the head. A
//! WRN is this network with K = 1 layers.

pub mod unit;

use std::any::Any;

use tch::nn::Path;
use tch::Tensor;

use super::architecture::{Architecture, Description, LayerIndex, Module};
use super::config::{ModelKind, NetConfig, Variant, INPUT_SIDE, STAGES, STEM_CHANNELS};
use super::layers::{BatchNorm2d, Conv3x3, Linear};
use super::terms::{self, Term};
use super::DerivativeBn;
use unit::{Jacobian, ResidualUnit};

/// Bytes of one ReLU mask element: a piece's linearisation rows (a bool tensor).
const MASK_ELEMENT_BYTES: u64 = 1;

/// Stem Conv3x3(in -> 16)-BN-ReLU, then the channel concatenation to 16kw.
#[derive(Debug)]
pub struct Stem {
    pub conv: Conv3x3,
    pub bn: BatchNorm2d,
    /// Copies of the 16 stem channels concatenated: kw.
    pub copies: i64,
}

impl Stem {
    pub fn new(root: &Path, config: &NetConfig) -> Self {
        Stem {
            conv: Conv3x3::new(root / "stem" / "conv", config.in_channels as i64, STEM_CHANNELS as i64),
            bn: BatchNorm2d::new(root / "stem" / "bn", STEM_CHANNELS as i64),
            copies: config.width as i64,
        }
    }
}

impl Module for Stem {
    /// (B, in, H, W) -> (B, 16kw, H, W)
    fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        // (B, 16, H, W), concatenated kw times rather than `repeat`ed: the same values, and `cat` keeps
        // a channels-last layout.
        let h = self.bn.forward(&self.conv.forward(x), train).relu();
        let copies = vec![&h; self.copies as usize];
        Tensor::cat(&copies, 1)
    }
}

/// Head BN-ReLU-global average pool-Linear.
#[derive(Debug)]
pub struct Head {
    pub bn: BatchNorm2d,
    pub fc: Linear,
}

impl Head {
    pub fn new(root: &Path, config: &NetConfig) -> Self {
        let channels = config.stage_channels(STAGES - 1) as i64;
        Head {
            bn: BatchNorm2d::new(root / "head" / "bn", channels),
            fc: Linear::new(root / "head" / "fc", channels, config.classes as i64),
        }
    }
}

impl Module for Head {
    /// (B, 64kw, h, w) -> (B, classes)
    fn forward(&self, h: &Tensor, train: bool) -> Tensor {
        let h = self.bn.forward(h, train).relu();
        let pooled = h.mean_dim([2i64, 3].as_slice(), false, None); // (B, 64kw)
        self.fc.forward(&pooled)
    }
}

/// Between stages: 2x2 average pooling, then the tensor concatenated with itself along channels, so
/// the skip stays an identity (no 1x1 convolution).
#[derive(Debug)]
pub struct Downsample;

impl Module for Downsample {
    /// (B, C, H, W) -> (B, 2C, H/2, W/2).
    fn forward(&self, h: &Tensor, _train: bool) -> Tensor {
        downsample(h)
    }
}

/// [`Downsample`]'s computation: (B, C, H, W) -> (B, 2C, H/2, W/2).
pub fn downsample(h: &Tensor) -> Tensor {
    let pooled = h.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
    Tensor::cat(&[&pooled, &pooled], 1)
}

impl NetConfig {
    /// What a Jacobian in this network's terms means: the released code's map for `--variant
    /// released`, else the true tangent with BN as `--derivative-bn` says.
    pub fn jacobian(&self) -> Jacobian {
        match (self.model, self.variant) {
            (ModelKind::Warp, Variant::Released) => Jacobian::Released,
            _ => Jacobian::Tangent(self.derivative_bn),
        }
    }

    /// Every warp layer of the network, in forward order.
    pub fn layer_indices(&self) -> Vec<LayerIndex> {
        let (_, layers_per_stage) = self.layer_grouping();
        (0..STAGES)
            .flat_map(|stage| (0..layers_per_stage).map(move |layer| LayerIndex { stage, layer }))
            .collect()
    }
}

impl Architecture for NetConfig {
    fn layers(&self) -> Vec<LayerIndex> {
        self.layer_indices()
    }

    fn units_per_layer(&self) -> usize {
        self.layer_grouping().0
    }

    /// A WRN layer is the single term F1; a WarpNet's are its variant's.
    fn terms(&self) -> Vec<Term> {
        match self.model {
            ModelKind::Wrn => terms::exact(1, 1),
            ModelKind::Warp => terms::build(self.variant, self.k, self.max_order),
        }
    }

    /// `stage{s}.unit{n}.*`, n counted within the stage from 1, whatever the grouping into layers.
    fn unit(&self, root: &Path, at: LayerIndex, c: usize) -> Box<dyn super::unit::Unit> {
        let number = at.layer * self.units_per_layer() + c + 1;
        let path = root / format!("stage{}", at.stage + 1) / format!("unit{number}");
        let channels = self.stage_channels(at.stage) as i64;
        Box::new(ResidualUnit::new(&path, channels).with_jacobian(self.jacobian()))
    }

    fn stem(&self, root: &Path) -> Box<dyn Module> {
        Box::new(Stem::new(root, self))
    }

    fn between_stages(&self) -> Box<dyn Module> {
        Box::new(Downsample)
    }

    fn head(&self, root: &Path) -> Box<dyn Module> {
        Box::new(Head::new(root, self))
    }

    fn input_shape(&self) -> Vec<i64> {
        vec![self.in_channels as i64, INPUT_SIDE as i64, INPUT_SIDE as i64]
    }

    fn classes(&self) -> usize {
        self.classes
    }

    /// (16kw x 2^s, 32 / 2^s, 32 / 2^s).
    fn activation_shape(&self, stage: usize) -> Vec<i64> {
        let side = (INPUT_SIDE >> stage) as i64;
        vec![self.stage_channels(stage) as i64, side, side]
    }

    /// A ReLU mask's row: C x H x W booleans.
    fn linearization_row_bytes(&self, stage: usize) -> u64 {
        self.activation_shape(stage).iter().product::<i64>() as u64 * MASK_ELEMENT_BYTES
    }

    /// The released map reads only the weights.
    fn tangent_reads_primal(&self) -> bool {
        self.jacobian() != Jacobian::Released
    }

    /// The released map thresholds its vector: not linear.
    fn tangents_linear(&self) -> bool {
        self.jacobian() != Jacobian::Released
    }

    /// With BN removed from F' (or the released map) a piece reads only its rows of the ReLU mask;
    /// BN tangents carry the whole batch's statistics.
    fn pieces_apart(&self) -> Result<(), String> {
        match self.jacobian() {
            Jacobian::Released | Jacobian::Tangent(DerivativeBn::None) => Ok(()),
            Jacobian::Tangent(mode) => Err(format!(
                "derivative BN `none` (the paper's); under `{mode}` its BatchNorm statistics couple the \
                 whole batch"
            )),
        }
    }

    fn label(&self) -> String {
        NetConfig::label(self)
    }

    fn description(&self) -> Option<Description> {
        Some(Description::Wrn(self.clone()))
    }
}

/// The Table 1 unit behind a [`super::unit::Unit`], for analyses of its ReLU masks.
pub fn residual_unit(unit: &dyn super::unit::Unit) -> &ResidualUnit {
    let any: &dyn Any = unit.as_any();
    any.downcast_ref().expect("a unit of the Table 1 network")
}
