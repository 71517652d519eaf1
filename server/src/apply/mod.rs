//! The apply loop: committed Raft entries are applied to the mvcc store in log order, exactly once. They are
//! applied on the apply thread, or on the Raft thread when it is idle and the batch is a few small writes
//! (`lane`: one thread at a time, in log order either way).
//!
//! **Invariants**
//! 1. Entries at or below the store's applied index are skipped (a restart replays the WAL from its start; the
//!    applied index is committed in the same mvcc commit as the writes it produced).
//! 2. Each request gets its own etcd revision. A run of consecutive plain writes (Put, DeleteRange, Txn without
//!    leases) of one batch of committed entries is applied in one store transaction, one B+tree commit carrying
//!    all their revisions and the last one's index; results and watch events go out only after that commit. If
//!    any request of the run fails, the whole transaction is discarded and the run is applied again one request
//!    per transaction, where a failing request (a Put with `ignore_value` on a missing key, say) is dropped whole
//!    and only its index is recorded: the same error on every member, same state. Lease operations and
//!    compactions always run alone.
//! 3. The result goes to the request's waiter by id (see `proposals`) in the store's own terms ([`Response`]:
//!    the store revision after the request, the entry's term, what the write returned). This layer builds no
//!    gRPC response; `api::convert` does, with etcd's header.

pub mod alarm;
pub mod auth;
pub mod jwt;
pub mod lane;
pub mod lease;
pub mod membership;
pub mod perms;
pub mod range;
pub mod store;
mod syncer;

pub use range::range_options;

use std::sync::Arc;

use mvcc::{Compare, CompareOp, CompareTarget, PutOptions, RequestOp, TxnRequest, TxnResult};
use prost::Message;
use raft::eraftpb::{Entry, EntryType};
use tokio::sync::watch;

use crate::error::Error;
use crate::proto::etcdserverpb as pb;
use crate::request::{InternalRequest, Op, RequestId};

/// Who waits for which request's result. The apply thread hands each applied request's result over by id (and
/// the Raft thread fails the proposals it has to drop); `proposals::Proposals` is the registry behind it. A result
/// nobody waits for (timed out, or proposed on another member) is dropped.
pub trait Waiters: Send + Sync + std::fmt::Debug {
    fn complete(&self, id: RequestId, result: Applied);
}

/// What an applied request produced.
pub type Applied = Result<Response, Error>;

/// What an applied write produced, in the store's own terms; the api layer turns it into etcd's response, with
/// the header it builds from `revision` and `term` (`api::convert`).
#[derive(Debug, Clone)]
pub struct Response {
    /// The store revision after the request.
    pub revision: i64,
    /// The term of the entry that carried it.
    pub term: u64,
    pub outcome: Outcome,
}

/// What kind of write it was, and what it returns.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The key's value before the put, if it had one.
    Put {
        prev: Option<mvcc::KeyValue>,
    },
    /// How many keys were deleted and, when the client asked for them, their last values.
    DeleteRange(mvcc::DeleteResult),
    Txn(TxnResult),
    Compaction,
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    LeaseRevoke,
    /// A membership change or publish: the members after it (the registry's records).
    Members(Vec<pb::Member>),
    /// An Alarm request's answer (see `alarm::Alarms::apply`).
    Alarms(Vec<pb::AlarmMember>),
    /// An Auth service request's answer (see `auth::apply`).
    Auth(auth::Answer),
}

fn compare(c: &pb::Compare) -> Compare {
    use pb::compare::{CompareResult, CompareTarget as T, TargetUnion};
    let op = match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => CompareOp::Equal,
        CompareResult::Greater => CompareOp::Greater,
        CompareResult::Less => CompareOp::Less,
        CompareResult::NotEqual => CompareOp::NotEqual,
    };
    let n = |u: &Option<TargetUnion>| match u {
        Some(
            TargetUnion::Version(v)
            | TargetUnion::CreateRevision(v)
            | TargetUnion::ModRevision(v)
            | TargetUnion::Lease(v),
        ) => *v,
        _ => 0,
    };
    let target = match T::try_from(c.target).unwrap_or(T::Version) {
        T::Version => CompareTarget::Version(n(&c.target_union)),
        T::Create => CompareTarget::CreateRevision(n(&c.target_union)),
        T::Mod => CompareTarget::ModRevision(n(&c.target_union)),
        T::Lease => CompareTarget::Lease(n(&c.target_union)),
        T::Value => CompareTarget::Value(match &c.target_union {
            Some(TargetUnion::Value(v)) => v.clone(),
            _ => Vec::new(),
        }),
    };
    Compare { key: c.key.clone(), range_end: c.range_end.clone(), op, target }
}

fn request_ops(ops: &[pb::RequestOp]) -> Vec<RequestOp> {
    use pb::request_op::Request;
    ops.iter()
        .filter_map(|o| o.request.as_ref())
        .map(|r| match r {
            Request::RequestRange(r) => {
                RequestOp::Range { key: r.key.clone(), range_end: r.range_end.clone(), opts: range_options(r) }
            }
            Request::RequestPut(p) => RequestOp::Put {
                key: p.key.clone(),
                value: p.value.clone(),
                lease: p.lease,
                opts: PutOptions { ignore_value: p.ignore_value, ignore_lease: p.ignore_lease },
            },
            Request::RequestDeleteRange(d) => {
                RequestOp::DeleteRange { key: d.key.clone(), range_end: d.range_end.clone(), prev_kv: d.prev_kv }
            }
            Request::RequestTxn(t) => RequestOp::Txn(txn_request(t)),
        })
        .collect()
}

/// etcd's TxnRequest for mvcc.
pub fn txn_request(t: &pb::TxnRequest) -> TxnRequest {
    TxnRequest {
        compare: t.compare.iter().map(compare).collect(),
        success: request_ops(&t.success),
        failure: request_ops(&t.failure),
    }
}

/// What the apply thread is handed, in log order.
#[derive(Debug)]
pub enum ApplyMsg {
    /// Committed entries.
    Entries(Vec<Entry>),
    /// Install the snapshot staged for `(index, term)` in place of the store; the outcome goes to `done`.
    Snapshot { index: u64, term: u64, done: std::sync::mpsc::Sender<Result<(), Error>> },
}

/// The changes one committed revision made, for watchers.
#[derive(Debug)]
pub struct Batch {
    pub revision: i64,
    pub term: u64,
    pub changes: Vec<mvcc::Change>,
    /// The store was replaced (an installed snapshot): watchers catch up from its history instead.
    pub resync: bool,
}

/// A committed entry of a run: its index and term, and its request (none for an empty entry).
struct Item {
    index: u64,
    term: u64,
    request: Option<(RequestId, Op)>,
}

/// What a request of a run produced.
struct Done {
    id: RequestId,
    response: Response,
    changes: Vec<mvcc::Change>,
    revision: i64,
    term: u64,
}

/// Whether `op` may share a store transaction with its neighbours: plain writes, except a Txn that puts keys
/// under leases (whether its leases exist is decided on the state before it, see `txn_leases_exist`).
fn runs_with_others(op: &Op) -> bool {
    match op {
        Op::Put(_) | Op::DeleteRange(_) => true,
        Op::Txn(t) => {
            let mut ids = Vec::new();
            lease_puts(&t.success, &mut ids);
            lease_puts(&t.failure, &mut ids);
            ids.is_empty()
        }
        Op::Compaction(_) | Op::LeaseGrant(_) | Op::LeaseRevoke(_) | Op::Publish(_) | Op::Alarm(_) | Op::Auth(_) => {
            false
        }
    }
}

/// The leases the puts of `ops` (nested Txns' both branches included) attach keys to.
fn lease_puts(ops: &[pb::RequestOp], out: &mut Vec<i64>) {
    use pb::request_op::Request;
    for op in ops.iter().filter_map(|o| o.request.as_ref()) {
        match op {
            Request::RequestPut(p) if p.lease != 0 && !p.ignore_lease => out.push(p.lease),
            Request::RequestTxn(t) => {
                lease_puts(&t.success, out);
                lease_puts(&t.failure, out);
            }
            _ => {}
        }
    }
}

/// Applies committed entries (see the module header).
pub struct Apply {
    /// The store (replaced as a whole when a snapshot is installed).
    pub store: Arc<crate::apply::store::StoreSlot>,
    pub proposals: Arc<dyn Waiters>,
    /// Live leases and their keys.
    pub lessor: crate::apply::lease::Leases,
    /// Where each committed revision's changes are published (watchers subscribe).
    pub events: tokio::sync::broadcast::Sender<Arc<Batch>>,
    /// The applied index, for linearizable reads waiting on it.
    pub applied: watch::Sender<u64>,
    /// The member registry (configuration changes and publishes are recorded there).
    pub cluster: Arc<crate::apply::membership::Shared>,
    /// The raised alarms (changed by Alarm entries; they decide which writes are refused).
    pub alarms: alarm::Alarms,
    /// What applied writes executed, and the live key count.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Users, roles and tokens: who may make each request (checked before it is applied, `perms`).
    pub auth: perms::Auth,
}

impl std::fmt::Debug for Apply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apply").field("applied", &*self.applied.borrow()).finish()
    }
}

impl Apply {
    /// The apply thread's body: applies what the Raft thread hands over until it hangs up, and every
    /// `snapshot_count` entries makes the store durable and tells the Raft thread (`compactions`) that the log
    /// before it may go. Beside it, the backend's sync thread (`syncer`) keeps the store's sync interval. Ends with
    /// a last sync; an error, its own or the sync thread's, ends it at once, with what failed (nothing more is
    /// applied; the Raft thread ends when it next hands entries over).
    pub fn run(
        self: Arc<Self>,
        rx: std::sync::mpsc::Receiver<ApplyMsg>,
        backlog: &lane::Backlog,
        compactions: std::sync::mpsc::Sender<u64>,
        snapshot_count: u64,
    ) -> Result<(), (&'static str, Error)> {
        let syncer = syncer::Syncer::default();
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("backend-sync".into())
                .spawn_scoped(s, || syncer.run(&self.store))
                .map_err(|e| ("failed to start the backend sync thread", Error::io("spawn a thread")(e)))?;
            let applied = self.apply_loop(rx, backlog, compactions, snapshot_count, &syncer);
            syncer.stop();
            applied
        })?;
        self.store.get().db().sync().map_err(|e| ("failed to sync the backend at shutdown", Error::from(e)))
    }

    fn apply_loop(
        &self,
        rx: std::sync::mpsc::Receiver<ApplyMsg>,
        backlog: &lane::Backlog,
        compactions: std::sync::mpsc::Sender<u64>,
        snapshot_count: u64,
        syncer: &syncer::Syncer,
    ) -> Result<(), (&'static str, Error)> {
        use std::sync::mpsc::RecvTimeoutError;
        let mut last_compaction = self.store.get().applied().0;
        loop {
            match rx.recv_timeout(std::time::Duration::from_millis(50)) {
                Ok(ApplyMsg::Entries(entries)) => {
                    self.apply(entries).map_err(|e| ("failed to apply committed entries", e.into()))?;
                    backlog.done();
                }
                Ok(ApplyMsg::Snapshot { index, term, done }) => {
                    let _ = done.send(self.install_snapshot(index, term));
                    backlog.done();
                    last_compaction = index;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
            if let Some(e) = syncer.failure() {
                return Err(("failed to sync the backend", e.into()));
            }
            let applied = self.store.get().applied().0;
            if applied >= last_compaction + snapshot_count {
                self.store.get().db().sync().map_err(|e| ("failed to sync the backend", Error::from(e)))?;
                let _ = compactions.send(applied);
                last_compaction = applied;
            }
        }
    }

    /// Replaces the store with the snapshot staged for `(index, term)` (see `store`): leases are rebuilt from
    /// it, linearizable reads see its index, watchers catch up from its history.
    pub fn install_snapshot(&self, index: u64, term: u64) -> Result<(), Error> {
        self.metrics.snapshot_apply_in_progress.set(1);
        let installed = self.install_snapshot_store(index, term);
        self.metrics.snapshot_apply_in_progress.set(0);
        installed
    }

    fn install_snapshot_store(&self, index: u64, term: u64) -> Result<(), Error> {
        let store = self.store.install(index, term)?;
        *self.lessor() = crate::apply::lease::Lessor::load(&store, std::time::Instant::now())?;
        *self.cluster.write() = crate::apply::membership::Registry::load(&store)?;
        self.alarms.load(&store)?;
        self.auth.reload(&store)?;
        self.metrics.count_keys(&store)?;
        self.applied.send_replace(index);
        let resync = Batch { revision: store.current_revision(), term, changes: Vec::new(), resync: true };
        let _ = self.events.send(Arc::new(resync));
        Ok(())
    }

    /// Applies entries in order; a storage failure is fatal (returned, and the node stops).
    pub fn apply(&self, entries: Vec<Entry>) -> Result<(), mvcc::Error> {
        let store = self.store.get();
        let mut run: Vec<Item> = Vec::new();
        for e in entries {
            let (index, term) = (e.index, e.term);
            if index <= store.applied().0 {
                continue;
            }
            let request = match e.get_entry_type() {
                EntryType::EntryNormal if !e.data.is_empty() => InternalRequest::decode(&e.data[..]).ok(),
                _ => None,
            };
            if e.get_entry_type() == EntryType::EntryConfChange {
                self.flush(&mut run)?;
                self.apply_member_change(&e)?;
                self.applied.send_replace(index);
                continue;
            }
            let refusal = match &request {
                Some(r @ InternalRequest { op: Some(op), .. }) => self
                    .auth_refusal(&r.caller(), op)
                    .or_else(|| if self.alarms.any() { self.alarms.refusal(op) } else { None }),
                _ => None,
            };
            if let (Some(InternalRequest { id, .. }), Some(refusal)) = (&request, refusal) {
                self.flush(&mut run)?;
                self.record(index, term)?;
                self.applied.send_replace(index);
                self.proposals.complete(RequestId(*id), Err(refusal));
                continue;
            }
            match request {
                Some(InternalRequest { id, op: Some(op), .. }) if !runs_with_others(&op) => {
                    self.flush(&mut run)?;
                    let started = std::time::Instant::now();
                    let what = op.name();
                    let result = self.execute(op, index, term)?;
                    self.metrics.applied_in(started.elapsed(), what);
                    self.applied.send_replace(index);
                    self.proposals.complete(RequestId(id), result);
                }
                Some(InternalRequest { id, op: Some(op), .. }) => {
                    run.push(Item { index, term, request: Some((RequestId(id), op)) })
                }
                _ => run.push(Item { index, term, request: None }),
            }
        }
        self.flush(&mut run)
    }

    /// Applies a run of plain writes in one commit, or one by one if any of them fails (see the module header).
    fn flush(&self, run: &mut Vec<Item>) -> Result<(), mvcc::Error> {
        let store = self.store.get();
        let items = std::mem::take(run);
        let Some(last) = items.last() else { return Ok(()) };
        let (last_index, last_term) = (last.index, last.term);
        let started = std::time::Instant::now();
        let together = self.apply_together(&items)?;
        self.metrics.applied_in(started.elapsed(), "a run of writes in one commit");
        if let Some(done) = together {
            let mut lessor = self.lessor();
            for d in &done {
                self.metrics.applied(&d.response.outcome);
                self.metrics.changes(&d.changes);
                for c in &d.changes {
                    let old = c.prev.as_ref().map_or(0, |p| p.lease);
                    lessor.reattach(&c.kv.key, old, if c.deleted { 0 } else { c.kv.lease });
                }
            }
            drop(lessor);
            self.applied.send_replace(last_index);
            for d in done {
                if !d.changes.is_empty() {
                    // No subscriber is not an error: nobody is watching.
                    let _ = self.events.send(Arc::new(Batch {
                        revision: d.revision,
                        term: d.term,
                        changes: d.changes,
                        resync: false,
                    }));
                }
                self.proposals.complete(d.id, Ok(d.response));
            }
            return Ok(());
        }
        for item in items {
            let result = match item.request {
                Some((id, op)) => Some((id, self.execute(op, item.index, item.term)?)),
                None => {
                    self.record(item.index, item.term)?;
                    None
                }
            };
            self.applied.send_replace(item.index);
            if let Some((id, result)) = result {
                self.proposals.complete(id, result);
            }
        }
        debug_assert_eq!(store.applied(), (last_index, last_term));
        Ok(())
    }

    /// The run in one store transaction; `None` (and nothing written) if a request failed or needs a lease that
    /// does not exist.
    fn apply_together(&self, items: &[Item]) -> Result<Option<Vec<Done>>, mvcc::Error> {
        let store = self.store.get();
        let mut w = store.write()?;
        let mut done = Vec::with_capacity(items.len());
        for item in items {
            let Some((id, op)) = &item.request else { continue };
            if let Op::Put(p) = op
                && p.lease != 0
                && !p.ignore_lease
                && !self.lessor().exists(p.lease)
            {
                return Ok(None);
            }
            match self.write_op(&mut w, op, item.term) {
                Ok(response) => {
                    let (changes, revision) = (w.take_changes(), w.current());
                    w.end_revision();
                    done.push(Done { id: *id, response, changes, revision, term: item.term });
                }
                Err(mvcc::Error::KeyNotFound | mvcc::Error::Compacted | mvcc::Error::FutureRev) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let Some(last) = items.last() else { return Ok(Some(done)) };
        w.set_applied(last.index, last.term);
        w.commit()?;
        Ok(Some(done))
    }

    /// Records a committed configuration change in the registry, in the commit of its index, and answers its
    /// proposer with the members after it (Raft's side was applied by the Raft thread; see `membership`).
    fn apply_member_change(&self, e: &Entry) -> Result<(), mvcc::Error> {
        use protobuf::Message as _;
        let change = raft::eraftpb::ConfChange::parse_from_bytes(&e.data)
            .ok()
            .and_then(|cc| crate::apply::membership::MemberChange::from_conf_change(&cc));
        let Some(change) = change else { return self.record(e.index, e.term) };
        let store = self.store.get();
        let mut w = store.write()?;
        let mut registry = self.cluster.write();
        registry.apply(&mut w, &change)?;
        w.set_applied(e.index, e.term);
        w.commit()?;
        let members = registry.members();
        drop(registry);
        let response = Response { revision: 0, term: e.term, outcome: Outcome::Members(members) };
        self.proposals.complete(RequestId(change.request), Ok(response));
        Ok(())
    }

    /// Why `caller` may not make `op`, if it may not (etcd's authApplierV3 checks, and nested Txns and a Txn's
    /// lease puts too); `None` with authentication off.
    fn auth_refusal(&self, caller: &crate::request::Caller, op: &Op) -> Option<Error> {
        let state = self.auth.current();
        if !state.enabled() || caller.internal {
            return None;
        }
        let lease_keys = |id: i64| -> Result<(), Error> {
            for k in self.lessor().keys(id) {
                state.put_permitted(caller, &k)?;
            }
            Ok(())
        };
        let result = match op {
            Op::Put(p) => state
                .put_permitted(caller, &p.key)
                .and_then(|()| if p.lease != 0 { lease_keys(p.lease) } else { Ok(()) })
                .and_then(|()| if p.prev_kv { state.range_permitted(caller, &p.key, &[]) } else { Ok(()) }),
            Op::DeleteRange(d) => {
                let read = if d.prev_kv { state.range_permitted(caller, &d.key, &d.range_end) } else { Ok(()) };
                read.and_then(|()| state.delete_permitted(caller, &d.key, &d.range_end))
            }
            Op::Txn(t) => state.txn_permitted(caller, t, &lease_keys),
            Op::LeaseRevoke(r) => lease_keys(r.id),
            Op::Auth(a) => match &a.op {
                Some(crate::request::AuthOp::Status(_) | crate::request::AuthOp::Authenticate(_)) | None => Ok(()),
                Some(crate::request::AuthOp::UserGet(u)) if u.name == caller.user => Ok(()),
                Some(crate::request::AuthOp::RoleGet(r)) if state.has_role(caller, &r.role) => Ok(()),
                Some(_) => state.admin_permitted(caller),
            },
            Op::Compaction(_) => state.compact_permitted(caller),
            Op::LeaseGrant(_) | Op::Publish(_) | Op::Alarm(_) => Ok(()),
        };
        result.err()
    }

    /// After an auth request is committed: the state the checks read, and the tokens; returns the answer, an
    /// Authenticate's with the token this member hands out.
    fn after_auth(
        &self,
        store: &mvcc::Store,
        op: &crate::request::AuthOp,
        answer: Result<auth::Answer, Error>,
    ) -> Result<Result<auth::Answer, Error>, mvcc::Error> {
        use crate::request::AuthOp;
        match (op, answer) {
            (AuthOp::Authenticate(a), Ok(auth::Answer::Token(token))) => {
                Ok(match self.auth.assign(token, a.name.clone()) {
                    Some(token) => Ok(auth::Answer::Token(token)),
                    None => Err(Error::Refused("the token could not be signed".into())),
                })
            }
            (
                AuthOp::Status(_) | AuthOp::UserGet(_) | AuthOp::UserList(_) | AuthOp::RoleGet(_) | AuthOp::RoleList(_),
                answer,
            ) => Ok(answer),
            (op, answer) => {
                self.auth.reload(store)?;
                match op {
                    AuthOp::UserDelete(u) => self.auth.invalidate(&u.name),
                    AuthOp::UserChangePassword(u) => self.auth.invalidate(&u.name),
                    _ => {}
                }
                Ok(answer)
            }
        }
    }

    /// Records `index` as applied with no change to the data.
    fn record(&self, index: u64, term: u64) -> Result<(), mvcc::Error> {
        let store = self.store.get();
        let mut w = store.write()?;
        w.set_applied(index, term);
        w.commit().map(|_| ())
    }

    fn lessor(&self) -> std::sync::MutexGuard<'_, crate::apply::lease::Lessor> {
        self.lessor.lock()
    }

    /// Whether every lease the branch of `t` that will run puts keys under exists (etcd refuses the whole Txn
    /// otherwise). The branch is chosen by evaluating the compares on the current state, as the Txn itself will;
    /// nested Txns are checked in both branches.
    fn txn_leases_exist(&self, t: &pb::TxnRequest) -> Result<bool, mvcc::Error> {
        let store = self.store.get();
        let mut w = store.write()?;
        let mut succeeded = true;
        for c in &t.compare {
            if !w.compare(&compare(c))? {
                succeeded = false;
                break;
            }
        }
        drop(w);
        let mut ids = Vec::new();
        lease_puts(if succeeded { &t.success } else { &t.failure }, &mut ids);
        let lessor = self.lessor();
        Ok(ids.iter().all(|id| lessor.exists(*id)))
    }

    /// Grants or revokes a lease (its keys are deleted in one revision).
    fn execute_lease(&self, op: Op, index: u64, term: u64) -> Result<Applied, mvcc::Error> {
        let store = self.store.get();
        let ks = store.db().keyspace(crate::apply::lease::LEASE)?;
        match op {
            Op::LeaseGrant(g) => {
                if self.lessor().exists(g.id) {
                    self.record(index, term)?;
                    return Ok(Err(Error::LeaseExists));
                }
                let mut w = store.write()?;
                let (key, value) = crate::apply::lease::encode_record(g.id, g.ttl);
                w.db().put(ks, &key, &value)?;
                w.set_applied(index, term);
                let revision = w.commit()?;
                self.lessor().grant(g.id, g.ttl, std::time::Instant::now());
                self.metrics.lease_granted.inc();
                self.metrics.lease_ttl.observe(g.ttl as f64);
                Ok(Ok(Response { revision, term, outcome: Outcome::LeaseGrant { id: g.id, ttl: g.ttl } }))
            }
            Op::LeaseRevoke(r) => {
                if !self.lessor().exists(r.id) {
                    self.record(index, term)?;
                    return Ok(Err(Error::LeaseNotFound));
                }
                let keys = self.lessor().keys(r.id);
                let mut w = store.write()?;
                for k in &keys {
                    w.delete(k, &[], false)?;
                }
                w.db().delete(ks, &r.id.to_be_bytes())?;
                let changes = w.take_changes();
                w.set_applied(index, term);
                let revision = w.commit()?;
                self.metrics.changes(&changes);
                self.lessor().revoke(r.id);
                self.metrics.lease_revoked.inc();
                if !changes.is_empty() {
                    let _ = self.events.send(Arc::new(Batch { revision, term, changes, resync: false }));
                }
                Ok(Ok(Response { revision, term, outcome: Outcome::LeaseRevoke }))
            }
            _ => unreachable!("only lease operations come here"),
        }
    }

    /// One plain write (Put, DeleteRange or Txn) in `w`, and what it produced.
    fn write_op(&self, w: &mut mvcc::StoreWrite<'_>, op: &Op, term: u64) -> Result<Response, mvcc::Error> {
        let outcome = match op {
            Op::Put(p) => {
                let opts = PutOptions { ignore_value: p.ignore_value, ignore_lease: p.ignore_lease };
                // The previous value travels to the api layer only when the client asked for it.
                let prev = w.put(&p.key, &p.value, p.lease, opts)?;
                Outcome::Put { prev: if p.prev_kv { prev } else { None } }
            }
            Op::DeleteRange(d) => Outcome::DeleteRange(w.delete(&d.key, &d.range_end, d.prev_kv)?),
            Op::Txn(t) => Outcome::Txn(w.txn(&txn_request(t))?),
            Op::Compaction(_)
            | Op::LeaseGrant(_)
            | Op::LeaseRevoke(_)
            | Op::Publish(_)
            | Op::Alarm(_)
            | Op::Auth(_) => {
                unreachable!("lease operations, compactions, publishes, alarms and auth requests are not plain writes")
            }
        };
        Ok(Response { revision: w.current(), term, outcome })
    }

    fn execute(&self, op: Op, index: u64, term: u64) -> Result<Applied, mvcc::Error> {
        let store = self.store.get();
        if let Op::Publish(m) = &op {
            let mut w = store.write()?;
            let mut registry = self.cluster.write();
            registry.publish(&mut w, m)?;
            w.set_applied(index, term);
            w.commit()?;
            return Ok(Ok(Response { revision: 0, term, outcome: Outcome::Members(registry.members()) }));
        }
        if matches!(op, Op::LeaseGrant(_) | Op::LeaseRevoke(_)) {
            return self.execute_lease(op, index, term);
        }
        if let Op::Auth(a) = &op {
            let Some(auth_op) = &a.op else {
                self.record(index, term)?;
                return Ok(Err(Error::Corrupt("an auth request without an operation".into())));
            };
            let mut w = store.write()?;
            let mut answer = auth::apply(&store, &mut w, auth_op, index)?;
            if answer.is_ok() {
                w.set_applied(index, term);
                w.commit()?;
                answer = self.after_auth(&store, auth_op, answer)?;
            } else {
                // A refused request changes nothing: its writes are discarded, only its index is recorded.
                drop(w);
                self.record(index, term)?;
            }
            let revision = store.current_revision();
            return Ok(answer.map(|a| Response { revision, term, outcome: Outcome::Auth(a) }));
        }
        if let Op::Alarm(r) = &op {
            let mut w = store.write()?;
            let change = self.alarms.apply(&store, &mut w, r)?;
            w.set_applied(index, term);
            w.commit()?;
            self.alarms.commit(&change);
            return Ok(Ok(Response {
                revision: store.current_revision(),
                term,
                outcome: Outcome::Alarms(change.answer),
            }));
        }
        if let Op::Put(p) = &op
            && p.lease != 0
            && !p.ignore_lease
            && !self.lessor().exists(p.lease)
        {
            self.record(index, term)?;
            return Ok(Err(Error::LeaseNotFound));
        }
        if let Op::Txn(t) = &op
            && !self.txn_leases_exist(t)?
        {
            self.record(index, term)?;
            return Ok(Err(Error::LeaseNotFound));
        }
        if let Op::Compaction(c) = &op {
            let result = match store.compact(c.revision) {
                Ok(stats) => {
                    self.metrics.compacted(&stats);
                    Ok(Response { revision: store.current_revision(), term, outcome: Outcome::Compaction })
                }
                Err(e @ (mvcc::Error::Compacted | mvcc::Error::FutureRev)) => Err(Error::from(e)),
                Err(e) => return Err(e),
            };
            self.record(index, term)?;
            return Ok(result);
        }
        let mut w = store.write()?;
        let outcome = self.write_op(&mut w, &op, term);
        match outcome {
            Ok(response) => {
                let changes = w.take_changes();
                w.set_applied(index, term);
                let revision = w.commit()?;
                self.metrics.applied(&response.outcome);
                self.metrics.changes(&changes);
                {
                    let mut lessor = self.lessor();
                    for c in &changes {
                        let old = c.prev.as_ref().map_or(0, |p| p.lease);
                        lessor.reattach(&c.kv.key, old, if c.deleted { 0 } else { c.kv.lease });
                    }
                }
                if !changes.is_empty() {
                    // No subscriber is not an error: nobody is watching.
                    let _ = self.events.send(Arc::new(Batch { revision, term, changes, resync: false }));
                }
                Ok(Ok(response))
            }
            Err(e @ (mvcc::Error::KeyNotFound | mvcc::Error::Compacted | mvcc::Error::FutureRev)) => {
                drop(w);
                self.record(index, term)?;
                Ok(Err(Error::from(e)))
            }
            Err(e) => Err(e),
        }
    }
}
