//! /metrics and /health, on the client URL and on --listen-metrics-urls: etcd's series names, values that follow
//! the member's state, and no proposal left pending once requests are answered.

mod common;

use common::{free_port, http_get as get, metric_value as value, start_with};
use server::proto::etcdserverpb::{PutRequest, RangeRequest, kv_client::KvClient};

#[test]
fn metrics_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let metrics_url = format!("http://{metrics_addr}");
    let m = start_with(&dir.path().join("data"), free_port(), free_port(), &["--listen-metrics-urls", &metrics_url]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut kv = KvClient::connect(format!("http://{}", m.endpoint)).await.unwrap();
        for i in 0..20 {
            let key = format!("k{i}").into_bytes();
            kv.put(PutRequest { key: key.clone(), value: vec![b'v'; 100], ..Default::default() }).await.unwrap();
            // Linearizable reads go through ReadIndex.
            kv.range(RangeRequest { key, ..Default::default() }).await.unwrap();
        }
    });

    let (code, health) = get(&m.endpoint, "/health");
    assert_eq!((code, health.as_str()), (200, "{\"health\":\"true\"}"));
    for addr in [m.endpoint.as_str(), metrics_addr.as_str()] {
        let (code, text) = get(addr, "/metrics");
        assert_eq!(code, 200, "{addr}");
        assert_eq!(value(&text, "etcd_server_has_leader"), 1.0);
        assert_eq!(value(&text, "etcd_server_is_leader"), 1.0);
        assert!(value(&text, "etcd_server_leader_changes_seen_total") >= 1.0);
        assert_eq!(value(&text, "etcd_debugging_mvcc_current_revision"), 21.0);
        // The member's own proposals (publishing itself, the cluster version) may be under way at start on a busy
        // machine: the table drains.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while value(&get(addr, "/metrics").1, "etcd_server_proposals_pending") != 0.0 {
            assert!(std::time::Instant::now() < deadline, "proposals still pending: {text}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let applied = value(&text, "etcd_server_proposals_applied_total");
        assert!(applied >= 21.0 && applied <= value(&text, "etcd_server_proposals_committed_total"));
        let fsyncs = value(&text, "etcd_disk_wal_fsync_duration_seconds_count");
        assert!(fsyncs >= 20.0, "{fsyncs} fsyncs for 20 sequential acknowledged puts");
        assert!(value(&text, "etcd_disk_wal_write_bytes_total") > 2000.0);
        assert!(
            value(&text, "etcd_mvcc_db_total_size_in_bytes") >= value(&text, "etcd_mvcc_db_total_size_in_use_in_bytes")
        );
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"}"));
        assert!(text.contains("# TYPE etcd_disk_wal_fsync_duration_seconds histogram"));
    }
    // The metrics-only listener serves no gRPC.
    let (code, _) = get(&metrics_addr, "/etcdserverpb.KV/Range");
    assert_eq!(code, 404);
}

/// The lines etcd 3.4's e2e `metricsTest` reads (all but the version it pins), after the same steps: a put, then
/// six rounds of a put, a delete and an `etcdctl watch` from revision 1 that the client ends.
#[test]
fn the_series_etcd_e2e_metrics_test_reads() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let m = common::start(&dir.path().join("data"), free_port(), free_port());
    let ctl = |args: &[&str]| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (ok, out, err) = common::etcdctl(&m.endpoint, args, None);
            if ok {
                return out;
            }
            assert!(std::time::Instant::now() < deadline, "{args:?}: {err}");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    ctl(&["put", "k", "v"]);
    for i in 1..=6 {
        ctl(&["put", &i.to_string(), "v"]);
        assert_eq!(ctl(&["del", &i.to_string()]).trim(), "1");
        let mut watch = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([&format!("--endpoints={}", m.endpoint), "watch", "k", "--rev", "1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let lines: Vec<String> =
            BufReader::new(watch.stdout.take().unwrap()).lines().take(3).map(|l| l.unwrap()).collect();
        assert_eq!(lines, ["PUT", "k", "v"]);
        watch.kill().unwrap();
        watch.wait().unwrap();
        if i == 1 {
            let (_, text) = get(&m.endpoint, "/metrics");
            assert_eq!(value(&text, "etcd_mvcc_put_total"), 2.0, "{text}");
        }
    }
    // The server sees each cancelled watch stream end.
    let canceled = r#"grpc_server_handled_total{grpc_code="Canceled",grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"} 6"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let text = loop {
        let (_, text) = get(&m.endpoint, "/metrics");
        if text.contains(canceled) || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(text.contains(canceled), "{text}");
    assert_eq!(value(&text, "etcd_mvcc_put_total"), 7.0);
    assert_eq!(value(&text, "etcd_mvcc_delete_total"), 6.0);
    assert_eq!(value(&text, "etcd_debugging_mvcc_keys_total"), 1.0);
    assert!(text.contains(r#"etcd_cluster_version{cluster_version="3.4"} 1"#), "{text}");
    assert!(text.contains(r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"} 7"#), "{text}");
    assert!(text.contains(r#"grpc_server_started_total{grpc_method="Watch",grpc_service="etcdserverpb.Watch",grpc_type="bidi_stream"} 6"#), "{text}");
    let (code, health) = get(&m.endpoint, "/health");
    assert_eq!((code, health.as_str()), (200, r#"{"health":"true"}"#));
}

/// The value of the series whose name and labels are exactly `series` (NaN if there is none).
fn labelled(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(f64::NAN, |v| v.parse().unwrap())
}

/// rafthttp's peer series on a three-member cluster: bytes both ways and an active connection per peer, then,
/// once a peer is killed, send failures, a disconnection and no active connection to it.
#[test]
fn peer_series_follow_the_cluster() {
    use common::cluster::{launch, specs, status};
    let dir = tempfile::tempdir().unwrap();
    let (specs, cluster) = specs(3);
    let mut members: Vec<_> = specs.iter().map(|s| launch(dir.path(), s, &cluster)).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ids: Vec<u64> = members
        .iter()
        .map(|m| {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            loop {
                match rt.block_on(status(&m.endpoint)) {
                    Some((id, leader)) if leader != 0 => break id,
                    _ if std::time::Instant::now() > deadline => panic!("{} has no leader", m.endpoint),
                    _ => std::thread::sleep(std::time::Duration::from_millis(100)),
                }
            }
        })
        .collect();
    for i in 0..10 {
        common::etcdctl_ok(&members[0].endpoint, &["put", &format!("k{i}"), "v"]);
    }
    let me = format!("{:x}", ids[0]);
    let text = get(&members[0].endpoint, "/metrics").1;
    for id in &ids[1..] {
        let id = format!("{id:x}");
        assert!(labelled(&text, &format!("etcd_network_peer_sent_bytes_total{{To=\"{id}\"}}")) > 0.0, "{text}");
        assert!(labelled(&text, &format!("etcd_network_peer_received_bytes_total{{From=\"{id}\"}}")) > 0.0);
        assert_eq!(labelled(&text, &format!("etcd_network_active_peers{{Local=\"{me}\",Remote=\"{id}\"}}")), 1.0);
    }
    // etcdctl 3.4 sends its API version with every call.
    let calls = labelled(&text, "etcd_server_client_requests_total{client_api_version=\"3.4\",type=\"unary\"}");
    assert!(calls >= 10.0, "{text}");
    // The leader times its heartbeats' answers from each follower.
    let leader = rt.block_on(status(&members[0].endpoint)).unwrap().1;
    let li = ids.iter().position(|id| *id == leader).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let lt = get(&members[li].endpoint, "/metrics").1;
    for id in ids.iter().filter(|id| **id != leader) {
        let rtt = format!("etcd_network_peer_round_trip_time_seconds_count{{To=\"{id:x}\"}}");
        assert!(labelled(&lt, &rtt) > 0.0, "{rtt} on the leader: {lt}");
    }
    let gone = format!("{:x}", ids[2]);
    drop(members.pop());
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let text = get(&members[0].endpoint, "/metrics").1;
    assert!(labelled(&text, &format!("etcd_network_peer_sent_failures_total{{To=\"{gone}\"}}")) > 0.0, "{text}");
    assert_eq!(labelled(&text, &format!("etcd_network_active_peers{{Local=\"{me}\",Remote=\"{gone}\"}}")), 0.0);
    let disconnected = format!("etcd_network_disconnected_peers_total{{Local=\"{me}\",Remote=\"{gone}\"}}");
    assert!(labelled(&text, &disconnected) >= 1.0, "{text}");
}
