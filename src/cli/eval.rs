//! `warpnet eval`: one set of weights evaluated as the WRN, as the WarpNet, or both.
//!
//! WRN and WarpNet of the same size share parameter names, so a checkpoint of either loads into both;
//! evaluated both ways, the two test errors measure how well the warp operator approximates the
//! sequential network for those weights (the paper's Fig. 2 discussion).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use serde::Serialize;
use tch::{nn::VarStore, Device};

use super::flags::{positive, WarpFlags};
use crate::data::augment::Standardizer;
use crate::data::{self, DataSpec};
use crate::error::input_error;
use crate::model::{ModelKind, Net, NetConfig};
use crate::train::checkpoint::load_weights;
use crate::train::evaluate::evaluate;
use crate::train::TrainConfig;

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// Weights written by `warpnet train` (RUN/model.safetensors; RUN/config.toml gives the network).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Evaluate as this network only (default: both).
    #[arg(long = "as", value_enum)]
    pub as_model: Option<ModelKind>,
    /// Data set (default: the run's).
    #[arg(long)]
    pub data: Option<DataSpec>,
    /// Warp factor K of the WarpNet view (default: the run's); it must divide the units per stage.
    #[arg(long, value_parser = positive)]
    pub k: Option<usize>,
    /// The WarpNet view's operator (default: the run's).
    #[command(flatten)]
    pub warp: WarpFlags,
    /// Images per forward pass.
    #[arg(long, default_value = "500", value_parser = positive)]
    pub eval_batch: usize,
    /// Print the figures as one JSON object on the last stdout line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct ViewResult {
    model: String,
    description: String,
    test_loss: f64,
    test_error: f64,
    images: usize,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let run_config = read_run_config(&args.checkpoint)?;
    let spec = args.data.clone().unwrap_or(run_config.data.clone());
    let splits = data::load(&spec)?;
    let trained = run_config.net(splits.train.classes);
    let standardizer = Standardizer::fit(&splits.train);
    let test = Arc::new(splits.test);
    let models = match args.as_model {
        Some(model) => vec![model],
        None => vec![ModelKind::Wrn, ModelKind::Warp],
    };
    let views = models.into_iter().map(|m| view(&trained, m, &args)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut results = Vec::new();
    for config in views {
        let vs = VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), &config);
        load_weights(&vs, &args.checkpoint)?;
        let e = evaluate(&net, &test, standardizer, args.eval_batch, Device::Cpu);
        println!(
            "{}: test error {:.2}% (loss {:.4}) on {} images of {spec}",
            config.describe(),
            100.0 * e.error,
            e.loss,
            e.images
        );
        results.push(ViewResult {
            model: config.label(),
            description: config.describe(),
            test_loss: e.loss,
            test_error: e.error,
            images: e.images,
        });
    }
    if args.json {
        super::print_json(&serde_json::json!({ "checkpoint": args.checkpoint, "results": results }))?;
    }
    Ok(())
}

/// The run's config.toml beside the checkpoint.
fn read_run_config(checkpoint: &Path) -> anyhow::Result<TrainConfig> {
    if !checkpoint.is_file() {
        crate::bail_input!("{}: no such checkpoint file", checkpoint.display());
    }
    let path = checkpoint.with_file_name("config.toml");
    let text = std::fs::read_to_string(&path).map_err(|_| {
        input_error(format!(
            "{}: missing (eval reads the run's config beside the checkpoint)",
            path.display()
        ))
    })?;
    let message = |e: toml::de::Error| input_error(format!("{}: {}", path.display(), e.message()));
    toml::from_str(&text).map_err(message)
}

/// The trained network seen as `model`, with the flags' overrides for the WarpNet view.
fn view(trained: &NetConfig, model: ModelKind, args: &EvalArgs) -> anyhow::Result<NetConfig> {
    let units = trained.units_per_stage();
    let mut config = trained.as_model(model);
    if model == ModelKind::Warp {
        let k = args.k.unwrap_or(trained.k);
        if !units.is_multiple_of(k) {
            crate::bail_input!("--k {k} does not divide the {units} units per stage of {}", trained.label());
        }
        config.k = k;
        config.nwarp = units / k;
        let flags = &args.warp;
        config.variant = flags.variant.unwrap_or(trained.variant);
        config.derivative_bn = flags.derivative_bn.unwrap_or(trained.derivative_bn);
        config.max_order = flags.max_order.or(trained.max_order.filter(|_| flags.variant.is_none()));
        config.validate().map_err(input_error)?;
    }
    Ok(config)
}
