//! The Watch stream through gRPC: many watchers on one stream each get exactly their events; watchers that asked
//! for progress notifications get them every --experimental-watch-progress-notify-interval with the revision they
//! have seen; a progress request is answered with watch id -1; a cancel ends one watcher only.

mod common;

use std::time::Duration;

use common::{free_port, start_with};
use server::proto::etcdserverpb::{
    PutRequest, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
    kv_client::KvClient, watch_client::WatchClient, watch_request::RequestUnion,
};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

fn create(key: &str, progress: bool) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.into(),
            progress_notify: progress,
            ..Default::default()
        })),
    }
}

async fn next(stream: &mut tonic::Streaming<WatchResponse>) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message()).await.expect("a response in 10 s").unwrap().unwrap()
}

#[test]
fn many_watchers_progress_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--experimental-watch-progress-notify-interval", "300ms"];
    let m = start_with(&dir.path().join("data"), free_port(), free_port(), &flags);
    let endpoint = format!("http://{}", m.endpoint);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut kv = KvClient::connect(endpoint.clone()).await.unwrap();
        let mut watch = WatchClient::connect(endpoint).await.unwrap();
        let (tx, rx) = mpsc::channel(16);
        let mut stream = watch.watch(ReceiverStream::new(rx)).await.unwrap().into_inner();
        // Watchers 0..5 on keys k0..k4; only k0's asks for progress notifications.
        for i in 0..5 {
            tx.send(create(&format!("k{i}"), i == 0)).await.unwrap();
            let r = next(&mut stream).await;
            assert!(r.created && !r.canceled);
            assert_eq!(r.watch_id, i);
        }
        for i in (0..5).rev() {
            let key = format!("k{i}");
            kv.put(PutRequest { key: key.into(), value: vec![b'0' + i as u8], ..Default::default() }).await.unwrap();
        }
        // Revisions 2..6 went to k4..k0: each watcher sees exactly its own put (progress ticks may interleave).
        let mut seen = std::collections::BTreeMap::new();
        let mut progress = Vec::new();
        while seen.len() < 5 {
            let r = next(&mut stream).await;
            if r.events.is_empty() {
                progress.push(r);
                continue;
            }
            assert_eq!(r.events.len(), 1);
            let kv = r.events[0].kv.as_ref().unwrap();
            assert_eq!(kv.key, format!("k{}", r.watch_id).into_bytes());
            assert!(seen.insert(r.watch_id, kv.mod_revision).is_none(), "one event per watcher");
        }
        assert_eq!(seen.values().copied().collect::<Vec<_>>(), vec![6, 5, 4, 3, 2]);
        // With no writes, only watcher 0 is told, at each tick, that it has seen everything up to revision 6.
        while progress.len() < 3 {
            progress.push(next(&mut stream).await);
        }
        for r in &progress {
            assert_eq!(r.watch_id, 0, "{r:?}");
            assert!(r.events.is_empty() && !r.created && !r.canceled);
        }
        assert_eq!(progress.last().unwrap().header.as_ref().unwrap().revision, 6);
        // A progress request is answered for the whole stream with watch id -1.
        let req = WatchRequest { request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})) };
        tx.send(req).await.unwrap();
        let r = loop {
            let r = next(&mut stream).await;
            if r.watch_id == -1 {
                break r;
            }
        };
        assert_eq!(r.header.unwrap().revision, 6);
        // Cancel watcher 3: later puts reach watcher 4 but not 3.
        let cancel =
            WatchRequest { request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest { watch_id: 3 })) };
        tx.send(cancel).await.unwrap();
        let r = loop {
            let r = next(&mut stream).await;
            if r.canceled {
                break r;
            }
        };
        assert_eq!(r.watch_id, 3);
        kv.put(PutRequest { key: b"k3".to_vec(), value: b"x".to_vec(), ..Default::default() }).await.unwrap();
        kv.put(PutRequest { key: b"k4".to_vec(), value: b"y".to_vec(), ..Default::default() }).await.unwrap();
        let r = loop {
            let r = next(&mut stream).await;
            if !r.events.is_empty() {
                break r;
            }
        };
        assert_eq!((r.watch_id, r.events[0].kv.as_ref().unwrap().mod_revision), (4, 8));
    });
}

/// A watcher whose client stops reading while 5,000 puts of 16 KiB go by (far more than the stream's queue and the
/// HTTP/2 windows hold) gets every one of them, in order and once, when it reads again: the session drained the
/// changes while its client was not reading and caught up from history afterwards.
#[test]
fn a_watcher_that_stops_reading_gets_every_event_once_it_reads_again() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let cluster = format!("m=http://127.0.0.1:{peer}");
    let m = start_with(dir.path(), client, peer, &["--name", "m", "--initial-cluster", &cluster]);
    let endpoint = format!("http://{}", m.endpoint.trim_start_matches("http://"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let mut watch = WatchClient::connect(endpoint.clone()).await.unwrap();
        let (tx, rx) = mpsc::channel(4);
        let range = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"s/".to_vec(),
                range_end: b"s0".to_vec(),
                ..Default::default()
            })),
        };
        tx.send(range).await.unwrap();
        let mut stream = watch.watch(ReceiverStream::new(rx)).await.unwrap().into_inner();
        assert!(next(&mut stream).await.created);
        // Not reading from here on.
        let mut kv = KvClient::connect(endpoint).await.unwrap();
        let value = vec![b'v'; 16 << 10];
        let mut revisions = Vec::new();
        for i in 0..5_000 {
            let put = PutRequest { key: format!("s/{i:05}").into_bytes(), value: value.clone(), ..Default::default() };
            revisions.push(kv.put(put).await.unwrap().into_inner().header.unwrap().revision);
        }
        let mut seen = Vec::new();
        while seen.len() < revisions.len() {
            let r = next(&mut stream).await;
            assert!(!r.canceled, "{r:?}");
            seen.extend(r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
        }
        assert_eq!(seen, revisions, "every put once, in order");
        drop(tx);
    });
}

/// A watch from the compaction point sees a deletion made at exactly that revision (etcd #18089, fixed in etcd
/// after 3.4.23; the nemesis's long run found it as a gap in a watch resumed at a compaction). A watch from below
/// the point is refused with the point, from which the client resumes.
#[test]
fn a_watch_from_the_compaction_point_sees_a_deletion_made_there() {
    use server::proto::etcdserverpb::{CompactionRequest, DeleteRangeRequest};
    let dir = tempfile::tempdir().unwrap();
    let m = start_with(&dir.path().join("data"), free_port(), free_port(), &[]);
    let endpoint = format!("http://{}", m.endpoint);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut kv = KvClient::connect(endpoint.clone()).await.unwrap();
        kv.put(PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), ..Default::default() }).await.unwrap();
        let deleted = kv.delete_range(DeleteRangeRequest { key: b"k".to_vec(), ..Default::default() }).await.unwrap();
        let at = deleted.into_inner().header.unwrap().revision;
        kv.put(PutRequest { key: b"other".to_vec(), value: b"w".to_vec(), ..Default::default() }).await.unwrap();
        kv.compact(CompactionRequest { revision: at, physical: true }).await.unwrap();
        let mut watch = WatchClient::connect(endpoint).await.unwrap();
        let (tx, rx) = mpsc::channel(16);
        let mut stream = watch.watch(ReceiverStream::new(rx)).await.unwrap().into_inner();
        let from = |start_revision| WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"k".to_vec(),
                start_revision,
                prev_kv: true,
                ..Default::default()
            })),
        };
        tx.send(from(at - 1)).await.unwrap();
        let mut r = next(&mut stream).await;
        if r.created && !r.canceled {
            r = next(&mut stream).await;
        }
        assert!(r.canceled && r.compact_revision == at, "{r:?}");
        tx.send(from(at)).await.unwrap();
        assert!(next(&mut stream).await.created);
        let r = next(&mut stream).await;
        assert_eq!(r.events.len(), 1, "{r:?}");
        let e = &r.events[0];
        assert_eq!((e.r#type, e.kv.as_ref().unwrap().mod_revision), (1, at), "the deletion at the compaction point");
        assert_eq!(e.prev_kv, None, "the version before it is compacted away, so etcd sends no prev_kv");
    });
}
