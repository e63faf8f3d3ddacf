//! The `warpnet` binary end to end: commands, configs, the experiment workflow, plots, analyses and
//! reproduce plans; bad input is one error line and exit 2.
//!
//! One test binary per area (each links libtorch once); each module is one former test file.

#[path = "../binary/mod.rs"]
mod binary;

mod analyze_cli;
mod commands;
mod configs;
mod gpu_setup;
mod lm;
mod plot;
mod reproduce;
mod workflow;
