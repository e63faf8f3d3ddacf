//! Memory held per device, for the benchmark's second claim of the paper: the weights of a WarpNet
//! spread over its devices.
//!
//! Weights are counted exactly from the variables each device holds. Activations on CPU devices are
//! measured: with every thread allocating from one malloc arena ([`keep_freed_memory`], set by `warpnet`
//! at start-up), the heap in use (glibc `mallinfo2`)
//! after a device's forward work minus before it, while no other thread runs, is what that device
//! keeps for its backward pass. On GPUs activations are not measured (`None`).

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device};

/// Memory of one device of a replica, in bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceMemory {
    /// "home cpu", "worker 1 cpu", "cuda:0", ...
    pub device: String,
    /// Parameters and BatchNorm statistics held on the device.
    pub weights: usize,
    /// SGD momentum buffers (one per parameter).
    pub optimizer: usize,
    /// Tensors kept from the forward pass for the backward pass, for one batch.
    pub activations: Option<usize>,
}

/// Bytes of every variable of `vs`, and of its trainable ones (which the optimizer mirrors).
pub fn variable_bytes(vs: &VarStore) -> (usize, usize) {
    let mut all = 0;
    let mut trainable = 0;
    for (_, t) in vs.variables() {
        let bytes = t.numel() * t.kind().elt_size_in_bytes();
        all += bytes;
        if t.requires_grad() {
            trainable += bytes;
        }
    }
    (all, trainable)
}

/// Keeps freed memory in the process for the next step instead of returning it to the kernel.
///
/// glibc serves every block over 32 MiB (the most its mmap threshold can be) with a fresh mmap and
/// unmaps it on free, so each step pays a page fault and a zeroed page for every 4 KiB of its largest
/// activations again: at batch 128, WRN-13-4's (128, 64, 32, 32) float tensors, ~250,000 faults (1 GB)
/// per step. With mmap off, one arena and trimming only above 2 GiB of free top-of-heap, freed
/// activations are reused in place (docs/speed.md). The process keeps its peak heap, as a GPU caching
/// allocator would. Called first thing by `warpnet`.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; all three settings are valid values.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0); // no mmapped chunks: every block from the heap
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX); // give memory back only above 2 GiB free
        libc::mallopt(libc::M_ARENA_MAX, 1); // one heap, so a block freed by one thread serves another
    }
}

/// Bytes the process has allocated with malloc and not freed (main arena and mmapped chunks).
pub fn heap_in_use() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 reads allocator statistics and has no preconditions.
        let info = unsafe { libc::mallinfo2() };
        info.uordblks + info.hblkhd
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    0
}

/// Whether activations on `device` can be measured with [`heap_in_use`].
pub fn measurable(device: Device) -> bool {
    device == Device::Cpu && cfg!(all(target_os = "linux", target_env = "gnu"))
}
