//! The training loop: SGD steps over augmented batches, an evaluation on the test split after every
//! epoch, one metrics line and one checkpoint per epoch (and every `checkpoint_every` within one), and
//! the final weights in the run folder. A run interrupted (Ctrl-C, SIGTERM, or killed) continues from its last checkpoint with `--resume` and ends
//! with the same weights, bit for bit on CPU, as if it had never stopped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device};

use super::checkpoint::{
    read_checkpoint, save_checkpoint, save_weights, Checkpoint, EpochProgress, Position, Sidecar,
    CHECKPOINT_FORMAT,
};
use super::config::TrainConfig;
use super::evaluate::evaluate;
use super::metrics::{EpochRecord, MetricsLog};
use super::progress::{epoch_bar, print_epoch, Verbosity};
use super::run_folder::DataInfo;
use super::schedule::StepSchedule;
use super::step::Stepper;
use crate::base::atomic_file::{remove_stale_temporaries, write_atomic};
use crate::base::named::{assign_variables, copy_variables, Named};
use crate::base::optimizer::Sgd;
use crate::data::augment::Standardizer;
use crate::data::loader::{EpochPlan, Loader};
use crate::data::Splits;
use crate::model::Net;
use crate::parallel::replica::SgdSettings;
use crate::precision::{Precision, PrecisionSetting};

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
    /// Seconds spent in training steps (evaluation excluded), over all sessions of the run.
    pub train_seconds: f64,
    pub images_per_s: f64,
    /// What the training steps computed in.
    pub precision: Precision,
    pub out: PathBuf,
}

/// Training stopped by Ctrl-C (SIGINT) or a scheduler's SIGTERM after saving a checkpoint.
#[derive(Debug, thiserror::Error)]
#[error(
    "interrupted by {} at step {step}; checkpoint {checkpoint} saved; continue with `{launcher}warpnet train --resume {run}`",
    signal_name(*signal)
)]
pub struct Interrupted {
    /// The signal's number: `warpnet` exits with 128 + it, as a shell reports a process it killed.
    pub signal: i32,
    pub step: usize,
    pub checkpoint: PathBuf,
    pub run: PathBuf,
    /// "mpirun -np N " for a job over MPI ranks, else empty.
    pub launcher: String,
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "Ctrl-C (SIGINT)",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// The signal that asked training to stop, 0 while none has; the loop checks it after every step.
fn interrupt() -> &'static Arc<AtomicUsize> {
    static SIGNAL: OnceLock<Arc<AtomicUsize>> = OnceLock::new();
    SIGNAL.get_or_init(|| {
        let signal = Arc::new(AtomicUsize::new(0));
        for number in [libc::SIGINT, libc::SIGTERM] {
            // Fails only for a signal that cannot be caught; these two can.
            let _ = signal_hook::flag::register_usize(number, signal.clone(), number as usize);
        }
        signal
    })
}

/// Trains from scratch as `config` says, writing config.toml, metrics.jsonl, checkpoints/ and
/// model.safetensors to `out_dir` (created if needed).
pub fn train(
    config: &TrainConfig,
    splits: Splits,
    out_dir: &Path,
    verbosity: Verbosity,
) -> anyhow::Result<RunSummary> {
    if out_dir.join("config.toml").exists() {
        crate::bail_input!(
            "--out {}: holds a run already (continue it with --resume, or choose another folder)",
            out_dir.display()
        );
    }
    run(config, splits, out_dir, verbosity, None)
}

/// Continues the run in `run_dir` from its newest checkpoint, with the configuration it was started with.
pub fn resume(
    run_dir: &Path,
    splits: Splits,
    checkpoint: Checkpoint,
    verbosity: Verbosity,
) -> anyhow::Result<RunSummary> {
    if splits.train.classes != checkpoint.sidecar.classes {
        crate::bail_input!(
            "--resume {}: the data has {} classes, the checkpoint {}",
            run_dir.display(),
            splits.train.classes,
            checkpoint.sidecar.classes
        );
    }
    let config = checkpoint.sidecar.config.clone();
    run(&config, splits, run_dir, verbosity, Some(checkpoint))
}

fn run(
    config: &TrainConfig,
    mut splits: Splits,
    out_dir: &Path,
    verbosity: Verbosity,
    from: Option<Checkpoint>,
) -> anyhow::Result<RunSummary> {
    let device = Device::Cpu;
    if let Some(threads) = config.threads {
        tch::set_num_threads(threads as i32);
    }
    // The GPUs are checked, which loads libtorch's CUDA half, before the first seed: seeding asks
    // libtorch's CUDA hooks to seed the GPUs too, and libtorch creates those hooks once per process,
    // as stubs that report no GPU when libtorch_cuda is not loaded yet.
    if let Some(devices) = &config.devices {
        crate::parallel::device::check_available(devices)?;
    }
    tch::manual_seed(config.seed as i64);
    interrupt();
    // `auto` is decided once, here: the run folder records the choice and a resume keeps it.
    let precision = config.precision_choice();
    let config = &TrainConfig { precision: precision.precision.into(), ..config.clone() };
    let eval_precision = evaluation_precision(precision.precision, config.devices.as_ref());

    if let Some(n) = config.limit_train {
        splits.train.truncate(n);
    }
    let steps_per_epoch = splits.train.len() / config.batch;
    if steps_per_epoch == 0 {
        crate::bail_input!(
            "--batch {} is larger than the {} training images",
            config.batch,
            splits.train.len()
        );
    }
    let net_config = config.net(splits.train.classes);
    let vs = VarStore::new(device);
    let net = Net::new(&vs.root(), &net_config);
    let standardizer = Standardizer::fit(&splits.train);
    let (mut position, mut progress, mut train_seconds, momentum) = match &from {
        None => (Position::default(), EpochProgress::default(), 0.0, Named::new()),
        Some(checkpoint) => {
            let (variables, momentum) = read_checkpoint(checkpoint, &vs)?;
            assign_variables(&vs, &variables);
            let s = &checkpoint.sidecar;
            (s.position, s.progress, s.train_seconds, momentum)
        }
    };
    let mut stepper = match &config.devices {
        None => {
            let mut sgd = Sgd::new(&vs, config.momentum, config.wd);
            sgd.set_momentum(&momentum);
            Stepper::Single { sgd, precision: precision.precision }
        }
        Some(devices) => {
            let plan = config.parallel_plan(&net_config)?;
            let sgd = SgdSettings { momentum: config.momentum, weight_decay: config.wd };
            Stepper::parallel(&vs, momentum, &net_config, devices, plan, sgd, precision.precision)?
        }
    };
    // Every check that can refuse the run is behind us: only now does a new run claim its folder, so a
    // refused one leaves nothing there (its config.toml would make a rerun into the folder be refused).
    if from.is_none() {
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("{}: cannot create output folder", out_dir.display()))?;
        write_atomic(&out_dir.join("config.toml"), toml::to_string(config)?.as_bytes())?;
        DataInfo { class_names: splits.class_names.clone(), standardizer }.write(out_dir)?;
    }
    // One run owns the folder: temporaries that a killed writer left are garbage.
    remove_stale_temporaries(out_dir);
    remove_stale_temporaries(&out_dir.join(super::checkpoint::CHECKPOINTS));
    let schedule =
        StepSchedule { base: config.lr, milestones: config.milestones.clone(), gamma: config.gamma };
    let class_names = splits.class_names.clone();
    let train_set = Arc::new(splits.train);
    let test_set = Arc::new(splits.test);

    let total_steps = config.iters.unwrap_or(config.epochs * steps_per_epoch);
    let epochs = total_steps.div_ceil(steps_per_epoch);
    let metrics_path = out_dir.join("metrics.jsonl");
    // Lines of epochs after the checkpoint (written before a kill) are dropped: they will be redone.
    let mut records = MetricsLog::read(&metrics_path)?
        .into_iter()
        .filter(|r| r.epoch <= position.epoch)
        .collect::<Vec<_>>();
    MetricsLog::rewrite(&metrics_path, &records)?;
    let mut log = MetricsLog::create(&metrics_path)?;
    if verbosity == Verbosity::Normal {
        let resumed =
            if from.is_some() { format!(", resumed at step {}", position.step) } else { String::new() };
        println!(
            "{} ({} parameters) on {}: {} train / {} test images, {epochs} epochs of {steps_per_epoch} steps, batch {}, precision {precision}{resumed}",
            net_config.label(),
            parameter_count(&vs),
            config.data,
            train_set.len(),
            test_set.len(),
            config.batch
        );
        if eval_precision != precision.precision {
            println!("evaluation on the CPU in {eval_precision}: it has no native bf16");
        }
    }
    if let Some(warning) = precision.warning() {
        eprintln!("{warning}");
    }

    let checkpoint = |position: Position, progress: EpochProgress, train_seconds: f64, stepper: &Stepper| {
        stepper.sync(&vs);
        let sidecar = Sidecar {
            format: CHECKPOINT_FORMAT,
            config: config.clone(),
            classes: net_config.classes,
            class_names: class_names.clone(),
            standardizer,
            position,
            progress,
            train_seconds,
            seed: config.seed,
        };
        save_checkpoint(
            out_dir,
            &copy_variables(&vs, Device::Cpu),
            &stepper.momentum(),
            &sidecar,
            config.keep_checkpoints,
        )
    };

    let every = config.checkpoint_every;
    let mut last_saved = Instant::now();
    while position.step < total_steps {
        let lr = schedule.lr(position.epoch);
        let epoch_steps = steps_per_epoch.min(total_steps - position.step + position.batch);
        let mut plan = EpochPlan::training(train_set.len(), config.batch, config.seed, position.epoch as u64);
        plan.start_batch = position.batch;
        let bar = epoch_bar(verbosity, epoch_steps, position.epoch + 1, epochs);
        bar.set_position(position.batch as u64);
        let started = Instant::now();
        let before = progress.seconds;
        let mut batches =
            Loader::spawn(train_set.clone(), standardizer, plan).take(epoch_steps - position.batch);
        loop {
            let waiting = Instant::now();
            let Some(batch) = batches.next() else { break };
            progress.data_wait_seconds += waiting.elapsed().as_secs_f64();
            let result =
                stepper.step(&net, &batch.images.to_device(device), &batch.labels.to_device(device), lr);
            if !result.loss.is_finite() {
                let checkpoints = out_dir.join(super::checkpoint::CHECKPOINTS);
                if checkpoints.exists() {
                    anyhow::bail!(
                        "training diverged at step {}: loss is {}; the last good checkpoint is in {} (try a lower --lr)",
                        position.step + 1,
                        result.loss,
                        checkpoints.display()
                    );
                }
                // Nothing to resume from: the run gives its folder back (no epoch ended, so its files hold
                // no results), and the same command with a lower --lr can use it.
                for file in ["config.toml", "data.json", "metrics.jsonl"] {
                    let _ = std::fs::remove_file(out_dir.join(file));
                }
                anyhow::bail!(
                    "training diverged at step {}: loss is {}, before the first checkpoint, so nothing was kept (try a lower --lr)",
                    position.step + 1,
                    result.loss
                );
            }
            let n = batch.labels.size()[0] as usize;
            progress.loss_sum += result.loss * n as f64;
            progress.correct += result.correct;
            progress.seen += n;
            progress.seconds = before + started.elapsed().as_secs_f64();
            position.batch += 1;
            position.step += 1;
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.3}  acc {:.1}%  {:.0} img/s",
                progress.loss_sum / progress.seen as f64,
                100.0 * progress.correct as f64 / progress.seen as f64,
                progress.seen as f64 / progress.seconds.max(f64::EPSILON)
            ));
            let signal = interrupt().swap(0, Ordering::SeqCst) as i32;
            let seconds = train_seconds + progress.seconds - before;
            // The last step of an epoch is checkpointed after the epoch's evaluation, below.
            let due = every.is_some_and(|e| e.due(position.step, last_saved.elapsed()));
            if signal == 0 && due && position.batch < epoch_steps {
                checkpoint(position, progress, seconds, &stepper)?;
                last_saved = Instant::now();
            }
            if signal != 0 {
                bar.finish_and_clear();
                let saved = checkpoint(position, progress, seconds, &stepper)?;
                return Err(Interrupted {
                    signal,
                    step: position.step,
                    checkpoint: saved,
                    run: out_dir.to_path_buf(),
                    launcher: crate::parallel::mpi::session::running()
                        .map_or(String::new(), |ranks| format!("mpirun -np {ranks} ")),
                }
                .into());
            }
        }
        bar.finish_and_clear();
        train_seconds += progress.seconds - before;
        stepper.sync(&vs);
        let test = evaluate(&net, &test_set, standardizer, config.eval_batch, device, eval_precision);
        let record = EpochRecord {
            epoch: position.epoch + 1,
            step: position.step,
            lr,
            train_loss: progress.loss_sum / progress.seen.max(1) as f64,
            train_accuracy: progress.correct as f64 / progress.seen.max(1) as f64,
            test_loss: test.loss,
            test_error: test.error,
            seconds: progress.seconds,
            images_per_s: progress.seen as f64 / progress.seconds,
            data_wait_seconds: progress.data_wait_seconds,
        };
        position = Position { epoch: position.epoch + 1, batch: 0, step: position.step };
        progress = EpochProgress::default();
        // The metrics line first: a run killed between the two redoes this epoch from the previous
        // checkpoint, and the resume drops the line of the epoch it redoes.
        log.append(&record)?;
        checkpoint(position, progress, train_seconds, &stepper)?;
        last_saved = Instant::now();
        print_epoch(verbosity, &record, epochs);
        records.push(record);
    }

    stepper.sync(&vs);
    save_weights(&vs, &out_dir.join(super::run_folder::FINAL_WEIGHTS))?;
    let record = records.last().context("no epoch was recorded")?.clone();
    Ok(RunSummary {
        model: net_config.label(),
        data: config.data.to_string(),
        parameters: parameter_count(&vs),
        epochs,
        steps: position.step,
        train_loss: record.train_loss,
        train_accuracy: record.train_accuracy,
        test_loss: record.test_loss,
        test_error: record.test_error,
        test_accuracy: 1.0 - record.test_error,
        train_seconds,
        images_per_s: (position.step * config.batch) as f64 / train_seconds.max(f64::MIN_POSITIVE),
        precision: precision.precision,
        out: out_dir.to_path_buf(),
    })
}

/// The trainer evaluates on the CPU: in the run's precision when the run trains there, and when it
/// trains on GPUs, in bf16 only if the CPU computes bf16 natively (emulated bf16 is many times slower).
fn evaluation_precision(run: Precision, devices: Option<&crate::parallel::Devices>) -> Precision {
    let on_cpu = devices.is_none_or(|d| d.workers.iter().all(|w| *w == Device::Cpu));
    if on_cpu {
        return run;
    }
    match PrecisionSetting::Auto.resolve(&[Device::Cpu]).precision {
        Precision::Bf16 => run,
        Precision::Fp32 => Precision::Fp32,
    }
}

/// Trainable parameters (BatchNorm running statistics excluded).
pub fn parameter_count(vs: &VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}
