//! bf16 mixed precision against fp32, on the same weights and batch: the single-device step in every
//! variant and derivative-BN mode, the executor on threads, master weights and momentum, checkpoints
//! and the CLI.
//!
//! Tolerance: the rounding bound of bf16 (tests/common/mod.rs, `bf16_rounding_bound`, derived there from
//! bf16's 8-bit significand) for BatchNorm in eval mode. Measured: 0.004-0.09, where a wrong or
//! missing term, a gradient that does not reach the fp32 master weight, or a derivative-BN mode mixed
//! up moves the result by 0.25 or more.
//!
//! Training-mode BatchNorm amplifies the rounding of the gradients: its backward subtracts from the
//! upstream gradient its per-channel mean and its projection on the normalised input, and at
//! initialisation these are most of it, so what is left carries the rounding of the whole. That
//! cancellation measured 5-10x here (gradient errors 0.08-0.26 at batch 8; PyTorch's own autocast gives
//! 0.11-0.13 on the same networks), so the training-mode step is held to TRAIN_MODE_GRADIENTS = 0.4:
//! a gradient that misses the master weights (error 1), is scaled wrongly or computed in another
//! network (0.47-0.72 for the twins of WarpNet1 here) still fails it. Its loss is a forward quantity
//! and keeps the tight bound. That the bf16 path computes in bf16 at all is checked as well: its
//! logits are bf16, and differ from fp32 by more than u / 100.

use crate::common;

use tch::{nn::VarStore, Device, Kind, Tensor};
use warpnet::base::named::{copy_variables, deep_copy, Named, Snapshot};
use warpnet::base::optimizer::Optimizer;
use warpnet::base::optimizer::SgdSettings;
use warpnet::model::{loss, DerivativeBn, Net, NetConfig, Variant};
use warpnet::precision::Precision;
use warpnet::runtime::{Devices, Executor, Placement, Plan};

use crate::binary;
use binary::{auto_precision_expected, cpu_flags, warpnet};

/// Bound on the gradients of a training-mode step (module docs: BatchNorm's cancellation).
const TRAIN_MODE_GRADIENTS: f64 = 0.4;
const SGD: SgdSettings = SgdSettings::PAPER;
const LR: f64 = 0.1;
/// Images of a test batch: (B, 3, 32, 32).
const BATCH: i64 = 8;

/// Images (B, 3, 32, 32) and labels (B,) from a seed of their own. Like [`network`], for a test that
/// holds `common::draw_exclusively` throughout (its executors and networks draw too).
fn batch(seed: i64) -> (Tensor, Tensor) {
    tch::manual_seed(seed);
    let images = Tensor::randn([BATCH, 3, 32, 32], (Kind::Float, Device::Cpu));
    (images, Tensor::randint(10, [BATCH], (Kind::Int64, Device::Cpu)))
}

/// A network of `config` with seeded weights and (for eval-mode checks) random BatchNorm statistics,
/// so that no BN is the identity.
fn network(config: &NetConfig, seed: i64) -> (VarStore, Net) {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), config);
    common::randomize_batch_norms(&vs);
    (vs, net)
}

/// What one forward and backward in a precision gives.
struct Pass {
    /// (B, classes), widened to fp32 for comparison; `kind` is what the head computed in.
    logits: Tensor,
    kind: Kind,
    loss: f64,
    /// Every trainable parameter's gradient, flattened and concatenated in name order.
    gradients: Tensor,
    /// 3x3 convolutions of the forward pass.
    convolutions: u64,
}

fn pass(
    net: &Net,
    vs: &VarStore,
    precision: Precision,
    train: bool,
    (images, labels): &(Tensor, Tensor),
) -> Pass {
    let sgd = Optimizer::new(vs, SGD);
    warpnet::model::op_count::reset();
    let logits = net.forward(&precision.input(images), train);
    let convolutions = warpnet::model::op_count::read().convolutions;
    let loss = loss::cross_entropy(&logits, labels);
    let gradients: Vec<Tensor> = sgd.gradients(&loss).iter().map(|g| g.flatten(0, -1)).collect();
    Pass {
        kind: logits.kind(),
        logits: logits.to_kind(Kind::Float),
        loss: loss.double_value(&[]),
        gradients: Tensor::cat(&gradients, 0),
        convolutions,
    }
}

/// Every variant at K = 2 with BN removed from F' (the paper's), and the exact expansion under the two
/// other derivative-BN modes; the WRN twin first.
fn cases() -> Vec<NetConfig> {
    let mut cases = vec![NetConfig::wrn(2, 1, 10)];
    for variant in [Variant::Exact, Variant::Warpnet1, Variant::Warpnet2, Variant::Released] {
        cases.push(NetConfig::warp(2, 1, 1, 10, variant));
    }
    for mode in [DerivativeBn::Frozen, DerivativeBn::Exact] {
        cases.push(NetConfig { derivative_bn: mode, ..NetConfig::warp(2, 1, 1, 10, Variant::Exact) });
    }
    cases
}

/// BatchNorm in eval mode (an affine map): logits, loss and gradients within the rounding bound.
#[test]
fn bf16_forward_and_backward_match_fp32_within_bf16_rounding() {
    let _drawing = common::draw_exclusively();
    for (i, config) in cases().iter().enumerate() {
        let (vs, net) = network(config, i as i64);
        let batch = batch(100 + i as i64);
        let fp32 = pass(&net, &vs, Precision::Fp32, false, &batch);
        let bf16 = pass(&net, &vs, Precision::Bf16, false, &batch);
        let what = config.describe();
        assert_eq!((fp32.kind, bf16.kind), (Kind::Float, Kind::BFloat16), "{what}: the head's kind");
        let logits = common::relative_error(&bf16.logits, &fp32.logits);
        let gradients = common::relative_error(&bf16.gradients, &fp32.gradients);
        let loss = (bf16.loss - fp32.loss).abs() / fp32.loss;
        println!(
            "{what}: logits {logits:.2e}, loss {loss:.2e}, gradients {gradients:.2e}, bound {:.2e}",
            common::bf16_rounding_bound(fp32.convolutions)
        );
        assert!(
            logits > common::BF16_U / 100.0,
            "{what}: bf16 logits equal fp32's ({logits:e}): not computed in bf16"
        );
        let bound = common::bf16_rounding_bound(fp32.convolutions);
        for (name, error) in [("logits", logits), ("loss", loss), ("gradients", gradients)] {
            assert!(error <= bound, "{what}: {name} off by {error:.3e} > {bound:.3e}");
        }
    }
}

/// The training step itself (BatchNorm on batch statistics): loss within the rounding bound, gradients
/// within the training-mode bound (module docs).
#[test]
fn bf16_training_step_matches_fp32_step() {
    let _drawing = common::draw_exclusively();
    for (i, config) in cases().iter().enumerate() {
        let (vs, net) = network(config, 10 + i as i64);
        let batch = batch(200 + i as i64);
        let fp32 = pass(&net, &vs, Precision::Fp32, true, &batch);
        let bf16 = pass(&net, &vs, Precision::Bf16, true, &batch);
        let what = config.describe();
        let loss = (bf16.loss - fp32.loss).abs() / fp32.loss;
        let gradients = common::relative_error(&bf16.gradients, &fp32.gradients);
        println!("{what}: loss {loss:.2e}, gradients {gradients:.2e}");
        assert!(loss <= common::bf16_rounding_bound(fp32.convolutions), "{what}: loss off by {loss:.3e}");
        assert!(gradients <= TRAIN_MODE_GRADIENTS, "{what}: gradients off by {gradients:.3e}");
    }
}

/// The gradient of every parameter recovered from one SGD step that started with zero momentum:
/// p1 = p0 - lr (g + wd p0), so g = (p0 - p1) / lr - wd p0; flattened in name order.
fn gradients_of_step(before: &Named, after: &Named, names: &[String]) -> Tensor {
    let flat: Vec<Tensor> = names
        .iter()
        .map(|n| ((&before[n] - &after[n]) / LR - &before[n] * SGD.weight_decay).flatten(0, -1))
        .collect();
    Tensor::cat(&flat, 0)
}

/// The executor on CPU threads, model-parallel and data-parallel, steps in bf16: its losses and the
/// gradients of its updates against the fp32 single-device step, within the training-mode bounds;
/// master weights and momentum stay fp32 on every device.
#[test]
fn executor_steps_in_bf16_with_fp32_master_weights() {
    let _drawing = common::draw_exclusively();
    let config = NetConfig::warp(2, 1, 1, 10, Variant::Warpnet1);
    let batch = batch(300);
    let (vs, net) = network(&config, 30);
    let names: Vec<String> = Optimizer::new(&vs, SGD).names().map(String::from).collect();
    let initial = copy_variables(&vs, Device::Cpu);
    let fp32 = pass(&net, &vs, Precision::Fp32, true, &batch);
    let terms = warpnet::model::Architecture::terms(&config);
    for (devices, placement) in [("cpu:2", Some("[F1],[F2,F2'x1]")), ("cpu:2", None)] {
        let devices: Devices = devices.parse().unwrap();
        let placement = placement.map(|p| Placement::parse(p, &terms).unwrap());
        let plan = Plan::new(&devices, placement).unwrap();
        let data_parallel = plan.placement.is_none();
        let start = Snapshot { variables: deep_copy(&initial), momentum: Named::new() };
        let mut executor = Executor::new(&config.network(), &devices, plan, &start, SGD)
            .unwrap()
            .with_precision(Precision::Bf16);
        let loss = executor.step(&batch.0, &batch.1, LR).loss;
        let after = executor.variables(Device::Cpu);
        let what = format!("{devices} {}", if data_parallel { "data parallel" } else { "[F1],[F2,F2'x1]" });
        for (name, t) in after.iter().chain(&executor.momentum()) {
            assert_eq!(t.kind(), Kind::Float, "{what}: {name} is a fp32 master tensor");
        }
        if data_parallel {
            continue; // BatchNorm saw half the batch per replica: another step than the reference's
        }
        let gradients = common::relative_error(&gradients_of_step(&initial, &after, &names), &fp32.gradients);
        let loss_error = (loss - fp32.loss).abs() / fp32.loss;
        println!("{what}: loss {loss_error:.2e}, gradients {gradients:.2e}");
        let bound = common::bf16_rounding_bound(fp32.convolutions);
        assert!(loss_error <= bound, "{what}: loss {loss} vs fp32 {}", fp32.loss);
        assert!(gradients <= TRAIN_MODE_GRADIENTS, "{what}: gradients off by {gradients:.3e}");
    }
}

/// On one device: after bf16 steps the weights, BatchNorm statistics and momentum are fp32, and a step
/// moved them (the gradients reached the master weights).
#[test]
fn single_device_bf16_steps_keep_fp32_master_weights() {
    let _drawing = common::draw_exclusively();
    let config = NetConfig::wrn(2, 1, 10);
    let (vs, net) = network(&config, 40);
    let before = copy_variables(&vs, Device::Cpu);
    // No weight decay: only a gradient that reached a master weight moves it.
    let sgd = Optimizer::new(&vs, SgdSettings { weight_decay: 0.0, ..SGD });
    let mut stepper = warpnet::train::step::Stepper::Single { optimizer: sgd, precision: Precision::Bf16 };
    for seed in 0..3 {
        let (images, labels) = batch(400 + seed);
        assert!(stepper.step(&net, &images, &labels, LR).loss.is_finite());
    }
    for (name, t) in copy_variables(&vs, Device::Cpu).iter().chain(&stepper.momentum()) {
        assert_eq!(t.kind(), Kind::Float, "{name}");
    }
    let moved = copy_variables(&vs, Device::Cpu)
        .iter()
        .filter(|(name, t)| !name.contains("running") && !t.equal(&before[*name]))
        .count();
    assert_eq!(
        moved,
        Optimizer::new(&vs, SgdSettings { momentum: 0.0, weight_decay: 0.0 }).names().count(),
        "every parameter stepped"
    );
}

/// Channels-last, as bf16 lays its activations out, is kept through the network: a layer's output is
/// stored channels-last when its input was.
#[test]
fn channels_last_layout_survives_the_network() {
    let _drawing = common::draw_exclusively();
    let config = NetConfig::warp(2, 1, 2, 10, Variant::Warpnet1);
    let (_vs, net) = network(&config, 50);
    let (images, _) = batch(500);
    let features = net.features(&Precision::Bf16.input(&images), true);
    for (stage, f) in features.iter().enumerate() {
        assert!(warpnet::precision::is_channels_last(f), "stage {} output is not channels-last", stage + 1);
        assert_eq!(f.kind(), Kind::BFloat16);
    }
    // fp32 is NCHW (src/precision.rs), and the network keeps that too.
    for f in &net.features(&Precision::Fp32.input(&images), true) {
        assert!(!warpnet::precision::is_channels_last(f) && f.is_contiguous(), "fp32 stays NCHW");
        assert_eq!(f.kind(), Kind::Float);
    }
}

/// fp32 in either layout against the same step in float64 NCHW: per-tensor gradient errors. NCHW
/// measured 5e-6 at worst; channels-last, whose CPU kernels reduce serially in fp32 (docs/speed.md),
/// 9.4e-4 (the stem's convolution, a sum over all B*32*32 positions of 3 input channels) and 1-7e-5
/// elsewhere. Bounds: 1e-4 for NCHW, 1e-2 for channels-last, both far below bf16's unit roundoff of
/// 3.9e-3 per operation, where an activation read in the wrong layout gives errors of order 1.
#[test]
fn fp32_gradients_match_float64_in_both_layouts() {
    let _drawing = common::draw_exclusively();
    use warpnet::precision::MemoryFormat;
    let config = NetConfig::warp(2, 1, 1, 10, Variant::Warpnet1);
    let (mut vs, net) = network(&config, 60);
    let (images, labels) = batch(600);
    let gradients = |vs: &VarStore, x: Tensor| -> Vec<(String, Tensor)> {
        let mut trainable: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        trainable.sort_by(|a, b| a.0.cmp(&b.0));
        let loss = loss::cross_entropy(&net.forward(&x, true), &labels);
        let ts: Vec<Tensor> = trainable.iter().map(|(_, t)| t.shallow_clone()).collect();
        let g = Tensor::run_backward(&[loss], &ts, false, false);
        trainable.into_iter().map(|(n, _)| n).zip(g.into_iter().map(|t| t.to_kind(Kind::Double))).collect()
    };
    let nchw = gradients(&vs, Precision::Fp32.input_as(&images, MemoryFormat::Nchw));
    let channels_last = gradients(&vs, Precision::Fp32.input_as(&images, MemoryFormat::ChannelsLast));
    vs.double();
    let exact = gradients(&vs, images.to_kind(Kind::Double));
    let largest = exact.iter().map(|(_, g)| g.norm().double_value(&[])).fold(0.0, f64::max);
    for (layout, got, bound) in [("NCHW", &nchw, 1e-4), ("channels-last", &channels_last, 1e-2)] {
        for ((name, g), (_, e)) in got.iter().zip(&exact) {
            let size = e.norm().double_value(&[]);
            if size < 1e-6 * largest {
                continue; // a gradient that is zero up to rounding (module docs of tests/parallel/parallel_executor.rs)
            }
            let error = (g - e).norm().double_value(&[]) / size;
            assert!(error <= bound, "{layout}: {name} off by {error:.2e} > {bound:.0e}");
        }
    }
}

// ---- the command line ----

fn succeed(args: &[&str]) -> (String, String) {
    let out = warpnet(args);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?}: {stderr}");
    (stdout.into_owned(), stderr.into_owned())
}

/// Whether the kernel lists native bf16 for this CPU: an independent reading of what `auto` decides
/// from CPUID (x86-64 Linux flags amx_bf16 and avx512_bf16).
fn cpuinfo_lists_bf16() -> bool {
    cpu_flags().iter().any(|f| f == "amx_bf16" || f == "avx512_bf16")
}

/// The demo recipe on WRN-7-1 for `epochs` epochs of 16 steps (1,024 images, batch 64).
fn demo_run<'a>(out: &'a str, epochs: &'a str, precision: &'a str) -> Vec<&'a str> {
    let run = [
        "train",
        "--preset",
        "demo",
        "--k",
        "1",
        "--limit-train",
        "1024",
        "--batch",
        "64",
        "--milestones",
        "1",
    ];
    let mut args = run.to_vec();
    args.extend(["--epochs", epochs, "--precision", precision, "--quiet", "--out", out]);
    args
}

fn test_error(eval_json: &str) -> f64 {
    let json: serde_json::Value = serde_json::from_str(eval_json.lines().last().unwrap()).unwrap();
    json["results"][0]["evaluation"]["error"].as_f64().unwrap()
}

/// A bf16 run: it says so (and warns where bf16 is emulated), its folder records bf16, its checkpoint
/// holds fp32 tensors that evaluate under fp32 and bf16 alike, and a resume from its first epoch's
/// checkpoint keeps bf16 and ends bit for bit where the uninterrupted run did.
#[test]
fn bf16_run_records_its_precision_and_its_checkpoint_evaluates_in_both() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("bf16");
    let run_arg = run.to_str().unwrap();
    let (_, stderr) = succeed(&demo_run(run_arg, "2", "bf16"));
    let warned = stderr.contains("warning: --precision bf16 without native bf16");
    assert_eq!(warned, !cpuinfo_lists_bf16(), "warns exactly where bf16 is emulated: {stderr}");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("precision = \"bf16\""), "{config}");
    let weights = run.join("model.safetensors");
    for (name, t) in Tensor::read_safetensors(&weights).unwrap() {
        assert_eq!(t.kind(), Kind::Float, "{name}: checkpoints keep fp32");
    }

    // Evaluated in both precisions: the same weights on the same 1,000 test images; only images at a
    // decision boundary within bf16 rounding can change class. Within 2 points, the standard deviation
    // of a test error near 30% measured on 1,000 images (sqrt(0.3 x 0.7 / 1000) = 1.4 points): noise.
    let weights_arg = weights.to_str().unwrap();
    let eval = |precision| {
        succeed(&["eval", "--checkpoint", weights_arg, "--as", "wrn", "--precision", precision, "--json"]).0
    };
    let (fp32, bf16) = (test_error(&eval("fp32")), test_error(&eval("bf16")));
    println!("test error: fp32 {fp32:.4}, bf16 {bf16:.4}");
    assert!((fp32 - bf16).abs() <= 0.02, "fp32 {fp32} vs bf16 {bf16}");
    assert!(fp32 < 0.6, "the run learned something: test error {fp32}");

    // predict in both: the same most probable class for a test image, its probability within 0.05 (a
    // softmax of logits that bf16 moves by ~1%: measured 0.00-0.01).
    let image = dir.path().join("image.png");
    let pixels: Vec<u8> = (0..32 * 32 * 3).map(|i| (i * 37 % 251) as u8).collect();
    image::save_buffer(&image, &pixels, 32, 32, image::ColorType::Rgb8).unwrap();
    let predict = |precision| {
        let args =
            ["predict", "--checkpoint", weights_arg, image.to_str().unwrap(), "--precision", precision];
        let stdout = succeed(&[&args[..], &["--json"]].concat()).0;
        let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(json["precision"], precision);
        let top = &json["predictions"][0]["top"][0];
        (top[0].as_str().unwrap().to_string(), top[1].as_f64().unwrap())
    };
    let ((class32, p32), (class16, p16)) = (predict("fp32"), predict("bf16"));
    println!("predict: fp32 {class32} {p32:.4}, bf16 {class16} {p16:.4}");
    assert!(class32 == class16 && (p32 - p16).abs() <= 0.05, "fp32 {class32} {p32} vs bf16 {class16} {p16}");

    // Resume from the first epoch's checkpoint (the second's removed, as if killed during epoch 2).
    let whole = std::fs::read(&weights).unwrap();
    let checkpoints = run.join("checkpoints");
    for entry in std::fs::read_dir(&checkpoints).unwrap() {
        let path = entry.unwrap().path();
        if path.file_stem().is_some_and(|s| s == "step-00000032") {
            std::fs::remove_file(path).unwrap();
        }
    }
    std::fs::remove_file(&weights).unwrap();
    let (stdout, _) = succeed(&["train", "--resume", run_arg]);
    assert!(stdout.contains("resumed at step 16") && stdout.contains("precision bf16"), "{stdout}");
    assert!(std::fs::read(&weights).unwrap() == whole, "the resumed bf16 run ends where the whole one did");
}

/// `auto` is decided when the run starts, and the run folder records the decision, never `auto`.
#[test]
fn auto_records_what_this_machine_computes_in() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("auto");
    let (stdout, _) = succeed(&[
        "train",
        "--preset",
        "demo",
        "--limit-train",
        "128",
        "--batch",
        "64",
        "--iters",
        "1",
        "--out",
        run.to_str().unwrap(),
    ]);
    let expected = auto_precision_expected(&stdout);
    assert!(stdout.contains(&format!("precision {expected} (auto: ")), "{stdout}");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains(&format!("precision = \"{expected}\"")), "{config}");
}
