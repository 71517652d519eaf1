//! A leader whose disk stalls stops being leader rather than stalling the cluster. Each of three members keeps its
//! data on an ext4 file system of its own (a loop-mounted image); `fsfreeze` stalls the leader's, as a hung or
//! saturated disk would. Under a writer that retries on another member as etcd's clients do:
//! 1. **stuck disk** (frozen 2.5 s): a put sent to the leader right after the freeze blocks its Raft loop in the
//!    WAL write, so it sends nothing and the others elect a new leader and go on committing writes without it;
//!    thawed, the old leader follows. (A leader with nothing to append keeps sending heartbeats from its tick:
//!    without that put, a freeze that caught the writer's put in the apply left the leader in place until the
//!    writer's 3 s timeout, 4 runs in 30 here);
//! 2. **slow disk** (frozen 400 ms of every 500 ms): heartbeats get out between stalls, so the followers never
//!    time out on their own; the leader itself sees its WAL writes take over half an election timeout, logs etcd's
//!    "leader failed to send out heartbeat on time" warning and hands leadership to the best-placed voter;
//! 3. no acknowledged put is lost and every member ends with the same HashKV.
//!
//! A frozen file system must never outlive the test: a detached watchdog process thaws every mount after 60 s or
//! once the test process ends, and the guard thaws, stops the members and unmounts on the way out (`common::disks`).
//! Needs root (mount, fsfreeze), as CI has; elsewhere it skips with a message (under CI=true it fails).

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::Member;
use common::cluster::{agreed_leader, holds_all, launch, specs, status};
use common::disks::Disks;
use common::writer::Writer;
use server::proto::etcdserverpb::{PutRequest, kv_client::KvClient};

/// Waits (up to `limit`) until the members at `endpoints` agree on a leader other than `old`; that leader.
async fn new_leader(endpoints: &[String], old: u64, limit: Duration) -> u64 {
    let deadline = Instant::now() + limit;
    loop {
        let mut seen = Vec::new();
        for e in endpoints {
            seen.push(status(e).await.map(|s| s.1));
        }
        if let Some(Some(l)) = seen.first()
            && *l != old
            && *l != 0
            && seen.iter().all(|s| *s == Some(*l))
        {
            return *l;
        }
        assert!(Instant::now() < deadline, "no new leader within {limit:?}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_leader_with_a_stalled_disk_stops_leading() {
    if !common::is_root("loop mounts and fsfreeze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (specs, cluster) = specs(3);
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let disks = Disks::create(dir.path(), &names, Duration::from_secs(60));
    let members: Vec<Member> = specs.iter().map(|s| launch(dir.path(), s, &cluster)).collect();
    let endpoints: Vec<String> = members.iter().map(|m| m.endpoint.clone()).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (leader, li) = rt.block_on(agreed_leader(&endpoints));
    let writer = Writer::start(endpoints.clone());
    std::thread::sleep(Duration::from_millis(500));

    // 1. A stuck disk.
    let others: Vec<String> = (0..3).filter(|i| *i != li).map(|i| endpoints[i].clone()).collect();
    disks.freeze(li);
    let frozen_at = Instant::now();
    // A put to the stuck leader itself, so its Raft loop has an entry to write: the writer's own put may be past
    // the WAL and waiting in the (equally stuck) apply when the disk freezes, and a leader with nothing to append
    // goes on sending heartbeats until the writer's 3 s timeout sends the next put its way.
    let stuck = endpoints[li].clone();
    rt.spawn(async move {
        if let Ok(mut kv) = KvClient::connect(format!("http://{stuck}")).await {
            let put = PutRequest { key: b"w/to-the-stuck-leader".to_vec(), value: b"v".to_vec(), ..Default::default() };
            let _ = tokio::time::timeout(Duration::from_secs(5), kv.put(put)).await;
        }
    });
    let second = rt.block_on(new_leader(&others, leader, Duration::from_secs(2)));
    let elected_in = frozen_at.elapsed();
    // Puts straight to the new leader while the old one is stuck.
    // (Asked of the live members only: the stuck one answers nothing that touches its store.)
    let si = (0..3).find(|i| *i != li && rt.block_on(status(&endpoints[*i])).is_some_and(|s| s.0 == second)).unwrap();
    let mut without = Vec::new();
    rt.block_on(async {
        let mut kv = KvClient::connect(format!("http://{}", endpoints[si])).await.unwrap();
        while frozen_at.elapsed() < Duration::from_millis(2500) {
            let key = format!("w/stuck-{:05}", without.len());
            let put = kv.put(PutRequest { key: key.clone().into(), value: b"v".to_vec(), ..Default::default() });
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), put).await {
                without.push(key);
            }
        }
    });
    let committed_without = without.len();
    disks.thaw(li);
    assert!(committed_without > 20, "the cluster went on without the stuck leader: {committed_without} puts");
    rt.block_on(new_leader(&endpoints, leader, Duration::from_secs(10)));

    // 2. A slow disk: frozen 400 ms of every 500 ms until leadership moves (or 6 s pass).
    // A scoped thread: even if the test fails meanwhile, the toggling ends (within 6 s) before `disks` is dropped,
    // which thaws and unmounts (a detached thread holding the disks would keep them mounted past the test).
    let stop = AtomicBool::new(false);
    let (third, moved_in) = std::thread::scope(|scope| {
        scope.spawn(|| {
            let until = Instant::now() + Duration::from_secs(6);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                disks.freeze(si);
                std::thread::sleep(Duration::from_millis(400));
                disks.thaw(si);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let slow_at = Instant::now();
        let others: Vec<String> = (0..3).filter(|i| *i != si).map(|i| endpoints[i].clone()).collect();
        let third = rt.block_on(new_leader(&others, second, Duration::from_secs(5)));
        stop.store(true, Ordering::Relaxed);
        (third, slow_at.elapsed())
    });
    disks.thaw(si);
    let log = members[si].log.lock().unwrap().iter().cloned().collect::<Vec<_>>().join("\n");
    assert!(log.contains("leader failed to send out heartbeat on time"), "the slow leader said why: {log}");
    let metrics = common::http_get(&endpoints[si], "/metrics").1;
    let failures = common::metric_value(&metrics, "etcd_server_heartbeat_send_failures_total");
    assert!(failures >= 1.0, "etcd's counter of the late heartbeats: {failures}");
    rt.block_on(new_leader(&endpoints, second, Duration::from_secs(10)));
    let _ = third;

    // 3. Nothing lost.
    let (mut acked, failed) = writer.finish();
    acked.extend(without);
    assert_eq!(failed, 0, "puts that failed on every member for 10 s");
    rt.block_on(holds_all(&endpoints, &acked));
    eprintln!(
        "disk stall: stuck leader replaced in {:.2} s ({committed_without} puts committed without it); slow leader \
         handed over in {:.2} s; {} puts acknowledged, 0 failed",
        elected_in.as_secs_f64(),
        moved_in.as_secs_f64(),
        acked.len()
    );
    drop(members);
}
