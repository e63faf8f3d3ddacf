//! `warpnet demo`, also `warpnet` with no arguments: the WarpNet story on the embedded data.
//!
//! The WRN twin and WarpNet1 K = 2 train with the same seed and budget (the demo preset), on cuda:0
//! where a GPU is present, else on the CPU. Then the speed comparison times them side by side on
//! synthetic batches: each on one device (one CPU thread, or cuda:0), the WarpNet on this machine's
//! cores (or GPUs, where it has two or more) with the placement the step-time model predicts fastest,
//! and the data-parallel WRN on as many. One table (demo.md), both run folders, and both test-error
//! curves in one chart (the paper's Fig. 2, test-error.png and .svg) under `--out`.

use std::path::{Path, PathBuf};

use clap::Args;
use serde::Serialize;

use super::flags::{fresh_folder, positive, PrecisionFlag};
use crate::base::atomic_file::write_atomic;
use crate::data;
use crate::model::{ModelKind, NetConfig, Variant};
use crate::planner::comparison::{measure, Measured};
use crate::planner::prediction::predict_runs;
use crate::planner::runs::{twin, RunSpec};
use crate::precision::Precision;
use crate::report::plot::{self, Curve};
use crate::report::Table;
use crate::runtime::device::Devices;
use crate::train::{self, RunSummary, TrainConfig, Verbosity};

#[derive(Debug, Clone, Default, Args)]
pub struct DemoArgs {
    /// Folder for both run folders, the chart and the table (default: runs/demo, or runs/demo-N).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Epochs of each network (default: the demo preset's).
    #[arg(long, value_parser = positive)]
    pub epochs: Option<usize>,
    /// Train on the first N training images only (a quick look; the figures need them all).
    #[arg(long, value_parser = positive)]
    pub limit_train: Option<usize>,
    /// Rounds of the speed comparison, each run taking --steps timed steps per round (default 3).
    #[arg(long, value_parser = positive)]
    pub rounds: Option<usize>,
    /// Timed steps per run and round (default 5).
    #[arg(long, value_parser = positive)]
    pub steps: Option<usize>,
    #[command(flatten)]
    pub precision: PrecisionFlag,
    /// Print the table as one JSON object, {"rows": [...]}, on the last stdout line.
    #[arg(long)]
    pub json: bool,
}

/// Rounds and timed steps per round of the speed comparison, and untimed steps before it: three
/// interleaved rounds of five steps put the median on 15 steps per run, about 30 s here.
const ROUNDS: usize = 3;
const STEPS: usize = 5;
const WARMUP: usize = 2;
/// The chart of both test-error curves, in both formats.
const CHARTS: [&str; 2] = ["test-error.png", "test-error.svg"];
/// Devices of the parallel rows: as many as the cores, up to WarpNet1 K = 2's three terms (the paper's
/// Table 2 places them on three GPUs).
const MOST_DEVICES: usize = 3;

/// One row of the demo's table (and of its JSON).
#[derive(Debug, Clone, Serialize)]
pub struct DemoRow {
    /// "WRN-13-1", "WarpNet1-13-1".
    pub model: String,
    pub precision: Precision,
    /// Test accuracy of the trained network (the same network on every row of its model).
    pub test_accuracy: f64,
    /// "cpu:1", "cpu:2".
    pub devices: String,
    /// libtorch threads of each device.
    pub threads_per_device: usize,
    /// Terms per device, "data parallel", or "-" for one device.
    pub layout: String,
    pub ms_per_batch: f64,
    /// The step-time model's figure, where it was asked (the auto-placed WarpNet).
    pub predicted_ms: Option<f64>,
    /// Relative speed-up against the WRN on one device: (t_WRN - t) / t_WRN.
    pub rs: f64,
    /// Relative speed-up against the data-parallel WRN on as many devices, for runs on several.
    pub rs_vs_data_parallel: Option<f64>,
    pub run_folder: PathBuf,
}

#[derive(Debug, Serialize)]
struct DemoReport {
    rows: Vec<DemoRow>,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let out = args.out.clone().unwrap_or_else(|| fresh_folder(Path::new("runs"), "demo"));
    if out.join("demo.md").exists() {
        crate::bail_input!("--out {}: holds a demo already (choose another folder)", out.display());
    }
    let hardware = Hardware::here();
    let base = TrainConfig {
        epochs: args.epochs.unwrap_or(TrainConfig::demo().epochs),
        limit_train: args.limit_train,
        precision: args.precision.setting.unwrap_or(TrainConfig::demo().precision),
        devices: hardware.training_devices(),
        ..TrainConfig::demo()
    };
    let precision = base.precision_choice().precision;
    let twins = [
        TrainConfig { model: ModelKind::Wrn, ..base.clone() },
        TrainConfig { model: ModelKind::Warp, variant: Some(Variant::Warpnet1), ..base.clone() },
    ];
    let mut trained = Vec::new();
    for config in twins {
        let splits = data::load(&config.data)?;
        let net = config.net(splits.train.classes);
        let folder = out.join(super::train::run_folder_name(&net.label(), &config.data));
        println!("== {}: {}", net.label(), net.describe());
        let config = TrainConfig { out: Some(folder.clone()), ..config };
        let summary = train::train(&config, splits, &folder, Verbosity::Normal)?;
        super::train::report(&summary, &folder, false)?;
        trained.push((net, summary));
    }
    draw_curves(&out, &trained);
    println!("== speed: one training step of batch {} on synthetic images, {precision}", base.batch);
    let rows = time_twins(&trained, base.batch as i64, precision, hardware, &args)?;
    let table = demo_table(&rows);
    println!("{}", table.markdown());
    write_atomic(&out.join("demo.md"), table.markdown().as_bytes())?;
    println!("demo folder: {}", out.display());
    if args.json {
        super::print_json(&DemoReport { rows })?;
    }
    Ok(())
}

/// Both test-error curves in one chart, PNG and SVG, each named by its network and precision; the
/// demo is not failed by its chart.
fn draw_curves(out: &Path, trained: &[(NetConfig, RunSummary)]) {
    let metric = plot::Metric::TestError;
    let curves = trained
        .iter()
        .map(|(_, s)| {
            let curve = plot::read_curve(&s.out, metric)?;
            Ok(Curve { label: format!("{} ({})", s.model, s.precision), ..curve })
        })
        .collect::<anyhow::Result<Vec<Curve>>>();
    let title = "Fashion-MNIST (embedded subset): the WRN and its WarpNet twin";
    let axes = plot::Axes::against_epoch(metric);
    let drawn = curves.and_then(|curves| {
        CHARTS.iter().try_for_each(|file| plot::write_chart(&curves, &out.join(file), &axes, Some(title)))
    });
    if let Err(e) = drawn {
        eprintln!("warning: {}: no chart: {e:#}", out.display());
    }
}

/// What the demo trains and times on: the GPUs where libtorch's CUDA half loads and sees one, else
/// this machine's cores.
#[derive(Debug, Clone, Copy)]
enum Hardware {
    Gpus(usize),
    Cores(usize),
}

impl Hardware {
    fn here() -> Hardware {
        match crate::runtime::device::gpus_present() {
            0 => Hardware::Cores(std::thread::available_parallelism().map_or(1, |n| n.get())),
            gpus => Hardware::Gpus(gpus),
        }
    }

    /// Training runs on cuda:0 where there is a GPU, else on the CPU (the preset's default).
    fn training_devices(self) -> Option<Devices> {
        match self {
            Hardware::Gpus(_) => Some(Devices::of(vec![tch::Device::Cuda(0)])),
            Hardware::Cores(_) => None,
        }
    }

    /// The one-device runs' device, and the parallel runs' where there are two devices or more (up to
    /// [`MOST_DEVICES`]); every CPU device is one thread, so that the devices are of one size.
    fn timing_devices(self) -> (Devices, Option<Devices>) {
        let (one, count) = match self {
            Hardware::Gpus(gpus) => (tch::Device::Cuda(0), gpus.min(MOST_DEVICES)),
            Hardware::Cores(cores) => (tch::Device::Cpu, cores.min(MOST_DEVICES)),
        };
        let several = (0..count).map(|i| if one.is_cuda() { tch::Device::Cuda(i) } else { one }).collect();
        (Devices::of(vec![one]), (count >= 2).then(|| Devices::of(several)))
    }

    /// A timed run of `config` on `devices`: one thread per CPU device.
    fn run(self, config: NetConfig, devices: Devices) -> anyhow::Result<RunSpec> {
        let run = RunSpec::on(config, devices, None)?;
        Ok(match self {
            Hardware::Gpus(_) => run,
            Hardware::Cores(_) => run.with_threads(1),
        })
    }
}

/// Times the twins on one device each, and on several where there are: the WarpNet placed by `auto`,
/// the WRN data parallel.
fn time_twins(
    trained: &[(NetConfig, RunSummary)],
    batch: i64,
    precision: Precision,
    hardware: Hardware,
    args: &DemoArgs,
) -> anyhow::Result<Vec<DemoRow>> {
    let [(wrn, wrn_run), (warp, warp_run)] = trained else { unreachable!("the demo trains two networks") };
    debug_assert_eq!(wrn.units_per_stage(), warp.units_per_stage());
    let wrn_twin = twin(warp, ModelKind::Wrn, Variant::Warpnet1, 1).map_err(crate::error::input_error)?;
    let (one, several) = hardware.timing_devices();
    let mut runs = vec![
        (hardware.run(wrn_twin.clone(), one.clone())?, wrn_run),
        (hardware.run(warp.clone(), one)?, warp_run),
    ];
    if let Some(several) = &several {
        runs.push((hardware.run(warp.clone(), several.clone())?.auto_placed(), warp_run));
        runs.push((hardware.run(wrn_twin, several.clone())?, wrn_run));
    }
    let (mut runs, summaries): (Vec<RunSpec>, Vec<&RunSummary>) = runs.into_iter().unzip();
    let predicted =
        if several.is_some() { predict_runs(&mut runs, batch, precision, (None, None))? } else { vec![] };
    let rounds = args.rounds.unwrap_or(ROUNDS);
    let measured = measure(&runs, batch, WARMUP, rounds, args.steps.unwrap_or(STEPS), precision)?;
    let data_parallel_ms = measured.get(3).map(|m| m.ms_per_batch);
    Ok(measured
        .into_iter()
        .zip(summaries)
        .enumerate()
        .map(|(r, (m, summary))| {
            // Rows 2 and 3 are on several devices: the auto-placed WarpNet and the data-parallel WRN.
            let on_several = r >= 2;
            let predicted_ms = predicted.get(r).copied().filter(|_| r == 2);
            row(m, summary, predicted_ms, data_parallel_ms.filter(|_| on_several))
        })
        .collect())
}

fn row(
    m: Measured,
    summary: &RunSummary,
    predicted_ms: Option<f64>,
    data_parallel_ms: Option<f64>,
) -> DemoRow {
    DemoRow {
        model: summary.model.clone(),
        precision: summary.precision,
        test_accuracy: summary.test_accuracy,
        rs_vs_data_parallel: data_parallel_ms.map(|dp| (dp - m.ms_per_batch) / dp),
        devices: m.devices,
        threads_per_device: m.threads_per_device,
        layout: m.layout,
        ms_per_batch: m.ms_per_batch,
        predicted_ms,
        rs: m.rs,
        run_folder: summary.out.clone(),
    }
}

fn demo_table(rows: &[DemoRow]) -> Table {
    let mut table = Table::new(&[
        "network",
        "precision",
        "test accuracy",
        "devices",
        "placement",
        "ms/batch",
        "predicted ms",
        "RS vs WRN on 1 device",
        "RS vs data-parallel WRN",
    ]);
    let percent = |x: f64| format!("{:.1}%", 100.0 * x);
    for r in rows {
        table.push(vec![
            r.model.clone(),
            r.precision.to_string(),
            format!("{:.2}%", 100.0 * r.test_accuracy),
            match r.devices.starts_with("cuda") {
                true => r.devices.clone(),
                false => format!("{} x {} thread", r.devices, r.threads_per_device),
            },
            r.layout.clone(),
            format!("{:.1}", r.ms_per_batch),
            r.predicted_ms.map_or("-".into(), |ms| format!("{ms:.1}")),
            percent(r.rs),
            r.rs_vs_data_parallel.map_or("-".into(), percent),
        ]);
    }
    table
}
