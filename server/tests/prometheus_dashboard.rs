//! etcd's own Grafana dashboard against a three-member ferrokv cluster, through a real Prometheus (Debian's
//! `prometheus`): the cluster is scraped every second under a put load, then every query of etcd 3.4's own
//! Grafana dashboard (`op-guide/grafana.json`, which Debian's etcd-server ships; `$cluster` is the scrape job)
//! must return data.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::cluster::{launch_with, specs};
use common::free_port;

/// The dashboard's queries, in panel order.
fn dashboard_queries() -> Vec<String> {
    let path = "/usr/share/doc/etcd-server/op-guide/grafana.json.gz";
    let out = Command::new("zcat").arg(path).output().expect("zcat");
    assert!(out.status.success(), "{path} (etcd-server's package) is readable");
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&d, &mut out);
    out
}

struct Prometheus {
    child: Child,
    addr: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Prometheus scraping `targets` (host:port) every second as job `job`.
fn prometheus(dir: &std::path::Path, job: &str, targets: &[String]) -> Prometheus {
    let addr = format!("127.0.0.1:{}", free_port());
    let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: {job}\n    \
         static_configs:\n      - targets: [{list}]\n"
    );
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, config).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", file.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");
    Prometheus { child, addr }
}

/// The result of an instant query (the `data.result` array).
fn query(addr: &str, q: &str) -> Vec<serde_json::Value> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", &format!("http://{addr}/api/v1/query"), "--data-urlencode"])
        .arg(format!("query={q}"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

#[test]
fn every_query_of_etcds_dashboard_has_data() {
    if !common::etcd::installed("etcd") {
        return;
    }
    if Command::new("prometheus").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "CI installs prometheus (scripts/test.sh)");
        eprintln!("skipping: prometheus is not installed (apt-get install prometheus)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (specs, cluster) = specs(3);
    let members: Vec<_> = specs.iter().map(|s| launch_with(dir.path(), s, &cluster, &[])).collect();
    let endpoints: Vec<String> = members.iter().map(|m| m.endpoint.clone()).collect();
    let p = prometheus(dir.path(), "etcd", &endpoints);

    // Load: puts on every member, a watcher and a kept-alive lease (the dashboard counts open streams).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, endpoints) = (std::sync::Arc::clone(&stop), endpoints.join(","));
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = common::etcdctl(&endpoints, &["put", &format!("k{}", i % 100), "v"], None);
                i += 1;
            }
        })
    };
    let mut streams: Vec<Child> = [["watch", "k", "--prefix"], ["lease", "keep-alive", "0"]]
        .iter()
        .map(|args| {
            let lease;
            let args: Vec<&str> = if args[0] == "lease" {
                let granted = common::etcdctl_ok(&endpoints[0], &["lease", "grant", "60"]);
                lease = granted.split_whitespace().nth(1).unwrap().to_string();
                vec!["lease", "keep-alive", &lease]
            } else {
                args.to_vec()
            };
            Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", endpoints[0]))
                .args(&args)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();

    // Every query must come to have data; give the scrapes (1 s apart) time to build up rates.
    let queries: Vec<String> = dashboard_queries().iter().map(|q| q.replace("$cluster", "etcd")).collect();
    assert!(queries.len() >= 18, "the dashboard's queries: {queries:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut empty = queries.clone();
    while !empty.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        empty.retain(|q| query(&p.addr, q).is_empty());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    for s in &mut streams {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert!(empty.is_empty(), "queries of etcd's dashboard with no data after 60 s:\n{}", empty.join("\n"));
    // Each member's series are there, by instance.
    assert_eq!(query(&p.addr, "etcd_server_has_leader{job=\"etcd\"}").len(), 3);
    assert_eq!(query(&p.addr, "sum(etcd_server_has_leader{job=\"etcd\"})")[0]["value"][1], "3");
}
