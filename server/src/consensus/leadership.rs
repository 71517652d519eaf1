//! Leadership policy: when a leader should hand leadership over, and to whom. Decided from plain inputs (how long
//! a WAL write took, the time, each voter's replication progress), so each rule is tested on its own; the Raft
//! node carries the decisions out.
//!
//! **Rules**
//! 1. A leader whose WAL write takes more than half an election timeout has a slow disk: it logs etcd's
//!    "leader failed to send out heartbeat on time" warning, and hands leadership to the best-placed voter, at
//!    most once per ten election timeouts (a disk that stays slow does not make leadership bounce).
//! 2. The best-placed voter is another voter that Raft saw recently, with the longest matched log.
//! 3. Raft drops every proposal while a leader transfer runs. Proposals arriving then (this member's own, or
//!    ones a follower forwarded) are held, and once the transfer is over go to whoever leads: proposed here
//!    (Raft forwards a local one from a follower), or, for forwarded ones, stepped in if this member leads and
//!    sent on to the leader otherwise. A forwarded proposal with no leader to go to is kept up to two election
//!    timeouts, then dropped (its client times out and retries); a local one is proposed anyway and fails at
//!    once with "no leader" if Raft cannot take it.
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

/// A proposal held during a leader transfer (rule 3): one of ours, or one a follower forwarded.
#[derive(Debug)]
pub enum Held {
    Local { id: crate::request::RequestId, data: Vec<u8> },
    Forwarded(Box<raft::eraftpb::Message>),
}

/// What the Raft node does with a released proposal.
#[derive(Debug)]
pub enum Release {
    /// Propose it here.
    Propose { id: crate::request::RequestId, data: Vec<u8> },
    /// Step it into Raft (this member leads now).
    Step(Box<raft::eraftpb::Message>),
    /// Send it to the leader (already addressed).
    Forward(Box<raft::eraftpb::Message>),
}

/// Rule 3.
#[derive(Debug)]
pub struct HeldProposals {
    held: Vec<(Instant, Held)>,
    /// How long a forwarded proposal waits for a leader (two election timeouts).
    patience: Duration,
}

impl HeldProposals {
    pub fn new(election_timeout: Duration) -> Self {
        HeldProposals { held: Vec::new(), patience: election_timeout * 2 }
    }

    /// Holds `h`, which arrived at `now` while a transfer runs.
    pub fn hold(&mut self, h: Held, now: Instant) {
        self.held.push((now, h));
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// What to do with the held proposals now that no transfer runs, with `leader` (0: none) leading and this
    /// member being `me`. Called while a transfer runs, it releases nothing.
    pub fn release(&mut self, transferring: bool, leader: u64, me: u64, now: Instant) -> Vec<Release> {
        if transferring || self.held.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(self.held.len());
        for (since, h) in std::mem::take(&mut self.held) {
            match h {
                Held::Local { id, data } => out.push(Release::Propose { id, data }),
                Held::Forwarded(m) if leader == me => out.push(Release::Step(m)),
                Held::Forwarded(mut m) if leader != 0 => {
                    m.to = leader;
                    out.push(Release::Forward(m));
                }
                held if now.saturating_duration_since(since) < self.patience => self.held.push((since, held)),
                Held::Forwarded(_) => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::RequestId;

    fn forwarded(from: u64) -> Held {
        let mut m = raft::eraftpb::Message { from, ..Default::default() };
        m.set_msg_type(raft::eraftpb::MessageType::MsgPropose);
        Held::Forwarded(Box::new(m))
    }

    fn kinds(r: &[Release]) -> Vec<String> {
        r.iter()
            .map(|r| match r {
                Release::Propose { id, .. } => format!("propose {}", id.0),
                Release::Step(m) => format!("step from {}", m.from),
                Release::Forward(m) => format!("forward from {} to {}", m.from, m.to),
            })
            .collect()
    }

    #[test]
    fn nothing_is_released_while_the_transfer_runs() {
        let t = Instant::now();
        let mut h = HeldProposals::new(Duration::from_secs(1));
        h.hold(Held::Local { id: RequestId(1), data: vec![1] }, t);
        assert!(h.release(true, 2, 1, t + Duration::from_secs(60)).is_empty());
        assert_eq!(h.len(), 1, "still held");
    }

    #[test]
    fn after_the_transfer_each_goes_to_whoever_leads() {
        let t = Instant::now();
        let hold = || {
            let mut h = HeldProposals::new(Duration::from_secs(1));
            h.hold(Held::Local { id: RequestId(7), data: vec![1] }, t);
            h.hold(forwarded(3), t);
            h
        };
        // This member (1) leads now: both go into its Raft.
        let mut h = hold();
        assert_eq!(kinds(&h.release(false, 1, 1, t)), ["propose 7", "step from 3"]);
        assert!(h.is_empty());
        // Member 2 leads: ours is proposed here (Raft forwards it), the follower's is sent on to 2.
        let mut h = hold();
        assert_eq!(kinds(&h.release(false, 2, 1, t)), ["propose 7", "forward from 3 to 2"]);
        assert!(h.is_empty());
    }

    #[test]
    fn with_no_leader_a_forwarded_proposal_waits_two_election_timeouts() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut h = HeldProposals::new(ms(1000));
        h.hold(Held::Local { id: RequestId(7), data: vec![1] }, t);
        h.hold(forwarded(3), t);
        assert_eq!(kinds(&h.release(false, 0, 1, t + ms(100))), ["propose 7"], "ours fails fast in Raft");
        assert!(h.release(false, 0, 1, t + ms(1999)).is_empty());
        assert_eq!(h.len(), 1, "the forwarded one still waits");
        assert_eq!(kinds(&h.release(false, 2, 1, t + ms(1999))), ["forward from 3 to 2"]);
        h.hold(forwarded(4), t);
        assert!(h.release(false, 0, 1, t + ms(2000)).is_empty());
        assert!(h.is_empty(), "dropped after two election timeouts: its client retries");
    }

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
