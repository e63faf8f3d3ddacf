//! The paper's residual unit F = BN-Conv3x3-BN-ReLU-Conv3x3-BN (section 4, Table 1), used with an
//! identity skip: its primal pass F(x1) and its tangent pass F'(x1)v, and the released code's map in
//! place of F' for `--variant released`. One kind of [`Unit`].

use std::any::Any;

use tch::nn::Path;
use tch::Tensor;

use crate::model::config::DerivativeBn;
use crate::model::layers::{conv3x3, BatchNorm2d, BnTangent, Conv3x3};
use crate::model::op_count;
use crate::model::unit::{self, Need, Primal, Unit};

/// What a Jacobian F'_j(x1) of this unit means in a warp layer's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jacobian {
    /// The true tangent pass at x1, BatchNorm treated as the mode says.
    Tangent(DerivativeBn),
    /// The released code's map instead (not a derivative; `--variant released`).
    Released,
}

/// One residual branch F_i at a fixed width C. The skip connection x + F(x) is added by the warp layer.
#[derive(Debug)]
pub struct ResidualUnit {
    /// BN on the unit's input.
    pub bn0: BatchNorm2d,
    pub conv1: Conv3x3,
    pub bn1: BatchNorm2d,
    pub conv2: Conv3x3,
    pub bn2: BatchNorm2d,
    /// What [`Unit::tangent`] applies (the inherent passes take the BN mode as an argument).
    pub jacobian: Jacobian,
}

/// What the primal pass F(x1) returns.
#[derive(Debug)]
pub struct UnitPrimal {
    /// F(x1): (B, C, H, W); `None` when only the linearisation was asked for.
    pub output: Option<Tensor>,
    /// What a tangent pass at the same x1 needs; kept only when asked for.
    pub linearization: Option<Linearization>,
}

/// The unit linearised at x1: F'(x1) is v -> BN2'(Conv2(mask * BN1'(Conv1(BN0'(v))))).
#[derive(Debug)]
pub struct Linearization {
    /// true where the ReLU's input at x1 was > 0: (B, C, H, W) booleans (a quarter of a float mask's
    /// memory; multiplying by it promotes to the vector's float kind), held constant.
    pub relu_mask: Tensor,
    /// bn0, bn1, bn2 as the derivative-BN mode treats them.
    pub bn: [BnTangent; 3],
}

impl Linearization {
    /// The linearisation of a unit with BN removed from F' (derivative-BN `none`): its ReLU mask alone.
    pub fn of_mask(relu_mask: Tensor) -> Self {
        Linearization { relu_mask, bn: [BnTangent::Removed, BnTangent::Removed, BnTangent::Removed] }
    }

    /// Rows [start, start + rows) of the batch, for a piece of a term split by batch. Only with BN
    /// removed from F': the mask is per element, a BN tangent carries the whole batch's statistics.
    pub fn rows(&self, start: i64, rows: i64) -> Linearization {
        assert!(
            self.bn.iter().all(|bn| matches!(bn, BnTangent::Removed)),
            "pieces need derivative BN `none`"
        );
        Linearization::of_mask(self.relu_mask.narrow(0, start, rows))
    }
}

impl ResidualUnit {
    /// Unit weights under `path` (e.g. `stage1.unit2`), at `channels` channels; its Jacobian the true
    /// tangent with BN removed (the paper's).
    pub fn new(path: &Path, channels: i64) -> Self {
        ResidualUnit {
            bn0: BatchNorm2d::new(path / "bn0", channels),
            conv1: Conv3x3::new(path / "conv1", channels, channels),
            bn1: BatchNorm2d::new(path / "bn1", channels),
            conv2: Conv3x3::new(path / "conv2", channels, channels),
            bn2: BatchNorm2d::new(path / "bn2", channels),
            jacobian: Jacobian::Tangent(DerivativeBn::None),
        }
    }

    /// The same unit with `jacobian` as what its [`Unit::tangent`] applies.
    pub fn with_jacobian(self, jacobian: Jacobian) -> Self {
        ResidualUnit { jacobian, ..self }
    }

    /// F(x): (B, C, H, W) -> (B, C, H, W).
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        self.primal_with(x, train, true, None).output.expect("output asked for")
    }

    /// Primal pass at x: F(x) when `output`, and with `linearize` what the tangent pass at this x needs,
    /// BN treated as that mode says. Nothing is computed that neither needs: with BN removed from F'
    /// (`none`) a pass for the linearisation alone stops at the ReLU mask (conv1 of the two convs), so a
    /// device that holds only F'_j x1 never runs F_j's second convolution.
    pub fn primal_with(
        &self,
        x: &Tensor,
        train: bool,
        output: bool,
        linearize: Option<DerivativeBn>,
    ) -> UnitPrimal {
        let conv1_in = self.bn0.forward(x, train);
        let bn1_in = self.conv1.forward(&conv1_in);
        let pre_relu = self.bn1.forward(&bn1_in, train);
        let needs_bn2_input = output || linearize.is_some_and(|mode| mode != DerivativeBn::None);
        let bn2_in = needs_bn2_input.then(|| self.conv2.forward(&pre_relu.relu()));
        let linearization = linearize.map(|mode| {
            op_count::masks_add(1);
            Linearization {
                relu_mask: pre_relu.gt(0.0),
                bn: [
                    self.bn0.linearize(x, train, mode),
                    self.bn1.linearize(&bn1_in, train, mode),
                    match &bn2_in {
                        Some(bn2_in) => self.bn2.linearize(bn2_in, train, mode),
                        None => BnTangent::Removed, // mode `none`
                    },
                ],
            }
        });
        let output = if output { bn2_in.map(|h| self.bn2.forward(&h, train)) } else { None };
        UnitPrimal { output, linearization }
    }

    /// Tangent pass F'(x1)v: (B, C, H, W) -> (B, C, H, W), linear in v, with the ReLU mask of x1. Bilinear
    /// in (weights, v), so backpropagating through it gives the paper's d2F/dx dW terms.
    pub fn tangent_with(&self, at: &Linearization, v: &Tensor) -> Tensor {
        let h = self.conv1.forward(&at.bn[0].apply(v));
        let h = at.bn[1].apply(&h) * &at.relu_mask;
        at.bn[2].apply(&self.conv2.forward(&h))
    }

    /// The released code's stand-in for F'(x1)v: conv(flip(W2), 1[conv(flip(W1), v) > 0]), kernels
    /// flipped in space. NOT a derivative: the "mask" is taken of the convolved vector itself and then
    /// convolved as if it were the signal, and no BN appears. Kept only to reproduce that code's numbers.
    pub fn released_map(&self, v: &Tensor) -> Tensor {
        let flipped = |w: &Tensor| w.flip([2, 3]);
        let h = conv3x3(v, &flipped(&self.conv1.weight));
        let mask = h.gt(0.0).to_kind(h.kind());
        conv3x3(&mask, &flipped(&self.conv2.weight))
    }
}

/// The linearisation of a unit whose Jacobian is the released map: it reads no primal pass.
struct ReleasedMap;

impl Unit for ResidualUnit {
    fn primal(&self, x1: &Tensor, train: bool, need: Need) -> Primal {
        let (output, linearization) = match self.jacobian {
            Jacobian::Tangent(mode) => {
                let pass = self.primal_with(x1, train, need.output, need.linearization.then_some(mode));
                (pass.output, pass.linearization.map(unit::Linearization::new))
            }
            Jacobian::Released => {
                let output = need.output.then(|| self.forward(x1, train));
                (output, need.linearization.then(|| unit::Linearization::new(ReleasedMap)))
            }
        };
        Primal { output, linearization }
    }

    fn tangent(&self, at: &unit::Linearization, v: &Tensor) -> Tensor {
        match self.jacobian {
            Jacobian::Tangent(_) => self.tangent_with(at.of::<Linearization>(), v),
            Jacobian::Released => self.released_map(v),
        }
    }

    /// The ReLU mask's rows (one byte an element); nothing for the released map.
    fn rows(&self, at: &unit::Linearization, start: i64, rows: i64) -> Vec<Tensor> {
        match self.jacobian {
            Jacobian::Tangent(_) => vec![at.of::<Linearization>().rows(start, rows).relu_mask],
            Jacobian::Released => Vec::new(),
        }
    }

    fn piece_linearization(&self, rows: Vec<Tensor>) -> unit::Linearization {
        match (self.jacobian, <[Tensor; 1]>::try_from(rows)) {
            (Jacobian::Released, _) => unit::Linearization::new(ReleasedMap),
            (Jacobian::Tangent(_), Ok([relu_mask])) => {
                unit::Linearization::new(Linearization::of_mask(relu_mask))
            }
            (Jacobian::Tangent(_), Err(rows)) => unreachable!("one ReLU mask, not {} tensors", rows.len()),
        }
    }

    /// The released map thresholds the convolved vector: not linear in v, so never factored.
    fn tangent_is_linear(&self) -> bool {
        self.jacobian != Jacobian::Released
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
