//! The communication volume of one training step over ranks, from the layout alone: what a user
//! multiplies by the network's bandwidth to predict a multi-host step. Counts tensor data; each
//! message adds a header of tens of bytes (its kind, channel, shapes and, for gradients, names).
//!
//! Per model-parallel replica with a batch share of B images and per warp layer at (C, H, W) (the
//! network's activation shape), buffers of B x C x H x W activations are handed to MPI: x1 and the terms' sums (forward), the upstream
//! gradient and the dL/dx1 (backward). With W workers on other ranks, from W = 2 on they go by the
//! replica group's collectives (runtime/replica/group.rs): per direction the home hands its buffer to
//! one broadcast, and every rank of the group hands its part to one reduction: W + 2 buffers. With one
//! remote worker they go as messages, there and back: 2 buffers.
//! Summed over the layers of the Table 1 network's three stages, (C, H, W) = (16kw, 32, 32),
//! (32kw, 16, 16), (64kw, 8, 8), that is
//!
//!   activations = 2 x (W + 2 or 2) x B x Nwarp x 1024 x kw x (16 + 8 + 4) x A bytes,
//!
//! with A = 4 bytes per activation in fp32 and 2 under bf16 mixed precision (activations travel in the
//! kind they are computed in), plus per remote worker its parameters' gradients twice (to the home,
//! and the summed ones back with the step): 2 x 4 bytes x (parameters the worker holds; fp32 master
//! gradients in either precision). A data-parallel replica on another rank receives its images (B x
//! the network's input shape, 3 x 32 x 32, A bytes each) and labels (B int64); with two replicas or more, every replica's home hands all its gradients
//! to MPI's all-reduce: 4 bytes x (all parameters) per replica, counted once, as sent (what the
//! all-reduce's algorithm moves on the wire: runtime/mpi/algorithms.rs).
//!
//! An output F_i(x1) that a term on another worker starts from adds B x C x H x W activations per warp
//! layer each way (the output, its gradient back). A term split by batch (runtime/placement/shares.rs)
//! adds its linearisation rows in every forward
//! (`Architecture::linearization_row_bytes`: the Table 1 unit's B_piece x C x H x W ReLU mask booleans,
//! one byte each) per warp layer, from the rank of F_j to the home and from the home to the rank of the
//! piece (each hop counted where it crosses ranks).

use crate::model::Architecture;
use crate::runtime::executor::{Plan, COLLECTIVE_GROUP_MIN};
use crate::runtime::placement::shares::{exchanges, Exchanged};
use crate::runtime::Devices;
/// Bytes of one int64 label.
const LABEL: u64 = 8;
/// Forward (x1 out, the sums back) and backward (the upstream gradient out, dL/dx1 back).
const DIRECTIONS: u64 = 2;
/// Per direction, the buffers handed over beside the remote workers' parts: the home's broadcast and
/// the home's own part of the reduction.
const BUFFERS_BESIDE_THE_WORKERS: u64 = 2;

/// Bytes of tensor data per training step between ranks, for a batch of `batch` images whose pixels
/// and activations take `activation_bytes` each (the step's kind: 4 in fp32, 2 in bf16).
/// `parameter_bytes[g]`: bytes of the parameters of term worker g of a replica (as all replicas);
/// `all_parameter_bytes`: of the whole network.
pub fn tensor_bytes_per_step(
    network: &dyn Architecture,
    devices: &Devices,
    plan: &Plan,
    batch: u64,
    activation_bytes: u64,
    parameter_bytes: &[u64],
    all_parameter_bytes: u64,
) -> u64 {
    let replicas = plan.replicas as u64;
    let mut total = 0;
    for r in 0..plan.replicas {
        // The executor's split of the batch: the first batch % R replicas take one image more.
        let share = batch / replicas + u64::from((r as u64) < batch % replicas);
        let first = r * plan.workers_per_replica;
        let home = devices.place(first).rank;
        if home != 0 {
            let input_elements = network.input_shape().iter().product::<i64>() as u64;
            total += share * (input_elements * activation_bytes + LABEL);
        }
        if replicas > 1 {
            total += all_parameter_bytes;
        }
        if plan.placement.is_none() {
            continue;
        }
        let mut remote = 0;
        for (g, parameters) in parameter_bytes.iter().enumerate().take(plan.workers_per_replica) {
            if devices.place(first + g).rank != home {
                remote += 1;
                total += 2 * parameters;
            }
        }
        let buffers = match remote {
            0 => 0,
            // By messages: to each remote worker and back.
            w if w + 1 < COLLECTIVE_GROUP_MIN as u64 => DIRECTIONS * 2 * w,
            w => DIRECTIONS * (w + BUFFERS_BESIDE_THE_WORKERS),
        };
        total += buffers * share * activations_per_image(network) * activation_bytes;
        let placement = plan.placement.as_ref().expect("a split replica");
        let row_bytes: u64 =
            network.layers().iter().map(|at| network.linearization_row_bytes(at.stage)).sum();
        for e in exchanges(placement, network.tangent_reads_primal()) {
            let hops =
                [e.from, e.to].iter().filter(|&&g| devices.place(first + g).rank != home).count() as u64;
            total += hops
                * match e.what {
                    Exchanged::Rows(span) => span.rows(share as i64).1 as u64 * row_bytes,
                    // The output there, its gradient back.
                    Exchanged::Output => {
                        DIRECTIONS * share * activations_per_image(network) * activation_bytes
                    }
                };
        }
    }
    total
}

/// Elements of one sample's warp-layer inputs, summed over every warp layer of the network.
fn activations_per_image(network: &dyn Architecture) -> u64 {
    network.layers().iter().map(|at| network.activation_shape(at.stage).iter().product::<i64>() as u64).sum()
}
