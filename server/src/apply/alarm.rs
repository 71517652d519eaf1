//! Alarms, etcd's NOSPACE and CORRUPT: raised and cleared only by applying an `Alarm` entry, so every member holds
//! the same set at the same index, and kept in the store's `alarm` keyspace in the commit of that entry (they
//! survive restarts and travel in snapshots).
//!
//! **What an alarm does** (checked by the apply loop before each write, [`Alarms::refusal`]):
//! - NOSPACE: a write that can grow the store (a Put, a Txn with a put in either branch, a lease grant) is
//!   refused with "etcdserver: mvcc: database space exceeded"; reads, deletes, lease revokes and compactions go on,
//!   so the operator can make room and disarm.
//! - CORRUPT: every write is refused with "etcdserver: corrupt cluster".
//!
//! Who raises them: `api::quota` (NOSPACE, when a write would pass `--quota-backend-bytes`) and the corruption
//! checks (`api::corrupt`, CORRUPT); `etcdctl alarm disarm` clears them.
//!
//! **On-disk format** (`alarm` keyspace, version 1): key = member id (u64, big-endian) ++ alarm type (i32,
//! big-endian); value = the single byte 1 (the record's version).
//!
//! **Threading**: the set is written by the apply thread only, under its lock, after the entry's commit; the api
//! reads it (quota checks, `/health`, Status) through clones of [`Alarms`].

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use mvcc::Store;

use crate::error::Error;
use crate::proto::etcdserverpb::{self as pb, AlarmType, alarm_request::AlarmAction};
use crate::request::Op;

/// The keyspace alarms are stored in.
pub const ALARM: &str = "alarm";

const RECORD_VERSION: u8 = 1;

/// The raised alarms: (member id, alarm type), shared between the apply thread and the api.
#[derive(Debug, Clone, Default)]
pub struct Alarms(Arc<RwLock<BTreeSet<(u64, i32)>>>);

/// An alarm's record in the `alarm` keyspace: key and value.
pub fn encode_record(member: u64, alarm: i32) -> ([u8; 12], [u8; 1]) {
    (key(member, alarm), [RECORD_VERSION])
}

fn key(member: u64, alarm: i32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&member.to_be_bytes());
    k[8..].copy_from_slice(&alarm.to_be_bytes());
    k
}

impl Alarms {
    fn set(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<(u64, i32)>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the set with the one stored in `store` (at start, and when a snapshot is installed).
    pub fn load(&self, store: &Store) -> Result<(), Error> {
        let db = store.db();
        let ks = db.keyspace(ALARM)?;
        let r = db.read();
        let mut set = BTreeSet::new();
        for item in r.range(ks, Bound::Unbounded, Bound::Unbounded)? {
            let (k, v) = item?;
            let record = match (k.get(..8), k.get(8..), v) {
                (Some(m), Some(a), [RECORD_VERSION]) => m.try_into().ok().zip(a.try_into().ok()),
                _ => None,
            };
            let Some((member, alarm)) = record else {
                return Err(Error::Corrupt(format!("alarm record of {} key bytes, value {v:?}", k.len())));
            };
            set.insert((u64::from_be_bytes(member), i32::from_be_bytes(alarm)));
        }
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = set;
        Ok(())
    }

    /// Whether any alarm is raised (the apply loop's fast path).
    pub fn any(&self) -> bool {
        !self.set().is_empty()
    }

    /// Whether `member` has raised an alarm of type `alarm`.
    pub fn raised_by(&self, member: u64, alarm: AlarmType) -> bool {
        self.set().contains(&(member, alarm as i32))
    }

    /// Whether an alarm of type `alarm` is raised by any member.
    pub fn raised(&self, alarm: AlarmType) -> bool {
        self.set().iter().any(|&(_, a)| a == alarm as i32)
    }

    /// The raised alarms of type `alarm`, or all of them for NONE (etcd's AlarmStore.Get).
    pub fn list(&self, alarm: i32) -> Vec<pb::AlarmMember> {
        let all = alarm == AlarmType::None as i32;
        let set = self.set();
        set.iter()
            .filter(|&&(_, a)| all || a == alarm)
            .map(|&(member_id, alarm)| pb::AlarmMember { member_id, alarm })
            .collect()
    }

    /// Why `op` must be refused while the raised alarms hold, if it must (see the module header).
    pub fn refusal(&self, op: &Op) -> Option<Error> {
        let writes = matches!(
            op,
            Op::Put(_) | Op::DeleteRange(_) | Op::Txn(_) | Op::Compaction(_) | Op::LeaseGrant(_) | Op::LeaseRevoke(_)
        );
        if writes && self.raised(AlarmType::Corrupt) {
            return Some(Error::CorruptCluster);
        }
        if grows(op) && self.raised(AlarmType::Nospace) {
            return Some(Error::NoSpace);
        }
        None
    }

    /// Applies an Alarm request in `w` (the caller commits): GET lists, ACTIVATE raises, DEACTIVATE clears. Answers
    /// as etcd does: the listed alarms; the raised one (also when it was raised before); the cleared one (nothing
    /// if it was not raised). The set in memory changes only through [`Alarms::commit`], after the commit.
    pub fn apply(
        &self,
        store: &Store,
        w: &mut mvcc::StoreWrite<'_>,
        r: &pb::AlarmRequest,
    ) -> Result<Change, mvcc::Error> {
        let ks = store.db().keyspace(ALARM)?;
        let entry = (r.member_id, r.alarm);
        let member = pb::AlarmMember { member_id: r.member_id, alarm: r.alarm };
        match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => Ok(Change { answer: self.list(r.alarm), raise: None, clear: None }),
            Ok(AlarmAction::Activate) if r.alarm != AlarmType::None as i32 => {
                if !self.set().contains(&entry) {
                    w.db().put(ks, &key(r.member_id, r.alarm), &[RECORD_VERSION])?;
                    return Ok(Change { answer: vec![member], raise: Some(entry), clear: None });
                }
                Ok(Change { answer: vec![member], raise: None, clear: None })
            }
            Ok(AlarmAction::Deactivate) if self.set().contains(&entry) => {
                w.db().delete(ks, &key(r.member_id, r.alarm))?;
                Ok(Change { answer: vec![member], raise: None, clear: Some(entry) })
            }
            _ => Ok(Change { answer: Vec::new(), raise: None, clear: None }),
        }
    }

    /// Makes a committed change visible, with etcd's log lines.
    pub fn commit(&self, change: &Change) {
        let name = |a: i32| name(a).map_or_else(|| a.to_string(), str::to_string);
        let mut set = self.0.write().unwrap_or_else(|p| p.into_inner());
        if let Some((member, alarm)) = change.raise {
            set.insert((member, alarm));
            let fields = [("alarm", name(alarm)), ("from", format!("{member:x}"))];
            crate::logging::log("warn", "alarm raised", &fields);
        }
        if let Some((member, alarm)) = change.clear {
            set.remove(&(member, alarm));
            let fields = [("alarm", name(alarm)), ("from", format!("{member:x}"))];
            crate::logging::log("warn", "alarm disarmed", &fields);
        }
    }
}

/// What applying an Alarm request changed, and its answer.
#[derive(Debug)]
pub struct Change {
    pub answer: Vec<pb::AlarmMember>,
    raise: Option<(u64, i32)>,
    clear: Option<(u64, i32)>,
}

/// What etcd adds to a put's key and value for the index and bookkeeping (its `kvOverhead`).
const KV_OVERHEAD: u64 = 256;
/// What etcd counts for a lease grant (its `leaseOverhead`).
const LEASE_OVERHEAD: u64 = 64;

/// The bytes `op` may add to the store, as etcd estimates them (its quota's `Cost`; for a Txn, its larger branch).
pub fn cost(op: &Op) -> u64 {
    match op {
        Op::Put(p) => put_cost(p),
        Op::LeaseGrant(_) => LEASE_OVERHEAD,
        Op::Txn(t) => txn_cost(t),
        _ => 0,
    }
}

fn put_cost(p: &pb::PutRequest) -> u64 {
    (p.key.len() + p.value.len()) as u64 + KV_OVERHEAD
}

fn txn_cost(t: &pb::TxnRequest) -> u64 {
    use pb::request_op::Request;
    let branch = |ops: &[pb::RequestOp]| -> u64 {
        ops.iter()
            .map(|o| match &o.request {
                Some(Request::RequestPut(p)) => put_cost(p),
                Some(Request::RequestTxn(t)) => txn_cost(t),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}

/// Whether `op` can grow the store (etcd's capped applier: a positive cost): a Put, a lease grant, or a Txn with a
/// put in either branch, at any depth.
pub fn grows(op: &Op) -> bool {
    cost(op) > 0
}

/// etcd's name of an alarm type (`NOSPACE`, `CORRUPT`), if it is one.
pub fn name(alarm: i32) -> Option<&'static str> {
    AlarmType::try_from(alarm).ok().map(|t| t.as_str_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_op() -> pb::RequestOp {
        pb::RequestOp { request: Some(pb::request_op::Request::RequestPut(Default::default())) }
    }

    #[test]
    fn nospace_refuses_only_what_grows_the_store() {
        let alarms = Alarms::default();
        alarms.0.write().unwrap().insert((7, AlarmType::Nospace as i32));
        let nested = pb::TxnRequest {
            failure: vec![pb::RequestOp {
                request: Some(pb::request_op::Request::RequestTxn(pb::TxnRequest {
                    success: vec![put_op()],
                    ..Default::default()
                })),
            }],
            ..Default::default()
        };
        assert!(matches!(alarms.refusal(&Op::Put(Default::default())), Some(Error::NoSpace)));
        assert!(matches!(alarms.refusal(&Op::Txn(nested)), Some(Error::NoSpace)), "a put nested in the else branch");
        assert!(matches!(alarms.refusal(&Op::LeaseGrant(Default::default())), Some(Error::NoSpace)));
        assert!(alarms.refusal(&Op::DeleteRange(Default::default())).is_none());
        assert!(alarms.refusal(&Op::Compaction(Default::default())).is_none());
        assert!(alarms.refusal(&Op::Txn(Default::default())).is_none(), "a txn without puts");
        alarms.0.write().unwrap().insert((9, AlarmType::Corrupt as i32));
        assert!(matches!(alarms.refusal(&Op::DeleteRange(Default::default())), Some(Error::CorruptCluster)));
        assert_eq!(alarms.list(AlarmType::Corrupt as i32), vec![pb::AlarmMember { member_id: 9, alarm: 2 }]);
        assert_eq!(alarms.list(AlarmType::None as i32).len(), 2);
    }

    #[test]
    fn a_txn_costs_its_larger_branch() {
        let put = |n: usize| pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: b"k".to_vec(),
                value: vec![0; n],
                ..Default::default()
            })),
        };
        let t = pb::TxnRequest { success: vec![put(10), put(10)], failure: vec![put(1000)], ..Default::default() };
        assert_eq!(cost(&Op::Txn(t)), 1001 + KV_OVERHEAD);
        let t = pb::TxnRequest { success: vec![put(10), put(10)], failure: vec![put(1)], ..Default::default() };
        assert_eq!(cost(&Op::Txn(t)), 2 * (11 + KV_OVERHEAD));
        assert_eq!(cost(&Op::DeleteRange(Default::default())), 0);
    }
}
