//! An etcd snapshot (ferrokv's or etcd's: a bbolt file with etcd's buckets, and usually a SHA-256 trailer) read
//! into a new ferrokv store: the whole `key` history since the compaction point with its revisions, the leases,
//! the alarms, the compaction markers, and the users and roles. The snapshot's members are not carried: a restore starts a new cluster
//! (`tools::restore`), as etcd's does.
//!
//! **What is read, bucket by bucket** (the export's table in `export` is the same format the other way):
//! - `key`: revision keys `main`, `_`, `sub` (u64 big-endian each), with `t` after a deletion; values
//!   `mvccpb.KeyValue`. Each is checked (shape, mod revision equal to the key's, create revision and version
//!   possible, revisions increasing) before it is stored. etcd 3.6's `--bump-revision` marker (a revision with an
//!   empty value) carries no key: it only raises the revision.
//! - `lease`: `leasepb.Lease` {ID, TTL}. `alarm`: `AlarmMember`. `meta`: `scheduledCompactRev`,
//!   `finishedCompactRev` (revision keys).
//! - `auth`, `authUsers`, `authRoles`: kept as etcd keeps them (`apply::auth`), each user and role checked to
//!   decode, authentication enabled or not as it was.
//!
//! **Never trusted**: the `bbolt` reader bounds every page; the SHA-256 trailer is checked unless the operator
//! skips it (a database copied from a data directory has none); any bad record stops the import with its
//! revision and the reason, and the partial store is the caller's to discard.

use std::io::Read;
use std::path::Path;

use prost::Message;
use sha2::Digest;

use crate::apply::auth::{AUTH, ENABLED, REVISION, ROLES, USERS};
use crate::backup::export::LeaseRecord;
use crate::error::Error;
use crate::logging::log;
use crate::proto::{authpb, etcdserverpb as pb, mvccpb};

/// What the import found and stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    pub revisions: u64,
    pub leases: u64,
    pub alarms: u64,
    pub users: u64,
    pub roles: u64,
    /// The store's revision after the import (the last revision, or a bump above it).
    pub revision: i64,
    /// The compaction point: reads below it fail.
    pub compacted: i64,
}

/// How to import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Trust the file without its SHA-256 trailer (`--skip-hash-check`).
    pub skip_hash_check: bool,
    /// Raise the revision by this much and compact everything below it (`--bump-revision` with
    /// `--mark-compacted`), so that clients watching from old revisions start over.
    pub bump_revision: i64,
}

/// The size of the SHA-256 trailer etcd appends.
const TRAILER: u64 = 32;

/// Go's `%v` of a byte slice, as etcd's hash message prints it.
fn go_bytes(b: &[u8]) -> String {
    format!("[{}]", b.iter().map(u8::to_string).collect::<Vec<_>>().join(" "))
}

/// Checks the snapshot's SHA-256 trailer as etcd does: a file whose size is 32 more than a multiple of 512 has
/// one. Returns whether it had one.
pub fn check_hash(path: &Path, skip: bool) -> Result<bool, Error> {
    let io = |e| Error::io(format!("read snapshot {}", path.display()))(e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let has_hash = len % 512 == TRAILER;
    if skip {
        return Ok(has_hash);
    }
    if !has_hash {
        return Err(Error::Refused("snapshot missing hash but --skip-hash-check=false".into()));
    }
    let mut sha = sha2::Sha256::new();
    let mut left = len - TRAILER;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        f.read_exact(&mut buf[..n]).map_err(io)?;
        sha.update(&buf[..n]);
        left -= n as u64;
    }
    let mut want = [0u8; TRAILER as usize];
    f.read_exact(&mut want).map_err(io)?;
    let got = sha.finalize();
    if got.as_slice() != want {
        return Err(Error::Corrupt(format!("expected sha256 {}, got {}", go_bytes(&want), go_bytes(&got))));
    }
    Ok(true)
}

/// etcd's revision key: (main, sub, tombstone).
fn parse_revision(k: &[u8]) -> Option<(i64, i64, bool)> {
    let tombstone = match k.len() {
        17 => false,
        18 if k[17] == b't' => true,
        _ => return None,
    };
    if k[8] != b'_' {
        return None;
    }
    let main = i64::from_be_bytes(k[..8].try_into().ok()?);
    let sub = i64::from_be_bytes(k[9..17].try_into().ok()?);
    Some((main, sub, tombstone))
}

/// Runs `f` over a bucket's entries, keeping the first error of ours (the reader's own errors name the page).
/// What receives a bucket's entries.
type Entry<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), Error> + 'a;

fn each(r: &bbolt::Reader, bucket: &str, f: &mut Entry<'_>) -> Result<(), Error> {
    let mut ours = None;
    let read = r.for_each(bucket.as_bytes(), &mut |k, v| {
        f(k, v).map_err(|e| {
            ours = Some(e);
            bbolt::Error::Source("stopped".into())
        })
    });
    match (ours, read) {
        (Some(e), _) => Err(e),
        (None, Err(bbolt::Error::NoBucket(_))) => Ok(()),
        (None, r) => r.map_err(|e| Error::Corrupt(format!("etcd snapshot: {e}"))),
    }
}

fn bad(what: String) -> Error {
    Error::Corrupt(format!("etcd snapshot: {what}"))
}

/// Reads the etcd snapshot at `snapshot` into a new store at `store_path` (see the module header); the SHA-256
/// trailer is the caller's to check first ([`check_hash`]).
pub fn import(
    snapshot: &Path,
    store_path: &Path,
    config: mvcc::StoreConfig,
    opts: Options,
) -> Result<(mvcc::Store, Imported), Error> {
    let r = bbolt::Reader::open(snapshot).map_err(|e| bad(format!("{}: {e}", snapshot.display())))?;
    let mut out = Imported::default();
    let store = mvcc::store::load::load(store_path, &crate::apply::store::KEYSPACES, config, |l| {
        let mut marker = 0i64;
        each(&r, "key", &mut |k, v| {
            let (main, sub, tombstone) =
                parse_revision(k).ok_or_else(|| bad(format!("a revision key of {} bytes: {k:?}", k.len())))?;
            let rev = mvcc::Revision::new(main, sub);
            if v.is_empty() && !tombstone {
                // etcd 3.6's --bump-revision marker.
                marker = marker.max(main);
                return Ok(());
            }
            let kv = mvccpb::KeyValue::decode(v).map_err(|e| bad(format!("revision {rev}: {e}")))?;
            if !tombstone && kv.mod_revision != main {
                return Err(bad(format!("revision {rev} holds a value of revision {}", kv.mod_revision)));
            }
            let ours = mvcc::KeyValue {
                key: kv.key,
                value: kv.value,
                create_revision: kv.create_revision,
                mod_revision: main,
                version: kv.version,
                lease: kv.lease,
            };
            l.revision(rev, &ours, tombstone)?;
            Ok(())
        })?;
        each(&r, "lease", &mut |k, v| {
            let lease = LeaseRecord::decode(v).map_err(|e| bad(format!("lease record {k:?}: {e}")))?;
            if k.len() != 8 || i64::from_be_bytes(k.try_into().unwrap_or_default()) != lease.id || lease.id == 0 {
                return Err(bad(format!("lease record {k:?} holds lease {:x}", lease.id)));
            }
            let (k, v) = crate::apply::lease::encode_record(lease.id, lease.ttl);
            l.put(crate::apply::lease::LEASE, &k, &v)?;
            out.leases += 1;
            Ok(())
        })?;
        each(&r, "alarm", &mut |k, _| {
            let a = pb::AlarmMember::decode(k).map_err(|e| bad(format!("alarm record: {e}")))?;
            let (k, v) = crate::apply::alarm::encode_record(a.member_id, a.alarm);
            l.put(crate::apply::alarm::ALARM, &k, &v)?;
            out.alarms += 1;
            Ok(())
        })?;
        // Users and roles, kept as etcd keeps them (`apply::auth`), each checked to decode under its own name.
        each(&r, AUTH, &mut |k, v| {
            if k == ENABLED || k == REVISION {
                l.put(AUTH, k, v)?;
            }
            Ok(())
        })?;
        each(&r, USERS, &mut |k, v| {
            let u = authpb::User::decode(v).map_err(|e| bad(format!("user record {k:?}: {e}")))?;
            if u.name != k {
                return Err(bad(format!("user record {k:?} names {:?}", u.name)));
            }
            l.put(USERS, k, v)?;
            out.users += 1;
            Ok(())
        })?;
        each(&r, ROLES, &mut |k, v| {
            let role = authpb::Role::decode(v).map_err(|e| bad(format!("role record {k:?}: {e}")))?;
            if role.name != k {
                return Err(bad(format!("role record {k:?} names {:?}", role.name)));
            }
            l.put(ROLES, k, v)?;
            out.roles += 1;
            Ok(())
        })?;
        let (mut scheduled, mut finished) = (0i64, 0i64);
        each(&r, "meta", &mut |k, v| {
            let slot = match k {
                b"scheduledCompactRev" => &mut scheduled,
                b"finishedCompactRev" => &mut finished,
                _ => return Ok(()),
            };
            *slot = parse_revision(v).map(|(main, ..)| main).ok_or_else(|| bad(format!("meta {k:?}: {v:?}")))?;
            Ok(())
        })?;
        let last = l.last().map_or(0, |r| r.main).max(marker);
        if opts.bump_revision > 0 {
            let bumped = last.max(1).saturating_add(opts.bump_revision);
            log(
                "info",
                "bumping latest revision",
                &[
                    ("latest-revision", last.to_string()),
                    ("bump-amount", opts.bump_revision.to_string()),
                    ("new-latest-revision", bumped.to_string()),
                ],
            );
            log("info", "marking revision compacted", &[("revision", bumped.to_string())]);
            scheduled = bumped;
        } else if marker > l.last().map_or(0, |r| r.main) {
            // A bump marker above every record: the revision stays raised, as etcd's restore of it does.
            scheduled = scheduled.max(marker);
        }
        l.compaction(scheduled, finished)?;
        out.revisions = l.revisions();
        Ok::<_, Error>(())
    })?;
    out.revision = store.current_revision();
    out.compacted = store.compact_revision();
    Ok((store, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_keys_parse_as_etcd_writes_them() {
        let k = crate::backup::export::revision_key(5, 2, false);
        assert_eq!(parse_revision(&k), Some((5, 2, false)));
        let t = crate::backup::export::revision_key(7, 0, true);
        assert_eq!(parse_revision(&t), Some((7, 0, true)));
        assert_eq!(parse_revision(&k[..16]), None);
        let mut wrong = t.clone();
        wrong[17] = b'x';
        assert_eq!(parse_revision(&wrong), None);
        wrong = k.clone();
        wrong[8] = b'-';
        assert_eq!(parse_revision(&wrong), None);
    }

    #[test]
    fn go_prints_byte_slices_with_spaces() {
        assert_eq!(go_bytes(&[1, 20, 255]), "[1 20 255]");
    }
}
