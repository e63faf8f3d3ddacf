//! NetConfig: the shape of a network (paper Table 1), as plain values.

use serde::{Deserialize, Serialize};

/// Which network: the wide ResNet baseline, built from K = 1 warp layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Wide residual network: K * Nwarp ordinary residual units per stage.
    Wrn,
}

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
}

/// Channels of the stem convolution, before the concatenation to 16kw (Table 1).
pub const STEM_CHANNELS: usize = 16;
/// Stages of the network; each after the first halves H and W and doubles C.
pub const STAGES: usize = 3;

impl NetConfig {
    /// A WRN with `units` residual units per stage (K = 1, Nwarp = units).
    pub fn wrn(units: usize, width: usize, classes: usize) -> Self {
        NetConfig { model: ModelKind::Wrn, k: 1, nwarp: units, width, in_channels: 3, classes }
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
        }
    }

    /// "WRN-13-4".
    pub fn label(&self) -> String {
        match self.model {
            ModelKind::Wrn => format!("WRN-{}-{}", self.depth(), self.width),
        }
    }

    /// Checks the values; the error names the offending field.
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
        Ok(())
    }
}
