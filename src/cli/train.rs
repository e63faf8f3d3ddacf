//! `warpnet train`: flags over a preset, then the training loop.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use super::flags::{fresh_folder, positive, PrecisionFlag, WarpFlags};
use crate::data::{self, DataSpec};
use crate::error::input_error;
use crate::model::config::ANY_CLASSES;
use crate::model::{terms, ModelKind};
use crate::planner::auto_placement::PlacementSetting;
use crate::report::plot;
use crate::runtime::Devices;
use crate::train::{self, CheckpointEvery, Preset, TrainConfig, Verbosity};

/// The largest seed: config.toml holds integers as TOML does, signed 64-bit.
const SEED_MAX: u64 = i64::MAX as u64;

/// Every flag is optional: unset flags keep the preset's value (`--preset paper` by default, the
/// paper's CIFAR recipe).
#[derive(Debug, Clone, Default, Args)]
pub struct TrainArgs {
    /// Starting values for every setting below.
    #[arg(long, value_enum)]
    pub preset: Option<Preset>,
    /// A TOML file of settings (keys as in a run's config.toml), laid over the preset; flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Print the resolved configuration as TOML and exit without training.
    #[arg(long)]
    pub dry_run: bool,
    /// Continue the run in this folder from its newest checkpoint, as it was configured (no other
    /// settings may be given).
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub settings: TrainSettings,
    /// Print the final figures as one JSON object on the last stdout line.
    #[arg(long)]
    pub json: bool,
    /// No progress bar or per-epoch lines.
    #[arg(long)]
    pub quiet: bool,
}

/// The settings flags of `train`: each is the TrainConfig key of its name, laid over the preset and the
/// --config file the way that file is (`TrainConfig::overlaid_with`), only when given.
#[derive(Debug, Clone, Default, Args, Serialize)]
pub struct TrainSettings {
    /// Checkpoints kept in the run folder (one is written per epoch, on Ctrl-C and SIGTERM, and as
    /// --checkpoint-every says).
    #[arg(long, value_parser = positive)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_checkpoints: Option<usize>,
    /// Checkpoints within epochs too: every N steps (500) or every so long (90s, 10m, 2h), so that a
    /// killed run loses at most that much (default: at the end of each epoch only).
    #[arg(long, value_name = "STEPS|DURATION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<CheckpointEvery>,
    /// Network kind.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelKind>,
    /// Warp factor K: units per warp layer (a WRN gets K * Nwarp plain units per stage).
    #[arg(long, value_parser = positive)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// Warp layers per stage.
    #[arg(long, value_parser = positive)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nwarp: Option<usize>,
    /// Widening factor kw (channels 16kw, 32kw, 64kw).
    #[arg(long, value_parser = positive)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    pub warp: WarpFlags,
    /// Data set: fashion-mnist (embedded subset), fashion-mnist:DIR, cifar10:DIR, cifar100:DIR, imagenet32:DIR.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<DataSpec>,
    /// Train on the first N training images only (quick experiments).
    #[arg(long, value_parser = positive)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_train: Option<usize>,
    /// Passes over the training set.
    #[arg(long, conflicts_with = "iters")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<usize>,
    /// Total optimizer steps (instead of --epochs).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iters: Option<usize>,
    /// Training batch size.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Evaluation batch size.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_batch: Option<usize>,
    /// Initial learning rate.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Epochs at which the learning rate is multiplied by --gamma, e.g. 60,120,160 (empty: none).
    #[arg(long, value_delimiter = ',', num_args = 0..)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub milestones: Option<Vec<usize>>,
    /// Learning-rate factor at each milestone.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    /// Weight decay.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wd: Option<f64>,
    /// SGD momentum.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// Random seed (weights, data order, augmentation).
    #[arg(long, value_parser = clap::value_parser!(u64).range(..=SEED_MAX))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Parallel workers: cpu:N (N CPU threads sharing the cores), cuda:0,cuda:1,... or mpi (one worker per
    /// rank of `mpirun -np N`; default: one device).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<Devices>,
    /// Terms of a warp layer per device, paper notation: "[F1],[F2],[F2'x1]" (default: the paper's
    /// assignment when it fits --devices, else data parallelism). --devices with R times its brackets
    /// runs R data-parallel replicas of it (the hybrid). Shares split a term's batch:
    /// "[F1,F2'x1:0.5],[F2,F2'x1:0.5]". `auto`: the placement the step-time model predicts fastest on
    /// --devices, measured here first.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
    /// libtorch intra-op threads (default: all cores).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    pub precision: PrecisionFlag,
    /// Output folder (default: runs/<network>-<data>[-n]).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<PathBuf>,
}

impl TrainArgs {
    /// The preset with every given flag applied, validated.
    pub fn resolve(&self) -> anyhow::Result<TrainConfig> {
        let mut c = self.preset.unwrap_or(Preset::Paper).config();
        if let Some(path) = &self.config {
            c = c.overlaid_with_file(path)?;
        }
        let flags = toml::Table::try_from(&self.settings)?;
        c = c.overlaid_with(flags).map_err(|e| input_error(e.message().trim().to_string()))?;
        if self.settings.epochs.is_some() {
            c.iters = None; // --epochs over a preset or file that counts steps
        }
        let checked = Self::check(c);
        match (&self.config, checked) {
            // A setting the file gave (or a flag fighting it): the message names the file too.
            (Some(path), Err(e)) => Err(e.context(format!("--config {}", path.display()))),
            (_, checked) => checked,
        }
    }

    /// Validates a resolved config; with --devices, also its placement against the warp layer, now,
    /// before any data is read, and writes out the placement the run will use (the paper's assignment
    /// where none was given). `auto` is resolved by `run` (it measures a profile: not part of what
    /// every rank agrees on).
    fn check(mut c: TrainConfig) -> anyhow::Result<TrainConfig> {
        c.validate().map_err(input_error)?;
        if c.devices.is_some() && c.placement != Some(PlacementSetting::Auto) {
            let plan = c.parallel_plan(&c.net(ANY_CLASSES))?;
            c.placement = plan.placement.map(PlacementSetting::Given).or(c.placement);
        }
        Ok(c)
    }
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    if let Some(run_dir) = &args.resume {
        return resume(run_dir, &args);
    }
    let config = args.resolve()?.with_auto_placement()?;
    if args.dry_run {
        print!("{}", toml::to_string(&config)?);
        return Ok(());
    }
    let splits = data::load(&config.data)?;
    let label = config.net(splits.train.classes).label();
    let out = config.out.clone().unwrap_or_else(|| fresh_run_dir(Path::new("runs"), &label, &config.data));
    let config = TrainConfig { out: Some(out.clone()), ..config };
    let verbosity = if args.quiet { Verbosity::Quiet } else { Verbosity::Normal };
    if verbosity == Verbosity::Normal && config.model == ModelKind::Warp {
        let net = config.net(splits.train.classes);
        let layer_terms = terms::build(net.variant, net.k, net.max_order);
        let (listed, factored) = (terms::notation(&layer_terms), terms::factored_notation(&layer_terms));
        // The paper's term list, and where terms share a Jacobian, the factored form that runs.
        let evaluated = match factored == listed || net.variant == crate::model::Variant::Released {
            true => String::new(),
            false => format!(", evaluated as {factored}"),
        };
        println!("{}: each warp layer computes x{} = {listed}{evaluated}", net.describe(), net.k + 1);
    }
    let summary = train::train(&config, splits, &out, verbosity)?;
    report(&summary, &out, args.json)
}

/// `--resume RUN_DIR`: the newest checkpoint's configuration, data and position.
fn resume(run_dir: &Path, args: &TrainArgs) -> anyhow::Result<()> {
    let alone =
        TrainArgs { resume: args.resume.clone(), json: args.json, quiet: args.quiet, ..TrainArgs::default() };
    if format!("{args:?}") != format!("{alone:?}") {
        crate::bail_input!("--resume continues a run as it was configured: give no other settings with it");
    }
    let lock = train::run_folder::WriterLock::acquire_for_resume(run_dir)?;
    let checkpoint = train::checkpoint::latest_checkpoint(run_dir)?;
    let splits = data::load(&checkpoint.sidecar.config.data)?;
    let verbosity = if args.quiet { Verbosity::Quiet } else { Verbosity::Normal };
    let summary = train::resume(run_dir, splits, (checkpoint, lock), verbosity)?;
    report(&summary, run_dir, args.json)
}

/// The final line (and JSON) of a finished run, after its test-error curve (test-error.png in the run
/// folder; a run is not failed by its plot).
pub fn report(summary: &train::RunSummary, out: &Path, json: bool) -> anyhow::Result<()> {
    let curve = out.join("test-error.png");
    if let Err(e) = plot::plot_runs(&[out.to_path_buf()], &curve, plot::Metric::TestError) {
        eprintln!("warning: {}: no plot: {e:#}", curve.display());
    }
    println!(
        "{}: test error {:.2}% (accuracy {:.2}%), {} steps in {:.0} s of training, {:.0} images/s; run folder {}",
        summary.model,
        100.0 * summary.test_error,
        100.0 * summary.test_accuracy,
        summary.steps,
        summary.train_seconds,
        summary.images_per_s,
        out.display()
    );
    if json {
        super::print_json(summary)?;
    }
    Ok(())
}

/// runs/<label>-<data set>, or the first of -2, -3, ... that does not exist yet.
fn fresh_run_dir(root: &Path, label: &str, data: &DataSpec) -> PathBuf {
    fresh_folder(root, &run_folder_name(label, data))
}

/// "<label>-<data set>": the name of a run's folder, "WRN-13-1-fashion-mnist".
pub fn run_folder_name(label: &str, data: &DataSpec) -> String {
    let data_name = data.to_string();
    format!("{label}-{}", data_name.split(':').next().unwrap_or("data"))
}
