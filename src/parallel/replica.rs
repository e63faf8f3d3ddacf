//! A replica: one copy of the whole network, on its own thread. Either whole on one device, or split:
//! stem, downsampling and head on its home device, the warp layers' terms on term workers (one per
//! group of the placement). Backward mirrors forward: the upstream gradient of a warp layer is sent
//! to every worker, each returns its terms' dL/dx1, and the home adds them to the skip's gradient.

use tch::{nn::VarStore, Device, Kind, Tensor};

use super::actor::Actor;
use super::device::name;
use super::memory::{heap_in_use, measurable, variable_bytes, DeviceMemory};
use super::named::{accumulate, assign_variables, copy_variables, deep_copy, Named};
use super::placement::Placement;
use super::worker::{self, Worker, WorkerSpec};
use crate::model::net::{downsample, Head, LayerIndex, Stem};
use crate::model::terms::Term;
use crate::model::{Net, NetConfig};
use crate::train::optimizer::Sgd;

/// How a replica is laid out; `threads` are libtorch intra-op threads of the replica's own thread.
#[derive(Clone)]
pub enum Layout {
    /// The whole network on one device.
    Whole { device: Device, threads: usize },
    /// Stem and head on `home`; group g of `placement` on `workers[g]`.
    Split {
        home: Device,
        threads: usize,
        placement: Placement,
        workers: Vec<Device>,
        threads_per_worker: usize,
    },
}

/// What a replica is asked to do.
pub enum Command {
    /// Gradients of `scale` x (mean cross-entropy over this shard); replies `Reply::Gradients`. With
    /// `measure`, the workers run one after the other and the reply carries each device's memory.
    Gradients { images: Tensor, labels: Tensor, scale: f64, measure: bool },
    /// One SGD step with the final gradients (all names); replies `Reply::Done`.
    Apply { gradients: Named, lr: f64 },
    /// A copy of every variable of the network on the CPU; replies `Reply::Variables`.
    Variables,
    /// Each term worker's own variables (replicated units appear once per worker that holds them);
    /// replies `Reply::PerWorker` (empty for a whole replica).
    WorkerVariables,
    /// Seconds each device worked since the last `Busy` (home first; the home's waits for its workers
    /// excluded); replies `Reply::Busy`.
    Busy,
}

pub enum Reply {
    /// Shard loss summed over its images, images classified correctly, the gradients, and (measured
    /// steps only) the memory of each device, home first.
    Gradients {
        loss_sum: f64,
        correct: i64,
        gradients: Named,
        memory: Vec<DeviceMemory>,
    },
    Variables(Named),
    PerWorker(Vec<Named>),
    Busy(Vec<(String, f64)>),
    Done,
}

/// SGD settings every device uses.
#[derive(Debug, Clone, Copy)]
pub struct SgdSettings {
    pub momentum: f64,
    pub weight_decay: f64,
}

/// The coordinator's end of a replica.
pub struct Replica {
    actor: Actor<Command, Reply>,
}

/// What lives on a replica's thread: its network and the time it spent handling commands.
struct Running {
    state: State,
    busy: std::time::Duration,
}

impl Replica {
    pub fn spawn(config: NetConfig, layout: Layout, initial: Named, sgd: SgdSettings) -> Self {
        let start = move || {
            let state = match layout {
                Layout::Whole { device, threads } => {
                    tch::set_num_threads(threads as i32);
                    State::Whole(WholeReplica::new(&config, device, &initial, sgd))
                }
                Layout::Split { home, threads, placement, workers, threads_per_worker } => {
                    tch::set_num_threads(threads as i32);
                    let devices = WorkerDevices { devices: workers, threads: threads_per_worker };
                    State::Split(SplitReplica::new(&config, home, &placement, &devices, &initial, sgd))
                }
            };
            Running { state, busy: std::time::Duration::ZERO }
        };
        let handle = |running: &mut Running, command: Command| match command {
            Command::Busy => Reply::Busy(running.state.busy(std::mem::take(&mut running.busy))),
            command => {
                let started = std::time::Instant::now();
                let reply = running.state.handle(command);
                running.busy += started.elapsed();
                reply
            }
        };
        Replica { actor: Actor::spawn(start, handle) }
    }

    pub fn send(&self, command: Command) {
        self.actor.send(command);
    }

    pub fn receive(&self) -> Reply {
        self.actor.receive()
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
                let mine: Vec<Tensor> = r.sgd.names().map(|n| gradients[n].to_device(r.device)).collect();
                r.sgd.step(&mine, lr);
                Reply::Done
            }
            (State::Split(r), Command::Apply { gradients, lr }) => r.apply(gradients, lr),
            (State::Whole(r), Command::Variables) => Reply::Variables(copy_variables(&r.vs, Device::Cpu)),
            (State::Split(r), Command::Variables) => Reply::Variables(r.variables()),
            (State::Whole(_), Command::WorkerVariables) => Reply::PerWorker(Vec::new()),
            (State::Split(r), Command::WorkerVariables) => Reply::PerWorker(r.worker_variables()),
            (_, Command::Busy) => unreachable!("answered by the replica's loop"),
        }
    }

    /// Busy seconds per device, given the replica thread's time handling commands.
    fn busy(&mut self, handling: std::time::Duration) -> Vec<(String, f64)> {
        match self {
            State::Whole(r) => vec![(name(r.device), handling.as_secs_f64())],
            State::Split(r) => {
                let home = handling.saturating_sub(std::mem::take(&mut r.waiting));
                r.workers.iter().for_each(|w| w.send(worker::Command::Busy));
                let workers = r
                    .workers
                    .iter()
                    .enumerate()
                    .map(|(g, w)| (format!("worker {} {}", g + 1, name(w.device)), w.receive_seconds()));
                std::iter::once((format!("home {}", name(r.home)), home.as_secs_f64()))
                    .chain(workers)
                    .collect()
            }
        }
    }
}

/// Mean cross-entropy of logits (B, classes) against labels (B,), and the number classified correctly.
fn loss_and_correct(logits: &Tensor, labels: &Tensor) -> (Tensor, i64) {
    let correct = logits.argmax(-1, false).eq_tensor(labels).sum(Kind::Int64).int64_value(&[]);
    (logits.cross_entropy_for_logits(labels), correct)
}

/// The whole network on one device (a data-parallel replica).
struct WholeReplica {
    vs: VarStore,
    net: Net,
    device: Device,
    sgd: Sgd,
}

impl WholeReplica {
    fn new(config: &NetConfig, device: Device, initial: &Named, sgd: SgdSettings) -> Self {
        let vs = VarStore::new(device);
        let net = Net::new(&vs.root(), config);
        assign_variables(&vs, initial);
        let sgd = Sgd::new(&vs, sgd.momentum, sgd.weight_decay);
        WholeReplica { vs, net, device, sgd }
    }

    fn gradients(&mut self, images: &Tensor, labels: &Tensor, scale: f64, measure: bool) -> Reply {
        let before = heap_in_use();
        let labels = labels.to_device(self.device);
        let logits = self.net.forward(&images.to_device(self.device), true);
        let (loss, correct) = loss_and_correct(&logits, &labels);
        let activations = heap_in_use().saturating_sub(before);
        let n = labels.size()[0] as f64;
        let gradients = self.sgd.gradients(&(&loss * scale));
        let gradients = self.sgd.names().map(String::from).zip(gradients).collect();
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

/// The devices of a split replica's term workers and their intra-op threads.
struct WorkerDevices {
    devices: Vec<Device>,
    threads: usize,
}

/// Stem and head here, warp-layer terms on workers.
struct SplitReplica {
    vs: VarStore,
    stem: Stem,
    head: Head,
    home: Device,
    layers: Vec<LayerIndex>,
    workers: Vec<Worker>,
    sgd: Sgd,
    units_per_layer: usize,
    /// For each unit position c in a layer: the worker whose group holds F_c.
    primal_owner: Vec<usize>,
    /// Time this thread spent waiting for worker replies since the last `Busy`.
    waiting: std::time::Duration,
}

/// The position within its warp layer (0-based) of the unit a variable name belongs to:
/// `stage2.unit5.conv1.weight` with K = 2 is unit 5, position (5 - 1) mod 2 = 0.
fn unit_position(name: &str, units_per_layer: usize) -> Option<usize> {
    let unit = name.split('.').nth(1)?.strip_prefix("unit")?.parse::<usize>().ok()?;
    Some((unit - 1) % units_per_layer)
}

impl SplitReplica {
    fn new(
        config: &NetConfig,
        home: Device,
        placement: &Placement,
        devices: &WorkerDevices,
        initial: &Named,
        sgd: SgdSettings,
    ) -> Self {
        let vs = VarStore::new(home);
        let stem = Stem::new(&vs.root(), config);
        let head = Head::new(&vs.root(), config);
        assign_variables(&vs, initial);
        let workers = devices
            .devices
            .iter()
            .enumerate()
            .map(|(group, &device)| {
                let spec = WorkerSpec {
                    config: config.clone(),
                    placement: placement.clone(),
                    group,
                    device,
                    home,
                    threads: devices.threads,
                    momentum: sgd.momentum,
                    weight_decay: sgd.weight_decay,
                };
                Worker::spawn(spec, deep_copy(initial))
            })
            .collect();
        let sgd = Sgd::new(&vs, sgd.momentum, sgd.weight_decay);
        let units_per_layer = config.layer_grouping().0;
        let primal_owner = (0..units_per_layer)
            .map(|c| {
                placement.groups.iter().position(|g| g.contains(&Term::primal(c))).expect("F_c is placed")
            })
            .collect();
        SplitReplica {
            vs,
            stem,
            head,
            home,
            layers: config.layer_indices(),
            workers,
            sgd,
            units_per_layer,
            primal_owner,
            waiting: std::time::Duration::ZERO,
        }
    }

    /// Sends `command()` to every worker and returns the sum of their replies. With `one_by_one`, each
    /// worker finishes before the next starts (for measuring); otherwise they all run at once.
    fn on_all_workers(&mut self, one_by_one: bool, command: impl Fn() -> worker::Command) -> Tensor {
        let started = std::time::Instant::now();
        let replies: Vec<Tensor> = if one_by_one {
            self.workers
                .iter()
                .map(|w| {
                    w.send(command());
                    w.receive_tensor()
                })
                .collect()
        } else {
            self.workers.iter().for_each(|w| w.send(command()));
            self.workers.iter().map(Worker::receive_tensor).collect()
        };
        self.waiting += started.elapsed();
        replies.into_iter().reduce(|a, b| a + b).expect("at least one worker")
    }

    fn gradients(&mut self, images: &Tensor, labels: &Tensor, scale: f64, measure: bool) -> Reply {
        let before = heap_in_use();
        let labels = labels.to_device(self.home);
        // Forward. Each autograd island on the home device starts at a leaf: (leaf, output).
        let stem_out = self.stem.forward(&images.to_device(self.home), true);
        let mut h = stem_out.detach();
        let mut downsamples: Vec<(Tensor, Tensor)> = Vec::new();
        for (i, at) in self.layers.clone().into_iter().enumerate() {
            if at.stage > 0 && at.layer == 0 {
                let leaf = h.set_requires_grad(true);
                let out = downsample(&leaf);
                h = out.detach();
                downsamples.push((leaf, out));
            }
            let x1 = h.shallow_clone();
            let forward =
                || worker::Command::Forward { layer: i, x1: x1.shallow_clone(), train: true, measure };
            h = &h + self.on_all_workers(measure, forward);
        }
        let head_in = h.set_requires_grad(true);
        let logits = self.head.forward(&head_in, true);
        let (loss, correct) = loss_and_correct(&logits, &labels);
        let forward_bytes = heap_in_use().saturating_sub(before);
        (&loss * scale).backward();

        // Backward, layer by layer in reverse: g is dL/d(output of the layer being undone).
        let mut g = head_in.grad();
        for (i, at) in self.layers.clone().into_iter().enumerate().rev() {
            let upstream = g.shallow_clone();
            let backward = || worker::Command::Backward { layer: i, grad: upstream.shallow_clone() };
            g = &g + self.on_all_workers(false, backward);
            if at.stage > 0 && at.layer == 0 {
                let (leaf, out) = downsamples.pop().expect("one downsample per later stage");
                (out * &g).sum(g.kind()).backward();
                g = leaf.grad();
            }
        }
        (stem_out * &g).sum(g.kind()).backward();

        let mut gradients = Named::new();
        for (name, mut p) in self.vs.variables() {
            if p.requires_grad() {
                gradients.insert(name, p.grad().copy());
                p.zero_grad();
            }
        }
        self.workers.iter().for_each(|w| w.send(worker::Command::TakeGradients));
        // A unit replicated on several workers: its gradients are summed.
        for w in &self.workers {
            let started = std::time::Instant::now();
            let part = w.receive_named();
            self.waiting += started.elapsed();
            accumulate(&mut gradients, part);
        }
        let memory = if measure { self.memory(forward_bytes) } else { Vec::new() };
        let n = labels.size()[0] as f64;
        Reply::Gradients { loss_sum: loss.double_value(&[]) * n, correct, gradients, memory }
    }

    /// Memory of the home device and every worker after a measured forward that left `forward_bytes`
    /// allocated in all (the home's share is what the workers did not account for).
    fn memory(&self, forward_bytes: usize) -> Vec<DeviceMemory> {
        self.workers.iter().for_each(|w| w.send(worker::Command::Memory));
        let workers: Vec<DeviceMemory> = self.workers.iter().map(Worker::receive_memory).collect();
        let on_workers: usize = workers.iter().filter_map(|m| m.activations).sum();
        let (weights, optimizer) = variable_bytes(&self.vs);
        let activations = measurable(self.home).then(|| forward_bytes.saturating_sub(on_workers));
        let home =
            DeviceMemory { device: format!("home {}", name(self.home)), weights, optimizer, activations };
        std::iter::once(home).chain(workers).collect()
    }

    fn apply(&mut self, gradients: Named, lr: f64) -> Reply {
        for w in &self.workers {
            w.send(worker::Command::Apply { gradients: deep_copy(&gradients), lr });
        }
        let mine: Vec<Tensor> = self.sgd.names().map(|n| gradients[n].to_device(self.home)).collect();
        self.sgd.step(&mine, lr);
        let started = std::time::Instant::now();
        for w in &self.workers {
            w.receive();
        }
        self.waiting += started.elapsed();
        Reply::Done
    }

    /// Stem and head from here, units from the workers. A unit held by several workers has the same
    /// weights on each; its BatchNorm running statistics are taken from the worker that evaluates its
    /// primal term F_c (a worker holding it only for the released map never updates them).
    fn variables(&self) -> Named {
        let mut all = copy_variables(&self.vs, Device::Cpu);
        for (g, variables) in self.worker_variables().into_iter().enumerate() {
            for (name, t) in variables {
                let position = unit_position(&name, self.units_per_layer);
                let owner = position.and_then(|c| self.primal_owner.get(c).copied());
                if owner == Some(g) || !all.contains_key(&name) {
                    all.insert(name, t);
                }
            }
        }
        all
    }

    fn worker_variables(&self) -> Vec<Named> {
        self.workers.iter().for_each(|w| w.send(worker::Command::Variables));
        self.workers.iter().map(Worker::receive_named).collect()
    }
}
