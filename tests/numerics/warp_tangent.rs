//! The tangent pass F'(x1)v of a residual unit against central finite differences of the function it
//! is the derivative of, in float64, for each derivative-BN mode.
//!
//! Tolerance: relative error < 1e-6. With h = 1e-6 the central difference of a function that is smooth
//! near x1 (ReLU kinks are crossed with negligible probability at this h) has truncation error O(h^2)
//! and rounding error ~1e-16 / h = 1e-10, both far below 1e-6; a wrong Jacobian is off by O(1).

use crate::common;

use common::*;
use tch::Tensor;
use warpnet::model::layers::BN_EPS;
use warpnet::model::wrn::unit::{Linearization, ResidualUnit};
use warpnet::model::DerivativeBn;

const H: f64 = 1e-6;
const TOLERANCE: f64 = 1e-6;

fn linearization(unit: &ResidualUnit, x1: &Tensor, train: bool, mode: DerivativeBn) -> Linearization {
    unit.primal_with(x1, train, false, Some(mode)).linearization.unwrap()
}

fn point_and_direction() -> (Tensor, Tensor) {
    // (B, C, H, W) = (4, 3, 5, 5): enough batch and space for BN statistics to matter.
    (Tensor::randn([4, 3, 5, 5], F64), Tensor::randn([4, 3, 5, 5], F64))
}

/// `none` (the paper): with every BN the identity, the unit is BN-free and `none` is its derivative.
#[test]
fn none_is_the_derivative_of_the_bn_free_unit() {
    let _seeded = seed_exclusively(1);
    let (_vs, mut unit) = unit_f64(3);
    for bn in [&mut unit.bn0, &mut unit.bn1, &mut unit.bn2] {
        make_identity(bn);
    }
    let (x1, v) = point_and_direction();
    let tangent = unit.tangent_with(&linearization(&unit, &x1, false, DerivativeBn::None), &v);
    let fd = central_difference(|x| unit.forward(x, false), &x1, &v, H);
    let error = relative_error(&tangent, &fd);
    assert!(error < TOLERANCE, "relative error {error}");
}

/// With non-trivial BN, `none` is not the unit's derivative: the paper's departure from the series.
#[test]
fn none_departs_from_the_derivative_of_a_unit_with_batch_norm() {
    let _seeded = seed_exclusively(2);
    let (_vs, unit) = unit_f64(3);
    let (x1, v) = point_and_direction();
    let tangent = unit.tangent_with(&linearization(&unit, &x1, false, DerivativeBn::None), &v);
    let fd = central_difference(|x| unit.forward(x, false), &x1, &v, H);
    assert!(relative_error(&tangent, &fd) > 1e-2);
}

/// Eval mode: BN is affine with running statistics, so `frozen` and `exact` are both the derivative.
#[test]
fn frozen_and_exact_in_eval_mode_are_the_derivative() {
    let _seeded = seed_exclusively(3);
    let (_vs, unit) = unit_f64(3);
    let (x1, v) = point_and_direction();
    let fd = central_difference(|x| unit.forward(x, false), &x1, &v, H);
    for mode in [DerivativeBn::Frozen, DerivativeBn::Exact] {
        let tangent = unit.tangent_with(&linearization(&unit, &x1, false, mode), &v);
        let error = relative_error(&tangent, &fd);
        assert!(error < TOLERANCE, "{mode:?}: relative error {error}");
    }
}

/// Per-channel mean and biased variance of a (B, C, H, W) tensor, computed by hand.
fn batch_statistics(x: &Tensor) -> (Tensor, Tensor) {
    let c = x.size()[1];
    let per_channel = x.transpose(0, 1).reshape([c, -1]); // (C, B*H*W)
    let n = per_channel.size()[1] as f64;
    let mean = per_channel.sum_dim_intlist(1, false, None) / n;
    let centred = &per_channel - mean.unsqueeze(1);
    let var = (&centred * &centred).sum_dim_intlist(1, false, None) / n;
    (mean, var)
}

/// `frozen` in training mode: the derivative of the unit whose BNs are affine maps with the statistics
/// of x1's batch held fixed, built here by writing those statistics (computed by hand, layer by layer)
/// into the running statistics and evaluating in eval mode.
#[test]
fn frozen_in_training_mode_is_the_derivative_of_the_frozen_unit() {
    let _seeded = seed_exclusively(4);
    let (_vs, unit) = unit_f64(3);
    let (x1, v) = point_and_direction();
    let tangent = unit.tangent_with(&linearization(&unit, &x1, true, DerivativeBn::Frozen), &v);
    let train_output = unit.forward(&x1, true);

    // Statistics at each BN's input for x1, layer by layer, then frozen into the running buffers.
    let affine = |x: &Tensor, (mean, var): &(Tensor, Tensor), gamma: &Tensor, beta: &Tensor| {
        let s = |t: &Tensor| t.view([1, -1, 1, 1]);
        (x - s(mean)) / (s(var) + BN_EPS).sqrt() * s(gamma) + s(beta)
    };
    let s0 = batch_statistics(&x1);
    let a1 = unit.conv1.forward(&affine(&x1, &s0, &unit.bn0.weight, &unit.bn0.bias));
    let s1 = batch_statistics(&a1);
    let a2 = unit.conv2.forward(&affine(&a1, &s1, &unit.bn1.weight, &unit.bn1.bias).relu());
    let s2 = batch_statistics(&a2);
    tch::no_grad(|| {
        for (bn, (mean, var)) in [(&unit.bn0, &s0), (&unit.bn1, &s1), (&unit.bn2, &s2)] {
            bn.running_mean.shallow_clone().copy_(mean);
            bn.running_var.shallow_clone().copy_(var);
        }
    });
    let frozen = |x: &Tensor| unit.forward(x, false);
    // The frozen unit agrees with the training-mode unit at x1 itself (same statistics there).
    assert!(relative_error(&frozen(&x1), &train_output) < 1e-12);
    let fd = central_difference(frozen, &x1, &v, H);
    let error = relative_error(&tangent, &fd);
    assert!(error < TOLERANCE, "relative error {error}");
}

/// `exact` in training mode: the derivative of the training-mode unit, whose batch statistics move with
/// the input.
#[test]
fn exact_in_training_mode_is_the_derivative_of_the_training_unit() {
    let _seeded = seed_exclusively(5);
    let (_vs, unit) = unit_f64(3);
    let (x1, v) = point_and_direction();
    let tangent = unit.tangent_with(&linearization(&unit, &x1, true, DerivativeBn::Exact), &v);
    let fd = central_difference(|x| unit.forward(x, true), &x1, &v, H);
    let error = relative_error(&tangent, &fd);
    assert!(error < TOLERANCE, "relative error {error}");
    // ... and `frozen` is not: the statistics' own derivative matters in training mode.
    let frozen = unit.tangent_with(&linearization(&unit, &x1, true, DerivativeBn::Frozen), &v);
    assert!(relative_error(&frozen, &fd) > 1e-3);
}

/// The tangent is linear in v (a Jacobian-vector product): F'(2a + 3b) = 2F'a + 3F'b.
#[test]
fn tangent_is_linear_in_the_vector() {
    let _seeded = seed_exclusively(6);
    let (_vs, unit) = unit_f64(3);
    let (x1, a) = point_and_direction();
    let b = Tensor::randn_like(&a);
    for mode in [DerivativeBn::None, DerivativeBn::Frozen, DerivativeBn::Exact] {
        let at = linearization(&unit, &x1, true, mode);
        let combined = unit.tangent_with(&at, &(&a * 2.0 + &b * 3.0));
        let separate = unit.tangent_with(&at, &a) * 2.0 + unit.tangent_with(&at, &b) * 3.0;
        assert!(relative_error(&combined, &separate) < 1e-12, "{mode:?}");
    }
}
