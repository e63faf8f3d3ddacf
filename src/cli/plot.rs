//! `warpnet plot`: a metric against epoch for one or more run folders on one chart (the paper's Fig. 2),
//! written as PNG or SVG.

use std::path::PathBuf;

use crate::report::plot::{plot_runs_titled, Metric};

#[derive(Debug, Clone, clap::Args)]
pub struct PlotArgs {
    /// Run folders written by `warpnet train` (each holds metrics.jsonl); one curve each, labelled with
    /// the folder name.
    #[arg(value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// The chart to write (required): .png or .svg.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// What to draw against epoch.
    #[arg(long, value_enum, default_value_t = Metric::TestError)]
    pub metric: Metric,
    /// A title above the chart.
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
}

/// Draws the chart and prints the path written.
pub fn run(args: PlotArgs) -> anyhow::Result<()> {
    // Checked here rather than by clap, whose message would not fit on one line.
    let Some(out) = args.out else {
        crate::bail_input!("--out: missing (the chart to write, FILE.png or FILE.svg)");
    };
    plot_runs_titled(&args.runs, &out, args.metric, args.title.as_deref())?;
    println!("{}", out.display());
    Ok(())
}
