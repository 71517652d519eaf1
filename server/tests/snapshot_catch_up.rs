//! Catch-up by snapshot (issue 6): a member is stopped while the others take 20,000 puts (some of 100 KiB) with
//! `--snapshot-count 1000`, so the leader's log is compacted far past it. Restarted, it cannot be sent the entries it
//! missed: it receives the leader's store over the peer transport, installs it, and its HashKV then equals the
//! leader's at the same revision, and stays equal across one more restart. The leader's write latency while it
//! streams the image is measured and printed.

mod common;

use std::time::{Duration, Instant};

use common::Member;
use common::cluster::{agreed_leader, hash_kv, hash_kv_at, launch_with, specs};
use etcd_client::Client;

const FLAGS: [&str; 2] = ["--snapshot-count", "1000"];

#[test]
fn a_member_behind_the_compacted_log_catches_up_by_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (specs, cluster) = specs(3);
    let mut members: Vec<Option<Member>> =
        specs.iter().map(|s| Some(launch_with(dir.path(), s, &cluster, &FLAGS))).collect();
    let endpoints: Vec<String> = members.iter().map(|m| m.as_ref().unwrap().endpoint.clone()).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (_, leader) = rt.block_on(agreed_leader(&endpoints));
    let lagging = (leader + 1) % 3;
    drop(members[lagging].take()); // SIGKILL

    // 20,000 puts through the leader from 20 writers; every 200th value is 100 KiB.
    let leader_endpoint = endpoints[leader].clone();
    rt.block_on(async {
        let c = Client::connect([leader_endpoint.as_str()], None).await.unwrap();
        let mut tasks = Vec::new();
        for w in 0..20 {
            let mut c = c.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..1000 {
                    let n = w * 1000 + i;
                    let value = if n % 200 == 0 { vec![b'x'; 100 << 10] } else { format!("value-{n}").into_bytes() };
                    c.put(format!("k/{n:05}"), value, None).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });

    // Restart the lagging member while a writer measures the leader's put latency.
    let restarted = Instant::now();
    members[lagging] = Some(launch_with(dir.path(), &specs[lagging], &cluster, &FLAGS));
    let (mut latencies, caught_up) = rt.block_on(async {
        let mut c = Client::connect([leader_endpoint.as_str()], None).await.unwrap();
        let mut latencies = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut n = 0;
        loop {
            n += 1;
            let t = Instant::now();
            c.put(format!("during/{n:05}"), "v", None).await.unwrap();
            latencies.push(t.elapsed());
            if n % 20 == 0 {
                let (l, f) = (hash_kv(&endpoints[leader]).await, hash_kv(&endpoints[lagging]).await);
                if let (Some(l), Some(f)) = (l, f)
                    && f.1 >= l.1 - 100
                {
                    break (latencies, restarted.elapsed());
                }
            }
            assert!(Instant::now() < deadline, "the restarted member did not catch up in 60 s");
        }
    });
    latencies.sort();
    let at = |q: usize| latencies[(latencies.len() - 1) * q / 100];
    eprintln!(
        "caught up {caught_up:?} after the restart; leader put latency meanwhile: {} puts, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        at(50),
        at(99),
        at(100)
    );

    rt.block_on(async {
        // Same HashKV at the same revision, once the writes have stopped and everyone has applied them.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let rev = hash_kv(&endpoints[leader]).await.unwrap().1;
            let (l, f) = (hash_kv_at(&endpoints[leader], rev).await, hash_kv_at(&endpoints[lagging], rev).await);
            if l.is_some() && l == f {
                break;
            }
            assert!(Instant::now() < deadline, "HashKV differs at revision {rev}: leader {l:?}, restarted {f:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut c = Client::connect([endpoints[lagging].as_str()], None).await.unwrap();
        let big = c.get("k/00200", Some(etcd_client::GetOptions::new().with_serializable())).await.unwrap();
        assert_eq!(big.kvs()[0].value().len(), 100 << 10, "a 100 KiB value came across whole");
    });
    let log = members[lagging].as_ref().unwrap().log.lock().unwrap().iter().cloned().collect::<Vec<_>>().join("\n");
    assert!(log.contains("installed database snapshot"), "the member caught up without a snapshot:\n{log}");
    // etcd's snapshot series: one send on the leader, one receive and one save on the member.
    let id = |i: usize| format!("{:x}", rt.block_on(common::cluster::status(&endpoints[i])).unwrap().0);
    let (l, f) = (id(leader), id(lagging));
    let metric = |ep: &str, name: &str| {
        let text = common::http_get(ep, "/metrics").1;
        text.lines().find_map(|x| x.strip_prefix(name)?.strip_prefix(' ')?.parse::<f64>().ok()).unwrap_or(0.0)
    };
    assert!(metric(&endpoints[leader], &format!("etcd_network_snapshot_send_success{{To=\"{f}\"}}")) >= 1.0);
    assert!(metric(&endpoints[lagging], &format!("etcd_network_snapshot_receive_success{{From=\"{l}\"}}")) >= 1.0);
    assert!(metric(&endpoints[lagging], "etcd_snap_db_save_total_duration_seconds_count") >= 1.0);
    // Restarted once more (SIGKILL), it starts from the installed store and the WAL's snapshot marker.
    drop(members[lagging].take());
    members[lagging] = Some(launch_with(dir.path(), &specs[lagging], &cluster, &FLAGS));
    rt.block_on(async {
        let rev = hash_kv(&endpoints[leader]).await.unwrap().1;
        let deadline = Instant::now() + Duration::from_secs(30);
        while hash_kv_at(&endpoints[lagging], rev).await != hash_kv_at(&endpoints[leader], rev).await {
            assert!(Instant::now() < deadline, "after a second restart the member does not match the leader");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join(&specs[lagging].name).join("member").join("snap"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("db.incoming"))
        .collect();
    assert!(leftovers.is_empty(), "staged images left behind: {leftovers:?}");
}
