//! The attention sublayer of a pre-LN decoder block as a residual unit: A(x) = W_o MHA(LN1(x)),
//! causal, and its exact tangent pass through the LayerNorm, the products and the softmax.
//!
//! Shapes: x (B, T, D); heads H of width d = D / H; q, k, v (B, H, T, d); scores and probabilities
//! (B, H, T, T), the causal mask setting every score of a later token to -inf.

use std::any::Any;

use tch::nn::Path;
use tch::{Kind, Tensor};

use super::norm::{LayerNorm, NormAt, NormTangent};
use crate::model::layers::Linear;
use crate::model::unit::{self, Need, Primal, Unit};

/// A(x) = W_o MHA(LN1(x)).
#[derive(Debug)]
pub struct Attention {
    pub norm: LayerNorm,
    /// D -> 3D: the queries, keys and values of every head.
    pub qkv: Linear,
    /// D -> D: the heads' outputs back to the stream.
    pub proj: Linear,
    pub heads: i64,
    pub norm_tangent: NormTangent,
}

/// The sublayer linearised at x1: the norm's statistics, the queries, keys and values and the
/// attention probabilities, held constant in v.
struct AttentionAt {
    norm: NormAt,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    /// (B, H, T, T)
    probabilities: Tensor,
}

impl Attention {
    pub fn new(path: &Path, features: i64, heads: i64, norm_tangent: NormTangent) -> Self {
        Attention {
            norm: LayerNorm::new(path / "norm", features),
            qkv: Linear::new(path / "qkv", features, 3 * features),
            proj: Linear::new(path / "proj", features, features),
            heads,
            norm_tangent,
        }
    }

    /// (B, T, D) -> (B, H, T, d)
    fn split_heads(&self, x: &Tensor) -> Tensor {
        let [b, t, d] = x.size()[..] else { unreachable!("(B, T, D)") };
        x.view([b, t, self.heads, d / self.heads]).transpose(1, 2)
    }

    /// (B, H, T, d) -> (B, T, D)
    fn merge_heads(x: &Tensor) -> Tensor {
        let [b, h, t, d] = x.size()[..] else { unreachable!("(B, H, T, d)") };
        x.transpose(1, 2).contiguous().view([b, t, h * d])
    }

    /// q, k, v of the normalised y: (B, H, T, d) each; `bias` false for a tangent (linear in y).
    fn queries_keys_values(&self, y: &Tensor, bias: bool) -> (Tensor, Tensor, Tensor) {
        let projected = match bias {
            true => self.qkv.forward(y),
            false => y.linear(&self.qkv.weight.to_kind(y.kind()), None::<Tensor>),
        };
        let parts = projected.chunk(3, -1);
        (self.split_heads(&parts[0]), self.split_heads(&parts[1]), self.split_heads(&parts[2]))
    }

    /// Causal softmax(q k^T / sqrt(d)): (B, H, T, T).
    fn probabilities(q: &Tensor, k: &Tensor) -> Tensor {
        let (t, d) = (q.size()[2], q.size()[3]);
        let scores = q.matmul(&k.transpose(-2, -1)) / (d as f64).sqrt();
        let later = Tensor::ones([t, t], (Kind::Bool, q.device())).triu(1);
        scores.masked_fill(&later, f64::NEG_INFINITY).softmax(-1, scores.kind())
    }
}

impl Unit for Attention {
    fn primal(&self, x1: &Tensor, _train: bool, need: Need) -> Primal {
        let y = self.norm.forward(x1);
        let (q, k, v) = self.queries_keys_values(&y, true);
        if !need.linearization && (matches!(q.kind(), Kind::Float | Kind::Double) || q.device().is_cuda()) {
            // The output alone (every sublayer of the sequential and parallel models): libtorch's fused
            // causal attention, which never forms the (B, H, T, T) probabilities. It makes the CPU's
            // fp32 step faster, but its CPU bf16 kernel the step slower than the spelled-out softmax
            // (RESULTS.md, "The step against PyTorch"), so a CPU's bf16 keeps the latter; on a GPU
            // the fused kernel is flash attention in either precision.
            let heads =
                Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, true, None, false);
            let output = need.output.then(|| self.proj.forward(&Attention::merge_heads(&heads)));
            return Primal { output, linearization: None };
        }
        let probabilities = Attention::probabilities(&q, &k);
        let output =
            need.output.then(|| self.proj.forward(&Attention::merge_heads(&probabilities.matmul(&v))));
        let linearization = need.linearization.then(|| {
            let norm = self.norm.linearize(x1, self.norm_tangent);
            unit::Linearization::new(AttentionAt { norm, q, k, v, probabilities })
        });
        Primal { output, linearization }
    }

    /// dy = LN1'(v); dq, dk, dv = dy W; dS = (dq k^T + q dk^T) / sqrt(d);
    /// dP = P * (dS - rowsum(P * dS)); dO = dP v + P dv; W_o dO.
    fn tangent(&self, at: &unit::Linearization, v: &Tensor) -> Tensor {
        let at = at.of::<AttentionAt>();
        let dy = self.norm.tangent(&at.norm, v);
        let (dq, dk, dv) = self.queries_keys_values(&dy, false);
        let d = at.q.size()[3] as f64;
        let kind = dq.kind();
        let [q, k, values, p] = [&at.q, &at.k, &at.v, &at.probabilities].map(|t| t.to_kind(kind));
        let dscores = (dq.matmul(&k.transpose(-2, -1)) + q.matmul(&dk.transpose(-2, -1))) / d.sqrt();
        let weighted = &p * dscores;
        let dp = &weighted - &p * weighted.sum_dim_intlist(-1, true, None);
        let dout = dp.matmul(&values) + p.matmul(&dv);
        Attention::merge_heads(&dout).linear(&self.proj.weight.to_kind(kind), None::<Tensor>)
    }

    fn rows(&self, at: &unit::Linearization, start: i64, rows: i64) -> Vec<Tensor> {
        let at = at.of::<AttentionAt>();
        let own = [&at.q, &at.k, &at.v, &at.probabilities].map(|t| t.narrow(0, start, rows));
        at.norm.rows(start, rows).tensors().into_iter().chain(own).collect()
    }

    fn piece_linearization(&self, rows: Vec<Tensor>) -> unit::Linearization {
        let mut rows = rows.into_iter();
        let norm = NormAt::from_tensors(&mut rows, self.norm_tangent);
        let mut next = || rows.next().expect("q, k, v and the probabilities");
        unit::Linearization::new(AttentionAt { norm, q: next(), k: next(), v: next(), probabilities: next() })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
