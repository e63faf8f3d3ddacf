//! The network: residual units, the warp operator that groups them, and the whole Table 1 net.

pub mod config;
pub mod layers;
pub mod loss;
pub mod net;
pub mod op_count;
pub mod terms;
pub mod unit;
pub mod warp;

pub use config::{DerivativeBn, ModelKind, NetConfig, Variant};
pub use net::Net;
