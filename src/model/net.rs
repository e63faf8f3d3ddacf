//! The paper's Table 1 network: stem, three stages of warp layers joined by 2x2 average pooling and
//! channel concatenation, and the head. A WRN is this network with K = 1 layers.
//!
//! The pieces are built separately ([`Stem`], [`Head`], [`build_layer`]) so that a model-parallel
//! executor can place them on different devices under the same names.

use tch::nn::Path;
use tch::Tensor;

use super::config::{ModelKind, NetConfig, Variant, STAGES, STEM_CHANNELS};
use super::layers::{BatchNorm2d, Conv3x3, Linear};
use super::terms::{self, Term};
use super::unit::ResidualUnit;
use super::warp::{Jacobian, PrimalSharing, WarpLayer};

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

    /// (B, in, H, W) -> (B, 16kw, H, W)
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
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

    /// (B, 64kw, h, w) -> (B, classes)
    pub fn forward(&self, h: &Tensor, train: bool) -> Tensor {
        let h = self.bn.forward(h, train).relu();
        let pooled = h.mean_dim([2i64, 3].as_slice(), false, None); // (B, 64kw)
        self.fc.forward(&pooled)
    }
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

/// Where a warp layer sits: its stage and its index within the stage (both 0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerIndex {
    pub stage: usize,
    pub layer: usize,
}

impl NetConfig {
    /// Every warp layer of the network, in forward order.
    pub fn layer_indices(&self) -> Vec<LayerIndex> {
        let (_, layers_per_stage) = self.layer_grouping();
        (0..STAGES)
            .flat_map(|stage| (0..layers_per_stage).map(move |layer| LayerIndex { stage, layer }))
            .collect()
    }
}

impl Net {
    /// Builds the network's variables under `root`. Names are stable (checkpoints depend on them):
    /// `stem.conv.weight`, `stage1.unit1.bn0.weight`, ..., `head.fc.bias`; units are numbered within
    /// their stage from 1, whatever their grouping into warp layers.
    pub fn new(root: &Path, config: &NetConfig) -> Self {
        // Creation order fixes which random draws each variable gets: stem, units in order, head.
        let stem = Stem::new(root, config);
        let (terms, jacobian) = layer_operator(config);
        let mut stages: Vec<Stage> = (0..STAGES).map(|_| Stage { layers: Vec::new() }).collect();
        for at in config.layer_indices() {
            let units_per_layer = config.layer_grouping().0;
            let all_units: Vec<usize> = (0..units_per_layer).collect();
            stages[at.stage].layers.push(build_layer(root, config, at, &all_units, terms.clone(), jacobian));
        }
        let head = Head::new(root, config);
        Net { config: config.clone(), stem, stages, head }
    }

    /// How every warp layer shares its primal passes among its terms (shared unless benchmarking).
    pub fn set_primal_sharing(&mut self, sharing: PrimalSharing) {
        self.stages.iter_mut().flat_map(|s| &mut s.layers).for_each(|layer| layer.sharing = sharing);
    }

    /// Logits: (B, in, 32, 32) -> (B, classes).
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let features = self.features(x, train);
        self.head.forward(features.last().expect("three stages"), train)
    }

    /// The output of every stage: (B, 16kw, 32, 32), (B, 32kw, 16, 16), (B, 64kw, 8, 8).
    pub fn features(&self, x: &Tensor, train: bool) -> Vec<Tensor> {
        let last = self.config.layer_grouping().1 - 1;
        let mut outputs = Vec::with_capacity(STAGES);
        let _head_input = self.walk(x, train, |at, layer, h| {
            // the last stage's output, kept below
            let out = layer.forward(&h, train);
            if at.layer == last {
                outputs.push(out.shallow_clone());
            }
            out
        });
        outputs
    }

    /// The stem, then every warp layer in forward order through `layer(at, warp layer, input) -> output`,
    /// the stages joined by [`downsample`]: (B, in, 32, 32) -> (B, 64kw, 8, 8), the head's input.
    pub fn walk(
        &self,
        x: &Tensor,
        train: bool,
        mut layer: impl FnMut(LayerIndex, &WarpLayer, Tensor) -> Tensor,
    ) -> Tensor {
        let h = self.stem.forward(x, train); // (B, 16kw, 32, 32)
        let layers = self.config.layer_indices();
        walk_layers(
            &layers,
            h,
            |h| downsample(&h),
            |_, at, h| layer(at, &self.stages[at.stage].layers[at.layer], h),
        )
    }
}

/// The network's walk from the stem's output to the head's input, whoever holds the layers: before the
/// first layer of every later stage `between_stages` (the downsampling, or a stand-in that also records
/// it), then `layer(position in layers, at, input) -> output`.
pub fn walk_layers(
    layers: &[LayerIndex],
    stem_output: Tensor,
    mut between_stages: impl FnMut(Tensor) -> Tensor,
    mut layer: impl FnMut(usize, LayerIndex, Tensor) -> Tensor,
) -> Tensor {
    layers.iter().enumerate().fold(stem_output, |h, (i, &at)| {
        let h = if at.stage > 0 && at.layer == 0 { between_stages(h) } else { h };
        layer(i, at, h)
    })
}

/// The warp layer at `at`, holding only the units in `held` (positions within the layer) and evaluating
/// `terms`. Unit variables are named `stage{s}.unit{n}.*` with n counted within the stage from 1.
pub fn build_layer(
    root: &Path,
    config: &NetConfig,
    at: LayerIndex,
    held: &[usize],
    terms: Vec<Term>,
    jacobian: Jacobian,
) -> WarpLayer {
    let units_per_layer = config.layer_grouping().0;
    let channels = config.stage_channels(at.stage) as i64;
    let stage_path = root / format!("stage{}", at.stage + 1);
    let units = (0..units_per_layer)
        .map(|j| {
            held.contains(&j).then(|| {
                let unit_number = at.layer * units_per_layer + j + 1;
                ResidualUnit::new(&(&stage_path / format!("unit{unit_number}")), channels)
            })
        })
        .collect();
    WarpLayer::partial(units, terms, jacobian)
}

/// The term list of one warp layer and the meaning of its Jacobians. A WRN layer is the single term F1.
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
