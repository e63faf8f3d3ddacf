//! `warpnet convert`: the same weights under another layer grouping (WRN <-> WarpNet), or exported for
//! PyTorch as a plain state dict.
//!
//! WRN and WarpNet of the same size name their parameters identically (units are numbered within their
//! stage whatever the grouping), so a conversion rewrites the run's configuration and copies the
//! weights; loading them into the new network first proves they fit.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::flags::{positive, WarpFlags};
use crate::base::atomic_file::{write_atomic, write_atomic_with};
use crate::base::named::copy_variables;
use crate::error::input_error;
use crate::model::{ModelKind, Net};
use crate::train::checkpoint::{load_weights, save_weights};
use crate::train::run_folder::{self, RunFiles};

#[derive(Debug, Clone, Args)]
pub struct ConvertArgs {
    /// A run folder (its model.safetensors) or weights written by `warpnet train`
    /// (RUN/model.safetensors, RUN/checkpoints/step-N.safetensors); RUN/config.toml gives the network.
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Convert to this network (with --out): a new run folder with the same weights.
    #[arg(long, value_enum, requires = "out")]
    pub to: Option<ModelKind>,
    /// Warp factor K of the WarpNet (default: the run's); it must divide the units per stage.
    #[arg(long, value_parser = positive)]
    pub k: Option<usize>,
    #[command(flatten)]
    pub warp: WarpFlags,
    /// The new run folder (must not exist).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Export a PyTorch state dict (safetensors) for python/warpnet_torch.py's WRN.
    #[arg(long, conflicts_with_all = ["to", "out"])]
    pub pytorch: Option<PathBuf>,
}

pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let run = run_folder::open(&args.checkpoint)?;
    match (&args.to, &args.out, &args.pytorch) {
        (Some(to), Some(out), None) => convert(&run, &args, *to, out),
        (None, None, Some(file)) => export_pytorch(&run, file),
        _ => crate::bail_input!("convert needs --to MODEL --out DIR, or --pytorch FILE"),
    }
}

/// A new run folder holding the same weights as the network `to`.
fn convert(run: &RunFiles, args: &ConvertArgs, to: ModelKind, out: &Path) -> anyhow::Result<()> {
    if out.exists() {
        crate::bail_input!("--out {}: exists already (convert writes a new run folder)", out.display());
    }
    let units = run.config.k * run.config.nwarp;
    let mut config = run.config.clone();
    config.model = to;
    config.k = args.k.unwrap_or(run.config.k);
    if config.k == 0 || !units.is_multiple_of(config.k) {
        crate::bail_input!("--k {} does not divide the {units} units per stage", config.k);
    }
    config.nwarp = units / config.k;
    if to == ModelKind::Wrn {
        args.warp.refuse_for_wrn("--to wrn")?;
        (config.variant, config.max_order, config.derivative_bn) = (None, None, None);
    } else {
        config.variant = args.warp.variant.or(config.variant);
        config.max_order = args.warp.max_order.or(config.max_order.filter(|_| args.warp.variant.is_none()));
        config.derivative_bn = args.warp.derivative_bn.or(config.derivative_bn);
    }
    config.out = Some(out.to_path_buf());
    config.devices = None;
    config.placement = None;
    config.validate().map_err(input_error)?;
    let net_config = config.net(run.data.class_names.len());
    let vs = VarStore::new(Device::Cpu);
    let _net = Net::new(&vs.root(), &net_config);
    load_weights(&vs, &run.weights)?;

    // Written into a temporary sibling folder, renamed into place when complete.
    write_atomic_with(out, |tmp| {
        std::fs::create_dir_all(tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
        write_atomic(&tmp.join(crate::train::run_folder::CONFIG), toml::to_string(&config)?.as_bytes())?;
        run.data.write(tmp)?;
        save_weights(&vs, &tmp.join("model.safetensors"))
    })?;
    println!(
        "{} -> {}: {}",
        run.folder.display(),
        net_config.describe(),
        out.join("model.safetensors").display()
    );
    Ok(())
}

/// Every variable under its own name (the names PyTorch's modules give them in
/// python/warpnet_torch.py), plus each BatchNorm's `num_batches_tracked` (0: unknown here, and unused
/// by PyTorch when the BN momentum is set) so that `load_state_dict` is strict.
fn export_pytorch(run: &RunFiles, file: &Path) -> anyhow::Result<()> {
    let net_config = run.config.net(run.data.class_names.len());
    let vs = VarStore::new(Device::Cpu);
    let _net = Net::new(&vs.root(), &net_config);
    load_weights(&vs, &run.weights)?;
    let mut tensors: Vec<(String, Tensor)> = copy_variables(&vs, Device::Cpu).into_iter().collect();
    let batch_norms: Vec<String> =
        tensors.iter().filter_map(|(n, _)| n.strip_suffix(".running_mean").map(String::from)).collect();
    for bn in batch_norms {
        tensors.push((format!("{bn}.num_batches_tracked"), Tensor::from(0i64).to_kind(Kind::Int64)));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    write_atomic_with(file, |tmp| {
        Tensor::write_safetensors(&tensors, tmp).with_context(|| format!("{}: cannot write", tmp.display()))
    })?;
    println!(
        "{}: {} tensors of {} for python/warpnet_torch.py WRN(units={}, width={}, classes={})",
        file.display(),
        tensors.len(),
        net_config.label(),
        net_config.units_per_stage(),
        net_config.width,
        net_config.classes
    );
    Ok(())
}
