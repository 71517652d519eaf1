//! etcd's `hasleader` gRPC metadata (clientv3's `WithRequireLeader`, which kube-apiserver sets on its watches): a
//! call that carries `hasleader: true` is refused with "etcdserver: no leader" (Unavailable) while the member knows
//! no leader; and a stream that carries it is ended with that status once the member has been without a leader
//! for three election timeouts (etcd's monitorLeader), so the client moves to a member that has one.
//!
//! A tower layer in front of the services; calls without the metadata pass untouched.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll};
use std::time::Duration;

use tonic::body::Body;
use tonic::codegen::{Bytes, http};

use crate::consensus::node::RaftStatus;
use crate::error::Error;

/// Election timeouts without a leader after which a stream that requires one ends (etcd's `maxNoLeaderCnt`).
const NO_LEADER_CHECKS: u32 = 3;

/// Wraps the services with the leader requirement.
#[derive(Debug, Clone)]
pub struct RequireLeaderLayer {
    pub status: Arc<RaftStatus>,
    pub election: Duration,
}

impl<S> tower::Layer<S> for RequireLeaderLayer {
    type Service = RequireLeader<S>;

    fn layer(&self, inner: S) -> RequireLeader<S> {
        RequireLeader { inner, layer: self.clone() }
    }
}

/// The service [`RequireLeaderLayer`] builds.
#[derive(Debug, Clone)]
pub struct RequireLeader<S> {
    inner: S,
    layer: RequireLeaderLayer,
}

fn requires_leader(req: &http::Request<Body>) -> bool {
    req.headers().get("hasleader").is_some_and(|v| v.as_bytes() == b"true")
}

impl<S> tower::Service<http::Request<Body>> for RequireLeader<S>
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
        if !requires_leader(&req) {
            return Box::pin(self.inner.call(req));
        }
        let status = Arc::clone(&self.layer.status);
        if status.leader.load(Relaxed) == 0 {
            return Box::pin(async { Ok(tonic::Status::from(Error::NoLeader).into_http()) });
        }
        let election = self.layer.election;
        // The long-lived streams end when the leader is gone.
        let stream = crate::api::BIDI_STREAMS.contains(&req.uri().path());
        let response = self.inner.call(req);
        if !stream {
            return Box::pin(response);
        }
        Box::pin(async move {
            let (parts, body) = response.await?.into_parts();
            let mut check = tokio::time::interval(election);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let body = Body::new(Watched { body, status, check, without: 0, ended: false });
            Ok(http::Response::from_parts(parts, body))
        })
    }
}

/// A response body that ends with "no leader" once the member has been without one for too long.
struct Watched {
    body: Body,
    status: Arc<RaftStatus>,
    check: tokio::time::Interval,
    /// Consecutive checks that found no leader.
    without: u32,
    ended: bool,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, tonic::Status>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        while self.check.poll_tick(cx).is_ready() {
            if self.status.leader.load(Relaxed) != 0 {
                self.without = 0;
                continue;
            }
            self.without += 1;
            if self.without >= NO_LEADER_CHECKS {
                self.ended = true;
                // grpc-message needs no escaping: etcd's text is printable ASCII.
                let mut trailers = http::HeaderMap::new();
                trailers.insert("grpc-status", http::HeaderValue::from(tonic::Code::Unavailable as i32));
                trailers.insert("grpc-message", http::HeaderValue::from_static("etcdserver: no leader"));
                return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
            }
        }
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.body.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_ends_with_the_error_unary_calls_get() {
        assert_eq!(Error::NoLeader.to_string(), "etcdserver: no leader");
        assert_eq!(tonic::Status::from(Error::NoLeader).code(), tonic::Code::Unavailable);
    }
}
