//! Real etcd 3.4.23 (Debian's etcd-server), the behaviour reference, as a child process on 127.0.0.1.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A single-member etcd, killed when dropped.
pub struct Etcd {
    pub child: Child,
    pub endpoint: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `cmd` is on PATH; under CI=true its absence is a failure (scripts/test.sh installs it).
pub fn installed(cmd: &str) -> bool {
    if Command::new(cmd).arg("--version").output().is_ok() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "CI installs {cmd} (scripts/test.sh); it must be on PATH");
    eprintln!("skipping the comparison with etcd: {cmd} is not installed (apt-get install etcd-server etcd-client)");
    false
}

/// Starts etcd on `data` with the given ports and waits for its ready line.
pub fn start(data: &Path, client: u16, peer: u16) -> Etcd {
    start_with(data, client, peer, &[])
}

/// Like [`start`], with extra flags (`--enable-v2`, say).
pub fn start_with(data: &Path, client: u16, peer: u16, extra: &[&str]) -> Etcd {
    let cluster = format!("default=http://127.0.0.1:{peer}");
    let flags: Vec<&str> = [&["--initial-cluster", cluster.as_str()][..], extra].concat();
    let (etcd, ready) = spawn(data, client, peer, &flags);
    ready.recv_timeout(Duration::from_secs(30)).expect("etcd logs `ready to serve client requests`");
    etcd
}

/// Starts etcd with `extra` flags; the receiver signals its ready line.
fn spawn(data: &Path, client: u16, peer: u16, extra: &[&str]) -> (Etcd, mpsc::Receiver<()>) {
    let c = format!("http://127.0.0.1:{client}");
    let p = format!("http://127.0.0.1:{peer}");
    let mut child = Command::new("etcd")
        .args(["--data-dir", data.to_str().unwrap(), "--listen-client-urls", &c, "--advertise-client-urls", &c])
        .args(["--listen-peer-urls", &p, "--initial-advertise-peer-urls", &p])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcd");
    let (_, ready) = super::follow(&mut child);
    (Etcd { child, endpoint: format!("127.0.0.1:{client}") }, ready)
}

/// Starts the members of `specs` as one etcd cluster (with the multi-member tests' fast timers, as
/// `cluster::launch`) and waits until each is ready (etcd serves only once a quorum has formed).
pub fn start_cluster(dir: &Path, specs: &[super::cluster::Spec], cluster: &str) -> Vec<Etcd> {
    let started: Vec<(Etcd, mpsc::Receiver<()>)> = specs
        .iter()
        .map(|s| {
            let flags = ["--name", &s.name, "--initial-cluster", cluster, "--heartbeat-interval", "50"];
            let flags = [&flags[..], &["--election-timeout", "500"]].concat();
            spawn(&dir.join(&s.name), s.client, s.peer, &flags)
        })
        .collect();
    started
        .into_iter()
        .map(|(etcd, ready)| {
            ready.recv_timeout(Duration::from_secs(30)).expect("etcd logs `ready to serve client requests`");
            etcd
        })
        .collect()
}

/// `etcdctl snapshot restore FILE` into `data` as member `name` of `cluster` with peer URL `peer_url` (and
/// `extra` flags); fails the test unless it succeeds.
pub fn etcdctl_restore(file: &Path, data: &Path, name: &str, cluster: &str, peer_url: &str, extra: &[&str]) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore", file.to_str().unwrap(), "--data-dir", data.to_str().unwrap()])
        .args(["--name", name, "--initial-cluster", cluster, "--initial-advertise-peer-urls", peer_url])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "etcdctl snapshot restore: {}", String::from_utf8_lossy(&out.stderr));
}
