//! Kubernetes' storage contract, as kube-apiserver's etcd3 store (k8s.io/apiserver/pkg/storage/etcd3) drives etcd,
//! against a 3-member cluster through the etcd-client crate with `hasleader` set (clientv3's WithRequireLeader):
//! - create: a Txn putting the key if its ModRevision is 0; update and delete: a Txn on the ModRevision the client
//!   read, with a Get in the else branch that hands back the current object when it lost the race;
//! - objects with a TTL (events) share one lease;
//! - paged lists: a limit, then `lastKey + "\0"` at the first page's revision, so writes in between stay out;
//!   count-only lists;
//! - a watch from `rev + 1` with prev_kv and progress notifications, and progress requests;
//! - compaction: the `compact_rev_key` Txn (on its version) followed by Compact, then reads below it fail;
//! - without a leader, calls with `hasleader` are refused and the watch ends with "etcdserver: no leader".

mod common;

use std::time::{Duration, Instant};

use common::cluster::{launch, specs};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};

const PODS: &str = "/registry/pods/default/";

fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    end
}

/// kube-apiserver's create: put only if the key does not exist.
async fn create(c: &mut Client, key: &str, value: &str, lease: i64) -> bool {
    let put = TxnOp::put(key, value, Some(PutOptions::new().with_lease(lease)));
    let txn = Txn::new().when([Compare::mod_revision(key, CompareOp::Equal, 0)]).and_then([put]);
    c.txn(txn).await.unwrap().succeeded()
}

/// kube-apiserver's GuaranteedUpdate/delete step: `op` if the object is still at `rev`, else the current object.
async fn on_revision(c: &mut Client, key: &str, rev: i64, op: TxnOp) -> Result<(), Option<(i64, Vec<u8>)>> {
    let txn = Txn::new()
        .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
        .and_then([op])
        .or_else([TxnOp::get(key, None)]);
    let resp = c.txn(txn).await.unwrap();
    if resp.succeeded() {
        return Ok(());
    }
    match resp.op_responses().into_iter().next() {
        Some(TxnOpResponse::Get(g)) => Err(g.kvs().first().map(|kv| (kv.mod_revision(), kv.value().to_vec()))),
        other => panic!("the else branch answered {other:?}"),
    }
}

async fn mod_revision(c: &mut Client, key: &str) -> i64 {
    c.get(key, None).await.unwrap().kvs()[0].mod_revision()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_apiserver_storage_contract() {
    let dir = tempfile::tempdir().unwrap();
    let (specs, cluster) = specs(3);
    let mut members: Vec<_> = specs.iter().map(|s| launch(dir.path(), s, &cluster)).collect();
    let eps: Vec<String> = members.iter().map(|m| m.endpoint.clone()).collect();
    common::cluster::converged(&eps).await;
    // Converged at the start can mean before any election: wait for a leader every member knows, as the calls
    // below require one (`hasleader`) and would be refused with "no leader" (CI saw it).
    common::cluster::agreed_leader(&eps).await;
    let options = ConnectOptions::new().with_require_leader(true);
    let mut c = Client::connect(&eps, Some(options.clone())).await.unwrap();

    // Create: once; again is refused without error.
    for i in 0..25 {
        assert!(create(&mut c, &format!("{PODS}p{i:02}"), "v1", 0).await, "create p{i:02}");
    }
    assert!(!create(&mut c, &format!("{PODS}p00"), "again", 0).await, "a second create of one key");
    // Events share one lease.
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    for i in 0..20 {
        assert!(create(&mut c, &format!("/registry/events/default/e{i}"), "event", lease).await);
    }
    let held = c.lease_time_to_live(lease, Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys())).await;
    assert_eq!(held.unwrap().keys().len(), 20);

    // Update on the revision read; a stale revision gets the current object back from the else branch.
    let key = format!("{PODS}p01");
    let rev = mod_revision(&mut c, &key).await;
    on_revision(&mut c, &key, rev, TxnOp::put(key.as_str(), "v2", None)).await.unwrap();
    let current = on_revision(&mut c, &key, rev, TxnOp::put(key.as_str(), "lost", None)).await.unwrap_err();
    let (current_rev, value) = current.expect("the else branch's Get found the object");
    assert_eq!(value, b"v2");
    assert_eq!(current_rev, mod_revision(&mut c, &key).await);
    // Delete on the revision read.
    let key = format!("{PODS}p02");
    let rev = mod_revision(&mut c, &key).await;
    on_revision(&mut c, &key, rev, TxnOp::delete(key.as_str(), None)).await.unwrap();
    let gone = on_revision(&mut c, &key, rev, TxnOp::delete(key.as_str(), None)).await.unwrap_err();
    assert!(gone.is_none(), "a deleted object came back: {gone:?}");

    // A paged list at the first page's revision; a create between pages stays out of it.
    let first = c.get(PODS, Some(GetOptions::new().with_range(prefix_end(PODS)).with_limit(10))).await.unwrap();
    let list_rev = first.header().unwrap().revision();
    assert!(first.more() && first.kvs().len() == 10);
    assert!(create(&mut c, &format!("{PODS}p99"), "late", 0).await);
    let mut listed: Vec<Vec<u8>> = first.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    loop {
        let mut from = listed.last().unwrap().clone();
        from.push(0);
        let opts = GetOptions::new().with_range(prefix_end(PODS)).with_limit(10).with_revision(list_rev);
        let page = c.get(from, Some(opts)).await.unwrap();
        listed.extend(page.kvs().iter().map(|kv| kv.key().to_vec()));
        if !page.more() {
            break;
        }
    }
    assert_eq!(listed.len(), 24, "25 created, 1 deleted, the late one after the list's revision");
    assert!(listed.windows(2).all(|w| w[0] < w[1]), "pages in key order, no key twice");
    let count = c.get(PODS, Some(GetOptions::new().with_range(prefix_end(PODS)).with_count_only())).await.unwrap();
    assert_eq!((count.count(), count.kvs().len()), (25, 0));

    // A watch from the list's revision + 1 sees the late create first, then updates with their previous values.
    let opts =
        WatchOptions::new().with_prefix().with_start_revision(list_rev + 1).with_prev_key().with_progress_notify();
    let mut watch = c.watch(PODS, Some(opts)).await.unwrap();
    let late = next_events(&mut watch).await;
    assert_eq!(late[0].kv().unwrap().key(), format!("{PODS}p99").as_bytes());
    let key = format!("{PODS}p03");
    let rev = mod_revision(&mut c, &key).await;
    on_revision(&mut c, &key, rev, TxnOp::put(key.as_str(), "v2", None)).await.unwrap();
    let update = next_events(&mut watch).await;
    assert_eq!(update[0].event_type(), EventType::Put);
    assert_eq!(update[0].prev_kv().map(|kv| kv.value()), Some(&b"v1"[..]));
    // A progress request is answered with an empty response at the current revision.
    watch.request_progress().await.unwrap();
    let now = c.get("x", None).await.unwrap().header().unwrap().revision();
    let progress = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.unwrap().unwrap().unwrap();
    assert!(progress.events().is_empty(), "a progress notification carries no events");
    assert_eq!(progress.header().unwrap().revision(), now);

    // kube-apiserver's compactor: the compact_rev_key Txn on its version, then Compact.
    let txn = Txn::new()
        .when([Compare::version("compact_rev_key", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("compact_rev_key", list_rev.to_string(), None)])
        .or_else([TxnOp::get("compact_rev_key", None)]);
    assert!(c.txn(txn).await.unwrap().succeeded());
    c.compact(list_rev, None).await.unwrap();
    let stale = Txn::new()
        .when([Compare::version("compact_rev_key", CompareOp::Equal, 0)])
        .and_then([TxnOp::put("compact_rev_key", "0", None)])
        .or_else([TxnOp::get("compact_rev_key", None)]);
    let lost = c.txn(stale).await.unwrap();
    assert!(!lost.succeeded(), "a second compactor at the same version loses");
    let below = c.get(PODS, Some(GetOptions::new().with_prefix().with_revision(list_rev - 1))).await;
    assert!(below.unwrap_err().to_string().contains("required revision has been compacted"));

    // No leader: two members stop; the last one refuses calls with hasleader and ends the watch.
    let last = members.remove(0);
    drop(members);
    let mut alone = Client::connect([last.endpoint.as_str()], Some(options)).await.unwrap();
    let opts = WatchOptions::new().with_prefix();
    let mut watch = alone.watch(PODS, Some(opts)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(1), watch.message()).await {
            Ok(Err(e)) => break e.to_string(),
            Ok(Ok(None)) => break "the stream ended without a status".to_string(),
            _ => assert!(Instant::now() < deadline, "the watch went on without a leader"),
        }
    };
    assert!(ended.contains("etcdserver: no leader"), "{ended}");
    let refused = alone.get("x", None).await.unwrap_err().to_string();
    assert!(refused.contains("etcdserver: no leader"), "{refused}");
}

/// The next response with events (progress notifications skipped).
async fn next_events(watch: &mut etcd_client::WatchStream) -> Vec<etcd_client::Event> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.unwrap().unwrap().unwrap();
        if !msg.events().is_empty() {
            return msg.events().to_vec();
        }
    }
}
