//! ferrokv's backups are etcd's: `etcdctl snapshot save` against ferrokv writes a file that `etcdctl snapshot
//! status` reads (bbolt's integrity check included), and real etcd 3.4.23 starts from what `etcdctl snapshot
//! restore` makes of it, serving the same keys, values, revisions, history since the compaction point, the
//! compaction point itself, leases, and the same HashKV. `ferrokv snapshot status` reports what `etcdctl
//! snapshot status` reports, on ferrokv's backup and on the database etcd's restore wrote.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::etcdctl_ok as ctl;

/// `etcdctl get` of everything at `rev` (0: now) through `endpoint`, as JSON kvs (keys and values base64).
fn dump(endpoint: &str, rev: i64) -> serde_json::Value {
    let rev = format!("--rev={rev}");
    let out = ctl(endpoint, &["get", "", "--from-key", &rev, "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["kvs"].clone()
}

fn etcdctl_status(file: &std::path::Path) -> serde_json::Value {
    let out =
        Command::new("etcdctl").env("ETCDCTL_API", "3").args(["snapshot", "status", "-w", "json"]).arg(file).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ferrokv_status(file: &std::path::Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrokv")).args(["snapshot", "status", "-w", "json"]).arg(file).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn real_etcd_starts_from_a_ferrokv_backup_with_everything() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::start(&dir.path().join("ferrokv"), common::free_port(), common::free_port());
    let ep = m.endpoint.clone();
    // History: 300 keys, a third rewritten, some deleted, a compaction in the middle, a lease with keys.
    for i in 0..300 {
        ctl(&ep, &["put", &format!("k{i:04}"), &format!("v{i}")]);
    }
    let middle: i64 = {
        let s: serde_json::Value = serde_json::from_str(&ctl(&ep, &["endpoint", "status", "-w", "json"])).unwrap();
        s[0]["Status"]["header"]["revision"].as_i64().unwrap()
    };
    for i in (0..300).step_by(3) {
        ctl(&ep, &["put", &format!("k{i:04}"), &format!("again-{i}")]);
    }
    for i in (0..300).step_by(10) {
        ctl(&ep, &["del", &format!("k{i:04}")]);
    }
    ctl(&ep, &["compact", &(middle - 50).to_string()]);
    let lease = ctl(&ep, &["lease", "grant", "3600"]).split_whitespace().nth(1).unwrap().to_string();
    ctl(&ep, &["put", "leased", "yes", &format!("--lease={lease}")]);
    let last = {
        let s: serde_json::Value = serde_json::from_str(&ctl(&ep, &["endpoint", "status", "-w", "json"])).unwrap();
        s[0]["Status"]["header"]["revision"].as_i64().unwrap()
    };

    // Save through etcdctl; status reads it.
    let file = dir.path().join("backup.db");
    ctl(&ep, &["snapshot", "save", file.to_str().unwrap()]);
    let status = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "status", "-w", "json"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["revision"].as_i64(), Some(last));
    assert_eq!(ferrokv_status(&file), status, "ferrokv snapshot status reads the backup as etcdctl does");

    // Restore with etcdctl; real etcd serves it.
    let restored = dir.path().join("etcd");
    let peer = format!("http://127.0.0.1:{}", common::free_port());
    common::etcd::etcdctl_restore(&file, &restored, "r1", &format!("r1={peer}"), &peer, &[]);
    // The database etcd's restore wrote (bbolt by Go): ferrokv's status reads it as etcdctl does.
    let etcd_db = restored.join("member").join("snap").join("db");
    assert_eq!(ferrokv_status(&etcd_db), etcdctl_status(&etcd_db));
    let client = common::free_port();
    let c = format!("http://127.0.0.1:{client}");
    let mut etcd = Command::new("etcd")
        .args(["--data-dir", restored.to_str().unwrap(), "--name", "r1", "--listen-client-urls", &c])
        .args(["--advertise-client-urls", &c, "--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("r1={peer}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(std::mem::replace(&mut etcd, Command::new("true").spawn().unwrap()));
    let etcd_ep = format!("127.0.0.1:{client}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !common::etcdctl(&etcd_ep, &["endpoint", "health"], None).0 {
        assert!(Instant::now() < deadline, "etcd did not start from the restored backup");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(dump(&etcd_ep, 0), dump(&ep, 0), "the current keys");
    for rev in [middle - 50, middle, middle + 40, last - 1] {
        assert_eq!(dump(&etcd_ep, rev), dump(&ep, rev), "the keys at revision {rev}");
    }
    let (ok, _, err) = common::etcdctl(&etcd_ep, &["get", "k0001", &format!("--rev={}", middle - 51)], None);
    assert!(!ok && err.contains("required revision has been compacted"), "the compaction point: {err}");
    let hash = |endpoint: &str| {
        let v: serde_json::Value = serde_json::from_str(&ctl(endpoint, &["endpoint", "hashkv", "-w", "json"])).unwrap();
        (v[0]["HashKV"]["hash"].as_u64(), v[0]["HashKV"]["compact_revision"].as_i64())
    };
    assert_eq!(hash(&etcd_ep), hash(&ep), "HashKV");
    assert!(ctl(&etcd_ep, &["lease", "list"]).contains(&lease), "the lease");
    let ttl = ctl(&etcd_ep, &["lease", "timetolive", &lease, "--keys"]);
    assert!(ttl.contains("leased"), "the lease's keys: {ttl}");
}
