//! `--force-new-cluster`: a member restarted on its data directory becomes the only member of its cluster, keeping
//! its data and the cluster's id (etcd's recovery after losing quorum for good).
//!
//! As etcd does, before Raft starts: the WAL's uncommitted entries are discarded ("discarding uncommitted WAL
//! entries"), then one committed `RemoveNode` entry per other member is appended at the last term, with a hard
//! state committing them. The Raft node then starts as usual: the removals are applied (to Raft's configuration
//! and to the member registry, where they are recorded as removals) before this member campaigns, and it wins
//! alone. Other members are the registry's at the store's applied index and any added by committed entries after
//! it; removing one that a later entry already removed does nothing.
//!
//! **Crash safety**: the truncation and the appended entries are each durable before the next step; a crash in
//! between leaves a log that a second forced start completes the same way (removals are idempotent).

use std::collections::BTreeSet;

use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType};

use crate::apply::membership::{ChangeKind, MemberChange, Registry};
use crate::error::Error;
use crate::logging::log;
use crate::proto::etcdserverpb as pb;

fn encoding(what: &'static str) -> impl FnOnce(protobuf::ProtobufError) -> Error {
    move |source| Error::Encoding { what: what.to_string(), source }
}

/// Rewrites the log so that `me` is the only member (see the module header). `applied` is the store's applied
/// index.
pub fn force_new_cluster(
    me: u64,
    cluster: u64,
    registry: &Registry,
    applied: u64,
    wal: &wal::Wal,
) -> Result<(), Error> {
    let replay = wal.replay(wal::RaftIndex(applied + 1))?;
    let hard = replay.hard_state.unwrap_or_default();
    let commit = hard.commit.0.max(applied);
    let last = wal.last_index().map_or(0, |i| i.0);
    let fields = |extra: &[(&'static str, String)]| {
        let mut f = vec![("cluster-id", format!("{cluster:x}")), ("local-member-id", format!("{me:x}"))];
        f.extend_from_slice(extra);
        f
    };
    log("info", "forcing restart member", &fields(&[("commit-index", commit.to_string())]));
    if last > commit {
        let extra = [
            ("entry-index", last.to_string()),
            ("commit-index-from-wal", commit.to_string()),
            ("number-of-discarded-entries", (last - commit).to_string()),
        ];
        log("warn", "discarding uncommitted WAL entries", &fields(&extra));
        wal.truncate(wal::RaftIndex(commit + 1)).and_then(|c| c.wait())?;
    }
    let mut others: BTreeSet<u64> = registry.members().iter().map(|m| m.id).collect();
    for e in replay.entries.iter().filter(|e| e.index.0 <= commit) {
        let entry = Entry::parse_from_bytes(&e.data).map_err(encoding("decode a WAL entry"))?;
        if entry.get_entry_type() == EntryType::EntryConfChange {
            let cc = ConfChange::parse_from_bytes(&entry.data).map_err(encoding("decode a configuration change"))?;
            if cc.get_change_type() != ConfChangeType::RemoveNode {
                others.insert(cc.node_id);
            }
        }
    }
    others.remove(&me);
    let last_term = replay.entries.iter().filter(|e| e.index.0 <= commit).map(|e| e.term).max();
    let term = last_term.map_or(hard.term, |t| t.max(hard.term));
    let mut encoded = Vec::with_capacity(others.len());
    for (i, id) in others.iter().enumerate() {
        let change = MemberChange {
            request: 0,
            kind: ChangeKind::Remove as i32,
            member: Some(pb::Member { id: *id, ..Default::default() }),
        };
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChange);
        e.index = commit + 1 + i as u64;
        e.term = term.0;
        e.data = change.conf_change().write_to_bytes().map_err(encoding("encode a forced removal"))?.into();
        encoded.push((e.index, e.write_to_bytes().map_err(encoding("encode a forced removal entry"))?));
        log("info", "forcing removal of member", &fields(&[("removed-member-id", format!("{id:x}"))]));
    }
    let mut records: Vec<wal::Record<'_>> =
        encoded.iter().map(|(i, d)| wal::Record::Entry { index: wal::RaftIndex(*i), term, data: d }).collect();
    let new_commit = wal::RaftIndex(commit + others.len() as u64);
    records.push(wal::Record::HardState(wal::HardState { term, vote: hard.vote, commit: new_commit }));
    wal.append(&records).and_then(|c| c.wait())?;
    Ok(())
}
