//! `warpnet data`: download the official CIFAR archives, print a data set's counts and statistics.
//!
//! ```text
//! warpnet data download cifar10|cifar100 --dir D [--url URL] [--md5 HEX] [--json]
//! warpnet data info SPEC [--json]
//! ```

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use crate::data::augment::Standardizer;
use crate::data::download::{self, Archive, MD5_HEX_LEN};
use crate::data::{self as datasets, DataSpec, Dataset, IMAGE_CHANNELS};
use crate::report::Table;

#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum DataCommand {
    /// Fetch, verify (MD5) and unpack an official CIFAR binary archive, resuming a broken download.
    Download(DownloadArgs),
    /// Print training and test counts, per-class counts and per-channel mean and deviation.
    Info(InfoArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DownloadArgs {
    /// Which archive.
    #[arg(value_enum)]
    pub archive: Archive,
    /// Directory to download and unpack into (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// Where to fetch the archive from (default: the official URL).
    #[arg(long)]
    pub url: Option<String>,
    /// Expected MD5 of the archive, 32 hex digits (default: the published one).
    #[arg(long, value_parser = md5_hex)]
    pub md5: Option<String>,
    /// Also print the outcome as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct InfoArgs {
    /// The data set, as for `train --data`: fashion-mnist, cifar10:DIR, cifar100:DIR, ...
    pub spec: DataSpec,
    /// Also print everything as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

/// Runs `warpnet data ...`.
pub fn run(args: DataArgs) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Download(args) => run_download(args),
        DataCommand::Info(args) => run_info(args),
    }
}

/// Parses `--md5`: exactly 32 hexadecimal digits, kept lowercase.
fn md5_hex(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.len() != MD5_HEX_LEN || !value.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("expected {MD5_HEX_LEN} hexadecimal digits, got '{value}'"));
    }
    Ok(value.to_ascii_lowercase())
}

/// `warpnet data download`: the steps on stdout, then the spec to train with as the last line (or JSON).
fn run_download(args: DownloadArgs) -> anyhow::Result<()> {
    let request = download::Request {
        archive: args.archive,
        dir: args.dir,
        url: args.url.unwrap_or_else(|| args.archive.url().to_string()),
        md5: args.md5.unwrap_or_else(|| args.archive.md5().to_string()),
    };
    let outcome = download::prepare(&request, &mut |line| println!("{line}"))?;
    println!(
        "{}: {} training and {} test images, {} classes",
        outcome.spec, outcome.train, outcome.test, outcome.classes
    );
    if args.json {
        crate::cli::print_json(&outcome)?;
    } else {
        println!("{}", outcome.spec);
    }
    Ok(())
}

/// Images of one class in each split.
#[derive(Debug, Serialize)]
struct ClassCount {
    label: usize,
    name: String,
    train: usize,
    test: usize,
}

/// What `warpnet data info` reports.
#[derive(Debug, Serialize)]
struct Info {
    spec: DataSpec,
    train: usize,
    test: usize,
    classes: usize,
    per_class: Vec<ClassCount>,
    /// Per-channel (R, G, B) mean of the training set, pixel/255 units.
    mean: [f32; IMAGE_CHANNELS],
    /// Per-channel (R, G, B) standard deviation of the training set, pixel/255 units.
    std: [f32; IMAGE_CHANNELS],
}

/// `warpnet data info`: a summary table on stdout, and the same as JSON with `--json`.
fn run_info(args: InfoArgs) -> anyhow::Result<()> {
    let splits = datasets::load(&args.spec)?;
    let (train, test) = (class_counts(&splits.train), class_counts(&splits.test));
    let per_class = splits
        .class_names
        .iter()
        .enumerate()
        .map(|(label, name)| ClassCount {
            label,
            name: name.clone(),
            train: train.get(label).copied().unwrap_or(0),
            test: test.get(label).copied().unwrap_or(0),
        })
        .collect();
    let stats = Standardizer::fit(&splits.train);
    let info = Info {
        spec: args.spec,
        train: splits.train.len(),
        test: splits.test.len(),
        classes: splits.train.classes,
        per_class,
        mean: stats.mean,
        std: stats.std,
    };
    print!("{}", summary(&info));
    if args.json {
        crate::cli::print_json(&info)?;
    }
    Ok(())
}

/// Images per label, `classes` entries.
fn class_counts(data: &Dataset) -> Vec<usize> {
    let mut counts = vec![0; data.classes];
    for &label in &data.labels {
        if let Some(count) = counts.get_mut(label as usize) {
            *count += 1;
        }
    }
    counts
}

/// The human-readable report: totals, channel statistics, then one row per class.
fn summary(info: &Info) -> String {
    let mut out = format!(
        "{}: {} training images, {} test images, {} classes\n\n",
        info.spec, info.train, info.test, info.classes
    );
    let mut channels = Table::new(&["channel", "mean", "std"]);
    for (c, name) in ["R", "G", "B"].iter().enumerate() {
        channels.push(vec![name.to_string(), format!("{:.4}", info.mean[c]), format!("{:.4}", info.std[c])]);
    }
    out.push_str(&channels.markdown());
    out.push('\n');
    let mut classes = Table::new(&["label", "class", "train", "test"]);
    for class in &info.per_class {
        classes.push(vec![
            class.label.to_string(),
            class.name.clone(),
            class.train.to_string(),
            class.test.to_string(),
        ]);
    }
    out.push_str(&classes.markdown());
    out
}
