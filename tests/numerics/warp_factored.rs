//! The factored evaluation (model/terms.rs `factor`, model/warp.rs): terms that share their outermost
//! Jacobian share one tangent pass, and the layer still computes the paper's term list exactly.
//! Checked against the terms evaluated one by one, forward and gradients, in float64, for every variant
//! and derivative-BN mode; and the pass count against Horner's rule, K - 1.

use tch::{nn::VarStore, Device, Kind, Tensor};
use warpnet::model::terms::{self, factor, factored_notation, Term};
use warpnet::model::unit::Unit;
use warpnet::model::warp::{Assignment, WarpLayer};
use warpnet::model::wrn::unit::{Jacobian, ResidualUnit};
use warpnet::model::{DerivativeBn, Variant};

use crate::common::{randomize_batch_norms, seed_exclusively};

/// Horner's rule: exact, WarpNet2 and WarpNet1 layers all apply K - 1 Jacobians once each.
#[test]
fn a_layer_needs_one_tangent_pass_per_unit_after_the_first() {
    for k in 1..=6 {
        for (variant, max_order) in [
            (Variant::Exact, None),
            (Variant::Warpnet2, None),
            (Variant::Warpnet1, None),
            (Variant::Exact, Some(2)),
        ] {
            let terms = terms::build(variant, k, max_order.map(|m: usize| m.min(k)));
            assert_eq!(factor(&terms).tangent_passes(), k - 1, "{variant:?} K={k} {max_order:?}");
        }
    }
    // One by one, exact K = 4 would apply 6 x 1 + 4 x 2 + 1 x 3 = 17 Jacobians (C(4, k) terms of k - 1).
    let exact4: usize = terms::exact(4, 4).iter().map(|t| t.chain.len()).sum();
    assert_eq!(exact4, 17);
}

#[test]
fn the_factored_form_is_printed_in_the_paper_notation() {
    let warpnet2 = factored_notation(&terms::build(Variant::Warpnet2, 3, None));
    assert_eq!(warpnet2, "x1 + F1 + F2 + F3 + F2'F1 + F3'(F1 + F2)");
    let exact = factored_notation(&terms::exact(3, 3));
    assert_eq!(exact, "x1 + F1 + F2 + F3 + F2'F1 + F3'(F1 + F2 + F2'F1)");
    let warpnet1 = factored_notation(&terms::build(Variant::Warpnet1, 3, None));
    assert_eq!(warpnet1, "x1 + F1 + F2 + F3 + F2'x1 + F3'x1");
    assert_eq!(terms::notation(&terms::exact(2, 2)), factored_notation(&terms::exact(2, 2)));
}

/// K units at C = 4 in float64 with random BatchNorm statistics, their Jacobian as `jacobian` says.
fn layer(k: usize, terms: Vec<Term>, jacobian: Jacobian) -> (VarStore, WarpLayer) {
    let mut vs = VarStore::new(Device::Cpu);
    let units: Vec<Box<dyn Unit>> = (0..k)
        .map(|c| Box::new(ResidualUnit::new(&(vs.root() / c), 4).with_jacobian(jacobian)) as Box<dyn Unit>)
        .collect();
    vs.double();
    randomize_batch_norms(&vs);
    (vs, WarpLayer::new(units, terms))
}

/// The sum of the layer's terms at x1 and the gradients of <sum, g> with respect to x1 and every
/// weight: factored (the layer's own evaluation) or one term at a time from the same primal passes.
fn sum_and_gradients(
    layer: &WarpLayer,
    vs: &VarStore,
    x1: &Tensor,
    g: &Tensor,
    train: bool,
    factored: bool,
) -> Vec<Tensor> {
    let x1 = x1.detach().set_requires_grad(true);
    let sum = if factored {
        layer.terms_sum(&x1, train)
    } else {
        let primals = layer.primal_passes(&layer.terms, &x1, train, &Assignment::default());
        layer.terms.iter().map(|t| layer.evaluate(t, &x1, &primals)).reduce(|a, b| a + b).unwrap()
    };
    let mut inputs = vec![x1.shallow_clone()];
    inputs.extend(vs.trainable_variables());
    let grads = Tensor::run_backward(&[(&sum * g).sum(Kind::Double)], &inputs, false, false);
    std::iter::once(sum.detach()).chain(grads).collect()
}

/// Factored against term by term, every variant and derivative-BN mode, training and eval mode.
///
/// Tolerance: float64; the two differ only in the order of additions and in applying a Jacobian to a
/// sum rather than to each addend (exact algebra, rounding ~1e-16 relative per operation over a few
/// hundred); 1e-11 relative is far above that and far below a wrong or missing term, which is O(1).
#[test]
fn factored_equals_term_by_term_forward_and_gradients() {
    let _seeded = seed_exclusively(11);
    let mut cases: Vec<(Variant, usize, Option<usize>)> =
        (2..=5).map(|k| (Variant::Exact, k, None)).collect();
    cases.extend((2..=4).map(|k| (Variant::Warpnet2, k, None)));
    cases.extend([(Variant::Warpnet1, 3, None), (Variant::Exact, 4, Some(2)), (Variant::Exact, 4, Some(3))]);
    for (variant, k, max_order) in cases {
        for mode in [DerivativeBn::None, DerivativeBn::Frozen, DerivativeBn::Exact] {
            for train in [true, false] {
                let (vs, layer) = layer(k, terms::build(variant, k, max_order), Jacobian::Tangent(mode));
                // (B, C, H, W) = (4, 4, 6, 6)
                let x1 = Tensor::randn([4, 4, 6, 6], (Kind::Double, Device::Cpu));
                let g = Tensor::randn([4, 4, 6, 6], (Kind::Double, Device::Cpu));
                let factored = sum_and_gradients(&layer, &vs, &x1, &g, train, true);
                let by_term = sum_and_gradients(&layer, &vs, &x1, &g, train, false);
                for (i, (a, b)) in factored.iter().zip(&by_term).enumerate() {
                    let error = (a - b).norm().double_value(&[]) / b.norm().double_value(&[]).max(1e-300);
                    let what = if i == 0 { "the sum" } else { "a gradient" };
                    assert!(
                        error < 1e-11,
                        "{variant:?} K={k} {max_order:?} {mode:?} train={train}: {what} off by {error}"
                    );
                }
            }
        }
    }
}

/// The released map is not linear in v: its layer is evaluated term by term, as before (WarpNet1's
/// terms, so no two share a Jacobian anyway), and equals the sum of its terms exactly.
#[test]
fn the_released_map_is_not_factored() {
    let _seeded = seed_exclusively(12);
    let (vs, layer) = layer(3, terms::build(Variant::Released, 3, None), Jacobian::Released);
    assert!(layer.held_units().all(|(_, u)| !u.tangent_is_linear()));
    let x1 = Tensor::randn([4, 4, 6, 6], (Kind::Double, Device::Cpu));
    let g = Tensor::ones([4, 4, 6, 6], (Kind::Double, Device::Cpu));
    let factored = sum_and_gradients(&layer, &vs, &x1, &g, false, true);
    let by_term = sum_and_gradients(&layer, &vs, &x1, &g, false, false);
    assert_eq!(f64::try_from((&factored[0] - &by_term[0]).abs().max()).unwrap(), 0.0);
}
