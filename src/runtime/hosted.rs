//! Devices hosted by another MPI rank, from the caller's side: a start message names what the rank
//! builds (runtime/serve.rs has the builder every serving rank runs), followed by what it is built
//! from. The transport (runtime/mpi/remote.rs) carries it as bytes and knows nothing of it.

use serde::{Deserialize, Serialize};

use super::mpi::remote::Remote;

/// What a serving rank is asked to build; the start message's first field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hosted {
    /// A term worker: its spec, its variables, its momentum (runtime/worker.rs).
    Worker,
    /// A replica: runtime/replica.rs's `ReplicaStart`.
    Replica,
}

/// The device of kind `hosted` built on rank `rank` from `parts`, commands `C` and replies `R`.
pub fn start<C, R>(rank: usize, hosted: Hosted, parts: &impl Serialize) -> Remote<C, R> {
    Remote::start(rank, &(hosted, parts))
}
