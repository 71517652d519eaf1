//! Cluster membership: who the members are, kept in the store and changed only through Raft.
//!
//! **Where it lives.** The registry (each member's id, name, peer and client URLs, learner flag) is kept in the
//! mvcc keyspace `members` (key: member id, big-endian u64; value: etcd's `Member` message, protobuf), removed ids
//! in `members_removed` (key: id; value: empty). Every change is written in the same store commit that records
//! the index of the entry that made it, so after a crash the registry is exactly the one at the applied index,
//! and an installed snapshot carries the registry of its image. This member's own identity is kept apart, in
//! the file `member/identity` (`consensus::identity`): it must not live in the store, which a snapshot from the
//! leader replaces whole.
//!
//! **How it changes.** Adding, removing, promoting a member and changing its peer URLs are Raft configuration
//! changes (`ConfChange` entries) whose context is a [`MemberChange`]: the Raft thread applies the configuration
//! and points the peer transport at the member's address when the entry commits; the apply thread then records
//! the change here and answers the proposer. A URL update is an `AddNode` (or `AddLearnerNode`) of a member Raft
//! already has, which changes nothing in Raft's configuration. A member's name and client URLs arrive with its
//! own publish (an ordinary entry, [`crate::request::Op::Publish`]) once it runs, as etcd's do; until then it is
//! "unstarted".
//!
//! **Bootstrap.** A new cluster's log starts with one committed `AddNode` entry per initial member, in id order,
//! at term 1: every member of the bootstrap writes the same entries, and a member added later replays them (or
//! receives a snapshot) to learn the configuration.
//!
//! **Invariants**: 1. a removed id never comes back (`members_removed`); 2. the registry's voters and learners are
//! Raft's configuration at the store's applied index; 3. no two members share a peer URL.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use mvcc::Store;
use prost::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState};

use crate::proto::etcdserverpb as pb;

/// The keyspace of the registry.
pub const MEMBERS: &str = "members";
/// The keyspace of removed ids.
pub const REMOVED: &str = "members_removed";

/// What a membership change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum ChangeKind {
    Add = 0,
    Remove = 1,
    Update = 2,
    Promote = 3,
}

/// The context of a `ConfChange` entry: who proposed it (the request id its handler waits on; 0 for bootstrap
/// entries) and the member as it is after the change.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MemberChange {
    #[prost(uint64, tag = "1")]
    pub request: u64,
    #[prost(enumeration = "ChangeKind", tag = "2")]
    pub kind: i32,
    #[prost(message, optional, tag = "3")]
    pub member: Option<pb::Member>,
}

impl MemberChange {
    /// The Raft configuration change carrying this change.
    pub fn conf_change(&self) -> ConfChange {
        let m = self.member.clone().unwrap_or_default();
        let change_type = match self.kind() {
            ChangeKind::Remove => ConfChangeType::RemoveNode,
            ChangeKind::Add | ChangeKind::Update if m.is_learner => ConfChangeType::AddLearnerNode,
            ChangeKind::Add | ChangeKind::Update | ChangeKind::Promote => ConfChangeType::AddNode,
        };
        let mut cc = ConfChange::default();
        cc.set_change_type(change_type);
        cc.node_id = m.id;
        cc.context = self.encode_to_vec().into();
        cc
    }

    /// Decodes the context of a committed `ConfChange`.
    pub fn from_conf_change(cc: &ConfChange) -> Option<MemberChange> {
        MemberChange::decode(&cc.context[..]).ok()
    }
}

/// This member's ids, fixed at its first start (stored by `consensus::identity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub member: u64,
    pub cluster: u64,
}

/// The members of the cluster (see the module header).
#[derive(Debug, Clone)]
pub struct Registry {
    members: BTreeMap<u64, pb::Member>,
    removed: BTreeSet<u64>,
    /// The keyspaces of `members` and of removed ids.
    ks: (mvcc::KeyspaceId, mvcc::KeyspaceId),
}

impl Registry {
    /// Reads the registry from the store.
    pub fn load(store: &Store) -> Result<Registry, mvcc::Error> {
        let db = store.db();
        let (ks, gone) = (db.keyspace(MEMBERS)?, db.keyspace(REMOVED)?);
        let r = db.read();
        let mut reg = Registry { members: BTreeMap::new(), removed: BTreeSet::new(), ks: (ks, gone) };
        for item in r.range(ks, Bound::Unbounded, Bound::Unbounded)? {
            let (_, v) = item?;
            let m = pb::Member::decode(v)
                .map_err(|_| mvcc::Error::Keyspace(MEMBERS.into(), "member record that does not decode"))?;
            reg.members.insert(m.id, m);
        }
        for item in r.range(gone, Bound::Unbounded, Bound::Unbounded)? {
            let (k, _) = item?;
            reg.removed.insert(u64::from_be_bytes(k.try_into().unwrap_or([0; 8])));
        }
        Ok(reg)
    }

    /// Every member, in id order.
    pub fn members(&self) -> Vec<pb::Member> {
        self.members.values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<&pb::Member> {
        self.members.get(&id)
    }

    pub fn is_removed(&self, id: u64) -> bool {
        self.removed.contains(&id)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Voting members' ids.
    pub fn voters(&self) -> Vec<u64> {
        self.members.values().filter(|m| !m.is_learner).map(|m| m.id).collect()
    }

    /// Raft's configuration as the registry says.
    pub fn conf_state(&self) -> ConfState {
        let learners = self.members.values().filter(|m| m.is_learner).map(|m| m.id).collect::<Vec<_>>();
        ConfState::from((self.voters(), learners))
    }

    /// The member that has `url` among its peer URLs.
    pub fn by_peer_url(&self, url: &str) -> Option<&pb::Member> {
        self.members.values().find(|m| m.peer_ur_ls.iter().any(|u| u == url))
    }

    /// Whether a member has published itself (etcd's "started": it has a name).
    pub fn started(m: &pb::Member) -> bool {
        !m.name.is_empty()
    }

    /// Records `change` in `w` (the caller commits it with the entry's index) and in memory.
    pub fn apply(&mut self, w: &mut mvcc::StoreWrite<'_>, change: &MemberChange) -> Result<(), mvcc::Error> {
        let Some(m) = change.member.clone() else { return Ok(()) };
        let (members, removed) = self.ks;
        match change.kind() {
            ChangeKind::Remove => {
                w.db().delete(members, &m.id.to_be_bytes())?;
                w.db().put(removed, &m.id.to_be_bytes(), &[])?;
                self.members.remove(&m.id);
                self.removed.insert(m.id);
            }
            ChangeKind::Add | ChangeKind::Update | ChangeKind::Promote => {
                // Keep what the change does not carry (name and client URLs come with the member's publish).
                let mut next = self.members.get(&m.id).cloned().unwrap_or_else(|| m.clone());
                next.peer_ur_ls = m.peer_ur_ls;
                next.is_learner = m.is_learner;
                if next.name.is_empty() {
                    next.name = m.name;
                }
                self.put(w, next)?;
            }
        }
        Ok(())
    }

    /// Records a member's publish (name and client URLs); a member that is no longer in the cluster is ignored.
    pub fn publish(&mut self, w: &mut mvcc::StoreWrite<'_>, m: &pb::Member) -> Result<(), mvcc::Error> {
        let Some(mut next) = self.members.get(&m.id).cloned() else { return Ok(()) };
        next.name = m.name.clone();
        next.client_ur_ls = m.client_ur_ls.clone();
        self.put(w, next)
    }

    fn put(&mut self, w: &mut mvcc::StoreWrite<'_>, m: pb::Member) -> Result<(), mvcc::Error> {
        w.db().put(self.ks.0, &m.id.to_be_bytes(), &m.encode_to_vec())?;
        self.members.insert(m.id, m);
        Ok(())
    }
}

/// The registry as the threads share it: the apply thread changes it, everyone else reads.
#[derive(Debug)]
pub struct Shared {
    pub identity: Identity,
    registry: RwLock<Registry>,
}

impl Shared {
    pub fn new(identity: Identity, registry: Registry) -> Self {
        Shared { identity, registry: RwLock::new(registry) }
    }

    pub fn read(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// The first 8 bytes of a SHA-1, big-endian, never 0 (etcd's "no member").
fn sha1_id(bytes: &[u8]) -> u64 {
    use sha1::Digest as _;
    let digest = sha1::Sha1::digest(bytes);
    u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8])).max(1)
}

/// A member's id, as etcd derives it: SHA-1 of its sorted peer URLs, concatenated, then `suffix` (the cluster
/// token at bootstrap; for a member added later, the time in seconds, so that re-adding the same URLs gives a new
/// id). Equal to etcd's, so a cluster bootstrapped with the same flags has the same ids.
pub fn member_id(suffix: &[u8], peer_urls: &[String]) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut bytes: Vec<u8> = urls.concat().into_bytes();
    bytes.extend_from_slice(suffix);
    sha1_id(&bytes)
}

/// The cluster id from the bootstrap members' ids, as etcd derives it: SHA-1 of the sorted ids, 8 bytes each,
/// big-endian.
pub fn cluster_id(members: &[u64]) -> u64 {
    let mut ids = members.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
    sha1_id(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ids etcd 3.4.23 gave (its log: "added member 93a553dfe71a1c4b [http://127.0.0.1:29380] to cluster
    /// 3e45c57315984696") to `--initial-cluster default=http://127.0.0.1:29380,b=http://127.0.0.1:29390
    /// --initial-cluster-token tok-1`.
    #[test]
    fn ids_are_etcds() {
        let a = member_id(b"tok-1", &["http://127.0.0.1:29380".into()]);
        let b = member_id(b"tok-1", &["http://127.0.0.1:29390".into()]);
        assert_eq!((a, b), (0x93a5_53df_e71a_1c4b, 0x969f_fa0a_5739_861d));
        assert_eq!(cluster_id(&[b, a]), 0x3e45_c573_1598_4696);
    }

    #[test]
    fn change_kinds_map_to_raft_changes() {
        let m = |learner| pb::Member { id: 7, is_learner: learner, ..Default::default() };
        let cc = |kind, learner| {
            MemberChange { request: 1, kind: kind as i32, member: Some(m(learner)) }.conf_change().get_change_type()
        };
        assert_eq!(cc(ChangeKind::Add, false), ConfChangeType::AddNode);
        assert_eq!(cc(ChangeKind::Add, true), ConfChangeType::AddLearnerNode);
        assert_eq!(cc(ChangeKind::Update, true), ConfChangeType::AddLearnerNode);
        assert_eq!(cc(ChangeKind::Promote, false), ConfChangeType::AddNode);
        assert_eq!(cc(ChangeKind::Remove, false), ConfChangeType::RemoveNode);
        let change = MemberChange { request: 9, kind: ChangeKind::Update as i32, member: Some(m(false)) };
        assert_eq!(MemberChange::from_conf_change(&change.conf_change()), Some(change));
    }

    #[test]
    fn ids_ignore_url_order_and_depend_on_salt() {
        let a = member_id(b"t", &["http://b".into(), "http://a".into()]);
        assert_eq!(a, member_id(b"t", &["http://a".into(), "http://b".into()]));
        assert_ne!(a, member_id(b"u", &["http://a".into(), "http://b".into()]));
        assert_eq!(cluster_id(&[3, 1, 2]), cluster_id(&[1, 2, 3]));
    }
}
