//! A run's weights files (the final `model.safetensors`, or a checkpoint read for its network alone):
//! written atomically with their tensors' checksums beside them, and read back only whole, verified
//! and of the network's names and shapes.

use std::collections::BTreeMap;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tch::nn::VarStore;
use tch::Tensor;

use super::{integrity, parse_sidecar, read_tensors, Sidecar, MOMENTUM_PREFIX};
use crate::base::atomic_file::{write_atomic, write_atomic_with};
use crate::base::named::{assign_variables, Named};
use crate::error::input_error;

/// Saves every variable of `vs` (weights and BatchNorm running statistics) as safetensors, atomically,
/// and beside it their checksums (`model.safetensors` -> `model.crc32.json`), which
/// [`load_weights`] verifies.
pub fn save_weights(vs: &VarStore, path: &Path) -> anyhow::Result<()> {
    let beside = checksums_file(path);
    // Removed first: a crash between the two writes leaves the new weights unverified, never old
    // checksums beside new weights (which would call intact weights damaged).
    match std::fs::remove_file(&beside) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("{}: cannot remove", beside.display()))
        }
        _ => {}
    }
    write_atomic_with(path, |tmp| {
        vs.save(tmp).with_context(|| format!("{}: cannot write weights", tmp.display()))
    })?;
    let variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    write_atomic(&beside, serde_json::to_string_pretty(&integrity::checksums(&variables))?.as_bytes())
}

/// Where [`save_weights`] records the checksums of the weights file `weights`.
fn checksums_file(weights: &Path) -> PathBuf {
    weights.with_extension("crc32.json")
}

/// The checksums recorded for `weights`: its checkpoint sidecar's, else those [`save_weights`] wrote
/// beside it; none for files written before either was recorded (read unverified). A checksums file
/// that does not parse is an input error naming it.
fn recorded_checksums(weights: &Path) -> anyhow::Result<Option<BTreeMap<String, u32>>> {
    if let Some(sums) = sidecar_of(weights).and_then(|s| s.checksums) {
        return Ok(Some(sums));
    }
    let path = checksums_file(weights);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| input_error(format!("{}: not a checksums file ({e})", path.display())))
}

/// Loads weights saved by [`save_weights`] into `vs`, after checking that the file holds exactly the
/// network's variables with the network's shapes; any difference is one input-error line naming the
/// file and the first offending variable, and leaves `vs` untouched.
pub fn load_weights(vs: &VarStore, path: &Path) -> anyhow::Result<()> {
    let stored = read_tensors(path)?;
    if let Some(why) = recorded_checksums(path)?.and_then(|sums| integrity::mismatch(&stored, &sums)) {
        crate::bail_input!("{}: damaged: {why}", path.display());
    }
    let stored: Named = stored
        .into_iter()
        // A checkpoint's safetensors also hold the optimizer's momentum: not part of the network.
        .filter(|(name, _)| !name.starts_with(MOMENTUM_PREFIX))
        .collect();
    check_names_and_shapes(path, vs, &stored)?;
    assign_variables(vs, &stored);
    Ok(())
}

/// The sidecar beside a checkpoint's weights (`step-N.json` beside `step-N.safetensors`), where one is
/// there and reads.
fn sidecar_of(weights: &Path) -> Option<Sidecar> {
    let json = weights.with_extension("json");
    let text = std::fs::read_to_string(&json).ok()?;
    parse_sidecar(&text, &json).ok()
}

/// Checks that `stored` (read from `path`) holds exactly the variables of `vs` with their shapes.
pub(super) fn check_names_and_shapes(path: &Path, vs: &VarStore, stored: &Named) -> anyhow::Result<()> {
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
    if let Some(name) = stored.keys().find(|n| !known.contains(n.as_str())) {
        crate::bail_input!("{}: holds {name}, which this network does not have", path.display());
    }
    Ok(())
}
