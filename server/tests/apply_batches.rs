//! Concurrent writes are applied in runs sharing one mvcc commit (see `apply`); a run that holds a failing
//! request is applied again one request at a time. Under 400 concurrent puts, a quarter of which fail (ignore_value
//! on a missing key), every successful put has its own revision, the revisions are exactly 2..=N+1 with no gap, the
//! failing ones get etcd's error and change nothing, and a watch from revision 2 replays exactly the successes.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::one_member;
use server::proto::etcdserverpb::{
    PutRequest, RangeRequest, WatchCreateRequest, WatchRequest, kv_client::KvClient, watch_client::WatchClient,
    watch_request::RequestUnion,
};

#[test]
fn runs_with_failures_keep_one_revision_per_write() {
    let m = one_member();
    let endpoint = m.url.clone();
    m.rt.block_on(async {
        let kv = KvClient::connect(endpoint.clone()).await.unwrap();
        let mut tasks = Vec::new();
        for i in 0..400 {
            let mut kv = kv.clone();
            tasks.push(tokio::spawn(async move {
                let failing = i % 4 == 3;
                let key = if failing { format!("missing/{i:03}") } else { format!("k/{i:03}") };
                let r = kv
                    .put(PutRequest {
                        key: key.clone().into(),
                        // A Put that keeps the value of a key that does not exist fails when applied.
                        value: if failing { Vec::new() } else { b"v".to_vec() },
                        ignore_value: failing,
                        ..Default::default()
                    })
                    .await;
                (key, failing, r.map(|r| r.into_inner().header.unwrap().revision))
            }));
        }
        let mut revisions = BTreeMap::new();
        for t in tasks {
            let (key, failing, result) = t.await.unwrap();
            if failing {
                let e = result.unwrap_err();
                assert_eq!((e.code(), e.message()), (tonic::Code::InvalidArgument, "etcdserver: key not found"));
            } else {
                let rev = result.unwrap();
                assert!(revisions.insert(rev, key).is_none(), "revision {rev} given twice");
            }
        }
        assert_eq!(revisions.len(), 300);
        assert_eq!(revisions.keys().copied().collect::<Vec<_>>(), (2..=301).collect::<Vec<i64>>(), "no gaps");
        let mut kv = kv.clone();
        let all = kv
            .range(RangeRequest { key: vec![0], range_end: vec![0], count_only: true, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!((all.count, all.header.unwrap().revision), (300, 301), "the failures changed nothing");

        // A watch from revision 2 replays exactly the successes, in revision order.
        let mut watch = WatchClient::connect(endpoint).await.unwrap();
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: vec![0],
                range_end: vec![0],
                start_revision: 2,
                ..Default::default()
            })),
        };
        let mut stream = watch.watch(tokio_stream_once(create)).await.unwrap().into_inner();
        let mut seen = BTreeMap::new();
        while seen.len() < 300 {
            let r = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
            for e in r.events {
                let kv = e.kv.unwrap();
                seen.insert(kv.mod_revision, String::from_utf8(kv.key).unwrap());
            }
        }
        assert_eq!(seen, revisions);
    });
}

/// A request stream that sends `req` and then stays open.
fn tokio_stream_once(req: WatchRequest) -> impl tonic::codegen::tokio_stream::Stream<Item = WatchRequest> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.try_send(req).unwrap();
    std::mem::forget(tx);
    tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(rx)
}
