//! Overload and hostile clients (issue 20, line 5). Each scenario runs a member of its own, one scenario at a time,
//! and checks that the member keeps answering health checks and other clients, that what it acknowledged is there
//! afterwards, and that its memory stays under the bound stated in docs/reliability.md:
//! - descriptors run out: the member's open-file limit is lowered to 1,024 and 1,500 idle connections are opened
//!   (or, with `OVERLOAD_CONNECTIONS=100000`, that many are offered against its own limit, from holder processes:
//!   this test binary's ignored test `connection_holder`); it must neither spin on the failing accept nor stop
//!   serving the connections it has, must keep each idle connection's heap under the stated bound, and must accept
//!   again once they close;
//! - 10,000 watchers on one key (20 connections × 500) under puts: every watcher gets every event;
//! - a client that never reads its watch stream while 100 MiB of values are put: the member holds a bounded part of
//!   it, and the watcher gets every event once it reads;
//! - a flood of 8,000 lease grants (`OVERLOAD_LEASES`), which then all expire together, while another client puts;
//! - puts offered far faster than the member applies them (30,000 as fast as the client can, during a 4 s disk
//!   stall): the excess is refused with etcd's "too many requests".

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{Member, free_port, start, status_mib};
use server::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseLeasesRequest, PutRequest, RangeRequest, WatchCreateRequest, WatchRequest,
    kv_client::KvClient, lease_client::LeaseClient, watch_client::WatchClient, watch_request::RequestUnion,
};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

/// The scenarios measure one member's memory and CPU: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// CPU time (user + system) process `pid` has used.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces) start after the last ')'; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest.split(' ').skip(11).take(2).map(|v| v.parse().unwrap()).collect();
    // SAFETY: sysconf takes no pointers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis((f[0] + f[1]) * 1000 / hz)
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// An HTTP/1.1 connection kept open, for health checks that need no new descriptor on the member.
struct KeepAlive {
    reader: BufReader<TcpStream>,
    addr: String,
}

impl KeepAlive {
    fn open(addr: &str) -> KeepAlive {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        KeepAlive { reader: BufReader::new(s), addr: addr.to_string() }
    }

    /// GET `path`: the status and body, or what went wrong.
    fn get(&mut self, path: &str) -> Result<(u16, String), String> {
        let s = self.reader.get_mut();
        write!(s, "GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.addr).map_err(|e| e.to_string())?;
        let mut line = String::new();
        self.reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let status = line.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or(format!("status line {line:?}"))?;
        let mut len = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line).map_err(|e| e.to_string())?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body).map_err(|e| e.to_string())?;
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// Health checks every 250 ms on a kept-open connection until `stop`: the slowest answer, and every failure.
fn health_checker(
    addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(Duration, usize, Vec<String>)> {
    std::thread::spawn(move || {
        let mut conn = KeepAlive::open(&addr);
        let (mut slowest, mut checks, mut failures) = (Duration::ZERO, 0, Vec::new());
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let t = Instant::now();
            match conn.get("/health") {
                Ok((200, body)) if body.contains("\"true\"") => {}
                other => failures.push(format!("{other:?}")),
            }
            slowest = slowest.max(t.elapsed());
            checks += 1;
            std::thread::sleep(Duration::from_millis(250));
        }
        (slowest, checks, failures)
    })
}

/// Runs `load` against a fresh member while health checks go on; returns the member, the peak of its anonymous
/// resident memory (the heap; mapped store pages are the page cache's) above the idle member's, in MiB, sampled
/// every 20 ms, and asserts every health check passed.
fn under_load<T>(name: &str, env: &[(&str, &str)], load: impl FnOnce(&Member) -> T) -> (Member, u64, T) {
    let dir = tempfile::tempdir().unwrap();
    let (m, ready) = common::start_detached_env(&dir.path().join("data"), free_port(), free_port(), &[], env);
    let m = common::ready_within_20s(m, ready);
    std::thread::sleep(Duration::from_millis(500));
    let pid = m.child.id();
    let idle = status_mib(pid, "RssAnon:");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let health = health_checker(m.endpoint.clone(), stop.clone());
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(status_mib(pid, "RssAnon:"));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let out = load(&m);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (slowest, checks, failures) = health.join().unwrap();
    let peak = sampler.join().unwrap();
    eprintln!("{name}: heap idle {idle} MiB, peak {peak} MiB; {checks} health checks, slowest {slowest:?}");
    assert!(failures.is_empty(), "{name}: health checks failed: {failures:?}");
    assert!(checks > 0, "{name}: no health check ran");
    std::mem::forget(dir); // the member still runs on it; the caller ends the member, the OS the directory
    (m, peak.saturating_sub(idle), out)
}

/// Connections one holder process opens at most: under this machine's limit of 20,000 descriptors a process.
const PER_HOLDER: usize = 16_000;

/// A process of this test binary holding idle connections to a member (the ignored test `connection_holder`), so
/// that the connections offered are not bounded by this process's own descriptor limit. Dropping it ends it.
struct Holder {
    child: std::process::Child,
    /// Connections it opened, and connects that failed or timed out.
    held: usize,
    failed: usize,
}

impl Holder {
    /// Opens `n` connections to `addr` from source address `source` (each holder its own, so that the ephemeral
    /// ports of one source address are not exhausted), and returns once every connect has ended.
    fn open(addr: &str, source: std::net::Ipv4Addr, n: usize) -> Holder {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "connection_holder", "--nocapture", "--test-threads=1"])
            .env("OVERLOAD_HOLD", format!("{addr} {source} {n}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        // The harness may have written "test connection_holder ... " on the same line first.
        while out.read_line(&mut line).unwrap_or(0) > 0 && !line.contains("HELD ") {
            line.clear();
        }
        let said = line.split("HELD ").nth(1).unwrap_or("");
        let counts: Vec<usize> = said.split_whitespace().filter_map(|v| v.parse().ok()).collect();
        assert_eq!(counts.len(), 2, "the holder said {line:?}");
        Holder { child, held: counts[0], failed: counts[1] }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // the holder ends when its input does
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The holder process's part (see [`Holder`]): opens the connections `OVERLOAD_HOLD` names, each connect bounded
/// by 3 s, prints `HELD <opened> <failed>`, and holds them until its input ends.
#[test]
#[ignore = "a helper process of descriptors_run_out_cleanly, started by it"]
fn connection_holder() {
    let spec = std::env::var("OVERLOAD_HOLD").expect("run by descriptors_run_out_cleanly, which sets OVERLOAD_HOLD");
    let parts: Vec<&str> = spec.split(' ').collect();
    let addr: std::net::SocketAddr = parts[0].parse().unwrap();
    let source: std::net::IpAddr = parts[1].parse().unwrap();
    let n: usize = parts[2].parse().unwrap();
    let rt = runtime();
    let held = rt.block_on(async {
        let mut connects = tokio::task::JoinSet::new();
        for _ in 0..n {
            connects.spawn(async move {
                let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
                socket.bind(std::net::SocketAddr::new(source, 0)).map_err(|e| e.to_string())?;
                match tokio::time::timeout(Duration::from_secs(3), socket.connect(addr)).await {
                    Ok(Ok(s)) => Ok(s),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_string()),
                }
            });
        }
        let (mut held, mut failed) = (Vec::new(), 0usize);
        while let Some(r) = connects.join_next().await {
            match r {
                Ok(Ok(s)) => held.push(s),
                _ => failed += 1,
            }
        }
        println!("HELD {} {failed}", held.len());
        held
    });
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    drop(held);
}

#[test]
fn descriptors_run_out_cleanly() {
    let _one = serial();
    // 1,500 connections against a limit lowered to 1,024 by default; `OVERLOAD_CONNECTIONS=100000` offers that
    // many against the member's own limit (the machine's: 20,000 here), through several holder processes.
    let offered = std::env::var("OVERLOAD_CONNECTIONS").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(1500);
    let dir = tempfile::tempdir().unwrap();
    let m = start(&dir.path().join("data"), free_port(), free_port());
    let pid = m.child.id();
    let rt = runtime();
    let endpoint = format!("http://{}", m.endpoint);
    let mut kv = rt.block_on(KvClient::connect(endpoint.clone())).unwrap();
    let mut health = KeepAlive::open(&m.endpoint);
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: prlimit writes the member's current limit into `limit`, which outlives the call.
    assert_eq!(unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, std::ptr::null(), &mut limit) }, 0);
    if offered < 10_000 {
        limit = libc::rlimit { rlim_cur: 1024, rlim_max: 1024 };
        // SAFETY: prlimit reads `limit`, which outlives the call, and writes nothing (the old-limit pointer is null).
        let set = unsafe { libc::prlimit(pid as i32, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
        assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
    }
    let limit = limit.rlim_cur as usize;
    let rss_before = status_mib(pid, "VmRSS:");
    let anon_before = status_mib(pid, "RssAnon:");
    let fds_before = open_fds(pid);

    let started = Instant::now();
    let holders: Vec<Holder> = (0..offered.div_ceil(PER_HOLDER))
        .map(|k| {
            let n = PER_HOLDER.min(offered - k * PER_HOLDER);
            Holder::open(&m.endpoint, std::net::Ipv4Addr::new(127, 0, 2, k as u8 + 1), n)
        })
        .collect();
    let opened: usize = holders.iter().map(|h| h.held).sum();
    let failed: usize = holders.iter().map(|h| h.failed).sum();
    std::thread::sleep(Duration::from_secs(1));
    let held = open_fds(pid);
    eprintln!(
        "descriptors: {offered} connections offered to a member whose limit is {limit} in {:.1} s: {opened} \
         opened (accepted, or waiting in the listen backlog), {failed} refused or timed out; the member holds \
         {held} descriptors (from {fds_before})",
        started.elapsed().as_secs_f64()
    );
    assert!(held + 24 >= limit, "the member never reached its limit ({held} of {limit}): the test did not test");
    // At the limit, accept fails at once: a loop that retries without waiting burns a core.
    let (c0, t0) = (cpu(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let share = (cpu(pid) - c0).as_secs_f64() / t0.elapsed().as_secs_f64();
    eprintln!("descriptors: at the limit the member used {:.0}% of a core", share * 100.0);
    assert!(share < 0.25, "the member spins at its descriptor limit: {:.0}% of a core", share * 100.0);
    // The connections it has still work.
    let (status, body) = health.get("/health").expect("a health check on a connection the member already has");
    assert!(status == 200 && body.contains("\"true\""), "{status} {body}");
    let put = PutRequest { key: b"at-limit".to_vec(), value: b"v".to_vec(), ..Default::default() };
    let acked = rt.block_on(kv.put(put)).expect("a put on a connection the member already has").into_inner();
    let (rss_at_limit, anon_at_limit) = (status_mib(pid, "VmRSS:"), status_mib(pid, "RssAnon:"));
    let more = held.saturating_sub(fds_before);
    let per = (anon_at_limit.saturating_sub(anon_before) << 20) / more.max(1) as u64;
    eprintln!(
        "descriptors: resident {rss_before} -> {rss_at_limit} MiB, heap {anon_before} -> {anon_at_limit} MiB with \
         {more} more connections: {per} bytes of heap each"
    );
    // The bound docs/reliability.md states: 8 KiB of heap an idle connection (3.3 KiB measured), beyond 32 MiB.
    assert!(
        anon_at_limit.saturating_sub(anon_before) <= 32 + (more as u64 * 8) / 1024,
        "idle connections cost more heap than the stated bound: {per} bytes each"
    );
    // Once they close, new connections are served.
    drop(holders);
    let deadline = Instant::now() + Duration::from_secs(10);
    let got = loop {
        let r = rt.block_on(async {
            let mut kv = KvClient::connect(endpoint.clone()).await.map_err(|e| e.to_string())?;
            let req = RangeRequest { key: b"at-limit".to_vec(), ..Default::default() };
            kv.range(req).await.map_err(|e| e.to_string()).map(|r| r.into_inner())
        });
        match r {
            Ok(r) => break r,
            Err(e) if Instant::now() > deadline => {
                panic!("no new connection served 10 s after the idle ones closed: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    assert_eq!(got.kvs[0].mod_revision, acked.header.unwrap().revision, "the put at the limit is there");
}

/// Opens a watch stream on `endpoint` with `n` watchers of `key` (a prefix if `prefix`); returns it once every
/// watcher is created.
async fn watchers(
    endpoint: String,
    key: &[u8],
    prefix: bool,
    n: usize,
) -> (mpsc::Sender<WatchRequest>, tonic::Streaming<server::proto::etcdserverpb::WatchResponse>) {
    let mut client = WatchClient::connect(endpoint).await.unwrap().max_decoding_message_size(64 << 20);
    let (tx, rx) = mpsc::channel(n + 1);
    let mut stream = client.watch(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let range_end = if prefix {
        let mut end = key.to_vec();
        *end.last_mut().unwrap() += 1;
        end
    } else {
        Vec::new()
    };
    for _ in 0..n {
        let create = WatchCreateRequest { key: key.to_vec(), range_end: range_end.clone(), ..Default::default() };
        tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await.unwrap();
    }
    let mut created = 0;
    while created < n {
        let r = tokio::time::timeout(Duration::from_secs(30), stream.message()).await.unwrap().unwrap().unwrap();
        created += usize::from(r.created);
    }
    (tx, stream)
}

#[test]
fn ten_thousand_watchers_on_one_key() {
    let _one = serial();
    const STREAMS: usize = 20;
    const PER_STREAM: usize = 500;
    const PUTS: usize = 20;
    let (m, grew, ()) = under_load("10,000 watchers", &[], |m| {
        let endpoint = format!("http://{}", m.endpoint);
        let rt = runtime();
        rt.block_on(async {
            let mut streams = Vec::new();
            for _ in 0..STREAMS {
                streams.push(watchers(endpoint.clone(), b"hot", false, PER_STREAM).await);
            }
            let readers: Vec<_> = streams
                .into_iter()
                .map(|(tx, mut stream)| {
                    tokio::spawn(async move {
                        let mut seen: HashMap<i64, usize> = HashMap::new();
                        while seen.len() < PER_STREAM || seen.values().any(|&c| c < PUTS) {
                            let r = tokio::time::timeout(Duration::from_secs(60), stream.message()).await;
                            let r = r.expect("events within 60 s").unwrap().unwrap();
                            *seen.entry(r.watch_id).or_default() += r.events.len();
                        }
                        drop(tx);
                        seen
                    })
                })
                .collect();
            let mut kv = KvClient::connect(endpoint).await.unwrap();
            let mut slowest = Duration::ZERO;
            for i in 0..PUTS {
                let t = Instant::now();
                kv.put(PutRequest { key: b"hot".to_vec(), value: vec![b'a'; 100 + i], ..Default::default() })
                    .await
                    .unwrap();
                slowest = slowest.max(t.elapsed());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let mut total = 0;
            for r in readers {
                let seen = r.await.unwrap();
                assert!(seen.values().all(|&c| c == PUTS), "a watcher saw a wrong number of events");
                total += seen.values().sum::<usize>();
            }
            eprintln!("10,000 watchers: {total} events delivered; slowest put {slowest:?}");
            assert_eq!(total, STREAMS * PER_STREAM * PUTS);
        });
    });
    eprintln!("10,000 watchers: peak resident {grew} MiB above idle");
    assert!(grew < 512, "10,000 watchers took {grew} MiB");
    drop(m);
}

/// Puts 100 MiB of 256 KiB values under `big/`, with a watcher of `big/` that reads nothing until they are all
/// acknowledged (if `stalled`); then it reads, and must get every event in order. The peak resident memory above
/// the idle member's.
fn hundred_mib_of_puts(stalled: bool) -> u64 {
    const PUTS: usize = 400;
    const SIZE: usize = 256 << 10;
    let name = if stalled { "100 MiB of puts, a watcher that never reads" } else { "100 MiB of puts, no watcher" };
    let (m, grew, ()) = under_load(name, &[], |m| {
        let endpoint = format!("http://{}", m.endpoint);
        let rt = runtime();
        rt.block_on(async {
            let watcher = if stalled { Some(watchers(endpoint.clone(), b"big/", true, 1).await) } else { None };
            let mut kv = KvClient::connect(endpoint).await.unwrap();
            for i in 0..PUTS {
                let value = vec![b'a' + (i % 26) as u8; SIZE];
                kv.put(PutRequest { key: format!("big/{i:04}").into_bytes(), value, ..Default::default() })
                    .await
                    .unwrap();
            }
            eprintln!("{name}: heap {} MiB when the puts are done", status_mib(m.child.id(), "RssAnon:"));
            let Some((tx, mut stalled)) = watcher else { return };
            // Now it reads: every event, in order.
            let mut keys = Vec::new();
            while keys.len() < PUTS {
                let r = tokio::time::timeout(Duration::from_secs(60), stalled.message()).await;
                let r = r.expect("events within 60 s").unwrap().unwrap();
                keys.extend(r.events.into_iter().map(|e| e.kv.unwrap().key));
            }
            let want: Vec<Vec<u8>> = (0..PUTS).map(|i| format!("big/{i:04}").into_bytes()).collect();
            assert_eq!(keys, want, "the stalled watcher gets every event, in order, once it reads");
            drop(tx);
        });
    });
    drop(m);
    grew
}

#[test]
fn a_watcher_that_never_reads() {
    let _one = serial();
    // The puts alone cost memory (Raft keeps its log in memory until a snapshot, as etcd's does): the stalled
    // watcher's share is the difference.
    let without = hundred_mib_of_puts(false);
    let with = hundred_mib_of_puts(true);
    eprintln!("a watcher that never reads: peak {without} MiB above idle without it, {with} MiB with it");
    // Its stream holds at most 16 MiB of answers, a catch-up step (about 1 MiB) and what HTTP/2 lets through.
    assert!(with < without + 64, "a watcher that never reads made the member hold {} MiB more", with - without);
}

#[test]
fn a_flood_of_lease_grants() {
    let _one = serial();
    // 8,000 leases by default (`OVERLOAD_LEASES` for more): they expire together and are revoked at etcd's rate,
    // 1,000 a second.
    const TASKS: usize = 16;
    let each = std::env::var("OVERLOAD_LEASES").ok().and_then(|v| v.parse::<usize>().ok()).unwrap_or(8000) / TASKS;
    let (m, grew, ()) = under_load("lease flood", &[], |m| {
        let endpoint = format!("http://{}", m.endpoint);
        let rt = runtime();
        rt.block_on(async {
            let t = Instant::now();
            let grants: Vec<_> = (0..TASKS)
                .map(|_| {
                    let endpoint = endpoint.clone();
                    tokio::spawn(async move {
                        let mut lease = LeaseClient::connect(endpoint).await.unwrap();
                        let mut ok = 0;
                        for _ in 0..each {
                            ok += usize::from(lease.lease_grant(LeaseGrantRequest { ttl: 3, id: 0 }).await.is_ok());
                        }
                        ok
                    })
                })
                .collect();
            // Another client puts meanwhile; every acknowledged put must be there afterwards.
            let mut kv = KvClient::connect(endpoint.clone()).await.unwrap();
            let mut acked = Vec::new();
            while !grants.iter().all(|g| g.is_finished()) {
                let key = format!("during/{}", acked.len()).into_bytes();
                let r = kv.put(PutRequest { key: key.clone(), value: b"v".to_vec(), ..Default::default() }).await;
                acked.push((key, r.unwrap().into_inner().header.unwrap().revision));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let mut granted = 0;
            for g in grants {
                granted += g.await.unwrap();
            }
            eprintln!("lease flood: {granted} leases granted in {:?}; {} puts meanwhile", t.elapsed(), acked.len());
            assert_eq!(granted, TASKS * each);
            // They all expire (3 s TTL) and are revoked.
            let mut lease = LeaseClient::connect(endpoint).await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let left = lease.lease_leases(LeaseLeasesRequest {}).await.unwrap().into_inner().leases.len();
                if left == 0 {
                    break;
                }
                assert!(Instant::now() < deadline, "{left} leases still alive 60 s after their 3 s TTL");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            eprintln!("lease flood: every lease expired {:?} after the first grant", t.elapsed());
            for (key, rev) in acked {
                let r = kv.range(RangeRequest { key, ..Default::default() }).await.unwrap().into_inner();
                assert_eq!(r.kvs[0].mod_revision, rev, "a put acknowledged during the flood is there");
            }
        });
    });
    eprintln!("lease flood: peak resident {grew} MiB above idle");
    assert!(grew < 256, "{} leases took {grew} MiB", TASKS * each);
    drop(m);
}

#[test]
fn puts_at_a_hundred_times_capacity() {
    let _one = serial();
    const OFFERED: usize = 30_000;
    let gofail = free_port();
    let env = format!("127.0.0.1:{gofail}");
    let (m, grew, (acked, refused)) = under_load("100× puts", &[("GOFAIL_HTTP", &env)], |m| {
        let endpoint = format!("http://{}", m.endpoint);
        let rt = runtime();
        rt.block_on(async {
            let mut channels = Vec::new();
            for _ in 0..50 {
                channels.push(KvClient::connect(endpoint.clone()).await.unwrap());
            }
            // The disk stalls for 4 s (the Raft thread's next save waits), while puts are offered as fast as this
            // client can: they pile up far past what the member applies in a second (a few thousand here).
            common::failpoint(gofail, "raftBeforeSave", Some("1*sleep(4000)"));
            let t = Instant::now();
            let puts: Vec<_> = (0..OFFERED)
                .map(|i| {
                    let mut kv = channels[i % channels.len()].clone();
                    tokio::spawn(async move {
                        let key = format!("flood/{i:06}").into_bytes();
                        let r = kv.put(PutRequest { key: key.clone(), value: vec![b'x'; 1024], ..Default::default() });
                        match tokio::time::timeout(Duration::from_secs(60), r).await {
                            Ok(Ok(r)) => Ok((key, r.into_inner().header.unwrap().revision)),
                            Ok(Err(s)) => Err(s.message().to_string()),
                            Err(_) => Err("no answer in 60 s".to_string()),
                        }
                    })
                })
                .collect();
            let (mut acked, mut refused) = (Vec::new(), HashMap::<String, usize>::new());
            for p in puts {
                match p.await.unwrap() {
                    Ok(a) => acked.push(a),
                    Err(why) => *refused.entry(why).or_default() += 1,
                }
            }
            eprintln!("100× puts: {} acknowledged, refused {refused:?}, in {:?}", acked.len(), t.elapsed());
            (acked, refused)
        })
    });
    eprintln!("100× puts: peak heap {grew} MiB above idle");
    // Every acknowledged put is there.
    let rt = runtime();
    let stored: HashMap<Vec<u8>, i64> = rt.block_on(async {
        let mut kv =
            KvClient::connect(format!("http://{}", m.endpoint)).await.unwrap().max_decoding_message_size(256 << 20);
        let req = RangeRequest {
            key: b"flood/".to_vec(),
            range_end: b"flood0".to_vec(),
            keys_only: true,
            ..Default::default()
        };
        kv.range(req).await.unwrap().into_inner().kvs.into_iter().map(|kv| (kv.key, kv.mod_revision)).collect()
    });
    let lost = acked.iter().filter(|(k, rev)| stored.get(k) != Some(rev)).count();
    assert_eq!(lost, 0, "{lost} acknowledged puts are not there");
    assert!(!acked.is_empty(), "nothing was acknowledged");
    assert!(
        refused.keys().all(|why| why.contains("too many requests")),
        "refusals other than etcd's \"too many requests\": {refused:?}"
    );
    assert!(!refused.is_empty(), "nothing was refused: the member was never overloaded, the test did not test");
    assert!(grew < 400, "{OFFERED} puts at once made the member hold {grew} MiB");
    drop(m);
}
