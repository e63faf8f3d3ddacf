//! Measures a [`Profile`] for the step-time model (planner/step_model.rs): each piece of a warp
//! layer's work timed on this thread, at one batch, precision and intra-op thread count, with the
//! units and modules the network's architecture builds (model/architecture.rs), at its shapes, on
//! random data (costs do not depend on the values). Medians over `repeats` after one warm-up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tch::{nn::VarStore, Device, Kind, Tensor};

use super::stats::median;
use super::step_model::{Profile, StageCosts};
use crate::base::optimizer::{Optimizer, SgdSettings};
use crate::model::unit::{Linearization, Need, Unit};
use crate::model::{loss, Architecture, LayerIndex};
use crate::precision::Precision;
use crate::runtime::memory;

/// What a profile's passes ask of a unit: all of its primal pass, or its linearisation alone.
const FULL: Need = Need { output: true, linearization: true };
const LINEARIZATION: Need = Need { output: false, linearization: true };

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
/// the heap cannot be read (runtime/memory.rs). Kept tensors are the same on every device: the
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

/// The profile of `network`'s pieces at `batch` samples in `precision`, measured as `bench` says.
/// The caller's intra-op thread count is restored afterwards.
pub fn measure(
    network: &dyn Architecture,
    batch: i64,
    precision: Precision,
    bench: Bench,
    repeats: usize,
) -> Profile {
    let Bench { device, threads, busy_neighbours } = bench;
    let restore = tch::get_num_threads();
    tch::set_num_threads(threads as i32);
    let stages = network.stages();
    // Bytes first, alone: busy neighbours allocate from the same heap.
    let kept: Vec<StageBytes> = (0..stages).map(|s| stage_bytes(network, s, batch, precision)).collect();
    let (home_weight_bytes, home_kept_bytes) = home_bytes(network, batch, precision);
    let stop = AtomicBool::new(false);
    let clock = Clock { device, repeats };
    let (stages, (home, add)) = std::thread::scope(|scope| {
        for _ in 0..busy_neighbours {
            scope.spawn(|| keep_busy(&stop, network, &stage_shape(network, 0, batch), threads));
        }
        let stages = kept
            .into_iter()
            .enumerate()
            .map(|(s, b)| stage_costs(network, s, batch, precision, clock, b))
            .collect();
        let home = home_costs(network, batch, precision, clock);
        stop.store(true, Ordering::Relaxed);
        (stages, home)
    });
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

/// The first unit of stage `stage`, on `device`: what a profile times for every unit there.
fn stage_unit(network: &dyn Architecture, stage: usize, device: Device) -> (VarStore, Box<dyn Unit>) {
    let vs = VarStore::new(device);
    let unit = network.unit(&vs.root(), LayerIndex { stage, layer: 0 }, 0);
    (vs, unit)
}

/// A CPU worker's load: a unit of stage 0's forward and backward pass at `shape` (B, ...), fp32,
/// until `stop`.
fn keep_busy(stop: &AtomicBool, network: &dyn Architecture, shape: &[i64], threads: usize) {
    tch::set_num_threads(threads as i32);
    let (_vs, unit) = stage_unit(network, 0, Device::Cpu);
    let x = Tensor::randn(shape, (Kind::Float, Device::Cpu)).set_requires_grad(true);
    while !stop.load(Ordering::Relaxed) {
        let out = unit.primal(&x, true, FULL).output.expect("output");
        out.sum(Kind::Float).backward();
    }
}

/// A random input of `shape` on `device` in `precision`.
fn random(shape: &[i64], precision: Precision, device: Device) -> Tensor {
    precision.input(&Tensor::randn(shape, (Kind::Float, device)))
}

/// The shape (B, ...) of stage `stage`'s activations at `batch`: the network's, the batch first.
fn stage_shape(network: &dyn Architecture, stage: usize, batch: i64) -> Vec<i64> {
    std::iter::once(batch).chain(network.activation_shape(stage)).collect()
}

/// A unit's bytes at one stage: its weights, and what its primal pass, its linearisation pass and a
/// tangent pass keep for backward.
#[derive(Clone, Copy)]
struct StageBytes {
    weights: f64,
    unit: f64,
    mask: f64,
    tangent: f64,
}

fn stage_bytes(network: &dyn Architecture, stage: usize, batch: i64, precision: Precision) -> StageBytes {
    let shape = stage_shape(network, stage, batch);
    let (vs, unit) = stage_unit(network, stage, Device::Cpu);
    let x = random(&shape, precision, Device::Cpu).set_requires_grad(true);
    let at = unit.primal(&x, true, LINEARIZATION).linearization.expect("linearised");
    StageBytes {
        weights: memory::variable_bytes(&vs).0 as f64,
        unit: kept_bytes(|| unit.primal(&x, true, FULL)),
        mask: kept_bytes(|| unit.primal(&x, true, LINEARIZATION)),
        tangent: kept_bytes(|| unit.tangent(&at, &x)),
    }
}

/// The costs of one unit of stage `stage`, timed, beside its `bytes`.
fn stage_costs(
    network: &dyn Architecture,
    stage: usize,
    batch: i64,
    precision: Precision,
    clock: Clock,
    bytes: StageBytes,
) -> StageCosts {
    let shape = stage_shape(network, stage, batch);
    let (vs, unit) = stage_unit(network, stage, clock.device);
    // x1 requires its gradient in the executor (it comes from the layers below): so here.
    let x = random(&shape, precision, clock.device).set_requires_grad(true);
    let full = || unit.primal(&x, true, FULL);
    let unit_forward = clock.time(|| drop(full()));
    let unit_backward = clock.time_backward(|| full().output.expect("output"));
    let mask_forward = clock.time(|| drop(unit.primal(&x, true, LINEARIZATION)));
    // A backward through a tangent reaches into the linearisation's own graph where it has one (a
    // smooth unit's): each timed backward gets a fresh linearisation (made before its clock starts).
    let linearized = || unit.primal(&x, true, LINEARIZATION).linearization.expect("linearised");
    let at = linearized();
    let tangent_forward = clock.time(|| drop(unit.tangent(&at, &x)));
    let tangent_backward = clock.time_backward(|| unit.tangent(&linearized(), &x));
    // Pieces on half the batch, where the network lets pieces apart (else never placed: half the whole).
    let (half_tangent_forward, half_tangent_backward) = match network.pieces_apart() {
        Ok(()) => {
            let half = batch / 2;
            let x_half = x.narrow(0, 0, half);
            let piece = |at: &Linearization| unit.piece_linearization(unit.rows(at, 0, half));
            let at_half = piece(&at);
            let forward = clock.time(|| drop(unit.tangent(&at_half, &x_half)));
            (forward, clock.time_backward(|| unit.tangent(&piece(&linearized()), &x_half)))
        }
        Err(_) => (tangent_forward / 2.0, tangent_backward / 2.0),
    };
    let mut sgd = Optimizer::new(&vs, SgdSettings::PAPER);
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
        mask_bytes: (batch as u64 * network.linearization_row_bytes(stage)) as f64,
        unit_weight_bytes: bytes.weights,
        unit_kept_bytes: bytes.unit,
        mask_kept_bytes: bytes.mask,
        tangent_kept_bytes: bytes.tangent,
    }
}

/// The home's weights (stem and head) and what its stem and head keep for backward, in bytes.
fn home_bytes(network: &dyn Architecture, batch: i64, precision: Precision) -> (f64, f64) {
    let vs = VarStore::new(Device::Cpu);
    let (stem, head) = (network.stem(&vs.root()), network.head(&vs.root()));
    let images = precision.input(&network.random_batch(batch, Device::Cpu).0);
    let last = network.stages() - 1;
    let features = random(&stage_shape(network, last, batch), precision, Device::Cpu).set_requires_grad(true);
    let kept = kept_bytes(|| (stem.forward(&images, true), head.forward(&features, true)));
    (memory::variable_bytes(&vs).0 as f64, kept)
}

/// The home's work per step (stem, the steps between stages, head and loss, forward and backward),
/// and one activation addition per stage, timed.
fn home_costs(network: &dyn Architecture, batch: i64, precision: Precision, clock: Clock) -> (f64, Vec<f64>) {
    let device = clock.device;
    let vs = VarStore::new(device);
    let (stem, head) = (network.stem(&vs.root()), network.head(&vs.root()));
    let between = network.between_stages();
    let stages = network.stages();
    let (images, labels) = network.random_batch(batch, device);
    let images = precision.input(&images);
    let features =
        random(&stage_shape(network, stages - 1, batch), precision, device).set_requires_grad(true);
    let stem_ms = clock.time(|| (stem.forward(&images, true).sum(Kind::Float)).backward());
    let head_ms = clock.time(|| loss::cross_entropy(&head.forward(&features, true), &labels).backward());
    // Each later stage's step from the one before, forward (its backward is of the same order).
    let between_ms: f64 = (1..stages)
        .map(|s| {
            let h = random(&stage_shape(network, s - 1, batch), precision, device);
            2.0 * clock.time(|| drop(between.forward(&h, true)))
        })
        .sum();
    let add = (0..stages)
        .map(|s| {
            let a = random(&stage_shape(network, s, batch), precision, device);
            clock.time(|| drop(&a + &a))
        })
        .collect();
    (stem_ms + head_ms + between_ms, add)
}
