//! `--quota-backend-bytes`: the check a write that can grow the store passes before it is proposed (Put, Txn with
//! a put, LeaseGrant; etcd's quota server). When the write would take the store past the quota, the member raises
//! the NOSPACE alarm through Raft (so every member refuses such writes from then on, see `apply::alarm`) and the
//! write fails with "etcdserver: mvcc: database space exceeded".
//!
//! Unlike etcd, which measures the file (free pages included, so only a defragmentation with its stall makes room),
//! the quota counts the store's bytes in use: a compaction frees pages for reuse at once, and the online
//! defragmentation gives the file back without stopping writes. A Txn without a put is never refused here, so a
//! client that deletes through transactions (kube-apiserver) can make room while the alarm is raised.

use crate::apply::alarm::{self, Alarms};
use crate::apply::store::StoreSlot;
use crate::error::Error;
use crate::proposals::Proposer;
use crate::proto::etcdserverpb::{self as pb, AlarmType, alarm_request::AlarmAction};
use crate::request::Op;
use std::sync::Arc;

/// The quota check, shared by the KV and Lease services.
#[derive(Debug, Clone)]
pub struct Quota {
    pub stores: Arc<StoreSlot>,
    pub proposer: Proposer,
    pub alarms: Alarms,
    /// This member's id, named in the alarms it raises.
    pub member: u64,
    /// `--quota-backend-bytes` (its default when 0 was given).
    pub bytes: u64,
}

impl Quota {
    /// Passes `op` if it cannot grow the store, or fits under the quota and no NOSPACE alarm is raised; refuses it
    /// otherwise, raising this member's NOSPACE alarm if its own store is full (unless it is raised already).
    pub async fn check(&self, op: &Op) -> Result<(), Error> {
        let cost = alarm::cost(op);
        if cost == 0 {
            return Ok(());
        }
        let in_use = self.stores.get().db().in_use();
        if in_use.saturating_add(cost) <= self.bytes {
            // Another member's alarm refuses it all the same (etcd refuses it when applying).
            return if self.alarms.raised(AlarmType::Nospace) { Err(Error::NoSpace) } else { Ok(()) };
        }
        // As etcd's members do, each member whose own store is full raises an alarm of its own, once: `alarm
        // list` names every full member.
        if self.alarms.raised_by(self.member, AlarmType::Nospace) {
            return Err(Error::NoSpace);
        }
        let raise = pb::AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: self.member,
            alarm: AlarmType::Nospace as i32,
        };
        let fields = [("quota-size-bytes", self.bytes.to_string()), ("in-use-bytes", in_use.to_string())];
        crate::logging::log("warn", "database space exceeded: raising the NOSPACE alarm", &fields);
        // The write fails either way; a failure to raise the alarm (no leader, say) is retried by the next write.
        let _ = self.proposer.propose(&crate::request::Caller::member(), &Op::Alarm(raise)).await;
        Err(Error::NoSpace)
    }
}
