//! The transformer language model on the executor: its sublayers' terms placed on two workers (an
//! output sent across, a term split by batch whose piece reads the other worker's linearisation) take
//! the step the model takes on one device.
//!
//! Tolerance: float32, ||a - b|| <= 1e-4 ||b|| + 1e-7 per tensor: the workers add the same terms in
//! another order and sum gradients from two devices (~1e-7 per operation, compounded over two
//! blocks); a missing or misplaced term, or a gradient that did not come back, moves the step by
//! percent.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{nn::VarStore, Device, Tensor};

use crate::steps::two_steps;
use warpnet::base::named::copy_variables;
use warpnet::model::transformer::norm::NormTangent;
use warpnet::model::transformer::{LmConfig, LmVariant};
use warpnet::model::{Net, Network};

/// Batch and context of the steps: tokens (4, 8).
const BATCH: i64 = 4;
const CONTEXT: i64 = 8;

fn lm(variant: LmVariant, norm_tangent: NormTangent) -> Network {
    std::sync::Arc::new(LmConfig {
        blocks: 2,
        width: 16,
        heads: 2,
        context: CONTEXT as usize,
        variant,
        k: 2,
        norm_tangent,
    })
}

/// Tokens (B, T) and their next tokens (B, T), from a seeded generator.
fn batch(seed: u64) -> (Tensor, Tensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let text: Vec<i64> = (0..BATCH * (CONTEXT + 1)).map(|_| rng.gen_range(0..256)).collect();
    let text = Tensor::from_slice(&text).view([BATCH, CONTEXT + 1]);
    (text.narrow(1, 0, CONTEXT).to_kind(tch::Kind::Float), text.narrow(1, 1, CONTEXT))
}

#[test]
fn placed_sublayers_step_as_one_device() {
    // Every case seeds below; no other test draws in between.
    let _drawing = crate::common::draw_exclusively();
    let cases = [
        (LmVariant::Parallel, NormTangent::Exact, "[F1],[F2]"),
        // M'(x1) A(x1) away from A: A(x1) is sent across and its gradient comes back.
        (LmVariant::Warpnet2, NormTangent::Exact, "[F1],[F2,F2'F1]"),
        // M'(x1) x1 split by batch: the first worker's piece reads the MLP's linearisation rows
        // (its norm's statistics and GELU's slope, which carry gradients back).
        (LmVariant::Warpnet1, NormTangent::Exact, "[F1,F2'x1:0.5],[F2,F2'x1:0.5]"),
        // The same split where the term is large: the exact LayerNorm ignores its input's scale, so
        // M'(x1) x1 is ~1e-4 of M'(x1) v above and a lost piece could hide in the tolerance; with
        // the statistics frozen LN's tangent at x1 maps x1 to gamma x1 / sigma, and the term is not
        // small.
        (LmVariant::Warpnet1, NormTangent::Frozen, "[F1,F2'x1:0.5],[F2,F2'x1:0.5]"),
    ];
    for (i, (variant, norm_tangent, placement)) in cases.into_iter().enumerate() {
        let network = lm(variant, norm_tangent);
        tch::manual_seed(30 + i as i64);
        let vs = VarStore::new(Device::Cpu);
        let _net = Net::new(&vs.root(), &*network);
        let initial = copy_variables(&vs, Device::Cpu);
        let (one_losses, one) = two_steps(&network, &initial, "cpu:1", None, batch);
        let (two_losses, two) = two_steps(&network, &initial, "cpu:2", Some(placement), batch);
        for (a, b) in two_losses.iter().zip(&one_losses) {
            assert!((a - b).abs() <= 1e-4 * b.abs(), "{variant:?} {placement}: loss {a} against {b}");
        }
        for (name, expected) in &one {
            let difference = (&two[name] - expected).norm().double_value(&[]);
            let size = expected.norm().double_value(&[]);
            assert!(
                difference <= 1e-4 * size + 1e-7,
                "{variant:?} {placement}: {name} off by {difference} ({size})"
            );
        }
    }
}
