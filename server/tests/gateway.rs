//! The JSON gateway against etcd 3.4.23's: one scripted sequence of `curl -X POST` calls over every unary
//! endpoint (KV, Lease, Cluster, Maintenance, Auth, Lock, Election), run on a fresh ferrokv and a fresh etcd, must
//! answer the same HTTP statuses and the same JSON, with the values that differ between any two clusters masked
//! (ids, terms, sizes, hashes, the server version, tokens, ports, remaining TTLs).

mod common;

use std::process::Command;

use common::{free_port, start, start_with, status_mib};
use serde_json::Value;

/// Keys whose values differ between any two clusters, or between two runs.
const MASKED: [&str; 17] = [
    "cluster_id",
    "member_id",
    "raft_term",
    "ID",
    "leader",
    "dbSize",
    "dbSizeInUse",
    "version",
    "raftIndex",
    "raftAppliedIndex",
    "hash",
    "token",
    "TTL",
    "clientURLs",
    "peerURLs",
    "blob",
    "remaining_bytes",
];

/// Fields ferrokv answers that etcd 3.4 has not: Status carries the quota as etcd 3.6 does (rpc.proto holds the
/// later versions' fields too).
const LATER: [&str; 1] = ["dbSizeQuota"];

fn mask(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|k, _| !LATER.contains(&k.as_str()));
            for (k, v) in map.iter_mut() {
                if MASKED.contains(&k.as_str()) {
                    *v = Value::String("<masked>".into());
                } else {
                    mask(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

/// POSTs `body` to `path` with curl; returns the HTTP status and the answer, parsed and masked.
fn post(endpoint: &str, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let mut cmd = Command::new("curl");
    // `@file` reads the body from a file, as curl's --data-binary does.
    cmd.args(["-s", "--max-time", "10", "-w", "\n%{http_code}", "-X", "POST", "--data-binary", body]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: {t}")]);
    }
    let out = cmd.arg(format!("{endpoint}{path}")).output().expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (json, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let mut v: Value = serde_json::from_str(json).unwrap_or(Value::String(json.to_string()));
    mask(&mut v);
    (status.trim().parse().unwrap_or(0), v)
}

/// The token in an Authenticate answer (before masking).
fn authenticate(endpoint: &str, body: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-X", "POST", "-d", body, &format!("{endpoint}/v3/auth/authenticate")])
        .output()
        .expect("curl");
    let v: Value = serde_json::from_slice(&out.stdout).expect("an Authenticate answer");
    v["token"].as_str().expect("a token").to_string()
}

/// Every unary endpoint, with the calls that fail as well as those that succeed.
fn script(endpoint: &str) -> Vec<String> {
    let calls: &[(&str, &str)] = &[
        ("/v3/kv/put", r#"{"key": "Zm9v", "value": "YmFy"}"#),
        ("/v3/kv/put", r#"{"key": "Zm9v", "value": "YmF6", "prev_kv": true}"#),
        ("/v3beta/kv/put", r#"{"key": "Zm9vMg==", "value": "eA=="}"#),
        ("/v3/kv/range", r#"{"key": "Zm9v"}"#),
        ("/v3/kv/range", r#"{"key": "Zm9v", "range_end": "Zm9w", "sort_order": "DESCEND", "sort_target": "KEY"}"#),
        ("/v3/kv/range", r#"{"key": "Zm9v", "range_end": "Zm9w", "keys_only": true, "limit": "1"}"#),
        ("/v3/kv/range", r#"{"key": "Zm9v", "range_end": "Zm9w", "count_only": true}"#),
        ("/v3/kv/range", r#"{"key": "Zm9v", "revision": "100"}"#),
        ("/v3/kv/put", r#"{"value": "YmFy"}"#),
        ("/v3/kv/put", r#"{"key": 5}"#),
        ("/v3/kv/put", r#"{"key": "Zm9v", "#),
        ("/v3/kv/put", ""),
        (
            "/v3/kv/txn",
            r#"{"compare": [{"target": "VALUE", "key": "Zm9v", "value": "YmF6"}], "success": [{"request_put": {"key": "YQ==", "value": "Yg=="}}, {"request_range": {"key": "Zm9v"}}], "failure": [{"request_delete_range": {"key": "YQ=="}}]}"#,
        ),
        (
            "/v3/kv/txn",
            r#"{"compare": [{"target": "CREATE", "key": "Zm9v", "create_revision": "0"}], "failure": [{"request_range": {"key": "YQ=="}}]}"#,
        ),
        ("/v3/kv/txn", r#"{"success": [{}]}"#),
        ("/v3/kv/txn", r#"{"success": [{"request_put": {"key": "YQ=="}}, {"request_put": {"key": "YQ=="}}]}"#),
        ("/v3/kv/deleterange", r#"{"key": "Zm9vMg==", "prev_kv": true}"#),
        ("/v3/kv/compaction", r#"{"revision": "3"}"#),
        ("/v3/kv/range", r#"{"key": "Zm9v", "revision": "2"}"#),
        ("/v3/kv/compaction", r#"{"revision": "1"}"#),
        ("/v3/lease/grant", r#"{"TTL": "60", "ID": "4660"}"#),
        ("/v3/lease/grant", r#"{"TTL": "60", "ID": "4660"}"#),
        ("/v3/kv/put", r#"{"key": "bA==", "value": "dg==", "lease": "4660"}"#),
        ("/v3/lease/timetolive", r#"{"ID": "4660", "keys": true}"#),
        ("/v3/kv/lease/timetolive", r#"{"ID": "4660"}"#),
        ("/v3/lease/leases", "{}"),
        ("/v3/kv/lease/leases", "{}"),
        ("/v3/lease/revoke", r#"{"ID": "4660"}"#),
        ("/v3/kv/lease/revoke", r#"{"ID": "4660"}"#),
        ("/v3/kv/range", r#"{"key": "bA=="}"#),
        ("/v3/cluster/member/list", "{}"),
        ("/v3/cluster/member/remove", r#"{"ID": "1"}"#),
        ("/v3/maintenance/status", "{}"),
        ("/v3/maintenance/alarm", r#"{"action": "GET"}"#),
        ("/v3/maintenance/hash", "{}"),
        ("/v3/maintenance/defragment", "{}"),
        ("/v3/lease/grant", r#"{"TTL": "60", "ID": "22136"}"#),
        ("/v3/lock/lock", r#"{"name": "bG9jaw==", "lease": "22136"}"#),
        ("/v3/kv/range", r#"{"key": "bG9jay8v", "range_end": "bG9jazA=", "keys_only": true}"#),
        ("/v3/lock/unlock", r#"{"key": "bG9jay81Njc4"}"#),
        ("/v3/election/leader", r#"{"name": "ZWw="}"#),
        ("/v3/election/campaign", r#"{"name": "ZWw=", "lease": "22136", "value": "djE="}"#),
        ("/v3/election/leader", r#"{"name": "ZWw="}"#),
        (
            "/v3/election/proclaim",
            r#"{"leader": {"name": "ZWw=", "key": "ZWwvNTY5OA==", "rev": "1", "lease": "22136"}, "value": "djI="}"#,
        ),
        ("/v3/election/proclaim", r#"{"value": "djI="}"#),
        ("/v3/election/resign", "{}"),
        ("/v3/auth/role/add", r#"{"name": "r"}"#),
        ("/v3/auth/role/add", r#"{"name": "r"}"#),
        (
            "/v3/auth/role/grant",
            r#"{"name": "r", "perm": {"permType": "READWRITE", "key": "Zm9v", "range_end": "Zm9w"}}"#,
        ),
        ("/v3/auth/role/get", r#"{"role": "r"}"#),
        ("/v3/auth/role/list", "{}"),
        ("/v3/auth/role/revoke", r#"{"role": "r", "key": "Zm9v", "range_end": "Zm9w"}"#),
        ("/v3/auth/user/add", r#"{"name": "u", "password": "pw"}"#),
        ("/v3/auth/user/grant", r#"{"user": "u", "role": "r"}"#),
        ("/v3/auth/user/get", r#"{"name": "u"}"#),
        ("/v3/auth/user/list", "{}"),
        ("/v3/auth/user/changepw", r#"{"name": "u", "password": "pw2"}"#),
        ("/v3/auth/user/revoke", r#"{"name": "u", "role": "r"}"#),
        ("/v3/auth/user/delete", r#"{"name": "u"}"#),
        ("/v3/auth/user/get", r#"{"name": "u"}"#),
        ("/v3/auth/role/delete", r#"{"role": "r"}"#),
        ("/v3/auth/enable", "{}"),
        ("/v3/auth/user/add", r#"{"name": "root", "password": "rootpw"}"#),
        ("/v3/auth/user/grant", r#"{"user": "root", "role": "root"}"#),
        ("/v3/auth/role/add", r#"{"name": "root"}"#),
        ("/v3/auth/user/grant", r#"{"user": "root", "role": "root"}"#),
        ("/v3/auth/enable", "{}"),
        ("/v3/kv/range", r#"{"key": "Zm9v"}"#),
        ("/v3/auth/authenticate", r#"{"name": "root", "password": "wrong"}"#),
    ];
    let mut out = Vec::new();
    for (path, body) in calls {
        let (status, v) = post(endpoint, path, body, None);
        out.push(format!("{path} {body} -> {status} {v}"));
    }
    // A value of 2 MiB: over the gRPC receive limit (1.5 MiB plus 512 KiB) once encoded. The body goes in a file
    // (too long for one command-line argument).
    let big = std::env::temp_dir().join(format!("gateway-big-{}.json", std::process::id()));
    let value = "eHh4".repeat(699_050) + "eHg="; // base64 of 2 MiB of "x"
    std::fs::write(&big, format!(r#"{{"key": "Zm9v", "value": "{value}"}}"#)).unwrap();
    let (status, v) = post(endpoint, "/v3/kv/put", &format!("@{}", big.display()), None);
    let _ = std::fs::remove_file(&big);
    out.push(format!("put of 2 MiB -> {status} {v}"));
    // With a token: the Authorization header carries it.
    let token = authenticate(endpoint, r#"{"name": "root", "password": "rootpw"}"#);
    for (path, body) in
        [("/v3/kv/range", r#"{"key": "Zm9v"}"#), ("/v3/maintenance/defragment", "{}"), ("/v3/auth/disable", "{}")]
    {
        let (status, v) = post(endpoint, path, body, Some(&token));
        out.push(format!("{path} {body} (token) -> {status} {v}"));
    }
    out
}

/// POSTs to a streaming endpoint for at most `secs` seconds (a watch never ends by itself); returns each line,
/// parsed and masked.
fn stream(endpoint: &str, path: &str, body: &str, secs: &str) -> Vec<String> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", secs, "-X", "POST", "-d", body, &format!("{endpoint}{path}")])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut values: Vec<String> = Vec::new();
    for v in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
        let mut v = v.unwrap_or(Value::String("<not JSON>".into()));
        mask(&mut v);
        values.push(v.to_string());
    }
    values
}

/// The streams: Watch (several requests in one body, the stream left open), LeaseKeepAlive, a body that is not
/// JSON, Observe and Snapshot.
fn stream_script(endpoint: &str) -> Vec<String> {
    let mut out = Vec::new();
    post(endpoint, "/v3/kv/put", r#"{"key": "Zm9v", "value": "YmFy"}"#, None);
    post(endpoint, "/v3/lease/grant", r#"{"TTL": "60", "ID": "30583"}"#, None);
    let watch = r#"{"create_request": {"key": "Zm9v", "start_revision": "1"}} {"create_request": {"key": "YQ=="}}"#;
    // etcd sends the second watcher's "created" before the first one's catch-up events, ferrokv after them; only
    // each watcher's own order is the API's, so the lines are compared as a set here.
    let mut watched = stream(endpoint, "/v3/watch", watch, "1.5");
    watched.sort();
    out.extend(watched);
    out.extend(stream(endpoint, "/v3beta/watch", r#"{"create_request": {"key": 5}}"#, "1.5"));
    out.extend(stream(endpoint, "/v3/lease/keepalive", r#"{"ID": "30583"}"#, "3"));
    out.extend(stream(endpoint, "/v3/lease/keepalive", r#"{"ID": "1"}"#, "3"));
    post(endpoint, "/v3/election/campaign", r#"{"name": "ZWw=", "lease": "30583", "value": "djE="}"#, None);
    out.extend(stream(endpoint, "/v3/election/observe", r#"{"name": "ZWw="}"#, "1.5"));
    // ferrokv's first snapshot message carries a header (etcd 3.5's), and its store file is bigger than etcd's.
    let snapshot = stream(endpoint, "/v3/maintenance/snapshot", "{}", "5");
    let blob = snapshot.first().is_some_and(|l| l.starts_with(r#"{"result":{"blob":"<masked>""#));
    out.push(format!("snapshot: the first message has a blob: {blob}"));
    out
}

/// A body the JSON parser refuses: etcd's message is Go's, ours serde's; the status and the code must agree.
fn refused_shape(endpoint: &str) -> (u16, Value) {
    let (status, mut v) = post(endpoint, "/v3/kv/put", r#"{"key": 5}"#, None);
    let shape = v.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>());
    v = serde_json::json!({ "fields": shape, "code": v["code"] });
    (status, v)
}

#[test]
fn every_unary_endpoint_answers_as_etcd_gateway_does() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(&dir.path().join("ferrokv"), free_port(), free_port());
    let ours = script(&m.endpoint);
    let our_refusal = refused_shape(&m.endpoint);
    drop(m);
    assert!(ours[0].contains("-> 200"), "{ours:#?}");
    if !common::etcd::installed("etcd") {
        return;
    }
    let e = common::etcd::start(&dir.path().join("etcd"), free_port(), free_port());
    let theirs = script(&e.endpoint);
    assert_eq!(our_refusal, refused_shape(&e.endpoint));
    let mut differ = Vec::new();
    for (a, b) in ours.iter().zip(&theirs) {
        // Parse errors name the parser's own words (Go's or serde's); their status and shape are compared above.
        let parse_error = a.contains(r#"{"key": 5}"#) || a.contains(r#"{"key": "Zm9v", "#);
        if a != b && !parse_error {
            differ.push(format!("ferrokv: {a}\n   etcd: {b}"));
        }
    }
    assert!(differ.is_empty(), "{} of {} answers differ:\n{}", differ.len(), ours.len(), differ.join("\n"));
}

#[test]
fn streams_answer_as_etcd_gateway_does() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(&dir.path().join("ferrokv"), free_port(), free_port());
    let ours = stream_script(&m.endpoint);
    drop(m);
    assert!(ours.iter().any(|l| l.contains("YmFy")), "the watch saw the put: {ours:#?}");
    if !common::etcd::installed("etcd") {
        return;
    }
    let e = common::etcd::start(&dir.path().join("etcd"), free_port(), free_port());
    let theirs = stream_script(&e.endpoint);
    // The parser's own words (Go's or serde's) in the refused watch body; the rest must be equal.
    let words = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|l| if l.contains(r#""code":2"#) { "<parse error, code 2>".to_string() } else { l.clone() })
            .collect()
    };
    assert_eq!(words(&ours), words(&theirs));
}

/// h2c: the gateway over HTTP/2 without TLS, as `curl --http2-prior-knowledge` speaks it.
#[test]
fn the_gateway_speaks_h2c() {
    let dir = tempfile::tempdir().unwrap();
    let m = start(dir.path(), free_port(), free_port());
    for (path, body) in [("/v3/kv/put", r#"{"key": "aDI=", "value": "Yw=="}"#), ("/v3/kv/range", r#"{"key": "aDI="}"#)]
    {
        let out = Command::new("curl")
            .args(["-s", "--http2-prior-knowledge", "--max-time", "10", "-w", "\n%{http_version}", "-X", "POST"])
            .args(["-d", body, &format!("{}{path}", m.endpoint)])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(text.ends_with("\n2"), "{path}: answered over HTTP/2: {text}");
        assert!(text.contains(r#""revision":"2""#), "{path}: {text}");
    }
}

/// A watch client that stops reading should hold a bounded part of the server: its session's queue fills, then it
/// falls behind the committed changes (to catch up from the store if it ever reads again); the member keeps serving.
/// 6,000 puts of 16 KiB (96 MiB of events for that watcher) grow the member's heap by far less.
///
/// Before the session drained the broadcast while its client was not reading, the heap grew 13 -> 99 MiB here
/// (13 -> 27 MiB without the hung watcher): a session blocked on its client kept its place in the changes
/// broadcast, which then retained its last 4,096 revisions (64 MiB of 16 KiB values) for it.
#[test]
fn a_watch_client_that_stops_reading_holds_bounded_memory() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let cluster = format!("m=http://127.0.0.1:{peer}");
    // A small snapshot count keeps the Raft log in memory small, so the heap measures the watcher.
    let flags = ["--name", "m", "--initial-cluster", &cluster, "--snapshot-count", "500"];
    let m = start_with(dir.path(), client, peer, &flags);
    let addr = m.endpoint.trim_start_matches("http://").to_string();
    let mut hung = std::net::TcpStream::connect(&addr).unwrap();
    let body = r#"{"create_request": {"key": "aw==", "range_end": "bA=="}}"#;
    write!(hung, "POST /v3/watch HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let before = status_mib(m.child.id(), "RssAnon:");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let endpoint = m.endpoint.clone();
    rt.block_on(async move {
        let value = vec![b'v'; 16 << 10];
        let mut writers = Vec::new();
        for w in 0..4 {
            let (endpoint, value) = (endpoint.clone(), value.clone());
            writers.push(tokio::spawn(async move {
                let mut c = etcd_client::Client::connect([endpoint], None).await.unwrap();
                for i in 0..1_500 {
                    c.put(format!("k/{w}/{i}"), value.clone(), None).await.unwrap();
                }
            }));
        }
        for w in writers {
            tokio::time::timeout(std::time::Duration::from_secs(120), w).await.expect("puts go on").unwrap();
        }
    });
    let after = status_mib(m.child.id(), "RssAnon:");
    eprintln!("heap before {before} MiB, after {after} MiB");
    assert!(after < before + 48, "the member's heap grew {before} -> {after} MiB with a watcher that reads nothing");
    drop(hung);
}

/// Slow-loris uploads: 100 connections that send a put's headers a byte a second, and 100 that send a body a
/// byte a second. The member keeps answering other clients at once, its heap stays small, and each slow body is
/// answered with grpc-gateway's error shape (code DeadlineExceeded, HTTP 504) once the body deadline (30 s) has
/// passed. Before the deadline, a slow body was waited for as long as it dripped (this test saw no answer).
#[test]
fn slow_uploads_hold_little_and_get_the_error_shape() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let m = start(dir.path(), free_port(), free_port());
    let addr = m.endpoint.trim_start_matches("http://").to_string();
    let before = status_mib(m.child.id(), "RssAnon:");
    let connect = |first: &str| {
        let mut c = std::net::TcpStream::connect(&addr).unwrap();
        c.write_all(first.as_bytes()).unwrap();
        c
    };
    let header = format!("POST /v3/kv/put HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 4000\r\n\r\n");
    let bodies: Vec<_> = (0..100).map(|_| connect(&header)).collect();
    let heads: Vec<_> = (0..100).map(|_| connect("POST /v3/kv/put HTTP/1.1\r\nX-Slow: ")).collect();
    // Each slow body's answer, read as soon as it comes.
    let answers: Vec<_> = bodies
        .iter()
        .map(|c| {
            let mut r = c.try_clone().unwrap();
            std::thread::spawn(move || {
                r.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let mut got = Vec::new();
                let _ = r.read_to_end(&mut got);
                String::from_utf8_lossy(&got).to_string()
            })
        })
        .collect();
    let started = Instant::now();
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(40) && !answers.iter().all(|a| a.is_finished()) {
        for mut c in bodies.iter().chain(&heads) {
            let _ = c.write_all(b"a");
        }
        let t = Instant::now();
        let (status, v) = post(&m.endpoint, "/v3/kv/put", r#"{"key": "Zm9v", "value": "YmFy"}"#, None);
        assert_eq!(status, 200, "a put among slow uploads: {v}");
        assert!(t.elapsed() < Duration::from_secs(2), "a put among slow uploads took {:?}", t.elapsed());
        served += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    let after = status_mib(m.child.id(), "RssAnon:");
    eprintln!("{served} puts served in {:?}; heap before {before} MiB, after {after} MiB", started.elapsed());
    assert!(after < before + 16, "200 slow uploads grew the member's heap {before} -> {after} MiB");
    for a in answers {
        let answer = a.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 504"), "a slow body's answer: {answer:?}");
        let json = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
        assert_eq!(v["code"], 4, "{v}");
        assert_eq!(v["error"], v["message"], "{v}");
    }
    drop(heads);
}

/// `--enable-grpc-gateway=false` turns the gateway off, as etcd's flag does; gRPC and /metrics stay.
#[test]
fn the_gateway_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let m = start_with(dir.path(), free_port(), free_port(), &["--enable-grpc-gateway=false"]);
    let (status, _) = post(&m.endpoint, "/v3/kv/range", r#"{"key": "Zm9v"}"#, None);
    assert_eq!(status, 404);
    assert_eq!(common::http_get(&m.endpoint, "/metrics").0, 200);
    common::etcdctl_ok(&m.endpoint, &["put", "foo", "bar"]);
}
