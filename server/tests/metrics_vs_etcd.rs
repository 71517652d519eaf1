//! /metrics against etcd 3.4.23's: after the same steps on a fresh one-member ferrokv and a fresh etcd (puts, a
//! read, a lease granted, kept alive and revoked, a defragmentation, a snapshot, a health check), every family
//! both export (with `--metrics=extensive`) has the same type, label names and buckets, the families etcd's dashboards and the issue name are
//! exported with data, and the counts that follow from the steps are etcd's.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{etcdctl_ok, free_port, http_get};

/// A family as scraped: its type, its label names (but `le`), its histogram buckets, and its samples.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
    buckets: BTreeSet<String>,
    samples: Vec<(String, f64)>,
}

fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            out.entry(name.to_string()).or_default().kind = kind.to_string();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| out.get(*f).is_some_and(|f| f.kind == "histogram")))
            .unwrap_or(name);
        let f = out.entry(family.to_string()).or_default();
        for pair in labels.trim_end_matches('}').split("\",").filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap();
            if k == "le" {
                // As numbers: Go writes 1048576 as 1.048576e+06 (Prometheus reads either).
                let v = v.trim_matches('"');
                f.buckets.insert(v.parse::<f64>().map_or(v.to_string(), |b| b.to_string()));
            } else {
                f.labels.insert(k.to_string());
            }
        }
        f.samples.push((series.to_string(), value.parse().unwrap_or(f64::NAN)));
    }
    out
}

/// The steps, through etcdctl and curl; then the scrape.
fn run_steps(endpoint: &str, dir: &std::path::Path) -> BTreeMap<String, Family> {
    // A watcher that stays (it sees the two puts).
    let mut watcher = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args([&format!("--endpoints={endpoint}"), "watch", "--prefix", ""])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = std::io::BufReader::new(watcher.stdout.take().unwrap());
    std::thread::sleep(std::time::Duration::from_millis(500));
    etcdctl_ok(endpoint, &["put", "a", "1"]);
    etcdctl_ok(endpoint, &["put", "b", "2"]);
    etcdctl_ok(endpoint, &["put", "a", "3"]);
    // Revision 4: a@2 goes (etcd's compaction runs in the background; --physical waits for it).
    etcdctl_ok(endpoint, &["compact", "4", "--physical"]);
    etcdctl_ok(endpoint, &["endpoint", "hashkv"]);
    etcdctl_ok(endpoint, &["get", "a"]);
    let granted = etcdctl_ok(endpoint, &["lease", "grant", "600"]);
    let id = granted.split_whitespace().nth(1).expect("lease <id> granted with TTL(600s)").to_string();
    etcdctl_ok(endpoint, &["lease", "keep-alive", "--once", &id]);
    etcdctl_ok(endpoint, &["lease", "revoke", &id]);
    etcdctl_ok(endpoint, &["defrag"]);
    etcdctl_ok(endpoint, &["snapshot", "save", dir.join("snap.db").to_str().unwrap()]);
    assert_eq!(http_get(endpoint, "/health").0, 200);
    // The watcher has printed the three puts (event type, key, value each) before the scrape.
    let mut line = String::new();
    for _ in 0..9 {
        line.clear();
        std::io::BufRead::read_line(&mut seen, &mut line).unwrap();
    }
    assert_eq!(line.trim(), "3");
    // curl, as etcd answers a large body in chunks.
    let out = std::process::Command::new("curl").args(["-sf", &format!("http://{endpoint}/metrics")]).output().unwrap();
    assert!(out.status.success(), "scrape {endpoint}");
    let _ = watcher.kill();
    let _ = watcher.wait();
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// Families ferrokv exports with data after the steps (each etcd 3.4.23's, same name and meaning).
const EXPORTED: &[&str] = &[
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_is_learner",
    "etcd_server_heartbeat_send_failures_total",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total",
    "etcd_server_health_success",
    "etcd_server_health_failures",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_mvcc_put_total",
    "etcd_mvcc_range_total",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_disk_backend_defrag_duration_seconds",
    "etcd_disk_backend_snapshot_duration_seconds",
    "etcd_disk_defrag_inflight",
    "etcd_network_client_grpc_received_bytes_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "etcd_debugging_lease_granted_total",
    "etcd_debugging_lease_renewed_total",
    "etcd_debugging_lease_revoked_total",
    "etcd_debugging_lease_ttl_total",
    "etcd_debugging_server_lease_expired_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "grpc_server_msg_received_total",
    "grpc_server_msg_sent_total",
    "etcd_debugging_mvcc_watch_stream_total",
    "etcd_debugging_mvcc_watcher_total",
    "etcd_debugging_mvcc_slow_watcher_total",
    "etcd_debugging_mvcc_events_total",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_virtual_memory_max_bytes",
    "process_open_fds",
    "process_max_fds",
    "process_start_time_seconds",
    "os_fd_used",
    "os_fd_limit",
    "etcd_server_slow_apply_total",
    "etcd_server_snapshot_apply_in_progress_total",
    "etcd_server_learner_promote_successes",
    "etcd_server_read_indexes_failed_total",
    "etcd_server_client_requests_total",
    "etcd_debugging_mvcc_put_total",
    "etcd_debugging_mvcc_range_total",
    "etcd_debugging_mvcc_delete_total",
    "etcd_debugging_mvcc_txn_total",
    "etcd_mvcc_hash_duration_seconds",
    "etcd_mvcc_hash_rev_duration_seconds",
    "etcd_snap_db_save_total_duration_seconds",
    "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
    "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
    "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
    "etcd_debugging_mvcc_db_compaction_keys_total",
    "etcd_debugging_mvcc_total_put_size_in_bytes",
    "etcd_debugging_auth_revision",
];

fn value(f: &BTreeMap<String, Family>, series: &str) -> f64 {
    f.values().flat_map(|f| &f.samples).find(|(s, _)| s == series).map_or(f64::NAN, |(_, v)| *v)
}

#[test]
fn families_match_etcd_and_follow_the_steps() {
    if !common::etcd::installed("etcd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Extensive: with the gRPC handling-time histograms (etcd's dashboards' and alerts' request latencies).
    let extensive = ["--metrics", "extensive"];
    let m = common::start_with(&dir.path().join("ferrokv"), free_port(), free_port(), &extensive);
    let e = common::etcd::start_with(&dir.path().join("etcd"), free_port(), free_port(), &extensive);
    let ours = run_steps(&m.endpoint, dir.path());
    let theirs = run_steps(&e.endpoint, dir.path());

    let mut differ = Vec::new();
    for (name, f) in &ours {
        let Some(t) = theirs.get(name) else { continue };
        if (&f.kind, &f.labels) != (&t.kind, &t.labels) || (f.kind == "histogram" && f.buckets != t.buckets) {
            differ.push(format!("{name}: ours {f:?}\n  etcd's {t:?}"));
        }
    }
    assert!(differ.is_empty(), "families that differ from etcd's:\n{}", differ.join("\n"));
    for name in EXPORTED {
        let f = ours.get(*name).unwrap_or_else(|| panic!("{name} is not exported"));
        assert!(!f.samples.is_empty(), "{name} has no samples");
        assert!(theirs.contains_key(*name), "{name} is not etcd's");
    }
    // The counts the steps determine, as etcd counts them.
    for series in [
        "etcd_debugging_lease_granted_total",
        "etcd_debugging_lease_revoked_total",
        "etcd_debugging_lease_renewed_total",
        "etcd_debugging_lease_ttl_total_count",
        "etcd_disk_backend_defrag_duration_seconds_count",
        "etcd_disk_backend_snapshot_duration_seconds_count",
        "etcd_disk_defrag_inflight",
        "etcd_server_proposals_failed_total",
        "etcd_server_health_failures",
        "etcd_server_is_learner",
        "etcd_server_heartbeat_send_failures_total",
        "process_virtual_memory_max_bytes",
        "etcd_debugging_mvcc_watch_stream_total",
        "etcd_debugging_mvcc_watcher_total",
        "etcd_debugging_mvcc_slow_watcher_total",
        "etcd_debugging_mvcc_events_total",
        "etcd_server_slow_apply_total",
        "etcd_server_snapshot_apply_in_progress_total",
        "etcd_server_learner_promote_successes",
        "etcd_server_read_indexes_failed_total",
        "etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds_count",
        "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_count",
        "etcd_debugging_mvcc_db_compaction_keys_total",
        "etcd_debugging_mvcc_total_put_size_in_bytes",
        "etcd_mvcc_hash_rev_duration_seconds_count",
        "etcd_debugging_auth_revision",
        r#"etcd_server_client_requests_total{client_api_version="3.4",type="unary"}"#,
        r#"etcd_server_client_requests_total{client_api_version="3.4",type="stream"}"#,
        r#"grpc_server_msg_received_total{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#,
        r#"grpc_server_msg_sent_total{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#,
        r#"grpc_server_handling_seconds_count{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#,
        r#"grpc_server_msg_sent_total{grpc_method="LeaseKeepAlive",grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"}"#,
        r#"grpc_server_msg_received_total{grpc_method="LeaseKeepAlive",grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"}"#,
    ] {
        assert_eq!(value(&ours, series), value(&theirs, series), "{series}");
    }
    let snapshot_messages = r#"grpc_server_msg_sent_total{grpc_method="Snapshot",grpc_service="etcdserverpb.Maintenance",grpc_type="server_stream"}"#;
    assert!(value(&ours, snapshot_messages) >= 2.0, "a snapshot is sent as several messages");
    for series in ["etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total"] {
        assert!(value(&ours, series) > 500.0, "{series}: {}", value(&ours, series));
    }
    assert!(value(&ours, "etcd_disk_backend_commit_duration_seconds_count") >= 4.0);
    assert!(value(&ours, "process_resident_memory_bytes") > 1e6);
    assert!(value(&ours, "os_fd_used") >= 5.0 && value(&ours, "os_fd_limit") >= value(&ours, "os_fd_used"));
}
