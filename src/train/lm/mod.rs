//! Training a byte-level transformer language model (model/transformer/) on a text corpus: its
//! settings, the loop with its checkpoints and metrics, the validation figures, and text generation.

pub mod config;
pub mod evaluate;
pub mod folder;
pub mod generate;
pub mod session;
pub mod timing;

pub use config::LmTrainConfig;
pub use evaluate::{LmRecord, LmSummary};
pub use session::{resume, train};
