//! MPI's collectives under the executor, launched for real (loopback, oversubscribed): data-parallel
//! replicas on 2, 3, 4 and 6 ranks and the hybrid of 2 replicas x 2 and x 3 term workers sum their
//! gradients with MPI's all-reduce over their homes, and must take the same step as the same layout on
//! threads of one process, whose coordinator sums the gradients itself (tolerance: tests/parallel/mpi.rs,
//! float32 sums in another order). A rank that hangs or dies in the all-reduce stops the job, named.
#![cfg(feature = "mpi")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::mpi::{assert_same_step, bench_over, job, mpirun, one_step, run, BIN};

/// The placement of every term on one device: whole replicas, as many as there are ranks.
const WHOLE: &str = "[F1,F2,F2'x1]";

#[test]
fn data_parallel_and_hybrid_over_ranks_equal_threads() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let layouts = [
        (2, WHOLE),
        (3, WHOLE),
        (4, WHOLE),
        (6, WHOLE),
        (4, "[F1,F2'x1],[F2]"),   // 2 replicas x 2 term workers
        (6, "[F1],[F2],[F2'x1]"), // 2 replicas x 3 term workers
    ];
    for (ranks, placement) in layouts {
        let name = |on: &str| dir.join(format!("{on}-{ranks}-{}", placement.len()));
        let over_ranks = name("mpi");
        run(mpirun(ranks, &[]).args(one_step(&over_ranks, &["--devices", "mpi", "--placement", placement])));
        let threads = name("threads");
        let devices = format!("cpu:{ranks}");
        let flags = ["--devices", devices.as_str(), "--placement", placement];
        run(Command::new(BIN).args(one_step(&threads, &flags)));
        assert_same_step(&over_ranks, &threads);
    }
}

/// A training over 3 ranks with `placement` in which rank `rank` hangs or dies (`fault`) as it comes
/// to its `call`-th collective; the job's exit code and stderr, after checking it stopped in time: the
/// 4 s timeout, the 1 s the others give the silent rank to answer, and room for start-up on a loaded
/// host.
fn fault_in_a_collective(placement: &str, rank: usize, call: usize, fault: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = mpirun(3, &["--mpi-timeout", "4"])
        .args(job(&dir.path().join("run"), 100, &["--devices", "mpi", "--placement", placement]))
        .env("WARPNET_MPI_FAULT", format!("{rank}:{call}:{fault}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(90), "the job took {took:?}");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn rank_hung_in_the_all_reduce_is_named_and_the_job_stops() {
    // Its third step's all-reduce.
    let (code, stderr) = fault_in_a_collective(WHOLE, 2, 3, "hang");
    assert_eq!(code, Some(3), "exit code of a failed rank:\n{stderr}");
    let named = "error: MPI rank 2 did not take part in the all-reduce of the replicas' gradients within 4 s";
    assert!(stderr.contains(named), "the line names rank 2 alone:\n{stderr}");
}

#[test]
fn rank_killed_in_the_all_reduce_stops_the_job() {
    // mpirun notices the dead rank and ends the others.
    let (code, stderr) = fault_in_a_collective(WHOLE, 1, 3, "die");
    assert_ne!(code, Some(0), "the job fails:\n{stderr}");
    assert!(stderr.contains("rank 1"), "the message names rank 1:\n{stderr}");
}

/// One replica over 3 ranks: the worker of rank 2 takes part in 2 collectives per warp layer and
/// direction (the broadcast, the reduction); its 5th is the third layer's broadcast of x1, which the
/// home waits in, and rank 1 then in the reduction after it: whichever times out first names rank 2.
#[test]
fn rank_hung_in_a_replica_groups_collectives_is_named_and_the_job_stops() {
    let (code, stderr) = fault_in_a_collective("[F1],[F2],[F2'x1]", 2, 5, "hang");
    assert_eq!(code, Some(3), "exit code of a failed rank:\n{stderr}");
    let named = "error: MPI rank 2 did not take part in the";
    assert!(stderr.contains(named), "the line names rank 2 alone:\n{stderr}");
}

/// Data parallelism over 4 ranks, batch 32: every rank hands its gradients (G bytes, the network's
/// parameters in float32) to one all-reduce and receives their sum, so each rank's bytes are its
/// images plus 2G, whatever the number of replicas; on the wire, Open MPI's reduce-scatter + all-gather
/// moves 3/4 G each way per half (parallel/mpi/algorithms.rs). Headers add a few hundred bytes: 1%.
#[test]
fn data_parallel_ranks_each_move_their_images_and_one_all_reduce() {
    let (_, json) = bench_over(4, &["--model", "wrn", "--k", "1", "--batch", "32"], "fp32");
    let gradients = json["runs"][0]["memory"][0]["optimizer"].as_f64().unwrap(); // G: momentum = parameters
    let traffic = &json["runs"][1]["traffic"];
    assert_eq!(traffic["all_reduce"], "reduce-scatter + all-gather", "{traffic}");
    let per_rank = |key: &str| -> Vec<f64> {
        traffic[key].as_array().unwrap().iter().map(|b| b.as_f64().unwrap()).collect()
    };
    let shard = 8.0 * (3.0 * 32.0 * 32.0 * 4.0 + 8.0); // 8 images (fp32) and their int64 labels
    let close = |got: f64, expected: f64, what: &str| {
        assert!((got - expected).abs() <= 0.01 * expected, "{what}: {got} vs {expected}\n{traffic}")
    };
    let (bytes, wire) = (per_rank("rank_bytes"), per_rank("rank_wire_bytes"));
    assert_eq!(bytes.len(), 4, "{traffic}");
    close(bytes[0], 3.0 * shard + 2.0 * gradients, "rank 0's bytes");
    close(wire[0], 3.0 * shard + 3.0 * gradients, "rank 0's wire bytes");
    for r in 1..4 {
        close(bytes[r], shard + 2.0 * gradients, &format!("rank {r}'s bytes"));
        close(wire[r], shard + 3.0 * gradients, &format!("rank {r}'s wire bytes"));
    }
    let predicted = traffic["predicted_bytes"].as_f64().unwrap();
    close(traffic["bytes"].as_f64().unwrap(), predicted, "the job's bytes against the layout's");
    assert_eq!(per_rank("rank_mpi_ms").len(), 4, "{traffic}");
}
