//! Training precision, `--precision fp32|bf16|auto`: a speed setting, never a different model.
//!
//! `bf16` is mixed precision as PyTorch's autocast does it: the convolutions and the linear head
//! compute in bfloat16; BatchNorm statistics (fp32 running buffers, fp32 accumulation), the loss and
//! softmax, the SGD update, the master weights and the momentum stay fp32; checkpoints stay fp32.
//!
//! How: the precision travels with the data. [`Precision::input`] casts the network's input images to
//! bf16 (and to channels-last memory, below), and every layer computes in the kind of its input:
//! `model/layers.rs` casts its fp32 master weights to that kind at each use (a no-op in fp32, and in
//! the float64 of the numerical proofs), BatchNorm takes a bf16 input with fp32 parameters and
//! statistics as PyTorch's mixed kernel does, and the loss widens the logits to fp32
//! (`model/loss.rs`). Autograd's cast nodes return fp32 gradients to the fp32 weights. Nothing is
//! thread-local: term workers, replicas and MPI ranks compute in bf16 because the x1 they are sent is
//! bf16, and an analysis that feeds float64 computes in float64 whatever a run trained in.
//! (tch's `autocast` reaches only libtorch's CUDA autocast, whose state is per thread; a C++ shim over
//! `at::autocast` for the CPU would need every worker thread and rank to enable it, and would cast
//! inside the numerical proofs too. Explicit casts in the two layers that compute are one line each.)
//!
//! Memory layout, measured (docs/speed.md "Memory layout, per precision and device") and chosen per precision and device: the
//! input is stored channels-last (NHWC) or NCHW, and convolutions, BatchNorm, ReLU, pooling and
//! concatenation keep that layout through the network. bf16 is channels-last everywhere: oneDNN's bf16
//! kernels and cuDNN's tensor cores prefer it (warpnet's bf16 step and PyTorch's alike measured faster
//! with it). fp32 is NCHW everywhere: channels-last measured slower on an AVX-512 CPU, and where
//! oneDNN's AVX2 kernels ran warpnet's fp32 step faster in it, their fp32 channels-last reductions are
//! serial: gradients off against float64 by two orders of magnitude more than NCHW's, and a step that
//! depends on the thread count, which fp32, the reference precision of every proof and comparison,
//! should not trade for speed. `warpnet bench --memory-format` measures the other choice.

use std::fmt;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

mod hardware;

/// What a user asks for (`--precision`, key `precision` of a config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionSetting {
    /// float32 everywhere.
    Fp32,
    /// Mixed precision: convolutions and the linear head in bfloat16 (emulated, and slow, on hardware
    /// without native bf16: a warning says so).
    Bf16,
    /// bf16 where it pays: on a GPU of compute capability 8.0 or later and a CPU with AMX-BF16; on a
    /// CPU with AVX512-BF16 alone, when the workload's kernel, timed, runs clearly faster in bf16
    /// (precision/hardware.rs); fp32 elsewhere.
    #[default]
    Auto,
}

/// What a run computes in, once `auto` is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Fp32,
    Bf16,
}

/// How activations are laid out in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryFormat {
    /// (B, C, H, W) contiguous, libtorch's default.
    Nchw,
    /// (B, C, H, W) stored as (B, H, W, C).
    ChannelsLast,
}

/// A precision decided for some devices, and why (the run's header prints it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub precision: Precision,
    /// What was asked for.
    pub setting: PrecisionSetting,
    /// What the devices have: "AMX-BF16 on this CPU", "cuda:0 has compute capability 9.0".
    pub hardware: String,
    /// bf16 on a device without native bf16: runs, many times slower than fp32.
    pub emulated: bool,
}

/// "bf16 (auto: AMX-BF16 on this CPU)", "bf16 (asked for; emulated: this CPU has neither ...)".
impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.setting, self.emulated) {
            (PrecisionSetting::Auto, _) => write!(f, "{} (auto: {})", self.precision, self.hardware),
            (PrecisionSetting::Fp32, _) => write!(f, "{} (asked for)", self.precision),
            (_, false) => write!(f, "{} (asked for; {})", self.precision, self.hardware),
            (_, true) => write!(f, "{} (asked for; emulated: {})", self.precision, self.hardware),
        }
    }
}

/// What a model's step is made of, for `auto`: on CPUs with bf16 lanes only, its kernel is what is
/// timed (precision/hardware.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// Convolutions (the WRN and WarpNets).
    Convolutions,
    /// Small matrix products among LayerNorms, softmaxes and GELUs (the byte-level GPT).
    Transformer,
}

impl PrecisionSetting {
    /// The precision for a run of `workload` whose steps compute on `devices`: `auto` is bf16 only
    /// where it pays on every one of them (precision/hardware.rs: the flags, and on CPUs whose bf16
    /// is vector lanes only, the workload's kernel timed).
    pub fn resolve(self, devices: &[Device], workload: Workload) -> Choice {
        let support = hardware::of(devices);
        let native = support.iter().all(|s| s.native);
        let (precision, why): (Precision, Vec<String>) = match self {
            PrecisionSetting::Fp32 | PrecisionSetting::Bf16 => {
                let precision =
                    if self == PrecisionSetting::Fp32 { Precision::Fp32 } else { Precision::Bf16 };
                (precision, support.iter().map(|s| s.describe().to_string()).collect())
            }
            PrecisionSetting::Auto => {
                let verdicts: Vec<_> = support.iter().map(|s| s.verdict(workload)).collect();
                let pays = verdicts.iter().all(|v| v.pays);
                (
                    if pays { Precision::Bf16 } else { Precision::Fp32 },
                    verdicts.into_iter().map(|v| v.why).collect(),
                )
            }
        };
        Choice {
            precision,
            setting: self,
            hardware: why.join("; "),
            emulated: precision == Precision::Bf16 && !native,
        }
    }
}

impl From<Precision> for PrecisionSetting {
    fn from(precision: Precision) -> Self {
        match precision {
            Precision::Fp32 => PrecisionSetting::Fp32,
            Precision::Bf16 => PrecisionSetting::Bf16,
        }
    }
}

impl Choice {
    /// The one-line warning for bf16 without native support (printed once by the command).
    pub fn warning(&self) -> Option<String> {
        self.emulated.then(|| {
            format!(
                "warning: --precision bf16 without native bf16 ({}): it runs, but emulated, many times slower \
                 than fp32 (8-16x measured on an AVX2 CPU); --precision auto picks fp32 here",
                self.hardware
            )
        })
    }
}

impl Precision {
    /// The kind the convolutions and the linear head compute in.
    pub fn kind(self) -> Kind {
        match self {
            Precision::Fp32 => Kind::Float,
            Precision::Bf16 => Kind::BFloat16,
        }
    }

    /// The layout this precision computes in on `device` (module docs): the same on every device
    /// measured, which the argument leaves room to change.
    pub fn memory_format(self, _device: Device) -> MemoryFormat {
        match self {
            Precision::Bf16 => MemoryFormat::ChannelsLast,
            Precision::Fp32 => MemoryFormat::Nchw,
        }
    }

    /// Network input images (B, C, H, W) in this precision's kind and layout on their device.
    pub fn input(self, images: &Tensor) -> Tensor {
        self.input_as(images, self.memory_format(images.device()))
    }

    /// Network input images (B, C, H, W) in this precision's kind and the given layout.
    pub fn input_as(self, images: &Tensor, format: MemoryFormat) -> Tensor {
        let cast = images.to_kind(self.kind());
        match format {
            MemoryFormat::Nchw => cast.contiguous(),
            MemoryFormat::ChannelsLast => channels_last(&cast),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        })
    }
}

/// The permutation (N, C, H, W) -> (N, H, W, C), and its inverse.
pub const NHWC: [i64; 4] = [0, 2, 3, 1];
pub const NCHW_FROM_NHWC: [i64; 4] = [0, 3, 1, 2];

/// The same (N, C, H, W) tensor stored as (N, H, W, C): strides that libtorch reads as channels-last
/// (tch has no memory-format argument). The tensor itself when it is stored so already.
pub fn channels_last(t: &Tensor) -> Tensor {
    if is_channels_last(t) {
        return t.shallow_clone();
    }
    if t.dim() != 4 {
        return t.contiguous(); // a layout of images (B, C, H, W) only: tokens and sequences as they are
    }
    t.permute(NHWC).contiguous().permute(NCHW_FROM_NHWC)
}

/// Whether a 4-D tensor is stored densely as (N, H, W, C).
pub fn is_channels_last(t: &Tensor) -> bool {
    let size = t.size();
    if size.len() != 4 {
        return false;
    }
    let (c, h, w) = (size[1], size[2], size[3]);
    t.stride() == [h * w * c, 1, w * c, c]
}
