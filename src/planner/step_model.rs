//! A step-time model: the time of one training step of a placement, predicted from the costs of its
//! pieces on one device (a [`Profile`], measured by planner/profile.rs or read from a file) and a
//! [`Link`] between the home and its workers.
//!
//! The schedule is the executor's (runtime/replica/split.rs): per warp layer, the home sends x1 to
//! every worker, each runs the primal passes its terms need and then its terms (two phases, with a
//! barrier, when pieces read linearisations from other workers), the home adds the sums; backward,
//! each worker backpropagates its terms for the upstream gradient. So a step is
//!
//!   home + sum over layers of [ max_w forward_w + max_w backward_w + messages ] + max_w sgd_w,
//!
//! where a worker's forward is its units' primal passes (a full pass for each first-order term F_c it
//! evaluates, the linearisation pass alone where only F'_c's linearisation is needed: for the Table 1
//! unit with BN removed from F', its ReLU mask) plus its tangent passes (its whole terms factored, one
//! pass per Jacobian they share; each piece's Jacobians times its share), and its backward the same
//! backpropagated (a linearisation is a constant: its pass has no backward). An output F_i(x1) a term
//! starts from on another worker than F_i's is received from there (a two-phase forward) and its
//! gradient sent back (a two-phase backward). Costs of a piece scale with its rows. The costs are those
//! of the units the network's architecture builds (planner/profile.rs).

use serde::{Deserialize, Serialize};

use crate::model::terms::{factor, Term};
use crate::model::Architecture;
use crate::runtime::placement::shares::{exchanges, Exchange, Exchanged};
use crate::runtime::placement::Placement;

/// Milliseconds of the pieces of one warp layer's work at one stage's shape, on one device, at the
/// profile's batch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageCosts {
    /// A unit's primal pass F_c(x1) with its output and linearisation, and its backward.
    pub unit_forward: f64,
    pub unit_backward: f64,
    /// The pass for the linearisation alone (the Table 1 unit's, with BN removed from F': up to the
    /// ReLU mask, BN0, conv1, BN1), for F'_c x1 without F_c.
    pub mask_forward: f64,
    /// One tangent pass F'_c(x1)v with the linearisation given, and its backward.
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
    /// Bytes of one unit's linearisation rows for the whole batch, as a piece's device receives them
    /// (the Table 1 unit's: a (B, C, H, W) ReLU mask, one byte an element).
    pub mask_bytes: f64,
    /// Bytes a unit's parameters and BatchNorm statistics take.
    pub unit_weight_bytes: f64,
    /// Bytes kept from the forward pass for the backward pass at the profile's batch: by a unit's
    /// primal pass, by its linearisation pass alone (a constant of the tangents), by one tangent pass.
    pub unit_kept_bytes: f64,
    pub mask_kept_bytes: f64,
    pub tangent_kept_bytes: f64,
}

/// What one device costs, measured at one batch, precision and thread count.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    /// Where it was measured, in words ("cpu, 1 thread, fp32").
    pub device: String,
    pub batch: i64,
    /// Intra-op threads it was measured with.
    pub threads: usize,
    /// Other devices of the same memory system kept busy meanwhile (CPU workers share caches and
    /// memory bandwidth: a core computes slower beside a busy one, docs/speed.md).
    #[serde(default)]
    pub busy_neighbours: usize,
    /// One per stage.
    pub stages: Vec<StageCosts>,
    /// The home's own work per step: stem, downsampling, head and loss, forward and backward.
    pub home: f64,
    /// One (B, C, H, W) addition at each stage: the home adds each worker's sum and each dL/dx1.
    pub add: Vec<f64>,
    /// The home's weights (stem and head) and what its forward keeps for backward, in bytes.
    pub home_weight_bytes: f64,
    pub home_kept_bytes: f64,
}

impl Profile {
    /// The same device `factor` times faster: every time divided by it, the bytes kept (a what-if for
    /// devices no profile was measured on: `warpnet plan --compute-scale`).
    pub fn faster(&self, factor: f64) -> Profile {
        let stages = self
            .stages
            .iter()
            .map(|s| StageCosts {
                unit_forward: s.unit_forward / factor,
                unit_backward: s.unit_backward / factor,
                mask_forward: s.mask_forward / factor,
                tangent_forward: s.tangent_forward / factor,
                tangent_backward: s.tangent_backward / factor,
                half_tangent_forward: s.half_tangent_forward / factor,
                half_tangent_backward: s.half_tangent_backward / factor,
                unit_sgd: s.unit_sgd / factor,
                ..s.clone()
            })
            .collect();
        Profile {
            device: format!("{} x{factor} faster", self.device),
            stages,
            home: self.home / factor,
            add: self.add.iter().map(|a| a / factor).collect(),
            ..self.clone()
        }
    }

    /// Bytes of every weight of `network` (either twin: they hold the same units).
    pub fn network_weight_bytes(&self, network: &dyn Architecture) -> f64 {
        let units_per_layer = network.units_per_layer() as f64;
        self.home_weight_bytes
            + network
                .layers()
                .iter()
                .map(|at| units_per_layer * self.stages[at.stage].unit_weight_bytes)
                .sum::<f64>()
    }
}

/// Named links (docs/speed.md "Links" gives each figure's source). Bandwidths per direction.
mod replicas;
pub use replicas::{gradient_sum_ms, predict_data_parallel, GradientSum};

pub mod links {
    use super::Link;

    /// Bytes per millisecond of `gb_per_s` gigabytes (1e9 bytes) per second.
    const fn gb_per_s(gb: f64) -> f64 {
        gb * 1e6
    }

    /// Threads of one process hand tensors over without a copy; a channel send and wake-up costs tens
    /// of microseconds (assumed: against steps of hundreds of milliseconds it does not show).
    pub const THREADS: Link = Link { latency_ms: 0.05, bytes_per_ms: f64::INFINITY };
    /// PCIe 4.0 x16: 16 GT/s x 16 lanes x 128/130 encoding = 31.5 GB/s (PCI-SIG, PCI Express Base
    /// Specification 4.0); ~10 us per host-staged copy (assumed).
    pub const PCIE4: Link = Link { latency_ms: 0.010, bytes_per_ms: gb_per_s(31.5) };
    /// NVLink 4 (H100 SXM): 900 GB/s per GPU both ways together, 450 GB/s each way (NVIDIA H100
    /// datasheet); ~5 us per peer copy (assumed).
    pub const NVLINK4: Link = Link { latency_ms: 0.005, bytes_per_ms: gb_per_s(450.0) };
    /// 100 Gb/s InfiniBand (EDR 4x): 12.5 GB/s; ~1.5 us MPI latency (osu_latency on EDR is 1-2 us).
    pub const IB100: Link = Link { latency_ms: 0.0015, bytes_per_ms: gb_per_s(12.5) };

    /// The preset called `name`, with every name for the error message.
    pub fn named(name: &str) -> Result<Link, String> {
        match name {
            "threads" => Ok(THREADS),
            "pcie4" => Ok(PCIE4),
            "nvlink4" => Ok(NVLINK4),
            "ib100" => Ok(IB100),
            _ => {
                Err(format!("unknown link '{name}': threads, pcie4, nvlink4, ib100, or LATENCY_US:GB_PER_S"))
            }
        }
    }

    /// A preset's name, or `LATENCY_US:GB_PER_S` (e.g. `20:5`, MPI over loopback as measured).
    pub fn parse(text: &str) -> Result<Link, String> {
        let Some((latency, bandwidth)) = text.split_once(':') else { return named(text) };
        let number = |t: &str| t.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0);
        match (number(latency), number(bandwidth)) {
            (Some(us), Some(gb)) => Ok(Link { latency_ms: us / 1e3, bytes_per_ms: gb_per_s(gb) }),
            _ => Err(format!("link '{text}': expected LATENCY_US:GB_PER_S, two positive numbers")),
        }
    }
}

/// A link between the home and a worker: per message, `latency_ms` plus the bytes at `bytes_per_ms`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Link {
    pub latency_ms: f64,
    /// `f64::INFINITY` for threads of one process, which hand tensors over without a copy.
    pub bytes_per_ms: f64,
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let bandwidth = match self.bytes_per_ms.is_finite() {
            true => format!("{:.2} GB/s", self.bytes_per_ms / 1e6),
            false => "no copy".into(),
        };
        write!(f, "{:.1} us + {bandwidth}", self.latency_ms * 1e3)
    }
}

impl Link {
    /// The LATENCY_US:GB_PER_S form `links::parse` reads back.
    pub fn figures(&self) -> String {
        format!("{:.1}:{:.2}", self.latency_ms * 1e3, self.bytes_per_ms / 1e6)
    }

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
    /// Bytes each device holds, the home first, then the workers.
    pub memory: Vec<DeviceBytes>,
}

/// What one device holds during a step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DeviceBytes {
    /// Its parameters and BatchNorm statistics.
    pub weights: f64,
    /// What its forward passes keep for the backward pass.
    pub activations: f64,
}

/// One worker's work for one warp layer, in milliseconds, and what it keeps for backward, in bytes.
#[derive(Debug, Clone, Copy, Default)]
struct WorkerCosts {
    /// Its units' primal (or linearisation) passes.
    primal: f64,
    /// Its terms' tangent passes forward (factored: one per Jacobian shared by its whole terms).
    terms: f64,
    backward: f64,
    sgd: f64,
    kept_bytes: f64,
    /// Outputs F_i(x1) it receives from other workers for its terms.
    imported_outputs: usize,
}

/// One worker's costs for one warp layer at stage `s`. `exchanges`: the placement's exchanges;
/// `tangents`: whether the network's tangents read their unit's primal pass, and whether they are
/// linear in v (so that whole terms sharing a Jacobian share its pass).
fn worker_costs(
    placement: &Placement,
    ((reads_primal, linear), exchanges): ((bool, bool), &[Exchange]),
    worker: usize,
    stage: &StageCosts,
) -> WorkerCosts {
    let group = &placement.groups[worker];
    let mut costs = WorkerCosts::default();
    let exchanged = |output: bool, to_or_from: fn(&Exchange) -> usize, c: usize| {
        exchanges
            .iter()
            .any(|e| to_or_from(e) == worker && e.unit == c && (e.what == Exchanged::Output) == output)
    };
    for c in placement.units_on(worker) {
        let output = group.contains(&Term::primal(c));
        let in_chain = group.iter().any(|t| t.chain.contains(&c));
        let masked = reads_primal && (in_chain || exchanged(false, |e| e.from, c));
        if output {
            costs.primal += stage.unit_forward;
            costs.backward += stage.unit_backward;
            costs.kept_bytes += stage.unit_kept_bytes;
        } else if masked && !exchanged(false, |e| e.to, c) {
            costs.primal += stage.mask_forward;
            costs.kept_bytes += stage.mask_kept_bytes;
        }
    }
    costs.imported_outputs = placement.imported_outputs(worker).len();
    let share = |term: &Term| {
        placement.split_of(term).and_then(|s| s.pieces.iter().find(|p| p.0 == worker)).map(|p| p.1)
    };
    let (whole, pieces): (Vec<&Term>, Vec<&Term>) = group.iter().partition(|t| share(t).is_none());
    let whole: Vec<Term> = whole.into_iter().cloned().collect();
    let passes = match linear {
        true => factor(&whole).tangent_passes(),
        false => whole.iter().map(|t| t.chain.len()).sum(),
    };
    let shares = pieces.iter().flat_map(|t| std::iter::repeat_n(share(t).expect("a piece"), t.chain.len()));
    for share in std::iter::repeat_n(1.0, passes).chain(shares) {
        let piece = |half: f64, whole: f64| interpolate(share, half, whole);
        costs.terms += piece(stage.half_tangent_forward, stage.tangent_forward);
        costs.backward += piece(stage.half_tangent_backward, stage.tangent_backward);
        costs.kept_bytes += share * stage.tangent_kept_bytes;
    }
    costs.sgd = placement.units_on(worker).len() as f64 * stage.unit_sgd;
    costs
}

/// The cost of a share of the batch from the costs at half and at all of it: through (0, 0), (0.5,
/// half) and (1, whole), linear in between.
fn interpolate(share: f64, half: f64, whole: f64) -> f64 {
    match share <= 0.5 {
        true => share / 0.5 * half,
        false => half + (share - 0.5) / 0.5 * (whole - half),
    }
}

/// The step of `network` with `placement` over its workers, each reached by `link` (the same for all),
/// from `profile` measured at the replica's batch.
pub fn predict(
    network: &dyn Architecture,
    placement: &Placement,
    profile: &Profile,
    link: &Link,
) -> Prediction {
    let workers = placement.devices();
    let tangents = (network.tangent_reads_primal(), network.tangents_linear());
    let exchanges = exchanges(placement, tangents.0);
    let two_phase = !exchanges.is_empty();
    let mut step = profile.home;
    let mut busy = vec![0.0; workers];
    let mut sgd = vec![0.0; workers];
    let home = DeviceBytes { weights: profile.home_weight_bytes, activations: profile.home_kept_bytes };
    let mut memory = vec![home; 1];
    memory.extend(vec![DeviceBytes { weights: 0.0, activations: 0.0 }; workers]);
    for at in network.layers() {
        let stage = &profile.stages[at.stage];
        let costs: Vec<WorkerCosts> =
            (0..workers).map(|w| worker_costs(placement, (tangents, &exchanges), w, stage)).collect();
        let max = |f: &dyn Fn(&WorkerCosts) -> f64| costs.iter().map(f).fold(0.0, f64::max);
        let forward = match two_phase {
            true => max(&|c| c.primal) + max(&|c| c.terms),
            false => max(&|c| c.primal + c.terms),
        };
        // Outputs received carry gradients back: the receivers find them first (their tangents'
        // transposes, about their forward), then every worker runs its backward.
        let backward = max(&|c| if c.imported_outputs > 0 { c.terms } else { 0.0 }) + max(&|c| c.backward);
        // Per worker: x1 out, its sum back, the upstream gradient out, its dL/dx1 back; the home adds
        // the sums and the gradients; what workers send each other crosses twice (to the home and
        // on), an output there and its gradient back.
        let messages = 4.0 * workers as f64 * link.message(stage.activation_bytes);
        let exchanged = exchanges
            .iter()
            .map(|e| match e.what {
                Exchanged::Rows(span) => {
                    let (_, rows) = span.rows(profile.batch);
                    2.0 * link.message(stage.mask_bytes * rows as f64 / profile.batch as f64)
                }
                Exchanged::Output => 4.0 * link.message(stage.activation_bytes),
            })
            .sum::<f64>();
        let adds = 2.0 * workers as f64 * profile.add[at.stage];
        step += forward + backward + messages + exchanged + adds;
        for (w, c) in costs.iter().enumerate() {
            busy[w] += c.primal + c.terms + c.backward + c.sgd;
            sgd[w] += c.sgd;
            memory[w + 1].activations += c.kept_bytes;
            memory[w + 1].weights += placement.units_on(w).len() as f64 * stage.unit_weight_bytes;
        }
    }
    step += replicated_gradients_ms(network, placement, profile, link);
    Prediction { step_ms: step + sgd.iter().copied().fold(0.0, f64::max), busy_ms: busy, memory }
}

/// A unit held by several workers has a gradient on each: each holder sends its copy to the home and
/// receives the sum, one message each way per holder and layer, through the home one after another.
fn replicated_gradients_ms(
    network: &dyn Architecture,
    placement: &Placement,
    profile: &Profile,
    link: &Link,
) -> f64 {
    let holders: usize = placement
        .replicated_units()
        .iter()
        .map(|&c| (0..placement.devices()).filter(|&w| placement.units_on(w).contains(&c)).count())
        .sum();
    network
        .layers()
        .iter()
        .map(|at| 2.0 * holders as f64 * link.message(profile.stages[at.stage].unit_weight_bytes))
        .sum()
}

/// The WRN twin of `network` (the same units) on one device: every unit's pass, forward and backward,
/// and its SGD step, one after the other, and the home's work.
pub fn predict_wrn(network: &dyn Architecture, profile: &Profile) -> f64 {
    let units_per_layer = network.units_per_layer() as f64;
    let layers = network.layers();
    assert_eq!(profile.stages.len(), network.stages(), "one cost entry per stage");
    profile.home
        + layers
            .iter()
            .map(|at| {
                let s = &profile.stages[at.stage];
                units_per_layer * (s.unit_forward + s.unit_backward + s.unit_sgd)
            })
            .sum::<f64>()
}
