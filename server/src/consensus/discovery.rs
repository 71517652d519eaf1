//! etcd's bootstrap discovery: on a member's first start, the initial members come from DNS SRV records
//! (`--discovery-srv`) or from a discovery service (`--discovery`, etcd's v2 discovery protocol, as
//! discovery.etcd.io, Debian's `etcd-discovery` or any etcd with the v2 keys API serves it). A restart never
//! asks again: its members are in its store.
//!
//! **DNS SRV** (etcd's `srv.GetCluster`): `_etcd-server-ssl._tcp.DOMAIN` gives https peers and `_etcd-server._tcp.DOMAIN`
//! http peers (with `-NAME` after the service for `--discovery-srv-name`); both are asked and their results
//! combined. Each record's target and port make a peer URL (`scheme://target:port`, without the trailing dot); the
//! record whose address is this member's advertised peer address gets this member's name, the others `0`, `1`, ...
//! (member ids come from the URLs and the cluster token, so every member derives the same ones). The cluster token
//! is `--initial-cluster-token`.
//!
//! **Discovery URL** (etcd's v2discovery): the member registers itself under `URL/<member id in hex>` with the
//! value `name=peerURL,...` (a create: registering twice is refused), reads the size from `URL/_config/size`, then
//! waits (long-polling `?wait=true&recursive=true`) until that many members have registered. The first `size`
//! registrations, by creation order, are the initial cluster; a member registered after them is refused
//! ("discovery: cluster is full", ferrokv has no proxy fallback). The cluster token is the discovery URL, as in
//! etcd. Transient failures of the service are retried with a growing delay.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::{Config, Discovery, Url, parse_url};
use crate::error::Error;
use crate::logging::log;

/// The initial members (name → peer URLs) and the cluster token.
pub type Found = (BTreeMap<String, Vec<Url>>, String);

/// The initial members and cluster token discovery found, or `None` when `--initial-cluster` names them.
pub fn initial_cluster(config: &Config, me: impl Fn(&str) -> u64) -> Result<Option<Found>, Error> {
    match &config.discovery {
        Discovery::None => Ok(None),
        Discovery::Srv { domain, service_name } => {
            let cluster = srv_cluster(config, domain, service_name)?;
            Ok(Some((cluster, config.initial_cluster_token.clone())))
        }
        Discovery::Url(url) => {
            let id = me(url);
            Ok(Some((join(config, url, id)?, url.clone())))
        }
    }
}

fn refused(what: impl std::fmt::Display) -> Error {
    Error::Refused(what.to_string())
}

/// Parses `name=url,...` into the initial cluster map.
fn cluster_map(parts: &[String]) -> Result<BTreeMap<String, Vec<Url>>, Error> {
    let mut cluster: BTreeMap<String, Vec<Url>> = BTreeMap::new();
    for part in parts.iter().flat_map(|p| p.split(',')) {
        let Some((name, url)) = part.split_once('=') else {
            return Err(refused(format!("discovery: bad member {part:?}")));
        };
        let url = parse_url("initial-cluster", url).map_err(|e| refused(format!("discovery: {e}")))?;
        cluster.entry(name.to_string()).or_default().push(url);
    }
    Ok(cluster)
}

/// One SRV service's peers as `name=url` (see the module header); `next` numbers the unnamed ones.
fn srv_peers(
    resolver: &hickory_resolver::Resolver,
    service: &str,
    scheme: &str,
    config: &Config,
    next: &mut usize,
) -> Result<Vec<String>, String> {
    let lookup = resolver.srv_lookup(service).map_err(|e| e.to_string())?;
    let mine: Vec<std::net::SocketAddr> = config.initial_advertise_peer_urls.iter().map(|u| u.addr).collect();
    let mut out = Vec::new();
    for record in lookup.iter() {
        let host = record.target().to_utf8();
        let host = host.trim_end_matches('.');
        let Some(addr) = crate::config::resolve(host, record.port()) else { continue };
        let url = format!("{scheme}://{host}:{}", record.port());
        let name = if mine.contains(&addr) {
            config.name.clone()
        } else {
            *next += 1;
            (*next - 1).to_string()
        };
        out.push(format!("{name}={url}"));
    }
    Ok(out)
}

/// The initial cluster from DNS SRV records.
fn srv_cluster(config: &Config, domain: &str, service_name: &str) -> Result<BTreeMap<String, Vec<Url>>, Error> {
    let resolver = hickory_resolver::Resolver::from_system_conf()
        .map_err(|e| refused(format!("discovery-srv: cannot read the system's DNS configuration: {e}")))?;
    let suffix = if service_name.is_empty() { String::new() } else { format!("-{service_name}") };
    let mut next = 0;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    let advertised: Vec<&str> = config.initial_advertise_peer_urls.iter().map(|u| u.text.as_str()).collect();
    for (service, scheme) in [("etcd-server-ssl", "https"), ("etcd-server", "http")] {
        let name = format!("_{service}{suffix}._tcp.{domain}.");
        match srv_peers(&resolver, &name, scheme, config, &mut next) {
            Ok(peers) => {
                let fields = [
                    ("service-scheme", scheme.to_string()),
                    ("service-name", format!("{service}{suffix}")),
                    ("server-name", config.name.clone()),
                    ("discovery-srv", domain.to_string()),
                    ("advertise-peer-urls", advertised.join(",")),
                    ("found-cluster", peers.join(",")),
                ];
                log("info", &format!("get cluster for {service} SRV"), &fields);
                found.extend(peers);
            }
            Err(e) => errors.push(format!("error querying DNS SRV records for _{service}{suffix} {e}")),
        }
    }
    if found.is_empty() {
        return Err(refused(errors.join(", ")));
    }
    let cluster = cluster_map(&found)?;
    if !cluster.contains_key(&config.name) {
        return Err(refused(format!(
            "discovery-srv: no SRV record of {domain} is this member's --initial-advertise-peer-urls"
        )));
    }
    Ok(cluster)
}

/// A registration in the discovery service.
#[derive(Debug)]
struct Node {
    key: String,
    value: String,
    created: u64,
}

fn nodes(json: &serde_json::Value) -> Vec<Node> {
    let list = json["node"]["nodes"].as_array().cloned().unwrap_or_default();
    list.iter()
        .filter(|n| !n["key"].as_str().unwrap_or("").ends_with("/_config"))
        .filter_map(|n| {
            Some(Node {
                key: n["key"].as_str()?.to_string(),
                value: n["value"].as_str()?.to_string(),
                created: n["createdIndex"].as_u64()?,
            })
        })
        .collect()
}

/// Retries `f` on transient failures (the service unreachable, a 5xx) with a growing delay, for about 2 minutes.
fn retried<T>(what: &str, mut f: impl FnMut() -> Result<T, Box<ureq::Error>>) -> Result<T, Error> {
    let mut delay = Duration::from_millis(250);
    for attempt in 0.. {
        match f().map_err(|e| *e) {
            Ok(v) => return Ok(v),
            Err(ureq::Error::Status(code, _)) if code < 500 => {
                return Err(refused(format!("discovery: {what}: HTTP {code}")));
            }
            Err(e) if attempt < 9 => {
                log("warn", "discovery: retrying", &[("what", what.to_string()), ("error", e.to_string())]);
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(refused(format!("discovery: {what}: {e}"))),
        }
    }
    unreachable!("the loop returns")
}

/// Registers this member in the discovery service at `url` and waits for the cluster to fill.
fn join(config: &Config, url: &str, id: u64) -> Result<BTreeMap<String, Vec<Url>>, Error> {
    let base = url.trim_end_matches('/');
    let agent = ureq::AgentBuilder::new().timeout_connect(Duration::from_secs(5)).build();
    let me: Vec<String> =
        config.initial_advertise_peer_urls.iter().map(|u| format!("{}={}", config.name, u.text)).collect();
    let me = me.join(",");
    let self_key = format!("{base}/{id:x}");
    let created = agent.put(&self_key).query("prevExist", "false").send_form(&[("value", me.as_str())]);
    match created {
        Ok(_) => log("info", "registered with discovery service", &[("key", self_key.clone()), ("value", me)]),
        Err(ureq::Error::Status(412, _)) => return Err(refused("discovery: found duplicate id")),
        Err(e) => {
            return Err(refused(format!("discovery: cannot register {self_key}: {e}")));
        }
    }
    let size_json: serde_json::Value = retried("read the cluster size", || {
        agent.get(&format!("{base}/_config/size")).call()?.into_json().map_err(|e| Box::new(e.into()))
    })?;
    let size: usize = size_json["node"]["value"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| refused("discovery: size key not found"))?;
    let listed = retried("list the members", || agent.get(base).call().map_err(Box::new))?;
    let mut index: u64 = listed.header("X-Etcd-Index").and_then(|i| i.parse().ok()).unwrap_or(0);
    let json: serde_json::Value = listed.into_json().map_err(|e| refused(format!("discovery: {e}")))?;
    let mut all = nodes(&json);
    while all.len() < size {
        log(
            "info",
            "found peers from discovery; waiting for more",
            &[("found", all.len().to_string()), ("size", size.to_string())],
        );
        let wait = format!("{base}?wait=true&recursive=true&waitIndex={}", index + 1);
        let changed = retried("wait for members", || {
            agent.get(&wait).timeout(Duration::from_secs(600)).call().map_err(Box::new)
        })?;
        let json: serde_json::Value = changed.into_json().map_err(|e| refused(format!("discovery: {e}")))?;
        let node = &json["node"];
        index = node["modifiedIndex"].as_u64().unwrap_or(index + 1);
        let key = node["key"].as_str().unwrap_or("");
        let added = json["action"] == "create" || json["action"] == "set";
        if added && !key.contains("/_config") && !all.iter().any(|n| n.key == key) {
            all.push(Node {
                key: key.to_string(),
                value: node["value"].as_str().unwrap_or("").to_string(),
                created: node["createdIndex"].as_u64().unwrap_or(index),
            });
        }
    }
    all.sort_by_key(|n| n.created);
    all.truncate(size);
    if !all.iter().any(|n| n.key.ends_with(&format!("/{id:x}"))) {
        return Err(refused("discovery: cluster is full"));
    }
    let values: Vec<String> = all.iter().map(|n| n.value.clone()).collect();
    log("info", "found the cluster from discovery", &[("initial-cluster", values.join(","))]);
    cluster_map(&values)
}
