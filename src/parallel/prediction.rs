//! The step-time model applied to benchmark runs: each run's predicted milliseconds, and `auto`
//! placements resolved, from profiles measured on this machine (parallel/profile.rs) at each run's
//! batch share and threads per device. Runs over MPI ranks are not predicted yet (their link is not
//! measured).

use std::collections::BTreeMap;

use super::auto_placement;
use super::comparison::RunSpec;
use super::placement::Placement;
use super::profile;
use super::step_model::{predict, predict_wrn, Link, Profile};
use crate::model::net::layer_operator;
use crate::model::ModelKind;
use crate::precision::Precision;

/// Threads of one process hand tensors over without a copy; a channel send and wake-up costs tens of
/// microseconds (assumed, not measured: against steps of hundreds of milliseconds it does not show).
pub const THREADS: Link = Link { latency_ms: 0.05, bytes_per_ms: f64::INFINITY };
/// Timed repeats of each piece of a profile (after one warm-up).
const PROFILE_REPEATS: usize = 5;

/// Resolves every `auto` run's placement and returns each run's predicted step (`None` over MPI).
pub fn plan(runs: &mut [RunSpec], batch: i64, precision: Precision) -> Vec<Option<f64>> {
    let restore = tch::get_num_threads();
    let mut profiles: BTreeMap<(i64, usize), Profile> = BTreeMap::new();
    let predicted = runs
        .iter_mut()
        .map(|run| {
            if run.devices.mpi {
                return None;
            }
            let replicas = if run.auto { 1 } else { run_replicas(run) };
            let key = (batch / replicas as i64, run.threads_per_device());
            let profile = profiles
                .entry(key)
                .or_insert_with(|| profile::measure(&run.config, key.0, precision, key.1, PROFILE_REPEATS));
            if run.auto {
                let (placement, _) = auto_placement::best(&run.config, run.devices.len(), profile, &THREADS);
                run.placement = (placement.devices() > 1).then_some(placement);
            }
            Some(predicted_ms(run, profile))
        })
        .collect();
    tch::set_num_threads(restore);
    predicted
}

/// Replicas of a run: data-parallel groups of its placement's size (1 without a placement).
fn run_replicas(run: &RunSpec) -> usize {
    run.devices.len() / run.placement.as_ref().map_or(1, Placement::devices)
}

fn predicted_ms(run: &RunSpec, profile: &Profile) -> f64 {
    match &run.placement {
        Some(placement) if placement.devices() > 1 => {
            predict(&run.config, placement, profile, &THREADS).step_ms
        }
        // One device (or whole replicas, each at its share of the batch): the network's units in turn.
        _ if run.config.model == ModelKind::Wrn => predict_wrn(&run.config, profile),
        _ => {
            let terms = layer_operator(&run.config).0;
            predict(&run.config, &Placement::single_device(&terms), profile, &THREADS).step_ms
        }
    }
}
