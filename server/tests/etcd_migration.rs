//! ferrokv started on etcd 3.4.23's data directories converts them in place and runs as the same members:
//! - a 3-member etcd cluster, stopped, each member's directory converted by starting ferrokv on it with the same
//!   flags: the same member and cluster ids, every key at old revisions, the compaction point, HashKV and the
//!   leases, and the cluster takes writes;
//! - an etcd member killed (-9) while its database lagged its WAL: the entries after the database's consistent
//!   index are replayed, and the original directory, kept aside, still starts etcd;
//! - a directory `etcdctl snapshot restore` wrote;
//! - a conversion interrupted while building, or between its two renames, is redone or finished.

mod common;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::history::{self, History};
use common::{etcdctl_ok as ctl, free_port};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Stops a process as an operator does (SIGTERM), waiting up to 20 s.
fn terminate(child: &mut Child) {
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the process did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// (cluster id, member ids) as `endpoint` lists them.
fn ids(endpoint: &str) -> (u64, Vec<u64>) {
    let v: serde_json::Value = serde_json::from_str(&ctl(endpoint, &["member", "list", "-w", "json"])).unwrap();
    let mut ids: Vec<u64> = v["members"].as_array().unwrap().iter().map(|m| m["ID"].as_u64().unwrap()).collect();
    ids.sort();
    (v["header"]["cluster_id"].as_u64().unwrap(), ids)
}

/// How many WAL entries the conversion of `data` left to replay (from its summary).
fn replayed(data: &Path) -> u64 {
    let summary = std::fs::read_to_string(data.join("member").join("converted-from-etcd")).unwrap();
    let words: Vec<&str> = summary.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "WAL").unwrap();
    words[at - 1].parse().unwrap()
}

#[test]
fn a_three_member_etcd_cluster_converts_in_place_and_runs_on() {
    if !common::etcd::installed("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (specs, cluster) = common::cluster::specs(3);
    let mut etcds = common::etcd::start_cluster(dir.path(), &specs, &cluster);
    let h = rt().block_on(history::write(&etcds[0].endpoint, 20_000));
    let want = rt().block_on(history::capture(&etcds[0].endpoint, h));
    let before = ids(&etcds[0].endpoint);
    for e in &mut etcds {
        terminate(&mut e.child);
    }
    let members: Vec<common::Member> = specs.iter().map(|s| common::cluster::launch(dir.path(), s, &cluster)).collect();
    let endpoints: Vec<String> = members.iter().map(|m| m.endpoint.clone()).collect();
    rt().block_on(async {
        common::cluster::agreed_leader(&endpoints).await;
        for e in &endpoints {
            history::check(&want, e, h).await;
        }
    });
    assert_eq!(ids(&endpoints[2]), before, "the same cluster and member ids");
    ctl(&endpoints[0], &["put", "after-conversion", "yes"]);
    rt().block_on(common::cluster::converged(&endpoints));
    for (s, e) in specs.iter().zip(&endpoints) {
        assert!(dir.path().join(&s.name).join("member.etcd").join("wal").exists(), "the original is kept");
        let out = ctl(e, &["get", "after-conversion", "--consistency=s", "--print-value-only"]);
        assert_eq!(out.trim(), "yes", "{e}");
    }
}

#[test]
fn a_killed_etcd_member_converts_with_its_wal_replayed_and_its_original_kept() {
    if !common::etcd::installed("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("member-data");
    let (client, peer) = (free_port(), free_port());
    // The database commits only when it must (at start, and at the compaction), so what was written after the
    // compaction lives in the WAL alone: the later rewrites, the deletions, the leases and their keys.
    let lag = ["--backend-batch-interval", "1h", "--backend-batch-limit", "100000000"];
    let etcd = common::etcd::start_with(&data, client, peer, &lag);
    let h: History = rt().block_on(history::write(&etcd.endpoint, 2_000));
    let want = rt().block_on(history::capture(&etcd.endpoint, h));
    drop(etcd); // kill -9
    let m = common::start(&data, client, peer);
    rt().block_on(history::check(&want, &m.endpoint, h));
    assert!(replayed(&data) >= 20, "the WAL's entries were replayed: {}", replayed(&data));
    ctl(&m.endpoint, &["put", "on-ferrokv", "x"]);
    drop(m);

    // The original, put back, still starts etcd, with everything it had.
    std::fs::rename(data.join("member"), dir.path().join("ferrokv-member")).unwrap();
    std::fs::rename(data.join("member.etcd"), data.join("member")).unwrap();
    let etcd = common::etcd::start(&data, client, peer);
    rt().block_on(history::check(&want, &etcd.endpoint, h));
    let (ok, out, _) = common::etcdctl(&etcd.endpoint, &["get", "on-ferrokv", "--print-value-only"], None);
    assert!(ok && out.trim().is_empty(), "the original was not written to: {out:?}");
}

#[test]
fn a_directory_etcdctl_restored_converts() {
    if !common::etcd::installed("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = common::etcd::start(&dir.path().join("etcd"), free_port(), free_port());
    for i in 0..50 {
        ctl(&etcd.endpoint, &["put", &format!("k{i}"), &format!("v{i}")]);
    }
    let file = dir.path().join("backup.db");
    ctl(&etcd.endpoint, &["snapshot", "save", file.to_str().unwrap()]);
    let want = rt().block_on(history::range_all(&etcd.endpoint, 0)).unwrap();
    let (client, peer) = (free_port(), free_port());
    let p = format!("http://127.0.0.1:{peer}");
    let data = dir.path().join("restored");
    let token = ["--initial-cluster-token", "restored"];
    common::etcd::etcdctl_restore(&file, &data, "r1", &format!("r1={p}"), &p, &token);
    let m = common::start_with(&data, client, peer, &["--name", "r1", "--initial-cluster", &format!("r1={p}")]);
    assert_eq!(rt().block_on(history::range_all(&m.endpoint, 0)).unwrap(), want);
    let (_, members) = ids(&m.endpoint);
    assert_eq!(members.len(), 1);
    assert_ne!(ids(&m.endpoint), ids(&etcd.endpoint), "the restored cluster is a new one");
    ctl(&m.endpoint, &["put", "after", "x"]);
}

#[test]
fn an_interrupted_conversion_is_redone_or_finished() {
    if !common::etcd::installed("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let (client, peer) = (free_port(), free_port());
    let mut etcd = common::etcd::start(&data, client, peer);
    let h = rt().block_on(history::write(&etcd.endpoint, 1_000));
    let want = rt().block_on(history::capture(&etcd.endpoint, h));
    terminate(&mut etcd.child);

    // A crash while building left half a conversion beside the untouched original: it is built again.
    std::fs::create_dir_all(data.join("member.converting").join("snap")).unwrap();
    std::fs::write(data.join("member.converting").join("snap").join("db"), b"half").unwrap();
    let m = common::start(&data, client, peer);
    rt().block_on(history::check(&want, &m.endpoint, h));
    drop(m);
    assert!(!data.join("member.converting").exists());

    // A crash between the renames left the original aside and a complete conversion: the start finishes it.
    std::fs::rename(data.join("member"), data.join("member.converting")).unwrap();
    let m = common::start(&data, client, peer);
    rt().block_on(history::check(&want, &m.endpoint, h));
    assert!(data.join("member.etcd").exists() && !data.join("member.converting").exists());
}
