//! Bootstrap discovery, against real services:
//! - `--discovery`: Debian's `etcd-discovery` (the discovery.etcd.io service) over a real etcd 3.4 with the v2
//!   API as its store. A token for 3 is made with `/new?size=3`; three members started with its URL find each
//!   other and form one cluster; a fourth is refused ("discovery: cluster is full").
//! - `--discovery-srv`: a real DNS server (dnsmasq) serving `_etcd-server._tcp` SRV records, in a network and
//!   mount namespace of the test's own (so that /etc/resolv.conf can point at it); three members find each other
//!   by host name. Needs root, as CI has; elsewhere it skips with a message (under CI=true it fails).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Member, free_port};

/// Starts a member named `name` with `extra` bootstrap flags, its data in `dir/name`, without waiting for it (it
/// waits for the others).
fn member(dir: &std::path::Path, name: &str, client: u16, peer_url: &str, extra: &[&str]) -> Member {
    let c = format!("http://127.0.0.1:{client}");
    let data = dir.join(name);
    let mut args = vec!["--name", name, "--data-dir", data.to_str().unwrap(), "--listen-client-urls", &c];
    let listen = format!("http://127.0.0.1:{}", peer_url.rsplit(':').next().unwrap());
    args.extend_from_slice(&["--advertise-client-urls", &c, "--listen-peer-urls", &listen]);
    args.extend_from_slice(&["--initial-advertise-peer-urls", peer_url, "--heartbeat-interval", "50"]);
    args.extend_from_slice(&["--election-timeout", "500"]);
    args.extend_from_slice(extra);
    common::spawn_detached(&args, format!("127.0.0.1:{client}")).0
}

/// `etcdctl member list` through `endpoint` once it answers with `n` started members.
fn members_listed(endpoint: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, out, err) = common::etcdctl(endpoint, &["member", "list"], None);
        if ok && out.lines().filter(|l| l.contains(", started, ")).count() == n {
            return out;
        }
        assert!(Instant::now() < deadline, "{n} started members never listed: {out}{err}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_http(addr: &str, path: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if std::net::TcpStream::connect(addr).is_ok() {
            let (code, body) = common::http_get(addr, path);
            if code == 200 {
                return body;
            }
        }
        assert!(Instant::now() < deadline, "{addr}{path} never answered 200");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn members_find_each_other_through_the_discovery_service() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let _etcd = common::etcd::start_with(&dir.path().join("backend"), client, peer, &["--enable-v2"]);
    let web = format!("127.0.0.1:{}", free_port());
    let mut service = Command::new("discovery.etcd.io")
        .args(["--addr", &web, "--etcd", &format!("http://127.0.0.1:{client}"), "--host", &format!("http://{web}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("discovery.etcd.io (Debian's etcd-discovery)");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _service = Kill(std::mem::replace(&mut service, Command::new("true").spawn().unwrap()));
    let url = wait_http(&web, "/new?size=3").trim().to_string();
    assert!(url.starts_with(&format!("http://{web}/")), "{url}");
    let flag = format!("--discovery={url}");
    let started: Vec<(Member, String)> = (1..=3)
        .map(|i| {
            let client = free_port();
            let peer = format!("http://127.0.0.1:{}", free_port());
            (member(dir.path(), &format!("m{i}"), client, &peer, &[&flag]), format!("127.0.0.1:{client}"))
        })
        .collect();
    let list = members_listed(&started[0].1, 3);
    for name in ["m1", "m2", "m3"] {
        assert!(list.contains(&format!(", {name}, ")), "{list}");
    }
    // A write goes through once the new cluster has elected its leader.
    common::etcdctl_ok(&started[2].1, &["put", "found", "yes"]);
    // A fourth member is one too many.
    let data = dir.path().join("m4");
    let peer = format!("http://127.0.0.1:{}", free_port());
    let out = Command::new(env!("CARGO_BIN_EXE_ferrokv"))
        .args(["--name", "m4", "--data-dir", data.to_str().unwrap(), "--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer, &flag])
        .args(["--listen-client-urls", &format!("http://127.0.0.1:{}", free_port())])
        .args(["--advertise-client-urls", "http://127.0.0.1:1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && text.contains("discovery: cluster is full"), "{text}");
}

/// Moves the calling thread (and what it starts from now on) into a network and mount namespace of its own, with
/// its loopback up and `resolv` mounted over /etc/resolv.conf.
fn isolate(resolv: &std::path::Path) {
    use std::ffi::CString;
    let c = |s: &str| CString::new(s).unwrap();
    let (root, etc, file) = (c("/"), c("/etc/resolv.conf"), c(resolv.to_str().unwrap()));
    // SAFETY: unshare(2) and mount(2) with valid NUL-terminated paths and null optional arguments; they change only
    // this thread's namespaces.
    unsafe {
        assert_eq!(
            libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWNET),
            0,
            "unshare: {}",
            std::io::Error::last_os_error()
        );
        let private = libc::MS_REC | libc::MS_PRIVATE;
        assert_eq!(libc::mount(std::ptr::null(), root.as_ptr(), std::ptr::null(), private, std::ptr::null()), 0);
        let bound = libc::mount(file.as_ptr(), etc.as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null());
        assert_eq!(bound, 0, "bind /etc/resolv.conf: {}", std::io::Error::last_os_error());
    }
    let up = Command::new("ip").args(["link", "set", "lo", "up"]).status().unwrap();
    assert!(up.success());
}

#[test]
fn members_find_each_other_through_dns_srv_records() {
    if !common::is_root("DNS SRV discovery (namespaces)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n").unwrap();
    // In the namespace every port is ours: fixed ones keep the records simple.
    let peers = [(1, 23801), (2, 23802), (3, 23803)];
    let handle = std::thread::spawn(move || {
        isolate(&resolv);
        let mut dns = Command::new("dnsmasq");
        dns.args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--listen-address=127.0.0.1"]).args([
            "--bind-interfaces",
            "--port=53",
            "--user=root",
            "--group=root",
            "--pid-file=",
        ]);
        for (i, port) in peers {
            dns.arg(format!("--srv-host=_etcd-server._tcp.example.test,m{i}.example.test,{port}"));
            dns.arg(format!("--host-record=m{i}.example.test,127.0.0.1"));
        }
        let dns = dns.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("dnsmasq");
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let _dns = Kill(dns);
        std::thread::sleep(Duration::from_millis(300));
        let started: Vec<(Member, String)> = peers
            .iter()
            .map(|(i, port)| {
                let client = 23790 + i;
                let url = format!("http://m{i}.example.test:{port}");
                let flags = ["--discovery-srv", "example.test"];
                (member(dir.path(), &format!("m{i}"), client, &url, &flags), format!("127.0.0.1:{client}"))
            })
            .collect();
        // Members named by discovery start under their index ("0", "1"), as etcd's do, until each publishes its
        // own name: wait for the names, not only for three started members.
        let named = |list: &str| {
            peers.iter().all(|(i, port)| list.contains(&format!(", m{i}, http://m{i}.example.test:{port}, ")))
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut list = members_listed(&started[0].1, 3);
        while !named(&list) {
            assert!(Instant::now() < deadline, "the members never published their names: {list}");
            std::thread::sleep(Duration::from_millis(200));
            list = members_listed(&started[0].1, 3);
        }
        let log: Vec<String> = started[0].0.log.lock().unwrap().iter().cloned().collect();
        assert!(log.iter().any(|l| l.contains("get cluster for etcd-server SRV")), "etcd's line");
    });
    handle.join().unwrap();
}
