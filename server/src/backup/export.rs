//! The member's store as an etcd 3.4 snapshot: a bbolt file (written by the `bbolt` crate) with etcd's buckets and
//! encodings, from one consistent read of the store, so writes go on meanwhile.
//!
//! | bucket | key | value |
//! |---|---|---|
//! | `key` | revision: main u64 BE, `_`, sub u64 BE, and `t` for a deletion | `mvccpb.KeyValue` (a deletion: the key alone) |
//! | `meta` | `consistent_index`; `scheduledCompactRev`, `finishedCompactRev` | the applied index u64 BE; the compaction revision (main, `_`, sub 0) |
//! | `lease` | lease id i64 BE | `leasepb.Lease` {ID, TTL} |
//! | `members` | member id in lowercase hex | etcd's member JSON: id, peerURLs, isLearner, name, clientURLs |
//! | `members_removed` | member id in lowercase hex | `removed` |
//! | `alarm` | `etcdserverpb.AlarmMember` | empty |
//! | `auth` | `authEnabled`, `authRevision` | as the store keeps them (`apply::auth`); else 0, and 1 u64 BE |
//! | `authRoles`, `authUsers` | role / user name | `authpb.Role` / `authpb.User`, as the store keeps them |
//! | `cluster` | `clusterVersion` | `3.4.0` |
//!
//! The `key` bucket is streamed from the store's revision keyspace, which holds the same history in the same
//! order (ferrokv's revision keys are etcd's without the separator); the small buckets are gathered first.

use std::ops::Bound;

use prost::Message;

use crate::error::Error;
use crate::proto::etcdserverpb::Member;
use crate::proto::mvccpb::KeyValue;

/// etcd 3.4's buckets, in bbolt's (byte) order.
pub const BUCKETS: [&str; 10] =
    ["alarm", "auth", "authRoles", "authUsers", "cluster", "key", "lease", "members", "members_removed", "meta"];
const KEY_BUCKET: usize = 5;

/// etcd's `leasepb.Lease` as stored in its `lease` bucket.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeaseRecord {
    #[prost(int64, tag = "1")]
    pub id: i64,
    #[prost(int64, tag = "2")]
    pub ttl: i64,
    #[prost(int64, tag = "3")]
    pub remaining_ttl: i64,
}

/// etcd's revision key: main and sub big-endian around `_`, then `t` for a deletion.
pub fn revision_key(main: i64, sub: i64, tombstone: bool) -> Vec<u8> {
    let mut k = Vec::with_capacity(18);
    k.extend_from_slice(&main.to_be_bytes());
    k.push(b'_');
    k.extend_from_slice(&sub.to_be_bytes());
    if tombstone {
        k.push(b't');
    }
    k
}

/// One stored revision as etcd's `key` bucket holds it: (revision key, `mvccpb.KeyValue`; a deletion: the key
/// alone).
pub fn etcd_record(rev: mvcc::Revision, raw: &[u8]) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let (kv, tombstone) = mvcc::kv::decode(raw, rev.main)
        .ok_or_else(|| Error::Corrupt(format!("revision {} does not decode", rev.main)))?;
    let value =
        if tombstone { KeyValue { key: kv.key, ..KeyValue::default() } } else { crate::api::convert::to_pb(kv) };
    Ok((revision_key(rev.main, rev.sub, tombstone), value.encode_to_vec()))
}

/// etcd's HashKV at `rev` (0: now): CRC32C over `key`, then each revision etcd hashes (`Store::visit_hashed`) in
/// etcd's encoding, so it equals the HashKV of an etcd member holding the same history. Returns the hash, the
/// revision hashed to, and the compaction revision.
pub fn hash_kv(store: &mvcc::Store, rev: i64) -> Result<(u32, i64, i64), Error> {
    let mut crc = crc32c::crc32c(b"key");
    let mut failed = None;
    let (at, compact) = store.visit_hashed(rev, &mut |r, raw| {
        match etcd_record(r, raw) {
            Ok((k, v)) => crc = crc32c::crc32c_append(crc32c::crc32c_append(crc, &k), &v),
            Err(e) => failed = Some(e),
        }
        Ok(())
    })?;
    match failed {
        Some(e) => Err(e),
        None => Ok((crc, at, compact)),
    }
}

/// etcd's member JSON (its field order, and `isLearner`, `name`, `clientURLs` left out when empty).
pub fn member_json(m: &Member) -> Vec<u8> {
    let mut o = serde_json::Map::new();
    o.insert("id".into(), m.id.into());
    o.insert("peerURLs".into(), m.peer_ur_ls.clone().into());
    if m.is_learner {
        o.insert("isLearner".into(), true.into());
    }
    if !m.name.is_empty() {
        o.insert("name".into(), m.name.clone().into());
    }
    if !m.client_ur_ls.is_empty() {
        o.insert("clientURLs".into(), m.client_ur_ls.clone().into());
    }
    serde_json::to_vec(&serde_json::Value::Object(o)).unwrap_or_default()
}

/// One consistent read of a store, as etcd's buckets.
pub struct Export {
    read: mvcc::ReadTxn,
    key: mvcc::KeyspaceId,
    /// Every bucket but `key`, gathered at the start (they are small).
    small: Vec<Entries>,
    /// Told the file's size once it is laid out.
    on_size: Option<Box<dyn FnOnce(u64) + Send>>,
}

impl std::fmt::Debug for Export {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export").finish_non_exhaustive()
    }
}

/// A bucket's entries, in key order.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn raw(read: &mvcc::ReadTxn, ks: mvcc::KeyspaceId) -> Result<Entries, Error> {
    let mut out = Vec::new();
    for item in read.range(ks, Bound::Unbounded, Bound::Unbounded)? {
        let (k, v) = item?;
        out.push((k.to_vec(), v.to_vec()));
    }
    Ok(out)
}

impl Export {
    /// Pins a read of `store` and gathers the small buckets from it.
    pub fn new(store: &mvcc::Store) -> Result<Export, Error> {
        let db = store.db();
        let read = db.read();
        let ks = |name: &str| db.keyspace(name).map_err(Error::from);
        let mut small: Vec<Entries> = vec![Vec::new(); BUCKETS.len()];
        small[0] = raw(&read, ks(crate::apply::alarm::ALARM)?)?
            .into_iter()
            .filter_map(|(k, _)| {
                let member = u64::from_be_bytes(k.get(..8)?.try_into().ok()?);
                let alarm = i32::from_be_bytes(k.get(8..12)?.try_into().ok()?);
                Some((crate::proto::etcdserverpb::AlarmMember { member_id: member, alarm }.encode_to_vec(), Vec::new()))
            })
            .collect();
        small[0].sort();
        // Authentication state is kept in etcd's layout (`apply::auth`); a store without any has etcd's defaults.
        small[1] = raw(&read, ks(crate::apply::auth::AUTH)?)?;
        for (key, default) in [
            (crate::apply::auth::ENABLED, vec![0]),
            (crate::apply::auth::REVISION, crate::apply::auth::FIRST_REVISION.to_be_bytes().to_vec()),
        ] {
            if !small[1].iter().any(|(k, _)| k == key) {
                small[1].push((key.to_vec(), default));
            }
        }
        small[1].sort();
        small[2] = raw(&read, ks(crate::apply::auth::ROLES)?)?;
        small[3] = raw(&read, ks(crate::apply::auth::USERS)?)?;
        small[4] = vec![(b"clusterVersion".to_vec(), b"3.4.0".to_vec())];
        let mut leases = Vec::new();
        for (k, v) in raw(&read, ks(crate::apply::lease::LEASE)?)? {
            let (id, ttl) = crate::apply::lease::decode_record(&k, &v)?;
            leases.push((id.to_be_bytes().to_vec(), LeaseRecord { id, ttl, remaining_ttl: 0 }.encode_to_vec()));
        }
        small[6] = leases;
        let mut members = Vec::new();
        for (_, v) in raw(&read, ks(crate::apply::membership::MEMBERS)?)? {
            let m = Member::decode(v.as_slice()).map_err(|e| Error::Corrupt(format!("member record: {e}")))?;
            members.push((format!("{:x}", m.id).into_bytes(), member_json(&m)));
        }
        members.sort();
        small[7] = members;
        let mut removed: Vec<_> = raw(&read, ks(crate::apply::membership::REMOVED)?)?
            .into_iter()
            .filter_map(|(k, _)| {
                Some((format!("{:x}", u64::from_be_bytes(k.try_into().ok()?)).into_bytes(), b"removed".to_vec()))
            })
            .collect();
        removed.sort();
        small[8] = removed;
        let mut meta = vec![(b"consistent_index".to_vec(), read.snapshot().applied_index.to_be_bytes().to_vec())];
        let compacted = store.compact_revision();
        if compacted > 0 {
            meta.push((b"finishedCompactRev".to_vec(), revision_key(compacted, 0, false)));
            meta.push((b"scheduledCompactRev".to_vec(), revision_key(compacted, 0, false)));
        }
        meta.sort();
        small[9] = meta;
        Ok(Export { key: ks(mvcc::store::KEY)?, read, small, on_size: None })
    }
}

impl bbolt::Source for Export {
    fn laid_out(&mut self, bytes: u64) {
        if let Some(tell) = self.on_size.take() {
            tell(bytes);
        }
    }

    fn visit(&mut self, bucket: usize, f: &mut bbolt::Visit<'_>) -> bbolt::Result<()> {
        if bucket != KEY_BUCKET {
            for (k, v) in self.small.get(bucket).map(Vec::as_slice).unwrap_or_default() {
                f(k, v)?;
            }
            return Ok(());
        }
        let source = |e: mvcc::Error| bbolt::Error::Source(e.to_string());
        for item in self.read.range(self.key, Bound::Unbounded, Bound::Unbounded).map_err(source)? {
            let (k, v) = item.map_err(source)?;
            let rev = mvcc::Revision::decode(k)
                .ok_or_else(|| bbolt::Error::Source("a revision key of another size".into()))?;
            let (kv, tombstone) = mvcc::kv::decode(v, rev.main)
                .ok_or_else(|| bbolt::Error::Source(format!("revision {} does not decode", rev.main)))?;
            let value = if tombstone {
                KeyValue { key: kv.key, ..KeyValue::default() }
            } else {
                crate::api::convert::to_pb(kv)
            };
            f(&revision_key(rev.main, rev.sub, tombstone), &value.encode_to_vec())?;
        }
        Ok(())
    }
}

/// Writes the etcd snapshot of `store` to `out` (the bbolt file; the SHA-256 trailer is the caller's); `on_size`
/// learns the file's size before its first byte is written.
pub fn write(
    store: &mvcc::Store,
    out: &mut impl std::io::Write,
    on_size: impl FnOnce(u64) + Send + 'static,
) -> Result<u64, Error> {
    let mut export = Export::new(store)?;
    export.on_size = Some(Box::new(on_size));
    bbolt::write(out, &BUCKETS.map(str::as_bytes), &mut export, bbolt::WriteOptions::default())
        .map_err(|e| Error::Corrupt(format!("etcd snapshot: {e}")))
}
