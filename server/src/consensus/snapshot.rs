//! Catch-up by snapshot: a member that has fallen behind the leader's compacted log gets the leader's whole
//! store, streamed over the peer transport.
//!
//! **Leader** (`send`): when Raft asks for a snapshot for a peer, a thread streams a consistent image of the store
//! (`mvcc::Db::snapshot_to`, taken from a read transaction: writers go on) in frames on a connection of its own,
//! then the Raft `MsgSnapshot` whose metadata says which Raft index and term the image had applied. It waits for
//! the follower's one-byte verdict and reports the outcome to Raft (`Msg::ReportSnapshot`).
//!
//! **Follower** (`receive`): the image goes straight to `snap/db.incoming-<index>-<term>` as it arrives (never
//! whole in memory); its CRC32C trailer is verified and every page read back (`mvcc::Db::restore_from`) before
//! the `MsgSnapshot` is handed to Raft. When Raft's Ready carries that snapshot, the apply thread installs it in
//! log order (`apply::store::StoreSlot::install`: rename over `snap/db`, fsync the directory, open), then the Raft thread writes
//! the WAL's snapshot marker. A crash in between is safe: mvcc's applied index says where the replay starts.
//!
//! **Invariants**: the store is replaced only by the apply thread, between two batches of entries; readers that
//! hold the old store keep reading the old (unlinked) file until they drop it; staged images that Raft did not
//! take are removed at the next staging or install, and at start.

use std::io::{BufReader, BufWriter, Read, Write};
use std::time::{Duration, Instant};

use mvcc::Store;
use protobuf::Message as _;
use raft::eraftpb::Message;

use crate::apply::store::StoreSlot;
use crate::consensus::conn::PeerConn;
use crate::consensus::node::Msg;
use crate::consensus::transport::{SNAP_CHUNK, SNAP_END, read_frame, write_frame};
use crate::error::Error;
use crate::logging::log;

/// Bytes per frame of a snapshot stream.
pub const CHUNK: usize = 1 << 20;

/// Writes what it is given as frames of `kind` of up to [`CHUNK`] bytes (see `transport`).
#[derive(Debug)]
pub struct FrameWriter<W: Write> {
    pub out: W,
    pub kind: u8,
    buf: Vec<u8>,
}

impl<W: Write> FrameWriter<W> {
    pub fn new(out: W, kind: u8) -> Self {
        FrameWriter { out, kind, buf: Vec::with_capacity(CHUNK + 1) }
    }

    fn emit(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.out.write_all(&((self.buf.len() + 1) as u32).to_le_bytes())?;
        self.out.write_all(&[self.kind])?;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

impl<W: Write> Write for FrameWriter<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = b.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&b[..n]);
        if self.buf.len() == CHUNK {
            self.emit()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.emit()?;
        self.out.flush()
    }
}

/// Leader side: streams `store` to the member at `addr`, then `m` (the `MsgSnapshot`, its metadata set to the
/// Raft index and term the image had applied); true once the member says it staged the image.
pub fn send(
    dialer: &crate::consensus::transport::Dialer,
    addr: &crate::consensus::conn::PeerAddr,
    mut m: Message,
    store: &Store,
) -> bool {
    let to = m.to;
    let started = Instant::now();
    let outcome = (|| -> Result<mvcc::SnapshotInfo, String> {
        let mut conn = dialer.dial(addr).map_err(|e| format!("dial: {e}"))?;
        let info = {
            let mut frames = FrameWriter::new(BufWriter::new(&mut conn), SNAP_CHUNK);
            let info = store.db().snapshot_to(&mut frames).map_err(|e| format!("image: {e}"))?;
            let meta = m.mut_snapshot().mut_metadata();
            meta.set_index(info.applied_index);
            meta.set_term(info.applied_term);
            let mut end = vec![SNAP_END];
            m.write_to_vec(&mut end).map_err(|e| e.to_string())?;
            if !write_frame(&mut frames.out, &end) || frames.out.flush().is_err() {
                return Err("send: connection lost".into());
            }
            info
        };
        conn.set_read_timeout(Some(VERDICT_TIMEOUT)).map_err(|e| e.to_string())?;
        let mut verdict = [0u8; 1];
        conn.read_exact(&mut verdict).map_err(|e| format!("no answer: {e}"))?;
        if verdict[0] == 1 { Ok(info) } else { Err("the member refused the image".into()) }
    })();
    match outcome {
        Ok(info) => {
            log(
                "info",
                "sent database snapshot to member",
                &[
                    ("to", format!("{to:x}")),
                    ("bytes", info.bytes.to_string()),
                    ("applied-index", info.applied_index.to_string()),
                    ("took", format!("{:?}", started.elapsed())),
                ],
            );
            true
        }
        Err(e) => {
            log("warn", "failed to send database snapshot", &[("to", format!("{to:x}")), ("error", e)]);
            false
        }
    }
}

/// How long the leader waits for the member to stage an image it has sent in full.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(300);

/// Follower side: `first` is the first chunk of an image arriving on `conn`; stages the image, hands the
/// `MsgSnapshot` that ends it to Raft, and answers the leader.
pub fn receive(
    first: Vec<u8>,
    mut conn: BufReader<PeerConn>,
    stores: &StoreSlot,
    raft: &crate::consensus::node::RaftQueue,
    metrics: &crate::metrics::PeerMetrics,
) {
    let started = Instant::now();
    let mut chunks = Chunks { r: &mut conn, pending: first, pos: 0, end: None };
    let staged = stores.stage(&mut chunks);
    if staged.is_ok() {
        metrics.snapshot_save.observe(started.elapsed().as_secs_f64());
    }
    let end = chunks.end.take();
    let m = end.and_then(|b| Message::parse_from_bytes(&b).ok());
    // The sender is named by the message that ends the image; an image cut short names nobody.
    let from = m.as_ref().map_or_else(|| "unknown".to_string(), |m| format!("{:x}", m.from));
    let outcome = staged.and_then(|(index, term)| {
        let m = m.ok_or_else(|| Error::Corrupt("snapshot stream ended without its MsgSnapshot".into()))?;
        let meta = m.get_snapshot().get_metadata();
        if (meta.index, meta.term) != (index, term) {
            return Err(Error::Corrupt(format!(
                "snapshot message says {}/{}, the image applied {index}/{term}",
                meta.index, meta.term
            )));
        }
        raft.send(Msg::Step(Box::new(m)))?;
        Ok(index)
    });
    metrics.snapshot_receive.ended(&from, outcome.is_ok(), started);
    let ok = match outcome {
        Ok(index) => {
            log(
                "info",
                "received and staged database snapshot",
                &[("applied-index", index.to_string()), ("took", format!("{:?}", started.elapsed()))],
            );
            true
        }
        Err(e) => {
            log("warn", "refused database snapshot", &[("error", e.to_string())]);
            false
        }
    };
    let _ = conn.get_mut().write_all(&[u8::from(ok)]).and_then(|()| conn.get_mut().flush());
}

/// The image's bytes from the chunk frames of a snapshot connection; ends at the `SNAP_END` frame, kept in `end`.
struct Chunks<'a> {
    r: &'a mut BufReader<PeerConn>,
    pending: Vec<u8>,
    pos: usize,
    end: Option<Vec<u8>>,
}

impl Read for Chunks<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.pending.len() {
            if self.end.is_some() {
                return Ok(0);
            }
            let mut frame = Vec::new();
            if !read_frame(self.r, &mut frame) {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "snapshot stream cut"));
            }
            match frame.split_first() {
                Some((&SNAP_CHUNK, body)) => {
                    self.pending = body.to_vec();
                    self.pos = 0;
                }
                Some((&SNAP_END, body)) => self.end = Some(body.to_vec()),
                _ => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not a snapshot frame")),
            }
        }
        let n = out.len().min(self.pending.len() - self.pos);
        out[..n].copy_from_slice(&self.pending[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
