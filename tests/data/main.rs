//! The data sets' readers, downloads and sidecars: real formats, hostile files.
//!
//! One test binary per area (each links libtorch once); each module is one former test file.

#[path = "../binary/mod.rs"]
mod binary;
#[path = "../formats/mod.rs"]
mod formats;

mod data_download;
mod data_readers;
mod data_readers_npz;
mod sidecar_property;
