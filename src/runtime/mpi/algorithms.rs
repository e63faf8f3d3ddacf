//! The bytes MPI's collective algorithms move in and out of each rank: the wire volume beside the
//! bytes the application hands over (stats.rs), and the volume the step-time model charges.
//!
//! Which algorithm runs is the MPI library's choice. The one this project is tested with, Open MPI 4.1
//! (Debian 12's), serves the non-blocking collectives on one host with its `libnbc` component (the
//! highest priority that provides them: `ompi_info` lists tuned 30 and libnbc 10, and tuned has no
//! non-blocking collectives). `ompi/mca/coll/libnbc/nbc_iallreduce.c` chooses, unless
//! `--mca coll_libnbc_iallreduce_algorithm` forces one:
//!
//!   `if (p < 4 || size*count < 65536 || !commutative || inplace) binomial;`
//!   `else if (count >= pof2) reduce-scatter + all-gather (Rabenseifner);`
//!
//! so 2 or 3 replicas all-reduce through a binomial tree (a reduction to rank 0 of the group, then a
//! broadcast from it) and 4 or more replicas by recursive halving then doubling: 2(p - 1)/p of the
//! buffer each way at a power of two p, the ring's volume. The ring itself is used only when forced.
//! For the all-reduce this file counts the textbook schedules; Open MPI may move a little more around
//! the extra ranks of a p that is not a power of two. A replica group's broadcast (nbc_ibcast.c) is
//! linear up to 4 ranks, so the root sends the buffer to each other rank as messages would, and binomial
//! beyond; its reduction is the binomial tree warpnet asks for ([`Reduce`]), whose root receives one
//! buffer per child: per direction of a warp layer the home moves as many buffers on the wire as
//! messages would up to 4 ranks per group (p - 1 out, p - 1 back), and fewer from 5 on (3 out and 3
//! back over 5 ranks, where messages move 4 and 4).

/// Buffers smaller than this (bytes) always take the binomial tree (nbc_iallreduce.c).
const SMALL_BUFFER: u64 = 65_536;
/// Groups smaller than this always take the binomial tree (nbc_iallreduce.c).
const FEW_RANKS: usize = 4;

/// The all-reduce algorithm for `p` ranks and a buffer of `bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllReduce {
    /// Reduce to position 0 up a binomial tree, then broadcast down it.
    Binomial,
    /// Reduce-scatter by recursive halving, then all-gather by recursive doubling, among the largest
    /// power of two of ranks; each extra rank first hands its buffer to a partner and gets the result
    /// back at the end.
    Rabenseifner,
}

impl AllReduce {
    pub fn chosen(p: usize, bytes: u64) -> AllReduce {
        if p < FEW_RANKS || bytes < SMALL_BUFFER {
            AllReduce::Binomial
        } else {
            AllReduce::Rabenseifner
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AllReduce::Binomial => "binomial tree",
            AllReduce::Rabenseifner => "reduce-scatter + all-gather",
        }
    }

    /// Bytes (sent, received) by the rank at `position` of `p` for a buffer of `bytes`.
    pub fn wire(self, p: usize, position: usize, bytes: u64) -> (u64, u64) {
        if p < 2 {
            return (0, 0);
        }
        match self {
            AllReduce::Binomial => {
                // Up the tree: every child's buffer to its parent; down it: the sum back.
                let children = binomial_children(p, position) as u64;
                let parent = u64::from(position != 0);
                ((parent + children) * bytes, (children + parent) * bytes)
            }
            AllReduce::Rabenseifner => {
                let pof2 = 1usize << (usize::BITS - 1 - p.leading_zeros()); // largest power of 2 <= p
                let extra = p - pof2;
                // Positions below 2 x extra pair up: the odd one hands its buffer to the even one and
                // takes the sum back; the even ones and those from 2 x extra on run the schedule.
                if position < 2 * extra && position % 2 == 1 {
                    return (bytes, bytes);
                }
                let halves = 2 * (pof2 as u64 - 1) * bytes / pof2 as u64; // halving + doubling
                let partner = u64::from(position < 2 * extra);
                (halves + partner * bytes, halves + partner * bytes)
            }
        }
    }
}

impl AllReduce {
    /// Message rounds one after another: up and down the tree; halving and doubling (and the extra
    /// ranks' hand-over and hand-back).
    pub fn rounds(self, p: usize) -> usize {
        let log2 = |n: usize| (usize::BITS - (n.max(1) - 1).leading_zeros()) as usize; // ceil(log2 n)
        match self {
            _ if p < 2 => 0,
            AllReduce::Binomial => 2 * log2(p),
            AllReduce::Rabenseifner => {
                let pof2 = 1usize << (usize::BITS - 1 - p.leading_zeros());
                2 * log2(pof2) + if p > pof2 { 2 } else { 0 }
            }
        }
    }

    /// The most bytes any one rank sends: what bounds the collective's time on links of equal speed.
    pub fn busiest_sent(self, p: usize, bytes: u64) -> u64 {
        (0..p).map(|r| self.wire(p, r, bytes).0).max().unwrap_or(0)
    }
}

/// `MPI_Ibcast` from position 0, as libnbc chooses (nbc_ibcast.c, message size not considered by
/// default): `if (p <= 4) linear; else binomial;`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broadcast {
    /// The root sends the buffer to every other rank.
    Linear,
    /// Down the binomial tree rooted at position 0.
    Binomial,
}

/// Groups up to this size broadcast linearly (nbc_ibcast.c).
const LINEAR_BROADCAST_MAX: usize = 4;

impl Broadcast {
    pub fn chosen(p: usize) -> Broadcast {
        if p <= LINEAR_BROADCAST_MAX {
            Broadcast::Linear
        } else {
            Broadcast::Binomial
        }
    }

    /// Bytes (sent, received) by the rank at `position` of `p` for a buffer of `bytes`.
    pub fn wire(self, p: usize, position: usize, bytes: u64) -> (u64, u64) {
        let children = match self {
            Broadcast::Linear if position == 0 => p.saturating_sub(1),
            Broadcast::Linear => 0,
            Broadcast::Binomial => binomial_children(p, position),
        };
        (children as u64 * bytes, u64::from(position != 0) * bytes)
    }
}

/// `MPI_Ireduce` to position 0 by a binomial tree, each rank's buffer (its part added to its
/// children's) to its parent: what warpnet asks libnbc for (`coll_libnbc_ireduce_algorithm`, set in
/// session.rs unless the user set it), in place of its default chain of 8 KB segments over 2 ranks and
/// reduce-scatter + gather over 3 or more.
pub struct Reduce;

impl Reduce {
    /// Bytes (sent, received) by the rank at `position` of `p` for a buffer of `bytes`.
    pub fn wire(p: usize, position: usize, bytes: u64) -> (u64, u64) {
        if p < 2 {
            return (0, 0);
        }
        (u64::from(position != 0) * bytes, binomial_children(p, position) as u64 * bytes)
    }
}

/// Children of `position` in the binomial tree rooted at 0 over `p` ranks: position + 2^k for every
/// 2^k > position with position + 2^k < p.
fn binomial_children(p: usize, position: usize) -> usize {
    (0..usize::BITS)
        .map(|k| 1usize << k)
        .take_while(|&step| position + step < p)
        .filter(|&step| step > position)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte one rank sends another receives: the schedules balance.
    #[test]
    fn every_byte_sent_is_received() {
        for p in 2..=9 {
            for algorithm in [AllReduce::Binomial, AllReduce::Rabenseifner] {
                let (sent, received): (u64, u64) =
                    (0..p).map(|r| algorithm.wire(p, r, 1 << 20)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
                assert_eq!(sent, received, "{algorithm:?} over {p}");
            }
        }
    }

    #[test]
    fn broadcasts_and_reductions_balance() {
        for p in 2..=9 {
            for algorithm in [Broadcast::Linear, Broadcast::Binomial] {
                let (sent, received): (u64, u64) =
                    (0..p).map(|r| algorithm.wire(p, r, 100)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
                assert_eq!((sent, received), (100 * (p as u64 - 1), 100 * (p as u64 - 1)), "{algorithm:?}");
            }
            let (sent, received): (u64, u64) =
                (0..p).map(|r| Reduce::wire(p, r, 100)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            assert_eq!(sent, received, "reduce over {p}");
        }
        assert_eq!(Broadcast::chosen(3).wire(3, 0, 100), (200, 0));
        assert_eq!(Reduce::wire(2, 1, 100), (100, 0));
    }

    /// Hand-counted cases: 2 ranks swap the buffer once each way; 3 ranks in a tree: the root takes two
    /// buffers and sends two; 4 ranks halve then double: 3/4 of the buffer each way per half, 1.5 in all.
    #[test]
    fn hand_counted_schedules() {
        let b = 400_000;
        assert_eq!(AllReduce::chosen(2, b), AllReduce::Binomial);
        assert_eq!(AllReduce::chosen(4, b), AllReduce::Rabenseifner);
        assert_eq!(AllReduce::chosen(4, 1_000), AllReduce::Binomial);
        assert_eq!(AllReduce::Binomial.wire(2, 0, b), (b, b));
        assert_eq!(AllReduce::Binomial.wire(3, 0, b), (2 * b, 2 * b));
        assert_eq!(AllReduce::Binomial.wire(3, 2, b), (b, b));
        assert_eq!(AllReduce::Rabenseifner.wire(4, 0, b), (3 * b / 2, 3 * b / 2));
        // 6 ranks: 0 and 2 run the schedule of 4 and serve partners 1 and 3.
        assert_eq!(AllReduce::Rabenseifner.wire(6, 0, b), (5 * b / 2, 5 * b / 2));
        assert_eq!(AllReduce::Rabenseifner.wire(6, 1, b), (b, b));
        assert_eq!(AllReduce::Rabenseifner.wire(6, 5, b), (3 * b / 2, 3 * b / 2));
        assert_eq!((AllReduce::Binomial.rounds(2), AllReduce::Binomial.rounds(3)), (2, 4));
        assert_eq!((AllReduce::Rabenseifner.rounds(4), AllReduce::Rabenseifner.rounds(6)), (4, 6));
        assert_eq!(AllReduce::Rabenseifner.busiest_sent(6, b), 5 * b / 2);
    }
}
