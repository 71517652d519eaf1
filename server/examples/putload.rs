//! A minimal load generator for side-by-side runs against etcd until `ferrokv bench` exists (issue 7):
//! `putload ENDPOINT CLIENTS TOTAL [put|range]`. CLIENTS tasks share ten HTTP/2 connections; each sends its share of
//! TOTAL requests one after another (puts of 256-byte values under distinct keys, or linearizable gets of `foo`).
//! Prints the request count, wall time, throughput and p50/p99 latency.

use std::time::{Duration, Instant};

use server::proto::etcdserverpb::{PutRequest, RangeRequest, kv_client::KvClient};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(endpoint), Some(Ok(clients)), Some(Ok(total))) =
        (args.get(1), args.get(2).map(|a| a.parse::<usize>()), args.get(3).map(|a| a.parse::<usize>()))
    else {
        eprintln!("usage: putload ENDPOINT CLIENTS TOTAL [put|range]");
        std::process::exit(2);
    };
    let range = args.get(4).is_some_and(|m| m == "range");
    let conns = clients.clamp(1, 10);
    let mut channels = Vec::new();
    for _ in 0..conns {
        match KvClient::connect(format!("http://{endpoint}")).await {
            Ok(c) => channels.push(c),
            Err(e) => {
                eprintln!("putload: connect {endpoint}: {e}");
                std::process::exit(1);
            }
        }
    }
    let per = total / clients.max(1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut kv = channels[c % conns].clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per);
            for i in 0..per {
                let t = Instant::now();
                let ok = if range {
                    kv.range(RangeRequest { key: b"foo".to_vec(), ..Default::default() }).await.is_ok()
                } else {
                    let key = format!("k{c}-{i}").into_bytes();
                    kv.put(PutRequest { key, value: vec![b'v'; 256], ..Default::default() }).await.is_ok()
                };
                if ok {
                    latencies.push(t.elapsed());
                }
            }
            latencies
        }));
    }
    let mut all: Vec<Duration> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let elapsed = start.elapsed();
    all.sort();
    let at = |q: usize| all.get(all.len() * q / 100).copied().unwrap_or_default();
    println!(
        "{} reqs in {elapsed:?}: {:.0} req/s, p50 {:?} p99 {:?} ({} failed)",
        all.len(),
        all.len() as f64 / elapsed.as_secs_f64(),
        at(50),
        at(99),
        per * clients - all.len()
    );
}
