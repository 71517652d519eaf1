//! Failpoints as etcd's gofail serves them: `GOFAIL_FAILPOINTS` at start and the `GOFAIL_HTTP` interface (list,
//! set, read, count, clear), with their effects seen from a client: a `sleep` in the WAL's fdatasync slows puts
//! by that much, a `panic` before the Raft thread saves ends the process as a Go panic does (status 2, the
//! panic's text), and no acknowledged write is lost when it does.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Member, free_port};

/// Starts a one-member ferrokv with the given gofail environment and waits until it serves.
fn start_env(data: &std::path::Path, env: &[(&str, &str)]) -> Member {
    let (client, peer) = (free_port(), free_port());
    let (c, p) = (format!("http://127.0.0.1:{client}"), format!("http://127.0.0.1:{peer}"));
    let cluster = format!("default={p}");
    let mut args =
        vec!["--data-dir", data.to_str().unwrap(), "--listen-client-urls", &c, "--advertise-client-urls", &c];
    args.extend(["--listen-peer-urls", &p, "--initial-advertise-peer-urls", &p, "--initial-cluster", &cluster]);
    common::spawn_env(&args, env, c.clone())
}

/// One HTTP/1.1 request; (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    write!(s, "{head}Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The median time of `n` puts.
fn median_put(rt: &tokio::runtime::Runtime, c: &mut etcd_client::Client, n: usize) -> Duration {
    let mut times: Vec<Duration> = (0..n)
        .map(|i| {
            let t = Instant::now();
            rt.block_on(c.put(format!("k{i}"), "v", None)).unwrap();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[n / 2]
}

#[test]
fn gofail_interface_sets_reads_counts_and_clears() {
    let dir = tempfile::tempdir().unwrap();
    let fail_addr = format!("127.0.0.1:{}", free_port());
    let env = [("GOFAIL_HTTP", fail_addr.as_str()), ("GOFAIL_FAILPOINTS", "defragBeforeCopy=sleep(400)")];
    let m = start_env(dir.path(), &env);

    let (status, listed) = http(&fail_addr, "GET", "/", "");
    assert_eq!(status, 200);
    let names: Vec<&str> = listed.lines().map(|l| l.split('=').next().unwrap()).collect();
    for name in [
        "walBeforeFdatasync",
        "walAfterFdatasync",
        "raftBeforeSave",
        "raftAfterSave",
        "raftBeforeLeaderSend",
        "raftBeforeFollowerSend",
        "raftBeforeApplySnap",
        "raftAfterApplySnap",
        "beforeCommit",
        "afterCommit",
        "defragBeforeCopy",
        "defragBeforeRename",
        "compactBeforeCommitScheduledCompact",
        "compactAfterCommitScheduledCompact",
        "compactBeforeCommitBatch",
        "compactAfterCommitBatch",
        "beforeApplyOneConfChange",
        "beforeSendWatchResponse",
        "skipReadIndex",
        "watchDropEvent",
    ] {
        assert!(names.contains(&name), "{name} is not listed:\n{listed}");
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "listed in order");
    assert!(listed.contains("defragBeforeCopy=sleep(400)\nd"), "set from GOFAIL_FAILPOINTS:\n{listed}");
    assert!(listed.contains("walBeforeFdatasync=\n"), "an unset failpoint lists empty:\n{listed}");

    let rt = runtime();
    let mut c = rt.block_on(etcd_client::Client::connect([m.endpoint.clone()], None)).unwrap();
    // Defragment waits in the failpoint set at start, once.
    let t = Instant::now();
    rt.block_on(c.defragment()).unwrap();
    assert!(t.elapsed() >= Duration::from_millis(400), "defragment took {:?}", t.elapsed());
    assert_eq!(http(&fail_addr, "GET", "/defragBeforeCopy/count", ""), (200, "1".to_string()));

    // A sleep before the WAL's fdatasync slows every put by it; cleared, puts are quick again.
    let before = median_put(&rt, &mut c, 5);
    assert_eq!(http(&fail_addr, "PUT", "/walBeforeFdatasync", "sleep(300)").0, 204);
    assert_eq!(http(&fail_addr, "GET", "/walBeforeFdatasync", ""), (200, "sleep(300)\n".to_string()));
    let slowed = median_put(&rt, &mut c, 5);
    let (_, count) = http(&fail_addr, "GET", "/walBeforeFdatasync/count", "");
    assert!(count.parse::<u64>().unwrap() >= 5, "count {count}");
    assert_eq!(http(&fail_addr, "DELETE", "/walBeforeFdatasync", "").0, 204);
    let after = median_put(&rt, &mut c, 5);
    eprintln!("median put: {before:?} before, {slowed:?} with sleep(300), {after:?} after");
    assert!(slowed >= Duration::from_millis(300), "a put with the failpoint took {slowed:?}");
    assert!(after < Duration::from_millis(300) && before < Duration::from_millis(300), "{before:?} {after:?}");

    // A commit of the store slowed past 100 ms makes the apply slow: etcd_server_slow_apply_total counts it.
    let slow_applies = || {
        common::metric_value(
            &common::http_get(m.endpoint.trim_start_matches("http://"), "/metrics").1,
            "etcd_server_slow_apply_total",
        )
    };
    assert_eq!(slow_applies(), 0.0);
    assert_eq!(http(&fail_addr, "PUT", "/beforeCommit", "sleep(150)").0, 204);
    median_put(&rt, &mut c, 1);
    assert_eq!(http(&fail_addr, "DELETE", "/beforeCommit", "").0, 204);
    assert!(slow_applies() >= 1.0, "a put whose commit took 150 ms was not a slow apply");

    // Several at once, counts spent in order, and gofail's errors.
    assert_eq!(http(&fail_addr, "PUT", "/failpoints", "afterCommit=1*sleep(1)->off;beforeCommit=off").0, 204);
    assert_eq!(http(&fail_addr, "GET", "/afterCommit", "").1, "1*sleep(1)->off\n");
    let bad = http(&fail_addr, "PUT", "/walAfterFdatasync", "explode");
    assert_eq!(bad, (400, "fail to set failpoint: failpoint: could not parse terms\n".to_string()));
    let missing = http(&fail_addr, "PUT", "/noSuchPoint", "off");
    assert_eq!(missing, (400, "fail to set failpoint: failpoint: failpoint does not exist\n".to_string()));
    let (code, _) = http(&fail_addr, "GET", "/noSuchPoint/count", "");
    assert_eq!(code, 404);
    let (code, text) = http(&fail_addr, "GET", "/walAfterFdatasync/count", "");
    assert_eq!((code, text.as_str()), (500, "failed to GET: failpoint: failpoint is disabled\n"));
    assert_eq!(http(&fail_addr, "DELETE", "/walAfterFdatasync", "").0, 400, "clearing what is not set");
    assert_eq!(http(&fail_addr, "POST", "/walAfterFdatasync", "").0, 405);
}

/// `panic` ends the member where it stands, as a Go panic ends etcd; what was acknowledged before is there after
/// a restart.
#[test]
fn a_panic_failpoint_ends_the_process_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let fail_addr = format!("127.0.0.1:{}", free_port());
    let mut m = start_env(dir.path(), &[("GOFAIL_HTTP", fail_addr.as_str())]);
    let rt = runtime();
    let mut c = rt.block_on(etcd_client::Client::connect([m.endpoint.clone()], None)).unwrap();
    for i in 0..100 {
        rt.block_on(c.put(format!("acked/{i:03}"), format!("v{i}"), None)).unwrap();
    }
    assert_eq!(http(&fail_addr, "PUT", "/raftBeforeSave", "panic").0, 204);
    let lost = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), c.put("unacked", "x", None)).await });
    assert!(!matches!(lost, Ok(Ok(_))), "a put was acknowledged though its entry was never saved");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = m.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the member is still running after its failpoint panicked");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(2), "Go's panic status");
    std::thread::sleep(Duration::from_millis(200));
    let log: Vec<String> = m.log.lock().unwrap().iter().cloned().collect();
    assert!(log.iter().any(|l| l == "panic: failpoint panic: raftBeforeSave"), "{log:#?}");
    drop(m);

    let m = start_env(dir.path(), &[]);
    let mut c = rt.block_on(etcd_client::Client::connect([m.endpoint.clone()], None)).unwrap();
    let got = rt.block_on(c.get("acked/", Some(etcd_client::GetOptions::new().with_prefix()))).unwrap();
    assert_eq!(got.kvs().len(), 100, "every acknowledged put is there after the panic");
    assert_eq!(got.kvs()[99].value_str().unwrap(), "v99");
}

#[test]
fn a_malformed_gofail_list_stops_the_process_as_gofail_does() {
    let dir = tempfile::tempdir().unwrap();
    let (c, p) = (format!("http://127.0.0.1:{}", free_port()), format!("http://127.0.0.1:{}", free_port()));
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrokv"))
        .args(["--data-dir", dir.path().to_str().unwrap(), "--listen-client-urls", &c, "--advertise-client-urls", &c])
        .args(["--listen-peer-urls", &p, "--initial-advertise-peer-urls", &p])
        .args(["--initial-cluster", &format!("default={p}")])
        .env("GOFAIL_FAILPOINTS", "walBeforeFdatasync")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a member with a malformed GOFAIL_FAILPOINTS is running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("fail to parse failpoint: bad failpoint \"walBeforeFdatasync\""), "{stdout}");
}
