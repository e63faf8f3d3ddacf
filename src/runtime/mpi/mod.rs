//! MPI ranks as devices: `mpirun -np N warpnet train --devices mpi ...`.
//!
//! A rank is one more kind of device behind the same executor. Worker i of `--devices mpi` runs on rank
//! i; the executor's replicas and term workers talk to a device by commands and replies
//! ([`crate::runtime::actor::Link`]): to a thread of this process through a channel, to another rank
//! through MPI messages carrying the same commands in their serde form (base/serial.rs). So a
//! warp layer over ranks does what it does over threads: the home sends x1 to every worker (the
//! broadcast), each evaluates its terms, the home adds their sums (the reduce); backward sends the
//! upstream gradient and adds the workers' dL/dx1; the gradients of units held by several ranks are
//! summed at the home and the sum sent back with the step. Data-parallel replicas on several ranks sum
//! their gradients among themselves with MPI's all-reduce over the group of their homes
//! ([`collective`]), so that no rank's bytes grow with the number of replicas.
//!
//! Rank 0 runs the command as usual: stem, head, data, checkpoints, logs. Every other rank serves
//! ([`remote::serve`]): it builds the workers or replicas rank 0 asks for and answers their commands,
//! until rank 0 is done. Before any work, the ranks compare their binary and configuration
//! ([`session`]). Every wait is bounded by `--mpi-timeout` (`transport.rs`).

pub mod algorithms;
pub mod remote;
pub mod session;
pub mod stats;

#[cfg(feature = "mpi")]
pub mod collective;
#[cfg(feature = "mpi")]
mod transport;

/// Without MPI no group can be made (`--devices mpi` is refused), so nothing reaches this.
#[cfg(not(feature = "mpi"))]
pub mod collective {
    pub struct Group;

    impl Group {
        pub fn new(_members: &super::Members) -> Group {
            unreachable!("no MPI rank exists in a build without MPI")
        }

        pub fn all_reduce_sum(&self, _values: &mut [f32], _what: &str) {
            unreachable!("no MPI rank exists in a build without MPI")
        }

        pub fn broadcast(&self, _bytes: &mut [u8], _what: &str) {
            unreachable!("no MPI rank exists in a build without MPI")
        }

        pub fn reduce_sum_f32(&self, _values: &mut [f32], _what: &str) {
            unreachable!("no MPI rank exists in a build without MPI")
        }

        pub fn reduce_sum_bf16(&self, _values: &mut [u16], _what: &str) {
            unreachable!("no MPI rank exists in a build without MPI")
        }

        pub fn is_root(&self) -> bool {
            unreachable!("no MPI rank exists in a build without MPI")
        }
    }
}

/// Without MPI nothing can name a rank (`--devices mpi` is refused), so nothing reaches these.
#[cfg(not(feature = "mpi"))]
mod transport {
    use std::time::Duration;

    pub type Tag = i32;

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub enum Count {
        Work,
        Aside,
    }

    pub fn rank() -> usize {
        0
    }

    pub fn send(_to: usize, _tag: Tag, _bytes: &[u8], _timeout: Duration, _count: Count) {
        unreachable!("no MPI rank exists in a build without MPI")
    }

    pub fn receive(_from: usize, _tag: Tag, _timeout: Duration, _count: Count) -> Vec<u8> {
        unreachable!("no MPI rank exists in a build without MPI")
    }

    pub fn receive_any(
        _tag: Tag,
        _timeout: Duration,
        _count: fn(&[u8]) -> Count,
    ) -> Option<(usize, Vec<u8>)> {
        unreachable!("no MPI rank exists in a build without MPI")
    }

    pub fn fail(_silent: usize, _what: &str) -> ! {
        unreachable!("no MPI rank exists in a build without MPI")
    }
}

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The ranks of a collective group (runtime/mpi/collective.rs), in the group's order, and the id that
/// tells it from the job's other groups: chosen by rank 0, the same on every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    pub id: u32,
    pub ranks: Vec<usize>,
}

static NEXT_GROUP: AtomicU32 = AtomicU32::new(0);

impl Members {
    /// A new group of `ranks` (called on rank 0, which numbers every group of the job).
    pub fn new(ranks: Vec<usize>) -> Members {
        Members { id: NEXT_GROUP.fetch_add(1, Ordering::Relaxed), ranks }
    }
}

/// Exit code of a job stopped because a rank died or went silent.
pub const EXIT_RANK_FAILED: i32 = 3;

/// Default of `--mpi-timeout`, in seconds: far longer than any one command of a warp layer takes.
pub const DEFAULT_TIMEOUT_S: f64 = 60.0;

static TIMEOUT_MS: AtomicU64 = AtomicU64::new((DEFAULT_TIMEOUT_S * 1e3) as u64);

/// How long any rank waits for another before stopping the job.
pub fn timeout() -> Duration {
    Duration::from_millis(TIMEOUT_MS.load(Ordering::Relaxed))
}

pub fn set_timeout(seconds: f64) {
    TIMEOUT_MS.store((seconds * 1e3).round() as u64, Ordering::Relaxed);
}

/// This process's rank (0 when not started by an MPI launcher).
pub fn rank() -> usize {
    if session::running().is_some() {
        transport::rank()
    } else {
        0
    }
}

/// Ranks of the job for `--devices mpi`, or why there are none (one line).
pub fn ranks() -> Result<usize, String> {
    if !cfg!(feature = "mpi") {
        return Err("'mpi': this warpnet was built without MPI (build with `--features mpi` after \
                    scripts/setup.sh, which installs OpenMPI)"
            .into());
    }
    session::running()
        .ok_or_else(|| "'mpi': not started by an MPI launcher (mpirun -np N warpnet ...)".into())
}

/// This rank's position among the ranks of its host (OpenMPI's, then MPICH's variable; 0 without).
fn local_rank() -> usize {
    ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse::<usize>().ok())
        .unwrap_or(0)
}

/// The device this rank computes on: on a host with GPUs, local rank i takes GPU i (round robin when
/// the host has more ranks than GPUs); elsewhere the CPU. Tensors between ranks leave and arrive
/// through host memory (base/serial.rs; the gradients' all-reduce stages them too).
pub fn local_device() -> tch::Device {
    device_of(local_rank(), crate::runtime::device::gpus_present())
}

/// The device of local rank `local` on a host with `gpus` GPUs.
fn device_of(local: usize, gpus: usize) -> tch::Device {
    match gpus {
        0 => tch::Device::Cpu,
        gpus => tch::Device::Cuda(local % gpus),
    }
}

/// libtorch threads for one rank: the host's cores shared among the ranks on that host.
pub fn threads_per_rank() -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // OpenMPI, then MPICH, name the number of ranks on this host.
    let local = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse::<usize>().ok())
        .unwrap_or(1);
    (cores / local.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Local ranks take the host's GPUs in turn, and the CPU where it has none.
    #[test]
    fn each_local_rank_takes_a_gpu_in_turn() {
        let devices: Vec<tch::Device> = (0..5).map(|local| device_of(local, 2)).collect();
        use tch::Device::{Cpu, Cuda};
        assert_eq!(devices, [Cuda(0), Cuda(1), Cuda(0), Cuda(1), Cuda(0)]);
        assert_eq!(device_of(3, 0), Cpu);
    }
}
