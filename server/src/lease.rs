//! The lessor: live leases, their keys and (on the leader) their expiry.
//!
//! Leases are granted and revoked through Raft (`apply`), stored in the mvcc `lease` keyspace (id, big-endian i64 →
//! granted TTL, little-endian i64), and rebuilt at start together with which keys each holds (from the keys'
//! lease field). Expiry is the leader's business: keep-alives renew it locally, and a leader task proposes the
//! revocation of every lease past its expiry, so an expired lease's keys are deleted through Raft on every member.
//! After a restart every lease starts a full TTL again (etcd does the same on a leader change).
//!
//! **Invariants**: `keys` of each lease is exactly the set of live keys whose lease field names it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::time::{Duration, Instant};

use mvcc::{RangeOptions, Store};

/// The keyspace leases are stored in.
pub const LEASE: &str = "lease";
/// etcd's largest lease TTL, in seconds.
pub const MAX_TTL: i64 = 9_000_000_000;

#[derive(Debug, Clone)]
struct Lease {
    granted_ttl: i64,
    expiry: Instant,
    keys: BTreeSet<Vec<u8>>,
    revoking: bool,
}

/// Live leases.
#[derive(Debug, Default)]
pub struct Lessor {
    leases: BTreeMap<i64, Lease>,
}

impl Lessor {
    /// Rebuilds the leases and their keys from the store.
    pub fn load(store: &Store) -> Result<Lessor, mvcc::Error> {
        let db = store.db();
        let ks = db.keyspace(LEASE)?;
        let r = db.read();
        let mut lessor = Lessor::default();
        let now = Instant::now();
        for item in r.range(ks, Bound::Unbounded, Bound::Unbounded)? {
            let (k, v) = item?;
            let (Ok(id), Ok(ttl)) = (<[u8; 8]>::try_from(k), <[u8; 8]>::try_from(v)) else { continue };
            let ttl = i64::from_le_bytes(ttl);
            lessor.leases.insert(
                i64::from_be_bytes(id),
                Lease { granted_ttl: ttl, expiry: now + secs(ttl), keys: BTreeSet::new(), revoking: false },
            );
        }
        drop(r);
        for kv in store.range(b"\0", &[0], RangeOptions::default())?.kvs {
            if kv.lease != 0
                && let Some(l) = lessor.leases.get_mut(&kv.lease)
            {
                l.keys.insert(kv.key);
            }
        }
        Ok(lessor)
    }

    pub fn exists(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// Records a granted lease (already stored by the caller's transaction).
    pub fn grant(&mut self, id: i64, ttl: i64) {
        self.leases.insert(
            id,
            Lease { granted_ttl: ttl, expiry: Instant::now() + secs(ttl), keys: BTreeSet::new(), revoking: false },
        );
    }

    /// Forgets a lease; returns the keys it held.
    pub fn revoke(&mut self, id: i64) -> Option<BTreeSet<Vec<u8>>> {
        self.leases.remove(&id).map(|l| l.keys)
    }

    /// The keys a lease holds.
    pub fn keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.leases.get(&id).map(|l| l.keys.iter().cloned().collect()).unwrap_or_default()
    }

    /// A key moved from lease `old` to lease `new` (0: none).
    pub fn reattach(&mut self, key: &[u8], old: i64, new: i64) {
        if old != 0
            && let Some(l) = self.leases.get_mut(&old)
        {
            l.keys.remove(key);
        }
        if new != 0
            && let Some(l) = self.leases.get_mut(&new)
        {
            l.keys.insert(key.to_vec());
        }
    }

    /// Renews a lease; returns its TTL, or `None` if there is no such lease.
    pub fn renew(&mut self, id: i64) -> Option<i64> {
        let l = self.leases.get_mut(&id)?;
        l.expiry = Instant::now() + secs(l.granted_ttl);
        Some(l.granted_ttl)
    }

    /// This member became leader: every lease expires a full TTL plus `extra` from now (its renewals went to the
    /// old leader), and revocations the old leader had in flight are decided again.
    pub fn promote(&mut self, extra: Duration) {
        let now = Instant::now();
        for l in self.leases.values_mut() {
            l.expiry = now + secs(l.granted_ttl) + extra;
            l.revoking = false;
        }
    }

    /// `(remaining TTL in seconds, granted TTL, keys)` of a lease.
    pub fn time_to_live(&self, id: i64) -> Option<(i64, i64, Vec<Vec<u8>>)> {
        let l = self.leases.get(&id)?;
        let left = l.expiry.saturating_duration_since(Instant::now());
        Some((left.as_secs() as i64, l.granted_ttl, l.keys.iter().cloned().collect()))
    }

    pub fn ids(&self) -> Vec<i64> {
        self.leases.keys().copied().collect()
    }

    /// Leases past their expiry that nobody is revoking yet; marks them as being revoked.
    pub fn take_expired(&mut self) -> Vec<i64> {
        let now = Instant::now();
        let mut out = Vec::new();
        for (id, l) in self.leases.iter_mut() {
            if !l.revoking && l.expiry <= now {
                l.revoking = true;
                out.push(*id);
            }
        }
        out
    }

    /// A revocation that failed to go through: let the expiry task try again.
    pub fn retry(&mut self, id: i64) {
        if let Some(l) = self.leases.get_mut(&id) {
            l.revoking = false;
        }
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renew_reattach_and_expire() {
        let mut l = Lessor::default();
        l.grant(7, 0);
        l.grant(8, 100);
        l.reattach(b"k", 0, 7);
        l.reattach(b"k", 7, 8);
        assert_eq!(l.keys(7), Vec::<Vec<u8>>::new());
        assert_eq!(l.keys(8), vec![b"k".to_vec()]);
        assert_eq!(l.take_expired(), vec![7], "a zero TTL has expired at once; 100 s has not");
        assert_eq!(l.take_expired(), Vec::<i64>::new(), "a lease being revoked is not handed out twice");
        l.retry(7);
        assert_eq!(l.take_expired(), vec![7]);
        assert_eq!(l.renew(8), Some(100));
        assert_eq!(l.renew(9), None);
        assert_eq!(l.revoke(8).map(|k| k.len()), Some(1));
        assert!(!l.exists(8));
    }
}
