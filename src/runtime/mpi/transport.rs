//! Byte messages between ranks over MPI, every wait bounded by the job's timeout.
//!
//! Sends and receives are non-blocking MPI calls polled until they complete: a rank that died or hangs
//! never makes another wait forever. When a wait runs out, the job stops (`fail`): one line naming the
//! silent rank, then `MPI_Abort`, which ends every rank. Checkpoints are written only by rank 0's
//! trainer, atomically, so the last one stays intact.
//!
//! Polling, not blocking: OpenMPI's blocking calls spin a core at 100% while they wait, which on a
//! machine with fewer cores than ranks starves the rank doing the work. Here a wait spins briefly,
//! then sleeps in growing steps up to [`MAX_PAUSE`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::request::{Request, Scope};
use mpi::topology::{Communicator, SimpleCommunicator};

use super::stats;

/// MPI's tag type.
pub type Tag = i32;

/// Polls that only yield the thread before a wait starts to sleep (a reply to a small message
/// usually arrives within them).
const SPINS: u32 = 200;
/// Longest sleep between two polls: bounds the latency a sleeping wait adds to a message.
const MAX_PAUSE: Duration = Duration::from_micros(500);

pub(super) fn world() -> SimpleCommunicator {
    SimpleCommunicator::world()
}

/// This process's rank.
pub fn rank() -> usize {
    world().rank() as usize
}

/// Polls `ready` until it gives a value or `timeout` passes. While it sleeps between polls it answers
/// the other ranks' questions of how far this rank has got ([`answer_queries`]).
pub(super) fn poll<T>(timeout: Duration, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let (mut polls, mut pause) = (0u32, Duration::from_micros(10));
    loop {
        if let Some(value) = ready() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        polls += 1;
        if polls < SPINS {
            std::thread::yield_now();
        } else {
            answer_queries();
            std::thread::sleep(pause);
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

/// Polls a non-blocking request until it completes, or gives it back unfinished once `timeout` has
/// passed: the caller then stops the job while it still holds the request (MPI must not see an
/// unfinished request dropped).
pub(super) fn completes<'a, D: ?Sized, S: Scope<'a>>(
    request: Request<'a, D, S>,
    timeout: Duration,
) -> Result<(), Request<'a, D, S>> {
    let mut request = Some(request);
    let done = poll(timeout, || match request.take()?.test() {
        Ok(_) => Some(()),
        Err(pending) => {
            request = Some(pending);
            None
        }
    });
    match (done, request) {
        (Some(()), _) => Ok(()),
        (None, Some(pending)) => Err(pending),
        (None, None) => unreachable!("a request not done is held"),
    }
}

/// How a message counts in this rank's traffic ([`stats`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// The job's own work.
    Work,
    /// Book-keeping that is not the job's (heartbeats, reading the counters themselves).
    Aside,
}

/// Sends `bytes` to rank `to`; stops the job if `to` does not take them within `timeout`.
pub fn send(to: usize, tag: Tag, bytes: &[u8], timeout: Duration, count: Count) {
    let started = Instant::now();
    let world = world();
    mpi::request::scope(|scope| {
        let request = world.process_at_rank(to as i32).immediate_send_with_tag(scope, bytes, tag);
        if let Err(_unfinished) = completes(request, timeout) {
            fail(to, "did not take a message");
        }
    });
    if count == Count::Work {
        stats::sent(bytes.len(), started.elapsed());
    }
}

/// The next message with `tag` from rank `from`; stops the job if none comes within `timeout`.
pub fn receive(from: usize, tag: Tag, timeout: Duration, count: Count) -> Vec<u8> {
    let world = world();
    let process = world.process_at_rank(from as i32);
    let started = Instant::now();
    let Some(probed) = poll(timeout, || process.immediate_matched_probe_with_tag(tag)) else {
        fail(from, "did not answer");
    };
    let arrived = Instant::now();
    let (bytes, _) = probed.matched_receive_vec::<u8>();
    if count == Count::Work {
        stats::received(bytes.len(), arrived - started, arrived.elapsed());
    }
    bytes
}

/// The next message with `tag` from any rank, and its sender; `None` if none comes within `timeout`.
/// `count` tells from the message whether it is the job's work.
pub fn receive_any(tag: Tag, timeout: Duration, count: fn(&[u8]) -> Count) -> Option<(usize, Vec<u8>)> {
    let world = world();
    let any = world.any_process();
    let started = Instant::now();
    let probed = poll(timeout, || any.immediate_matched_probe_with_tag(tag))?;
    let arrived = Instant::now();
    let (bytes, status) = probed.matched_receive_vec::<u8>();
    if count(&bytes) == Count::Work {
        stats::received(bytes.len(), arrived - started, arrived.elapsed());
    }
    Some((status.source_rank() as usize, bytes))
}

/// Stops the whole job: one line naming the rank that went silent, then every rank ends.
pub fn fail(silent: usize, what: &str) -> ! {
    fail_ranks(&[silent], what)
}

/// [`fail`] naming every rank of `silent` (none: every rank was where it should be, yet the wait ran
/// out).
pub fn fail_ranks(silent: &[usize], what: &str) -> ! {
    let timeout = super::timeout().as_secs_f64();
    let named: Vec<String> = silent.iter().map(usize::to_string).collect();
    let who = match named.len() {
        0 => "every MPI rank reached it, yet it".to_string(),
        1 => format!("MPI rank {}", named[0]),
        _ => format!("MPI ranks {}", named.join(", ")),
    };
    eprintln!(
        "error: {who} {what} within {timeout:.0} s (--mpi-timeout): it died or hangs; stopping every rank \
         (the last checkpoint is intact)"
    );
    abort(super::EXIT_RANK_FAILED)
}

/// Tag of the question "how many collectives of group `id` have you entered?" (the message: `id`).
const TAG_WHERE: Tag = 5;
/// Tag of its answer (the message: that count).
const TAG_HERE: Tag = 6;
/// How long a rank whose collective ran out waits for the answers of the group's other members:
/// a live rank answers within a poll's pause ([`MAX_PAUSE`]), so this is ample even on a loaded host.
const GRACE: Duration = Duration::from_secs(1);

/// Per collective group (its id), the collectives this rank has entered.
static ENTERED: Mutex<BTreeMap<u32, u64>> = Mutex::new(BTreeMap::new());

/// Records that this rank enters its `count`-th collective (1-based) of group `group`.
pub(super) fn entering(group: u32, count: u64) {
    ENTERED.lock().unwrap_or_else(|e| e.into_inner()).insert(group, count);
}

/// Answers every question waiting for this rank (from a rank whose collective ran out of time).
/// Plain blocking sends: an 8-byte message leaves eagerly, whether or not its receiver still lives.
fn answer_queries() {
    let world = world();
    while let Some(probed) = world.any_process().immediate_matched_probe_with_tag(TAG_WHERE) {
        let (group, status) = probed.0.matched_receive::<u32>();
        let count = ENTERED.lock().unwrap_or_else(|e| e.into_inner()).get(&group).copied().unwrap_or(0);
        world.process_at_rank(status.source_rank()).send_with_tag(&count, TAG_HERE);
    }
}

/// Asks `members` how many collectives of group `group` each has entered; those that answer within
/// [`GRACE`], with their counts.
pub(super) fn ask_how_far(members: &[usize], group: u32) -> BTreeMap<usize, u64> {
    let world = world();
    members.iter().for_each(|&m| world.process_at_rank(m as i32).send_with_tag(&group, TAG_WHERE));
    let mut answers = BTreeMap::new();
    poll(GRACE, || {
        while let Some(probed) = world.any_process().immediate_matched_probe_with_tag(TAG_HERE) {
            let (count, status) = probed.0.matched_receive::<u64>();
            answers.insert(status.source_rank() as usize, count);
        }
        (answers.len() == members.len()).then_some(())
    });
    answers
}

/// Ends every rank of the job with `code`.
pub fn abort(code: i32) -> ! {
    world().abort(code)
}
