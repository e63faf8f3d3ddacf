//! GPU-marked tests: ignored by `cargo test`, run on a machine with CUDA by scripts/gpu-check.sh
//! (`cargo test --release --test gpu -- --ignored`). There, a missing GPU is a failure, not a skip.
//!
//! What they prove: the CUDA path computes the same network (WRN and warp variants, forward and every
//! gradient) as the CPU path, which the rest of the suite checks against finite differences; the
//! parallel executor works with GPU workers; `warpnet train` runs on a GPU and its checkpoint evaluates
//! on the CPU; bf16 mixed precision on the GPU (cuDNN's bf16 kernels) stays within bf16's rounding of
//! the CPU's fp32, and `auto` picks it on a GPU of compute capability 8.0 or later; so does the byte-level
//! GPT's; AdamW's update on the GPU (libtorch's fused CUDA kernel) is the CPU's.

mod common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{nn::VarStore, Device, Kind, Tensor};
use warpnet::base::named::{assign_variables, copy_variables, deep_copy, Named, Snapshot};
use warpnet::base::optimizer::SgdSettings;
use warpnet::base::optimizer::{AdamWSettings, Optimizer};
use warpnet::model::transformer::LmVariant;
use warpnet::model::{Net, NetConfig, Variant};
use warpnet::precision::{Precision, PrecisionSetting, Workload};
use warpnet::runtime::{Devices, Executor, Placement, Plan};

const BATCH: i64 = 8;

fn cuda() -> Device {
    let count = warpnet::runtime::device::cuda_device_count("gpu test").expect("libtorch_cuda loads");
    assert!(count > 0, "no CUDA device visible: these tests need one");
    Device::Cuda(0)
}

/// A batch from its own seeded generator (libtorch's global one is shared by concurrent tests).
fn batch(seed: u64, kind: Kind) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels: Vec<f64> = (0..BATCH * 3 * 32 * 32).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let labels: Vec<i64> = (0..BATCH).map(|_| rng.gen_range(0..10)).collect();
    (Tensor::from_slice(&pixels).view([BATCH, 3, 32, 32]).to_kind(kind), Tensor::from_slice(&labels))
}

/// Loss and gradient of every parameter, by name, after one training-mode forward on `device`.
fn loss_and_gradients(config: &NetConfig, initial: &Named, device: Device) -> (f64, Named) {
    let vs = VarStore::new(device);
    let net = Net::new(&vs.root(), config);
    assign_variables(&vs, initial);
    let (images, labels) = batch(1, Kind::Double);
    let loss =
        net.forward(&images.to_device(device), true).cross_entropy_for_logits(&labels.to_device(device));
    let sgd = Optimizer::new(&vs, SgdSettings { weight_decay: 0.0, ..SgdSettings::PAPER });
    let gradients = sgd.gradients(&loss).iter().map(|g| g.to_device(Device::Cpu)).collect::<Vec<_>>();
    let named = sgd.names().map(str::to_string).zip(gradients).collect();
    (loss.double_value(&[]), named)
}

/// The CUDA kernels (cuDNN convolutions and BN) against the CPU's, in float64 so TF32 never enters:
/// they differ only by summation order, ~1e-15 relative; 1e-9 leaves room for accumulation over the
/// network while any wrong or missing term (percent-level) fails.
#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh"]
fn gpu_forward_and_gradients_match_cpu_in_float64() {
    let device = cuda();
    for config in [
        NetConfig::wrn(2, 1, 10),
        NetConfig::warp(2, 1, 1, 10, Variant::Warpnet1),
        NetConfig::warp(2, 1, 1, 10, Variant::Warpnet2),
        NetConfig::warp(3, 1, 1, 10, Variant::Exact),
    ] {
        tch::manual_seed(3);
        let vs = VarStore::new(Device::Cpu);
        let _net = Net::new(&vs.root(), &config);
        let initial: Named =
            copy_variables(&vs, Device::Cpu).into_iter().map(|(n, t)| (n, t.to_kind(Kind::Double))).collect();
        let (cpu_loss, cpu) = loss_and_gradients(&config, &initial, Device::Cpu);
        let (gpu_loss, gpu) = loss_and_gradients(&config, &initial, device);
        let label = config.label();
        assert!(
            (cpu_loss - gpu_loss).abs() <= 1e-9 * cpu_loss.abs(),
            "{label}: loss {gpu_loss} vs {cpu_loss}"
        );
        for (name, c) in &cpu {
            let difference = (&gpu[name] - c).norm().double_value(&[]);
            assert!(
                difference <= 1e-9 * c.norm().double_value(&[]) + 1e-12,
                "{label}: {name} off by {difference}"
            );
        }
    }
}

/// The parallel executor with GPU workers (three workers on one GPU when only one is visible) against
/// one CPU step, float32. Tolerance 5e-3 relative: libtorch lets cuDNN use TF32 for float32
/// convolutions (10-bit mantissa, ~5e-4 per product) on Ampere and later; a missing term is larger.
#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh"]
fn gpu_parallel_executor_matches_one_cpu_step() {
    cuda();
    let gpus = tch::Cuda::device_count().max(1) as usize;
    let on = |n: usize| (0..n).map(|i| format!("cuda:{}", i % gpus)).collect::<Vec<_>>().join(",");
    let sgd = SgdSettings::PAPER;
    let config = NetConfig::warp(2, 1, 1, 10, Variant::Warpnet1);
    tch::manual_seed(5);
    let vs = VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), &config);
    let initial = copy_variables(&vs, Device::Cpu);
    let (images, labels) = batch(2, Kind::Float);
    let mut reference = Optimizer::new(&vs, sgd);
    let loss = net.forward(&images, true).cross_entropy_for_logits(&labels);
    let gradients = reference.gradients(&loss);
    reference.step(&gradients, 0.1);
    let expected = copy_variables(&vs, Device::Cpu);
    for (devices, placement) in [(on(3), "[F1],[F2],[F2'x1]"), (on(2), "[F1],[F2,F2'x1]")] {
        let devices: Devices = devices.parse().unwrap();
        let terms = warpnet::model::Architecture::terms(&config);
        let plan = Plan::new(&devices, Some(Placement::parse(placement, &terms).unwrap())).unwrap();
        let start = Snapshot { variables: deep_copy(&initial), momentum: Named::new() };
        let mut executor = Executor::new(&config.network(), &devices, plan, &start, sgd).unwrap();
        let got_loss = executor.step(&images, &labels, 0.1).loss;
        let want_loss = loss.double_value(&[]);
        assert!(
            (got_loss - want_loss).abs() <= 5e-3 * want_loss,
            "{placement}: loss {got_loss} vs {want_loss}"
        );
        let got = executor.variables(Device::Cpu);
        for (name, e) in expected.iter().filter(|(n, _)| !n.contains("running")) {
            let difference = (&got[name] - e).norm().double_value(&[]);
            assert!(
                difference <= 5e-3 * e.norm().double_value(&[]) + 1e-5,
                "{placement}: {name} off by {difference}"
            );
        }
    }
}

/// bf16 on the GPU against fp32 on the CPU, BatchNorm in eval mode (an affine map, so the comparison is
/// of rounding alone), within the rounding bound of tests/common/mod.rs; and on the GPU of the device
/// machines (H100/H200, compute capability 9.0) `auto` is bf16.
#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh"]
fn gpu_bf16_matches_cpu_fp32_within_bf16_rounding() {
    let device = cuda();
    let choice = PrecisionSetting::Auto.resolve(&[device], Workload::Convolutions);
    println!("auto on {device:?}: {choice}");
    for config in [NetConfig::wrn(2, 1, 10), NetConfig::warp(2, 1, 1, 10, Variant::Warpnet1)] {
        tch::manual_seed(9);
        let vs = VarStore::new(Device::Cpu);
        let _net = Net::new(&vs.root(), &config);
        common::randomize_batch_norms(&vs);
        let initial = copy_variables(&vs, Device::Cpu);
        let (images, labels) = batch(3, Kind::Float);
        let pass = |device: Device, precision: Precision| {
            let vs = VarStore::new(device);
            let net = Net::new(&vs.root(), &config);
            assign_variables(&vs, &initial);
            warpnet::model::op_count::reset();
            let logits = net.forward(&precision.input(&images.to_device(device)), false);
            let convolutions = warpnet::model::op_count::read().convolutions;
            let loss = warpnet::model::loss::cross_entropy(&logits, &labels.to_device(device));
            let sgd = Optimizer::new(&vs, SgdSettings { weight_decay: 0.0, ..SgdSettings::PAPER });
            let flat: Vec<Tensor> =
                sgd.gradients(&loss).iter().map(|g| g.to_device(Device::Cpu).flatten(0, -1)).collect();
            (
                logits.to_device(Device::Cpu).to_kind(Kind::Float),
                Tensor::cat(&flat, 0),
                convolutions,
                logits.kind(),
            )
        };
        let (cpu_logits, cpu_gradients, convolutions, _) = pass(Device::Cpu, Precision::Fp32);
        let (gpu_logits, gpu_gradients, _, kind) = pass(device, Precision::Bf16);
        assert_eq!(kind, Kind::BFloat16);
        let bound = common::bf16_rounding_bound(convolutions);
        let logits = common::relative_error(&gpu_logits, &cpu_logits);
        let gradients = common::relative_error(&gpu_gradients, &cpu_gradients);
        println!("{}: logits {logits:.2e}, gradients {gradients:.2e}, bound {bound:.2e}", config.label());
        assert!(
            logits <= bound && gradients <= bound,
            "{}: logits {logits}, gradients {gradients}",
            config.label()
        );
    }
    assert_eq!(choice.precision, Precision::Bf16, "auto on a GPU of compute capability >= 8.0: {choice}");
}

/// The byte-level GPT in bf16 on the GPU against the CPU's fp32 (tests/numerics/transformer.rs does
/// the same on the CPU): on a GPU the sequential model's attention is libtorch's fused kernel in bf16
/// too, and warpnet2's tangent passes run in bf16; both within bf16's rounding bound.
#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh"]
fn gpu_lm_bf16_matches_cpu_fp32_within_bf16_rounding() {
    let device = cuda();
    let choice = PrecisionSetting::Auto.resolve(&[device], Workload::Transformer);
    assert_eq!(choice.precision, Precision::Bf16, "auto for the GPT on tensor cores: {choice}");
    for variant in [LmVariant::Sequential, LmVariant::Warpnet2] {
        let (logits, gradients, kind) = common::lm_against_cpu_fp32(variant, device, Precision::Bf16);
        let bound = common::bf16_rounding_bound(common::lm_matrix_products(variant));
        println!("GPT {variant:?} on {device:?}: logits {logits:.2e}, gradients {gradients:.2e}, bound {bound:.2e}");
        assert_eq!(kind, Kind::BFloat16, "{variant:?}: the bf16 pass computes in bf16");
        assert!(logits <= bound && gradients <= bound, "{variant:?}: logits {logits}, gradients {gradients}");
    }
}

/// `warpnet train` on the GPU for a few steps; the checkpoint it writes evaluates on the CPU.
#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh"]
fn gpu_training_run_writes_a_checkpoint_the_cpu_evaluates() {
    cuda();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    // The binary cargo built, or the copy scripts/gpu-check.sh carried to the device machine.
    let built = env!("CARGO_BIN_EXE_warpnet").to_string();
    let warpnet = std::env::var("WARPNET_BIN").unwrap_or(built);
    let train = std::process::Command::new(&warpnet)
        .args(["train", "--preset", "demo", "--epochs", "1", "--limit-train", "512", "--devices", "cuda:0"])
        .args(["--out", run.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(train.status.success(), "{}", String::from_utf8_lossy(&train.stderr));
    // `auto` on the device machines' GPUs (compute capability 9.0): bf16, recorded.
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("precision = \"bf16\""), "{config}");
    let checkpoint = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .expect("a checkpoint");
    let eval = std::process::Command::new(&warpnet)
        .args(["eval", "--checkpoint", checkpoint.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    assert!(String::from_utf8_lossy(&eval.stdout).contains("error"));
}

/// AdamW's update on cuda:0 (libtorch's fused CUDA kernel, through csrc/fused_adamw.cpp) against the
/// same update on the CPU (its fused CPU kernel, which src/base/optimizer.rs's unit test checks against
/// the rule by hand): a decayed matrix and an undecayed vector, three steps, float32; the weights and
/// both moments. Tolerance 1e-5 relative to the largest value: both compute in float32, a few ulps per
/// step and operation apart.
#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh"]
fn gpu_adamw_update_matches_the_cpu() {
    let device = cuda();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut random = |shape: &[i64]| {
        let n = shape.iter().product::<i64>() as usize;
        let values: Vec<f32> = (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect();
        Tensor::from_slice(&values).view(shape)
    };
    let (matrix, vector) = (random(&[64, 32]), random(&[32]));
    let gradients = [random(&[64, 32]), random(&[32])];
    let updated = |device: Device| {
        // Copies of their own (to_device on the CPU would share the originals' storage); the optimizer
        // updates them in place.
        let (m, v) = (matrix.copy().to_device(device), vector.copy().to_device(device));
        let params = vec![("m".to_string(), m.shallow_clone()), ("v".to_string(), v.shallow_clone())];
        let mut adamw = Optimizer::over(params, AdamWSettings::GPT);
        let gradients: Vec<Tensor> = gradients.iter().map(|g| g.to_device(device)).collect();
        for _ in 0..3 {
            adamw.step(&gradients, 1e-2);
        }
        let mut state = adamw.momentum(Device::Cpu);
        state.insert("m (weights)".into(), m.to_device(Device::Cpu));
        state.insert("v (weights)".into(), v.to_device(Device::Cpu));
        state
    };
    let (cpu, gpu) = (updated(Device::Cpu), updated(device));
    for (name, expected) in &cpu {
        let scale = expected.abs().max().double_value(&[]).max(f64::MIN_POSITIVE);
        let error = (&gpu[name] - expected).abs().max().double_value(&[]) / scale;
        assert!(error < 1e-5, "{name}: cuda against cpu {error:.2e} of the largest value");
    }
}
