//! Writing run artifacts atomically: to a temporary file in the same folder, then renamed over the
//! target, so a crash never leaves a half-written file under the real name.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tch::nn::VarStore;

/// The temporary sibling of `path`, keeping its extension (tch picks the format from it).
fn temporary_sibling(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".tmp-{}-{name}", std::process::id()))
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = temporary_sibling(path);
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename into place", path.display()))
}

/// Saves every variable of `vs` (weights and BatchNorm running statistics) as safetensors, atomically.
pub fn save_weights(vs: &VarStore, path: &Path) -> anyhow::Result<()> {
    let tmp = temporary_sibling(path);
    vs.save(&tmp).with_context(|| format!("{}: cannot write weights", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot rename into place", path.display()))
}
