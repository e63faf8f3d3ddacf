//! Model-parallel and data-parallel execution of warp layers.

pub mod placement;
