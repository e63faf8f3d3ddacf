//! `warpnet lm`: the byte-level transformer language model: train, resume, eval, generate, bench,
//! plan, and compare (its variants trained side by side).

mod bench;
mod compare;
mod taylor;

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::flags::fresh_folder;
use crate::model::transformer::{LmConfig, LmVariant};
use crate::model::Architecture;
use crate::report::plot;
use crate::train::lm::generate::{generate, Sampling};
use crate::train::lm::{self, folder, LmSummary, LmTrainConfig};
use crate::train::Verbosity;

#[derive(Debug, Args)]
pub struct LmArgs {
    #[command(subcommand)]
    pub command: LmCommand,
}

#[derive(Debug, Subcommand)]
pub enum LmCommand {
    /// Train a language model on a text corpus.
    Train(Box<TrainArgs>),
    /// Continue a run from its newest checkpoint, as it was configured.
    Resume(ResumeArgs),
    /// A run's validation loss in bits per byte.
    Eval(EvalArgs),
    /// Text from a run's model.
    Generate(GenerateArgs),
    /// Time training steps on random bytes, on one device or several.
    Bench(bench::BenchArgs),
    /// Predict the step on 1..P devices from a profile measured here, and choose each placement.
    Plan(bench::PlanArgs),
    /// The variants trained with one seed and budget, timed, and drawn side by side.
    Compare(compare::CompareArgs),
    /// How far each warp layer of a trained model is from the sequential sublayers it stands for.
    Taylor(taylor::TaylorArgs),
}

pub fn run(args: LmArgs) -> anyhow::Result<()> {
    match args.command {
        LmCommand::Train(args) => train(*args),
        LmCommand::Resume(args) => resume(args),
        LmCommand::Eval(args) => eval(args),
        LmCommand::Generate(args) => generate_text(args),
        LmCommand::Bench(args) => bench::bench(args),
        LmCommand::Plan(args) => bench::plan(args),
        LmCommand::Compare(args) => compare::run(args),
        LmCommand::Taylor(args) => taylor::run(args),
    }
}

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub config: LmTrainConfig,
    /// Output folder (default: runs/<model>-<corpus>[-n]).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the resolved configuration as TOML and exit without training.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub output: Output,
}

/// How a run reports.
#[derive(Debug, Clone, Copy, Args)]
pub struct Output {
    /// Print the final figures as one JSON object on the last stdout line.
    #[arg(long)]
    pub json: bool,
    /// No progress bar or per-evaluation lines.
    #[arg(long)]
    pub quiet: bool,
}

impl Output {
    fn verbosity(self) -> Verbosity {
        if self.quiet {
            Verbosity::Quiet
        } else {
            Verbosity::Normal
        }
    }
}

fn train(args: TrainArgs) -> anyhow::Result<()> {
    args.config.validate().map_err(crate::error::input_error)?;
    if args.dry_run {
        print!("{}", toml::to_string(&args.config)?);
        return Ok(());
    }
    let out = args.out.unwrap_or_else(|| fresh_folder(Path::new("runs"), &run_name(&args.config)));
    let summary = lm::train(&args.config, &out, args.output.verbosity())?;
    report(&summary, args.output.json)
}

#[derive(Debug, Clone, Args)]
pub struct ResumeArgs {
    /// The run folder.
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    #[command(flatten)]
    pub output: Output,
}

fn resume(args: ResumeArgs) -> anyhow::Result<()> {
    let summary = lm::resume(&args.run, args.output.verbosity())?;
    report(&summary, args.output.json)
}

/// "<model>-<corpus>": a run folder's default name, "GPT-4x128-warpnet2-K2-fortunes".
pub fn run_name(config: &LmTrainConfig) -> String {
    let model = config.model.label().replace(' ', "-").replace('=', "");
    let corpus = config.data.file_stem().map_or("text".into(), |s| s.to_string_lossy().into_owned());
    format!("{model}-{corpus}")
}

/// The final line (and JSON) of a finished run, after its validation curve (validation-bpb.png in
/// the run folder; a run is not failed by its plot).
fn report(summary: &LmSummary, json: bool) -> anyhow::Result<()> {
    let chart = summary.out.join(plot::LM_CHART);
    if let Err(e) = plot::plot_lm_runs(std::slice::from_ref(&summary.out), &chart, None) {
        eprintln!("warning: {}: no plot: {e:#}", chart.display());
    }
    println!(
        "{}: validation {:.4} bits per byte, {} steps in {:.0} s of training, {:.0} tokens/s; run folder {}",
        summary.model,
        summary.validation_bits_per_byte,
        summary.steps,
        summary.train_seconds,
        summary.tokens_per_s,
        summary.out.display()
    );
    if json {
        super::print_json(summary)?;
    }
    Ok(())
}

/// Which model a run's weights are evaluated as: the run's own unless a flag says otherwise.
#[derive(Debug, Clone, Copy, Args)]
pub struct AsModel {
    /// Evaluate the weights as this variant (they are named by block, whatever the grouping).
    #[arg(long = "as", value_enum, value_name = "VARIANT")]
    pub variant: Option<LmVariant>,
    /// ... with this K.
    #[arg(long)]
    pub k: Option<usize>,
}

impl AsModel {
    fn apply(self, run: &LmConfig) -> LmConfig {
        LmConfig { variant: self.variant.unwrap_or(run.variant), k: self.k.unwrap_or(run.k), ..run.clone() }
    }
}

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    #[command(flatten)]
    pub model: AsModel,
    /// Validation batches (default: the run's).
    #[arg(long)]
    pub batches: Option<usize>,
    /// Bytes of context per validation window, at most the run's position table (default: all of it).
    #[arg(long)]
    pub context: Option<usize>,
    /// Print the figures as one JSON object on the last stdout line.
    #[arg(long)]
    pub json: bool,
}

/// `lm eval`'s figures.
#[derive(Debug, serde::Serialize)]
struct Evaluated {
    model: String,
    weights: PathBuf,
    validation_bytes: usize,
    validation_loss: f64,
    validation_bits_per_byte: f64,
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    let trained = folder::load(&args.run, |run| args.model.apply(run))?;
    let c = &trained.config;
    let context = args.context.unwrap_or(c.model.context);
    if context == 0 || context > c.model.context {
        crate::bail_input!(
            "--context {context}: must be between 1 and the position table of {} ({} positions)",
            args.run.display(),
            c.model.context
        );
    }
    let count = args.batches.unwrap_or(c.eval_batches);
    if count == 0 {
        crate::bail_input!("--batches must be at least 1, got 0");
    }
    let corpus = crate::data::text::Corpus::read(&c.data, c.validation_share, context)?;
    let batches = corpus.validation_batches(count, c.batch, context);
    let precision = c.precision_choice().precision;
    let loss = lm::evaluate::validation_loss(&trained.net, &batches, precision);
    let figures = Evaluated {
        model: c.model.label(),
        weights: trained.weights.clone(),
        validation_bytes: batches.len() * c.batch * context,
        validation_loss: loss,
        validation_bits_per_byte: loss / std::f64::consts::LN_2,
    };
    println!(
        "{} ({}): validation loss {:.4} nats, {:.4} bits per byte, over {} bytes in {precision}",
        figures.model,
        figures.weights.display(),
        figures.validation_loss,
        figures.validation_bits_per_byte,
        figures.validation_bytes
    );
    if args.json {
        super::print_json(&figures)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// The text to continue.
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Bytes to generate.
    #[arg(long, default_value_t = 300)]
    pub length: usize,
    #[command(flatten)]
    pub sampling: Sampling,
    #[command(flatten)]
    pub model: AsModel,
    /// Print the prompt and text as one JSON object on the last stdout line.
    #[arg(long)]
    pub json: bool,
}

fn generate_text(args: GenerateArgs) -> anyhow::Result<()> {
    let trained = folder::load(&args.run, |run| args.model.apply(run))?;
    let text = generate(
        &trained.net,
        trained.config.model.context,
        args.prompt.as_bytes(),
        args.length,
        args.sampling,
    );
    let text = String::from_utf8_lossy(&text).into_owned();
    println!("{}{text}", args.prompt);
    if args.json {
        super::print_json(
            &serde_json::json!({ "prompt": args.prompt, "text": text, "sampling": args.sampling }),
        )?;
    }
    Ok(())
}

/// The model's one line in a table: "warpnet2 K=2".
pub fn variant_label(model: &LmConfig) -> String {
    let variant = format!("{:?}", model.variant).to_lowercase();
    match model.units_per_layer() {
        1 => variant,
        k => format!("{variant} K={k}"),
    }
}
