//! `ferrokv bench`: etcd's `benchmark` tool, for any etcd v3 endpoint (ferrokv or etcd), with its flags and its
//! report (see `report`), plus `--json`.
//!
//! Subcommands: `put`, `range`, `txn-put`, `txn-mixed`, `watch`, `watch-latency`, `lease-keepalive`. Global
//! flags as etcd's: `--endpoints`, `--conns` (HTTP/2 connections, shared round-robin by the clients),
//! `--clients` (requests in flight), `--target-leader` (send everything to the leader's endpoint).
//!
//! **The client is not the bottleneck.** Requests run on a multi-threaded runtime; each client is a task that
//! takes the next request number from a shared counter (so `--total` is exact), waits for its slot when `--rate`
//! is set (an open schedule: request `i` starts no earlier than `i / rate` seconds in), sends it and records its
//! latency in its own list; the lists are merged once at the end. No lock is taken per request.

pub mod ops;
pub mod report;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser};
use tonic::transport::{Channel, Endpoint};

use crate::proto::etcdserverpb::{StatusRequest, maintenance_client::MaintenanceClient};
use report::Stats;

/// `ferrokv bench`: etcd's benchmark tool.
#[derive(Debug, Parser)]
#[command(name = "ferrokv bench", about = "A low-level benchmark tool for etcd v3 endpoints (etcd's `benchmark`)")]
pub struct Bench {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub op: ops::Op,
}

/// The flags every benchmark takes.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// gRPC endpoints, comma-separated (host:port or http://host:port).
    #[arg(long, global = true, default_value = "127.0.0.1:2379", value_delimiter = ',')]
    pub endpoints: Vec<String>,
    /// Total number of gRPC connections.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Total number of gRPC clients (requests in flight).
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Send every request to the leader's endpoint.
    #[arg(long, global = true)]
    pub target_leader: bool,
    /// Dial timeout (Go duration).
    #[arg(long, global = true, default_value = "0s")]
    pub dial_timeout: String,
    /// Print the figures as JSON instead of the text report.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Runs `ferrokv bench <args>`; the process exit code.
pub fn main(args: Vec<String>) -> u8 {
    let bench = match Bench::try_parse_from(std::iter::once("ferrokv bench".to_string()).chain(args)) {
        Ok(b) => b,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferrokv bench: {e}");
            return 1;
        }
    };
    match rt.block_on(ops::run(bench)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ferrokv bench: {e}");
            1
        }
    }
}

/// An endpoint as a URL tonic dials.
fn url(endpoint: &str) -> String {
    if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") }
}

/// The connections the clients share: `--conns` of them, spread over the endpoints (or all to the leader).
pub async fn connect(g: &Global) -> Result<Vec<Channel>, String> {
    let mut endpoints = g.endpoints.clone();
    if g.target_leader {
        endpoints = vec![leader_endpoint(&endpoints).await?];
    }
    let mut channels = Vec::with_capacity(g.conns.max(1));
    for i in 0..g.conns.max(1) {
        let e = &endpoints[i % endpoints.len()];
        let mut ep = Endpoint::from_shared(url(e)).map_err(|err| format!("{e}: {err}"))?;
        if let Some(d) = crate::config::parse_go_duration(&g.dial_timeout)
            && !d.is_zero()
        {
            ep = ep.connect_timeout(d);
        }
        channels.push(ep.connect().await.map_err(|err| format!("dial {e}: {err}"))?);
    }
    Ok(channels)
}

/// The endpoint of the leader, asked of each endpoint in turn.
async fn leader_endpoint(endpoints: &[String]) -> Result<String, String> {
    for e in endpoints {
        let Ok(mut m) = MaintenanceClient::connect(url(e)).await else { continue };
        let Ok(s) = m.status(StatusRequest {}).await else { continue };
        let s = s.into_inner();
        if s.header.is_some_and(|h| h.member_id == s.leader) {
            return Ok(e.clone());
        }
    }
    Err("no endpoint is the leader (--target-leader)".into())
}

/// How many requests, by how many clients, how fast.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub total: u64,
    pub clients: usize,
    /// Requests per second over all clients; 0 for as fast as they go.
    pub rate: f64,
}

/// Runs `load`: `request(client, i)` for i in 0..total, spread over the clients; the results.
pub async fn drive<F, Fut>(load: Load, request: F) -> Stats
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let request = Arc::new(request);
    let bar = progress(load.total, Arc::clone(&done));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(load.clients);
    for c in 0..load.clients.max(1) {
        let (next, done, request) = (Arc::clone(&next), Arc::clone(&done), Arc::clone(&request));
        tasks.push(tokio::spawn(async move {
            let mut lats = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= load.total {
                    break;
                }
                if load.rate > 0.0 {
                    tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / load.rate)).into()).await;
                }
                let t = Instant::now();
                match request(c, i).await {
                    Ok(()) => lats.push(t.elapsed().as_secs_f64()),
                    Err(e) => *errors.entry(e).or_default() += 1,
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            (lats, errors)
        }));
    }
    let mut lats = Vec::with_capacity(load.total as usize);
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in tasks {
        if let Ok((l, e)) = t.await {
            lats.extend(l);
            for (k, v) in e {
                *errors.entry(k).or_default() += v;
            }
        }
    }
    let total = start.elapsed();
    if let Some(bar) = bar {
        bar.abort();
        eprintln!();
    }
    Stats::new(total, lats, errors)
}

/// A progress bar on standard error while requests run, when it is a terminal (etcd's benchmark shows one).
fn progress(total: u64, done: Arc<AtomicU64>) -> Option<tokio::task::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(tokio::spawn(async move {
        loop {
            let d = done.load(Ordering::Relaxed).min(total);
            let width = 50usize;
            let filled = (d * width as u64).checked_div(total).map_or(width, |f| f as usize);
            eprint!(
                "\r {d} / {total} [{}{}] {}%",
                "=".repeat(filled),
                " ".repeat(width - filled),
                d * 100 / total.max(1)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }))
}

/// Prints `stats` as the text report or JSON.
pub fn print(g: &Global, op: &str, stats: &Stats) {
    if g.json {
        println!("{}", stats.json(op));
    } else {
        print!("{}", stats.text());
    }
}
