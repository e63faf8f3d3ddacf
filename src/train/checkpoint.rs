//! Writing run artifacts atomically: to a temporary file in the same folder, then renamed over the
//! target, so a crash never leaves a half-written file under the real name.

use std::path::{Path, PathBuf};

use anyhow::Context;
use std::collections::{HashMap, HashSet};

use tch::nn::VarStore;
use tch::Tensor;

use crate::error::input_error;

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

/// Loads weights saved by [`save_weights`] into `vs`, after checking that the file holds exactly the
/// network's variables with the network's shapes; any difference is one input-error line naming the
/// file and the first offending variable, and leaves `vs` untouched.
pub fn load_weights(vs: &VarStore, path: &Path) -> anyhow::Result<()> {
    let first_line = |e: &dyn std::fmt::Display| e.to_string().lines().next().unwrap_or_default().to_string();
    let stored: HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .map_err(|e| {
            input_error(format!("{}: not a readable safetensors file ({})", path.display(), first_line(&e)))
        })?
        .into_iter()
        .collect();
    let mut expected: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, variable) in &expected {
        let Some(value) = stored.get(name) else {
            crate::bail_input!("{}: has no {name}: weights of another network", path.display());
        };
        if value.size() != variable.size() {
            crate::bail_input!(
                "{}: {name} has shape {:?}, the network expects {:?}: weights of another size",
                path.display(),
                value.size(),
                variable.size()
            );
        }
    }
    let known: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(name) = stored.keys().filter(|n| !known.contains(n.as_str())).min() {
        crate::bail_input!("{}: holds {name}, which this network does not have", path.display());
    }
    tch::no_grad(|| {
        for (name, variable) in &expected {
            variable.shallow_clone().copy_(&stored[name]);
        }
    });
    Ok(())
}
