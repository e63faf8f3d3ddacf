//! A text file as bytes for a byte-level language model (`--data text:PATH`): its first part trains,
//! its last part validates (split by position), and batches are windows of context + 1 bytes, the
//! first `context` the input and the last `context` the targets.
//!
//! A training batch's windows start at offsets drawn from (seed, step) alone, so a resumed run sees
//! the batches the uninterrupted one did; the validation windows are fixed, evenly spaced through the
//! validation part, so every evaluation of every run reads the same bytes.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

use crate::error::input_error;

/// The word before the path in `--data text:PATH`.
pub const PREFIX: &str = "text:";
/// Debian's `fortunes` package's English fortunes, the default corpus where it is installed
/// (`scripts/setup.sh --fortunes`); one file per theme, read in order of name.
pub const FORTUNES: &str = "/usr/share/games/fortunes";

/// The bytes of a corpus, split in two by position.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Where it was read from, for the run's header.
    pub source: PathBuf,
    pub train: Vec<u8>,
    pub validation: Vec<u8>,
}

/// Windows of a batch: inputs (B, T) and their next bytes (B, T), int64.
pub struct TextBatch {
    pub inputs: Tensor,
    pub targets: Tensor,
}

impl Corpus {
    /// `path`'s bytes (a file; a folder: every regular file in it, by name, concatenated) with the last
    /// `validation_share` of them for validation. Each part must hold one window of `context` + 1
    /// bytes: one line naming the path otherwise.
    pub fn read(path: &Path, validation_share: f64, context: usize) -> anyhow::Result<Corpus> {
        let bytes = read_bytes(path)?;
        let cut = ((bytes.len() as f64) * (1.0 - validation_share)).round() as usize;
        let (train, validation) = bytes.split_at(cut.min(bytes.len()));
        let shortest = train.len().min(validation.len());
        if shortest < context + 1 {
            crate::bail_input!(
                "{}: {} bytes, too short: its training and validation parts ({} and {} bytes) must each hold \
                 the context plus one ({} bytes)",
                path.display(),
                bytes.len(),
                train.len(),
                validation.len(),
                context + 1
            );
        }
        Ok(Corpus { source: path.to_path_buf(), train: train.to_vec(), validation: validation.to_vec() })
    }

    /// The training batch of step `step`: `batch` windows at offsets drawn from (seed, step).
    pub fn train_batch(&self, seed: u64, step: usize, batch: usize, context: usize) -> TextBatch {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (step as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let last = self.train.len() - context - 1;
        let starts: Vec<usize> = (0..batch).map(|_| rng.gen_range(0..=last)).collect();
        windows(&self.train, &starts, context)
    }

    /// The validation batches: `batches` x `batch` windows evenly spaced through the validation part.
    pub fn validation_batches(&self, batches: usize, batch: usize, context: usize) -> Vec<TextBatch> {
        let count = batches * batch;
        let last = self.validation.len() - context - 1;
        let starts: Vec<usize> = (0..count).map(|i| i * last / count.max(1)).collect();
        starts.chunks(batch).map(|chunk| windows(&self.validation, chunk, context)).collect()
    }
}

/// The windows of `bytes` at `starts`: inputs (B, T) and targets (B, T).
fn windows(bytes: &[u8], starts: &[usize], context: usize) -> TextBatch {
    let take = |shift: usize| -> Vec<i64> {
        starts.iter().flat_map(|&s| bytes[s + shift..s + shift + context].iter().map(|&b| b as i64)).collect()
    };
    let shape = [starts.len() as i64, context as i64];
    TextBatch {
        inputs: Tensor::from_slice(&take(0)).view(shape),
        targets: Tensor::from_slice(&take(1)).view(shape),
    }
}

/// A file's bytes, or a folder's regular files' by name (links and strfile `.dat` indexes left out);
/// one line naming the path if it cannot be read.
fn read_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new(FORTUNES) && !path.exists() {
        crate::bail_input!(
            "--data fortunes: {FORTUNES} is missing; install Debian's fortunes (scripts/setup.sh --fortunes) \
             or give --data text:PATH"
        );
    }
    let unreadable = |e: std::io::Error| input_error(format!("{}: cannot read ({e})", path.display()));
    if !path.is_dir() {
        return std::fs::read(path).map_err(unreadable);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(unreadable)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        // Regular files only (fortunes' `.u8` names are links to the others), `.dat` indexes left out.
        .filter(|p| {
            p.symlink_metadata().is_ok_and(|m| m.is_file()) && p.extension().is_none_or(|e| e != "dat")
        })
        .collect();
    files.sort();
    let mut bytes = Vec::new();
    for file in files {
        bytes.extend(
            std::fs::read(&file)
                .map_err(|e| input_error(format!("{}: cannot read ({e})", file.display())))?,
        );
    }
    Ok(bytes)
}

/// The path of a `text:PATH` spec, or the installed fortunes for `text` alone.
pub fn parse_spec(spec: &str) -> Result<PathBuf, String> {
    match spec {
        "text" | "fortunes" => Ok(PathBuf::from(FORTUNES)),
        _ => spec.strip_prefix(PREFIX).filter(|p| !p.is_empty()).map(PathBuf::from).ok_or_else(|| {
            format!("'{spec}': expected text:PATH (a file or a folder of files), or fortunes")
        }),
    }
}
