//! The watch streams of a run, checked against the events of a linearization (etcd's documented watch guarantees:
//! ordered, unique, reliable, atomic, resumable; progress notifications never ahead of an undelivered event).
//!
//! For each stream, the events it must deliver are the witness's events on its keys from its start revision on,
//! in revision order (and, within a revision, the transaction's order). The stream is walked response by response:
//! - each event must be the next one due, equal in every field (`prev_kv` only when asked for, and then the key's
//!   state before the change);
//! - an event already delivered or due earlier is a duplicate or out of order, one that skips due events is a gap,
//!   one that no write made is a phantom;
//! - the events of one revision come in one response;
//! - a progress notification (no events, not a creation, cancellation or compaction notice) at revision R comes
//!   only when every due event up to R has been delivered;
//! - a response's header revision is never below the revision of an event it carries.
//!
//! A resumed watch is a stream of its own that starts where the last one stopped, so "resumes exactly" is the same
//! check.
//!
//! **`prev_kv` and compaction.** A compaction at revision C removes every version a newer version at or below C
//! supersedes, so the state before an event at revision r <= C is gone once C is compacted. etcd then sends the
//! event without `prev_kv` (its watch server reads the previous version at r - 1 and leaves the field out when that
//! read is refused as compacted), and so does ferrokv. [`check_compacted`] accepts exactly that: a missing
//! `prev_kv` on an event at or below a compaction the history requested.

use std::collections::{BTreeSet, HashMap};

use crate::history::{History, Outcome, Request, Response, TxnOp};
use crate::model::{Event, EventKind};

/// One response of a watch stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchResponse {
    /// The header's revision.
    pub revision: i64,
    pub events: Vec<Event>,
    pub created: bool,
    pub canceled: bool,
    pub compact_revision: i64,
}

impl WatchResponse {
    /// etcd's `IsProgressNotify`.
    pub fn is_progress(&self) -> bool {
        self.events.is_empty() && !self.created && !self.canceled && self.compact_revision == 0 && self.revision != 0
    }
}

/// One watch as a client opened it, with what it received.
#[derive(Debug, Clone, Default)]
pub struct WatchStream {
    pub key: Vec<u8>,
    /// etcd's range end: empty for the one key, `[0]` for every key from `key` on, else exclusive.
    pub range_end: Vec<u8>,
    /// 0: from the revision after the one its creation response carries.
    pub start_revision: i64,
    pub prev_kv: bool,
    pub responses: Vec<WatchResponse>,
}

impl WatchStream {
    fn covers(&self, key: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => key == self.key.as_slice(),
            [0] => key >= self.key.as_slice(),
            end => key >= self.key.as_slice() && key < end,
        }
    }
}

/// A broken guarantee, with the stream's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// An event no write of the witness made.
    Phantom { stream: usize, revision: i64, key: Vec<u8> },
    /// An event delivered again, or after a later one.
    Duplicate { stream: usize, revision: i64, key: Vec<u8> },
    /// Events due before the one delivered were never delivered.
    Gap { stream: usize, missing: Vec<(i64, Vec<u8>)> },
    /// The event of that write, but with other contents (or `prev_kv` wrong, or present unasked).
    Wrong { stream: usize, got: Box<Event>, want: Box<Event> },
    /// A revision's events split over two responses.
    Split { stream: usize, revision: i64 },
    /// A progress notification at `revision` while the event at `due` was not yet delivered.
    EarlyProgress { stream: usize, revision: i64, due: i64 },
    /// A response whose header revision is below one of its events'.
    HeaderBehind { stream: usize, header: i64, event: i64 },
}

/// The events of a linearization in order, from [`crate::linearize::Verdict::Linearizable`]'s witness.
pub fn events_of(witness: &[(usize, Vec<Event>)]) -> Vec<Event> {
    witness.iter().flat_map(|(_, e)| e.iter().cloned()).collect()
}

/// Checks every stream against `events` (the witness's, in order), with no compaction in the history.
pub fn check(streams: &[WatchStream], events: &[Event]) -> Vec<Anomaly> {
    check_compacted(streams, events, 0)
}

/// Like [`check`], where the history compacted up to revision `compacted` (see the module header).
pub fn check_compacted(streams: &[WatchStream], events: &[Event], compacted: i64) -> Vec<Anomaly> {
    streams.iter().enumerate().flat_map(|(i, s)| check_stream(i, s, events, compacted)).collect()
}

/// The highest revision a compaction of `history` asked for, whether it was answered or its outcome is unknown.
pub fn compacted(history: &History) -> i64 {
    compactions(history).last().copied().unwrap_or(0)
}

/// Every revision a compaction of `history` asked for, whether it was answered or its outcome is unknown.
pub fn compactions(history: &History) -> BTreeSet<i64> {
    history
        .operations
        .iter()
        .filter(|o| !matches!(o.outcome, Outcome::Failed(_)))
        .filter_map(|o| if let Request::Compact { revision } = o.request { Some(revision) } else { None })
        .collect()
}

/// Whether `a` is etcd 3.4's known defect, etcd #18089 (fixed in later etcd releases): a watch that starts at a
/// revision C the history compacted to never receives the deletions made at exactly C. That is, `a` is a gap whose
/// every missing event is a deletion at the stream's own start revision, and a compaction asked for that revision.
/// Only the check of etcd's own histories uses this; ferrokv delivers those deletions, and its checks accept no gap.
pub fn is_etcd_18089(a: &Anomaly, streams: &[WatchStream], events: &[Event], compactions: &BTreeSet<i64>) -> bool {
    let Anomaly::Gap { stream, missing } = a else { return false };
    let Some(s) = streams.get(*stream) else { return false };
    let start = s.start_revision;
    start > 0
        && compactions.contains(&start)
        && !missing.is_empty()
        && missing.iter().all(|(rev, key)| {
            *rev == start
                && events.iter().any(|e| e.kind == EventKind::Delete && e.kv.mod_revision == *rev && e.kv.key == *key)
        })
}

fn check_stream(id: usize, s: &WatchStream, all: &[Event], compacted: i64) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let start = if s.start_revision > 0 {
        s.start_revision
    } else {
        match s.responses.iter().find(|r| r.created) {
            Some(r) => r.revision + 1,
            None => return out,
        }
    };
    let due: Vec<&Event> = all.iter().filter(|e| e.kv.mod_revision >= start && s.covers(&e.kv.key)).collect();
    let at: HashMap<(i64, &[u8]), usize> =
        due.iter().enumerate().map(|(i, e)| ((e.kv.mod_revision, e.kv.key.as_slice()), i)).collect();
    let mut next = 0;
    for r in &s.responses {
        if r.canceled {
            break;
        }
        if r.is_progress() {
            if let Some(e) = due.get(next).filter(|e| e.kv.mod_revision <= r.revision) {
                out.push(Anomaly::EarlyProgress { stream: id, revision: r.revision, due: e.kv.mod_revision });
            }
            continue;
        }
        let mut matched = None;
        for ev in &r.events {
            let rev = ev.kv.mod_revision;
            if rev > r.revision {
                out.push(Anomaly::HeaderBehind { stream: id, header: r.revision, event: rev });
            }
            let Some(&j) = at.get(&(rev, ev.kv.key.as_slice())) else {
                out.push(Anomaly::Phantom { stream: id, revision: rev, key: ev.kv.key.clone() });
                continue;
            };
            if j < next {
                out.push(Anomaly::Duplicate { stream: id, revision: rev, key: ev.kv.key.clone() });
                continue;
            }
            if j > next {
                let missing = due[next..j].iter().map(|e| (e.kv.mod_revision, e.kv.key.clone())).collect();
                out.push(Anomaly::Gap { stream: id, missing });
            }
            let want = due[j];
            let prev_gone = ev.prev.is_none() && rev <= compacted;
            let same = ev.kind == want.kind
                && ev.kv == want.kv
                && if s.prev_kv { ev.prev == want.prev || prev_gone } else { ev.prev.is_none() };
            if !same {
                out.push(Anomaly::Wrong { stream: id, got: Box::new(ev.clone()), want: Box::new(want.clone()) });
            }
            next = j + 1;
            matched = Some(rev);
        }
        if let (Some(last), Some(e)) = (matched, due.get(next)) {
            if e.kv.mod_revision == last {
                out.push(Anomaly::Split { stream: id, revision: last });
            }
        }
    }
    out
}

/// Resolves writes of unknown outcome with what the watches saw, as etcd's robustness tests do: a put whose (key,
/// value) a watch delivered happened, at that event's revision (values are unique per write). If `complete_to`
/// is given (the caller vouches that one of `streams` watched every key from the history's start and delivered
/// everything up to that revision, and that nothing could still take effect), a put or a transaction with puts
/// whose values no watch delivered never happened, and is dropped; and unknown deletes of a key take, in the
/// order of their calls, the delete events of that key that no write of definite outcome accounts for (deletes of
/// one key are alike), or, if none is left, deleted nothing and are dropped (a delete made by a revoke told that revision is the revoke's,
/// and a key a revoke of unknown outcome may have deleted keeps its unknown deletes). The streams that watch every
/// key are taken together as the complete record (a resumed watch is a stream of its own). A read of unknown
/// outcome (a get, or a transaction of gets only) is dropped whatever the streams say: it changed nothing and its
/// answer was never seen, so it constrains no order, and every one kept doubles the orders the search may try.
/// Returns (resolved, dropped).
pub fn resolve_unknown(history: &mut History, streams: &[WatchStream], complete_to: Option<i64>) -> (usize, usize) {
    let mut seen: HashMap<(&[u8], &[u8]), i64> = HashMap::new();
    for s in streams {
        for r in &s.responses {
            for e in r.events.iter().filter(|e| e.kind == EventKind::Put) {
                seen.insert((&e.kv.key, &e.kv.value), e.kv.mod_revision);
            }
        }
    }
    // Deletes no write of definite outcome accounts for, per key in revision order: each is an unknown delete's.
    let claimed: std::collections::HashSet<i64> =
        history.operations.iter().filter_map(crate::linearize::claims).collect();
    // Revokes: one told revision r made the deletes of its lease's keys at r; one of unknown outcome may have made
    // any delete of a key of its lease, so those keys' unknown deletes stay unknown.
    let mut revoked_at: std::collections::HashSet<(i64, i64)> = std::collections::HashSet::new();
    let mut maybe_revoked: std::collections::HashSet<i64> = std::collections::HashSet::new();
    for op in &history.operations {
        match (&op.request, &op.outcome) {
            (Request::LeaseRevoke { id }, Outcome::Ok(Response::LeaseRevoke { revision })) => {
                revoked_at.insert((*id, *revision));
            }
            (Request::LeaseRevoke { id }, Outcome::Unknown) => {
                maybe_revoked.insert(*id);
            }
            _ => {}
        }
    }
    let mut deletes: HashMap<&[u8], std::collections::VecDeque<i64>> = HashMap::new();
    let mut ambiguous: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
    let mut counted: std::collections::HashSet<(i64, &[u8])> = std::collections::HashSet::new();
    let every_key = |s: &&WatchStream| s.key == [0] && s.range_end == [0];
    for s in streams.iter().filter(|_| complete_to.is_some()).filter(every_key) {
        for e in s.responses.iter().flat_map(|r| &r.events) {
            let rev = e.kv.mod_revision;
            if e.kind != EventKind::Delete || claimed.contains(&rev) || !counted.insert((rev, &e.kv.key)) {
                continue;
            }
            let lease = e.prev.as_ref().map_or(0, |p| p.lease);
            if lease != 0 && revoked_at.contains(&(lease, rev)) {
                continue;
            }
            if lease != 0 && maybe_revoked.contains(&lease) {
                ambiguous.insert(&e.kv.key);
            }
            deletes.entry(&e.kv.key).or_default().push_back(rev);
        }
    }
    for revisions in deletes.values_mut() {
        revisions.make_contiguous().sort_unstable();
    }
    let (mut resolved, mut never) = (0, Vec::new());
    // Unknown deletes of a key take that key's unaccounted delete events in call order: the earliest called the
    // earliest event (if any pairing fits the calls, this one does).
    let mut unknown_deletes: Vec<usize> = (0..history.operations.len())
        .filter(|&i| {
            let op = &history.operations[i];
            op.outcome == Outcome::Unknown && matches!(op.request, Request::Delete { .. })
        })
        .collect();
    unknown_deletes.sort_by_key(|&i| history.operations[i].call);
    if complete_to.is_some() {
        for i in unknown_deletes {
            let op = &mut history.operations[i];
            let Request::Delete { key } = &op.request else { continue };
            if ambiguous.contains(key.as_slice()) {
                continue;
            }
            match deletes.get_mut(key.as_slice()).and_then(|d| d.pop_front()) {
                Some(revision) => {
                    op.outcome = Outcome::Ok(Response::Delete { revision, deleted: 1 });
                    resolved += 1;
                }
                None => never.push(i),
            }
        }
    }
    for (i, op) in history.operations.iter_mut().enumerate() {
        if op.outcome != Outcome::Unknown {
            continue;
        }
        match &op.request {
            // A read of unknown outcome changed nothing and told nothing: it constrains no order.
            Request::Get { .. } => never.push(i),
            Request::Txn { success, failure, .. }
                if success.iter().chain(failure).all(|o| matches!(o, TxnOp::Get { .. })) =>
            {
                never.push(i)
            }
            Request::Put { key, value, .. } => match seen.get(&(key.as_slice(), value.as_slice())) {
                Some(&revision) => {
                    op.outcome = Outcome::Ok(Response::Put { revision });
                    resolved += 1;
                }
                None if complete_to.is_some() => never.push(i),
                None => {}
            },
            Request::Txn { success, failure, .. } if complete_to.is_some() => {
                let puts: Vec<_> = success
                    .iter()
                    .chain(failure)
                    .filter_map(|o| match o {
                        TxnOp::Put { key, value, .. } => Some((key.as_slice(), value.as_slice())),
                        _ => None,
                    })
                    .collect();
                let only_puts_or_gets = success.iter().chain(failure).all(|o| !matches!(o, TxnOp::Delete { .. }));
                if only_puts_or_gets && !puts.iter().any(|p| seen.contains_key(p)) {
                    never.push(i);
                }
            }
            _ => {}
        }
    }
    never.sort_unstable();
    let dropped = never.len();
    for i in never.into_iter().rev() {
        history.operations.remove(i);
    }
    (resolved, dropped)
}
