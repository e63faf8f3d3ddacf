//! Training: optimizer and schedule, the loop, evaluation, metrics and run artifacts.

pub mod checkpoint;
pub mod config;
pub mod evaluate;
pub mod lm;
pub mod metrics;
pub mod outcome;
pub mod progress;
pub mod run_folder;
pub mod schedule;
pub mod session;
pub mod step;
pub mod trainer;

pub use config::{CheckpointEvery, Preset, TrainConfig};
pub use progress::Verbosity;
pub use trainer::{resume, train, Interrupted, RunSummary};
