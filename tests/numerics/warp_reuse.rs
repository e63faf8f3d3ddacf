//! Each unit's primal pass runs once per step however many terms use it (the paper's future work,
//! section 4: forward results reused rather than recomputed). Checked by counting the forward
//! convolutions and ReLU masks of one training forward pass against a count made by hand from the term
//! list, and against the per-term evaluation that recomputes them.

use tch::{nn::VarStore, Device, Kind, Tensor};
use warpnet::model::op_count;
use warpnet::model::terms::{self, Vector};
use warpnet::model::warp::PrimalSharing;
use warpnet::model::{DerivativeBn, ModelKind, Net, NetConfig, Variant};

fn config(variant: Variant, k: usize, derivative_bn: DerivativeBn) -> NetConfig {
    NetConfig {
        model: ModelKind::Warp,
        k,
        nwarp: 1,
        width: 1,
        in_channels: 3,
        classes: 10,
        variant,
        max_order: None,
        derivative_bn,
    }
}

/// Forward convolutions and masks of one training forward pass of a fresh net.
fn count(config: &NetConfig, sharing: PrimalSharing) -> op_count::OpCount {
    let vs = VarStore::new(Device::Cpu);
    let mut net = Net::new(&vs.root(), config);
    net.set_primal_sharing(sharing);
    let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    op_count::reset();
    let _ = net.forward(&x, true);
    op_count::read()
}

/// By hand from the term list: one stem convolution; per layer, two convolutions for each unit whose
/// output a term starts from, one for a unit only linearised with BN removed from F' (its pass stops at
/// the mask), and two per tangent pass, of which a layer of these variants runs K - 1 (the terms whose
/// outermost Jacobian is F'_j share one pass: Horner's rule, model/terms.rs `factor`); one mask per unit
/// in any chain. Three stages, one layer each.
fn expected(variant: Variant, k: usize) -> op_count::OpCount {
    let terms = terms::build(variant, k, None);
    let starts = |c: usize| terms.iter().any(|t| t.vector == Vector::Primal(c));
    let linearised = |c: usize| terms.iter().any(|t| t.chain.contains(&c));
    let primal_convs: u64 = (0..k)
        .map(|c| {
            if starts(c) {
                2
            } else if linearised(c) {
                1
            } else {
                0
            }
        })
        .sum();
    let tangent_convs = 2 * (k as u64 - 1);
    let masks = (0..k).filter(|&c| linearised(c)).count() as u64;
    op_count::OpCount { convolutions: 1 + 3 * (primal_convs + tangent_convs), masks: 3 * masks }
}

#[test]
fn every_primal_pass_runs_once_per_layer() {
    let _drawing = crate::common::draw_exclusively();
    for (variant, k) in
        [(Variant::Warpnet1, 2), (Variant::Warpnet2, 2), (Variant::Warpnet2, 3), (Variant::Exact, 3)]
    {
        let shared = count(&config(variant, k, DerivativeBn::None), PrimalSharing::Shared);
        assert_eq!(shared, expected(variant, k), "{variant:?} K={k}");
    }
    // WarpNet1 K=2 by hand: stem 1 + 3 stages x (F1: 2, F2: 2, F2'x1: 2) = 19 convolutions, 3 masks.
    let warpnet1 = count(&config(Variant::Warpnet1, 2, DerivativeBn::None), PrimalSharing::Shared);
    assert_eq!(warpnet1, op_count::OpCount { convolutions: 19, masks: 3 });
}

#[test]
fn per_term_primals_recompute_what_sharing_saves() {
    let _drawing = crate::common::draw_exclusively();
    // Exact K=3: 7 terms; per term, every unit it names runs its own primal pass and its own tangents.
    // Shared and factored: 6 primal + 2 tangent passes x 2 = 10 convolutions per layer; per term: 3
    // single terms (2 each), 3 pairs (2 + 1 + 2 each) and the triple (2 + 1 + 1 + 4) = 6 + 15 + 8 = 29.
    let c = config(Variant::Exact, 3, DerivativeBn::None);
    let shared = count(&c, PrimalSharing::Shared);
    let per_term = count(&c, PrimalSharing::PerTerm);
    assert_eq!(shared.convolutions, 1 + 3 * 10);
    assert_eq!(per_term.convolutions, 1 + 3 * 29);
    assert_eq!(per_term.masks, 3 * (3 + 2)); // each pair linearises 1 unit, the triple 2
                                             // Both evaluate the same function.
    let vs = VarStore::new(Device::Cpu);
    let mut net = Net::new(&vs.root(), &c);
    let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let a = net.forward(&x, false);
    net.set_primal_sharing(PrimalSharing::PerTerm);
    let b = net.forward(&x, false);
    // The same function, summed in another order (factored against term by term): float32 rounding,
    // ~1e-7 relative per operation compounded over three stages of an untrained net whose logits can
    // reach hundreds; 1e-5 of their size is far above it and far below a missing term's effect.
    let scale = b.abs().max().double_value(&[]).max(1.0);
    let difference = (&a - &b).abs().max().double_value(&[]);
    assert!(difference < 1e-5 * scale, "{difference} against logits of size {scale}");
}

#[test]
fn a_pass_for_the_mask_alone_stops_at_the_mask() {
    let _drawing = crate::common::draw_exclusively();
    // A device holding only F2'x1 needs unit 2's mask, not its output: with BN removed from F' the pass
    // runs conv1 only; frozen BN in F' needs BN2's batch statistics, hence conv2's output as well.
    let vs = VarStore::new(Device::Cpu);
    let unit = warpnet::model::wrn::unit::ResidualUnit::new(&(vs.root() / "unit"), 4);
    let x = Tensor::randn([2, 4, 8, 8], (Kind::Float, Device::Cpu));
    for (mode, convolutions) in [(DerivativeBn::None, 1), (DerivativeBn::Frozen, 2), (DerivativeBn::Exact, 2)]
    {
        op_count::reset();
        let pass = unit.primal_with(&x, true, false, Some(mode));
        assert!(pass.output.is_none() && pass.linearization.is_some());
        assert_eq!(op_count::read(), op_count::OpCount { convolutions, masks: 1 }, "{mode:?}");
    }
    // The released map: its two flipped convolutions per Jacobian, no mask of a primal pass.
    let released = count(&config(Variant::Released, 2, DerivativeBn::None), PrimalSharing::Shared);
    assert_eq!(released, op_count::OpCount { convolutions: 19, masks: 0 });
}
