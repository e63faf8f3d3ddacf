//! Heap readings, alone in their process: libtorch's CPU allocations go to the one process heap, which
//! every thread of a test binary shares, so a test that measures what a pass keeps from the heap runs
//! in a binary with no other test allocating beside it (the grouped binaries run their tests two at a
//! time).

use warpnet::model::{NetConfig, Variant};
use warpnet::planner::profile::{self, Bench};
use warpnet::precision::Precision;

/// The bytes a profile says each pass keeps are measured from the heap: they must not count what the
/// busy neighbours allocate meanwhile (they share the heap). WarpNet1-13-1 at batch 4: the same bytes
/// with and without a busy neighbour (5%: a margin for the heap's own bookkeeping; a neighbour's
/// own pass at batch 4 keeps about as much as the measured one, so counting it would be 100% off), and
/// of a sensible size: a unit's pass keeps at least one (B, C, H, W) activation, more than its mask
/// pass alone.
#[test]
fn kept_bytes_are_measured_apart_from_busy_neighbours() {
    let config = NetConfig::warp(2, 1, 1, 10, Variant::Warpnet1);
    let measure = |busy_neighbours| {
        let bench = Bench { device: tch::Device::Cpu, threads: 1, busy_neighbours };
        profile::measure(&config, 4, Precision::Fp32, bench, 1)
    };
    let (alone, beside) = (measure(0), measure(1));
    assert_eq!(beside.busy_neighbours, 1);
    for (a, b) in alone.stages.iter().zip(&beside.stages) {
        for (x, y) in [(a.unit_kept_bytes, b.unit_kept_bytes), (a.tangent_kept_bytes, b.tangent_kept_bytes)] {
            assert!((x - y).abs() <= 0.05 * x, "kept {x} alone, {y} beside a busy neighbour");
        }
        assert!(a.unit_kept_bytes >= a.activation_bytes, "{a:?}");
        assert!(a.mask_kept_bytes < a.unit_kept_bytes, "{a:?}");
    }
}
