//! A worker's thread: its part of every warp layer and its optimizer, and how it answers each
//! command (the term evaluation itself is model/warp.rs's).

use tch::{nn::VarStore, Device, Tensor};

use super::{Command, Reply, Sent, WorkerSpec};
use crate::base::named::{assign_variables, copy_variables, Named};
use crate::base::optimizer::Optimizer;
use crate::model::unit::Primal;
use crate::model::warp::{receive_outputs, Assignment, Imported, WarpLayer};
use crate::model::LayerIndex;
use crate::runtime::memory::{heap_in_use, measurable, variable_bytes, DeviceMemory};
use crate::runtime::placement::shares::{exchanges, Exchange, Exchanged};

/// What lives on the worker's thread.
pub(super) struct WorkerState {
    vs: VarStore,
    device: Device,
    home: Device,
    /// This worker's part of every warp layer, in forward order.
    layers: Vec<WarpLayer>,
    /// What this worker evaluates of each layer: its terms' rows, the outputs and linearisations it
    /// imports and exports (the same in every layer).
    assignment: Assignment,
    /// Per layer, between a forward and its backward: (x1 as a leaf, the terms' sum).
    pending: Vec<Option<(Tensor, Tensor)>>,
    /// Per layer, between `Primal` and `Terms`: (x1 as a leaf, the primal passes run here).
    primals: Vec<Option<(Tensor, Vec<Option<Primal>>)>>,
    /// Per layer, between a forward and its backward: the differentiable tensors this worker sent (as
    /// computed here, with their graph) and those it received (as leaves here).
    sent: Vec<Vec<Sent>>,
    received: Vec<Vec<Sent>>,
    /// What this worker sends to other workers' terms in every forward.
    exports: Vec<Exchange>,
    /// The variables of the units whose F_c this worker evaluates.
    owned: Vec<String>,
    optimizer: Optimizer,
    /// Heap bytes left allocated by measured forwards since the last `Memory` command.
    held_bytes: usize,
    /// This worker's name in memory reports.
    name: String,
    /// Its group of the placement: its index among the replica's workers.
    group: usize,
    /// Time spent handling commands since the last `Busy`.
    busy: std::time::Duration,
}

/// This worker's part of layer `at`: the units its terms read, built from `spec`'s network under
/// `vs`, the names of the variables of those it owns (it evaluates their F_c) added to `owned`.
fn build_part(spec: &WorkerSpec, vs: &VarStore, at: LayerIndex, owned: &mut Vec<String>) -> WarpLayer {
    let held = spec.placement.units_on(spec.group);
    let names = || vs.variables().into_keys().collect::<std::collections::BTreeSet<String>>();
    let units = (0..spec.network.units_per_layer())
        .map(|c| {
            held.contains(&c).then(|| {
                let before = names();
                let unit = spec.network.unit(&vs.root(), at, c);
                if spec.placement.primal_device(c) == spec.group {
                    owned.extend(names().difference(&before).cloned());
                }
                unit
            })
        })
        .collect();
    WarpLayer::partial(units, spec.placement.groups[spec.group].clone())
}

impl WorkerState {
    /// The worker `spec` asks for, its variables and its optimizer's momentum from `initial` and
    /// `momentum` (by name; missing momentum starts at zero).
    pub(super) fn new(spec: &WorkerSpec, initial: &Named, momentum: &Named) -> Self {
        let device = spec.place.device;
        let vs = VarStore::new(device);
        let group_terms = &spec.placement.groups[spec.group];
        let terms = spec.network.terms();
        assert!(group_terms.iter().all(|t| terms.contains(t)), "placement validated against the layer");
        let exchanges = exchanges(&spec.placement, spec.network.tangent_reads_primal());
        let units = |output: bool, to_or_from: fn(&Exchange) -> usize| -> Vec<usize> {
            let matches =
                |e: &&Exchange| to_or_from(e) == spec.group && (e.what == Exchanged::Output) == output;
            exchanges.iter().filter(matches).map(|e| e.unit).collect()
        };
        let assignment = Assignment {
            spans: group_terms.iter().map(|t| spec.placement.span(spec.group, t)).collect(),
            imported: units(false, |e| e.to),
            exported: units(false, |e| e.from),
            imported_outputs: units(true, |e| e.to),
            exported_outputs: units(true, |e| e.from),
        };
        let mut owned = Vec::new();
        let layers: Vec<WarpLayer> =
            spec.network.layers().into_iter().map(|at| build_part(spec, &vs, at, &mut owned)).collect();
        let exports = exchanges.into_iter().filter(|e| e.from == spec.group).collect();
        assign_variables(&vs, initial);
        let mut optimizer = Optimizer::new(&vs, spec.optimizer);
        optimizer.set_momentum(momentum);
        let pending = (0..layers.len()).map(|_| None).collect();
        let primals = (0..layers.len()).map(|_| None).collect();
        let (sent, received) = (
            (0..layers.len()).map(|_| Vec::new()).collect(),
            (0..layers.len()).map(|_| Vec::new()).collect(),
        );
        let rank = if crate::runtime::mpi::session::running().is_some() {
            format!("rank {} ", spec.place.rank)
        } else {
            String::new()
        };
        let name = format!("worker {} {rank}{}", spec.group + 1, crate::runtime::device::name(device));
        WorkerState {
            vs,
            device,
            home: spec.home,
            layers,
            assignment,
            pending,
            primals,
            sent,
            received,
            exports,
            owned,
            optimizer,
            held_bytes: 0,
            name,
            group: spec.group,
            busy: std::time::Duration::ZERO,
        }
    }

    pub(super) fn handle(&mut self, command: Command) -> Reply {
        let started = std::time::Instant::now();
        let reply = self.work(command);
        self.busy += started.elapsed();
        reply
    }

    /// `work()`, with the heap it leaves allocated added to the activations when `measure`.
    fn measured(&mut self, measure: bool, work: impl FnOnce(&mut Self) -> Reply) -> Reply {
        let before = heap_in_use();
        let reply = work(self);
        if measure {
            self.held_bytes += heap_in_use().saturating_sub(before);
        }
        reply
    }

    /// `Command::Primal`: the primal passes of `layer` at x1, kept; what other workers' terms read of
    /// them (sent without their graph; the differentiable ones kept here for the backward).
    fn primal(&mut self, layer: usize, x1: &Tensor, train: bool) -> Reply {
        let x1 = x1.to_device(self.device).detach().set_requires_grad(train);
        let warp = &self.layers[layer];
        let primals = warp.primal_passes(&warp.terms, &x1, train, &self.assignment);
        let batch = x1.size()[0];
        let mut replies = Vec::new();
        self.sent[layer].clear();
        for e in &self.exports {
            let primal = primals[e.unit].as_ref().expect("F_unit's pass runs here");
            let tensors = match e.what {
                Exchanged::Output => {
                    vec![primal.output.as_ref().expect("exported outputs are computed").shallow_clone()]
                }
                Exchanged::Rows(span) => {
                    let (start, count) = span.rows(batch);
                    let at = primal.linearization.as_ref().expect("F_unit's pass linearises it");
                    warp.unit(e.unit).rows(at, start, count)
                }
            };
            let differentiable = train && tensors.iter().any(Tensor::requires_grad);
            let (from, to, unit, output) = (self.group, e.to, e.unit, e.what == Exchanged::Output);
            let detached = tensors.iter().map(Tensor::detach).collect();
            replies.push(Sent { from, to, unit, output, tensors: detached, differentiable });
            if differentiable {
                self.sent[layer].push(Sent { from, to, unit, output, tensors, differentiable });
            }
        }
        self.primals[layer] = Some((x1, primals));
        Reply::Sent(replies)
    }

    /// `Command::Terms`: the sum of this worker's terms of `layer` from its kept primal passes and what
    /// other workers sent for it (leaves here, where they carry gradients).
    fn terms(&mut self, layer: usize, received: Vec<Sent>) -> Reply {
        let (x1, mut primals) = self.primals[layer].take().expect("Primal before Terms");
        let device = self.device;
        let received: Vec<Sent> = received
            .into_iter()
            .map(|r| {
                let leaf = |t: &Tensor| t.to_device(device).detach().set_requires_grad(r.differentiable);
                Sent { tensors: r.tensors.iter().map(leaf).collect(), ..r }
            })
            .collect();
        let imported: Vec<Imported> = received
            .iter()
            .map(|r| match r.output {
                true => Imported::Output { unit: r.unit, value: r.tensors[0].shallow_clone() },
                false => Imported::Rows {
                    unit: r.unit,
                    rows: r.tensors.iter().map(Tensor::shallow_clone).collect(),
                },
            })
            .collect();
        receive_outputs(&mut primals, &imported);
        let sum = self.layers[layer].sum_at(&x1, &primals, &imported, &self.assignment);
        self.received[layer] = received.into_iter().filter(|r| r.differentiable).collect();
        let reply = sum.detach().to_device(self.home);
        self.pending[layer] = Some((x1, sum));
        Reply::Tensor(reply)
    }

    /// `Command::ReceivedGradients`: d<sum, grad>/d(what was received), each addressed to its sender;
    /// the graph is kept for the `Backward` that follows.
    fn received_gradients(&mut self, layer: usize, grad: &Tensor) -> Reply {
        let received = &self.received[layer];
        if received.is_empty() {
            return Reply::Sent(Vec::new());
        }
        let (_, sum) = self.pending[layer].as_ref().expect("a forward before its backward");
        let objective = (sum * grad.to_device(self.device)).sum(sum.kind());
        let leaves: Vec<&Tensor> = received.iter().flat_map(|r| &r.tensors).collect();
        let mut gradients = Tensor::run_backward(&[objective], &leaves, true, false).into_iter();
        let rows = received
            .iter()
            .map(|r| {
                let mut gradient_of = |leaf: &Tensor| {
                    let g = gradients.next().expect("one gradient per leaf");
                    // A received tensor the sum does not read has none (a frozen LayerNorm's tangent
                    // reads 1/sigma, not the normalised input): zero, of its shape.
                    let g = if g.defined() { g } else { leaf.zeros_like() };
                    g.to_device(self.home)
                };
                let tensors = r.tensors.iter().map(&mut gradient_of).collect();
                Sent {
                    from: self.group,
                    to: r.from,
                    unit: r.unit,
                    output: r.output,
                    tensors,
                    differentiable: false,
                }
            })
            .collect();
        Reply::Sent(rows)
    }

    /// `Command::Backward`: the weight gradients of <sum, grad> plus, through each differentiable
    /// tensor this worker sent, <tensor, its gradient at the receiver>; dL/dx1 of the same.
    fn backward(&mut self, layer: usize, grad: &Tensor, returned: Vec<Sent>) -> Reply {
        let (x1, sum) = self.pending[layer].take().expect("a forward before its backward");
        self.received[layer].clear();
        let kind = sum.kind();
        // d/dtheta of <sum, grad> is the vector-Jacobian product grad^T d(sum)/dtheta.
        let mut objective = (sum * grad.to_device(self.device)).sum(kind);
        for back in returned {
            let sent = self.sent[layer]
                .iter()
                .find(|s| s.to == back.from && s.unit == back.unit && s.output == back.output);
            let sent = sent.expect("gradients come back for rows this worker sent");
            for (t, g) in sent.tensors.iter().zip(&back.tensors) {
                objective = objective + (t * g.to_device(self.device)).sum(kind);
            }
        }
        self.sent[layer].clear();
        objective.backward();
        let x1_grad = x1.grad();
        // Terms that reach x1 only through a 0/1 mask (`released`) give it no gradient.
        let x1_grad = if x1_grad.defined() { x1_grad } else { x1.zeros_like() };
        Reply::Tensor(x1_grad.to_device(self.home))
    }

    fn work(&mut self, command: Command) -> Reply {
        match command {
            Command::Forward { layer, x1, train, measure } => {
                let before = heap_in_use();
                // A fresh leaf on this device: this worker's graph starts at x1.
                let x1 = x1.to_device(self.device).detach().set_requires_grad(train);
                let sum = self.layers[layer].assigned_sum(&x1, train, &self.assignment);
                let reply = sum.detach().to_device(self.home);
                if train {
                    self.pending[layer] = Some((x1, sum));
                }
                if measure {
                    self.held_bytes += heap_in_use().saturating_sub(before);
                }
                Reply::Tensor(reply)
            }
            Command::Primal { layer, x1, train, measure } => {
                self.measured(measure, |w| w.primal(layer, &x1, train))
            }
            Command::Terms { layer, received, measure } => {
                self.measured(measure, |w| w.terms(layer, received))
            }
            Command::Backward { layer, grad, returned } => self.backward(layer, &grad, returned),
            Command::ReceivedGradients { layer, grad } => self.received_gradients(layer, &grad),
            Command::TakeGradients => {
                let mut gradients = Named::new();
                for (name, mut p) in self.vs.variables() {
                    let grad = p.grad();
                    if p.requires_grad() && grad.defined() {
                        gradients.insert(name, grad.to_device(self.home).copy());
                        p.zero_grad();
                    }
                }
                Reply::Named(gradients)
            }
            Command::Apply { gradients, lr } => {
                let mine: Vec<Tensor> =
                    self.optimizer.names().map(|n| gradients[n].to_device(self.device)).collect();
                self.optimizer.step(&mine, lr);
                Reply::Done
            }
            Command::Variables => Reply::Named(copy_variables(&self.vs, Device::Cpu)),
            Command::Owned => Reply::Names(self.owned.clone()),
            Command::Memory => {
                let (weights, optimizer) = variable_bytes(&self.vs);
                let activations = measurable(self.device).then_some(std::mem::take(&mut self.held_bytes));
                Reply::Memory(DeviceMemory { device: self.name.clone(), weights, optimizer, activations })
            }
            Command::Busy => Reply::Seconds(std::mem::take(&mut self.busy).as_secs_f64()),
            Command::Momentum => Reply::Named(self.optimizer.momentum(Device::Cpu)),
            Command::Parameters => Reply::Names(self.optimizer.names().map(String::from).collect()),
            Command::ForwardInGroup { .. } | Command::BackwardInGroup { .. } => {
                unreachable!("answered by the hosted worker (runtime/serve.rs)")
            }
        }
    }
}
