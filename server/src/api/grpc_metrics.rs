//! go-grpc-prometheus's server series for every gRPC call: `grpc_server_started_total` when the call arrives,
//! `grpc_server_handled_total` with its status code when it ends, and `grpc_server_msg_received_total` /
//! `grpc_server_msg_sent_total` per message (see `metrics`). A tower layer in front of the services; requests that
//! are not gRPC (`/metrics`, `/health`) pass uncounted.
//!
//! **When a call ends**: a trailers-only answer (an error before any message) at once; a unary call answered with
//! a message counts as OK then too (its handler succeeded, as go-grpc-prometheus's interceptor sees it); a stream
//! when its body yields its trailers (`grpc-status`). A stream body dropped before its trailers (the client
//! cancelled, or hung up) counts as `Canceled`, as grpc-go counts a cancelled stream.
//!
//! **Messages**: a unary or server-streaming call has received one message when it starts; a unary call answered
//! with a message has sent one. A stream's messages are counted from its bodies' bytes by their gRPC framing
//! ([`Framing`]), so a data frame holding several messages, or part of one, counts right.
//!
//! **Cost**: etcd's methods are known in advance: their series handles are resolved once, when the layer is built
//! (as go-grpc-prometheus registers every method at 0), so a unary call costs a map lookup and four atomic
//! additions, and its bodies are not wrapped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{Bytes, http};

use crate::metrics::Metrics;

/// etcd's gRPC services and their methods.
const METHODS: &[(&str, &[&str])] = &[
    ("etcdserverpb.KV", &["Range", "Put", "DeleteRange", "Txn", "Compact", "RangeStream"]),
    ("etcdserverpb.Watch", &["Watch"]),
    ("etcdserverpb.Lease", &["LeaseGrant", "LeaseRevoke", "LeaseKeepAlive", "LeaseTimeToLive", "LeaseLeases"]),
    ("etcdserverpb.Cluster", &["MemberAdd", "MemberRemove", "MemberUpdate", "MemberList", "MemberPromote"]),
    (
        "etcdserverpb.Maintenance",
        &["Alarm", "Status", "Defragment", "Hash", "HashKV", "Snapshot", "MoveLeader", "Downgrade"],
    ),
    (
        "etcdserverpb.Auth",
        &[
            "AuthEnable",
            "AuthDisable",
            "AuthStatus",
            "Authenticate",
            "UserAdd",
            "UserGet",
            "UserList",
            "UserDelete",
            "UserChangePassword",
            "UserGrantRole",
            "UserRevokeRole",
            "RoleAdd",
            "RoleGet",
            "RoleList",
            "RoleDelete",
            "RoleGrantPermission",
            "RoleRevokePermission",
        ],
    ),
];

/// A known method's labels and resolved series.
#[derive(Debug)]
struct Known {
    call: Call,
    started: prometheus::IntCounter,
    ok: prometheus::IntCounter,
    received: prometheus::IntCounter,
    sent: prometheus::IntCounter,
    /// Under `--metrics=extensive`: how long calls take, from arrival to their end.
    handling: Option<prometheus::Histogram>,
}

impl Known {
    /// The call's series handles, resolved now.
    fn resolve(metrics: &Metrics, call: Call, extensive: bool) -> Known {
        let labels = [call.method.as_str(), call.service.as_str(), call.kind];
        let started = metrics.grpc_started.with_label_values(&labels);
        let received = metrics.grpc_msg_received.with_label_values(&labels);
        let sent = metrics.grpc_msg_sent.with_label_values(&labels);
        let ok = metrics.grpc_handled.with_label_values(&["OK", labels[0], labels[1], labels[2]]);
        let handling = extensive.then(|| metrics.grpc_handling.with_label_values(&labels));
        Known { call, started, ok, received, sent, handling }
    }

    /// Records the call's end with `code`, `since` it arrived.
    fn handled(&self, metrics: &Metrics, code: tonic::Code, since: std::time::Instant) {
        if code == tonic::Code::Ok {
            self.ok.inc();
        } else {
            self.call.handled(metrics, code);
        }
        if let Some(h) = &self.handling {
            h.observe(since.elapsed().as_secs_f64());
        }
    }
}

/// Counts the gRPC messages in a stream of bytes (each framed as a flag byte, a 4-byte big-endian length and the
/// message), whatever the HTTP/2 data frames cut them into.
#[derive(Debug, Default)]
struct Framing {
    /// Bytes of the current message's body still to come.
    skip: usize,
    /// The prefix of the next message's header seen so far.
    header: [u8; 5],
    have: usize,
}

impl Framing {
    /// The number of messages that begin in `data`.
    fn feed(&mut self, mut data: &[u8]) -> u64 {
        let mut messages = 0;
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len());
                (self.skip, data) = (self.skip - n, &data[n..]);
                continue;
            }
            let n = (5 - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            (self.have, data) = (self.have + n, &data[n..]);
            if self.have == 5 {
                messages += 1;
                self.have = 0;
                self.skip =
                    u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]) as usize;
            }
        }
        messages
    }
}

/// Wraps the services with the gRPC series.
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<Metrics>,
    known: Arc<std::collections::HashMap<String, Arc<Known>>>,
    extensive: bool,
}

impl GrpcMetricsLayer {
    /// The layer, with etcd's methods' series resolved (and shown at 0 until called).
    /// `extensive`: `--metrics=extensive` (handling-time histograms too).
    pub fn new(metrics: Arc<Metrics>, extensive: bool) -> Self {
        let mut known = std::collections::HashMap::new();
        for (service, methods) in METHODS {
            for method in *methods {
                let kind = kind(&format!("/{service}/{method}"));
                let call = Call { method: Label::Known(method), service: Label::Known(service), kind };
                // As go-grpc-prometheus: every code's handled series exists from the start, at 0.
                for code in ALL_CODES {
                    metrics.grpc_handled.with_label_values(&[code_name(code), method, service, call.kind]);
                }
                known.insert(format!("/{service}/{method}"), Arc::new(Known::resolve(&metrics, call, extensive)));
            }
        }
        GrpcMetricsLayer { metrics, known: Arc::new(known), extensive }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner, layer: self.clone() }
    }
}

/// The service [`GrpcMetricsLayer`] builds.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    layer: GrpcMetricsLayer,
}

/// A label: one of etcd's names, or a name from an unknown call's path.
#[derive(Debug, Clone)]
enum Label {
    Known(&'static str),
    Other(String),
}

impl Label {
    fn as_str(&self) -> &str {
        match self {
            Label::Known(s) => s,
            Label::Other(s) => s,
        }
    }
}

/// A call's labels: method, service, type.
#[derive(Debug, Clone)]
struct Call {
    method: Label,
    service: Label,
    kind: &'static str,
}

/// The streaming kind of the method at `path` (go-grpc-prometheus's `grpc_type`).
fn kind(path: &str) -> &'static str {
    if crate::api::BIDI_STREAMS.contains(&path) {
        "bidi_stream"
    } else if crate::api::SERVER_STREAMS.contains(&path) {
        "server_stream"
    } else {
        "unary"
    }
}

/// Every status code, in grpc-go's order.
const ALL_CODES: [tonic::Code; 17] = {
    use tonic::Code as C;
    [
        C::Ok,
        C::Cancelled,
        C::Unknown,
        C::InvalidArgument,
        C::DeadlineExceeded,
        C::NotFound,
        C::AlreadyExists,
        C::PermissionDenied,
        C::ResourceExhausted,
        C::FailedPrecondition,
        C::Aborted,
        C::OutOfRange,
        C::Unimplemented,
        C::Internal,
        C::Unavailable,
        C::DataLoss,
        C::Unauthenticated,
    ]
};

/// grpc-go's name of a status code (`codes.Code.String()`).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "Canceled",
        C::Unknown => "Unknown",
        C::InvalidArgument => "InvalidArgument",
        C::DeadlineExceeded => "DeadlineExceeded",
        C::NotFound => "NotFound",
        C::AlreadyExists => "AlreadyExists",
        C::PermissionDenied => "PermissionDenied",
        C::ResourceExhausted => "ResourceExhausted",
        C::FailedPrecondition => "FailedPrecondition",
        C::Aborted => "Aborted",
        C::OutOfRange => "OutOfRange",
        C::Unimplemented => "Unimplemented",
        C::Internal => "Internal",
        C::Unavailable => "Unavailable",
        C::DataLoss => "DataLoss",
        C::Unauthenticated => "Unauthenticated",
    }
}

/// The status code a header map carries, if it has `grpc-status`.
fn status_of(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(tonic::Code::from_i32(value))
}

fn is_grpc(req: &http::Request<Body>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

impl Call {
    /// The labels of a call to a method this layer does not know in advance.
    fn other(path: &str) -> Option<Call> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        Some(Call {
            kind: kind(path),
            method: Label::Other(method.to_string()),
            service: Label::Other(service.to_string()),
        })
    }

    fn handled(&self, m: &Metrics, code: tonic::Code) {
        let labels = [code_name(code), self.method.as_str(), self.service.as_str(), self.kind];
        m.grpc_handled.with_label_values(&labels).inc();
    }
}

impl<S> tower::Service<http::Request<Body>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if !is_grpc(&req) {
            return Box::pin(self.inner.call(req));
        }
        let metrics = Arc::clone(&self.layer.metrics);
        let path = req.uri().path();
        let (extensive, since) = (self.layer.extensive, std::time::Instant::now());
        let Some(k) = self
            .layer
            .known
            .get(path)
            .cloned()
            .or_else(|| Some(Arc::new(Known::resolve(&metrics, Call::other(path)?, extensive))))
        else {
            return Box::pin(self.inner.call(req));
        };
        k.started.inc();
        let version = req.headers().get("client-api-version").and_then(|v| v.to_str().ok());
        metrics.client_request(k.call.kind != "unary", version);
        // A unary or server-streaming call carries one request; a bidirectional stream's are counted as they come.
        let req = if k.call.kind == "bidi_stream" {
            let (parts, body) = req.into_parts();
            let body =
                Body::new(Counted { body, framing: Framing::default(), messages: k.received.clone(), end: None });
            http::Request::from_parts(parts, body)
        } else {
            k.received.inc();
            req
        };
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            if let Some(code) = status_of(response.headers()) {
                k.handled(&metrics, code, since);
                return Ok(response);
            }
            if k.call.kind == "unary" {
                k.sent.inc();
                k.handled(&metrics, tonic::Code::Ok, since);
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            let sent = k.sent.clone();
            let body = Body::new(Counted {
                body,
                framing: Framing::default(),
                messages: sent,
                end: Some((k, metrics, since)),
            });
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

/// A stream body whose gRPC messages are counted; a response's also records its call's end.
struct Counted {
    body: Body,
    framing: Framing,
    messages: prometheus::IntCounter,
    /// The call whose end this body records, and when it arrived (taken when recorded); none for a request's body.
    end: Option<(Arc<Known>, Arc<Metrics>, std::time::Instant)>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        let code = match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = self.framing.feed(data);
                    self.messages.inc_by(n);
                }
                frame.trailers_ref().map(|t| status_of(t).unwrap_or(tonic::Code::Ok))
            }
            Poll::Ready(Some(Err(status))) => Some(status.code()),
            Poll::Ready(None) => Some(tonic::Code::Ok),
            Poll::Pending => None,
        };
        if let Some(code) = code
            && let Some((k, metrics, since)) = self.end.take()
        {
            k.handled(&metrics, code, since);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some((k, metrics, since)) = self.end.take() {
            k.handled(&metrics, tonic::Code::Cancelled, since);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_labels() {
        assert_eq!(kind("/etcdserverpb.Watch/Watch"), "bidi_stream");
        assert_eq!(kind("/etcdserverpb.KV/Put"), "unary");
        assert_eq!(kind("/etcdserverpb.Maintenance/Snapshot"), "server_stream");
        assert_eq!(code_name(tonic::Code::Cancelled), "Canceled");
    }

    #[test]
    fn messages_are_counted_across_frames() {
        let frame = |len: u32| [&[0u8][..], &len.to_be_bytes(), &vec![7u8; len as usize]].concat();
        let stream = [frame(3), frame(0), frame(70_000), frame(1)].concat();
        for cut in [1, 2, 4, 5, 6, 1000, stream.len()] {
            let mut f = Framing::default();
            let n: u64 = stream.chunks(cut).map(|c| f.feed(c)).sum();
            assert_eq!(n, 4, "cut every {cut} bytes");
        }
    }
}
