//! Cluster state as `etcdctl` 3.4 reports it, side by side: three ferrokv members and three etcd 3.4.23 members
//! (Debian's etcd-server), written to alike, then asked for `endpoint status` (simple, JSON and table, with
//! `--cluster` and with every endpoint given as an `http://` URL, as operators write them), `endpoint health
//! --cluster`, `endpoint hashkv --cluster` and `member list -w table`. On both: every command succeeds, one member
//! leads and every member names it, all share one term and one cluster id, and the Raft index equals the applied
//! index once writes settle. The outputs must be the same once ids, ports, sizes, numbers and timings are masked
//! (member rows compared as sets: which row leads depends on the election).
//!
//! Needs `etcd` and `etcdctl` on PATH (scripts/test.sh installs both; under CI=true their absence is a failure).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::{agreed_leader, launch, specs};
use common::etcd::installed;
use common::etcdctl;
use regex::Regex;

/// The commands compared, each run against every member's `http://` client URL.
const COMMANDS: [&[&str]; 7] = [
    &["endpoint", "status", "--cluster"],
    &["endpoint", "status", "--cluster", "-w", "json"],
    &["endpoint", "status", "--cluster", "-w", "table"],
    &["endpoint", "status"],
    &["endpoint", "health", "--cluster"],
    &["endpoint", "hashkv", "--cluster"],
    &["member", "list", "-w", "table"],
];

/// Masks ids, addresses, sizes, timings and numbers; member rows are sorted (see the module header).
fn mask(text: &str) -> Vec<String> {
    let rules = [
        (r"took = [0-9.]+[µnm]?s", "took = T"),
        (r"127\.0\.0\.1:\d+", "ADDR"),
        (r"\b3\.4\.\d+\b", "3.4.x"),
        (r"[0-9.]+ [kMG]?B\b", "SIZE"),
        (r"\b[0-9a-f]{12,16}\b", "ID"),
        (r"\b\d+\b", "N"),
        // Table column widths follow the (masked) contents.
        (r" {2,}", " "),
        (r"-{2,}", "-"),
    ];
    let mut s = text.to_string();
    for (re, to) in rules {
        s = Regex::new(re).unwrap().replace_all(&s, to).into_owned();
    }
    let mut lines: Vec<String> = s.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// One system's answers: each command's masked output, and what the JSON status says.
struct Report {
    outputs: Vec<Vec<String>>,
}

/// The JSON status of every member: (member id, leader, term, raft index, applied index, cluster id).
fn statuses(endpoints: &str) -> Vec<(u64, u64, u64, u64, u64, u64)> {
    let (ok, out, err) = etcdctl(endpoints, &["endpoint", "status", "--cluster", "-w", "json"], None);
    assert!(ok, "endpoint status: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = &e["Status"];
            let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
            let h = &s["header"];
            (
                n(&h["member_id"]),
                n(&s["leader"]),
                n(&s["raftTerm"]),
                n(&s["raftIndex"]),
                n(&s["raftAppliedIndex"]),
                n(&h["cluster_id"]),
            )
        })
        .collect()
}

/// Writes alike, waits for the cluster to settle, checks the invariants, then runs the commands.
fn report(system: &str, endpoints: &[String]) -> Report {
    let all = endpoints.iter().map(|e| format!("http://{e}")).collect::<Vec<_>>().join(",");
    for (i, e) in endpoints.iter().enumerate() {
        for j in 0..5 {
            let (ok, _, err) = etcdctl(&format!("http://{e}"), &["put", &format!("k{i}-{j}"), "v"], None);
            assert!(ok, "{system}: put through {e}: {err}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = statuses(&all);
        let leaders: BTreeSet<u64> = s.iter().map(|x| x.1).collect();
        let terms: BTreeSet<u64> = s.iter().map(|x| x.2).collect();
        let clusters: BTreeSet<u64> = s.iter().map(|x| x.5).collect();
        let settled = s.iter().all(|x| x.3 == x.4) && s.iter().map(|x| x.3).collect::<BTreeSet<_>>().len() == 1;
        let one_leader = leaders.len() == 1 && s.iter().any(|x| Some(&x.0) == leaders.iter().next());
        if s.len() == 3 && one_leader && terms.len() == 1 && clusters.len() == 1 && settled {
            break;
        }
        assert!(Instant::now() < deadline, "{system}: cluster state never settled: {s:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let outputs = COMMANDS
        .iter()
        .map(|args| {
            let (ok, out, err) = etcdctl(&all, args, None);
            assert!(ok, "{system}: etcdctl {args:?} failed: {err}");
            assert!(!err.contains("Failed to get"), "{system}: etcdctl {args:?}: {err}");
            mask(&out)
        })
        .collect();
    Report { outputs }
}

#[test]
fn endpoint_status_health_hashkv_and_member_list_match_etcd() {
    if !installed("etcd") || !installed("etcdctl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (etcd_specs, etcd_cluster) = specs(3);
    let etcds = common::etcd::start_cluster(&dir.path().join("etcd"), &etcd_specs, &etcd_cluster);
    let etcd = report("etcd", &etcds.iter().map(|e| e.endpoint.clone()).collect::<Vec<_>>());
    drop(etcds);

    let (specs, cluster) = specs(3);
    let members: Vec<common::Member> = specs.iter().map(|s| launch(&dir.path().join("ferrokv"), s, &cluster)).collect();
    let endpoints: Vec<String> = members.iter().map(|m| m.endpoint.clone()).collect();
    // etcd logs its ready line only once a leader is known; ferrokv logs it as soon as it serves.
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(agreed_leader(&endpoints));
    let ours = report("ferrokv", &endpoints);

    for ((args, e), o) in COMMANDS.iter().zip(&etcd.outputs).zip(&ours.outputs) {
        assert_eq!(o, e, "etcdctl {args:?}: ferrokv (left) and etcd (right) differ once masked");
    }
}
