//! The executors: terms and replicas on threads and MPI ranks against one device, placements, the
//! step-time model, and the MPI wire format.
//!
//! One test binary per area (each links libtorch once); each module is one former test file.

#[path = "../binary/mod.rs"]
mod binary;
#[path = "../common/mod.rs"]
mod common;

mod any_unit;
mod mpi;
mod mpi_collectives;
mod mpi_lm;
mod mpi_wire;
mod parallel_executor;
mod placement;
mod step_model;
mod steps;
mod transformer_executor;
