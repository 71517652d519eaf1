//! A lone client's puts are applied on the Raft thread (`apply::lane`): the apply thread is not woken for them.
//! Bursts of concurrent puts, which go through the apply thread, and runs of lone puts, applied inline, take
//! turns on one member; every put still gets its own revision, in order with no gap, and a watch from the start
//! replays each key's last value where a range reads it.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::one_member;
use server::proto::etcdserverpb::{
    PutRequest, RangeRequest, WatchCreateRequest, WatchRequest, kv_client::KvClient, watch_client::WatchClient,
    watch_request::RequestUnion,
};

/// Times the member's thread named `name` went to sleep of its own accord (`voluntary_ctxt_switches`).
fn sleeps(pid: u32, name: &str) -> u64 {
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == name) {
            let status = std::fs::read_to_string(dir.join("status")).unwrap();
            let line = status.lines().find(|l| l.starts_with("voluntary_ctxt_switches:")).unwrap();
            return line.split_whitespace().nth(1).unwrap().parse().unwrap();
        }
    }
    panic!("the member has no thread named {name}");
}

async fn put(kv: &mut KvClient<tonic::transport::Channel>, key: String, value: String) -> i64 {
    let r = kv.put(PutRequest { key: key.into(), value: value.into(), ..Default::default() }).await.unwrap();
    r.into_inner().header.unwrap().revision
}

#[test]
fn a_lone_clients_puts_do_not_wake_the_apply_thread() {
    let m = one_member();
    let (pid, endpoint) = (m.member.child.id(), m.url.clone());
    m.rt.block_on(async {
        let mut kv = KvClient::connect(endpoint).await.unwrap();
        put(&mut kv, "warm".into(), "up".into()).await;
        let before = sleeps(pid, "apply");
        let started = std::time::Instant::now();
        for i in 0..400 {
            put(&mut kv, format!("k/{i:03}"), format!("v{i}")).await;
        }
        let slept = sleeps(pid, "apply") - before;
        // The apply thread still wakes every 50 ms to look at the store's sync (and at most once per message).
        let timeouts = started.elapsed().as_millis() as u64 / 50 + 1;
        assert!(
            slept <= timeouts + 20,
            "the apply thread slept {slept} times over 400 lone puts ({timeouts} timeouts)"
        );
    });
}

#[test]
fn bursts_and_lone_puts_keep_one_revision_each_in_order() {
    let m = one_member();
    let endpoint = m.url.clone();
    m.rt.block_on(async {
        let kv = KvClient::connect(endpoint.clone()).await.unwrap();
        let mut revisions = BTreeMap::new();
        let mut n = 0;
        for round in 0..10 {
            let mut tasks = Vec::new();
            for i in 0..60 {
                let mut kv = kv.clone();
                let (key, value) = (format!("k/{:02}", i % 25), format!("burst {round}.{i}"));
                tasks.push(tokio::spawn(async move { (put(&mut kv, key.clone(), value.clone()).await, key, value) }));
            }
            for t in tasks {
                let (rev, key, value) = t.await.unwrap();
                assert!(revisions.insert(rev, (key, value)).is_none(), "revision {rev} given twice");
            }
            let mut kv = kv.clone();
            for i in 0..30 {
                let (key, value) = (format!("k/{:02}", (i * 7) % 25), format!("lone {round}.{i}"));
                let rev = put(&mut kv, key.clone(), value.clone()).await;
                assert!(revisions.insert(rev, (key, value)).is_none(), "revision {rev} given twice");
            }
            n += 90;
        }
        assert_eq!(revisions.keys().copied().collect::<Vec<_>>(), (2..=n + 1).collect::<Vec<i64>>(), "no gaps");

        // Each key reads as its last put, by revision.
        let mut last = BTreeMap::new();
        for (key, value) in revisions.values() {
            last.insert(key.clone(), value.clone());
        }
        let mut kv = kv.clone();
        let all = kv
            .range(RangeRequest { key: b"k/".to_vec(), range_end: b"k0".to_vec(), ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        let read: BTreeMap<String, String> = all
            .kvs
            .into_iter()
            .map(|kv| (String::from_utf8(kv.key).unwrap(), String::from_utf8(kv.value).unwrap()))
            .collect();
        assert_eq!(read, last);

        // A watch from revision 2 replays every put, each at the revision its client was told.
        let mut watch = WatchClient::connect(endpoint).await.unwrap();
        let create = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"k/".to_vec(),
                range_end: b"k0".to_vec(),
                start_revision: 2,
                ..Default::default()
            })),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(create).await.unwrap();
        let requests = tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(rx);
        let mut stream = watch.watch(requests).await.unwrap().into_inner();
        let mut seen = BTreeMap::new();
        while seen.len() < revisions.len() {
            let r = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
            for e in r.events {
                let kv = e.kv.unwrap();
                let pair = (String::from_utf8(kv.key).unwrap(), String::from_utf8(kv.value).unwrap());
                seen.insert(kv.mod_revision, pair);
            }
        }
        assert_eq!(seen, revisions);
        drop(tx);
    });
}
