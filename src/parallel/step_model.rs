//! A step-time model: the time of one training step of a placement, predicted from the costs of its
//! pieces on one device (a [`Profile`], measured by parallel/profile.rs or read from a file) and a
//! [`Link`] between the home and its workers.
//!
//! The schedule is the executor's (parallel/split.rs): per warp layer, the home sends x1 to every
//! worker, each runs the primal passes its terms need and then its terms (two phases, with a barrier,
//! when pieces read masks from other workers), the home adds the sums; backward, each worker
//! backpropagates its terms for the upstream gradient. So a step is
//!
//!   home + sum over layers of [ max_w forward_w + max_w backward_w + messages ] + max_w sgd_w,
//!
//! where a worker's forward is its units' primal passes (a full pass where a term reads F_c's output,
//! the mask pass alone where only F'_c's mask is needed) plus one tangent pass per Jacobian in its terms
//! (times the share of a piece), and its backward the same terms backpropagated (a mask pass has no
//! backward: the mask is a constant). Costs of a piece scale with its rows. Only BN removed from F'
//! (the paper's) is modelled; the other derivative-BN modes add BN tangents it does not count.

use serde::{Deserialize, Serialize};

use super::placement::Placement;
use super::shares::{mask_exchanges, MaskExchange};
use crate::model::config::STAGES;
use crate::model::net::layer_operator;
use crate::model::terms::Vector;
use crate::model::warp::Jacobian;
use crate::model::NetConfig;

/// Milliseconds of the pieces of one warp layer's work at one stage's shape, on one device, at the
/// profile's batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageCosts {
    /// A unit's primal pass F_c(x1) with its output and ReLU mask, and its backward.
    pub unit_forward: f64,
    pub unit_backward: f64,
    /// The pass up to the ReLU mask alone (BN0, conv1, BN1), for F'_c x1 without F_c.
    pub mask_forward: f64,
    /// One tangent pass F'_c(x1)v with the mask given, and its backward.
    pub tangent_forward: f64,
    pub tangent_backward: f64,
    /// The same on half the batch's rows: a piece's convolutions run at fewer rows, where the kernels
    /// are less efficient than the share alone says (pieces between measured points interpolate).
    pub half_tangent_forward: f64,
    pub half_tangent_backward: f64,
    /// One SGD step over a unit's parameters.
    pub unit_sgd: f64,
    /// Bytes of one activation (B, C, H, W) at this stage, in the step's kind.
    pub activation_bytes: f64,
    /// Elements of one ReLU mask (B, C, H, W) (one byte each).
    pub mask_bytes: f64,
}

/// What one device costs, measured at one batch, precision and thread count.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    /// Where it was measured, in words ("cpu, 1 thread, fp32").
    pub device: String,
    pub batch: i64,
    /// One per stage.
    pub stages: Vec<StageCosts>,
    /// The home's own work per step: stem, downsampling, head and loss, forward and backward.
    pub home: f64,
    /// One (B, C, H, W) addition at each stage: the home adds each worker's sum and each dL/dx1.
    pub add: Vec<f64>,
}

/// A link between the home and a worker: per message, `latency_ms` plus the bytes at `bytes_per_ms`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Link {
    pub latency_ms: f64,
    /// `f64::INFINITY` for threads of one process, which hand tensors over without a copy.
    pub bytes_per_ms: f64,
}

impl Link {
    /// Milliseconds of one message of `bytes`.
    pub fn message(&self, bytes: f64) -> f64 {
        self.latency_ms + bytes / self.bytes_per_ms
    }
}

/// The prediction for one replica's step.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub step_ms: f64,
    /// Milliseconds each worker computes per step (forward, backward and its SGD step).
    pub busy_ms: Vec<f64>,
}

/// One worker's costs for one warp layer at stage `s`: (primal passes, terms forward, backward, SGD).
/// `exchanges`: the placement's mask exchanges under the network's `jacobian`.
fn worker_costs(
    placement: &Placement,
    (jacobian, exchanges): (Jacobian, &[MaskExchange]),
    worker: usize,
    stage: &StageCosts,
) -> [f64; 4] {
    let group = &placement.groups[worker];
    let (mut primal, mut terms, mut backward) = (0.0, 0.0, 0.0);
    for c in placement.units_on(worker) {
        let output = group.iter().any(|t| t.vector == Vector::Primal(c));
        let in_chain = group.iter().any(|t| t.chain.contains(&c));
        let imported = exchanges.iter().any(|e| e.to == worker && e.unit == c);
        let exported = exchanges.iter().any(|e| e.from == worker && e.unit == c);
        let masked = jacobian != Jacobian::Released && (in_chain || exported);
        if output {
            primal += stage.unit_forward;
            backward += stage.unit_backward;
        } else if masked && !imported {
            primal += stage.mask_forward;
        }
    }
    for term in group {
        let share = placement
            .split_of(term)
            .and_then(|s| s.pieces.iter().find(|p| p.0 == worker))
            .map_or(1.0, |p| p.1);
        let jacobians = term.chain.len() as f64;
        let piece = |half: f64, whole: f64| interpolate(share, half, whole);
        terms += jacobians * piece(stage.half_tangent_forward, stage.tangent_forward);
        backward += jacobians * piece(stage.half_tangent_backward, stage.tangent_backward);
    }
    let sgd = placement.units_on(worker).len() as f64 * stage.unit_sgd;
    [primal, terms, backward, sgd]
}

/// The cost of a share of the batch from the costs at half and at all of it: through (0, 0), (0.5,
/// half) and (1, whole), linear in between.
fn interpolate(share: f64, half: f64, whole: f64) -> f64 {
    match share <= 0.5 {
        true => share / 0.5 * half,
        false => half + (share - 0.5) / 0.5 * (whole - half),
    }
}

/// The step of `config` with `placement` over its workers, each reached by `link` (the same for all),
/// from `profile` measured at the replica's batch.
pub fn predict(config: &NetConfig, placement: &Placement, profile: &Profile, link: &Link) -> Prediction {
    let workers = placement.devices();
    let jacobian = layer_operator(config).1;
    let exchanges = mask_exchanges(placement, jacobian);
    let two_phase = !exchanges.is_empty();
    let mut step = profile.home;
    let mut busy = vec![0.0; workers];
    let mut sgd = vec![0.0; workers];
    for at in config.layer_indices() {
        let stage = &profile.stages[at.stage];
        let costs: Vec<[f64; 4]> =
            (0..workers).map(|w| worker_costs(placement, (jacobian, &exchanges), w, stage)).collect();
        let max = |f: &dyn Fn(&[f64; 4]) -> f64| costs.iter().map(f).fold(0.0, f64::max);
        let forward = if two_phase { max(&|c| c[0]) + max(&|c| c[1]) } else { max(&|c| c[0] + c[1]) };
        // Per worker: x1 out, its sum back, the upstream gradient out, its dL/dx1 back; the home adds
        // the sums and the gradients; masks cross twice (to the home and on).
        let messages = 4.0 * workers as f64 * link.message(stage.activation_bytes);
        let masks = exchanges
            .iter()
            .map(|e| {
                let (_, rows) = e.span.rows(profile.batch);
                2.0 * link.message(stage.mask_bytes * rows as f64 / profile.batch as f64)
            })
            .sum::<f64>();
        let adds = 2.0 * workers as f64 * profile.add[at.stage];
        step += forward + max(&|c| c[2]) + messages + masks + adds;
        for (w, c) in costs.iter().enumerate() {
            busy[w] += c[0] + c[1] + c[2] + c[3];
            sgd[w] += c[3];
        }
    }
    Prediction { step_ms: step + sgd.iter().copied().fold(0.0, f64::max), busy_ms: busy }
}

/// The WRN twin of `config` (the same units) on one device: every unit's pass, forward and backward,
/// and its SGD step, one after the other, and the home's work.
pub fn predict_wrn(config: &NetConfig, profile: &Profile) -> f64 {
    let units_per_layer = config.layer_grouping().0 as f64;
    let layers = config.layer_indices();
    assert_eq!(profile.stages.len(), STAGES, "one cost entry per stage");
    profile.home
        + layers
            .iter()
            .map(|at| {
                let s = &profile.stages[at.stage];
                units_per_layer * (s.unit_forward + s.unit_backward + s.unit_sgd)
            })
            .sum::<f64>()
}
