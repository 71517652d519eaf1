//! Leadership policy: when a leader should hand leadership over, and to whom. Decided from plain inputs (how long
//! a WAL write took, the time, each voter's replication progress), so each rule is tested on its own; the Raft
//! node carries the decisions out.
//!
//! **Rules**
//! 1. A leader whose WAL write takes more than half an election timeout has a slow disk: it logs etcd's
//!    "leader failed to send out heartbeat on time" warning, and hands leadership to the best-placed voter, at
//!    most once per ten election timeouts (a disk that stays slow does not make leadership bounce).
//! 2. The best-placed voter is another voter that Raft saw recently, with the longest matched log.
//!
//! **Threading**: owned by the Raft thread.

use std::time::{Duration, Instant};

/// What a slow write calls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskVerdict {
    /// Within the limit, or not the leader.
    Fine,
    /// Slow: log etcd's warning; a hand-over happened too recently to make another.
    Warn,
    /// Slow: log the warning and hand leadership over.
    HandOver,
}

/// Rule 1.
#[derive(Debug, Clone)]
pub struct SlowDisk {
    /// Half an election timeout.
    limit: Duration,
    last_handover: Option<Instant>,
}

impl SlowDisk {
    pub fn new(election_timeout: Duration) -> Self {
        SlowDisk { limit: election_timeout / 2, last_handover: None }
    }

    /// Half an election timeout: a WAL write slower than this is a slow disk.
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// A WAL write that took `took` ended at `now`, on a member that is (or is not) the leader.
    pub fn on_write(&mut self, took: Duration, leader: bool, now: Instant) -> DiskVerdict {
        if took <= self.limit || !leader {
            return DiskVerdict::Fine;
        }
        let quiet = self.limit * 20; // ten election timeouts
        if self.last_handover.is_some_and(|t| now.saturating_duration_since(t) < quiet) {
            return DiskVerdict::Warn;
        }
        self.last_handover = Some(now);
        DiskVerdict::HandOver
    }
}

/// One member's replication progress as the leader sees it.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub id: u64,
    pub voter: bool,
    pub recent_active: bool,
    pub matched: u64,
}

/// Rule 2: the voter (not `me`) best placed to lead next.
pub fn best_transferee(me: u64, peers: impl IntoIterator<Item = Peer>) -> Option<u64> {
    peers.into_iter().filter(|p| p.id != me && p.voter).max_by_key(|p| (p.recent_active, p.matched)).map(|p| p.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_leader_hands_over_at_most_once_per_ten_election_timeouts() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut d = SlowDisk::new(ms(1000));
        assert_eq!(d.on_write(ms(500), true, t), DiskVerdict::Fine, "half an election timeout is still fine");
        assert_eq!(d.on_write(ms(900), false, t), DiskVerdict::Fine, "a follower's slow disk is not this rule's");
        assert_eq!(d.on_write(ms(501), true, t), DiskVerdict::HandOver);
        assert_eq!(d.on_write(ms(900), true, t + ms(9_999)), DiskVerdict::Warn);
        assert_eq!(d.on_write(ms(900), true, t + ms(10_000)), DiskVerdict::HandOver);
    }

    #[test]
    fn the_transferee_is_an_active_voter_with_the_longest_log() {
        let p = |id, voter, recent_active, matched| Peer { id, voter, recent_active, matched };
        let peers = [p(1, true, true, 100), p(2, true, true, 90), p(3, true, false, 120), p(4, false, true, 130)];
        assert_eq!(best_transferee(1, peers), Some(2), "not itself, not a learner, active before longest");
        assert_eq!(best_transferee(9, peers), Some(1));
        assert_eq!(best_transferee(1, [p(1, true, true, 5)]), None, "alone: nobody to hand over to");
        assert_eq!(best_transferee(1, [p(1, true, true, 5), p(3, true, false, 1)]), Some(3), "inactive beats none");
    }
}
