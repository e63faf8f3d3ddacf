//! Terms split by batch: a placement may give shares of one term's batch to several devices, so that
//! devices of one size carry equal work (`[F1,F2'x1:0.5],[F2,F2'x1:0.5]`: F1, F2 and F2'x1 cost about
//! one unit of work each, so each of two devices carries 1.5).
//!
//! Which terms can be split, and what it costs: a term is a function of x1 row by row except through
//! the primal passes at x1, whose training-mode BatchNorm statistics couple the whole batch. F'_j x1
//! with BatchNorm removed from F' (derivative-BN `none`, the paper's) reads its primal pass only
//! through unit j's ReLU mask, which is per element: a piece on rows [r0, r1) needs the mask's rows
//! [r0, r1) of the whole-batch pass, and nothing else. The device that evaluates F_j runs that pass
//! anyway; it sends those rows (booleans, one byte per element: B_piece x C x H x W bytes per warp
//! layer, moved without a copy between threads) and the device of the piece skips unit j's mask pass.
//! The released map (`--variant released`) reads no primal pass at all, so its pieces need nothing.
//! A first-order term F_i, or any term under `bn=frozen` or `bn=exact` (whose BN tangents carry the
//! batch statistics and their derivatives into the backward pass), is not split: splitting it would
//! need the statistics exchanged forward and backward, in every BatchNorm.
//!
//! Notation: a piece is its term followed by `:share`, a fraction of the batch in (0, 1); the pieces of
//! one term sum to 1 and cover the batch in the order of their devices (rows rounded to the nearest).

use std::fmt;

use super::Placement;
use crate::bail_input;
use crate::model::terms::{Term, Vector};
use crate::model::warp::{Jacobian, Span};
use crate::model::DerivativeBn;

/// The flag whose value a placement is.
const FLAG: &str = "--placement";
/// Bytes of one ReLU mask element (a bool tensor), as the exchange sends it.
pub const MASK_BYTES: u64 = 1;
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

    /// The unit whose ReLU mask a piece reads: j of F'_j x1.
    pub fn mask_unit(&self) -> usize {
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
                     need only unit j's ReLU mask); place {term} whole"
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

/// Checks that the network's Jacobians let its pieces be evaluated apart (module docs).
pub fn check_jacobian(splits: &[Split], jacobian: Jacobian) -> anyhow::Result<()> {
    match (splits.first(), jacobian) {
        (None, _) | (_, Jacobian::Released) | (_, Jacobian::Tangent(DerivativeBn::None)) => Ok(()),
        (Some(split), Jacobian::Tangent(mode)) => bail_input!(
            "{FLAG}: {} is split by batch, which needs derivative BN `none` (the paper's); under `{}` \
             its BatchNorm statistics couple the whole batch",
            split.term,
            mode
        ),
    }
}

/// The rows of unit `unit`'s ReLU mask that device `from` (which evaluates F_unit whole) sends device
/// `to` (which holds a piece of F'_unit x1 on rows `span`) in every training forward.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskExchange {
    pub unit: usize,
    pub from: usize,
    pub to: usize,
    pub span: Span,
}

/// Every mask exchange of a warp layer's forward: none for the released map, which reads no mask.
pub fn mask_exchanges(placement: &Placement, jacobian: Jacobian) -> Vec<MaskExchange> {
    if jacobian == Jacobian::Released {
        return Vec::new();
    }
    let mut exchanges = Vec::new();
    for split in &placement.splits {
        let (unit, from) = (split.mask_unit(), placement.primal_device(split.mask_unit()));
        for &(to, _) in split.pieces.iter().filter(|&&(d, _)| d != from) {
            exchanges.push(MaskExchange { unit, from, to, span: split.span(to).expect("a piece on `to`") });
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
