//! `warpnet lm bench` (training steps timed on random bytes) and `warpnet lm plan` (the step-time
//! model's prediction on 1..P CPU workers, each with the placement it predicts fastest).

use clap::Args;
use serde::Serialize;

use crate::cli::flags::positive;
use crate::model::transformer::LmConfig;
use crate::model::Architecture;
use crate::planner::auto_placement::PlacementSetting;
use crate::planner::stats::median;
use crate::precision::PrecisionSetting;
use crate::report::table::Table;
use crate::runtime::Devices;
use crate::train::lm::timing::step_times;
use crate::train::lm::LmTrainConfig;

/// The model and its step: what bench and plan measure.
#[derive(Debug, Clone, Args)]
pub struct StepFlags {
    #[command(flatten)]
    pub model: LmConfig,
    /// Sequences per step.
    #[arg(long, default_value_t = LmTrainConfig::default().batch)]
    pub batch: usize,
    /// fp32, bf16 or auto.
    #[arg(long, value_enum, default_value_t)]
    pub precision: PrecisionSetting,
}

impl StepFlags {
    /// A training run's settings with these.
    fn config(
        &self,
        devices: Option<Devices>,
        placement: Option<PlacementSetting>,
    ) -> anyhow::Result<LmTrainConfig> {
        let config = LmTrainConfig {
            model: self.model.clone(),
            batch: self.batch,
            precision: self.precision,
            devices,
            placement,
            ..LmTrainConfig::default()
        };
        config.validate().map_err(crate::error::input_error)?;
        config.with_auto_placement()
    }
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub step: StepFlags,
    /// Workers of the parallel executor (cpu:N, cuda:0,cuda:1, mpi); none: one device.
    #[arg(long)]
    pub devices: Option<Devices>,
    /// A warp layer's terms per device, or auto; with --devices and none, data parallelism.
    #[arg(long)]
    pub placement: Option<PlacementSetting>,
    /// Timed steps (after two untimed).
    #[arg(long, default_value_t = 10, value_parser = positive)]
    pub steps: usize,
    /// Print the figures as one JSON object on the last stdout line.
    #[arg(long)]
    pub json: bool,
}

/// A bench's figures.
#[derive(Debug, Serialize)]
pub struct Timed {
    pub model: String,
    pub devices: String,
    pub placement: Option<String>,
    pub batch: usize,
    pub context: usize,
    /// Median over the timed steps.
    pub ms_per_step: f64,
    pub tokens_per_s: f64,
}

/// Untimed steps before the timed ones (allocator and oneDNN's kernel choice settle).
pub const WARMUP_STEPS: usize = 2;

/// The median step of `config`, timed over `steps` steps.
pub fn time(config: &LmTrainConfig, steps: usize) -> anyhow::Result<Timed> {
    let ms = median(&step_times(config, WARMUP_STEPS, steps)?);
    let tokens = (config.batch * config.model.context) as f64;
    Ok(Timed {
        model: config.model.label(),
        devices: config.devices.as_ref().map_or("one device".into(), |d| d.to_string()),
        placement: config.placement.as_ref().map(|p| p.to_string()),
        batch: config.batch,
        context: config.model.context,
        ms_per_step: ms,
        tokens_per_s: tokens / ms * 1e3,
    })
}

pub fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let config = args.step.config(args.devices, args.placement)?;
    let timed = time(&config, args.steps)?;
    let placement = timed.placement.as_deref().map_or(String::new(), |p| format!(", placement {p}"));
    println!(
        "{} on {}{placement}, batch {} x {} bytes, {}: {:.1} ms per step (median of {}), {:.0} tokens/s",
        timed.model,
        timed.devices,
        timed.batch,
        timed.context,
        config.precision_choice().precision,
        timed.ms_per_step,
        args.steps,
        timed.tokens_per_s
    );
    if args.json {
        crate::cli::print_json(&timed)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub step: StepFlags,
    /// The most CPU workers to predict for.
    #[arg(long, default_value_t = 2, value_parser = positive)]
    pub devices: usize,
    /// Print the rows as one JSON array on the last stdout line.
    #[arg(long)]
    pub json: bool,
}

/// One row of a plan.
#[derive(Debug, Serialize)]
struct Planned {
    devices: usize,
    placement: String,
    predicted_ms: f64,
    /// (one device - this) / one device.
    rs: f64,
}

pub fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let config = args.step.config(None, None)?;
    let precision = config.precision_choice().precision;
    let most = if config.model.terms().len() < 2 {
        println!("{}: one term per warp layer, nothing to place; one device only", config.model.label());
        1
    } else {
        args.devices
    };
    let rows =
        crate::planner::prediction::on_cpu_workers(&config.model, config.batch as i64, precision, most)?;
    let one = rows[0].2;
    let planned: Vec<Planned> = rows
        .into_iter()
        .map(|(devices, placement, ms)| Planned {
            devices,
            placement: placement.to_string(),
            predicted_ms: ms,
            rs: (one - ms) / one,
        })
        .collect();
    let mut table = Table::new(&["CPU workers", "placement", "predicted ms/step", "RS"]);
    for p in &planned {
        let rs = format!("{:.1}%", 100.0 * p.rs);
        table.push(vec![p.devices.to_string(), p.placement.clone(), format!("{:.1}", p.predicted_ms), rs]);
    }
    println!(
        "{}, batch {} x {} bytes, {precision}:",
        config.model.label(),
        config.batch,
        config.model.context
    );
    print!("{}", table.markdown());
    if args.json {
        crate::cli::print_json(&planned)?;
    }
    Ok(())
}
