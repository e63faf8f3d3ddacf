//! Every executor against the single-device step: model parallelism (terms on CPU workers), data
//! parallelism (whole replicas), and the hybrid give the same loss and the same updated weights.
//!
//! Tolerance: float32, ||a - b|| <= 2e-4 ||b|| + 1e-6 per tensor. The executors add the same terms in a
//! different association order and sum gradients from several devices, which moves results by float32
//! rounding (~1e-7 per operation, compounded over the network); a wrong or missing gradient term moves
//! them by percent or more. The absolute 1e-6 covers tensors whose gradient is zero up to rounding (the
//! BN biases of the last layer, whose shift the head's training-mode BN removes): they stay at ~0.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{nn::VarStore, Device, Tensor};
use warpnet::base::named::{copy_variables, deep_copy, Named, Snapshot};
use warpnet::base::optimizer::Optimizer;
use warpnet::base::optimizer::SgdSettings;
use warpnet::model::{DerivativeBn, Net, NetConfig, Variant};
use warpnet::runtime::{Devices, Executor, Placement, Plan};

const SGD: SgdSettings = SgdSettings::PAPER;
const LR: f64 = 0.1;
const TOLERANCE: f64 = 2e-4;
const ABSOLUTE: f64 = 1e-6;
/// Batch of the test steps: (B, 3, 32, 32).
const BATCH: i64 = 8;

/// A batch drawn from its own seeded generator: libtorch's global generator is shared with the tests
/// running on other threads, so the reference and the executor could otherwise see different batches.
fn batch(seed: u64) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels: Vec<f32> = (0..BATCH * 3 * 32 * 32).map(|_| rng.gen_range(-2.0..2.0)).collect();
    let labels: Vec<i64> = (0..BATCH).map(|_| rng.gen_range(0..10)).collect();
    (Tensor::from_slice(&pixels).view([BATCH, 3, 32, 32]), Tensor::from_slice(&labels))
}

/// The single-device reference: `steps` SGD steps; each step's gradient is the sum over `shards` equal
/// slices of the batch of (slice mean loss) x (slice share), each slice forwarded on its own (so BatchNorm
/// sees one slice at a time, as a data-parallel replica does). Returns the losses and the variables.
fn reference(config: &NetConfig, initial: &Named, shards: i64, steps: i64) -> (Vec<f64>, Named) {
    // One intra-op thread, as every executor thread on this 2-core machine: the same kernels, the same
    // reduction order inside them (this thread's default would otherwise depend on which test's
    // workers started first).
    tch::set_num_threads(1);
    let vs = VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), config);
    warpnet::base::named::assign_variables(&vs, initial);
    let mut sgd = Optimizer::new(&vs, SGD);
    let mut losses = Vec::new();
    for step in 0..steps {
        let (images, labels) = batch(100 + step as u64);
        let mut total: Option<Vec<Tensor>> = None;
        let mut loss = 0.0;
        for (x, y) in images.chunk(shards, 0).iter().zip(labels.chunk(shards, 0)) {
            let share = y.size()[0] as f64 / BATCH as f64;
            let l = net.forward(x, true).cross_entropy_for_logits(&y) * share;
            loss += l.double_value(&[]);
            let g = sgd.gradients(&l);
            total = Some(match total {
                None => g,
                Some(t) => t.iter().zip(&g).map(|(a, b)| a + b).collect(),
            });
        }
        sgd.step(&total.unwrap(), LR);
        losses.push(loss);
    }
    (losses, copy_variables(&vs, Device::Cpu))
}

fn run_executor(
    config: &NetConfig,
    initial: &Named,
    devices: &str,
    placement: Option<&str>,
    steps: i64,
) -> (Vec<f64>, Executor) {
    let devices: Devices = devices.parse().unwrap();
    let terms = warpnet::model::Architecture::terms(config);
    let placement = placement.map(|p| Placement::parse(p, &terms).unwrap());
    let plan = Plan::new(&devices, placement).unwrap();
    let start = Snapshot { variables: deep_copy(initial), momentum: Named::new() };
    let mut executor = Executor::new(&config.network(), &devices, plan, &start, SGD).unwrap();
    let losses = (0..steps)
        .map(|step| {
            let (images, labels) = batch(100 + step as u64);
            executor.step(&images, &labels, LR).loss
        })
        .collect();
    (losses, executor)
}

fn assert_close(what: &str, got: &Named, expected: &Named, trainable_only: bool) {
    for (name, e) in expected {
        if trainable_only && name.contains("running") {
            continue;
        }
        let g = &got[name];
        let (difference, size) = ((g - e).norm().double_value(&[]), e.norm().double_value(&[]));
        assert!(
            difference <= TOLERANCE * size + ABSOLUTE,
            "{what}: {name} differs by {difference} (norm {size})"
        );
    }
}

/// Initial weights (drawn once; the reference and the executor both start from this copy). The
/// calling test holds `common::draw_exclusively` throughout, so that no other test's draws land
/// between the seed and these weights.
fn initial(config: &NetConfig, seed: i64) -> Named {
    tch::manual_seed(seed);
    let vs = VarStore::new(Device::Cpu);
    let _net = Net::new(&vs.root(), config);
    copy_variables(&vs, Device::Cpu)
}

/// Model parallelism: one replica, terms on workers. Two steps, so momentum is exercised too.
#[test]
fn model_parallel_matches_single_device() {
    let _drawing = crate::common::draw_exclusively();
    let cases = [
        (NetConfig::warp(2, 1, 1, 10, Variant::Warpnet1), "cpu:3", "[F1],[F2],[F2'x1]"),
        (NetConfig::warp(2, 1, 1, 10, Variant::Warpnet1), "cpu:2", "[F1],[F2,F2'x1]"),
        (NetConfig::warp(2, 1, 1, 10, Variant::Exact), "cpu:3", "[F1],[F2],[F2'F1]"),
        (NetConfig::warp(3, 1, 1, 10, Variant::Warpnet2), "cpu:4", "[F1],[F2],[F3],[F2'F1,F3'F1,F3'F2]"),
        (NetConfig::warp(2, 1, 1, 10, Variant::Released), "cpu:2", "[F1,F2'x1],[F2]"),
        // F2'x1 split by batch (parallel/placement/shares.rs): the piece on worker 1 reads unit 2's mask rows from
        // worker 2; 0.3 of a batch of 8 rounds to rows 0..2, so the pieces are unequal. (Case i starts
        // from seed i. From seed 5 this network has a ReLU input within rounding of 0: [F1,F2'x1],[F2]
        // and [F1],[F2],[F2'x1] as well as this split flip its mask against the reference and move the
        // step by ~1e-3, so it is no seed for a 2e-4 tolerance.)
        (NetConfig::warp(2, 1, 1, 10, Variant::Warpnet1), "cpu:2", "[F1,F2'x1:0.3],[F2,F2'x1:0.7]"),
        (NetConfig::warp(2, 1, 1, 10, Variant::Warpnet1), "cpu:2", "[F1,F2'x1:0.5],[F2,F2'x1:0.5]"),
        // Pieces on a worker that holds no F_j, masks from two others; K = 3.
        (
            NetConfig::warp(3, 1, 1, 10, Variant::Warpnet1),
            "cpu:3",
            "[F1,F2'x1:0.5],[F2,F3'x1:0.5],[F3,F2'x1:0.5,F3'x1:0.5]",
        ),
        (NetConfig::warp(2, 1, 1, 10, Variant::Released), "cpu:2", "[F1,F2'x1:0.5],[F2,F2'x1:0.5]"),
        // Outputs sent between workers (runtime/placement/shares.rs): the device of F'_j receives
        // F1 .. F_{j-1} from theirs and sends their gradients back; WarpNet2's two-phase schedule and
        // the exact layer's, whose F3'F2'F1 needs F2'(F1) computed where F3' is; BN frozen in F'.
        (NetConfig::warp(3, 1, 1, 10, Variant::Warpnet2), "cpu:3", "[F1],[F2,F2'F1],[F3,F3'F1,F3'F2]"),
        (NetConfig::warp(3, 1, 1, 10, Variant::Exact), "cpu:3", "[F1],[F2,F2'F1],[F3,F3'F1,F3'F2,F3'F2'F1]"),
        (
            NetConfig {
                derivative_bn: DerivativeBn::Frozen,
                ..NetConfig::warp(2, 1, 1, 10, Variant::Warpnet2)
            },
            "cpu:2",
            "[F1],[F2,F2'F1]",
        ),
    ];
    for (i, (config, devices, placement)) in cases.iter().enumerate() {
        let initial = initial(config, i as i64);
        let (expected_losses, expected) = reference(config, &initial, 1, 2);
        let (losses, executor) = run_executor(config, &initial, devices, Some(placement), 2);
        let what = format!("{} {placement}", config.label());
        for (l, e) in losses.iter().zip(&expected_losses) {
            assert!((l - e).abs() < TOLERANCE * e.abs(), "{what}: loss {l} vs {e}");
        }
        // BN running statistics too: every unit saw the same x1 as on one device.
        assert_close(&what, &executor.variables(Device::Cpu), &expected, false);
    }
}

/// A unit whose terms sit on two workers (F2 and F2'x1) is held twice; summed gradients keep the
/// two copies identical, bit for bit. So do the BN statistics both copies compute: the worker of F2'x1
/// needs only unit 2's mask, so its pass stops before conv2 and never updates BN2's running statistics
/// (the run keeps those of F2's worker, which model_parallel_matches_single_device checks).
#[test]
fn replicated_units_never_drift() {
    let _drawing = crate::common::draw_exclusively();
    let config = NetConfig::warp(2, 1, 1, 10, Variant::Warpnet1);
    let (_, executor) = run_executor(&config, &initial(&config, 7), "cpu:3", Some("[F1],[F2],[F2'x1]"), 3);
    let workers = executor.worker_variables(0);
    let mut shared = 0;
    for (name, t) in &workers[1] {
        assert!(name.contains(".unit2."), "worker 1 holds only unit 2 of each layer: {name}");
        let twin = &workers[2][name];
        if name.contains(".bn2.running_") {
            assert!(!t.equal(twin), "{name}: the mask-only pass should leave it untouched");
            continue;
        }
        assert!(t.equal(twin), "{name} drifted between its two replicas");
        shared += 1;
    }
    // Unit 2 of the one layer of each of 3 stages: 2 convolutions + 3 BNs x (gamma, beta, mean, var),
    // less BN2's two running statistics.
    assert_eq!(shared, 3 * (14 - 2));
    assert!(workers[0].keys().all(|n| n.contains(".unit1.")), "worker 0 holds only unit 1");
}

/// Data parallelism: whole replicas on a shard each; BN statistics per shard, so the reference forwards
/// each shard on its own too. Running statistics differ by construction (replica 0 saw only its shard).
#[test]
fn data_parallel_matches_sharded_single_device() {
    let _drawing = crate::common::draw_exclusively();
    for (config, devices) in
        [(NetConfig::wrn(2, 1, 10), "cpu:2"), (NetConfig::warp(2, 1, 1, 10, Variant::Warpnet1), "cpu:2")]
    {
        let initial = initial(&config, 3);
        let (expected_losses, expected) = reference(&config, &initial, 2, 2);
        let (losses, executor) = run_executor(&config, &initial, devices, None, 2);
        for (l, e) in losses.iter().zip(&expected_losses) {
            assert!((l - e).abs() < TOLERANCE * e.abs(), "{}: loss {l} vs {e}", config.label());
        }
        assert_close(&config.label(), &executor.variables(Device::Cpu), &expected, true);
    }
}

/// The hybrid: two replicas, each model-parallel over two workers (also with a term split by batch
/// inside each replica: its pieces share the replica's shard).
#[test]
fn hybrid_matches_sharded_single_device() {
    let _drawing = crate::common::draw_exclusively();
    let config = NetConfig::warp(2, 1, 1, 10, Variant::Warpnet1);
    let initial = initial(&config, 5);
    let (expected_losses, expected) = reference(&config, &initial, 2, 2);
    for placement in ["[F1],[F2,F2'x1]", "[F1,F2'x1:0.5],[F2,F2'x1:0.5]"] {
        let (losses, executor) = run_executor(&config, &initial, "cpu:4", Some(placement), 2);
        assert_eq!(executor.plan.replicas, 2);
        for (l, e) in losses.iter().zip(&expected_losses) {
            assert!((l - e).abs() < TOLERANCE * e.abs(), "{placement}: loss {l} vs {e}");
        }
        assert_close(&format!("hybrid {placement}"), &executor.variables(Device::Cpu), &expected, true);
    }
}

/// A term split by batch needs derivative BN `none` or the released map: under `frozen` and `exact`
/// the BN tangents carry the whole batch's statistics (parallel/placement/shares.rs). One line, an input error.
#[test]
fn split_terms_refuse_batch_coupled_tangents() {
    let _drawing = crate::common::draw_exclusively();
    for mode in [DerivativeBn::Frozen, DerivativeBn::Exact] {
        let config = NetConfig { derivative_bn: mode, ..NetConfig::warp(2, 1, 1, 10, Variant::Warpnet1) };
        let devices: Devices = "cpu:2".parse().unwrap();
        let terms = warpnet::model::Architecture::terms(&config);
        let placement = Placement::parse("[F1,F2'x1:0.5],[F2,F2'x1:0.5]", &terms).unwrap();
        let plan = Plan::new(&devices, Some(placement)).unwrap();
        let start = Snapshot { variables: initial(&config, 1), momentum: Named::new() };
        let err = Executor::new(&config.network(), &devices, plan, &start, SGD).err().expect("refused");
        assert!(warpnet::error::is_input_error(&err), "{err}");
        assert!(err.to_string().contains(&format!("under `{mode}`")), "{err}");
    }
}

#[test]
fn plan_rejects_devices_that_do_not_fit_the_placement() {
    let _drawing = crate::common::draw_exclusively();
    let config = NetConfig::warp(2, 1, 1, 10, Variant::Warpnet1);
    let terms = warpnet::model::Architecture::terms(&config);
    let placement = Placement::parse("[F1],[F2],[F2'x1]", &terms).unwrap();
    let err = Plan::new(&"cpu:2".parse().unwrap(), Some(placement)).unwrap_err();
    assert!(warpnet::error::is_input_error(&err));
    assert!(err.to_string().contains("--devices"), "{err}");
}
