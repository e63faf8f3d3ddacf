//! Training a language model: AdamW steps on windows of the corpus, an evaluation on the validation
//! part every `eval_every` steps (a metrics line and a checkpoint each), the final weights in the run
//! folder. A run interrupted (Ctrl-C, SIGTERM, or killed) continues from its last checkpoint with
//! `--resume` and ends with the same weights, bit for bit on CPU: a step's batch derives from
//! (seed, step) alone and the checkpoint holds AdamW's moments and step count.
//!
//! ```text
//! RUN/config.toml        the resolved LmTrainConfig
//! RUN/metrics.jsonl      one LmRecord per evaluation
//! RUN/model.safetensors  the final weights
//! RUN/model.crc32.json   their tensors' CRC-32, verified when they are read
//! RUN/checkpoints/       step-N.safetensors (weights, AdamW state) + step-N.json (LmSidecar)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device};

use super::config::LmTrainConfig;
use super::evaluate::{as_input, validation_loss, LmRecord, LmSummary};
use crate::base::atomic_file::write_atomic;
use crate::base::named::{assign_variables, copy_variables, Named};
use crate::data::text::{Corpus, TextBatch};
use crate::model::{Architecture, Net, Network};
use crate::precision::{Precision, Workload};
use crate::train::checkpoint::{
    latest_verified, read_checkpoint, save_weights, write_checkpoint, CHECKPOINTS,
};
use crate::train::evaluate::evaluation_precision;
use crate::train::metrics::{open_metrics, MetricsLog};
use crate::train::outcome::{interrupt, parameter_count, set_up_process, Interrupted};
use crate::train::progress::Verbosity;
use crate::train::run_folder::{WriterLock, CONFIG, FINAL_WEIGHTS};
use crate::train::step::Stepper;

/// Version of the sidecar written below.
pub const LM_CHECKPOINT_FORMAT: u32 = 1;
/// The subcommand that resumes a run (named in the interruption's message).
const RESUME: &str = "lm resume";

/// A checkpoint's JSON sidecar: what its safetensors do not hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmSidecar {
    pub format: u32,
    pub config: LmTrainConfig,
    /// Steps taken.
    pub step: usize,
    /// Seconds of training steps so far (evaluations excluded).
    pub train_seconds: f64,
    /// The training loss summed since the last evaluation, and its steps (the next record's mean).
    pub loss_sum: f64,
    pub losses: usize,
    /// CRC-32 of every tensor of the safetensors beside it.
    pub checksums: BTreeMap<String, u32>,
}

/// Trains from scratch as `config` says into `out` (which must hold no run).
pub fn train(config: &LmTrainConfig, out: &Path, verbosity: Verbosity) -> anyhow::Result<LmSummary> {
    if out.join(CONFIG).exists() {
        crate::bail_input!(
            "--out {}: holds a run already (continue it with `warpnet lm resume {}`, or choose another folder)",
            out.display(),
            out.display()
        );
    }
    Session::start(config.clone(), out, verbosity, None)?.run()
}

/// Continues the run in `run` from its newest checkpoint that verifies, as it was configured.
pub fn resume(run: &Path, verbosity: Verbosity) -> anyhow::Result<LmSummary> {
    let parse = |text: &str, path: &Path| -> anyhow::Result<LmSidecar> {
        let sidecar: LmSidecar = serde_json::from_str(text).map_err(|e| {
            crate::error::input_error(format!("{}: not a warpnet lm checkpoint ({e})", path.display()))
        })?;
        if sidecar.format != LM_CHECKPOINT_FORMAT {
            crate::bail_input!(
                "{}: checkpoint format {}, expected {LM_CHECKPOINT_FORMAT}",
                path.display(),
                sidecar.format
            );
        }
        Ok(sidecar)
    };
    // The folder's lock first, so that a second writer is refused before any checkpoint is read.
    let lock = WriterLock::acquire_for_resume(run)?;
    let (tensors, sidecar) = latest_verified(run, parse, |s| Some(&s.checksums))?;
    Session::start(sidecar.config.clone(), run, verbosity, Some((tensors, sidecar, lock)))?.run()
}

/// A run while it trains.
struct Session<'a> {
    config: LmTrainConfig,
    out: &'a Path,
    verbosity: Verbosity,
    corpus: Corpus,
    validation: Vec<TextBatch>,
    vs: VarStore,
    net: Net,
    stepper: Stepper,
    eval_precision: Precision,
    step: usize,
    train_seconds: f64,
    loss_sum: f64,
    losses: usize,
    log: MetricsLog,
    records: Vec<LmRecord>,
    _lock: WriterLock,
}

impl<'a> Session<'a> {
    /// Everything before the first step; a run refused here leaves its folder untouched.
    fn start(
        config: LmTrainConfig,
        out: &'a Path,
        verbosity: Verbosity,
        from: Option<(PathBuf, LmSidecar, WriterLock)>,
    ) -> anyhow::Result<Self> {
        // A resumed run holds its folder's lock already (taken before its checkpoint was chosen).
        let (from, held) = from.map_or((None, None), |(tensors, s, lock)| (Some((tensors, s)), Some(lock)));
        config.validate().map_err(crate::error::input_error)?;
        set_up_process(config.threads, config.devices.as_ref(), config.seed)?;
        let choice = config.precision_choice();
        let config = LmTrainConfig { precision: choice.precision.into(), ..config }.with_auto_placement()?;
        let (context, batches) = (config.model.context, config.eval_batches);
        let corpus = Corpus::read(&config.data, config.validation_share, context)?;
        let validation = corpus.validation_batches(batches, config.batch, context);
        let vs = VarStore::new(Device::Cpu);
        let net = Net::new(&vs.root(), &config.model);
        let (momentum, step, train_seconds, loss_sum, losses) = match &from {
            None => (Named::new(), 0, 0.0, 0.0, 0),
            Some((tensors, s)) => {
                let (variables, momentum) = read_checkpoint(tensors, &vs)?;
                assign_variables(&vs, &variables);
                (momentum, s.step, s.train_seconds, s.loss_sum, s.losses)
            }
        };
        let stepper = stepper(&config, &vs, momentum, choice.precision)?;
        let lock = match held {
            Some(lock) => lock,
            None => WriterLock::acquire(out)?,
        };
        if from.is_none() {
            std::fs::create_dir_all(out)
                .map_err(|e| crate::error::input_error(format!("--out {}: {e}", out.display())))?;
            write_atomic(&out.join(CONFIG), toml::to_string(&config)?.as_bytes())?;
        }
        let (records, log) = open_metrics(out, step)?;
        if verbosity == Verbosity::Normal {
            let resumed = if from.is_some() { format!(", resumed at step {step}") } else { String::new() };
            println!(
                "{} ({} parameters) on {}: {} bytes train, the last {:.0}% ({} bytes) validation; {} steps of {} x {} bytes, precision {choice}{resumed}",
                config.model.label(),
                parameter_count(&vs),
                corpus.source.display(),
                corpus.train.len(),
                100.0 * config.validation_share,
                corpus.validation.len(),
                config.steps,
                config.batch,
                context
            );
        }
        let eval_precision =
            evaluation_precision(choice.precision, config.devices.as_ref(), Workload::Transformer);
        Ok(Session {
            config,
            out,
            verbosity,
            corpus,
            validation,
            vs,
            net,
            stepper,
            eval_precision,
            step,
            train_seconds,
            loss_sum,
            losses,
            log,
            records,
            _lock: lock,
        })
    }

    /// Steps to the end, an evaluation and a checkpoint every `eval_every`, then the final weights.
    fn run(mut self) -> anyhow::Result<LmSummary> {
        let c = &self.config;
        let bar = crate::train::progress::steps_bar(self.verbosity, c.steps);
        bar.set_position(self.step as u64);
        let mut interval = (Instant::now(), self.step);
        while self.step < self.config.steps {
            let c = &self.config;
            let batch = self.corpus.train_batch(c.seed, self.step, c.batch, c.model.context);
            let started = Instant::now();
            let lr = c.lr_at(self.step);
            let result = self.stepper.step(&self.net, &as_input(&batch.inputs), &batch.targets, lr);
            self.train_seconds += started.elapsed().as_secs_f64();
            if !result.loss.is_finite() {
                bar.finish_and_clear();
                anyhow::bail!(
                    "training diverged at step {}: loss is {}; the last good checkpoint is in {} (try a lower --lr)",
                    self.step + 1,
                    result.loss,
                    self.out.join(CHECKPOINTS).display()
                );
            }
            (self.loss_sum, self.losses, self.step) =
                (self.loss_sum + result.loss, self.losses + 1, self.step + 1);
            bar.inc(1);
            bar.set_message(format!("loss {:.3}", self.loss_sum / self.losses as f64));
            if self.step.is_multiple_of(self.config.eval_every) || self.step == self.config.steps {
                bar.suspend(|| self.evaluate(lr, &mut interval))?;
            }
            let signal = interrupt().swap(0, Ordering::SeqCst) as i32;
            if signal != 0 {
                bar.finish_and_clear();
                let saved = self.checkpoint()?;
                return Err(Interrupted::new(signal, self.step, saved, self.out, RESUME).into());
            }
        }
        bar.finish_and_clear();
        self.finish()
    }

    /// The validation loss, the metrics line and the checkpoint; `interval`: when and at which step
    /// the last one was.
    fn evaluate(&mut self, lr: f64, interval: &mut (Instant, usize)) -> anyhow::Result<()> {
        self.stepper.sync(&self.vs);
        let loss = validation_loss(&self.net, &self.validation, self.eval_precision);
        let tokens = ((self.step - interval.1) * self.config.batch * self.config.model.context) as f64;
        let record = LmRecord {
            step: self.step,
            lr,
            train_loss: self.loss_sum / self.losses.max(1) as f64,
            validation_loss: loss,
            validation_bits_per_byte: loss / std::f64::consts::LN_2,
            seconds: self.train_seconds,
            tokens_per_s: tokens / interval.0.elapsed().as_secs_f64().max(f64::MIN_POSITIVE),
        };
        (self.loss_sum, self.losses) = (0.0, 0);
        // The metrics line first: a run killed between the two redoes these steps from the previous
        // checkpoint, and the resume drops the line.
        self.log.append(&record)?;
        self.checkpoint()?;
        if self.verbosity == Verbosity::Normal {
            println!("{record}");
        }
        self.records.push(record);
        *interval = (Instant::now(), self.step);
        Ok(())
    }

    /// A checkpoint of this moment; its path.
    fn checkpoint(&self) -> anyhow::Result<PathBuf> {
        self.stepper.sync(&self.vs);
        let variables = copy_variables(&self.vs, Device::Cpu);
        let state = self.stepper.momentum();
        write_checkpoint(
            self.out,
            self.step,
            (&variables, &state),
            self.config.keep_checkpoints,
            |checksums| {
                let sidecar = LmSidecar {
                    format: LM_CHECKPOINT_FORMAT,
                    config: self.config.clone(),
                    step: self.step,
                    train_seconds: self.train_seconds,
                    loss_sum: self.loss_sum,
                    losses: self.losses,
                    checksums,
                };
                Ok(serde_json::to_string_pretty(&sidecar)?)
            },
        )
    }

    /// The final weights in the run folder, and the run's figures.
    fn finish(self) -> anyhow::Result<LmSummary> {
        self.stepper.sync(&self.vs);
        save_weights(&self.vs, &self.out.join(FINAL_WEIGHTS))?;
        let last =
            self.records.last().cloned().ok_or_else(|| anyhow::anyhow!("no evaluation was recorded"))?;
        let c = &self.config;
        Ok(LmSummary {
            model: c.model.label(),
            data: c.data.display().to_string(),
            parameters: parameter_count(&self.vs),
            steps: self.step,
            train_loss: last.train_loss,
            validation_loss: last.validation_loss,
            validation_bits_per_byte: last.validation_bits_per_byte,
            train_seconds: self.train_seconds,
            tokens_per_s: (self.step * c.batch * c.model.context) as f64
                / self.train_seconds.max(f64::MIN_POSITIVE),
            precision: c.precision_choice().precision,
            out: self.out.to_path_buf(),
        })
    }
}

/// AdamW on one device, or the parallel executor on the run's devices; its state from a checkpoint.
pub(super) fn stepper(
    config: &LmTrainConfig,
    vs: &VarStore,
    state: Named,
    precision: Precision,
) -> anyhow::Result<Stepper> {
    let network: Network = std::sync::Arc::new(config.model.clone());
    let parallel = match &config.devices {
        Some(devices) => Some((&network, devices, config.parallel_plan()?)),
        None => None,
    };
    Stepper::new(vs, state, config.adamw().into(), precision, parallel)
}
