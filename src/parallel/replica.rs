//! A replica: one copy of the whole network, on its own thread. Either whole on one device, or split:
//! stem, downsampling and head on its home device, the warp layers' terms on term workers (one per
//! group of the placement). Backward mirrors forward: the upstream gradient of a warp layer is sent
//! to every worker, each returns its terms' dL/dx1, and the home adds them to the skip's gradient.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread::JoinHandle;

use tch::{nn::VarStore, Device, Kind, Tensor};

use super::named::{accumulate, assign_variables, copy_variables, Named};
use super::placement::Placement;
use super::worker::{self, Worker, WorkerSpec};
use crate::model::net::{downsample, Head, LayerIndex, Stem};
use crate::model::{Net, NetConfig};
use crate::train::optimizer::Sgd;

/// How a replica is laid out.
#[derive(Clone)]
pub enum Layout {
    /// The whole network on one device.
    Whole(Device),
    /// Stem and head on `home`; group g of `placement` on `workers[g]`.
    Split { home: Device, placement: Placement, workers: Vec<Device>, threads_per_worker: usize },
}

/// What a replica is asked to do.
pub enum Command {
    /// Gradients of `scale` x (mean cross-entropy over this shard); replies `Reply::Gradients`.
    Gradients { images: Tensor, labels: Tensor, scale: f64 },
    /// One SGD step with the final gradients (all names); replies `Reply::Done`.
    Apply { gradients: Named, lr: f64 },
    /// A copy of every variable of the network on the CPU; replies `Reply::Variables`.
    Variables,
    /// Each term worker's own variables (replicated units appear once per worker that holds them);
    /// replies `Reply::PerWorker` (empty for a whole replica).
    WorkerVariables,
}

pub enum Reply {
    /// Shard loss summed over its images, images classified correctly, and the gradients.
    Gradients {
        loss_sum: f64,
        correct: i64,
        gradients: Named,
    },
    Variables(Named),
    PerWorker(Vec<Named>),
    Done,
}

/// The coordinator's end of a replica.
pub struct Replica {
    commands: Sender<Command>,
    replies: Receiver<anyhow::Result<Reply>>,
    thread: Option<JoinHandle<()>>,
}

/// SGD settings every device uses.
#[derive(Debug, Clone, Copy)]
pub struct SgdSettings {
    pub momentum: f64,
    pub weight_decay: f64,
}

impl Replica {
    pub fn spawn(config: NetConfig, layout: Layout, initial: Named, sgd: SgdSettings) -> Self {
        let (commands, inbox) = channel::<Command>();
        let (outbox, replies) = channel();
        let thread = std::thread::spawn(move || {
            let mut state = match layout {
                Layout::Whole(device) => State::Whole(WholeReplica::new(&config, device, &initial, sgd)),
                Layout::Split { home, placement, workers, threads_per_worker } => {
                    let split = SplitReplica::new(
                        &config,
                        home,
                        &placement,
                        &workers,
                        threads_per_worker,
                        &initial,
                        sgd,
                    );
                    State::Split(split)
                }
            };
            drop(initial);
            for command in inbox {
                if outbox.send(Ok(state.handle(command))).is_err() {
                    break;
                }
            }
        });
        Replica { commands, replies, thread: Some(thread) }
    }

    pub fn send(&self, command: Command) {
        self.commands.send(command).expect("replica thread alive");
    }

    pub fn receive(&self) -> Reply {
        self.replies.recv().expect("replica thread alive").expect("replica command succeeded")
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let (closed, _) = channel();
        drop(std::mem::replace(&mut self.commands, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

enum State {
    Whole(WholeReplica),
    Split(SplitReplica),
}

impl State {
    fn handle(&mut self, command: Command) -> Reply {
        match (self, command) {
            (State::Whole(r), Command::Gradients { images, labels, scale }) => {
                r.gradients(&images, &labels, scale)
            }
            (State::Split(r), Command::Gradients { images, labels, scale }) => {
                r.gradients(&images, &labels, scale)
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

    fn gradients(&mut self, images: &Tensor, labels: &Tensor, scale: f64) -> Reply {
        let labels = labels.to_device(self.device);
        let logits = self.net.forward(&images.to_device(self.device), true);
        let (loss, correct) = loss_and_correct(&logits, &labels);
        let n = labels.size()[0] as f64;
        let gradients = self.sgd.gradients(&(&loss * scale));
        let gradients = self.sgd.names().map(String::from).zip(gradients).collect();
        Reply::Gradients { loss_sum: loss.double_value(&[]) * n, correct, gradients }
    }
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
        devices: &[Device],
        threads_per_worker: usize,
        initial: &Named,
        sgd: SgdSettings,
    ) -> Self {
        let vs = VarStore::new(home);
        let stem = Stem::new(&vs.root(), config);
        let head = Head::new(&vs.root(), config);
        assign_variables(&vs, initial);
        let workers = devices
            .iter()
            .enumerate()
            .map(|(group, &device)| {
                let spec = WorkerSpec {
                    config: config.clone(),
                    placement: placement.clone(),
                    group,
                    device,
                    home,
                    threads: threads_per_worker,
                    momentum: sgd.momentum,
                    weight_decay: sgd.weight_decay,
                };
                Worker::spawn(spec, super::named::deep_copy(initial))
            })
            .collect();
        let sgd = Sgd::new(&vs, sgd.momentum, sgd.weight_decay);
        let units_per_layer = config.layer_grouping().0;
        let primal_owner = (0..units_per_layer)
            .map(|c| {
                let f_c = crate::model::terms::Term::primal(c);
                placement.groups.iter().position(|g| g.contains(&f_c)).expect("every F_c is placed")
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
        }
    }

    /// Sends `command(worker)` to every worker, then collects the tensors they reply, summed.
    fn on_all_workers(&self, command: impl Fn() -> worker::Command) -> Tensor {
        for w in &self.workers {
            w.send(command());
        }
        self.workers.iter().map(Worker::receive_tensor).reduce(|a, b| a + b).expect("at least one worker")
    }

    fn gradients(&mut self, images: &Tensor, labels: &Tensor, scale: f64) -> Reply {
        let labels = labels.to_device(self.home);
        // Forward. Each autograd island on the home device starts at a leaf: (leaf, output).
        let stem_out = self.stem.forward(&images.to_device(self.home), true);
        let mut h = stem_out.detach();
        let mut downsamples: Vec<(Tensor, Tensor)> = Vec::new();
        for (i, at) in self.layers.iter().enumerate() {
            if at.stage > 0 && at.layer == 0 {
                let leaf = h.set_requires_grad(true);
                let out = downsample(&leaf);
                h = out.detach();
                downsamples.push((leaf, out));
            }
            let x1 = h.shallow_clone();
            h = &h
                + self.on_all_workers(|| worker::Command::Forward {
                    layer: i,
                    x1: x1.shallow_clone(),
                    train: true,
                });
        }
        let head_in = h.set_requires_grad(true);
        let logits = self.head.forward(&head_in, true);
        let (loss, correct) = loss_and_correct(&logits, &labels);
        (&loss * scale).backward();

        // Backward, layer by layer in reverse: g is dL/d(output of the layer being undone).
        let mut g = head_in.grad();
        for (i, at) in self.layers.iter().enumerate().rev() {
            let upstream = g.shallow_clone();
            g = &g
                + self.on_all_workers(|| worker::Command::Backward {
                    layer: i,
                    grad: upstream.shallow_clone(),
                });
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
        for w in &self.workers {
            w.send(worker::Command::TakeGradients);
        }
        // A unit replicated on several workers: its gradients are summed.
        for w in &self.workers {
            accumulate(&mut gradients, w.receive_named());
        }
        let n = labels.size()[0] as f64;
        Reply::Gradients { loss_sum: loss.double_value(&[]) * n, correct, gradients }
    }

    fn apply(&mut self, gradients: Named, lr: f64) -> Reply {
        for w in &self.workers {
            w.send(worker::Command::Apply { gradients: super::named::deep_copy(&gradients), lr });
        }
        let mine: Vec<Tensor> = self.sgd.names().map(|n| gradients[n].to_device(self.home)).collect();
        self.sgd.step(&mine, lr);
        for w in &self.workers {
            w.receive();
        }
        Reply::Done
    }

    /// Stem and head from here, units from the workers. A unit held by several workers has the same
    /// weights on each; its BatchNorm running statistics are taken from the worker that evaluates its
    /// primal term F_c (a worker holding it only for the released map never updates them).
    fn variables(&self) -> Named {
        let mut all = copy_variables(&self.vs, Device::Cpu);
        let per_worker = self.worker_variables();
        for (g, variables) in per_worker.into_iter().enumerate() {
            for (name, t) in variables {
                let owner = unit_position(&name, self.units_per_layer)
                    .and_then(|c| self.primal_owner.get(c).copied());
                if owner == Some(g) || !all.contains_key(&name) {
                    all.insert(name, t);
                }
            }
        }
        all
    }

    fn worker_variables(&self) -> Vec<Named> {
        for w in &self.workers {
            w.send(worker::Command::Variables);
        }
        self.workers.iter().map(Worker::receive_named).collect()
    }
}
