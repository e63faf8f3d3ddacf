//! The analysis figures on small random networks against independent computations: the sequential
//! network composed unit by unit, the expansion enumerated by brute force over bit sets for K = 1..5
//! (not through terms.rs or warp.rs), Pascal's triangle, and the linearised block's transpose by
//! backpropagation.

use crate::common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};
use warpnet::analysis::{block::Sequential, gradients, paths, taylor};
use warpnet::model::wrn::residual_unit;
use warpnet::model::wrn::unit::ResidualUnit;
use warpnet::model::{DerivativeBn, NetConfig, Variant};

/// (B, 3, 32, 32) from its own generator (libtorch's global one is shared by concurrent tests).
fn images(seed: u64, batch: i64) -> Tensor {
    uniform(seed, &[batch, 3, 32, 32], 2.0)
}

/// Entries uniform in (-scale, scale), from their own generator.
fn uniform(seed: u64, shape: &[i64], scale: f32) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let entries: Vec<f32> = (0..shape.iter().product()).map(|_| rng.gen_range(-scale..scale)).collect();
    Tensor::from_slice(&entries).view(shape)
}

/// Largest K whose 2^K - 1 terms the tests enumerate by brute force.
const MAX_K: usize = 5;

/// A random WRN with `units` units per stage, width 1, its BN running statistics moved off their
/// initial values (so eval-mode BN is a real affine map, not nearly the identity). libtorch's generator
/// draws it (and every block the analyses build, their initial values overwritten): tests that call it
/// hold `common::seed_exclusively` throughout, so that no other test's draws land between.
fn network(units: usize, seed: i64) -> Sequential {
    let seq = Sequential::random(&NetConfig::wrn(units, 1, 10), seed);
    let mut weights = warpnet::base::named::deep_copy(&seq.weights);
    for (name, t) in weights.iter_mut() {
        if name.ends_with("running_var") {
            *t = t.ones_like() * 0.5;
        } else if name.ends_with("running_mean") {
            *t = t.ones_like() * 0.1;
        }
    }
    Sequential::new(&seq.config, &weights)
}

/// Input of the first unit of stage 1, and the units of that stage: composed by hand, no trace.
fn stage1<'a>(seq: &'a Sequential, x: &Tensor) -> (Tensor, Vec<&'a ResidualUnit>) {
    let x1 = tch::no_grad(|| seq.net.stem.forward(x, false));
    let units = seq.net.stages[0].layers.iter().map(|l| residual_unit(l.unit(0))).collect();
    (x1, units)
}

/// Every term of the K-unit expansion at x1 by brute force: bit set -> F'_{ck} ... F'_{c2} F_{c1}(x1),
/// Jacobians frozen-BN tangents at x1.
fn brute_force_terms(units: &[&ResidualUnit], x1: &Tensor) -> Vec<(u32, Tensor)> {
    tch::no_grad(|| {
        let passes = primal_passes(units, x1);
        (1u32..(1 << units.len()))
            .map(|subset| {
                let mut members = (0..units.len()).filter(|c| subset & (1 << c) != 0);
                let first = members.next().unwrap();
                let start = passes[first].output.as_ref().unwrap().shallow_clone();
                let value = members
                    .fold(start, |v, c| units[c].tangent_with(passes[c].linearization.as_ref().unwrap(), &v));
                (subset, value)
            })
            .collect()
    })
}

/// Every unit's output and frozen-BN linearisation at x1.
fn primal_passes(units: &[&ResidualUnit], x1: &Tensor) -> Vec<warpnet::model::wrn::unit::UnitPrimal> {
    tch::no_grad(|| {
        units.iter().map(|u| u.primal_with(x1, false, true, Some(DerivativeBn::Frozen))).collect()
    })
}

/// x1 + the variant's terms, built by hand: `exact` every subset, `warpnet2` the subsets of at most two
/// units, `warpnet1` F_c(x1) for every c and F'_j(x1) x1 for every j >= 2 (paper section 4).
fn hand_built_warp(units: &[&ResidualUnit], x1: &Tensor, variant: Variant) -> Tensor {
    let terms: Vec<Tensor> = match variant {
        Variant::Exact => brute_force_terms(units, x1).into_iter().map(|(_, t)| t).collect(),
        Variant::Warpnet2 => brute_force_terms(units, x1)
            .into_iter()
            .filter(|(subset, _)| subset.count_ones() <= 2)
            .map(|(_, t)| t)
            .collect(),
        Variant::Warpnet1 => tch::no_grad(|| {
            let passes = primal_passes(units, x1);
            let primals = passes.iter().map(|p| p.output.as_ref().unwrap().shallow_clone());
            let of_x1 = (1..units.len())
                .map(|j| units[j].tangent_with(passes[j].linearization.as_ref().unwrap(), x1));
            primals.chain(of_x1).collect()
        }),
        other => panic!("no hand-built terms for {other}"),
    };
    terms.into_iter().fold(x1.shallow_clone(), |sum, t| sum + t)
}

/// ||warp - sequential|| / ||sequential - x1||, the analysis's figure, computed here.
fn relative_error(warp: &Tensor, sequential: &Tensor, x1: &Tensor) -> f64 {
    (warp - sequential).norm().double_value(&[]) / (sequential - x1).norm().double_value(&[])
}

#[test]
fn taylor_error_matches_explicit_composition_and_enumeration() {
    let _generator = common::seed_exclusively(10);
    let variants = [Variant::Exact, Variant::Warpnet2, Variant::Warpnet1];
    for k in 1..=MAX_K {
        let seq = network(k, 10 + k as i64); // one block of K units per stage
        let x = images(1, 4);
        let layers = taylor::layers(&seq, &x, &[k], &variants, DerivativeBn::Frozen);
        assert_eq!(layers.len(), 3 * variants.len(), "K={k}: one warp layer per stage and variant");
        let (x1, units) = stage1(&seq, &x);
        let sequential =
            tch::no_grad(|| units.iter().fold(x1.shallow_clone(), |h, u| &h + u.forward(&h, false)));
        for variant in variants {
            let expected = relative_error(&hand_built_warp(&units, &x1, variant), &sequential, &x1);
            let row = layers.iter().find(|r| r.stage == 1 && r.variant == variant.to_string()).unwrap();
            assert_eq!(row.first_unit, 1);
            let got = row.relative_error;
            // float32 sums of the same terms in another order: the error figures agree to ~1e-6 of the
            // output's size; a missing or wrong term changes them by its whole size.
            assert!((got - expected).abs() <= 1e-3 * expected + 1e-5, "K={k} {variant}: {got} vs {expected}");
            if variant == Variant::Exact && k == 1 {
                assert!(got < 1e-6, "K = 1 is the residual unit itself: {got}");
            } else if variant == Variant::Exact {
                assert!(got > 1e-4, "K = {k}: masks differ between x1 and later inputs, so error remains");
            }
        }
    }
}

#[test]
fn taylor_layers_follow_the_stage_unit_by_unit() {
    // Six units per stage regrouped into 6 / K warp layers: each layer's error against its own input,
    // the stage composed by hand up to the layer's first unit; the per-stage figure is their mean.
    let _generator = common::seed_exclusively(41);
    let seq = network(6, 41);
    let x = images(4, 2);
    let (x_stage, units) = stage1(&seq, &x);
    for k in [2usize, 3] {
        let layers = taylor::layers(&seq, &x, &[k], &[Variant::Exact], DerivativeBn::Frozen);
        let stage1_layers: Vec<_> = layers.iter().filter(|r| r.stage == 1).collect();
        assert_eq!(
            stage1_layers.iter().map(|r| r.first_unit).collect::<Vec<_>>(),
            (1..=6).step_by(k).collect::<Vec<_>>()
        );
        for row in &stage1_layers {
            let first = row.first_unit - 1;
            let compose = |from: &Tensor, units: &[&ResidualUnit]| {
                tch::no_grad(|| units.iter().fold(from.shallow_clone(), |h, u| &h + u.forward(&h, false)))
            };
            let x1 = compose(&x_stage, &units[..first]);
            let block = &units[first..first + k];
            let expected =
                relative_error(&hand_built_warp(block, &x1, Variant::Exact), &compose(&x1, block), &x1);
            // As above: float32 sums in another order, ~1e-6 of the output's size.
            let got = row.relative_error;
            assert!(
                (got - expected).abs() <= 1e-3 * expected + 1e-5,
                "K={k} unit {}: {got} vs {expected}",
                first + 1
            );
        }
        let stage = taylor::per_stage(&layers).into_iter().find(|r| r.stage == 1).unwrap();
        let mean = stage1_layers.iter().map(|r| r.relative_error).sum::<f64>() / stage1_layers.len() as f64;
        assert_eq!(stage.blocks, 6 / k);
        // The same f64 sum in the same order.
        assert!((stage.relative_error - mean).abs() <= 1e-12, "{} vs {mean}", stage.relative_error);
    }
}

#[test]
fn path_counts_are_pascals_triangle_and_enumeration() {
    for k in 1..=6usize {
        let rows = paths::paths(k, None, DerivativeBn::Frozen);
        for r in &rows {
            // Independent: subsets of {0..K-1} with r.length members, counted by bit population.
            let enumerated = (1u32..(1 << k)).filter(|s| s.count_ones() as usize == r.length).count();
            assert_eq!(r.terms, enumerated, "K={k} k={}", r.length);
            assert_eq!(r.binomial as usize, enumerated);
        }
        assert_eq!(rows.iter().map(|r| r.terms).sum::<usize>(), (1 << k) - 1);
    }
    assert_eq!(paths::binomial(6, 3), 20);
}

#[test]
fn path_contributions_match_brute_force_groups() {
    let _generator = common::seed_exclusively(20);
    for k in 1..=MAX_K {
        path_contributions_match_for(k);
    }
}

fn path_contributions_match_for(k: usize) {
    let seq = network(k, 20 + k as i64);
    let x = images(2, 4);
    let rows = paths::paths(k, Some((&seq, &x)), DerivativeBn::Frozen);
    assert_eq!(rows.len(), k);
    // Brute force on all three stages (one block each), averaged as the command does.
    let trace = seq.trace(&x);
    for r in &rows {
        let mut expected = 0.0;
        for (s, xs) in trace.iter().enumerate() {
            let units: Vec<_> = seq.net.stages[s].layers.iter().map(|l| residual_unit(l.unit(0))).collect();
            let (x1, out) = (&xs[0], &xs[k]);
            let group = brute_force_terms(&units, x1)
                .into_iter()
                .filter(|(subset, _)| subset.count_ones() as usize == r.length)
                .fold(x1.zeros_like(), |acc, (_, t)| acc + t);
            expected += group.norm().double_value(&[]) / (out - x1).norm().double_value(&[]) / 3.0;
        }
        let got = r.relative_norm.unwrap();
        // The same terms summed in the same float32 order: ~1e-7 relative; a missing or misgrouped term
        // changes the group's norm by its whole size.
        assert!(
            (got - expected).abs() <= 1e-4 * expected + 1e-7,
            "K={k} length {}: {got} vs {expected}",
            r.length
        );
    }
}

#[test]
fn path_gradients_sum_to_the_linearised_blocks_transpose() {
    let _generator = common::seed_exclusively(30);
    for k in 1..=MAX_K {
        path_gradients_sum_for(k);
    }
}

fn path_gradients_sum_for(k: usize) {
    let seq = network(k, 30 + k as i64);
    let x = images(3, 2);
    let g = uniform(130 + k as u64, &[2, 16, 32, 32], 1.0);
    let (x1, units) = stage1(&seq, &x);
    let paths = gradients::path_gradients(&seq, &x1, 0, 0, k, DerivativeBn::Frozen, &g);
    assert_eq!(paths.len(), 1 << k);
    let summed = paths.iter().fold(g.zeros_like(), |acc, (_, p)| acc + p);
    // Independent: the linearised block v -> (I + F'_K) ... (I + F'_1) v composed in order, its
    // transpose applied to g by backpropagation through the whole composition.
    let at: Vec<_> = units
        .iter()
        .map(|u| u.primal_with(&x1, false, false, Some(DerivativeBn::Frozen)).linearization.unwrap())
        .collect();
    let v = x1.zeros_like().set_requires_grad(true);
    let out = units.iter().zip(&at).fold(v.shallow_clone(), |h, (u, a)| &h + u.tangent_with(a, &h));
    let expected = Tensor::run_backward(&[(out * &g).sum(Kind::Double)], &[&v], false, false).remove(0);
    let difference = (&summed - &expected).norm().double_value(&[]);
    // float32, 2^K paths summed in another order than backpropagation's: ~1e-6 relative.
    assert!(difference <= 1e-4 * expected.norm().double_value(&[]), "K={k}: off by {difference}");
    // The transpose itself (of the block's last unit): <F'v, u> = <v, F'^T u> for random v, u; float32
    // dot products of 32768 entries, ~1e-6 relative.
    let last = k - 1;
    let (v, u) = (uniform(230 + k as u64, &x1.size(), 1.0), uniform(330 + k as u64, &x1.size(), 1.0));
    let lhs = (units[last].tangent_with(&at[last], &v) * &u).sum(Kind::Double).double_value(&[]);
    let rhs =
        (&v * gradients::tangent_transpose(units[last], &at[last], &u)).sum(Kind::Double).double_value(&[]);
    assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs(), "K={k}: {lhs} vs {rhs}");
}

#[test]
fn fit_recovers_a_geometric_decay() {
    let y: Vec<f64> = (0..6).map(|k| (3.0 * 0.4f64.powi(k)).ln()).collect();
    let (intercept, slope, r_squared) = gradients::fit_line(&y);
    assert!((intercept - 3f64.ln()).abs() < 1e-12 && (slope - 0.4f64.ln()).abs() < 1e-12);
    assert!((r_squared - 1.0).abs() < 1e-12);
    let noisy = [0.0, -1.0, -1.5, -3.5];
    assert!(gradients::fit_line(&noisy).2 < 0.99);
}
