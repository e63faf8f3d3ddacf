//! The serving side of devices hosted by another MPI rank: the builder each serving rank runs start
//! messages with (runtime/hosted.rs), and how a hosted device answers a command's bytes. Above the
//! worker and the replica, which it builds; nothing in the runtime refers to it.

use super::hosted::Hosted;
use super::mpi::collective::Group;
use super::mpi::remote::{self, Served};
use super::replica::group;
use super::replica::{self, Layout, Replica, ReplicaStart};
use super::serial::{self, named};
use super::worker::{self, Worker, WorkerSpec};

/// Serves the other ranks with workers and replicas until rank 0 is done (every rank but 0).
pub fn serve() {
    remote::serve(build)
}

/// The device a start message asks for, on this rank's device and with its cores, whatever the
/// sender's host has.
fn build(message: &[u8]) -> anyhow::Result<Box<dyn Served>> {
    let (threads, device, rank) =
        (super::mpi::threads_per_rank(), super::mpi::local_device(), super::mpi::rank());
    let (hosted, parts): (Hosted, &[u8]) = serial::take(message)?;
    Ok(match hosted {
        Hosted::Worker => {
            let (mut spec, initial, momentum): (WorkerSpec, named::Owned, named::Owned) =
                serial::from_bytes(parts)?;
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
        Hosted::Replica => {
            let mut start: ReplicaStart = serial::from_bytes(parts)?;
            match &mut start.layout {
                Layout::Whole { threads: t, device: d } => (*t, *d) = (threads, device),
                Layout::Split { threads: t, threads_per_worker, home, workers, .. } => {
                    (*t, *threads_per_worker, *home) = (threads, threads, device);
                    workers.iter_mut().filter(|w| w.rank == rank).for_each(|w| w.device = device);
                }
            }
            let at = (super::mpi::rank(), start.peers);
            Box::new(Replica::spawn(start.network, start.layout, start.initial, start.optimizer, at))
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
/// the sums leave by its reduction (runtime/replica/group.rs); every other command as it is.
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
                worker::Command::Backward { layer, grad, returned: Vec::new() }
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
