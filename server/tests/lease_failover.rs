//! Lease expiry is the leader's decision, applied through Raft, and survives a leader change (3 members on
//! 127.0.0.1, clients through the `etcd-client` crate):
//! - keep-alives sent to a follower reach the leader: the lease outlives its TTL, while an unkept one expires;
//! - the leader is killed with SIGKILL; the kept lease stays alive through the election and a pause in keep-alives
//!   (the new leader gives every lease a full TTL on promotion) as long as keep-alives resume;
//! - once the keep-alives stop, the new leader expires the lease and every surviving member deletes its key.

mod common;

use std::time::{Duration, Instant};

use common::Member;
use common::cluster::{agreed_leader, launch, specs};
use etcd_client::{Client, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions};

const TTL: i64 = 3;

/// Sends keep-alives for `span`, one every 500 ms, ignoring failures (the member may be in an election).
async fn keep_alive_for(keeper: &mut LeaseKeeper, stream: &mut LeaseKeepAliveStream, span: Duration) {
    let until = Instant::now() + span;
    while Instant::now() < until {
        let _ = keeper.keep_alive().await;
        let _ = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether `key` exists on `endpoint`, read locally there (serializable).
async fn exists(endpoint: &str, key: &str) -> bool {
    let mut c = Client::connect([endpoint], None).await.unwrap();
    let r = c.get(key, Some(GetOptions::new().with_serializable())).await.unwrap();
    !r.kvs().is_empty()
}

#[test]
fn lease_expiry_survives_a_leader_change() {
    let dir = tempfile::tempdir().unwrap();
    let (specs, cluster) = specs(3);
    let mut members: Vec<Option<Member>> = specs.iter().map(|s| Some(launch(dir.path(), s, &cluster))).collect();
    let endpoints: Vec<String> = members.iter().map(|m| m.as_ref().unwrap().endpoint.clone()).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (_, leader_index) = agreed_leader(&endpoints).await;
        // The client talks to a follower only, and not to the one whose turn it might be to lead next.
        let follower = &endpoints[(leader_index + 1) % 3];
        let mut c = Client::connect([follower.as_str()], None).await.unwrap();
        let kept = c.lease_grant(TTL, None).await.unwrap().id();
        let unkept = c.lease_grant(TTL, None).await.unwrap().id();
        c.put("held", "1", Some(PutOptions::new().with_lease(kept))).await.unwrap();
        c.put("dropped", "1", Some(PutOptions::new().with_lease(unkept))).await.unwrap();
        let (mut keeper, mut stream) = c.lease_keep_alive(kept).await.unwrap();

        // Keep-alives through the follower hold the lease past two TTLs; the other lease expires.
        keep_alive_for(&mut keeper, &mut stream, Duration::from_secs(2 * TTL as u64)).await;
        assert!(exists(follower, "held").await, "a lease kept alive through a follower expired");
        assert!(!exists(follower, "dropped").await, "a lease nobody kept alive did not expire");

        // The leader dies; keep-alives go on through the election and after it.
        let mut m = members[leader_index].take().unwrap();
        m.child.kill().unwrap(); // SIGKILL
        m.child.wait().unwrap();
        drop(m);
        // A pause through the election: whichever survivor wins must count the lease's TTL from its own promotion
        // (the renewals before the kill went to the dead leader), not expire it at once.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        keep_alive_for(&mut keeper, &mut stream, Duration::from_secs(2 * TTL as u64)).await;
        let survivors: Vec<&String> = (0..3).filter(|i| *i != leader_index).map(|i| &endpoints[i]).collect();
        agreed_leader(&survivors.iter().map(|e| e.to_string()).collect::<Vec<_>>()).await;
        for e in &survivors {
            assert!(exists(e, "held").await, "{e}: the kept lease expired across the leader change");
        }

        // No more keep-alives: the new leader expires the lease and every survivor deletes its key.
        drop((keeper, stream));
        let stopped = Instant::now();
        for e in &survivors {
            while exists(e, "held").await {
                assert!(stopped.elapsed() < Duration::from_secs(4 * TTL as u64), "{e}: the lease never expired");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let took = stopped.elapsed();
        eprintln!("the lease expired {took:?} after its last keep-alive (TTL {TTL} s)");
        assert!(took >= Duration::from_secs(TTL as u64 - 1), "expired {took:?} after the last keep-alive");
        let mut c = Client::connect([survivors[0].as_str()], None).await.unwrap();
        assert_eq!(c.lease_time_to_live(kept, None).await.unwrap().ttl(), -1);
    });
}
