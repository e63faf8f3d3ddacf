//! The warp operator (paper eq. 3 and 5): a layer over K consecutive units evaluated from its input x1
//! alone, as x1 plus a list of terms.
//!
//! A term is data: the vector it starts from (a primal output F_c1(x1), or x1 itself) and the chain of
//! units whose Jacobians at x1 are applied to it, innermost first. The list is built in one place (the
//! variant's builder) and evaluated in one place ([`WarpLayer::forward`]). K = 1 with the single term
//! F1 is an ordinary residual unit x1 + F1(x1): the wide ResNet baseline is this same layer.

use std::fmt;

use tch::Tensor;

use super::unit::{ResidualUnit, UnitPrimal};

/// The vector a term's Jacobian chain acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vector {
    /// F_c(x1), the primal output of unit c (0-based inside the layer).
    Primal(usize),
    /// x1, the layer's input (WarpNet1's F'_j x1).
    Input,
}

/// One term of a warp layer: F'_{ck}(x1) ... F'_{c2}(x1) applied to `vector`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub vector: Vector,
    /// Units whose Jacobians at x1 are applied, innermost first (0-based inside the layer).
    pub chain: Vec<usize>,
}

impl Term {
    /// The first-order term F_c(x1).
    pub fn primal(unit: usize) -> Self {
        Term { vector: Vector::Primal(unit), chain: Vec::new() }
    }

    /// Units whose weights this term reads.
    pub fn units(&self) -> impl Iterator<Item = usize> + '_ {
        let vector_unit = match self.vector {
            Vector::Primal(c) => Some(c),
            Vector::Input => None,
        };
        vector_unit.into_iter().chain(self.chain.iter().copied())
    }
}

/// The paper's notation with 1-based units, outermost Jacobian first: `F1`, `F2'F1`, `F3'F2'x1`.
impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &unit in self.chain.iter().rev() {
            write!(f, "F{}'", unit + 1)?;
        }
        match self.vector {
            Vector::Primal(c) => write!(f, "F{}", c + 1),
            Vector::Input => write!(f, "x1"),
        }
    }
}

/// The term list of an ordinary residual unit, the K = 1 layer of the WRN: [F1].
pub fn residual_terms() -> Vec<Term> {
    vec![Term::primal(0)]
}

/// A warp layer: K units and the terms that combine them.
#[derive(Debug)]
pub struct WarpLayer {
    pub units: Vec<ResidualUnit>,
    pub terms: Vec<Term>,
}

impl WarpLayer {
    pub fn new(units: Vec<ResidualUnit>, terms: Vec<Term>) -> Self {
        debug_assert!(terms.iter().all(|t| t.units().all(|u| u < units.len())));
        WarpLayer { units, terms }
    }

    /// x1 + sum of the terms: (B, C, H, W) -> (B, C, H, W).
    pub fn forward(&self, x1: &Tensor, train: bool) -> Tensor {
        let primals = self.primal_outputs(x1, train);
        let terms_sum = self
            .terms
            .iter()
            .map(|term| self.evaluate(term, x1, &primals))
            .reduce(|sum, term| sum + term)
            .expect("a warp layer has at least one term");
        x1 + terms_sum
    }

    /// F_c(x1) for every unit some term starts from; `None` for the others.
    fn primal_outputs(&self, x1: &Tensor, train: bool) -> Vec<Option<UnitPrimal>> {
        (0..self.units.len())
            .map(|c| {
                let needed = self.terms.iter().any(|t| t.vector == Vector::Primal(c));
                let keeps_mask = self.terms.iter().any(|t| t.chain.contains(&c));
                needed.then(|| self.units[c].primal(x1, train, keeps_mask))
            })
            .collect()
    }

    /// One term's value at x1: (B, C, H, W).
    fn evaluate(&self, term: &Term, x1: &Tensor, primals: &[Option<UnitPrimal>]) -> Tensor {
        assert!(term.chain.is_empty(), "term {term}: Jacobian chains are not evaluated by this layer");
        match term.vector {
            Vector::Primal(c) => primals[c]
                .as_ref()
                .expect("primal output computed for every term that starts from it")
                .output
                .shallow_clone(),
            Vector::Input => x1.shallow_clone(),
        }
    }
}
