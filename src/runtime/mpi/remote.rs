//! Devices on other ranks. The caller's end, [`Remote`], sends a device's commands as messages and
//! receives its replies; the serving end, [`serve`], has the device built from its start message (by
//! the builder it is given: runtime/serve.rs) and passes each command to it and each reply back. This
//! file knows messages only as serde values and bytes, not what they ask.
//!
//! Every request goes to the serving rank with one tag, so MPI keeps them in order; its header says
//! what it is and which device it is for, and the device's own message follows (base/serial.rs). The replies of one device come back with their own tag, `REPLY_BASE + channel`, where
//! the channel numbers the devices a rank has started (one rank may hold several, e.g. in the bench).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::stats::Traffic;
use super::transport::{self, Count, Tag};
use crate::runtime::actor::Endpoint;
use crate::runtime::serial;

/// Tag of every request to a serving rank.
const TAG_REQUEST: Tag = 1;
/// Tag of a rank's traffic counters, the answer to [`Request::Traffic`].
const TAG_TRAFFIC: Tag = 2;
/// Tag of the answer to [`Request::Echo`].
const TAG_ECHO: Tag = 3;
/// Tags from here on carry the replies of channel `tag - REPLY_BASE` (below are the fixed tags).
const REPLY_BASE: Tag = 16;

/// What a request asks of a serving rank (its header, with the channel of the device it is for).
#[derive(Clone, Copy, PartialEq, Serialize, Deserialize)]
enum Request {
    /// Build a device from the start message that follows.
    Start,
    /// A command to one of the devices this rank serves.
    Command,
    /// Drop a device.
    Close,
    /// Rank 0 is alive (resets the serving rank's idle timeout).
    Ping,
    /// Send this rank's traffic counters.
    Traffic,
    /// Rank 0 is done: stop serving.
    Shutdown,
    /// Send the request's bytes back (to time the link).
    Echo,
}

/// Channels this rank has opened to devices on other ranks.
static NEXT_CHANNEL: AtomicUsize = AtomicUsize::new(0);

fn reply_tag(channel: usize) -> Tag {
    REPLY_BASE + channel as Tag
}

/// A request's header.
fn request(kind: Request, channel: usize) -> Vec<u8> {
    serial::to_bytes(&(kind, channel))
}

/// A request's header followed by `message`.
fn request_with(kind: Request, channel: usize, message: &impl Serialize) -> Vec<u8> {
    serial::append(message, request(kind, channel))
}

fn post(rank: usize, bytes: &[u8], count: Count) {
    transport::send(rank, TAG_REQUEST, bytes, super::timeout(), count);
}

/// The caller's end of a device on rank `rank`: commands `C`, replies `R`.
pub struct Remote<C, R> {
    rank: usize,
    channel: usize,
    _messages: PhantomData<fn(C) -> R>,
}

impl<C, R> Remote<C, R> {
    /// The device that `start` builds on rank `rank` (with the builder that rank serves with).
    pub fn start(rank: usize, start: &impl Serialize) -> Self {
        let channel = NEXT_CHANNEL.fetch_add(1, Ordering::Relaxed);
        post(rank, &request_with(Request::Start, channel, start), Count::Work);
        Remote { rank, channel, _messages: PhantomData }
    }
}

impl<C: Serialize, R: DeserializeOwned> Endpoint<C, R> for Remote<C, R> {
    fn send(&self, command: C) {
        post(self.rank, &request_with(Request::Command, self.channel, &command), Count::Work);
    }

    fn receive(&self) -> R {
        let bytes = transport::receive(self.rank, reply_tag(self.channel), super::timeout(), Count::Work);
        serial::from_bytes(&bytes).unwrap_or_else(|e| {
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

/// The traffic of every rank of the job so far, rank 0 first.
pub fn rank_traffic() -> Vec<Traffic> {
    let others = (1..super::ranks().unwrap_or(1)).map(|rank| {
        post(rank, &request(Request::Traffic, 0), Count::Aside);
        let bytes = transport::receive(rank, TAG_TRAFFIC, super::timeout(), Count::Aside);
        serial::from_bytes(&bytes).unwrap_or_else(|e| transport::fail(rank, &format!("{e:#}")))
    });
    std::iter::once(Traffic::here()).chain(others).collect()
}

/// Milliseconds for `bytes` to go to rank `rank` and come back, each of `repeats` round trips after
/// one warm-up (outside the traffic counted as work).
pub fn round_trips_ms(rank: usize, bytes: usize, repeats: usize) -> Vec<f64> {
    let mut w = request(Request::Echo, 0);
    w.resize(w.len() + bytes, 0); // padding: the serving rank sends the request back as it is
    let once = || {
        let started = std::time::Instant::now();
        post(rank, &w, Count::Aside);
        transport::receive(rank, TAG_ECHO, super::timeout(), Count::Aside);
        started.elapsed().as_secs_f64() * 1e3
    };
    once();
    (0..repeats).map(|_| once()).collect()
}

/// A device this rank hosts for another: it answers each command's bytes with its reply's bytes.
pub trait Served {
    fn answer(&self, command: &[u8]) -> anyhow::Result<Vec<u8>>;
}

/// Builds a device from its start message.
pub type Builder = fn(&[u8]) -> anyhow::Result<Box<dyn Served>>;

/// Serves the other ranks until rank 0 says it is done: the loop of every rank but 0. A request that
/// does not read, or no request at all (not even rank 0's heartbeat) within the timeout, stops the job.
pub fn serve(build: Builder) {
    // Ctrl-C and a scheduler's SIGTERM reach every rank of the job; rank 0 answers them (a checkpoint,
    // then the end of the job, which it tells this rank), so this rank must not die of them first.
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs the predefined "ignore" disposition; no handler code runs.
        unsafe { libc::signal(signal, libc::SIG_IGN) };
    }
    let mut devices: HashMap<(usize, usize), Box<dyn Served>> = HashMap::new();
    loop {
        let Some((from, bytes)) = transport::receive_any(TAG_REQUEST, super::timeout(), request_count) else {
            transport::fail(0, "sent nothing, not even its heartbeat,")
        };
        if let Err(e) = handle(&mut devices, build, from, &bytes) {
            transport::fail(from, &format!("sent a request that does not read ({e:#}) and did not recover"));
        }
        if matches!(serial::take::<(Request, usize)>(&bytes), Ok(((Request::Shutdown, _), _))) {
            return;
        }
    }
}

/// Whether a request is the job's work (counted in the traffic, as its sender counts it) or
/// book-keeping.
fn request_count(bytes: &[u8]) -> Count {
    match serial::take::<(Request, usize)>(bytes) {
        Ok(((Request::Start | Request::Command | Request::Close, _), _)) => Count::Work,
        _ => Count::Aside,
    }
}

fn handle(
    devices: &mut HashMap<(usize, usize), Box<dyn Served>>,
    build: Builder,
    from: usize,
    bytes: &[u8],
) -> anyhow::Result<()> {
    let ((kind, channel), message): ((Request, usize), &[u8]) = serial::take(bytes)?;
    match kind {
        Request::Start => {
            devices.insert((from, channel), build(message)?);
        }
        Request::Command => {
            let Some(device) = devices.get(&(from, channel)) else {
                anyhow::bail!("a command to channel {channel}, which was never started")
            };
            let reply = device.answer(message)?;
            transport::send(from, reply_tag(channel), &reply, super::timeout(), Count::Work);
        }
        Request::Close => {
            devices.remove(&(from, channel));
        }
        Request::Traffic => {
            let counters = serial::to_bytes(&Traffic::here());
            transport::send(from, TAG_TRAFFIC, &counters, super::timeout(), Count::Aside);
        }
        Request::Echo => transport::send(from, TAG_ECHO, bytes, super::timeout(), Count::Aside),
        Request::Ping | Request::Shutdown => {}
    }
    Ok(())
}
