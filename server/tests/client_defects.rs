//! Defects that real clients hit, each through the `etcd-client` crate as an application would meet it, and each
//! expectation checked against real etcd 3.4.23 too where it is etcd's behaviour:
//! - Defragment ends, within 5 s, after a session of puts, overwrites, nested txns, 1 MiB values, a compaction,
//!   watches, leases with keep-alive and expiry and lock/election/STM-style traffic; and on the data dir of
//!   `repro/defrag-livelock-datadir.tar.gz`, where it used to spin forever (and a SIGTERM then stops the member);
//! - Put's `ignore_value` with a value and `ignore_lease` with a lease are refused with etcd's errors;
//! - a message over the gRPC receive limit is `ResourceExhausted` with grpc-go's text;
//! - LeaseTimeToLive counts whole seconds from the grant on a member that has just started;
//! - Status reports a version kube-apiserver's feature checker accepts, and a RequestProgress is answered at a
//!   revision no lower than any event already sent on the stream, with watchers at different revisions.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, start, start_with};
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions, WatchStream,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

async fn connect(endpoint: &str) -> Client {
    Client::connect([endpoint], None).await.unwrap()
}

fn status_of(e: etcd_client::Error) -> tonic::Status {
    match e {
        etcd_client::Error::GRpcStatus(s) => s,
        other => panic!("expected a gRPC status, got {other}"),
    }
}

/// The session the defrag livelock was found after, in miniature.
async fn client_session(endpoint: &str) {
    let mut c = connect(endpoint).await;
    let mut watches: Vec<WatchStream> = Vec::new();
    watches.push(c.watch("k/", Some(WatchOptions::new().with_prefix().with_prev_key())).await.unwrap());
    for i in 0..300u32 {
        c.put(format!("k/{}", i % 40), vec![b'v'; 100 + (i as usize * 37) % 3000], None).await.unwrap();
    }
    let big = vec![7u8; 1 << 20];
    for i in 0..6 {
        c.put(format!("big/{}", i % 3), big.clone(), None).await.unwrap();
    }
    // Nested transactions, STM-style: read, then write if unchanged.
    for i in 0..40 {
        let key = format!("stm/{}", i % 5);
        let rev = c.get(key.as_str(), None).await.unwrap().kvs().first().map_or(0, |kv| kv.mod_revision());
        let inner = Txn::new().when([Compare::version(key.as_str(), CompareOp::Greater, -1)]).and_then([TxnOp::put(
            format!("{key}/n"),
            "x",
            None,
        )]);
        let txn = Txn::new()
            .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, rev)])
            .and_then([TxnOp::put(key.as_str(), format!("{i}"), None), TxnOp::txn(inner)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        c.txn(txn).await.unwrap();
    }
    // Lock/election-style traffic: keys under a prefix on leases, the oldest creator wins, the others wait for it.
    let kept = c.lease_grant(30, None).await.unwrap().id();
    let (mut keeper, _responses) = c.lease_keep_alive(kept).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let short = c.lease_grant(1, None).await.unwrap().id();
    for (i, lease) in [kept, short, kept, short].into_iter().enumerate() {
        let key = format!("lock/{lease:x}/{i}");
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), "", Some(PutOptions::new().with_lease(lease)))])
            .or_else([TxnOp::get(key.as_str(), None)]);
        c.txn(txn).await.unwrap();
        c.get(
            "lock/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(etcd_client::SortTarget::Create, etcd_client::SortOrder::Ascend),
            ),
        )
        .await
        .unwrap();
    }
    let old = c.get("k/0", None).await.unwrap().kvs()[0].mod_revision();
    watches.push(
        c.watch(
            "k/1",
            Some(WatchOptions::new().with_start_revision(old).with_filters([etcd_client::WatchFilterType::NoDelete])),
        )
        .await
        .unwrap(),
    );
    c.delete("k/3", None).await.unwrap();
    let now = c.get("k/0", None).await.unwrap().header().unwrap().revision();
    c.compact(now - 50, Some(etcd_client::CompactionOptions::new().with_physical())).await.unwrap();
    // The short lease expires; its keys go.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    c.put("k/last", "x", None).await.unwrap();
    drop(watches);
}

async fn defragment_within(endpoint: &str, limit: Duration) {
    let mut c = connect(endpoint).await;
    let started = Instant::now();
    tokio::time::timeout(limit, c.defragment()).await.expect("Defragment returns within the limit").unwrap();
    eprintln!("defragment took {:?}", started.elapsed());
    assert_eq!(c.get("k/last", None).await.unwrap().kvs().len(), 1, "the data is still there");
}

#[test]
fn defragment_ends_after_a_client_session() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(&dir.path().join("m"), free_port(), free_port());
    runtime().block_on(async {
        client_session(&m.endpoint).await;
        defragment_within(&m.endpoint, Duration::from_secs(5)).await;
        defragment_within(&m.endpoint, Duration::from_secs(5)).await;
    });
}

/// The data dir the livelock was reported on: defragmenting it spun forever, and SIGTERM no longer stopped the
/// member.
#[test]
fn defragment_ends_on_the_reported_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let tarball = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/defrag-livelock-datadir.tar.gz");
    let unpacked = Command::new("tar").args(["xzf", tarball, "-C"]).arg(dir.path()).status().unwrap();
    assert!(unpacked.success());
    let peer = free_port();
    let cluster = format!("conf=http://127.0.0.1:{peer}");
    let mut m = start_with(dir.path(), free_port(), peer, &["--name", "conf", "--initial-cluster", &cluster]);
    runtime().block_on(async {
        let mut c = connect(&m.endpoint).await;
        let before = c.status().await.unwrap().db_size();
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), c.defragment()).await.expect("Defragment within 5 s").unwrap();
        let after = c.status().await.unwrap().db_size();
        eprintln!("defragment took {:?}: {before} -> {after} bytes", started.elapsed());
        assert!(after < before, "the file shrank: {before} -> {after}");
        c.put("after-defrag", "x", None).await.unwrap();
    });
    // SAFETY: kill(2) on the child's pid with SIGTERM has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(m.child.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "SIGTERM stops the member within 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `check` against a fresh ferrokv and, where installed, a fresh etcd 3.4.23.
fn on_both(check: impl Fn(&str)) {
    let dir = tempfile::tempdir().unwrap();
    let m = start(&dir.path().join("ferrokv"), free_port(), free_port());
    check(&m.endpoint);
    drop(m);
    if common::etcd::installed("etcd") {
        let etcd = common::etcd::start(&dir.path().join("etcd"), free_port(), free_port());
        eprintln!("the same against etcd 3.4.23");
        check(&etcd.endpoint);
    }
}

#[test]
fn put_flags_and_the_receive_limit_answer_as_etcd() {
    on_both(|endpoint| {
        runtime().block_on(async {
            let mut c = connect(endpoint).await;
            c.put("k", "v", None).await.unwrap();
            let lease = c.lease_grant(60, None).await.unwrap().id();
            let s = status_of(c.put("k", "v2", Some(PutOptions::new().with_ignore_value())).await.unwrap_err());
            assert_eq!((s.code(), s.message()), (tonic::Code::InvalidArgument, "etcdserver: value is provided"));
            let opts = PutOptions::new().with_ignore_lease().with_lease(lease);
            let s = status_of(c.put("k", "", Some(opts)).await.unwrap_err());
            assert_eq!((s.code(), s.message()), (tonic::Code::InvalidArgument, "etcdserver: lease is provided"));
            let txn = Txn::new().and_then([TxnOp::put("k", "v3", Some(PutOptions::new().with_ignore_value()))]);
            let s = status_of(c.txn(txn).await.unwrap_err());
            assert_eq!((s.code(), s.message()), (tonic::Code::InvalidArgument, "etcdserver: value is provided"));
            // The flags alone are fine.
            c.put("k", "", Some(PutOptions::new().with_ignore_value())).await.unwrap();
            // 2 MiB against the default limit of 1.5 MiB + 512 KiB.
            let s = status_of(c.put("big", vec![0u8; 2 << 20], None).await.unwrap_err());
            assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
            assert!(
                s.message().starts_with("grpc: received message larger than max (")
                    && s.message().ends_with(" vs. 2097152)"),
                "{s:?}"
            );
            // Between the request limit and the receive limit: etcd's own error.
            let s = status_of(c.put("big", vec![0u8; 1_700_000], None).await.unwrap_err());
            assert_eq!((s.code(), s.message()), (tonic::Code::InvalidArgument, "etcdserver: request is too large"));
            assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value(), b"v", "nothing refused was applied");
        })
    });
}

#[test]
fn lease_time_to_live_counts_from_the_grant() {
    // A member that started less than a second ago: its leadership and its lessor's promotion are fresh.
    on_both(|endpoint| {
        runtime().block_on(async {
            let mut c = connect(endpoint).await;
            let id = c.lease_grant(20, None).await.unwrap().id();
            tokio::time::sleep(Duration::from_millis(2100)).await;
            let ttl = c.lease_time_to_live(id, None).await.unwrap().ttl();
            assert_eq!(ttl, 17, "20 s granted, 2.1 s ago");
        })
    });
}

/// kube-apiserver's rule (k8s.io/apiserver storage feature support checker): RequestWatchProgress is on from
/// 3.4.31 in the 3.4 line and from 3.5.13.
fn progress_supported(version: &str) -> bool {
    let v: Vec<u64> = version.split('.').map(|p| p.parse().unwrap_or(0)).collect();
    match v.as_slice() {
        [3, 4, patch, ..] => *patch >= 31,
        [3, 5, patch, ..] => *patch >= 13,
        [3, minor, ..] => *minor >= 6,
        [major, ..] => *major > 3,
        _ => false,
    }
}

#[test]
fn progress_requests_follow_every_event_sent() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(&dir.path().join("m"), free_port(), free_port());
    runtime().block_on(async {
        let mut c = connect(&m.endpoint).await;
        let version = c.status().await.unwrap().version().to_string();
        assert!(progress_supported(&version), "Status.version {version} turns kube-apiserver's progress requests off");
        for i in 0..50 {
            c.put(format!("a/{i}"), "x", None).await.unwrap();
        }
        // Watchers at different revisions on one stream: one from the start of history (its catch-up is sent at
        // once, reaching the newest revision), one live, one on another prefix from the middle.
        let mut stream = c.watch("a/", Some(WatchOptions::new().with_prefix().with_start_revision(1))).await.unwrap();
        stream.watch("a/", Some(WatchOptions::new().with_prefix())).await.unwrap();
        stream.watch("b/", Some(WatchOptions::new().with_prefix().with_start_revision(25))).await.unwrap();
        // Eight writers at once, so the stream always has committed revisions on their way to it.
        let mut writers = Vec::new();
        for t in 0..8 {
            let mut w = connect(&m.endpoint).await;
            writers.push(tokio::spawn(async move {
                for i in 0..100 {
                    w.put(format!("{}/{t}/{i}", if i % 3 == 0 { "b" } else { "a" }), "y", None).await.unwrap();
                }
            }));
        }
        // Every event at or below a progress answer's revision must have come before it.
        let (mut highest, mut progress) = (0, 0);
        let mut answers = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while answers < 50 {
            assert!(Instant::now() < deadline, "50 progress answers within 20 s (got {answers})");
            stream.request_progress().await.unwrap();
            loop {
                let r = tokio::time::timeout(Duration::from_secs(10), stream.message())
                    .await
                    .expect("a response within 10 s")
                    .unwrap()
                    .unwrap();
                let revision = r.header().unwrap().revision();
                if r.events().is_empty() && !r.created() && r.watch_id() == -1 {
                    assert!(revision >= highest, "progress at {revision} after an event at {highest}");
                    progress = revision;
                    answers += 1;
                    break;
                }
                for e in r.events() {
                    assert_eq!(e.event_type(), EventType::Put);
                    let rev = e.kv().unwrap().mod_revision();
                    assert!(rev > progress, "an event at {rev} after a progress answer at {progress}");
                    highest = highest.max(rev);
                }
            }
        }
        for w in writers {
            w.await.unwrap();
        }
    });
}
