//! A split replica's home: stem, the steps between stages and head here, the warp layers' terms on
//! term workers. Forward sends x1 to every worker and adds their terms' sums to it; backward sends the
//! upstream gradient to every worker and adds their dL/dx1 to the skip's gradient. Where pieces of a
//! split term read linearisations from another worker (runtime/placement/shares.rs), each layer's
//! forward runs in two phases: every worker's primal passes, whose replies carry the linearisation
//! rows, then every worker's terms.

use std::collections::BTreeSet;

use tch::{nn::VarStore, Device, Tensor};

use super::group as replica_group;
use super::Reply;
use crate::base::named::{accumulate, assign_variables, copy_variables, deep_copy, Named, Snapshot};
use crate::base::optimizer::{Optimizer, OptimizerSettings};
use crate::model::architecture::Module;
use crate::model::net::walk_layers;
use crate::model::{loss, LayerIndex, Network};
use crate::runtime::device::{name, Place};
use crate::runtime::memory::{heap_in_use, measurable, variable_bytes, DeviceMemory};
use crate::runtime::mpi::collective::Group;
use crate::runtime::mpi::Members;
use crate::runtime::placement::shares::exchanges;
use crate::runtime::placement::Placement;
use crate::runtime::serial;
use crate::runtime::worker::{self, Sent, Worker, WorkerSpec};

/// The devices of a split replica's term workers, their intra-op threads, and over MPI ranks the
/// replica group: the home's rank first, then the ranks of the workers on other ranks.
pub(super) struct WorkerDevices {
    pub(super) devices: Vec<Place>,
    pub(super) threads: usize,
    pub(super) collective: Option<Members>,
}

/// Stem and head here, warp-layer terms on workers.
pub(super) struct SplitReplica {
    vs: VarStore,
    stem: Box<dyn Module>,
    head: Box<dyn Module>,
    /// Its architecture: the step between stages (no variables) is built from it where it is taken.
    network: Network,
    pub(super) home: Device,
    layers: Vec<LayerIndex>,
    pub(super) workers: Vec<Worker>,
    /// Over MPI ranks: the replica group (x1 broadcast to the workers on other ranks, their sums
    /// reduced to here, replica/group.rs), and which workers are on other ranks.
    group: Option<(Group, Vec<bool>)>,
    /// The parameters each worker updates: it is sent only their gradients.
    worker_parameters: Vec<Vec<String>>,
    /// The variables of the units whose F_c each worker evaluates: the network's copies of them.
    worker_owned: Vec<BTreeSet<String>>,
    optimizer: Optimizer,
    /// Whether workers send each other linearisation rows (a two-phase forward).
    exchanges: bool,
    /// Per layer, whether the rows sent in its last forward carry gradients back to their senders (a
    /// two-phase backward).
    rows_differentiable: Vec<bool>,
    /// Time this thread spent waiting for worker replies since the last `Busy`.
    pub(super) waiting: std::time::Duration,
}

impl SplitReplica {
    pub(super) fn new(
        network: &Network,
        home: Device,
        placement: &Placement,
        devices: &WorkerDevices,
        initial: &Snapshot,
        optimizer: OptimizerSettings,
    ) -> Self {
        let vs = VarStore::new(home);
        let here = crate::runtime::mpi::rank();
        let stem = network.stem(&vs.root());
        let head = network.head(&vs.root());
        assign_variables(&vs, &initial.variables);
        let workers = devices
            .devices
            .iter()
            .enumerate()
            .map(|(group, &place)| {
                let spec = WorkerSpec {
                    network: network.clone(),
                    placement: placement.clone(),
                    group,
                    place,
                    home,
                    threads: devices.threads,
                    optimizer,
                    collective: devices.collective.clone().filter(|_| place.rank != here),
                };
                Worker::spawn(spec, deep_copy(&initial.variables), deep_copy(&initial.momentum))
            })
            .collect::<Vec<Worker>>();
        // Before any reply: the workers on other ranks wait in the group's making for this rank.
        let group = devices.collective.as_ref().map(|members| {
            (Group::new(members), devices.devices.iter().map(|place| place.rank != here).collect())
        });
        let ask = |command: fn() -> worker::Command| -> Vec<Vec<String>> {
            workers.iter().for_each(|w| w.send(command()));
            workers.iter().map(Worker::receive_as::<Vec<String>>).collect()
        };
        let worker_parameters = ask(|| worker::Command::Parameters);
        let worker_owned = ask(|| worker::Command::Owned).into_iter().map(BTreeSet::from_iter).collect();
        let mut optimizer = Optimizer::new(&vs, optimizer);
        optimizer.set_momentum(&initial.momentum);
        SplitReplica {
            vs,
            stem,
            head,
            network: network.clone(),
            home,
            layers: network.layers(),
            workers,
            group,
            worker_parameters,
            worker_owned,
            optimizer,
            exchanges: !exchanges(placement, network.tangent_reads_primal()).is_empty(),
            rows_differentiable: vec![false; network.layers().len()],
            waiting: std::time::Duration::ZERO,
        }
    }

    /// The sum of every worker's reply to `ask` about `tensor` (x1 or an upstream gradient). Over a
    /// replica group, the workers on other ranks are sent `in_group(bytes)` and get the tensor by the
    /// group's broadcast, their replies come by its reduction (the workers here add theirs to this
    /// rank's part); otherwise every worker is sent `ask(tensor)` and replies with its own tensor. With
    /// `one_by_one` (measuring), each worker finishes before the next starts, by messages.
    fn sum_from_workers(
        &mut self,
        one_by_one: bool,
        tensor: &Tensor,
        ask: impl Fn(Tensor) -> worker::Command,
        in_group: impl Fn(usize) -> worker::Command,
    ) -> Tensor {
        let started = std::time::Instant::now();
        let sum = match &self.group {
            Some((group, remote)) if !one_by_one => {
                let mut bytes = serial::to_bytes(&serial::tensor::Ref(tensor));
                for (w, &remote) in self.workers.iter().zip(remote) {
                    w.send(if remote { in_group(bytes.len()) } else { ask(tensor.shallow_clone()) });
                }
                replica_group::broadcast(group, &mut bytes);
                let here = self.workers.iter().zip(remote).filter(|(_, &r)| !r).map(|(w, _)| w);
                let part = here.map(Worker::receive_as::<Tensor>).reduce(|a, b| a + b);
                let part = part.unwrap_or_else(|| tensor.zeros_like());
                let sum = replica_group::reduce_sum(group, &part).expect("the home is the group's root");
                self.workers.iter().zip(remote).filter(|(_, &r)| r).for_each(|(w, _)| drop(w.receive()));
                sum.to_device(self.home)
            }
            _ => {
                let replies = self.each_worker(
                    one_by_one,
                    |_| ask(tensor.shallow_clone()),
                    Worker::receive_as::<Tensor>,
                );
                replies.into_iter().reduce(|a, b| a + b).expect("at least one worker")
            }
        };
        self.waiting += started.elapsed();
        sum
    }

    /// The sum of every worker's terms of layer `layer` at x1 (x1's shape).
    fn forward_layer(&mut self, layer: usize, x1: &Tensor, measure: bool) -> Tensor {
        if !self.exchanges {
            let forward = |x1| worker::Command::Forward { layer, x1, train: true, measure };
            let in_group = |bytes| worker::Command::ForwardInGroup { layer, bytes, train: true };
            return self.sum_from_workers(measure, x1, forward, in_group);
        }
        let started = std::time::Instant::now();
        let primal = || worker::Command::Primal { layer, x1: x1.shallow_clone(), train: true, measure };
        let mut inboxes: Vec<Vec<Sent>> = self.workers.iter().map(|_| Vec::new()).collect();
        let mut differentiable = false;
        for reply in self.each_worker(measure, |_| primal(), Worker::receive_as::<Vec<Sent>>) {
            for rows in reply {
                differentiable |= rows.differentiable;
                inboxes[rows.to].push(rows);
            }
        }
        self.rows_differentiable[layer] = differentiable;
        let mut inboxes = inboxes.into_iter();
        let terms = |_: usize| worker::Command::Terms {
            layer,
            received: inboxes.next().expect("one inbox per worker"),
            measure,
        };
        let sums = self.each_worker(measure, terms, Worker::receive_as::<Tensor>);
        self.waiting += started.elapsed();
        sums.into_iter().reduce(|a, b| a + b).expect("at least one worker")
    }

    /// The sum of every worker's dL/dx1 of layer `layer` for upstream gradient `grad`, where the
    /// linearisation rows of its forward carry gradients: first the receivers' gradients of the rows,
    /// each routed back to its sender, then every worker's backward through its terms and those rows.
    fn backward_through_rows(&mut self, layer: usize, grad: &Tensor) -> Tensor {
        let started = std::time::Instant::now();
        let ask = |_| worker::Command::ReceivedGradients { layer, grad: grad.shallow_clone() };
        let mut inboxes: Vec<Vec<Sent>> = self.workers.iter().map(|_| Vec::new()).collect();
        for rows in self.each_worker(false, ask, Worker::receive_as::<Vec<Sent>>).into_iter().flatten() {
            inboxes[rows.to].push(rows);
        }
        let mut inboxes = inboxes.into_iter();
        let backward = |_| worker::Command::Backward {
            layer,
            grad: grad.shallow_clone(),
            returned: inboxes.next().expect("one inbox per worker"),
        };
        let sums = self.each_worker(false, backward, Worker::receive_as::<Tensor>);
        self.waiting += started.elapsed();
        sums.into_iter().reduce(|a, b| a + b).expect("at least one worker")
    }

    /// Sends every worker its `command(worker)` and collects the replies in worker order: all at once,
    /// or with `one_by_one` each finishing before the next starts (for measuring).
    fn each_worker<T>(
        &self,
        one_by_one: bool,
        mut command: impl FnMut(usize) -> worker::Command,
        receive: fn(&Worker) -> T,
    ) -> Vec<T> {
        if one_by_one {
            return self
                .workers
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    w.send(command(i));
                    receive(w)
                })
                .collect();
        }
        self.workers.iter().enumerate().for_each(|(i, w)| w.send(command(i)));
        self.workers.iter().map(receive).collect()
    }

    pub(super) fn gradients(&mut self, images: &Tensor, labels: &Tensor, scale: f64, measure: bool) -> Reply {
        let before = heap_in_use();
        let labels = labels.to_device(self.home);
        // Forward. Each autograd island on the home device starts at a leaf: (leaf, output).
        let stem_out = self.stem.forward(&images.to_device(self.home), true);
        let mut downsamples: Vec<(Tensor, Tensor)> = Vec::new();
        let between = self.network.between_stages();
        let between_stages = |h: Tensor| {
            let leaf = h.set_requires_grad(true);
            let out = between.forward(&leaf, true);
            downsamples.push((leaf, out.shallow_clone()));
            out.detach()
        };
        let layers = self.layers.clone();
        let h = walk_layers(&layers, stem_out.detach(), between_stages, |i, _, x1| {
            &x1 + self.forward_layer(i, &x1, measure) // x1 + the terms the workers return
        });
        let head_in = h.set_requires_grad(true);
        let logits = self.head.forward(&head_in, true);
        let (loss, correct) = (loss::cross_entropy(&logits, &labels), loss::correct(&logits, &labels));
        let forward_bytes = heap_in_use().saturating_sub(before);
        (&loss * scale).backward();

        // Backward, layer by layer in reverse: g is dL/d(output of the layer being undone).
        let mut g = head_in.grad();
        for (i, at) in self.layers.clone().into_iter().enumerate().rev() {
            g = &g
                + match self.rows_differentiable[i] {
                    true => self.backward_through_rows(i, &g),
                    false => {
                        let backward =
                            |grad| worker::Command::Backward { layer: i, grad, returned: Vec::new() };
                        let in_group = |bytes| worker::Command::BackwardInGroup { layer: i, bytes };
                        self.sum_from_workers(false, &g, backward, in_group)
                    }
                };
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
            let part = w.receive_as::<Named>();
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
        let workers: Vec<DeviceMemory> =
            self.workers.iter().map(Worker::receive_as::<DeviceMemory>).collect();
        let on_workers: usize = workers.iter().filter_map(|m| m.activations).sum();
        let (weights, optimizer) = variable_bytes(&self.vs);
        let activations = measurable(self.home).then(|| forward_bytes.saturating_sub(on_workers));
        let home =
            DeviceMemory { device: format!("home {}", name(self.home)), weights, optimizer, activations };
        std::iter::once(home).chain(workers).collect()
    }

    pub(super) fn apply(&mut self, gradients: Named, lr: f64) -> Reply {
        for (w, names) in self.workers.iter().zip(&self.worker_parameters) {
            let theirs = names.iter().map(|n| (n.clone(), gradients[n].copy())).collect();
            w.send(worker::Command::Apply { gradients: theirs, lr });
        }
        let mine: Vec<Tensor> = self.optimizer.names().map(|n| gradients[n].to_device(self.home)).collect();
        self.optimizer.step(&mine, lr);
        let started = std::time::Instant::now();
        for w in &self.workers {
            w.receive();
        }
        self.waiting += started.elapsed();
        Reply::Done
    }

    /// Stem and head from here, units from the workers. A unit held by several workers has the same
    /// weights on each; its BatchNorm running statistics are taken from the worker that evaluates its
    /// primal term F_c (a worker holding it only for a tangent never updates them).
    pub(super) fn variables(&self) -> Named {
        let mut all = copy_variables(&self.vs, Device::Cpu);
        for (variables, owned) in self.worker_variables().into_iter().zip(&self.worker_owned) {
            for (name, t) in variables {
                if owned.contains(&name) || !all.contains_key(&name) {
                    all.insert(name, t);
                }
            }
        }
        all
    }

    /// Momentum buffers of the home's parameters and every worker's (a replicated unit's are equal).
    pub(super) fn momentum(&self) -> Named {
        let mut all = self.optimizer.momentum(Device::Cpu);
        self.workers.iter().for_each(|w| w.send(worker::Command::Momentum));
        for w in &self.workers {
            for (name, t) in w.receive_as::<Named>() {
                all.entry(name).or_insert(t);
            }
        }
        all
    }

    pub(super) fn worker_variables(&self) -> Vec<Named> {
        self.workers.iter().for_each(|w| w.send(worker::Command::Variables));
        self.workers.iter().map(Worker::receive_as::<Named>).collect()
    }
}
