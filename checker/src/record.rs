//! Recording a history: concurrent etcd-client clients run a random workload against a cluster for a while,
//! each operation with its call and return times, while watches of every key record what they deliver.
//!
//! **Workload.** A few keys (`k0`, `k1`, …), so operations collide; every value is unique (`c<client>-<n>`), which
//! is what ties a watch event or a read to the write that made it. Each client runs puts (some with its own lease),
//! gets (latest and at a recent revision), deletes, compare-and-swap transactions on a key's version, lease grants
//! and revokes (ids unique per client), and rare compactions a little behind the revision it last saw, or, half the
//! time, at the revision of its last delete that deleted a key (a deletion at the compaction point is the case
//! etcd #18089 lost from watches).
//!
//! **Outcomes.** A gRPC error whose message is one of etcd's definite refusals is [`Outcome::Failed`]; any other
//! error, and a request that does not answer within the timeout, is [`Outcome::Unknown`].
//!
//! **Watches.** One stream watches every key from the revision after the start, with `prev_kv` and progress
//! notifications, resumed from the revision after its last event (or progress) whenever it breaks; each resumption is
//! a [`WatchStream`] of its own. At the end, after the clients stop and the cluster settles, the recorder reads the
//! final revision and asks for progress until the watch has reported up to it: then the watches are complete
//! ([`Recording::complete_to`]).
//!
//! **Resumed watches.** `watchers` more clients each watch one key from a revision a little in the past, for a
//! random while, then cancel and resume from the revision after the last event they got (or the last progress),
//! through the next endpoint, every other time after a pause of up to 1.5 s (so that compactions often refuse the
//! resumption, which then starts at the compaction point): each stream is checked on its own, so a resumption that
//! skips or repeats an event shows as a gap or a duplicate.
//!
//! **Threading.** Everything runs on the caller's tokio runtime: one task per client, one for the watch of every
//! key, one per watcher.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare as EcCompare, CompareOp, EventType, GetOptions, LeaseGrantOptions, PutOptions, Txn,
    TxnOp as EcTxnOp, TxnOpResponse, WatchOptions,
};

use crate::history::{
    Compare, History, KeyValue, OpResult, Outcome, Refusal, Relation, Request, Response, Target, TxnOp,
};
use crate::model::{Event, EventKind};
use crate::watch::{WatchResponse, WatchStream};

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Client URLs (`http://host:port`); client `i` talks to `endpoints[i % len]` only.
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub keys: usize,
    pub duration: Duration,
    /// A request not answered within this is of unknown outcome.
    pub timeout: Duration,
    pub seed: u64,
    /// Clients that watch one key (with or without `prev_kv`) for a while, stop, and resume from the revision after
    /// the last event they got, over and over, through each endpoint in turn.
    pub watchers: usize,
}

/// What a run recorded.
#[derive(Debug, Clone)]
pub struct Recording {
    pub history: History,
    /// The watch of every key (one stream per (re)start), then the watchers' streams.
    pub watches: Vec<WatchStream>,
    /// The revision up to which the watches delivered everything, if they reached the final revision.
    pub complete_to: Option<i64>,
}

/// A recording that could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connecting to {endpoint}: {source}")]
    Connect { endpoint: String, source: etcd_client::Error },
    #[error("reading the {what} state: {source}")]
    Read { what: &'static str, source: etcd_client::Error },
    #[error("the cluster did not answer a read for the {0} state in time")]
    NoAnswer(&'static str),
}

/// xorshift64*: a small deterministic generator per client.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

fn kv_of(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key().to_vec(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

fn failed(e: etcd_client::Error) -> Outcome {
    match &e {
        etcd_client::Error::GRpcStatus(s) => {
            Refusal::from_message(s.message()).map_or(Outcome::Unknown, Outcome::Failed)
        }
        _ => Outcome::Unknown,
    }
}

fn revision_of(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.map_or(0, |h| h.revision())
}

/// One client's state: what it has seen, to pick sensible requests.
struct Worker {
    id: usize,
    client: Client,
    rng: Rng,
    keys: usize,
    serial: u64,
    last_revision: i64,
    /// The revision of this client's last delete that deleted a key.
    last_delete: i64,
    versions: Vec<i64>,
    leases: Vec<i64>,
    next_lease: i64,
    timeout: Duration,
    /// The revision the watch of every key has reported up to: compactions stay at or below it, so the oracle
    /// never loses history it has yet to deliver (a watch on a member cut off from its peers falls behind).
    oracle: Arc<AtomicI64>,
}

impl Worker {
    fn key(&mut self) -> (usize, Vec<u8>) {
        let k = self.rng.below(self.keys as u64) as usize;
        (k, format!("k{k}").into_bytes())
    }

    fn value(&mut self) -> Vec<u8> {
        self.serial += 1;
        format!("c{}-{}", self.id, self.serial).into_bytes()
    }

    fn request(&mut self) -> Request {
        let (k, key) = self.key();
        match self.rng.below(100) {
            0..=29 => {
                let lease = match self.leases.as_slice() {
                    [] => 0,
                    l if self.rng.below(4) == 0 => l[self.rng.below(l.len() as u64) as usize],
                    _ => 0,
                };
                Request::Put { key, value: self.value(), lease }
            }
            30..=49 => Request::Get { key, revision: 0 },
            50..=59 => Request::Get { key, revision: (self.last_revision - self.rng.below(20) as i64).max(1) },
            60..=69 => Request::Delete { key },
            70..=91 => {
                let (_, other) = self.key();
                Request::Txn {
                    compares: vec![Compare {
                        key: key.clone(),
                        relation: Relation::Equal,
                        target: Target::Version(self.versions[k]),
                    }],
                    success: vec![
                        TxnOp::Put { key: key.clone(), value: self.value(), lease: 0 },
                        TxnOp::Get { key: other },
                    ],
                    failure: vec![TxnOp::Get { key }],
                }
            }
            92..=95 if self.leases.len() < 2 => {
                self.next_lease += 1;
                Request::LeaseGrant { id: self.next_lease }
            }
            92..=97 if !self.leases.is_empty() => {
                let i = self.rng.below(self.leases.len() as u64) as usize;
                Request::LeaseRevoke { id: self.leases.remove(i) }
            }
            98..=99 if self.last_revision > 100 && self.rng.below(4) == 0 => {
                let behind = if self.last_delete > 1 && self.rng.below(2) == 0 {
                    self.last_delete
                } else {
                    self.last_revision - 50
                };
                let revision = behind.min(self.oracle.load(Ordering::Relaxed));
                if revision > 1 { Request::Compact { revision } } else { Request::Get { key, revision: 0 } }
            }
            _ => Request::Get { key, revision: 0 },
        }
    }

    /// Sends `request`; the outcome, and the revision the response carried (0 if none).
    async fn send(&mut self, request: &Request) -> Outcome {
        let c = &mut self.client;
        let call = async {
            match request {
                Request::Put { key, value, lease } => {
                    let opts = (*lease != 0).then(|| PutOptions::new().with_lease(*lease));
                    c.put(key.clone(), value.clone(), opts)
                        .await
                        .map(|r| Response::Put { revision: revision_of(r.header()) })
                }
                Request::Get { key, revision } => {
                    let opts = (*revision != 0).then(|| GetOptions::new().with_revision(*revision));
                    c.get(key.clone(), opts)
                        .await
                        .map(|r| Response::Get { revision: revision_of(r.header()), kv: r.kvs().first().map(kv_of) })
                }
                Request::Delete { key } => c
                    .delete(key.clone(), None)
                    .await
                    .map(|r| Response::Delete { revision: revision_of(r.header()), deleted: r.deleted() }),
                Request::Txn { compares, success, failure } => {
                    let txn = Txn::new()
                        .when(compares.iter().map(compare_of).collect::<Vec<_>>())
                        .and_then(success.iter().map(op_of).collect::<Vec<_>>())
                        .or_else(failure.iter().map(op_of).collect::<Vec<_>>());
                    c.txn(txn).await.map(|r| Response::Txn {
                        revision: revision_of(r.header()),
                        succeeded: r.succeeded(),
                        results: r.op_responses().iter().map(result_of).collect(),
                    })
                }
                Request::LeaseGrant { id } => c
                    .lease_grant(600, Some(LeaseGrantOptions::new().with_id(*id)))
                    .await
                    .map(|r| Response::LeaseGrant { revision: revision_of(r.header()) }),
                Request::LeaseRevoke { id } => {
                    c.lease_revoke(*id).await.map(|r| Response::LeaseRevoke { revision: revision_of(r.header()) })
                }
                Request::Compact { revision } => {
                    c.compact(*revision, None).await.map(|r| Response::Compact { revision: revision_of(r.header()) })
                }
            }
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(r)) => Outcome::Ok(r),
            Ok(Err(e)) => failed(e),
            Err(_) => Outcome::Unknown,
        }
    }

    /// Learns from an answer: the revision, the versions of keys, the leases granted.
    fn learn(&mut self, request: &Request, outcome: &Outcome) {
        let Outcome::Ok(r) = outcome else { return };
        let revision = match r {
            Response::Put { revision }
            | Response::Get { revision, .. }
            | Response::Delete { revision, .. }
            | Response::Txn { revision, .. }
            | Response::LeaseGrant { revision }
            | Response::LeaseRevoke { revision }
            | Response::Compact { revision } => *revision,
        };
        self.last_revision = self.last_revision.max(revision);
        let index = |key: &[u8]| std::str::from_utf8(&key[1..]).ok().and_then(|s| s.parse::<usize>().ok());
        match (request, r) {
            (Request::Get { key, revision: 0 }, Response::Get { kv, .. }) => {
                if let Some(k) = index(key) {
                    self.versions[k] = kv.as_ref().map_or(0, |kv| kv.version);
                }
            }
            (Request::Txn { failure, .. }, Response::Txn { succeeded: false, results, .. }) => {
                if let (Some(TxnOp::Get { key }), Some(OpResult::Get(kv))) = (failure.first(), results.first()) {
                    if let Some(k) = index(key) {
                        self.versions[k] = kv.as_ref().map_or(0, |kv| kv.version);
                    }
                }
            }
            (Request::LeaseGrant { id }, _) => self.leases.push(*id),
            (Request::Delete { .. }, Response::Delete { revision, deleted }) if *deleted > 0 => {
                self.last_delete = *revision;
            }
            _ => {}
        }
    }
}

fn compare_of(c: &Compare) -> EcCompare {
    let op = match c.relation {
        Relation::Equal => CompareOp::Equal,
        Relation::NotEqual => CompareOp::NotEqual,
        Relation::Less => CompareOp::Less,
        Relation::Greater => CompareOp::Greater,
    };
    match &c.target {
        Target::Value(v) => EcCompare::value(c.key.clone(), op, v.clone()),
        Target::Version(n) => EcCompare::version(c.key.clone(), op, *n),
        Target::Create(n) => EcCompare::create_revision(c.key.clone(), op, *n),
        Target::Mod(n) => EcCompare::mod_revision(c.key.clone(), op, *n),
    }
}

fn op_of(o: &TxnOp) -> EcTxnOp {
    match o {
        TxnOp::Put { key, value, lease } => {
            EcTxnOp::put(key.clone(), value.clone(), (*lease != 0).then(|| PutOptions::new().with_lease(*lease)))
        }
        TxnOp::Get { key } => EcTxnOp::get(key.clone(), None),
        TxnOp::Delete { key } => EcTxnOp::delete(key.clone(), None),
    }
}

fn result_of(r: &TxnOpResponse) -> OpResult {
    match r {
        TxnOpResponse::Put(_) => OpResult::Put,
        TxnOpResponse::Get(g) => OpResult::Get(g.kvs().first().map(kv_of)),
        TxnOpResponse::Delete(d) => OpResult::Delete { deleted: d.deleted() },
        TxnOpResponse::Txn(_) => OpResult::Put,
    }
}

fn event_of(e: &etcd_client::Event) -> Option<Event> {
    let kv = kv_of(e.kv()?);
    let kind = match e.event_type() {
        EventType::Put => EventKind::Put,
        EventType::Delete => EventKind::Delete,
    };
    Some(Event { kind, kv, prev: e.prev_kv().map(kv_of) })
}

async fn connect(endpoint: &str) -> Result<Client, Error> {
    let opts = etcd_client::ConnectOptions::new().with_connect_timeout(Duration::from_secs(2));
    Client::connect([endpoint], Some(opts)).await.map_err(|source| Error::Connect { endpoint: endpoint.into(), source })
}

/// Reads every key, retrying through each endpoint for up to 30 s: (revision, keys).
async fn read_all(endpoints: &[String], what: &'static str) -> Result<(i64, Vec<KeyValue>), Error> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for e in endpoints {
            let Ok(mut c) = connect(e).await else { continue };
            let read = c.get(vec![0], Some(GetOptions::new().with_from_key()));
            if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(2), read).await {
                return Ok((revision_of(r.header()), r.kvs().iter().map(kv_of).collect()));
            }
        }
        if Instant::now() > deadline {
            return Err(Error::NoAnswer(what));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What waiting on a watch stream gave.
enum Received {
    Response(WatchResponse),
    /// Nothing within the wait.
    Nothing,
    /// The stream ended or broke.
    End,
}

/// The next response of `w` within `wait`.
async fn receive(w: &mut etcd_client::WatchStream, wait: Duration) -> Received {
    match tokio::time::timeout(wait, w.message()).await {
        Ok(Ok(Some(r))) => Received::Response(WatchResponse {
            revision: revision_of(r.header()),
            events: r.events().iter().filter_map(event_of).collect(),
            created: r.created(),
            canceled: r.canceled(),
            compact_revision: r.compact_revision(),
        }),
        Ok(_) => Received::End,
        Err(_) => Received::Nothing,
    }
}

/// Adds `resp` to `stream`; whether it ended the stream (a cancellation).
fn record(stream: &mut WatchStream, resp: WatchResponse) -> bool {
    let canceled = resp.canceled;
    stream.responses.push(resp);
    canceled
}

/// The watch of every key: (re)opened from the revision after the last one it reported, through each endpoint in
/// turn, until `stop` is set and it has reported up to the revision `stop` holds.
async fn watch_all(
    endpoints: Vec<String>,
    from: i64,
    until: Arc<Mutex<Option<i64>>>,
    oracle: Arc<AtomicI64>,
) -> (Vec<WatchStream>, i64) {
    let mut streams = Vec::new();
    let mut covered = from - 1;
    let mut attempt = 0usize;
    let deadline_after_stop = Duration::from_secs(20);
    let mut stop_seen: Option<Instant> = None;
    loop {
        let target = *until.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = target {
            let since = *stop_seen.get_or_insert_with(Instant::now);
            if covered >= t || since.elapsed() > deadline_after_stop {
                return (streams, covered);
            }
        }
        let endpoint = &endpoints[attempt % endpoints.len()];
        attempt += 1;
        let Ok(mut client) = connect(endpoint).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let opts =
            WatchOptions::new().with_from_key().with_start_revision(covered + 1).with_prev_key().with_progress_notify();
        let Ok(Ok(mut w)) = tokio::time::timeout(Duration::from_secs(2), client.watch(vec![0], Some(opts))).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut stream = WatchStream {
            key: vec![0],
            range_end: vec![0],
            start_revision: covered + 1,
            prev_kv: true,
            responses: Vec::new(),
        };
        loop {
            let target = *until.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(t) = target {
                let since = *stop_seen.get_or_insert_with(Instant::now);
                if covered >= t || since.elapsed() > deadline_after_stop {
                    break;
                }
                let _ = w.request_progress().await;
            }
            let resp = match receive(&mut w, Duration::from_millis(500)).await {
                Received::Response(r) => r,
                Received::Nothing => continue,
                Received::End => break,
            };
            if let Some(last) = resp.events.last() {
                covered = covered.max(last.kv.mod_revision);
            } else if resp.is_progress() {
                covered = covered.max(resp.revision);
            }
            oracle.store(covered, Ordering::Relaxed);
            if record(&mut stream, resp) {
                break;
            }
        }
        streams.push(stream);
    }
}

/// One watcher: watches key `k<n>` in stretches until `end`, each resuming where the last one stopped.
async fn watch_resuming(
    endpoints: Vec<String>,
    id: usize,
    keys: usize,
    from: i64,
    end: Instant,
    seed: u64,
) -> Vec<WatchStream> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(id as u64 * 104_729 + 7));
    let key = format!("k{}", rng.below(keys as u64)).into_bytes();
    let prev_kv = rng.below(2) == 0;
    let mut next = from;
    let mut streams = Vec::new();
    let mut turn = id;
    while Instant::now() < end {
        let endpoint = &endpoints[turn % endpoints.len()];
        turn += 1;
        let Ok(mut client) = connect(endpoint).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut opts = WatchOptions::new().with_start_revision(next).with_progress_notify();
        if prev_kv {
            opts = opts.with_prev_key();
        }
        let Ok(Ok(mut w)) = tokio::time::timeout(Duration::from_secs(2), client.watch(key.clone(), Some(opts))).await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut stream = WatchStream {
            key: key.clone(),
            range_end: Vec::new(),
            start_revision: next,
            prev_kv,
            responses: Vec::new(),
        };
        let stop = Instant::now() + Duration::from_millis(300 + rng.below(1500));
        while Instant::now() < stop.min(end) {
            let resp = match receive(&mut w, Duration::from_millis(200)).await {
                Received::Response(r) => r,
                Received::Nothing => continue,
                Received::End => break,
            };
            if let Some(last) = resp.events.last() {
                next = next.max(last.kv.mod_revision + 1);
            }
            if resp.canceled && resp.compact_revision > 0 {
                // Compacted past where it would resume: start again at the compaction point.
                next = next.max(resp.compact_revision);
            }
            if record(&mut stream, resp) {
                break;
            }
        }
        streams.push(stream);
        // Every other time, away for a while before resuming, as a client that reconnects late: compactions meanwhile
        // refuse the resumption, which then starts again at the compaction point.
        if rng.below(2) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.below(1500))).await;
        }
    }
    streams
}

/// Runs the workload and records it.
pub async fn run(config: &Config) -> Result<Recording, Error> {
    let (start_revision, start) = read_all(&config.endpoints, "starting").await?;
    let until = Arc::new(Mutex::new(None));
    let oracle = Arc::new(AtomicI64::new(start_revision));
    let watcher =
        tokio::spawn(watch_all(config.endpoints.clone(), start_revision + 1, Arc::clone(&until), Arc::clone(&oracle)));
    let epoch = Instant::now();
    let end = epoch + config.duration;
    let watchers: Vec<_> = (0..config.watchers)
        .map(|id| {
            let w = watch_resuming(config.endpoints.clone(), id, config.keys, start_revision + 1, end, config.seed);
            tokio::spawn(w)
        })
        .collect();
    let mut tasks = Vec::new();
    for id in 0..config.clients {
        let endpoint = config.endpoints[id % config.endpoints.len()].clone();
        let client = connect(&endpoint).await?;
        let mut w = Worker {
            id,
            client,
            rng: Rng(config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(id as u64 * 7919 + 1)),
            keys: config.keys,
            serial: 0,
            last_revision: start_revision,
            last_delete: 0,
            versions: vec![0; config.keys],
            leases: Vec::new(),
            next_lease: ((id as i64) + 1) << 32,
            timeout: config.timeout,
            oracle: Arc::clone(&oracle),
        };
        tasks.push(tokio::spawn(async move {
            let mut ops = Vec::new();
            while Instant::now() < end {
                let request = w.request();
                let call = epoch.elapsed().as_nanos() as u64;
                let outcome = w.send(&request).await;
                let ret = epoch.elapsed().as_nanos() as u64;
                w.learn(&request, &outcome);
                let unknown = outcome == Outcome::Unknown;
                ops.push((id, call, ret, request, outcome));
                if unknown {
                    // The connection may be gone with its member: a fresh one, to the same endpoint, after a pause
                    // (a member that is down refuses at once, and each refusal is one more unknown operation).
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    if let Ok(c) = connect(&endpoint).await {
                        w.client = c;
                    }
                }
            }
            ops
        }));
    }
    let mut history = History { start_revision, start, operations: Vec::new() };
    for t in tasks {
        if let Ok(ops) = t.await {
            for (c, call, ret, req, out) in ops {
                history.push(c, call, ret, req, out);
            }
        }
    }
    // Let requests still in flight inside the cluster land, then read where it ended.
    tokio::time::sleep(config.timeout).await;
    let (final_revision, _) = read_all(&config.endpoints, "final").await?;
    *until.lock().unwrap_or_else(|p| p.into_inner()) = Some(final_revision);
    let (mut watches, covered) = watcher.await.unwrap_or_default();
    for w in watchers {
        watches.extend(w.await.unwrap_or_default());
    }
    Ok(Recording { history, watches, complete_to: (covered >= final_revision).then_some(final_revision) })
}
