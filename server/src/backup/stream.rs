//! `Maintenance.Snapshot`'s stream: the etcd snapshot file as it is written (`export`), in 64 KiB messages with
//! `remaining_bytes` counting down, then the SHA-256 of everything sent as the last message, which
//! `etcdctl snapshot save` keeps as the file's trailer and `etcdctl snapshot restore` checks.
//!
//! **Memory**: the export runs on a blocking thread and hands chunks to the stream through a channel of a few
//! messages: a slow client slows the export down, and the file is never whole in memory. A client that goes away
//! ends the export at its next chunk.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::Digest;
use tokio::sync::mpsc;
use tonic::Status;

use crate::proto::etcdserverpb::{ResponseHeader, SnapshotResponse};

/// Bytes per message.
const CHUNK: usize = 64 << 10;

/// What the stream yields.
pub type Stream = tonic::codegen::tokio_stream::wrappers::ReceiverStream<Result<SnapshotResponse, Status>>;

/// Starts exporting `store` and returns the stream of its messages; `header` goes with the first one.
/// `took` is told how long a snapshot that was sent in full took (etcd's backend snapshot duration).
pub fn snapshot(
    store: Arc<mvcc::Store>,
    header: Option<ResponseHeader>,
    took: impl FnOnce(std::time::Duration) + Send + 'static,
) -> Stream {
    let (tx, rx) = mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let total = Arc::new(AtomicU64::new(0));
        let size = Arc::clone(&total);
        let mut out = Chunks { tx, buf: Vec::with_capacity(CHUNK), sent: 0, total, sha: sha2::Sha256::new(), header };
        let written = super::export::write(&store, &mut out, move |n| size.store(n + 32, Ordering::Relaxed));
        match written {
            Ok(_) => {
                if out.finish().is_ok() {
                    took(started.elapsed());
                }
            }
            Err(e) => {
                let _ = out.tx.blocking_send(Err(Status::internal(format!("snapshot: {e}"))));
            }
        }
    });
    Stream::new(rx)
}

/// Cuts the file into messages.
struct Chunks {
    tx: mpsc::Sender<Result<SnapshotResponse, Status>>,
    buf: Vec<u8>,
    sent: u64,
    /// The file's size plus the trailer's, once known.
    total: Arc<AtomicU64>,
    sha: sha2::Sha256,
    header: Option<ResponseHeader>,
}

impl Chunks {
    fn send(&mut self, blob: Vec<u8>) -> std::io::Result<()> {
        self.sent += blob.len() as u64;
        let remaining = self.total.load(Ordering::Relaxed).saturating_sub(self.sent);
        let msg =
            SnapshotResponse { header: self.header.take(), remaining_bytes: remaining, blob, version: String::new() };
        self.tx
            .blocking_send(Ok(msg))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }

    /// The last of the file, then its SHA-256.
    /// Sends what is left and the digest; an error if the client went away.
    fn finish(mut self) -> std::io::Result<()> {
        let rest = std::mem::take(&mut self.buf);
        if !rest.is_empty() {
            self.send(rest)?;
        }
        let digest = std::mem::take(&mut self.sha).finalize().to_vec();
        self.send(digest)
    }
}

impl std::io::Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.sha.update(data);
        self.buf.extend_from_slice(data);
        while self.buf.len() >= CHUNK {
            let rest = self.buf.split_off(CHUNK);
            let chunk = std::mem::replace(&mut self.buf, rest);
            self.send(chunk)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
