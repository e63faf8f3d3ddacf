//! Counts of the expensive forward operations, per thread: 3x3 convolutions and ReLU masks taken for a
//! tangent pass. They prove that a warp layer runs each unit's primal pass once however many terms use
//! it (tests/numerics/warp_reuse.rs) and let `warpnet bench --count` print what a step computes.
//!
//! Thread-local, so counts from concurrent tests or workers never mix; one thread-local increment per
//! convolution is nothing next to the convolution.

use std::cell::Cell;

thread_local! {
    static CONVOLUTIONS: Cell<u64> = const { Cell::new(0) };
    static MASKS: Cell<u64> = const { Cell::new(0) };
}

/// What this thread has computed since [`reset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct OpCount {
    /// 3x3 convolutions run forward (stem, primal and tangent passes, the released map).
    pub convolutions: u64,
    /// ReLU masks taken at a primal point for a tangent pass.
    pub masks: u64,
}

pub(crate) fn convolutions_add(n: u64) {
    CONVOLUTIONS.with(|c| c.set(c.get() + n));
}

pub(crate) fn masks_add(n: u64) {
    MASKS.with(|c| c.set(c.get() + n));
}

/// Zeroes this thread's counts.
pub fn reset() {
    CONVOLUTIONS.with(|c| c.set(0));
    MASKS.with(|c| c.set(0));
}

/// This thread's counts since the last [`reset`].
pub fn read() -> OpCount {
    OpCount { convolutions: CONVOLUTIONS.with(Cell::get), masks: MASKS.with(Cell::get) }
}
