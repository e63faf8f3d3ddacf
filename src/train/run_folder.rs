//! A run folder as `warpnet train` leaves it, read back by eval, predict and convert:
//!
//! ```text
//! RUN/config.toml         the resolved TrainConfig
//! RUN/data.json           class names and the standardisation statistics of the training set
//! RUN/metrics.jsonl       one line per epoch
//! RUN/model.safetensors   final weights and BatchNorm statistics
//! RUN/model.crc32.json    their tensors' CRC-32, verified when they are read
//! RUN/checkpoints/step-N.safetensors + .json   weights, statistics, momentum; the sidecar
//! RUN/.lock               held by the one process that writes the run (`WriterLock`)
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use serde::{Deserialize, Serialize};

use super::checkpoint::CHECKPOINTS;
use super::config::TrainConfig;
use crate::base::atomic_file::{remove_stale_temporaries, write_atomic};
use crate::data::augment::Standardizer;
use crate::error::input_error;

/// What a trained network needs to know about its data to classify new images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataInfo {
    pub class_names: Vec<String>,
    pub standardizer: Standardizer,
}

/// The configuration and data description of the run a weights file belongs to.
#[derive(Debug, Clone)]
pub struct RunFiles {
    pub folder: PathBuf,
    pub config: TrainConfig,
    pub data: DataInfo,
    /// The weights file: the one given, or the run folder's model.safetensors.
    pub weights: PathBuf,
}

pub const DATA_INFO: &str = "data.json";
/// The resolved TrainConfig of the run, in a run folder.
pub const CONFIG: &str = "config.toml";
/// One line per epoch (train/metrics.rs), in a run folder.
pub const METRICS: &str = "metrics.jsonl";
/// The file whose lock the run's one writer holds, in a run folder; it names that writer.
pub const LOCK: &str = ".lock";

/// The one writer of a run folder: an exclusive lock (flock) on RUN/.lock, held for the life of the
/// run and released by the operating system when the process ends, however it ends, so a killed run
/// leaves no stale lock. `train`, `train --resume` and the demo's trainings take it; readers (eval,
/// predict, plot, convert) need none, since every file of a run is replaced by an atomic rename.
#[derive(Debug)]
pub struct WriterLock {
    _file: std::fs::File,
}

impl WriterLock {
    /// The lock of run folder `run` (created if missing); one line naming the folder and the process
    /// that holds it if another does (exit 2). Once it is held, the temporaries a killed writer left
    /// in the folder and its checkpoints are removed: with one writer at a time they are garbage.
    pub fn acquire(run: &Path) -> anyhow::Result<WriterLock> {
        std::fs::create_dir_all(run).with_context(|| format!("{}: cannot create", run.display()))?;
        let path = run.join(LOCK);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                let holder = match holder.trim() {
                    "" => "another process".to_string(),
                    holder => holder.to_string(),
                };
                crate::bail_input!(
                    "{}: another run writes this folder ({holder}); one writer at a time: wait for it to \
                     end, or give another --out",
                    run.display()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("{}: cannot lock", path.display()))
            }
        }
        let writer = format!("process {} on host {}", std::process::id(), host_name());
        file.set_len(0)
            .and_then(|()| file.write_all(writer.as_bytes()))
            .and_then(|()| file.flush())
            .with_context(|| format!("{}: cannot write", path.display()))?;
        remove_stale_temporaries(run);
        remove_stale_temporaries(&run.join(CHECKPOINTS));
        Ok(WriterLock { _file: file })
    }

    /// The lock of the run folder `run` that `--resume` continues, taken before any of its checkpoints
    /// is read: a second writer is refused in one line, before it warns about a checkpoint or reads
    /// data, and no live writer's checkpoint is pruned while this one chooses among them.
    pub fn acquire_for_resume(run: &Path) -> anyhow::Result<WriterLock> {
        super::checkpoint::checkpoints_of(run)?;
        WriterLock::acquire(run)
    }
}

/// This machine's host name ("unknown" where the system does not say).
fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most buffer.len() bytes into the buffer it is given.
    let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    match ok {
        true => String::from_utf8_lossy(&buffer[..end]).into_owned(),
        false => "unknown".into(),
    }
}

impl DataInfo {
    pub fn write(&self, run: &Path) -> anyhow::Result<()> {
        write_atomic(&run.join(DATA_INFO), serde_json::to_string_pretty(self)?.as_bytes())
    }
}

/// A run folder's final weights, inside it.
pub const FINAL_WEIGHTS: &str = "model.safetensors";

/// The run folder of `checkpoint`: a run folder itself (its final weights), RUN/model.safetensors, or
/// RUN/checkpoints/step-N.safetensors.
pub fn open(checkpoint: &Path) -> anyhow::Result<RunFiles> {
    let weights = if checkpoint.is_dir() { checkpoint.join(FINAL_WEIGHTS) } else { checkpoint.to_path_buf() };
    if checkpoint.is_dir() && !weights.is_file() {
        crate::bail_input!(
            "{}: no {FINAL_WEIGHTS} in this folder (a run still training? give one of its checkpoints/)",
            checkpoint.display()
        );
    }
    if !weights.is_file() {
        crate::bail_input!("{}: no such checkpoint file or run folder", weights.display());
    }
    let weights = weights.as_path();
    let parent = weights.parent().unwrap_or(Path::new("."));
    let folder = if parent.file_name().is_some_and(|n| n == CHECKPOINTS) {
        parent.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        parent.to_path_buf()
    };
    let read = |name: &str| {
        let path = folder.join(name);
        std::fs::read_to_string(&path).map(|text| (path.clone(), text)).map_err(|_| {
            input_error(format!("{}: missing (the run folder of {})", path.display(), weights.display()))
        })
    };
    let (config_path, text) = read(CONFIG)?;
    let config: TrainConfig = toml::from_str(&text)
        .map_err(|e| input_error(format!("{}: {}", config_path.display(), e.message().trim())))?;
    let (data_path, text) = read(DATA_INFO)?;
    let data: DataInfo = serde_json::from_str(&text)
        .map_err(|e| input_error(format!("{}: not a data description: {e}", data_path.display())))?;
    if data.class_names.len() < 2 {
        crate::bail_input!("{}: {} class names", data_path.display(), data.class_names.len());
    }
    Ok(RunFiles { folder, config, data, weights: weights.to_path_buf() })
}

/// A new run's folder: created, with its config.toml and data.json.
pub fn claim_folder(out_dir: &Path, config: &TrainConfig, data: DataInfo) -> anyhow::Result<()> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("{}: cannot create output folder", out_dir.display()))?;
    write_atomic(&out_dir.join(CONFIG), toml::to_string(config)?.as_bytes())?;
    data.write(out_dir)
}
