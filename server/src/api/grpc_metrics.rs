//! go-grpc-prometheus's server series for every gRPC call: `grpc_server_started_total` when the call arrives, and
//! `grpc_server_handled_total` with its status code when it ends (see `metrics`). A tower layer in front of the
//! services; requests that are not gRPC (`/metrics`, `/health`) pass uncounted.
//!
//! **When a call ends**: a trailers-only answer (an error before any message) at once; a unary call answered with
//! a message counts as OK then too (its handler succeeded, as go-grpc-prometheus's interceptor sees it); a stream
//! when its body yields its trailers (`grpc-status`). A stream body dropped before its trailers (the client
//! cancelled, or hung up) counts as `Canceled`, as grpc-go counts a cancelled stream.
//!
//! **Cost**: etcd's methods are known in advance: their series handles are resolved once, when the layer is built
//! (as go-grpc-prometheus registers every method at 0), so a call costs a map lookup and two atomic additions, and
//! a unary call's body is not wrapped.

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
}

/// Wraps the services with the gRPC series.
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    metrics: Arc<Metrics>,
    known: Arc<std::collections::HashMap<String, Arc<Known>>>,
}

impl GrpcMetricsLayer {
    /// The layer, with etcd's methods' series resolved (and shown at 0 until called).
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let mut known = std::collections::HashMap::new();
        for (service, methods) in METHODS {
            for method in *methods {
                let kind = kind(&format!("/{service}/{method}"));
                let call = Call { method: Label::Known(method), service: Label::Known(service), kind };
                let started = metrics.grpc_started.with_label_values(&[*method, service, call.kind]);
                let ok = metrics.grpc_handled.with_label_values(&["OK", method, service, call.kind]);
                known.insert(format!("/{service}/{method}"), Arc::new(Known { call, started, ok }));
            }
        }
        GrpcMetricsLayer { metrics, known: Arc::new(known) }
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

    fn started(&self, m: &Metrics) {
        m.grpc_started.with_label_values(&[self.method.as_str(), self.service.as_str(), self.kind]).inc();
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
        let k = self.layer.known.get(req.uri().path()).cloned();
        let call = k.as_ref().map(|k| k.call.clone()).or_else(|| Call::other(req.uri().path()));
        match (&k, &call) {
            (Some(k), _) => k.started.inc(),
            (None, Some(c)) => c.started(&metrics),
            (None, None) => {}
        }
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            let Some(call) = call else { return Ok(response) };
            if let Some(code) = status_of(response.headers()) {
                call.handled(&metrics, code);
                return Ok(response);
            }
            if call.kind == "unary" {
                match k {
                    Some(k) => k.ok.inc(),
                    None => call.handled(&metrics, tonic::Code::Ok),
                }
                return Ok(response);
            }
            let (parts, body) = response.into_parts();
            let body = Body::new(Counted { body, call: Some(call), metrics });
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

/// A response body that records its call's end.
struct Counted {
    body: Body,
    /// Taken when the end is recorded.
    call: Option<Call>,
    metrics: Arc<Metrics>,
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
            Poll::Ready(Some(Ok(frame))) => frame.trailers_ref().map(|t| status_of(t).unwrap_or(tonic::Code::Ok)),
            Poll::Ready(Some(Err(status))) => Some(status.code()),
            Poll::Ready(None) => Some(tonic::Code::Ok),
            Poll::Pending => None,
        };
        if let Some(code) = code
            && let Some(call) = self.call.take()
        {
            call.handled(&self.metrics, code);
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
        if let Some(call) = self.call.take() {
            call.handled(&self.metrics, tonic::Code::Cancelled);
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
}
