//! Configuration changes on the Raft side: a committed `ConfChange` is applied to Raft and the peer transport
//! here, on the Raft thread; the apply thread records the same entry in the membership registry (see
//! `apply::membership`), whose records say where each member listens.
//!
//! **Invariants**
//! 1. Changes at or below `floor` are already in Raft's configuration (it was built from the registry at that
//!    index, at start or from an installed snapshot); later ones are applied once each, in log order.
//! 2. A change Raft refuses (removing the last voter, say) is refused alike on every member and changes nothing.
//! 3. The transport sends to every member of the configuration but this one, at its first peer URL; this
//!    member's own removal is announced (`RaftStatus::removed`) and the member stops.
//!
//! **Threading**: owned by the Raft thread.

use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType};

use crate::apply::membership::{MemberChange, Shared};
use crate::consensus::node::RaftStatus;
use crate::consensus::transport::Transport;
use crate::error::Error;
use crate::logging::log;
use crate::proto::etcdserverpb as pb;

/// What a committed configuration change did, for the caller to record.
#[derive(Debug)]
pub enum Applied {
    /// Raft's configuration after it.
    Changed(raft::eraftpb::ConfState),
    /// Refused by Raft, or at or below the floor: nothing changed.
    Skipped,
}

/// The Raft side of membership.
#[derive(Debug)]
pub struct ConfChanges {
    me: u64,
    floor: u64,
    registry: Arc<Shared>,
}

impl ConfChanges {
    pub fn new(me: u64, floor: u64, registry: Arc<Shared>) -> Self {
        ConfChanges { me, floor, registry }
    }

    /// Applies the committed change `e` (an entry of any kind: others are skipped) through `apply`, Raft's own
    /// `apply_conf_change`, and points the transport at the member it names.
    pub fn on_committed(
        &self,
        e: &Entry,
        apply: impl FnOnce(&ConfChange) -> Result<raft::eraftpb::ConfState, raft::Error>,
        transport: &mut Transport,
        status: &RaftStatus,
    ) -> Result<Applied, Error> {
        if e.get_entry_type() != EntryType::EntryConfChange || e.index <= self.floor {
            return Ok(Applied::Skipped);
        }
        let mut cc = ConfChange::default();
        if cc.merge_from_bytes(&e.data).is_err() {
            return Err(Error::Corrupt(format!("undecodable configuration change at index {}", e.index)));
        }
        let cs = match apply(&cc) {
            Ok(cs) => cs,
            Err(err) => {
                log("warn", "configuration change refused", &[("error", err.to_string())]);
                return Ok(Applied::Skipped);
            }
        };
        if cc.get_change_type() == ConfChangeType::RemoveNode {
            if cc.node_id == self.me {
                log("warn", "the member has been permanently removed from the cluster", &[]);
                status.removed.notify_one();
            } else {
                transport.remove_peer(cc.node_id);
            }
        } else {
            let member = MemberChange::from_conf_change(&cc).and_then(|c| c.member).unwrap_or_default();
            self.point(transport, &member);
        }
        Ok(Applied::Changed(cs))
    }

    /// After a snapshot at `index` was installed: its registry (loaded by the apply thread) says where the
    /// members are now, and changes up to `index` are in Raft's configuration.
    pub fn on_snapshot(&mut self, index: u64, transport: &mut Transport) {
        self.floor = self.floor.max(index);
        let members = self.registry.read().members();
        for m in &members {
            self.point(transport, m);
        }
        for id in transport.peer_ids() {
            if !members.iter().any(|m| m.id == id) {
                transport.remove_peer(id);
            }
        }
    }

    /// Sends to `m` at its first peer URL (not to this member itself).
    fn point(&self, transport: &mut Transport, m: &pb::Member) {
        if m.id == self.me {
            return;
        }
        let Some(url) = m.peer_ur_ls.first() else { return };
        match crate::config::parse_url("peer-urls", url) {
            Ok(u) => {
                if let Err(e) = transport.set_peer(m.id, crate::consensus::conn::PeerAddr::of(&u)) {
                    log("warn", "cannot reach a member", &[("error", e.to_string())]);
                }
            }
            Err(e) => log("warn", "member with a bad peer URL", &[("error", e.0)]),
        }
    }
}
