//! The executor: data parallelism over replicas, each replica whole or model-parallel over term
//! workers. One training step: the batch is split across the replicas, each computes the gradients of
//! its share of the loss, the gradients are summed (all-reduce), and every device applies the same
//! SGD step to the weights it holds, so that no replica ever drifts.
//!
//! Layouts, from `--devices` (D workers) and `--placement` (P groups):
//! - P = 1 (or no placement): D whole replicas, data parallelism (paper Table 5's baseline);
//! - P > 1, D = P: one replica, its terms on P workers (model parallelism, Tables 2-3);
//! - P > 1, D = R x P: R replicas of P workers each (the hybrid the paper left out of scope).
//!
//! BatchNorm statistics are per replica, computed on the replica's shard, as in the paper's data-
//! parallel runs; the running statistics kept are replica 0's.

use tch::{Device, Tensor};

use super::device::{Devices, Place};
use super::memory::DeviceMemory;
use super::mpi::Members;
use super::placement::Placement;
use super::replica::{self, Layout, Replica};
use crate::base::named::{accumulate, deep_copy, Named, Snapshot};
use crate::base::optimizer::OptimizerSettings;
use crate::model::Network;
use crate::precision::{MemoryFormat, Precision};

/// How the executor was laid out.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Data-parallel replicas.
    pub replicas: usize,
    /// Term workers per replica (1: the replica is whole on one device).
    pub workers_per_replica: usize,
    pub placement: Option<Placement>,
    /// libtorch intra-op threads of every worker and home (`threads=T` of a bench run: every device
    /// the same size); `None`: the cores shared among the CPU workers (`Devices::threads_per_worker`).
    pub threads: Option<usize>,
}

impl Plan {
    /// The layout `devices` and `placement` ask for; the error names the flag.
    pub fn new(devices: &Devices, placement: Option<Placement>) -> anyhow::Result<Plan> {
        if devices.mpi {
            super::mpi::ranks().map_err(|why| crate::error::input_error(format!("--devices {why}")))?;
        }
        let groups = placement.as_ref().map_or(1, Placement::devices);
        if !devices.len().is_multiple_of(groups) {
            crate::bail_input!(
                "--devices {devices} gives {} workers, not a multiple of the {groups} devices of --placement {}",
                devices.len(),
                placement.as_ref().map(|p| p.to_string()).unwrap_or_default()
            );
        }
        let placement = placement.filter(|p| p.devices() > 1);
        Ok(Plan { replicas: devices.len() / groups, workers_per_replica: groups, placement, threads: None })
    }
}

/// Smallest replica group whose tensors go by MPI's collectives. Between two ranks a broadcast and a
/// reduction are one message each way, as the commands and replies carrying the tensors are, and they
/// add a command and an acknowledgement: slower steps over 2 ranks (measured in docs/speed.md).
pub const COLLECTIVE_GROUP_MIN: usize = 3;

/// The replica group of a split replica over MPI ranks: its home's rank, then the ranks of its
/// workers on other ranks (each once); `None` below [`COLLECTIVE_GROUP_MIN`] ranks.
fn replica_group(workers: &[Place]) -> Option<Members> {
    let home = workers[0].rank;
    let mut ranks = vec![home];
    for w in workers {
        if !ranks.contains(&w.rank) {
            ranks.push(w.rank);
        }
    }
    (ranks.len() >= COLLECTIVE_GROUP_MIN).then(|| Members::new(ranks))
}

/// Figures of one step.
#[derive(Debug, Clone, Copy)]
pub struct StepResult {
    /// Mean cross-entropy over the batch.
    pub loss: f64,
    /// Images of the batch classified correctly.
    pub correct: i64,
}

pub struct Executor {
    replicas: Vec<Replica>,
    pub plan: Plan,
    /// What the steps compute in: the images are cast and laid out before they are sent, and every
    /// device then computes in the kind and layout of what it receives (src/precision.rs).
    precision: Precision,
    /// The layout `precision` prefers on the first worker's device (the images are on the CPU).
    memory_format: MemoryFormat,
    first_device: Device,
    /// Whether each replica takes the whole step itself (`Command::Step`: one replica, or replicas
    /// that all-reduce their gradients over MPI), or the coordinator sums their gradients.
    whole_steps: bool,
}

impl Executor {
    /// Starts every replica and worker, all from `initial` (variables and momentum by name).
    pub fn new(
        network: &Network,
        devices: &Devices,
        plan: Plan,
        initial: &Snapshot,
        optimizer: impl Into<OptimizerSettings>,
    ) -> anyhow::Result<Self> {
        let optimizer: OptimizerSettings = optimizer.into();
        super::device::check_available(devices)?;
        if let Some(placement) = &plan.placement {
            super::placement::shares::check_pieces(&placement.splits, &**network)?;
        }
        let threads = plan.threads.unwrap_or_else(|| devices.threads_per_worker());
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        // A split replica's home thread works only while its workers wait (stem, head, sums): it may
        // use the cores of its whole group. Over MPI ranks, the cores of its rank, which it shares with
        // that rank's term worker, taking turns. Devices of a given size: that size.
        let home_threads =
            if devices.mpi || plan.threads.is_some() { threads } else { (cores / plan.replicas).max(1) };
        // Over MPI ranks the replicas sum their gradients among themselves (an all-reduce over their
        // homes); in one process the coordinator sums them (shared memory, nothing on a wire).
        let homes: Vec<usize> =
            (0..plan.replicas).map(|r| devices.place(r * plan.workers_per_replica).rank).collect();
        let peers = (devices.mpi && plan.replicas > 1).then(|| Members::new(homes));
        let replicas = (0..plan.replicas)
            .map(|r| {
                let first = r * plan.workers_per_replica;
                let group: Vec<Place> =
                    (first..first + plan.workers_per_replica).map(|i| devices.place(i)).collect();
                let home = group[0];
                let layout = match &plan.placement {
                    None => Layout::Whole { device: home.device, threads },
                    Some(placement) => Layout::Split {
                        home: home.device,
                        threads: home_threads,
                        placement: placement.clone(),
                        collective: replica_group(&group),
                        workers: group,
                        threads_per_worker: threads,
                    },
                };
                let at = (home.rank, peers.clone());
                Replica::spawn(network.clone(), layout, initial.deep_copy(), optimizer, at)
            })
            .collect();
        let whole_steps = peers.is_some() || plan.replicas == 1;
        let first_device = devices.workers().first().copied().unwrap_or(Device::Cpu);
        let memory_format = Precision::Fp32.memory_format(first_device);
        Ok(Executor { replicas, plan, precision: Precision::Fp32, memory_format, first_device, whole_steps })
    }

    /// The same executor computing its steps in `precision` (fp32 until this is called).
    pub fn with_precision(self, precision: Precision) -> Self {
        let memory_format = precision.memory_format(self.first_device);
        Executor { precision, memory_format, ..self }
    }

    /// One SGD step on the batch images (B, 3, H, W), labels (B,) at learning rate `lr`.
    pub fn step(&mut self, images: &Tensor, labels: &Tensor, lr: f64) -> StepResult {
        let batch = labels.size()[0];
        let images = self.precision.input_as(images, self.memory_format); // (B, 3, H, W)
        let shards = self.replicas.len() as i64;
        let sizes: Vec<i64> = (0..shards).map(|r| batch / shards + i64::from(r < batch % shards)).collect();
        let image_shards = images.split_with_sizes(sizes.as_slice(), 0);
        let label_shards = labels.split_with_sizes(sizes.as_slice(), 0);
        for ((replica, images), labels) in self.replicas.iter().zip(image_shards).zip(label_shards) {
            // Each shard's mean loss weighted by its share: the gradients sum to those of the batch mean.
            let scale = labels.size()[0] as f64 / batch as f64;
            replica.send(match self.whole_steps {
                true => replica::Command::Step { images, labels, scale, lr },
                false => replica::Command::Gradients { images, labels, scale, measure: false },
            });
        }
        if self.whole_steps {
            let (mut loss_sum, mut correct) = (0.0, 0);
            for replica in &self.replicas {
                match replica.receive() {
                    replica::Reply::Stepped { loss_sum: l, correct: c } => {
                        (loss_sum, correct) = (loss_sum + l, correct + c)
                    }
                    _ => unreachable!("stepped reply"),
                }
            }
            return StepResult { loss: loss_sum / batch as f64, correct };
        }
        let (mut loss_sum, mut correct, mut gradients) = (0.0, 0, Named::new());
        for replica in &self.replicas {
            match replica.receive() {
                replica::Reply::Gradients { loss_sum: l, correct: c, gradients: g, .. } => {
                    loss_sum += l;
                    correct += c;
                    accumulate(&mut gradients, g);
                }
                _ => unreachable!("gradients reply"),
            }
        }
        for replica in &self.replicas {
            replica.send(replica::Command::Apply { gradients: deep_copy(&gradients), lr });
        }
        for replica in &self.replicas {
            replica.receive();
        }
        StepResult { loss: loss_sum / batch as f64, correct }
    }

    /// Memory of each device of replica 0 for its shard of a batch of `images` (B, 3, H, W): weights
    /// and optimizer state exactly, activations measured on CPU devices by running its devices one
    /// after the other (the other replicas idle). No weights change.
    pub fn memory_profile(&mut self, images: &Tensor, labels: &Tensor) -> Vec<DeviceMemory> {
        let shard = labels.size()[0] / self.replicas.len() as i64;
        let images = self.precision.input_as(&images.narrow(0, 0, shard), self.memory_format);
        let labels = labels.narrow(0, 0, shard);
        self.replicas[0].send(replica::Command::Gradients { images, labels, scale: 1.0, measure: true });
        match self.replicas[0].receive() {
            replica::Reply::Gradients { memory, .. } => memory,
            _ => unreachable!("gradients reply"),
        }
    }

    /// Seconds each device of replica 0 worked since the last call (home first).
    pub fn busy_seconds(&self) -> Vec<(String, f64)> {
        self.replicas[0].send(replica::Command::Busy);
        match self.replicas[0].receive() {
            replica::Reply::Busy(b) => b,
            _ => unreachable!("busy reply"),
        }
    }

    /// The variables held by each term worker of replica `r` (replicated units once per holder).
    pub fn worker_variables(&self, r: usize) -> Vec<Named> {
        self.replicas[r].send(replica::Command::WorkerVariables);
        match self.replicas[r].receive() {
            replica::Reply::PerWorker(v) => v,
            _ => unreachable!("per-worker reply"),
        }
    }

    /// The optimizer's momentum buffers of every parameter (replica 0's; all replicas hold the same).
    pub fn momentum(&self) -> Named {
        self.replicas[0].send(replica::Command::Momentum);
        match self.replicas[0].receive() {
            replica::Reply::Variables(v) => v,
            _ => unreachable!("momentum reply"),
        }
    }

    /// Every variable of replica 0 (weights and BatchNorm statistics), on `device`.
    pub fn variables(&self, device: Device) -> Named {
        self.replicas[0].send(replica::Command::Variables);
        match self.replicas[0].receive() {
            replica::Reply::Variables(v) => v.into_iter().map(|(n, t)| (n, t.to_device(device))).collect(),
            _ => unreachable!("variables reply"),
        }
    }
}
