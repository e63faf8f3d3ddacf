//! The warp operator (paper eq. 3 and 5): a layer over K consecutive units evaluated from its input x1
//! alone, as x1 plus a list of terms (model/terms.rs). This is the one place any term list is evaluated.
//! K = 1 with the single term F1 is an ordinary residual unit x1 + F1(x1): the WRN is this same layer.

use tch::Tensor;

use super::config::DerivativeBn;
use super::terms::{Term, Vector};
use super::unit::{Linearization, ResidualUnit, UnitPrimal};

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

/// Rows of the batch a term is evaluated on, as shares [from, to) of the batch: all of it, or one
/// device's piece of a term split by batch (parallel/placement/shares.rs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub from: f64,
    pub to: f64,
}

impl Span {
    pub const WHOLE: Span = Span { from: 0.0, to: 1.0 };

    /// (first row, number of rows) of a batch of `batch` rows, each end rounded to the nearest row.
    pub fn rows(self, batch: i64) -> (i64, i64) {
        let row = |share: f64| (share * batch as f64).round() as i64;
        (row(self.from), row(self.to) - row(self.from))
    }
}

/// A warp layer: K units and the terms that combine them. On a device of a model-parallel placement
/// it holds only the units its terms read (the others are `None`) and only those terms.
#[derive(Debug)]
pub struct WarpLayer {
    units: Vec<Option<ResidualUnit>>,
    pub terms: Vec<Term>,
    /// The rows each term is evaluated on (`Span::WHOLE` but for pieces of a split term).
    pub spans: Vec<Span>,
    /// Units whose ReLU masks another device sends (their pieces' rows): no mask pass runs here.
    pub imported_masks: Vec<usize>,
    /// Units whose ReLU masks this device sends to another's pieces: linearised here even when no
    /// term here applies their Jacobian.
    pub exported_masks: Vec<usize>,
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
        let spans = vec![Span::WHOLE; terms.len()];
        WarpLayer {
            units,
            terms,
            spans,
            imported_masks: Vec::new(),
            exported_masks: Vec::new(),
            jacobian,
            sharing: PrimalSharing::Shared,
        }
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
        if self.sharing == PrimalSharing::PerTerm {
            return self
                .terms
                .iter()
                .map(|term| {
                    self.evaluate(term, x1, &self.primal_passes(std::slice::from_ref(term), x1, train))
                })
                .reduce(|sum, term| sum + term)
                .expect("at least one term");
        }
        let primals = self.primal_passes(&self.terms, x1, train);
        self.sum_at(x1, &primals, &[])
    }

    /// The terms' sum at x1 (B, C, H, W) from the primal passes run here and, for the units in
    /// `imported_masks`, their ReLU masks' rows sent by another device (`masks`: (unit, mask)). A piece
    /// of a split term is evaluated on its rows and counts zero elsewhere.
    pub fn sum_at(&self, x1: &Tensor, primals: &[Option<UnitPrimal>], masks: &[(usize, Tensor)]) -> Tensor {
        let batch = x1.size()[0];
        self.terms
            .iter()
            .zip(&self.spans)
            .map(|(term, &span)| {
                if span == Span::WHOLE {
                    return self.evaluate(term, x1, primals);
                }
                let (start, rows) = span.rows(batch);
                let piece = self.evaluate(
                    term,
                    &x1.narrow(0, start, rows),
                    &piece_primals(primals, masks, start, rows),
                );
                x1.zeros_like().slice_scatter(&piece, 0, start, start + rows, 1)
                // (B, C, H, W)
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
                let in_a_chain = (terms.iter().any(|t| t.chain.contains(&c))
                    || self.exported_masks.contains(&c))
                    && !self.imported_masks.contains(&c);
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

/// What a piece on rows [start, start + rows) reads of the primal passes: each unit's linearisation
/// cut to those rows, from the pass run here or from the mask another device sent. Pieces are F'_j x1
/// terms (parallel/placement/shares.rs): they need no unit's output.
fn piece_primals(
    primals: &[Option<UnitPrimal>],
    masks: &[(usize, Tensor)],
    start: i64,
    rows: i64,
) -> Vec<Option<UnitPrimal>> {
    let piece = |linearization| Some(UnitPrimal { output: None, linearization: Some(linearization) });
    (0..primals.len())
        .map(|c| match masks.iter().find(|(unit, _)| *unit == c) {
            Some((_, mask)) => piece(Linearization::of_mask(mask.shallow_clone())),
            None => primals[c].as_ref()?.linearization.as_ref().and_then(|l| piece(l.rows(start, rows))),
        })
        .collect()
}
