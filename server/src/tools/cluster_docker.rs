//! `ferrokv cluster start N --docker`: the members as containers of the image `docker/build.sh` makes, on a
//! private Docker network of their own, each with a named volume at `/var/lib/etcd`.
//!
//! Nothing two clusters use collides, so several can run side by side (and beside a local one):
//! - names: the cluster's name (`--name`, by default `fkv-` and a hash of the directory's absolute path) prefixes
//!   the network (`<name>`), the containers and the volumes (`<name>-m<i>`); a name already taken by a network,
//!   container or volume is refused before anything is made;
//! - addresses: the network's subnet is the first free `/24` of `172.30.0.0/16` (Docker refuses one that overlaps
//!   a network it has, and the next is tried); member `i` (from 0) is `.<11+i>` in it, fixed, so a restarted or
//!   reconnected member keeps its address;
//! - host ports: member `i`'s client port 2379 is published on 127.0.0.1 at the first port from `base + i` that is
//!   free on the host and not given to an earlier member.
//!
//! The members are configured through etcd's `ETCD_*` variables, as etcd's image is. `<dir>/cluster.json` records
//! the network and each member's container and host endpoint for `status`, `stop`, `restart` and `clean`; `stop`
//! keeps the containers and volumes, `restart` starts the same containers on their volumes, `clean` removes all.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One member as cluster.json records it.
#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    pub container: String,
    /// `127.0.0.1:<published port>`.
    pub endpoint: String,
}

/// The subnets tried, in order: `172.30.<k>.0/24`.
const SUBNET_PREFIX: &str = "172.30";

/// Runs `docker args…`; its standard output, or its standard error as the error.
pub fn docker(args: &[&str]) -> Result<String, String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("docker: {e} (is Docker installed?)"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("docker {}: {}", args.first().copied().unwrap_or(""), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Whether Docker has an object of `kind` (network, container, volume) called `name`.
fn exists(kind: &str, name: &str) -> bool {
    docker(&[kind, "inspect", name]).is_ok()
}

/// The default cluster name for `dir`: `fkv-` and 8 hex digits of a hash of its absolute path.
pub fn default_name(dir: &Path) -> String {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    // FNV-1a: stable across builds and runs (std's hasher is not).
    let hash = abs
        .to_string_lossy()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("fkv-{:08x}", hash as u32)
}

/// Host ports for `size` members: from `base + i`, the first free one not given to an earlier member.
fn host_ports(size: usize, base: u16) -> Result<Vec<u16>, String> {
    let mut ports: Vec<u16> = Vec::with_capacity(size);
    let mut next = u32::from(base);
    for _ in 0..size {
        loop {
            let p = u16::try_from(next).map_err(|_| "no free host port below 65536".to_string())?;
            next += 1;
            if !ports.contains(&p) && TcpListener::bind(("127.0.0.1", p)).is_ok() {
                ports.push(p);
                break;
            }
        }
    }
    Ok(ports)
}

/// Makes the cluster's network on the first free subnet; the subnet's first three octets.
fn make_network(name: &str) -> Result<String, String> {
    let mut last = String::new();
    for k in 0..=255u16 {
        let prefix = format!("{SUBNET_PREFIX}.{k}");
        let subnet = format!("{prefix}.0/24");
        match docker(&["network", "create", "--driver", "bridge", "--subnet", &subnet, name]) {
            Ok(_) => return Ok(prefix),
            Err(e) if e.contains("overlap") => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(format!("no free /24 in {SUBNET_PREFIX}.0.0/16 ({last})"))
}

/// What `start` needs.
#[derive(Debug)]
pub struct Plan<'a> {
    pub dir: &'a Path,
    pub name: String,
    pub image: &'a str,
    pub size: usize,
    pub base_port: u16,
    pub extra: &'a [String],
}

/// Starts the cluster; the members, once each reports a leader (or an error naming the one that did not).
pub fn start(plan: &Plan<'_>) -> Result<Vec<Container>, String> {
    docker(&["image", "inspect", plan.image])
        .map_err(|_| format!("no image {} here: build it with docker/build.sh", plan.image))?;
    let members: Vec<String> = (1..=plan.size).map(|i| format!("m{i}")).collect();
    let containers: Vec<String> = members.iter().map(|m| format!("{}-{m}", plan.name)).collect();
    if exists("network", &plan.name) {
        return Err(format!("a Docker network {} exists (another cluster? --name, or clean it)", plan.name));
    }
    for c in &containers {
        for kind in ["container", "volume"] {
            if exists(kind, c) {
                return Err(format!("a Docker {kind} {c} exists (another cluster? --name, or clean it)"));
            }
        }
    }
    let ports = host_ports(plan.size, plan.base_port)?;
    let prefix = make_network(&plan.name)?;
    let ip = |i: usize| format!("{prefix}.{}", 11 + i);
    let cluster: Vec<String> = members.iter().enumerate().map(|(i, m)| format!("{m}=http://{}:2380", ip(i))).collect();
    let cluster = cluster.join(",");
    let mut started = Vec::new();
    for (i, m) in members.iter().enumerate() {
        let c = &containers[i];
        let env = [
            format!("ETCD_NAME={m}"),
            format!("ETCD_INITIAL_CLUSTER={cluster}"),
            "ETCD_INITIAL_CLUSTER_STATE=new".to_string(),
            format!("ETCD_INITIAL_CLUSTER_TOKEN={}", plan.name),
            "ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379".to_string(),
            format!("ETCD_ADVERTISE_CLIENT_URLS=http://{}:2379", ip(i)),
            "ETCD_LISTEN_PEER_URLS=http://0.0.0.0:2380".to_string(),
            format!("ETCD_INITIAL_ADVERTISE_PEER_URLS=http://{}:2380", ip(i)),
        ];
        let publish = format!("127.0.0.1:{}:2379", ports[i]);
        let volume = format!("{c}:/var/lib/etcd");
        let (ip_i, label) = (ip(i), format!("ferrokv.cluster={}", plan.name));
        let mut args: Vec<&str> = vec!["run", "-d", "--name", c, "--hostname", m, "--label", &label];
        args.extend(["--network", &plan.name, "--ip", &ip_i, "-p", &publish, "-v", &volume]);
        for e in &env {
            args.extend(["-e", e]);
        }
        args.extend([plan.image, "etcd"]);
        args.extend(plan.extra.iter().map(String::as_str));
        docker(&args)?;
        started.push(Container { name: m.clone(), container: c.clone(), endpoint: format!("127.0.0.1:{}", ports[i]) });
    }
    Ok(started)
}

/// Each container's state as Docker reports it (`running`, `exited`, …, or `missing`).
pub fn state(container: &str) -> String {
    docker(&["inspect", "-f", "{{.State.Status}}", container]).unwrap_or_else(|_| "missing".into())
}

/// Whether the container runs.
pub fn running(container: &str) -> bool {
    state(container) == "running"
}

/// Stops the containers (SIGTERM, SIGKILL after 10 s), keeping them and their volumes.
pub fn stop(members: &[Container]) -> Result<(), String> {
    let mut args = vec!["stop", "-t", "10"];
    let live: Vec<&str> = members.iter().map(|m| m.container.as_str()).filter(|c| running(c)).collect();
    if live.is_empty() {
        return Ok(());
    }
    args.extend(live);
    docker(&args).map(|_| ())
}

/// Starts the stopped containers again, on their volumes.
pub fn restart(members: &[Container]) -> Result<(), String> {
    for m in members.iter().filter(|m| !running(&m.container)) {
        docker(&["start", &m.container])?;
    }
    Ok(())
}

/// Removes the containers, their volumes and the network; what was already gone is no error.
pub fn remove(network: &str, members: &[Container]) -> Result<(), String> {
    for m in members {
        if exists("container", &m.container) {
            docker(&["rm", "-f", "-v", &m.container])?;
        }
        if exists("volume", &m.container) {
            docker(&["volume", "rm", &m.container])?;
        }
    }
    if exists("network", network) {
        docker(&["network", "rm", network])?;
    }
    Ok(())
}

/// Waits (up to 30 s) until `ready(member)` holds for every member; an error names the first that did not come up.
pub fn wait_all(members: &[Container], mut ready: impl FnMut(&Container) -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    for m in members {
        while !ready(m) {
            if Instant::now() >= deadline || !running(&m.container) {
                return Err(format!("{} did not come up (docker logs {})", m.name, m.container));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    Ok(())
}
