//! One history written the same way into etcd or ferrokv over gRPC, and the comparison of two stores holding
//! it: every key at several revisions (old ones included), the compaction point, HashKV, and the leases with
//! their keys. For the snapshot round trips.

use std::time::Duration;

use server::proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, HashKvRequest, LeaseGrantRequest, LeaseLeasesRequest,
    LeaseTimeToLiveRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, kv_client::KvClient,
    lease_client::LeaseClient, maintenance_client::MaintenanceClient, request_op::Request,
};
use server::proto::mvccpb::KeyValue;
use tonic::transport::Channel;

/// Revisions of a written history worth reading back.
#[derive(Debug, Clone, Copy)]
pub struct History {
    /// The compaction point.
    pub compacted: i64,
    pub last: i64,
    pub lease: i64,
}

async fn try_kv(endpoint: &str) -> Result<KvClient<Channel>, String> {
    let ch = Channel::from_shared(format!("http://{endpoint}")).unwrap().connect().await.map_err(|e| e.to_string())?;
    Ok(KvClient::new(ch).max_decoding_message_size(512 << 20))
}

async fn kv(endpoint: &str) -> KvClient<Channel> {
    try_kv(endpoint).await.unwrap()
}

fn key(i: usize) -> Vec<u8> {
    format!("key/{i:06}").into_bytes()
}

async fn txn(kv: &mut KvClient<Channel>, ops: Vec<Request>) -> i64 {
    let success = ops.into_iter().map(|r| RequestOp { request: Some(r) }).collect();
    let r = kv.txn(TxnRequest { success, ..Default::default() }).await.unwrap().into_inner();
    r.header.unwrap().revision
}

/// Writes `n` keys in transactions of 100 puts (so revisions have many sub-revisions), every 1000th value
/// larger than a page; rewrites every third key, deletes every tenth, compacts between the two, grants a lease
/// to 10 new keys, and puts a few keys more.
pub async fn write(endpoint: &str, n: usize) -> History {
    let mut kv = kv(endpoint).await;
    let value = |i: usize, round: &str| {
        if i % 1000 == 7 { vec![b'x'; 9000] } else { format!("{round}-{i}").into_bytes() }
    };
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let ops = chunk
            .iter()
            .map(|&i| Request::RequestPut(PutRequest { key: key(i), value: value(i, "v1"), ..Default::default() }));
        txn(&mut kv, ops.collect()).await;
    }
    let rewrites: Vec<usize> = (0..n).step_by(3).collect();
    let (early, late) = rewrites.split_at(rewrites.len() / 2);
    for chunk in early.chunks(100) {
        let ops = chunk
            .iter()
            .map(|&i| Request::RequestPut(PutRequest { key: key(i), value: value(i, "v2"), ..Default::default() }));
        txn(&mut kv, ops.collect()).await;
    }
    let compacted = txn(&mut kv, vec![]).await;
    kv.compact(CompactionRequest { revision: compacted, physical: true }).await.unwrap();
    for chunk in late.chunks(100) {
        let ops = chunk
            .iter()
            .map(|&i| Request::RequestPut(PutRequest { key: key(i), value: value(i, "v2"), ..Default::default() }));
        txn(&mut kv, ops.collect()).await;
    }
    let deletes: Vec<usize> = (0..n).step_by(10).collect();
    for chunk in deletes.chunks(100) {
        let ops = chunk
            .iter()
            .map(|&i| Request::RequestDeleteRange(DeleteRangeRequest { key: key(i), ..Default::default() }));
        txn(&mut kv, ops.collect()).await;
    }
    let mut leases = LeaseClient::connect(format!("http://{endpoint}")).await.unwrap();
    let lease = leases.lease_grant(LeaseGrantRequest { ttl: 3600, id: 0 }).await.unwrap().into_inner().id;
    leases.lease_grant(LeaseGrantRequest { ttl: 600, id: 0 }).await.unwrap();
    let mut last = 0;
    for i in 0..10 {
        let put =
            PutRequest { key: format!("leased/{i}").into_bytes(), value: b"l".to_vec(), lease, ..Default::default() };
        last = kv.put(put).await.unwrap().into_inner().header.unwrap().revision;
    }
    for i in 0..5 {
        let put = PutRequest { key: format!("after/{i}").into_bytes(), value: b"a".to_vec(), ..Default::default() };
        last = kv.put(put).await.unwrap().into_inner().header.unwrap().revision;
    }
    History { compacted, last, lease }
}

/// Every key at `rev` (0: now), or the error's message.
pub async fn range_all(endpoint: &str, rev: i64) -> Result<Vec<KeyValue>, String> {
    let mut kv = try_kv(endpoint).await?;
    let r = RangeRequest { key: vec![0], range_end: vec![0], revision: rev, ..Default::default() };
    kv.range(r).await.map(|r| r.into_inner().kvs).map_err(|s| s.message().to_string())
}

/// (hash, compact revision) of HashKV at `rev`.
pub async fn hash_kv(endpoint: &str, rev: i64) -> (u32, i64) {
    let mut m = MaintenanceClient::connect(format!("http://{endpoint}")).await.unwrap();
    let h = m.hash_kv(HashKvRequest { revision: rev }).await.unwrap().into_inner();
    (h.hash, h.compact_revision)
}

/// The leases, each with its granted TTL and keys.
pub async fn leases(endpoint: &str) -> Vec<(i64, i64, Vec<Vec<u8>>)> {
    let mut l = LeaseClient::connect(format!("http://{endpoint}")).await.unwrap();
    let mut ids: Vec<i64> =
        l.lease_leases(LeaseLeasesRequest {}).await.unwrap().into_inner().leases.iter().map(|l| l.id).collect();
    ids.sort();
    let mut out = Vec::new();
    for id in ids {
        let t = l.lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true }).await.unwrap().into_inner();
        let mut keys = t.keys;
        keys.sort();
        out.push((id, t.granted_ttl, keys));
    }
    out
}

/// What a store holding a history answers: the keys at the revisions worth reading, HashKV now and at an old
/// revision, the leases.
#[derive(Debug, Clone, PartialEq)]
pub struct Captured {
    pub keys: Vec<(i64, Vec<KeyValue>)>,
    pub hash: (u32, i64),
    pub old_hash: (u32, i64),
    pub leases: Vec<(i64, i64, Vec<Vec<u8>>)>,
}

/// Reads what `endpoint` answers for history `h`.
pub async fn capture(endpoint: &str, h: History) -> Captured {
    let mut keys = Vec::new();
    for rev in [0, h.compacted, h.compacted + 1, (h.compacted + h.last) / 2, h.last - 1, h.last] {
        let kvs = range_all(endpoint, rev).await.unwrap_or_else(|e| panic!("{endpoint} at {rev}: {e}"));
        assert!(!kvs.is_empty(), "{endpoint} holds no key at {rev}");
        keys.push((rev, kvs));
    }
    let leases = leases(endpoint).await;
    assert!(leases.iter().any(|(id, _, keys)| *id == h.lease && keys.len() == 10), "the lease's keys: {leases:?}");
    Captured { keys, hash: hash_kv(endpoint, 0).await, old_hash: hash_kv(endpoint, h.last - 1).await, leases }
}

/// Checks that `endpoint` answers for history `h` what `want` holds, and refuses reads below the compaction point.
pub async fn check(want: &Captured, endpoint: &str, h: History) {
    let got = capture(endpoint, h).await;
    for ((rev, a), (_, b)) in want.keys.iter().zip(&got.keys) {
        assert!(a == b, "the keys at revision {rev} differ: {} against {} keys", a.len(), b.len());
    }
    let old = range_all(endpoint, h.compacted - 1).await;
    assert!(
        old.as_ref().is_err_and(|e| e.contains("compacted")),
        "below the compaction point: {:?}",
        old.map(|k| k.len())
    );
    assert_eq!(got.hash, want.hash, "HashKV");
    assert_eq!(got.old_hash, want.old_hash, "HashKV at an old revision");
    assert_eq!(got.leases, want.leases, "the leases");
}

/// Checks that `restored` holds `source`'s history `h` (see [`check`]).
pub async fn same(source: &str, restored: &str, h: History) {
    check(&capture(source, h).await, restored, h).await;
}

/// Waits (up to 30 s) until `endpoint` answers a range.
pub async fn serving(endpoint: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while range_all(endpoint, 0).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "{endpoint} does not serve");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
