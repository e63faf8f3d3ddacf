//! Gradients of small warp nets (every weight tensor and the input) against central finite differences
//! of the loss, in float64, for every variant and derivative-BN mode, with BatchNorm in training mode.
//!
//! For each tensor a random direction D is drawn and dL/dtheta . D from autograd is compared with
//! (L(theta + hD) - L(theta - hD)) / 2h. Backpropagation goes through the tangent terms (the paper's
//! d2F/dx dW), so a tangent pass that autograd could not differentiate correctly fails here.
//! Tolerance: |autograd - fd| <= 1e-6 max(|autograd|, |fd|) + 1e-8. The absolute part covers the
//! difference's rounding noise, ~1e-16 times the O(1..10) magnitudes summed into L, over h = 1e-6, i.e.
//! ~1e-9; it matters only for derivatives that are structurally zero (a BN bias followed by
//! training-mode BN), every other directional derivative here is O(0.01) or more.
//!
//! The warp output is piecewise smooth but not continuous: where a ReLU input crosses zero, the tangent
//! terms' 0/1 mask flips and the term jumps. A difference across such a jump is meaningless, so each
//! difference is taken at h, h/2, h/4, ...; where two consecutive ones disagree, the larger interval
//! straddles a jump and the step is halved again (then a new direction is drawn). A wrong gradient
//! disagrees with the consistent estimate, so still fails. Many tensors' perturbations move thousands of
//! ReLU inputs at once, so a jump within h = 1e-6 is common.

use crate::common;

use common::*;
use tch::{nn::VarStore, Device, Kind, Tensor};
use warpnet::model::{DerivativeBn, Net, NetConfig, Variant};

const H: f64 = 1e-6;
/// Directions drawn per tensor before giving up on finding one free of mask jumps.
const ATTEMPTS: usize = 5;
/// Times the step is halved, per direction, looking for two consecutive steps that agree (down to
/// H / 256 ~ 4e-9, where the difference's rounding, `rounding(h)`, is still ~1e-7 |L|).
const HALVINGS: usize = 8;
const TOLERANCE: f64 = 1e-6;
/// Absolute tolerance: the finite difference's rounding noise (see above), with margin.
const NOISE: f64 = 1e-8;

struct Case {
    k: usize,
    variant: Variant,
    mode: DerivativeBn,
}

fn check_gradients(case: &Case, seed: i64) {
    let _seeded = seed_exclusively(seed);
    let mut vs = VarStore::new(Device::Cpu);
    let mut config = NetConfig::warp(case.k, 1, 1, 5, case.variant);
    config.derivative_bn = case.mode;
    let net = Net::new(&vs.root(), &config);
    vs.double();
    randomize_batch_norms(&vs);
    // (B, C, H, W) = (3, 3, 8, 8): stages at 8, 4 and 2 pixels; the network is size-agnostic.
    let x = Tensor::randn([3, 3, 8, 8], F64).set_requires_grad(true);
    let weights = Tensor::randn([3, 5], F64); // L = sum(logits * weights), a generic linear read-out
    let loss = |x: &Tensor| (net.forward(x, true) * &weights).sum(Kind::Double);

    let mut named: Vec<(String, Tensor)> =
        vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let mut inputs: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
    inputs.push(x.shallow_clone());
    let l0 = loss(&x);
    // Rounding of a central difference at step h: each loss carries ~eps |L| of error, divided by 2h;
    // with a factor 4 of margin.
    let magnitude = l0.double_value(&[]).abs();
    let rounding = |h: f64| 4.0 * f64::EPSILON * magnitude / h;
    // A tensor the loss does not reach gets an undefined gradient: zeros, so a broken graph shows up as
    // "autograd 0 vs fd ..." rather than a crash.
    let grads: Vec<Tensor> = Tensor::run_backward(&[&l0], &inputs, false, false)
        .into_iter()
        .zip(&inputs)
        .map(|(g, t)| if g.defined() { g } else { t.zeros_like() })
        .collect();

    let x = x.detach();
    // Directional derivative along d: by autograd, and by central differences at shrinking steps until
    // two consecutive steps agree (neither interval straddles a mask jump); that estimate must match.
    let check = |what: &str, grad: &Tensor, like: &Tensor, loss_at: &dyn Fn(&Tensor, f64) -> f64| {
        for _ in 0..ATTEMPTS {
            let d = Tensor::randn_like(like);
            let analytic = (grad * &d).sum(Kind::Double).double_value(&[]);
            let fd = |h: f64| (loss_at(&d, h) - loss_at(&d, -h)) / (2.0 * h);
            let (mut h, mut previous) = (H, fd(H));
            for _ in 0..HALVINGS {
                h /= 2.0;
                let estimate = fd(h);
                let allowed = TOLERANCE * analytic.abs().max(estimate.abs()) + NOISE + rounding(h);
                // The two steps disagree: a jump lies within the larger (h/2 doubles the noise).
                if (estimate - previous).abs() > 2.0 * allowed {
                    previous = estimate;
                    continue;
                }
                let error = (analytic - estimate).abs();
                assert!(error < allowed, "{}: {what}: autograd {analytic} vs fd {estimate}", config.label());
                return;
            }
        }
        panic!("{}: {what}: no direction and step free of mask jumps in {ATTEMPTS} tries", config.label());
    };
    let mut checked = 0;
    for ((name, param), grad) in named.iter().zip(&grads) {
        let loss_at = |d: &Tensor, h: f64| {
            tch::no_grad(|| {
                let _ = param.shallow_clone().g_add_(&(d * h));
                let l = loss(&x).double_value(&[]);
                let _ = param.shallow_clone().g_add_(&(d * -h));
                l
            })
        };
        check(name, grad, param, &loss_at);
        checked += 1;
    }
    let loss_at = |d: &Tensor, h: f64| tch::no_grad(|| loss(&(&x + d * h)).double_value(&[]));
    check("input", grads.last().unwrap(), &x, &loss_at);
    // stem conv + BN, 3 stages x K units x (3 BNs x 2 + 2 convs), head BN + Linear.
    assert_eq!(checked, 3 + 3 * case.k * 8 + 4);
}

#[test]
fn k2_gradients_match_finite_differences() {
    for (i, (variant, mode)) in [
        (Variant::Exact, DerivativeBn::None),
        (Variant::Exact, DerivativeBn::Frozen),
        (Variant::Exact, DerivativeBn::Exact),
        (Variant::Warpnet1, DerivativeBn::None),
        (Variant::Warpnet2, DerivativeBn::Frozen),
        (Variant::Released, DerivativeBn::None),
    ]
    .into_iter()
    .enumerate()
    {
        check_gradients(&Case { k: 2, variant, mode }, 10 + i as i64);
    }
}

#[test]
fn k3_gradients_match_finite_differences() {
    for (i, (variant, mode)) in [
        (Variant::Exact, DerivativeBn::Exact),
        (Variant::Warpnet1, DerivativeBn::None),
        (Variant::Warpnet2, DerivativeBn::None),
    ]
    .into_iter()
    .enumerate()
    {
        check_gradients(&Case { k: 3, variant, mode }, 20 + i as i64);
    }
}
