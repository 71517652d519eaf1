//! `ferrokv cluster start N | status | stop | clean`: a local cluster of N members on 127.0.0.1 for trying things
//! and for benchmarks, with ferrokv or (`--etcd`) the real etcd on the same topology.
//!
//! Member `i` (from 0) is named `m<i+1>`, serves clients on `base + 2i` and peers on `base + 2i + 1` (by default
//! 2379, 2380, 2381, …), keeps its data in `<dir>/m<i+1>` and its log in `<dir>/m<i+1>.log`. The members run
//! detached in a process group of their own; `<dir>/cluster.json` records what was started (kind, names, pids,
//! endpoints) for `status`, `stop` and `clean`. A port already in use is refused before anything starts, named by
//! member and role.
//!
//! With `--docker` the members are containers instead, on a network of their own (`cluster_docker`); `status`,
//! `stop`, `restart` and `clean` then act on the containers, and `restart` starts them again on their volumes.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use super::cluster_docker::{self, Container};
use crate::proto::etcdserverpb::{StatusRequest, maintenance_client::MaintenanceClient};

#[derive(Debug, Parser)]
#[command(name = "ferrokv cluster", about = "Local clusters of ferrokv (or etcd) members on 127.0.0.1")]
pub struct ClusterCmd {
    /// Where the members' data, logs and cluster.json go.
    #[arg(long, global = true, default_value = "ferrokv-cluster")]
    pub dir: PathBuf,
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Start N members (1, 3 or 5 make sense).
    Start {
        size: usize,
        /// The first client port; member i uses base+2i (client) and base+2i+1 (peer).
        #[arg(long, default_value_t = 2379)]
        base_port: u16,
        /// Run the real etcd (from PATH) instead of ferrokv.
        #[arg(long, conflicts_with = "docker")]
        etcd: bool,
        /// Run the members as containers of `--image` on a private Docker network, with named volumes; host
        /// ports from --base-port that are in use are skipped.
        #[arg(long)]
        docker: bool,
        /// The image for --docker (docker/build.sh makes it).
        #[arg(long, default_value = "ferrokv:latest", requires = "docker")]
        image: String,
        /// The prefix of the network, containers and volumes for --docker (default: fkv- and a hash of --dir).
        #[arg(long, requires = "docker")]
        name: Option<String>,
        /// Serve gofail's HTTP interface (GOFAIL_HTTP) of member i on 127.0.0.1:<this + i> (ferrokv, or an etcd
        /// built with failpoints); not with --docker, whose members are reached on the cluster's network.
        #[arg(long, conflicts_with = "docker")]
        failpoint_port: Option<u16>,
        /// Extra flags for every member (after `--`).
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Show each member: running or not, and what it reports (leader, term, index).
    Status,
    /// Stop the members (SIGTERM, then SIGKILL after 10 s).
    Stop,
    /// Start the stopped containers of a --docker cluster again, on their volumes.
    Restart,
    /// Stop the members and remove the directory.
    Clean,
}

/// One started member, as cluster.json records it.
#[derive(Debug, Clone)]
struct Started {
    name: String,
    pid: u32,
    endpoint: String,
}

fn record(dir: &Path, kind: &str, members: &[Started]) -> std::io::Result<()> {
    let m: Vec<serde_json::Value> =
        members.iter().map(|s| serde_json::json!({"name": s.name, "pid": s.pid, "endpoint": s.endpoint})).collect();
    std::fs::write(dir.join("cluster.json"), serde_json::json!({"kind": kind, "members": m}).to_string())
}

fn record_docker(dir: &Path, network: &str, members: &[Container]) -> std::io::Result<()> {
    let m: Vec<serde_json::Value> = members
        .iter()
        .map(|s| serde_json::json!({"name": s.name, "container": s.container, "endpoint": s.endpoint}))
        .collect();
    let v = serde_json::json!({"kind": "docker", "network": network, "members": m});
    std::fs::write(dir.join("cluster.json"), v.to_string())
}

/// A --docker cluster recorded in `dir`: its network and members (None for a cluster of processes).
fn load_docker(dir: &Path) -> Result<Option<(String, Vec<Container>)>, String> {
    let text = std::fs::read_to_string(dir.join("cluster.json"))
        .map_err(|e| format!("{}: no cluster here ({e})", dir.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("cluster.json: {e}"))?;
    if v["kind"] != "docker" {
        return Ok(None);
    }
    let text = |m: &serde_json::Value, k: &str| m[k].as_str().unwrap_or_default().to_string();
    let members = v["members"].as_array().map(Vec::as_slice).unwrap_or_default();
    let members = members
        .iter()
        .map(|m| Container { name: text(m, "name"), container: text(m, "container"), endpoint: text(m, "endpoint") })
        .collect();
    Ok(Some((text(&v, "network"), members)))
}

fn load(dir: &Path) -> Result<(String, Vec<Started>), String> {
    let text = std::fs::read_to_string(dir.join("cluster.json"))
        .map_err(|e| format!("{}: no cluster here ({e})", dir.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("cluster.json: {e}"))?;
    let members = v["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| Started {
                    name: m["name"].as_str().unwrap_or_default().to_string(),
                    pid: m["pid"].as_u64().unwrap_or(0) as u32,
                    endpoint: m["endpoint"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((v["kind"].as_str().unwrap_or("ferrokv").to_string(), members))
}

/// Whether `pid` runs (a zombie, which nobody reaped yet in a container without an init, does not).
fn alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    let exists = pid > 0 && unsafe { libc::kill(pid as i32, 0) } == 0;
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(false);
    exists && !zombie
}

/// Runs `ferrokv cluster <args>`; the process exit code.
pub fn main(args: Vec<String>) -> u8 {
    let cmd = match ClusterCmd::try_parse_from(std::iter::once("ferrokv cluster".to_string()).chain(args)) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let docker = load_docker(&cmd.dir).ok().flatten();
    let result = match (cmd.action, docker) {
        (Action::Start { size, base_port, docker: true, image, name, extra, .. }, _) => {
            let name = name.unwrap_or_else(|| cluster_docker::default_name(&cmd.dir));
            let plan = cluster_docker::Plan { dir: &cmd.dir, name, image: &image, size, base_port, extra: &extra };
            start_docker(&plan)
        }
        (Action::Start { size, base_port, etcd, failpoint_port, extra, .. }, _) => {
            start(&cmd.dir, Local { size, base: base_port, etcd, failpoint_port }, &extra)
        }
        (Action::Status, Some((network, members))) => status_docker(&network, &members),
        (Action::Stop, Some((_, members))) => cluster_docker::stop(&members),
        (Action::Restart, Some((_, members))) => cluster_docker::restart(&members).and_then(|()| {
            let rt = runtime()?;
            cluster_docker::wait_all(&members, |m| rt.block_on(ask(&m.endpoint)).is_some_and(|a| a.1 != 0))
        }),
        (Action::Clean, Some((network, members))) => cluster_docker::remove(&network, &members)
            .and_then(|()| std::fs::remove_dir_all(&cmd.dir).map_err(|e| format!("{}: {e}", cmd.dir.display()))),
        (Action::Status, None) => status(&cmd.dir),
        (Action::Stop, None) => stop(&cmd.dir),
        (Action::Restart, None) => Err("restart is for --docker clusters; start a local one again".into()),
        (Action::Clean, None) => {
            // Nothing recorded (or nothing running) is not a reason to keep the directory.
            let _ = stop(&cmd.dir);
            match std::fs::remove_dir_all(&cmd.dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("{}: {e}", cmd.dir.display())),
                _ => Ok(()),
            }
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ferrokv cluster: {e}");
            1
        }
    }
}

/// What a local cluster is to be.
struct Local {
    size: usize,
    base: u16,
    etcd: bool,
    failpoint_port: Option<u16>,
}

fn start(dir: &Path, local: Local, extra: &[String]) -> Result<(), String> {
    let Local { size, base, etcd, failpoint_port } = local;
    if size == 0 {
        return Err("a cluster needs at least one member".into());
    }
    if load(dir).is_ok_and(|(_, m)| m.iter().any(|s| alive(s.pid))) {
        return Err(format!("{}: a cluster is already running here (ferrokv cluster stop)", dir.display()));
    }
    let ports: Vec<(u16, u16)> = (0..size)
        .map(|i| {
            let c = u32::from(base) + 2 * i as u32;
            u16::try_from(c + 1).map(|p| (p - 1, p)).map_err(|_| "ports beyond 65535".to_string())
        })
        .collect::<Result<_, _>>()?;
    for (i, (c, p)) in ports.iter().enumerate() {
        for (port, role) in [(c, "client"), (p, "peer")] {
            if TcpListener::bind(("127.0.0.1", *port)).is_err() {
                return Err(format!("port {port} ({role} URL of m{}) is in use", i + 1));
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("m{}=http://127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let program =
        if etcd { PathBuf::from("etcd") } else { std::env::current_exe().map_err(|e| format!("own path: {e}"))? };
    let mut started = Vec::new();
    for (i, (c, p)) in ports.iter().enumerate() {
        let name = format!("m{}", i + 1);
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
        let (cu, pu) = (format!("http://127.0.0.1:{c}"), format!("http://127.0.0.1:{p}"));
        let mut command = Command::new(&program);
        if let Some(f) = failpoint_port {
            let port = u16::try_from(u32::from(f) + i as u32).map_err(|_| "failpoint ports beyond 65535")?;
            command.env("GOFAIL_HTTP", format!("127.0.0.1:{port}"));
        }
        let child = command
            .args(["--name", &name, "--data-dir", &dir.join(&name).to_string_lossy()])
            .args(["--listen-client-urls", &cu, "--advertise-client-urls", &cu])
            .args(["--listen-peer-urls", &pu, "--initial-advertise-peer-urls", &pu])
            .args(["--initial-cluster", &cluster, "--initial-cluster-state", "new"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        started.push(Started { name, pid: child.id(), endpoint: format!("127.0.0.1:{c}") });
    }
    record(dir, if etcd { "etcd" } else { "ferrokv" }, &started).map_err(|e| e.to_string())?;
    let rt = runtime()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    for s in &started {
        while rt.block_on(ask(&s.endpoint)).is_none_or(|(_, leader, ..)| leader == 0) {
            if Instant::now() >= deadline || !alive(s.pid) {
                return Err(format!("{} did not come up (see {}/{}.log)", s.name, dir.display(), s.name));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    println!("{} {}-member cluster in {}:", if etcd { "etcd" } else { "ferrokv" }, size, dir.display());
    for s in &started {
        println!("  {}  pid {}  client http://{}", s.name, s.pid, s.endpoint);
    }
    println!("endpoints: {}", started.iter().map(|s| s.endpoint.as_str()).collect::<Vec<_>>().join(","));
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())
}

fn start_docker(plan: &cluster_docker::Plan<'_>) -> Result<(), String> {
    if load(plan.dir).is_ok() {
        return Err(format!("{}: a cluster is recorded here (ferrokv cluster clean)", plan.dir.display()));
    }
    if plan.size == 0 {
        return Err("a cluster needs at least one member".into());
    }
    std::fs::create_dir_all(plan.dir).map_err(|e| format!("{}: {e}", plan.dir.display()))?;
    // Recorded before the members come up, so that `clean` removes whatever was made.
    let members = cluster_docker::start(plan).inspect_err(|_| {
        let _ = cluster_docker::remove(&plan.name, &planned(plan));
    })?;
    record_docker(plan.dir, &plan.name, &members).map_err(|e| e.to_string())?;
    let rt = runtime()?;
    cluster_docker::wait_all(&members, |m| rt.block_on(ask(&m.endpoint)).is_some_and(|a| a.1 != 0))?;
    println!("ferrokv {}-member cluster {} (image {}) in Docker:", plan.size, plan.name, plan.image);
    for m in &members {
        println!("  {}  container {}  client http://{}", m.name, m.container, m.endpoint);
    }
    println!("endpoints: {}", members.iter().map(|m| m.endpoint.as_str()).collect::<Vec<_>>().join(","));
    Ok(())
}

/// The containers `plan` would make (for cleaning up after a start that failed half-way).
fn planned(plan: &cluster_docker::Plan<'_>) -> Vec<Container> {
    (1..=plan.size)
        .map(|i| Container { name: format!("m{i}"), container: format!("{}-m{i}", plan.name), endpoint: String::new() })
        .collect()
}

fn status_docker(network: &str, members: &[Container]) -> Result<(), String> {
    let rt = runtime()?;
    println!("ferrokv cluster {network} in Docker:");
    for m in members {
        let state = match cluster_docker::state(&m.container) {
            s if s != "running" => s,
            _ => described(rt.block_on(ask(&m.endpoint))),
        };
        println!("  {}  container {}  http://{}  {state}", m.name, m.container, m.endpoint);
    }
    Ok(())
}

/// How a running member answers for itself: its id, whether it leads (or whom it follows), its term and index.
fn described(answer: Option<(u64, u64, u64, u64)>) -> String {
    match answer {
        None => "running, not answering".to_string(),
        Some((id, leader, term, index)) => format!(
            "running, id {id:x}, {}, term {term}, raft index {index}",
            if id == leader { "leader".to_string() } else { format!("leader {leader:x}") }
        ),
    }
}

/// (member id, leader, term, raft index) as `endpoint` reports them.
async fn ask(endpoint: &str) -> Option<(u64, u64, u64, u64)> {
    let query = async {
        let mut m = MaintenanceClient::connect(format!("http://{endpoint}")).await.ok()?;
        let s = m.status(StatusRequest {}).await.ok()?.into_inner();
        let h = s.header?;
        Some((h.member_id, s.leader, h.raft_term, s.raft_index))
    };
    tokio::time::timeout(Duration::from_secs(2), query).await.ok().flatten()
}

fn status(dir: &Path) -> Result<(), String> {
    let (kind, members) = load(dir)?;
    let rt = runtime()?;
    println!("{kind} cluster in {}:", dir.display());
    for s in &members {
        let state = if alive(s.pid) { described(rt.block_on(ask(&s.endpoint))) } else { "stopped".to_string() };
        println!("  {}  pid {}  http://{}  {state}", s.name, s.pid, s.endpoint);
    }
    Ok(())
}

fn stop(dir: &Path) -> Result<(), String> {
    let (_, members) = load(dir)?;
    for s in members.iter().filter(|s| alive(s.pid)) {
        // SAFETY: kill(2) on a pid this tool started and recorded.
        unsafe { libc::kill(s.pid as i32, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while members.iter().any(|s| alive(s.pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for s in members.iter().filter(|s| alive(s.pid)) {
        // SAFETY: as above.
        unsafe { libc::kill(s.pid as i32, libc::SIGKILL) };
    }
    println!("stopped {} member(s)", members.len());
    Ok(())
}
