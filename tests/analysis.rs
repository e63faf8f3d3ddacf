//! The analysis figures on small random networks against independent computations: the sequential
//! network composed unit by unit, the expansion enumerated by brute force over bit sets (not through
//! terms.rs or warp.rs), Pascal's triangle, and the linearised block's transpose by backpropagation.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};
use warpnet::analysis::{block::Sequential, gradients, paths, taylor};
use warpnet::model::{DerivativeBn, NetConfig, Variant};

/// (B, 3, 32, 32) from its own generator (libtorch's global one is shared by concurrent tests).
fn images(seed: u64, batch: i64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels: Vec<f32> = (0..batch * 3 * 32 * 32).map(|_| rng.gen_range(-2.0..2.0)).collect();
    Tensor::from_slice(&pixels).view([batch, 3, 32, 32])
}

/// A random WRN with `units` units per stage, width 1, its BN running statistics moved off their
/// initial values (so eval-mode BN is a real affine map, not nearly the identity).
fn network(units: usize, seed: i64) -> Sequential {
    let seq = Sequential::random(&NetConfig::wrn(units, 1, 10), seed);
    let mut weights = warpnet::parallel::named::deep_copy(&seq.weights);
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
fn stage1<'a>(seq: &'a Sequential, x: &Tensor) -> (Tensor, Vec<&'a warpnet::model::unit::ResidualUnit>) {
    let x1 = tch::no_grad(|| seq.net.stem.forward(x, false));
    let units = seq.net.stages[0].layers.iter().map(|l| l.unit(0)).collect();
    (x1, units)
}

/// Every term of the K-unit expansion at x1 by brute force: bit set -> F'_{ck} ... F'_{c2} F_{c1}(x1),
/// Jacobians frozen-BN tangents at x1.
fn brute_force_terms(units: &[&warpnet::model::unit::ResidualUnit], x1: &Tensor) -> Vec<(u32, Tensor)> {
    tch::no_grad(|| {
        let passes: Vec<_> =
            units.iter().map(|u| u.primal(x1, false, true, Some(DerivativeBn::Frozen))).collect();
        (1u32..(1 << units.len()))
            .map(|subset| {
                let mut members = (0..units.len()).filter(|c| subset & (1 << c) != 0);
                let first = members.next().unwrap();
                let start = passes[first].output.as_ref().unwrap().shallow_clone();
                let value = members
                    .fold(start, |v, c| units[c].tangent(passes[c].linearization.as_ref().unwrap(), &v));
                (subset, value)
            })
            .collect()
    })
}

#[test]
fn taylor_error_matches_explicit_composition_and_enumeration() {
    for k in [1usize, 2, 3] {
        let seq = network(k, 10 + k as i64); // one block of K units per stage
        let x = images(1, 4);
        let rows = taylor::taylor(&seq, &x, &[k], &[Variant::Exact], DerivativeBn::Frozen);
        let (x1, units) = stage1(&seq, &x);
        let sequential =
            tch::no_grad(|| units.iter().fold(x1.shallow_clone(), |h, u| &h + u.forward(&h, false)));
        let warp = brute_force_terms(&units, &x1).into_iter().fold(x1.shallow_clone(), |s, (_, t)| s + t);
        let expected =
            (&warp - &sequential).norm().double_value(&[]) / (&sequential - &x1).norm().double_value(&[]);
        let got = rows.iter().find(|r| r.stage == 1).unwrap().relative_error;
        // float32 sums of the same terms in another order: the error figures agree to ~1e-6 of the
        // output's size; a missing or wrong term changes them by its whole size.
        assert!((got - expected).abs() <= 1e-3 * expected + 1e-5, "K={k}: {got} vs {expected}");
        if k == 1 {
            assert!(got < 1e-6, "K = 1 is the residual unit itself: {got}");
        } else {
            assert!(got > 1e-4, "K = {k}: masks differ between x1 and later inputs, so some error remains");
        }
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
    let k = 3;
    let seq = network(k, 21);
    let x = images(2, 4);
    let rows = paths::paths(k, Some((&seq, &x)), DerivativeBn::Frozen);
    // Brute force on all three stages (one block each), averaged as the command does.
    let trace = seq.trace(&x);
    for r in &rows {
        let mut expected = 0.0;
        for (s, xs) in trace.iter().enumerate() {
            let units: Vec<_> = seq.net.stages[s].layers.iter().map(|l| l.unit(0)).collect();
            let (x1, out) = (&xs[0], &xs[k]);
            let group = brute_force_terms(&units, x1)
                .into_iter()
                .filter(|(subset, _)| subset.count_ones() as usize == r.length)
                .fold(x1.zeros_like(), |acc, (_, t)| acc + t);
            expected += group.norm().double_value(&[]) / (out - x1).norm().double_value(&[]) / 3.0;
        }
        let got = r.relative_norm.unwrap();
        assert!((got - expected).abs() <= 1e-4 * expected + 1e-7, "length {}: {got} vs {expected}", r.length);
    }
}

#[test]
fn path_gradients_sum_to_the_linearised_blocks_transpose() {
    let k = 3;
    let seq = network(k, 31);
    let x = images(3, 2);
    let g = Tensor::randn([2, 16, 32, 32], (Kind::Float, tch::Device::Cpu));
    let (x1, units) = stage1(&seq, &x);
    let paths = gradients::path_gradients(&seq, &x1, 0, 0, k, DerivativeBn::Frozen, &g);
    assert_eq!(paths.len(), 1 << k);
    let summed = paths.iter().fold(g.zeros_like(), |acc, (_, p)| acc + p);
    // Independent: the linearised block v -> (I + F'_K) ... (I + F'_1) v composed in order, its
    // transpose applied to g by backpropagation through the whole composition.
    let at: Vec<_> = units
        .iter()
        .map(|u| u.primal(&x1, false, false, Some(DerivativeBn::Frozen)).linearization.unwrap())
        .collect();
    let v = x1.zeros_like().set_requires_grad(true);
    let out = units.iter().zip(&at).fold(v.shallow_clone(), |h, (u, a)| &h + u.tangent(a, &h));
    let expected = Tensor::run_backward(&[(out * &g).sum(Kind::Double)], &[&v], false, false).remove(0);
    let difference = (&summed - &expected).norm().double_value(&[]);
    // float32, 2^K paths summed in another order than backpropagation's: ~1e-6 relative.
    assert!(difference <= 1e-4 * expected.norm().double_value(&[]), "off by {difference}");
    // The transpose itself: <F'v, u> = <v, F'^T u> for random v, u.
    let (v, u) = (x1.randn_like(), x1.randn_like());
    let lhs = (units[1].tangent(&at[1], &v) * &u).sum(Kind::Double).double_value(&[]);
    let rhs = (&v * gradients::tangent_transpose(units[1], &at[1], &u)).sum(Kind::Double).double_value(&[]);
    assert!((lhs - rhs).abs() <= 1e-4 * lhs.abs(), "{lhs} vs {rhs}");
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
