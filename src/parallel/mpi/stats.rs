//! What this rank's messages cost: bytes and messages sent and received, and the time spent in MPI,
//! split into waiting (polling until the other rank's message arrives: mostly the other rank computing)
//! and transfer (moving the bytes once they are there). Counted by `transport.rs`, read by the bench.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

static SENT_BYTES: AtomicU64 = AtomicU64::new(0);
static SENT_MESSAGES: AtomicU64 = AtomicU64::new(0);
static RECEIVED_BYTES: AtomicU64 = AtomicU64::new(0);
static WAIT_NS: AtomicU64 = AtomicU64::new(0);
static TRANSFER_NS: AtomicU64 = AtomicU64::new(0);

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
        }
    }

    /// The bytes this rank handed to MPI calls plus the bytes it received from them.
    pub fn bytes(&self) -> u64 {
        self.sent_bytes + self.received_bytes
    }

    /// Field by field sum (the job's traffic from every rank's).
    pub fn plus(&self, other: &Traffic) -> Traffic {
        Traffic {
            sent_bytes: self.sent_bytes + other.sent_bytes,
            sent_messages: self.sent_messages + other.sent_messages,
            received_bytes: self.received_bytes + other.received_bytes,
            wait_s: self.wait_s + other.wait_s,
            transfer_s: self.transfer_s + other.transfer_s,
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
    TRANSFER_NS.fetch_add(nanos(took), Ordering::Relaxed);
}

/// A message of `bytes` received after `waited` for it to arrive and `took` to move it.
pub fn received(bytes: usize, waited: Duration, took: Duration) {
    RECEIVED_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    WAIT_NS.fetch_add(nanos(waited), Ordering::Relaxed);
    TRANSFER_NS.fetch_add(nanos(took), Ordering::Relaxed);
}
