//! `warpnet analyze paths`: the binomial path count of the expansion (paper Theorem 1) and, on a
//! network, how much each path length contributes to a block's output.
//!
//! A block of K units expands into 2^K - 1 terms; those with k units (paths of length k) number C(K, k).
//! Their summed contribution at x1 is measured as ||sum of the order-k terms|| / ||x_{K+1} - x1||,
//! averaged over every block of every stage (exact variant).

use serde::Serialize;
use tch::Tensor;

use super::block::{relative, Sequential};
use crate::model::config::{DerivativeBn, Variant};
use crate::model::terms;

/// One path length k of a K-unit block.
#[derive(Debug, Clone, Serialize)]
pub struct PathRow {
    pub k_block: usize,
    /// Path length k (units whose output or Jacobian the term uses).
    pub length: usize,
    /// Terms of this length in the exact expansion (terms.rs).
    pub terms: usize,
    /// C(K, k), from Pascal's rule.
    pub binomial: u64,
    /// Mean over blocks of ||order-k terms summed|| / ||x_{K+1} - x1||; `None` without a network.
    pub relative_norm: Option<f64>,
}

/// C(n, k) by Pascal's rule C(n, k) = C(n-1, k-1) + C(n-1, k), as the paper's appendix A derives it.
pub fn binomial(n: usize, k: usize) -> u64 {
    let mut row = vec![1u64];
    for _ in 0..n {
        let mut next = vec![1u64; row.len() + 1];
        for i in 1..row.len() {
            next[i] = row[i - 1] + row[i];
        }
        row = next;
    }
    row.get(k).copied().unwrap_or(0)
}

/// The counts for a K-unit block, with the contributions measured on `network` when given.
pub fn paths(k: usize, network: Option<(&Sequential, &Tensor)>, derivative_bn: DerivativeBn) -> Vec<PathRow> {
    let exact = terms::exact(k, k);
    let norms = network.filter(|(seq, _)| k <= seq.units()).map(|(seq, images)| {
        let trace = seq.trace(images);
        let mut sums = vec![0.0; k + 1];
        let mut blocks = 0;
        for (s, xs) in trace.iter().enumerate() {
            for first in (0..seq.units()).step_by(k).filter(|f| f + k <= seq.units()) {
                let block = seq.block(s, first, k, Variant::Exact, derivative_bn);
                let (x1, out) = (&xs[first], &xs[first + k]);
                let values = block.term_values(x1);
                for (length, sum) in sums.iter_mut().enumerate().skip(1) {
                    let group = exact.iter().zip(&values).filter(|(t, _)| t.order() == length);
                    let total = group.fold(x1.zeros_like(), |acc, (_, v)| acc + v);
                    *sum += relative(&total, &(out - x1));
                }
                blocks += 1;
            }
        }
        sums.into_iter().map(|s| s / blocks as f64).collect::<Vec<f64>>()
    });
    (1..=k)
        .map(|length| PathRow {
            k_block: k,
            length,
            terms: exact.iter().filter(|t| t.order() == length).count(),
            binomial: binomial(k, length),
            relative_norm: norms.as_ref().map(|n| n[length]),
        })
        .collect()
}
