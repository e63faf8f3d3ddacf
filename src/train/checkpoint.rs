//! Checkpoints and weights files, written atomically (a temporary file in the same folder renamed
//! over the target, so a crash never leaves a half-written file under the real name), their tensors'
//! checksums recorded in the sidecar and verified when read (checkpoint/integrity.rs); `--resume` takes
//! the newest checkpoint that verifies.

pub mod integrity;
mod weights;

pub use weights::{load_weights, save_weights};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use tch::nn::VarStore;
use tch::Tensor;

use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use crate::base::atomic_file::write_atomic_with;
use crate::base::named::Named;
use crate::data::augment::Standardizer;
use crate::error::input_error;

/// The tensors of a safetensors file; one input-error line naming it if it does not read.
fn read_tensors(path: &Path) -> anyhow::Result<Vec<(String, Tensor)>> {
    Tensor::read_safetensors(path).map_err(|e| {
        let first = e.to_string().lines().next().unwrap_or_default().to_string();
        input_error(format!("{}: not a readable safetensors file ({first})", path.display()))
    })
}

/// Version of the checkpoint layout written below; a checkpoint of another version is refused.
pub const CHECKPOINT_FORMAT: u32 = 1;
/// Folder of a run's checkpoints.
pub const CHECKPOINTS: &str = "checkpoints";
/// Prefix of the optimizer's momentum buffers in a checkpoint's safetensors.
const MOMENTUM_PREFIX: &str = "optimizer.momentum.";

/// Where training stands: `epoch` epochs complete plus `batch` batches of the next one, `step` steps
/// in all. Every random draw of training derives from the seed and this position (the data order and
/// augmentation of an epoch from (seed, epoch), a batch's augmentation from its index; the weights'
/// initialisation happened before step 0), so seed + position is the whole RNG state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    pub epoch: usize,
    pub batch: usize,
    pub step: usize,
}

/// Running sums of an unfinished epoch, so its metrics line comes out the same after a resume.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EpochProgress {
    pub loss_sum: f64,
    pub correct: i64,
    pub seen: usize,
    pub seconds: f64,
    /// Of `seconds`, the time the step waited for the background loader's next batch.
    #[serde(default)]
    pub data_wait_seconds: f64,
}

/// The JSON sidecar of a checkpoint: what the safetensors beside it do not hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sidecar {
    pub format: u32,
    pub config: TrainConfig,
    pub classes: usize,
    pub class_names: Vec<String>,
    pub standardizer: Standardizer,
    pub position: Position,
    pub progress: EpochProgress,
    /// Seconds of training steps before this checkpoint (evaluation excluded).
    pub train_seconds: f64,
    /// The seed of weights, data order and augmentation (also in `config`, kept here as the RNG state).
    pub seed: u64,
    /// CRC-32 of every tensor of the safetensors beside it, by name (checkpoint/integrity.rs); absent
    /// from checkpoints written before it was recorded, which are read unverified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksums: Option<BTreeMap<String, u32>>,
}

/// A checkpoint on disk: its safetensors and its sidecar.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub tensors: PathBuf,
    pub sidecar: Sidecar,
}

/// Writes `variables` (weights and BN statistics) and `momentum` (per trainable name) as
/// checkpoints/step-NNNNNNNN.safetensors plus its .json sidecar, each atomically, the sidecar last (a
/// checkpoint without one is incomplete and ignored); then deletes all but the newest `keep`.
pub fn save_checkpoint(
    run: &Path,
    variables: &Named,
    momentum: &Named,
    sidecar: &Sidecar,
    keep: usize,
) -> anyhow::Result<PathBuf> {
    write_checkpoint(run, sidecar.position.step, (variables, momentum), keep, |checksums| {
        Ok(serde_json::to_string_pretty(&Sidecar { checksums: Some(checksums), ..sidecar.clone() })?)
    })
}

/// A checkpoint of any run at step `step`: the variables and the optimizer's state (`momentum`, its
/// names prefixed) as step-NNNNNNNN.safetensors, then the sidecar `sidecar` makes from their checksums,
/// each atomically; then all but the newest `keep` are deleted. A write that fails removes its
/// temporary and says how much space the checkpoint needs.
pub fn write_checkpoint(
    run: &Path,
    step: usize,
    (variables, momentum): (&Named, &Named),
    keep: usize,
    sidecar: impl FnOnce(BTreeMap<String, u32>) -> anyhow::Result<String>,
) -> anyhow::Result<PathBuf> {
    let dir = run.join(CHECKPOINTS);
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let stem = format!("step-{step:08}");
    let tensors_path = dir.join(format!("{stem}.safetensors"));
    let mut tensors: Vec<(String, Tensor)> =
        variables.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    tensors.extend(momentum.iter().map(|(n, t)| (format!("{MOMENTUM_PREFIX}{n}"), t.shallow_clone())));
    let json = sidecar(integrity::checksums(&tensors))?;
    let needs = || {
        let bytes: usize = tensors.iter().map(|(_, t)| t.numel() * t.kind().elt_size_in_bytes()).sum();
        format!("a checkpoint needs {:.1} MB free in {}", bytes as f64 / 1e6, dir.display())
    };
    // Each file atomically, through the test hook that fails a write as a full disk does.
    let write_file = |path: &Path, write: &dyn Fn(&Path) -> anyhow::Result<()>| {
        write_atomic_with(path, |tmp| {
            write(tmp).with_context(|| format!("{}: cannot write", tmp.display()))?;
            Ok(integrity::injected_failure(tmp)?)
        })
    };
    write_file(&tensors_path, &|tmp| Ok(Tensor::write_safetensors(&tensors, tmp)?)).with_context(needs)?;
    let sidecar_written =
        write_file(&dir.join(format!("{stem}.json")), &|tmp| Ok(std::fs::write(tmp, &json)?));
    if let Err(e) = sidecar_written {
        // Without its sidecar the checkpoint is incomplete, ignored by --resume and never pruned.
        let _ = std::fs::remove_file(&tensors_path);
        return Err(e.context(needs()));
    }
    for old in complete_checkpoints(&dir)?.into_iter().rev().skip(keep.max(1)) {
        let _ = std::fs::remove_file(old.with_extension("safetensors"));
        let _ = std::fs::remove_file(old);
    }
    Ok(tensors_path)
}

/// Sidecar paths of the complete checkpoints in `dir`, oldest first.
fn complete_checkpoints(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("step-") && name.ends_with(".json") && p.with_extension("safetensors").is_file()
        })
        .collect();
    found.sort();
    Ok(found)
}

/// The newest complete checkpoint of the run folder `run` that reads back whole and verifies; each
/// newer one skipped is one warning line naming the file and why. An input error if there is none.
pub fn latest_checkpoint(run: &Path) -> anyhow::Result<Checkpoint> {
    let (tensors, sidecar) = latest_verified(run, parse_sidecar, |s: &Sidecar| s.checksums.as_ref())?;
    Ok(Checkpoint { tensors, sidecar })
}

/// The checkpoints folder of a run folder `run` that `--resume` reads; an input error if it has none.
pub fn checkpoints_of(run: &Path) -> anyhow::Result<PathBuf> {
    let dir = run.join(CHECKPOINTS);
    if !dir.is_dir() {
        crate::bail_input!(
            "--resume {}: no {CHECKPOINTS}/ folder (not a run folder, or no epoch finished)",
            run.display()
        );
    }
    Ok(dir)
}

/// [`latest_checkpoint`] for any run's sidecars: read by `parse`, their checksums by `checksums`.
/// Returns the safetensors' path and the sidecar.
pub fn latest_verified<S>(
    run: &Path,
    parse: impl Fn(&str, &Path) -> anyhow::Result<S>,
    checksums: impl Fn(&S) -> Option<&BTreeMap<String, u32>>,
) -> anyhow::Result<(PathBuf, S)> {
    let dir = checkpoints_of(run)?;
    let complete = complete_checkpoints(&dir)?;
    if complete.is_empty() {
        crate::bail_input!("--resume {}: no complete checkpoint in {}", run.display(), dir.display());
    }
    for json in complete.iter().rev() {
        match verified(json, &parse, &checksums) {
            Ok(found) => return Ok(found),
            Err(why) => eprintln!("warning: {why:#}; resuming from an earlier checkpoint"),
        }
    }
    crate::bail_input!(
        "--resume {}: none of the {} checkpoints in {} verifies (each is named above)",
        run.display(),
        complete.len(),
        dir.display()
    )
}

/// The checkpoint whose sidecar is `json`, if the sidecar reads and the tensors beside it read back
/// whole and match its checksums; else why not, naming the file.
fn verified<S>(
    json: &Path,
    parse: &impl Fn(&str, &Path) -> anyhow::Result<S>,
    checksums: &impl Fn(&S) -> Option<&BTreeMap<String, u32>>,
) -> anyhow::Result<(PathBuf, S)> {
    let text = std::fs::read_to_string(json).with_context(|| format!("{}: cannot read", json.display()))?;
    let sidecar = parse(&text, json)?;
    let tensors = json.with_extension("safetensors");
    let stored = read_tensors(&tensors)?;
    if let Some(why) = checksums(&sidecar).and_then(|sums| integrity::mismatch(&stored, sums)) {
        anyhow::bail!("{}: damaged: {why}", tensors.display());
    }
    Ok((tensors, sidecar))
}

/// Parses and checks a checkpoint sidecar read from `path` (named in errors): JSON of the right
/// format version, a configuration that validates, a position and progress that agree.
pub fn parse_sidecar(text: &str, path: &Path) -> anyhow::Result<Sidecar> {
    let bad = |what: String| input_error(format!("{}: {what}", path.display()));
    let sidecar: Sidecar =
        serde_json::from_str(text).map_err(|e| bad(format!("not a checkpoint sidecar: {e}")))?;
    if sidecar.format != CHECKPOINT_FORMAT {
        return Err(bad(format!(
            "checkpoint format {} (this build reads {CHECKPOINT_FORMAT})",
            sidecar.format
        )));
    }
    sidecar.config.validate().map_err(|e| bad(format!("its configuration: {e}")))?;
    if sidecar.class_names.len() != sidecar.classes || sidecar.classes < 2 {
        return Err(bad(format!(
            "{} class names for {} classes",
            sidecar.class_names.len(),
            sidecar.classes
        )));
    }
    let p = sidecar.position;
    if p.step < p.batch || (p.batch == 0) != (sidecar.progress.seen == 0) {
        return Err(bad(format!("position {p:?} disagrees with its progress")));
    }
    let statistics = sidecar.standardizer.mean.iter().chain(&sidecar.standardizer.std);
    if statistics.clone().any(|v| !v.is_finite()) || sidecar.standardizer.std.iter().any(|s| *s <= 0.0) {
        return Err(bad("standardisation statistics not finite, or a deviation not positive".into()));
    }
    let sums = [sidecar.progress.loss_sum, sidecar.progress.seconds, sidecar.train_seconds];
    if sums.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return Err(bad("negative or non-finite sums".into()));
    }
    Ok(sidecar)
}

/// The network's variables and the optimizer's momentum buffers of a checkpoint, checked against the
/// names and shapes of `vs` (one input-error line on any mismatch).
pub fn read_checkpoint(path: &Path, vs: &VarStore) -> anyhow::Result<(Named, Named)> {
    let stored = read_tensors(path)?;
    let (mut variables, mut momentum) = (Named::new(), Named::new());
    for (name, t) in stored {
        match name.strip_prefix(MOMENTUM_PREFIX) {
            Some(param) => momentum.insert(param.to_string(), t),
            None => variables.insert(name, t),
        };
    }
    weights::check_names_and_shapes(path, vs, &variables)?;
    for (name, p) in vs.variables().into_iter().filter(|(_, t)| t.requires_grad()) {
        match momentum.get(&name) {
            Some(m) if m.size() == p.size() => {}
            _ => crate::bail_input!(
                "{}: no momentum buffer of {name} with shape {:?}",
                path.display(),
                p.size()
            ),
        }
    }
    Ok((variables, momentum))
}

#[cfg(test)]
mod tests {
    use super::EpochProgress;

    /// An unfinished epoch's running sums come back from the sidecar's JSON bit for bit, so that its
    /// metrics line after a resume is the uninterrupted run's (serde_json parses floats exactly only
    /// with its `float_roundtrip` feature; without it, some of these come back an ulp off).
    #[test]
    fn running_sums_read_back_bit_for_bit() {
        let mut x = 0.123_456_789_f64;
        for i in 0..10_000 {
            x = (x * 3.987_654_321 + 0.1).fract(); // a cheap spread of mantissas
            let progress =
                EpochProgress { loss_sum: x * 10f64.powi(i % 7), seconds: x, ..Default::default() };
            let back: EpochProgress =
                serde_json::from_str(&serde_json::to_string_pretty(&progress).unwrap()).unwrap();
            assert_eq!(back.loss_sum.to_bits(), progress.loss_sum.to_bits(), "{}", progress.loss_sum);
            assert_eq!(back.seconds.to_bits(), progress.seconds.to_bits(), "{}", progress.seconds);
        }
    }
}
