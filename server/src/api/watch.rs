//! The Watch service: one task per stream, holding that stream's watchers.
//!
//! A watcher that starts in the past is caught up from the store's history; live events come from the apply
//! loop's broadcast of each committed revision. The session subscribes to the broadcast before it reads history
//! up to revision R and skips live batches at or below R, so no event is lost or sent twice. A subscriber that
//! falls behind the broadcast is caught up from history again. A start revision below the compaction point gets
//! etcd's canceled response with `compact_revision` set.
//!
//! **A client that stops reading** holds at most its stream's queue: `OUT` answers and `QUEUE_BYTES` of them (one
//! larger answer waits for an empty queue). When a batch's answers no longer fit, the session marks itself behind
//! and keeps draining the broadcast without delivering (so the broadcast does not retain revisions for it), and
//! once the client has read again it catches every watcher up from history, as after a lag. Progress
//! notifications are skipped while the queue is full.
//!
//! **Catching up** reads history in steps of at most `CATCH_UP_REVS` revisions and about `CATCH_UP_BYTES` (see
//! `mvcc::HistoryLimit`), each sent before the next is read: a watcher starting far in the past, or a client
//! reading again after a long stall, costs a step's memory, not its whole history's.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::api::convert::{Headers, to_pb};
use crate::apply::Batch;
use crate::apply::store::StoreSlot;
use crate::error::Error;
use crate::proto::etcdserverpb::{
    self as pb, watch_create_request::FilterType, watch_request::RequestUnion, watch_server::Watch,
};
use crate::proto::mvccpb::{self, event::EventType};

/// The Watch service.
#[derive(Debug, Clone)]
pub struct WatchService {
    pub stores: Arc<StoreSlot>,
    pub headers: Headers,
    /// Each committed revision's changes, from the apply thread.
    pub events: broadcast::Sender<Arc<Batch>>,
    /// `--watch-progress-notify-interval`.
    pub progress_every: std::time::Duration,
    /// Who may watch what.
    pub auth: crate::apply::perms::Auth,
    /// Streams, watchers, slow watchers and events sent (`etcd_debugging_mvcc_*`).
    pub metrics: Arc<crate::metrics::Metrics>,
}

#[derive(Debug)]
struct Watcher {
    key: Vec<u8>,
    range_end: Vec<u8>,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    /// Asked for periodic progress notifications.
    progress: bool,
    /// The lowest revision this watcher has not seen yet.
    next: i64,
}

impl Watcher {
    fn matches(&self, key: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => key == self.key.as_slice(),
            [0] => key >= self.key.as_slice(),
            end => key >= self.key.as_slice() && key < end,
        }
    }

    fn events(&self, changes: &[mvcc::Change]) -> Vec<mvccpb::Event> {
        changes
            .iter()
            .filter(|c| self.matches(&c.kv.key) && if c.deleted { !self.no_delete } else { !self.no_put })
            .map(|c| mvccpb::Event {
                r#type: if c.deleted { EventType::Delete as i32 } else { EventType::Put as i32 },
                kv: Some(to_pb(c.kv.clone())),
                prev_kv: if self.prev_kv { c.prev.clone().map(to_pb) } else { None },
            })
            .collect()
    }
}

struct Session {
    service: WatchService,
    out: mpsc::Sender<Outgoing>,
    /// The bytes the queue may hold, in KiB permits, each answer holding its own until the stream takes it.
    budget: Arc<Semaphore>,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    /// The highest revision of an event sent on this stream.
    sent: i64,
    /// A RequestProgress waits for its answer (see [`Session::answer_progress`]).
    progress_wanted: bool,
    /// The stream's token and client certificate name, resolved at each create as etcd does (see
    /// `api::auth::caller`).
    token: Option<String>,
    cert_user: Option<String>,
    /// Whether authentication was on, and its revision, when the watchers were last allowed.
    auth_seen: (bool, u64),
    /// The client's queue was full at a delivery: batches are drained undelivered until it reads again, then the
    /// watchers are caught up from history (see the module header).
    behind: bool,
    /// The watchers, and the slow ones, last added to the gauges (see [`Session::report`]).
    reported: (i64, i64),
}

impl Drop for Session {
    fn drop(&mut self) {
        let m = &self.service.metrics;
        m.watch_streams.dec();
        m.watchers.sub(self.reported.0);
        m.slow_watchers.sub(self.reported.1);
    }
}

/// Where catching a watcher up stands after a step.
enum Step {
    /// More history to read.
    More,
    /// Caught up (or the watcher is gone).
    Done,
    /// The stream is gone.
    Gone,
}

/// Answers a stream's queue holds before its session counts the client as not reading.
const OUT: usize = 256;
/// Bytes of answers a stream's queue holds (in KiB permits), likewise.
const QUEUE_KIB: usize = 16 << 10;
/// An answer in a stream's queue, with its share of the queue's bytes.
type Outgoing = (Result<pb::WatchResponse, Status>, Option<OwnedSemaphorePermit>);

/// The queue's bytes an answer takes, in KiB permits (at most the whole queue).
fn cost(r: &pb::WatchResponse) -> u32 {
    (prost::Message::encoded_len(r) / 1024 + 1).min(QUEUE_KIB) as u32
}
/// Revisions in one catch-up response at most (etcd's watchBatchMaxRevs).
const CATCH_UP_REVS: usize = 1000;
/// Bytes of keys and values past which a catch-up response is cut (at a revision's end).
const CATCH_UP_BYTES: usize = 1 << 20;

/// A refusal as etcd words it in a watch's cancel reason: the gRPC error's text.
fn cancel_reason(e: Error) -> String {
    let status = tonic::Status::from(e);
    format!("rpc error: code = {:?} desc = {}", status.code(), status.message())
}

impl Session {
    /// Brings the gauges up to this session's watchers; a session that is behind its client counts all of them
    /// as slow (etcd's unsynced watchers).
    fn report(&mut self) {
        let watchers = self.watchers.len() as i64;
        let slow = if self.behind { watchers } else { 0 };
        let m = &self.service.metrics;
        m.watchers.add(watchers - self.reported.0);
        m.slow_watchers.add(slow - self.reported.1);
        self.reported = (watchers, slow);
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        self.service.headers.at_revision(revision)
    }

    async fn send(&self, r: pb::WatchResponse) -> bool {
        let kib = cost(&r);
        self.send_costed(r, kib).await
    }

    /// Sends `r`, whose cost the caller already knows, taking that many of the queue's permits.
    async fn send_costed(&self, mut r: pb::WatchResponse, kib: u32) -> bool {
        if let Some(failpoint::Fired::Sleep(d)) = crate::failpoints::BEFORE_SEND_WATCH_RESPONSE.eval_deferred() {
            tokio::time::sleep(d).await;
        }
        if !r.events.is_empty() && crate::failpoints::WATCH_DROP_EVENT.eval().is_some() {
            r.events.remove(0);
        }
        self.service.metrics.watch_events.inc_by(r.events.len() as u64);
        let Ok(permit) = Arc::clone(&self.budget).acquire_many_owned(kib).await else { return false };
        self.out.send((Ok(r), Some(permit))).await.is_ok()
    }

    /// Ends the stream with `status`.
    async fn fail(&self, status: Status) {
        let _ = self.out.send((Err(status), None)).await;
    }

    /// Catches every watcher up from history; false if the stream is gone.
    async fn catch_up_all(&mut self) -> bool {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            if !self.catch_up(id).await {
                return false;
            }
        }
        true
    }

    /// Sends history from the watcher's next revision on, a step at a time (see the module header); false if the
    /// stream is gone.
    async fn catch_up(&mut self, id: i64) -> bool {
        loop {
            match self.catch_up_step(id).await {
                Step::More => continue,
                Step::Done => return true,
                Step::Gone => return false,
            }
        }
    }

    /// Reads and sends one step of the watcher's history.
    async fn catch_up_step(&mut self, id: i64) -> Step {
        let Some(w) = self.watchers.get(&id) else { return Step::Done };
        let store = self.service.stores.get();
        let (from, key, end, prev) = (w.next, w.key.clone(), w.range_end.clone(), w.prev_kv);
        let limit = mvcc::HistoryLimit { revisions: CATCH_UP_REVS, bytes: CATCH_UP_BYTES };
        let history = tokio::task::spawn_blocking(move || store.history(from, &key, &end, prev, limit)).await;
        match history {
            Ok(Ok(h)) => {
                let Some(w) = self.watchers.get_mut(&id) else { return Step::Done };
                let mut by_rev: BTreeMap<i64, Vec<mvcc::Change>> = BTreeMap::new();
                for c in h.changes {
                    by_rev.entry(c.kv.mod_revision).or_default().push(c);
                }
                // At most CATCH_UP_REVS revisions (etcd's watchBatchMaxRevs) and about CATCH_UP_BYTES of events per
                // response, a revision never split: a long catch-up stays within what clients decode (4 MiB by
                // default in tonic and grpc-go's server-side defaults).
                let mut chunks: Vec<Vec<mvccpb::Event>> = vec![Vec::new()];
                let (mut revs, mut bytes) = (0, 0);
                for changes in by_rev.values() {
                    let events = w.events(changes);
                    if events.is_empty() {
                        continue;
                    }
                    if revs == CATCH_UP_REVS || bytes > CATCH_UP_BYTES {
                        chunks.push(Vec::new());
                        (revs, bytes) = (0, 0);
                    }
                    revs += 1;
                    bytes += events
                        .iter()
                        .map(|e| e.kv.as_ref().map_or(0, |kv| kv.key.len() + kv.value.len()))
                        .sum::<usize>();
                    if let Some(c) = chunks.last_mut() {
                        c.extend(events);
                    }
                }
                w.next = w.next.max(h.read_to + 1);
                let done = if h.read_to >= h.current { Step::Done } else { Step::More };
                if chunks.iter().all(Vec::is_empty) {
                    return done;
                }
                self.sent = self.sent.max(h.read_to);
                for events in chunks.into_iter().filter(|c| !c.is_empty()) {
                    let header = self.header(h.current);
                    if !self.send(pb::WatchResponse { header, watch_id: id, events, ..Default::default() }).await {
                        return Step::Gone;
                    }
                }
                done
            }
            Ok(Err(mvcc::Error::Compacted)) => {
                self.watchers.remove(&id);
                let compact = self.service.stores.get().compact_revision();
                let header = self.header(self.service.stores.get().current_revision());
                let canceled = pb::WatchResponse {
                    header,
                    watch_id: id,
                    canceled: true,
                    compact_revision: compact,
                    cancel_reason: "etcdserver: mvcc: required revision has been compacted".into(),
                    ..Default::default()
                };
                if self.send(canceled).await { Step::Done } else { Step::Gone }
            }
            Ok(Err(e)) => {
                // The stream ends with the error; the client re-creates its watchers.
                self.fail(Status::internal(e.to_string())).await;
                Step::Gone
            }
            Err(e) => {
                self.fail(Status::internal(e.to_string())).await;
                Step::Gone
            }
        }
    }

    async fn create(&mut self, c: pb::WatchCreateRequest) -> bool {
        // As etcd: a watch on keys the caller may not read all of is refused, with a reason and no id.
        let permitted = self
            .service
            .auth
            .caller(self.token.as_deref(), self.cert_user.as_deref())
            .and_then(|caller| self.service.auth.current().range_permitted(&caller, &c.key, &c.range_end));
        if let Err(e) = permitted {
            let header = self.header(self.service.stores.get().current_revision());
            let reason = cancel_reason(e);
            return self
                .send(pb::WatchResponse {
                    header,
                    watch_id: -1,
                    created: true,
                    canceled: true,
                    cancel_reason: reason,
                    ..Default::default()
                })
                .await;
        }
        let id = if c.watch_id != 0 { c.watch_id } else { self.next_id };
        if self.watchers.contains_key(&id) {
            let header = self.header(self.service.stores.get().current_revision());
            return self
                .send(pb::WatchResponse {
                    header,
                    watch_id: id,
                    created: true,
                    canceled: true,
                    cancel_reason: "etcdserver: duplicate watch ID".into(),
                    ..Default::default()
                })
                .await;
        }
        self.next_id = self.next_id.max(id + 1);
        let current = self.service.stores.get().current_revision();
        let watcher = Watcher {
            no_put: c.filters.contains(&(FilterType::Noput as i32)),
            no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
            prev_kv: c.prev_kv,
            progress: c.progress_notify,
            next: if c.start_revision > 0 { c.start_revision } else { current + 1 },
            key: c.key,
            range_end: c.range_end,
        };
        let in_past = watcher.next <= current;
        self.watchers.insert(id, watcher);
        let header = self.header(current);
        if !self.send(pb::WatchResponse { header, watch_id: id, created: true, ..Default::default() }).await {
            return false;
        }
        if in_past { self.catch_up(id).await } else { true }
    }

    async fn deliver(&mut self, batch: &Batch) -> bool {
        if self.behind {
            return true;
        }
        let mut out = Vec::new();
        for (id, w) in self.watchers.iter() {
            if batch.revision < w.next {
                continue;
            }
            let events = w.events(&batch.changes);
            if !events.is_empty() {
                out.push((*id, events));
            }
        }
        let header = self.service.headers.at(batch.revision, batch.term);
        let answers: Vec<pb::WatchResponse> = out
            .into_iter()
            .map(|(id, events)| pb::WatchResponse { header, watch_id: id, events, ..Default::default() })
            .collect();
        let costs: Vec<u32> = answers.iter().map(cost).collect();
        let kib: usize = costs.iter().map(|&c| c as usize).sum();
        if self.out.capacity() < answers.len() || (kib > self.budget.available_permits() && !answers.is_empty()) {
            // The client is not reading: nothing of this batch is delivered (the watchers stay where they were,
            // to be caught up from history) and the broadcast is no longer held for it.
            self.behind = true;
            return true;
        }
        for w in self.watchers.values_mut() {
            w.next = w.next.max(batch.revision + 1);
        }
        if !answers.is_empty() {
            self.sent = self.sent.max(batch.revision);
        }
        for (answer, kib) in answers.into_iter().zip(costs) {
            if !self.send_costed(answer, kib).await {
                return false;
            }
        }
        true
    }

    /// Tells each watcher that asked for progress notifications the revision it has seen everything up to: an
    /// empty response carrying its id, with that revision in the header.
    async fn notify_progress(&self) -> bool {
        let due: Vec<(i64, i64)> =
            self.watchers.iter().filter(|(_, w)| w.progress).map(|(id, w)| (*id, w.next - 1)).collect();
        if self.behind || self.out.capacity() < due.len() {
            return true; // a client that is not reading gets no notification to pile up
        }
        for (id, revision) in due {
            if !self.send(pb::WatchResponse { header: self.header(revision), watch_id: id, ..Default::default() }).await
            {
                return false;
            }
        }
        true
    }

    /// Answers a pending RequestProgress once every watcher of the stream has been sent everything up to one
    /// revision `R` no lower than any event already sent on the stream (etcd's "all watchers synced"); the answer
    /// (watch id -1) carries `R`, so a client may take every event at or below `R` as delivered. Until then the
    /// request waits: the batches that bring the slower watchers level are already committed and on their way.
    async fn answer_progress(&mut self) -> bool {
        if !self.progress_wanted {
            return true;
        }
        let revision = match self.watchers.values().map(|w| w.next - 1).min() {
            Some(low) if low < self.sent => return true,
            Some(low) => low,
            None => self.service.stores.get().current_revision().max(self.sent),
        };
        self.progress_wanted = false;
        self.send(pb::WatchResponse { header: self.header(revision), watch_id: -1, ..Default::default() }).await
    }

    /// When users, roles or permissions changed since the watchers were allowed, each is checked again and one
    /// whose caller may no longer read all of its range is canceled, with the reason, before anything more is sent
    /// (etcd before 3.7.1 kept delivering: GHSA-xg4h-6gfc-h4m8). False if the stream is gone.
    async fn recheck(&mut self) -> bool {
        let state = self.service.auth.current();
        let seen = (state.enabled(), state.revision());
        if seen == self.auth_seen {
            return true;
        }
        self.auth_seen = seen;
        let caller = self.service.auth.caller(self.token.as_deref(), self.cert_user.as_deref());
        let refused: Vec<(i64, Error)> = self
            .watchers
            .iter()
            .filter_map(|(id, w)| {
                let allowed = match &caller {
                    Ok(c) => state.range_permitted(c, &w.key, &w.range_end),
                    Err(_) => Err(Error::InvalidAuthToken),
                };
                allowed.err().map(|e| (*id, e))
            })
            .collect();
        for (id, e) in refused {
            self.watchers.remove(&id);
            let header = self.header(self.service.stores.get().current_revision());
            let canceled = pb::WatchResponse {
                header,
                watch_id: id,
                canceled: true,
                cancel_reason: cancel_reason(e),
                ..Default::default()
            };
            if !self.send(canceled).await {
                return false;
            }
        }
        true
    }

    async fn run(
        mut self,
        mut inbound: impl Stream<Item = Result<pb::WatchRequest, Status>> + Unpin,
        mut live: broadcast::Receiver<Arc<Batch>>,
    ) {
        let every = self.service.progress_every;
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (out, budget) = (self.out.clone(), Arc::clone(&self.budget));
        // The client has read again: a slot is free, and half the queue's bytes.
        let room = || {
            let (out, budget) = (out.clone(), Arc::clone(&budget));
            async move {
                let Ok(half) = budget.acquire_many_owned(QUEUE_KIB as u32 / 2).await else { return false };
                drop(half);
                out.reserve().await.is_ok()
            }
        };
        loop {
            self.report();
            tokio::select! {
                room = room(), if self.behind => {
                    // The client read again: catch every watcher up from history.
                    if !room {
                        return;
                    }
                    self.behind = false;
                    if !self.catch_up_all().await {
                        return;
                    }
                }
                _ = progress.tick() => {
                    if !self.notify_progress().await {
                        return;
                    }
                }
                msg = inbound.next() => {
                    let req = match msg {
                        Some(Ok(r)) => r,
                        _ => return,
                    };
                    let alive = match req.request_union {
                        Some(RequestUnion::CreateRequest(c)) => self.create(c).await,
                        Some(RequestUnion::CancelRequest(c)) => {
                            self.watchers.remove(&c.watch_id);
                            let header = self.header(self.service.stores.get().current_revision());
                            self.send(pb::WatchResponse { header, watch_id: c.watch_id, canceled: true, ..Default::default() }).await
                        }
                        Some(RequestUnion::ProgressRequest(_)) => {
                            self.progress_wanted = true;
                            true
                        }
                        None => true,
                    };
                    if !alive || !self.answer_progress().await {
                        return;
                    }
                }
                batch = live.recv() => {
                    if !self.recheck().await {
                        return;
                    }
                    let alive = match batch {
                        Ok(b) if !b.resync => self.deliver(&b).await,
                        // Fell behind the broadcast, or the store was replaced by a snapshot: catch every watcher up
                        // from history instead (a session behind its client does so once the client reads).
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) if self.behind => true,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up_all().await,
                        Err(broadcast::error::RecvError::Closed) => false,
                    };
                    if !alive || !self.answer_progress().await {
                        return;
                    }
                }
            }
        }
    }
}

pub type WatchStream =
    std::pin::Pin<Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (metadata, extensions, inbound) = request.into_parts();
        Ok(Response::new(self.open(&metadata, &extensions, inbound)))
    }
}

impl WatchService {
    /// A watch session over `inbound` requests, for the caller `metadata` and `extensions` name (the gRPC call's, or
    /// the JSON gateway's relayed ones); it ends when `inbound` does or the answers are no longer read.
    pub fn open(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        extensions: &tonic::Extensions,
        inbound: impl Stream<Item = Result<pb::WatchRequest, Status>> + Unpin + Send + 'static,
    ) -> WatchStream {
        let (tx, rx) = mpsc::channel::<Outgoing>(OUT);
        let live = self.events.subscribe();
        let token = crate::api::auth::token(metadata).map(str::to_string);
        let cert_user = crate::api::auth::cert_user(metadata, extensions).map(str::to_string);
        let state = self.auth.current();
        let session = Session {
            auth_seen: (state.enabled(), state.revision()),
            token,
            cert_user,
            service: self.clone(),
            out: tx,
            budget: Arc::new(Semaphore::new(QUEUE_KIB)),
            watchers: BTreeMap::new(),
            next_id: 0,
            sent: 0,
            progress_wanted: false,
            behind: false,
            reported: (0, 0),
        };
        self.metrics.watch_streams.inc();
        tokio::spawn(session.run(inbound, live));
        // An answer's permit is released as the stream takes it: past here, HTTP/2's windows bound what waits.
        Box::pin(ReceiverStream::new(rx).map(|(answer, _permit)| answer))
    }
}
