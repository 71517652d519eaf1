//! Reading what an etcd 3.4 member keeps beside its database: the WAL (`member/wal/*.wal`) and the v2 snapshot
//! files (`member/snap/*.snap`), for the in-place conversion (`backup::migrate`). Read only; nothing here writes.
//!
//! **etcd's WAL** (files `<seq>-<index>.wal`, 16 hex digits each, read in name order): frames of a u64
//! little-endian length (the low 56 bits; when the top bit is set, bits 56..59 count the zero bytes padding the
//! record to 8 bytes), then a `walpb.Record` {type int64 = 1, crc uint32 = 2, data bytes = 3}. Types: 1 metadata
//! (`etcdserverpb.Metadata` {NodeID, ClusterID}), 2 entry (`raftpb.Entry`), 3 hard state (`raftpb.HardState`),
//! 4 CRC (the running CRC carried into a new file), 5 snapshot (`walpb.Snapshot` {index, term}). Each record's
//! crc is the CRC-32C of its data appended to the one before. A length of 0 is the end of a file (the rest is
//! preallocated zeros). An entry at an index already read replaces it and everything after (a new leader's log).
//!
//! **Never trusted**: a frame longer than what is left of its file, a record that does not decode, or a CRC
//! that does not match ends the log only at the tail of the last file (a torn last write, which etcd repairs the
//! same way); anywhere else it is an error naming the file and offset.
//!
//! **v2 snapshot files** (`<term>-<index>.snap`, 16 hex digits each): `snappb.Snapshot` {crc uint32 = 1, data
//! bytes = 2}, the crc the CRC-32C of data; data is a `raftpb.Snapshot` whose data is etcd's v2 store as JSON,
//! where `/0/members/<id>/raftAttributes` and `/attributes` hold each member and `/0/removed_members/<id>` the
//! removed ones.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, Snapshot};

use crate::error::Error;
use crate::proto::etcdserverpb as pb;

/// `walpb.Record`.
#[derive(Clone, PartialEq, prost::Message)]
struct Record {
    #[prost(int64, tag = "1")]
    kind: i64,
    #[prost(uint32, tag = "2")]
    crc: u32,
    #[prost(bytes = "vec", tag = "3")]
    data: Vec<u8>,
}

/// `walpb.Snapshot`, and `etcdserverpb.Metadata` (the same shape: two u64s).
#[derive(Clone, PartialEq, prost::Message)]
struct TwoIds {
    #[prost(uint64, tag = "1")]
    a: u64,
    #[prost(uint64, tag = "2")]
    b: u64,
}

/// `snappb.Snapshot`.
#[derive(Clone, PartialEq, prost::Message)]
struct SnapFile {
    #[prost(uint32, tag = "1")]
    crc: u32,
    #[prost(bytes = "vec", tag = "2")]
    data: Vec<u8>,
}

const METADATA: i64 = 1;
const ENTRY: i64 = 2;
const STATE: i64 = 3;
const CRC: i64 = 4;
const SNAPSHOT: i64 = 5;

/// etcd's largest WAL record (10 MB), as its decoder refuses larger.
const MAX_RECORD: u64 = 10 * 1024 * 1024;

/// What an etcd member's WAL holds.
#[derive(Debug, Default)]
pub struct EtcdWal {
    /// The member's id and its cluster's (the metadata record).
    pub member: u64,
    pub cluster: u64,
    /// Every entry, by index, as the log stands after overwrites.
    pub entries: BTreeMap<u64, Entry>,
    pub hard_state: HardState,
    /// The snapshot records: (index, term).
    pub snapshots: Vec<(u64, u64)>,
}

impl EtcdWal {
    /// The term of the entry at `index`, from the entries or a snapshot record.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        self.entries
            .get(&index)
            .map(|e| e.term)
            .or_else(|| self.snapshots.iter().rev().find(|s| s.0 == index).map(|s| s.1))
    }
}

/// Whether `name` is an etcd WAL file's name (`%016x-%016x.wal`).
pub fn is_wal_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".wal") else { return false };
    let hex = |s: &str| s.len() == 16 && s.bytes().all(|c| c.is_ascii_hexdigit());
    matches!(stem.split_once('-'), Some((a, b)) if hex(a) && hex(b))
}

fn files(dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(Error::io(format!("read {}", dir.display())))? {
        let e = e.map_err(Error::io(format!("read {}", dir.display())))?;
        if e.file_name().to_str().is_some_and(&keep) {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

fn bad(path: &Path, offset: u64, what: impl std::fmt::Display) -> Error {
    Error::Corrupt(format!("etcd WAL {} at offset {offset}: {what}", path.display()))
}

/// Reads every etcd WAL file in `dir` (see the module header).
pub fn read_wal(dir: &Path) -> Result<EtcdWal, Error> {
    let paths = files(dir, is_wal_name)?;
    if paths.is_empty() {
        return Err(Error::Corrupt(format!("{} holds no etcd WAL file", dir.display())));
    }
    let mut wal = EtcdWal::default();
    let mut crc = 0u32;
    let mut seen_metadata = false;
    for (n, path) in paths.iter().enumerate() {
        let last_file = n + 1 == paths.len();
        let bytes = std::fs::read(path).map_err(Error::io(format!("read {}", path.display())))?;
        let mut at = 0usize;
        while at + 8 <= bytes.len() {
            let len_field = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or_default());
            if len_field == 0 {
                break;
            }
            let rec_len = len_field & !(0xff << 56);
            let pad = if len_field & (1 << 63) != 0 { (len_field >> 56) & 0x7 } else { 0 };
            let start = at + 8;
            let end = (start as u64).saturating_add(rec_len).saturating_add(pad);
            // A torn tail (only in the last file) ends the log; anything else is damage.
            let torn = |what: String| if last_file { Ok(()) } else { Err(bad(path, at as u64, what)) };
            if rec_len >= MAX_RECORD || end > bytes.len() as u64 {
                torn(format!("a record of {rec_len} bytes runs past the file"))?;
                break;
            }
            let data = &bytes[start..start + rec_len as usize];
            let rec = match Record::decode(data) {
                Ok(r) => r,
                Err(e) => {
                    torn(format!("a record that does not decode: {e}"))?;
                    break;
                }
            };
            if rec.kind == CRC {
                if crc != 0 && rec.crc != crc {
                    return Err(bad(path, at as u64, "the CRC carried into the file does not match"));
                }
                crc = rec.crc;
            } else {
                let next = crc32c::crc32c_append(crc, &rec.data);
                if next != rec.crc {
                    torn(format!("CRC {:08x}, expected {next:08x}", rec.crc))?;
                    break;
                }
                crc = next;
            }
            let decode = |what: &str, e: protobuf::ProtobufError| bad(path, at as u64, format!("{what}: {e}"));
            match rec.kind {
                METADATA => {
                    let m = TwoIds::decode(rec.data.as_slice()).map_err(|e| bad(path, at as u64, e))?;
                    if seen_metadata && (m.a, m.b) != (wal.member, wal.cluster) {
                        return Err(bad(path, at as u64, "metadata that differs from the first file's"));
                    }
                    (wal.member, wal.cluster, seen_metadata) = (m.a, m.b, true);
                }
                ENTRY => {
                    let e = Entry::parse_from_bytes(&rec.data).map_err(|e| decode("entry", e))?;
                    wal.entries.split_off(&e.index);
                    wal.entries.insert(e.index, e);
                }
                STATE => wal.hard_state = HardState::parse_from_bytes(&rec.data).map_err(|e| decode("state", e))?,
                SNAPSHOT => {
                    let s = TwoIds::decode(rec.data.as_slice()).map_err(|e| bad(path, at as u64, e))?;
                    wal.snapshots.push((s.a, s.b));
                }
                CRC => {}
                other => return Err(bad(path, at as u64, format!("record type {other}"))),
            }
            at = end as usize;
        }
    }
    if !seen_metadata || wal.member == 0 {
        return Err(Error::Corrupt(format!("the etcd WAL in {} names no member", dir.display())));
    }
    Ok(wal)
}

/// The members as etcd's v2 store keeps them.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Members {
    /// The Raft index and term of the snapshot they are from (0 when there is none).
    pub index: u64,
    pub term: u64,
    pub members: BTreeMap<u64, pb::Member>,
    pub removed: BTreeSet<u64>,
}

/// One member's JSON as etcd writes it (raft attributes, attributes, or a configuration change's context).
pub fn member_from_json(json: &[u8], into: &mut pb::Member) -> Result<bool, Error> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| Error::Corrupt(format!("etcd member record: {e}")))?;
    let strings = |f: &str| -> Option<Vec<String>> {
        Some(v.get(f)?.as_array()?.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
    };
    if let Some(id) = v.get("id").and_then(serde_json::Value::as_u64) {
        into.id = id;
    }
    if let Some(urls) = strings("peerURLs") {
        // Raft attributes: the peer URLs and the learner flag (left out when false) travel together.
        into.peer_ur_ls = urls;
        into.is_learner = v.get("isLearner").and_then(serde_json::Value::as_bool).unwrap_or(false);
    }
    if let Some(urls) = strings("clientURLs") {
        into.client_ur_ls = urls;
    }
    if let Some(name) = v.get("name").and_then(serde_json::Value::as_str) {
        into.name = name.to_string();
    }
    Ok(v.get("isPromote").and_then(serde_json::Value::as_bool).unwrap_or(false))
}

/// The members in the newest v2 snapshot file of `dir` at or below index `at_most`, if there is one.
pub fn read_snap(dir: &Path, at_most: u64) -> Result<Option<Members>, Error> {
    let parse = |name: &str| -> Option<(u64, u64)> {
        let (t, i) = name.strip_suffix(".snap")?.split_once('-')?;
        Some((u64::from_str_radix(t, 16).ok()?, u64::from_str_radix(i, 16).ok()?))
    };
    let mut found: Vec<(u64, u64, PathBuf)> = files(dir, |n| parse(n).is_some())?
        .into_iter()
        .filter_map(|p| {
            let (t, i) = parse(p.file_name()?.to_str()?)?;
            Some((i, t, p))
        })
        .filter(|(i, ..)| *i <= at_most)
        .collect();
    found.sort();
    let Some((_, _, path)) = found.pop() else { return Ok(None) };
    let bad = |what: String| Error::Corrupt(format!("etcd snapshot file {}: {what}", path.display()));
    let bytes = std::fs::read(&path).map_err(Error::io(format!("read {}", path.display())))?;
    let file = SnapFile::decode(bytes.as_slice()).map_err(|e| bad(e.to_string()))?;
    if crc32c::crc32c(&file.data) != file.crc {
        return Err(bad("CRC mismatch".into()));
    }
    let snap = Snapshot::parse_from_bytes(&file.data).map_err(|e| bad(e.to_string()))?;
    let meta = snap.get_metadata();
    let store: serde_json::Value = serde_json::from_slice(&snap.data).map_err(|e| bad(format!("v2 store: {e}")))?;
    let dir0 = &store["Root"]["Children"]["0"]["Children"];
    let mut out = Members { index: meta.index, term: meta.term, ..Members::default() };
    if let Some(ms) = dir0["members"]["Children"].as_object() {
        for (hex, node) in ms {
            let id = u64::from_str_radix(hex, 16).map_err(|_| bad(format!("member id {hex:?}")))?;
            let mut m = pb::Member { id, ..pb::Member::default() };
            for part in ["raftAttributes", "attributes"] {
                if let Some(json) = node["Children"][part]["Value"].as_str() {
                    member_from_json(json.as_bytes(), &mut m)?;
                }
            }
            out.members.insert(id, m);
        }
    }
    if let Some(rs) = dir0["removed_members"]["Children"].as_object() {
        for hex in rs.keys() {
            out.removed.insert(u64::from_str_radix(hex, 16).map_err(|_| bad(format!("removed id {hex:?}")))?);
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_names_are_etcds() {
        assert!(is_wal_name("0000000000000000-0000000000000000.wal"));
        assert!(is_wal_name("0000000000000001-00000000000a0b1c.wal"));
        assert!(!is_wal_name("0000000000000001.wal"), "ferrokv's own segments");
        assert!(!is_wal_name("0000000000000000-0000000000000000.wal.tmp"));
    }

    #[test]
    fn member_json_as_etcd_writes_it() {
        let mut m = pb::Member::default();
        let json = br#"{"id":13668592934843238669,"peerURLs":["http://a:2380"],"isLearner":true}"#;
        assert!(!member_from_json(json, &mut m).unwrap());
        assert_eq!((m.id, m.peer_ur_ls.len(), m.is_learner), (13668592934843238669, 1, true));
        let promote = br#"{"id":1,"peerURLs":["http://a:2380"],"isPromote":true}"#;
        assert!(member_from_json(promote, &mut m).unwrap());
        assert!(!m.is_learner);
    }
}
