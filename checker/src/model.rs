//! etcd's KV semantics as a state machine over whole stores, for the linearizability search.
//!
//! A [`State`] is the store after some prefix of a linearization: the current revision, the compaction point, every
//! key, the leases with their keys, and the maps of earlier revisions (so a read at a past revision can be
//! checked). Maps are shared between states (`Rc`), so a step copies one map only when it writes.
//!
//! **Rules** (etcd 3.4's, checked against etcd 3.4.23 by the server's linearizability test):
//! - a write transaction takes one revision, and only if it changes something: a put always does, a delete only
//!   of a key that exists, a lease revoke only if the lease had keys; the response header carries the revision
//!   after it;
//! - a read's header carries the current revision; a read at a revision above it is refused as a future revision,
//!   below the compaction point as compacted; a compaction at or below the point is refused as compacted;
//! - a transaction's compares see the store before it; its operations run in order and a get sees the puts and
//!   deletes before it in the same branch; a put naming a lease that does not exist refuses the whole request;
//! - a key's version counts puts since its creation; a delete ends the key, and a later put creates it anew.
//!
//! **Fingerprints.** A state's fingerprint hashes what it holds: the revision, the compaction point, the keys, the
//! leases, and a hash chained over the keys at every earlier revision (so the maps a past read sees are in it too).
//! Two states with equal fingerprints answer every request alike (up to a 64-bit collision), whatever order of
//! commuting requests (a lease grant, a compaction, a refused write) made them: the search's memo keys on it.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use crate::history::{Compare, KeyValue, OpResult, Outcome, Refusal, Relation, Request, Response, Target, TxnOp};

type Map = BTreeMap<Vec<u8>, KeyValue>;

/// A change of one key, as a watch reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Event {
    pub kind: EventKind,
    /// A put's new state; for a delete, the key and the deleting revision (`mod_revision`), all else zero.
    pub kv: KeyValue,
    /// The key's state before the change.
    pub prev: Option<KeyValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Put,
    Delete,
}

/// A map of an earlier revision, and older ones behind it.
#[derive(Debug)]
struct Past {
    revision: i64,
    kvs: Rc<Map>,
    older: Option<Rc<Past>>,
}

impl Drop for Past {
    /// Unlinks the chain a node at a time: dropped recursively, the chain of a long history (one node a revision)
    /// would overflow the stack.
    fn drop(&mut self) {
        let mut next = self.older.take();
        while let Some(rc) = next {
            next = match Rc::try_unwrap(rc) {
                Ok(mut past) => past.older.take(),
                Err(_) => None,
            };
        }
    }
}

/// The store after a prefix of a linearization.
#[derive(Debug, Clone)]
pub struct State {
    pub revision: i64,
    pub compacted: i64,
    kvs: Rc<Map>,
    leases: Rc<BTreeMap<i64, BTreeSet<Vec<u8>>>>,
    past: Option<Rc<Past>>,
    /// The chained hash of the keys at every revision before this one.
    history: u64,
    fingerprint: u64,
}

/// What one step leads to: the state after, and the events its write made (empty for reads and refusals).
pub type Successor = (State, Vec<Event>);

impl State {
    /// The store at `revision` holding `kvs` (their leases are not known; keys are taken as unleased).
    pub fn new(revision: i64, kvs: &[KeyValue]) -> Self {
        let kvs: Map = kvs.iter().map(|kv| (kv.key.clone(), KeyValue { lease: 0, ..kv.clone() })).collect();
        let mut s = State {
            revision,
            compacted: 0,
            kvs: Rc::new(kvs),
            leases: Rc::new(BTreeMap::new()),
            past: None,
            history: 0,
            fingerprint: 0,
        };
        s.seal();
        s
    }

    /// Recomputes the fingerprint from what the state holds.
    fn seal(&mut self) {
        let mut h = DefaultHasher::new();
        (self.revision, self.compacted, self.history, &*self.kvs, &*self.leases).hash(&mut h);
        self.fingerprint = h.finish();
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The key's state now.
    pub fn get(&self, key: &[u8]) -> Option<&KeyValue> {
        self.kvs.get(key)
    }

    /// Every key now.
    pub fn keys(&self) -> impl Iterator<Item = &KeyValue> {
        self.kvs.values()
    }

    /// The map at `revision` (≤ the current one); revisions before the first state's give that state's map.
    fn at(&self, revision: i64) -> &Map {
        if revision == 0 || revision >= self.revision {
            return &self.kvs;
        }
        let mut p = self.past.as_deref();
        while let Some(past) = p {
            if past.revision <= revision {
                return &past.kvs;
            }
            p = past.older.as_deref();
            if p.is_none() {
                return &past.kvs;
            }
        }
        &self.kvs
    }

    /// The state `request` leads to, given that it ended with `outcome` (none: it cannot have ended so here). An
    /// unknown outcome leads to the state where the request took effect: one that never did is the same as one
    /// placed last, after everything else, where it changes nothing (see `linearize`).
    pub fn step(&self, request: &Request, outcome: &Outcome) -> Option<Successor> {
        match (outcome, self.attempt(request)) {
            (Outcome::Unknown, Ok((s, _, events))) if s.fingerprint != self.fingerprint => Some((s, events)),
            (Outcome::Failed(refusal), Err(r)) if r == *refusal => Some((self.clone(), Vec::new())),
            (Outcome::Ok(response), Ok((s, expected, events))) if expected == *response => Some((s, events)),
            _ => None,
        }
    }

    /// Runs `request` on this state: the state after, the response etcd gives, the events; or etcd's refusal.
    pub fn attempt(&self, request: &Request) -> Result<(State, Response, Vec<Event>), Refusal> {
        match request {
            Request::Get { key, revision } => {
                self.readable(*revision)?;
                let kv = self.at(*revision).get(key).cloned();
                Ok((self.clone(), Response::Get { revision: self.revision, kv }, Vec::new()))
            }
            Request::Put { key, value, lease } => {
                let mut w = Write::new(self);
                w.put(key, value, *lease)?;
                let (s, events) = w.finish();
                let revision = s.revision;
                Ok((s, Response::Put { revision }, events))
            }
            Request::Delete { key } => {
                let mut w = Write::new(self);
                let deleted = w.delete(key);
                let (s, events) = w.finish();
                let revision = s.revision;
                Ok((s, Response::Delete { revision, deleted }, events))
            }
            Request::Txn { compares, success, failure } => {
                let succeeded = compares.iter().all(|c| self.compare(c));
                let ops = if succeeded { success } else { failure };
                for op in ops {
                    if let TxnOp::Put { lease, .. } = op {
                        if *lease != 0 && !self.leases.contains_key(lease) {
                            return Err(Refusal::LeaseNotFound);
                        }
                    }
                }
                let mut w = Write::new(self);
                let mut results = Vec::with_capacity(ops.len());
                for op in ops {
                    results.push(match op {
                        TxnOp::Put { key, value, lease } => {
                            w.put(key, value, *lease)?;
                            OpResult::Put
                        }
                        TxnOp::Get { key } => OpResult::Get(w.kvs.get(key).cloned()),
                        TxnOp::Delete { key } => OpResult::Delete { deleted: w.delete(key) },
                    });
                }
                let (s, events) = w.finish();
                let revision = s.revision;
                Ok((s, Response::Txn { revision, succeeded, results }, events))
            }
            Request::LeaseGrant { id } => {
                if self.leases.contains_key(id) {
                    return Err(Refusal::LeaseExists);
                }
                let mut s = self.clone();
                Rc::make_mut(&mut s.leases).insert(*id, BTreeSet::new());
                s.seal();
                Ok((s, Response::LeaseGrant { revision: self.revision }, Vec::new()))
            }
            Request::LeaseRevoke { id } => {
                let Some(keys) = self.leases.get(id) else { return Err(Refusal::LeaseNotFound) };
                let mut w = Write::new(self);
                for key in keys.clone() {
                    w.delete(&key);
                }
                Rc::make_mut(&mut w.leases).remove(id);
                let (s, events) = w.finish();
                let revision = s.revision;
                Ok((s, Response::LeaseRevoke { revision }, events))
            }
            Request::Compact { revision } => {
                if *revision <= self.compacted {
                    return Err(Refusal::Compacted);
                }
                if *revision > self.revision {
                    return Err(Refusal::FutureRevision);
                }
                let mut s = self.clone();
                s.compacted = *revision;
                s.seal();
                Ok((s, Response::Compact { revision: self.revision }, Vec::new()))
            }
        }
    }

    fn readable(&self, revision: i64) -> Result<(), Refusal> {
        if revision > self.revision {
            Err(Refusal::FutureRevision)
        } else if revision > 0 && revision < self.compacted {
            Err(Refusal::Compacted)
        } else {
            Ok(())
        }
    }

    /// etcd's compare: a missing key compares as version, create and mod revision 0, and no value compare holds.
    fn compare(&self, c: &Compare) -> bool {
        let kv = self.kvs.get(&c.key);
        let ord = match (&c.target, kv) {
            (Target::Value(_), None) => return false,
            (Target::Value(v), Some(kv)) => kv.value.as_slice().cmp(v.as_slice()),
            (Target::Version(n), kv) => kv.map_or(0, |k| k.version).cmp(n),
            (Target::Create(n), kv) => kv.map_or(0, |k| k.create_revision).cmp(n),
            (Target::Mod(n), kv) => kv.map_or(0, |k| k.mod_revision).cmp(n),
        };
        match c.relation {
            Relation::Equal => ord.is_eq(),
            Relation::NotEqual => ord.is_ne(),
            Relation::Less => ord.is_lt(),
            Relation::Greater => ord.is_gt(),
        }
    }
}

/// One write transaction on a state: changes go to copies of the maps, at the next revision.
struct Write<'a> {
    base: &'a State,
    next: i64,
    kvs: Rc<Map>,
    leases: Rc<BTreeMap<i64, BTreeSet<Vec<u8>>>>,
    events: Vec<Event>,
}

impl<'a> Write<'a> {
    fn new(base: &'a State) -> Self {
        Write {
            base,
            next: base.revision + 1,
            kvs: Rc::clone(&base.kvs),
            leases: Rc::clone(&base.leases),
            events: Vec::new(),
        }
    }

    fn detach(&mut self, kv: &KeyValue) {
        if kv.lease != 0 {
            if let Some(keys) = Rc::make_mut(&mut self.leases).get_mut(&kv.lease) {
                keys.remove(&kv.key);
            }
        }
    }

    fn put(&mut self, key: &[u8], value: &[u8], lease: i64) -> Result<(), Refusal> {
        if lease != 0 && !self.leases.contains_key(&lease) {
            return Err(Refusal::LeaseNotFound);
        }
        let prev = self.kvs.get(key).cloned();
        if let Some(p) = &prev {
            self.detach(p);
        }
        let kv = KeyValue {
            key: key.to_vec(),
            value: value.to_vec(),
            create_revision: prev.as_ref().map_or(self.next, |p| p.create_revision),
            mod_revision: self.next,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease,
        };
        if lease != 0 {
            Rc::make_mut(&mut self.leases).entry(lease).or_default().insert(key.to_vec());
        }
        Rc::make_mut(&mut self.kvs).insert(key.to_vec(), kv.clone());
        self.events.push(Event { kind: EventKind::Put, kv, prev });
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> i64 {
        let Some(prev) = Rc::make_mut(&mut self.kvs).remove(key) else { return 0 };
        self.detach(&prev);
        let kv = KeyValue { key: key.to_vec(), mod_revision: self.next, ..Default::default() };
        self.events.push(Event { kind: EventKind::Delete, kv, prev: Some(prev) });
        1
    }

    /// The state after the transaction: at the next revision if anything changed.
    fn finish(self) -> (State, Vec<Event>) {
        let base = self.base;
        if self.events.is_empty() {
            let mut s = base.clone();
            if !Rc::ptr_eq(&self.leases, &base.leases) {
                s.leases = self.leases;
                s.seal();
            }
            return (s, self.events);
        }
        let past = Past { revision: base.revision, kvs: Rc::clone(&base.kvs), older: base.past.clone() };
        let mut h = DefaultHasher::new();
        (base.history, base.revision, &*base.kvs).hash(&mut h);
        let mut s = State {
            revision: self.next,
            compacted: base.compacted,
            kvs: self.kvs,
            leases: self.leases,
            past: Some(Rc::new(past)),
            history: h.finish(),
            fingerprint: 0,
        };
        s.seal();
        (s, self.events)
    }
}
