//! What a device offers bf16, and whether bf16 pays there: the facts `--precision auto` decides on.
//!
//! Flags decide where they can: no native bf16 -> fp32; matrix units (AMX tiles, a GPU's tensor cores)
//! -> bf16. Between the two, a CPU whose bf16 is vector lanes only (AVX512-BF16 without AMX), a flag
//! does not tell: with the same oneDNN build and the same flags, an AMD EPYC ran WRN convolutions
//! 1.4-2x and the byte-level GPT's step 1.8x faster in bf16 than in fp32, an Intel Xeon ran them about
//! 1.5x and 1.6x slower (docs/speed.md, RESULTS.md). There the workload's kernel is timed in both
//! precisions once per process (a 3x3 convolution; a transformer's MLP) and bf16 is taken only when it
//! is clearly faster.

use std::sync::OnceLock;
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use super::{Precision, Workload};

/// `auto` takes bf16 on lanes-only CPUs when the workload's kernel runs at least this many times as
/// fast in bf16 as in fp32: a tie, or a difference of the size of this machine's noise, keeps fp32,
/// the reference precision of every proof and comparison.
const MIN_BF16_SPEEDUP: f64 = 1.1;

/// Whether a device computes bf16 natively, whether it has matrix units for it, and what was found.
pub(super) struct Bf16Support {
    pub(super) native: bool,
    /// bf16 matrix products on units of their own (AMX tiles, tensor cores), not vector lanes.
    matrix_units: bool,
    what: String,
}

/// What each distinct device of `devices` offers (the CPU's when none is named).
pub(super) fn of(devices: &[Device]) -> Vec<Bf16Support> {
    unique(devices).into_iter().map(bf16_support).collect()
}

fn unique(devices: &[Device]) -> Vec<Device> {
    let mut seen: Vec<Device> = Vec::new();
    for &device in devices {
        if !seen.contains(&device) {
            seen.push(device);
        }
    }
    if seen.is_empty() {
        seen.push(Device::Cpu);
    }
    seen
}

/// Whether bf16 pays for a workload on one device, and the header's words for why.
pub(super) struct Verdict {
    pub(super) pays: bool,
    pub(super) why: String,
}

impl Bf16Support {
    /// What the device offers, for a precision that was asked for rather than decided.
    pub(super) fn describe(&self) -> &str {
        &self.what
    }

    /// Whether bf16 pays for `workload` here; on a lanes-only CPU, times its kernel (module docs).
    pub(super) fn verdict(&self, workload: Workload) -> Verdict {
        match self.native && !self.matrix_units {
            true => lanes_verdict(&self.what, workload, bf16_speedup(workload)),
            false => Verdict { pays: self.native, why: self.what.clone() },
        }
    }
}

/// The verdict for `workload` on a lanes-only CPU whose kernel ran `speedup` times as fast in bf16
/// as in fp32.
fn lanes_verdict(what: &str, workload: Workload, speedup: f64) -> Verdict {
    // Decided on the ratio as the header prints it, two decimals, so that the line and the choice agree.
    let speedup = (speedup * 100.0).round() / 100.0;
    let pays = speedup >= MIN_BF16_SPEEDUP;
    let than = if pays { "" } else { ", below the 1.1x that bf16 needs" };
    let kernel = kernel_name(workload);
    Verdict { pays, why: format!("{what}; {kernel} ran {speedup:.2}x as fast in bf16 as in fp32 here{than}") }
}

/// What is timed for a workload, in the header's words.
fn kernel_name(workload: Workload) -> &'static str {
    match workload {
        Workload::Convolutions => "a 3x3 convolution",
        Workload::Transformer => "an MLP (linear, GELU, linear)",
    }
}

/// How many times as fast `workload`'s kernel runs forward and backward in bf16 as in fp32 on this
/// CPU with the threads set now: timed once per process and workload (about 0.1 s), the two
/// precisions interleaved, each the fastest of a few repeats after one that lets oneDNN build its
/// kernels.
fn bf16_speedup(workload: Workload) -> f64 {
    const REPEATS: usize = 5;
    static CONVOLUTION: OnceLock<f64> = OnceLock::new();
    static MLP: OnceLock<f64> = OnceLock::new();
    let (cell, time): (_, fn(Precision) -> f64) = match workload {
        Workload::Convolutions => (&CONVOLUTION, time_convolution),
        Workload::Transformer => (&MLP, time_mlp),
    };
    *cell.get_or_init(|| {
        let (mut fp32, mut bf16) = (f64::INFINITY, f64::INFINITY);
        for repeat in 0..=REPEATS {
            let (a, b) = (time(Precision::Fp32), time(Precision::Bf16));
            if repeat > 0 {
                (fp32, bf16) = (fp32.min(a), bf16.min(b));
            }
        }
        fp32 / bf16
    })
}

// The two kernels compute as the networks do in `precision`: the input in the precision's kind (and
// layout), fp32 weights cast at use. Their values are fixed, so the seeded generator is not drawn
// from and a run's weights do not depend on the timing.

/// Fixed values, `n` of them.
fn pattern(n: i64) -> Tensor {
    Tensor::arange(n, (Kind::Float, Device::Cpu)).sin()
}

/// Seconds for one forward and backward of a 3x3 convolution.
fn time_convolution(precision: Precision) -> f64 {
    // (B, C, H, W): a WRN's middle stage at a small batch; weights (C, C, 3, 3).
    const SHAPE: [i64; 4] = [32, 32, 16, 16];
    let channels = SHAPE[1];
    let x = precision.input(&pattern(SHAPE.iter().product()).view(SHAPE)).set_requires_grad(true);
    let weight = pattern(channels * channels * 9).view([channels, channels, 3, 3]).set_requires_grad(true);
    let start = Instant::now();
    let y = x.conv2d(&weight.to_kind(x.kind()), None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
    y.sum(Kind::Float).backward();
    start.elapsed().as_secs_f64()
}

/// Seconds for one forward and backward of a transformer's MLP, W_2 GELU(W_1 x).
fn time_mlp(precision: Precision) -> f64 {
    // (tokens, D): 8 sequences of 128 bytes of the default GPT's width; hidden 4D as its MLP's.
    const TOKENS: i64 = 1024;
    const WIDTH: i64 = 128;
    const HIDDEN: i64 = 4 * WIDTH;
    let x = pattern(TOKENS * WIDTH).view([TOKENS, WIDTH]).to_kind(precision.kind()).set_requires_grad(true);
    let fc = pattern(HIDDEN * WIDTH).view([HIDDEN, WIDTH]).set_requires_grad(true);
    let proj = pattern(WIDTH * HIDDEN).view([WIDTH, HIDDEN]).set_requires_grad(true);
    let start = Instant::now();
    let h = x.linear::<Tensor>(&fc.to_kind(x.kind()), None).gelu("none");
    let y = h.linear::<Tensor>(&proj.to_kind(x.kind()), None);
    y.sum(Kind::Float).backward();
    start.elapsed().as_secs_f64()
}

fn bf16_support(device: Device) -> Bf16Support {
    match device {
        Device::Cuda(i) => gpu_bf16(i),
        _ => cpu_bf16(),
    }
}

/// AMX-BF16 or AVX512-BF16 on x86-64 (what oneDNN's native bf16 kernels need), BF16 on AArch64.
fn cpu_bf16() -> Bf16Support {
    #[cfg(target_arch = "x86_64")]
    {
        // CPUID leaf 7: subleaf 0 EDX bit 22 is AMX-BF16 (std's detection of it is not stable yet);
        // AVX512-BF16 (subleaf 1 EAX bit 5) through std, which also checks the OS saves ZMM state.
        const AMX_BF16_BIT: u32 = 1 << 22;
        let amx = std::arch::x86_64::__cpuid_count(7, 0).edx & AMX_BF16_BIT != 0;
        let avx512 = std::arch::is_x86_feature_detected!("avx512bf16");
        let what = match (amx, avx512) {
            (true, _) => "AMX-BF16 on this CPU",
            (false, true) => "AVX512-BF16 on this CPU",
            (false, false) => "this CPU has neither AMX-BF16 nor AVX512-BF16",
        };
        Bf16Support { native: amx || avx512, matrix_units: amx, what: what.into() }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let native = std::arch::is_aarch64_feature_detected!("bf16");
        let what = if native { "BF16 on this CPU" } else { "this CPU has no BF16 instructions" };
        // BF16 includes BFMMLA, a matrix-multiply instruction: counted as matrix units.
        Bf16Support { native, matrix_units: native, what: what.into() }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        Bf16Support {
            native: false,
            matrix_units: false,
            what: "no native bf16 known for this CPU architecture".into(),
        }
    }
}

/// Compute capability 8.0 (Ampere) or later: bf16 tensor cores.
fn gpu_bf16(index: usize) -> Bf16Support {
    const BF16_MAJOR: i32 = 8;
    match compute_capability(index) {
        Some((major, minor)) => Bf16Support {
            native: major >= BF16_MAJOR,
            matrix_units: major >= BF16_MAJOR,
            what: format!("cuda:{index} has compute capability {major}.{minor}"),
        },
        None => Bf16Support {
            native: false,
            matrix_units: false,
            what: format!("cuda:{index}: compute capability unknown"),
        },
    }
}

/// (major, minor) from the CUDA runtime that libtorch's CUDA half loaded (tch does not expose it).
fn compute_capability(index: usize) -> Option<(i32, i32)> {
    // cudaDeviceAttr values of cudaDevAttrComputeCapabilityMajor and ...Minor (CUDA runtime API).
    const MAJOR: i32 = 75;
    const MINOR: i32 = 76;
    type GetAttribute = unsafe extern "C" fn(*mut i32, i32, i32) -> i32;
    let names = [c"libcudart.so.13", c"libcudart.so.12", c"libcudart.so"];
    // SAFETY: dlopen/dlsym with valid C strings; the handle stays open for the process, and the
    // symbol has the runtime API's signature cudaError_t (int *value, cudaDeviceAttr attr, int device).
    unsafe {
        let handle = names.iter().map(|n| libc::dlopen(n.as_ptr(), libc::RTLD_NOW)).find(|h| !h.is_null())?;
        let symbol = libc::dlsym(handle, c"cudaDeviceGetAttribute".as_ptr());
        if symbol.is_null() {
            return None;
        }
        let get: GetAttribute = std::mem::transmute(symbol);
        let (mut major, mut minor) = (0, 0);
        let device = i32::try_from(index).ok()?;
        let ok = get(&mut major, MAJOR, device) == 0 && get(&mut minor, MINOR, device) == 0;
        ok.then_some((major, minor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LANES: &str = "AVX512-BF16 on this CPU";
    const WORKLOADS: [Workload; 2] = [Workload::Convolutions, Workload::Transformer];

    /// The threshold decides on the ratio as printed, and the header says what was measured: 1.79x on
    /// an AMD EPYC -> bf16, 0.65x on an Intel Xeon -> fp32, noise below 1.1x -> fp32; 1.096 prints
    /// as 1.10 and takes bf16, 1.094 prints as 1.09 and does not.
    #[test]
    fn lanes_take_bf16_only_when_the_kernel_is_clearly_faster() {
        for workload in WORKLOADS {
            let cases =
                [(1.79, true), (MIN_BF16_SPEEDUP, true), (1.096, true), (1.094, false), (0.65, false)];
            for (speedup, pays) in cases {
                let verdict = lanes_verdict(LANES, workload, speedup);
                assert_eq!(verdict.pays, pays, "{speedup}x");
                let ran = format!("{} ran {speedup:.2}x as fast in bf16", kernel_name(workload));
                assert!(verdict.why.contains(&ran), "{}", verdict.why);
                assert_eq!(verdict.why.contains("below"), !pays, "{}", verdict.why);
            }
        }
    }

    /// Flags decide without a timing where they can.
    #[test]
    fn flags_decide_matrix_units_and_no_bf16() {
        let amx = Bf16Support { native: true, matrix_units: true, what: "AMX-BF16 on this CPU".into() };
        let none = Bf16Support { native: false, matrix_units: false, what: "neither".into() };
        for workload in WORKLOADS {
            let (with_amx, without) = (amx.verdict(workload), none.verdict(workload));
            assert!(with_amx.pays && !without.pays);
            assert!(!with_amx.why.contains(" ran ") && !without.why.contains(" ran "), "no timing");
        }
    }

    /// Each timing: both precisions run and give a finite, positive ratio, the same on a second ask
    /// (decided once per process), and the global generator is left as it was.
    #[test]
    fn each_timing_is_decided_once_and_draws_nothing() {
        for workload in WORKLOADS {
            tch::manual_seed(7);
            let before = Tensor::randn([4], (Kind::Float, Device::Cpu));
            tch::manual_seed(7);
            let speedup = bf16_speedup(workload);
            let after = Tensor::randn([4], (Kind::Float, Device::Cpu));
            assert!(speedup.is_finite() && speedup > 0.0, "{speedup}");
            assert_eq!(bf16_speedup(workload), speedup);
            assert!(before.equal(&after), "the timing drew from the seeded generator");
        }
    }
}
