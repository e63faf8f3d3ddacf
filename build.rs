//! Two jobs, both reading LIBTORCH (from the environment or, by default, from .cargo/config.toml: the
//! folder that scripts/setup.sh fills):
//!
//! - Bakes libtorch's library folder into the binary's run path, so `warpnet` runs without
//!   LD_LIBRARY_PATH. DT_RPATH (not RUNPATH) is used so that libtorch's own dependencies
//!   (libcudart.so.13 of the CUDA 13 wheel) are found through it as well.
//! - Compiles csrc/fused_adamw.cpp against libtorch's headers: PyTorch's fused AdamW, which tch does
//!   not bind (src/base/optimizer/fused_adamw.rs).
use std::path::{Path, PathBuf};

/// What the C++ standard library's ABI must be to call into the libtorch of PyPI's torch 2.11 wheel
/// (built with the C++11 ABI), unless LIBTORCH_CXX11_ABI says otherwise (torch-sys reads the same).
const DEFAULT_CXX11_ABI: &str = "1";

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=csrc/fused_adamw.cpp");
    let libtorch = PathBuf::from(
        std::env::var("LIBTORCH")
            .expect("LIBTORCH is unset: .cargo/config.toml sets it to what ./scripts/setup.sh installs"),
    );
    let libtorch = libtorch.canonicalize().unwrap_or(libtorch);
    run_path(&libtorch);
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| DEFAULT_CXX11_ABI.into());
    cc::Build::new()
        .cpp(true)
        .file("csrc/fused_adamw.cpp")
        .include(libtorch.join("include"))
        .flag("-std=c++17")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .warnings(false) // libtorch's headers, not ours
        .compile("warpnet_fused_adamw");
}

/// libtorch's library folders in the binary's run path.
fn run_path(libtorch: &Path) {
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
