//! The unit interface is real: a second kind of residual unit, defined here and nowhere else, on flat
//! vectors, F(x) = W2 tanh(W1 x), runs through the warp operator (against finite differences), through
//! the executor on two devices with a split term (against one device), and through the planner (its
//! profile, prediction and `auto` placement).

use std::any::Any;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::nn::{Init, Path, VarStore};
use tch::{Device, Kind, Tensor};
use warpnet::base::named::copy_variables;
use warpnet::model::architecture::Module;
use warpnet::model::terms::{self, Term};
use warpnet::model::unit::{Linearization, Need, Primal, Unit};
use warpnet::model::warp::WarpLayer;
use warpnet::model::{Architecture, Description, LayerIndex, Net, Network, Variant};
use warpnet::planner::auto_placement;
use warpnet::planner::profile::{self, Bench};
use warpnet::planner::step_model::{links, predict, predict_wrn};
use warpnet::precision::Precision;
use warpnet::runtime::Placement;

use crate::steps::two_steps;

/// Features D of the vectors the units map, hidden width H of a unit, input features, classes.
const FEATURES: i64 = 6;
const HIDDEN: i64 = 5;
const INPUTS: i64 = 4;
const CLASSES: usize = 3;
/// Batch of the steps; even, so that a piece of half the batch has whole rows.
const BATCH: i64 = 8;

/// F(x) = W2 tanh(W1 x): (B, D) -> (B, D), W1 (H, D), W2 (D, H).
#[derive(Debug)]
struct TanhUnit {
    w1: Tensor,
    w2: Tensor,
}

/// The unit linearised at x1: tanh'(W1 x1) = 1 - tanh^2, (B, H), held constant in v.
struct TanhSlope(Tensor);

impl TanhUnit {
    fn new(path: &Path) -> Self {
        let init = |fan_in: i64| Init::Randn { mean: 0.0, stdev: 1.0 / (fan_in as f64).sqrt() };
        TanhUnit {
            w1: path.var("w1", &[HIDDEN, FEATURES], init(FEATURES)),
            w2: path.var("w2", &[FEATURES, HIDDEN], init(HIDDEN)),
        }
    }
}

impl Unit for TanhUnit {
    fn primal(&self, x1: &Tensor, _train: bool, need: Need) -> Primal {
        let h = x1.matmul(&self.w1.tr()).tanh(); // (B, H)
        Primal {
            output: need.output.then(|| h.matmul(&self.w2.tr())),
            linearization: need.linearization.then(|| Linearization::new(TanhSlope(1.0 - &h * &h))),
        }
    }

    /// F'(x1)v = W2 (tanh'(W1 x1) * W1 v).
    fn tangent(&self, at: &Linearization, v: &Tensor) -> Tensor {
        (v.matmul(&self.w1.tr()) * &at.of::<TanhSlope>().0).matmul(&self.w2.tr())
    }

    fn rows(&self, at: &Linearization, start: i64, rows: i64) -> Vec<Tensor> {
        vec![at.of::<TanhSlope>().0.narrow(0, start, rows)]
    }

    fn piece_linearization(&self, mut rows: Vec<Tensor>) -> Linearization {
        Linearization::new(TanhSlope(rows.remove(0)))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A linear map without bias: the stem (inputs -> D) and the head (D -> classes).
#[derive(Debug)]
struct Dense(Tensor);

impl Module for Dense {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        x.matmul(&self.0.tr())
    }
}

/// The step between stages of a network of one stage: never taken.
#[derive(Debug)]
struct Identity;

impl Module for Identity {
    fn forward(&self, x: &Tensor, _train: bool) -> Tensor {
        x.shallow_clone()
    }
}

/// One stage of `layers` warp layers of K = `k` tanh units on D features.
#[derive(Debug, Clone)]
struct FlatNet {
    k: usize,
    layers: usize,
    variant: Variant,
}

impl Architecture for FlatNet {
    fn layers(&self) -> Vec<LayerIndex> {
        (0..self.layers).map(|layer| LayerIndex { stage: 0, layer }).collect()
    }
    fn units_per_layer(&self) -> usize {
        self.k
    }
    fn terms(&self) -> Vec<Term> {
        terms::build(self.variant, self.k, None)
    }
    fn unit(&self, root: &Path, at: LayerIndex, c: usize) -> Box<dyn Unit> {
        Box::new(TanhUnit::new(&(root / format!("layer{}", at.layer) / format!("unit{c}"))))
    }
    fn stem(&self, root: &Path) -> Box<dyn Module> {
        Box::new(Dense(root.var("stem", &[FEATURES, INPUTS], Init::Randn { mean: 0.0, stdev: 0.5 })))
    }
    fn between_stages(&self) -> Box<dyn Module> {
        Box::new(Identity)
    }
    fn head(&self, root: &Path) -> Box<dyn Module> {
        Box::new(Dense(root.var("head", &[CLASSES as i64, FEATURES], Init::Randn { mean: 0.0, stdev: 0.5 })))
    }
    fn input_shape(&self) -> Vec<i64> {
        vec![INPUTS]
    }
    fn classes(&self) -> usize {
        CLASSES
    }
    fn activation_shape(&self, _stage: usize) -> Vec<i64> {
        vec![FEATURES]
    }
    /// tanh' of the H hidden features, float32.
    fn linearization_row_bytes(&self, _stage: usize) -> u64 {
        HIDDEN as u64 * 4
    }
    fn tangent_reads_primal(&self) -> bool {
        true
    }
    fn pieces_apart(&self) -> Result<(), String> {
        Ok(())
    }
    fn label(&self) -> String {
        format!("FlatNet-{}x{}", self.layers, self.k)
    }
    fn description(&self) -> Option<Description> {
        None
    }
}

/// The warp layer's F2'F1 against the central difference (F2(x1 + h F1) - F2(x1 - h F1)) / 2h, and
/// the whole exact K = 2 layer against x1 + F1 + F2 + that difference, in float64.
///
/// Tolerance: F2 is smooth, so the central difference errs by O(h^2) ~ 1e-12 times its third
/// derivative, rounding by ~1e-16 / h = 1e-10; 1e-8 is far above both and far below a wrong term's O(1).
#[test]
fn a_second_kind_of_unit_is_warped_exactly() {
    let _seeded = crate::common::seed_exclusively(3);
    let mut vs = VarStore::new(Device::Cpu);
    let net = FlatNet { k: 2, layers: 1, variant: Variant::Exact };
    let units: Vec<Box<dyn Unit>> =
        (0..2).map(|c| net.unit(&vs.root(), LayerIndex { stage: 0, layer: 0 }, c)).collect();
    vs.double();
    let layer = WarpLayer::new(units, net.terms());
    let x1 = Tensor::randn([BATCH, FEATURES], (Kind::Double, Device::Cpu));
    let whole = Need { output: true, linearization: false };
    let f = |c: usize, x: &Tensor| layer.unit(c).primal(x, false, whole).output.unwrap();
    let h = 1e-4;
    let f1 = f(0, &x1);
    let difference = (f(1, &(&x1 + &f1 * h)) - f(1, &(&x1 - &f1 * h))) / (2.0 * h);
    let primals = layer.primal_passes(&layer.terms, &x1, false, &Default::default());
    let f2_f1 = Term::of_subset(&[0, 1]);
    let term = layer.evaluate(&f2_f1, &x1, &primals);
    let error = (&term - &difference).abs().max().double_value(&[]);
    assert!(error < 1e-8, "F2'F1 against its central difference: {error}");
    let expected = &x1 + &f1 + f(1, &x1) + &difference;
    let error = (layer.forward(&x1, false) - expected).abs().max().double_value(&[]);
    assert!(error < 1e-8, "x3 = x1 + F1 + F2 + F2'F1: {error}");
}

/// A batch of inputs (B, INPUTS) and labels (B,) from a seeded generator.
fn batch(seed: u64) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let inputs: Vec<f32> = (0..BATCH * INPUTS).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let labels: Vec<i64> = (0..BATCH).map(|_| rng.gen_range(0..CLASSES as i64)).collect();
    (Tensor::from_slice(&inputs).view([BATCH, INPUTS]), Tensor::from_slice(&labels))
}

/// WarpNet1 K = 2 with F2'x1 split by batch over two workers (its piece on the first reads F2's
/// linearisation rows from the second) against the same network on one device.
///
/// Tolerance: float32; the split adds the same terms in another order and sums gradients from two
/// devices (~1e-7 per operation); 1e-5 of each tensor's norm is far above that and far below a missing
/// or misplaced piece, which changes the step by percent.
#[test]
fn the_executor_places_its_terms_and_splits_one() {
    let _seeded = crate::common::seed_exclusively(5);
    let network: Network = std::sync::Arc::new(FlatNet { k: 2, layers: 2, variant: Variant::Warpnet1 });
    let vs = VarStore::new(Device::Cpu);
    let _net = Net::new(&vs.root(), &*network);
    let initial = copy_variables(&vs, Device::Cpu);
    let (one_losses, one) = two_steps(&network, &initial, "cpu:1", None, batch);
    let (split_losses, split) =
        two_steps(&network, &initial, "cpu:2", Some("[F1,F2'x1:0.5],[F2,F2'x1:0.5]"), batch);
    for (a, b) in split_losses.iter().zip(&one_losses) {
        assert!((a - b).abs() <= 1e-5 * b.abs(), "loss {a} on two devices, {b} on one");
    }
    assert_eq!(split.len(), one.len(), "every variable once");
    for (name, expected) in &one {
        let difference = (&split[name] - expected).norm().double_value(&[]);
        let size = expected.norm().double_value(&[]);
        assert!(difference <= 1e-5 * size, "{name} differs by {difference} (norm {size})");
        assert!((&initial[name] - expected).norm().double_value(&[]) > 1e-4 * size, "{name} was trained");
    }
}

/// The planner measures the new kind through the interface and predicts from it: the WRN-like step is
/// the profile's sum as the step-time model defines it (computed here by hand), a placement on two
/// devices gives each its work, and `auto` chooses a placement of every term.
#[test]
fn the_planner_predicts_any_kind_of_unit() {
    let _drawing = crate::common::draw_exclusively();
    let network = FlatNet { k: 2, layers: 3, variant: Variant::Warpnet1 };
    let bench = Bench { device: Device::Cpu, threads: 1, busy_neighbours: 0 };
    let profile = profile::measure(&network, BATCH, Precision::Fp32, bench, 3);
    assert_eq!(profile.stages.len(), 1, "one stage");
    let stage = &profile.stages[0];
    assert!(stage.unit_forward > 0.0 && stage.tangent_forward > 0.0 && stage.unit_sgd > 0.0);
    assert_eq!(
        stage.mask_bytes,
        (BATCH * HIDDEN * 4) as f64,
        "the linearisation rows the architecture names"
    );
    assert_eq!(stage.activation_bytes, (BATCH * FEATURES * 4) as f64);
    let by_hand = profile.home + 3.0 * 2.0 * (stage.unit_forward + stage.unit_backward + stage.unit_sgd);
    assert!((predict_wrn(&network, &profile) - by_hand).abs() < 1e-9 * by_hand);
    let placement = Placement::parse("[F1,F2'x1:0.5],[F2,F2'x1:0.5]", &network.terms()).unwrap();
    let prediction = predict(&network, &placement, &profile, &links::THREADS);
    assert!(prediction.step_ms.is_finite() && prediction.step_ms > profile.home);
    assert_eq!(prediction.busy_ms.len(), 2);
    assert!(prediction.busy_ms.iter().all(|&ms| ms > 0.0), "{:?}", prediction.busy_ms);
    let (auto, _) = auto_placement::best(&network, 2, &profile, &links::THREADS);
    assert_eq!(auto.devices(), 2);
    auto.check(&network.terms()).unwrap();
}
