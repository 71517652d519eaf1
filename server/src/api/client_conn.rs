//! Client connections as etcd's clients speak on them: a shim under the HTTP/2 server that lets `etcdctl 3.4`
//! through when it sends a whole URL as the `:authority` of its requests.
//!
//! etcdctl 3.4 (grpc-go's `passthrough` resolver) sends the endpoint as given, `http://127.0.0.1:2379`, as the
//! HTTP/2 `:authority` whenever it dials an endpoint itself: with `--endpoints=http://…`, and for every `--cluster`
//! command. etcd's grpc-go server ignores it; our HTTP/2 server (h2) refuses the request as malformed
//! (RST_STREAM, PROTOCOL_ERROR). This shim renames that field, in the bytes the client sends, to a regular header
//! of the same name length (`xauthority`), so h2 sees a request without an authority, which HTTP/2 allows, and
//! nothing of ours reads the authority.
//!
//! **HPACK stays in step.** A dynamic table entry's size is its name length plus its value length plus 32, so an
//! entry named `xauthority` (10 octets, like `:authority`) with the same value takes the same room in h2's table
//! as in the client's: both evict alike, and later requests that refer to the entry by index get the renamed
//! field. Only the representation of the field changes (a literal name instead of static index 1), so the header
//! block grows by 11 octets, and its frames are re-cut (HEADERS plus CONTINUATIONs of at most 16 KiB, padding
//! dropped).
//!
//! On a unix socket (`unix://` client URLs) grpc-go sends the socket's path as `:authority`, which h2 refuses as
//! well: there every literal `:authority` is renamed, URL or not.
//!
//! **Cost.** The first request of a connection decides: if its `:authority` is not a URL (every client but
//! etcdctl's self-dialled connections), or the connection is not HTTP/2 (a /metrics scrape), the shim steps aside
//! and reads go straight to the socket. Only connections that need it have their frames parsed, and only their
//! HEADERS blocks walked.
//!
//! **Writes wait one scheduler pass.** The first write of each flush yields to the runtime once (tokio's
//! `yield_now`, which wakes the connection only after the tasks already queued have run). Without it, each request
//! task that queues a response wakes the connection task into tokio's LIFO slot, so the connection runs right after
//! it and sends that one response in a `writev` of its own; with it, the responses that complete together (an apply
//! batch's) leave in one `writev`, as grpc-go's writer sends whatever is queued when it flushes. The cost is one
//! more poll of the connection per flush.
//!
//! **A PING ACK leaves with the next response.** grpc-go's clients send a PING with their requests (its BDP
//! estimator), and h2 answers each at once, in a `writev` of its own: on loopback that doubled the writes of a put,
//! against etcd's one (docs/performance.md). A write made only of PING ACK frames is held, for at most `PING_HOLD`,
//! and leaves in the same `writev` as the next write; if none comes, a timer wakes the connection and the flush
//! sends it. Nothing else is held: a WINDOW_UPDATE a sending client waits for leaves at once.
//!
//! **Invariants**: bytes other than the HEADERS/CONTINUATION frames of renamed blocks are forwarded unchanged and
//! in order; server-to-client bytes are never touched (only, at times, sent one scheduler pass later, and a PING
//! ACK at most `PING_HOLD` later, always before anything written after it).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::api::client_tls::ClientIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// HTTP/2's default (and h2's) largest frame payload.
const MAX_FRAME: usize = 16_384;
/// The name the field is renamed to: as long as `:authority`.
const RENAMED: &[u8; 10] = b"xauthority";
/// `http://` in HPACK's Huffman code (RFC 7541 appendix B): h 100111, t 01001, t 01001, p 101011, : 1011100,
/// / 011000, / 011000; 41 bits.
const HTTP_HUFFMAN: [(u32, u8); 7] = [(0x27, 6), (0x9, 5), (0x9, 5), (0x2b, 6), (0x5c, 7), (0x18, 6), (0x18, 6)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Waiting for the first request's headers.
    Inspect,
    /// Renaming every literal `:authority` of this connection.
    Rename,
    /// Out of the way.
    Pass,
}

/// A client connection with the shim (see the module header).
#[derive(Debug)]
pub struct ClientConn {
    inner: ClientIo,
    mode: Mode,
    /// Bytes read from the socket and not yet parsed.
    raw: Vec<u8>,
    /// Whether the connection preface has been checked.
    preface_seen: bool,
    /// Parsed bytes ready for the HTTP/2 server, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    /// A header block being gathered: the HEADERS frame's flags and priority fields, and the fragments so far.
    block: Option<(u8, u32, Vec<u8>, Vec<u8>)>,
    /// Rename every literal `:authority`, not only URLs (a unix socket's connections).
    any_authority: bool,
    /// This flush's writes have yielded once (see the module header); cleared when a flush completes.
    write_yielded: bool,
    /// Bytes read and written (`etcd_network_client_grpc_{received,sent}_bytes_total`).
    bytes: Option<ClientBytes>,
    /// PING ACK frames accepted from the server and not yet written (see the module header), and when they must
    /// leave at the latest (kept once armed, see `hold_timer`; it means nothing while none is held).
    held: Vec<u8>,
    hold_until: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How long a PING ACK waits for a response to leave with.
const PING_HOLD: std::time::Duration = std::time::Duration::from_millis(10);

/// The bytes of `bufs` if they are nothing but whole PING ACK frames (type 6, flag ACK, 8 octets of payload).
fn only_ping_acks(bufs: &[io::IoSlice<'_>]) -> Option<Vec<u8>> {
    let total: usize = bufs.iter().map(|b| b.len()).sum();
    if total == 0 || total % 17 != 0 || total > 4 * 17 {
        return None;
    }
    let bytes: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
    let acks = bytes.chunks(17).all(|f| f[..3] == [0, 0, 8] && f[3] == 6 && f[4] & 1 == 1);
    acks.then_some(bytes)
}

impl ClientConn {
    /// Wraps an accepted connection. Nagle's algorithm is switched off, as Go's servers do by default: a small
    /// response held back until the client's delayed ACK (40 ms) arrives would stall every request behind it.
    /// Counts the connection's bytes on `bytes`.
    pub fn counting(mut self, bytes: Option<ClientBytes>) -> Self {
        self.bytes = bytes;
        self
    }

    fn received(&self, n: usize) {
        if let Some(b) = &self.bytes {
            b.received.inc_by(n as u64);
        }
    }

    fn sent(&self, written: &Poll<io::Result<usize>>) {
        if let (Some(b), Poll::Ready(Ok(n))) = (&self.bytes, written) {
            b.sent.inc_by(*n as u64);
        }
    }

    pub fn new(inner: ClientIo) -> Self {
        if let Some(tcp) = inner.tcp() {
            let _ = tcp.set_nodelay(true);
        }
        ClientConn {
            any_authority: matches!(inner, ClientIo::Unix(_)),
            inner,
            mode: Mode::Inspect,
            raw: Vec::new(),
            preface_seen: false,
            out: Vec::new(),
            out_at: 0,
            block: None,
            write_yielded: false,
            bytes: None,
            held: Vec::new(),
            hold_until: None,
        }
    }

    /// Writes `bufs`, after the held PING ACKs if there are any, in one `writev` (see the module header).
    fn write_slices(&mut self, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        std::task::ready!(self.yield_before_write(cx));
        if let Some(acks) = only_ping_acks(bufs).filter(|a| self.held.len() + a.len() <= 8 * 17) {
            if self.held.is_empty() {
                self.hold_timer();
            }
            self.held.extend_from_slice(&acks);
            return Poll::Ready(Ok(acks.len()));
        }
        while !self.held.is_empty() {
            let before = self.held.len();
            let mut slices = Vec::with_capacity(bufs.len() + 1);
            slices.push(io::IoSlice::new(&self.held));
            slices.extend(bufs.iter().map(|b| io::IoSlice::new(b)));
            let written = Pin::new(&mut self.inner).poll_write_vectored(cx, &slices);
            self.sent(&written);
            match written {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) if n >= before => {
                    self.held.clear();
                    if n > before {
                        return Poll::Ready(Ok(n - before));
                    }
                }
                Poll::Ready(Ok(n)) => drop(self.held.drain(..n)),
                other => return other,
            }
        }
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.sent(&written);
        written
    }

    /// Writes the held PING ACKs out if `now` or their time is up; `Ready` once none is held or they wait.
    fn release_held(&mut self, cx: &mut Context<'_>, now: bool) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            let due = now || self.hold_until.as_mut().is_none_or(|t| t.as_mut().poll(cx).is_ready());
            if !due {
                return Poll::Ready(Ok(()));
            }
            let written = Pin::new(&mut self.inner).poll_write(cx, &self.held);
            self.sent(&written);
            match std::task::ready!(written) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => drop(self.held.drain(..n)),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Arms the hold timer for PING ACKs just held: at most `PING_HOLD` from now. The connection keeps one timer:
    /// a deadline still ahead is kept (the ACKs then leave sooner), and only a passed one is moved. Registering a
    /// new timer, or moving one earlier than the runtime's next wake-up, wakes the runtime's I/O driver (a write to
    /// its eventfd, and a parked worker woken for nothing); with a put every half millisecond on a connection
    /// that was once a wake-up per put, now at most one per `PING_HOLD`.
    fn hold_timer(&mut self) {
        let now = tokio::time::Instant::now();
        match &mut self.hold_until {
            Some(t) if t.deadline() > now => {}
            Some(t) => t.as_mut().reset(now + PING_HOLD),
            None => self.hold_until = Some(Box::pin(tokio::time::sleep(PING_HOLD))),
        }
    }

    /// `Pending` once per flush, with the connection's wake deferred until the runtime has run what is queued
    /// (see the module header); `Ready` after that.
    fn yield_before_write(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.write_yielded {
            return Poll::Ready(());
        }
        self.write_yielded = true;
        std::future::Future::poll(std::pin::pin!(tokio::task::yield_now()), cx)
    }

    /// Moves every complete frame of `raw` to `out`, renaming as the mode says.
    fn process(&mut self) {
        if !self.preface_seen {
            if self.raw.len() < PREFACE.len() && PREFACE.starts_with(&self.raw) {
                return;
            }
            self.preface_seen = true;
            if !self.raw.starts_with(PREFACE) {
                self.mode = Mode::Pass;
                self.out.append(&mut self.raw);
                return;
            }
            self.out.extend_from_slice(PREFACE);
            self.raw.drain(..PREFACE.len());
        }
        let mut at = 0;
        while self.mode != Mode::Pass && self.raw.len() - at >= FRAME_HEADER_LEN {
            let h = &self.raw[at..at + FRAME_HEADER_LEN];
            let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
            if self.raw.len() - at < FRAME_HEADER_LEN + len {
                break;
            }
            let (kind, flags) = (h[3], h[4]);
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let frame = at..at + FRAME_HEADER_LEN + len;
            let payload = &self.raw[at + FRAME_HEADER_LEN..frame.end];
            match (kind, self.block.as_mut()) {
                (HEADERS, None) => match split_headers(flags, payload) {
                    Some((priority, fragment)) => {
                        let block = (flags, stream, priority.to_vec(), fragment.to_vec());
                        if flags & END_HEADERS != 0 {
                            self.finish_block(block);
                        } else {
                            self.block = Some(block);
                        }
                    }
                    None => self.out.extend_from_slice(&self.raw[frame.clone()]),
                },
                (CONTINUATION, Some(block)) => {
                    block.3.extend_from_slice(payload);
                    if flags & END_HEADERS != 0 {
                        let block = self.block.take().unwrap_or_default();
                        self.finish_block(block);
                    }
                }
                // Anything else (or a malformed sequence, which the HTTP/2 server rejects) goes through as is.
                _ => self.out.extend_from_slice(&self.raw[frame.clone()]),
            }
            at = frame.end;
        }
        self.raw.drain(..at);
        if self.mode == Mode::Pass {
            self.out.append(&mut self.raw);
        }
    }

    /// Emits a complete header block, renamed if this connection needs it.
    fn finish_block(&mut self, (flags, stream, priority, fragment): (u8, u32, Vec<u8>, Vec<u8>)) {
        let renamed = match self.mode {
            Mode::Pass => None,
            Mode::Inspect | Mode::Rename => {
                rename_authority(&fragment, self.mode == Mode::Inspect && !self.any_authority)
            }
        };
        match renamed {
            Some(block) => {
                self.mode = Mode::Rename;
                emit_block(&mut self.out, flags, stream, &priority, &block);
            }
            None => {
                if self.mode == Mode::Inspect {
                    self.mode = Mode::Pass;
                }
                emit_block(&mut self.out, flags, stream, &priority, &fragment);
            }
        }
    }
}

/// A HEADERS payload's priority fields and header block fragment (padding removed); `None` if malformed.
fn split_headers(flags: u8, payload: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut p = payload;
    let mut pad = 0;
    if flags & PADDED != 0 {
        pad = usize::from(*p.first()?);
        p = &p[1..];
    }
    let priority_len = if flags & PRIORITY != 0 { 5 } else { 0 };
    if p.len() < priority_len + pad {
        return None;
    }
    Some((&p[..priority_len], &p[priority_len..p.len() - pad]))
}

/// Writes a header block as a HEADERS frame and as many CONTINUATION frames as it needs.
fn emit_block(out: &mut Vec<u8>, flags: u8, stream: u32, priority: &[u8], block: &[u8]) {
    let keep = flags & !(PADDED | END_HEADERS);
    let first = block.len().min(MAX_FRAME - priority.len());
    let mut chunks = vec![&block[..first]];
    chunks.extend(block[first..].chunks(MAX_FRAME));
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let (kind, mut f, pri) = if i == 0 { (HEADERS, keep, priority) } else { (CONTINUATION, 0, &[][..]) };
        if last {
            f |= END_HEADERS;
        }
        let len = pri.len() + chunk.len();
        out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, f]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(pri);
        out.extend_from_slice(chunk);
    }
}

/// Reads an HPACK integer with an `n`-bit prefix at `*at`.
fn int(b: &[u8], at: &mut usize, n: u8) -> Option<usize> {
    let mask = (1usize << n) - 1;
    let mut v = usize::from(*b.get(*at)?) & mask;
    *at += 1;
    if v < mask {
        return Some(v);
    }
    let mut shift = 0;
    loop {
        let byte = *b.get(*at)?;
        *at += 1;
        v = v.checked_add(usize::from(byte & 0x7f).checked_shl(shift)?)?;
        if byte & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// Skips an HPACK string at `*at`; its (Huffman flag, bytes) range.
fn string(b: &[u8], at: &mut usize) -> Option<(bool, std::ops::Range<usize>)> {
    let huffman = *b.get(*at)? & 0x80 != 0;
    let len = int(b, at, 7)?;
    let r = *at..at.checked_add(len)?;
    if r.end > b.len() {
        return None;
    }
    *at = r.end;
    Some((huffman, r))
}

/// Whether an HPACK string value starts with `http://`.
fn is_url(huffman: bool, v: &[u8]) -> bool {
    if !huffman {
        return v.starts_with(b"http://");
    }
    let mut bit = 0usize;
    HTTP_HUFFMAN.iter().all(|&(code, n)| {
        (0..n).all(|i| {
            let want = (code >> (n - 1 - i)) & 1;
            let (byte, off) = (bit / 8, 7 - bit % 8);
            bit += 1;
            v.get(byte).is_some_and(|b| u32::from(b >> off) & 1 == want)
        })
    })
}

/// The header block with its literal `:authority` fields renamed (see the module header); `None` if there is
/// nothing to rename, if `only_urls` and the authority is not a URL, if a pseudo-header follows it (h2 would
/// refuse a regular header before it), or if the block does not parse.
fn rename_authority(b: &[u8], only_urls: bool) -> Option<Vec<u8>> {
    // (start of the field, length of its representation byte(s) with the name index, representation pattern)
    let mut found: Vec<(usize, usize, u8)> = Vec::new();
    let mut at = 0;
    let mut after_authority_pseudo = false;
    while at < b.len() {
        let start = at;
        let first = b[at];
        let (prefix, pattern) = match first {
            f if f & 0x80 != 0 => {
                let index = int(b, &mut at, 7)?;
                // Static entries 1..=14 are pseudo-headers (:authority, :method, :path, :scheme, :status).
                if !found.is_empty() && (2..=14).contains(&index) {
                    after_authority_pseudo = true;
                }
                continue;
            }
            f if f & 0xe0 == 0x20 => {
                int(b, &mut at, 5)?;
                continue;
            }
            f if f & 0xc0 == 0x40 => (6, 0x40),
            f => (4, f & 0xf0),
        };
        let name = int(b, &mut at, prefix)?;
        let name_end = at;
        if name == 0 {
            let (_, r) = string(b, &mut at)?;
            if b[r].starts_with(b":") && !found.is_empty() {
                after_authority_pseudo = true;
            }
        } else if !found.is_empty() && (2..=14).contains(&name) {
            after_authority_pseudo = true;
        }
        let (huffman, v) = string(b, &mut at)?;
        if name == 1 && (!only_urls || is_url(huffman, &b[v])) {
            found.push((start, name_end - start, pattern));
        }
    }
    if found.is_empty() || after_authority_pseudo {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() + 11 * found.len());
    let mut copied = 0;
    for (start, name_len, pattern) in found {
        out.extend_from_slice(&b[copied..start]);
        // The same representation with a literal name (index 0), then the name, then the original value.
        out.push(pattern);
        out.push(RENAMED.len() as u8);
        out.extend_from_slice(RENAMED);
        copied = start + name_len;
    }
    out.extend_from_slice(&b[copied..]);
    Some(out)
}

impl AsyncRead for ClientConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_at < this.out.len() {
                let n = (this.out.len() - this.out_at).min(buf.remaining());
                buf.put_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                if this.out_at == this.out.len() {
                    this.out.clear();
                    this.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.mode == Mode::Pass {
                let before = buf.filled().len();
                let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
                this.received(buf.filled().len() - before);
                return polled;
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    // End of stream: hand over whatever is left unparsed; the server sees the same truncation.
                    this.out.append(&mut this.raw);
                    if this.out.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    this.mode = Mode::Pass;
                }
                Poll::Ready(Ok(())) => {
                    this.received(rb.filled().len());
                    this.raw.extend_from_slice(rb.filled());
                    this.process();
                }
                other => return other,
            }
        }
    }
}

impl AsyncWrite for ClientConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.write_slices(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.release_held(cx, false))?;
        std::task::ready!(Pin::new(&mut self.inner).poll_flush(cx))?;
        self.write_yielded = false;
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.release_held(cx, true))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.write_slices(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The counters of client connections' bytes (all of a listener's connections share them).
#[derive(Debug, Clone)]
pub struct ClientBytes {
    pub received: prometheus::IntCounter,
    pub sent: prometheus::IntCounter,
}

/// What every request of a client connection carries in its extensions: the addresses, and the common name of the
/// client's TLS certificate (the user `--client-cert-auth` authenticates as; see `api::auth::caller`).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub tcp: tonic::transport::server::TcpConnectInfo,
    pub common_name: Option<String>,
}

impl tonic::transport::server::Connected for ClientConn {
    type ConnectInfo = ClientInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        let tcp = match self.inner.tcp() {
            Some(tcp) => tcp.connect_info(),
            None => tonic::transport::server::TcpConnectInfo { local_addr: None, remote_addr: None },
        };
        ClientInfo { tcp, common_name: self.inner.common_name() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A literal with incremental indexing of `:authority` (static index 1), its value plain.
    fn authority_literal(v: &[u8]) -> Vec<u8> {
        let mut b = vec![0x41, v.len() as u8];
        b.extend_from_slice(v);
        b
    }

    #[test]
    fn renames_a_url_authority_keeping_the_value_and_the_name_length() {
        // :method POST (static 3), :scheme http (6), :path literal, :authority literal, then te: trailers.
        let mut block = vec![0x83, 0x86, 0x44, 0x02, b'/', b'x'];
        block.extend(authority_literal(b"http://127.0.0.1:2379"));
        block.extend_from_slice(&[0x40, 0x02, b't', b'e', 0x08, b't', b'r', b'a', b'i', b'l', b'e', b'r', b's']);
        let out = rename_authority(&block, true).expect("renamed");
        assert_eq!(out.len(), block.len() + 11);
        let at = out.windows(RENAMED.len()).position(|w| w == RENAMED).expect("new name");
        assert_eq!(out[at - 2..at], [0x40, 10], "literal with indexing, literal name");
        assert_eq!(&out[at + 10..at + 11 + 21], b"\x15http://127.0.0.1:2379");
        assert_eq!(RENAMED.len(), b":authority".len(), "the dynamic table entry keeps its size");
    }

    #[test]
    fn leaves_host_authorities_and_misordered_blocks_alone() {
        let mut block = vec![0x83, 0x86];
        block.extend(authority_literal(b"127.0.0.1:2379"));
        assert_eq!(rename_authority(&block, true), None);
        // A pseudo-header (:path, static 4) after the authority: renaming would make h2 refuse the block.
        let mut block = authority_literal(b"http://a:1");
        block.push(0x84);
        assert_eq!(rename_authority(&block, true), None);
        assert_eq!(rename_authority(&[0x41, 0x7f], true), None, "a string running past the block");
    }

    #[test]
    fn recognises_http_in_huffman_code() {
        // "http://" is 41 bits: 10011101 00101001 10101110 11100011 00001100 0 (then the rest of the string).
        let v = [0b1001_1101, 0b0010_1001, 0b1010_1110, 0b1110_0011, 0b0000_1100, 0b0111_1111];
        assert!(is_url(true, &v));
        let mut w = v;
        w[4] ^= 0x08;
        assert!(!is_url(true, &w));
        assert!(!is_url(true, &v[..4]));
    }

    #[test]
    fn re_cuts_large_blocks_into_continuations() {
        let mut out = Vec::new();
        let block = vec![0u8; MAX_FRAME + 100];
        emit_block(&mut out, PADDED | 0x1, 3, &[], &block);
        assert_eq!(out[3..5], [HEADERS, 0x1], "padding dropped, END_STREAM kept, END_HEADERS not yet");
        let second = FRAME_HEADER_LEN + MAX_FRAME;
        assert_eq!(out[second + 3..second + 5], [CONTINUATION, END_HEADERS]);
        assert_eq!(out.len(), 2 * FRAME_HEADER_LEN + block.len());
    }
}
