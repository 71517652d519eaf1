//! The benchmarks themselves, with etcd's `benchmark` flags and defaults.
//!
//! Keys are `--key-size` bytes: the request's number (sequential, modulo `--key-space-size`) or a random number
//! below `--key-space-size`, big-endian at the front, zero-padded. Values are `--val-size` bytes of `a`.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use super::report::Stats;
use super::{Bench, Load, connect, drive, print};
use crate::proto::etcdserverpb::{
    self as pb, kv_client::KvClient, lease_client::LeaseClient, watch_client::WatchClient,
};

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum Op {
    /// Benchmark put
    Put(PutArgs),
    /// Benchmark range
    Range(RangeArgs),
    /// Benchmark txn-put
    TxnPut(TxnPutArgs),
    /// Benchmark a mixed load of txn-put and txn-range
    TxnMixed(TxnMixedArgs),
    /// Benchmark watch
    Watch(WatchArgs),
    /// Benchmark watch latency
    WatchLatency(WatchLatencyArgs),
    /// Benchmark lease keepalive
    LeaseKeepalive(LeaseArgs),
}

#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Key size of the request
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size of the request
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Maximum possible keys
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Use sequential keys
    #[arg(long)]
    pub sequential_keys: bool,
}

/// How many requests, how fast.
#[derive(Debug, Clone, Copy, Args)]
pub struct LoadArgs {
    /// Total number of requests
    #[arg(long, default_value_t = 10000)]
    pub total: u64,
    /// Maximum requests per second (0 is no limit)
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Interval to compact the database (0 is no compaction; a Go duration)
    #[arg(long, default_value = "0s")]
    pub compact_interval: String,
    /// Delta between the current revision and the compact revision
    #[arg(long, default_value_t = 1000)]
    pub compact_index_delta: i64,
}

#[derive(Debug, Args)]
pub struct RangeArgs {
    /// The key (or the start of the range)
    pub key: String,
    /// The end of the range
    pub end_range: Option<String>,
    /// Linearizable (l) or serializable (s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Maximum number of results per request (0 is no limit)
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Only return the count of keys
    #[arg(long)]
    pub count_only: bool,
}

#[derive(Debug, Args)]
pub struct TxnPutArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Number of puts per txn
    #[arg(long, default_value_t = 1)]
    pub txn_ops: u64,
}

#[derive(Debug, Args)]
pub struct TxnMixedArgs {
    /// The key (or the start of the range) reads ask for
    pub key: String,
    /// The end of the range
    pub end_range: Option<String>,
    #[command(flatten)]
    pub keys: KeyArgs,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Read/write ops ratio
    #[arg(long, default_value_t = 1.0)]
    pub rw_ratio: f64,
    /// Linearizable (l) or serializable (s)
    #[arg(long, default_value = "l")]
    pub consistency: String,
    /// Maximum number of results per range (0 is no limit)
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Total number of watch streams
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Total number of watchers per stream
    #[arg(long, default_value_t = 100)]
    pub watch_per_stream: usize,
    /// Number of keys to watch
    #[arg(long, default_value_t = 1)]
    pub watched_key_total: u64,
    /// Number of put requests
    #[arg(long, default_value_t = 1000)]
    pub put_total: u64,
    /// Put requests per second (0 is no limit)
    #[arg(long, default_value_t = 0.0)]
    pub put_rate: f64,
    /// Key size of the watched keys
    #[arg(long, default_value_t = 32)]
    pub key_size: usize,
}

#[derive(Debug, Args)]
pub struct WatchLatencyArgs {
    /// Total number of put requests
    #[arg(long, default_value_t = 1000)]
    pub put_total: u64,
    /// Put requests per second
    #[arg(long, default_value_t = 100.0)]
    pub put_rate: f64,
    /// Key size of the watched key
    #[arg(long, default_value_t = 32)]
    pub key_size: usize,
    /// Value size of the puts
    #[arg(long, default_value_t = 32)]
    pub val_size: usize,
    /// Total number of watch streams
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Total number of watchers per stream
    #[arg(long, default_value_t = 10)]
    pub watchers_per_stream: usize,
}

#[derive(Debug, Args)]
pub struct LeaseArgs {
    /// Total number of keep-alive requests
    #[arg(long, default_value_t = 10000)]
    pub total: u64,
}

/// A well-spread number for request `i` (splitmix64: cheap, and good enough to spread keys and choices).
fn spread(i: u64, seed: u64) -> u64 {
    let mut z = (i ^ (seed << 32)).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key of request `i` (see the module header); `seed` varies random keys between clients.
pub fn key(k: &KeyArgs, i: u64, seed: u64) -> Vec<u8> {
    let n = if k.sequential_keys { i % k.key_space_size.max(1) } else { spread(i, seed) % k.key_space_size.max(1) };
    let mut key = vec![0u8; k.key_size.max(1)];
    let be = n.to_be_bytes();
    let take = be.len().min(key.len());
    key[..take].copy_from_slice(&be[be.len() - take..]);
    key
}

fn status(e: tonic::Status) -> String {
    e.message().to_string()
}

/// Runs the chosen benchmark and prints its report(s).
pub async fn run(b: Bench) -> Result<(), String> {
    let g = b.global.clone();
    let channels = Arc::new(connect(&g).await?);
    let chan = move |c: usize| channels[c % channels.len()].clone();
    let load = |l: LoadArgs| Load { total: l.total, clients: g.clients, rate: l.rate };
    match b.op {
        Op::Put(a) => {
            let value = vec![b'a'; a.keys.val_size];
            let revision = Arc::new(AtomicI64::new(0));
            let compactor = compact_every(&a, chan(0), Arc::clone(&revision));
            let stats = drive(load(a.load), move |c, i| {
                let (mut kv, req) = (KvClient::new(chan(c)), put_request(&a.keys, i, c, &value));
                let revision = Arc::clone(&revision);
                async move {
                    let r = kv.put(req).await.map_err(status)?.into_inner();
                    revision.fetch_max(r.header.map_or(0, |h| h.revision), Ordering::Relaxed);
                    Ok(())
                }
            })
            .await;
            if let Some(c) = compactor {
                c.abort();
            }
            print(&g, "put", &stats);
        }
        Op::Range(a) => {
            let req = pb::RangeRequest {
                key: a.key.clone().into_bytes(),
                range_end: a.end_range.clone().unwrap_or_default().into_bytes(),
                serializable: a.consistency == "s",
                limit: a.limit,
                count_only: a.count_only,
                ..Default::default()
            };
            let stats = drive(load(a.load), move |c, _| {
                let (mut kv, req) = (KvClient::new(chan(c)), req.clone());
                async move { kv.range(req).await.map(|_| ()).map_err(status) }
            })
            .await;
            print(&g, "range", &stats);
        }
        Op::TxnPut(a) => {
            let value = vec![b'a'; a.keys.val_size];
            // As etcd's: the puts of txn i go to keys (i × txn-ops + j) mod key-space-size, so one txn never names
            // a key twice (which etcd refuses) while txn-ops ≤ key-space-size.
            let keys = KeyArgs { sequential_keys: true, ..a.keys.clone() };
            let stats = drive(load(a.load), move |c, i| {
                let success = (0..a.txn_ops)
                    .map(|j| pb::RequestOp {
                        request: Some(pb::request_op::Request::RequestPut(put_request(
                            &keys,
                            i * a.txn_ops + j,
                            c,
                            &value,
                        ))),
                    })
                    .collect();
                let mut kv = KvClient::new(chan(c));
                async move {
                    kv.txn(pb::TxnRequest { success, ..Default::default() }).await.map(|_| ()).map_err(status)
                }
            })
            .await;
            print(&g, "txn-put", &stats);
        }
        Op::TxnMixed(a) => {
            let value = vec![b'a'; a.keys.val_size];
            let read = pb::RangeRequest {
                key: a.key.clone().into_bytes(),
                range_end: a.end_range.clone().unwrap_or_default().into_bytes(),
                serializable: a.consistency == "s",
                limit: a.limit,
                ..Default::default()
            };
            let reads = Arc::new(Mutex::new(Vec::new()));
            let writes = Arc::new(Mutex::new(Vec::new()));
            let (r2, w2) = (Arc::clone(&reads), Arc::clone(&writes));
            let ratio = a.rw_ratio / (1.0 + a.rw_ratio);
            let stats = drive(load(a.load), move |c, i| {
                // Request i reads with probability rw_ratio / (1 + rw_ratio).
                // Spread whether or not keys are sequential (a sequential choice would run all reads first).
                let is_read = ((spread(i, 7) % 1_000_000) as f64) < ratio * 1_000_000.0;
                let mut kv = KvClient::new(chan(c));
                let (read, put) = (read.clone(), put_request(&a.keys, i, c, &value));
                let (reads, writes) = (Arc::clone(&r2), Arc::clone(&w2));
                async move {
                    let t = Instant::now();
                    let op = if is_read {
                        pb::request_op::Request::RequestRange(read)
                    } else {
                        pb::request_op::Request::RequestPut(put)
                    };
                    let txn =
                        pb::TxnRequest { success: vec![pb::RequestOp { request: Some(op) }], ..Default::default() };
                    kv.txn(txn).await.map_err(status)?;
                    let into = if is_read { &reads } else { &writes };
                    into.lock().unwrap_or_else(|p| p.into_inner()).push(t.elapsed().as_secs_f64());
                    Ok(())
                }
            })
            .await;
            for (name, lats) in [("txn-mixed read", reads), ("txn-mixed write", writes)] {
                let lats = std::mem::take(&mut *lats.lock().unwrap_or_else(|p| p.into_inner()));
                if !g.json {
                    println!("\n{name}:");
                }
                print(&g, name, &Stats::new(stats.total, lats, Default::default()));
            }
        }
        Op::Watch(a) => watch(&g, a, chan).await?,
        Op::WatchLatency(a) => watch_latency(&g, a, chan).await?,
        Op::LeaseKeepalive(a) => {
            let streams: Vec<Arc<tokio::sync::Mutex<KeepAlive>>> = {
                let mut v = Vec::new();
                for c in 0..g.clients.max(1) {
                    v.push(Arc::new(tokio::sync::Mutex::new(KeepAlive::open(chan(c)).await?)));
                }
                v
            };
            let stats = drive(load(LoadArgs { total: a.total, rate: 0.0 }), move |c, _| {
                let s = Arc::clone(&streams[c % streams.len()]);
                async move { s.lock().await.once().await }
            })
            .await;
            print(&g, "lease-keepalive", &stats);
        }
    }
    Ok(())
}

fn put_request(k: &KeyArgs, i: u64, client: usize, value: &[u8]) -> pb::PutRequest {
    pb::PutRequest { key: key(k, i, client as u64), value: value.to_vec(), ..Default::default() }
}

/// `--compact-interval`: every interval, compacts to the latest revision seen minus `--compact-index-delta`.
fn compact_every(a: &PutArgs, chan: Channel, revision: Arc<AtomicI64>) -> Option<tokio::task::JoinHandle<()>> {
    let every = crate::config::parse_go_duration(&a.compact_interval).filter(|d| !d.is_zero())?;
    let delta = a.compact_index_delta;
    Some(tokio::spawn(async move {
        let mut kv = KvClient::new(chan);
        loop {
            tokio::time::sleep(every).await;
            let to = revision.load(Ordering::Relaxed) - delta;
            if to > 0 {
                let _ = kv.compact(pb::CompactionRequest { revision: to, physical: false }).await;
            }
        }
    }))
}

/// One lease and its keep-alive stream.
struct KeepAlive {
    id: i64,
    tx: mpsc::Sender<pb::LeaseKeepAliveRequest>,
    rx: tonic::Streaming<pb::LeaseKeepAliveResponse>,
}

impl KeepAlive {
    async fn open(chan: Channel) -> Result<KeepAlive, String> {
        let mut lease = LeaseClient::new(chan);
        let id = lease.lease_grant(pb::LeaseGrantRequest { ttl: 60, id: 0 }).await.map_err(status)?.into_inner().id;
        let (tx, rx) = mpsc::channel(4);
        tx.send(pb::LeaseKeepAliveRequest { id }).await.map_err(|e| e.to_string())?;
        let mut rx = lease.lease_keep_alive(ReceiverStream::new(rx)).await.map_err(status)?.into_inner();
        rx.message().await.map_err(status)?;
        Ok(KeepAlive { id, tx, rx })
    }

    async fn once(&mut self) -> Result<(), String> {
        self.tx.send(pb::LeaseKeepAliveRequest { id: self.id }).await.map_err(|e| e.to_string())?;
        match self.rx.message().await.map_err(status)? {
            Some(r) if r.ttl > 0 => Ok(()),
            _ => Err("lease expired or stream closed".into()),
        }
    }
}

/// Opens a watch stream with `creates` and waits for every watcher's creation; the stream and each creation's
/// latency.
async fn open_watchers(
    chan: Channel,
    creates: Vec<pb::WatchCreateRequest>,
) -> Result<(tonic::Streaming<pb::WatchResponse>, mpsc::Sender<pb::WatchRequest>, Vec<f64>), String> {
    let (tx, rx) = mpsc::channel(creates.len() + 1);
    let n = creates.len();
    let mut sent = Vec::with_capacity(n);
    let mut creates = creates.into_iter();
    // grpc-go sends a stream's headers only with its first message: queue one before the call.
    if let Some(first) = creates.next() {
        sent.push(Instant::now());
        let req = pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(first)) };
        tx.send(req).await.map_err(|e| e.to_string())?;
    }
    let mut stream = WatchClient::new(chan).watch(ReceiverStream::new(rx)).await.map_err(status)?.into_inner();
    for c in creates {
        sent.push(Instant::now());
        let req = pb::WatchRequest { request_union: Some(pb::watch_request::RequestUnion::CreateRequest(c)) };
        tx.send(req).await.map_err(|e| e.to_string())?;
    }
    let mut lats = Vec::with_capacity(n);
    while lats.len() < n {
        match stream.message().await.map_err(status)? {
            Some(r) if r.created => lats.push(sent[lats.len()].elapsed().as_secs_f64()),
            Some(_) => {}
            None => return Err("watch stream closed".into()),
        }
    }
    Ok((stream, tx, lats))
}

/// etcd's `watch`: creates `streams × watch-per-stream` watchers (reported as "watch creation"), then puts to the
/// watched keys (reported as "put") and checks every watcher saw every event.
async fn watch(g: &super::Global, a: WatchArgs, chan: impl Fn(usize) -> Channel) -> Result<(), String> {
    let keys =
        KeyArgs { key_size: a.key_size, val_size: 8, key_space_size: a.watched_key_total, sequential_keys: true };
    let started = Instant::now();
    let mut create_lats = Vec::new();
    let mut streams = Vec::new();
    for s in 0..a.streams {
        let creates = (0..a.watch_per_stream)
            .map(|w| pb::WatchCreateRequest {
                key: key(&keys, (s * a.watch_per_stream + w) as u64, 0),
                ..Default::default()
            })
            .collect();
        let (stream, tx, lats) = open_watchers(chan(s), creates).await?;
        create_lats.extend(lats);
        streams.push((stream, tx));
    }
    let created = Stats::new(started.elapsed(), create_lats, Default::default());
    // Each put's key is watched by the watchers whose number is congruent to it modulo the key total.
    let per_key = |k: u64| {
        let total = (a.streams * a.watch_per_stream) as u64;
        total / a.watched_key_total.max(1) + u64::from(k < total % a.watched_key_total.max(1))
    };
    let expected: u64 = (0..a.put_total).map(|i| per_key(i % a.watched_key_total.max(1))).sum();
    let received = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for (mut stream, tx) in streams {
        let received = Arc::clone(&received);
        readers.push(tokio::spawn(async move {
            let _keep = tx;
            while let Ok(Some(r)) = stream.message().await {
                received.fetch_add(r.events.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    let value = vec![b'a'; 8];
    let puts = drive(Load { total: a.put_total, clients: g.clients, rate: a.put_rate }, {
        let chans: Vec<Channel> = (0..g.clients.max(1)).map(&chan).collect();
        move |c, i| {
            let mut kv = KvClient::new(chans[c % chans.len()].clone());
            let req = pb::PutRequest { key: key(&keys, i, 0), value: value.clone(), ..Default::default() };
            async move { kv.put(req).await.map(|_| ()).map_err(status) }
        }
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in readers {
        r.abort();
    }
    let got = received.load(Ordering::Relaxed);
    if g.json {
        println!(
            "{}",
            serde_json::json!({"op": "watch", "watch_creation": created.json("watch creation"), "put": puts.json("put"), "events_expected": expected, "events_received": got})
        );
    } else {
        print!("\nWatch creation summary:{}", created.text());
        print!("\nPut summary:{}", puts.text());
        println!("\nEvents received: {got} of {expected}");
    }
    if got < expected {
        return Err(format!("watchers received {got} of {expected} events"));
    }
    Ok(())
}

/// etcd's `watch-latency`: `streams × watchers-per-stream` watchers on one key; puts at `--put-rate`; the
/// latency of every event, from its put's start to its arrival at each watcher.
async fn watch_latency(g: &super::Global, a: WatchLatencyArgs, chan: impl Fn(usize) -> Channel) -> Result<(), String> {
    let watched = vec![b'w'; a.key_size.max(1)];
    let starts: Arc<Vec<AtomicU64>> = Arc::new((0..a.put_total).map(|_| AtomicU64::new(0)).collect());
    let origin = Instant::now();
    let lats = Arc::new(Mutex::new(Vec::with_capacity((a.put_total as usize) * a.streams * a.watchers_per_stream)));
    let mut readers = Vec::new();
    for s in 0..a.streams {
        let creates = (0..a.watchers_per_stream)
            .map(|_| pb::WatchCreateRequest { key: watched.clone(), ..Default::default() })
            .collect();
        let (mut stream, tx, _) = open_watchers(chan(s), creates).await?;
        let (starts, lats) = (Arc::clone(&starts), Arc::clone(&lats));
        readers.push(tokio::spawn(async move {
            let _keep = tx;
            while let Ok(Some(r)) = stream.message().await {
                let now = origin.elapsed().as_nanos() as u64;
                let mut batch = Vec::with_capacity(r.events.len());
                for e in r.events {
                    let Some(kv) = e.kv else { continue };
                    let number = std::str::from_utf8(&kv.value).ok().and_then(|v| v.trim_end_matches('a').parse().ok());
                    let Some(t) = number.and_then(|i: u64| starts.get(i as usize)) else { continue };
                    batch.push(now.saturating_sub(t.load(Ordering::Relaxed)) as f64 / 1e9);
                }
                lats.lock().unwrap_or_else(|p| p.into_inner()).extend(batch);
            }
        }));
    }
    let val_size = a.val_size;
    let puts = drive(Load { total: a.put_total, clients: g.clients, rate: a.put_rate }, {
        let (chans, starts): (Vec<Channel>, _) = ((0..g.clients.max(1)).map(&chan).collect(), Arc::clone(&starts));
        move |c, i| {
            let mut kv = KvClient::new(chans[c % chans.len()].clone());
            let mut value = i.to_string().into_bytes();
            value.resize(val_size.max(value.len()), b'a');
            let req = pb::PutRequest { key: watched.clone(), value, ..Default::default() };
            starts[i as usize].store(origin.elapsed().as_nanos() as u64, Ordering::Relaxed);
            async move { kv.put(req).await.map(|_| ()).map_err(status) }
        }
    })
    .await;
    let expected = a.put_total as usize * a.streams * a.watchers_per_stream;
    // The events still in flight when the last put returned.
    let deadline = Instant::now() + Duration::from_secs(10);
    while lats.lock().unwrap_or_else(|p| p.into_inner()).len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in readers {
        r.abort();
    }
    let lats = std::mem::take(&mut *lats.lock().unwrap_or_else(|p| p.into_inner()));
    let events = Stats::new(puts.total, lats, Default::default());
    if g.json {
        println!(
            "{}",
            serde_json::json!({"op": "watch-latency", "put": puts.json("put"), "events": events.json("watch event"), "events_expected": expected})
        );
    } else {
        print!("\nPut summary:{}", puts.text());
        print!("\nWatch event latency (put start to event arrival):{}", events.text());
    }
    Ok(())
}
