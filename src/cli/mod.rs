//! The `warpnet` command line: one file per subcommand.

pub mod analyze;
pub mod bench;
pub mod convert;
pub mod data;
pub mod demo;
pub mod eval;
pub mod flags;
pub mod lm;
pub mod plan;
pub mod plot;
pub mod predict;
pub mod reproduce;
pub mod train;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "warpnet", version, about = "Warped Residual Networks (Fok et al., ICLR 2018) on libtorch")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Under mpirun: seconds any rank waits for another before the job stops, naming the silent rank.
    #[arg(long, global = true, default_value_t = crate::runtime::mpi::DEFAULT_TIMEOUT_S, value_parser = positive_seconds)]
    pub mpi_timeout: f64,
}

fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!("'{}': expected a positive number of seconds", text.escape_default())),
    }
}

impl Cli {
    /// What every rank of an MPI job must agree on besides the binary: a training run's resolved
    /// configuration (flags, config file and preset together), else the command line.
    pub fn fingerprint(&self) -> String {
        let resolved = match &self.command {
            Some(Command::Train(args)) if args.resume.is_none() => {
                args.resolve().ok().and_then(|c| toml::to_string(&c).ok())
            }
            _ => None,
        };
        resolved.unwrap_or_else(|| format!("{:?}", std::env::args().skip(1).collect::<Vec<_>>()))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The WRN and its WarpNet twin trained side by side, timed, and drawn (also: no subcommand).
    Demo(demo::DemoArgs),
    /// Train a network.
    Train(Box<train::TrainArgs>),
    /// Evaluate a checkpoint as the WRN, the WarpNet, or both.
    Eval(eval::EvalArgs),
    /// The top-5 classes of PNG or JPEG images, prepared as the run's training data was.
    Predict(predict::PredictArgs),
    /// Re-group a checkpoint's weights (WRN <-> WarpNet) or export them for PyTorch.
    Convert(convert::ConvertArgs),
    /// Time training steps on synthetic data and print images/s.
    Bench(bench::BenchArgs),
    /// Data sets: download the official CIFAR archives, print a set's counts and statistics.
    Data(data::DataArgs),
    /// Draw test error against epoch for one or more runs (the paper's Fig. 2).
    Plot(plot::PlotArgs),
    /// The paper's claims measured: Taylor error, path counts, gradient scaling, WarpNet/WRN agreement.
    Analyze(analyze::AnalyzeArgs),
    /// Train and time the rows of the paper's Table 2, 3 or 5 and print them beside the paper's figures.
    Reproduce(reproduce::ReproduceArgs),
    /// Predict a WarpNet's step and RS on P devices from a profile, and choose its placement.
    Plan(plan::PlanArgs),
    /// A byte-level transformer language model: train, resume, eval, generate, bench, plan, compare.
    Lm(lm::LmArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Demo(args)) => demo::run(args),
        Some(Command::Train(args)) => train::run(*args),
        Some(Command::Eval(args)) => eval::run(args),
        Some(Command::Predict(args)) => predict::run(args),
        Some(Command::Convert(args)) => convert::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Data(args)) => data::run(args),
        Some(Command::Plot(args)) => plot::run(args),
        Some(Command::Analyze(args)) => analyze::run(args),
        Some(Command::Reproduce(args)) => reproduce::run(args),
        Some(Command::Plan(args)) => plan::run(args),
        Some(Command::Lm(args)) => lm::run(args),
        None => {
            println!("warpnet: no subcommand, so the demo: `warpnet demo` (see `warpnet --help`)");
            demo::run(demo::DemoArgs::default())
        }
    }
}

/// Prints `value` as one JSON line (the last stdout line of a `--json` run).
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}
