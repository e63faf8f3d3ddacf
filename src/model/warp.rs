//! The warp operator (paper eq. 3 and 5): a layer over K consecutive units evaluated from its input x1
//! alone, as x1 plus a list of terms (model/terms.rs). This is the one place any term list is evaluated.
//! K = 1 with the single term F1 is an ordinary residual unit x1 + F1(x1): the WRN is this same layer.

use tch::Tensor;

use super::config::DerivativeBn;
use super::terms::{Term, Vector};
use super::unit::{ResidualUnit, UnitPrimal};

/// What a Jacobian F'_j(x1) in a term means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jacobian {
    /// The true tangent pass at x1, BatchNorm treated as the mode says.
    Tangent(DerivativeBn),
    /// The released code's map instead (not a derivative; `--variant released`).
    Released,
}

/// How the terms of a layer share the primal passes at x1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrimalSharing {
    /// Each unit's primal pass (output, ReLU mask, BN statistics) runs once and every term reuses it.
    #[default]
    Shared,
    /// Each term runs the primal passes it needs itself, as a generic forward-mode JVP (jvp(F, x1, v))
    /// would. Only for measuring what sharing saves (`warpnet bench --per-term-primals`).
    PerTerm,
}

/// A warp layer: K units and the terms that combine them. On a device of a model-parallel placement
/// it holds only the units its terms read (the others are `None`) and only those terms.
#[derive(Debug)]
pub struct WarpLayer {
    units: Vec<Option<ResidualUnit>>,
    pub terms: Vec<Term>,
    pub jacobian: Jacobian,
    pub sharing: PrimalSharing,
}

impl WarpLayer {
    /// The whole layer: all K units.
    pub fn new(units: Vec<ResidualUnit>, terms: Vec<Term>, jacobian: Jacobian) -> Self {
        Self::partial(units.into_iter().map(Some).collect(), terms, jacobian)
    }

    /// A layer holding only some of its K units (slot c is unit c, `None` where absent).
    pub fn partial(units: Vec<Option<ResidualUnit>>, terms: Vec<Term>, jacobian: Jacobian) -> Self {
        assert!(!terms.is_empty(), "a warp layer has at least one term");
        let held = |u: usize| units.get(u).is_some_and(|slot| slot.is_some());
        assert!(terms.iter().all(|t| t.units().all(held)), "every unit a term reads is held");
        WarpLayer { units, terms, jacobian, sharing: PrimalSharing::Shared }
    }

    /// Unit c (0-based) of the layer; panics if this layer does not hold it.
    pub fn unit(&self, c: usize) -> &ResidualUnit {
        self.units[c].as_ref().expect("unit held by this layer")
    }

    /// The units this layer holds, with their 0-based positions.
    pub fn held_units(&self) -> impl Iterator<Item = (usize, &ResidualUnit)> {
        self.units.iter().enumerate().filter_map(|(c, u)| u.as_ref().map(|u| (c, u)))
    }

    /// x_{K+1} = x1 + sum of the terms: (B, C, H, W) -> (B, C, H, W).
    pub fn forward(&self, x1: &Tensor, train: bool) -> Tensor {
        x1 + self.terms_sum(x1, train)
    }

    /// The sum of this layer's terms at x1, without the skip: (B, C, H, W) -> (B, C, H, W).
    pub fn terms_sum(&self, x1: &Tensor, train: bool) -> Tensor {
        let shared =
            (self.sharing == PrimalSharing::Shared).then(|| self.primal_passes(&self.terms, x1, train));
        self.terms
            .iter()
            .map(|term| match &shared {
                Some(primals) => self.evaluate(term, x1, primals),
                None => self.evaluate(term, x1, &self.primal_passes(std::slice::from_ref(term), x1, train)),
            })
            .reduce(|sum, term| sum + term)
            .expect("at least one term")
    }

    /// The primal pass at x1 of every unit that `terms` use, once each: its output where a term starts
    /// from it, its linearisation where a term applies its Jacobian. `None` for units no term uses.
    pub fn primal_passes(&self, terms: &[Term], x1: &Tensor, train: bool) -> Vec<Option<UnitPrimal>> {
        (0..self.units.len())
            .map(|c| {
                let starts_a_term = terms.iter().any(|t| t.vector == Vector::Primal(c));
                let in_a_chain = terms.iter().any(|t| t.chain.contains(&c));
                let linearize = match self.jacobian {
                    Jacobian::Tangent(mode) if in_a_chain => Some(mode),
                    _ => None,
                };
                (starts_a_term || linearize.is_some())
                    .then(|| self.unit(c).primal(x1, train, starts_a_term, linearize))
            })
            .collect()
    }

    /// One term's value at x1: its vector, then each Jacobian of its chain, innermost first.
    pub fn evaluate(&self, term: &Term, x1: &Tensor, primals: &[Option<UnitPrimal>]) -> Tensor {
        let primal = |c: usize| primals[c].as_ref().expect("primal pass of every unit a term uses");
        let vector = match term.vector {
            Vector::Primal(c) => {
                primal(c).output.as_ref().expect("output of a unit a term starts from").shallow_clone()
            }
            Vector::Input => x1.shallow_clone(),
        };
        term.chain.iter().fold(vector, |v, &j| match self.jacobian {
            Jacobian::Tangent(_) => {
                let at = primal(j).linearization.as_ref().expect("linearised: its Jacobian is in a chain");
                self.unit(j).tangent(at, &v)
            }
            Jacobian::Released => self.unit(j).released_map(&v),
        })
    }
}
