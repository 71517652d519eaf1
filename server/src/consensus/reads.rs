//! ReadIndex batching on the Raft thread: the linearizable reads that arrive during one turn of the Raft loop share
//! one ReadIndex round, and each round's index goes to every reader that joined it.
//!
//! **Invariants**
//! 1. A round's context is this member's id and a sequence number ([`context`]), unique across members: the leader
//!    keeps one pending round per context and drops a request whose context is already pending, so a per-member
//!    counter alone made reads arriving through two members collide and wait out a retry.
//! 2. A reader is answered at most once, with the index of the round it joined; a round Raft dropped is forgotten
//!    once all its readers have given up (they ask again in a new round).
//!
//! **Threading**: owned by the Raft thread; readers wait on their oneshot receivers elsewhere.

use std::collections::HashMap;

use tokio::sync::oneshot;

/// The context of `member`'s `seq`-th ReadIndex round: the member id, then the sequence number, both big-endian.
pub fn context(member: u64, seq: u64) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(16);
    ctx.extend_from_slice(&member.to_be_bytes());
    ctx.extend_from_slice(&seq.to_be_bytes());
    ctx
}

/// The pending rounds of one member.
#[derive(Debug)]
pub struct ReadBatcher {
    member: u64,
    seq: u64,
    rounds: HashMap<Vec<u8>, Vec<oneshot::Sender<u64>>>,
}

impl ReadBatcher {
    pub fn new(member: u64) -> Self {
        ReadBatcher { member, seq: 0, rounds: HashMap::new() }
    }

    /// Opens a round for `readers` (none: no round); returns the context to ask Raft's ReadIndex with.
    pub fn open(&mut self, readers: Vec<oneshot::Sender<u64>>) -> Option<Vec<u8>> {
        if readers.is_empty() {
            return None;
        }
        self.seq += 1;
        let ctx = context(self.member, self.seq);
        self.rounds.insert(ctx.clone(), readers);
        Some(ctx)
    }

    /// Raft's read state for `ctx` arrived: every reader of that round gets `index`. A context that is not ours
    /// (another member's round, or one already answered) answers nobody.
    pub fn answer(&mut self, ctx: &[u8], index: u64) {
        for reply in self.rounds.remove(ctx).unwrap_or_default() {
            let _ = reply.send(index);
        }
    }

    /// Forgets the readers that gave up, and the rounds left with none (Raft dropped them).
    pub fn prune(&mut self) {
        self.rounds.retain(|_, replies| {
            replies.retain(|r| !r.is_closed());
            !replies.is_empty()
        });
    }

    /// Rounds still waiting for their index.
    pub fn pending(&self) -> usize {
        self.rounds.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_are_unique_across_members() {
        let mut seen = std::collections::HashSet::new();
        for member in [1u64, 2, 0x8000_0000_0000_0001, u64::MAX] {
            for seq in 1..=1000 {
                assert!(seen.insert(context(member, seq)), "member {member:x}, round {seq}");
            }
        }
    }

    #[test]
    fn readers_of_a_round_share_its_index() {
        let mut b = ReadBatcher::new(7);
        assert_eq!(b.open(Vec::new()), None, "no readers, no round");
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        let first = b.open(vec![tx1, tx2]).unwrap();
        let (tx3, mut rx3) = oneshot::channel();
        let second = b.open(vec![tx3]).unwrap();
        assert_ne!(first, second);
        assert_eq!(first, context(7, 1));
        b.answer(&context(8, 1), 99); // another member's round with the same sequence number
        assert!(rx1.try_recv().is_err());
        b.answer(&first, 10);
        assert_eq!((rx1.try_recv(), rx2.try_recv()), (Ok(10), Ok(10)));
        assert!(rx3.try_recv().is_err(), "the second round is still pending");
        b.answer(&first, 11); // answered already: nobody left
        assert_eq!(b.pending(), 1);
        drop(rx3); // the reader gave up (its attempt timed out)
        b.prune();
        assert_eq!(b.pending(), 0, "a round with no reader left is forgotten");
    }
}
