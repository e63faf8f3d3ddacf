//! MPI ranks as devices: `mpirun -np N warpnet train --devices mpi ...`.
//!
//! A rank is one more kind of device behind the same executor. Worker i of `--devices mpi` runs on rank
//! i; the executor's replicas and term workers talk to a device by commands and replies
//! ([`crate::parallel::actor::Link`]): to a thread of this process through a channel, to another rank
//! through MPI messages carrying the same commands in their serde form (base/serial.rs). So a
//! warp layer over ranks does what it does over threads: the home sends x1 to every worker (the
//! broadcast), each evaluates its terms, the home adds their sums (the reduce); backward sends the
//! upstream gradient and adds the workers' dL/dx1; the gradients of units held by several ranks are
//! summed at the home and the sum sent back with the step (an all-reduce through the home).
//!
//! Rank 0 runs the command as usual: stem, head, data, checkpoints, logs. Every other rank serves
//! ([`remote::serve`]): it builds the workers or replicas rank 0 asks for and answers their commands,
//! until rank 0 is done. Before any work, the ranks compare their binary and configuration
//! ([`session`]). Every wait is bounded by `--mpi-timeout` (`transport.rs`).

pub mod remote;
pub mod session;
pub mod stats;

#[cfg(feature = "mpi")]
mod transport;

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

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
