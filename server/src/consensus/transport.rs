//! The peer transport: Raft messages (and lease renewals) between members over plain TCP.
//!
//! Wire format, per connection and direction: a 5-byte preamble, `FKVP` then the transport version (1), which the
//! listener checks before anything else (a peer of another version is refused and logged, never misread); then a
//! stream of frames `u32 length (LE) | u8 kind | body`, the length
//! counting kind and body; a connection only ever carries messages from the dialling member to the listening one.
//! Kinds: `0` a `raft::eraftpb::Message` (protobuf); `1` lease renewals, the body a sequence of lease ids (i64 LE),
//! which a follower forwards to the leader for the keep-alives its clients send (expiry is the leader's business,
//! see `apply::lease`); `2` a chunk of a store image and `3` the `MsgSnapshot` that ends it, on a connection of their
//! own that carries nothing else and is answered with one byte, 1 for a staged image and 0 for a refused one (see
//! `snapshot`); `4` (empty body), a joining member's question, answered with one frame: etcd's
//! `MemberListResponse` (protobuf) whose header carries the cluster id (see `identity::join`); `5` a HashKV question
//! (the revision, i64 LE) from the corruption checks, answered with one frame (see [`hash_kv_answer`]). An
//! unknown kind or a malformed body ends the connection (the dialler redials).
//!
//! Invariants: the Raft loop never blocks on the network. `send` encodes and hands the frame to the peer's
//! writer thread through a bounded queue and drops it when the queue is full or the peer is unreachable; Raft
//! tolerates lost messages (appends and heartbeats are resent; a lost vote costs an election timeout). Each writer
//! thread owns one outgoing connection, redials with a short back-off, and before each batch checks that the peer
//! has not closed it: a restarted peer leaves the old connection half-closed, and the first write into it would
//! vanish (with 5 members, the lost vote responses made leader transfers to a restarted member fail). Received messages go to the Raft thread as
//! `Msg::Step`. A `MsgSnapshot` is not queued: `snapshot::send` streams the store to the peer on a connection of its
//! own, so a large image never holds up Raft's messages.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

use crate::apply::store::StoreSlot;
use crate::consensus::conn::{PeerAddr, PeerConn};
use crate::consensus::node::Msg;
use crate::error::Error;

/// Frame kinds (see the module header).
const RAFT: u8 = 0;
const RENEW: u8 = 1;
pub const SNAP_CHUNK: u8 = 2;
pub const SNAP_END: u8 = 3;
/// A joining member asks for the cluster id and the member list; answered with one frame (see `identity::join`).
pub const MEMBERS: u8 = 4;
/// A member asks for the store's HashKV at a revision (the corruption checks); answered with one frame (see
/// [`hash_kv_answer`]).
pub const HASH_KV: u8 = 5;

/// What every peer connection starts with: the magic, then the transport version.
pub const PREAMBLE: [u8; 5] = *b"FKVP\x01";

/// Asks `addr` one question on a connection of its own: sends `frame`, returns the one frame that answers it
/// (within `timeout`), or what went wrong (a joining member's `MEMBERS`, the corruption checks' `HASH_KV`).
pub fn ask(dialer: &Dialer, addr: &PeerAddr, frame: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
    let mut conn = dialer.dial(addr).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    if !write_frame(&mut conn, frame) || conn.flush().is_err() {
        return Err("the question could not be sent".into());
    }
    let mut buf = Vec::new();
    if !read_frame(&mut BufReader::new(conn), &mut buf) {
        return Err("no answer".into());
    }
    Ok(buf)
}

/// Writes the preamble on a fresh connection.
pub fn hello(conn: &mut impl Write) -> std::io::Result<()> {
    conn.write_all(&PREAMBLE)
}

/// Reads and checks a connection's preamble: `Err` names what the peer sent instead.
pub fn check_hello(r: &mut impl Read) -> Result<(), String> {
    let mut got = [0u8; 5];
    r.read_exact(&mut got).map_err(|e| format!("no preamble: {e}"))?;
    match got {
        PREAMBLE => Ok(()),
        [b'F', b'K', b'V', b'P', v] => Err(format!("transport version {v}, this member speaks {}", PREAMBLE[4])),
        _ => Err("not a ferrokv peer (no FKVP preamble)".into()),
    }
}

/// Frames queued per peer before new ones are dropped.
const QUEUE: usize = 4096;
/// Largest frame accepted from a peer.
const MAX_FRAME: usize = 64 << 20;
const REDIAL: Duration = Duration::from_millis(100);

/// When each peer was last heard from, and since when without a gap: etcd's "active since", which membership
/// changes consult (a change that needs a quorum is refused while members have not been reachable for long).
#[derive(Debug)]
pub struct Activity {
    /// Peer id → (active since, last heard).
    heard: Mutex<HashMap<u64, (Instant, Instant)>>,
    /// A silence longer than this ends an active period.
    gap: Duration,
}

impl Activity {
    pub fn new(gap: Duration) -> Self {
        Activity { heard: Mutex::new(HashMap::new()), gap }
    }

    fn heard(&self, id: u64) {
        let now = Instant::now();
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        let e = heard.entry(id).or_insert((now, now));
        if now.duration_since(e.1) > self.gap {
            e.0 = now;
        }
        e.1 = now;
    }

    /// Since when `id` has been heard from without a gap; `None` if it is not heard from now.
    pub fn active_since(&self, id: u64) -> Option<Instant> {
        let heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        heard.get(&id).filter(|(_, last)| last.elapsed() <= self.gap).map(|(since, _)| *since)
    }
}

/// How outgoing peer connections are made.
#[derive(Debug, Clone)]
pub struct Dialer {
    /// Peer TLS (`consensus::tls`), if on: the member dialled is named by its address.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The source address: the member's own peer address (unless it listens on every address), so a peer, a
    /// firewall or a test's packet filter sees which member a connection comes from.
    pub local: Option<std::net::IpAddr>,
    /// Unacknowledged data older than this drops the connection (`TCP_USER_TIMEOUT`): after a partition heals,
    /// a redial gets through at once, where TCP's retransmission back-off would stay silent for seconds.
    pub user_timeout: Duration,
}

impl Dialer {
    /// A connection to `addr`, dialled within [`REDIAL`].
    pub fn dial(&self, addr: &PeerAddr) -> Result<PeerConn, Error> {
        let mut conn = match addr {
            PeerAddr::Unix(path) => {
                PeerConn::Unix(UnixStream::connect(path).map_err(Error::io(format!("dial {addr}")))?)
            }
            PeerAddr::Tcp(tcp_addr) => {
                let tcp = self.connect(*tcp_addr).map_err(Error::io(format!("dial {addr}")))?;
                match &self.tls {
                    Some(config) => PeerConn::tls_client(tcp, Arc::clone(config), &tcp_addr.ip().to_string())?,
                    None => PeerConn::Plain(tcp),
                }
            }
        };
        hello(&mut conn).and_then(|()| conn.flush()).map_err(Error::io(format!("dial {addr}")))?;
        Ok(conn)
    }

    fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if let Some(ip) = self.local.filter(|ip| ip.is_ipv4() == addr.is_ipv4()) {
            s.bind(&SocketAddr::new(ip, 0).into())?;
        }
        s.set_tcp_user_timeout(Some(self.user_timeout))?;
        s.set_tcp_nodelay(true)?;
        s.connect_timeout(&addr.into(), REDIAL)?;
        Ok(s.into())
    }
}

/// Outgoing queues, one per peer, and what snapshot sending needs.
#[derive(Debug)]
pub struct Transport {
    dialer: Dialer,
    peers: HashMap<u64, SyncSender<Vec<u8>>>,
    addrs: HashMap<u64, PeerAddr>,
    stores: Arc<StoreSlot>,
    raft: crate::consensus::node::RaftQueue,
    /// Peers a snapshot is being sent to.
    sending: Arc<Mutex<HashSet<u64>>>,
    metrics: crate::metrics::PeerMetrics,
    /// Each peer's series (`etcd_network_peer_*`).
    handles: HashMap<u64, crate::metrics::PeerHandles>,
    /// When the last heartbeat went to each peer, until it answers (`etcd_network_peer_round_trip_time_seconds`).
    heartbeats: Mutex<HashMap<u64, std::time::Instant>>,
}

impl Transport {
    /// Starts a writer thread per peer (`id → address`).
    pub fn new(
        dialer: Dialer,
        peers: &HashMap<u64, PeerAddr>,
        stores: Arc<StoreSlot>,
        raft: crate::consensus::node::RaftQueue,
        metrics: crate::metrics::PeerMetrics,
    ) -> Result<Self, Error> {
        let (peers_map, addrs, handles) = (HashMap::new(), HashMap::new(), HashMap::new());
        let sending = Arc::default();
        let heartbeats = Mutex::default();
        let mut t = Transport { dialer, peers: peers_map, addrs, stores, raft, sending, metrics, handles, heartbeats };
        for (&id, addr) in peers {
            t.set_peer(id, addr.clone())?;
        }
        Ok(t)
    }

    /// Sends to `id` at `addr` from now on (a new member, or one whose peer URL changed); nothing if unchanged.
    pub fn set_peer(&mut self, id: u64, addr: PeerAddr) -> Result<(), Error> {
        if self.addrs.get(&id) == Some(&addr) {
            return Ok(());
        }
        let (tx, rx) = sync_channel(QUEUE);
        let dialer = self.dialer.clone();
        let to = addr.clone();
        let handles = self.metrics.peer(id);
        self.handles.insert(id, handles.clone());
        std::thread::Builder::new()
            .name(format!("peer-{id:x}"))
            .spawn(move || writer(dialer, to, rx, handles))
            .map_err(Error::io("start a peer thread"))?;
        // Replacing the queue drops the old one's sender, which ends the old writer.
        self.peers.insert(id, tx);
        self.addrs.insert(id, addr);
        Ok(())
    }

    /// The members messages go to.
    pub fn peer_ids(&self) -> Vec<u64> {
        self.addrs.keys().copied().collect()
    }

    /// Stops sending to `id` (a removed member).
    pub fn remove_peer(&mut self, id: u64) {
        self.peers.remove(&id);
        self.handles.remove(&id);
        self.addrs.remove(&id);
    }

    /// Queues `msgs` for their recipients; never blocks.
    pub fn send(&self, msgs: Vec<Message>) {
        for m in msgs {
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.send_snapshot(m);
                continue;
            }
            let Some(q) = self.peers.get(&m.to) else { continue };
            if m.get_msg_type() == MessageType::MsgHeartbeat {
                self.heartbeats.lock().unwrap_or_else(|p| p.into_inner()).insert(m.to, std::time::Instant::now());
            }
            let mut frame = vec![RAFT];
            if m.write_to_vec(&mut frame).is_err() {
                continue;
            }
            // A full queue or a stopped writer drops the message; Raft resends.
            if q.try_send(frame).is_err()
                && let Some(h) = self.handles.get(&m.to)
            {
                h.sent_failures.inc();
            }
        }
    }

    /// `from` answered a heartbeat: the time since the last one went to it is a round trip (the Raft thread's
    /// queueing on both sides included; etcd probes each peer's HTTP endpoint every 5 s instead).
    pub fn heartbeat_answered(&self, from: u64) {
        let sent = self.heartbeats.lock().unwrap_or_else(|p| p.into_inner()).remove(&from);
        if let Some(sent) = sent {
            self.metrics.round_trip(from, sent.elapsed());
        }
    }

    /// Streams the store to `m.to` on a thread of its own (one at a time per peer); see `snapshot::send`.
    fn send_snapshot(&self, m: Message) {
        let to = m.to;
        let Some(addr) = self.addrs.get(&to).cloned() else { return };
        if !self.sending.lock().unwrap_or_else(|p| p.into_inner()).insert(to) {
            return;
        }
        let (store, raft, sending) = (self.stores.get(), self.raft.clone(), Arc::clone(&self.sending));
        let dialer = self.dialer.clone();
        let transfer = self.metrics.snapshot_send.start(&format!("{to:x}"));
        let spawned = std::thread::Builder::new().name(format!("snap-{to:x}")).spawn(move || {
            let ok = crate::consensus::snapshot::send(&dialer, &addr, m, &store);
            transfer.end(ok);
            sending.lock().unwrap_or_else(|p| p.into_inner()).remove(&to);
            let _ = raft.send(Msg::ReportSnapshot { to, ok });
        });
        if spawned.is_err() {
            self.sending.lock().unwrap_or_else(|p| p.into_inner()).remove(&to);
            let _ = self.raft.send(Msg::ReportSnapshot { to, ok: false });
        }
    }

    /// Queues renewals of `leases` for member `to` (the leader); never blocks. A lost renewal is like a lost
    /// keep-alive: the client sends the next one well before the TTL runs out.
    pub fn renew(&self, to: u64, leases: &[i64]) {
        let Some(q) = self.peers.get(&to) else { return };
        let mut frame = Vec::with_capacity(1 + 8 * leases.len());
        frame.push(RENEW);
        for id in leases {
            frame.extend_from_slice(&id.to_le_bytes());
        }
        let _ = q.try_send(frame);
    }
}

/// A peer's failed dials, logged once per new reason (a peer that stays down is not logged every retry; a
/// successful dial forgets the last reason).
#[derive(Debug, Default)]
struct DialLog {
    last: Option<String>,
}

impl DialLog {
    fn failed(&mut self, addr: &PeerAddr, why: String) {
        if self.last.as_deref() != Some(why.as_str()) {
            crate::logging::log(
                "warn",
                "failed to dial remote peer",
                &[("remote", addr.to_string()), ("error", why.clone())],
            );
            self.last = Some(why);
        }
    }
}

/// Owns the connection to one peer: dials, writes every queued frame, redials after an error.
fn writer(dialer: Dialer, addr: PeerAddr, rx: Receiver<Vec<u8>>, metrics: crate::metrics::PeerHandles) {
    let mut conn: Option<BufWriter<PeerConn>> = None;
    // A connection that ends counts as a disconnection (etcd's `etcd_network_disconnected_peers_total`).
    let lost = |conn: &mut Option<BufWriter<PeerConn>>| {
        if conn.take().is_some() {
            metrics.active.set(0);
            metrics.disconnected.inc();
        }
    };
    let mut dial_log = DialLog::default();
    while let Ok(frame) = rx.recv() {
        // A peer that restarted left our old connection half-closed: the first write to it would still succeed and
        // be lost. A vote response lost that way can cost a whole election, so check before writing.
        if let Some(mut closed) = conn.take_if(|w| !open(w.get_ref().fd())) {
            // Under TLS 1.3 a listener refuses our certificate after our side of the handshake is done: its alert
            // is what is readable. Log it as a failed dial.
            if let Some(why) = closed.get_mut().close_reason() {
                dial_log.failed(&addr, why);
            }
            lost(&mut Some(closed));
        }
        if conn.is_none() {
            match dialer.dial(&addr) {
                Ok(s) => {
                    conn = Some(BufWriter::new(s));
                    metrics.active.set(1);
                    dial_log.last = None;
                }
                Err(e) => {
                    dial_log.failed(&addr, e.to_string());
                    // Unreachable: drop what is queued (Raft resends) and wait a little before the next dial.
                    metrics.sent_failures.inc();
                    std::thread::sleep(REDIAL);
                    while rx.try_recv().is_ok() {
                        metrics.sent_failures.inc();
                    }
                    continue;
                }
            }
        }
        let Some(w) = conn.as_mut() else { continue };
        let mut written = frame.len() + 4;
        let mut ok = write_frame(w, &frame);
        // Write whatever else is already queued, then flush once.
        while ok {
            match rx.try_recv() {
                Ok(f) => {
                    written += f.len() + 4;
                    ok = write_frame(w, &f);
                }
                Err(_) => break,
            }
        }
        if !ok || w.flush().is_err() {
            metrics.sent_failures.inc();
            lost(&mut conn);
        } else {
            metrics.sent_bytes.inc_by(written as u64);
        }
    }
}

/// Whether the peer has not closed or reset `conn`. Peers never write on our connections, so anything readable
/// means the end of it.
fn open(fd: std::os::fd::RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: a non-blocking peek of at most one byte into a live local, on a descriptor the caller's connection
    // owns for the duration of the call.
    let n = unsafe { libc::recv(fd, (&raw mut byte).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    n < 0 && matches!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EAGAIN | libc::EINTR))
}

/// Reads one frame (kind and body) into `buf`; false at the end of the stream, on an error or an oversized frame.
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> bool {
    let mut len = [0u8; 4];
    if r.read_exact(&mut len).is_err() {
        return false;
    }
    let n = u32::from_le_bytes(len) as usize;
    if n > MAX_FRAME {
        return false;
    }
    // Grown as bytes arrive, not to the announced length up front: a peer that announces 64 MiB and sends
    // nothing holds no more than it sent (the peer_frame fuzz target spent its time zeroing such buffers).
    buf.clear();
    matches!(r.take(n as u64).read_to_end(buf), Ok(got) if got == n)
}

pub fn write_frame(w: &mut impl Write, frame: &[u8]) -> bool {
    w.write_all(&(frame.len() as u32).to_le_bytes()).and_then(|()| w.write_all(frame)).is_ok()
}

/// Accepts peer connections on `addr`; every Raft message received is handed to the Raft thread, every lease
/// renewal to the lessor. A unix socket's stale file (from an earlier run) is removed first, as etcd does.
pub fn listen(addr: &PeerAddr, peer: PeerShared) -> Result<(), Error> {
    type Accept = Box<dyn FnMut() -> std::io::Result<(PeerConnRaw, String)> + Send>;
    let mut accept: Accept = match addr {
        PeerAddr::Tcp(a) => {
            let listener = TcpListener::bind(a).map_err(Error::io(format!("listen peer {addr}")))?;
            Box::new(move || {
                let conn = listener.accept()?.0;
                let from = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                Ok((PeerConnRaw::Tcp(conn), from))
            })
        }
        PeerAddr::Unix(path) => {
            crate::consensus::conn::remove_stale_socket(path, &addr.to_string())?;
            let listener = UnixListener::bind(path).map_err(Error::io(format!("listen peer {addr}")))?;
            let from = addr.to_string();
            Box::new(move || Ok((PeerConnRaw::Unix(listener.accept()?.0), from.clone())))
        }
    };
    let mut backoff = crate::accept::Backoff::new(addr.to_string());
    std::thread::Builder::new()
        .name("peer-listen".into())
        .spawn(move || {
            loop {
                let (conn, from) = match accept() {
                    Ok(c) => {
                        backoff.succeeded();
                        c
                    }
                    // Out of descriptors, say: waiting keeps this thread from spinning (see crate::accept).
                    Err(e) => {
                        std::thread::sleep(backoff.failed(&e));
                        continue;
                    }
                };
                let peer = peer.clone();
                let _ = std::thread::Builder::new().name("peer-read".into()).spawn(move || {
                    let conn = match (conn, &peer.tls) {
                        (PeerConnRaw::Unix(u), _) => PeerConn::Unix(u),
                        (PeerConnRaw::Tcp(conn), Some(config)) => {
                            match PeerConn::tls_server(conn, Arc::clone(config)) {
                                Ok(c) => c,
                                Err(e) => {
                                    let fields = [("remote", from), ("error", e.to_string())];
                                    return crate::logging::log("warn", "rejected a peer connection", &fields);
                                }
                            }
                        }
                        (PeerConnRaw::Tcp(conn), None) => PeerConn::Plain(conn),
                    };
                    reader(conn, from, peer)
                });
            }
        })
        .map_err(Error::io("start a peer thread"))?;
    Ok(())
}

/// An accepted connection before its handshake.
enum PeerConnRaw {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// What the peer listener's connections hand their frames to.
#[derive(Debug, Clone)]
pub struct PeerShared {
    pub raft: crate::consensus::node::RaftQueue,
    pub lessor: crate::apply::lease::Leases,
    pub stores: Arc<StoreSlot>,
    pub activity: Arc<Activity>,
    /// Answers a joining member's question (see `identity::join`).
    pub cluster: Arc<crate::apply::membership::Shared>,
    /// Peer TLS (`consensus::tls`), if on.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `etcd_network_peer_*` (received bytes and failures, by the sending member) and the snapshot series.
    pub metrics: crate::metrics::PeerMetrics,
}

/// The answer to a peer's `HASH_KV` frame (the revision, i64 little-endian): `0` then etcd's `HashKvResponse`
/// (the header's revision is the store's current one), or `1` then why not.
pub fn hash_kv_answer(stores: &StoreSlot, body: &[u8]) -> Vec<u8> {
    use prost::Message as _;
    let Ok(rev) = <[u8; 8]>::try_from(body).map(i64::from_le_bytes) else { return b"\x01a malformed request".to_vec() };
    let store = stores.get();
    match crate::backup::export::hash_kv(&store, rev) {
        Ok((hash, hash_revision, compact_revision)) => {
            let header = Some(crate::proto::etcdserverpb::ResponseHeader {
                revision: store.current_revision(),
                ..Default::default()
            });
            let r = crate::proto::etcdserverpb::HashKvResponse { header, hash, compact_revision, hash_revision };
            [&[0u8][..], &r.encode_to_vec()].concat()
        }
        Err(e) => [&[1u8][..], e.to_string().as_bytes()].concat(),
    }
}

/// Reads frames from one peer connection until it closes, is corrupt, or the Raft thread is gone.
fn reader(conn: PeerConn, from: String, peer: PeerShared) {
    let mut r = BufReader::new(conn);
    if let Err(why) = check_hello(&mut r) {
        crate::logging::log("warn", "refused a peer connection", &[("remote", from), ("reason", why)]);
        return;
    }
    let mut buf = Vec::new();
    // The sender's series, once its first Raft message names it (a connection carries one member's frames).
    let mut received: Option<prometheus::IntCounter> = None;
    let mut sender: Option<String> = None;
    loop {
        if !read_frame(&mut r, &mut buf) {
            return;
        }
        if let Some(c) = &received {
            c.inc_by(buf.len() as u64 + 4);
        }
        match parse_frame(&buf) {
            Some(PeerFrame::Raft(m)) => {
                peer.activity.heard(m.from);
                if received.is_none() {
                    let from = format!("{:x}", m.from);
                    let c = peer.metrics.received_bytes.with_label_values(&[&from]);
                    sender = Some(from);
                    c.inc_by(buf.len() as u64 + 4);
                    received = Some(c);
                }
                if peer.raft.send(Msg::Step(m)).is_err() {
                    return;
                }
            }
            Some(PeerFrame::Members) => {
                let answer = crate::consensus::identity::join_answer(&peer.cluster);
                let mut w = BufWriter::new(r.into_inner());
                let _ = write_frame(&mut w, &answer).then(|| w.flush());
                return;
            }
            Some(PeerFrame::HashKv(body)) => {
                let answer = hash_kv_answer(&peer.stores, body);
                let mut w = BufWriter::new(r.into_inner());
                let _ = write_frame(&mut w, &answer).then(|| w.flush());
                return;
            }
            Some(PeerFrame::Renew(ids)) => {
                let mut l = peer.lessor.lock();
                for id in ids {
                    if l.renew(id, std::time::Instant::now()).is_some() {
                        peer.lessor.renewed_by_leader();
                    }
                }
            }
            Some(PeerFrame::SnapChunk(body)) => {
                crate::consensus::snapshot::receive(body.to_vec(), r, &peer.stores, &peer.raft, &peer.metrics);
                return;
            }
            None => {
                // A Raft frame that does not decode ends the connection, as a broken stream ends etcd's.
                if buf.first() == Some(&RAFT) {
                    if let Some(from) = &sender {
                        peer.metrics.received_failures.with_label_values(&[from]).inc();
                    }
                }
                return;
            }
        }
    }
}

/// One frame from a peer, decoded (see [`parse_frame`]).
#[derive(Debug)]
pub enum PeerFrame<'a> {
    Raft(Box<Message>),
    /// A joining member asks for the member list.
    Members,
    /// A HashKV question (the body is the revision).
    HashKv(&'a [u8]),
    /// Lease renewals forwarded by a follower.
    Renew(Vec<i64>),
    /// The first chunk of a snapshot; the rest of the stream follows.
    SnapChunk(&'a [u8]),
}

/// Decodes a frame that [`read_frame`] read: `None` for one this member refuses (a Raft message that does not
/// decode, renewals whose length is not a multiple of 8, an unknown kind), which ends the connection.
pub fn parse_frame(buf: &[u8]) -> Option<PeerFrame<'_>> {
    match buf.split_first()? {
        (&RAFT, body) => Message::parse_from_bytes(body).ok().map(|m| PeerFrame::Raft(Box::new(m))),
        (&MEMBERS, _) => Some(PeerFrame::Members),
        (&HASH_KV, body) => Some(PeerFrame::HashKv(body)),
        (&RENEW, body) if body.len() % 8 == 0 => Some(PeerFrame::Renew(
            body.chunks_exact(8).map(|id| i64::from_le_bytes(id.try_into().unwrap_or([0; 8]))).collect(),
        )),
        (&SNAP_CHUNK, body) => Some(PeerFrame::SnapChunk(body)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_of_another_transport_version_is_refused() {
        let mut wire = Vec::new();
        hello(&mut wire).unwrap();
        assert!(check_hello(&mut &wire[..]).is_ok());
        let newer = *b"FKVP\x02";
        assert_eq!(check_hello(&mut &newer[..]).unwrap_err(), "transport version 2, this member speaks 1");
        // A peer that starts with a frame (no preamble) is refused too; and the preamble read as a frame length
        // is over the limit, so a member without the preamble check refuses a member with it.
        let mut old = Vec::new();
        assert!(write_frame(&mut old, &[RAFT, 1, 2, 3]));
        assert!(check_hello(&mut &old[..]).unwrap_err().contains("not a ferrokv peer"));
        assert!(u32::from_le_bytes(PREAMBLE[..4].try_into().unwrap()) as usize > MAX_FRAME);
    }

    /// A peer that announces a frame of the largest size and sends ten bytes makes the reader hold about ten bytes,
    /// not the announced 64 MiB (before, the buffer was zeroed to the announced length first).
    #[test]
    fn an_announced_frame_takes_memory_only_as_it_arrives() {
        let mut wire = (MAX_FRAME as u32).to_le_bytes().to_vec();
        wire.extend_from_slice(&[RAFT; 10]);
        let mut buf = Vec::new();
        assert!(!read_frame(&mut &wire[..], &mut buf), "a frame cut short is refused");
        assert!(buf.capacity() < 1 << 20, "held {} bytes for 10 received", buf.capacity());
    }

    #[test]
    fn frames_round_trip_and_bad_ones_are_refused() {
        let mut wire = Vec::new();
        assert!(write_frame(&mut wire, &[RAFT, 1, 2, 3]));
        assert!(write_frame(&mut wire, &[MEMBERS]));
        assert_eq!(&wire[..5], &[4, 0, 0, 0, RAFT], "u32 little-endian length of kind and body, then the kind");
        let mut r = &wire[..];
        let mut buf = Vec::new();
        assert!(read_frame(&mut r, &mut buf));
        assert_eq!(buf, [RAFT, 1, 2, 3]);
        assert!(read_frame(&mut r, &mut buf));
        assert_eq!(buf, [MEMBERS]);
        assert!(!read_frame(&mut r, &mut buf), "the stream ended");
        // A frame cut short, and one that claims more than the limit (refused before anything is allocated).
        let mut cut = &wire[..7];
        assert!(!read_frame(&mut cut, &mut buf));
        let huge = ((MAX_FRAME + 1) as u32).to_le_bytes();
        assert!(!read_frame(&mut &huge[..], &mut buf));
        assert!(buf.capacity() < MAX_FRAME);
    }

    #[test]
    fn snapshot_images_travel_in_chunks_that_reassemble() {
        use crate::consensus::snapshot::{CHUNK, FrameWriter};
        let image: Vec<u8> = (0..(2 * CHUNK + CHUNK / 2)).map(|i| (i * 7) as u8).collect();
        let mut w = FrameWriter::new(Vec::new(), SNAP_CHUNK);
        w.write_all(&image).unwrap();
        w.flush().unwrap();
        let wire = w.out;
        let (mut r, mut buf, mut back, mut frames) = (&wire[..], Vec::new(), Vec::new(), 0);
        while read_frame(&mut r, &mut buf) {
            assert_eq!(buf[0], SNAP_CHUNK);
            assert!(buf.len() - 1 <= CHUNK);
            back.extend_from_slice(&buf[1..]);
            frames += 1;
        }
        assert_eq!(frames, 3);
        assert_eq!(back, image);
    }
}
