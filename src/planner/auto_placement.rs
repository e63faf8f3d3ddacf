//! `--placement auto`: the placement of a warp layer's terms on P devices, batch shares included, that
//! the step-time model (planner/step_model.rs) predicts fastest.
//!
//! Candidates: every assignment of the whole terms to the P devices that leaves none empty, and for
//! each, where the network lets pieces apart, the same with every F'_j x1 term split over all devices
//! instead (the only terms that split: runtime/placement/shares.rs), its shares chosen to even out the
//! devices' work: water-filling, each device's share of the split terms' work filling it up to a
//! common level, shares rounded to hundredths. The model scores every candidate; ties go to the
//! first, so fewer splits win when they cost nothing. Where the assignments number more than
//! [`MAX_CANDIDATES`] (P^terms: WarpNet2 K = 4 on 5 devices has 9.8 million), the first of them are
//! scored and local search goes on from there ([`search`]).

use std::cmp::Ordering;

use super::step_model::{predict, Link, Prediction, Profile};
use crate::model::terms::{Term, Vector};
use crate::model::Architecture;
use crate::runtime::placement::{Entry, Placement};

/// The word that asks for this placement, in place of one (`--placement auto`, a bench run's `auto`).
pub const AUTO: &str = "auto";

/// `--placement` (key `placement`): a placement in the paper's notation, or `auto`, resolved before
/// the run to the placement [`best`] predicts fastest (`TrainConfig::with_auto_placement`). Read once,
/// where its text enters (a flag, a config file); its terms are checked against the network's later.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum PlacementSetting {
    Auto,
    Given(Placement),
}

impl std::str::FromStr for PlacementSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            AUTO => Ok(PlacementSetting::Auto),
            text => text.parse().map(PlacementSetting::Given).map_err(|e: anyhow::Error| format!("{e:#}")),
        }
    }
}

impl std::fmt::Display for PlacementSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlacementSetting::Auto => f.write_str(AUTO),
            PlacementSetting::Given(placement) => write!(f, "{placement}"),
        }
    }
}

impl TryFrom<String> for PlacementSetting {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<PlacementSetting> for String {
    fn from(setting: PlacementSetting) -> String {
        setting.to_string()
    }
}
/// Shares are written with this many decimals.
const SHARE_STEP: f64 = 0.01;
/// Most candidates enumerated (P^terms grows fast: 4 devices and K = 3's 5 terms give 1,024); past it,
/// local search ([`descend`]) goes on from the best of them and from placements built by rule.
const MAX_CANDIDATES: usize = 20_000;

/// A scored candidate: the placement of one assignment of terms to devices and its prediction.
type Scored = (Placement, Prediction);
/// An assignment of items to devices (the device of item i at index i), with its score.
type Assigned = (Vec<usize>, Scored);

/// The fastest placement of `network`'s terms on `devices` devices, with its prediction.
pub fn best(
    network: &dyn Architecture,
    devices: usize,
    profile: &Profile,
    link: &Link,
) -> (Placement, Prediction) {
    let terms = network.terms();
    let (splittable, whole): (Vec<Term>, Vec<Term>) =
        terms.iter().cloned().partition(|t| t.vector == Vector::Input);
    let scored = |placement: Placement| {
        let prediction = predict(network, &placement, profile, link);
        (placement, prediction)
    };
    // Every term whole on the device the assignment gives it; none left empty.
    let whole_terms = |assignment: &[usize], devices: usize| {
        let groups = group(&terms, assignment, devices);
        groups
            .iter()
            .all(|g| !g.is_empty())
            .then(|| scored(placement(&groups, &[]).expect("a valid placement")))
    };
    let mut best = search(&terms, devices, &whole_terms);
    if devices > 1 && !splittable.is_empty() && network.pieces_apart().is_ok() {
        // The whole terms assigned, every F'_j x1 split over all devices by water-filling. None where
        // a device is left empty, or a term's shares all round onto one device.
        let with_split = |assignment: &[usize], devices: usize| {
            let groups = group(&whole, assignment, devices);
            let shares = water_fill(network, &groups, &splittable, profile, link, &terms);
            let split: Vec<(Term, Vec<f64>)> =
                splittable.iter().map(|t| (t.clone(), shares.clone())).collect();
            placement(&groups, &split).map(scored)
        };
        best = faster(best, search(&whole, devices, &with_split));
    }
    best.expect("at least one placement fits").1
}

/// How an assignment on some number of devices is scored: `None` where it makes no placement.
type Score<'a> = dyn Fn(&[usize], usize) -> Option<Scored> + 'a;

/// The fastest of `items`' assignments to `devices` devices that `score` accepts: all of them where
/// they number at most [`MAX_CANDIDATES`] (ties go to the first in counting order, so fewer splits
/// win when they cost nothing). Past that, the first [`MAX_CANDIDATES`], then local search from the
/// best of them; from each term on the device of its outermost unit (units in equal blocks: the
/// paper's placements); from the terms dealt round the devices in that order; and from the best
/// assignment on one device fewer with the item that helps most moved to the new device.
fn search(items: &[Term], devices: usize, score: &Score) -> Option<Assigned> {
    let mut best: Option<Assigned> = None;
    let count = devices.checked_pow(items.len() as u32).unwrap_or(usize::MAX);
    for assignment in assignments(items.len(), devices, count.min(MAX_CANDIDATES)) {
        if let Some(candidate) = score(&assignment, devices) {
            if best.as_ref().is_none_or(|(_, b)| candidate.1.step_ms < b.1.step_ms) {
                best = Some((assignment, candidate));
            }
        }
    }
    if count <= MAX_CANDIDATES {
        return best;
    }
    let mut starts: Vec<Assigned> = best.iter().cloned().collect();
    starts.extend(by_rule(items, devices).into_iter().filter_map(|a| score(&a, devices).map(|s| (a, s))));
    if let Some((fewer, _)) = search(items, devices - 1, score) {
        let moved = (0..items.len()).filter_map(|i| {
            let mut a = fewer.clone();
            a[i] = devices - 1;
            score(&a, devices).map(|s| (a, s))
        });
        starts
            .extend(moved.min_by(|a, b| key(&a.1 .1).partial_cmp(&key(&b.1 .1)).unwrap_or(Ordering::Equal)));
    }
    for start in starts {
        best = faster(best, Some(descend(start, devices, score)));
    }
    best
}

/// Two starts for local search: each term on the device of its outermost unit, the units in equal
/// blocks over the devices; and the terms in that order dealt round the devices one by one.
fn by_rule(items: &[Term], devices: usize) -> Vec<Vec<usize>> {
    // The unit whose Jacobian applies last, or whose output a first-order term is; x1 (none): unit 0.
    let outer = |t: &Term| t.chain.last().copied().or(t.units().next()).unwrap_or(0);
    let units = items.iter().map(|t| outer(t) + 1).max().unwrap_or(1);
    let blocks = items.iter().map(|t| outer(t) * devices / units).collect();
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (outer(&items[i]), items[i].order()));
    let mut dealt = vec![0; items.len()];
    for (position, &i) in order.iter().enumerate() {
        dealt[i] = position % devices;
    }
    vec![blocks, dealt]
}

/// What local search lowers: the predicted step, then the sum of the devices' squared busy times, so
/// that a move off a device that is not the slowest, which leaves the step as it is but evens the
/// load, still counts as progress (the step is a maximum, flat over most moves).
fn key(prediction: &Prediction) -> (f64, f64) {
    (prediction.step_ms, prediction.busy_ms.iter().map(|b| b * b).sum())
}

/// Steepest descent from `start`: of every move of one item to another device and every swap of two
/// items on different devices, take the one that lowers [`key`] most, until none does. Each round
/// scores at most items x devices + items^2 / 2 assignments.
fn descend(start: Assigned, devices: usize, score: &Score) -> Assigned {
    let mut here = start;
    loop {
        let current = here.0.clone();
        let moves = (0..current.len()).flat_map(|i| (0..devices).map(move |d| vec![(i, d)]));
        let swaps = (0..current.len())
            .flat_map(|i| (i + 1..current.len()).map(move |j| (i, j)))
            .filter(|&(i, j)| current[i] != current[j])
            .map(|(i, j)| vec![(i, current[j]), (j, current[i])]);
        let mut improved = false;
        for change in moves.chain(swaps) {
            let mut next = current.clone();
            change.iter().for_each(|&(i, d)| next[i] = d);
            if let Some(candidate) = score(&next, devices) {
                if key(&candidate.1) < key(&here.1 .1) {
                    here = (next, candidate);
                    improved = true;
                }
            }
        }
        if !improved {
            return here;
        }
    }
}

/// The faster of two; `a` where they tie.
fn faster(a: Option<Assigned>, b: Option<Assigned>) -> Option<Assigned> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.1 .1.step_ms < a.1 .1.step_ms { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// The first `count` maps of `items` items onto `devices` devices (device of item i at index i), in
/// counting order.
fn assignments(items: usize, devices: usize, count: usize) -> Vec<Vec<usize>> {
    (0..count)
        .map(|mut n| {
            (0..items)
                .map(|_| {
                    let d = n % devices;
                    n /= devices;
                    d
                })
                .collect()
        })
        .collect()
}

fn group(terms: &[Term], assignment: &[usize], devices: usize) -> Vec<Vec<Term>> {
    let mut groups = vec![Vec::new(); devices];
    for (term, &d) in terms.iter().zip(assignment) {
        groups[d].push(term.clone());
    }
    groups
}

/// Shares of the split terms per device that even out the predicted work: each device's busy time
/// with the whole terms alone (an empty device: 0), then the split work poured onto the least busy.
fn water_fill(
    network: &dyn Architecture,
    groups: &[Vec<Term>],
    split: &[Term],
    profile: &Profile,
    link: &Link,
    terms: &[Term],
) -> Vec<f64> {
    let devices = groups.len();
    // Each device's load alone, and the split terms' work on one device (all of them, whole).
    let load: Vec<f64> = groups
        .iter()
        .map(|g| match g.is_empty() {
            true => 0.0,
            false => busy_alone(network, g, profile, link, terms),
        })
        .collect();
    let with_split: Vec<Term> = groups.concat().into_iter().chain(split.iter().cloned()).collect();
    let total_split = busy_alone(network, &with_split, profile, link, terms)
        - busy_alone(network, &groups.concat(), profile, link, terms);
    // The level L with sum over devices of max(0, L - load) = total_split.
    let mut sorted = load.clone();
    sorted.sort_by(f64::total_cmp);
    let mut level = 0.0;
    for k in 1..=devices {
        let candidate = (total_split + sorted[..k].iter().sum::<f64>()) / k as f64;
        if k == devices || candidate <= sorted[k] {
            level = candidate;
            break;
        }
    }
    let raw: Vec<f64> =
        load.iter().map(|l| (level - l).max(0.0) / total_split.max(f64::MIN_POSITIVE)).collect();
    round_shares(&raw)
}

/// The busy time of one device that evaluates `group` alone.
fn busy_alone(
    network: &dyn Architecture,
    group: &[Term],
    profile: &Profile,
    link: &Link,
    terms: &[Term],
) -> f64 {
    let mut rest: Vec<Term> = terms.iter().filter(|t| !group.contains(t)).cloned().collect();
    let mut groups = vec![group.to_vec()];
    if !rest.is_empty() {
        groups.push(std::mem::take(&mut rest));
    }
    let placement = placement(&groups, &[]).expect("a valid placement");
    predict(network, &placement, profile, link).busy_ms[0]
}

/// Shares rounded to [`SHARE_STEP`], the last taking what the others leave, so that they sum to 1.
fn round_shares(raw: &[f64]) -> Vec<f64> {
    let mut shares: Vec<f64> = raw.iter().map(|s| (s / SHARE_STEP).round() * SHARE_STEP).collect();
    let last = shares.iter().rposition(|&s| s > 0.0).unwrap_or(shares.len() - 1);
    let others: f64 = shares.iter().enumerate().filter(|&(i, _)| i != last).map(|(_, s)| s).sum();
    shares[last] = ((1.0 - others) / SHARE_STEP).round() * SHARE_STEP;
    shares
}

/// The placement of `groups`' whole terms and of each split term with its share on every device whose
/// share is above 0 (a device's share of 1 places the term there whole); `None` where that leaves a
/// device empty or a term's pieces do not make a split (shares::collect).
fn placement(groups: &[Vec<Term>], split: &[(Term, Vec<f64>)]) -> Option<Placement> {
    let entries: Vec<Vec<Entry>> = groups
        .iter()
        .enumerate()
        .map(|(d, g)| {
            let mut entries: Vec<Entry> = g.iter().map(|t| (t.clone(), None)).collect();
            for (term, shares) in split {
                match shares[d] {
                    s if s >= 1.0 - SHARE_STEP / 2.0 => entries.push((term.clone(), None)),
                    s if s > SHARE_STEP / 2.0 => entries.push((term.clone(), Some(written(s)))),
                    _ => {}
                }
            }
            entries
        })
        .collect();
    if entries.iter().any(Vec::is_empty) {
        return None;
    }
    Placement::from_entries(entries).ok()
}

/// A share as the notation writes it, hundredths: what a placement printed and read back holds.
fn written(share: f64) -> f64 {
    format!("{share:.2}").parse().expect("a decimal")
}
