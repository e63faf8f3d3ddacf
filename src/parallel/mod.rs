//! Model-parallel and data-parallel execution of warp layers.

pub mod actor;
pub mod auto_placement;
pub mod comparison;
pub mod device;
pub mod executor;
pub mod hosted;
pub mod memory;
pub mod mpi;
pub mod placement;
pub mod prediction;
pub mod profile;
pub mod replica;
pub mod step_model;
pub mod volume;
pub mod worker;

pub use device::Devices;
pub use executor::{Executor, Plan};
pub use placement::Placement;
