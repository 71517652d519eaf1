//! Snapshot round trips with 100,000 keys, history, deletions, a compaction and leases, both ways:
//! - etcd 3.4.23 → `etcdctl snapshot save` → `ferrokv snapshot restore` → ferrokv serves the same data (every key
//!   at old revisions, the compaction point, HashKV, leases with their keys), alone and as a 3-member cluster;
//! - ferrokv → `etcdctl snapshot save` → `etcdctl snapshot restore` → etcd serves the same data, alone and as a
//!   3-member cluster (the README's way back from ferrokv to etcd).
//!
//! Users and roles (etcd's auth buckets) travel both ways with the data, and a snapshot with authentication enabled
//! restores enforced. And the restore's checks, as etcd's: the SHA-256 trailer, `--skip-hash-check` for a member's `db`, a data
//! directory that is not empty, `--bump-revision` with `--mark-compacted`, and an interrupted restore redone.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::history::{self, History};
use common::{etcdctl_ok as ctl, free_port};

const KEYS: usize = 100_000;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn restore(file: &Path, data: &Path, name: &str, cluster: &str, peer: u16, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrokv"))
        .args(["snapshot", "restore"])
        .arg(file)
        .args(["--data-dir", data.to_str().unwrap(), "--name", name, "--initial-cluster", cluster])
        .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{peer}")])
        .args(extra)
        .output()
        .unwrap()
}

fn restored(out: &Output) {
    assert!(out.status.success(), "ferrokv snapshot restore: {}", String::from_utf8_lossy(&out.stderr));
}

/// etcd with the history, and its snapshot saved by etcdctl.
fn etcd_backup(dir: &Path, keys: usize) -> (common::etcd::Etcd, History, std::path::PathBuf) {
    let etcd = common::etcd::start(&dir.join("etcd"), free_port(), free_port());
    let h = rt().block_on(history::write(&etcd.endpoint, keys));
    let file = dir.join("etcd.snapshot");
    ctl(&etcd.endpoint, &["snapshot", "save", file.to_str().unwrap()]);
    (etcd, h, file)
}

#[test]
fn an_etcd_backup_restores_into_ferrokv_with_everything() {
    if !common::etcd::installed("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (etcd, h, file) = etcd_backup(dir.path(), KEYS);
    let (client, peer) = (free_port(), free_port());
    let cluster = format!("r1=http://127.0.0.1:{peer}");
    let data = dir.path().join("ferrokv");
    restored(&restore(&file, &data, "r1", &cluster, peer, &[]));
    let m = common::start_with(&data, client, peer, &["--name", "r1", "--initial-cluster", &cluster]);
    rt().block_on(history::same(&etcd.endpoint, &m.endpoint, h));
    // It goes on from the backup's revision.
    let out = ctl(&m.endpoint, &["put", "new", "x", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["header"]["revision"].as_i64(), Some(h.last + 1));
}

#[test]
fn a_ferrokv_backup_restores_into_etcd_with_everything() {
    if !common::etcd::installed("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = common::start(&dir.path().join("ferrokv"), free_port(), free_port());
    let h = rt().block_on(history::write(&m.endpoint, KEYS));
    let file = dir.path().join("ferrokv.snapshot");
    ctl(&m.endpoint, &["snapshot", "save", file.to_str().unwrap()]);
    let (client, peer) = (free_port(), free_port());
    let p = format!("http://127.0.0.1:{peer}");
    let data = dir.path().join("etcd");
    common::etcd::etcdctl_restore(&file, &data, "default", &format!("default={p}"), &p, &[]);
    let etcd = common::etcd::start(&data, client, peer);
    rt().block_on(history::same(&m.endpoint, &etcd.endpoint, h));
}

#[test]
fn three_members_restored_from_one_etcd_backup_form_a_cluster() {
    if !common::etcd::installed("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (etcd, h, file) = etcd_backup(dir.path(), 5_000);
    let (specs, cluster) = common::cluster::specs(3);
    for s in &specs {
        restored(&restore(&file, &dir.path().join(&s.name), &s.name, &cluster, s.peer, &[]));
    }
    let members: Vec<common::Member> = specs.iter().map(|s| common::cluster::launch(dir.path(), s, &cluster)).collect();
    let endpoints: Vec<String> = members.iter().map(|m| m.endpoint.clone()).collect();
    rt().block_on(async {
        common::cluster::agreed_leader(&endpoints).await;
        for e in &endpoints {
            history::same(&etcd.endpoint, e, h).await;
        }
    });
    ctl(&endpoints[1], &["put", "after-restore", "yes"]);
    rt().block_on(common::cluster::converged(&endpoints));
    for e in &endpoints {
        let out = ctl(e, &["get", "after-restore", "--consistency=s", "--print-value-only"]);
        assert_eq!(out.trim(), "yes", "{e}");
    }
}

#[test]
fn restore_checks_what_etcd_checks() {
    if !common::etcd::installed("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (etcd, h, file) = etcd_backup(dir.path(), 1_000);
    let peer = free_port();
    let cluster = format!("r1=http://127.0.0.1:{peer}");
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // A damaged file fails the SHA-256 check, as etcd's restore does.
    let damaged = dir.path().join("damaged.snapshot");
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&damaged, &bytes).unwrap();
    let out = restore(&damaged, &dir.path().join("d1"), "r1", &cluster, peer, &[]);
    assert!(!out.status.success() && stderr(&out).contains("expected sha256 ["), "{}", stderr(&out));
    assert!(!dir.path().join("d1").join("member").exists(), "a refused restore leaves no member directory");

    // A member's db has no trailer: refused without --skip-hash-check, restored with it.
    let db = dir.path().join("etcd").join("member").join("snap").join("db");
    let copy = dir.path().join("db-copy");
    std::fs::copy(&db, &copy).unwrap();
    let out = restore(&copy, &dir.path().join("d2"), "r1", &cluster, peer, &[]);
    assert!(stderr(&out).contains("snapshot missing hash but --skip-hash-check=false"), "{}", stderr(&out));
    restored(&restore(&copy, &dir.path().join("d2"), "r1", &cluster, peer, &["--skip-hash-check"]));

    // Not into a data directory that holds anything.
    let out = restore(&file, &dir.path().join("d2"), "r1", &cluster, peer, &[]);
    assert!(stderr(&out).contains("not empty or could not be read"), "{}", stderr(&out));

    // --bump-revision needs --mark-compacted; together they raise the revision and compact below it.
    let out = restore(&file, &dir.path().join("d3"), "r1", &cluster, peer, &["--bump-revision", "1000"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--mark-compacted required if --revision-bump > 0"), "{}", stderr(&out));
    let d3 = dir.path().join("d3");
    restored(&restore(&file, &d3, "r1", &cluster, peer, &["--bump-revision", "1000", "--mark-compacted"]));

    // An interrupted restore (its work directory left behind) is redone.
    let d4 = dir.path().join("d4");
    std::fs::create_dir_all(d4.join("member.restoring").join("snap")).unwrap();
    std::fs::write(d4.join("member.restoring").join("snap").join("db"), b"half a database").unwrap();
    restored(&restore(&file, &d4, "r1", &cluster, peer, &[]));
    assert!(!d4.join("member.restoring").exists());

    let client = free_port();
    let m = common::start_with(&d3, client, peer, &["--name", "r1", "--initial-cluster", &cluster]);
    let now = history::range_all(&m.endpoint, 0);
    let rt = rt();
    let kvs = rt.block_on(now).unwrap();
    assert_eq!(kvs, rt.block_on(history::range_all(&etcd.endpoint, 0)).unwrap(), "the keys, bumped");
    let old = rt.block_on(history::range_all(&m.endpoint, h.last));
    assert!(old.is_err_and(|e| e.contains("compacted")), "revisions below the bump are compacted");
    let out = ctl(&m.endpoint, &["put", "new", "x", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["header"]["revision"].as_i64(), Some(h.last + 1000 + 1), "the revision goes on from the bump");
    drop(m);
    let m = common::start_with(&dir.path().join("d2"), client, peer, &["--name", "r1", "--initial-cluster", &cluster]);
    assert_eq!(rt.block_on(history::range_all(&m.endpoint, 0)).unwrap(), kvs, "the member db restored");
}

#[test]
fn a_three_member_ferrokv_cluster_moves_to_etcd_through_a_backup() {
    if !common::etcd::installed("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (specs, cluster) = common::cluster::specs(3);
    let ferrokv = dir.path().join("ferrokv");
    let members: Vec<common::Member> = specs.iter().map(|s| common::cluster::launch(&ferrokv, s, &cluster)).collect();
    let endpoints: Vec<String> = members.iter().map(|m| m.endpoint.clone()).collect();
    rt().block_on(common::cluster::agreed_leader(&endpoints));
    let h = rt().block_on(history::write(&endpoints[0], 5_000));
    let want = rt().block_on(history::capture(&endpoints[1], h));
    let file = dir.path().join("ferrokv.snapshot");
    ctl(&endpoints[2], &["snapshot", "save", file.to_str().unwrap()]);
    drop(members);
    let etcd_dir = dir.path().join("etcd");
    for s in &specs {
        let p = format!("http://127.0.0.1:{}", s.peer);
        let data = etcd_dir.join(&s.name);
        common::etcd::etcdctl_restore(&file, &data, &s.name, &cluster, &p, &[]);
    }
    let etcds = common::etcd::start_cluster(&etcd_dir, &specs, &cluster);
    rt().block_on(async {
        for e in &etcds {
            history::check(&want, &e.endpoint, h).await;
        }
    });
    ctl(&etcds[0].endpoint, &["put", "on-etcd", "yes"]);
}

#[test]
fn users_and_roles_travel_with_the_data_both_ways() {
    if !common::etcd::installed("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = common::etcd::start(&dir.path().join("etcd"), free_port(), free_port());
    let ep = etcd.endpoint.clone();
    for args in [
        &["role", "add", "root"][..],
        &["user", "add", "root:rootpw"],
        &["user", "grant-role", "root", "root"],
        &["role", "add", "reader"],
        &["role", "grant-permission", "reader", "read", "/a/", "--prefix"],
        &["user", "add", "alice:secret"],
        &["user", "grant-role", "alice", "reader"],
        &["put", "/a/x", "1"],
    ] {
        ctl(&ep, args);
    }
    let show = |endpoint: &str| {
        ["user list", "role list", "user get alice", "role get reader", "user get root"]
            .map(|c| ctl(endpoint, &c.split(' ').collect::<Vec<_>>()))
    };
    let want = show(&ep);
    let file = dir.path().join("etcd.snapshot");
    ctl(&ep, &["snapshot", "save", file.to_str().unwrap()]);

    // Into ferrokv and out again, into etcd.
    let (client, peer1) = (free_port(), free_port());
    let cluster = format!("r1=http://127.0.0.1:{peer1}");
    let data = dir.path().join("ferrokv");
    restored(&restore(&file, &data, "r1", &cluster, peer1, &[]));
    let m = common::start_with(&data, client, peer1, &["--name", "r1", "--initial-cluster", &cluster]);
    let back = dir.path().join("ferrokv.snapshot");
    ctl(&m.endpoint, &["snapshot", "save", back.to_str().unwrap()]);
    drop(m);
    let (client, peer) = (free_port(), free_port());
    let p = format!("http://127.0.0.1:{peer}");
    let etcd_data = dir.path().join("etcd-again");
    common::etcd::etcdctl_restore(&back, &etcd_data, "default", &format!("default={p}"), &p, &[]);
    let again = common::etcd::start(&etcd_data, client, peer);
    assert_eq!(show(&again.endpoint), want, "users and roles as they were");
    // The password hashes came through: alice logs in and reads what her role allows, and nothing more.
    ctl(&again.endpoint, &["--user", "root:rootpw", "auth", "enable"]);
    let value = ctl(&again.endpoint, &["--user", "alice:secret", "get", "/a/x", "--print-value-only"]);
    assert_eq!(value.trim(), "1");
    let (ok, _, err) = common::etcdctl(&again.endpoint, &["--user", "alice:secret", "put", "/a/y", "2"], None);
    assert!(!ok && err.contains("permission denied"), "{err}");

    // A snapshot with authentication enabled restores with it enabled: alice reads with her old password, root
    // reads everything, and nobody without credentials reads anything.
    ctl(&ep, &["--user", "root:rootpw", "auth", "enable"]);
    let enabled = dir.path().join("enabled.snapshot");
    ctl(&ep, &["--user", "root:rootpw", "snapshot", "save", enabled.to_str().unwrap()]);
    let data = dir.path().join("enabled");
    restored(&restore(&enabled, &data, "r1", &cluster, peer1, &[]));
    let m = common::start_with(&data, free_port(), peer1, &["--name", "r1", "--initial-cluster", &cluster]);
    let value = ctl(&m.endpoint, &["--user", "alice:secret", "get", "/a/x", "--print-value-only"]);
    assert_eq!(value.trim(), "1");
    let (ok, _, err) = common::etcdctl(&m.endpoint, &["--user", "alice:secret", "put", "/a/y", "2"], None);
    assert!(!ok && err.contains("permission denied"), "{err}");
    let (ok, _, err) = common::etcdctl(&m.endpoint, &["get", "/a/x"], None);
    assert!(!ok && err.contains("user name is empty"), "{err}");
}
