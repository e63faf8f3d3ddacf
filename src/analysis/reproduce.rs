//! `warpnet reproduce table2|table3|table5 --scale cpu|paper`: the rows of the paper's speed-up tables
//! trained and timed, beside the paper's own figures (configs/paper-figures.json, written by
//! configs/generate.py from the tables).
//!
//! Each row: one training run for the test error (on one device, which computes exactly what the
//! placement computes, tests/parallel/parallel_executor.rs, except data-parallel rows, whose BN sees one replica's
//! share of the batch: those train on their devices), then every row of a block timed side by side on
//! its devices (planner/comparison.rs) for RS = (t_WRN - t) / t_WRN against the block's WRN on one
//! device, and against the data-parallel WRN on the row's devices.
//!
//! `paper`: the paper's networks, data (CIFAR-10/100), recipe (204 epochs) and GPUs (cuda:0..).
//! `cpu`: the same rows shrunk to run on 2 CPU cores in under ~30 minutes: width 1, one warp layer per
//! stage (Table 5: 6 units per stage), the embedded Fashion-MNIST subset, a short schedule (15 epochs,
//! Table 5's larger networks 5), CPU workers of one thread each, as many as the paper's row has GPUs
//! and this machine has cores, the WarpNet's terms placed by `auto` (the step-time model's fastest
//! placement on them). Rows whose training is identical (Table 5's two K = 3
//! WarpNet1 rows, which differ only in placement, at cpu scale trained on one device) train once.

use serde::{Deserialize, Serialize};

use crate::data::DataSpec;
use crate::model::config::BENCH_CLASSES;
use crate::model::{ModelKind, NetConfig, Variant};
use crate::planner::auto_placement::PlacementSetting;
use crate::planner::runs::{twin, RunSpec};
use crate::runtime::{Devices, Placement};
use crate::train::config::TrainConfig;

/// The paper's figures, as configs/generate.py wrote them.
const PAPER_FIGURES: &str = include_str!("../../configs/paper-figures.json");

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PaperTable {
    Table2,
    Table3,
    Table5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    Cpu,
    Paper,
}

/// One row of a paper table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaperRow {
    /// cifar10 or cifar100.
    pub data: String,
    /// wrn, warpnet1 or warpnet2.
    pub method: String,
    pub k: usize,
    pub nwarp: usize,
    pub kw: usize,
    /// GPUs of the row.
    pub devices: usize,
    /// The GPU assignment; none for a WRN (one GPU, or data parallel over `devices`).
    pub placement: Option<String>,
    /// Validation error %.
    pub error: f64,
    /// Relative speed-up %.
    pub rs: f64,
}

#[derive(Debug, Deserialize)]
struct PaperFigures {
    #[allow(dead_code)] // provenance, for readers of the file
    source: String,
    table2: Vec<PaperRow>,
    table3: Vec<PaperRow>,
    table5: Vec<PaperRow>,
}

/// Every row of `table` as the paper prints it.
pub fn paper_rows(table: PaperTable) -> Vec<PaperRow> {
    let figures: PaperFigures =
        serde_json::from_str(PAPER_FIGURES).expect("configs/paper-figures.json parses");
    match table {
        PaperTable::Table2 => figures.table2,
        PaperTable::Table3 => figures.table3,
        PaperTable::Table5 => figures.table5,
    }
}

/// Where the data of each scale comes from.
#[derive(Debug, Clone)]
pub struct DataChoice {
    /// `cpu` scale.
    pub cpu: DataSpec,
    pub cifar10: DataSpec,
    pub cifar100: DataSpec,
}

/// What one row runs.
#[derive(Debug, Clone)]
pub struct PlannedRow {
    pub paper: PaperRow,
    /// The training run (its `devices` set only where the math depends on them: data parallelism, or
    /// `paper` scale, where the placement is the point).
    pub train: TrainConfig,
    /// The row's devices and the run that times it.
    pub devices: Devices,
    pub bench: RunSpec,
    /// The data-parallel WRN on the same devices (the other RS baseline), on more than one device.
    pub data_parallel_bench: Option<RunSpec>,
    /// Rows with the same block share one RS baseline: the block's WRN on one device.
    pub block: (String, usize, usize, usize),
    /// Folder name of its run.
    pub slug: String,
    /// The earlier row whose training run is this row's too (identical network, seed and recipe; the
    /// timing is still the row's own), sharing its `slug`.
    pub same_run_as: Option<usize>,
}

/// The rows of `table` at `scale`, trained for `epochs` (default: the scale's recipe).
pub fn plan(
    table: PaperTable,
    scale: Scale,
    data: &DataChoice,
    epochs: Option<usize>,
    seed: u64,
) -> Vec<PlannedRow> {
    let rows = paper_rows(table).into_iter().filter(|r| match (scale, table) {
        // At CPU scale one block per table: the first (CIFAR-10, smallest Nwarp, kw = 4); Table 5 whole.
        (Scale::Cpu, PaperTable::Table2) => r.data == "cifar10" && r.nwarp == 3 && r.kw == 4,
        (Scale::Cpu, PaperTable::Table3) => r.data == "cifar10" && r.nwarp == 2 && r.kw == 4,
        _ => true,
    });
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let planned = rows.map(|paper| {
        let devices = row_devices(scale, &paper, cores);
        let recipe = recipe(table, scale, data, &paper, epochs);
        plan_row(paper, table, scale, devices, TrainConfig { seed, ..recipe })
    });
    share_runs(planned.collect())
}

/// The row's devices: at CPU scale as many one-thread CPU devices as the paper's GPUs, up to the
/// cores there are; at paper scale the paper's GPUs.
fn row_devices(scale: Scale, paper: &PaperRow, cores: usize) -> Devices {
    match scale {
        Scale::Cpu => Devices::cpu(paper.devices.min(cores)),
        Scale::Paper => Devices::of((0..paper.devices).map(tch::Device::Cuda).collect()),
    }
}

/// The training recipe of a row: the demo's at CPU scale (on the CPU data, `epochs` or the table's),
/// the paper's at paper scale (on the row's CIFAR).
fn recipe(
    table: PaperTable,
    scale: Scale,
    data: &DataChoice,
    paper: &PaperRow,
    epochs: Option<usize>,
) -> TrainConfig {
    match scale {
        Scale::Cpu => TrainConfig {
            epochs: epochs.unwrap_or(cpu_epochs(table)),
            milestones: cpu_milestones(epochs.unwrap_or(cpu_epochs(table))),
            data: data.cpu.clone(),
            ..TrainConfig::demo()
        },
        Scale::Paper => TrainConfig {
            data: if paper.data == "cifar100" { data.cifar100.clone() } else { data.cifar10.clone() },
            epochs: epochs.unwrap_or(TrainConfig::paper().epochs),
            ..TrainConfig::paper()
        },
    }
}

/// One row: its network at `scale` over `recipe`, where it trains, and the runs that time it.
fn plan_row(
    paper: PaperRow,
    table: PaperTable,
    scale: Scale,
    devices: Devices,
    recipe: TrainConfig,
) -> PlannedRow {
    let (nwarp, width) = match (scale, table) {
        (Scale::Paper, _) => (paper.nwarp, paper.kw),
        (Scale::Cpu, PaperTable::Table5) => (6 / paper.k, 1), // 6 units per stage for K = 2 and 3
        (Scale::Cpu, _) => (1, 1),
    };
    let model = if paper.method == "wrn" { ModelKind::Wrn } else { ModelKind::Warp };
    let variant = match paper.method.as_str() {
        "warpnet2" => Some(Variant::Warpnet2),
        "warpnet1" => Some(Variant::Warpnet1),
        _ => None,
    };
    // Data parallelism changes what BN sees, so those rows train on their devices; at paper scale
    // every row does (the placement is what the paper ran).
    let data_parallel = model == ModelKind::Wrn && paper.devices > 1;
    let on_devices = scale == Scale::Paper || data_parallel;
    // The paper's placements are this project's own data (configs/paper-figures.json), read here once.
    let placement: Option<Placement> =
        paper.placement.as_deref().map(|text| text.parse().expect("the paper's placements read"));
    let slug = format!(
        "{}-{}-k{}-n{}-kw{}-{}dev",
        paper.data, paper.method, paper.k, paper.nwarp, paper.kw, paper.devices
    );
    let train = TrainConfig {
        model,
        k: if model == ModelKind::Warp { paper.k } else { 1 },
        nwarp: if model == ModelKind::Warp { nwarp } else { nwarp * paper.k },
        width,
        variant,
        devices: on_devices.then(|| devices.clone()),
        placement: if on_devices { placement.clone().map(PlacementSetting::Given) } else { None },
        ..recipe
    };
    let (bench, data_parallel_bench) = timed_runs(&train.net(BENCH_CLASSES), scale, &devices, placement);
    PlannedRow {
        train,
        bench,
        data_parallel_bench,
        devices,
        block: (paper.data.clone(), paper.k, paper.nwarp, paper.kw),
        slug,
        paper,
        same_run_as: None,
    }
}

/// The runs that time a row of `network` on `devices`, and the data-parallel WRN on them (more than
/// one): at cpu scale every device one thread (the paper's devices are alike) and a WarpNet placed by
/// `auto` on the cores there are (where the paper placed it); at paper scale the paper's own
/// `placement` on its GPUs.
fn timed_runs(
    network: &NetConfig,
    scale: Scale,
    devices: &Devices,
    placement: Option<Placement>,
) -> (RunSpec, Option<RunSpec>) {
    let units = NetConfig { k: 1, nwarp: network.units_per_stage(), ..network.clone() };
    let on = |model, variant, k, placement| {
        let config = twin(&units, model, variant, k).expect("a row's network has its twins");
        let run =
            RunSpec::on(config, devices.clone(), placement).expect("the paper's placement fits its row");
        match scale {
            Scale::Cpu => run.with_threads(1),
            Scale::Paper => run,
        }
    };
    let run = match (scale, network.model, placement) {
        (_, ModelKind::Wrn, _) => on(ModelKind::Wrn, Variant::Warpnet1, 1, None),
        (Scale::Cpu, ModelKind::Warp, Some(_)) => {
            on(ModelKind::Warp, network.variant, network.k, None).auto_placed()
        }
        (Scale::Cpu, ModelKind::Warp, None) => on(ModelKind::Warp, network.variant, network.k, None),
        (Scale::Paper, ModelKind::Warp, placement) => {
            on(ModelKind::Warp, network.variant, network.k, placement)
        }
    };
    let data_parallel = (devices.len() > 1).then(|| on(ModelKind::Wrn, Variant::Warpnet1, 1, None));
    (run, data_parallel)
}

/// The block's RS baseline for a row of `network`: its WRN twin on one device (one thread at cpu
/// scale, cuda:0 at paper scale).
pub fn baseline(network: &NetConfig, scale: Scale) -> RunSpec {
    let device = match scale {
        Scale::Cpu => Devices::cpu(1),
        Scale::Paper => Devices::of(vec![tch::Device::Cuda(0)]),
    };
    timed_runs(&network.as_model(ModelKind::Wrn), scale, &device, None).0
}

/// Points every row whose training config equals an earlier row's at that row's run.
fn share_runs(mut rows: Vec<PlannedRow>) -> Vec<PlannedRow> {
    for i in 1..rows.len() {
        if let Some(j) = (0..i).find(|&j| rows[j].train == rows[i].train) {
            rows[i].same_run_as = Some(j);
            rows[i].slug = rows[j].slug.clone();
        }
    }
    rows
}

/// Epochs of the `cpu` scale (configs/cpu: the CPU recipe), and its lr drops at 60% and 87%.
pub const CPU_EPOCHS: usize = 15;

/// Table 5's networks at cpu scale have 6 units per stage (Tables 2-3: 2 or 3) and six rows: 5 epochs
/// keep the table inside ~30 minutes on 2 cores.
pub const CPU_EPOCHS_TABLE5: usize = 5;

/// The `cpu` scale's default epochs for `table`.
pub fn cpu_epochs(table: PaperTable) -> usize {
    match table {
        PaperTable::Table5 => CPU_EPOCHS_TABLE5,
        PaperTable::Table2 | PaperTable::Table3 => CPU_EPOCHS,
    }
}

pub fn cpu_milestones(epochs: usize) -> Vec<usize> {
    vec![(epochs * 3).div_ceil(5), (epochs * 13).div_ceil(15)]
}
