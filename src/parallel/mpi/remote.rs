//! Devices on other ranks. The caller's end, [`Remote`], sends a device's commands as messages and
//! receives its replies; the serving end, [`serve`], builds the device (an ordinary worker or replica
//! of its own process) and passes each command to it and each reply back.
//!
//! Every request goes to the serving rank with one tag, so MPI keeps them in order; its first byte says
//! what it is. The replies of one device come back with their own tag, `REPLY_BASE + channel`, where
//! the channel numbers the devices a rank has started (one rank may hold several, e.g. in the bench).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use super::messages::ReplicaStart;
use super::stats::Traffic;
use super::transport::{self, Count, Tag};
use super::wire::{Reader, Wire, Writer};
use crate::base::named::Named;
use crate::parallel::replica::{self, Layout, Replica};
use crate::parallel::worker::{self, Worker, WorkerSpec};

/// Tag of every request to a serving rank.
const TAG_REQUEST: Tag = 1;
/// Tag of a rank's traffic counters, the answer to [`Request::Traffic`].
const TAG_TRAFFIC: Tag = 2;
/// Tag of the answer to [`Request::Echo`].
const TAG_ECHO: Tag = 3;
/// Tags from here on carry the replies of channel `tag - REPLY_BASE` (below are the fixed tags).
const REPLY_BASE: Tag = 16;

/// What a request asks of a serving rank (its first byte).
#[derive(Clone, Copy)]
enum Request {
    /// Build a term worker from a `WorkerSpec`, its variables and momentum.
    StartWorker = 0,
    /// Build a replica from a `ReplicaStart`.
    StartReplica = 1,
    /// A command to one of the devices this rank serves.
    Command = 2,
    /// Drop a device.
    Close = 3,
    /// Rank 0 is alive (resets the serving rank's idle timeout).
    Ping = 4,
    /// Send this rank's traffic counters.
    Traffic = 5,
    /// Rank 0 is done: stop serving.
    Shutdown = 6,
    /// Send the request's bytes back (to time the link).
    Echo = 7,
}

const REQUESTS: [Request; 8] = [
    Request::StartWorker,
    Request::StartReplica,
    Request::Command,
    Request::Close,
    Request::Ping,
    Request::Traffic,
    Request::Shutdown,
    Request::Echo,
];

/// Channels this rank has opened to devices on other ranks.
static NEXT_CHANNEL: AtomicUsize = AtomicUsize::new(0);

fn reply_tag(channel: usize) -> Tag {
    REPLY_BASE + channel as Tag
}

fn request(kind: Request, channel: usize) -> Writer {
    let mut w = Writer::default();
    w.u8(kind as u8);
    w.usize(channel);
    w
}

fn post(rank: usize, w: &Writer, count: Count) {
    transport::send(rank, TAG_REQUEST, &w.bytes, super::timeout(), count);
}

/// The caller's end of a device on rank `rank`: commands `C`, replies `R`.
pub struct Remote<C, R> {
    rank: usize,
    channel: usize,
    _messages: PhantomData<fn(C) -> R>,
}

impl<C: Wire, R: Wire> Remote<C, R> {
    fn start(rank: usize, kind: Request, write: impl FnOnce(&mut Writer)) -> Self {
        let channel = NEXT_CHANNEL.fetch_add(1, Ordering::Relaxed);
        let mut w = request(kind, channel);
        write(&mut w);
        post(rank, &w, Count::Work);
        Remote { rank, channel, _messages: PhantomData }
    }

    pub fn send(&self, command: C) {
        let mut w = request(Request::Command, self.channel);
        command.write(&mut w);
        post(self.rank, &w, Count::Work);
    }

    pub fn receive(&self) -> R {
        let bytes = transport::receive(self.rank, reply_tag(self.channel), super::timeout(), Count::Work);
        R::from_bytes(&bytes).unwrap_or_else(|e| {
            transport::fail(
                self.rank,
                &format!("sent a reply that does not read ({e:#}) and did not recover"),
            )
        })
    }
}

impl<C, R> Drop for Remote<C, R> {
    fn drop(&mut self) {
        post(self.rank, &request(Request::Close, self.channel), Count::Work);
    }
}

/// A term worker built from `spec` on the rank its `place` names.
pub fn worker(
    spec: &WorkerSpec,
    initial: &Named,
    momentum: &Named,
) -> Remote<worker::Command, worker::Reply> {
    Remote::start(spec.place.rank, Request::StartWorker, |w| {
        spec.write(w);
        w.named(initial);
        w.named(momentum);
    })
}

/// A replica built on rank `rank`.
pub fn replica(rank: usize, start: &ReplicaStart) -> Remote<replica::Command, replica::Reply> {
    Remote::start(rank, Request::StartReplica, |w| start.write(w))
}

/// Tells every other rank that rank 0 is alive.
pub fn ping_all() {
    for rank in 1..super::ranks().unwrap_or(1) {
        post(rank, &request(Request::Ping, 0), Count::Aside);
    }
}

/// Tells every other rank to stop serving.
pub fn shutdown_all() {
    for rank in 1..super::ranks().unwrap_or(1) {
        post(rank, &request(Request::Shutdown, 0), Count::Aside);
    }
}

/// The traffic of every rank of the job so far, summed.
pub fn job_traffic() -> Traffic {
    let mut total = Traffic::here();
    for rank in 1..super::ranks().unwrap_or(1) {
        post(rank, &request(Request::Traffic, 0), Count::Aside);
        let bytes = transport::receive(rank, TAG_TRAFFIC, super::timeout(), Count::Aside);
        let theirs = Traffic::from_bytes(&bytes).unwrap_or_else(|e| transport::fail(rank, &format!("{e:#}")));
        total = total.plus(&theirs);
    }
    total
}

/// Milliseconds for `bytes` to go to rank `rank` and come back, the median of `repeats` round trips
/// after one warm-up (outside the traffic counted as work).
pub fn round_trip_ms(rank: usize, bytes: usize, repeats: usize) -> f64 {
    let mut w = request(Request::Echo, 0);
    w.bytes.resize(w.bytes.len() + bytes, 0);
    let once = || {
        let started = std::time::Instant::now();
        post(rank, &w, Count::Aside);
        transport::receive(rank, TAG_ECHO, super::timeout(), Count::Aside);
        started.elapsed().as_secs_f64() * 1e3
    };
    once();
    crate::base::stats::median(&(0..repeats).map(|_| once()).collect::<Vec<f64>>())
}

/// A device this rank serves for another.
enum Served {
    Worker(Worker),
    Replica(Replica),
}

/// Serves the other ranks until rank 0 says it is done: the loop of every rank but 0. A request that
/// does not read, or no request at all (not even rank 0's heartbeat) within the timeout, stops the job.
pub fn serve() {
    // Ctrl-C and a scheduler's SIGTERM reach every rank of the job; rank 0 answers them (a checkpoint,
    // then the end of the job, which it tells this rank), so this rank must not die of them first.
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs the predefined "ignore" disposition; no handler code runs.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    let mut devices: HashMap<(usize, usize), Served> = HashMap::new();
    loop {
        let Some((from, bytes)) = transport::receive_any(TAG_REQUEST, super::timeout()) else {
            transport::fail(0, "sent nothing, not even its heartbeat,")
        };
        if let Err(e) = handle(&mut devices, from, &bytes) {
            transport::fail(from, &format!("sent a request that does not read ({e:#}) and did not recover"));
        }
        if bytes.first() == Some(&(Request::Shutdown as u8)) {
            return;
        }
    }
}

fn handle(devices: &mut HashMap<(usize, usize), Served>, from: usize, bytes: &[u8]) -> anyhow::Result<()> {
    let mut r = Reader::new(bytes);
    let kind = REQUESTS.get(r.u8()? as usize).copied().ok_or_else(|| anyhow::anyhow!("unknown request"))?;
    let channel = r.usize()?;
    match kind {
        Request::StartWorker => {
            let mut spec = WorkerSpec::read(&mut r)?;
            spec.threads = super::threads_per_rank();
            let (initial, momentum) = (r.named()?, r.named()?);
            r.finish()?;
            devices.insert((from, channel), Served::Worker(Worker::spawn(spec, initial, momentum)));
        }
        Request::StartReplica => {
            let mut start = ReplicaStart::read(&mut r)?;
            r.finish()?;
            // This rank's cores, whatever the sender's host has.
            match &mut start.layout {
                Layout::Whole { threads, .. } => *threads = super::threads_per_rank(),
                Layout::Split { threads, threads_per_worker, .. } => {
                    (*threads, *threads_per_worker) = (super::threads_per_rank(), super::threads_per_rank());
                }
            }
            let replica = Replica::spawn(start.config, start.layout, start.initial, start.sgd, super::rank());
            devices.insert((from, channel), Served::Replica(replica));
        }
        Request::Command => {
            let reply = match devices.get(&(from, channel)) {
                Some(Served::Worker(w)) => {
                    let command = worker::Command::read(&mut r)?;
                    r.finish()?;
                    w.send(command);
                    w.receive().to_bytes()
                }
                Some(Served::Replica(replica)) => {
                    let command = replica::Command::read(&mut r)?;
                    r.finish()?;
                    replica.send(command);
                    replica.receive().to_bytes()
                }
                None => anyhow::bail!("a command to channel {channel}, which was never started"),
            };
            transport::send(from, reply_tag(channel), &reply, super::timeout(), Count::Work);
        }
        Request::Close => {
            devices.remove(&(from, channel));
        }
        Request::Traffic => {
            let counters = Traffic::here().to_bytes();
            transport::send(from, TAG_TRAFFIC, &counters, super::timeout(), Count::Aside);
        }
        Request::Echo => transport::send(from, TAG_ECHO, bytes, super::timeout(), Count::Aside),
        Request::Ping | Request::Shutdown => {}
    }
    Ok(())
}
