//! Checkpoints that verify: the sidecar records a CRC-32 of every tensor's bytes, and a checkpoint is
//! used only if its safetensors read back whole and every tensor matches. CRC-32 (crc32fast, the
//! checksum of zip, gzip and PNG, computed with the CPU's carry-less multiply at several GB/s) catches
//! every burst of up to 32 flipped bits and all but 2^-32 of other damage; a checkpoint needs no defence
//! against someone forging one, only against disks and copies, so no cryptographic hash is worth its
//! time.

use std::collections::BTreeMap;
use std::path::Path;

use tch::Tensor;

/// CRC-32 of `t`'s elements as stored (row-major, its kind's bytes): what safetensors writes.
pub fn checksum(t: &Tensor) -> u32 {
    let t = t.to_device(tch::Device::Cpu).contiguous();
    let mut bytes = vec![0u8; t.numel() * t.kind().elt_size_in_bytes()];
    t.copy_data_u8(&mut bytes, t.numel());
    crc32fast::hash(&bytes)
}

/// Every tensor's checksum by name.
pub fn checksums(tensors: &[(String, Tensor)]) -> BTreeMap<String, u32> {
    tensors.iter().map(|(name, t)| (name.clone(), checksum(t))).collect()
}

/// Why `stored` (the tensors read back) does not match the checksums its sidecar recorded, if it
/// does not.
pub fn mismatch(stored: &[(String, Tensor)], expected: &BTreeMap<String, u32>) -> Option<String> {
    for (name, t) in stored {
        match expected.get(name) {
            None => return Some(format!("holds {name}, which its sidecar does not list")),
            Some(&sum) if sum != checksum(t) => return Some(format!("{name} does not match its checksum")),
            Some(_) => {}
        }
    }
    let read: std::collections::HashSet<&str> = stored.iter().map(|(n, _)| n.as_str()).collect();
    expected
        .keys()
        .find(|n| !read.contains(n.as_str()))
        .map(|n| format!("lacks {n}, which its sidecar lists"))
}

/// Test hook: the n-th checkpoint file this process writes (1-based; a checkpoint is two files, its
/// tensors then its sidecar, so 2c - 1 is the c-th checkpoint's tensors and 2c its sidecar) fails as on
/// a full disk, after half of it is written: `WARPNET_CHECKPOINT_WRITE_FAILS_AT=n`.
const FAIL_AT_VARIABLE: &str = "WARPNET_CHECKPOINT_WRITE_FAILS_AT";

/// Checkpoint files this process has started to write.
static WRITES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Fails, as a full disk does, where [`FAIL_AT_VARIABLE`] names this write, leaving half a file at
/// `tmp` as a real failed write would.
pub fn injected_failure(tmp: &Path) -> std::io::Result<()> {
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    let fail_at = std::env::var(FAIL_AT_VARIABLE).ok().and_then(|v| v.parse::<usize>().ok());
    if fail_at != Some(n) {
        return Ok(());
    }
    let written = std::fs::read(tmp).unwrap_or_default();
    std::fs::write(tmp, &written[..written.len() / 2])?;
    Err(std::io::Error::from_raw_os_error(libc::ENOSPC))
}
