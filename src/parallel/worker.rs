//! A term worker: one device of a model-parallel placement, on its own thread. It holds replicas of
//! only the units its terms read, evaluates its terms of every warp layer at the x1 it is sent, and
//! backpropagates them for the upstream gradient it is sent.

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device, Tensor};

use super::actor::{Actor, Link};
use super::device::Place;
use super::memory::{heap_in_use, measurable, variable_bytes, DeviceMemory};
use super::mpi::Members;
use super::placement::shares::{mask_exchanges, MaskExchange};
use super::placement::Placement;
use crate::base::named::{assign_variables, copy_variables, Named};
use crate::base::optimizer::{Sgd, SgdSettings};
use crate::base::serial;
use crate::model::net::{build_layer, layer_operator};
use crate::model::unit::UnitPrimal;
use crate::model::warp::WarpLayer;
use crate::model::NetConfig;

/// What a worker is asked to do; each command gets one reply.
#[derive(Serialize, Deserialize)]
pub enum Command {
    /// Sum of this worker's terms of layer `layer` at x1 (B, C, H, W); replies `Reply::Tensor`. With
    /// `measure`, the heap this forward leaves allocated is added to the worker's activation count
    /// (valid only while no other thread allocates).
    Forward {
        layer: usize,
        #[serde(with = "serial::tensor")]
        x1: Tensor,
        train: bool,
        measure: bool,
    },
    /// The first half of `Forward` where the placement exchanges ReLU masks (parallel/placement/shares.rs): the
    /// primal passes of layer `layer` at x1, kept for `Terms`; replies `Reply::Named` with the mask rows
    /// other workers' pieces read, keyed `"<worker>/<unit>"` (0-based).
    Primal {
        layer: usize,
        #[serde(with = "serial::tensor")]
        x1: Tensor,
        train: bool,
        measure: bool,
    },
    /// The second half: the sum of this worker's terms from the kept primal passes and the mask rows
    /// sent for it (`masks`, keyed by unit); replies `Reply::Tensor` as `Forward` does.
    Terms {
        layer: usize,
        #[serde(with = "serial::named")]
        masks: Named,
        measure: bool,
    },
    /// Backpropagate the last forward of `layer` for upstream gradient (B, C, H, W): accumulates
    /// the weight gradients and replies dL/dx1 of this worker's terms as `Reply::Tensor`.
    Backward {
        layer: usize,
        #[serde(with = "serial::tensor")]
        grad: Tensor,
    },
    /// `Forward` whose x1 comes by the replica group's broadcast (its serde form, `bytes` long), and
    /// whose sum goes back by the group's reduction; replies `Reply::Done`. Answered by the hosted
    /// worker on its rank (parallel/hosted.rs), which hands the worker itself a `Forward`.
    ForwardInGroup { layer: usize, bytes: usize, train: bool },
    /// `Backward` whose gradient comes by the group's broadcast and whose dL/dx1 goes back by its
    /// reduction; replies `Reply::Done`. Answered as `ForwardInGroup` is.
    BackwardInGroup { layer: usize, bytes: usize },
    /// The accumulated weight gradients (then cleared); replies `Reply::Named`.
    TakeGradients,
    /// One SGD step from the final gradients (a superset of this worker's names); replies `Reply::Done`.
    Apply {
        #[serde(with = "serial::named")]
        gradients: Named,
        lr: f64,
    },
    /// A copy of every variable; replies `Reply::Named`.
    Variables,
    /// Memory held on this worker's device (activations measured since the last `Memory`); replies
    /// `Reply::Memory`.
    Memory,
    /// Seconds spent working (not waiting for commands) since the last `Busy`; replies `Reply::Seconds`.
    Busy,
    /// Copies of the optimizer's momentum buffers by parameter name; replies `Reply::Named`.
    Momentum,
    /// The names of the parameters this worker updates; replies `Reply::Names`.
    Parameters,
}

#[derive(Serialize, Deserialize)]
pub enum Reply {
    Tensor(#[serde(with = "serial::tensor")] Tensor),
    Named(#[serde(with = "serial::named")] Named),
    Memory(DeviceMemory),
    Seconds(f64),
    Names(Vec<String>),
    Done,
}

/// How to build a worker: which group of the placement it evaluates, on which device.
#[derive(Serialize, Deserialize)]
pub struct WorkerSpec {
    pub config: NetConfig,
    pub placement: Placement,
    pub group: usize,
    /// The rank and device the worker runs on (another rank: built there, parallel/mpi/).
    pub place: Place,
    /// Device the replies go to (the replica's home).
    #[serde(with = "serial::device")]
    pub home: Device,
    pub threads: usize,
    pub sgd: SgdSettings,
    /// On another rank than its home: the replica group it joins for x1's broadcast and the sums'
    /// reduction (`ForwardInGroup`, `BackwardInGroup`).
    pub collective: Option<Members>,
}

/// The coordinator's end of a worker.
pub struct Worker {
    link: Link<Command, Reply>,
    pub device: Device,
}

impl Worker {
    /// Starts the worker; its unit replicas start from `initial` (variables by name) and its
    /// optimizer from `momentum` (buffers by parameter name; missing names start at zero).
    pub fn spawn(spec: WorkerSpec, initial: Named, momentum: Named) -> Self {
        let (device, group) = (spec.place.device, spec.group);
        if spec.place.rank != super::mpi::rank() {
            let link = Box::new(super::hosted::worker(&spec, &initial, &momentum));
            return Worker { link, device };
        }
        let start = move || {
            tch::set_num_threads(spec.threads as i32);
            let mut state = WorkerState::new(&spec, &initial);
            state.sgd.set_momentum(&momentum);
            state
        };
        let name = format!("{}, term worker {}", super::device::name(device), group + 1);
        Worker { link: Box::new(Actor::spawn(name, start, WorkerState::handle)), device }
    }

    /// Sends a command without waiting (the workers of a layer run at the same time).
    pub fn send(&self, command: Command) {
        self.link.send(command);
    }

    /// The reply to the oldest command not yet answered.
    pub fn receive(&self) -> Reply {
        self.link.receive()
    }

    /// The reply to the oldest command as what that command's reply holds (`Tensor`, `Named`, `f64`,
    /// `Vec<String>` or `DeviceMemory`; each command has one kind of reply).
    pub fn receive_as<T: TryFrom<Reply>>(&self) -> T {
        T::try_from(self.receive()).unwrap_or_else(|_| unreachable!("the reply its command gets"))
    }
}

/// What each kind of reply holds, for [`Worker::receive_as`].
macro_rules! reply_holds {
    ($($variant:ident($held:ty)),*) => {$(
        impl TryFrom<Reply> for $held {
            type Error = Reply;
            fn try_from(reply: Reply) -> Result<Self, Reply> {
                match reply {
                    Reply::$variant(held) => Ok(held),
                    other => Err(other),
                }
            }
        }
    )*};
}
reply_holds!(Tensor(Tensor), Named(Named), Seconds(f64), Names(Vec<String>), Memory(DeviceMemory));

/// What lives on the worker's thread.
struct WorkerState {
    vs: VarStore,
    device: Device,
    home: Device,
    /// This worker's part of every warp layer, in forward order.
    layers: Vec<WarpLayer>,
    /// Per layer, between a forward and its backward: (x1 as a leaf, the terms' sum).
    pending: Vec<Option<(Tensor, Tensor)>>,
    /// Per layer, between `Primal` and `Terms`: (x1 as a leaf, the primal passes run here).
    primals: Vec<Option<(Tensor, Vec<Option<UnitPrimal>>)>>,
    /// The mask rows this worker sends to other workers' pieces in every forward.
    exports: Vec<MaskExchange>,
    sgd: Sgd,
    /// Heap bytes left allocated by measured forwards since the last `Memory` command.
    held_bytes: usize,
    /// This worker's name in memory reports.
    name: String,
    /// Time spent handling commands since the last `Busy`.
    busy: std::time::Duration,
}

impl WorkerState {
    fn new(spec: &WorkerSpec, initial: &Named) -> Self {
        let device = spec.place.device;
        let vs = VarStore::new(device);
        let (terms, jacobian) = layer_operator(&spec.config);
        let group_terms = &spec.placement.groups[spec.group];
        assert!(group_terms.iter().all(|t| terms.contains(t)), "placement validated against the layer");
        let held: Vec<usize> = spec.placement.units_on(spec.group).into_iter().collect();
        let exchanges = mask_exchanges(&spec.placement, jacobian);
        let spans: Vec<_> = group_terms.iter().map(|t| spec.placement.span(spec.group, t)).collect();
        let masks_between = |to_or_from: fn(&MaskExchange) -> usize| -> Vec<usize> {
            exchanges.iter().filter(|e| to_or_from(e) == spec.group).map(|e| e.unit).collect()
        };
        let (imported_masks, exported_masks) = (masks_between(|e| e.to), masks_between(|e| e.from));
        let layers: Vec<WarpLayer> = spec
            .config
            .layer_indices()
            .into_iter()
            .map(|at| {
                let mut layer =
                    build_layer(&vs.root(), &spec.config, at, &held, group_terms.clone(), jacobian);
                (layer.spans, layer.imported_masks) = (spans.clone(), imported_masks.clone());
                layer.exported_masks = exported_masks.clone();
                layer
            })
            .collect();
        let exports = exchanges.into_iter().filter(|e| e.from == spec.group).collect();
        assign_variables(&vs, initial);
        let sgd = Sgd::new(&vs, spec.sgd);
        let pending = (0..layers.len()).map(|_| None).collect();
        let primals = (0..layers.len()).map(|_| None).collect();
        let rank = if super::mpi::session::running().is_some() {
            format!("rank {} ", spec.place.rank)
        } else {
            String::new()
        };
        let name = format!("worker {} {rank}{}", spec.group + 1, super::device::name(device));
        WorkerState {
            vs,
            device,
            home: spec.home,
            layers,
            pending,
            primals,
            exports,
            sgd,
            held_bytes: 0,
            name,
            busy: std::time::Duration::ZERO,
        }
    }

    fn handle(&mut self, command: Command) -> Reply {
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

    /// `Command::Primal`: the primal passes of `layer` at x1, kept; the mask rows other workers read.
    fn primal(&mut self, layer: usize, x1: &Tensor, train: bool) -> Reply {
        let x1 = x1.to_device(self.device).detach().set_requires_grad(train);
        let warp = &self.layers[layer];
        let primals = warp.primal_passes(&warp.terms, &x1, train);
        let batch = x1.size()[0];
        let mut masks = Named::new();
        for e in &self.exports {
            let (start, rows) = e.span.rows(batch);
            let at = primals[e.unit].as_ref().and_then(|p| p.linearization.as_ref());
            let mask = at.expect("F_unit's pass linearises it").relu_mask.narrow(0, start, rows);
            masks.insert(format!("{}/{}", e.to, e.unit), mask);
        }
        self.primals[layer] = Some((x1, primals));
        Reply::Named(masks)
    }

    /// `Command::Terms`: the sum of this worker's terms of `layer` from its kept primal passes and the
    /// mask rows sent for it (keyed by unit).
    fn terms(&mut self, layer: usize, masks: Named) -> Reply {
        let (x1, primals) = self.primals[layer].take().expect("Primal before Terms");
        let masks: Vec<(usize, Tensor)> = masks
            .into_iter()
            .map(|(unit, mask)| (unit.parse().expect("a unit number"), mask.to_device(self.device)))
            .collect();
        let sum = self.layers[layer].sum_at(&x1, &primals, &masks);
        let reply = sum.detach().to_device(self.home);
        self.pending[layer] = Some((x1, sum));
        Reply::Tensor(reply)
    }

    fn work(&mut self, command: Command) -> Reply {
        match command {
            Command::Forward { layer, x1, train, measure } => {
                let before = heap_in_use();
                // A fresh leaf on this device: this worker's graph starts at x1.
                let x1 = x1.to_device(self.device).detach().set_requires_grad(train);
                let sum = self.layers[layer].terms_sum(&x1, train);
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
            Command::Terms { layer, masks, measure } => self.measured(measure, |w| w.terms(layer, masks)),
            Command::Backward { layer, grad } => {
                let (x1, sum) = self.pending[layer].take().expect("a forward before its backward");
                let grad = grad.to_device(self.device);
                // d/dtheta of <sum, grad> is the vector-Jacobian product grad^T d(sum)/dtheta.
                let kind = sum.kind();
                (sum * grad).sum(kind).backward();
                let x1_grad = x1.grad();
                // Terms that reach x1 only through a 0/1 mask (`released`) give it no gradient.
                let x1_grad = if x1_grad.defined() { x1_grad } else { x1.zeros_like() };
                Reply::Tensor(x1_grad.to_device(self.home))
            }
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
                    self.sgd.names().map(|n| gradients[n].to_device(self.device)).collect();
                self.sgd.step(&mine, lr);
                Reply::Done
            }
            Command::Variables => Reply::Named(copy_variables(&self.vs, Device::Cpu)),
            Command::Memory => {
                let (weights, optimizer) = variable_bytes(&self.vs);
                let activations = measurable(self.device).then_some(std::mem::take(&mut self.held_bytes));
                Reply::Memory(DeviceMemory { device: self.name.clone(), weights, optimizer, activations })
            }
            Command::Busy => Reply::Seconds(std::mem::take(&mut self.busy).as_secs_f64()),
            Command::Momentum => Reply::Named(self.sgd.momentum(Device::Cpu)),
            Command::Parameters => Reply::Names(self.sgd.names().map(String::from).collect()),
            Command::ForwardInGroup { .. } | Command::BackwardInGroup { .. } => {
                unreachable!("answered by the hosted worker (parallel/hosted.rs)")
            }
        }
    }
}
