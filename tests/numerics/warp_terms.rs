//! The term algebra of model/terms.rs against independent constructions: Pascal's triangle for the
//! binomial counts, and the paper's index-reduction recursion (Appendix A.1) for the term sets.

use std::collections::HashSet;

use warpnet::model::terms::{self, notation, Term, Vector};
use warpnet::model::Variant;

const VARIANTS: [Variant; 4] = [Variant::Exact, Variant::Warpnet1, Variant::Warpnet2, Variant::Released];

/// C(n, k) by Pascal's rule (the library's, itself checked against subset enumeration in
/// tests/numerics/analysis.rs).
fn binomial(n: usize, k: usize) -> usize {
    warpnet::analysis::paths::binomial(n, k) as usize
}

/// Appendix A.1: expressing x_{K+2} through x_1 adds, to the terms of K units, the new unit's F_{K+1}
/// alone and F'_{K+1} applied to each old term (first-order Taylor expansion of F_{K+1}(x_{K+1})).
fn terms_by_recursion(k: usize) -> HashSet<Term> {
    let mut set = HashSet::new();
    for new_unit in 0..k {
        let extended: Vec<Term> = set
            .iter()
            .map(|t: &Term| {
                let mut chain = t.chain.clone();
                chain.push(new_unit);
                Term { vector: t.vector, chain }
            })
            .collect();
        set.insert(Term::primal(new_unit));
        set.extend(extended);
    }
    set
}

#[test]
fn k1_is_one_residual_unit_for_every_variant() {
    for variant in VARIANTS {
        assert_eq!(terms::build(variant, 1, None), vec![Term::primal(0)], "{variant:?}");
    }
    assert_eq!(notation(&terms::build(Variant::Exact, 1, None)), "x1 + F1");
}

#[test]
fn exact_has_binomial_counts_and_the_recursions_terms() {
    for k in 1..=6 {
        let list = terms::build(Variant::Exact, k, None);
        assert_eq!(list.len(), (1 << k) - 1, "2^K - 1 terms for K = {k}");
        for order in 1..=k {
            let count = list.iter().filter(|t| t.order() == order).count();
            assert_eq!(count, binomial(k, order), "C({k}, {order})");
        }
        let set: HashSet<Term> = list.iter().cloned().collect();
        assert_eq!(set.len(), list.len(), "no term twice");
        assert_eq!(set, terms_by_recursion(k), "K = {k}");
        for term in &list {
            let units: Vec<usize> = term.units().collect();
            assert!(units.windows(2).all(|w| w[0] < w[1]), "ordered subset c1 < c2 < ...: {term}");
        }
    }
}

#[test]
fn max_order_truncates_exact() {
    for k in 1..=6 {
        for m in 1..=k {
            let list = terms::build(Variant::Exact, k, Some(m));
            let expected: usize = (1..=m).map(|order| binomial(k, order)).sum();
            assert_eq!(list.len(), expected, "K = {k}, M = {m}");
            assert!(list.iter().all(|t| t.order() <= m));
        }
    }
}

#[test]
fn paper_notation_of_each_variant() {
    // Eq. 5 and Appendix A eq. 9.
    assert_eq!(notation(&terms::build(Variant::Exact, 2, None)), "x1 + F1 + F2 + F2'F1");
    assert_eq!(
        notation(&terms::build(Variant::Exact, 3, None)),
        "x1 + F1 + F2 + F3 + F2'F1 + F3'F1 + F3'F2 + F3'F2'F1"
    );
    // WarpNet2 for K = 3 drops F3'F2'F1 (section 4).
    assert_eq!(
        notation(&terms::build(Variant::Warpnet2, 3, None)),
        "x1 + F1 + F2 + F3 + F2'F1 + F3'F1 + F3'F2"
    );
    // WarpNet1: Tables 2-3 list [F2'x1] and [F2'x1, F3'x1]: each F'_j x1 once.
    assert_eq!(notation(&terms::build(Variant::Warpnet1, 2, None)), "x1 + F1 + F2 + F2'x1");
    assert_eq!(notation(&terms::build(Variant::Warpnet1, 3, None)), "x1 + F1 + F2 + F3 + F2'x1 + F3'x1");
    assert_eq!(terms::build(Variant::Released, 3, None), terms::build(Variant::Warpnet1, 3, None));
    let f2_x1 = Term { vector: Vector::Input, chain: vec![1] };
    assert_eq!(f2_x1.to_string(), "F2'x1");
    assert_eq!(f2_x1.order(), 1);
}
