//! Training steps of a language model timed on random bytes: the step `lm train` takes (the same
//! stepper, optimizer and precision), on one device or through the parallel executor.

use std::time::Instant;

use tch::{nn::VarStore, Device};

use super::config::LmTrainConfig;
use super::evaluate::as_input;
use crate::base::named::Named;
use crate::model::{Architecture, Net};

/// Milliseconds of each of `steps` steps of `config`'s model at its batch on its devices, after
/// `warmup` untimed ones (`auto` placement resolved before).
pub fn step_times(config: &LmTrainConfig, warmup: usize, steps: usize) -> anyhow::Result<Vec<f64>> {
    if let Some(threads) = config.threads {
        tch::set_num_threads(threads as i32);
    }
    tch::manual_seed(config.seed as i64);
    let precision = config.precision_choice().precision;
    let vs = VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), &config.model);
    let mut stepper = super::session::stepper(config, &vs, Named::new(), precision)?;
    let (tokens, next) = config.model.random_batch(config.batch as i64, Device::Cpu);
    let inputs = as_input(&tokens);
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let started = Instant::now();
        stepper.step(&net, &inputs, &next, config.lr);
        if i >= warmup {
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times)
}
