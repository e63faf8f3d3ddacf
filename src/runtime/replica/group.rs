//! A split replica's tensors over its group's MPI collectives (runtime/mpi/collective.rs): the home
//! broadcasts a warp layer's x1 (or upstream gradient) to the term workers on other ranks, and their
//! replies, the sums of their terms (or their dL/dx1), are reduced to the home, so that the home's bytes
//! per layer stay one buffer each way however many workers there are.

use tch::{Kind, Tensor};

use crate::runtime::mpi::collective::Group;
use crate::runtime::serial;

/// What the broadcasts and reductions are called in the line that stops a job they time out in.
const BROADCAST: &str = "the broadcast of a warp layer's input or upstream gradient";
const REDUCE: &str = "the reduction of the term workers' sums to the home";

/// The root's side of a tensor's broadcast: its serde form (`serial::tensor`), to every member.
pub fn broadcast(group: &Group, tensor_bytes: &mut [u8]) {
    group.broadcast(tensor_bytes, BROADCAST);
}

/// The tensor a non-root member receives by the root's broadcast of its `bytes`-long serde form.
pub fn receive_broadcast(group: &Group, bytes: usize) -> anyhow::Result<Tensor> {
    let mut buffer = vec![0; bytes];
    group.broadcast(&mut buffer, BROADCAST);
    Ok(serial::from_bytes::<serial::tensor::Owned>(&buffer)?.0)
}

/// Every member's `part` (the same shape, float32 or bfloat16) summed, on the root, on the CPU, in the
/// kind of `part`; `None` on the other members.
pub fn reduce_sum(group: &Group, part: &Tensor) -> Option<Tensor> {
    // Every member's elements in one order, on the host.
    let part = part.to_device(tch::Device::Cpu).contiguous();
    let (shape, kind) = (part.size(), part.kind());
    match kind {
        Kind::Float => {
            let mut values = Vec::<f32>::try_from(part.reshape([-1])).expect("float32 elements");
            group.reduce_sum_f32(&mut values, REDUCE);
            group.is_root().then(|| Tensor::from_slice(&values).reshape(&shape))
        }
        Kind::BFloat16 => {
            let numel = part.numel();
            let mut bytes = vec![0u8; 2 * numel];
            part.copy_data_u8(&mut bytes, numel);
            let mut bits: Vec<u16> =
                bytes.chunks_exact(2).map(|b| u16::from_ne_bytes([b[0], b[1]])).collect();
            group.reduce_sum_bf16(&mut bits, REDUCE);
            let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_ne_bytes()).collect();
            group.is_root().then(|| Tensor::from_data_size(&bytes, &shape, kind))
        }
        other => unreachable!("activations are float32 or bfloat16, not {other:?}"),
    }
}
