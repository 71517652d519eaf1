//! The gRPC receive limit (`--max-request-bytes` + 512 KiB), answered as etcd's grpc-go server answers it:
//! `ResourceExhausted`, "grpc: received message larger than max (N vs. M)". Clients match on that code (tonic's
//! own decoder would answer `OutOfRange` with another text).
//!
//! A tower layer in front of the services reads the first gRPC frame's 5-byte prefix (compression flag, then
//! the big-endian message length) of each request and refuses an oversized message before any of it is buffered;
//! otherwise it hands the request on unchanged, the prefix put back in front of the rest of the body. The
//! bidirectional streams (Watch, LeaseKeepAlive) pass straight through: their first message may come at any
//! time, and nothing may wait for it. Tonic's own per-service limit stays as the backstop for them.
//!
//! **Invariant**: a request whose first message is within the limit reaches the service byte for byte.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::BodyExt as _;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{Bytes, http};

/// Bytes of a gRPC frame prefix: one flag byte, then a big-endian u32 length.
const PREFIX_LEN: usize = 5;

/// Wraps the services with the receive limit.
#[derive(Debug, Clone, Copy)]
pub struct RecvLimitLayer {
    /// The largest message accepted, in bytes.
    pub limit: usize,
}

impl<S> tower::Layer<S> for RecvLimitLayer {
    type Service = RecvLimit<S>;

    fn layer(&self, inner: S) -> RecvLimit<S> {
        RecvLimit { inner, limit: self.limit }
    }
}

/// The service [`RecvLimitLayer`] builds.
#[derive(Debug, Clone)]
pub struct RecvLimit<S> {
    inner: S,
    limit: usize,
}

/// The message etcd's grpc-go server gives.
pub fn too_large(len: usize, limit: usize) -> Status {
    Status::resource_exhausted(format!("grpc: received message larger than max ({len} vs. {limit})"))
}

impl<S> tower::Service<http::Request<Body>> for RecvLimit<S>
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
        // Only gRPC bodies are length-prefixed messages; the JSON gateway bounds its bodies itself.
        let grpc = req.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if !grpc || crate::api::BIDI_STREAMS.contains(&req.uri().path()) {
            return Box::pin(self.inner.call(req));
        }
        // The service that was polled ready serves this call; a clone takes its place (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let limit = self.limit;
        Box::pin(async move {
            let (parts, mut body) = req.into_parts();
            let mut head = Vec::with_capacity(PREFIX_LEN);
            let mut tail = Tail::Open;
            while head.len() < PREFIX_LEN {
                match body.frame().await {
                    Some(Ok(frame)) => match frame.into_data() {
                        Ok(data) => head.extend_from_slice(&data),
                        Err(frame) => {
                            tail = Tail::Trailers(frame.into_trailers().ok());
                            break;
                        }
                    },
                    Some(Err(status)) => {
                        tail = Tail::Failed(Some(status));
                        break;
                    }
                    None => {
                        tail = Tail::Trailers(None);
                        break;
                    }
                }
            }
            if let Some(len) = head.get(1..PREFIX_LEN).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
                let len = u32::from_be_bytes(len) as usize;
                if len > limit {
                    return Ok(too_large(len, limit).into_http());
                }
            }
            let body = Body::new(Prefixed { head: Some(Bytes::from(head)), rest: body, tail });
            inner.call(http::Request::from_parts(parts, body)).await
        })
    }
}

/// How the body went on after the bytes already read.
#[derive(Debug)]
enum Tail {
    /// More frames may follow from the body.
    Open,
    /// The body ended (with these trailers, if any).
    Trailers(Option<http::HeaderMap>),
    /// The body failed.
    Failed(Option<Status>),
}

/// The bytes read ahead, then the rest of the body.
struct Prefixed {
    head: Option<Bytes>,
    rest: Body,
    tail: Tail,
}

impl http_body::Body for Prefixed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        if let Some(head) = self.head.take().filter(|h| !h.is_empty()) {
            return Poll::Ready(Some(Ok(http_body::Frame::data(head))));
        }
        match &mut self.tail {
            Tail::Open => Pin::new(&mut self.rest).poll_frame(cx),
            Tail::Trailers(t) => Poll::Ready(t.take().map(|t| Ok(http_body::Frame::trailers(t)))),
            Tail::Failed(e) => Poll::Ready(e.take().map(Err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_message_and_code() {
        let s = too_large(2_097_157, 2_097_152);
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(s.message(), "grpc: received message larger than max (2097157 vs. 2097152)");
    }
}
