//! Issue 20, line 2: histories recorded while a nemesis injects faults are linearizable, and the watches deliver
//! what the linearization says. Three members, serving clients on 127.0.0.1 and peers each on an address of its own
//! (127.0.1.x), and one member, with the faults that need no peers; while 8
//! clients and 4 resumed watchers run the `checker` crate's workload (compactions included) for 42 s on three
//! members and 20 s on one (or `ROBUSTNESS_SECS`: the long profile in docs/reliability.md), the nemesis takes turns
//! every 1.2 s at:
//! 1. `kill -9` of a follower, restarted on its data 1 s later;
//! 2. SIGSTOP of the leader for 1.5 s (three election timeouts), then SIGCONT;
//! 3. `kill -9` of the leader, restarted 1.5 s later;
//! 4. a leader transfer (MoveLeader to the next member);
//! 5. defragmentation of a member;
//! 6. a slow disk: `walBeforeFdatasync=sleep(30)` on the leader for 1 s (gofail's interface);
//! 7. an asymmetric partition of the leader for 1.5 s: every peer message *to* it is blackholed (a proxy in front of
//!    its peer port, `common::proxy`), while it still sends;
//! 8. the same for a follower;
//! 9. a membership change: a follower is removed (MemberRemove), stopped and its data deleted, then added again as
//!    a new member (MemberAdd) and started empty with `--initial-cluster-state existing`, to catch up by snapshot;
//! 10. a stuck disk: the leader's file system frozen for 3 s (six election timeouts; `fsfreeze`, each member's data
//!     on a loop-mounted ext4 of its own, `common::disks`), so the others elect a new leader while it waits; without
//!     root, `walBeforeFdatasync=1*sleep(3000)` instead, one fdatasync that takes 3 s;
//! 11. a full partition of the leader for 2 s: nothing it sends or is sent reaches a peer (each member dials from
//!     its own loopback address, 127.0.1.x, and the proxies cut by sender as well);
//! 12. the same for a follower;
//!
//! and with `--snapshot-count 100`, so a member restarted after a kill, or healed after a cut, is often behind the
//! leader's compacted log and catches up by snapshot (the run prints how many snapshots were received). Then every
//! member must end with the same HashKV. Each fault is logged with its time, so a failure can be laid
//! against the history.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checker::linearize::{Verdict, check};
use checker::record::{Config, Recording, run};
use checker::watch;
use common::Member;
use common::cluster::{Spec, converged, specs, status};
use common::disks::Disks;
use common::proxy::PeerProxy;
use server::proto::etcdserverpb::{DefragmentRequest, MoveLeaderRequest, maintenance_client::MaintenanceClient};

struct Cluster {
    dir: std::path::PathBuf,
    specs: Vec<Spec>,
    /// In front of each member's peer port; the members advertise these.
    proxies: Vec<PeerProxy>,
    fail_ports: Vec<u16>,
    members: Vec<Option<Member>>,
    /// Each member's file system of its own, to freeze (as root; see `common::disks`).
    disks: Option<Disks>,
}

impl Cluster {
    fn start_member(&self, i: usize) -> Member {
        self.start_member_as(i, "new")
    }

    /// Starts member `i`: of a new cluster (`state` "new"), or joining the running one ("existing").
    fn start_member_as(&self, i: usize, state: &str) -> Member {
        let fail = format!("127.0.0.1:{}", self.fail_ports[i]);
        let env = [("GOFAIL_HTTP", fail.as_str())];
        let s = &self.specs[i];
        let initial = self
            .specs
            .iter()
            .zip(&self.proxies)
            .map(|(s, p)| format!("{}=http://127.0.0.1:{}", s.name, p.port))
            .collect::<Vec<_>>()
            .join(",");
        let (data, client) = (self.data(i), format!("http://127.0.0.1:{}", s.client));
        let (listen, advertise) =
            (format!("http://{}:{}", peer_ip(i), s.peer), format!("http://127.0.0.1:{}", self.proxies[i].port));
        let args = [
            "--name",
            &s.name,
            "--data-dir",
            data.to_str().unwrap(),
            "--initial-cluster",
            &initial,
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &listen,
            "--initial-advertise-peer-urls",
            &advertise,
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--snapshot-count",
            "100",
            "--initial-cluster-state",
            state,
        ];
        let (m, ready) = common::spawn_detached_env(&args, &env, self.endpoint(i));
        // A restarted member is ready once it has caught up with the others, which a paused quorum may delay.
        let _ = ready.recv_timeout(Duration::from_secs(20));
        m
    }

    /// Member `i`'s data directory: on its own file system when there is one.
    fn data(&self, i: usize) -> std::path::PathBuf {
        match &self.disks {
            Some(d) => d.mounts[i].join("data"),
            None => self.dir.join(&self.specs[i].name),
        }
    }

    fn endpoint(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.specs[i].client)
    }
}

/// Member `i`'s peer address: its own, so the proxies tell its connections apart from the others' (a member dials
/// its peers from the address it listens on).
fn peer_ip(i: usize) -> std::net::IpAddr {
    std::net::Ipv4Addr::new(127, 0, 1, i as u8 + 1).into()
}

/// Cuts (or heals) member `victim` off from every other member both ways: what is sent to it, at its proxy, and
/// what it sends, at the others'.
fn isolate(c: &Cluster, victim: usize, cut: bool) {
    c.proxies[victim].set_cut(cut);
    for (i, p) in c.proxies.iter().enumerate() {
        if i != victim {
            p.set_cut_from(peer_ip(victim), cut);
        }
    }
}

/// The index of the member the others follow, if they agree.
async fn leader(c: &Arc<Mutex<Cluster>>) -> Option<usize> {
    let endpoints: Vec<String> = {
        let c = c.lock().unwrap();
        (0..c.specs.len()).map(|i| c.endpoint(i)).collect()
    };
    let mut ids = Vec::new();
    for e in &endpoints {
        ids.push(status(e).await);
    }
    let lead = ids.iter().flatten().map(|s| s.1).find(|&l| l != 0)?;
    ids.iter().position(|s| s.is_some_and(|s| s.0 == lead))
}

fn signal(m: &Member, sig: libc::c_int) {
    // SAFETY: a signal to our own child process, by its pid.
    unsafe { libc::kill(m.child.id() as libc::pid_t, sig) };
}

/// Removes member `victim` through the leader `l`, stops it and deletes its data, adds it back as a new member and
/// starts it empty, joining the running cluster.
async fn replace(c: &Arc<Mutex<Cluster>>, l: usize, victim: usize) -> Result<(), String> {
    use server::proto::etcdserverpb::{
        MemberAddRequest, MemberListRequest, MemberRemoveRequest, cluster_client::ClusterClient,
    };
    let (leader, url, data) = {
        let c = c.lock().unwrap();
        let url = format!("http://127.0.0.1:{}", c.proxies[victim].port);
        (c.endpoint(l), url, c.data(victim))
    };
    let t = Duration::from_secs(3);
    let mut cl = ClusterClient::connect(format!("http://{leader}")).await.map_err(|e| e.to_string())?;
    let list = tokio::time::timeout(t, cl.member_list(MemberListRequest { linearizable: true }))
        .await
        .map_err(|_| "member list timed out".to_string())?
        .map_err(|e| e.to_string())?
        .into_inner();
    let id = list.members.iter().find(|m| m.peer_ur_ls.contains(&url)).map(|m| m.id).ok_or("victim not listed")?;
    // A removal that would leave fewer started members than a quorum is refused ("unhealthy cluster", etcd's
    // strict reconfiguration check) while a member killed by an earlier fault catches up: retried for 6 s.
    let mut removed = Err("member remove never tried".to_string());
    for _ in 0..20 {
        removed = match tokio::time::timeout(t, cl.member_remove(MemberRemoveRequest { id })).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("member remove timed out".to_string()),
        };
        match &removed {
            Err(e) if e.contains("unhealthy cluster") => {}
            _ => break,
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    removed?;
    let m = c.lock().unwrap().members[victim].take();
    drop(m); // Member's drop kills (SIGKILL) and reaps it.
    std::fs::remove_dir_all(&data).map_err(|e| e.to_string())?;
    let add = MemberAddRequest { peer_ur_ls: vec![url], is_learner: false };
    let mut added = Err("member add never tried".to_string());
    for _ in 0..5 {
        added = match tokio::time::timeout(t, cl.member_add(add.clone())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("member add timed out".to_string()),
        };
        if added.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    added?;
    let c2 = Arc::clone(c);
    let m = tokio::task::spawn_blocking(move || c2.lock().unwrap().start_member_as(victim, "existing")).await.unwrap();
    c.lock().unwrap().members[victim] = Some(m);
    Ok(())
}

/// Runs the faults in turn until `end`; returns what it did, with times.
async fn nemesis(c: Arc<Mutex<Cluster>>, end: Instant, epoch: Instant) -> Vec<String> {
    let mut log = Vec::new();
    let mut turn = 0usize;
    while Instant::now() + Duration::from_secs(3) < end {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let Some(l) = leader(&c).await else {
            log.push(format!("{:6.2} s: no leader agreed, skipped", epoch.elapsed().as_secs_f64()));
            continue;
        };
        let (n, frozen) = {
            let c = c.lock().unwrap();
            (c.specs.len(), c.disks.is_some())
        };
        let follower = if n == 1 { l } else { (l + 1 + turn % (n - 1)) % n };
        let at = epoch.elapsed().as_secs_f64();
        // One member has no follower to kill or lead to move: its turns are the other four.
        let kind = if n == 1 { [1, 2, 4, 5][turn % 4] } else { [0, 5, 8, 1, 10, 9, 6, 2, 11, 3, 7, 4][turn % 12] };
        let (what, victim, down) = match kind {
            0 => ("kill -9 follower", follower, Duration::from_millis(1000)),
            1 => ("SIGSTOP leader", l, Duration::from_millis(1500)),
            2 => ("kill -9 leader", l, Duration::from_millis(1500)),
            3 => ("move leader", l, Duration::ZERO),
            4 => ("defragment", follower, Duration::ZERO),
            5 => ("slow WAL fdatasync on leader", l, Duration::from_millis(1000)),
            6 => ("cut peer traffic to leader", l, Duration::from_millis(1500)),
            7 => ("cut peer traffic to follower", follower, Duration::from_millis(1500)),
            8 => ("replace follower", follower, Duration::ZERO),
            9 if frozen => ("frozen disk on leader", l, Duration::from_millis(3000)),
            9 => ("stuck WAL fdatasync on leader", l, Duration::from_millis(3500)),
            10 => ("isolate leader", l, Duration::from_millis(2000)),
            _ => ("isolate follower", follower, Duration::from_millis(2000)),
        };
        turn += 1;
        log.push(format!("{at:6.2} s: {what} (m{})", victim + 1));
        match what {
            "kill -9 follower" | "kill -9 leader" => {
                let m = c.lock().unwrap().members[victim].take();
                drop(m); // Member's drop kills (SIGKILL) and reaps it.
                tokio::time::sleep(down).await;
                let c2 = Arc::clone(&c);
                let m = tokio::task::spawn_blocking(move || c2.lock().unwrap().start_member(victim)).await.unwrap();
                c.lock().unwrap().members[victim] = Some(m);
            }
            "SIGSTOP leader" => {
                if let Some(m) = &c.lock().unwrap().members[victim] {
                    signal(m, libc::SIGSTOP);
                }
                tokio::time::sleep(down).await;
                if let Some(m) = &c.lock().unwrap().members[victim] {
                    signal(m, libc::SIGCONT);
                }
            }
            "move leader" => {
                let (from, to_endpoint) = {
                    let c = c.lock().unwrap();
                    (c.endpoint(victim), c.endpoint(follower))
                };
                if let (Some((target, _)), Ok(mut m)) =
                    (status(&to_endpoint).await, MaintenanceClient::connect(format!("http://{from}")).await)
                {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(3),
                        m.move_leader(MoveLeaderRequest { target_id: target }),
                    )
                    .await;
                }
            }
            "cut peer traffic to leader" | "cut peer traffic to follower" => {
                let proxy = c.lock().unwrap().proxies[victim].clone();
                proxy.set_cut(true);
                tokio::time::sleep(down).await;
                proxy.set_cut(false);
            }
            "frozen disk on leader" => {
                if let Some(d) = &c.lock().unwrap().disks {
                    d.freeze(victim);
                }
                tokio::time::sleep(down).await;
                if let Some(d) = &c.lock().unwrap().disks {
                    d.thaw(victim);
                }
            }
            "isolate leader" | "isolate follower" => {
                isolate(&c.lock().unwrap(), victim, true);
                tokio::time::sleep(down).await;
                isolate(&c.lock().unwrap(), victim, false);
            }
            "replace follower" => {
                if let Err(why) = replace(&c, l, victim).await {
                    log.push(format!("        not done: {why}"));
                }
            }
            "defragment" => {
                let e = c.lock().unwrap().endpoint(victim);
                if let Ok(mut m) = MaintenanceClient::connect(format!("http://{e}")).await {
                    let _ = tokio::time::timeout(Duration::from_secs(5), m.defragment(DefragmentRequest {})).await;
                }
            }
            _ => {
                // A stuck disk: one fdatasync of six election timeouts; a slow one: every fdatasync 30 ms longer.
                let terms = if what == "stuck WAL fdatasync on leader" { "1*sleep(3000)" } else { "sleep(30)" };
                debug_assert!(what.ends_with("WAL fdatasync on leader"), "{what}");
                let port = c.lock().unwrap().fail_ports[victim];
                tokio::task::spawn_blocking(move || common::failpoint(port, "walBeforeFdatasync", Some(terms)))
                    .await
                    .unwrap();
                tokio::time::sleep(down).await;
                tokio::task::spawn_blocking(move || common::failpoint(port, "walBeforeFdatasync", None)).await.unwrap();
            }
        }
    }
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_member_histories_under_faults_are_linearizable() {
    under_faults(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_histories_under_faults_are_linearizable() {
    under_faults(1).await;
}

async fn under_faults(size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (specs, _) = specs(size);
    let fail_ports = (0..size).map(|_| common::free_port()).collect();
    let mut proxies = Vec::new();
    for s in &specs {
        proxies.push(PeerProxy::start(std::net::SocketAddr::new(peer_ip(proxies.len()), s.peer)).await);
    }
    // Long enough for every fault in turn: twelve kinds on three members, four on one.
    let default = if size == 1 { 20 } else { 42 };
    let secs = std::env::var("ROBUSTNESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let disks = (size > 1 && common::is_root("frozen file systems"))
        .then(|| Disks::create(dir.path(), &names, Duration::from_secs(secs + 300)));
    let cluster = Cluster { dir: dir.path().to_path_buf(), specs, proxies, fail_ports, members: Vec::new(), disks };
    let started: Vec<Option<Member>> = (0..size).map(|i| Some(cluster.start_member(i))).collect();
    let cluster = Arc::new(Mutex::new(Cluster { members: started, ..cluster }));
    let endpoints: Vec<String> = {
        let c = cluster.lock().unwrap();
        (0..size).map(|i| c.endpoint(i)).collect()
    };
    common::cluster::agreed_leader(&endpoints).await;
    let duration = Duration::from_secs(secs);
    let epoch = Instant::now();
    let faults = tokio::spawn(nemesis(Arc::clone(&cluster), epoch + duration, epoch));
    let config = Config {
        endpoints: endpoints.iter().map(|e| format!("http://{e}")).collect(),
        clients: 8,
        keys: 6,
        duration,
        timeout: Duration::from_secs(3),
        seed: 20,
        watchers: 4,
    };
    let rec = run(&config).await.unwrap();
    let log = faults.await.unwrap();
    println!("faults:\n{}", log.join("\n"));
    // Every member is back: the same store everywhere.
    converged(&endpoints).await;
    let mut snapshots = 0.0;
    for e in &endpoints {
        let (_, text) = tokio::task::block_in_place(|| common::http_get(e, "/metrics"));
        snapshots += text
            .lines()
            .filter(|l| l.starts_with("etcd_network_snapshot_receive_success"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    println!("snapshots received by members catching up: {snapshots}");

    let Recording { mut history, watches, complete_to } = rec;
    let recorded = history.clone();
    let total = history.operations.len();
    let unknown = history.operations.iter().filter(|o| o.outcome == checker::history::Outcome::Unknown).count();
    let (resolved, dropped) = watch::resolve_unknown(&mut history, &watches, complete_to);
    let mut left: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for op in history.operations.iter().filter(|o| o.outcome == checker::history::Outcome::Unknown) {
        let kind = format!("{:?}", op.request);
        *left.entry(kind.split([' ', '{', '(']).next().unwrap_or("").to_string()).or_default() += 1;
    }
    println!("unknown after the watch resolved what it saw: {left:?} (the watch complete to {complete_to:?})");
    let steps = std::env::var("ROBUSTNESS_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(500_000_000);
    let checking = Instant::now();
    match check(&history, steps) {
        Verdict::Linearizable(witness) => {
            let events = watch::events_of(&witness);
            let anomalies = watch::check_compacted(&watches, &events, watch::compacted(&history));
            if !anomalies.is_empty() {
                explain_watch(&anomalies, &watches, &events, &history);
            }
            assert!(anomalies.is_empty(), "watch anomalies: {anomalies:#?}");
            // How often the run met the case etcd #18089 lost: a watch refused at a compaction resumes at its
            // revision, and there a deletion may have been made.
            let deletes: std::collections::HashSet<i64> = events
                .iter()
                .filter(|e| e.kind == checker::model::EventKind::Delete)
                .map(|e| e.kv.mod_revision)
                .collect();
            let compactions: Vec<i64> = history
                .operations
                .iter()
                .filter(|o| matches!(o.outcome, checker::history::Outcome::Ok(_)))
                .filter_map(|o| match o.request {
                    checker::history::Request::Compact { revision } => Some(revision),
                    _ => None,
                })
                .collect();
            let refused =
                watches.iter().filter(|s| s.responses.iter().any(|r| r.canceled && r.compact_revision > 0)).count();
            println!(
                "{} compactions ({} at a deletion's revision); {refused} watch streams refused as compacted, \
                 resumed at the compaction point",
                compactions.len(),
                compactions.iter().filter(|r| deletes.contains(r)).count()
            );
        }
        Verdict::NotLinearizable { placed, stuck, revision } => {
            explain(&recorded, &watches, revision);
            panic!("not linearizable after {} operations, at revision {revision}: {stuck:#?}", placed.len())
        }
        Verdict::GaveUp { steps } => panic!("the search gave up after {steps} steps"),
    }
    let events: usize = watches.iter().flat_map(|s| &s.responses).map(|r| r.events.len()).sum();
    println!(
        "{size} member(s), {secs} s: {total} operations ({unknown} unknown: {resolved} resolved and {dropped} dropped \
         by the watch), {} faults, {} watch streams with {events} events, complete to {complete_to:?}: \
         linearizable (checked in {:.1} s), watches as they must be",
        log.len(),
        watches.len(),
        checking.elapsed().as_secs_f64()
    );
    // A turn with no agreed leader is skipped, so the last kind or two may not come in a short run.
    let kinds: std::collections::BTreeSet<&str> = log
        .iter()
        .filter(|l| !l.contains("skipped") && !l.contains("not done"))
        .filter_map(|l| l.split(": ").nth(1)?.split(" (m").next())
        .collect();
    let least = if size == 1 { 4 } else { 10 };
    assert!(kinds.len() >= least, "{} kinds of fault ran, not {least}:\n{}", kinds.len(), log.join("\n"));
}

/// Prints, for each stream with a gap, how it started and ended, the events it missed with their kinds, and the
/// compactions requested near them.
fn explain_watch(
    anomalies: &[watch::Anomaly],
    watches: &[checker::watch::WatchStream],
    events: &[checker::model::Event],
    h: &checker::history::History,
) {
    use checker::history::{Outcome, Request};
    for a in anomalies {
        let watch::Anomaly::Gap { stream, missing } = a else { continue };
        let s = &watches[*stream];
        let first = s.responses.first().map(|r| (r.revision, r.created, r.canceled, r.compact_revision));
        let last = s.responses.last().map(|r| (r.revision, r.created, r.canceled, r.compact_revision));
        println!(
            "stream {stream} on {:?} from {} (prev_kv {}): {} responses, first {first:?}, last {last:?}",
            String::from_utf8_lossy(&s.key),
            s.start_revision,
            s.prev_kv,
            s.responses.len()
        );
        for (rev, key) in missing {
            for e in events.iter().filter(|e| e.kv.mod_revision == *rev && &e.kv.key == key) {
                println!("  missed {:?} {:?} at {rev}", e.kind, String::from_utf8_lossy(key));
            }
            for op in &h.operations {
                if let Request::Compact { revision } = op.request {
                    if (revision - rev).abs() <= 50 && !matches!(op.outcome, Outcome::Failed(_)) {
                        println!("  compaction at {revision}: {:?}", op.outcome);
                    }
                }
            }
        }
    }
}

/// Prints what the watches and the recorded operations say about the revisions around `revision`.
fn explain(h: &checker::history::History, watches: &[checker::watch::WatchStream], revision: i64) {
    use checker::history::{Outcome, Request, Response, TxnOp};
    let near = |r: i64| (revision - 2..=revision + 4).contains(&r);
    let mut values = std::collections::BTreeSet::new();
    for (i, s) in watches.iter().enumerate().filter(|(_, s)| s.key == [0]) {
        for r in &s.responses {
            for e in r.events.iter().filter(|e| near(e.kv.mod_revision)) {
                println!(
                    "watch {i} (from {}): {:?} {:?}={:?} at {}",
                    s.start_revision,
                    e.kind,
                    String::from_utf8_lossy(&e.kv.key),
                    String::from_utf8_lossy(&e.kv.value),
                    e.kv.mod_revision
                );
                values.insert(e.kv.value.clone());
            }
        }
    }
    for (i, op) in h.operations.iter().enumerate() {
        let rev = match &op.outcome {
            Outcome::Ok(Response::Put { revision }) | Outcome::Ok(Response::Txn { revision, .. }) => Some(*revision),
            Outcome::Ok(Response::Delete { revision, .. }) | Outcome::Ok(Response::LeaseRevoke { revision }) => {
                Some(*revision)
            }
            _ => None,
        };
        let writes_value = match &op.request {
            Request::Put { value, .. } => values.contains(value),
            Request::Txn { success, .. } => {
                success.iter().any(|o| matches!(o, TxnOp::Put { value, .. } if values.contains(value)))
            }
            _ => false,
        };
        let unknown_write = op.outcome == Outcome::Unknown && op.request.writes();
        if rev.is_some_and(near) || writes_value || (unknown_write && !matches!(op.request, Request::Put { .. })) {
            println!("op {i} client {} [{}..{:?}]: {:?} -> {:?}", op.client, op.call, op.ret, op.request, op.outcome);
        }
    }
}

/// The partition injector cuts by sender: through a proxy cutting what 127.0.1.1 sends, a connection from
/// 127.0.1.2 is carried and one from 127.0.1.1 is not (the full partitions above rely on it).
#[tokio::test]
async fn the_peer_proxy_cuts_one_sender_only() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut c, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = c.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let proxy = PeerProxy::start(target).await;
    // Whether "hello", sent through the proxy from `source`, comes back within `wait`.
    let echoed = |source, wait| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(std::net::SocketAddr::new(source, 0)).unwrap();
        let mut conn = socket.connect(([127, 0, 0, 1], proxy.port).into()).await.unwrap();
        conn.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        matches!(tokio::time::timeout(wait, conn.read_exact(&mut buf)).await, Ok(Ok(5)))
    };
    proxy.set_cut_from(peer_ip(0), true);
    let short = Duration::from_millis(500);
    let answered = [echoed(peer_ip(0), short).await, echoed(peer_ip(1), short).await];
    assert_eq!(answered, [false, true], "cut from 127.0.1.1 only");
    proxy.set_cut_from(peer_ip(0), false);
    assert!(echoed(peer_ip(0), Duration::from_secs(2)).await, "healed, 127.0.1.1 is carried again");
}
