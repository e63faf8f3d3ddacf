//! Flags several subcommands share.

use clap::Args;

use crate::model::{DerivativeBn, Variant};

/// How a warp layer is built (`--model warp`); unset flags keep the run's or the default value.
#[derive(Debug, Clone, Default, Args)]
pub struct WarpFlags {
    /// Warp-layer terms: exact, warpnet1 (default), warpnet2, released.
    #[arg(long, value_enum)]
    pub variant: Option<Variant>,
    /// Keep only terms of at most M units (--variant exact).
    #[arg(long, value_parser = positive)]
    pub max_order: Option<usize>,
    /// BatchNorm in the tangent pass F'(x1)v: none (default, the paper's), frozen, exact.
    #[arg(long, value_enum)]
    pub derivative_bn: Option<DerivativeBn>,
}

/// A whole number >= 1 (for K, Nwarp, width, ...).
pub fn positive(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number >= 1".into()),
    }
}
