//! MPI's collectives over a group of ranks (the homes of a job's replicas, a replica's home and its
//! workers' ranks), every wait bounded by the job's timeout.
//!
//! A group is an MPI communicator of its members alone, made by `MPI_Comm_create_group`, which only
//! its members call. That call blocks, so the members first meet through the group's first member by
//! bounded messages (transport.rs): a silent member is named there, and the creation that follows
//! finds every member present.
//!
//! The collectives are MPI's non-blocking ones (`MPI_Iallreduce`, `MPI_Ibcast`, `MPI_Ireduce`)
//! polled until they complete, as transport.rs polls its messages (no blocking call that spins a core). A collective cannot tell
//! which member keeps it waiting, so when one runs out of time this rank asks every other member how
//! many of the group's collectives it has entered (a small message, answered from any wait of any
//! rank: transport::answer_queries). The members that do not answer, or else those that have not
//! reached this collective, are named, and the job stops.

use std::cell::Cell;
use std::time::Instant;

use mpi::collective::{CommunicatorCollectives, Operation, Root, SystemOperation, UnsafeUserOperation};
use mpi::datatype::Equivalence;
use mpi::request::{Request, Scope};
use mpi::topology::{Communicator, Group as _, SimpleCommunicator};

use super::algorithms::{AllReduce, Broadcast, Reduce};
use super::stats;
use super::transport::{self, Count, Tag};
use super::Members;

/// Tags of the meeting before a group is made: each member to the first (`JOIN_BASE + 2 id`), then
/// the first to each (`+ 1`). Above every message tag of remote.rs, below MPI's least tag bound.
const JOIN_BASE: Tag = 1 << 14;
/// Tag of `MPI_Comm_create_group` for group `id`: `CREATE_BASE + id` (concurrent creations differ).
const CREATE_BASE: Tag = 1 << 15;

/// Test hook: `WARPNET_MPI_FAULT=<rank>:<call>:<hang|die>` makes rank `<rank>` hang for good, or die
/// (SIGKILL), as it comes to its `<call>`-th collective (1-based), so that the others wait in that
/// collective for it (tests/parallel/mpi_collectives.rs).
const FAULT_VARIABLE: &str = "WARPNET_MPI_FAULT";

fn injected_fault(call: u64) {
    let Ok(fault) = std::env::var(FAULT_VARIABLE) else { return };
    let parts: Vec<&str> = fault.split(':').collect();
    let at = |i: usize| parts.get(i).and_then(|p| p.parse::<u64>().ok());
    if at(0) != Some(transport::rank() as u64) || at(1) != Some(call) {
        return;
    }
    if parts.get(2) == Some(&"die") {
        // SAFETY: raise(3) with SIGKILL ends this process, as a crash would.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    loop {
        std::thread::park(); // no one unparks this thread: a rank that hangs
    }
}

/// MPI's reduction operation on bfloat16 elements (their u16 bits): `inout[i] = in[i] + inout[i]`.
unsafe extern "C" fn sum_bf16(
    input: *mut std::ffi::c_void,
    inout: *mut std::ffi::c_void,
    len: *mut std::ffi::c_int,
    _kind: *mut mpi::ffi::MPI_Datatype,
) {
    // SAFETY: MPI passes two buffers of `*len` elements of the datatype reduced, u16 here.
    let (input, inout) = unsafe {
        let n = *len as usize;
        (
            std::slice::from_raw_parts(input as *const u16, n),
            std::slice::from_raw_parts_mut(inout as *mut u16, n),
        )
    };
    for (a, b) in input.iter().zip(inout) {
        *b = bf16_bits(bf16_value(*a) + bf16_value(*b));
    }
}

fn bf16_value(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// The bfloat16 nearest `value`, ties to even (as libtorch rounds); NaN stays NaN.
fn bf16_bits(value: f32) -> u16 {
    if value.is_nan() {
        return 0x7FC0; // libtorch's bfloat16 NaN
    }
    let bits = value.to_bits();
    let round = 0x7FFF + ((bits >> 16) & 1); // below half goes down, above up, a tie to the even one
    (bits.wrapping_add(round) >> 16) as u16
}

/// A communicator of a group's members, from one member's side.
pub struct Group {
    comm: SimpleCommunicator,
    members: Members,
    /// This rank's position in the group.
    position: usize,
    /// Collectives this rank has entered on the group.
    calls: Cell<u64>,
}

impl Group {
    /// The group of `members` (this rank among them); every member calls this with the same members.
    pub fn new(members: &Members) -> Group {
        let me = transport::rank();
        let position = members.ranks.iter().position(|&r| r == me).expect("this rank is a member");
        let (first, timeout) = (members.ranks[0], super::timeout());
        let join = JOIN_BASE + 2 * members.id as Tag;
        if position == 0 {
            let others = &members.ranks[1..];
            others.iter().for_each(|&m| drop(transport::receive(m, join, timeout, Count::Aside)));
            others.iter().for_each(|&m| transport::send(m, join + 1, &[], timeout, Count::Aside));
        } else {
            transport::send(first, join, &[], timeout, Count::Aside);
            transport::receive(first, join + 1, timeout, Count::Aside);
        }
        let world = transport::world();
        let ranks: Vec<i32> = members.ranks.iter().map(|&r| r as i32).collect();
        let group = world.group().include(&ranks);
        let comm = world
            .split_by_subgroup_with_tag(&group, CREATE_BASE + members.id as Tag)
            .expect("a member of the group gets its communicator");
        debug_assert_eq!(comm.rank() as usize, position);
        Group { comm, members: members.clone(), position, calls: Cell::new(0) }
    }

    /// Sums `values` element by element over the members, in place on each; `what` names the sum in
    /// the line that stops the job if a member does not take part within the timeout.
    pub fn all_reduce_sum(&self, values: &mut [f32], what: &str) {
        let (call, started) = (self.enter(), Instant::now());
        let mine = values.to_vec(); // MPI_IN_PLACE would make libnbc take the binomial tree at any size
        mpi::request::scope(|scope| {
            let sum = SystemOperation::sum();
            self.wait(self.comm.immediate_all_reduce_into(scope, &mine[..], &mut *values, sum), call, what)
        });
        let bytes = std::mem::size_of_val(values) as u64;
        let (sent, received) = AllReduce::chosen(self.size(), bytes).wire(self.size(), self.position, bytes);
        stats::collective(bytes, bytes, sent + received, started.elapsed());
    }

    /// The group's first member's `bytes` to every other member, into their `bytes` (as long).
    pub fn broadcast(&self, bytes: &mut [u8], what: &str) {
        let (call, started) = (self.enter(), Instant::now());
        let root = self.comm.process_at_rank(0);
        mpi::request::scope(|scope| self.wait(root.immediate_broadcast_into(scope, &mut *bytes), call, what));
        let n = bytes.len() as u64;
        let (sent, received) = Broadcast::chosen(self.size()).wire(self.size(), self.position, n);
        let handed = if self.position == 0 { (n, 0) } else { (0, n) };
        stats::collective(handed.0, handed.1, sent + received, started.elapsed());
    }

    /// Sums `values` (float32) over the members into the first member's `values` (the others' stay).
    pub fn reduce_sum_f32(&self, values: &mut [f32], what: &str) {
        self.reduce(values, SystemOperation::sum(), what)
    }

    /// Sums `values` (bfloat16, as their bits) over the members into the first member's, each pair
    /// added as libtorch adds bfloat16: in float32, rounded to the nearest even bfloat16.
    pub fn reduce_sum_bf16(&self, values: &mut [u16], what: &str) {
        // SAFETY: `sum_bf16` reads and writes `len` u16 elements of the buffers MPI hands it.
        let op = unsafe { UnsafeUserOperation::commutative(sum_bf16) };
        self.reduce(values, &op, what)
    }

    fn reduce<T: Equivalence + Clone, O: Operation>(&self, values: &mut [T], op: O, what: &str) {
        let (call, started) = (self.enter(), Instant::now());
        let mine = values.to_vec();
        let root = self.comm.process_at_rank(0);
        mpi::request::scope(|scope| match self.position {
            0 => self.wait(root.immediate_reduce_into_root(scope, &mine[..], &mut *values, op), call, what),
            _ => self.wait(root.immediate_reduce_into(scope, &mine[..], op), call, what),
        });
        let n = std::mem::size_of_val(values) as u64;
        let (sent, received) = Reduce::wire(self.size(), self.position, n);
        let handed = if self.position == 0 { (n, n) } else { (n, 0) };
        stats::collective(handed.0, handed.1, sent + received, started.elapsed());
    }

    /// Whether this rank is the group's first member (the root of its broadcasts and reductions).
    pub fn is_root(&self) -> bool {
        self.position == 0
    }

    fn size(&self) -> usize {
        self.members.ranks.len()
    }

    /// Counts the collective this rank now enters (and fails it here if a test asks so).
    fn enter(&self) -> u64 {
        let call = self.calls.get() + 1;
        self.calls.set(call);
        injected_fault(call);
        transport::entering(self.members.id, call);
        call
    }

    /// Polls `request` (collective `call`) until it completes; stops the job if it does not in time.
    fn wait<'a, D: ?Sized, S: Scope<'a>>(&self, request: Request<'a, D, S>, call: u64, what: &str) {
        if let Err(_unfinished) = transport::completes(request, super::timeout()) {
            self.stop_naming_the_silent(call, what);
        }
    }

    /// Stops the job after collective `call` ran out of time, naming the members that keep it waiting.
    fn stop_naming_the_silent(&self, call: u64, what: &str) -> ! {
        let me = transport::rank();
        let others: Vec<usize> = self.members.ranks.iter().copied().filter(|&r| r != me).collect();
        let answers = transport::ask_how_far(&others, self.members.id);
        let silent: Vec<usize> = others.iter().copied().filter(|r| !answers.contains_key(r)).collect();
        let behind: Vec<usize> = answers.iter().filter(|(_, &n)| n < call).map(|(&r, _)| r).collect();
        let named = if silent.is_empty() { behind } else { silent };
        transport::fail_ranks(&named, &format!("did not take part in {what}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Kind, Tensor};

    fn bits(t: &Tensor) -> Vec<u16> {
        let mut bytes = vec![0u8; 2 * t.numel()];
        t.copy_data_u8(&mut bytes, t.numel());
        bytes.chunks_exact(2).map(|b| u16::from_ne_bytes([b[0], b[1]])).collect()
    }

    /// The reduction's bfloat16 sum is libtorch's, bit for bit: over values of many magnitudes and
    /// signs, each added to its neighbour, and libtorch's own rounding of float32 to bfloat16.
    #[test]
    fn bfloat16_sums_are_libtorchs() {
        let values: Vec<f32> = (0..4000).map(|i| (i as f32 * 0.7317).sin() * 10f32.powi(i % 9 - 4)).collect();
        let floats = Tensor::from_slice(&values);
        let a = floats.to_kind(Kind::BFloat16);
        let b = a.roll([1], [0]);
        let (a_bits, b_bits, sum_bits) = (bits(&a), bits(&b), bits(&(&a + &b)));
        let mut ours = b_bits.clone();
        let mut len = values.len() as std::ffi::c_int;
        // SAFETY: two buffers of `len` u16, as MPI hands them; the datatype is not read.
        unsafe {
            let input = a_bits.as_ptr() as *mut std::ffi::c_void;
            sum_bf16(input, ours.as_mut_ptr().cast(), &mut len, std::ptr::null_mut());
        }
        for i in 0..values.len() {
            assert_eq!(ours[i], sum_bits[i], "{} + {}", bf16_value(a_bits[i]), bf16_value(b_bits[i]));
            assert_eq!(bf16_bits(values[i]), a_bits[i], "rounding {}", values[i]);
        }
    }
}
