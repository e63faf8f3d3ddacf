//! Measures a [`Profile`] for the step-time model (parallel/step_model.rs): each piece of a warp
//! layer's work timed on this thread, at one batch, precision and intra-op thread count, with the
//! layers the executor runs (model/unit.rs, model/net.rs), on random data (costs do not depend on the
//! values). Medians over `repeats` after one warm-up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tch::{nn::VarStore, Device, Kind, Tensor};

use super::memory;
use super::placement::shares::MASK_BYTES;
use super::step_model::{Profile, StageCosts};
use crate::base::optimizer::{Sgd, SgdSettings};
use crate::base::stats::median;
use crate::model::config::STAGES;
use crate::model::net::{downsample, Head, Stem};
use crate::model::unit::ResidualUnit;
use crate::model::{loss, DerivativeBn, NetConfig};
use crate::precision::Precision;

/// Side of the network's input images.
const IMAGE_SIDE: i64 = 32;

/// Times work on one device: medians over `repeats` after one warm-up, a GPU synchronised around
/// each timed piece (its kernels run asynchronously).
#[derive(Clone, Copy)]
struct Clock {
    device: Device,
    repeats: usize,
}

impl Clock {
    fn sync(&self) {
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
    }

    /// Milliseconds of `work()`.
    fn time(&self, mut work: impl FnMut()) -> f64 {
        work();
        let times: Vec<f64> = (0..self.repeats)
            .map(|_| {
                self.sync();
                let started = Instant::now();
                work();
                self.sync();
                started.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        median(&times)
    }

    /// Milliseconds of `backward()` alone, after `forward()` each time.
    fn time_backward(&self, forward: impl Fn() -> Tensor) -> f64 {
        let once = || {
            let out = forward();
            let upstream = out.ones_like();
            self.sync();
            let started = Instant::now();
            (out * upstream).sum(Kind::Float).backward();
            self.sync();
            started.elapsed().as_secs_f64() * 1e3
        };
        once();
        median(&(0..self.repeats).map(|_| once()).collect::<Vec<f64>>())
    }
}

/// Times the heap is read around a forward pass; the median of these discards one reading that
/// another thread of the process (a test binary's other tests, say) allocated or freed into.
const KEPT_READINGS: usize = 3;

/// Bytes `forward()`'s result keeps alive on the CPU heap (what its backward will read), or 0 where
/// the heap cannot be read (parallel/memory.rs). Kept tensors are the same on every device: the
/// step-time model measures them on the CPU whatever device it times.
fn kept_bytes<T>(forward: impl Fn() -> T) -> f64 {
    if !memory::measurable(Device::Cpu) {
        return 0.0;
    }
    let reading = || {
        let before = memory::heap_in_use();
        let kept = forward();
        let bytes = memory::heap_in_use().saturating_sub(before);
        drop(kept);
        bytes as f64
    };
    median(&(0..KEPT_READINGS).map(|_| reading()).collect::<Vec<f64>>())
}

/// Where and how a profile is measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bench {
    pub device: Device,
    /// Intra-op threads (on a GPU: of the host).
    pub threads: usize,
    /// CPU workers kept busy beside the measured one, each on `threads` threads, running a unit's
    /// forward and backward pass in a loop: the neighbours a worker of a run on several CPU devices has.
    pub busy_neighbours: usize,
}

/// The profile of `config`'s pieces at `batch` images in `precision`, measured as `bench` says.
/// The caller's intra-op thread count is restored afterwards.
pub fn measure(
    config: &NetConfig,
    batch: i64,
    precision: Precision,
    bench: Bench,
    repeats: usize,
) -> Profile {
    let Bench { device, threads, busy_neighbours } = bench;
    let restore = tch::get_num_threads();
    tch::set_num_threads(threads as i32);
    // Bytes first, alone: busy neighbours allocate from the same heap.
    let kept: Vec<StageBytes> = (0..STAGES).map(|s| stage_bytes(config, s, batch, precision)).collect();
    let (home_weight_bytes, home_kept_bytes) = home_bytes(config, batch, precision);
    let stop = Arc::new(AtomicBool::new(false));
    let neighbours: Vec<_> = (0..busy_neighbours)
        .map(|_| {
            let (stop, channels) = (stop.clone(), config.stage_channels(0) as i64);
            std::thread::spawn(move || keep_busy(&stop, [batch, channels, IMAGE_SIDE, IMAGE_SIDE], threads))
        })
        .collect();
    let clock = Clock { device, repeats };
    let stages = kept
        .into_iter()
        .enumerate()
        .map(|(s, b)| stage_costs(config, s, batch, precision, clock, b))
        .collect();
    let (home, add) = home_costs(config, batch, precision, clock);
    stop.store(true, Ordering::Relaxed);
    neighbours.into_iter().for_each(|n| n.join().expect("a busy neighbour does not panic"));
    tch::set_num_threads(restore);
    let plural = if threads == 1 { "" } else { "s" };
    let name = match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => format!("cpu, {threads} thread{plural}"),
    };
    let device = match busy_neighbours {
        0 => format!("{name}, {precision}"),
        n => format!("{name}, {precision}, {n} neighbour{} busy", if n == 1 { "" } else { "s" }),
    };
    Profile { device, batch, threads, busy_neighbours, stages, home, add, home_weight_bytes, home_kept_bytes }
}

/// A CPU worker's load: one unit's forward and backward pass at `shape` (B, C, H, W), fp32, until
/// `stop`.
fn keep_busy(stop: &AtomicBool, shape: [i64; 4], threads: usize) {
    tch::set_num_threads(threads as i32);
    let vs = VarStore::new(Device::Cpu);
    let unit = ResidualUnit::new(&(vs.root() / "unit"), shape[1]);
    let x = Tensor::randn(shape, (Kind::Float, Device::Cpu)).set_requires_grad(true);
    while !stop.load(Ordering::Relaxed) {
        let out = unit.primal(&x, true, true, Some(DerivativeBn::None)).output.expect("output");
        out.sum(Kind::Float).backward();
    }
}

/// A random (B, C, H, W) input on `device` in `precision`.
fn random(shape: [i64; 4], precision: Precision, device: Device) -> Tensor {
    precision.input(&Tensor::randn(shape, (Kind::Float, device)))
}

/// The shape (B, C, H, W) of stage `stage`'s activations: C = 16kw x 2^stage, H = W = 32 / 2^stage.
fn stage_shape(config: &NetConfig, stage: usize, batch: i64) -> [i64; 4] {
    let side = IMAGE_SIDE >> stage;
    [batch, config.stage_channels(stage) as i64, side, side]
}

/// A unit's bytes at one stage: its weights, and what its primal pass, its mask pass and a tangent
/// pass keep for backward.
#[derive(Clone, Copy)]
struct StageBytes {
    weights: f64,
    unit: f64,
    mask: f64,
    tangent: f64,
}

fn stage_bytes(config: &NetConfig, stage: usize, batch: i64, precision: Precision) -> StageBytes {
    let shape = stage_shape(config, stage, batch);
    let none = Some(DerivativeBn::None);
    let vs = VarStore::new(Device::Cpu);
    let unit = ResidualUnit::new(&(vs.root() / "unit"), shape[1]);
    let x = random(shape, precision, Device::Cpu).set_requires_grad(true);
    let at = unit.primal(&x, true, false, none).linearization.expect("linearised");
    StageBytes {
        weights: memory::variable_bytes(&vs).0 as f64,
        unit: kept_bytes(|| unit.primal(&x, true, true, none)),
        mask: kept_bytes(|| unit.primal(&x, true, false, none)),
        tangent: kept_bytes(|| unit.tangent(&at, &x)),
    }
}

/// The costs of one unit of stage `stage`, timed, beside its `bytes`.
fn stage_costs(
    config: &NetConfig,
    stage: usize,
    batch: i64,
    precision: Precision,
    clock: Clock,
    bytes: StageBytes,
) -> StageCosts {
    let shape = stage_shape(config, stage, batch);
    let none = Some(DerivativeBn::None);
    let vs = VarStore::new(clock.device);
    let unit = ResidualUnit::new(&(vs.root() / "unit"), shape[1]);
    // x1 requires its gradient in the executor (it comes from the layers below): so here.
    let x = random(shape, precision, clock.device).set_requires_grad(true);
    let full = || unit.primal(&x, true, true, none);
    let unit_forward = clock.time(|| drop(full()));
    let unit_backward = clock.time_backward(|| full().output.expect("output"));
    let mask_forward = clock.time(|| drop(unit.primal(&x, true, false, none)));
    let at = unit.primal(&x, true, false, none).linearization.expect("linearised");
    let tangent_forward = clock.time(|| drop(unit.tangent(&at, &x)));
    let tangent_backward = clock.time_backward(|| unit.tangent(&at, &x));
    let half = batch / 2;
    let (x_half, at_half) = (x.narrow(0, 0, half), at.rows(0, half));
    let half_tangent_forward = clock.time(|| drop(unit.tangent(&at_half, &x_half)));
    let half_tangent_backward = clock.time_backward(|| unit.tangent(&at_half, &x_half));
    let mut sgd = Sgd::new(&vs, SgdSettings::PAPER);
    let variables = vs.variables();
    let gradients: Vec<Tensor> = sgd.names().map(|n| variables[n].zeros_like()).collect();
    let unit_sgd = clock.time(|| sgd.step(&gradients, 0.0));
    let elements = shape.iter().product::<i64>() as f64;
    StageCosts {
        unit_forward,
        unit_backward,
        mask_forward,
        tangent_forward,
        tangent_backward,
        half_tangent_forward,
        half_tangent_backward,
        unit_sgd,
        activation_bytes: elements * precision.kind().elt_size_in_bytes() as f64,
        mask_bytes: elements * MASK_BYTES as f64,
        unit_weight_bytes: bytes.weights,
        unit_kept_bytes: bytes.unit,
        mask_kept_bytes: bytes.mask,
        tangent_kept_bytes: bytes.tangent,
    }
}

/// The home's weights (stem and head) and what its stem and head keep for backward, in bytes.
fn home_bytes(config: &NetConfig, batch: i64, precision: Precision) -> (f64, f64) {
    let vs = VarStore::new(Device::Cpu);
    let (stem, head) = (Stem::new(&vs.root(), config), Head::new(&vs.root(), config));
    let images = random([batch, 3, IMAGE_SIDE, IMAGE_SIDE], precision, Device::Cpu);
    let features =
        random(stage_shape(config, STAGES - 1, batch), precision, Device::Cpu).set_requires_grad(true);
    let kept = kept_bytes(|| (stem.forward(&images, true), head.forward(&features, true)));
    (memory::variable_bytes(&vs).0 as f64, kept)
}

/// The home's work per step (stem, downsampling, head and loss, forward and backward), and one
/// activation addition per stage, timed.
fn home_costs(config: &NetConfig, batch: i64, precision: Precision, clock: Clock) -> (f64, Vec<f64>) {
    let device = clock.device;
    let vs = VarStore::new(device);
    let (stem, head) = (Stem::new(&vs.root(), config), Head::new(&vs.root(), config));
    let images = random([batch, 3, IMAGE_SIDE, IMAGE_SIDE], precision, device);
    let labels = Tensor::zeros([batch], (Kind::Int64, device));
    let features = random(stage_shape(config, STAGES - 1, batch), precision, device).set_requires_grad(true);
    let stem_ms = clock.time(|| (stem.forward(&images, true).sum(Kind::Float)).backward());
    let head_ms = clock.time(|| loss::cross_entropy(&head.forward(&features, true), &labels).backward());
    // Each later stage's downsampling, forward (its backward is a pooling's: of the same order).
    let downsample_ms: f64 = (1..STAGES)
        .map(|s| {
            let h = random(stage_shape(config, s - 1, batch), precision, device);
            2.0 * clock.time(|| drop(downsample(&h)))
        })
        .sum();
    let add = (0..STAGES)
        .map(|s| {
            let a = random(stage_shape(config, s, batch), precision, device);
            clock.time(|| drop(&a + &a))
        })
        .collect();
    (stem_ms + head_ms + downsample_ms, add)
}
