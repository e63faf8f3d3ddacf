//! Which device evaluates which term of a warp layer.
//!
//! Every term of a warp layer is a function of the layer's input x1 alone, so the terms can run at the
//! same time on different devices and be summed afterwards (paper Tables 2, 3 and 5). A
//! [`Placement`] is written in the paper's notation: one bracket per device, the terms it evaluates
//! inside, separated by commas:
//!
//! ```text
//! [F1],[F2],[F2'x1]                  WarpNet1, K = 2, three devices (Table 2)
//! [F1],[F2],[F3],[F2'x1,F3'x1]       WarpNet1, K = 3, four devices (Table 3)
//! [F1],[F2,F2'x1],[F3,F3'x1]         WarpNet1, K = 3, three devices (Table 5)
//! [F1,F2,F2'x1]                      WarpNet1, K = 2, one device: the WRN-like layout
//! [F1,F2'x1:0.5],[F2,F2'x1:0.5]      WarpNet1, K = 2, two devices, F2'x1 split by batch
//! ```
//!
//! Grammar (whitespace is allowed around every bracket, comma and term):
//!
//! ```text
//! placement := group ("," group)*
//! group     := "[" entry ("," entry)* "]"
//! entry     := term (":" share)?            share: a fraction of the batch (runtime/placement/shares.rs)
//! term      := (F<n> "'")* (F<n> | x1)      n >= 1; ' may also be written as the prime ′
//! ```
//!
//! A term is read right to left: `F3'F2'F1` is F'_3(x1) F'_2(x1) F_1(x1), so its units must increase
//! strictly from the innermost (rightmost) to the outermost (leftmost). Each term of the chosen variant
//! (model/terms.rs) must be on exactly one device, whole or in pieces whose shares sum to 1.

mod notation;
pub mod shares;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use crate::bail_input;
use crate::model::terms::{self, Term, Vector};
use crate::model::warp::Span;
use crate::model::Variant;
pub use notation::parse_term;
use notation::{parse_groups, CLOSE, FLAG, OPEN, SEPARATOR};
pub use shares::Entry;
use shares::{Piece, Split};

/// The terms of one warp layer, grouped by the device that evaluates them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Placement {
    /// One group per device, in the order written; within a group, its terms in the order written (a
    /// split term in every group that has a piece of it).
    pub groups: Vec<Vec<Term>>,
    /// The terms split by batch, with each piece's device and share.
    pub splits: Vec<Split>,
}

impl Placement {
    /// Parses a placement (grammar in the module docs) and checks it against the layer's `terms`
    /// (`terms::build` of its variant): every term on exactly one device, no other term anywhere.
    /// Every failure is an input error whose one-line message starts with `--placement:`.
    pub fn parse(text: &str, terms: &[Term]) -> anyhow::Result<Placement> {
        let placement: Placement = text.parse()?;
        placement.check(terms)?;
        Ok(placement)
    }

    /// The placement of `groups`, one per device, each entry a term and its share of the batch if it
    /// is a piece; the shares are checked (`shares::collect`), not the terms against a layer.
    pub fn from_entries(groups: Vec<Vec<Entry>>) -> anyhow::Result<Placement> {
        let (groups, splits) = shares::collect(groups)?;
        Ok(Placement { groups, splits })
    }

    /// The paper's assignment: one device for each first-order term F_i, and one more device for all
    /// the higher-order terms, in the order of `terms::build` (`[F1],[F2],[F3],[F2'x1,F3'x1]` for
    /// WarpNet1 with K = 3). Without higher-order terms (K = 1, or max order 1): `[F1]` .. `[FK]`.
    pub fn default_for(variant: Variant, k: usize, max_order: Option<usize>) -> Placement {
        let (first_order, higher_order): (Vec<Term>, Vec<Term>) =
            terms::build(variant, k, max_order).into_iter().partition(|term| term.chain.is_empty());
        let mut groups: Vec<Vec<Term>> = first_order.into_iter().map(|term| vec![term]).collect();
        if !higher_order.is_empty() {
            groups.push(higher_order);
        }
        Placement { groups, splits: Vec::new() }
    }

    /// Every term on one device, in the given order: the WRN-like layout `[F1,F2,F2'x1]`.
    pub fn single_device(terms: &[Term]) -> Placement {
        Placement { groups: vec![terms.to_vec()], splits: Vec::new() }
    }

    /// The split of `term`, if it is split by batch.
    pub fn split_of(&self, term: &Term) -> Option<&Split> {
        self.splits.iter().find(|s| &s.term == term)
    }

    /// The rows `device` evaluates `term` on: the whole batch, or its piece's.
    pub fn span(&self, device: usize, term: &Term) -> Span {
        self.split_of(term).and_then(|s| s.span(device)).unwrap_or(Span::WHOLE)
    }

    /// The device that evaluates F_c whole (every placement has one: first-order terms are not split).
    pub fn primal_device(&self, c: usize) -> usize {
        self.groups.iter().position(|g| g.contains(&Term::primal(c))).expect("F_c is placed")
    }

    /// How many devices the placement uses.
    pub fn devices(&self) -> usize {
        self.groups.len()
    }

    /// The units (0-based) whose weights device `device` must hold: the units of its first-order terms
    /// F_c and of every Jacobian its terms apply (`F2'x1` reads unit 1, `F3'F2'F1` units 1 and 2). A
    /// term's vector F_i(x1) that another device evaluates is sent from there
    /// ([`Placement::imported_outputs`]), so unit i is not held for it.
    pub fn units_on(&self, device: usize) -> BTreeSet<usize> {
        let primal = self.groups[device].iter().filter(|t| t.chain.is_empty()).flat_map(Term::units);
        let chains = self.groups[device].iter().flat_map(|t| t.chain.iter().copied());
        primal.chain(chains).collect()
    }

    /// The units whose output F_i(x1) device `device`'s terms start from but another device evaluates
    /// (the device of the term F_i): it receives F_i(x1) from there rather than computing it again.
    pub fn imported_outputs(&self, device: usize) -> BTreeSet<usize> {
        let group = &self.groups[device];
        let starts = group.iter().filter_map(|t| match t.vector {
            Vector::Primal(i) if !t.chain.is_empty() => Some(i),
            _ => None,
        });
        starts.filter(|&i| !group.contains(&Term::primal(i))).collect()
    }

    /// The units held by more than one device, ascending. Each device computes a gradient for its copy
    /// of such a unit; the copies' gradients must be summed across devices before the update.
    pub fn replicated_units(&self) -> Vec<usize> {
        let mut holders: BTreeMap<usize, usize> = BTreeMap::new();
        for device in 0..self.devices() {
            for unit in self.units_on(device) {
                *holders.entry(unit).or_default() += 1;
            }
        }
        holders.into_iter().filter(|&(_, count)| count > 1).map(|(unit, _)| unit).collect()
    }

    /// Checks the placement against a layer's `terms` (`terms::build` of its variant): every term on
    /// exactly one device, and nothing else; the error is one line starting with `--placement:`.
    pub fn check(&self, terms: &[Term]) -> anyhow::Result<()> {
        let mut seen: HashSet<&Term> = HashSet::new();
        for term in self.groups.iter().flatten() {
            self.validate_entry(terms, term, &mut seen)?;
        }
        let missing: Vec<&Term> = terms.iter().filter(|term| !seen.contains(term)).collect();
        match missing.as_slice() {
            [] => Ok(()),
            [term] => bail_input!("{FLAG}: {term} is on no device"),
            several => bail_input!("{FLAG}: {} are on no device", join(several, ", ")),
        }
    }

    /// One term as placed: a term of the layer, and not placed twice (a split term's pieces are
    /// checked by `shares::collect`).
    fn validate_entry<'a>(
        &self,
        terms: &[Term],
        term: &'a Term,
        seen: &mut HashSet<&'a Term>,
    ) -> anyhow::Result<()> {
        if !terms.contains(term) {
            bail_input!("{FLAG}: {term} is not a term of this warp layer (its terms: {})", join(terms, ", "));
        }
        if !seen.insert(term) && self.split_of(term).is_none() {
            bail_input!("{FLAG}: {term} appears twice");
        }
        Ok(())
    }
}

/// The notation, syntax and shares checked (not the terms against a layer: [`Placement::check`]).
impl std::str::FromStr for Placement {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Placement> {
        Placement::from_entries(parse_groups(text)?)
    }
}

/// The canonical notation, without spaces: `[F1],[F2],[F2'x1]`.
impl fmt::Display for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (device, group) in self.groups.iter().enumerate() {
            if device > 0 {
                write!(f, "{SEPARATOR}")?;
            }
            let entries: Vec<String> = group
                .iter()
                .map(|term| match self.split_of(term).and_then(|s| s.pieces.iter().find(|p| p.0 == device)) {
                    Some(&(_, share)) => Piece(term, share).to_string(),
                    None => term.to_string(),
                })
                .collect();
            write!(f, "{OPEN}{}{CLOSE}", entries.join(&SEPARATOR.to_string()))?;
        }
        Ok(())
    }
}

/// The terms in the paper's notation, separated by `separator`.
fn join<T: fmt::Display>(terms: &[T], separator: &str) -> String {
    terms.iter().map(ToString::to_string).collect::<Vec<_>>().join(separator)
}
