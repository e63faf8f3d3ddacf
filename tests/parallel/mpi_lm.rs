//! The language model over two MPI ranks (`mpirun -np 2`, loopback) trains as it does on one device:
//! a split F2'x1 (each rank's half reads the MLP's linearisation, whose rows live on the other rank
//! for one half) and an output sent across (F1 on one rank, F2'F1 reading it on the other). Three
//! AdamW steps against the same steps in one process on one thread; the tolerance is mpi.rs's: float32
//! in another association order, where a lost or doubled term moves the weights by percent.
//!
//! One part of the weights is left out: the key projection's bias. Its gradient is zero in exact
//! arithmetic (the softmax ignores a shift shared by every key, and q . b_k is one), so what it holds
//! is float32 rounding of size ~1e-9, which AdamW divides by its own root mean square plus 1e-8 and
//! turns into steps of up to ~lr: its value after training depends on the order of additions alone.
#![cfg(feature = "mpi")]

use std::process::Command;

use tch::Tensor;

use super::mpi::{assert_same_step_of, mpirun, run, BIN};
use crate::binary::{lm_args, tiny_corpus};

fn lm_over_two_ranks_matches_one_device(variant: &str, norm_tangent: &str, placement: &str) {
    let dir = tempfile::tempdir().unwrap();
    let corpus = tiny_corpus(dir.path(), 4_000);
    let (over_ranks, alone) = (dir.path().join("mpi"), dir.path().join("one-device"));
    // Three steps with the learning rate up at once (a warm-up of one step), so every step moves.
    let settings = ["--variant", variant, "--norm-tangent", norm_tangent, "--warmup", "1"];
    let job =
        |out: &std::path::Path| lm_args(&corpus, 3, 3, out).into_iter().chain(settings.map(String::from));
    run(mpirun(2, &[]).args(job(&over_ranks)).args(["--devices", "mpi", "--placement", placement]));
    run(Command::new(BIN).args(job(&alone)));
    assert_same_step_of(&over_ranks, &alone, without_key_bias);
}

/// The query and value parts of the qkv bias (laid out [q; k; v]), every other tensor whole.
fn without_key_bias(name: &str, tensor: Tensor) -> Tensor {
    if !name.ends_with("attn.qkv.bias") {
        return tensor;
    }
    let parts = tensor.chunk(3, 0);
    Tensor::cat(&[&parts[0], &parts[2]], 0)
}

/// With LayerNorm's statistics frozen in the tangent (v -> gamma v / sigma), so that the split
/// M'(x1) x1 is not small: the exact LayerNorm ignores its input's scale and makes it ~1e-4 of
/// M'(x1) v, where a lost piece could hide in the tolerance.
#[test]
fn lm_with_a_split_term_over_two_ranks_equals_one_device() {
    lm_over_two_ranks_matches_one_device("warpnet1", "frozen", "[F1,F2'x1:0.5],[F2,F2'x1:0.5]");
}

#[test]
fn lm_with_an_output_sent_between_ranks_equals_one_device() {
    lm_over_two_ranks_matches_one_device("warpnet2", "exact", "[F1],[F2,F2'F1]");
}
