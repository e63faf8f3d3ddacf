//! The byte form of messages between processes: any `serde` type, encoded by postcard, with tensors
//! carried as their raw elements.
//!
//! A tensor is its kind, its memory layout, its shape and its elements in that layout, exactly what
//! libtorch holds: the receiver gets bit-identical values laid out as the sender had them (a
//! channels-last bf16 activation stays one, and crosses as 2 bytes per element). Both ends run the same
//! binary (runtime/mpi/session.rs checks it at start-up), so the format needs no version.
//!
//! Fields of type `Tensor`, `Vec<Tensor>`, `Named`, `Vec<Named>`, `Device` and `Network` take
//! `#[serde(with = "serial::tensor")]`, `serial::tensor_list`, `serial::named`, `serial::named_list`,
//! `serial::device` and `serial::network`.

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tch::{Kind, Tensor};

use crate::base::named::{Named, Snapshot};
use crate::model::{Description, Network};
use crate::precision::{is_channels_last, NCHW_FROM_NHWC, NHWC};

/// `message` as bytes, appended to `bytes` (a header may precede it).
pub fn append<T: Serialize>(message: &T, bytes: Vec<u8>) -> Vec<u8> {
    postcard::to_extend(message, bytes).unwrap_or_else(|e| panic!("a message without a byte form: {e}"))
}

/// `message` as bytes.
pub fn to_bytes<T: Serialize>(message: &T) -> Vec<u8> {
    append(message, Vec::new())
}

/// A message from its bytes; every byte must belong to it.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> anyhow::Result<T> {
    let (message, rest) = postcard::take_from_bytes(bytes).context("a message that does not read")?;
    if !rest.is_empty() {
        bail!("{} bytes left over after a message of {}", rest.len(), bytes.len() - rest.len());
    }
    Ok(message)
}

/// A message at the start of `bytes`, and the bytes after it.
pub fn take<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> anyhow::Result<(T, &'a [u8])> {
    postcard::take_from_bytes(bytes).context("a message that does not read")
}

/// The kinds that travel: what the network's variables, inputs, labels and masks are made of, and the
/// activations of bf16 mixed precision.
const KINDS: [Kind; 7] =
    [Kind::Float, Kind::Double, Kind::Int64, Kind::Bool, Kind::Uint8, Kind::Int, Kind::BFloat16];

/// A tensor as it travels.
#[derive(Serialize)]
struct TensorOut<'a> {
    kind: u8,
    channels_last: bool,
    shape: Vec<i64>,
    #[serde(with = "serde_bytes")]
    elements: &'a [u8],
}

/// A tensor as it arrives, its elements borrowed from the message.
#[derive(Deserialize)]
struct TensorIn<'a> {
    kind: u8,
    channels_last: bool,
    shape: Vec<i64>,
    #[serde(borrow, with = "serde_bytes")]
    elements: &'a [u8],
}

/// `Tensor` fields: kind, layout, shape and raw elements (copied to the CPU first).
pub mod tensor {
    use super::*;

    pub fn serialize<S: Serializer>(t: &Tensor, serializer: S) -> Result<S::Ok, S::Error> {
        let t = t.to_device(tch::Device::Cpu);
        let kind = t.kind();
        let code =
            KINDS.iter().position(|&k| k == kind).unwrap_or_else(|| panic!("no wire form for {kind:?}"));
        let channels_last = is_channels_last(&t);
        // (N, C, H, W) stored as (N, H, W, C) is that permutation, contiguous: its bytes in memory order.
        let stored = if channels_last { t.permute(NHWC).contiguous() } else { t.contiguous() };
        let mut elements = vec![0u8; stored.numel() * kind.elt_size_in_bytes()];
        stored.copy_data_u8(&mut elements, stored.numel());
        let form = TensorOut { kind: code as u8, channels_last, shape: t.size(), elements: &elements };
        form.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Tensor, D::Error> {
        let form = TensorIn::deserialize(deserializer)?;
        from_form(&form).map_err(serde::de::Error::custom)
    }

    fn from_form(form: &TensorIn) -> anyhow::Result<Tensor> {
        let kind =
            KINDS.get(form.kind as usize).copied().with_context(|| format!("tensor kind {}", form.kind))?;
        let shape = &form.shape;
        let numel = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?));
        let bytes = numel.and_then(|n| n.checked_mul(kind.elt_size_in_bytes()));
        if bytes != Some(form.elements.len()) {
            bail!("tensor shape {shape:?} of {kind:?} with {} bytes", form.elements.len());
        }
        if !form.channels_last {
            return Ok(Tensor::from_data_size(form.elements, shape, kind));
        }
        let [n, c, h, w] = shape[..] else { bail!("a channels-last tensor of shape {shape:?}, not 4-D") };
        Ok(Tensor::from_data_size(form.elements, &[n, h, w, c], kind).permute(NCHW_FROM_NHWC))
    }

    /// A borrowed tensor with a byte form, for maps and lists of them.
    pub struct Ref<'a>(pub &'a Tensor);

    impl Serialize for Ref<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serialize(self.0, serializer)
        }
    }

    /// An owned tensor read from its byte form.
    pub struct Owned(pub Tensor);

    impl<'de> Deserialize<'de> for Owned {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserialize(deserializer).map(Owned)
        }
    }
}

/// `Vec<Tensor>` fields.
pub mod tensor_list {
    use super::*;

    pub fn serialize<S: Serializer>(list: &[Tensor], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(list.iter().map(tensor::Ref))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Tensor>, D::Error> {
        Ok(Vec::<tensor::Owned>::deserialize(deserializer)?.into_iter().map(|t| t.0).collect())
    }
}

/// `Named` fields: a map from name to tensor.
pub mod named {
    use super::*;

    pub fn serialize<S: Serializer>(named: &Named, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(named.iter().map(|(name, t)| (name, tensor::Ref(t))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Named, D::Error> {
        let map = std::collections::BTreeMap::<String, tensor::Owned>::deserialize(deserializer)?;
        Ok(map.into_iter().map(|(name, t)| (name, t.0)).collect())
    }

    /// A borrowed `Named` with a byte form.
    pub struct Ref<'a>(pub &'a Named);

    impl Serialize for Ref<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serialize(self.0, serializer)
        }
    }

    pub struct Owned(pub Named);

    impl<'de> Deserialize<'de> for Owned {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserialize(deserializer).map(Owned)
        }
    }
}

/// `Vec<Named>` fields.
pub mod named_list {
    use super::*;

    pub fn serialize<S: Serializer>(list: &[Named], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(list.iter().map(named::Ref))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Named>, D::Error> {
        Ok(Vec::<named::Owned>::deserialize(deserializer)?.into_iter().map(|n| n.0).collect())
    }
}

/// `Snapshot` fields: its variables, then its momentum.
pub mod snapshot {
    use super::*;

    pub fn serialize<S: Serializer>(s: &Snapshot, serializer: S) -> Result<S::Ok, S::Error> {
        (named::Ref(&s.variables), named::Ref(&s.momentum)).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Snapshot, D::Error> {
        let (variables, momentum) = <(named::Owned, named::Owned)>::deserialize(deserializer)?;
        Ok(Snapshot { variables: variables.0, momentum: momentum.0 })
    }
}

/// `tch::Device` fields: the CUDA index, or none for the CPU.
pub mod device {
    use super::*;
    use tch::Device;

    pub fn serialize<S: Serializer>(device: &Device, serializer: S) -> Result<S::Ok, S::Error> {
        match device {
            Device::Cuda(i) => Some(*i),
            _ => None,
        }
        .serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Device, D::Error> {
        Ok(Option::<usize>::deserialize(deserializer)?.map_or(Device::Cpu, Device::Cuda))
    }
}

/// `Network` fields: the description the receiving rank builds the architecture from. An
/// architecture without one (defined in this process alone) has no byte form.
pub mod network {
    use super::*;

    pub fn serialize<S: Serializer>(network: &Network, serializer: S) -> Result<S::Ok, S::Error> {
        let Some(description) = network.description() else {
            return Err(serde::ser::Error::custom(format!(
                "{} is defined in this process alone: it cannot be built on another MPI rank",
                network.label()
            )));
        };
        description.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Network, D::Error> {
        Ok(Description::deserialize(deserializer)?.network())
    }
}

/// The byte form of every serde message.
pub trait Message: Sized {
    /// The whole message as bytes.
    fn to_bytes(&self) -> Vec<u8>;
    /// A message from its bytes; every byte must belong to it.
    fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self>;
}

impl<T: Serialize + DeserializeOwned> Message for T {
    fn to_bytes(&self) -> Vec<u8> {
        to_bytes(self)
    }

    fn from_bytes(bytes: &[u8]) -> anyhow::Result<Self> {
        from_bytes(bytes)
    }
}
