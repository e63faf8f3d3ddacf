//! The numerics against independent computations: the unit, the warp operator's terms, tangents,
//! first-order error and gradients, the network, precision and the analyses' algebra.
//!
//! One test binary per area (each links libtorch once); each module is one former test file.

#[path = "../binary/mod.rs"]
mod binary;
#[path = "../common/mod.rs"]
mod common;

mod analysis;
mod lm_taylor;
mod model_numerics;
mod precision;
mod transformer;
mod warp_factored;
mod warp_first_order;
mod warp_gradients;
mod warp_network;
mod warp_reuse;
mod warp_tangent;
mod warp_terms;
