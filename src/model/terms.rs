//! The term algebra of a warp layer (paper eq. 3 and 5): which units, in which order, applied to which
//! vector. Each variant is one function that builds the list; model/warp.rs evaluates any list.
//!
//! Units are 0-based here and 1-based in the paper's notation that `Display` prints.

use std::fmt;

use super::config::Variant;

/// The vector a term's Jacobian chain acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Vector {
    /// F_c(x1), the primal output of unit c.
    Primal(usize),
    /// x1, the layer's input (WarpNet1's F'_j x1).
    Input,
}

/// One term: F'_{ck}(x1) ... F'_{c2}(x1) applied to `vector`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
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

/// A sum of terms factored by the linearity of the Jacobians (Horner's rule): the terms whose
/// outermost Jacobian is F'_j share one tangent pass, F'_j applied to the sum of their inner parts,
/// and an inner sum that several Jacobians (or several levels) need is one node, evaluated once.
/// Exact K: v1 = F1, v_j = F_j + F'_j(v1 + ... + v_{j-1}), K - 1 tangent passes; WarpNet2 K: F'_j applied
/// once to F1 + ... + F_{j-1}.
#[derive(Debug, Clone, PartialEq)]
pub struct Factored {
    /// Every distinct sum, each node's inner sums before it; the last is the whole sum.
    pub nodes: Vec<Sum>,
}

/// One node of a [`Factored`] sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Sum {
    /// The terms it sums, in the order given.
    pub terms: Vec<Term>,
    /// The terms without a Jacobian: their vectors, added as they are.
    pub vectors: Vec<Vector>,
    /// (j, node): F'_j applied to the sum `nodes[node]`, by increasing j.
    pub jacobians: Vec<(usize, usize)>,
}

impl Factored {
    /// The node of the whole sum.
    pub fn root(&self) -> usize {
        self.nodes.len() - 1
    }

    /// Tangent passes its evaluation runs: distinct (j, node) applications reachable from the root.
    pub fn tangent_passes(&self) -> usize {
        let mut seen = std::collections::BTreeSet::new();
        let mut stack = vec![self.root()];
        while let Some(node) = stack.pop() {
            for &application in &self.nodes[node].jacobians {
                if seen.insert(application) {
                    stack.push(application.1);
                }
            }
        }
        seen.len()
    }
}

/// `terms` factored (an empty list is the empty sum).
pub fn factor(terms: &[Term]) -> Factored {
    let mut factored = Factored { nodes: Vec::new() };
    let mut known: std::collections::HashMap<Vec<Term>, usize> = std::collections::HashMap::new();
    node_of(terms.to_vec(), &mut factored, &mut known);
    factored
}

/// The node summing `terms`, made (inner sums first) unless a node of the same terms exists.
fn node_of(
    terms: Vec<Term>,
    factored: &mut Factored,
    known: &mut std::collections::HashMap<Vec<Term>, usize>,
) -> usize {
    let mut key = terms.clone();
    key.sort();
    if let Some(&node) = known.get(&key) {
        return node;
    }
    let vectors = terms.iter().filter(|t| t.chain.is_empty()).map(|t| t.vector).collect();
    let mut inner: std::collections::BTreeMap<usize, Vec<Term>> = std::collections::BTreeMap::new();
    for term in terms.iter().filter(|t| !t.chain.is_empty()) {
        let (&outer, rest) = term.chain.split_last().expect("a chain");
        inner.entry(outer).or_default().push(Term { vector: term.vector, chain: rest.to_vec() });
    }
    let jacobians = inner.into_iter().map(|(j, inner)| (j, node_of(inner, factored, known))).collect();
    factored.nodes.push(Sum { terms, vectors, jacobians });
    known.insert(key, factored.nodes.len() - 1);
    factored.nodes.len() - 1
}

/// "x1 + F1 + F2 + F3 + F2'F1 + F3'(F1 + F2)": a warp layer's output as the factored sum evaluates it
/// (a Jacobian of a single term is printed as that term).
pub fn factored_notation(terms: &[Term]) -> String {
    let factored = factor(terms);
    let mut out = String::from("x1");
    for part in parts(&factored, factored.root()) {
        out.push_str(&format!(" + {part}"));
    }
    out
}

/// The addends of node `node`, each in the notation.
fn parts(factored: &Factored, node: usize) -> Vec<String> {
    let sum = &factored.nodes[node];
    let vectors = sum.terms.iter().filter(|t| t.chain.is_empty()).map(ToString::to_string);
    let jacobians = sum.jacobians.iter().map(|&(j, inner)| match factored.nodes[inner].terms.as_slice() {
        [single] => {
            Term { vector: single.vector, chain: [single.chain.as_slice(), &[j]].concat() }.to_string()
        }
        _ => format!("F{}'({})", j + 1, parts(factored, inner).join(" + ")),
    });
    vectors.chain(jacobians).collect()
}
