//! The real `etcdctl` 3.4 (Debian's etcd-client) against a ferrokv process: each expectation is what etcd 3.4.23
//! prints for the same command. Needs etcdctl on PATH (CI installs it; elsewhere the test says so and skips).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Member, free_port, start};

/// Runs etcdctl against `m`; returns (success, stdout, stderr).
fn ctl(m: &Member, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    common::etcdctl(&m.endpoint, args, stdin)
}

fn ok(m: &Member, args: &[&str]) -> String {
    let (success, out, err) = ctl(m, args, None);
    assert!(success, "etcdctl {args:?} failed: {err}");
    out
}

fn have_etcdctl() -> bool {
    if Command::new("etcdctl").arg("version").output().is_ok() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "CI installs etcdctl (scripts/test.sh); it must be on PATH");
    eprintln!("skipping: etcdctl is not installed (apt-get install etcd-client)");
    false
}

#[test]
fn etcdctl_kv_txn_compaction_status_and_restart() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (client, peer) = (free_port(), free_port());
    let m = start(&data, client, peer);

    assert_eq!(ok(&m, &["put", "foo", "bar"]), "OK\n");
    assert_eq!(ok(&m, &["get", "foo"]), "foo\nbar\n");
    let json: serde_json::Value = serde_json::from_str(&ok(&m, &["get", "foo", "-w", "json"])).unwrap();
    let kv = &json["kvs"][0];
    assert_eq!(
        (kv["create_revision"].as_i64(), kv["mod_revision"].as_i64(), kv["version"].as_i64()),
        (Some(2), Some(2), Some(1))
    );
    assert_eq!(json["header"]["revision"].as_i64(), Some(2), "the first write is revision 2, as in etcd");
    assert_eq!(ok(&m, &["put", "foo", "baz", "--prev-kv"]), "OK\nfoo\nbar\n");
    assert_eq!(ok(&m, &["get", "foo", "--print-value-only"]), "baz\n");
    assert_eq!(ok(&m, &["del", "foo"]), "1\n");
    assert_eq!(ok(&m, &["get", "foo"]), "");
    assert_eq!(ok(&m, &["del", "foo"]), "0\n");

    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")] {
        ok(&m, &["put", k, v]);
    }
    assert_eq!(ok(&m, &["get", "a", "c"]), "a\n1\nb\n2\n");
    assert_eq!(ok(&m, &["get", "b", "--from-key", "--keys-only"]), "b\n\nc\n\nd\n\n");
    assert_eq!(ok(&m, &["get", "", "--prefix", "--limit", "2", "--keys-only"]), "a\n\nb\n\n");
    assert_eq!(
        ok(&m, &["get", "", "--prefix", "--sort-by", "MODIFY", "--order", "DESCEND", "--keys-only"]),
        "d\n\nc\n\nb\n\na\n\n"
    );

    let (success, out, _) = ctl(&m, &["txn"], Some("value(\"a\") = \"1\"\n\nput e 5\n\nput f 6\n\n"));
    assert!(success);
    assert_eq!(out, "SUCCESS\n\nOK\n");
    let (_, out, _) = ctl(&m, &["txn"], Some("mod(\"a\") > \"1000\"\n\nput e 5\n\nput f 6\n\n"));
    assert_eq!(out, "FAILURE\n\nOK\n");
    assert_eq!(ok(&m, &["get", "f", "--print-value-only"]), "6\n");

    let rev =
        serde_json::from_str::<serde_json::Value>(&ok(&m, &["get", "a", "-w", "json"])).unwrap()["header"]["revision"]
            .as_i64()
            .unwrap();
    assert_eq!(ok(&m, &["compaction", &rev.to_string()]), format!("compacted revision {rev}\n"));
    let (success, _, err) = ctl(&m, &["get", "a", &format!("--rev={}", rev - 1)], None);
    assert!(!success && err.contains("etcdserver: mvcc: required revision has been compacted"), "{err}");
    let (success, _, err) = ctl(&m, &["get", "a", "--rev=100000"], None);
    assert!(!success && err.contains("etcdserver: mvcc: required revision is a future revision"), "{err}");
    let big = "x".repeat(1_600_000);
    let (success, _, err) = ctl(&m, &["put", "big"], Some(&big));
    assert!(!success && err.contains("etcdserver: request is too large"), "{err}");

    let status: serde_json::Value = serde_json::from_str(&ok(&m, &["endpoint", "status", "-w", "json"])).unwrap();
    let s = &status[0]["Status"];
    assert_eq!(s["leader"], s["header"]["member_id"], "a single member leads itself");
    assert!(s["dbSize"].as_i64().unwrap() > 0 && s["raftAppliedIndex"].as_u64().unwrap() > 0);
    let members = ok(&m, &["member", "list"]);
    assert!(
        members.contains(", started, default, ") && members.contains(&format!("http://127.0.0.1:{peer}")),
        "{members}"
    );
    // move-leader: to the leader itself succeeds at once (as in etcd); to a stranger is etcd's error.
    let id = members.split(',').next().unwrap().trim();
    assert_eq!(ok(&m, &["move-leader", id]).trim(), format!("Leadership transferred from {id} to {id}"));
    let (success, _, err) = ctl(&m, &["move-leader", "1234"], None);
    assert!(!success && err.contains("Error: etcdserver: bad leader transferee"), "{err}");

    // snapshot save: etcd's framing (pages, then their SHA-256), and the pages are etcd's bbolt file holding the
    // data (its `key` bucket's latest revision of "f" holds 6).
    let snap = dir.path().join("snap.db");
    let (success, _, err) = ctl(&m, &["snapshot", "save", snap.to_str().unwrap()], None);
    assert!(success, "{err}");
    let bytes = std::fs::read(&snap).unwrap();
    let (pages, digest) = bytes.split_at(bytes.len() - 32);
    assert_eq!(pages.len() % 512, 0);
    use sha2::Digest;
    assert_eq!(sha2::Sha256::digest(pages).as_slice(), digest, "the trailer is the pages' SHA-256");
    let copy = dir.path().join("copy.db");
    std::fs::write(&copy, pages).unwrap();
    let file = bbolt::Reader::open(&copy).unwrap();
    let mut latest_f = None;
    file.for_each(b"key", &mut |_, v| {
        use prost::Message;
        let kv = server::proto::mvccpb::KeyValue::decode(v).unwrap();
        if kv.key == b"f" {
            latest_f = Some(kv.value);
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(latest_f.as_deref(), Some(&b"6"[..]), "the snapshot holds the data");

    // SIGKILL and restart: everything acknowledged is there and revisions go on from where they were.
    drop(m);
    let m = start(&data, client, peer);
    assert_eq!(ok(&m, &["get", "f", "--print-value-only"]), "6\n");
    let json: serde_json::Value = serde_json::from_str(&ok(&m, &["put", "g", "7", "-w", "json"])).unwrap();
    assert_eq!(json["header"]["revision"].as_i64(), Some(rev + 1), "revisions continue after a restart");
}

/// Runs etcdctl with `args` (a command that does not exit by itself: watch, elect), runs `then` once it has had
/// time to start, and collects its output until it has printed `lines` lines (or 15 s passed); then stops it.
fn lines_of(m: &Member, args: &[&str], lines: usize, then: impl FnOnce()) -> Vec<String> {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", m.endpoint))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Give a watcher time to be created before the writes it should see.
    std::thread::sleep(Duration::from_millis(700));
    then();
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while got.len() < lines {
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(l) => got.push(l),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    got
}

/// `etcdctl watch ARGS...` (see [`lines_of`]).
fn watch_lines(m: &Member, args: &[&str], lines: usize, then: impl FnOnce()) -> Vec<String> {
    let mut all = vec!["watch"];
    all.extend_from_slice(args);
    lines_of(m, &all, lines, then)
}

#[test]
fn etcdctl_watch_live_historical_and_compacted() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = start(&dir.path().join("data"), free_port(), free_port());
    ok(&m, &["put", "other", "x"]);
    let first = serde_json::from_str::<serde_json::Value>(&ok(&m, &["put", "w/a", "1", "-w", "json"])).unwrap()["header"]["revision"]
        .as_i64()
        .unwrap();

    // Live, on a prefix, with previous values: etcdctl prints the type, the previous pair, then the new pair.
    let live = watch_lines(&m, &["w/", "--prefix", "--prev-kv"], 10, || {
        ok(&m, &["put", "w/a", "2"]);
        ok(&m, &["put", "unwatched", "y"]);
        ok(&m, &["del", "w/a"]);
    });
    assert_eq!(live, ["PUT", "w/a", "1", "w/a", "2", "DELETE", "w/a", "2", "w/a", ""].map(String::from).to_vec());

    // Historical: from the first write under the prefix, every event since, in order.
    let history = watch_lines(&m, &["w/", "--prefix", &format!("--rev={first}")], 9, || {});
    assert_eq!(history, ["PUT", "w/a", "1", "PUT", "w/a", "2", "DELETE", "w/a", ""].map(String::from).to_vec());

    // Below the compaction point the watch is canceled with the compacted revision.
    let rev = serde_json::from_str::<serde_json::Value>(&ok(&m, &["get", "other", "-w", "json"])).unwrap()["header"]["revision"]
        .as_i64()
        .unwrap();
    ok(&m, &["compaction", &rev.to_string()]);
    let (success, out, err) = ctl(&m, &["watch", "w/", "--prefix", &format!("--rev={first}")], None);
    assert!(!success || err.contains("compacted") || out.contains("compacted"), "out {out:?} err {err:?}");
    assert!(format!("{out}{err}").contains("required revision has been compacted"), "out {out:?} err {err:?}");
}

#[test]
fn etcdctl_leases_expiry_lock_and_elect() {
    if !have_etcdctl() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = start(&dir.path().join("data"), free_port(), free_port());
    let granted = ok(&m, &["lease", "grant", "30"]);
    assert!(granted.starts_with("lease ") && granted.ends_with(" granted with TTL(30s)\n"), "{granted}");
    let id = granted.split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(ok(&m, &["put", "k", "v", &format!("--lease={id}")]), "OK\n");
    let ttl = ok(&m, &["lease", "timetolive", &id, "--keys"]);
    assert!(
        ttl.starts_with(&format!("lease {id} granted with TTL(30s), remaining("))
            && ttl.ends_with("attached keys([k])\n"),
        "{ttl}"
    );
    assert_eq!(ok(&m, &["lease", "list"]), format!("found 1 leases\n{id}\n"));
    assert_eq!(ok(&m, &["lease", "keep-alive", "--once", &id]), format!("lease {id} keepalived with TTL(30)\n"));
    let (success, _, err) = ctl(&m, &["put", "x", "y", "--lease=1234"], None);
    assert!(!success && err.contains("etcdserver: requested lease not found"), "{err}");
    assert_eq!(ok(&m, &["lease", "revoke", &id]), format!("lease {id} revoked\n"));
    assert_eq!(ok(&m, &["get", "k"]), "", "revoking a lease deletes its keys");
    assert_eq!(ok(&m, &["lease", "timetolive", &id]), format!("lease {id} already expired\n"));

    // Expiry is decided by the leader and applied through Raft: the key goes, and so does the lease.
    let short = ok(&m, &["lease", "grant", "1"]);
    let short_id = short.split_whitespace().nth(1).unwrap().to_string();
    ok(&m, &["put", "short", "v", &format!("--lease={short_id}")]);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !ok(&m, &["get", "short"]).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the lease never expired");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(ok(&m, &["lease", "list"]), "found 0 leases\n");

    // The client-side recipes built on leases, transactions and watches.
    assert_eq!(ok(&m, &["lock", "mylock", "echo", "locked-and-ran"]), "locked-and-ran\n");
    let elect = lines_of(&m, &["elect", "myelection", "candidate1"], 1, || {});
    assert_eq!(elect.first().map(|l| l.starts_with("myelection/")), Some(true), "{elect:?}");
}
