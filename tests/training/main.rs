//! Real training runs: the loss falls, WarpNets train like their WRN twins, the full data set, and
//! resumption after a kill, a Ctrl-C or a failed device.
//!
//! One test binary per area (each links libtorch once); each module is one former test file.

#[path = "../binary/mod.rs"]
mod binary;
#[path = "../common/mod.rs"]
mod common;

mod end_to_end;
mod full_fashion_mnist;
mod lm;
mod resume;
mod run_folder_faults;
mod warp_training;
