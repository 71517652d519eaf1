//! KV.RangeStream (etcd 3.7): a Range answered in chunks, so a large range never sits whole in memory, neither
//! as key-values nor as one encoded message.
//!
//! Invariants: every chunk reads at one pinned revision (the request's, or the current one when the stream
//! starts), so the chunks form one consistent snapshot; if that revision is compacted away mid-stream the stream
//! ends with etcd's compacted error and the client retries. Merging all chunks gives exactly the unary Range's
//! response: the first message carries the header, each carries the next keys in order, the last carries `count`
//! and `more`. The count is computed once. A bounded channel gives back-pressure: the server reads a chunk only
//! when the client has taken the one before. Chunk sizes adapt to aim at about 1 MiB of keys and values.
//! Requests the store cannot stream in key order (count_only, a sort other than ascending by key) are answered
//! as one chunk.

use std::sync::Arc;

use tokio::sync::mpsc;
use tonic::Status;

use crate::api::convert::shape_range;
use crate::apply;
use crate::apply::store::StoreSlot;
use crate::error::Error;
use crate::proto::etcdserverpb::{self as pb, range_request::SortOrder, range_request::SortTarget};

/// The stream type of KV.RangeStream.
pub type RangeStream =
    std::pin::Pin<Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<pb::RangeStreamResponse, Status>> + Send>>;

/// Aimed-at bytes of keys and values per chunk.
const TARGET_CHUNK_BYTES: usize = 1 << 20;
const FIRST_CHUNK_KEYS: i64 = 64;
const MAX_CHUNK_KEYS: i64 = 8192;

/// Whether `r` can be answered in key order, chunk by chunk.
fn in_key_order(r: &pb::RangeRequest) -> bool {
    !r.count_only
        && r.sort_target == SortTarget::Key as i32
        && (r.sort_order == SortOrder::None as i32 || r.sort_order == SortOrder::Ascend as i32)
}

fn wrap(r: pb::RangeResponse) -> Result<pb::RangeStreamResponse, Status> {
    Ok(pb::RangeStreamResponse { range_response: Some(r) })
}

/// Starts answering `r` (already validated and, unless serializable, linearized) on a new stream.
pub fn start(stores: Arc<StoreSlot>, r: pb::RangeRequest, header: Option<pb::ResponseHeader>) -> RangeStream {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        if let Err(e) = run(&stores, &r, header, &tx).await {
            let _ = tx.send(Err(e.into())).await;
        }
    });
    Box::pin(tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(rx))
}

async fn run(
    stores: &StoreSlot,
    r: &pb::RangeRequest,
    header: Option<pb::ResponseHeader>,
    tx: &mpsc::Sender<Result<pb::RangeStreamResponse, Status>>,
) -> Result<(), Error> {
    let store = stores.get();
    let mut header = header;
    // The header's revision is the store's when the keys are read (a put applied since the header was made
    // must not make a header older than the keys).
    let mut stamp = |revision: i64| {
        if let Some(h) = header.as_mut() {
            h.revision = revision;
        }
    };
    if !in_key_order(r) {
        let res = store.range(&r.key, &r.range_end, apply::range_options(r))?;
        stamp(res.revision);
        let _ = tx.send(wrap(shape_range(r, res, header))).await;
        return Ok(());
    }
    let current = store.current_revision();
    stamp(current);
    let pinned = if r.revision > 0 { r.revision } else { current };
    let counted = mvcc::RangeOptions { revision: pinned, count_only: true, ..Default::default() };
    let count = store.range(&r.key, &r.range_end, counted)?.count;
    // Only the revision filters of `r`: shape_range then neither sorts nor limits.
    let filters = pb::RangeRequest {
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
        ..Default::default()
    };
    let mut cursor = r.key.clone();
    let mut chunk = FIRST_CHUNK_KEYS;
    let mut sent = 0i64;
    loop {
        let opts = mvcc::RangeOptions { limit: chunk, revision: pinned, count_only: false, keys_only: r.keys_only };
        let res = store.range(&cursor, &r.range_end, opts)?;
        let exhausted = (res.kvs.len() as i64) < chunk;
        let next_cursor = res.kvs.last().map(|kv| [kv.key.as_slice(), &[0]].concat());
        let bytes: usize = res.kvs.iter().map(|kv| kv.key.len() + kv.value.len()).sum();
        let mut kvs = shape_range(&filters, res, None).kvs;
        let (mut done, mut more) = (exhausted, false);
        if r.limit > 0 {
            let room = (r.limit - sent) as usize;
            if kvs.len() > room {
                kvs.truncate(room);
                (done, more) = (true, true);
            }
        }
        sent += kvs.len() as i64;
        if !kvs.is_empty() || done || header.is_some() {
            let (count, more) = if done { (count, more) } else { (0, false) };
            let msg = pb::RangeResponse { header: header.take(), kvs, more, count };
            if tx.send(wrap(msg)).await.is_err() {
                return Ok(()); // the client went away
            }
        }
        match next_cursor {
            Some(c) if !done => cursor = c,
            _ => return Ok(()),
        }
        if bytes < TARGET_CHUNK_BYTES / 2 {
            chunk = (chunk * 2).min(MAX_CHUNK_KEYS);
        } else if bytes > TARGET_CHUNK_BYTES {
            chunk = (chunk / 2).max(1);
        }
    }
}
