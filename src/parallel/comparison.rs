//! The speed-up comparison (paper Tables 2, 3 and 5): several executors of the same network size,
//! timed in one process, interleaved round by round so that machine noise hits all alike.
//!
//! A run is written as whitespace-separated words: the method, then options, e.g.
//! `wrn cpu:1`, `wrn cpu:2` (data parallel), `warpnet1 k=2 cpu:2 [F1],[F2,F2'x1]`,
//! `warpnet2 k=2 bn=frozen cpu:3`, `exact k=3 order=2 cpu:4 [F1],[F2],[F3],[F2'F1,F3'F1,F3'F2]`.
//! Methods: wrn, exact, warpnet1, warpnet2, released. Options: `k=K`, `bn=none|frozen|exact`,
//! `order=M`, `threads=T` (libtorch threads of every device of the run, home included, so that runs
//! compare devices of one size: `wrn cpu:1 threads=1` against `warpnet1 k=2 cpu:2 threads=1`), a device
//! list (as --devices), a placement (as --placement). Every run has the base
//! network's units per stage and width, so they are twins; a WarpNet without a placement gets the
//! paper's assignment when it fits the devices, else data parallelism.

use std::time::Instant;

use clap::ValueEnum;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::Tensor;

use super::executor::{Executor, Plan};
use super::memory::{self, DeviceMemory};
use super::mpi::algorithms::AllReduce;
use super::mpi::remote;
use super::mpi::stats::Traffic;
use super::volume;
use super::{Devices, Placement};
use crate::base::named::{copy_variables, Snapshot};
use crate::base::optimizer::{SgdSettings, PAPER_LR};
use crate::base::stats::median;
use crate::error::input_error;
use crate::model::config::{INPUT_CHANNELS, INPUT_SIDE};
use crate::model::net::layer_operator;
use crate::model::{DerivativeBn, ModelKind, Net, NetConfig, Variant};
use crate::precision::Precision;

/// One configuration to time.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub config: NetConfig,
    pub devices: Devices,
    pub placement: Option<Placement>,
    /// `threads=T`: intra-op threads of every device; `None`: the cores shared among the workers.
    pub threads: Option<usize>,
    /// `auto` in place of a placement: the step-time model's fastest (parallel/prediction.rs), chosen
    /// before timing.
    pub auto: bool,
}

impl RunSpec {
    /// Parses a run (see the module docs) for a base network of `base` shape (units per stage, width,
    /// classes are taken from it).
    pub fn parse(text: &str, base: &NetConfig) -> anyhow::Result<RunSpec> {
        let bad = |what: String| input_error(format!("--run '{text}': {what}"));
        let mut words = text.split_whitespace();
        let method = words.next().ok_or_else(|| bad("empty".into()))?;
        let (model, variant) = match method {
            "wrn" => (ModelKind::Wrn, Variant::Warpnet1),
            m => (
                ModelKind::Warp,
                Variant::from_str(m, true).map_err(|_| bad(format!("unknown method '{m}'")))?,
            ),
        };
        let mut config = NetConfig { model, variant, k: 1, ..base.clone() };
        config.k = if model == ModelKind::Warp { 2 } else { 1 };
        let mut devices = Devices::cpu(1);
        let mut placement_text = None;
        let mut threads = None;
        let mut auto = false;
        for word in words {
            if let Some(k) = word.strip_prefix("k=") {
                config.k = k.parse().map_err(|_| bad(format!("'{word}': K must be a whole number")))?;
            } else if let Some(mode) = word.strip_prefix("bn=") {
                config.derivative_bn =
                    DerivativeBn::from_str(mode, true).map_err(|_| bad(format!("'{word}'")))?;
            } else if let Some(t) = word.strip_prefix("threads=") {
                let t = t.parse().ok().filter(|&t| t >= 1);
                threads = Some(t.ok_or_else(|| bad(format!("'{word}': T must be a whole number >= 1")))?);
            } else if let Some(m) = word.strip_prefix("order=") {
                config.max_order = Some(m.parse().map_err(|_| bad(format!("'{word}'")))?);
            } else if word.starts_with("cpu") || word.starts_with("cuda") || word == "mpi" {
                devices = word.parse().map_err(bad)?;
            } else if word == super::auto_placement::AUTO {
                auto = true;
            } else if word.starts_with('[') {
                placement_text = Some(word.to_string());
            } else {
                return Err(bad(format!("unknown word '{word}'")));
            }
        }
        let units = base.units_per_stage();
        if config.k == 0 || !units.is_multiple_of(config.k) {
            return Err(bad(format!("k={} does not divide the {units} units per stage", config.k)));
        }
        config.nwarp = units / config.k;
        config.validate().map_err(bad)?;
        if threads.is_some() && devices.mpi {
            return Err(bad(
                "threads=T sizes workers of this process; a rank's threads are its cores'".into()
            ));
        }
        if auto && (placement_text.is_some() || config.model != ModelKind::Warp) {
            return Err(bad(
                "'auto' chooses a WarpNet's placement: give it instead of one, to a WarpNet".into()
            ));
        }
        let run =
            RunSpec::on(config, devices, placement_text.as_deref()).map_err(|e| bad(format!("{e:#}")))?;
        Ok(RunSpec { threads, auto, ..run })
    }

    /// `config` on `devices` with `placement` (paper notation), or the paper's assignment for a WarpNet
    /// when it fits the devices, else data parallelism.
    pub fn on(config: NetConfig, devices: Devices, placement: Option<&str>) -> anyhow::Result<RunSpec> {
        let terms = layer_operator(&config).0;
        let placement = match placement {
            Some(p) => Some(Placement::parse(p, &terms)?),
            None if config.model == ModelKind::Warp => {
                let paper = Placement::default_for(config.variant, config.k, config.max_order);
                devices.len().is_multiple_of(paper.devices()).then_some(paper)
            }
            None => None,
        };
        Ok(RunSpec { config, devices, placement, threads: None, auto: false })
    }

    /// Intra-op threads of each of its devices.
    pub fn threads_per_device(&self) -> usize {
        self.threads.unwrap_or_else(|| self.devices.threads_per_worker())
    }

    /// "[F1],[F2,F2'x1]" for a model-parallel run, "data parallel" for whole replicas on several
    /// devices, "-" for one device.
    pub fn layout(&self) -> String {
        match (&self.placement, self.devices.len()) {
            (Some(p), _) if p.devices() > 1 => p.to_string(),
            (_, 1) => "-".into(),
            _ => "data parallel".into(),
        }
    }
}

/// The runs `warpnet bench --table` compares on a machine with `workers` CPU workers to spare (at
/// least 2): the WRN on one device (the baseline of RS), the data-parallel WRN, and WarpNet1/2 with
/// K = 2 on one device and under the placements that fit.
pub fn default_runs(base: &NetConfig, workers: usize) -> anyhow::Result<Vec<RunSpec>> {
    let n = workers.max(2);
    let mut texts = vec![
        "wrn cpu:1".to_string(),
        format!("wrn cpu:{n}"),
        "warpnet1 k=2 cpu:1".into(),
        "warpnet1 k=2 cpu:2 [F1],[F2,F2'x1]".into(),
        "warpnet1 k=2 cpu:2 [F1,F2'x1],[F2]".into(),
        "warpnet1 k=2 cpu:3 [F1],[F2],[F2'x1]".into(),
        "warpnet2 k=2 cpu:2 [F1],[F2,F2'F1]".into(),
        "warpnet1 k=2 cpu:4 [F1],[F2,F2'x1]".into(),
    ];
    if !base.units_per_stage().is_multiple_of(2) {
        texts.retain(|t| t.starts_with("wrn"));
    }
    texts.iter().map(|t| RunSpec::parse(t, base)).collect()
}

/// What was measured for one run.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub method: String,
    pub k: usize,
    pub layout: String,
    pub devices: String,
    /// libtorch intra-op threads of each device.
    pub threads_per_device: usize,
    /// Median wall-clock milliseconds of one training step.
    pub ms_per_batch: f64,
    /// Relative speed-up against the first run: (t_first - t) / t_first.
    pub rs: f64,
    pub step_ms: Vec<f64>,
    /// The step-time model's figure for this run (parallel/prediction.rs), when asked for.
    pub predicted_ms: Option<f64>,
    /// Milliseconds per step each device of replica 0 spent working, home first (the rest of the
    /// step it waited).
    pub busy_ms: Vec<(String, f64)>,
    pub memory: Vec<DeviceMemory>,
    /// Runs over MPI ranks: their messages per timed step.
    pub traffic: Option<StepTraffic>,
}

/// What one timed step over MPI ranks moved, and what the layout predicts (parallel/volume.rs).
#[derive(Debug, Clone, Serialize)]
pub struct StepTraffic {
    /// Bytes sent by every rank, summed (each message once).
    pub bytes: f64,
    /// Per rank, rank 0 first: the bytes it handed to MPI calls plus the bytes it received from them
    /// (a collective's buffer once per call each way).
    pub rank_bytes: Vec<f64>,
    /// Per rank: the bytes in and out of it on the wire, by the count of the algorithms MPI runs
    /// (parallel/mpi/algorithms.rs; a message's own bytes).
    pub rank_wire_bytes: Vec<f64>,
    /// Per rank: milliseconds its threads spent in MPI calls.
    pub rank_mpi_ms: Vec<f64>,
    /// The algorithm of the replicas' gradient all-reduce, when there are several replicas.
    pub all_reduce: Option<&'static str>,
    pub messages: f64,
    /// Tensor bytes the layout predicts (headers aside).
    pub predicted_bytes: u64,
    /// Rank 0's milliseconds in MPI calls (`rank_mpi_ms[0]`: handing messages over and waiting for
    /// replies, which includes the other ranks' work; on one host, the cores they share) as a share of
    /// the step.
    pub home_mpi_share: f64,
}

/// Times every run: `warmup` untimed steps each, then `rounds` rounds in which each run in turn takes
/// `steps` timed steps; the figure is the median over all its timed steps. Memory is profiled once per
/// run after timing. All runs start from the same weights and see the same synthetic batch, and step
/// in `precision`.
pub fn measure(
    runs: &[RunSpec],
    batch: i64,
    warmup: usize,
    rounds: usize,
    steps: usize,
    precision: Precision,
) -> anyhow::Result<Vec<Measured>> {
    let classes = runs.first().map_or(10, |r| r.config.classes) as i64;
    let (images, labels) = synthetic_batch(batch, classes);
    let (mut executors, parameter_bytes) = start_executors(runs, precision)?;
    for executor in &mut executors {
        for _ in 0..warmup {
            executor.step(&images, &labels, PAPER_LR);
        }
        executor.busy_seconds(); // busy time counts from here
    }
    let (times, traffic) = time_rounds(runs, &mut executors, (&images, &labels), rounds, steps);
    let baseline = median(&times[0]);
    let element_bytes = precision.kind().elt_size_in_bytes() as u64;
    Ok(runs
        .iter()
        .zip(executors.iter_mut())
        .zip(times)
        .enumerate()
        .map(|(r, ((run, executor), step_ms))| {
            let ms = median(&step_ms);
            let timed = step_ms.len() as f64;
            let busy_ms = executor.busy_seconds().into_iter().map(|(d, s)| (d, 1e3 * s / timed)).collect();
            let memory = executor.memory_profile(&images, &labels);
            let traffic = run.devices.mpi.then(|| {
                // Replica 0's devices, home first: each term worker's parameters (momentum = parameters).
                let workers: Vec<u64> = memory.iter().skip(1).map(|m| m.optimizer as u64).collect();
                let predicted_bytes = volume::tensor_bytes_per_step(
                    &run.config,
                    &run.devices,
                    &executor.plan,
                    batch as u64,
                    element_bytes,
                    &workers,
                    parameter_bytes[r],
                );
                let all_reduce = (executor.plan.replicas > 1)
                    .then(|| AllReduce::chosen(executor.plan.replicas, parameter_bytes[r]).name());
                step_traffic(&traffic[r], &step_ms, predicted_bytes, all_reduce)
            });
            Measured {
                method: run.config.label(),
                k: run.config.k,
                layout: run.layout(),
                devices: run.devices.to_string(),
                threads_per_device: run.threads_per_device(),
                ms_per_batch: ms,
                rs: (baseline - ms) / baseline,
                memory,
                traffic,
                busy_ms,
                step_ms,
                predicted_ms: None,
            }
        })
        .collect())
}

/// The benchmark's batch: images uniform in [-2, 2) (B, 3, 32, 32) and labels uniform over `classes`
/// (B,), from a fixed seed.
fn synthetic_batch(batch: i64, classes: i64) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let shape = [batch, INPUT_CHANNELS as i64, INPUT_SIDE as i64, INPUT_SIDE as i64];
    let pixels: Vec<f32> = (0..shape.iter().product()).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let labels: Vec<i64> = (0..batch).map(|_| rng.gen_range(0..classes)).collect();
    (Tensor::from_slice(&pixels).view(shape), Tensor::from_slice(&labels))
}

/// One executor per run, each from its network's fresh weights, and each network's parameter bytes.
fn start_executors(runs: &[RunSpec], precision: Precision) -> anyhow::Result<(Vec<Executor>, Vec<u64>)> {
    let mut parameter_bytes = Vec::new();
    let executors = runs
        .iter()
        .map(|run| {
            let vs = tch::nn::VarStore::new(tch::Device::Cpu);
            let _net = Net::new(&vs.root(), &run.config);
            parameter_bytes.push(memory::variable_bytes(&vs).1 as u64);
            let plan = Plan { threads: run.threads, ..Plan::new(&run.devices, run.placement.clone())? };
            let start =
                Snapshot { variables: copy_variables(&vs, tch::Device::Cpu), momentum: Default::default() };
            Ok(Executor::new(&run.config, &run.devices, plan, &start, SgdSettings::PAPER)?
                .with_precision(precision))
        })
        .collect::<anyhow::Result<Vec<Executor>>>()?;
    Ok((executors, parameter_bytes))
}

/// The timed rounds: every run's step times in ms, and per run each rank's traffic, rank 0 first (MPI
/// runs only).
fn time_rounds(
    runs: &[RunSpec],
    executors: &mut [Executor],
    (images, labels): (&Tensor, &Tensor),
    rounds: usize,
    steps: usize,
) -> (Vec<Vec<f64>>, Vec<Vec<Traffic>>) {
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
    let mut traffic: Vec<Vec<Traffic>> = vec![Vec::new(); runs.len()];
    for _ in 0..rounds {
        for (r, (executor, times)) in executors.iter_mut().zip(&mut times).enumerate() {
            let before = runs[r].devices.mpi.then(remote::rank_traffic);
            for _ in 0..steps {
                let started = Instant::now();
                executor.step(images, labels, PAPER_LR);
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
            if let Some(before) = before {
                let now = remote::rank_traffic();
                traffic[r].resize(now.len(), Traffic::default());
                for ((total, now), before) in traffic[r].iter_mut().zip(&now).zip(&before) {
                    *total = total.plus(&now.since(before));
                }
            }
        }
    }
    (times, traffic)
}

/// Per step: the job's bytes and messages, each rank's bytes, rank 0's time in MPI calls and its share
/// of the step.
fn step_traffic(
    ranks: &[Traffic],
    step_ms: &[f64],
    predicted_bytes: u64,
    all_reduce: Option<&'static str>,
) -> StepTraffic {
    let timed = step_ms.len() as f64;
    let job = ranks.iter().fold(Traffic::default(), |sum, rank| sum.plus(rank));
    let rank_mpi_ms: Vec<f64> = ranks.iter().map(|rank| 1e3 * rank.mpi_s() / timed).collect();
    let home_mpi_ms = rank_mpi_ms.first().copied().unwrap_or_default();
    StepTraffic {
        bytes: job.sent_bytes as f64 / timed,
        messages: job.sent_messages as f64 / timed,
        rank_bytes: ranks.iter().map(|rank| rank.bytes() as f64 / timed).collect(),
        rank_wire_bytes: ranks.iter().map(|rank| rank.wire_bytes as f64 / timed).collect(),
        rank_mpi_ms,
        all_reduce,
        predicted_bytes,
        home_mpi_share: home_mpi_ms / (step_ms.iter().sum::<f64>() / timed),
    }
}
