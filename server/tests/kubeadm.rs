//! A kubeadm-shaped control plane: three members started with the flags kubeadm's etcd manifest passes (mutual TLS
//! on the client and peer sides, the initial corruption check by flag and by feature gate, a watch progress
//! interval, a plain-HTTP metrics URL), certificates made by a CA in the test. etcdctl serves over mutual TLS, and the
//! cluster keeps every acknowledged write through a rolling restart of all three members with the same flags.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::pki::Pki;
use common::{Member, free_port};

struct Node {
    name: String,
    client: u16,
    peer: u16,
    metrics: u16,
}

/// Starts `n` with kubeadm's flags (in kubeadm's `--flag=value` form).
fn start(dir: &Path, n: &Node, cluster: &str, state: &str, tls: &Pki) -> Member {
    let Pki { ca, cert, key } = tls;
    let data = dir.join(&n.name);
    let args = [
        format!("--advertise-client-urls=https://127.0.0.1:{}", n.client),
        format!("--cert-file={cert}"),
        "--client-cert-auth=true".to_string(),
        format!("--data-dir={}", data.display()),
        "--experimental-initial-corrupt-check=true".to_string(),
        "--feature-gates=InitialCorruptCheck=true".to_string(),
        format!("--initial-advertise-peer-urls=https://127.0.0.1:{}", n.peer),
        format!("--initial-cluster={cluster}"),
        format!("--initial-cluster-state={state}"),
        format!("--key-file={key}"),
        format!("--listen-client-urls=https://127.0.0.1:{}", n.client),
        format!("--listen-metrics-urls=http://127.0.0.1:{}", n.metrics),
        format!("--listen-peer-urls=https://127.0.0.1:{}", n.peer),
        format!("--name={}", n.name),
        format!("--peer-cert-file={cert}"),
        "--peer-client-cert-auth=true".to_string(),
        format!("--peer-key-file={key}"),
        format!("--peer-trusted-ca-file={ca}"),
        "--snapshot-count=10000".to_string(),
        format!("--trusted-ca-file={ca}"),
        "--watch-progress-notify-interval=5s".to_string(),
        "--heartbeat-interval=50".to_string(),
        "--election-timeout=500".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    common::spawn(&args, format!("https://127.0.0.1:{}", n.client))
}

/// etcdctl over mutual TLS against `endpoints`, retried for up to 20 s; its output.
fn etcdctl(endpoints: &str, tls: &Pki, args: &[&str]) -> String {
    let Pki { ca, cert, key } = tls;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut full = vec![format!("--endpoints={endpoints}"), format!("--cacert={ca}")];
        full.extend([format!("--cert={cert}"), format!("--key={key}"), "--command-timeout=5s".into()]);
        full.extend(args.iter().map(|a| a.to_string()));
        let out = std::process::Command::new("etcdctl").env("ETCDCTL_API", "3").args(&full).output().unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(Instant::now() < deadline, "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// SIGTERM (as the kubelet stops a static pod) and wait.
fn stop(mut m: Member) {
    // SAFETY: kill takes no pointers; the PID is our own live child.
    unsafe { libc::kill(m.child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while m.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the member did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_kubeadm_shaped_cluster_serves_over_mutual_tls_through_a_rolling_restart() {
    let dir = tempfile::tempdir().unwrap();
    let tls = common::pki::pki(dir.path());
    let nodes: Vec<Node> = (1..=3)
        .map(|i| Node { name: format!("cp{i}"), client: free_port(), peer: free_port(), metrics: free_port() })
        .collect();
    let cluster =
        nodes.iter().map(|n| format!("{}=https://127.0.0.1:{}", n.name, n.peer)).collect::<Vec<_>>().join(",");
    let endpoints = nodes.iter().map(|n| format!("https://127.0.0.1:{}", n.client)).collect::<Vec<_>>().join(",");
    let mut members: Vec<Option<Member>> =
        nodes.iter().map(|n| Some(start(dir.path(), n, &cluster, "new", &tls))).collect();
    let mut written = 0;
    let put = |written: &mut usize| {
        etcdctl(&endpoints, &tls, &["put", &format!("/registry/pods/p{written}"), "spec"]);
        *written += 1;
    };
    for _ in 0..5 {
        put(&mut written);
    }
    // The metrics URL is plain HTTP, as kubeadm's liveness probe reads it.
    let (status, body) = common::http_get(&format!("127.0.0.1:{}", nodes[0].metrics), "/health");
    assert_eq!((status, body.trim()), (200, r#"{"health":"true"}"#));
    // Rolling restart, each member with the same flags (the initial cluster is ignored on its data dir).
    for (i, n) in nodes.iter().enumerate() {
        stop(members[i].take().unwrap());
        put(&mut written);
        members[i] = Some(start(dir.path(), n, &cluster, "new", &tls));
        put(&mut written);
        let listed = etcdctl(&format!("https://127.0.0.1:{}", n.client), &tls, &["member", "list"]);
        assert_eq!(listed.lines().count(), 3, "{listed}");
    }
    let keys = etcdctl(&endpoints, &tls, &["get", "/registry/pods/", "--prefix", "--keys-only"]);
    let found = keys.lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(found, written, "every acknowledged put is there: {keys}");
}
