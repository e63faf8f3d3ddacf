//! The shared core beside model and data: named tensors, the SGD optimizer and atomic files, which
//! every layer above uses. It imports nothing of the crate but its error type.

pub mod atomic_file;
pub mod named;
pub mod optimizer;
