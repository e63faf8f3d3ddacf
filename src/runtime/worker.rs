//! A term worker: one device of a model-parallel placement, on its own thread. It holds replicas of
//! only the units its terms read, evaluates its terms of every warp layer at the x1 it is sent, and
//! backpropagates them for the upstream gradient it is sent.

use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

mod state;

use super::actor::{Actor, Link};
use super::device::Place;
use super::hosted::{self, Hosted};
use super::memory::DeviceMemory;
use super::mpi::Members;
use super::placement::Placement;
use super::serial;
use crate::base::named::Named;
use crate::base::optimizer::OptimizerSettings;
use crate::model::Network;
use state::WorkerState;

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
    /// The first half of `Forward` where the placement exchanges outputs or linearisations
    /// (runtime/placement/shares.rs): the primal passes of layer `layer` at x1, kept for `Terms`;
    /// replies `Reply::Sent` with what other workers' terms read of them.
    Primal {
        layer: usize,
        #[serde(with = "serial::tensor")]
        x1: Tensor,
        train: bool,
        measure: bool,
    },
    /// The second half: the sum of this worker's terms from the kept primal passes and what other
    /// workers sent for it; replies `Reply::Tensor` as `Forward` does.
    Terms { layer: usize, received: Vec<Sent>, measure: bool },
    /// Backpropagate the last forward of `layer` for upstream gradient (B, C, H, W), and through what
    /// it sent, the gradients their receivers found for them (`returned`): accumulates the weight
    /// gradients and replies dL/dx1 of this worker's terms as `Reply::Tensor`.
    Backward {
        layer: usize,
        #[serde(with = "serial::tensor")]
        grad: Tensor,
        returned: Vec<Sent>,
    },
    /// Before `Backward`, where what a worker received carries gradients (an output, a smooth unit's
    /// linearisation): the gradient of <its terms' sum, `grad`> with respect to each; replies
    /// `Reply::Sent`, addressed to the workers that sent them.
    ReceivedGradients {
        layer: usize,
        #[serde(with = "serial::tensor")]
        grad: Tensor,
    },
    /// `Forward` whose x1 comes by the replica group's broadcast (its serde form, `bytes` long), and
    /// whose sum goes back by the group's reduction; replies `Reply::Done`. Answered by the hosted
    /// worker on its rank (runtime/serve.rs), which hands the worker itself a `Forward`.
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
    /// The names of the variables of the units whose primal term F_c this worker evaluates (their
    /// BatchNorm statistics are the network's); replies `Reply::Names`.
    Owned,
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

/// What worker `from` computed of unit `unit` for worker `to`'s terms (runtime/placement/shares.rs):
/// the unit's output F_unit(x1), or the rows of its linearisation that `to`'s pieces read; backwards,
/// their gradients from `to` to `from`.
#[derive(Serialize, Deserialize)]
pub struct Sent {
    pub from: usize,
    pub to: usize,
    pub unit: usize,
    /// F_unit(x1) (one tensor) rather than linearisation rows.
    pub output: bool,
    #[serde(with = "serial::tensor_list")]
    pub tensors: Vec<Tensor>,
    /// Whether they carry gradients back to the weights and x1 of the worker that sent them (an output
    /// does, and a smooth unit's linearisation; the Table 1 unit's ReLU mask does not).
    pub differentiable: bool,
}

#[derive(Serialize, Deserialize)]
pub enum Reply {
    Tensor(#[serde(with = "serial::tensor")] Tensor),
    Sent(Vec<Sent>),
    Named(#[serde(with = "serial::named")] Named),
    Memory(DeviceMemory),
    Seconds(f64),
    Names(Vec<String>),
    Done,
}

/// How to build a worker: which group of the placement it evaluates, on which device.
#[derive(Serialize, Deserialize)]
pub struct WorkerSpec {
    #[serde(with = "serial::network")]
    pub network: Network,
    pub placement: Placement,
    pub group: usize,
    /// The rank and device the worker runs on (another rank: built there, runtime/mpi/).
    pub place: Place,
    /// Device the replies go to (the replica's home).
    #[serde(with = "serial::device")]
    pub home: Device,
    pub threads: usize,
    pub optimizer: OptimizerSettings,
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
            let parts = (&spec, serial::named::Ref(&initial), serial::named::Ref(&momentum));
            return Worker { link: Box::new(hosted::start(spec.place.rank, Hosted::Worker, &parts)), device };
        }
        let start = move || {
            tch::set_num_threads(spec.threads as i32);
            WorkerState::new(&spec, &initial, &momentum)
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
reply_holds!(
    Tensor(Tensor),
    Sent(Vec<Sent>),
    Named(Named),
    Seconds(f64),
    Names(Vec<String>),
    Memory(DeviceMemory)
);
