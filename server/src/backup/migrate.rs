//! In-place conversion of an etcd 3.4 member directory: ferrokv started on a data directory whose
//! `member/snap/db` is etcd's bbolt database (a stopped etcd member's, or what `etcdctl snapshot restore` wrote)
//! converts it on its first start, then runs as that member, with its member and cluster ids.
//!
//! **What the conversion writes** (into `member.converting`, from the etcd directory):
//! 1. The store: the database's whole history, leases, alarms and compaction point (`backup::import`), at its
//!    `consistent_index` C (the last entry etcd applied to it), with the members as of C: those of the newest v2
//!    snapshot file at or below C, changed by the configuration changes and publishes of the WAL entries after
//!    that snapshot up to C.
//! 2. The identity: the member and cluster ids of etcd's WAL metadata.
//! 3. ferrokv's WAL: a snapshot marker at C (with C's term), then every etcd entry after C, at the same index
//!    and term, its payload converted (puts, deletes, txns, compactions, leases, alarms, member publishes and
//!    configuration changes; etcd's v2-only requests become empty entries), then etcd's hard state. The entries
//!    are replayed by the apply loop at start, as etcd would have replayed them. Every member converts its own
//!    log the same way, so the logs still agree across the cluster.
//!
//! **Crash safety**: the original is never written. The conversion is built in `member.converting`, synced, and
//! marked complete (the file `converted-from-etcd`, written last); then `member` is renamed to `member.etcd` and
//! `member.converting` to `member`. A crash while building leaves `member` as etcd left it (the next start
//! rebuilds); a crash between the renames leaves `member.etcd` and a complete `member.converting` (the next
//! start finishes the renames). `member.etcd` stays until the operator removes it; with it, etcd can be started
//! again on the directory after renaming it back to `member`.
//!
//! Refused, with the reason and nothing changed: a database or WAL that does not read, a WAL without C's term, an
//! entry to replay that changes users or roles (etcd 3.4 logs the password itself), a separate `--wal-dir`. Users,
//! roles and whether authentication is on come with the database.

use std::path::Path;

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{Entry, EntryType};

use crate::apply::membership::{ChangeKind, MemberChange, Registry};
use crate::backup::etcd_dir::{self, member_from_json};
use crate::backup::{import, rename, rename_durably, sync_dir};
use crate::consensus::identity::Identity;
use crate::error::Error;
use crate::logging::log;
use crate::proto::etcdserverpb as pb;
use crate::request::{self, Op, RequestId};

/// Where the original etcd member directory is kept after the conversion.
pub const ORIGINAL: &str = "member.etcd";
const CONVERTING: &str = "member.converting";
/// Written last into a complete conversion.
const DONE: &str = "converted-from-etcd";

/// The parts of etcd's `InternalRaftRequest` a conversion carries (other fields are skipped by the decoder).
#[derive(Clone, PartialEq, prost::Message)]
struct EtcdRequest {
    #[prost(message, optional, tag = "2")]
    v2: Option<V2Request>,
    #[prost(message, optional, tag = "3")]
    range: Option<pb::RangeRequest>,
    #[prost(message, optional, tag = "4")]
    put: Option<pb::PutRequest>,
    #[prost(message, optional, tag = "5")]
    delete_range: Option<pb::DeleteRangeRequest>,
    #[prost(message, optional, tag = "6")]
    txn: Option<pb::TxnRequest>,
    #[prost(message, optional, tag = "7")]
    compaction: Option<pb::CompactionRequest>,
    #[prost(message, optional, tag = "8")]
    lease_grant: Option<pb::LeaseGrantRequest>,
    #[prost(message, optional, tag = "9")]
    lease_revoke: Option<pb::LeaseRevokeRequest>,
    #[prost(message, optional, tag = "10")]
    alarm: Option<pb::AlarmRequest>,
    /// Any of etcd's auth requests (tags 1000 to 1204): present or not is all the conversion needs.
    #[prost(message, optional, tag = "1000")]
    auth_enable: Option<pb::AuthEnableRequest>,
    #[prost(message, optional, tag = "1011")]
    auth_disable: Option<pb::AuthDisableRequest>,
    #[prost(message, optional, tag = "1100")]
    auth_user_add: Option<pb::AuthUserAddRequest>,
    #[prost(message, optional, tag = "1101")]
    auth_user_delete: Option<pb::AuthUserDeleteRequest>,
    #[prost(message, optional, tag = "1103")]
    auth_user_change_password: Option<pb::AuthUserChangePasswordRequest>,
    #[prost(message, optional, tag = "1104")]
    auth_user_grant_role: Option<pb::AuthUserGrantRoleRequest>,
    #[prost(message, optional, tag = "1105")]
    auth_user_revoke_role: Option<pb::AuthUserRevokeRoleRequest>,
    #[prost(message, optional, tag = "1200")]
    auth_role_add: Option<pb::AuthRoleAddRequest>,
    #[prost(message, optional, tag = "1201")]
    auth_role_delete: Option<pb::AuthRoleDeleteRequest>,
    #[prost(message, optional, tag = "1203")]
    auth_role_grant_permission: Option<pb::AuthRoleGrantPermissionRequest>,
    #[prost(message, optional, tag = "1204")]
    auth_role_revoke_permission: Option<pb::AuthRoleRevokePermissionRequest>,
}

impl EtcdRequest {
    /// Whether it changes users, roles or whether authentication is on.
    fn changes_auth(&self) -> bool {
        self.auth_enable.is_some()
            || self.auth_disable.is_some()
            || self.auth_user_add.is_some()
            || self.auth_user_delete.is_some()
            || self.auth_user_change_password.is_some()
            || self.auth_user_grant_role.is_some()
            || self.auth_user_revoke_role.is_some()
            || self.auth_role_add.is_some()
            || self.auth_role_delete.is_some()
            || self.auth_role_grant_permission.is_some()
            || self.auth_role_revoke_permission.is_some()
    }
}

/// etcd's v2 `Request` (members publish their name and client URLs with one).
#[derive(Clone, PartialEq, prost::Message)]
struct V2Request {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(string, tag = "2")]
    method: String,
    #[prost(string, tag = "3")]
    path: String,
    #[prost(string, tag = "4")]
    val: String,
}

/// Whether `db` is a bbolt file (etcd's database, not ferrokv's store).
pub fn is_etcd_db(db: &Path) -> bool {
    let mut head = [0u8; 20];
    std::fs::File::open(db)
        .and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, 0))
        .is_ok_and(|()| u32::from_le_bytes([head[16], head[17], head[18], head[19]]) == bbolt::MAGIC)
}

/// Converts the data directory's etcd member, or finishes an interrupted conversion (see the module header);
/// does nothing to a ferrokv member.
pub fn convert_if_needed(data_dir: &Path, wal_dir: Option<&Path>) -> Result<(), Error> {
    let member = data_dir.join("member");
    let original = data_dir.join(ORIGINAL);
    let converting = data_dir.join(CONVERTING);
    let etcd_member = is_etcd_db(&member.join("snap").join("db"));
    if member.exists() && !etcd_member {
        // etcd stopped before it first wrote its database: its WAL alone is not something to start on.
        let etcd_wal = std::fs::read_dir(member.join("wal"))
            .map(|d| d.flatten().any(|e| e.file_name().to_str().is_some_and(etcd_dir::is_wal_name)))
            .unwrap_or(false);
        if etcd_wal && !member.join("identity").exists() && !member.join("snap").join("db").exists() {
            return Err(Error::Refused(format!(
                "{} holds an etcd WAL but no etcd database: start etcd on it once, or restore a snapshot",
                member.display()
            )));
        }
        if original.exists() {
            log(
                "info",
                "the etcd member directory this member was converted from is kept; remove it once it is not needed",
                &[("path", original.display().to_string())],
            );
        }
        return Ok(());
    }
    if etcd_member {
        if wal_dir.is_some() {
            return Err(Error::Refused(
                "converting an etcd member with a separate --wal-dir is not supported: move its WAL to \
                 member/wal and start without --wal-dir"
                    .into(),
            ));
        }
        build(&member, &converting)?;
        rename(&member, &original)?;
    } else if original.exists() {
        if !converting.join(DONE).exists() {
            build(&original, &converting)?;
        }
    } else {
        return Ok(());
    }
    rename_durably(&converting, &member)?;
    log(
        "info",
        "converted the etcd member directory; the original is kept",
        &[("member-dir", member.display().to_string()), ("original", original.display().to_string())],
    );
    Ok(())
}

/// etcd's `raftpb.ConfChange`. Its types are numbered as etcd's raft numbers them (AddNode 0, RemoveNode 1,
/// UpdateNode 2, AddLearnerNode 3), not as raft-rs does, so it is decoded here.
#[derive(Clone, PartialEq, prost::Message)]
struct EtcdConfChange {
    #[prost(int32, tag = "2")]
    kind: i32,
    #[prost(uint64, tag = "3")]
    node_id: u64,
    #[prost(bytes = "vec", tag = "4")]
    context: Vec<u8>,
}

/// A member change an etcd configuration change makes.
fn member_change(data: &[u8], index: u64) -> Result<MemberChange, Error> {
    let cc = EtcdConfChange::decode(data)
        .map_err(|e| Error::Corrupt(format!("etcd WAL entry {index}: a configuration change: {e}")))?;
    let mut m = pb::Member { id: cc.node_id, ..pb::Member::default() };
    let kind = match cc.kind {
        1 => ChangeKind::Remove,
        t @ (0 | 2 | 3) => {
            let promote = member_from_json(&cc.context, &mut m)?;
            m.id = cc.node_id;
            match t {
                3 => {
                    m.is_learner = true;
                    ChangeKind::Add
                }
                2 => ChangeKind::Update,
                _ if promote => ChangeKind::Promote,
                _ => ChangeKind::Add,
            }
        }
        other => return Err(Error::Corrupt(format!("etcd WAL entry {index}: configuration change type {other}"))),
    };
    Ok(MemberChange { request: 0, kind: kind as i32, member: Some(m) })
}

/// The operation an etcd normal entry's payload makes, if it is one ferrokv applies.
fn operation(data: &[u8], index: u64) -> Result<Option<Op>, Error> {
    if data.is_empty() {
        return Ok(None);
    }
    // As etcd: an InternalRaftRequest, or else (older entries, member publishes) a bare v2 request.
    let v2 = match EtcdRequest::decode(data) {
        Ok(r) => {
            if r.changes_auth() {
                // etcd 3.4 logs the password itself and hashes it when applying: not something to replay.
                return Err(Error::Refused(format!(
                    "WAL entry {index}, past what etcd's database holds, changes users or roles: start etcd on the \
                     directory once more and stop it cleanly, so that its database holds the change, then convert"
                )));
            }
            let op = r
                .put
                .map(Op::Put)
                .or(r.delete_range.map(Op::DeleteRange))
                .or(r.txn.map(Op::Txn))
                .or(r.compaction.map(Op::Compaction))
                .or(r.lease_grant.map(Op::LeaseGrant))
                .or(r.lease_revoke.map(Op::LeaseRevoke))
                .or(r.alarm.map(Op::Alarm));
            if op.is_some() || r.range.is_some() {
                return Ok(op);
            }
            match r.v2 {
                Some(v2) => v2,
                None => return Ok(None),
            }
        }
        Err(_) => V2Request::decode(data)
            .map_err(|e| Error::Corrupt(format!("etcd WAL entry {index} does not decode: {e}")))?,
    };
    // A member's publish: PUT /0/members/<id>/attributes {"name":…,"clientURLs":[…]}.
    let id = v2
        .path
        .strip_prefix("/0/members/")
        .and_then(|p| p.strip_suffix("/attributes"))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok());
    match id {
        Some(id) if v2.method == "PUT" => {
            let mut m = pb::Member { id, ..pb::Member::default() };
            member_from_json(v2.val.as_bytes(), &mut m)?;
            Ok(Some(Op::Publish(m)))
        }
        _ => Ok(None),
    }
}

/// etcd's entry as ferrokv's: the same index, term and kind, the payload converted.
fn convert_entry(e: &Entry) -> Result<Entry, Error> {
    let mut out = Entry { index: e.index, term: e.term, ..Entry::default() };
    let encoding = |what: &'static str| move |source| Error::Encoding { what: what.into(), source };
    match e.get_entry_type() {
        EntryType::EntryNormal => {
            if let Some(op) = operation(&e.data, e.index)? {
                out.data = request::encode(RequestId(0), &request::Caller::member(), &op).into();
            }
        }
        EntryType::EntryConfChange => {
            out.set_entry_type(EntryType::EntryConfChange);
            out.data = member_change(&e.data, e.index)?
                .conf_change()
                .write_to_bytes()
                .map_err(encoding("encode a change"))?
                .into();
        }
        EntryType::EntryConfChangeV2 => {
            return Err(Error::Refused(format!("WAL entry {} is a joint configuration change", e.index)));
        }
    }
    Ok(out)
}

/// Builds the conversion of the etcd member at `src` into `out` (see the module header).
fn build(src: &Path, out: &Path) -> Result<(), Error> {
    log("info", "converting an etcd member directory", &[("path", src.display().to_string())]);
    if out.exists() {
        std::fs::remove_dir_all(out).map_err(Error::io(format!("remove {}", out.display())))?;
    }
    wal::create_dir_durable(&out.join("snap"))?;
    let wal = etcd_dir::read_wal(&src.join("wal"))?;
    let db = src.join("snap").join("db");
    let applied = consistent_index(&db)?;
    let (store, imported) = import::import(&db, &out.join("snap").join("db"), mvcc::StoreConfig::default(), {
        import::Options { skip_hash_check: true, bump_revision: 0 }
    })?;
    let snap = etcd_dir::read_snap(&src.join("snap"), applied)?.unwrap_or_default();
    // Nothing applied to the database (etcd killed before its first commit): every entry is replayed, the
    // bootstrap's configuration changes included, as after a first start.
    let term = match applied {
        0 => 0,
        _ => wal
            .term_at(applied)
            .or((snap.index == applied && snap.index > 0).then_some(snap.term))
            .ok_or_else(|| Error::Refused(format!("etcd's WAL does not hold the term of entry {applied}")))?,
    };
    let mut registry = Registry::load(&store)?;
    let mut w = store.write()?;
    if applied > 0 {
        record_members(&mut registry, &mut w, &wal, snap, applied)?;
    }
    w.set_applied(applied, term);
    w.commit()?;
    store.db().sync()?;
    drop(store);
    Identity { member: wal.member, cluster: wal.cluster }.save(out)?;
    let mut converted = Vec::new();
    for e in wal.entries.range(applied.saturating_add(1)..).map(|(_, e)| e) {
        let c = convert_entry(e)?;
        let bytes =
            c.write_to_bytes().map_err(|source| Error::Encoding { what: "encode a converted entry".into(), source })?;
        converted.push((c.index, c.term, bytes));
    }
    let ours = wal::Wal::create(out.join("wal"), wal::Config::default())?;
    let mut records = Vec::new();
    if applied > 0 {
        records
            .push(wal::Record::Snapshot(wal::SnapshotMarker { index: wal::RaftIndex(applied), term: wal::Term(term) }));
    }
    records.extend(converted.iter().map(|(i, t, d)| wal::Record::Entry {
        index: wal::RaftIndex(*i),
        term: wal::Term(*t),
        data: d,
    }));
    let hs = &wal.hard_state;
    records.push(wal::Record::HardState(wal::HardState {
        term: wal::Term(hs.term.max(term)),
        vote: hs.vote,
        // Never past the last entry kept (raft refuses that): a torn tail took its hard state with it anyway.
        commit: wal::RaftIndex(hs.commit.max(applied).min(converted.last().map_or(applied, |c| c.0))),
    }));
    ours.append(&records).and_then(|c| c.wait())?;
    drop(ours);
    let summary = format!(
        "member {:x} of cluster {:x}; applied index {applied} (term {term}); revision {}, compacted at {}; \
         {} revisions, {} leases; {} WAL entries to replay\n",
        wal.member,
        wal.cluster,
        imported.revision,
        imported.compacted,
        imported.revisions,
        imported.leases,
        converted.len()
    );
    std::fs::write(out.join(DONE), &summary).map_err(Error::io(format!("write {}", out.join(DONE).display())))?;
    for d in [&out.join("snap"), out] {
        sync_dir(d)?;
    }
    log(
        "info",
        "converted an etcd member directory",
        &[
            ("member-id", format!("{:x}", wal.member)),
            ("cluster-id", format!("{:x}", wal.cluster)),
            ("applied-index", applied.to_string()),
            ("revision", imported.revision.to_string()),
            ("compact-revision", imported.compacted.to_string()),
            ("leases", imported.leases.to_string()),
            ("members", registry.members().len().to_string()),
            ("entries-to-replay", converted.len().to_string()),
        ],
    );
    Ok(())
}

/// Records in the registry the members at the applied index: the snapshot's, changed by the configuration
/// changes and publishes of the entries after it up to `applied`, each applied as the registry applies them when
/// ferrokv replays its own log.
fn record_members(
    registry: &mut Registry,
    w: &mut mvcc::StoreWrite<'_>,
    wal: &etcd_dir::EtcdWal,
    snap: etcd_dir::Members,
    applied: u64,
) -> Result<(), Error> {
    let change =
        |kind: ChangeKind, member: pb::Member| MemberChange { request: 0, kind: kind as i32, member: Some(member) };
    for m in snap.members.into_values() {
        registry.apply(w, &change(ChangeKind::Add, m))?;
    }
    for id in snap.removed {
        registry.apply(w, &change(ChangeKind::Remove, pb::Member { id, ..pb::Member::default() }))?;
    }
    for e in wal.entries.range(snap.index.saturating_add(1)..).take_while(|(i, _)| **i <= applied).map(|(_, e)| e) {
        if e.get_entry_type() == EntryType::EntryConfChange {
            registry.apply(w, &member_change(&e.data, e.index)?)?;
        } else if let Some(Op::Publish(p)) = operation(&e.data, e.index)? {
            registry.publish(w, &p)?;
        }
    }
    if registry.get(wal.member).is_none() {
        return Err(Error::Refused(format!(
            "member {:x} is not among the members at index {applied}: {:x?}",
            wal.member,
            registry.members().iter().map(|m| m.id).collect::<Vec<_>>()
        )));
    }
    Ok(())
}

/// The database's `consistent_index` (the last entry etcd applied to it).
fn consistent_index(db: &Path) -> Result<u64, Error> {
    let r = bbolt::Reader::open(db).map_err(|e| Error::Corrupt(format!("{}: {e}", db.display())))?;
    let mut index = None;
    r.for_each(b"meta", &mut |k, v| {
        if k == b"consistent_index" {
            index = v.try_into().ok().map(u64::from_be_bytes);
        }
        Ok(())
    })
    .map_err(|e| Error::Corrupt(format!("{}: {e}", db.display())))?;
    index.ok_or_else(|| Error::Corrupt(format!("{} has no consistent_index", db.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_payloads_become_ferrokv_operations() {
        let put = pb::PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() };
        let internal = EtcdRequest { put: Some(put.clone()), ..Default::default() }.encode_to_vec();
        assert_eq!(operation(&internal, 5).unwrap(), Some(Op::Put(put)));
        let publish = V2Request {
            id: 9,
            method: "PUT".into(),
            path: "/0/members/bdae9bbc11dd390d/attributes".into(),
            val: r#"{"name":"e1","clientURLs":["http://127.0.0.1:2379"]}"#.into(),
        };
        let Some(Op::Publish(m)) = operation(&publish.encode_to_vec(), 6).unwrap() else { panic!("a publish") };
        assert_eq!((m.id, m.name.as_str(), m.client_ur_ls.len()), (0xbdae9bbc11dd390d, "e1", 1));
        let version = V2Request { method: "PUT".into(), path: "/0/version".into(), val: "3.4.0".into(), id: 1 };
        assert_eq!(operation(&version.encode_to_vec(), 7).unwrap(), None);
        let auth = EtcdRequest { auth_enable: Some(pb::AuthEnableRequest {}), ..Default::default() };
        assert!(matches!(operation(&auth.encode_to_vec(), 8), Err(Error::Refused(_))));
    }
}
