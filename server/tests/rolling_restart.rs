//! A rolling restart of a 3-member cluster under continuous writes (issue 6): each member in turn is stopped with
//! SIGTERM (a leader first hands leadership over, so no election timeout is waited out: its log must say so),
//! restarted, and caught up before the next. The slowest put is printed: usually under 100 ms; a proposal a
//! follower forwarded while leadership moved can be dropped by Raft, and then waits out the client's 3 s timeout
//! before its retry. A client on all three endpoints that retries what etcd's clients retry (Unavailable) sees no
//! failed request, and no acknowledged write is lost.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Member;
use common::cluster::{agreed_leader, converged, hash_kv, launch, specs, status};
use etcd_client::{Client, GetOptions};

/// Stops a member the way an operator does (SIGTERM) and waits for it to exit; returns its last log lines.
fn stop(mut m: Member) -> String {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(m.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while m.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{} did not stop within 20 s of SIGTERM", m.endpoint);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100)); // the log reader takes the last lines
    m.log.lock().unwrap().iter().cloned().collect::<Vec<_>>().join("\n")
}

/// One put, retried on Unavailable (as etcd's clients do) for up to 10 s; the error if it still fails.
async fn put(c: &mut Client, key: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout(Duration::from_secs(3), c.put(key, "v", None)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(etcd_client::Error::GRpcStatus(s))) if s.code() == tonic::Code::Unavailable => {}
            Ok(Err(etcd_client::Error::TransportError(_))) => {}
            // A request refused because the server closed the connection (HTTP/2 GOAWAY) was not processed;
            // grpc-go's clients retry those transparently.
            Ok(Err(etcd_client::Error::GRpcStatus(s)))
                if s.code() == tonic::Code::Cancelled && s.message().contains("operation was canceled") => {}
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            return Err(format!("{key}: still unavailable after 10 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn rolling_restart_under_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (specs, cluster) = specs(3);
    let mut members: Vec<Option<Member>> = specs.iter().map(|s| Some(launch(dir.path(), s, &cluster))).collect();
    let endpoints: Vec<String> = members.iter().map(|m| m.as_ref().unwrap().endpoint.clone()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (_, leader_index) = rt.block_on(agreed_leader(&endpoints));
    // The writer: sequential puts through all endpoints until told to stop.
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (done, endpoints) = (Arc::clone(&done), endpoints.clone());
        rt.spawn(async move {
            let mut c = Client::connect(&endpoints, None).await.unwrap();
            let (mut acked, mut failed, mut slowest) = (Vec::new(), Vec::new(), Duration::ZERO);
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                n += 1;
                let key = format!("r/{n:06}");
                let t = Instant::now();
                match put(&mut c, &key).await {
                    Ok(()) => acked.push(key),
                    Err(e) => failed.push(e),
                }
                slowest = slowest.max(t.elapsed());
            }
            (acked, failed, slowest)
        })
    };
    // Restart the followers first and the leader last, as operators do; each must be back and caught up before
    // the next goes.
    let mut order: Vec<usize> = (0..3).filter(|i| *i != leader_index).collect();
    order.push(leader_index);
    for i in order {
        std::thread::sleep(Duration::from_millis(500));
        let before = rt.block_on(status(&endpoints[i]));
        let log = stop(members[i].take().unwrap());
        if i == leader_index {
            assert!(
                log.contains("leadership transferred before stop"),
                "the leader stopped without handing over:\n{log}"
            );
        }
        members[i] = Some(launch(dir.path(), &specs[i], &cluster));
        rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                // Caught up: it knows the leader, and its store is within a few revisions of the leader's.
                let revisions: Vec<Option<i64>> = {
                    let mut v = Vec::new();
                    for e in &endpoints {
                        v.push(hash_kv(e).await.map(|h| h.1));
                    }
                    v
                };
                let leader_known = status(&endpoints[i]).await.is_some_and(|s| s.1 != 0);
                let max = revisions.iter().flatten().max().copied().unwrap_or(0);
                if leader_known && revisions[i].is_some_and(|r| r + 50 >= max) {
                    break;
                }
                assert!(Instant::now() < deadline, "member {i} did not catch up: {revisions:?} (before: {before:?})");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    let (acked, failed, slowest) = rt.block_on(writer).unwrap();
    eprintln!(
        "{} puts acknowledged during the rolling restart, {} failed; the slowest took {slowest:?}",
        acked.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "failed requests: {failed:?}");
    assert!(acked.len() > 100, "only {} writes went through", acked.len());
    rt.block_on(async {
        // Every member holds every acknowledged write, and all converge to one HashKV.
        converged(&endpoints).await;
        for e in &endpoints {
            let mut c = Client::connect([e.as_str()], None).await.unwrap();
            let r =
                c.get("r/", Some(GetOptions::new().with_prefix().with_keys_only().with_serializable())).await.unwrap();
            let keys: BTreeSet<String> =
                r.kvs().iter().map(|kv| String::from_utf8(kv.key().to_vec()).unwrap()).collect();
            let missing: Vec<&String> = acked.iter().filter(|k| !keys.contains(*k)).collect();
            assert!(missing.is_empty(), "{e} lost acknowledged writes: {missing:?}");
        }
    });
}
