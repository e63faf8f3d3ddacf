//! What this rank's messages cost: bytes and messages sent and received, and the time spent in MPI,
//! split into waiting (polling until the other rank's message arrives: mostly the other rank computing),
//! transfer (moving the bytes once they are there) and collectives (from the call to its completion:
//! both at once). Counted by `transport.rs` and `collective.rs`, read by the bench.
//!
//! Bytes are counted as the application sees them: a message's once at each end, a collective's buffer
//! once per call as handed over and once as received. Beside them, the wire bytes: what the algorithm
//! MPI runs moves in and out of this rank (for a message, its bytes; for a collective, its
//! algorithm's share for this rank, `algorithms.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

static SENT_BYTES: AtomicU64 = AtomicU64::new(0);
static SENT_MESSAGES: AtomicU64 = AtomicU64::new(0);
static RECEIVED_BYTES: AtomicU64 = AtomicU64::new(0);
static WAIT_NS: AtomicU64 = AtomicU64::new(0);
static TRANSFER_NS: AtomicU64 = AtomicU64::new(0);
static COLLECTIVE_NS: AtomicU64 = AtomicU64::new(0);
static WIRE_BYTES: AtomicU64 = AtomicU64::new(0);

/// Counters of one rank since it started (or the sum over ranks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    pub sent_bytes: u64,
    pub sent_messages: u64,
    pub received_bytes: u64,
    /// Seconds waiting for a message to arrive.
    pub wait_s: f64,
    /// Seconds moving messages (sends until taken, receives once arrived).
    pub transfer_s: f64,
    /// Seconds in collectives, from the call until it completed here.
    pub collective_s: f64,
    /// Bytes in and out of this rank on the wire, by the algorithms' count (see the file's header).
    pub wire_bytes: u64,
}

impl Traffic {
    /// This rank's counters now.
    pub fn here() -> Traffic {
        Traffic {
            sent_bytes: SENT_BYTES.load(Ordering::Relaxed),
            sent_messages: SENT_MESSAGES.load(Ordering::Relaxed),
            received_bytes: RECEIVED_BYTES.load(Ordering::Relaxed),
            wait_s: WAIT_NS.load(Ordering::Relaxed) as f64 * 1e-9,
            transfer_s: TRANSFER_NS.load(Ordering::Relaxed) as f64 * 1e-9,
            collective_s: COLLECTIVE_NS.load(Ordering::Relaxed) as f64 * 1e-9,
            wire_bytes: WIRE_BYTES.load(Ordering::Relaxed),
        }
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            sent_bytes: self.sent_bytes - earlier.sent_bytes,
            sent_messages: self.sent_messages - earlier.sent_messages,
            received_bytes: self.received_bytes - earlier.received_bytes,
            wait_s: self.wait_s - earlier.wait_s,
            transfer_s: self.transfer_s - earlier.transfer_s,
            collective_s: self.collective_s - earlier.collective_s,
            wire_bytes: self.wire_bytes - earlier.wire_bytes,
        }
    }

    /// The bytes this rank handed to MPI calls plus the bytes it received from them.
    pub fn bytes(&self) -> u64 {
        self.sent_bytes + self.received_bytes
    }

    /// Seconds this rank's threads spent in MPI calls.
    pub fn mpi_s(&self) -> f64 {
        self.wait_s + self.transfer_s + self.collective_s
    }

    /// Field by field sum (the job's traffic from every rank's).
    pub fn plus(&self, other: &Traffic) -> Traffic {
        Traffic {
            sent_bytes: self.sent_bytes + other.sent_bytes,
            sent_messages: self.sent_messages + other.sent_messages,
            received_bytes: self.received_bytes + other.received_bytes,
            wait_s: self.wait_s + other.wait_s,
            transfer_s: self.transfer_s + other.transfer_s,
            collective_s: self.collective_s + other.collective_s,
            wire_bytes: self.wire_bytes + other.wire_bytes,
        }
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

/// A message of `bytes` sent, `took` from posting to the receiver taking it.
pub fn sent(bytes: usize, took: Duration) {
    SENT_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    SENT_MESSAGES.fetch_add(1, Ordering::Relaxed);
    WIRE_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    TRANSFER_NS.fetch_add(nanos(took), Ordering::Relaxed);
}

/// A message of `bytes` received after `waited` for it to arrive and `took` to move it.
pub fn received(bytes: usize, waited: Duration, took: Duration) {
    RECEIVED_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    WIRE_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    WAIT_NS.fetch_add(nanos(waited), Ordering::Relaxed);
    TRANSFER_NS.fetch_add(nanos(took), Ordering::Relaxed);
}

/// A collective call that handed over `sent` bytes and received `received`, whose algorithm moved
/// `wire` bytes in and out of this rank, `took` from the call to its completion.
pub fn collective(sent: u64, received: u64, wire: u64, took: Duration) {
    SENT_BYTES.fetch_add(sent, Ordering::Relaxed);
    SENT_MESSAGES.fetch_add(1, Ordering::Relaxed);
    RECEIVED_BYTES.fetch_add(received, Ordering::Relaxed);
    WIRE_BYTES.fetch_add(wire, Ordering::Relaxed);
    COLLECTIVE_NS.fetch_add(nanos(took), Ordering::Relaxed);
}
