//! Membership changes with the real `etcdctl` 3.4 under continuous writes: grow 1 → 2 → 3, add a learner and promote
//! it, grow to 5 through a second learner, refuse what etcd refuses (a voter that would leave the started members
//! short of a quorum, a duplicate peer URL, a second learner, promoting a learner that is not caught up, removing a
//! live member while two are down), remove the leader (it stops itself with etcd's log line, a new leader takes
//! over), shrink 5 → 3, and move a member to a new peer URL (`member update`, then a restart there). Through it
//! all a writer puts keys, retrying on another member as etcd's clients do: no put fails for good, and at the end
//! every member holds every acknowledged key and the same HashKV.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::{agreed_leader, holds_all, status};
use common::writer::Writer;
use common::{Member, etcdctl, free_port, start_with};

/// Fast timers, and a short log (members that join later catch up by snapshot).
const TIMERS: [&str; 6] = ["--heartbeat-interval", "50", "--election-timeout", "500", "--snapshot-count", "300"];

/// A member of the test's cluster: its process, name and ports.
struct Node {
    member: Option<Member>,
    name: String,
    client: u16,
    peer: u16,
}

impl Node {
    fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client)
    }
}

/// Starts `name` with its data in `dir/<name>`: a new cluster of `cluster`, or (`existing`) joining one.
fn start(dir: &Path, name: &str, client: u16, peer: u16, cluster: &str, existing: bool) -> Member {
    let state = if existing { "existing" } else { "new" };
    let mut flags = vec!["--name", name, "--initial-cluster", cluster, "--initial-cluster-state", state];
    flags.extend_from_slice(&TIMERS);
    start_with(&dir.join(name), client, peer, &flags)
}

/// etcdctl against `endpoint`, which must succeed; its standard output.
fn ok(endpoint: &str, args: &[&str]) -> String {
    let (success, out, err) = etcdctl(endpoint, args, None);
    assert!(success, "etcdctl {args:?} failed: {err}");
    out
}

/// etcdctl against `endpoint`, which must fail with `message`.
fn refused(endpoint: &str, args: &[&str], message: &str) {
    let (success, out, err) = etcdctl(endpoint, args, None);
    assert!(!success, "etcdctl {args:?} should have been refused, printed {out}");
    assert!(err.contains(message), "etcdctl {args:?}: expected {message:?}, got {err}");
}

/// Retries `etcdctl args` while it fails with etcd's "try again later" errors (a member not yet started or not
/// yet reachable for 5 s, a learner still catching up), up to 30 s; its output.
fn eventually(endpoint: &str, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (success, out, err) = etcdctl(endpoint, args, None);
        if success {
            return out;
        }
        let transient = ["not enough started members", "unhealthy cluster", "in sync with leader", "no leader"];
        assert!(transient.iter().any(|t| err.contains(t)), "etcdctl {args:?} failed: {err}");
        assert!(Instant::now() < deadline, "etcdctl {args:?} still failing after 30 s: {err}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `member add` output: the new id, and the ETCD_INITIAL_CLUSTER line it printed for the new member.
fn added(out: &str) -> (u64, String) {
    let id = out.split_whitespace().nth(1).and_then(|h| u64::from_str_radix(h, 16).ok()).expect(out);
    let cluster = out
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\"").and_then(|r| r.strip_suffix('"')))
        .expect(out);
    (id, cluster.to_string())
}

/// `member list` as name → (id, started, is learner).
fn list(endpoint: &str) -> BTreeMap<String, (u64, bool, bool)> {
    let out = ok(endpoint, &["member", "list"]);
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(", ").collect();
            let id = u64::from_str_radix(f[0], 16).unwrap();
            (f[2].to_string(), (id, f[1] == "started", f[5] == "true"))
        })
        .collect()
}

/// Waits until `name` is listed as started (it has published itself).
fn wait_started(endpoint: &str, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !list(endpoint).get(name).is_some_and(|m| m.1) {
        assert!(Instant::now() < deadline, "{name} never started: {:?}", list(endpoint));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the member's process exits by itself; its last log lines.
fn wait_exit(member: &mut Member) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    while member.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "{} did not stop after its removal", member.endpoint);
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    member.log.lock().unwrap().iter().cloned().collect::<Vec<_>>().join("\n")
}

fn live_endpoints(nodes: &[Node]) -> Vec<String> {
    nodes.iter().filter(|n| n.member.is_some()).map(Node::endpoint).collect()
}

#[test]
fn grow_shrink_promote_remove_leader_and_update_under_writes() {
    if !common::etcd::installed("etcdctl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let new_node = |name: &str| Node { member: None, name: name.into(), client: free_port(), peer: free_port() };
    let mut nodes: Vec<Node> = ["m1", "m2", "m3", "m4", "m5"].iter().map(|n| new_node(n)).collect();
    let purl = |n: &Node| format!("http://127.0.0.1:{}", n.peer);

    // One member.
    let cluster = format!("m1={}", purl(&nodes[0]));
    nodes[0].member = Some(start(dir.path(), "m1", nodes[0].client, nodes[0].peer, &cluster, false));
    let e1 = nodes[0].endpoint();
    let writer = Writer::start(vec![e1.clone()]);

    // 1 → 2; a third voter before m2 has started would leave the started members short of a quorum.
    let (m2, cluster2) = added(&ok(&e1, &["member", "add", "m2", &format!("--peer-urls={}", purl(&nodes[1]))]));
    refused(&e1, &["member", "add", "m3", &format!("--peer-urls={}", purl(&nodes[2]))], "not enough started members");
    nodes[1].member = Some(start(dir.path(), "m2", nodes[1].client, nodes[1].peer, &cluster2, true));
    wait_started(&e1, "m2");
    assert_eq!(list(&nodes[1].endpoint())["m2"].0, m2, "m2 runs with the id member add gave it");
    writer.set_endpoints(live_endpoints(&nodes));

    // A peer URL in use is refused; then 2 → 3.
    refused(&e1, &["member", "add", "dup", &format!("--peer-urls={}", purl(&nodes[1]))], "Peer URLs already exists");
    let (_, cluster3) = added(&eventually(&e1, &["member", "add", "m3", &format!("--peer-urls={}", purl(&nodes[2]))]));
    nodes[2].member = Some(start(dir.path(), "m3", nodes[2].client, nodes[2].peer, &cluster3, true));
    wait_started(&e1, "m3");
    writer.set_endpoints(live_endpoints(&nodes));

    // A learner: not promotable before it has caught up; a second learner is refused; promoted once in sync.
    let (m4, cluster4) =
        added(&ok(&e1, &["member", "add", "m4", "--learner", &format!("--peer-urls={}", purl(&nodes[3]))]));
    assert!(list(&e1).values().any(|m| m.0 == m4 && m.2 && !m.1), "m4 is listed as an unstarted learner");
    refused(&e1, &["member", "promote", &format!("{m4:x}")], "can only promote a learner member which is in sync");
    refused(
        &e1,
        &["member", "add", "m5", "--learner", &format!("--peer-urls={}", purl(&nodes[4]))],
        "too many learner members in cluster",
    );
    nodes[3].member = Some(start(dir.path(), "m4", nodes[3].client, nodes[3].peer, &cluster4, true));
    wait_started(&e1, "m4");
    // The learner reports itself as one once it has applied its own `member add` (it may still be catching up when
    // the leader has applied its publish).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let learner_status = ok(&nodes[3].endpoint(), &["endpoint", "status"]);
        if learner_status.split(", ").nth(5) == Some("true") {
            break;
        }
        assert!(Instant::now() < deadline, "endpoint status says IS LEARNER: {learner_status}");
        std::thread::sleep(Duration::from_millis(100));
    }
    eventually(&e1, &["member", "promote", &format!("{m4:x}")]);
    assert!(!list(&e1)["m4"].2, "m4 is a voter after promotion");
    writer.set_endpoints(live_endpoints(&nodes));

    // 4 → 5 through a follower (the call is forwarded to the leader).
    let (_, cluster5) =
        added(&eventually(&nodes[3].endpoint(), &["member", "add", "m5", &format!("--peer-urls={}", purl(&nodes[4]))]));
    nodes[4].member = Some(start(dir.path(), "m5", nodes[4].client, nodes[4].peer, &cluster5, true));
    wait_started(&e1, "m5");
    writer.set_endpoints(live_endpoints(&nodes));
    let acked_at_five = writer.acked();

    // With two members down, removing a live one would leave no reachable quorum: refused.
    let (leader, li) = rt.block_on(agreed_leader(&live_endpoints(&nodes)));
    let down: Vec<usize> = (0..5).filter(|i| *i != li).take(2).collect();
    let live_follower = (0..5).find(|i| *i != li && !down.contains(i)).unwrap();
    for &i in &down {
        nodes[i].member = None;
    }
    writer.set_endpoints(live_endpoints(&nodes));
    std::thread::sleep(Duration::from_millis(1500));
    let follower_id = list(&nodes[li].endpoint())[&nodes[live_follower].name].0;
    refused(&nodes[li].endpoint(), &["member", "remove", &format!("{follower_id:x}")], "unhealthy cluster");
    for &i in &down {
        let n = &nodes[i];
        let c = format!("{}=http://127.0.0.1:{}", n.name, n.peer);
        nodes[i].member = Some(start(dir.path(), &n.name.clone(), n.client, n.peer, &c, true));
    }
    writer.set_endpoints(live_endpoints(&nodes));

    // Remove the leader: it hands over and stops itself with etcd's log line; the others elect a leader.
    let (leader_again, li) = rt.block_on(agreed_leader(&live_endpoints(&nodes)));
    let other = live_endpoints(&nodes).into_iter().find(|e| *e != nodes[li].endpoint()).unwrap();
    eventually(&other, &["member", "remove", &format!("{leader_again:x}")]);
    let log = wait_exit(nodes[li].member.as_mut().unwrap());
    assert!(log.contains("the member has been permanently removed from the cluster"), "{log}");
    nodes[li].member = None;
    writer.set_endpoints(live_endpoints(&nodes));
    let (new_leader, _) = rt.block_on(agreed_leader(&live_endpoints(&nodes)));
    assert_ne!(new_leader, leader_again);
    let _ = leader;

    // 4 → 3: remove a follower.
    let live: Vec<usize> = (0..5).filter(|i| nodes[*i].member.is_some()).collect();
    let victim =
        *live.iter().find(|i| rt.block_on(status(&nodes[**i].endpoint())).is_some_and(|s| s.0 != s.1)).unwrap();
    let victim_id = list(&nodes[victim].endpoint())[&nodes[victim].name].0;
    let keep = live.iter().copied().find(|i| *i != victim).unwrap();
    eventually(&nodes[keep].endpoint(), &["member", "remove", &format!("{victim_id:x}")]);
    wait_exit(nodes[victim].member.as_mut().unwrap());
    nodes[victim].member = None;
    writer.set_endpoints(live_endpoints(&nodes));
    assert_eq!(list(&nodes[keep].endpoint()).len(), 3);
    // Restarted on its data, a removed member refuses to come back, as etcd's does.
    let v = &nodes[victim];
    let (c, p) = (format!("http://127.0.0.1:{}", v.client), format!("http://127.0.0.1:{}", v.peer));
    let mut back = std::process::Command::new(env!("CARGO_BIN_EXE_ferrokv"))
        .args(["--name", &v.name, "--data-dir", dir.path().join(&v.name).to_str().unwrap()])
        .args(["--listen-client-urls", &c, "--advertise-client-urls", &c, "--listen-peer-urls", &p])
        .args(["--initial-advertise-peer-urls", &p, "--initial-cluster", &format!("{}={p}", v.name)])
        .args(["--initial-cluster-state", "existing"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = back.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = back.kill();
            panic!("a removed member restarted and kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut said = String::new();
    std::io::Read::read_to_string(&mut back.stderr.take().unwrap(), &mut said).unwrap();
    let back = status;
    assert!(!back.success() && said.contains("permanently removed"), "a removed member restarted: {said}");

    // Move one member to a new peer URL, then restart it there.
    let moved = *live.iter().find(|i| **i != victim && **i != keep).unwrap();
    let moved_id = list(&nodes[keep].endpoint())[&nodes[moved].name].0;
    let new_peer = free_port();
    let new_url = format!("http://127.0.0.1:{new_peer}");
    ok(&nodes[keep].endpoint(), &["member", "update", &format!("{moved_id:x}"), &format!("--peer-urls={new_url}")]);
    nodes[moved].member = None;
    nodes[moved].peer = new_peer;
    let n = &nodes[moved];
    let c = format!("{}={new_url}", n.name);
    nodes[moved].member = Some(start(dir.path(), &n.name.clone(), n.client, new_peer, &c, true));
    writer.set_endpoints(live_endpoints(&nodes));
    std::thread::sleep(Duration::from_secs(1));
    let before = writer.acked();
    let deadline = Instant::now() + Duration::from_secs(10);
    while writer.acked() < before + 50 {
        assert!(Instant::now() < deadline, "writes stalled after the peer URL change");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(list(&nodes[keep].endpoint())[&nodes[moved].name].0 == moved_id);

    let (acked, failed) = writer.finish();
    assert_eq!(failed, 0, "puts that failed on every member for 10 s");
    assert!(acked.len() > acked_at_five && acked_at_five > 100, "writes went on: {acked_at_five} then {}", acked.len());
    let live = live_endpoints(&nodes);
    assert_eq!(live.len(), 3);
    rt.block_on(holds_all(&live, &acked));
    eprintln!("membership: {} puts acknowledged, 0 failed", acked.len());
}
