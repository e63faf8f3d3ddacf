//! PyTorch's fused AdamW (`torch.optim.AdamW(fused=True)`), the one libtorch operator warpnet calls
//! outside tch: `_fused_adamw_` updates every parameter and both moments in one pass over each
//! tensor, on the CPU and on CUDA, where the same update written as tch operations takes about ten
//! passes and three temporaries (RESULTS.md, "The step against PyTorch"). csrc/fused_adamw.cpp wraps it; build.rs compiles
//! that file against libtorch's headers.

use std::ffi::{c_char, c_int, c_void, CStr};

use tch::Tensor;

use super::AdamWSettings;

/// Longest libtorch error message kept, in bytes.
const ERROR_BYTES: usize = 1024;

extern "C" {
    /// csrc/fused_adamw.cpp. Every array holds `n` tch tensor handles (pointers to at::Tensor).
    fn warpnet_fused_adamw(
        params: *const *const c_void,
        grads: *const *const c_void,
        exp_avgs: *const *const c_void,
        exp_avg_sqs: *const *const c_void,
        steps: *const *const c_void,
        n: usize,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        error: *mut c_char,
        error_len: usize,
    ) -> c_int;
}

/// The moments of one fused update.
pub struct Moments<'a> {
    /// First moments m, one per parameter, updated in place.
    pub first: &'a [&'a Tensor],
    /// Second moments v, updated in place.
    pub second: &'a [&'a Tensor],
    /// The step t the update is (1 for the first), for the bias corrections.
    pub step: i64,
}

/// One AdamW step of `params` (updated in place) from `grads` (read only) at learning rate `lr`, every
/// parameter decayed by `settings.weight_decay`; all on one device and of one kind. Panics with libtorch's message where libtorch refuses (mismatched shapes or devices: a
/// bug of the caller, never an input error).
pub fn step(params: &[&Tensor], grads: &[&Tensor], moments: Moments<'_>, settings: AdamWSettings, lr: f64) {
    let n = params.len();
    assert!(
        grads.len() == n && moments.first.len() == n && moments.second.len() == n,
        "one gradient and two moments per parameter"
    );
    if n == 0 {
        return;
    }
    // PyTorch keeps each step count as a float tensor beside its parameter; the kernel reads it.
    let device = params[0].device();
    let step = Tensor::from(moments.step as f32).to_device(device);
    let steps = vec![&step; n];
    let handles = |tensors: &[&Tensor]| -> Vec<*const c_void> {
        tensors.iter().map(|t| t.as_ptr().cast::<c_void>()).collect()
    };
    let (p, g, m, v, s) =
        (handles(params), handles(grads), handles(moments.first), handles(moments.second), handles(&steps));
    let mut error = vec![0 as c_char; ERROR_BYTES];
    // SAFETY: every array holds n live tch tensor handles (borrowed for this call), which libtch
    // defines as pointers to at::Tensor; the function writes at most ERROR_BYTES bytes of `error`,
    // NUL-terminated, and keeps no pointer after it returns.
    let failed = unsafe {
        warpnet_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            s.as_ptr(),
            n,
            lr,
            settings.beta1,
            settings.beta2,
            settings.weight_decay,
            settings.eps,
            error.as_mut_ptr(),
            ERROR_BYTES,
        )
    } != 0;
    if failed {
        // SAFETY: the function NUL-terminated the message within the buffer.
        let message = unsafe { CStr::from_ptr(error.as_ptr()) }.to_string_lossy();
        panic!("libtorch's fused AdamW refused the update: {message}");
    }
}
