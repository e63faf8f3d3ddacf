//! `warpnet bench`: the training step stripped of data loading, timed on synthetic batches.
//!
//! Each step is forward, cross-entropy, backward and the SGD update, as in `warpnet train`; the figure
//! is the median over timed steps after warm-up steps (the first steps pay for allocations).
//!
//! One network (the default): images/s of one training step on one device. With `--run SPEC`... or
//! `--table`: the speed-up comparison of planner/comparison.rs, printed in the layout of the paper's
//! Tables 2, 3 and 5 and written as markdown and CSV.

mod compare;

use std::time::Instant;

use clap::Args;
use serde::Serialize;
use tch::{nn::VarStore, Device, Kind, Tensor};

use super::flags::{parse_device, positive, PrecisionFlag, WarpFlags};
use crate::base::optimizer::{Optimizer, SgdSettings, PAPER_LR};
use crate::model::config::BENCH_CLASSES;
use crate::model::config::{INPUT_CHANNELS, INPUT_SIDE};
use crate::model::warp::PrimalSharing;
use crate::model::{op_count, DerivativeBn, ModelKind, Net, NetConfig, Variant};
use crate::precision::{MemoryFormat, Precision};
use crate::runtime::Devices;
use crate::train::step::single_step;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "wrn")]
    pub model: ModelKind,
    /// Warp factor K (a WRN gets K * Nwarp units per stage).
    #[arg(long, default_value = "1", value_parser = positive)]
    pub k: usize,
    /// Warp layers per stage.
    #[arg(long, default_value = "2", value_parser = positive)]
    pub nwarp: usize,
    /// Widening factor kw.
    #[arg(long, default_value = "4", value_parser = positive)]
    pub width: usize,
    #[command(flatten)]
    pub warp: WarpFlags,
    /// Images per step.
    #[arg(long, default_value = "64", value_parser = positive)]
    pub batch: usize,
    /// Timed steps.
    #[arg(long, default_value = "20", value_parser = positive)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value = "3")]
    pub warmup: usize,
    /// libtorch intra-op threads (default: all cores).
    #[arg(long, value_parser = positive)]
    pub threads: Option<usize>,
    /// Device of the single-network step: cpu, cuda or cuda:I.
    #[arg(long, default_value = "cpu", value_parser = parse_device)]
    pub device: Device,
    /// Output classes of the synthetic task.
    #[arg(long, default_value_t = BENCH_CLASSES, value_parser = positive)]
    pub classes: usize,
    #[arg(long, default_value = "0")]
    pub seed: u64,
    /// A configuration to compare (repeatable), e.g. "warpnet1 k=2 cpu:2 [F1],[F2,F2'x1]"; the first is
    /// the baseline of RS. Network size: --k x --nwarp units per stage, --width.
    #[arg(long = "run")]
    pub runs: Vec<String>,
    /// Workers for the network above, as `warpnet train --devices` (`mpi` under mpirun): compares it on
    /// them with its WRN twin on one worker; over MPI also prints the bytes moved and time in messages.
    #[arg(long)]
    pub devices: Option<Devices>,
    /// Terms per worker for --devices, paper notation (default: the paper's assignment if it fits), or
    /// `auto`: the placement, batch shares included, the step-time model predicts fastest.
    #[arg(long, requires = "devices")]
    pub placement: Option<String>,
    /// Also print each run's step as the step-time model predicts it (src/planner/step_model.rs),
    /// from profiles measured here or read with --profile; over MPI ranks, with the link to rank 1
    /// measured first.
    #[arg(long)]
    pub predict: bool,
    /// Predict from the profiles in this file (`warpnet plan --save-profile`) instead of measuring.
    #[arg(long)]
    pub profile: Option<std::path::PathBuf>,
    /// Write the profiles the predictions used to this file.
    #[arg(long)]
    pub save_profile: Option<std::path::PathBuf>,
    /// Compare the default set: WRN on 1 and 2 workers, WarpNet1/2 K = 2 on 1, 2, 3 and 4 workers.
    #[arg(long)]
    pub table: bool,
    /// Rounds of the comparison (each run takes --steps timed steps per round).
    #[arg(long, default_value = "3", value_parser = positive)]
    pub rounds: usize,
    /// Folder for the comparison's bench.md and bench.csv.
    #[arg(long, default_value = "runs/bench")]
    pub out: std::path::PathBuf,
    /// Each term runs its own primal passes (as a generic JVP would) instead of sharing them: measures
    /// what sharing saves.
    #[arg(long)]
    pub per_term_primals: bool,
    #[command(flatten)]
    pub precision: PrecisionFlag,
    /// Memory layout of the activations: nchw or channels-last (NHWC), which the layers then keep
    /// through the network (default: the one chosen for the precision and device, src/precision.rs);
    /// measures whether this machine prefers the other (one network only).
    #[arg(long, value_enum)]
    pub memory_format: Option<MemoryFormat>,
    /// Also print the median time of each phase: forward, backward, SGD update.
    #[arg(long)]
    pub phases: bool,
    /// Also print the forward operations of one step (3x3 convolutions, ReLU masks).
    #[arg(long)]
    pub count: bool,
    /// Print the figures as one JSON object on the last stdout line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub model: String,
    pub batch: usize,
    pub threads: i32,
    pub precision: Precision,
    pub memory_format: MemoryFormat,
    pub steps: usize,
    /// Median milliseconds per training step.
    pub ms_per_batch: f64,
    /// batch / median step time.
    pub images_per_s: f64,
    /// Every timed step, in milliseconds, in order.
    pub step_ms: Vec<f64>,
    /// Forward operations of one step.
    pub forward_ops: op_count::OpCount,
    /// Median milliseconds of each phase of the step.
    pub phase_ms: Phases,
}

/// Where one training step's time goes.
#[derive(Debug, Clone, Serialize)]
pub struct Phases {
    /// Forward pass and cross-entropy.
    pub forward: f64,
    /// Backpropagation to every parameter.
    pub backward: f64,
    /// The SGD update.
    pub update: f64,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(threads) = args.threads {
        tch::set_num_threads(threads as i32);
    }
    // With --run or --table the flags are the defaults of the warp runs; alone, they shape --model.
    if args.model == ModelKind::Wrn && args.runs.is_empty() && !args.table {
        args.warp.refuse_for_wrn("--model wrn")?;
    }
    let config = NetConfig {
        model: args.model,
        k: args.k,
        nwarp: args.nwarp,
        width: args.width,
        in_channels: INPUT_CHANNELS,
        classes: args.classes,
        variant: args.warp.variant.unwrap_or(Variant::Warpnet1),
        max_order: args.warp.max_order,
        derivative_bn: args.warp.derivative_bn.unwrap_or(DerivativeBn::None),
    };
    config.validate().map_err(crate::error::input_error)?;
    if let Device::Cuda(i) = args.device {
        crate::runtime::device::check_gpu("--device", i)?;
    }
    if args.table || !args.runs.is_empty() || args.devices.is_some() {
        if args.memory_format.is_some() {
            crate::bail_input!(
                "--memory-format measures one network: give it without --run, --table or --devices"
            );
        }
        return compare::compare(&config, &args);
    }
    let precision = args.precision.decide(&[args.device]).precision;
    let result = bench_training_step(&config, &args, precision);
    println!(
        "{} batch {} threads {} {} {}: {:.1} ms/batch (median of {}), {:.1} images/s",
        result.model,
        result.batch,
        result.threads,
        result.precision,
        format_name(result.memory_format),
        result.ms_per_batch,
        result.steps,
        result.images_per_s
    );
    if args.phases {
        let p = &result.phase_ms;
        let share = |ms: f64| 100.0 * ms / (p.forward + p.backward + p.update);
        println!(
            "phases: forward {:.1} ms ({:.0}%), backward {:.1} ms ({:.0}%), SGD update {:.1} ms ({:.0}%)",
            p.forward,
            share(p.forward),
            p.backward,
            share(p.backward),
            p.update,
            share(p.update)
        );
    }
    if args.count {
        let ops = &result.forward_ops;
        println!("forward per step: {} 3x3 convolutions, {} ReLU masks", ops.convolutions, ops.masks);
    }
    if args.json {
        super::print_json(&result)?;
    }
    Ok(())
}

/// Times `args.steps` training steps in `precision` after `args.warmup` untimed ones.
pub fn bench_training_step(config: &NetConfig, args: &BenchArgs, precision: Precision) -> BenchResult {
    let device = args.device;
    tch::manual_seed(args.seed as i64);
    let vs = VarStore::new(device);
    let mut net = Net::new(&vs.root(), config);
    if args.per_term_primals {
        net.set_primal_sharing(PrimalSharing::PerTerm);
    }
    let mut sgd = Optimizer::new(&vs, SgdSettings::PAPER);
    let batch = args.batch as i64;
    let (channels, side) = (INPUT_CHANNELS as i64, INPUT_SIDE as i64);
    let images = Tensor::randn([batch, channels, side, side], (Kind::Float, device)); // (B, 3, 32, 32)
    let memory_format = args.memory_format.unwrap_or(precision.memory_format(device));
    let labels = Tensor::randint(args.classes as i64, [batch], (Kind::Int64, device)); // (B,)
    let mut step_ms = Vec::with_capacity(args.steps);
    // Phase boundaries wait for a GPU only when phases are asked for, so plain timings are not perturbed.
    let phase_end = |started: Instant| {
        if let (true, Device::Cuda(i)) = (args.phases, device) {
            tch::Cuda::synchronize(i as i64);
        }
        started.elapsed().as_secs_f64() * 1e3
    };
    let mut phases: [Vec<f64>; 3] = Default::default(); // forward + loss, backward, SGD update
    for i in 0..args.warmup + args.steps {
        let started = Instant::now();
        op_count::reset();
        // The cast of the input belongs to the step, as in training.
        let input = precision.input_as(&images, memory_format);
        let mut ends = [0.0; 3]; // ms from the start to the end of each phase
        single_step(&net, &mut sgd, &input, &labels, PAPER_LR, |phase| {
            ends[phase as usize] = phase_end(started)
        });
        let [forward, backward, total] = ends;
        if i >= args.warmup {
            step_ms.push(total);
            for (phase, ms) in phases.iter_mut().zip([forward, backward - forward, total - backward]) {
                phase.push(ms);
            }
        }
    }
    let ms_per_batch = crate::planner::stats::median(&step_ms);
    let [forward, backward, update] = phases.map(|p| crate::planner::stats::median(&p));
    BenchResult {
        model: config.label(),
        batch: args.batch,
        threads: tch::get_num_threads(),
        precision,
        memory_format,
        steps: args.steps,
        ms_per_batch,
        images_per_s: args.batch as f64 / (ms_per_batch / 1e3),
        step_ms,
        forward_ops: op_count::read(),
        phase_ms: Phases { forward, backward, update },
    }
}

/// "nchw", "channels-last": as the flag spells it.
fn format_name(format: MemoryFormat) -> String {
    clap::ValueEnum::to_possible_value(&format).expect("no skipped variants").get_name().to_string()
}
