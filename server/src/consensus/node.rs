//! The Raft node: one thread owns the `RawNode` and is the only caller of `ready`/`advance`.
//!
//! Each loop: take one proposal or read request (or wait until the next tick), tick on time, then handle the Ready:
//! 1. hand committed entries to the apply thread, or apply them here when this thread is idle and they are a
//!    few small writes (`apply::lane`: a lone client's put then skips the apply thread's wake-up);
//! 2. answer ReadIndex requests whose read state arrived (their indexes are committed, so durable already; the
//!    readers still wait for the apply loop to reach them);
//! 3. append new entries and the hard state to the WAL and wait until they are durable (so nothing is acknowledged,
//!    voted or committed on the strength of an entry a crash could lose); the WAL writes and flushes them on this
//!    thread when its I/O thread is idle (`Wal::append_durable`), which saves two thread wake-ups per Ready;
//! 4. `advance`, then hand over the entries the LightReady commits, and `advance_apply`.
//!
//! The node is split by concern: the log over the WAL and its compaction (`log`), configuration changes
//! (`conf`), leadership policy (`leadership`: slow-disk hand-over, transferee choice, proposals held during a
//! transfer), ReadIndex batching (`reads`). This module is the loop that drives them.
//!
//! **Peers.** Messages of a Ready go to the transport (which never blocks): the leader's appends before its own
//! WAL write, votes and append responses only after it. Messages from peers arrive as `Msg::Step`.
//!
//! **Invariants**: the WAL holds every entry and hard state Raft was told are persisted; entries reach the apply
//! thread in log order.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use raft::RawNode;
use raft::eraftpb::{ConfChange, ConfState, Entry};
use raft::storage::MemStorage;
use tokio::sync::oneshot;

use crate::apply::lane::ApplyLane;
use crate::apply::{ApplyMsg, Waiters};
use crate::consensus::conf::ConfChanges;
use crate::consensus::leadership::{Held, HeldProposals, Release};
use crate::consensus::log::RaftLog;
use crate::error::Error;
use crate::failpoints as fp;
use crate::request::RequestId;

/// What the rest of the server asks of the Raft thread.
#[derive(Debug)]
pub enum Msg {
    /// Propose an encoded `InternalRequest`.
    Propose { id: RequestId, data: Vec<u8> },
    /// Ask for a read index; answered with the index once leadership is confirmed. Reads queued together share
    /// one ReadIndex round.
    ReadIndex { reply: oneshot::Sender<u64> },
    /// Shut down (peer listeners hold senders too, so a closed channel alone cannot tell).
    Stop,
    /// A message from a peer.
    Step(Box<raft::eraftpb::Message>),
    /// Hand leadership to `target` (MoveLeader), or with `target` 0 to the best-placed voter (before a graceful
    /// stop); progress shows in [`RaftStatus::leader`].
    TransferLeader { target: u64 },
    /// Keep-alives a follower received: forwarded to the current leader, which decides expiry.
    RenewLeases(Vec<i64>),
    /// How sending a snapshot to `to` ended (see `snapshot::send`).
    ReportSnapshot { to: u64, ok: bool },
    /// Propose a membership change (its context is a `membership::MemberChange` naming request `id`).
    ProposeConf { id: RequestId, cc: ConfChange },
    /// What the leader knows of its followers, for membership checks.
    Progress { reply: oneshot::Sender<Progress> },
}

/// The leader's view of replication, from [`Msg::Progress`].
#[derive(Debug, Default, Clone)]
pub struct Progress {
    pub leader: bool,
    pub last_index: u64,
    /// Each member's matched index.
    pub matched: HashMap<u64, u64>,
}

/// What the Raft thread publishes for Status.
#[derive(Debug, Default)]
pub struct RaftStatus {
    pub leader: AtomicU64,
    pub term: AtomicU64,
    pub commit: AtomicU64,
    /// Times this member saw the leader change (`etcd_server_leader_changes_seen_total`).
    pub leader_changes: AtomicU64,
    /// ReadIndex rounds that went unanswered and were asked again (`etcd_server_slow_read_indexes_total`).
    pub slow_read_indexes: AtomicU64,
    /// Read indexes that could not be asked or never came (`etcd_server_read_indexes_failed_total`).
    pub read_indexes_failed: AtomicU64,
    /// Times a leader's WAL write held its heartbeats past their time
    /// (`etcd_server_heartbeat_send_failures_total`; see `check_disk`).
    pub heartbeat_send_failures: AtomicU64,
    /// Notified once this member has applied its own removal from the cluster.
    pub removed: tokio::sync::Notify,
    /// When this member last became leader (the lessor extends older leases from then).
    leader_since: std::sync::Mutex<Option<Instant>>,
}

impl RaftStatus {
    /// When this member last became leader, if it ever did.
    pub fn leader_since(&self) -> Option<Instant> {
        *self.leader_since.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Messages the Raft thread's queue holds; past that, clients are told "too many requests" and peers wait.
pub const RAFT_QUEUE: usize = 16_384;
/// Batches of committed entries queued for the apply thread; past that, the Raft thread waits for it.
pub const APPLY_QUEUE: usize = 1_024;
/// etcd's limit on how far applying may lag committing before proposals are refused.
pub const MAX_APPLY_GAP: u64 = 5_000;

/// The way into the Raft thread's bounded queue. Requests from clients never wait for room: a full queue is
/// etcd's "too many requests" (`offer`). The peer transport's threads wait (`send`), which slows the peer's
/// connection rather than dropping what it sent.
#[derive(Debug, Clone)]
pub struct RaftQueue(SyncSender<Msg>);

impl RaftQueue {
    pub fn new(tx: SyncSender<Msg>) -> Self {
        RaftQueue(tx)
    }

    /// Queues `msg` if there is room.
    pub fn offer(&self, msg: Msg) -> Result<(), Error> {
        self.0.try_send(msg).map_err(|e| match e {
            TrySendError::Full(_) => Error::TooManyRequests,
            TrySendError::Disconnected(_) => Error::Stopped,
        })
    }

    /// Queues `msg`, waiting for room (threads only, never an async task).
    pub fn send(&self, msg: Msg) -> Result<(), Error> {
        self.0.send(msg).map_err(|_| Error::Stopped)
    }
}

/// Whether applying lags committing too far to accept another proposal (etcd's rule).
pub fn apply_lags(committed: u64, applied: u64) -> bool {
    committed > applied + MAX_APPLY_GAP
}

/// Messages taken from the queue per turn of the Raft loop.
const BATCH: usize = 4096;

/// The Raft thread's state.
pub struct RaftNode {
    node: RawNode<MemStorage>,
    log: RaftLog,
    /// Where committed entries go: the apply thread, or applied here when idle (see `apply::lane`).
    apply: ApplyLane,
    rx: Receiver<Msg>,
    /// A message taken from `rx` to learn whether the thread is idle, handled first on the next turn.
    peeked: Option<Msg>,
    /// Indexes up to which mvcc is durable, from the apply thread (a separate channel, so that it does not keep
    /// the Raft thread alive at shutdown).
    compactions: Receiver<u64>,
    tick: Duration,
    /// Pending ReadIndex rounds and their readers.
    reads: crate::consensus::reads::ReadBatcher,
    proposals: Arc<dyn Waiters>,
    status: Arc<RaftStatus>,
    transport: crate::consensus::transport::Transport,
    conf: ConfChanges,
    /// A WAL write slower than this (half an election timeout) is a slow disk (see [`RaftNode::check_disk`]).
    slow_disk: crate::consensus::leadership::SlowDisk,
    /// Proposals that arrived during a leader transfer.
    held: HeldProposals,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode").field("id", &self.node.raft.id).finish()
    }
}

/// How to start a node.
#[derive(Debug)]
pub struct Start {
    pub id: u64,
    /// Raft's configuration at `conf_floor` (empty for a member that joins and learns it from the leader).
    pub conf: ConfState,
    pub conf_floor: u64,
    pub cluster: Arc<crate::apply::membership::Shared>,
    pub heartbeat: Duration,
    pub election_ticks: usize,
    pub applied: u64,
    /// Where messages to peers go.
    pub transport: crate::consensus::transport::Transport,
}

impl RaftNode {
    /// Rebuilds the log from the WAL and creates the node.
    pub fn new(
        start: Start,
        wal: wal::Wal,
        apply: ApplyLane,
        rx: Receiver<Msg>,
        compactions: Receiver<u64>,
        proposals: Arc<dyn Waiters>,
        status: Arc<RaftStatus>,
    ) -> Result<Self, Error> {
        let log = RaftLog::open(wal, &start.conf)?;
        // Raft requires applied <= committed. The commit index is persisted only with the hard state of a Ready
        // (its later advances live in memory), so after a restart mvcc may have applied past it. Raft then
        // re-commits those entries and hands them over again; the apply loop skips every entry at or below
        // mvcc's applied index, so nothing is applied twice.
        let last = raft::Storage::last_index(&log.cache()).unwrap_or(0);
        let applied = start.applied.min(last).min(log.persisted_commit());
        let config = raft::Config {
            id: start.id,
            election_tick: start.election_ticks.max(2),
            heartbeat_tick: 1,
            applied,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            // As etcd: pre-vote plus check-quorum, so a member that rejoins (or is cut off) cannot disrupt a
            // healthy leader, and a leader that lost its quorum steps down.
            pre_vote: true,
            check_quorum: true,
            ..raft::Config::default()
        };
        config.validate().map_err(Error::raft("raft config"))?;
        let logger = crate::logging::raft_logger();
        let node = RawNode::new(&config, log.cache(), &logger).map_err(Error::raft("start raft"))?;
        let election = start.heartbeat * start.election_ticks.max(2) as u32;
        Ok(RaftNode {
            node,
            log,
            apply,
            rx,
            peeked: None,
            compactions,
            tick: start.heartbeat,
            slow_disk: crate::consensus::leadership::SlowDisk::new(election),
            held: HeldProposals::new(election),
            reads: crate::consensus::reads::ReadBatcher::new(start.id),
            proposals,
            status,
            transport: start.transport,
            conf: ConfChanges::new(start.id, start.conf_floor, start.cluster),
        })
    }

    /// The thread's body; returns on a fatal error (the server then stops) or when every sender is gone.
    ///
    /// Each turn takes every message already queued (up to [`BATCH`]) before one Ready: proposals that arrive
    /// together share one WAL write and fsync, and the reads that arrive together share one ReadIndex round.
    pub fn run(mut self) -> Result<(), Error> {
        // Hand over what is committed already (Raft campaigns only once its configuration entries are applied),
        // then a single member elects itself at once instead of waiting out an election timeout.
        self.on_ready()?;
        let conf = self.node.raft.prs().conf().to_conf_state();
        if conf.voters == [self.node.raft.id] && conf.learners.is_empty() {
            self.node.campaign().map_err(Error::raft("raft campaign"))?;
        }
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let mut next = match self.peeked.take().map(Ok).unwrap_or_else(|| self.rx.recv_timeout(wait)) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            let mut taken = 0;
            let mut readers = Vec::new();
            while let Some(m) = next.take() {
                match m {
                    Msg::Propose { id, data } if self.node.raft.lead_transferee.is_some() => {
                        self.held.hold(Held::Local { id, data }, Instant::now());
                    }
                    Msg::Propose { id, data } => {
                        if self.node.propose(vec![], data).is_err() {
                            self.proposals.complete(id, Err(Error::NoLeader));
                        }
                    }
                    Msg::ReadIndex { reply } => readers.push(reply),
                    Msg::TransferLeader { target: 0 } => {
                        if let Some(best) = self.best_transferee() {
                            self.node.transfer_leader(best);
                        }
                    }
                    Msg::TransferLeader { target } => self.node.transfer_leader(target),
                    Msg::RenewLeases(ids) => {
                        let leader = self.node.raft.leader_id;
                        if leader != 0 && leader != self.node.raft.id {
                            self.transport.renew(leader, &ids);
                        }
                    }
                    Msg::ReportSnapshot { to, ok } => {
                        let status = if ok { raft::SnapshotStatus::Finish } else { raft::SnapshotStatus::Failure };
                        self.node.report_snapshot(to, status);
                    }
                    Msg::ProposeConf { id, cc } => {
                        if self.node.propose_conf_change(vec![], cc).is_err() {
                            self.proposals.complete(id, Err(Error::NoLeader));
                        }
                    }
                    Msg::Progress { reply } => {
                        let r = &self.node.raft;
                        let _ = reply.send(Progress {
                            leader: r.state == raft::StateRole::Leader,
                            last_index: r.raft_log.last_index(),
                            matched: r.prs().iter().map(|(id, p)| (*id, p.matched)).collect(),
                        });
                    }
                    Msg::Stop => return Ok(()),
                    Msg::Step(m)
                        if m.get_msg_type() == raft::eraftpb::MessageType::MsgPropose
                            && self.node.raft.lead_transferee.is_some() =>
                    {
                        self.held.hold(Held::Forwarded(m), Instant::now());
                    }
                    Msg::Step(m) => {
                        if m.get_msg_type() == raft::eraftpb::MessageType::MsgHeartbeatResponse {
                            self.transport.heartbeat_answered(m.from);
                        }
                        // Messages from unknown members or stale terms are refused by Raft; nothing to do about them.
                        let _ = self.node.step(*m);
                    }
                }
                taken += 1;
                if taken < BATCH {
                    next = self.rx.try_recv().ok();
                }
            }
            if let Some(ctx) = self.reads.open(readers) {
                self.node.read_index(ctx);
            }
            while let Ok(index) = self.compactions.try_recv() {
                self.log.compact(index)?;
            }
            if Instant::now() >= next_tick {
                self.node.tick();
                next_tick += self.tick;
                // Read requests Raft dropped (their askers have moved on to a new attempt).
                self.reads.prune();
            }
            self.on_ready()?;
            self.release_held();
        }
    }

    /// Once a leader transfer is over, proposals held during it go to whoever leads now (see `leadership`).
    fn release_held(&mut self) {
        let r = &self.node.raft;
        let released = self.held.release(r.lead_transferee.is_some(), r.leader_id, r.id, Instant::now());
        for release in released {
            match release {
                Release::Propose { id, data } => {
                    if self.node.propose(vec![], data).is_err() {
                        self.proposals.complete(id, Err(Error::NoLeader));
                    }
                }
                Release::Step(m) => {
                    let _ = self.node.step(*m);
                }
                Release::Forward(m) => self.transport.send(vec![*m]),
            }
        }
    }

    /// A snapshot from the leader (staged by `snapshot::receive`): the apply thread installs the store, then the
    /// log takes it as its start, then the configuration follows the image's registry.
    fn install_snapshot(&mut self, snap: raft::eraftpb::Snapshot) -> Result<(), Error> {
        let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
        let (done, outcome) = std::sync::mpsc::channel();
        fp::RAFT_BEFORE_APPLY_SNAP.eval();
        self.apply.send(ApplyMsg::Snapshot { index, term, done })?;
        outcome.recv().map_err(|_| Error::Stopped)??;
        fp::RAFT_AFTER_APPLY_SNAP.eval();
        fp::RAFT_BEFORE_SAVE_SNAP.eval();
        self.log.install(snap)?;
        fp::RAFT_AFTER_SAVE_SNAP.eval();
        self.conf.on_snapshot(index, &mut self.transport);
        crate::logging::log("info", "installed database snapshot", &[("index", index.to_string())]);
        Ok(())
    }

    /// Applies the committed configuration changes of `entries` to Raft (see `conf`); the apply thread records
    /// them in the registry.
    fn apply_conf_changes(&mut self, entries: &[Entry]) -> Result<(), Error> {
        for e in entries {
            if e.get_entry_type() != raft::eraftpb::EntryType::EntryNormal {
                fp::BEFORE_APPLY_ONE_CONF_CHANGE.eval();
            }
            let node = &mut self.node;
            let applied =
                self.conf.on_committed(e, |cc| node.apply_conf_change(cc), &mut self.transport, &self.status)?;
            if let crate::consensus::conf::Applied::Changed(cs) = applied {
                self.log.set_conf_state(cs);
            }
        }
        Ok(())
    }

    /// A leader whose WAL write took `took` (while it sent no heartbeat) hands leadership to the best-placed voter
    /// when that is over half an election timeout, at most once per ten election timeouts: a member with a slow
    /// disk stops being leader rather than stalling the cluster. Heartbeats getting out between stalls would keep
    /// the followers from ever electing another leader themselves.
    fn check_disk(&mut self, took: Duration) {
        use crate::consensus::leadership::DiskVerdict;
        let leader = self.node.raft.state == raft::StateRole::Leader;
        let verdict = self.slow_disk.on_write(took, leader, Instant::now());
        if verdict == DiskVerdict::Fine {
            return;
        }
        let expected = self.tick;
        self.status.heartbeat_send_failures.fetch_add(1, Ordering::Relaxed);
        crate::logging::log(
            "warn",
            "leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk",
            &[("took", format!("{took:?}")), ("expected-duration", format!("{expected:?}"))],
        );
        if verdict == DiskVerdict::Warn {
            return;
        }
        if let Some(best) = self.best_transferee() {
            crate::logging::log("warn", "handing leadership over from a slow disk", &[("to", format!("{best:x}"))]);
            self.node.transfer_leader(best);
        }
    }

    /// The voter (not this member) best placed to lead next (see `leadership`).
    fn best_transferee(&self) -> Option<u64> {
        let r = &self.node.raft;
        let voters = self.log.voters();
        let peers = r.prs().iter().map(|(id, p)| crate::consensus::leadership::Peer {
            id: *id,
            voter: voters.contains(id),
            recent_active: p.recent_active,
            matched: p.matched,
        });
        crate::consensus::leadership::best_transferee(r.id, peers)
    }

    fn send_committed(&mut self, entries: Vec<Entry>) -> Result<(), Error> {
        if entries.is_empty() {
            return Ok(());
        }
        self.apply_conf_changes(&entries)?;
        let idle = self.idle();
        self.apply.entries(entries, idle)
    }

    /// Whether no message waits for this thread (one that does is kept for the next turn, see `peeked`).
    fn idle(&mut self) -> bool {
        if self.peeked.is_none() {
            self.peeked = self.rx.try_recv().ok();
        }
        self.peeked.is_none()
    }

    fn on_ready(&mut self) -> Result<(), Error> {
        if !self.node.has_ready() {
            return Ok(());
        }
        self.publish_status();
        let mut ready = self.node.ready();
        let leader = self.node.raft.state == raft::StateRole::Leader;
        if leader {
            fp::RAFT_BEFORE_LEADER_SEND.eval();
        }
        // The leader's appends go out before (and while) it writes them locally.
        self.transport.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot().clone())?;
        }
        self.send_committed(ready.take_committed_entries())?;
        // Read states before this Ready's entries are written, as etcd answers them: a read state's index is a
        // commit index a quorum confirmed, so its entries are durable already (Raft commits only what is
        // persisted), and the reader still waits until the apply loop has reached it. Answered after the write,
        // every linearizable read that arrived with writes waited out their fdatasync too.
        for rs in ready.take_read_states() {
            self.reads.answer(&rs.request_ctx, rs.index);
        }
        fp::RAFT_BEFORE_SAVE.eval();
        let took = self.log.persist(ready.entries(), ready.hs().cloned())?;
        fp::RAFT_AFTER_SAVE.eval();
        self.check_disk(took);
        if !leader {
            fp::RAFT_BEFORE_FOLLOWER_SEND.eval();
        }
        // Votes and append responses only once what they promise is durable.
        self.transport.send(ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.log.set_commit(commit);
        }
        self.transport.send(light.take_messages());
        self.send_committed(light.take_committed_entries())?;
        self.node.advance_apply();
        self.publish_status();
        Ok(())
    }

    /// Publishes leader, term and commit index to the rest of the server. Called before a Ready's committed
    /// entries go to the apply thread too, so that a member that just became leader has recorded when, before
    /// any lease granted in its term is applied (the lessor extends only leases older than that).
    fn publish_status(&self) {
        let r = &self.node.raft;
        // Only this thread writes `leader`; the time is recorded before the leader, so whoever sees this member
        // as leader also sees since when.
        let previous = self.status.leader.load(Ordering::Acquire);
        if previous != r.leader_id && r.leader_id != 0 {
            self.status.leader_changes.fetch_add(1, Ordering::Relaxed);
            if r.leader_id == r.id {
                *self.status.leader_since.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            }
        }
        self.status.leader.store(r.leader_id, Ordering::Release);
        self.status.term.store(r.term, Ordering::Relaxed);
        self.status.commit.store(r.raft_log.committed, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_is_too_many_requests_and_a_closed_one_stopped() {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let q = RaftQueue::new(tx);
        q.offer(Msg::Stop).unwrap();
        assert!(matches!(q.offer(Msg::Stop), Err(Error::TooManyRequests)));
        rx.recv().unwrap();
        q.offer(Msg::Stop).unwrap();
        drop(rx);
        assert!(matches!(q.offer(Msg::Stop), Err(Error::Stopped)));
        assert!(matches!(q.send(Msg::Stop), Err(Error::Stopped)));
    }

    #[test]
    fn proposals_wait_while_applying_lags_too_far() {
        assert!(!apply_lags(10, 10));
        assert!(!apply_lags(5_010, 10));
        assert!(apply_lags(5_011, 10));
        assert!(!apply_lags(3, 10), "a restarted member may have applied past its persisted commit");
    }
}
