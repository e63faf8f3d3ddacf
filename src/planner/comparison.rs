//! The speed-up comparison (paper Tables 2, 3 and 5): several executors of the same network size,
//! timed in one process, interleaved round by round so that machine noise hits all alike. The runs are
//! planner/runs.rs's.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tch::Tensor;

pub use super::runs::{default_runs, RunSpec};
use super::stats::median;
use super::volume;
use crate::base::named::{copy_variables, Snapshot};
use crate::base::optimizer::{SgdSettings, PAPER_LR};
use crate::model::{Architecture, Net};
use crate::precision::Precision;
use crate::runtime::executor::{Executor, Plan};
use crate::runtime::memory::{self, DeviceMemory};
use crate::runtime::mpi::algorithms::AllReduce;
use crate::runtime::mpi::remote;
use crate::runtime::mpi::stats::Traffic;

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
    /// The step-time model's figure for this run (planner/prediction.rs), when asked for.
    pub predicted_ms: Option<f64>,
    /// Milliseconds per step each device of replica 0 spent working, home first (the rest of the
    /// step it waited).
    pub busy_ms: Vec<(String, f64)>,
    pub memory: Vec<DeviceMemory>,
    /// Runs over MPI ranks: their messages per timed step.
    pub traffic: Option<StepTraffic>,
}

/// What one timed step over MPI ranks moved, and what the layout predicts (planner/volume.rs).
#[derive(Debug, Clone, Serialize)]
pub struct StepTraffic {
    /// Bytes sent by every rank, summed (each message once).
    pub bytes: f64,
    /// Per rank, rank 0 first: the bytes it handed to MPI calls plus the bytes it received from them
    /// (a collective's buffer once per call each way).
    pub rank_bytes: Vec<f64>,
    /// Per rank: the bytes in and out of it on the wire, by the count of the algorithms MPI runs
    /// (runtime/mpi/algorithms.rs; a message's own bytes).
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
    let Some(first) = runs.first() else { return Ok(Vec::new()) };
    let (images, labels) = synthetic_batch(&first.config, batch);
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

/// The benchmark's batch: inputs of `network`'s shape (B, 3, 32, 32) uniform in [-2, 2) and labels
/// uniform over its classes (B,), from a fixed seed.
fn synthetic_batch(network: &dyn Architecture, batch: i64) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let classes = network.classes() as i64;
    let shape: Vec<i64> = std::iter::once(batch).chain(network.input_shape()).collect();
    let pixels: Vec<f32> = (0..shape.iter().product()).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let labels: Vec<i64> = (0..batch).map(|_| rng.gen_range(0..classes)).collect();
    (Tensor::from_slice(&pixels).view(shape.as_slice()), Tensor::from_slice(&labels))
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
            Ok(Executor::new(&run.config.network(), &run.devices, plan, &start, SgdSettings::PAPER)?
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
