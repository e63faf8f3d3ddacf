//! The MLP sublayer of a pre-LN decoder block as a residual unit: M(x) = W_2 GELU(W_1 LN2(x)), and
//! its exact tangent pass through the LayerNorm and GELU (the erf form).
//!
//! Shapes: x (B, T, D); the hidden layer (B, T, 4D).

use std::any::Any;

use tch::nn::Path;
use tch::Tensor;

use super::norm::{LayerNorm, NormAt, NormTangent};
use crate::model::layers::{widened, Linear};
use crate::model::unit::{self, Need, Primal, Unit};

/// The hidden layer's width over the stream's (GPT's).
pub const EXPANSION: i64 = 4;

/// M(x) = W_2 GELU(W_1 LN2(x)).
#[derive(Debug)]
pub struct Mlp {
    pub norm: LayerNorm,
    /// D -> 4D
    pub fc: Linear,
    /// 4D -> D
    pub proj: Linear,
    pub norm_tangent: NormTangent,
}

/// The sublayer linearised at x1: the norm's statistics and GELU's slope at the hidden layer.
struct MlpAt {
    norm: NormAt,
    /// GELU'(h) = Phi(h) + h phi(h): (B, T, 4D).
    slope: Tensor,
}

/// GELU'(h) = Phi(h) + h phi(h), Phi and phi the standard normal's distribution and density, in at
/// least fp32.
fn gelu_slope(h: &Tensor) -> Tensor {
    let h = widened(h);
    let cdf = (&h / std::f64::consts::SQRT_2).erf() * 0.5 + 0.5;
    let density = (&h * &h * -0.5).exp() / (2.0 * std::f64::consts::PI).sqrt();
    cdf + h * density
}

impl Mlp {
    pub fn new(path: &Path, features: i64, norm_tangent: NormTangent) -> Self {
        Mlp {
            norm: LayerNorm::new(path / "norm", features),
            fc: Linear::new(path / "fc", features, EXPANSION * features),
            proj: Linear::new(path / "proj", EXPANSION * features, features),
            norm_tangent,
        }
    }
}

impl Unit for Mlp {
    fn primal(&self, x1: &Tensor, _train: bool, need: Need) -> Primal {
        let h = self.fc.forward(&self.norm.forward(x1));
        let output = need.output.then(|| self.proj.forward(&h.gelu("none")));
        let linearization = need.linearization.then(|| {
            let norm = self.norm.linearize(x1, self.norm_tangent);
            unit::Linearization::new(MlpAt { norm, slope: gelu_slope(&h) })
        });
        Primal { output, linearization }
    }

    /// W_2 (GELU'(h) * W_1 LN2'(v)).
    fn tangent(&self, at: &unit::Linearization, v: &Tensor) -> Tensor {
        let at = at.of::<MlpAt>();
        let dy = self.norm.tangent(&at.norm, v);
        let kind = dy.kind();
        let dh = dy.linear(&self.fc.weight.to_kind(kind), None::<Tensor>);
        (dh * at.slope.to_kind(kind)).linear(&self.proj.weight.to_kind(kind), None::<Tensor>)
    }

    fn rows(&self, at: &unit::Linearization, start: i64, rows: i64) -> Vec<Tensor> {
        let at = at.of::<MlpAt>();
        let mut tensors = at.norm.rows(start, rows).tensors();
        tensors.push(at.slope.narrow(0, start, rows));
        tensors
    }

    fn piece_linearization(&self, rows: Vec<Tensor>) -> unit::Linearization {
        let mut rows = rows.into_iter();
        let norm = NormAt::from_tensors(&mut rows, self.norm_tangent);
        unit::Linearization::new(MlpAt { norm, slope: rows.next().expect("GELU's slope") })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
