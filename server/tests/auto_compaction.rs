//! `--auto-compaction-mode=periodic --auto-compaction-retention=2s` on a 3-member cluster: while a client writes,
//! the leader compacts, through Raft, so every member's compaction revision advances, old revisions answer etcd's
//! "required revision has been compacted", the last ~2 s of history stay readable, and the leader logs etcd's
//! "completed auto periodic compaction". (Revision mode waits 5 minutes between rounds, as etcd's does; its
//! decision is unit-tested in `api::compactor`.)

mod common;

use std::time::{Duration, Instant};

use common::cluster::{launch_with, specs};

/// The compaction revision `endpoint`'s store reports (0 when it cannot answer).
async fn compact_revision(endpoint: &str) -> i64 {
    use server::proto::etcdserverpb::{HashKvRequest, maintenance_client::MaintenanceClient};
    let Ok(mut m) = MaintenanceClient::connect(format!("http://{endpoint}")).await else { return 0 };
    m.hash_kv(HashKvRequest { revision: 0 }).await.map_or(0, |r| r.into_inner().compact_revision)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_auto_compaction_keeps_the_retention_and_compacts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (specs, cluster) = specs(3);
    let flags = ["--auto-compaction-mode=periodic", "--auto-compaction-retention=2s"];
    let members: Vec<_> = specs.iter().map(|s| launch_with(dir.path(), s, &cluster, &flags)).collect();
    let eps: Vec<String> = members.iter().map(|m| m.endpoint.clone()).collect();
    let mut client = etcd_client::Client::connect(&eps, None).await.unwrap();
    let started = Instant::now();
    let mut first_rev = 0;
    // Write for 7 s: long enough for compactions after the first period.
    let mut last_rev = 0;
    while started.elapsed() < Duration::from_secs(7) {
        match client.put("k", format!("{:?}", started.elapsed()), None).await {
            Ok(r) => {
                last_rev = r.header().unwrap().revision();
                if first_rev == 0 {
                    first_rev = last_rev;
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(first_rev > 0, "no write went through");
    // Every member applied a compaction past the first write, and not past what was written 1 s ago.
    let deadline = Instant::now() + Duration::from_secs(10);
    for ep in &eps {
        loop {
            let compact = compact_revision(ep).await;
            if compact > first_rev {
                assert!(compact < last_rev, "{ep} compacted all history: {compact} of {last_rev}");
                break;
            }
            assert!(Instant::now() < deadline, "{ep}: no auto compaction past revision {first_rev} (at {compact})");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let old = client.get("k", Some(etcd_client::GetOptions::new().with_revision(first_rev))).await;
    let err = old.expect_err("an auto-compacted revision was served").to_string();
    assert!(err.contains("required revision has been compacted"), "{err}");
    let recent = client.get("k", Some(etcd_client::GetOptions::new().with_revision(last_rev))).await;
    assert!(recent.is_ok(), "the latest revision is kept: {recent:?}");
    let logged =
        members.iter().any(|m| m.log.lock().unwrap().iter().any(|l| l.contains("completed auto periodic compaction")));
    assert!(logged, "no member logged etcd's line");
}
