//! A local cluster of ferrokv processes on 127.0.0.1 for the multi-member tests: fast timers (50 ms heartbeats,
//! 500 ms elections), one data dir per member under the test's temp dir.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use server::proto::etcdserverpb::{
    HashKvRequest, RangeRequest, StatusRequest, kv_client::KvClient, maintenance_client::MaintenanceClient,
};

use super::{Member, free_port};

/// One member's name and ports.
pub struct Spec {
    pub name: String,
    pub client: u16,
    pub peer: u16,
}

/// `size` members' specs and the `--initial-cluster` value naming them.
pub fn specs(size: usize) -> (Vec<Spec>, String) {
    let specs: Vec<Spec> =
        (1..=size).map(|i| Spec { name: format!("m{i}"), client: free_port(), peer: free_port() }).collect();
    let cluster = specs.iter().map(|s| format!("{}=http://127.0.0.1:{}", s.name, s.peer)).collect::<Vec<_>>().join(",");
    (specs, cluster)
}

/// Starts (or restarts) one member of `cluster`, its data in `dir/<name>`.
pub fn launch(dir: &Path, s: &Spec, cluster: &str) -> Member {
    launch_with(dir, s, cluster, &[])
}

/// Like [`launch`], with extra flags.
pub fn launch_with(dir: &Path, s: &Spec, cluster: &str, extra: &[&str]) -> Member {
    let (m, ready) = launch_env(dir, s, cluster, extra, &[]);
    super::ready_within_20s(m, ready)
}

/// Like [`launch_with`], with these environment variables, without waiting: the receiver signals the ready line
/// (a member that joins a cluster is ready only once a quorum is).
pub fn launch_env(
    dir: &Path,
    s: &Spec,
    cluster: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Member, std::sync::mpsc::Receiver<()>) {
    let mut flags = vec![
        "--name",
        &s.name,
        "--initial-cluster",
        cluster,
        "--heartbeat-interval",
        "50",
        "--election-timeout",
        "500",
    ];
    flags.extend_from_slice(extra);
    super::start_detached_env(&dir.join(&s.name), s.client, s.peer, &flags, env)
}

/// (member id, leader id) as `endpoint` reports them.
pub async fn status(endpoint: &str) -> Option<(u64, u64)> {
    let mut m = MaintenanceClient::connect(format!("http://{endpoint}")).await.ok()?;
    let s = tokio::time::timeout(Duration::from_secs(2), m.status(StatusRequest {})).await.ok()?.ok()?.into_inner();
    Some((s.header?.member_id, s.leader))
}

/// (hash, revision) of `endpoint`'s store.
pub async fn hash_kv(endpoint: &str) -> Option<(u32, i64)> {
    hash_kv_at(endpoint, 0).await
}

/// (hash, revision) of `endpoint`'s store at `revision` (0: the current one).
pub async fn hash_kv_at(endpoint: &str, revision: i64) -> Option<(u32, i64)> {
    let mut m = MaintenanceClient::connect(format!("http://{endpoint}")).await.ok()?;
    let h = m.hash_kv(HashKvRequest { revision }).await.ok()?.into_inner();
    Some((h.hash, h.header?.revision))
}

/// Waits until every endpoint names the same leader; returns its id and its index in `endpoints`.
pub async fn agreed_leader(endpoints: &[String]) -> (u64, usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let leader = loop {
        let mut seen = BTreeSet::new();
        for e in endpoints {
            seen.insert(status(e).await.map(|s| s.1));
        }
        if let [Some(l)] = seen.iter().copied().collect::<Vec<_>>()[..]
            && l != 0
        {
            break l;
        }
        assert!(Instant::now() < deadline, "no agreed leader: {seen:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (i, e) in endpoints.iter().enumerate() {
        if status(e).await.is_some_and(|s| s.0 == leader) {
            return (leader, i);
        }
    }
    panic!("leader {leader:x} is none of {endpoints:?}");
}

/// Waits (up to 30 s) until every endpoint answers HashKV with the same hash at the same revision.
pub async fn converged(endpoints: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut hashes = BTreeSet::new();
        for e in endpoints {
            hashes.insert(hash_kv(e).await);
        }
        if hashes.len() == 1 && hashes.iter().next().unwrap().is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "members did not converge: {hashes:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every key `endpoint` holds.
pub async fn keys(endpoint: &str) -> BTreeSet<Vec<u8>> {
    let mut kv = KvClient::connect(format!("http://{endpoint}")).await.unwrap();
    let r = RangeRequest { key: vec![0], range_end: vec![0], keys_only: true, ..Default::default() };
    kv.range(r).await.unwrap().into_inner().kvs.into_iter().map(|kv| kv.key).collect()
}

/// Waits until the members converge (see [`converged`]), then checks that each holds every key of `acked`.
pub async fn holds_all(endpoints: &[String], acked: &[String]) {
    converged(endpoints).await;
    for e in endpoints {
        let keys = keys(e).await;
        let lost: Vec<&String> = acked.iter().filter(|k| !keys.contains(k.as_bytes())).collect();
        assert!(lost.is_empty(), "{e} lost {} acknowledged puts, e.g. {:?}", lost.len(), lost.first());
    }
}
