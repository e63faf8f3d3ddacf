//! The step-time model applied to runs: each benchmark run's predicted milliseconds, and `auto`
//! placements resolved (of benchmark runs and of training runs), from profiles measured on this
//! machine (planner/profile.rs) at each run's batch share and threads per device, or read from a
//! profile file. Threads of this process are reached by [`links::THREADS`]; MPI ranks by the link
//! measured to rank 1 ([`mpi_link`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::Device;

use super::auto_placement;
use super::comparison::RunSpec;
use super::profile::{self, Bench};
use super::stats::median;
use super::step_model::{gradient_sum_ms, links, predict, predict_wrn, GradientSum, Link, Profile};
use crate::base::atomic_file::write_atomic;
use crate::error::input_error;
use crate::model::{Architecture, ModelKind};
use crate::precision::Precision;
use crate::runtime::mpi::remote;
use crate::runtime::{Devices, Placement};

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
        network: &dyn Architecture,
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
            .or_insert_with(|| profile::measure(network, batch, precision, bench, PROFILE_REPEATS)))
    }
}

/// The link to rank 1 of this MPI job, measured: latency half a small message's round trip,
/// bandwidth a large one's bytes over the rest of half its round trip.
pub fn mpi_link() -> Link {
    let small = median(&remote::round_trips_ms(1, SMALL_BYTES, LINK_REPEATS)) / 2.0;
    let large = median(&remote::round_trips_ms(1, LARGE_BYTES, LINK_REPEATS)) / 2.0;
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

/// `--placement auto` for a training run of `network` on `devices` at `batch`: the fastest placement
/// on all of them (one replica), from a profile measured on the first worker device, reached by
/// threads of this process or, over MPI, by the link measured to rank 1 (copies between GPUs of one
/// process are not modelled: counted as threads'). Returns it with its predicted step.
pub fn auto_for_training(
    network: &dyn Architecture,
    devices: &Devices,
    batch: i64,
    precision: Precision,
) -> anyhow::Result<(Placement, f64)> {
    if network.terms().len() < 2 {
        crate::bail_input!(
            "--placement auto chooses where a warp layer's terms go; {} has one term per layer (nothing to place)",
            network.label()
        );
    }
    let link = if devices.mpi { mpi_link() } else { links::THREADS };
    let mut profiles = Profiles::measured_on(devices.workers().first().copied().unwrap_or(Device::Cpu));
    let threads = devices.threads_per_worker();
    let profile = profiles.get(network, (batch, threads, busy_neighbours(devices, threads)), precision)?;
    let (placement, prediction) = auto_placement::best(network, devices.len(), profile, &link);
    Ok((placement, prediction.step_ms))
}

/// `network`'s step at `batch` predicted on one CPU device and, for P = 2..=`most` CPU workers of this
/// process, the placement of its terms predicted fastest there: (P, placement, predicted ms) each,
/// from profiles measured here (P = 1 computes on every core; P > 1 shares them).
pub fn on_cpu_workers(
    network: &dyn Architecture,
    batch: i64,
    precision: Precision,
    most: usize,
) -> anyhow::Result<Vec<(usize, Placement, f64)>> {
    let mut profiles = Profiles::measured_on(Device::Cpu);
    let one = Placement::single_device(&network.terms());
    let mut rows = Vec::new();
    for p in 1..=most {
        let devices = Devices::cpu(p);
        let threads = devices.threads_per_worker();
        let profile =
            profiles.get(network, (batch, threads, busy_neighbours(&devices, threads)), precision)?;
        let (placement, prediction) = match p {
            1 => (one.clone(), predict(network, &one, profile, &links::THREADS)),
            _ => auto_placement::best(network, p, profile, &links::THREADS),
        };
        rows.push((p, placement, prediction.step_ms));
    }
    Ok(rows)
}

/// The CPU workers of `devices`, each on `threads` threads, that compute beside each one at once: the
/// others of the run, as many as the cores hold (ranks under mpirun count as CPU workers of this
/// host).
fn busy_neighbours(devices: &Devices, threads: usize) -> usize {
    let cpu_workers = match devices.mpi {
        true => devices.len(),
        false => devices.workers().iter().filter(|d| **d == Device::Cpu).count(),
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
    let network = &run.config;
    let replica = match &run.placement {
        Some(placement) if placement.devices() > 1 => predict(network, placement, profile, link).step_ms,
        _ if run.config.model == ModelKind::Wrn => predict_wrn(network, profile),
        _ => predict(network, &Placement::single_device(&network.terms()), profile, link).step_ms,
    };
    replica + gradient_sum_ms(network, profile, run_replicas(run), link, GradientSum::over(run.devices.mpi))
}

/// A profile file: the profiles of one device kind at one or more batches (JSON).
#[derive(Serialize, Deserialize)]
struct ProfileFile {
    profiles: Vec<Profile>,
}

/// The profiles of `file`; a missing or malformed file is one line naming it (exit 2).
pub fn read_profiles(file: &Path) -> anyhow::Result<Vec<Profile>> {
    let text = std::fs::read_to_string(file).map_err(|e| input_error(format!("{}: {e}", file.display())))?;
    let parsed: ProfileFile = serde_json::from_str(&text)
        .map_err(|e| input_error(format!("{}: not a warpnet profile file ({e})", file.display())))?;
    Ok(parsed.profiles)
}

/// Writes `profiles` to `file` atomically, and says so.
pub fn write_profiles(file: &Path, profiles: Vec<Profile>) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(&ProfileFile { profiles })?;
    write_atomic(file, text.as_bytes())?;
    println!("profiles written: {}", file.display());
    Ok(())
}

/// The step-time model's prediction for each of `runs` at `batch` (their `auto` placements resolved
/// and printed), from the profile file `files.0` or profiles measured here on the runs' own kind of
/// device (the first worker of the first run in this process), written to `files.1`.
pub fn predict_runs(
    runs: &mut [RunSpec],
    batch: i64,
    precision: Precision,
    (profile, save_profile): (Option<&Path>, Option<&Path>),
) -> anyhow::Result<Vec<f64>> {
    let mut profiles = match profile {
        Some(file) => Profiles::from(read_profiles(file)?, file.display().to_string()),
        None => Profiles::measured_on(
            runs.iter()
                .find(|r| !r.devices.mpi)
                .and_then(|r| r.devices.workers().first().copied())
                .unwrap_or(Device::Cpu),
        ),
    };
    let (predicted, mpi) = plan(runs, batch, precision, &mut profiles)?;
    if let Some(link) = mpi {
        println!("MPI link to rank 1, measured: {link} (warpnet plan --link {})", link.figures());
    }
    if let Some(file) = save_profile {
        write_profiles(file, profiles.known.values().cloned().collect())?;
    }
    for run in runs.iter().filter(|r| r.auto) {
        println!("auto placement for {} on {}: {}", run.config.label(), run.devices, run.layout());
    }
    Ok(predicted)
}
