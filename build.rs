//! Bakes libtorch's library folder into the binary's run path, so `warpnet` runs without LD_LIBRARY_PATH.
//!
//! LIBTORCH comes from the environment or, by default, from .cargo/config.toml (the folder that
//! scripts/setup.sh fills). DT_RPATH (not RUNPATH) is used so that libtorch's own dependencies
//! (libcudart.so.13 of the CUDA 13 wheel) are found through it as well.
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Ok(libtorch) = std::env::var("LIBTORCH") else {
        return;
    };
    let libtorch = PathBuf::from(libtorch);
    let libtorch = libtorch.canonicalize().unwrap_or(libtorch);
    let mut dirs = vec![libtorch.join("lib")];
    // PyPI wheel layout: site/torch/lib and site/nvidia/cu13/lib side by side.
    if let Some(site) = libtorch.parent() {
        let cuda_runtime = site.join("nvidia").join("cu13").join("lib");
        if cuda_runtime.is_dir() {
            dirs.push(cuda_runtime);
        }
    }
    println!("cargo:rustc-link-arg=-Wl,--disable-new-dtags");
    for dir in dirs {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
    }
}
