//! Devices hosted by another MPI rank: the start messages that build a term worker or a replica there,
//! the builder each serving rank runs them with, and how a hosted device answers a command's bytes.
//! The transport (parallel/mpi/remote.rs) carries these as serde values and knows nothing of them.

use serde::{Deserialize, Serialize};

use super::mpi::collective::Group;
use super::mpi::remote::{self, Remote, Served};
use super::mpi::Members;
use super::replica::group;
use super::replica::{self, Layout, Replica};
use super::worker::{self, Worker, WorkerSpec};
use crate::base::named::{Named, Snapshot};
use crate::base::optimizer::SgdSettings;
use crate::base::serial::{self, named};
use crate::model::NetConfig;

/// A replica to build: its network, layout, starting state and optimizer settings.
#[derive(Serialize, Deserialize)]
pub struct ReplicaStart {
    pub config: NetConfig,
    pub layout: Layout,
    #[serde(with = "serial::snapshot")]
    pub initial: Snapshot,
    pub sgd: SgdSettings,
    /// The homes of every replica, when the replicas sum their gradients over MPI.
    pub peers: Option<Members>,
}

/// What a serving rank is asked to build.
#[derive(Deserialize)]
enum Start {
    /// A term worker: its spec, its variables, its momentum.
    Worker(WorkerSpec, named::Owned, named::Owned),
    Replica(ReplicaStart),
}

/// [`Start`] as the sender writes it, borrowing what it sends (the same byte form).
#[derive(Serialize)]
enum StartRef<'a> {
    Worker(&'a WorkerSpec, named::Ref<'a>, named::Ref<'a>),
    Replica(&'a ReplicaStart),
}

/// A term worker built from `spec` on the rank its `place` names.
pub fn worker(
    spec: &WorkerSpec,
    initial: &Named,
    momentum: &Named,
) -> Remote<worker::Command, worker::Reply> {
    let start = StartRef::Worker(spec, named::Ref(initial), named::Ref(momentum));
    Remote::start(spec.place.rank, &start)
}

/// A replica built on rank `rank`.
pub fn replica(rank: usize, start: &ReplicaStart) -> Remote<replica::Command, replica::Reply> {
    Remote::start(rank, &StartRef::Replica(start))
}

/// Serves the other ranks with workers and replicas until rank 0 is done (every rank but 0).
pub fn serve() {
    remote::serve(build)
}

/// The device a start message asks for, on this rank's device and with its cores, whatever the
/// sender's host has.
fn build(message: &[u8]) -> anyhow::Result<Box<dyn Served>> {
    let (threads, device, rank) =
        (super::mpi::threads_per_rank(), super::mpi::local_device(), super::mpi::rank());
    Ok(match serial::from_bytes::<Start>(message)? {
        Start::Worker(mut spec, initial, momentum) => {
            spec.threads = threads;
            spec.place.device = device;
            // Its home is on another rank: the replies leave through host memory.
            spec.home = tch::Device::Cpu;
            let members = spec.collective.take();
            let worker = Worker::spawn(spec, initial.0, momentum.0);
            match members {
                Some(members) => Box::new(GroupWorker { worker, group: Group::new(&members) }),
                None => Box::new(worker),
            }
        }
        Start::Replica(mut start) => {
            match &mut start.layout {
                Layout::Whole { threads: t, device: d } => (*t, *d) = (threads, device),
                Layout::Split { threads: t, threads_per_worker, home, workers, .. } => {
                    (*t, *threads_per_worker, *home) = (threads, threads, device);
                    workers.iter_mut().filter(|w| w.rank == rank).for_each(|w| w.device = device);
                }
            }
            let at = (super::mpi::rank(), start.peers);
            Box::new(Replica::spawn(start.config, start.layout, start.initial, start.sgd, at))
        }
    })
}

impl Served for Worker {
    fn answer(&self, command: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.send(serial::from_bytes::<worker::Command>(command)?);
        Ok(serial::to_bytes(&self.receive()))
    }
}

/// A term worker in a replica group: x1 and the upstream gradients arrive by the group's broadcast,
/// the sums leave by its reduction (parallel/replica/group.rs); every other command as it is.
struct GroupWorker {
    worker: Worker,
    group: Group,
}

impl Served for GroupWorker {
    fn answer(&self, command: &[u8]) -> anyhow::Result<Vec<u8>> {
        let command = match serial::from_bytes::<worker::Command>(command)? {
            worker::Command::ForwardInGroup { layer, bytes, train } => {
                let x1 = group::receive_broadcast(&self.group, bytes)?;
                worker::Command::Forward { layer, x1, train, measure: false }
            }
            worker::Command::BackwardInGroup { layer, bytes } => {
                let grad = group::receive_broadcast(&self.group, bytes)?;
                worker::Command::Backward { layer, grad }
            }
            other => {
                self.worker.send(other);
                return Ok(serial::to_bytes(&self.worker.receive()));
            }
        };
        self.worker.send(command);
        group::reduce_sum(&self.group, &self.worker.receive_as::<tch::Tensor>());
        Ok(serial::to_bytes(&worker::Reply::Done))
    }
}

impl Served for Replica {
    fn answer(&self, command: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.send(serial::from_bytes::<replica::Command>(command)?);
        Ok(serial::to_bytes(&self.receive()))
    }
}
