//! Running a network's warp layers on devices: the placement of their terms, term workers and
//! replicas on threads or MPI ranks, the executor that steps them, and the messages between them.
//! It knows units only through model/'s interface and nothing of the planner above it.

pub mod actor;
pub mod device;
pub mod executor;
pub mod hosted;
pub mod memory;
pub mod mpi;
pub mod placement;
pub mod replica;
pub mod serial;
pub mod serve;
pub mod worker;

pub use device::Devices;
pub use executor::{Executor, Plan};
pub use placement::Placement;
