//! The network: the interface of a residual unit, the warp operator that groups units into layers,
//! and whole networks of any architecture; the paper's Table 1 network is one (wrn/), a byte-level
//! transformer language model another (transformer/).

pub mod architecture;
pub mod config;
pub mod layers;
pub mod loss;
pub mod net;
pub mod op_count;
pub mod terms;
pub mod transformer;
pub mod unit;
pub mod warp;
pub mod wrn;

pub use architecture::{Architecture, Description, LayerIndex, Network};
pub use config::{DerivativeBn, ModelKind, NetConfig, Variant};
pub use net::Net;
