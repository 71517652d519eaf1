//! With authentication enabled, the calls only `root` may make, refused in front of the services: etcd 3.4's
//! admin calls (Defragment, Snapshot, Hash, HashKV; MemberAdd, MemberRemove, MemberUpdate, MemberPromote), and
//! MoveLeader and Downgrade, which change the cluster too. Deny by default: a method this layer does not know as
//! one whose service checks permissions itself (KV, Watch, Lease, Auth, and Lock and Election, whose every read
//! and write is a KV request under the caller's credentials) or as open to every caller (Status, Alarm,
//! MemberList, Authenticate) needs `root` as well, so nothing added later is open by omission.
//!
//! A tower layer; with authentication off every call passes untouched.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;

use crate::apply::perms::Auth;

/// Services whose every method checks the caller's permissions itself.
const CHECKED_SERVICES: [&str; 6] = [
    "/etcdserverpb.KV/",
    "/etcdserverpb.Watch/",
    "/etcdserverpb.Lease/",
    "/etcdserverpb.Auth/",
    "/v3lockpb.Lock/",
    "/v3electionpb.Election/",
];

/// Methods open to every caller, as in etcd 3.4.
const OPEN: [&str; 3] =
    ["/etcdserverpb.Maintenance/Status", "/etcdserverpb.Maintenance/Alarm", "/etcdserverpb.Cluster/MemberList"];

/// Whether a call to `path` needs the role root when authentication is on.
pub fn admin_only(path: &str) -> bool {
    !CHECKED_SERVICES.iter().any(|s| path.starts_with(s)) && !OPEN.contains(&path)
}

/// Refuses a call to `path` that only root may make when authentication is on and the caller (named by `md` and
/// `extensions`) is not root; every other call passes. The layer below and the JSON gateway both check with it.
pub fn check(
    auth: &Auth,
    md: &tonic::metadata::MetadataMap,
    extensions: &tonic::Extensions,
    path: &str,
) -> Result<(), crate::error::Error> {
    if !auth.current().enabled() || !admin_only(path) {
        return Ok(());
    }
    crate::api::auth::caller_of(auth, md, extensions).and_then(|caller| auth.current().admin_permitted(&caller))
}

/// Wraps the services with the admin check.
#[derive(Debug, Clone)]
pub struct AdminGateLayer {
    pub auth: Auth,
}

impl<S> tower::Layer<S> for AdminGateLayer {
    type Service = AdminGate<S>;

    fn layer(&self, inner: S) -> AdminGate<S> {
        AdminGate { inner, auth: self.auth.clone() }
    }
}

/// The service [`AdminGateLayer`] builds.
#[derive(Debug, Clone)]
pub struct AdminGate<S> {
    inner: S,
    auth: Auth,
}

impl<S> tower::Service<http::Request<Body>> for AdminGate<S>
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
        // Only gRPC calls: /metrics and /health stay open, as etcd's are.
        let grpc = req.headers().get("content-type").is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if !grpc || !self.auth.current().enabled() || !admin_only(req.uri().path()) {
            return Box::pin(self.inner.call(req));
        }
        let metadata = tonic::metadata::MetadataMap::from_headers(req.headers().clone());
        match check(&self.auth, &metadata, req.extensions(), req.uri().path()) {
            Ok(()) => Box::pin(self.inner.call(req)),
            Err(e) => Box::pin(async move { Ok(tonic::Status::from(e).into_http()) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::admin_only;

    #[test]
    fn unknown_methods_need_root() {
        for path in [
            "/etcdserverpb.Maintenance/Defragment",
            "/etcdserverpb.Maintenance/Snapshot",
            "/etcdserverpb.Maintenance/HashKV",
            "/etcdserverpb.Maintenance/MoveLeader",
            "/etcdserverpb.Cluster/MemberAdd",
            "/etcdserverpb.Cluster/MemberRemove",
            "/something.New/Method",
        ] {
            assert!(admin_only(path), "{path}");
        }
        for path in [
            "/etcdserverpb.KV/Range",
            "/etcdserverpb.Watch/Watch",
            "/etcdserverpb.Lease/LeaseGrant",
            "/etcdserverpb.Auth/Authenticate",
            "/etcdserverpb.Maintenance/Status",
            "/etcdserverpb.Cluster/MemberList",
            "/v3lockpb.Lock/Lock",
            "/v3electionpb.Election/Campaign",
        ] {
            assert!(!admin_only(path), "{path}");
        }
    }
}
