//! Helpers shared by the server's integration tests: free ports, and a ferrokv child process that is killed (by
//! its handle) when dropped.

#![allow(dead_code)]

pub mod cluster;
pub mod disks;
pub mod etcd;
pub mod history;
pub mod pki;
pub mod proxy;
pub mod writer;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub struct Member {
    pub child: Child,
    pub endpoint: String,
    /// The last lines the member logged, shown when a test fails.
    pub log: Arc<Mutex<VecDeque<String>>>,
}

/// Log lines kept per member.
const LOG_TAIL: usize = 80;

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            eprintln!("--- last {} log lines of the member at {} ---", log.len(), self.endpoint);
            for line in log.iter() {
                eprintln!("{line}");
            }
        }
    }
}

/// etcdctl's output once the command succeeds, retried for up to 20 s while the cluster elects or starts.
pub fn etcdctl_ok(endpoints: &str, args: &[&str]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, err) = etcdctl(endpoints, args, None);
        if ok {
            return out;
        }
        assert!(std::time::Instant::now() < deadline, "etcdctl {args:?} through {endpoints}: {err}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Makes `root` (password `rootpw`, role `root`) and enables authentication through `endpoint`, as an operator
/// does with etcdctl (on ferrokv or etcd alike).
pub fn enable_root_auth(endpoint: &str) {
    for args in [&["role", "add", "root"][..], &["user", "add", "root:rootpw"], &["user", "grant-role", "root", "root"]]
    {
        etcdctl_ok(endpoint, args);
    }
    etcdctl_ok(endpoint, &["auth", "enable"]);
}

/// Runs Debian's etcdctl 3.4 against `endpoints` (comma-separated), with etcdctl's own deadline of 10 s per
/// command and `stdin` as its input; returns (success, stdout, stderr).
pub fn etcdctl(endpoints: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoints}")).arg("--command-timeout=10s").args(args);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("etcdctl");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether the test runs as root (network namespaces, mounts, tc); elsewhere the test skips, saying it needs
/// `what`, except under CI=true, where CI runs the suite as root and a skip would hide the test.
pub fn is_root(what: &str) -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "CI runs the suite as root");
    eprintln!("skipping: {what} need root");
    false
}

/// Sets (or with `None` clears) a failpoint through a member's gofail interface (`GOFAIL_HTTP`) on `port`.
pub fn failpoint(port: u16, name: &str, terms: Option<&str>) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return };
    let req = match terms {
        Some(t) => {
            format!("PUT /{name} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{t}", t.len())
        }
        None => format!("DELETE /{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    };
    let _ = s.write_all(req.as_bytes());
    let _ = s.read_to_end(&mut Vec::new());
}

/// A plain HTTP/1.1 GET; returns (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The value of an unlabelled series in an exposition text.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no series {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// A port for a server to listen on, free now. Taken below the kernel's ephemeral range (32768 and up), so that
/// no outgoing connection of a member (a peer dialling another, a client) can take it between this call and the
/// server's bind, and never handed out twice by one test process (the kernel may give a just-released port again).
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(given.len());
        let port = 10_000 + (h.finish() % 22_000) as u16;
        if given.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.push(port);
        return port;
    }
}

/// Starts ferrokv on `data` with the given ports and waits for its ready line.
pub fn start(data: &Path, client: u16, peer: u16) -> Member {
    start_with(data, client, peer, &[])
}

/// A fresh one-member server in a temporary directory, its client URL, and a two-worker runtime for the test's
/// clients. The member is killed before its directory goes.
pub struct OneMember {
    pub member: Member,
    pub url: String,
    pub rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

/// Starts a [`OneMember`].
pub fn one_member() -> OneMember {
    let dir = tempfile::tempdir().unwrap();
    let member = start(&dir.path().join("data"), free_port(), free_port());
    let url = format!("http://{}", member.endpoint);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    OneMember { member, url, rt, _dir: dir }
}

/// Like [`start`], with extra flags.
pub fn start_with(data: &Path, client: u16, peer: u16, extra: &[&str]) -> Member {
    let (m, ready) = start_detached_env(data, client, peer, extra, &[]);
    ready_within_20s(m, ready)
}

/// Like [`start_with`], with these environment variables (gofail's, say), without waiting: the receiver signals
/// the ready line.
pub fn start_detached_env(
    data: &Path,
    client: u16,
    peer: u16,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Member, mpsc::Receiver<()>) {
    let c = format!("http://127.0.0.1:{client}");
    let p = format!("http://127.0.0.1:{peer}");
    let mut args =
        vec!["--data-dir", data.to_str().unwrap(), "--listen-client-urls", &c, "--advertise-client-urls", &c];
    args.extend_from_slice(&["--listen-peer-urls", &p, "--initial-advertise-peer-urls", &p]);
    args.extend_from_slice(extra);
    spawn_detached_env(&args, env, format!("127.0.0.1:{client}"))
}

/// Starts ferrokv with exactly `args`, without waiting; the receiver signals its ready line.
pub fn spawn_detached(args: &[&str], endpoint: String) -> (Member, mpsc::Receiver<()>) {
    spawn_detached_env(args, &[], endpoint)
}

/// Like [`spawn_detached`], with these environment variables set (gofail's, say).
pub fn spawn_detached_env(args: &[&str], env: &[(&str, &str)], endpoint: String) -> (Member, mpsc::Receiver<()>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrokv"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (log, ready) = follow(&mut child);
    (Member { child, endpoint, log }, ready)
}

/// Starts ferrokv with exactly `args` and waits for its ready line; `endpoint` names it in failures.
pub fn spawn(args: &[&str], endpoint: String) -> Member {
    spawn_env(args, &[], endpoint)
}

/// Like [`spawn`], with these environment variables set.
pub fn spawn_env(args: &[&str], env: &[(&str, &str)], endpoint: String) -> Member {
    let (member, ready) = spawn_detached_env(args, env, endpoint);
    ready_within_20s(member, ready)
}

/// `member` once `ready` signals its ready line; a failure with its last log lines if that takes over 20 s.
pub fn ready_within_20s(member: Member, ready: mpsc::Receiver<()>) -> Member {
    if let Err(e) = ready.recv_timeout(Duration::from_secs(20)) {
        // Dropping the member while panicking prints its last log lines.
        std::thread::sleep(Duration::from_millis(100));
        panic!("ferrokv at {} never logged `ready to serve client requests` ({e})", member.endpoint);
    }
    member
}

/// Follows `child`'s standard error: keeps its last [`LOG_TAIL`] lines, and signals once it logs etcd's line
/// "ready to serve client requests".
pub fn follow(child: &mut Child) -> (Arc<Mutex<VecDeque<String>>>, mpsc::Receiver<()>) {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    let log = Arc::new(Mutex::new(VecDeque::new()));
    let tail = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("ready to serve client requests") {
                let _ = tx.send(());
            }
            let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
            if tail.len() == LOG_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });
    (log, rx)
}

/// A field of /proc/PID/status (`RssAnon:`, `VmHWM:`, …) of process `pid`, in MiB.
pub fn status_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024
}
