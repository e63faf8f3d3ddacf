//! One training session in phases around its state: [`Session::start`] (the process set up, the network
//! built or restored, the folder claimed, the metrics log opened), [`Session::epoch`] (steps, then the
//! evaluation, the metrics line and the checkpoint), [`Session::finish`] (the final weights and the
//! summary). Signals, divergence and mid-epoch checkpoints are handled step by step in between.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tch::{nn::VarStore, Device};

use super::checkpoint::{
    read_checkpoint, save_checkpoint, save_weights, Checkpoint, EpochProgress, Position, Sidecar,
    CHECKPOINTS, CHECKPOINT_FORMAT,
};
use super::config::TrainConfig;
use super::evaluate::{evaluate, evaluation_precision};
use super::metrics::{EpochRecord, MetricsLog};
use super::outcome::{interrupt, parameter_count, set_up_process, Interrupted, RunSummary};
use super::progress::{epoch_bar, print_epoch, Verbosity};
use super::run_folder::WriterLock;
use super::run_folder::{DataInfo, FINAL_WEIGHTS};
use super::schedule::StepSchedule;
use super::step::Stepper;
use crate::base::named::{assign_variables, copy_variables, Named};
use crate::data::augment::Standardizer;
use crate::data::loader::{EpochPlan, Loader};
use crate::data::{Dataset, Splits};
use crate::model::{Net, NetConfig};
use crate::precision::{Precision, Workload};

/// Where the data and the loop live (the executor's workers may be elsewhere).
const HOME: Device = Device::Cpu;

/// A run while it trains.
pub struct Session<'a> {
    /// The run's settings, `auto` precision resolved.
    config: TrainConfig,
    out_dir: &'a Path,
    verbosity: Verbosity,
    net_config: NetConfig,
    vs: VarStore,
    net: Net,
    stepper: Stepper,
    standardizer: Standardizer,
    class_names: Vec<String>,
    train_set: Arc<Dataset>,
    test_set: Arc<Dataset>,
    /// What the steps compute in, and the evaluation.
    precision: Precision,
    eval_precision: Precision,
    schedule: StepSchedule,
    steps_per_epoch: usize,
    pub total_steps: usize,
    epochs: usize,
    pub position: Position,
    progress: EpochProgress,
    /// Seconds in training steps over every session of the run, up to the last finished epoch.
    train_seconds: f64,
    records: Vec<EpochRecord>,
    log: MetricsLog,
    last_saved: Instant,
    /// This process is the folder's one writer until the session ends.
    _lock: WriterLock,
}

impl<'a> Session<'a> {
    /// Everything before the first step; a run refused here leaves its folder untouched.
    pub fn start(
        config: &TrainConfig,
        mut splits: Splits,
        out_dir: &'a Path,
        verbosity: Verbosity,
        from: Option<(Checkpoint, WriterLock)>,
    ) -> anyhow::Result<Self> {
        // A resumed run holds its folder's lock already (taken before its checkpoint was chosen).
        let (from, held) = from.map_or((None, None), |(checkpoint, lock)| (Some(checkpoint), Some(lock)));
        set_up_process(config.threads, config.devices.as_ref(), config.seed)?;
        // `auto` is decided once, here: the run folder records the choice and a resume keeps it.
        let choice = config.precision_choice();
        let precision = choice.precision;
        let config = TrainConfig { precision: precision.into(), ..config.clone() };
        if let Some(n) = config.limit_train {
            splits.train.truncate(n);
        }
        let steps_per_epoch = splits.train.len() / config.batch;
        if steps_per_epoch == 0 {
            let (batch, images) = (config.batch, splits.train.len());
            crate::bail_input!("--batch {batch} is larger than the {images} training images");
        }
        let net_config = config.net(splits.train.classes);
        let vs = VarStore::new(HOME);
        let net = Net::new(&vs.root(), &net_config);
        let standardizer = Standardizer::fit(&splits.train);
        let (position, progress, train_seconds, momentum) = restore(from.as_ref(), &vs)?;
        let stepper = stepper(&config, &net_config, &vs, momentum, precision)?;
        // Every check that can refuse the run is behind us: only now does a new run claim its folder,
        // so a refused one leaves nothing there (its config.toml would make a rerun be refused). One
        // writer at a time: a second `train --resume`, a requeued job, is refused here.
        let lock = match held {
            Some(lock) => lock,
            None => WriterLock::acquire(out_dir)?,
        };
        if from.is_none() {
            let data = DataInfo { class_names: splits.class_names.clone(), standardizer };
            super::run_folder::claim_folder(out_dir, &config, data)?;
        }
        let (records, log) = super::metrics::open_metrics(out_dir, position.step)?;
        let total_steps = config.iters.unwrap_or(config.epochs * steps_per_epoch);
        let session = Session {
            eval_precision: evaluation_precision(precision, config.devices.as_ref(), Workload::Convolutions),
            schedule: StepSchedule {
                base: config.lr,
                milestones: config.milestones.clone(),
                gamma: config.gamma,
            },
            class_names: splits.class_names,
            train_set: Arc::new(splits.train),
            test_set: Arc::new(splits.test),
            epochs: total_steps.div_ceil(steps_per_epoch),
            last_saved: Instant::now(),
            precision,
            config,
            out_dir,
            verbosity,
            net_config,
            vs,
            net,
            stepper,
            standardizer,
            steps_per_epoch,
            total_steps,
            position,
            progress,
            train_seconds,
            records,
            log,
            _lock: lock,
        };
        session.announce(from.is_some(), &choice);
        Ok(session)
    }

    /// The header line (network, data, schedule, precision) and the precision's warning, if any.
    fn announce(&self, resumed: bool, choice: &crate::precision::Choice) {
        if self.verbosity == Verbosity::Normal {
            let resumed =
                if resumed { format!(", resumed at step {}", self.position.step) } else { String::new() };
            println!(
                "{} ({} parameters) on {}: {} train / {} test images, {} epochs of {} steps, batch {}, precision {choice}{resumed}",
                self.net_config.label(),
                parameter_count(&self.vs),
                self.config.data,
                self.train_set.len(),
                self.test_set.len(),
                self.epochs,
                self.steps_per_epoch,
                self.config.batch
            );
            if self.eval_precision != choice.precision {
                println!("evaluation on the CPU in {}: it has no native bf16", self.eval_precision);
            }
        }
        if let Some(warning) = choice.warning() {
            eprintln!("{warning}");
        }
    }

    /// The rest of the current epoch, then its evaluation, metrics line and checkpoint.
    pub fn epoch(&mut self) -> anyhow::Result<()> {
        let lr = self.schedule.lr(self.position.epoch);
        let p = self.position;
        let epoch_steps = self.steps_per_epoch.min(self.total_steps - p.step + p.batch);
        let mut plan =
            EpochPlan::training(self.train_set.len(), self.config.batch, self.config.seed, p.epoch as u64);
        plan.start_batch = p.batch;
        let bar = epoch_bar(self.verbosity, epoch_steps, p.epoch + 1, self.epochs);
        bar.set_position(p.batch as u64);
        let started = Instant::now();
        let before = self.progress.seconds;
        let mut batches =
            Loader::spawn(self.train_set.clone(), self.standardizer, plan).take(epoch_steps - p.batch);
        loop {
            let waiting = Instant::now();
            let Some(batch) = batches.next() else { break };
            self.progress.data_wait_seconds += waiting.elapsed().as_secs_f64();
            let (images, labels) = (batch.images.to_device(HOME), batch.labels.to_device(HOME));
            let result = self.stepper.step(&self.net, &images, &labels, lr);
            if !result.loss.is_finite() {
                return Err(self.diverged(result.loss));
            }
            let progress = &mut self.progress;
            let n = batch.labels.size()[0] as usize;
            progress.loss_sum += result.loss * n as f64;
            progress.correct += result.correct;
            progress.seen += n;
            progress.seconds = before + started.elapsed().as_secs_f64();
            self.position.batch += 1;
            self.position.step += 1;
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.3}  acc {:.1}%  {:.0} img/s",
                progress.loss_sum / progress.seen as f64,
                100.0 * progress.correct as f64 / progress.seen as f64,
                progress.seen as f64 / progress.seconds.max(f64::EPSILON)
            ));
            let seconds = self.train_seconds + self.progress.seconds - before;
            if let Err(stop) = self.between_steps(seconds, epoch_steps) {
                bar.finish_and_clear();
                return Err(stop);
            }
        }
        bar.finish_and_clear();
        self.train_seconds += self.progress.seconds - before;
        self.end_epoch(lr)
    }

    /// After a step: the checkpoint `checkpoint_every` asks for, or on a signal the checkpoint and the
    /// stop. `seconds`: training time so far.
    fn between_steps(&mut self, seconds: f64, epoch_steps: usize) -> anyhow::Result<()> {
        let signal = interrupt().swap(0, Ordering::SeqCst) as i32;
        if signal != 0 {
            let saved = self.checkpoint(seconds)?;
            return Err(
                Interrupted::new(signal, self.position.step, saved, self.out_dir, "train --resume").into()
            );
        }
        // The last step of an epoch is checkpointed after the epoch's evaluation.
        let every = self.config.checkpoint_every;
        if every.is_some_and(|e| e.due(self.position.step, self.last_saved.elapsed()))
            && self.position.batch < epoch_steps
        {
            self.checkpoint(seconds)?;
            self.last_saved = Instant::now();
        }
        Ok(())
    }

    /// The test evaluation, the metrics line and the checkpoint that end an epoch.
    fn end_epoch(&mut self, lr: f64) -> anyhow::Result<()> {
        self.stepper.sync(&self.vs);
        let c = &self.config;
        let test =
            evaluate(&self.net, &self.test_set, self.standardizer, c.eval_batch, HOME, self.eval_precision);
        let progress = self.progress;
        let record = EpochRecord {
            epoch: self.position.epoch + 1,
            step: self.position.step,
            lr,
            train_loss: progress.loss_sum / progress.seen.max(1) as f64,
            train_accuracy: progress.correct as f64 / progress.seen.max(1) as f64,
            test_loss: test.loss,
            test_error: test.error,
            seconds: progress.seconds,
            images_per_s: progress.seen as f64 / progress.seconds,
            data_wait_seconds: progress.data_wait_seconds,
        };
        self.position = Position { epoch: self.position.epoch + 1, batch: 0, step: self.position.step };
        self.progress = EpochProgress::default();
        // The metrics line first: a run killed between the two redoes this epoch from the previous
        // checkpoint, and the resume drops the line of the epoch it redoes.
        self.log.append(&record)?;
        self.checkpoint(self.train_seconds)?;
        self.last_saved = Instant::now();
        print_epoch(self.verbosity, &record, self.epochs);
        self.records.push(record);
        Ok(())
    }

    /// A checkpoint of this moment, `train_seconds` of training so far; its path.
    fn checkpoint(&self, train_seconds: f64) -> anyhow::Result<PathBuf> {
        self.stepper.sync(&self.vs);
        let sidecar = Sidecar {
            format: CHECKPOINT_FORMAT,
            config: self.config.clone(),
            classes: self.net_config.classes,
            class_names: self.class_names.clone(),
            standardizer: self.standardizer,
            position: self.position,
            progress: self.progress,
            train_seconds,
            seed: self.config.seed,
            checksums: None, // save_checkpoint records them from what it writes
        };
        let variables = copy_variables(&self.vs, Device::Cpu);
        save_checkpoint(
            self.out_dir,
            &variables,
            &self.stepper.momentum(),
            &sidecar,
            self.config.keep_checkpoints,
        )
    }

    /// The error of a non-finite loss at the next step. Before the first checkpoint the run gives its
    /// folder back (no epoch ended, so its files hold no results), so the same command with a lower
    /// --lr can use it.
    fn diverged(&self, loss: f64) -> anyhow::Error {
        let (step, checkpoints) = (self.position.step + 1, self.out_dir.join(CHECKPOINTS));
        if checkpoints.exists() {
            return anyhow::anyhow!(
                "training diverged at step {step}: loss is {loss}; the last good checkpoint is in {} (try a lower --lr)",
                checkpoints.display()
            );
        }
        let files = [super::run_folder::CONFIG, super::run_folder::DATA_INFO, super::run_folder::METRICS];
        // The lock's file too: this run ends with this error, and the folder is free for the next.
        for file in files.into_iter().chain([super::run_folder::LOCK]) {
            let _ = std::fs::remove_file(self.out_dir.join(file));
        }
        anyhow::anyhow!(
            "training diverged at step {step}: loss is {loss}, before the first checkpoint, so nothing was kept (try a lower --lr)"
        )
    }

    /// The final weights in the run folder, and the run's figures.
    pub fn finish(self) -> anyhow::Result<RunSummary> {
        self.stepper.sync(&self.vs);
        save_weights(&self.vs, &self.out_dir.join(FINAL_WEIGHTS))?;
        let record = self.records.last().context("no epoch was recorded")?;
        let seconds = self.train_seconds;
        Ok(RunSummary {
            model: self.net_config.label(),
            data: self.config.data.to_string(),
            parameters: parameter_count(&self.vs),
            epochs: self.epochs,
            steps: self.position.step,
            train_loss: record.train_loss,
            train_accuracy: record.train_accuracy,
            test_loss: record.test_loss,
            test_error: record.test_error,
            test_accuracy: 1.0 - record.test_error,
            train_seconds: seconds,
            images_per_s: (self.position.step * self.config.batch) as f64 / seconds.max(f64::MIN_POSITIVE),
            precision: self.precision,
            out: self.out_dir.to_path_buf(),
        })
    }
}

/// SGD on one device, or the parallel executor on the run's devices; momentum from a checkpoint.
fn stepper(
    config: &TrainConfig,
    net_config: &NetConfig,
    vs: &VarStore,
    momentum: Named,
    precision: Precision,
) -> anyhow::Result<Stepper> {
    let network = net_config.network();
    let parallel = match &config.devices {
        Some(devices) => Some((&network, devices, config.parallel_plan(net_config)?)),
        None => None,
    };
    Stepper::new(vs, momentum, config.sgd().into(), precision, parallel)
}

/// Where a resumed run stands, with its weights and statistics assigned into `vs`; a new run's start
/// without a checkpoint.
fn restore(
    from: Option<&Checkpoint>,
    vs: &VarStore,
) -> anyhow::Result<(Position, EpochProgress, f64, Named)> {
    let Some(checkpoint) = from else {
        return Ok((Position::default(), EpochProgress::default(), 0.0, Named::new()));
    };
    let (variables, momentum) = read_checkpoint(&checkpoint.tensors, vs)?;
    assign_variables(vs, &variables);
    let s = &checkpoint.sidecar;
    Ok((s.position, s.progress, s.train_seconds, momentum))
}
