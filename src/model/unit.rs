//! What the warp operator needs of a residual unit F, of any kind: its primal pass at x1 (the output
//! F(x1), and what its tangent needs there), its tangent pass v -> F'(x1)v, and the rows of that
//! linearisation for a piece of a term split by batch. The warp layer (model/warp.rs), the network
//! (model/net.rs), the runtime and the planner see units only through [`Unit`]. The paper's Table 1
//! unit is one kind (model/wrn/unit.rs); a new kind implements this trait and an
//! [`Architecture`](super::architecture::Architecture) that builds it.

use std::any::Any;
use std::fmt;

use tch::Tensor;

/// What a primal pass is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// F(x1) itself: a term starts from it.
    pub output: bool,
    /// What a tangent pass at x1 needs: a term applies F'(x1), or another device's piece does.
    pub linearization: bool,
}

/// What a primal pass returns.
#[derive(Debug)]
pub struct Primal {
    /// F(x1), shaped as x1; `None` when it was not asked for.
    pub output: Option<Tensor>,
    /// The unit linearised at x1; `None` when it was not asked for.
    pub linearization: Option<Linearization>,
}

/// A unit linearised at x1: what its tangent pass needs from the primal pass there (a ReLU mask,
/// normalisation statistics, attention probabilities, ...), held constant. Opaque: only the kind of
/// unit that made it reads it ([`Linearization::of`]).
pub struct Linearization(Box<dyn Any + Send>);

impl Linearization {
    /// Wraps a unit kind's own linearisation.
    pub fn new<T: Any + Send>(inner: T) -> Self {
        Linearization(Box::new(inner))
    }

    /// The unit kind's own linearisation. Panics if `T` is not what that kind made: a linearisation
    /// is read only by the kind of unit whose primal pass made it.
    pub fn of<T: Any>(&self) -> &T {
        self.0.downcast_ref().expect("a linearisation is read by the kind of unit that made it")
    }
}

impl fmt::Debug for Linearization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Linearization(..)")
    }
}

/// One residual branch F; the warp layer adds the skip x1.
pub trait Unit: Send + fmt::Debug {
    /// The primal pass at x1: F(x1) where `need.output`, the linearisation where
    /// `need.linearization`; nothing is computed that neither needs. In training mode (`train`) the
    /// unit's normalisation statistics (if any) are the batch's and its running ones are updated.
    fn primal(&self, x1: &Tensor, train: bool, need: Need) -> Primal;

    /// The tangent pass F'(x1)v from the linearisation at x1, shaped as x1; linear in v.
    fn tangent(&self, at: &Linearization, v: &Tensor) -> Tensor;

    /// The tensors, cut to rows [start, start + rows) of the batch, that a piece of a term on those
    /// rows reads of this linearisation; a device that evaluates such a piece receives them from the
    /// device that ran the primal pass. Called only where the architecture lets pieces apart
    /// ([`Architecture::pieces_apart`](super::architecture::Architecture::pieces_apart)).
    fn rows(&self, at: &Linearization, start: i64, rows: i64) -> Vec<Tensor>;

    /// The linearisation of a piece from the tensors [`Unit::rows`] gave.
    fn piece_linearization(&self, rows: Vec<Tensor>) -> Linearization;

    /// Whether [`Unit::tangent`] is linear in v (a true Jacobian is), so that terms sharing their
    /// outermost Jacobian can share one pass: F'(a) + F'(b) = F'(a + b).
    fn tangent_is_linear(&self) -> bool {
        true
    }

    /// The unit as `Any`, for an analysis of one kind of unit (the WRN's ReLU mask flips).
    fn as_any(&self) -> &dyn Any;
}
