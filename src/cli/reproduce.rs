//! `warpnet reproduce table2|table3|table5 --scale cpu|paper`: see analysis/reproduce.rs. Prints the
//! table in the paper's layout with our error and RS beside the paper's, and writes it as markdown.

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;

use super::flags::{positive, PrecisionFlag};
use crate::analysis::reproduce::{self, plan, DataChoice, PaperTable, PlannedRow, Scale};
use crate::base::atomic_file::write_atomic;
use crate::data::{self, DataSpec};
use crate::model::config::BENCH_CLASSES;
use crate::planner::comparison::{measure, RunSpec};
use crate::planner::prediction::predict_runs;
use crate::precision::Precision;
use crate::report::Table;
use crate::train::metrics::MetricsLog;
use crate::train::progress::Verbosity;
use crate::train::trainer;

#[derive(Debug, Clone, Args)]
pub struct ReproduceArgs {
    #[arg(value_enum)]
    pub table: PaperTable,
    #[arg(long, value_enum, default_value = "cpu")]
    pub scale: Scale,
    /// Epochs of every run (default at cpu scale: 15, Table 5's 6-unit stages 5; at paper scale the
    /// paper's 204).
    #[arg(long, value_parser = positive)]
    pub epochs: Option<usize>,
    /// Use only the first N training images (a quick look).
    #[arg(long)]
    pub limit_train: Option<usize>,
    /// Data of the cpu scale.
    #[arg(long, default_value = "fashion-mnist")]
    pub data: DataSpec,
    /// CIFAR-10 of the paper scale (`warpnet data download cifar10 --dir data`).
    #[arg(long, default_value = "cifar10:data/cifar-10-batches-bin")]
    pub cifar10: DataSpec,
    /// CIFAR-100 of the paper scale.
    #[arg(long, default_value = "cifar100:data/cifar-100-binary")]
    pub cifar100: DataSpec,
    #[arg(long, default_value = "0")]
    pub seed: u64,
    /// Of every training run and every timing.
    #[command(flatten)]
    pub precision: PrecisionFlag,
    /// Timing: rounds, timed steps per round and warm-up steps of the RS measurement.
    #[arg(long, default_value = "3", value_parser = positive)]
    pub rounds: usize,
    #[arg(long, default_value = "3", value_parser = positive)]
    pub steps: usize,
    #[arg(long, default_value = "1")]
    pub warmup: usize,
    /// Folder of the run folders and <table>.md (finished runs found there are reused).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Outcome {
    row: crate::analysis::reproduce::PaperRow,
    our_network: String,
    our_devices: String,
    /// Test error %, and relative speed-up % against the block's WRN on one device and against the
    /// data-parallel WRN on the row's devices (none on one device).
    our_error: f64,
    our_rs: f64,
    our_rs_data_parallel: Option<f64>,
}

pub fn run(args: ReproduceArgs) -> anyhow::Result<()> {
    let choice =
        DataChoice { cpu: args.data.clone(), cifar10: args.cifar10.clone(), cifar100: args.cifar100.clone() };
    let rows = plan(args.table, args.scale, &choice, args.epochs, args.seed);
    let table_name = format!("{:?}", args.table).to_lowercase();
    let scale_name = format!("{:?}", args.scale).to_lowercase();
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/reproduce").join(format!("{table_name}-{scale_name}")));
    // Fail on a missing data set or GPU before any training starts.
    for row in &rows {
        if let Some(devices) = &row.train.devices {
            crate::runtime::device::check_available(devices)?;
        }
    }
    let timing_device = match args.scale {
        Scale::Cpu => tch::Device::Cpu,
        Scale::Paper => tch::Device::Cuda(0),
    };
    let precision = args.precision.decide(&[timing_device]);
    println!("precision {precision}");
    let mut errors = Vec::new();
    for row in &rows {
        let error = match row.same_run_as {
            Some(j) => {
                println!("{}: same network, seed and recipe as an earlier row, its run reused", row.slug);
                errors[j]
            }
            None => train_row(row, &args, &out)?,
        };
        errors.push(error);
    }
    let mut outcomes = Vec::new();
    let mut blocks: Vec<&(String, usize, usize, usize)> = rows.iter().map(|r| &r.block).collect();
    blocks.dedup();
    for block in blocks {
        let members: Vec<usize> = (0..rows.len()).filter(|&i| &rows[i].block == block).collect();
        outcomes.extend(time_block(&rows, &members, &errors, &args, precision.precision)?);
    }
    let markdown = render(&outcomes, args.scale, &rows, precision.precision);
    print!("{markdown}");
    std::fs::create_dir_all(&out)
        .map_err(|e| crate::error::input_error(format!("{}: {e}", out.display())))?;
    let file = out.join(format!("{table_name}.md"));
    write_atomic(&file, markdown.as_bytes())?;
    println!("written: {}", file.display());
    if args.json {
        super::print_json(&outcomes)?;
    }
    Ok(())
}

/// Times the rows `members` of one block side by side, with their RS baselines: the block's WRN on one
/// device first, and the data-parallel WRN on each member's devices. A row that is one of those runs
/// (the block's own WRN rows) is not timed again: its RS against itself is 0 by definition, not a
/// second timing's noise. `auto` placements are resolved first (planner/prediction.rs).
fn time_block(
    rows: &[PlannedRow],
    members: &[usize],
    errors: &[f64],
    args: &ReproduceArgs,
    precision: Precision,
) -> anyhow::Result<Vec<Outcome>> {
    let base = rows[members[0]].train.net(BENCH_CLASSES);
    let mut specs = vec![reproduce::baseline(&base, args.scale)];
    let mut index_of = |run: &RunSpec| match specs.iter().position(|s| s == run) {
        Some(i) => i,
        None => {
            specs.push(run.clone());
            specs.len() - 1
        }
    };
    // Per member: its run's index, and its data-parallel baseline's.
    let timed_as: Vec<(usize, Option<usize>)> = members
        .iter()
        .map(|&i| (index_of(&rows[i].bench), rows[i].data_parallel_bench.as_ref().map(&mut index_of)))
        .collect();
    let batch = rows[members[0]].train.batch as i64;
    if specs.iter().any(|s| s.auto) {
        predict_runs(&mut specs, batch, precision, (None, None))?;
    }
    println!(
        "timing {} runs of block {:?} ({} rounds x {} steps)",
        specs.len(),
        rows[members[0]].block,
        args.rounds,
        args.steps
    );
    let measured = measure(&specs, batch, args.warmup, args.rounds, args.steps, precision)?;
    let rs = |t: f64, baseline: f64| 100.0 * (baseline - t) / baseline;
    Ok(members
        .iter()
        .zip(timed_as)
        .map(|(&i, (run, data_parallel))| {
            let t = measured[run].ms_per_batch;
            Outcome {
                row: rows[i].paper.clone(),
                our_network: rows[i].train.net(BENCH_CLASSES).label(),
                our_devices: format!("{} {}", specs[run].devices, specs[run].layout()),
                our_error: 100.0 * errors[i],
                our_rs: rs(t, measured[0].ms_per_batch),
                our_rs_data_parallel: data_parallel.map(|d| rs(t, measured[d].ms_per_batch)),
            }
        })
        .collect())
}

/// Trains the row (or reuses its finished run) and returns its final test error (a fraction).
fn train_row(row: &PlannedRow, args: &ReproduceArgs, out: &std::path::Path) -> anyhow::Result<f64> {
    let dir = out.join(&row.slug);
    let metrics = dir.join(crate::train::run_folder::METRICS);
    if !dir.join("model.safetensors").exists() {
        let precision = args.precision.setting.unwrap_or_default();
        let config = crate::train::config::TrainConfig {
            limit_train: args.limit_train,
            precision,
            ..row.train.clone()
        };
        println!("training {} into {}", row.slug, dir.display());
        trainer::train(&config, data::load(&config.data)?, &dir, Verbosity::Normal)?;
    } else {
        println!("{}: finished run in {}, reused", row.slug, dir.display());
    }
    let records: Vec<crate::train::metrics::EpochRecord> = MetricsLog::read(&metrics)?;
    Ok(records.last().map(|r| r.test_error).unwrap_or(f64::NAN))
}

/// The paper's layout: method, GPU assignment, our error (RS) beside the paper's.
fn render(outcomes: &[Outcome], scale: Scale, rows: &[PlannedRow], precision: Precision) -> String {
    let mut table = Table::new(&[
        "paper row",
        "GPU assignment",
        "ours: network",
        "ours: devices",
        "ours: error % (RS)",
        "ours: RS vs data parallel",
        "paper: error % (RS)",
    ]);
    for o in outcomes {
        let r = &o.row;
        let method = match r.method.as_str() {
            "warpnet1" => "WarpNet1",
            "warpnet2" => "WarpNet2",
            _ => "WRN",
        };
        let assignment = r.placement.clone().unwrap_or_else(|| {
            if r.devices > 1 {
                format!("data parallel x{}", r.devices)
            } else {
                "one device".into()
            }
        });
        table.push(vec![
            format!("{method}-{}-{} {} K={} Nwarp={}", 6 * r.k * r.nwarp + 1, r.kw, r.data, r.k, r.nwarp),
            assignment,
            o.our_network.clone(),
            o.our_devices.clone(),
            format!("{:.2} ({:.1}%)", o.our_error, o.our_rs),
            o.our_rs_data_parallel.map_or("-".into(), |rs| format!("{rs:.1}%")),
            format!("{:.2} ({:.1}%)", r.error, r.rs),
        ]);
    }
    let data = rows.first().map(|r| r.train.data.to_string()).unwrap_or_default();
    let epochs = rows.first().map_or(0, |r| r.train.epochs);
    let shared = if rows.iter().any(|r| r.same_run_as.is_some()) {
        "; rows of identical training (network, seed, recipe) share one run's error, each timed on its own"
    } else {
        ""
    };
    format!(
        "scale {scale:?}: data {data}, {epochs} epochs, {precision}; RS = (t_WRN - t) / t_WRN against the block's \
         WRN on one device (and against the data-parallel WRN on the row's devices), timed side by side; paper: CIFAR, averages of two runs{shared}\n{}",
        table.markdown()
    )
}
