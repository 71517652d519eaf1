//! go-grpc-prometheus's server series for every gRPC call: `grpc_server_started_total` when the call arrives, and
//! `grpc_server_handled_total` with its status code when it ends (see `metrics`). A tower layer in front of the
//! services; requests that are not gRPC (`/metrics`, `/health`) pass uncounted.
//!
//! **When a call ends**: a trailers-only answer (an error before any message) at once; otherwise when the response
//! body yields its trailers (`grpc-status`). A body dropped before its trailers (the client cancelled, or hung up
//! on a stream) counts as `Canceled`, as grpc-go counts a cancelled stream.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{Bytes, http};

use crate::metrics::Metrics;

/// Wraps the services with the gRPC series.
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    pub metrics: Arc<Metrics>,
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner, metrics: Arc::clone(&self.metrics) }
    }
}

/// The service [`GrpcMetricsLayer`] builds.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

/// A call's labels: method, service, type.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    service: String,
    kind: &'static str,
}

/// The streaming kind of a method of etcd's services (go-grpc-prometheus's `grpc_type`).
fn kind(service: &str, method: &str) -> &'static str {
    match (service, method) {
        ("etcdserverpb.Watch", "Watch") | ("etcdserverpb.Lease", "LeaseKeepAlive") => "bidi_stream",
        ("etcdserverpb.Maintenance", "Snapshot")
        | ("etcdserverpb.KV", "RangeStream")
        | ("v3electionpb.Election", "Observe") => "server_stream",
        _ => "unary",
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

impl Call {
    fn of(req: &http::Request<Body>) -> Option<Call> {
        let grpc = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/grpc"));
        let (service, method) = req.uri().path().strip_prefix('/')?.split_once('/')?;
        grpc.then(|| Call { kind: kind(service, method), method: method.to_string(), service: service.to_string() })
    }

    fn started(&self, m: &Metrics) {
        m.grpc_started.with_label_values(&[self.method.as_str(), &self.service, self.kind]).inc();
    }

    fn handled(&self, m: &Metrics, code: tonic::Code) {
        m.grpc_handled.with_label_values(&[code_name(code), self.method.as_str(), &self.service, self.kind]).inc();
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
        let Some(call) = Call::of(&req) else { return Box::pin(self.inner.call(req)) };
        call.started(&self.metrics);
        let metrics = Arc::clone(&self.metrics);
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            if let Some(code) = status_of(response.headers()) {
                call.handled(&metrics, code);
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
        assert_eq!(kind("etcdserverpb.Watch", "Watch"), "bidi_stream");
        assert_eq!(kind("etcdserverpb.KV", "Put"), "unary");
        assert_eq!(kind("etcdserverpb.Maintenance", "Snapshot"), "server_stream");
        assert_eq!(code_name(tonic::Code::Cancelled), "Canceled");
    }
}
