//! NetConfig: the shape of a network (paper Table 1) and of its warp operator, as plain values.

use serde::{Deserialize, Serialize};

/// Which network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Wide residual network: K * Nwarp ordinary residual units per stage (K = 1 warp layers).
    Wrn,
    /// Warped residual network: Nwarp warp layers of K units per stage.
    Warp,
}

/// Which terms a warp layer keeps (model/terms.rs builds the list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Every non-empty ordered subset of the K units: 2^K - 1 terms (paper eq. 3).
    Exact,
    /// F_i for every i and F'_j x1 once for each j >= 2 (the paper's WarpNet1).
    Warpnet1,
    /// F_i and F'_j F_i for i < j (the paper's WarpNet2; for K = 3 it drops F3'F2'F1).
    Warpnet2,
    /// WarpNet1's terms with the released code's map in place of F'_j x1:
    /// conv(flip(W_j,conv2), 1[conv(flip(W_j,conv1), x1) > 0]). Not a derivative; kept only to reproduce
    /// that code's numbers.
    Released,
}

/// How BatchNorm enters the tangent pass F'(x1)v.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DerivativeBn {
    /// The paper's choice: BN layers removed from F' (a departure from the series, section 4).
    None,
    /// Each BN as its affine map gamma * (x - mean) / sqrt(var + eps) + beta with the statistics of the
    /// primal batch at x1 held constant.
    Frozen,
    /// The full Jacobian of training-mode BN, whose mean and variance depend on the input.
    Exact,
}

/// The command-line spelling (`warpnet1`, `frozen`, ...).
macro_rules! display_as_flag {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let value = clap::ValueEnum::to_possible_value(self).expect("no skipped variants");
                f.write_str(value.get_name())
            }
        }
    )*};
}
display_as_flag!(Variant, DerivativeBn);

/// The network's shape. WRN and WarpNet with the same (K * Nwarp, kw) have the same parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetConfig {
    pub model: ModelKind,
    /// Warp factor K: residual units per warp layer.
    pub k: usize,
    /// Warp layers per stage.
    pub nwarp: usize,
    /// Widening factor kw: stages run at 16kw, 32kw, 64kw channels.
    pub width: usize,
    /// Input image channels.
    pub in_channels: usize,
    /// Output classes.
    pub classes: usize,
    /// Terms of a warp layer (a WRN ignores it).
    pub variant: Variant,
    /// `exact` truncated to terms of at most this many units.
    pub max_order: Option<usize>,
    /// BatchNorm in the tangent pass (a WRN ignores it).
    pub derivative_bn: DerivativeBn,
}

/// Channels of an input image (RGB; grey data sets repeat their plane, src/data/).
pub const INPUT_CHANNELS: usize = 3;
/// Height and width of an input image in pixels.
pub const INPUT_SIDE: usize = 32;
/// Channels of the stem convolution, before the concatenation to 16kw (Table 1).
pub const STEM_CHANNELS: usize = 16;
/// Stages of the network; each after the first halves H and W and doubles C.
pub const STAGES: usize = 3;
/// Classes of the head that a benchmark or a plan times where no data set gives them: the ten of
/// CIFAR-10 and Fashion-MNIST.
pub const BENCH_CLASSES: usize = 10;
/// A class count for checks that do not depend on it (a config's values, the placement, the step's
/// cost before the data is read): the head's size changes none of them.
pub const ANY_CLASSES: usize = 2;

impl NetConfig {
    /// A WRN with `units` residual units per stage (K = 1, Nwarp = units).
    pub fn wrn(units: usize, width: usize, classes: usize) -> Self {
        NetConfig {
            model: ModelKind::Wrn,
            k: 1,
            nwarp: units,
            width,
            in_channels: INPUT_CHANNELS,
            classes,
            variant: Variant::Warpnet1,
            max_order: None,
            derivative_bn: DerivativeBn::None,
        }
    }

    /// A WarpNet with `nwarp` layers of `k` units per stage.
    pub fn warp(k: usize, nwarp: usize, width: usize, classes: usize, variant: Variant) -> Self {
        NetConfig { model: ModelKind::Warp, k, nwarp, variant, ..NetConfig::wrn(1, width, classes) }
    }

    /// The same weights seen as the other kind of network (same names, same units per stage).
    pub fn as_model(&self, model: ModelKind) -> Self {
        NetConfig { model, ..self.clone() }
    }

    /// Residual units per stage: K * Nwarp.
    pub fn units_per_stage(&self) -> usize {
        self.k * self.nwarp
    }

    /// Depth label n = 6 K Nwarp + 1: two convolutions per unit, three stages, plus the stem.
    pub fn depth(&self) -> usize {
        6 * self.units_per_stage() + 1
    }

    /// Channels of stage s (0-based): 16 kw * 2^s.
    pub fn stage_channels(&self, stage: usize) -> usize {
        (STEM_CHANNELS * self.width) << stage
    }

    /// How units are grouped into layers: (units per layer, layers per stage). The WRN is a run of
    /// K = 1 layers, one per unit.
    pub fn layer_grouping(&self) -> (usize, usize) {
        match self.model {
            ModelKind::Wrn => (1, self.units_per_stage()),
            ModelKind::Warp => (self.k, self.nwarp),
        }
    }

    /// The paper's names: "WRN-37-4", "WarpNet1-73-4", "WarpNet2-73-4"; `exact` is "WarpNet-73-4", its
    /// truncation by --max-order 2 "WarpNetM2-73-4", the released code's variant "WarpNetR-73-4".
    pub fn label(&self) -> String {
        let (n, kw) = (self.depth(), self.width);
        match (self.model, self.variant, self.max_order) {
            (ModelKind::Wrn, ..) => format!("WRN-{n}-{kw}"),
            (ModelKind::Warp, Variant::Exact, Some(m)) => format!("WarpNetM{m}-{n}-{kw}"),
            (ModelKind::Warp, Variant::Exact, None) => format!("WarpNet-{n}-{kw}"),
            (ModelKind::Warp, Variant::Warpnet1, _) => format!("WarpNet1-{n}-{kw}"),
            (ModelKind::Warp, Variant::Warpnet2, _) => format!("WarpNet2-{n}-{kw}"),
            (ModelKind::Warp, Variant::Released, _) => format!("WarpNetR-{n}-{kw}"),
        }
    }

    /// The label with what it leaves out: "WarpNet1-73-4 (K=2, Nwarp=6, derivative BN none)".
    pub fn describe(&self) -> String {
        match self.model {
            ModelKind::Wrn => self.label(),
            ModelKind::Warp => format!(
                "{} (K={}, Nwarp={}, derivative BN {})",
                self.label(),
                self.k,
                self.nwarp,
                self.derivative_bn
            ),
        }
    }

    /// Checks the values; the error names the offending flag.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in
            [("k", self.k), ("nwarp", self.nwarp), ("width", self.width), ("in_channels", self.in_channels)]
        {
            if value == 0 {
                return Err(format!("--{name} must be at least 1, got 0"));
            }
        }
        if self.classes < 2 {
            return Err(format!("classes must be at least 2, got {}", self.classes));
        }
        if let Some(m) = self.max_order {
            if self.variant != Variant::Exact {
                return Err(format!("--max-order truncates --variant exact, not {}", self.variant));
            }
            if m == 0 || m > self.k {
                return Err(format!("--max-order {m} must lie in 1..=K (K = {})", self.k));
            }
        }
        if self.variant == Variant::Released && self.derivative_bn != DerivativeBn::None {
            return Err(
                "--variant released has no BatchNorm in its term: it needs --derivative-bn none".into()
            );
        }
        Ok(())
    }
}
