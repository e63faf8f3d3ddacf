//! The warp operator (paper eq. 3 and 5): a layer over K consecutive units evaluated from its input x1
//! alone, as x1 plus a list of terms (model/terms.rs). This is the one place any term list is evaluated,
//! for any kind of unit (model/unit.rs). The list stays the paper's; the evaluation factors it by the
//! linearity of the Jacobians (`terms::factor`: terms sharing their outermost Jacobian F'_j share one
//! tangent pass, F'_j of the sum of their inner parts), so exact and WarpNet2 layers cost K - 1 tangent
//! passes, not one per term. A unit whose map is not linear in v (the released code's) is evaluated
//! term by term. K = 1 with the single term F1 is an ordinary residual unit x1 + F1(x1): the WRN is
//! this same layer.

use tch::Tensor;

use super::terms::{factor, Factored, Term, Vector};
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
/// the layer's term order), the units whose linearisations it receives from, or sends to, another
/// device's pieces, and the units whose outputs F_i(x1) it receives from, or sends to, another
/// device's terms. A layer on one device evaluates every term whole and exchanges nothing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Assignment {
    /// Per term; empty: every term whole.
    pub spans: Vec<Span>,
    /// Units whose linearisation rows another device sends: no linearisation pass runs here for them.
    pub imported: Vec<usize>,
    /// Units whose linearisation rows this device sends to another's pieces: linearised here even
    /// where no term here applies their Jacobian.
    pub exported: Vec<usize>,
    /// Units whose output another device sends: no output is computed here for them.
    pub imported_outputs: Vec<usize>,
    /// Units whose output this device sends to another's terms.
    pub exported_outputs: Vec<usize>,
}

impl Assignment {
    /// The rows term `t` is evaluated on.
    fn span(&self, t: usize) -> Span {
        self.spans.get(t).copied().unwrap_or(Span::WHOLE)
    }
}

/// What another device sent for this device's terms.
#[derive(Debug)]
pub enum Imported {
    /// Rows of unit `unit`'s linearisation, for a piece of F'_unit x1 (`Unit::rows`).
    Rows { unit: usize, rows: Vec<Tensor> },
    /// F_unit(x1), for terms that start from it.
    Output { unit: usize, value: Tensor },
}

impl Imported {
    /// The linearisation rows of unit `c`, if this is them.
    fn rows_of(&self, c: usize) -> Option<&[Tensor]> {
        match self {
            Imported::Rows { unit, rows } if *unit == c => Some(rows),
            _ => None,
        }
    }
}

/// Puts the outputs another device sent (`imported`) into `primals` (indexed by unit), as if the
/// passes had computed them here: the terms then read them as their vectors.
pub fn receive_outputs(primals: &mut [Option<Primal>], imported: &[Imported]) {
    for import in imported {
        if let Imported::Output { unit, value } = import {
            let slot = primals[*unit].get_or_insert(Primal { output: None, linearization: None });
            slot.output = Some(value.shallow_clone());
        }
    }
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
        // A term's vector F_i(x1) may come from another device (`Imported::Output`); its Jacobians and
        // a first-order term's unit are computed here.
        let computed =
            |t: &Term| t.chain.iter().all(|&j| held(j)) && (!t.chain.is_empty() || t.units().all(held));
        assert!(terms.iter().all(computed), "every unit a term computes with is held");
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
    /// the linearisation rows another device sent (`imported`): the whole terms factored, then each
    /// piece of a split term on its rows (zero elsewhere).
    pub fn sum_at(
        &self,
        x1: &Tensor,
        primals: &[Option<Primal>],
        imported: &[Imported],
        assignment: &Assignment,
    ) -> Tensor {
        let batch = x1.size()[0];
        let is_whole = |t: usize| assignment.span(t) == Span::WHOLE;
        let whole: Vec<Term> =
            (0..self.terms.len()).filter(|&t| is_whole(t)).map(|t| self.terms[t].clone()).collect();
        let pieces = self.terms.iter().enumerate().filter(|&(t, _)| !is_whole(t));
        let whole_sum = (!whole.is_empty()).then(|| self.whole_sum(&whole, x1, primals));
        let piece_sums = pieces.map(|(t, term)| {
            let (start, rows) = assignment.span(t).rows(batch);
            let piece = self.evaluate(
                term,
                &x1.narrow(0, start, rows),
                &self.piece_primals(primals, imported, start, rows),
            );
            x1.zeros_like().slice_scatter(&piece, 0, start, start + rows, 1) // x1's shape
        });
        whole_sum.into_iter().chain(piece_sums).reduce(|sum, term| sum + term).expect("at least one term")
    }

    /// The sum of `terms` at x1, factored where every held unit's tangent is linear in v, else term by
    /// term.
    fn whole_sum(&self, terms: &[Term], x1: &Tensor, primals: &[Option<Primal>]) -> Tensor {
        if self.held_units().all(|(_, unit)| unit.tangent_is_linear()) {
            return self.evaluate_factored(&factor(terms), x1, primals);
        }
        terms.iter().map(|t| self.evaluate(t, x1, primals)).reduce(|sum, term| sum + term).expect("a term")
    }

    /// A factored sum at x1: every node (inner sums first) once, every F'_j application once.
    pub fn evaluate_factored(&self, factored: &Factored, x1: &Tensor, primals: &[Option<Primal>]) -> Tensor {
        let mut values: Vec<Tensor> = Vec::with_capacity(factored.nodes.len());
        let mut applied: std::collections::HashMap<(usize, usize), Tensor> = Default::default();
        for node in &factored.nodes {
            let mut addends: Vec<Tensor> =
                node.vectors.iter().map(|&v| self.vector(v, x1, primals)).collect();
            for &(j, inner) in &node.jacobians {
                let value = applied.entry((j, inner)).or_insert_with(|| {
                    let at = primals[j].as_ref().and_then(|p| p.linearization.as_ref());
                    self.unit(j).tangent(at.expect("linearised: its Jacobian is in a chain"), &values[inner])
                });
                addends.push(value.shallow_clone());
            }
            values.push(addends.into_iter().reduce(|sum, addend| sum + addend).expect("a non-empty sum"));
        }
        values.pop().expect("the root")
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
                    output: (terms.iter().any(|t| t.vector == Vector::Primal(c))
                        && !assignment.imported_outputs.contains(&c))
                        || assignment.exported_outputs.contains(&c),
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
        term.chain.iter().fold(self.vector(term.vector, x1, primals), |v, &j| {
            let at = primals[j].as_ref().and_then(|p| p.linearization.as_ref());
            self.unit(j).tangent(at.expect("linearised: its Jacobian is in a chain"), &v)
        })
    }

    /// A term's vector at x1: F_c(x1) from the primal pass of unit c, or x1 itself.
    fn vector(&self, vector: Vector, x1: &Tensor, primals: &[Option<Primal>]) -> Tensor {
        match vector {
            Vector::Primal(c) => {
                let primal = primals[c].as_ref().expect("primal pass of every unit a term uses");
                primal.output.as_ref().expect("output of a unit a term starts from").shallow_clone()
            }
            Vector::Input => x1.shallow_clone(),
        }
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
            .map(|c| match imported.iter().find_map(|i| i.rows_of(c)) {
                Some(rows) => {
                    piece(self.unit(c).piece_linearization(rows.iter().map(Tensor::shallow_clone).collect()))
                }
                None => {
                    let at = primals[c].as_ref()?.linearization.as_ref()?;
                    piece(self.unit(c).piece_linearization(self.unit(c).rows(at, start, rows)))
                }
            })
            .collect()
    }
}
