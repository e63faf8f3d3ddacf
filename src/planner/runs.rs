//! A run to time or predict: a network of the base's size on some devices, with a placement, `auto`,
//! or data parallelism (paper Tables 2, 3 and 5 side by side).
//!
//! `warpnet bench --run` writes one as whitespace-separated words: the method, then options, e.g.
//! `wrn cpu:1`, `wrn cpu:2` (data parallel), `warpnet1 k=2 cpu:2 [F1],[F2,F2'x1]`,
//! `warpnet2 k=2 bn=frozen cpu:3`, `exact k=3 order=2 cpu:4 [F1],[F2],[F3],[F2'F1,F3'F1,F3'F2]`.
//! Methods: wrn, exact, warpnet1, warpnet2, released. Options: `k=K`, `bn=none|frozen|exact`,
//! `order=M`, `threads=T` (libtorch threads of every device of the run, home included, so that runs
//! compare devices of one size: `wrn cpu:1 threads=1` against `warpnet1 k=2 cpu:2 threads=1`), a device
//! list (as --devices), a placement (as --placement). Every run has the base
//! network's units per stage and width, so they are twins; a WarpNet without a placement gets the
//! paper's assignment when it fits the devices, else data parallelism. The demo and `reproduce` build
//! their runs as values ([`RunSpec::on`], [`twin`]).

use clap::ValueEnum;

use super::auto_placement::AUTO;
use crate::error::input_error;
use crate::model::{Architecture, DerivativeBn, ModelKind, NetConfig, Variant};
use crate::runtime::{Devices, Placement};

/// One configuration to time.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub config: NetConfig,
    pub devices: Devices,
    pub placement: Option<Placement>,
    /// `threads=T`: intra-op threads of every device; `None`: the cores shared among the workers.
    pub threads: Option<usize>,
    /// `auto` in place of a placement: the step-time model's fastest (planner/prediction.rs), chosen
    /// before timing.
    pub auto: bool,
}

impl RunSpec {
    /// Parses a run (see the module docs) for a base network of `base` shape (units per stage, width,
    /// classes are taken from it).
    pub fn parse(text: &str, base: &NetConfig) -> anyhow::Result<RunSpec> {
        let bad = |what: String| input_error(format!("--run '{text}': {what}"));
        let mut words = text.split_whitespace();
        let method = words.next().ok_or_else(|| bad("empty".into()))?;
        let (model, variant) = match method {
            "wrn" => (ModelKind::Wrn, Variant::Warpnet1),
            m => (
                ModelKind::Warp,
                Variant::from_str(m, true).map_err(|_| bad(format!("unknown method '{m}'")))?,
            ),
        };
        let mut k = if model == ModelKind::Warp { 2 } else { 1 };
        let mut base = base.clone();
        let mut devices = Devices::cpu(1);
        let mut placement_text = None;
        let mut threads = None;
        let mut auto = false;
        for word in words {
            if let Some(value) = word.strip_prefix("k=") {
                k = value.parse().map_err(|_| bad(format!("'{word}': K must be a whole number")))?;
            } else if let Some(mode) = word.strip_prefix("bn=") {
                base.derivative_bn =
                    DerivativeBn::from_str(mode, true).map_err(|_| bad(format!("'{word}'")))?;
            } else if let Some(t) = word.strip_prefix("threads=") {
                let t = t.parse().ok().filter(|&t| t >= 1);
                threads = Some(t.ok_or_else(|| bad(format!("'{word}': T must be a whole number >= 1")))?);
            } else if let Some(m) = word.strip_prefix("order=") {
                base.max_order = Some(m.parse().map_err(|_| bad(format!("'{word}'")))?);
            } else if word.starts_with("cpu") || word.starts_with("cuda") || word == "mpi" {
                devices = word.parse().map_err(bad)?;
            } else if word == AUTO {
                auto = true;
            } else if word.starts_with('[') {
                placement_text = Some(word.to_string());
            } else {
                return Err(bad(format!("unknown word '{word}'")));
            }
        }
        let config = twin(&base, model, variant, k).map_err(bad)?;
        if threads.is_some() && devices.mpi {
            return Err(bad(
                "threads=T sizes workers of this process; a rank's threads are its cores'".into()
            ));
        }
        if auto && (placement_text.is_some() || config.model != ModelKind::Warp) {
            return Err(bad(
                "'auto' chooses a WarpNet's placement: give it instead of one, to a WarpNet".into()
            ));
        }
        let run = placement_text
            .map(|text| text.parse::<Placement>())
            .transpose()
            .and_then(|placement| RunSpec::on(config, devices, placement))
            .map_err(|e| bad(format!("{e:#}")))?;
        Ok(RunSpec { threads, auto, ..run })
    }

    /// `config` on `devices` with `placement` (checked against its terms), or the paper's assignment
    /// for a WarpNet when it fits the devices, else data parallelism.
    pub fn on(config: NetConfig, devices: Devices, placement: Option<Placement>) -> anyhow::Result<RunSpec> {
        let placement = match placement {
            Some(p) => {
                p.check(&config.terms())?;
                Some(p)
            }
            None if config.model == ModelKind::Warp => {
                let paper = Placement::default_for(config.variant, config.k, config.max_order);
                devices.len().is_multiple_of(paper.devices()).then_some(paper)
            }
            None => None,
        };
        Ok(RunSpec { config, devices, placement, threads: None, auto: false })
    }

    /// The same run with every device on `threads` intra-op threads (devices of one size).
    pub fn with_threads(self, threads: usize) -> RunSpec {
        RunSpec { threads: Some(threads), ..self }
    }

    /// The same WarpNet placed by `auto`: the step-time model's fastest placement, chosen before timing.
    pub fn auto_placed(self) -> RunSpec {
        RunSpec { auto: true, placement: None, ..self }
    }

    /// Intra-op threads of each of its devices.
    pub fn threads_per_device(&self) -> usize {
        self.threads.unwrap_or_else(|| self.devices.threads_per_worker())
    }

    /// "[F1],[F2,F2'x1]" for a model-parallel run, "data parallel" for whole replicas on several
    /// devices, "-" for one device.
    pub fn layout(&self) -> String {
        match (&self.placement, self.devices.len()) {
            (Some(p), _) if p.devices() > 1 => p.to_string(),
            (_, 1) => "-".into(),
            _ => "data parallel".into(),
        }
    }
}

/// The run in `--run`'s words, as [`RunSpec::parse`] reads them: `warpnet1 k=3 cpu:3 threads=1 auto`.
impl std::fmt::Display for RunSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.config;
        match c.model {
            ModelKind::Wrn => write!(f, "wrn")?,
            ModelKind::Warp => write!(f, "{} k={}", c.variant, c.k)?,
        }
        if c.derivative_bn != DerivativeBn::None {
            write!(f, " bn={}", c.derivative_bn)?;
        }
        if let Some(order) = c.max_order {
            write!(f, " order={order}")?;
        }
        write!(f, " {}", self.devices)?;
        if let Some(threads) = self.threads {
            write!(f, " threads={threads}")?;
        }
        match (&self.placement, self.auto) {
            (_, true) => write!(f, " {AUTO}"),
            (Some(placement), false) => write!(f, " {placement}"),
            (None, false) => Ok(()),
        }
    }
}

/// The twin of `base` of `model` (`variant` with K = `k` for a WarpNet): the same units per stage,
/// width, classes and derivative BN; the error says what does not fit.
pub fn twin(base: &NetConfig, model: ModelKind, variant: Variant, k: usize) -> Result<NetConfig, String> {
    let units = base.units_per_stage();
    if k == 0 || !units.is_multiple_of(k) {
        return Err(format!("k={k} does not divide the {units} units per stage"));
    }
    let config = NetConfig { model, variant, k, nwarp: units / k, ..base.clone() };
    config.validate()?;
    Ok(config)
}

/// The runs `warpnet bench --table` compares on a machine with `workers` CPU workers to spare (at
/// least 2): the WRN on one device (the baseline of RS), the data-parallel WRN, and WarpNet1/2 with
/// K = 2 on one device and under the placements that fit.
pub fn default_runs(base: &NetConfig, workers: usize) -> anyhow::Result<Vec<RunSpec>> {
    let n = workers.max(2);
    let mut texts = vec![
        "wrn cpu:1".to_string(),
        format!("wrn cpu:{n}"),
        "warpnet1 k=2 cpu:1".into(),
        "warpnet1 k=2 cpu:2 [F1],[F2,F2'x1]".into(),
        "warpnet1 k=2 cpu:2 [F1,F2'x1],[F2]".into(),
        "warpnet1 k=2 cpu:3 [F1],[F2],[F2'x1]".into(),
        "warpnet2 k=2 cpu:2 [F1],[F2,F2'F1]".into(),
        "warpnet1 k=2 cpu:4 [F1],[F2,F2'x1]".into(),
    ];
    if !base.units_per_stage().is_multiple_of(2) {
        texts.retain(|t| t.starts_with("wrn"));
    }
    texts.iter().map(|t| RunSpec::parse(t, base)).collect()
}
