//! The lessor: live leases, their keys and (on the leader) their expiry.
//!
//! Leases are granted and revoked through Raft (`apply`), stored in the mvcc `lease` keyspace (id, big-endian i64 →
//! format version 1 (u8), then the granted TTL, little-endian i64; version 0, the TTL alone, is still read), and
//! rebuilt at start together with which keys each holds (from the keys'
//! lease field). Expiry is the leader's business: keep-alives renew it locally, and a leader task proposes the
//! revocation of every lease past its expiry, so an expired lease's keys are deleted through Raft on every member.
//! After a restart every lease starts a full TTL again (etcd does the same on a leader change).
//!
//! **Invariants**
//! 1. `keys` of each lease is exactly the set of live keys whose lease field names it.
//! 2. A lease granted or renewed at `t` expires at `t + TTL`, and `time_to_live` reports the whole seconds left
//!    until then (rounded down, as etcd's `Remaining().Seconds()`). Only leases last granted or renewed before this
//!    member became leader are extended by [`Lessor::promote`]; a lease granted since runs exactly its TTL.
//!
//! Every method that depends on the time takes it as an argument (`now`), so tests drive the clock.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::time::{Duration, Instant};

use mvcc::{RangeOptions, Store};

/// The keyspace leases are stored in.
pub const LEASE: &str = "lease";
/// The lease record format written (see docs/format-server.md).
const RECORD_VERSION: u8 = 1;

/// A lease's record in the `lease` keyspace: key and value.
pub fn encode_record(id: i64, ttl: i64) -> ([u8; 8], [u8; 9]) {
    let mut v = [RECORD_VERSION; 9];
    v[1..].copy_from_slice(&ttl.to_le_bytes());
    (id.to_be_bytes(), v)
}

/// A record's lease id and granted TTL (version 1, or version 0: the TTL alone); a record of another shape or
/// a newer version is corrupt to this ferrokv, never misread.
pub(crate) fn decode_record(k: &[u8], v: &[u8]) -> Result<(i64, i64), crate::error::Error> {
    use crate::error::Error;
    let shape = || Error::Corrupt(format!("lease record of {} key and {} value bytes", k.len(), v.len()));
    let id = <[u8; 8]>::try_from(k).map(i64::from_be_bytes).map_err(|_| shape())?;
    let ttl = match v {
        [RECORD_VERSION, ttl @ ..] if v.len() == 9 => ttl,
        ttl if ttl.len() == 8 => ttl,
        [version, ..] if v.len() == 9 => {
            return Err(Error::Corrupt(format!(
                "lease {id:x}: record format version {version} is not one this ferrokv reads ({RECORD_VERSION})"
            )));
        }
        _ => return Err(shape()),
    };
    let ttl = <[u8; 8]>::try_from(ttl).map(i64::from_le_bytes).map_err(|_| shape())?;
    Ok((id, ttl))
}

/// etcd's largest lease TTL, in seconds.
pub const MAX_TTL: i64 = 9_000_000_000;

#[derive(Debug, Clone)]
struct Lease {
    granted_ttl: i64,
    /// When it was last granted, renewed or extended.
    touched: Instant,
    expiry: Instant,
    keys: BTreeSet<Vec<u8>>,
    revoking: bool,
}

/// The lessor as the apply thread, the lease services and the leader's expiry task share it.
#[derive(Debug, Clone)]
pub struct Leases {
    lessor: std::sync::Arc<std::sync::Mutex<Lessor>>,
    /// Renewals this member saw while leading (`etcd_debugging_lease_renewed_total`), shared by every clone.
    renewed: prometheus::IntCounter,
}

impl Leases {
    pub fn new(lessor: Lessor, renewed: prometheus::IntCounter) -> Self {
        Leases { lessor: std::sync::Arc::new(std::sync::Mutex::new(lessor)), renewed }
    }

    /// The lessor, locked (a panic while it was held leaves it as it was: every change is one step).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Lessor> {
        self.lessor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a renewal the leader took (from a client, or forwarded by a follower).
    pub fn renewed_by_leader(&self) {
        self.renewed.inc();
    }
}

/// Live leases.
#[derive(Debug, Default)]
pub struct Lessor {
    leases: BTreeMap<i64, Lease>,
}

impl Lessor {
    /// Rebuilds the leases and their keys from the store.
    pub fn load(store: &Store, now: Instant) -> Result<Lessor, crate::error::Error> {
        let db = store.db();
        let ks = db.keyspace(LEASE)?;
        let r = db.read();
        let mut lessor = Lessor::default();
        for item in r.range(ks, Bound::Unbounded, Bound::Unbounded)? {
            let (k, v) = item?;
            let (id, ttl) = decode_record(k, v)?;
            lessor.leases.insert(id, Lease::new(ttl, now));
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
    pub fn grant(&mut self, id: i64, ttl: i64, now: Instant) {
        self.leases.insert(id, Lease::new(ttl, now));
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
    pub fn renew(&mut self, id: i64, now: Instant) -> Option<i64> {
        let l = self.leases.get_mut(&id)?;
        l.touched = now;
        l.expiry = now + secs(l.granted_ttl);
        Some(l.granted_ttl)
    }

    /// This member became leader at `since`: every lease last granted or renewed before then expires a full TTL
    /// plus `extra` after `since` (its renewals went to the old leader), and revocations the old leader had in
    /// flight are decided again. Leases granted or renewed since then keep their exact expiry.
    pub fn promote(&mut self, since: Instant, extra: Duration) {
        for l in self.leases.values_mut() {
            if l.touched < since {
                l.touched = since;
                l.expiry = since + secs(l.granted_ttl) + extra;
            }
            l.revoking = false;
        }
    }

    /// `(remaining TTL in whole seconds, granted TTL, keys)` of a lease.
    pub fn time_to_live(&self, id: i64, now: Instant) -> Option<(i64, i64, Vec<Vec<u8>>)> {
        let l = self.leases.get(&id)?;
        let left = l.expiry.saturating_duration_since(now);
        Some((left.as_secs() as i64, l.granted_ttl, l.keys.iter().cloned().collect()))
    }

    pub fn ids(&self) -> Vec<i64> {
        self.leases.keys().copied().collect()
    }

    /// Up to `max` leases past their expiry that nobody is revoking yet; marks them as being revoked.
    pub fn take_expired(&mut self, now: Instant, max: usize) -> Vec<i64> {
        let mut out = Vec::new();
        for (id, l) in self.leases.iter_mut() {
            if out.len() == max {
                break;
            }
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

impl Lease {
    fn new(ttl: i64, now: Instant) -> Lease {
        Lease { granted_ttl: ttl, touched: now, expiry: now + secs(ttl), keys: BTreeSet::new(), revoking: false }
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_their_version_and_version_0_is_still_read() {
        let (k, v) = encode_record(0x55, 30);
        assert_eq!(v[0], 1);
        assert_eq!(decode_record(&k, &v).unwrap(), (0x55, 30));
        // Version 0: the TTL alone, even one whose first byte looks like a version.
        assert_eq!(decode_record(&k, &1i64.to_le_bytes()).unwrap(), (0x55, 1));
        let mut newer = v;
        newer[0] = 2;
        let e = decode_record(&k, &newer).unwrap_err().to_string();
        assert!(e.contains("version 2"), "{e}");
        assert!(decode_record(&k, b"abc").is_err(), "a record of another shape is corrupt");
        assert!(decode_record(b"short", &v).is_err());
    }

    #[test]
    fn renew_reattach_and_expire() {
        let t = Instant::now();
        let mut l = Lessor::default();
        l.grant(7, 0, t);
        l.grant(8, 100, t);
        l.reattach(b"k", 0, 7);
        l.reattach(b"k", 7, 8);
        assert_eq!(l.keys(7), Vec::<Vec<u8>>::new());
        assert_eq!(l.keys(8), vec![b"k".to_vec()]);
        assert_eq!(l.take_expired(t, usize::MAX), vec![7], "a zero TTL has expired at once; 100 s has not");
        assert_eq!(l.take_expired(t, usize::MAX), Vec::<i64>::new(), "a lease being revoked is not handed out twice");
        l.retry(7);
        assert_eq!(l.take_expired(t, usize::MAX), vec![7]);
        assert_eq!(l.renew(8, t), Some(100));
        assert_eq!(l.renew(9, t), None);
        assert_eq!(
            l.take_expired(t + Duration::from_secs(100), usize::MAX),
            vec![8],
            "expires exactly a TTL after renewal"
        );
        assert_eq!(l.revoke(8).map(|k| k.len()), Some(1));
        assert!(!l.exists(8));
    }

    /// etcd's answer: 2.1 s after a 20 s grant, 17 whole seconds remain, even when the member became leader just
    /// before the grant and the promotion is processed after it.
    #[test]
    fn time_to_live_counts_from_the_grant() {
        let t = Instant::now();
        let ms = Duration::from_millis;
        let mut l = Lessor::default();
        l.grant(1, 20, t - ms(300)); // before the member led: extended by the promotion
        l.grant(2, 20, t + ms(100)); // after it became leader at `t`, before the promotion ran
        l.promote(t, Duration::from_secs(1));
        let at = t + ms(100) + ms(2100);
        assert_eq!(l.time_to_live(2, at).map(|v| v.0), Some(17));
        assert_eq!(l.time_to_live(1, at).map(|v| v.0), Some(18), "20 s + 1 s from t, 2.2 s later");
        assert_eq!(l.time_to_live(2, t + ms(100) + Duration::from_secs(20)).map(|v| v.0), Some(0));
        assert_eq!(l.take_expired(t + ms(100) + Duration::from_secs(20), usize::MAX), vec![2]);
        l.renew(1, at);
        l.promote(at - ms(1), Duration::from_secs(1));
        assert_eq!(l.time_to_live(1, at + ms(500)).map(|v| v.0), Some(19), "a renewal after the promotion is exact");
    }
}
