//! The transformer language model against independent computations: each sublayer's tangent against
//! finite differences, the sequential model against a GPT forward written here from tch operations on
//! the same weights (its attention spelled out, where the model's output-only pass uses libtorch's
//! fused kernel), the parallel block against x + A(LN1(x)) + M(LN2(x)), and causality.

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use warpnet::model::transformer::norm::NormTangent;
use warpnet::model::transformer::{LmConfig, LmVariant};
use warpnet::model::unit::{Need, Unit};
use warpnet::model::{Architecture, LayerIndex, Net};

use crate::common::{self, central_difference, seed_exclusively};
use warpnet::precision::Precision;

/// Blocks N, width D, heads H, context T, batch B of the tests.
const BLOCKS: usize = 2;
const WIDTH: i64 = 8;
const HEADS: i64 = 2;
const CONTEXT: i64 = 6;
const BATCH: i64 = 3;

fn config(variant: LmVariant, k: usize, norm_tangent: NormTangent) -> LmConfig {
    LmConfig {
        blocks: BLOCKS,
        width: WIDTH as usize,
        heads: HEADS as usize,
        context: CONTEXT as usize,
        variant,
        k,
        norm_tangent,
    }
}

/// Random tokens (B, T) from libtorch's generator (seeded by the caller).
fn tokens() -> Tensor {
    Tensor::randint(256, [BATCH, CONTEXT], (Kind::Int64, Device::Cpu))
}

/// The output of `unit` at x, float64.
fn output(unit: &dyn Unit, x: &Tensor) -> Tensor {
    unit.primal(x, true, Need { output: true, linearization: false }).output.unwrap()
}

/// Each sublayer's tangent F'(x1)v against (F(x1 + hv) - F(x1 - hv)) / 2h in float64, with the exact
/// LayerNorm Jacobian; with its statistics frozen, against the same difference of the sublayer whose
/// LayerNorm uses x1's statistics whatever its input.
///
/// Tolerance: h = 1e-5; the central difference errs by O(h^2) = 1e-10 times the third derivative and
/// by rounding ~1e-16 / h = 1e-11; 1e-6 of the tangent's size is far above both and far below a wrong
/// Jacobian (a missing softmax or LayerNorm term is O(1)).
#[test]
fn each_sublayer_tangent_is_its_derivative() {
    let _seeded = seed_exclusively(21);
    for mode in [NormTangent::Exact, NormTangent::Frozen] {
        let mut vs = VarStore::new(Device::Cpu);
        let lm = config(LmVariant::Sequential, 1, mode);
        let units: Vec<Box<dyn Unit>> =
            (0..2).map(|layer| lm.unit(&vs.root(), LayerIndex { stage: 0, layer }, 0)).collect();
        vs.double();
        let x1 = Tensor::randn([BATCH, CONTEXT, WIDTH], (Kind::Double, Device::Cpu));
        let v = Tensor::randn([BATCH, CONTEXT, WIDTH], (Kind::Double, Device::Cpu));
        for (which, unit) in ["attention", "MLP"].iter().zip(&units) {
            let at =
                unit.primal(&x1, true, Need { output: false, linearization: true }).linearization.unwrap();
            let tangent = unit.tangent(&at, &v);
            let f = |x: &Tensor| match mode {
                NormTangent::Exact => output(unit.as_ref(), x),
                NormTangent::Frozen => frozen_statistics(unit.as_ref(), &x1, x),
            };
            let difference = central_difference(f, &x1, &v, 1e-5);
            let error =
                (&tangent - &difference).norm().double_value(&[]) / difference.norm().double_value(&[]);
            assert!(error < 1e-6, "{which} {mode:?}: tangent off by {error}");
        }
    }
}

/// The sublayer at x with its LayerNorm standardising by x1's mean and deviation whatever its input:
/// the function whose derivative at x1 the frozen tangent is (it equals the sublayer at x1).
fn frozen_statistics(unit: &dyn Unit, x1: &Tensor, x: &Tensor) -> Tensor {
    let (mean1, var1) = (x1.mean_dim(-1, true, None), x1.var_dim(-1, false, true));
    frozen_unit(unit, &((x - &mean1) / (&var1 + 1e-5).sqrt()))
}

/// `unit` with its LayerNorm replaced by the affine map of an already standardised input.
fn frozen_unit(unit: &dyn Unit, standardized: &Tensor) -> Tensor {
    use warpnet::model::transformer::attention::Attention;
    use warpnet::model::transformer::mlp::Mlp;
    let any = unit.as_any();
    if let Some(a) = any.downcast_ref::<Attention>() {
        let y = standardized * &a.norm.weight + &a.norm.bias;
        return reference_attention(&y, &a.qkv.weight, &a.qkv.bias, &a.proj.weight, &a.proj.bias);
    }
    let m = any.downcast_ref::<Mlp>().expect("attention or MLP");
    let y = standardized * &m.norm.weight + &m.norm.bias;
    y.linear(&m.fc.weight, Some(&m.fc.bias)).gelu("none").linear(&m.proj.weight, Some(&m.proj.bias))
}

/// Causal multi-head attention of y (B, T, D) written out: per head, exp(q.k / sqrt(d)) over the keys at
/// or before the query, normalised, weighting the values.
fn reference_attention(y: &Tensor, w_qkv: &Tensor, b_qkv: &Tensor, w_o: &Tensor, b_o: &Tensor) -> Tensor {
    let (b, t, d) = (y.size()[0], y.size()[1], y.size()[2]);
    let heads = |x: &Tensor| x.view([b, t, HEADS, d / HEADS]).transpose(1, 2);
    let qkv = y.linear(w_qkv, Some(b_qkv)).chunk(3, -1);
    let (q, k, v) = (heads(&qkv[0]), heads(&qkv[1]), heads(&qkv[2]));
    let scores = Tensor::einsum("bhqd,bhkd->bhqk", &[&q, &k], None::<i64>) / ((d / HEADS) as f64).sqrt();
    let allowed = Tensor::ones([t, t], (Kind::Double, Device::Cpu)).tril(0);
    let weights = (&scores - scores.amax(-1, true)).exp() * allowed;
    let o = (&weights / weights.sum_dim_intlist(-1, true, None)).matmul(&v);
    o.transpose(1, 2).contiguous().view([b, t, d]).linear(w_o, Some(b_o))
}

/// A GPT written here on the variables of `vs` by name; `parallel`: each block x + A(LN1(x)) +
/// M(LN2(x)) instead of the sequential x + A, then + M.
fn reference_gpt(vs: &VarStore, tokens: &Tensor, parallel: bool) -> Tensor {
    let v = vs.variables();
    let w = |name: &str| v[name].shallow_clone();
    let ln = |x: &Tensor, p: &str| {
        x.layer_norm([WIDTH], Some(&w(&format!("{p}.weight"))), Some(&w(&format!("{p}.bias"))), 1e-5, false)
    };
    let t = tokens.size()[1];
    let mut x = Tensor::embedding(&w("embed.tokens"), tokens, -1, false, false)
        + w("embed.positions").narrow(0, 0, t);
    for block in 0..BLOCKS {
        let a = |x: &Tensor| {
            let p = format!("block{block}.attn");
            let y = ln(x, &format!("{p}.norm"));
            reference_attention(
                &y,
                &w(&format!("{p}.qkv.weight")),
                &w(&format!("{p}.qkv.bias")),
                &w(&format!("{p}.proj.weight")),
                &w(&format!("{p}.proj.bias")),
            )
        };
        let m = |x: &Tensor| {
            let p = format!("block{block}.mlp");
            let y = ln(x, &format!("{p}.norm"));
            let h = y.linear(&w(&format!("{p}.fc.weight")), Some(&w(&format!("{p}.fc.bias")))).gelu("none");
            h.linear(&w(&format!("{p}.proj.weight")), Some(&w(&format!("{p}.proj.bias"))))
        };
        x = match parallel {
            true => &x + a(&x) + m(&x),
            false => {
                let after = &x + a(&x);
                &after + m(&after)
            }
        };
    }
    ln(&x, "head.norm").linear(&w("head.out.weight"), Some(&w("head.out.bias")))
}

/// A random float64 model and its variables.
fn model(lm: &LmConfig, seed: i64) -> (Net, VarStore) {
    tch::manual_seed(seed);
    let mut vs = VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), lm);
    vs.double();
    (net, vs)
}

/// The model's logits for `tokens` in eval mode.
fn logits(net: &Net, tokens: &Tensor) -> Tensor {
    tch::no_grad(|| net.forward(&tokens.to_kind(Kind::Double), false))
}

/// Float64 against float64 by another route (attention spelled out, its own reductions): 1e-10
/// relative is ~1e6 roundings of 1e-16, and far below any wrong operation.
#[test]
fn the_sequential_and_parallel_models_are_the_gpt_blocks() {
    let _seeded = seed_exclusively(22);
    let tokens = tokens();
    for (variant, parallel) in [(LmVariant::Sequential, false), (LmVariant::Parallel, true)] {
        let (net, vs) = model(&config(variant, 2, NormTangent::Exact), 7);
        let ours = logits(&net, &tokens);
        assert_eq!(ours.size(), [BATCH, CONTEXT, 256]);
        let reference = tch::no_grad(|| reference_gpt(&vs, &tokens, parallel));
        let error =
            (&ours - &reference).abs().max().double_value(&[]) / reference.abs().max().double_value(&[]);
        assert!(error < 1e-10, "{variant:?}: {error}");
    }
}

/// Changing the tokens after position t changes no logit at or before t, for every variant and K: the
/// causal mask holds through the tangent passes too (a masked probability is exactly 0, so a later
/// token adds exactly nothing).
#[test]
fn no_logit_depends_on_a_later_token() {
    let _seeded = seed_exclusively(23);
    let tokens = tokens();
    let position = 2;
    let changed = tokens.copy();
    let _ = changed.narrow(1, position + 1, CONTEXT - position - 1).fill_(7);
    for variant in [
        LmVariant::Sequential,
        LmVariant::Parallel,
        LmVariant::Warpnet1,
        LmVariant::Warpnet2,
        LmVariant::Exact,
    ] {
        for k in [2, 4] {
            let lm = config(variant, k, NormTangent::Exact);
            let (net, _vs) = model(&lm, 9);
            let (before, after) = (logits(&net, &tokens), logits(&net, &changed));
            let upto = |l: &Tensor| l.narrow(1, 0, position + 1);
            let moved = (upto(&before) - upto(&after)).abs().max().double_value(&[]);
            assert!(moved == 0.0, "{variant:?} K={k}: a logit at or before {position} moved by {moved}");
            let later = (before.narrow(1, position + 1, 1) - after.narrow(1, position + 1, 1)).abs().max();
            assert!(
                later.double_value(&[]) > 0.0,
                "{variant:?} K={k}: the change reaches the later positions"
            );
        }
    }
}

/// bf16 mixed precision against fp32 on the CPU, the same weights and batch: the sequential model and
/// warpnet2 K = 2 (whose tangent passes run in bf16 too), logits and every gradient, within bf16's
/// rounding bound (tests/common: about 0.1 for these 12-16 matrix products; measured 0.008-0.011,
/// where a gradient that misses the fp32 master weights is 1). tests/gpu.rs runs the same comparison
/// on a GPU, where the attention is libtorch's fused kernel.
#[test]
fn bf16_stays_within_its_rounding_of_fp32() {
    for variant in [LmVariant::Sequential, LmVariant::Warpnet2] {
        let (logits, gradients, kind) = common::lm_against_cpu_fp32(variant, Device::Cpu, Precision::Bf16);
        println!("{variant:?}: logits {logits:.2e}, gradients {gradients:.2e}");
        assert_eq!(kind, Kind::BFloat16, "{variant:?}: the bf16 pass computes in bf16");
        let bound = common::bf16_rounding_bound(common::lm_matrix_products(variant));
        assert!(logits <= bound && gradients <= bound, "{variant:?}: bound {bound:.2e}");
    }
}
