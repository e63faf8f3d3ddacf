//! LmTrainConfig: every setting of a language-model run as one plain value, the flags of
//! `warpnet lm train` with their defaults, saved as the run folder's config.toml.
//!
//! The recipe is GPT's: AdamW (betas 0.9/0.95, decay on matrices only), a linear warm-up to the peak
//! learning rate, then a cosine decay to a share of it at the last step.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::base::optimizer::AdamWSettings;
use crate::data::text;
use crate::model::transformer::LmConfig;
use crate::planner::auto_placement::PlacementSetting;
use crate::precision::{Choice, PrecisionSetting, Workload};
use crate::runtime::{Devices, Plan};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct LmTrainConfig {
    #[command(flatten)]
    pub model: LmConfig,
    /// The corpus: text:PATH (a file, or a folder of files read in order of name) or fortunes
    /// (Debian's `fortunes` package, installed by `scripts/setup.sh --fortunes`).
    #[arg(long, default_value = "fortunes", value_parser = text::parse_spec)]
    pub data: PathBuf,
    /// Share of the corpus, at its end, held out for validation.
    #[arg(long, default_value_t = 0.1)]
    pub validation_share: f64,
    /// Sequences of `context` bytes per step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Optimizer steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Peak learning rate, reached at the end of the warm-up.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Steps of linear warm-up from 0 to --lr.
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// The learning rate at the last step, as a share of --lr (the cosine's floor).
    #[arg(long, default_value_t = 0.1)]
    pub min_lr_share: f64,
    /// AdamW's decoupled weight decay (matrices and embeddings only).
    #[arg(long, default_value_t = AdamWSettings::GPT.weight_decay)]
    pub weight_decay: f64,
    /// Steps between evaluations; each writes a metrics line and a checkpoint.
    #[arg(long, default_value_t = 200)]
    pub eval_every: usize,
    /// Validation batches per evaluation (evenly spaced through the validation part; the same ones
    /// every time).
    #[arg(long, default_value_t = 16)]
    pub eval_batches: usize,
    /// Seed of the initial weights and of the training batches' offsets.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// libtorch intra-op threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// fp32, bf16 (mixed: matrix products in bfloat16, master weights and AdamW in fp32) or auto
    /// (bf16 on matrix units: GPUs of compute capability 8.0+, AMX CPUs; with AVX512-BF16 alone where a
    /// timed MLP runs clearly faster in it; fp32 elsewhere).
    #[arg(long, value_enum, default_value_t)]
    pub precision: PrecisionSetting,
    /// Workers of the parallel executor (cpu:N, cuda:0,cuda:1, mpi); none: one device.
    #[arg(long)]
    pub devices: Option<Devices>,
    /// A warp layer's terms per device ("[F1],[F2,F2'F1]") or auto; with --devices and none, whole
    /// replicas (data parallelism).
    #[arg(long)]
    pub placement: Option<PlacementSetting>,
    /// Checkpoints kept in the run folder (the newest).
    #[arg(long, default_value_t = 2)]
    pub keep_checkpoints: usize,
}

/// Every setting at its flag's default (the defaults live on the flags above, once).
impl Default for LmTrainConfig {
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: LmTrainConfig,
        }
        <Defaults as clap::Parser>::parse_from(["warpnet"]).config
    }
}

impl LmTrainConfig {
    /// AdamW with this run's weight decay and GPT's moments.
    pub fn adamw(&self) -> AdamWSettings {
        AdamWSettings { weight_decay: self.weight_decay, ..AdamWSettings::GPT }
    }

    /// The learning rate of step `step` (0-based): linear warm-up over `warmup` steps, then a cosine
    /// from `lr` down to `min_lr_share * lr` at the last step.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.lr * (step + 1) as f64 / self.warmup as f64;
        }
        let decay_steps = (self.steps - self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / decay_steps).min(1.0);
        let floor = self.min_lr_share * self.lr;
        floor + (self.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// The precision of this run's steps on its devices (`--devices`, else the CPU).
    pub fn precision_choice(&self) -> Choice {
        self.precision.resolve(&Devices::or_one_cpu(self.devices.as_ref()).workers(), Workload::Transformer)
    }

    /// The executor's layout for --devices and --placement, the placement checked against the model's
    /// terms (`auto` resolved before: [`LmTrainConfig::with_auto_placement`]).
    pub fn parallel_plan(&self) -> anyhow::Result<Plan> {
        let devices = Devices::or_one_cpu(self.devices.as_ref());
        let placement = match &self.placement {
            Some(PlacementSetting::Given(placement)) => {
                placement.check(&crate::model::Architecture::terms(&self.model))?;
                Some(placement.clone())
            }
            Some(PlacementSetting::Auto) => anyhow::bail!("--placement auto is resolved before the run"),
            None => None,
        };
        Plan::new(&devices, placement)
    }

    /// The same config with `--placement auto` replaced by the placement the step-time model predicts
    /// fastest (printed with its prediction); any other config as it is.
    pub fn with_auto_placement(self) -> anyhow::Result<LmTrainConfig> {
        if self.placement != Some(PlacementSetting::Auto) {
            return Ok(self);
        }
        let devices = self.devices.clone().expect("validated: --placement needs --devices");
        let precision = self.precision_choice().precision;
        let (placement, ms) = crate::planner::prediction::auto_for_training(
            &self.model,
            &devices,
            self.batch as i64,
            precision,
        )?;
        println!("auto placement on {devices}: {placement} (predicted {ms:.1} ms per step)");
        Ok(LmTrainConfig { placement: Some(PlacementSetting::Given(placement)), ..self })
    }

    /// Checks what flags alone cannot; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        self.model.validate()?;
        for (flag, value) in [
            ("--batch", self.batch),
            ("--steps", self.steps),
            ("--eval-every", self.eval_every),
            ("--eval-batches", self.eval_batches),
            ("--keep-checkpoints", self.keep_checkpoints),
        ] {
            if value == 0 {
                return Err(format!("{flag} must be at least 1, got 0"));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!("--lr must be a positive number, got {}", self.lr));
        }
        for (flag, value) in [("--min-lr-share", self.min_lr_share), ("--weight-decay", self.weight_decay)] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("{flag} must be a finite number >= 0, got {value}"));
            }
        }
        if !(self.validation_share > 0.0 && self.validation_share < 1.0) {
            return Err(format!("--validation-share must be between 0 and 1, got {}", self.validation_share));
        }
        if self.placement.is_some() && self.devices.is_none() {
            return Err("--placement needs --devices (the workers its brackets run on)".into());
        }
        if self.threads == Some(0) {
            return Err("--threads must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        config: LmTrainConfig,
    }

    #[test]
    fn warm_up_then_cosine_to_the_floor() {
        let config = Flags::parse_from(["lm", "--steps", "110", "--warmup", "10", "--lr", "1"]).config;
        // Hand-computed: (s + 1) / 10 during the warm-up; then 0.1 + 0.9 * (1 + cos(pi p)) / 2.
        for (step, expected) in [(0, 0.1), (9, 1.0), (10, 1.0), (60, 0.55), (110, 0.1)] {
            assert!((config.lr_at(step) - expected).abs() < 1e-12, "step {step}: {}", config.lr_at(step));
        }
    }
}
