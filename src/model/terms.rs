//! The term algebra of a warp layer (paper eq. 3 and 5): which units, in which order, applied to which
//! vector. Each variant is one function that builds the list; model/warp.rs evaluates any list.
//!
//! Units are 0-based here and 1-based in the paper's notation that `Display` prints.

use std::fmt;

use super::config::Variant;

/// The vector a term's Jacobian chain acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Vector {
    /// F_c(x1), the primal output of unit c.
    Primal(usize),
    /// x1, the layer's input (WarpNet1's F'_j x1).
    Input,
}

/// One term: F'_{ck}(x1) ... F'_{c2}(x1) applied to `vector`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Term {
    pub vector: Vector,
    /// Units whose Jacobians at x1 are applied, innermost first.
    pub chain: Vec<usize>,
}

impl Term {
    /// The first-order term F_c(x1).
    pub fn primal(unit: usize) -> Self {
        Term { vector: Vector::Primal(unit), chain: Vec::new() }
    }

    /// The term of an ordered subset {c1 < c2 < ... < ck}: F'_{ck} ... F'_{c2} F_{c1}.
    pub fn of_subset(units: &[usize]) -> Self {
        Term { vector: Vector::Primal(units[0]), chain: units[1..].to_vec() }
    }

    /// Units whose Jacobians or outputs this term uses (its order k for a primal vector).
    pub fn order(&self) -> usize {
        self.chain.len() + usize::from(matches!(self.vector, Vector::Primal(_)))
    }

    /// Every unit whose weights this term reads.
    pub fn units(&self) -> impl Iterator<Item = usize> + '_ {
        let vector_unit = match self.vector {
            Vector::Primal(c) => Some(c),
            Vector::Input => None,
        };
        vector_unit.into_iter().chain(self.chain.iter().copied())
    }
}

/// The paper's notation, outermost Jacobian first: `F1`, `F2'F1`, `F3'F2'F1`, `F2'x1`.
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

/// "x1 + F1 + F2 + F2'F1": one warp layer's output in the paper's notation.
pub fn notation(terms: &[Term]) -> String {
    let mut out = String::from("x1");
    for term in terms {
        out.push_str(&format!(" + {term}"));
    }
    out
}

/// The term list of a variant over K units (`max_order` truncates `exact`).
pub fn build(variant: Variant, k: usize, max_order: Option<usize>) -> Vec<Term> {
    match variant {
        Variant::Exact => exact(k, max_order.unwrap_or(k)),
        Variant::Warpnet2 => exact(k, 2),
        Variant::Warpnet1 | Variant::Released => warpnet1(k),
    }
}

/// Eq. 3: one term per non-empty subset of {1..K} with at most `max_order` units, ordered by size and
/// then lexicographically (F1, F2, F3, F2'F1, F3'F1, F3'F2, F3'F2'F1). C(K, k) terms of order k.
pub fn exact(k: usize, max_order: usize) -> Vec<Term> {
    let mut subsets: Vec<Vec<usize>> = (1u64..1 << k)
        .map(|bits| (0..k).filter(|&u| bits >> u & 1 == 1).collect::<Vec<usize>>())
        .filter(|units| units.len() <= max_order)
        .collect();
    subsets.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    subsets.iter().map(|units| Term::of_subset(units)).collect()
}

/// WarpNet1: F_i for every i, and F'_j x1 once for each j >= 2 (0-based j >= 1). The paper replaces every
/// F'_j F_i by F'_j x1 (section 4); the terms F'_j F_i for several i all become the same F'_j x1, and the
/// paper's assignments list each once ([F2'x1] for K = 2, [F2'x1, F3'x1] for K = 3), so each appears once.
pub fn warpnet1(k: usize) -> Vec<Term> {
    let first_order = (0..k).map(Term::primal);
    let jacobians_of_x1 = (1..k).map(|j| Term { vector: Vector::Input, chain: vec![j] });
    first_order.chain(jacobians_of_x1).collect()
}
