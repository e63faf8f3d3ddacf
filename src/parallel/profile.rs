//! Measures a [`Profile`] for the step-time model (parallel/step_model.rs): each piece of a warp
//! layer's work timed on this thread, at one batch, precision and intra-op thread count, with the
//! layers the executor runs (model/unit.rs, model/net.rs), on random data (costs do not depend on the
//! values). Medians over `repeats` after one warm-up.

use std::time::Instant;

use tch::{nn::VarStore, Device, Kind, Tensor};

use super::comparison::median;
use super::shares::MASK_BYTES;
use super::step_model::{Profile, StageCosts};
use crate::model::config::STAGES;
use crate::model::net::{downsample, Head, Stem};
use crate::model::unit::ResidualUnit;
use crate::model::{loss, DerivativeBn, NetConfig};
use crate::precision::Precision;
use crate::train::optimizer::Sgd;

/// Side of the network's input images.
const IMAGE_SIDE: i64 = 32;

/// Milliseconds of `work()`, median over `repeats` after one warm-up.
fn time(repeats: usize, mut work: impl FnMut()) -> f64 {
    work();
    let times: Vec<f64> = (0..repeats)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    median(&times)
}

/// Milliseconds of `backward()` alone, after `forward()` each time (median over `repeats`).
fn time_backward(repeats: usize, forward: impl Fn() -> Tensor) -> f64 {
    let once = || {
        let out = forward();
        let upstream = out.ones_like();
        let started = Instant::now();
        (out * upstream).sum(Kind::Float).backward();
        started.elapsed().as_secs_f64() * 1e3
    };
    once();
    median(&(0..repeats).map(|_| once()).collect::<Vec<f64>>())
}

/// The profile of `config`'s pieces at `batch` images in `precision` on this thread's CPU, with
/// `threads` intra-op threads.
pub fn measure(
    config: &NetConfig,
    batch: i64,
    precision: Precision,
    threads: usize,
    repeats: usize,
) -> Profile {
    tch::set_num_threads(threads as i32);
    let stages = (0..STAGES).map(|s| stage_costs(config, s, batch, precision, repeats)).collect();
    let (home, add) = home_costs(config, batch, precision, repeats);
    let device = format!("cpu, {threads} thread{}, {precision}", if threads == 1 { "" } else { "s" });
    Profile { device, batch, stages, home, add }
}

/// The costs of one unit of stage `stage`: (B, C, H, W) with C = 16kw x 2^stage, H = W = 32 / 2^stage.
fn stage_costs(
    config: &NetConfig,
    stage: usize,
    batch: i64,
    precision: Precision,
    repeats: usize,
) -> StageCosts {
    let (channels, side) = (config.stage_channels(stage) as i64, IMAGE_SIDE >> stage);
    let vs = VarStore::new(Device::Cpu);
    let unit = ResidualUnit::new(&(vs.root() / "unit"), channels);
    let x = precision.input(&Tensor::randn([batch, channels, side, side], (Kind::Float, Device::Cpu)));
    let none = Some(DerivativeBn::None);
    let full = || unit.primal(&x, true, true, none);
    let unit_forward = time(repeats, || drop(full()));
    let unit_backward = time_backward(repeats, || full().output.expect("output"));
    let mask_forward = time(repeats, || drop(unit.primal(&x, true, false, none)));
    let at = unit.primal(&x, true, false, none).linearization.expect("linearised");
    let tangent_forward = time(repeats, || drop(unit.tangent(&at, &x)));
    let tangent_backward = time_backward(repeats, || unit.tangent(&at, &x));
    let half = batch / 2;
    let (x_half, at_half) = (x.narrow(0, 0, half), at.rows(0, half));
    let half_tangent_forward = time(repeats, || drop(unit.tangent(&at_half, &x_half)));
    let half_tangent_backward = time_backward(repeats, || unit.tangent(&at_half, &x_half));
    let mut sgd = Sgd::new(&vs, 0.9, 5e-4);
    let variables = vs.variables();
    let gradients: Vec<Tensor> = sgd.names().map(|n| variables[n].zeros_like()).collect();
    let unit_sgd = time(repeats, || sgd.step(&gradients, 0.0));
    let elements = (batch * channels * side * side) as f64;
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
    }
}

/// The home's work per step (stem, downsampling, head and loss, forward and backward) and one
/// activation addition per stage.
fn home_costs(config: &NetConfig, batch: i64, precision: Precision, repeats: usize) -> (f64, Vec<f64>) {
    let vs = VarStore::new(Device::Cpu);
    let (stem, head) = (Stem::new(&vs.root(), config), Head::new(&vs.root(), config));
    let images =
        precision.input(&Tensor::randn([batch, 3, IMAGE_SIDE, IMAGE_SIDE], (Kind::Float, Device::Cpu)));
    let labels = Tensor::zeros([batch], (Kind::Int64, Device::Cpu));
    let last = STAGES - 1;
    let (channels, side) = (config.stage_channels(last) as i64, IMAGE_SIDE >> last);
    let features = precision.input(&Tensor::randn([batch, channels, side, side], (Kind::Float, Device::Cpu)));
    let features = features.set_requires_grad(true);
    let stem_ms = time(repeats, || (stem.forward(&images, true).sum(Kind::Float)).backward());
    let head_ms = time(repeats, || loss::cross_entropy(&head.forward(&features, true), &labels).backward());
    // Each later stage's downsampling, forward (its backward is a pooling's: of the same order).
    let downsample_ms: f64 = (1..STAGES)
        .map(|s| {
            let (c, side) = (config.stage_channels(s - 1) as i64, IMAGE_SIDE >> (s - 1));
            let h = precision.input(&Tensor::randn([batch, c, side, side], (Kind::Float, Device::Cpu)));
            2.0 * time(repeats, || drop(downsample(&h)))
        })
        .sum();
    let home = stem_ms + head_ms + downsample_ms;
    let add = (0..STAGES)
        .map(|s| {
            let (c, side) = (config.stage_channels(s) as i64, IMAGE_SIDE >> s);
            let a = precision.input(&Tensor::randn([batch, c, side, side], (Kind::Float, Device::Cpu)));
            time(repeats, || drop(&a + &a))
        })
        .collect();
    (home, add)
}
