//! `--placement auto`: the placement of a warp layer's terms on P devices, batch shares included, that
//! the step-time model (planner/step_model.rs) predicts fastest.
//!
//! Candidates: every assignment of the whole terms to the P devices that leaves none empty, and for
//! each, where the network lets pieces apart, the same with every F'_j x1 term split over all devices
//! instead (the only terms that split: runtime/placement/shares.rs), its shares chosen to even out the
//! devices' work: water-filling, each device's share of the split terms' work filling it up to a
//! common level, shares rounded to hundredths. The model scores every candidate; ties go to the
//! first, so fewer splits win when they cost nothing.

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
/// Most candidates enumerated (P^terms grows fast: 4 devices and K = 3's 5 terms give 1,024).
const MAX_CANDIDATES: usize = 20_000;

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
    let mut best: Option<(Placement, Prediction)> = None;
    let mut consider = |placement: Placement| {
        let prediction = predict(network, &placement, profile, link);
        if best.as_ref().is_none_or(|(_, b)| prediction.step_ms < b.step_ms) {
            best = Some((placement, prediction));
        }
    };
    for assignment in assignments(terms.len(), devices) {
        let groups = group(&terms, &assignment, devices);
        if groups.iter().all(|g| !g.is_empty()) {
            consider(placement(&groups, &[]).expect("a valid placement"));
        }
    }
    if devices > 1 && !splittable.is_empty() && network.pieces_apart().is_ok() {
        for assignment in assignments(whole.len(), devices) {
            let groups = group(&whole, &assignment, devices);
            let shares = water_fill(network, &groups, &splittable, profile, link, &terms);
            let split: Vec<(Term, Vec<f64>)> =
                splittable.iter().map(|t| (t.clone(), shares.clone())).collect();
            // None where a device is left empty, or a term's shares all round onto one device.
            if let Some(placement) = placement(&groups, &split) {
                consider(placement);
            }
        }
    }
    best.expect("at least one placement fits")
}

/// Every map of `items` items onto `devices` devices (device of item i at index i), in counting order.
fn assignments(items: usize, devices: usize) -> Vec<Vec<usize>> {
    let count = devices.checked_pow(items as u32).unwrap_or(usize::MAX).min(MAX_CANDIDATES);
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
