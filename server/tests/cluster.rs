//! 3- and 5-member clusters on 127.0.0.1: writes through every member (followers forward proposals to the leader), the
//! leader is killed with SIGKILL under write load, a new one is elected within a few election timeouts and
//! writes go on; no acknowledged write is lost, and once the killed member is back all converge to the same
//! HashKV; MoveLeader then hands leadership to the member that was killed and came back (with 5 members this
//! needs the vote responses of restarted connections not to be lost: see `transport`).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Member;
use common::cluster::{agreed_leader, converged, launch, specs, status};
use server::proto::etcdserverpb::{
    MoveLeaderRequest, PutRequest, RangeRequest, kv_client::KvClient, maintenance_client::MaintenanceClient,
};

async fn put(endpoint: &str, key: &str) -> bool {
    let attempt = async {
        let mut kv = KvClient::connect(format!("http://{endpoint}")).await.ok()?;
        kv.put(PutRequest { key: key.into(), value: key.into(), ..Default::default() }).await.ok()
    };
    matches!(tokio::time::timeout(Duration::from_secs(2), attempt).await, Ok(Some(_)))
}

#[test]
fn three_members_survive_losing_the_leader() {
    survive_losing_the_leader(3);
}

#[test]
fn five_members_survive_losing_the_leader() {
    survive_losing_the_leader(5);
}

fn survive_losing_the_leader(size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (specs, cluster) = specs(size);
    let mut members: Vec<Option<Member>> = specs.iter().map(|s| Some(launch(dir.path(), s, &cluster))).collect();
    let endpoints: Vec<String> = members.iter().map(|m| m.as_ref().unwrap().endpoint.clone()).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (leader, leader_index) = agreed_leader(&endpoints).await;
        // Write load round-robin through all members; kill the leader after 150 acknowledged puts.
        let mut acked = Vec::new();
        let mut n = 0;
        let mut killed_at = None;
        let mut first_after_kill = None;
        while acked.len() < 400 {
            n += 1;
            let target = n % size;
            if members[target].is_none() {
                continue;
            }
            let key = format!("w/{n:06}");
            if put(&endpoints[target], &key).await {
                acked.push(key);
                if killed_at.is_some() && first_after_kill.is_none() {
                    first_after_kill = Some(Instant::now());
                }
            }
            if acked.len() == 150 && killed_at.is_none() {
                let mut m = members[leader_index].take().unwrap();
                m.child.kill().unwrap(); // SIGKILL
                m.child.wait().unwrap();
                drop(m);
                killed_at = Some(Instant::now());
            }
            assert!(killed_at.is_none_or(|k| k.elapsed() < Duration::from_secs(60)), "writes stalled after the kill");
        }
        let failover = first_after_kill.unwrap() - killed_at.unwrap();
        eprintln!("writes resumed {failover:?} after the leader was killed");
        assert!(failover < Duration::from_secs(5), "writes resumed {failover:?} after the leader died");
        // A new leader, not the dead one.
        let survivor = &endpoints[(leader_index + 1) % size];
        let (_, new_leader) = status(survivor).await.unwrap();
        assert!(new_leader != 0 && new_leader != leader);

        // The killed member comes back and catches up.
        members[leader_index] = Some(launch(dir.path(), &specs[leader_index], &cluster));
        converged(&endpoints).await;
        // Every acknowledged write is on every member (serializable reads: each member's own state).
        for e in &endpoints {
            let mut kv = KvClient::connect(format!("http://{e}")).await.unwrap();
            let r = RangeRequest {
                key: b"w/".to_vec(),
                range_end: b"w0".to_vec(),
                keys_only: true,
                serializable: true,
                ..Default::default()
            };
            let keys: BTreeSet<String> = kv
                .range(r)
                .await
                .unwrap()
                .into_inner()
                .kvs
                .into_iter()
                .map(|kv| String::from_utf8(kv.key).unwrap())
                .collect();
            let missing: Vec<&String> = acked.iter().filter(|k| !keys.contains(*k)).collect();
            assert!(missing.is_empty(), "{e} lost acknowledged writes: {missing:?}");
        }

        // MoveLeader, asked of the leader, hands leadership to the member that was killed and came back.
        let mut leader_endpoint = None;
        for e in &endpoints {
            if let Some((id, l)) = status(e).await
                && id == l
            {
                leader_endpoint = Some(e.clone());
            }
        }
        let leader_endpoint = leader_endpoint.expect("a leader after convergence");
        let mut m = MaintenanceClient::connect(format!("http://{leader_endpoint}")).await.unwrap();
        if let Err(e) = m.move_leader(MoveLeaderRequest { target_id: leader }).await {
            let mut seen = Vec::new();
            for e in &endpoints {
                seen.push(status(e).await);
            }
            panic!("move-leader to {leader:x} via {leader_endpoint}: {e}; statuses {seen:x?}");
        }
        assert_eq!(status(&endpoints[leader_index]).await.unwrap().1, leader, "the target leads");
        // A follower cannot move leadership: etcd's error.
        let mut f = MaintenanceClient::connect(format!("http://{leader_endpoint}")).await.unwrap();
        let err = f.move_leader(MoveLeaderRequest { target_id: leader }).await.unwrap_err();
        assert_eq!((err.code(), err.message()), (tonic::Code::FailedPrecondition, "etcdserver: not leader"));
    });
}
