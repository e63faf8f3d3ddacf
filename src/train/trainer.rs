//! The training loop: SGD steps over augmented batches, an evaluation on the test split after every
//! epoch, one metrics line per epoch, and the final weights in the run folder.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device};

use super::checkpoint::{save_weights, write_atomic};
use super::config::TrainConfig;
use super::evaluate::{evaluate, Evaluation};
use super::metrics::{EpochRecord, MetricsLog};
use super::optimizer::Sgd;
use super::schedule::StepSchedule;
use super::step::Stepper;
use crate::data::augment::Standardizer;
use crate::data::loader::{EpochPlan, Loader};
use crate::data::Splits;
use crate::model::Net;
use crate::parallel::replica::SgdSettings;

/// The figures of a finished run (the `--json` line of `warpnet train`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub model: String,
    pub data: String,
    pub parameters: i64,
    pub epochs: usize,
    pub steps: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub test_loss: f64,
    pub test_error: f64,
    pub test_accuracy: f64,
    /// Seconds spent in training steps (evaluation excluded).
    pub train_seconds: f64,
    pub images_per_s: f64,
    pub out: PathBuf,
}

/// How a run reports while it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// A progress bar (on a terminal) and one line per epoch on stdout.
    Normal,
    /// Nothing but errors (tests).
    Quiet,
}

/// Trains from scratch as `config` says, writing config.toml, metrics.jsonl and model.safetensors to
/// `out_dir` (created if needed).
pub fn train(
    config: &TrainConfig,
    splits: Splits,
    out_dir: &Path,
    verbosity: Verbosity,
) -> anyhow::Result<RunSummary> {
    let device = Device::Cpu;
    if let Some(threads) = config.threads {
        tch::set_num_threads(threads as i32);
    }
    tch::manual_seed(config.seed as i64);
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("{}: cannot create output folder", out_dir.display()))?;
    write_atomic(&out_dir.join("config.toml"), toml::to_string(config)?.as_bytes())?;

    let net_config = config.net(splits.train.classes);
    let vs = VarStore::new(device);
    let net = Net::new(&vs.root(), &net_config);
    let mut stepper = match &config.devices {
        None => Stepper::Single(Sgd::new(&vs, config.momentum, config.wd)),
        Some(devices) => {
            let plan = config.parallel_plan(&net_config)?;
            let sgd = SgdSettings { momentum: config.momentum, weight_decay: config.wd };
            Stepper::parallel(&vs, &net_config, devices, plan, sgd)?
        }
    };
    let schedule =
        StepSchedule { base: config.lr, milestones: config.milestones.clone(), gamma: config.gamma };
    let standardizer = Standardizer::fit(&splits.train);
    let train_set = Arc::new(splits.train);
    let test_set = Arc::new(splits.test);

    let steps_per_epoch = train_set.len() / config.batch;
    if steps_per_epoch == 0 {
        crate::bail_input!("--batch {} is larger than the {} training images", config.batch, train_set.len());
    }
    let total_steps = config.iters.unwrap_or(config.epochs * steps_per_epoch);
    let epochs = total_steps.div_ceil(steps_per_epoch);
    let mut log = MetricsLog::create(&out_dir.join("metrics.jsonl"))?;
    if verbosity == Verbosity::Normal {
        println!(
            "{} ({} parameters) on {}: {} train / {} test images, {epochs} epochs of {steps_per_epoch} steps, batch {}",
            net_config.label(),
            parameter_count(&vs),
            config.data,
            train_set.len(),
            test_set.len(),
            config.batch
        );
    }

    let mut step = 0;
    let mut train_seconds = 0.0;
    let mut last: Option<(EpochRecord, Evaluation)> = None;
    for epoch in 0..epochs {
        let lr = schedule.lr(epoch);
        let steps = steps_per_epoch.min(total_steps - step);
        let plan = EpochPlan::training(train_set.len(), config.batch, config.seed, epoch as u64);
        let bar = progress_bar(verbosity, steps, epoch + 1, epochs);
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0i64, 0usize);
        let started = Instant::now();
        for batch in Loader::spawn(train_set.clone(), standardizer, plan).take(steps) {
            let images = batch.images.to_device(device);
            let labels = batch.labels.to_device(device);
            let result = stepper.step(&net, &images, &labels, lr);
            let batch_loss = result.loss;
            if !batch_loss.is_finite() {
                anyhow::bail!(
                    "training diverged at step {}: loss is {batch_loss} (try a lower --lr)",
                    step + 1
                );
            }
            let n = labels.size()[0] as usize;
            loss_sum += batch_loss * n as f64;
            correct += result.correct;
            seen += n;
            step += 1;
            bar.inc(1);
            let seconds = started.elapsed().as_secs_f64();
            bar.set_message(format!(
                "loss {:.3}  acc {:.1}%  {:.0} img/s",
                loss_sum / seen as f64,
                100.0 * correct as f64 / seen as f64,
                seen as f64 / seconds
            ));
        }
        let seconds = started.elapsed().as_secs_f64();
        bar.finish_and_clear();
        train_seconds += seconds;
        stepper.sync(&vs);
        let test = evaluate(&net, &test_set, standardizer, config.eval_batch, device);
        let record = EpochRecord {
            epoch: epoch + 1,
            step,
            lr,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            test_loss: test.loss,
            test_error: test.error,
            seconds,
            images_per_s: seen as f64 / seconds,
        };
        log.append(&record)?;
        if verbosity == Verbosity::Normal {
            println!(
                "epoch {:>3}/{epochs}  lr {:<7.4}  train loss {:.4} acc {:5.2}%  test loss {:.4} error {:5.2}%  {:6.1} s  {:5.0} img/s",
                record.epoch,
                lr,
                record.train_loss,
                100.0 * record.train_accuracy,
                record.test_loss,
                100.0 * record.test_error,
                seconds,
                record.images_per_s
            );
        }
        last = Some((record, test));
    }

    save_weights(&vs, &out_dir.join("model.safetensors"))?;
    let (record, test) = last.expect("at least one epoch");
    let images = step * config.batch;
    Ok(RunSummary {
        model: net_config.label(),
        data: config.data.to_string(),
        parameters: parameter_count(&vs),
        epochs,
        steps: step,
        train_loss: record.train_loss,
        train_accuracy: record.train_accuracy,
        test_loss: test.loss,
        test_error: test.error,
        test_accuracy: 1.0 - test.error,
        train_seconds,
        images_per_s: images as f64 / train_seconds,
        out: out_dir.to_path_buf(),
    })
}

/// Trainable parameters (BatchNorm running statistics excluded).
pub fn parameter_count(vs: &VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

fn progress_bar(verbosity: Verbosity, steps: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if verbosity == Verbosity::Quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar
}
