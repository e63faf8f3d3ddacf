//! A language model's run folder read back (by eval, generate and the analyses): its configuration,
//! and its weights, the final ones or, while it trains, its newest checkpoint that verifies.

use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::Device;

use super::config::LmTrainConfig;
use crate::error::input_error;
use crate::model::transformer::LmConfig;
use crate::model::Net;
use crate::train::checkpoint::{latest_verified, load_weights};
use crate::train::run_folder::{CONFIG, FINAL_WEIGHTS};

/// A trained model on the CPU.
pub struct Trained {
    pub config: LmTrainConfig,
    pub vs: VarStore,
    pub net: Net,
    /// The weights file it was read from.
    pub weights: PathBuf,
}

/// The configuration of the run in `run`; one line naming the file if it is not one.
pub fn read_config(run: &Path) -> anyhow::Result<LmTrainConfig> {
    let path = run.join(CONFIG);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        input_error(format!("{}: cannot read ({e}); not a run folder of `warpnet lm train`?", path.display()))
    })?;
    toml::from_str(&text).map_err(|e| {
        input_error(format!("{}: not a language model's run ({})", path.display(), e.message().trim()))
    })
}

/// The model of the run in `run` built as `model` says (the run's own, or another variant or K: the
/// weights are named by block, whatever the grouping), with the run's weights.
pub fn load(run: &Path, model: impl FnOnce(&LmConfig) -> LmConfig) -> anyhow::Result<Trained> {
    let config = read_config(run)?;
    let model = model(&config.model);
    model.validate().map_err(input_error)?;
    let weights = match run.join(FINAL_WEIGHTS) {
        path if path.exists() => path,
        _ => {
            let parse = |text: &str, path: &Path| {
                serde_json::from_str::<super::session::LmSidecar>(text).map_err(|e| {
                    input_error(format!("{}: not a warpnet lm checkpoint ({e})", path.display()))
                })
            };
            latest_verified(run, parse, |s| Some(&s.checksums))?.0
        }
    };
    let vs = VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), &model);
    load_weights(&vs, &weights)?;
    Ok(Trained { config: LmTrainConfig { model, ..config }, vs, net, weights })
}
