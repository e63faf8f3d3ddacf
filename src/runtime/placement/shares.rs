//! Terms split by batch: a placement may give shares of one term's batch to several devices, so that
//! devices of one size carry equal work (`[F1,F2'x1:0.5],[F2,F2'x1:0.5]`: F1, F2 and F2'x1 cost about
//! one unit of work each, so each of two devices carries 1.5).
//!
//! Which terms can be split, and what it costs: a term is a function of x1 row by row except through
//! the primal passes at x1, whose normalisation statistics (the Table 1 unit's training-mode
//! BatchNorm) may couple the whole batch. F'_j x1 reads its primal pass only through unit j's
//! linearisation; where the architecture says its rows stand apart (`Architecture::pieces_apart`:
//! for the Table 1 unit, with BatchNorm removed from F' it is the ReLU mask, per element), a piece on
//! rows [r0, r1) needs those rows of the whole-batch linearisation, and nothing else. The device that
//! evaluates F_j runs that pass anyway; it sends those rows (`Unit::rows`: for the Table 1 unit, mask
//! booleans, one byte per element: B_piece x C x H x W bytes per warp layer, moved without a copy
//! between threads) and the device of the piece skips unit j's pass. A tangent that reads no primal
//! pass (the released map, `--variant released`) needs nothing. A first-order term F_i is never split,
//! nor any term where the architecture keeps pieces together (the Table 1 unit under `bn=frozen` or
//! `bn=exact`, whose BN tangents carry the batch statistics and their derivatives into the backward
//! pass: splitting would need them exchanged forward and backward, in every BatchNorm).
//!
//! Notation: a piece is its term followed by `:share`, a fraction of the batch in (0, 1); the pieces of
//! one term sum to 1 and cover the batch in the order of their devices (rows rounded to the nearest).

use std::fmt;

use super::notation::FLAG;
use super::Placement;
use crate::bail_input;
use crate::model::terms::{Term, Vector};
use crate::model::warp::Span;
use crate::model::Architecture;

/// Shares of one term must sum to 1 within this (they are written as decimals).
const SUM_TOLERANCE: f64 = 1e-6;

/// A term as written in a device's bracket, with its share of the batch if written with one.
pub type Entry = (Term, Option<f64>);

/// One term whose batch is shared among devices.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Split {
    pub term: Term,
    /// (device, share of the batch), in device order; the shares sum to 1.
    pub pieces: Vec<(usize, f64)>,
}

impl Split {
    /// The rows [from, to) of the batch, as shares, that `device`'s piece covers.
    pub fn span(&self, device: usize) -> Option<Span> {
        let mut from = 0.0;
        for (i, &(d, share)) in self.pieces.iter().enumerate() {
            let last = i + 1 == self.pieces.len();
            let to = if last { 1.0 } else { from + share };
            if d == device {
                return Some(Span { from, to });
            }
            from = to;
        }
        None
    }

    /// The unit whose linearisation a piece reads: j of F'_j x1.
    pub fn read_unit(&self) -> usize {
        self.term.chain[0]
    }
}

/// Collects the pieces written in `groups` (each entry a term and its share, if written with one) into
/// the splits, checking that every share is in (0, 1), that a term written with a share carries one
/// wherever it appears and at most once per device, that its shares sum to 1, and that only F'_j x1
/// terms are split. Returns the groups' terms and the splits.
pub fn collect(groups: Vec<Vec<Entry>>) -> anyhow::Result<(Vec<Vec<Term>>, Vec<Split>)> {
    let mut splits: Vec<Split> = Vec::new();
    for (device, group) in groups.iter().enumerate() {
        for (term, share) in group {
            let Some(share) = *share else { continue };
            if !(share > 0.0 && share < 1.0) {
                bail_input!("{FLAG}: {term}:{share}: a share is a fraction of the batch in (0, 1)");
            }
            if term.vector != Vector::Input {
                bail_input!(
                    "{FLAG}: {term}:{share}: only the F'_j x1 terms can be split by batch (their pieces \
                     need only unit j's linearisation); place {term} whole"
                );
            }
            match splits.iter_mut().find(|s| &s.term == term) {
                Some(split) if split.pieces.iter().any(|&(d, _)| d == device) => {
                    bail_input!("{FLAG}: {term} appears twice on device {}", device + 1)
                }
                Some(split) => split.pieces.push((device, share)),
                None => splits.push(Split { term: term.clone(), pieces: vec![(device, share)] }),
            }
        }
    }
    for split in &splits {
        let whole = groups.iter().flatten().any(|(t, share)| t == &split.term && share.is_none());
        if whole {
            bail_input!(
                "{FLAG}: {} is written both whole and with a share; give it a share everywhere",
                split.term
            );
        }
        let total: f64 = split.pieces.iter().map(|&(_, s)| s).sum();
        if (total - 1.0).abs() > SUM_TOLERANCE || split.pieces.len() < 2 {
            bail_input!("{FLAG}: the shares of {} sum to {total}, not 1", split.term);
        }
    }
    let terms = groups.into_iter().map(|g| g.into_iter().map(|(t, _)| t).collect()).collect();
    Ok((terms, splits))
}

/// Checks that `network`'s tangents let its pieces be evaluated apart (module docs).
pub fn check_pieces(splits: &[Split], network: &dyn Architecture) -> anyhow::Result<()> {
    match (splits.first(), network.pieces_apart()) {
        (None, _) | (_, Ok(())) => Ok(()),
        (Some(split), Err(needs)) => {
            bail_input!("{FLAG}: {} is split by batch, which needs {needs}", split.term)
        }
    }
}

/// What one device sends another in every training forward, so that the receiver's terms read what
/// the sender computed: the rows of unit `unit`'s linearisation that a piece of F'_unit x1 reads, or the
/// output F_unit(x1) that a term of the receiver starts from.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    pub unit: usize,
    /// The device that evaluates F_unit whole.
    pub from: usize,
    pub to: usize,
    pub what: Exchanged,
}

/// What an [`Exchange`] carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Exchanged {
    /// The linearisation's rows `span` (the receiver's piece's rows).
    Rows(Span),
    /// F_unit(x1), whole.
    Output,
}

/// Every exchange of a warp layer's forward: the outputs terms start from on another device than
/// theirs, and the linearisation rows of pieces (none where a tangent reads no primal pass,
/// `reads_primal` false: the released map).
pub fn exchanges(placement: &Placement, reads_primal: bool) -> Vec<Exchange> {
    let mut exchanges = Vec::new();
    for to in 0..placement.devices() {
        for unit in placement.imported_outputs(to) {
            let from = placement.primal_device(unit);
            exchanges.push(Exchange { unit, from, to, what: Exchanged::Output });
        }
    }
    if !reads_primal {
        return exchanges;
    }
    for split in &placement.splits {
        let (unit, from) = (split.read_unit(), placement.primal_device(split.read_unit()));
        for &(to, _) in split.pieces.iter().filter(|&&(d, _)| d != from) {
            let span = split.span(to).expect("a piece on `to`");
            exchanges.push(Exchange { unit, from, to, what: Exchanged::Rows(span) });
        }
    }
    exchanges
}

/// `F2'x1:0.45`: a piece in the notation.
pub struct Piece<'a>(pub &'a Term, pub f64);

impl fmt::Display for Piece<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0, self.1)
    }
}
