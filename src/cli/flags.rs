//! Flags several subcommands share.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;
use tch::Device;

use crate::model::{DerivativeBn, Variant};
use crate::precision::{Choice, PrecisionSetting, Workload};

/// How a warp layer is built (`--model warp`); unset flags keep the run's or the default value.
#[derive(Debug, Clone, Default, Args, Serialize)]
pub struct WarpFlags {
    /// Warp-layer terms: exact, warpnet1 (default), warpnet2, released.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<Variant>,
    /// Keep only terms of at most M units (--variant exact).
    #[arg(long, value_parser = positive)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_order: Option<usize>,
    /// BatchNorm in the tangent pass F'(x1)v: none (default, the paper's), frozen, exact.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub derivative_bn: Option<DerivativeBn>,
}

impl WarpFlags {
    /// Refuses the flags when the network they would shape is a WRN (`context` names the flag that made
    /// it one, e.g. "--as wrn"): they mean nothing there, and accepting them silently would hide a typo.
    pub fn refuse_for_wrn(&self, context: &str) -> anyhow::Result<()> {
        let given = [self.variant.is_some(), self.max_order.is_some(), self.derivative_bn.is_some()];
        match crate::train::config::first_warp_flag(given) {
            Some(flag) => crate::bail_input!("{flag} means nothing with {context} (a WRN has no warp terms)"),
            None => Ok(()),
        }
    }
}

/// `--precision`, for every command that runs a network.
#[derive(Debug, Clone, Copy, Default, Args, Serialize)]
pub struct PrecisionFlag {
    /// fp32, bf16 (mixed precision: convolutions and the linear head in bfloat16; BatchNorm statistics,
    /// loss, SGD and master weights in fp32) or auto (default: bf16 where it pays: AMX-BF16 CPUs, GPUs
    /// of compute capability 8.0+, AVX512-BF16 CPUs where a timed convolution is faster in it; else fp32).
    #[arg(long = "precision", value_enum, value_name = "PRECISION")]
    #[serde(rename = "precision", skip_serializing_if = "Option::is_none")]
    pub setting: Option<PrecisionSetting>,
}

impl PrecisionFlag {
    /// The precision of a convolutional network on `devices` (`auto` when the flag is not given);
    /// warns on stderr when bf16 would be emulated.
    pub fn decide(&self, devices: &[tch::Device]) -> Choice {
        let choice = self.setting.unwrap_or_default().resolve(devices, Workload::Convolutions);
        if let Some(warning) = choice.warning() {
            eprintln!("{warning}");
        }
        choice
    }
}

/// A whole number >= 1 (for K, Nwarp, width, ...).
pub fn positive(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number >= 1".into()),
    }
}

/// "cpu", "cuda", "cuda:I".
pub fn parse_device(text: &str) -> Result<Device, String> {
    match text {
        "cpu" => Ok(Device::Cpu),
        text => crate::runtime::device::parse_gpu(text)
            .ok_or_else(|| format!("'{}': expected cpu, cuda or cuda:I", text.escape_default())),
    }
}

/// root/name, or the first of root/name-2, -3, ... that does not exist yet: where a run writes when
/// no --out is given.
pub fn fresh_folder(root: &Path, name: &str) -> PathBuf {
    let mut dir = root.join(name);
    let mut n = 2;
    while dir.exists() {
        dir = root.join(format!("{name}-{n}"));
        n += 1;
    }
    dir
}
