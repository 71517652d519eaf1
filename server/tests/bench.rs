//! `ferrokv cluster` and `ferrokv bench` end to end: a one-member cluster started by the launcher (which refuses a
//! second cluster on taken ports, naming the member and role), then short benchmark runs against it: `put --json`
//! whose figures add up and whose keys are on the server, `range` in etcd's text layout, `txn-put`, `txn-mixed`,
//! `watch` and `watch-latency` (every watcher sees every event) and `lease-keepalive`; then `status`, `stop`, `clean`.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};

use server::proto::etcdserverpb::{RangeRequest, kv_client::KvClient};

fn ferrokv(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferrokv")).args(args).stdin(Stdio::null()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(args: &[&str]) -> String {
    let (success, out, err) = ferrokv(args);
    assert!(success, "ferrokv {args:?} failed: {err}");
    out
}

/// A port p with p+1 free too.
fn free_pair() -> u16 {
    loop {
        let p = common::free_port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

/// Stops the cluster in `dir` when dropped (a failing test must not leave members running).
struct Stop(String);

impl Drop for Stop {
    fn drop(&mut self) {
        let _ = ferrokv(&["cluster", "--dir", &self.0, "clean"]);
    }
}

#[test]
fn cluster_launcher_and_benchmarks_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c1").to_string_lossy().into_owned();
    let base = free_pair();
    let _stop = Stop(dir.clone());
    let started = ok(&["cluster", "--dir", &dir, "start", "1", "--base-port", &base.to_string()]);
    let endpoint = format!("127.0.0.1:{base}");
    assert!(started.contains(&format!("endpoints: {endpoint}")), "{started}");

    // Taken ports are refused, naming the member and the role.
    let other = tmp.path().join("c2").to_string_lossy().into_owned();
    let (success, _, err) = ferrokv(&["cluster", "--dir", &other, "start", "1", "--base-port", &base.to_string()]);
    assert!(!success && err.contains(&format!("port {base} (client URL of m1) is in use")), "{err}");

    // put --json: 400 sequential keys from 4 clients on 2 connections.
    let e = ["bench", "--endpoints", &endpoint, "--clients", "4", "--conns", "2"];
    let put =
        ok(&[&e[..], &["--json", "put", "--total", "400", "--key-space-size", "400", "--sequential-keys"]].concat());
    let j: serde_json::Value = serde_json::from_str(put.trim()).expect("one JSON object");
    assert_eq!((j["op"].as_str(), j["requests"].as_u64(), j["errors"].as_u64()), (Some("put"), Some(400), Some(0)));
    let hist: u64 = j["histogram"].as_array().unwrap().iter().map(|b| b["count"].as_u64().unwrap()).sum();
    assert_eq!(hist, 400, "the histogram counts every request once");
    let p = |k: &str| j["percentiles_secs"][k].as_f64().unwrap();
    assert!(p("10") <= p("50") && p("50") <= p("99") && p("99") <= j["slowest_secs"].as_f64().unwrap());
    let rps = j["requests_per_sec"].as_f64().unwrap();
    assert!((rps - 400.0 / j["total_secs"].as_f64().unwrap()).abs() < 1e-6 && rps > 0.0);
    let keys = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
        let mut kv = KvClient::connect(format!("http://{endpoint}")).await.unwrap();
        let r = RangeRequest { key: vec![0], range_end: vec![0], count_only: true, ..Default::default() };
        kv.range(r).await.unwrap().into_inner().count
    });
    assert_eq!(keys, 400, "the 400 distinct keys are on the server");

    // range in etcd's layout.
    let range = ok(&[&e[..], &["range", "foo", "--total", "300", "--consistency", "s"]].concat());
    let sections = ["\nSummary:\n  Total:\t", "\nResponse time histogram:\n", "\nLatency distribution:\n  10% in "];
    let mut at = 0;
    for s in sections {
        at = at + range[at..].find(s).unwrap_or_else(|| panic!("{s:?} missing or out of order in:\n{range}"));
    }
    assert_eq!(range.matches('|').count(), 11, "eleven histogram buckets");

    for args in [
        &["txn-put", "--total", "200", "--txn-ops", "2", "--key-space-size", "1000"][..],
        &["txn-mixed", "foo", "--total", "200", "--rw-ratio", "2"],
        &["lease-keepalive", "--total", "200"],
    ] {
        let j: serde_json::Value =
            serde_json::from_str(ok(&[&e[..], &["--json"], args].concat()).lines().last().unwrap()).unwrap();
        assert_eq!(j["errors"].as_u64(), Some(0), "{args:?}: {j}");
    }
    let w =
        ok(&[&e[..], &["--json", "watch", "--streams", "2", "--watch-per-stream", "5", "--put-total", "50"]].concat());
    let w: serde_json::Value = serde_json::from_str(w.trim()).unwrap();
    assert_eq!(w["events_received"], w["events_expected"]);
    assert_eq!(w["events_expected"].as_u64(), Some(500), "10 watchers on the one key see 50 puts each");
    let wl = ok(&[
        &e[..],
        &[
            "--json",
            "watch-latency",
            "--streams",
            "2",
            "--watchers-per-stream",
            "3",
            "--put-total",
            "40",
            "--put-rate",
            "200",
        ],
    ]
    .concat());
    let wl: serde_json::Value = serde_json::from_str(wl.trim()).unwrap();
    assert_eq!(wl["events"]["requests"].as_u64(), Some(240), "6 watchers × 40 puts, each event timed");

    let status = ok(&["cluster", "--dir", &dir, "status"]);
    assert!(status.contains("running") && status.contains("leader"), "{status}");
    ok(&["cluster", "--dir", &dir, "stop"]);
    assert!(ok(&["cluster", "--dir", &dir, "status"]).contains("stopped"));
    ok(&["cluster", "--dir", &dir, "clean"]);
    assert!(!std::path::Path::new(&dir).exists());
}
