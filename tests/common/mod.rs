//! Helpers shared by the numerics tests: float64 networks with non-trivial BatchNorm, finite
//! differences, relative errors.
#![allow(dead_code)]

use tch::{nn::VarStore, Device, Kind, Tensor};
use warpnet::model::layers::{BatchNorm2d, BN_EPS};
use warpnet::model::wrn::unit::ResidualUnit;

pub const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

/// ||a - b|| / ||b||
pub fn relative_error(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).norm().double_value(&[]) / b.norm().double_value(&[])
}

/// (f(x + h v) - f(x - h v)) / 2h
pub fn central_difference(f: impl Fn(&Tensor) -> Tensor, x: &Tensor, v: &Tensor, h: f64) -> Tensor {
    (f(&(x + v * h)) - f(&(x - v * h))) / (2.0 * h)
}

/// Gives every BatchNorm random affine parameters and running statistics, so that no BN is close to
/// the identity and eval-mode BN is a non-trivial affine map.
pub fn randomize_batch_norms(vs: &VarStore) {
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0)); // a fixed order, so a seed gives the same values
    tch::no_grad(|| {
        for (name, mut t) in variables {
            let value = if name.ends_with("running_var") || (name.contains("bn") && name.ends_with("weight"))
            {
                Tensor::rand_like(&t) + 0.5 // U(0.5, 1.5)
            } else if name.contains("bn") {
                Tensor::randn_like(&t) * 0.3 // bias and running mean N(0, 0.09)
            } else {
                continue;
            };
            t.copy_(&value);
        }
    });
}

/// Makes a BN the identity in eval mode: gamma 1, beta 0, mean 0, var 1 - eps.
pub fn make_identity(bn: &mut BatchNorm2d) {
    tch::no_grad(|| {
        let _ = bn.weight.fill_(1.0);
        let _ = bn.bias.fill_(0.0);
        let _ = bn.running_mean.fill_(0.0);
        let _ = bn.running_var.fill_(1.0 - BN_EPS);
    });
}

/// One residual unit at `channels` channels in float64, with random BatchNorm parameters.
pub fn unit_f64(channels: i64) -> (VarStore, ResidualUnit) {
    let mut vs = VarStore::new(Device::Cpu);
    let unit = ResidualUnit::new(&vs.root(), channels);
    vs.double();
    randomize_batch_norms(&vs);
    (vs, unit)
}

/// The lock of libtorch's one random generator per process, which is also the lock of the machine's
/// cores for trainings (see [`one_training_at_a_time`]).
static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn lock_generator() -> std::sync::MutexGuard<'static, ()> {
    // A test that failed while holding the lock poisons it; the next test still runs.
    GENERATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Seeds libtorch's random generator for a test that then draws from it, and keeps other tests of the
/// same binary from drawing until the returned guard drops. libtorch has one generator per process and
/// the tests of a binary run on parallel threads: without the lock, their draws interleave and a test's
/// numbers (weights, directions) depend on timing, so a rare unlucky draw would fail at random.
pub fn seed_exclusively(seed: i64) -> std::sync::MutexGuard<'static, ()> {
    let guard = lock_generator();
    tch::manual_seed(seed);
    guard
}

/// Keeps other tests of the same binary from drawing while a test draws without a seed of its own
/// (random messages, networks whose initial values it overwrites or does not depend on): its draws
/// would otherwise land between another test's seeded ones and change that test's numbers.
pub fn draw_exclusively() -> std::sync::MutexGuard<'static, ()> {
    lock_generator()
}

/// Keeps other trainings of the same binary (those under [`seed_exclusively`] too) waiting until the
/// returned guard drops: a training uses every core through libtorch's threads, and two at once on a
/// 2-core machine take longer together than one after the other (their thread pools spin against
/// each other).
pub fn one_training_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    lock_generator()
}

/// bf16's unit roundoff: 2^-8 (an 8-bit significand, rounding to nearest).
pub const BF16_U: f64 = 1.0 / 256.0;
/// Rounding sites per convolution of the forward pass, forward and backward: 2 x (3 + 1.5).
const ROUNDINGS_PER_CONVOLUTION: f64 = 9.0;
/// Margin for ReLU inputs within rounding of zero, whose mask flips.
const SLACK: f64 = 4.0;

/// The relative error that bf16 mixed precision may leave in a vector (logits, a loss, all gradients)
/// of a pass that runs `convolutions` 3x3 convolutions (the linear head counted as one more).
///
/// From bf16's 8-bit significand (7 stored bits and the implicit one): rounding to bf16 moves a value
/// by at most u = 2^-8 = 0.39 % of itself, uniformly within that, so by u / sqrt 3 rms. A pass rounds
/// at R sites on the path from the input to a gradient: each convolution (and the head) rounds its
/// input, its weight and its output (3 sites; products accumulate in fp32, a negligible 2^-24), the
/// BatchNorms, residual adds, pooling and mask products around it round their outputs (about 1.5
/// sites per convolution in these networks), and the backward pass rounds as many again: R = 9 sites
/// per convolution, 126-180 for the test networks. Independent roundings add in quadrature, so a
/// vector's relative error in norm is about sqrt(R) u / sqrt 3 ~ 0.03; the bound is SLACK = 4 times
/// that, ~0.1-0.12, for ReLU inputs within rounding of zero whose mask flips.
pub fn bf16_rounding_bound(convolutions: u64) -> f64 {
    let roundings = ROUNDINGS_PER_CONVOLUTION * (convolutions + 1) as f64;
    SLACK * roundings.sqrt() * BF16_U / 3f64.sqrt()
}

/// The matrix products of [`lm_against_cpu_fp32`]'s model in its forward pass, each rounding as a
/// convolution does in [`bf16_rounding_bound`]: per block, attention's four (q, k, v together; q k^T;
/// P v; W_o) and the MLP's two; warpnet2 adds M's tangent (W_1 and W_2 again) in each warp layer.
pub fn lm_matrix_products(variant: warpnet::model::transformer::LmVariant) -> u64 {
    const BLOCKS: u64 = 2;
    let tangents = match variant {
        warpnet::model::transformer::LmVariant::Warpnet2 => 2 * BLOCKS,
        _ => 0,
    };
    6 * BLOCKS + tangents
}

/// A small byte-level GPT (2 blocks of width 32, 4 heads, context 16) in `variant` with K = 2, its
/// logits and the gradient of every parameter for one batch of 4 sequences on `device` in `precision`
/// against the same on the CPU in fp32, from the same weights: (logits' relative error, gradients'
/// relative error, the logits' kind). The batch comes from its own generator.
pub fn lm_against_cpu_fp32(
    variant: warpnet::model::transformer::LmVariant,
    device: Device,
    precision: warpnet::precision::Precision,
) -> (f64, f64, Kind) {
    use warpnet::base::named::{assign_variables, copy_variables};
    use warpnet::base::optimizer::{AdamWSettings, Optimizer};
    use warpnet::model::transformer::{norm::NormTangent, LmConfig};
    use warpnet::model::Net;
    let lm = LmConfig {
        blocks: 2, // lm_matrix_products counts these
        width: 32,
        heads: 4,
        context: 16,
        variant,
        k: 2,
        norm_tangent: NormTangent::Exact,
    };
    let initial = {
        let _lock = seed_exclusively(5);
        let vs = VarStore::new(Device::Cpu);
        let _net = Net::new(&vs.root(), &lm);
        copy_variables(&vs, Device::Cpu)
    };
    let bytes = |seed: u64| {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let values: Vec<i64> = (0..4 * 16).map(|_| rng.gen_range(0..256)).collect();
        Tensor::from_slice(&values).view([4, 16])
    };
    let (tokens, next) = (bytes(11), bytes(12));
    let pass = |device: Device, precision: warpnet::precision::Precision| {
        let vs = VarStore::new(device);
        let net = Net::new(&vs.root(), &lm);
        assign_variables(&vs, &initial);
        let input = precision.input(&tokens.to_kind(Kind::Float).to_device(device));
        let logits = net.forward(&input, true);
        let loss = warpnet::model::loss::cross_entropy(&logits, &next.to_device(device));
        let adamw = Optimizer::new(&vs, AdamWSettings::GPT);
        let flat: Vec<Tensor> =
            adamw.gradients(&loss).iter().map(|g| g.to_device(Device::Cpu).flatten(0, -1)).collect();
        (logits.to_device(Device::Cpu).to_kind(Kind::Float), Tensor::cat(&flat, 0), logits.kind())
    };
    let (cpu_logits, cpu_gradients, _) = pass(Device::Cpu, warpnet::precision::Precision::Fp32);
    let (logits, gradients, kind) = pass(device, precision);
    (relative_error(&logits, &cpu_logits), relative_error(&gradients, &cpu_gradients), kind)
}
