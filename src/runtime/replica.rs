//! A replica: one copy of the whole network, on its own thread. Either whole on one device, or split:
//! stem, downsampling and head on its home device, the warp layers' terms on term workers (one per
//! group of the placement). Backward mirrors forward: the upstream gradient of a warp layer is sent
//! to every worker, each returns its terms' dL/dx1, and the home adds them to the skip's gradient.

pub mod group;
mod split;

use tch::{nn::VarStore, Device, Kind, Tensor};

use super::actor::{Actor, Link};
use super::device::name;
use super::device::Place;
use super::memory::{heap_in_use, measurable, variable_bytes, DeviceMemory};
use super::mpi::collective::Group;
use super::mpi::Members;
use super::placement::Placement;
use super::worker;
use serde::{Deserialize, Serialize};
use split::{SplitReplica, WorkerDevices};

use super::hosted::{self, Hosted};
use super::serial;
use crate::base::named::{assign_variables, copy_variables, Named, Snapshot};
use crate::base::optimizer::{Optimizer, OptimizerSettings};
use crate::model::{loss, Net, Network};

/// How a replica is laid out; `threads` are libtorch intra-op threads of the replica's own thread.
#[derive(Clone, Serialize, Deserialize)]
pub enum Layout {
    /// The whole network on one device.
    Whole {
        #[serde(with = "serial::device")]
        device: Device,
        threads: usize,
    },
    /// Stem and head on `home`; group g of `placement` on `workers[g]`; over MPI ranks, `collective`:
    /// the replica group (the home's rank, then those of the workers on other ranks).
    Split {
        #[serde(with = "serial::device")]
        home: Device,
        threads: usize,
        placement: Placement,
        workers: Vec<Place>,
        threads_per_worker: usize,
        collective: Option<Members>,
    },
}

/// A replica to build on another rank: its network, layout, starting state and optimizer settings.
#[derive(Serialize, Deserialize)]
pub struct ReplicaStart {
    #[serde(with = "serial::network")]
    pub network: Network,
    pub layout: Layout,
    #[serde(with = "serial::snapshot")]
    pub initial: Snapshot,
    pub optimizer: OptimizerSettings,
    /// The homes of every replica, when the replicas sum their gradients over MPI.
    pub peers: Option<Members>,
}

/// What a replica is asked to do.
#[derive(Serialize, Deserialize)]
pub enum Command {
    /// Gradients of `scale` x (mean cross-entropy over this shard); replies `Reply::Gradients`. With
    /// `measure`, the workers run one after the other and the reply carries each device's memory.
    Gradients {
        #[serde(with = "serial::tensor")]
        images: Tensor,
        #[serde(with = "serial::tensor")]
        labels: Tensor,
        scale: f64,
        measure: bool,
    },
    /// A whole step: the gradients of `scale` x (mean cross-entropy over this shard), summed with the
    /// other replicas' over MPI when the replica has peers, then the SGD step; replies `Reply::Stepped`.
    Step {
        #[serde(with = "serial::tensor")]
        images: Tensor,
        #[serde(with = "serial::tensor")]
        labels: Tensor,
        scale: f64,
        lr: f64,
    },
    /// One SGD step with the final gradients (all names); replies `Reply::Done`.
    Apply {
        #[serde(with = "serial::named")]
        gradients: Named,
        lr: f64,
    },
    /// A copy of every variable of the network on the CPU; replies `Reply::Variables`.
    Variables,
    /// Each term worker's own variables (replicated units appear once per worker that holds them);
    /// replies `Reply::PerWorker` (empty for a whole replica).
    WorkerVariables,
    /// Seconds each device worked since the last `Busy` (home first; the home's waits for its workers
    /// excluded); replies `Reply::Busy`.
    Busy,
    /// The optimizer's momentum buffers of every parameter; replies `Reply::Variables`.
    Momentum,
}

#[derive(Serialize, Deserialize)]
pub enum Reply {
    /// Shard loss summed over its images, images classified correctly, the gradients, and (measured
    /// steps only) the memory of each device, home first.
    Gradients {
        loss_sum: f64,
        correct: i64,
        #[serde(with = "serial::named")]
        gradients: Named,
        memory: Vec<DeviceMemory>,
    },
    Variables(#[serde(with = "serial::named")] Named),
    PerWorker(#[serde(with = "serial::named_list")] Vec<Named>),
    Busy(Vec<(String, f64)>),
    /// A step taken: the shard's loss summed over its images and its images classified correctly.
    Stepped {
        loss_sum: f64,
        correct: i64,
    },
    Done,
}

/// The coordinator's end of a replica.
pub struct Replica {
    link: Link<Command, Reply>,
}

/// What lives on a replica's thread: its network, the group of replicas it sums its gradients with
/// (over MPI ranks), and the time it spent handling commands.
struct Running {
    state: State,
    peers: Option<Group>,
    busy: std::time::Duration,
}

impl Replica {
    /// Starts the replica on MPI rank `rank` (a thread of this process when that is this rank). With
    /// `peers`, the ranks of every replica's home: its `Step`s sum the gradients with theirs.
    pub fn spawn(
        network: Network,
        layout: Layout,
        initial: Snapshot,
        optimizer: OptimizerSettings,
        (rank, peers): (usize, Option<Members>),
    ) -> Self {
        if rank != super::mpi::rank() {
            let start = ReplicaStart { network, layout, initial, optimizer, peers };
            return Replica { link: Box::new(hosted::start(rank, Hosted::Replica, &start)) };
        }
        let name = match &layout {
            Layout::Whole { device, .. } => format!("{}, a whole replica", super::device::name(*device)),
            Layout::Split { home, .. } => format!("{}, a replica's home", super::device::name(*home)),
        };
        let start = move || {
            let state = match layout {
                Layout::Whole { device, threads } => {
                    tch::set_num_threads(threads as i32);
                    State::Whole(WholeReplica::new(&*network, device, &initial, optimizer))
                }
                Layout::Split { home, threads, placement, workers, threads_per_worker, collective } => {
                    tch::set_num_threads(threads as i32);
                    let devices = WorkerDevices { devices: workers, threads: threads_per_worker, collective };
                    State::Split(SplitReplica::new(&network, home, &placement, &devices, &initial, optimizer))
                }
            };
            let peers = peers.as_ref().map(Group::new);
            Running { state, peers, busy: std::time::Duration::ZERO }
        };
        let handle = |running: &mut Running, command: Command| match command {
            Command::Busy => Reply::Busy(running.state.busy(std::mem::take(&mut running.busy))),
            Command::Step { images, labels, scale, lr } => running.step(images, labels, scale, lr),
            command => {
                let started = std::time::Instant::now();
                let reply = running.state.handle(command);
                running.busy += started.elapsed();
                reply
            }
        };
        Replica { link: Box::new(Actor::spawn(name, start, handle)) }
    }

    pub fn send(&self, command: Command) {
        self.link.send(command);
    }

    pub fn receive(&self) -> Reply {
        self.link.receive()
    }
}

impl Running {
    /// Gradients, their sum over the peers (the time in the all-reduce is not the replica's work), the
    /// SGD step.
    fn step(&mut self, images: Tensor, labels: Tensor, scale: f64, lr: f64) -> Reply {
        let started = std::time::Instant::now();
        let Reply::Gradients { loss_sum, correct, mut gradients, .. } =
            self.state.handle(Command::Gradients { images, labels, scale, measure: false })
        else {
            unreachable!("gradients reply")
        };
        let mut summing = std::time::Duration::ZERO;
        if let Some(peers) = &self.peers {
            let summed_at = std::time::Instant::now();
            sum_over(peers, &mut gradients);
            summing = summed_at.elapsed();
        }
        self.state.handle(Command::Apply { gradients, lr });
        self.busy += started.elapsed().saturating_sub(summing);
        Reply::Stepped { loss_sum, correct }
    }
}

/// Replaces every gradient by its sum over `peers`: one all-reduce of all of them, flattened in name
/// order (the same on every replica) into float32 on the host (from a GPU too: staged through host
/// memory, as the MPI library this project is tested with is not CUDA-aware).
fn sum_over(peers: &Group, gradients: &mut Named) {
    let flat: Vec<Tensor> =
        gradients.values().map(|g| g.to_device(Device::Cpu).to_kind(Kind::Float).reshape([-1])).collect();
    let mut values = Vec::<f32>::try_from(Tensor::cat(&flat, 0)).expect("float32 gradients");
    peers.all_reduce_sum(&mut values, "the all-reduce of the replicas' gradients");
    let mut offset = 0;
    for g in gradients.values_mut() {
        let n = g.numel();
        let summed = Tensor::from_slice(&values[offset..offset + n]);
        *g = summed.reshape(g.size()).to_kind(g.kind()).to_device(g.device());
        offset += n;
    }
}

enum State {
    Whole(WholeReplica),
    Split(SplitReplica),
}

impl State {
    fn handle(&mut self, command: Command) -> Reply {
        match (self, command) {
            (State::Whole(r), Command::Gradients { images, labels, scale, measure }) => {
                r.gradients(&images, &labels, scale, measure)
            }
            (State::Split(r), Command::Gradients { images, labels, scale, measure }) => {
                r.gradients(&images, &labels, scale, measure)
            }
            (State::Whole(r), Command::Apply { gradients, lr }) => {
                let mine: Vec<Tensor> =
                    r.optimizer.names().map(|n| gradients[n].to_device(r.device)).collect();
                r.optimizer.step(&mine, lr);
                Reply::Done
            }
            (State::Split(r), Command::Apply { gradients, lr }) => r.apply(gradients, lr),
            (State::Whole(r), Command::Variables) => Reply::Variables(copy_variables(&r.vs, Device::Cpu)),
            (State::Split(r), Command::Variables) => Reply::Variables(r.variables()),
            (State::Whole(_), Command::WorkerVariables) => Reply::PerWorker(Vec::new()),
            (State::Split(r), Command::WorkerVariables) => Reply::PerWorker(r.worker_variables()),
            (State::Whole(r), Command::Momentum) => Reply::Variables(r.optimizer.momentum(Device::Cpu)),
            (State::Split(r), Command::Momentum) => Reply::Variables(r.momentum()),
            (_, Command::Busy | Command::Step { .. }) => unreachable!("answered by the replica's loop"),
        }
    }

    /// Busy seconds per device, given the replica thread's time handling commands.
    fn busy(&mut self, handling: std::time::Duration) -> Vec<(String, f64)> {
        match self {
            State::Whole(r) => vec![(name(r.device), handling.as_secs_f64())],
            State::Split(r) => {
                let home = handling.saturating_sub(std::mem::take(&mut r.waiting));
                r.workers.iter().for_each(|w| w.send(worker::Command::Busy));
                let workers =
                    r.workers.iter().enumerate().map(|(g, w)| {
                        (format!("worker {} {}", g + 1, name(w.device)), w.receive_as::<f64>())
                    });
                std::iter::once((format!("home {}", name(r.home)), home.as_secs_f64()))
                    .chain(workers)
                    .collect()
            }
        }
    }
}

/// The whole network on one device (a data-parallel replica).
struct WholeReplica {
    vs: VarStore,
    net: Net,
    device: Device,
    optimizer: Optimizer,
}

impl WholeReplica {
    fn new(
        network: &dyn crate::model::Architecture,
        device: Device,
        initial: &Snapshot,
        optimizer: OptimizerSettings,
    ) -> Self {
        let vs = VarStore::new(device);
        let net = Net::new(&vs.root(), network);
        assign_variables(&vs, &initial.variables);
        let mut optimizer = Optimizer::new(&vs, optimizer);
        optimizer.set_momentum(&initial.momentum);
        WholeReplica { vs, net, device, optimizer }
    }

    fn gradients(&mut self, images: &Tensor, labels: &Tensor, scale: f64, measure: bool) -> Reply {
        let before = heap_in_use();
        let labels = labels.to_device(self.device);
        let logits = self.net.forward(&images.to_device(self.device), true);
        let (loss, correct) = (loss::cross_entropy(&logits, &labels), loss::correct(&logits, &labels));
        let activations = heap_in_use().saturating_sub(before);
        let n = labels.size()[0] as f64;
        let gradients = self.optimizer.gradients(&(&loss * scale));
        let gradients = self.optimizer.names().map(String::from).zip(gradients).collect();
        let memory = if measure {
            let (weights, optimizer) = variable_bytes(&self.vs);
            let activations = measurable(self.device).then_some(activations);
            vec![DeviceMemory { device: name(self.device), weights, optimizer, activations }]
        } else {
            Vec::new()
        };
        Reply::Gradients { loss_sum: loss.double_value(&[]) * n, correct, gradients, memory }
    }
}
