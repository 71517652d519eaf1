//! Containers, on this machine's Docker engine (issue 19): the image `docker/build.sh` makes FROM scratch out of
//! this build's ferrokv, run as etcd's image runs etcd.
//! 1. `ferrokv cluster start 3 --docker`: three containers on a private network of their own elect a leader and
//!    serve the real `etcdctl` from the host (its published ports, and `--cluster` through the members' advertised
//!    addresses); the server runs as the non-root user 65532. Under a writer that retries on another member:
//!    `docker kill` of the leader elects another and the killed container comes back on its volume;
//!    `docker network disconnect` of a member cuts it off, and after `network connect` it catches up; no
//!    acknowledged put is lost and every member ends with the same HashKV. `cluster stop` and `cluster restart`
//!    bring the whole cluster back from its volumes with every key.
//! 2. `docker/compose.yml`: three members, the Prometheus image (Debian's prometheus, FROM scratch) scraping them,
//!    gofail's HTTP interface published; Prometheus sees all three members up with a leader. etcd's dashboard is
//!    staged for Grafana as its file provider reads it (Grafana itself needs a registry to run).
//!
//! Where no Docker engine answers, each test prints `SKIPPED: no Docker engine` with the reason and passes.
//! Everything a test makes (images, containers, volumes, networks, the compose project) carries its pid and is
//! removed at the end, failed or not.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{agreed_leader, holds_all};
use common::writer::Writer;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Runs a command; (success, stdout, stderr).
fn run(cmd: &str, args: &[&str], env: &[(&str, String)]) -> (bool, String, String) {
    let mut c = Command::new(cmd);
    c.args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(cmd: &str, args: &[&str], env: &[(&str, String)]) -> String {
    let (ok, out, err) = run(cmd, args, env);
    assert!(ok, "{cmd} {args:?}: {err}{out}");
    out
}

/// Whether a Docker engine answers; says why not when it does not.
fn engine() -> bool {
    match Command::new("docker").args(["info", "--format", "{{.ServerVersion}}"]).output() {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            eprintln!("SKIPPED: no Docker engine (docker info: {})", String::from_utf8_lossy(&o.stderr).trim());
            false
        }
        Err(e) => {
            eprintln!("SKIPPED: no Docker engine (docker: {e})");
            false
        }
    }
}

/// Removes what a test made, failed or not.
struct Cleanup(Vec<(String, Vec<String>)>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for (cmd, args) in self.0.iter().rev() {
            let _ =
                Command::new(cmd).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

fn ferrokv() -> &'static str {
    env!("CARGO_BIN_EXE_ferrokv")
}

/// Builds the image (and with `prometheus`, the Prometheus image) from this build's binary.
fn build_images(tag: &str, ptag: Option<&str>) {
    let script = repo().join("docker/build.sh");
    let mut args = vec![script.to_str().unwrap(), "--binary", ferrokv(), "--tag", tag];
    if let Some(p) = ptag {
        args.extend(["--prometheus", "--prometheus-tag", p]);
    }
    ok("bash", &args, &[]);
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The members `ferrokv cluster start --docker` recorded: (container, host endpoint).
fn recorded(dir: &Path) -> (String, Vec<(String, String)>) {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).unwrap()).unwrap();
    let members = v["members"].as_array().unwrap();
    let members = members
        .iter()
        .map(|m| (m["container"].as_str().unwrap().to_string(), m["endpoint"].as_str().unwrap().to_string()))
        .collect();
    (v["network"].as_str().unwrap().to_string(), members)
}

fn ip_of(container: &str) -> String {
    ok("docker", &["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container], &[])
        .trim()
        .to_string()
}

/// Waits until the writer has had more puts acknowledged (up to 12 s: a put it had in flight to a member that has
/// just been cut off waits out its 3 s timeout first).
fn acked_more(writer: &Writer, when: &str) {
    let (before, deadline) = (writer.acked(), Instant::now() + Duration::from_secs(12));
    while writer.acked() <= before + 10 {
        assert!(Instant::now() < deadline, "no put was acknowledged {when}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (up to 15 s) until every endpoint names the same leader, and not `old`.
async fn leader_other_than(endpoints: &[String], old: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut seen = std::collections::BTreeSet::new();
        for e in endpoints {
            seen.insert(common::cluster::status(e).await.map(|s| s.1));
        }
        if let [Some(l)] = seen.iter().copied().collect::<Vec<_>>()[..]
            && l != 0
            && l != old
        {
            return l;
        }
        assert!(Instant::now() < deadline, "no new leader: {seen:?} (old {old:x})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_cluster_of_containers_survives_kill_and_disconnect_and_restarts_from_its_volumes() {
    if !engine() {
        return;
    }
    let pid = std::process::id();
    let (tag, name) = (format!("ferrokv-test:{pid}"), format!("fkvt-{pid}"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cluster");
    let d = dir.to_str().unwrap().to_string();
    let _cleanup = Cleanup(vec![
        ("docker".into(), vec!["rmi".into(), "-f".into(), tag.clone()]),
        (ferrokv().into(), vec!["cluster".into(), "--dir".into(), d.clone(), "clean".into()]),
    ]);
    build_images(&tag, None);
    let base = common::free_port().to_string();
    let started = ok(
        ferrokv(),
        &["cluster", "--dir", &d, "start", "3", "--docker", "--image", &tag, "--name", &name, "--base-port", &base],
        &[],
    );
    eprintln!("{started}");
    let (network, members) = recorded(&dir);
    let endpoints: Vec<String> = members.iter().map(|m| m.1.clone()).collect();
    let containers: Vec<String> = members.iter().map(|m| m.0.clone()).collect();
    // Reached through the bridge at the members' own addresses, which a reconnected member keeps.
    let direct: Vec<String> = containers.iter().map(|c| format!("{}:2379", ip_of(c))).collect();

    // etcdctl from the host, through the published ports, and --cluster through the advertised addresses.
    let eps = endpoints.join(",");
    common::etcdctl_ok(&eps, &["put", "from-host", "1"]);
    let status = common::etcdctl_ok(&endpoints[0], &["endpoint", "status", "--cluster", "-w", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let leaders: Vec<u64> =
        status.as_array().unwrap().iter().map(|s| s["Status"]["leader"].as_u64().unwrap()).collect();
    assert_eq!(leaders.len(), 3, "{status}");
    assert!(leaders.iter().all(|l| *l == leaders[0] && *l != 0), "{status}");
    for c in &containers {
        assert_eq!(ok("docker", &["inspect", "-f", "{{.Config.User}}", c], &[]).trim(), "65532:65532");
        let uids = ok("docker", &["top", c, "-eo", "pid,uid,comm"], &[]);
        let runs_as = |l: &str| l.split_whitespace().nth(1) == Some("65532");
        assert!(uids.lines().count() > 1 && uids.lines().skip(1).all(runs_as), "{c} runs as: {uids}");
    }

    let rt = rt();
    let writer = Writer::start(direct.clone());
    std::thread::sleep(Duration::from_secs(1));

    // docker kill of the leader: another is elected, and the killed one comes back on its volume.
    let (old, li) = rt.block_on(agreed_leader(&direct));
    ok("docker", &["kill", &containers[li]], &[]);
    let rest: Vec<String> = (0..3).filter(|i| *i != li).map(|i| direct[i].clone()).collect();
    writer.set_endpoints(rest.clone());
    rt.block_on(leader_other_than(&rest, old));
    acked_more(&writer, "after the leader was killed");
    ok("docker", &["start", &containers[li]], &[]);
    rt.block_on(agreed_leader(&direct));
    writer.set_endpoints(direct.clone());

    // docker network disconnect of a follower (from every network: it is alone), then connect it back.
    let (_, li) = rt.block_on(agreed_leader(&direct));
    let fi = (li + 1) % 3;
    let ip = ip_of(&containers[fi]);
    ok("docker", &["network", "disconnect", &network, &containers[fi]], &[]);
    let rest: Vec<String> = (0..3).filter(|i| *i != fi).map(|i| direct[i].clone()).collect();
    writer.set_endpoints(rest.clone());
    acked_more(&writer, "while a follower was cut off");
    assert!(rt.block_on(common::cluster::status(&direct[fi])).is_none(), "the disconnected member still answers");
    ok("docker", &["network", "connect", "--ip", &ip, &network, &containers[fi]], &[]);
    writer.set_endpoints(direct.clone());
    std::thread::sleep(Duration::from_secs(2));
    let (acked, failed) = writer.finish();
    eprintln!("{} puts acknowledged, {failed} failed for good", acked.len());
    assert!(acked.len() > 50, "too few puts acknowledged: {}", acked.len());
    rt.block_on(holds_all(&direct, &acked));
    let hashes = common::etcdctl_ok(&endpoints[0], &["endpoint", "hashkv", "--cluster", "-w", "json"]);
    let hashes: serde_json::Value = serde_json::from_str(&hashes).unwrap();
    let hashes: Vec<u64> = hashes.as_array().unwrap().iter().map(|h| h["HashKV"]["hash"].as_u64().unwrap()).collect();
    assert!(hashes.len() == 3 && hashes.iter().all(|h| *h == hashes[0]), "HashKV differ: {hashes:?}");

    // The whole cluster stopped and started again from its volumes.
    ok(ferrokv(), &["cluster", "--dir", &d, "stop"], &[]);
    assert!(
        containers.iter().all(|c| ok("docker", &["inspect", "-f", "{{.State.Running}}", c], &[]).trim() == "false")
    );
    ok(ferrokv(), &["cluster", "--dir", &d, "restart"], &[]);
    rt.block_on(agreed_leader(&direct));
    rt.block_on(holds_all(&direct, &acked));
    assert_eq!(common::etcdctl_ok(&eps, &["get", "from-host", "--print-value-only"]).trim(), "1");
    let status = ok(ferrokv(), &["cluster", "--dir", &d, "status"], &[]);
    assert_eq!(status.matches("leader").count(), 3, "{status}");
}

/// The body of a 200 answer to `GET path` (None while the server is not up: Docker's proxy accepts and resets).
fn try_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.starts_with("HTTP/1.1 200") && !head.to_ascii_lowercase().contains("chunked")).then(|| body.to_string())
}

/// The first `172.31.<k>` (from 250 down) whose /24 no Docker network uses.
fn free_compose_net() -> String {
    let ids = ok("docker", &["network", "ls", "-q"], &[]);
    let ids: Vec<&str> = ids.split_whitespace().collect();
    let mut args = vec!["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}"];
    args.extend(ids);
    let used = ok("docker", &args, &[]);
    (100..=250u16).rev().map(|k| format!("172.31.{k}")).find(|p| !used.contains(&format!("{p}.0/"))).unwrap()
}

#[test]
fn the_compose_file_runs_a_cluster_that_prometheus_scrapes() {
    if !engine() {
        return;
    }
    if let Err(e) = Command::new("docker-compose").arg("version").output() {
        eprintln!("SKIPPED: no docker-compose ({e})");
        return;
    }
    let pid = std::process::id();
    let (tag, ptag, project) =
        (format!("ferrokv-test:c{pid}"), format!("ferrokv-prometheus-test:{pid}"), format!("fkvc{pid}"));
    build_images(&tag, Some(&ptag));
    // etcd's dashboard, staged for Grafana's file provider: the dashboard itself, not Debian's bundle of it.
    let staged = std::fs::read_to_string(repo().join("docker/grafana/dashboards/etcd.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&staged).unwrap();
    assert_eq!(dashboard["title"], "etcd", "not a dashboard at the top level");
    assert!(dashboard["rows"].as_array().is_some_and(|r| !r.is_empty()), "no rows");
    let compose = repo().join("docker/compose.yml");
    let compose = compose.to_str().unwrap();
    let ports: Vec<u16> = (0..7).map(|_| common::free_port()).collect();
    let env: Vec<(&str, String)> = vec![
        ("COMPOSE_PROJECT_NAME", project.clone()),
        ("FERROKV_IMAGE", tag.clone()),
        ("PROMETHEUS_IMAGE", ptag.clone()),
        ("FERROKV_NET", free_compose_net()),
        ("FERROKV_PORT_1", ports[0].to_string()),
        ("FERROKV_PORT_2", ports[1].to_string()),
        ("FERROKV_PORT_3", ports[2].to_string()),
        ("FAILPOINT_PORT_1", ports[3].to_string()),
        ("FAILPOINT_PORT_2", ports[4].to_string()),
        ("FAILPOINT_PORT_3", ports[5].to_string()),
        ("PROMETHEUS_PORT", ports[6].to_string()),
    ];
    let down: Vec<String> =
        ["-f", compose, "-p", &project, "down", "-v", "-t", "5"].iter().map(|s| s.to_string()).collect();
    let _cleanup = Cleanup(vec![
        ("docker".into(), vec!["rmi".into(), "-f".into(), tag.clone(), ptag.clone()]),
        ("docker-compose".into(), down),
    ]);
    ok("docker-compose", &["-f", compose, "-p", &project, "up", "-d"], &env);

    let endpoints: Vec<String> = ports[..3].iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let rt = rt();
    rt.block_on(agreed_leader(&endpoints));
    common::etcdctl_ok(&endpoints.join(","), &["put", "compose", "up"]);
    // gofail's interface, published from member 1.
    let fp = format!("127.0.0.1:{}", ports[3]);
    let list = try_get(&fp, "/").expect("gofail's interface answers on the published port");
    assert!(list.contains("walBeforeFdatasync"), "{list}");

    // Prometheus sees every member up, each with a leader.
    let prom = format!("127.0.0.1:{}", ports[6]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let query = |q: &str| {
        let Some(body) = try_get(&prom, &format!("/api/v1/query?query={q}")) else { return Vec::new() };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    };
    loop {
        let up = query("up%7Bjob%3D%22etcd%22%7D%3D%3D1");
        let leaders = query("etcd_server_has_leader%3D%3D1");
        if up.len() == 3 && leaders.len() == 3 {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus: up {up:?}, has_leader {leaders:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
}
