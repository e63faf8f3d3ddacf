//! `warpnet plan`: the step-time model (src/planner/step_model.rs) on its own, without timing a step:
//! for a WarpNet on P devices of one kind joined by a link, the fastest placement (or a given one), its
//! predicted step, RS against its WRN twin on one device and against the data-parallel WRN on the same
//! P devices, and the bytes each device holds. The profile is measured here (`--device`) or read from a
//! profile file that `--save-profile` wrote, on this machine or on another (a GPU host).

use std::path::PathBuf;

use clap::Args;
use serde::Serialize;
use tch::Device;

use super::flags::parse_device;
use super::flags::{positive, PrecisionFlag};
use crate::error::input_error;
use crate::model::config::BENCH_CLASSES;
use crate::model::{Architecture, NetConfig, Variant};
use crate::planner::auto_placement::{self, AUTO};
use crate::planner::prediction::{read_profiles, write_profiles, Profiles};
use crate::planner::step_model::{
    links, predict, predict_data_parallel, predict_wrn, GradientSum, Link, Profile,
};
use crate::report::Table;
use crate::runtime::Placement;

/// Bytes in a megabyte, as the tables print them.
const MB: f64 = 1e6;

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// warpnet1 (default), warpnet2, exact or released.
    #[arg(long, value_enum, default_value = "warpnet1")]
    pub variant: Variant,
    #[arg(long, default_value = "2", value_parser = positive)]
    pub k: usize,
    /// Warp layers per stage.
    #[arg(long, default_value = "1", value_parser = positive)]
    pub nwarp: usize,
    /// Widening factor kw.
    #[arg(long, default_value = "4", value_parser = positive)]
    pub width: usize,
    /// Images per step (of the whole network; the data-parallel WRN gives each device its share).
    #[arg(long, default_value = "64", value_parser = positive)]
    pub batch: usize,
    /// Device counts to plan for, e.g. 2,3,4.
    #[arg(long, value_delimiter = ',', default_value = "2", value_parser = positive)]
    pub devices: Vec<usize>,
    /// Between the home and each worker: threads, pcie4, nvlink4, ib100 (docs/speed.md "Links"), or
    /// LATENCY_US:GB_PER_S (e.g. the MPI loopback link `warpnet bench --devices mpi --predict` prints).
    #[arg(long, default_value = "threads", value_parser = links::parse)]
    pub link: Link,
    /// The data-parallel WRN's replicas are MPI ranks that sum their gradients with MPI's all-reduce
    /// (by default they are devices of one process, summed through the home).
    #[arg(long)]
    pub all_reduce: bool,
    /// A placement in the paper's notation instead of the fastest (`auto`).
    #[arg(long, default_value = "auto")]
    pub placement: String,
    /// Read the profile from this file instead of measuring one here.
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// Write the profiles used to this file.
    #[arg(long)]
    pub save_profile: Option<PathBuf>,
    /// Where to measure the profile: cpu, cuda or cuda:I.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// Intra-op threads of every device measured here.
    #[arg(long, default_value = "1", value_parser = positive)]
    pub threads: usize,
    /// CPU devices measured here with this many other cores busy (as a run's other workers keep them).
    #[arg(long, default_value = "0")]
    pub busy_neighbours: usize,
    /// A what-if: every device this many times faster than the profile's (links unchanged).
    #[arg(long, default_value = "1")]
    pub compute_scale: f64,
    #[command(flatten)]
    pub precision: PrecisionFlag,
    #[arg(long)]
    pub json: bool,
}

/// One device count's plan.
#[derive(Debug, Serialize)]
struct PlanRow {
    devices: usize,
    placement: String,
    predicted_ms: f64,
    wrn_one_device_ms: f64,
    wrn_data_parallel_ms: f64,
    /// Against the WRN on one device, and against the data-parallel WRN on the same devices.
    rs_one_device: f64,
    rs_data_parallel: f64,
    /// Bytes each device holds, the home first.
    weights_mb: Vec<f64>,
    activations_mb: Vec<f64>,
}

pub fn run(args: PlanArgs) -> anyhow::Result<()> {
    if !(args.compute_scale.is_finite() && args.compute_scale > 0.0) {
        crate::bail_input!("--compute-scale {}: expected a positive number", args.compute_scale);
    }
    let config = NetConfig::warp(args.k, args.nwarp, args.width, BENCH_CLASSES, args.variant);
    config.validate().map_err(|e| input_error(format!("--k/--nwarp/--width/--variant: {e}")))?;
    if let (Device::Cuda(i), None) = (args.device, &args.profile) {
        crate::runtime::device::check_gpu("--device", i)?;
    }
    let precision = args.precision.decide(&[args.device]).precision;
    let mut profiles = match &args.profile {
        Some(file) => Profiles::from(read_profiles(file)?, file.display().to_string()),
        None => Profiles::measured_on(args.device),
    };
    let batch = args.batch as i64;
    let mut profile_at = |batch: i64| -> anyhow::Result<Profile> {
        Ok(profiles
            .get(&config, (batch, args.threads, args.busy_neighbours), precision)?
            .faster(args.compute_scale))
    };
    let whole = profile_at(batch)?;
    let wrn = predict_wrn(&config, &whole);
    let given = match args.placement.as_str() {
        AUTO => None,
        text => Some(Placement::parse(text, &config.terms())?),
    };
    let mut rows = Vec::new();
    for &p in &args.devices {
        let placement = match &given {
            None => auto_placement::best(&config, p, &whole, &args.link).0,
            Some(placement) => placement.clone(),
        };
        if placement.devices() != p {
            crate::bail_input!("--placement {placement} has {} devices, not {p}", placement.devices());
        }
        let prediction = predict(&config, &placement, &whole, &args.link);
        let sum = GradientSum::over(args.all_reduce);
        let dp = predict_data_parallel(&config, &profile_at(batch / p as i64)?, p, &args.link, sum);
        let mb = |f: fn(&crate::planner::step_model::DeviceBytes) -> f64| {
            prediction.memory.iter().map(|m| f(m) / MB).collect()
        };
        rows.push(PlanRow {
            devices: p,
            placement: placement.to_string(),
            predicted_ms: prediction.step_ms,
            wrn_one_device_ms: wrn,
            wrn_data_parallel_ms: dp,
            rs_one_device: (wrn - prediction.step_ms) / wrn,
            rs_data_parallel: (dp - prediction.step_ms) / dp,
            weights_mb: mb(|m| m.weights),
            activations_mb: mb(|m| m.activations),
        });
    }
    println!("{} at batch {batch}, profile: {}, link: {}", config.label(), whole.device, args.link);
    print!("{}", render(&rows));
    if let Some(file) = &args.save_profile {
        write_profiles(file, profiles.known.values().cloned().collect())?;
    }
    if args.json {
        super::print_json(&rows)?;
    }
    Ok(())
}

fn render(rows: &[PlanRow]) -> String {
    let mut table = Table::new(&[
        "devices",
        "placement",
        "predicted ms",
        "WRN 1 device ms",
        "WRN data parallel ms",
        "RS vs 1 device",
        "RS vs data parallel",
        "weights MB (home, workers)",
        "activations MB (home, workers)",
    ]);
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(" / ");
    for r in rows {
        table.push(vec![
            r.devices.to_string(),
            r.placement.clone(),
            format!("{:.1}", r.predicted_ms),
            format!("{:.1}", r.wrn_one_device_ms),
            format!("{:.1}", r.wrn_data_parallel_ms),
            format!("{:.1}%", 100.0 * r.rs_one_device),
            format!("{:.1}%", 100.0 * r.rs_data_parallel),
            list(&r.weights_mb),
            list(&r.activations_mb),
        ]);
    }
    table.markdown()
}
