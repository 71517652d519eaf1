//! This member's identity (its member id and the cluster id), fixed at its first start and kept in the file
//! `member/identity`, apart from the store (a snapshot from the leader replaces the store whole); and how a member
//! started with `--initial-cluster-state existing` learns it from the members already running.
//!
//! **On-disk format** (`member/identity`, version 1, 21 bytes; see docs/format-server.md):
//!
//! | offset | width | field | encoding |
//! |---|---|---|---|
//! | 0 | 1 | format version: 1 | u8 |
//! | 1 | 8 | member id | u64 little-endian |
//! | 9 | 8 | cluster id | u64 little-endian |
//! | 17 | 4 | CRC32C of bytes 0..17 | u32 little-endian |
//!
//! Version 0 (20 bytes: the same fields without the version byte, CRC of bytes 0..16), written before the version
//! byte existed, is still read. A newer version is refused with its number, never misread.
//!
//! Written once, at the first start (temporary file, fsync, rename, directory fsync); later starts ignore
//! `--initial-cluster`, as etcd does. A damaged file is an error, never a guess.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use prost::Message as _;

pub use crate::apply::membership::Identity;
use crate::consensus::transport::MEMBERS as ASK_MEMBERS;
use crate::error::Error;
use crate::proto::etcdserverpb as pb;

/// The answer to a joining member (a peer frame of kind `MEMBERS`): etcd's `MemberListResponse`, whose header
/// carries the cluster id, with every member.
pub fn join_answer(cluster: &crate::apply::membership::Shared) -> Vec<u8> {
    let header = Some(pb::ResponseHeader {
        cluster_id: cluster.identity.cluster,
        member_id: cluster.identity.member,
        ..Default::default()
    });
    pb::MemberListResponse { header, members: cluster.read().members() }.encode_to_vec()
}

/// The identity file's name in the member directory.
const IDENTITY_FILE: &str = "identity";
/// The format version written.
const IDENTITY_VERSION: u8 = 1;
/// Its length: version, member id, cluster id (u64 little-endian each), CRC32C of the bytes before it (u32 LE).
const IDENTITY_LEN: usize = 21;
/// Version 0's length: no version byte.
const IDENTITY_V0_LEN: usize = 20;

impl Identity {
    /// The identity stored by an earlier start in `member_dir`, if any; a damaged file is an error, never a
    /// guess.
    pub fn load(member_dir: &Path) -> Result<Option<Identity>, Error> {
        let path = member_dir.join(IDENTITY_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path.display())(e)),
        };
        let n = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        let fields = match bytes.len() {
            IDENTITY_V0_LEN => 0,
            IDENTITY_LEN if bytes[0] == IDENTITY_VERSION => 1,
            _ if bytes.first().is_some_and(|v| *v > IDENTITY_VERSION) => {
                return Err(Error::Corrupt(format!(
                    "{}: member identity format version {} is newer than this ferrokv reads ({IDENTITY_VERSION})",
                    path.display(),
                    bytes[0]
                )));
            }
            len => return Err(Error::Corrupt(format!("{}: corrupt member identity ({len} bytes)", path.display()))),
        };
        let (body, crc) = bytes.split_at(fields + 16);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err(Error::Corrupt(format!("{}: corrupt member identity (checksum mismatch)", path.display())));
        }
        Ok(Some(Identity { member: n(&body[fields..fields + 8]), cluster: n(&body[fields + 8..]) }))
    }

    /// Stores the identity in `member_dir`.
    ///
    /// # Durability
    /// Durable on return: written to a temporary file, fsynced, renamed over the old name, directory fsynced.
    pub fn save(&self, member_dir: &Path) -> Result<(), Error> {
        let io = |e: std::io::Error| Error::io(member_dir.display())(e);
        let mut bytes = vec![IDENTITY_VERSION];
        bytes.extend_from_slice(&self.member.to_le_bytes());
        bytes.extend_from_slice(&self.cluster.to_le_bytes());
        bytes.extend_from_slice(&crc32c::crc32c(&bytes).to_le_bytes());
        let tmp = member_dir.join(format!("{IDENTITY_FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, member_dir.join(IDENTITY_FILE)).map_err(io)?;
        std::fs::File::open(member_dir).and_then(|d| d.sync_all()).map_err(io)
    }
}

/// How long a joining member keeps asking the members it was given.
const JOIN_PATIENCE: Duration = Duration::from_secs(15);

/// A member started with `--initial-cluster-state existing` asks the others (at `peers`) for the cluster id and
/// the member list, and finds itself there by its advertised peer URLs (added with `member add` beforehand).
pub fn join(
    dialer: &crate::consensus::transport::Dialer,
    peers: &[crate::consensus::conn::PeerAddr],
    my_urls: &[String],
) -> Result<(Identity, Vec<pb::Member>), Error> {
    let deadline = Instant::now() + JOIN_PATIENCE;
    let mut answered = false;
    loop {
        for addr in peers {
            let Some(answer) = ask(dialer, addr) else { continue };
            answered = true;
            let cluster = answer.header.map_or(0, |h| h.cluster_id);
            // A follower may not have applied the `member add` yet: ask the others, and again, before giving up.
            if let Some(me) = answer.members.iter().find(|m| my_urls.iter().any(|u| m.peer_ur_ls.contains(u))) {
                return Ok((Identity { member: me.id, cluster }, answer.members));
            }
        }
        if Instant::now() >= deadline {
            return Err(Error::Refused(if answered {
                format!(
                    "member with peer URLs {} has not been added to the cluster (use `etcdctl member add` first)",
                    my_urls.join(",")
                )
            } else {
                "cannot fetch cluster info from any of the --initial-cluster peers".into()
            }));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn ask(
    dialer: &crate::consensus::transport::Dialer,
    addr: &crate::consensus::conn::PeerAddr,
) -> Option<pb::MemberListResponse> {
    let buf = crate::consensus::transport::ask(dialer, addr, &[ASK_MEMBERS], Duration::from_secs(2)).ok()?;
    pb::MemberListResponse::decode(&buf[..]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_and_a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), None);
        let id = Identity { member: 7, cluster: 9 };
        id.save(dir.path()).unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), Some(id));
        let path = dir.path().join(IDENTITY_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(Identity::load(dir.path()).is_err(), "a flipped bit is detected");
        std::fs::write(&path, [0u8; 5]).unwrap();
        assert!(Identity::load(dir.path()).is_err(), "a short file is detected");
    }

    #[test]
    fn the_file_starts_with_its_version_and_version_0_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity { member: 0x1122, cluster: 0x3344 };
        id.save(dir.path()).unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!((bytes.len(), bytes[0]), (21, 1));
        // Version 0, as members wrote it before the version byte: member, cluster, CRC of the 16 bytes.
        let mut v0 = 0x1122u64.to_le_bytes().to_vec();
        v0.extend_from_slice(&0x3344u64.to_le_bytes());
        v0.extend_from_slice(&crc32c::crc32c(&v0).to_le_bytes());
        std::fs::write(&path, &v0).unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), Some(id));
        // A newer version is refused by number, not misread.
        let mut v2 = bytes.clone();
        v2[0] = 2;
        let crc = crc32c::crc32c(&v2[..17]).to_le_bytes();
        v2[17..].copy_from_slice(&crc);
        std::fs::write(&path, &v2).unwrap();
        let e = Identity::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("version 2 is newer"), "{e}");
    }
}
