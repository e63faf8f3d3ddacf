//! `warpnet lm taylor RUN`: the first-order remainder of a trained language model, warp layer by warp
//! layer, for every variant and K (analysis/lm_taylor.rs).

use std::path::PathBuf;

use clap::Args;
use tch::{Device, Tensor};

use crate::analysis::lm_taylor::{self, LayerRow};
use crate::base::named::copy_variables;
use crate::data::text::Corpus;
use crate::model::transformer::LmVariant;
use crate::report::table::Table;
use crate::train::lm::folder;

/// The variants measured, fewest terms first.
const VARIANTS: [LmVariant; 4] =
    [LmVariant::Parallel, LmVariant::Warpnet1, LmVariant::Warpnet2, LmVariant::Exact];

#[derive(Debug, Clone, Args)]
pub struct TaylorArgs {
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Sublayers per warp layer (each dividing the 2N sublayers).
    #[arg(long, value_delimiter = ',', default_value = "2,4")]
    pub k: Vec<usize>,
    /// Validation windows of the run's context, from the start of its validation part.
    #[arg(long, default_value_t = 64)]
    pub windows: usize,
    /// Print the rows as one JSON array on the last stdout line.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: TaylorArgs) -> anyhow::Result<()> {
    let trained = folder::load(&args.run, |run| run.clone())?;
    let config = &trained.config;
    let sublayers = 2 * config.model.blocks;
    if let Some(k) = args.k.iter().find(|&&k| k < 2 || !sublayers.is_multiple_of(k)) {
        crate::bail_input!("--k {k}: must be at least 2 and divide the model's {sublayers} sublayers");
    }
    if args.windows == 0 {
        crate::bail_input!("--windows must be at least 1, got 0");
    }
    let corpus = Corpus::read(&config.data, config.validation_share, config.model.context)?;
    let windows = corpus.validation_batches(1, args.windows, config.model.context);
    let tokens: &Tensor = &windows[0].inputs; // (windows, T)
    let weights = copy_variables(&trained.vs, Device::Cpu);
    let rows = lm_taylor::layers(&config.model, &weights, tokens, &args.k, &VARIANTS);
    println!(
        "{}: ||warp layer - sequential sublayers|| / ||sequential - x1|| on {} validation windows of {} bytes",
        args.run.display(),
        args.windows,
        config.model.context
    );
    print!("{}", table(&rows).markdown());
    if args.json {
        crate::cli::print_json(&rows)?;
    }
    Ok(())
}

/// One row per (K, variant): the mean over its warp layers, each layer's error, and its step.
fn table(rows: &[LayerRow]) -> Table {
    let mut table =
        Table::new(&["K", "variant", "mean", "layer by layer", "step (norm of x_K+1 - x1 over x1)"]);
    let listed = |values: Vec<f64>| values.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(", ");
    for group in rows.chunk_by(|a, b| (a.k, &a.variant) == (b.k, &b.variant)) {
        let errors: Vec<f64> = group.iter().map(|r| r.relative_error).collect();
        let mean = errors.iter().sum::<f64>() / errors.len() as f64;
        table.push(vec![
            group[0].k.to_string(),
            group[0].variant.clone(),
            format!("{mean:.3}"),
            listed(errors),
            listed(group.iter().map(|r| r.step).collect()),
        ]);
    }
    table
}
