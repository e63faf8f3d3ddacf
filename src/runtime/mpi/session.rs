//! An MPI job's life: start-up under a launcher, the check that every rank runs the same binary and
//! configuration, rank 0's heartbeat, and the end (rank 0 tells the serving ranks to stop).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use super::transport::{self, Count};
use crate::error::input_error;

/// Ranks of the running job, once MPI is initialized.
static RANKS: OnceLock<usize> = OnceLock::new();

/// Ranks in the job, if this process runs under MPI.
pub fn running() -> Option<usize> {
    RANKS.get().copied()
}

/// Whether an MPI launcher (mpirun, mpiexec, srun) started this process: OpenMPI, MPICH and PMIx
/// each leave one of these in the environment.
pub fn launched() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"].iter().any(|v| std::env::var_os(v).is_some())
}

/// This process's rank as the launcher's environment gives it, before (or without) MPI: OpenMPI's,
/// MPICH's or PMIx's variable; 0 when there is none.
pub fn launcher_rank() -> usize {
    ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(0)
}

/// A running MPI job, from this rank's side. Dropping it ends MPI.
pub struct Session {
    pub rank: usize,
    pub ranks: usize,
    heartbeat: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    #[cfg(feature = "mpi")]
    _universe: mpi::environment::Universe,
}

/// Initializes MPI when a launcher started this process (`None` otherwise); one line if it cannot.
pub fn start() -> anyhow::Result<Option<Session>> {
    if !launched() {
        return Ok(None);
    }
    #[cfg(not(feature = "mpi"))]
    {
        Err(input_error(
            "started by an MPI launcher, but this warpnet was built without MPI (build with `--features mpi` \
             after scripts/setup.sh, which installs OpenMPI)",
        ))
    }
    #[cfg(feature = "mpi")]
    {
        use mpi::topology::Communicator;
        prefer_unsegmented_reductions();
        let (universe, threading) = mpi::initialize_with_threading(mpi::Threading::Multiple)
            .ok_or_else(|| anyhow::anyhow!("MPI did not initialize"))?;
        // The executor's replicas and workers send from their own threads.
        if threading != mpi::Threading::Multiple {
            return Err(input_error(format!(
                "this MPI library allows calls from one thread only ({threading:?}); warpnet needs \
                 MPI_THREAD_MULTIPLE"
            )));
        }
        let world = universe.world();
        let (rank, ranks) = (world.rank() as usize, world.size() as usize);
        let _ = RANKS.set(ranks);
        Ok(Some(Session { rank, ranks, heartbeat: None, _universe: universe }))
    }
}

/// Asks Open MPI for a binomial tree in the replica groups' reductions, unless the user chose one.
/// Its default over 2 ranks is a chain of 8 KB segments, each moved on by one test of the request
/// (transport.rs polls, with pauses between polls): a warp layer's sums took 9 times as long as by
/// messages here. Over 3 to 6 ranks the default is a reduce-scatter then a gather, in which the root
/// also sends; the tree's root only receives, one buffer per child (runtime/mpi/algorithms.rs). Read
/// by Open MPI when MPI starts; other MPI libraries ignore it.
#[cfg(feature = "mpi")]
fn prefer_unsegmented_reductions() {
    // Open MPI's variable that chooses libnbc's `MPI_Ireduce` algorithm, and the binomial tree's value.
    const IREDUCE_ALGORITHM: &str = "OMPI_MCA_coll_libnbc_ireduce_algorithm";
    const BINOMIAL: &str = "2";
    if std::env::var_os(IREDUCE_ALGORITHM).is_none() {
        std::env::set_var(IREDUCE_ALGORITHM, BINOMIAL);
    }
}

/// Tags of the start-up check (below the reply tags of remote.rs).
const TAG_FINGERPRINT: transport::Tag = 3;
const TAG_VERDICT: transport::Tag = 4;

/// What must agree between ranks: the binary's bytes and the configuration, each as an MD5.
fn fingerprint(config: &str) -> anyhow::Result<String> {
    let exe = std::env::current_exe()?;
    let binary = std::fs::read(&exe).map_err(|e| anyhow::anyhow!("{}: {e}", exe.display()))?;
    Ok(format!("binary {:x}, configuration {:x}", Md5::digest(&binary), Md5::digest(config.as_bytes())))
}

impl Session {
    /// Checks, before any work, that every rank runs the same binary with the same `config` (the
    /// resolved configuration's text). A mismatch is an input error on every rank; rank 0's message
    /// names the first rank that differs.
    pub fn check_same_job(&self, config: &str) -> anyhow::Result<()> {
        let mine = fingerprint(config)?;
        if self.rank != 0 {
            transport::send(0, TAG_FINGERPRINT, mine.as_bytes(), super::timeout(), Count::Aside);
            let verdict = transport::receive(0, TAG_VERDICT, super::timeout(), Count::Aside);
            return match verdict.is_empty() {
                true => Ok(()),
                false => Err(input_error(String::from_utf8_lossy(&verdict).into_owned())),
            };
        }
        let mut verdict = String::new();
        for rank in 1..self.ranks {
            let theirs = transport::receive(rank, TAG_FINGERPRINT, super::timeout(), Count::Aside);
            let theirs = String::from_utf8_lossy(&theirs);
            if verdict.is_empty() && theirs != mine {
                let what = match theirs.split(',').next() == mine.split(',').next() {
                    true => "configuration (flags, config file or preset)",
                    false => "binary",
                };
                verdict = format!("MPI rank {rank} runs a different {what} than rank 0 ({theirs} vs {mine})");
            }
        }
        for rank in 1..self.ranks {
            transport::send(rank, TAG_VERDICT, verdict.as_bytes(), super::timeout(), Count::Aside);
        }
        if verdict.is_empty() {
            Ok(())
        } else {
            Err(input_error(verdict))
        }
    }

    /// Rank 0: tells the other ranks every quarter of the timeout that it is alive, so that a serving
    /// rank waits for its next command no longer than the timeout however long rank 0 works alone
    /// (loading data, evaluating, writing a checkpoint).
    pub fn start_heartbeat(&mut self) {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let beat = move || {
            let period = super::timeout() / 4;
            let mut last = Instant::now();
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50).min(period));
                if last.elapsed() >= period {
                    super::remote::ping_all();
                    last = Instant::now();
                }
            }
        };
        self.heartbeat = Some((stop, std::thread::spawn(beat)));
    }

    /// Rank 0: the job is done; the serving ranks stop.
    pub fn finish(mut self) {
        if let Some((stop, beat)) = self.heartbeat.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = beat.join();
        }
        if self.rank == 0 {
            super::remote::shutdown_all();
        }
    }
}
