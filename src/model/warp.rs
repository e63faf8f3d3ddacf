//! The warp operator (paper eq. 3 and 5): a layer over K consecutive units evaluated from its input x1
//! alone, as x1 plus a list of terms (model/terms.rs). This is the one place any term list is evaluated,
//! for any kind of unit (model/unit.rs). K = 1 with the single term F1 is an ordinary residual unit
//! x1 + F1(x1): the WRN is this same layer.

use tch::Tensor;

use super::terms::{Term, Vector};
use super::unit::{Need, Primal, Unit};

/// How the terms of a layer share the primal passes at x1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrimalSharing {
    /// Each unit's primal pass (output, linearisation) runs once and every term reuses it.
    #[default]
    Shared,
    /// Each term runs the primal passes it needs itself, as a generic forward-mode JVP (jvp(F, x1, v))
    /// would. Only for measuring what sharing saves (`warpnet bench --per-term-primals`).
    PerTerm,
}

/// Rows of the batch a term is evaluated on, as shares [from, to) of the batch: all of it, or one
/// device's piece of a term split by batch.
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

/// What one device evaluates of a layer, as the runtime places its terms: the rows of each term (in
/// the layer's term order), and the units whose linearisations it receives from, or sends to, another
/// device's pieces. A layer on one device evaluates every term whole and exchanges nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Assignment {
    /// Per term; empty: every term whole.
    pub spans: Vec<Span>,
    /// Units whose linearisation rows another device sends: no primal pass runs here for them.
    pub imported: Vec<usize>,
    /// Units whose linearisation rows this device sends to another's pieces: linearised here even
    /// where no term here applies their Jacobian.
    pub exported: Vec<usize>,
}

impl Assignment {
    /// The rows term `t` is evaluated on.
    fn span(&self, t: usize) -> Span {
        self.spans.get(t).copied().unwrap_or(Span::WHOLE)
    }
}

/// The linearisation rows of `unit` that another device sent for this device's pieces.
#[derive(Debug)]
pub struct Imported {
    pub unit: usize,
    pub rows: Vec<Tensor>,
}

/// A warp layer: K units and the terms that combine them. On a device of a model-parallel placement
/// it holds only the units its terms read (the others are `None`) and only those terms.
#[derive(Debug)]
pub struct WarpLayer {
    units: Vec<Option<Box<dyn Unit>>>,
    pub terms: Vec<Term>,
    pub sharing: PrimalSharing,
}

impl WarpLayer {
    /// The whole layer: all K units.
    pub fn new(units: Vec<Box<dyn Unit>>, terms: Vec<Term>) -> Self {
        Self::partial(units.into_iter().map(Some).collect(), terms)
    }

    /// A layer holding only some of its K units (slot c is unit c, `None` where absent).
    pub fn partial(units: Vec<Option<Box<dyn Unit>>>, terms: Vec<Term>) -> Self {
        assert!(!terms.is_empty(), "a warp layer has at least one term");
        let held = |u: usize| units.get(u).is_some_and(|slot| slot.is_some());
        assert!(terms.iter().all(|t| t.units().all(held)), "every unit a term reads is held");
        WarpLayer { units, terms, sharing: PrimalSharing::Shared }
    }

    /// Unit c (0-based) of the layer; panics if this layer does not hold it.
    pub fn unit(&self, c: usize) -> &dyn Unit {
        self.units[c].as_deref().expect("unit held by this layer")
    }

    /// The units this layer holds, with their 0-based positions.
    pub fn held_units(&self) -> impl Iterator<Item = (usize, &dyn Unit)> {
        self.units.iter().enumerate().filter_map(|(c, u)| u.as_deref().map(|u| (c, u)))
    }

    /// x_{K+1} = x1 + sum of the terms: x1 -> x1's shape.
    pub fn forward(&self, x1: &Tensor, train: bool) -> Tensor {
        x1 + self.terms_sum(x1, train)
    }

    /// The sum of this layer's terms at x1, without the skip, every term whole.
    pub fn terms_sum(&self, x1: &Tensor, train: bool) -> Tensor {
        self.assigned_sum(x1, train, &Assignment::default())
    }

    /// The sum of this layer's terms at x1 as `assignment` gives them to this device, where it imports
    /// nothing (pieces read linearisations run here).
    pub fn assigned_sum(&self, x1: &Tensor, train: bool, assignment: &Assignment) -> Tensor {
        if self.sharing == PrimalSharing::PerTerm {
            return self
                .terms
                .iter()
                .map(|term| {
                    let primals = self.primal_passes(std::slice::from_ref(term), x1, train, assignment);
                    self.evaluate(term, x1, &primals)
                })
                .reduce(|sum, term| sum + term)
                .expect("at least one term");
        }
        let primals = self.primal_passes(&self.terms, x1, train, assignment);
        self.sum_at(x1, &primals, &[], assignment)
    }

    /// The terms' sum at x1 from the primal passes run here and, for the units `assignment` imports,
    /// the linearisation rows another device sent (`imported`). A piece of a split term is evaluated
    /// on its rows and counts zero elsewhere.
    pub fn sum_at(
        &self,
        x1: &Tensor,
        primals: &[Option<Primal>],
        imported: &[Imported],
        assignment: &Assignment,
    ) -> Tensor {
        let batch = x1.size()[0];
        self.terms
            .iter()
            .enumerate()
            .map(|(t, term)| {
                let span = assignment.span(t);
                if span == Span::WHOLE {
                    return self.evaluate(term, x1, primals);
                }
                let (start, rows) = span.rows(batch);
                let piece = self.evaluate(
                    term,
                    &x1.narrow(0, start, rows),
                    &self.piece_primals(primals, imported, start, rows),
                );
                x1.zeros_like().slice_scatter(&piece, 0, start, start + rows, 1)
                // x1's shape
            })
            .reduce(|sum, term| sum + term)
            .expect("at least one term")
    }

    /// The primal pass at x1 of every unit that `terms` use, once each: its output where a term starts
    /// from it, its linearisation where a term applies its Jacobian or `assignment` exports it. `None`
    /// for units no term uses, and for imported ones.
    pub fn primal_passes(
        &self,
        terms: &[Term],
        x1: &Tensor,
        train: bool,
        assignment: &Assignment,
    ) -> Vec<Option<Primal>> {
        (0..self.units.len())
            .map(|c| {
                let need = Need {
                    output: terms.iter().any(|t| t.vector == Vector::Primal(c)),
                    linearization: (terms.iter().any(|t| t.chain.contains(&c))
                        || assignment.exported.contains(&c))
                        && !assignment.imported.contains(&c),
                };
                (need.output || need.linearization).then(|| self.unit(c).primal(x1, train, need))
            })
            .collect()
    }

    /// One term's value at x1: its vector, then each Jacobian of its chain, innermost first.
    pub fn evaluate(&self, term: &Term, x1: &Tensor, primals: &[Option<Primal>]) -> Tensor {
        let primal = |c: usize| primals[c].as_ref().expect("primal pass of every unit a term uses");
        let vector = match term.vector {
            Vector::Primal(c) => {
                primal(c).output.as_ref().expect("output of a unit a term starts from").shallow_clone()
            }
            Vector::Input => x1.shallow_clone(),
        };
        term.chain.iter().fold(vector, |v, &j| {
            let at = primal(j).linearization.as_ref().expect("linearised: its Jacobian is in a chain");
            self.unit(j).tangent(at, &v)
        })
    }

    /// What a piece on rows [start, start + rows) reads of the primal passes: each unit's linearisation
    /// cut to those rows, from the pass run here or from the rows another device sent. Pieces are
    /// F'_j x1 terms: they need no unit's output.
    fn piece_primals(
        &self,
        primals: &[Option<Primal>],
        imported: &[Imported],
        start: i64,
        rows: i64,
    ) -> Vec<Option<Primal>> {
        let piece = |linearization| Some(Primal { output: None, linearization: Some(linearization) });
        (0..primals.len())
            .map(|c| match imported.iter().find(|i| i.unit == c) {
                Some(i) => piece(
                    self.unit(c).piece_linearization(i.rows.iter().map(Tensor::shallow_clone).collect()),
                ),
                None => {
                    let at = primals[c].as_ref()?.linearization.as_ref()?;
                    piece(self.unit(c).piece_linearization(self.unit(c).rows(at, start, rows)))
                }
            })
            .collect()
    }
}
