//! TrainConfig: every training setting as one plain value, saved beside the run's artifacts.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::base::optimizer::{SgdSettings, PAPER_LR};
use crate::data::DataSpec;
use crate::model::config::ANY_CLASSES;
use crate::model::{Architecture, DerivativeBn, ModelKind, NetConfig, Variant};
use crate::planner::auto_placement::PlacementSetting;
use crate::planner::prediction;
use crate::precision::{Choice, PrecisionSetting, Workload};
use crate::runtime::{Devices, Placement, Plan};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    // --- network (paper Table 1) ---
    pub model: ModelKind,
    /// Warp factor K (units per warp layer); a WRN has K * Nwarp plain units per stage.
    pub k: usize,
    /// Warp layers per stage.
    pub nwarp: usize,
    /// Widening factor kw.
    pub width: usize,
    /// Warp-layer terms (`--model warp` only; default warpnet1).
    pub variant: Option<Variant>,
    /// Truncation of `--variant exact` to terms of at most this many units.
    pub max_order: Option<usize>,
    /// BatchNorm in the tangent pass (`--model warp` only; default none, the paper's).
    pub derivative_bn: Option<DerivativeBn>,
    // --- data ---
    pub data: DataSpec,
    /// Train on the first N training images only (quick experiments, tests); `None`: all of them.
    pub limit_train: Option<usize>,
    // --- schedule ---
    /// Passes over the training set (ignored when `iters` is set).
    pub epochs: usize,
    /// Total optimizer steps instead of whole epochs.
    pub iters: Option<usize>,
    /// Images per training step.
    pub batch: usize,
    /// Images per evaluation forward pass (memory only; no effect on results).
    pub eval_batch: usize,
    // --- optimizer: SGD with momentum ---
    pub lr: f64,
    /// Epochs (0-based) at which the learning rate is multiplied by `gamma`.
    pub milestones: Vec<usize>,
    pub gamma: f64,
    /// L2 weight decay, added to every parameter's gradient.
    pub wd: f64,
    pub momentum: f64,
    // --- run ---
    pub seed: u64,
    /// libtorch intra-op threads; `None` leaves libtorch's default (all cores).
    pub threads: Option<usize>,
    /// fp32, bf16 mixed precision, or auto (bf16 where the devices compute it natively); a run folder
    /// records the choice, not `auto`. Files written before this setting existed trained in fp32.
    #[serde(default = "trained_in_fp32")]
    pub precision: PrecisionSetting,
    // --- parallel execution ---
    /// Workers of the parallel executor (`cpu:N`, `cuda:0,cuda:1`); `None` trains on one device.
    pub devices: Option<Devices>,
    /// Terms of a warp layer per device, in the paper's notation ("[F1],[F2],[F2'x1]"), or `auto`;
    /// with --devices and no placement: the paper's assignment for --model warp when it fits the
    /// devices, else data parallelism. A run folder records the placement used.
    pub placement: Option<PlacementSetting>,
    /// Output folder; `None` picks runs/<label>[-n].
    pub out: Option<PathBuf>,
    /// Checkpoints kept in the run folder (the newest ones; one is written every epoch).
    pub keep_checkpoints: usize,
    /// Checkpoints within epochs too: every N steps (`500`) or every so long (`90s`, `10m`, `2h`), so
    /// that a killed run loses at most that much; `None`: at the end of each epoch only.
    #[serde(default)]
    pub checkpoint_every: Option<CheckpointEvery>,
}

/// The settings that shape a WarpNet's terms, as flags: they mean nothing for a WRN.
const WARP_FLAGS: [&str; 3] = ["--variant", "--max-order", "--derivative-bn"];

/// The first of [`WARP_FLAGS`] that is given (`given` in their order).
pub fn first_warp_flag(given: [bool; 3]) -> Option<&'static str> {
    WARP_FLAGS.into_iter().zip(given).find(|&(_, given)| given).map(|(flag, _)| flag)
}

/// How often `warpnet train` writes a checkpoint besides the one that ends each epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CheckpointEvery {
    /// At every step that is a multiple of this.
    Steps(usize),
    /// At the first step this many seconds after the last checkpoint.
    Seconds(u64),
}

impl CheckpointEvery {
    /// Whether the step just taken, `since` the last checkpoint, gets one.
    pub fn due(self, step: usize, since: std::time::Duration) -> bool {
        match self {
            CheckpointEvery::Steps(n) => step.is_multiple_of(n),
            CheckpointEvery::Seconds(s) => since.as_secs() >= s,
        }
    }
}

impl std::str::FromStr for CheckpointEvery {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}': expected a number of steps (500) or a duration (90s, 10m, 2h)");
        let (number, unit_seconds) = match text.char_indices().last() {
            Some((i, 's')) => (&text[..i], 1),
            Some((i, 'm')) => (&text[..i], 60),
            Some((i, 'h')) => (&text[..i], 3600),
            _ => (text, 0),
        };
        match number.parse::<u64>() {
            Ok(n) if n > 0 && unit_seconds == 0 => Ok(CheckpointEvery::Steps(n as usize)),
            Ok(n) if n > 0 => n.checked_mul(unit_seconds).map(CheckpointEvery::Seconds).ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

impl TryFrom<String> for CheckpointEvery {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<CheckpointEvery> for String {
    fn from(every: CheckpointEvery) -> String {
        match every {
            CheckpointEvery::Steps(n) => n.to_string(),
            CheckpointEvery::Seconds(s) => format!("{s}s"),
        }
    }
}

/// What a config file or checkpoint without a `precision` key trained in.
fn trained_in_fp32() -> PrecisionSetting {
    PrecisionSetting::Fp32
}

/// Named starting points for a config; flags override them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The paper's CIFAR recipe (section 4.1): WRN-37-4, batch 128, lr 0.1 divided by 10 at epochs 60,
    /// 120 and 160, weight decay 5e-4, momentum 0.9, 204 epochs (80,000 iterations on 50,000 images).
    Paper,
    /// The main job's networks: WRN-13-1 (K = 2, one warp layer per stage, width 1; `--model warp`: its
    /// WarpNet twin) on the embedded Fashion-MNIST subset, 12 epochs, three or four minutes each on 2 cores.
    Demo,
}

impl Preset {
    pub fn config(self) -> TrainConfig {
        match self {
            Preset::Paper => TrainConfig::paper(),
            Preset::Demo => TrainConfig::demo(),
        }
    }
}

impl TrainConfig {
    /// The paper's CIFAR recipe; see [`Preset::Paper`].
    pub fn paper() -> Self {
        TrainConfig {
            model: ModelKind::Wrn,
            k: 2,
            nwarp: 3,
            width: 4,
            variant: None,
            max_order: None,
            derivative_bn: None,
            data: DataSpec::FashionMnistEmbedded,
            limit_train: None,
            epochs: 204,
            iters: None,
            batch: 128,
            eval_batch: 500,
            lr: PAPER_LR,
            milestones: vec![60, 120, 160],
            gamma: 0.1,
            wd: SgdSettings::PAPER.weight_decay,
            momentum: SgdSettings::PAPER.momentum,
            seed: 0,
            threads: None,
            precision: PrecisionSetting::Auto,
            devices: None,
            placement: None,
            out: None,
            keep_checkpoints: 3,
            checkpoint_every: None,
        }
    }

    /// The main job; see [`Preset::Demo`].
    pub fn demo() -> Self {
        TrainConfig { k: 2, nwarp: 1, width: 1, epochs: 12, milestones: vec![8, 11], ..TrainConfig::paper() }
    }

    /// `self` with the settings of the TOML file at `path` laid over it: keys are the field names of
    /// this struct (config.toml of a run folder is such a file); a key it does not have, a value of the
    /// wrong type, or bad TOML is one input-error line naming the file and the line.
    pub fn overlaid_with_file(&self, path: &std::path::Path) -> anyhow::Result<TrainConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            crate::error::input_error(format!("--config {}: cannot read: {e}", path.display()))
        })?;
        let located = |e: toml::de::Error| {
            let line = e.span().map(|s| text[..s.start].lines().count().max(1));
            let at = line.map(|l| format!(" line {l}:")).unwrap_or_default();
            crate::error::input_error(format!("--config {}:{at} {}", path.display(), e.message().trim()))
        };
        let file: toml::Table = toml::from_str(&text).map_err(located)?;
        self.overlaid_with(file).map_err(|e| {
            crate::error::input_error(format!("--config {}: {}", path.display(), e.message().trim()))
        })
    }

    /// `self` with `settings` (keys as the field names of this struct) laid over it; the same path for a
    /// --config file and for `train`'s flags, so a setting is read one way wherever it comes from.
    pub fn overlaid_with(&self, settings: toml::Table) -> Result<TrainConfig, toml::de::Error> {
        let mut merged = toml::Table::try_from(self).expect("a config has a TOML form");
        merged.extend(settings);
        // Re-serialised so that errors point into the user's own text where they can.
        toml::from_str(&toml::to_string(&merged).expect("a TOML table prints"))
    }

    /// The optimizer's settings besides the learning rate.
    pub fn sgd(&self) -> SgdSettings {
        SgdSettings { momentum: self.momentum, weight_decay: self.wd }
    }

    /// The network for a data set with `classes` classes.
    pub fn net(&self, classes: usize) -> NetConfig {
        NetConfig {
            model: self.model,
            k: self.k,
            nwarp: self.nwarp,
            width: self.width,
            in_channels: crate::model::config::INPUT_CHANNELS,
            classes,
            variant: self.variant.unwrap_or(Variant::Warpnet1),
            max_order: self.max_order,
            derivative_bn: self.derivative_bn.unwrap_or(DerivativeBn::None),
        }
    }

    /// The precision of this run's steps on its devices (`--devices`, else the CPU).
    pub fn precision_choice(&self) -> Choice {
        self.precision.resolve(&Devices::or_one_cpu(self.devices.as_ref()).workers(), Workload::Convolutions)
    }

    /// The executor's layout for `--devices` and `--placement` (see runtime/executor.rs), the
    /// placement checked against `net`'s terms; `auto` must have been resolved
    /// ([`TrainConfig::with_auto_placement`]).
    pub fn parallel_plan(&self, net: &NetConfig) -> anyhow::Result<Plan> {
        let devices = Devices::or_one_cpu(self.devices.as_ref());
        let placement = match &self.placement {
            Some(PlacementSetting::Given(placement)) => {
                placement.check(&net.terms())?;
                Some(placement.clone())
            }
            Some(PlacementSetting::Auto) => {
                anyhow::bail!(
                    "--placement auto is resolved before the run (TrainConfig::with_auto_placement)"
                )
            }
            None if net.model == ModelKind::Warp => {
                let paper = Placement::default_for(net.variant, net.k, net.max_order);
                // The paper's assignment when the devices fit it; otherwise whole replicas.
                devices.len().is_multiple_of(paper.devices()).then_some(paper)
            }
            None => None,
        };
        Plan::new(&devices, placement)
    }

    /// The same config with `--placement auto` replaced by the placement the step-time model predicts
    /// fastest on its devices (planner/prediction.rs, a profile measured here), which it prints; the
    /// run folder records that placement. Any other config is returned as it is.
    pub fn with_auto_placement(self) -> anyhow::Result<TrainConfig> {
        if self.placement != Some(PlacementSetting::Auto) {
            return Ok(self);
        }
        let devices = self.devices.clone().expect("validated: --placement needs --devices");
        let (placement, ms) = prediction::auto_for_training(
            &self.net(ANY_CLASSES),
            &devices,
            self.batch as i64,
            self.precision_choice().precision,
        )?;
        println!("auto placement on {devices}: {placement} (predicted {ms:.1} ms per step)");
        Ok(TrainConfig { placement: Some(PlacementSetting::Given(placement)), ..self })
    }

    /// Checks values that flags alone cannot; the message names the flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.model == ModelKind::Wrn {
            let given = [self.variant.is_some(), self.max_order.is_some(), self.derivative_bn.is_some()];
            if let Some(flag) = first_warp_flag(given) {
                return Err(format!("{flag} means nothing for --model wrn (a WRN has no warp terms)"));
            }
        }
        self.net(ANY_CLASSES).validate()?;
        if self.batch < 2 {
            return Err(format!(
                "--batch must be at least 2 (BatchNorm needs two images), got {}",
                self.batch
            ));
        }
        if self.eval_batch == 0 {
            return Err("--eval-batch must be at least 1".into());
        }
        if self.iters.is_none() && self.epochs == 0 {
            return Err("--epochs must be at least 1".into());
        }
        if self.iters == Some(0) {
            return Err("--iters must be at least 1".into());
        }
        for (flag, value) in
            [("--lr", self.lr), ("--gamma", self.gamma), ("--wd", self.wd), ("--momentum", self.momentum)]
        {
            if !value.is_finite() || value < 0.0 {
                return Err(format!("{flag} must be a finite number >= 0, got {value}"));
            }
        }
        if self.lr == 0.0 {
            return Err("--lr must be positive".into());
        }
        if self.milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err(format!("--milestones must increase, got {:?}", self.milestones));
        }
        if self.placement.is_some() && self.devices.is_none() {
            return Err("--placement needs --devices (the workers its brackets run on)".into());
        }
        if self.limit_train == Some(0) {
            return Err("--limit-train must be at least 1".into());
        }
        if self.keep_checkpoints == 0 {
            return Err("--keep-checkpoints must be at least 1".into());
        }
        if self.threads == Some(0) {
            return Err("--threads must be at least 1".into());
        }
        Ok(())
    }
}
