//! Data-parallel replicas in the step-time model: what summing their gradients costs, through the
//! home of one process or by MPI's all-reduce among ranks.

use super::{predict_wrn, Link, Profile};
use crate::model::Architecture;
use crate::runtime::mpi::algorithms::AllReduce;

/// How the replicas' gradients are summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GradientSum {
    /// By the coordinator (devices of one process): each other replica sends its gradients to the
    /// home and receives the sum, one after another.
    ThroughTheHome,
    /// By MPI's all-reduce among the replicas (ranks): the algorithm's rounds of latency, and the
    /// bytes its busiest rank sends over the link (runtime/mpi/algorithms.rs).
    AllReduce,
}

impl GradientSum {
    /// MPI ranks all-reduce; the devices of one process sum through the home.
    pub fn over(mpi: bool) -> GradientSum {
        if mpi {
            GradientSum::AllReduce
        } else {
            GradientSum::ThroughTheHome
        }
    }
}

/// Milliseconds to sum the gradients of `replicas` replicas of `network` over `link`, `how`.
pub fn gradient_sum_ms(
    network: &dyn Architecture,
    profile: &Profile,
    replicas: usize,
    link: &Link,
    how: GradientSum,
) -> f64 {
    let bytes = profile.network_weight_bytes(network);
    match (replicas, how) {
        (0 | 1, _) => 0.0,
        (r, GradientSum::ThroughTheHome) => 2.0 * (r - 1) as f64 * link.message(bytes),
        (r, GradientSum::AllReduce) => {
            let algorithm = AllReduce::chosen(r, bytes as u64);
            algorithm.rounds(r) as f64 * link.latency_ms
                + algorithm.busiest_sent(r, bytes as u64) as f64 / link.bytes_per_ms
        }
    }
}

/// The WRN twin data parallel over `replicas` devices, from `replica_profile` measured at each
/// replica's share of the batch: every replica's step at once, then the gradients summed.
pub fn predict_data_parallel(
    network: &dyn Architecture,
    replica_profile: &Profile,
    replicas: usize,
    link: &Link,
    how: GradientSum,
) -> f64 {
    predict_wrn(network, replica_profile) + gradient_sum_ms(network, replica_profile, replicas, link, how)
}
