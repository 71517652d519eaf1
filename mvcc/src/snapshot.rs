//! Point-in-time snapshots: stream a consistent image of the store while writes go on, and create a store from
//! such a stream (for backups and for a lagging Raft member).
//!
//! **Stream format**: the pages `0..page_count` of the snapshot's commit, in order — both meta slots hold the
//! snapshot's meta, every page the snapshot reaches is copied as it is, every other page is zeroes — then a
//! 16-byte trailer: magic `FKVSNAP\x01`, CRC32C of everything before the trailer (u32 LE), reserved zero u32.
//!
//! The image is taken from a read transaction, so pages it copies cannot change under it; pages it does not reach
//! may be reused by the writer at any moment, which is why they are zeroed rather than copied.
//!
//! Restore streams the image to `<path>.restore.tmp` as it arrives (never holding it whole in memory), verifies the
//! trailer's checksum at the end, fsyncs, opens the temporary file (verifying every page), and only then renames it
//! over `<path>`, fsyncs the directory and opens the result. A bad, truncated or unopenable stream removes the
//! temporary file and leaves `<path>` as it was.

use std::io::{Read, Write};
use std::path::Path;

use crate::db::{Db, DbConfig, mark_reachable};
use crate::error::{Error, Result};
use crate::page::PageId;
use crate::page::meta::Meta;

const MAGIC: [u8; 8] = *b"FKVSNAP\x01";
/// Bytes of the trailer.
pub const TRAILER_LEN: usize = 16;

/// What a snapshot stream held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Bytes written, trailer included.
    pub bytes: u64,
    /// The CRC32C in the trailer.
    pub crc: u32,
    /// The commit the image is of.
    pub txn: u64,
    /// The Raft index and term the image's commit had applied.
    pub applied_index: u64,
    pub applied_term: u64,
}

impl Db {
    /// Streams a consistent image of the latest commit into `out`.
    pub fn snapshot_to(&self, out: &mut impl Write) -> Result<SnapshotInfo> {
        let r = self.read();
        let snap = r.snapshot();
        let pager = &r.shared.pager;
        let page = pager.page_size();
        let mut reachable = vec![false; snap.page_count as usize];
        for ks in &snap.keyspaces {
            mark_reachable(pager, ks.root, &mut reachable)?;
        }
        let meta = Meta {
            page_size: page as u32,
            txn: snap.txn,
            page_count: snap.page_count,
            applied_index: snap.applied_index,
            applied_term: snap.applied_term,
            keyspaces: snap.keyspaces.clone(),
        };
        let io = |e| Error::io("write snapshot", "stream", e);
        let mut crc = 0u32;
        let mut put = |b: &[u8], out: &mut dyn Write| -> Result<()> {
            crc = crc32c::crc32c_append(crc, b);
            out.write_all(b).map_err(io)
        };
        let zero = vec![0u8; page];
        for slot in 0..2u64 {
            put(&meta.encode(PageId(slot)), out)?;
        }
        for id in 2..snap.page_count {
            if reachable[id as usize] {
                // Reachable pages verified when marked; read the raw bytes of this one page.
                put(pager.raw_page(PageId(id)), out)?;
            } else {
                put(&zero, out)?;
            }
        }
        let mut trailer = [0u8; TRAILER_LEN];
        trailer[..8].copy_from_slice(&MAGIC);
        trailer[8..12].copy_from_slice(&crc.to_le_bytes());
        out.write_all(&trailer).map_err(io)?;
        out.flush().map_err(io)?;
        Ok(SnapshotInfo {
            bytes: snap.page_count * page as u64 + TRAILER_LEN as u64,
            crc,
            txn: snap.txn.0,
            applied_index: snap.applied_index,
            applied_term: snap.applied_term,
        })
    }

    /// Creates the store at `path` from a snapshot stream (replacing any file there), after verifying its
    /// checksum, and opens it.
    ///
    /// # Durability
    /// On `Ok`, the restored file and its directory entry are durable.
    pub fn restore_from(
        path: impl AsRef<Path>,
        input: &mut impl Read,
        keyspaces: &[&str],
        config: DbConfig,
    ) -> Result<Db> {
        let path = path.as_ref();
        let bad = |what: &str| Error::Format { path: path.to_path_buf(), what: format!("snapshot {what}") };
        let tmp = path.with_extension("restore.tmp");
        let io = |e| Error::io("restore snapshot", path, e);
        // Streamed to `tmp` as it arrives (never whole in memory), the last TRAILER_LEN bytes held back: they are
        // the trailer once the stream ends.
        let mut copy = || -> Result<std::result::Result<(), Error>> {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp).map_err(io)?);
            let mut buf = vec![0u8; 1 << 20];
            let mut held: Vec<u8> = Vec::with_capacity(TRAILER_LEN);
            let (mut crc, mut len) = (0u32, 0u64);
            loop {
                let n = match input.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(Error::io("read snapshot", path, e)),
                };
                // Everything but the last TRAILER_LEN bytes seen so far is image.
                let fresh = &buf[..n];
                let total = held.len() + fresh.len();
                let emit = total.saturating_sub(TRAILER_LEN);
                let from_held = emit.min(held.len());
                let from_fresh = emit - from_held;
                crc = crc32c::crc32c_append(crc, &held[..from_held]);
                out.write_all(&held[..from_held]).map_err(io)?;
                crc = crc32c::crc32c_append(crc, &fresh[..from_fresh]);
                out.write_all(&fresh[..from_fresh]).map_err(io)?;
                held.drain(..from_held);
                held.extend_from_slice(&fresh[from_fresh..]);
                len += emit as u64;
            }
            if len < 8192 || held.len() < TRAILER_LEN {
                return Ok(Err(bad("is too short")));
            }
            if held[..8] != MAGIC {
                return Ok(Err(bad("has no trailer (truncated or not a snapshot)")));
            }
            if crc != u32::from_le_bytes([held[8], held[9], held[10], held[11]]) {
                return Ok(Err(bad("checksum does not match its contents")));
            }
            let f = out.into_inner().map_err(|e| io(e.into_error()))?;
            f.sync_all().map_err(io)?;
            Ok(Ok(()))
        };
        match copy() {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
        // The image is opened (every page verified) before it replaces anything: a stream whose checksum holds but
        // whose pages do not (the snapshot fuzz target made one) must leave `path` as it was.
        if let Err(e) = Db::open(&tmp, keyspaces, config.clone()) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let install = || -> std::io::Result<()> {
            std::fs::rename(&tmp, path)?;
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            std::fs::File::open(dir)?.sync_all()
        };
        install().map_err(io)?;
        Db::open(path, keyspaces, config)
    }
}
