//! `warpnet eval`: one set of weights evaluated as the WRN, as the WarpNet, or both.
//!
//! WRN and WarpNet of the same size share parameter names, so a checkpoint of either loads into both;
//! evaluated both ways, the two test errors measure how well the warp operator approximates the
//! sequential network for those weights (the paper's Fig. 2 discussion).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde::Serialize;
use tch::{nn::VarStore, Device};

use super::flags::{positive, PrecisionFlag, WarpFlags};
use crate::data::{self, DataSpec};
use crate::error::input_error;
use crate::model::{ModelKind, Net, NetConfig};
use crate::precision::Precision;
use crate::report::Table;
use crate::train::checkpoint::load_weights;
use crate::train::evaluate::{evaluate, Evaluation, TOP_K};
use crate::train::run_folder;

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// A run folder (its model.safetensors) or weights written by `warpnet train`
    /// (RUN/model.safetensors, RUN/checkpoints/step-N.safetensors); RUN/config.toml gives the network.
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
    #[command(flatten)]
    pub precision: PrecisionFlag,
    /// Print the figures as one JSON object on the last stdout line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct ViewResult {
    model: String,
    description: String,
    precision: Precision,
    evaluation: Evaluation,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    if args.as_model == Some(ModelKind::Wrn) {
        args.warp.refuse_for_wrn("--as wrn")?;
        if args.k.is_some() {
            crate::bail_input!("--k means nothing with --as wrn (K groups units into warp layers)");
        }
    }
    let run = run_folder::open(&args.checkpoint)?;
    let spec = args.data.clone().unwrap_or(run.config.data.clone());
    let splits = data::load(&spec)?;
    if splits.class_names.len() != run.data.class_names.len() {
        crate::bail_input!(
            "--data {spec}: {} classes, the network was trained on {}",
            splits.class_names.len(),
            run.data.class_names.len()
        );
    }
    let trained = run.config.net(splits.train.classes);
    let test = Arc::new(splits.test);
    let models = match args.as_model {
        Some(model) => vec![model],
        None => vec![ModelKind::Wrn, ModelKind::Warp],
    };
    let views = models.into_iter().map(|m| view(&trained, m, &args)).collect::<anyhow::Result<Vec<_>>>()?;
    let precision = args.precision.decide(&[Device::Cpu]);
    println!("precision {precision}");
    let mut results = Vec::new();
    for config in views {
        let vs = VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), &config);
        load_weights(&vs, &run.weights)?;
        // Standardised as in training: the training set's statistics, kept in the run folder.
        let e =
            evaluate(&net, &test, run.data.standardizer, args.eval_batch, Device::Cpu, precision.precision);
        println!(
            "{}: top-1 error {:.2}%, top-{TOP_K} error {:.2}%, loss {:.4} on {} images of {spec}",
            config.describe(),
            100.0 * e.error,
            100.0 * e.top5_error,
            e.loss,
            e.images
        );
        let (model, description) = (config.label(), config.describe());
        results.push(ViewResult { model, description, precision: precision.precision, evaluation: e });
    }
    print_per_class(&splits.class_names, &results);
    if args.json {
        super::print_json(&serde_json::json!({ "checkpoint": args.checkpoint, "results": results }))?;
    }
    Ok(())
}

/// One row per class: its top-1 error under every view.
fn print_per_class(class_names: &[String], results: &[ViewResult]) {
    let headers: Vec<String> = std::iter::once("class".to_string())
        .chain(results.iter().map(|r| format!("{} error", r.model)))
        .collect();
    let mut table = Table::new(&headers.iter().map(String::as_str).collect::<Vec<_>>());
    for (c, name) in class_names.iter().enumerate() {
        let errors = results.iter().map(|r| format!("{:.1}%", 100.0 * r.evaluation.per_class_error[c]));
        table.push(std::iter::once(name.clone()).chain(errors).collect());
    }
    print!("{}", table.markdown());
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
