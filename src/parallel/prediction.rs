//! The step-time model applied to benchmark runs: each run's predicted milliseconds, and `auto`
//! placements resolved, from profiles measured on this machine (parallel/profile.rs) at each run's
//! batch share and threads per device, or read from a profile file. Threads of this process are
//! reached by [`links::THREADS`]; MPI ranks by the link measured to rank 1 ([`mpi_link`]).

use std::collections::BTreeMap;

use tch::Device;

use super::auto_placement;
use super::comparison::RunSpec;
use super::mpi::remote;
use super::placement::Placement;
use super::profile::{self, Bench};
use super::step_model::{gradient_sum_ms, links, predict, predict_wrn, GradientSum, Link, Profile};
use crate::error::input_error;
use crate::model::net::layer_operator;
use crate::model::{ModelKind, NetConfig};
use crate::precision::Precision;

/// Timed repeats of each piece of a profile (after one warm-up).
const PROFILE_REPEATS: usize = 5;
/// Round trips timed per message size when measuring the MPI link.
const LINK_REPEATS: usize = 20;
/// A message small enough that its time is the latency, and one large enough to be the bandwidth's
/// (the size of a (64, 64, 32, 32) fp32 activation, WRN-13-4's largest at batch 64).
const SMALL_BYTES: usize = 8;
const LARGE_BYTES: usize = 16 << 20;

/// What a profile is looked up by: batch, threads per device, busy neighbours.
pub type ProfileKey = (i64, usize, usize);

/// Profiles by [`ProfileKey`]: measured here on `device` when missing, unless they were read from a
/// file (`from`), which must then hold every one asked for.
pub struct Profiles {
    pub known: BTreeMap<ProfileKey, Profile>,
    file: Option<String>,
    device: Device,
}

impl Profiles {
    /// None yet: each measured on `device` when first asked for.
    pub fn measured_on(device: Device) -> Profiles {
        Profiles { known: BTreeMap::new(), file: None, device }
    }

    /// A profile file's profiles (`file` names it in errors), each at its batch and threads.
    pub fn from(profiles: Vec<Profile>, file: String) -> Profiles {
        let known = profiles.into_iter().map(|p| ((p.batch, p.threads, p.busy_neighbours), p)).collect();
        Profiles { known, file: Some(file), device: Device::Cpu }
    }

    /// The profile at `key`.
    pub fn get(
        &mut self,
        config: &NetConfig,
        key: ProfileKey,
        precision: Precision,
    ) -> anyhow::Result<&Profile> {
        let describe =
            |(b, t, n): &ProfileKey| format!("batch {b}, {t} threads per device, {n} busy neighbours");
        if let (Some(file), false) = (&self.file, self.known.contains_key(&key)) {
            let held: Vec<String> = self.known.keys().map(describe).collect();
            let (wanted, held) = (describe(&key), held.join("; "));
            return Err(input_error(format!("{file}: no profile at {wanted} (it holds {held})")));
        }
        let (batch, threads, busy_neighbours) = key;
        let bench = Bench { device: self.device, threads, busy_neighbours };
        Ok(self
            .known
            .entry(key)
            .or_insert_with(|| profile::measure(config, batch, precision, bench, PROFILE_REPEATS)))
    }
}

/// The link to rank 1 of this MPI job, measured: latency half a small message's round trip,
/// bandwidth a large one's bytes over the rest of half its round trip.
pub fn mpi_link() -> Link {
    let small = remote::round_trip_ms(1, SMALL_BYTES, LINK_REPEATS) / 2.0;
    let large = remote::round_trip_ms(1, LARGE_BYTES, LINK_REPEATS) / 2.0;
    Link { latency_ms: small, bytes_per_ms: LARGE_BYTES as f64 / (large - small).max(1e-6) }
}

/// Resolves every `auto` run's placement and returns each run's predicted step, from `profiles`
/// (completed by measuring here), and the MPI link measured when a run is over ranks.
pub fn plan(
    runs: &mut [RunSpec],
    batch: i64,
    precision: Precision,
    profiles: &mut Profiles,
) -> anyhow::Result<(Vec<f64>, Option<Link>)> {
    let mpi = runs.iter().any(|r| r.devices.mpi).then(mpi_link);
    let predicted = runs
        .iter_mut()
        .map(|run| {
            let link = if run.devices.mpi { mpi.expect("measured for MPI runs") } else { links::THREADS };
            let replicas = if run.auto { 1 } else { run_replicas(run) };
            let threads = run.threads_per_device();
            let key = (batch / replicas as i64, threads, busy_neighbours(&run.devices, threads));
            let profile = profiles.get(&run.config, key, precision)?;
            if run.auto {
                let (placement, _) = auto_placement::best(&run.config, run.devices.len(), profile, &link);
                run.placement = (placement.devices() > 1).then_some(placement);
            }
            Ok(predicted_ms(run, profile, &link))
        })
        .collect::<anyhow::Result<Vec<f64>>>()?;
    Ok((predicted, mpi))
}

/// `--placement auto` for a training run of `config` on `devices` at `batch`: the fastest placement
/// on all of them (one replica), from a profile measured on the first worker device, reached by
/// threads of this process or, over MPI, by the link measured to rank 1 (copies between GPUs of one
/// process are not modelled: counted as threads'). Returns it with its predicted step.
pub fn auto_for_training(
    config: &NetConfig,
    devices: &super::Devices,
    batch: i64,
    precision: Precision,
) -> anyhow::Result<(Placement, f64)> {
    if config.model != ModelKind::Warp {
        crate::bail_input!("--placement auto chooses a WarpNet's placement; a WRN has no terms to place");
    }
    let link = if devices.mpi { mpi_link() } else { links::THREADS };
    let mut profiles = Profiles::measured_on(devices.workers.first().copied().unwrap_or(Device::Cpu));
    let threads = devices.threads_per_worker();
    let profile = profiles.get(config, (batch, threads, busy_neighbours(devices, threads)), precision)?;
    let (placement, prediction) = auto_placement::best(config, devices.len(), profile, &link);
    Ok((placement, prediction.step_ms))
}

/// The CPU workers of `devices`, each on `threads` threads, that compute beside each one at once: the
/// others of the run, as many as the cores hold (ranks under mpirun count as CPU workers of this
/// host).
fn busy_neighbours(devices: &super::Devices, threads: usize) -> usize {
    let cpu_workers = match devices.mpi {
        true => devices.len(),
        false => devices.workers.iter().filter(|d| **d == Device::Cpu).count(),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cpu_workers.min(cores / threads.max(1)).saturating_sub(1)
}

/// Replicas of a run: data-parallel groups of its placement's size (1 without a placement).
fn run_replicas(run: &RunSpec) -> usize {
    run.devices.len() / run.placement.as_ref().map_or(1, Placement::devices)
}

/// A run's step from `profile` (measured at its replicas' share of the batch): one replica's, and
/// the replicas' gradients summed: through the home in one process, by MPI's all-reduce over ranks.
fn predicted_ms(run: &RunSpec, profile: &Profile, link: &Link) -> f64 {
    let config = &run.config;
    let replica = match &run.placement {
        Some(placement) if placement.devices() > 1 => predict(config, placement, profile, link).step_ms,
        _ if config.model == ModelKind::Wrn => predict_wrn(config, profile),
        _ => predict(config, &Placement::single_device(&layer_operator(config).0), profile, link).step_ms,
    };
    replica + gradient_sum_ms(config, profile, run_replicas(run), link, GradientSum::over(run.devices.mpi))
}
