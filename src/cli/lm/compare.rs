//! `warpnet lm compare`: the variants of one model trained with the same seeds, corpus and budget,
//! each timed on one device and on two CPU workers with the placement the step-time model predicts
//! fastest, in one table, one chart of their validation curves, and a sample of text from each.
//!
//! Every run trains first, then every variant is timed, so the timings are taken together. A variant
//! whose run folder holds a finished run is read back, and one cut short is resumed, so an interrupted
//! comparison continues where it stopped.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use super::bench::time;
use crate::base::atomic_file::write_atomic;
use crate::model::transformer::{LmConfig, LmVariant};
use crate::planner::auto_placement::PlacementSetting;
use crate::report::plot;
use crate::report::table::Table;
use crate::runtime::Devices;
use crate::train::lm::generate::{generate, Sampling};
use crate::train::lm::{self, folder, LmTrainConfig};
use crate::train::metrics::MetricsLog;
use crate::train::run_folder::{CONFIG, FINAL_WEIGHTS, METRICS};
use crate::train::Verbosity;

/// Steps of every run, and between evaluations, unless flags say otherwise.
const COMPARE_STEPS: &str = "250";
const COMPARE_EVAL_EVERY: &str = "50";
/// One precision for every variant's training and timings, the same on every machine (so a folder's runs
/// are reused wherever the comparison runs, and its figures compare across machines): fp32.
const COMPARE_PRECISION: &str = "fp32";
/// The CPU workers of the parallel column.
const WORKERS: usize = 2;
/// Bytes of each variant's sample, and its sampling.
const SAMPLE_BYTES: usize = 240;
const SAMPLE: Sampling = Sampling { temperature: 0.8, top_k: 40, seed: 0 };

/// A budget that keeps the comparison of the seven default variants within 15 minutes on two cores.
#[derive(Debug, Clone, Args)]
#[command(
    mut_arg("steps", |a| a.default_value(COMPARE_STEPS)),
    mut_arg("eval_every", |a| a.default_value(COMPARE_EVAL_EVERY)),
    mut_arg("precision", |a| a.default_value(COMPARE_PRECISION))
)]
pub struct CompareArgs {
    /// The variants, each VARIANT:K (sequential alone).
    #[arg(long, value_delimiter = ',', value_parser = parse_variant,
          default_value = "sequential,parallel:2,warpnet1:2,warpnet2:2,parallel:4,warpnet1:4,warpnet2:4")]
    pub variants: Vec<(LmVariant, usize)>,
    /// Seeds: every variant trains once per seed; the table gives the mean and the spread.
    #[arg(long, value_delimiter = ',', default_value = "0")]
    pub seeds: Vec<u64>,
    /// Every other setting, shared (--variant and --k are replaced by --variants, --seed by --seeds).
    #[command(flatten)]
    pub base: LmTrainConfig,
    /// Timed steps per variant and device layout.
    #[arg(long, default_value_t = 10)]
    pub bench_steps: usize,
    /// The folder of the runs, the table (compare.md, compare.json) and the chart.
    #[arg(long, default_value = "runs/lm-compare")]
    pub out: PathBuf,
    /// Print the rows as one JSON array on the last stdout line.
    #[arg(long)]
    pub json: bool,
}

/// "warpnet2:2" or "sequential".
fn parse_variant(text: &str) -> Result<(LmVariant, usize), String> {
    let (name, k) = text.split_once(':').unwrap_or((text, "1"));
    let variant = <LmVariant as clap::ValueEnum>::from_str(name, true).map_err(|_| {
        format!(
            "'{text}': expected VARIANT:K, VARIANT one of sequential, parallel, warpnet1, warpnet2, exact"
        )
    })?;
    let k = k.parse::<usize>().map_err(|_| format!("'{text}': K must be a whole number"))?;
    Ok((variant, k))
}

/// One variant's figures.
#[derive(Debug, Serialize)]
struct Row {
    variant: String,
    /// Final validation bits per byte, one per seed.
    bits_per_byte: Vec<f64>,
    one_device_ms: f64,
    parallel_ms: f64,
    parallel_placement: String,
    /// The step-time model's prediction of `parallel_ms` (none for data parallelism).
    predicted_ms: Option<f64>,
    /// (sequential on one device - this on the workers) / sequential on one device.
    rs_vs_sequential: f64,
    sample: String,
}

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    args.base.validate().map_err(crate::error::input_error)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| crate::error::input_error(format!("--out {}: {e}", args.out.display())))?;
    let models: Vec<LmConfig> = args
        .variants
        .iter()
        .map(|&(variant, k)| LmConfig { variant, k, ..args.base.model.clone() })
        .collect();
    for model in &models {
        model.validate().map_err(|e| crate::error::input_error(format!("--variants: {e}")))?;
    }
    // Every run first, then every timing: the timings are taken together, after the training.
    let bits_per_variant =
        models.iter().map(|model| train_seeds(&args, model)).collect::<anyhow::Result<Vec<_>>>()?;
    let mut rows = Vec::new();
    let mut firsts = Vec::new();
    for (model, bits) in models.iter().zip(bits_per_variant) {
        let name = run_name(model);
        let first = args.out.join(format!("{name}-seed{}", args.seeds[0]));
        let sample = folder::load(&first, |m| m.clone())?;
        let text = generate(&sample.net, model.context, b"", SAMPLE_BYTES, SAMPLE);
        let (one, parallel, predicted) = timings(&args, model)?;
        println!(
            "{name}: {:.4} bits per byte, {:.1} ms per step, {:.1} on {WORKERS} workers",
            mean(&bits),
            one,
            parallel.0
        );
        rows.push(Row {
            variant: super::variant_label(model),
            bits_per_byte: bits,
            one_device_ms: one,
            parallel_ms: parallel.0,
            parallel_placement: parallel.1,
            predicted_ms: predicted,
            rs_vs_sequential: 0.0,
            sample: String::from_utf8_lossy(&text).into_owned(),
        });
        firsts.push(first);
    }
    let sequential = rows.iter().find(|r| r.variant == "sequential").map(|r| r.one_device_ms);
    for row in &mut rows {
        row.rs_vs_sequential = sequential.map_or(f64::NAN, |s| (s - row.parallel_ms) / s);
    }
    let chart = args.out.join(plot::LM_CHART);
    plot::plot_lm_runs(
        &firsts,
        &chart,
        Some("validation bits per byte, seed ".to_string() + &args.seeds[0].to_string()).as_deref(),
    )?;
    let table = table(&rows, args.seeds.len());
    print!("{table}");
    write_report(&args, &rows, &table)?;
    println!("chart {}, table {}", chart.display(), args.out.join("compare.md").display());
    if args.json {
        crate::cli::print_json(&rows)?;
    }
    Ok(())
}

/// The run folders' stem of `model`'s runs: "warpnet2-K2".
fn run_name(model: &LmConfig) -> String {
    super::variant_label(model).replace(' ', "-").replace('=', "")
}

/// The final validation bits per byte of `model`'s run with each seed (folder NAME-seedS).
fn train_seeds(args: &CompareArgs, model: &LmConfig) -> anyhow::Result<Vec<f64>> {
    let seeds = args.seeds.iter().map(|&seed| {
        let config = LmTrainConfig { model: model.clone(), seed, ..args.base.clone() };
        trained(&config, &args.out.join(format!("{}-seed{seed}", run_name(model))))
    });
    seeds.collect()
}

/// The final validation bits per byte of `config`'s run in `dir`: trained, resumed, or read back.
fn trained(config: &LmTrainConfig, dir: &Path) -> anyhow::Result<f64> {
    let summary_of_finished = || -> anyhow::Result<f64> {
        let records: Vec<lm::LmRecord> = MetricsLog::read(&dir.join(METRICS))?;
        let last = records.last().ok_or_else(|| anyhow::anyhow!("{}: no evaluation", dir.display()))?;
        Ok(last.validation_bits_per_byte)
    };
    if dir.join(FINAL_WEIGHTS).exists() {
        if folder::read_config(dir)?.model != config.model {
            crate::bail_input!("{}: holds a run of another model (choose another --out)", dir.display());
        }
        return summary_of_finished();
    }
    let summary = match dir.join(CONFIG).exists() {
        true => lm::resume(dir, Verbosity::Quiet)?,
        false => lm::train(config, dir, Verbosity::Quiet)?,
    };
    Ok(summary.validation_bits_per_byte)
}

/// Median ms per step of `model` on one device and on [`WORKERS`] CPU workers (its auto placement,
/// or data parallelism for the sequential model), with the prediction of the latter.
fn timings(args: &CompareArgs, model: &LmConfig) -> anyhow::Result<(f64, (f64, String), Option<f64>)> {
    let one = LmTrainConfig { model: model.clone(), ..args.base.clone() };
    let one_ms = time(&one, args.bench_steps)?.ms_per_step;
    let devices = Devices::cpu(WORKERS);
    let (placement, predicted) = match crate::model::Architecture::terms(model).len() {
        1 => (None, None),
        _ => {
            let precision = one.precision_choice().precision;
            let (placement, ms) =
                crate::planner::prediction::auto_for_training(model, &devices, one.batch as i64, precision)?;
            (Some(PlacementSetting::Given(placement)), Some(ms))
        }
    };
    let label = placement.as_ref().map_or("data parallel".to_string(), |p| p.to_string());
    let parallel = LmTrainConfig { devices: Some(devices), placement, ..one };
    let parallel_ms = time(&parallel, args.bench_steps)?.ms_per_step;
    Ok((one_ms, (parallel_ms, label), predicted))
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The comparison as markdown: bits per byte as mean ± half the range over the seeds.
fn table(rows: &[Row], seeds: usize) -> String {
    let bits = if seeds > 1 {
        format!("val bits/byte (mean ± half range, {seeds} seeds)")
    } else {
        "val bits/byte".into()
    };
    let mut table = Table::new(&[
        "variant",
        &bits,
        "ms/step, 1 device",
        &format!("ms/step, cpu:{WORKERS}"),
        "predicted",
        &format!("placement on cpu:{WORKERS}"),
        "RS vs sequential",
    ]);
    for r in rows {
        let spread = (r.bits_per_byte.iter().cloned().fold(f64::MIN, f64::max)
            - r.bits_per_byte.iter().cloned().fold(f64::MAX, f64::min))
            / 2.0;
        let bits = if seeds > 1 {
            format!("{:.4} ± {spread:.4}", mean(&r.bits_per_byte))
        } else {
            format!("{:.4}", r.bits_per_byte[0])
        };
        table.push(vec![
            r.variant.clone(),
            bits,
            format!("{:.1}", r.one_device_ms),
            format!("{:.1}", r.parallel_ms),
            r.predicted_ms.map_or("-".into(), |ms| format!("{ms:.1}")),
            r.parallel_placement.clone(),
            format!("{:.1}%", 100.0 * r.rs_vs_sequential),
        ]);
    }
    table.markdown()
}

/// compare.md (the settings, the table and the samples) and compare.json in the output folder.
fn write_report(args: &CompareArgs, rows: &[Row], table: &str) -> anyhow::Result<()> {
    let mut text = format!(
        "# Variants compared\n\nSettings (every variant; seeds {:?}):\n\n```toml\n{}```\n\n{table}\n",
        args.seeds,
        toml::to_string(&args.base)?
    );
    for r in rows {
        text.push_str(&format!(
            "\n## {} (seed {})\n\n```text\n{}\n```\n",
            r.variant, args.seeds[0], r.sample
        ));
    }
    write_atomic(&args.out.join("compare.md"), text.as_bytes())?;
    write_atomic(&args.out.join("compare.json"), serde_json::to_string_pretty(rows)?.as_bytes())?;
    Ok(())
}
