//! The etcd API surface: the gRPC services (KV, Watch, Lease, Cluster, Maintenance, Auth, and Lock and Election over
//! `recipes`, etcd's concurrency recipes run on the server) (validation, then the layers below through narrow handles: a
//! `Proposer` for writes, a `ReadPath` for linearizable reads, the store slot, a `ClusterView`, the lessor),
//! `convert` (the one proto ↔ internal conversion and `header()` builder), `status` (the one error → Status
//! mapping), `http` (/metrics, /health), `tasks` (the member's own requests: publish, lease expiry, hand-over),
//! `gateway` (the v3 API as JSON over HTTP), `corrupt` (etcd's corruption checks), `quota` (`--quota-backend-bytes` and the NOSPACE alarm), `compactor`
//! (etcd's auto compaction), `client_conn` (the HTTP/2 shim in front of every client connection), and the tower
//! layers in front of the services: `recv_limit` (the gRPC receive limit), `grpc_metrics` (the gRPC server series),
//! `require_leader` (etcd's `hasleader` metadata) and `admin_gate` (root-only calls under authentication).

pub mod admin_gate;
pub mod auth;
pub mod client_conn;
pub mod client_tls;
pub mod cluster;
pub mod compactor;
pub mod convert;
pub mod corrupt;
pub mod election;
pub mod failpoint_http;
pub mod gateway;
pub mod grpc_metrics;
pub mod http;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod quota;
pub mod range_stream;
pub mod recipes;
pub mod recv_limit;
pub mod require_leader;
mod status;
pub mod tasks;
pub mod watch;

/// etcd's bidirectional streams: long-lived, and their first message may come at any time (the layers in front of
/// the services treat them apart).
pub const BIDI_STREAMS: [&str; 2] = ["/etcdserverpb.Watch/Watch", "/etcdserverpb.Lease/LeaseKeepAlive"];

/// etcd's server streams (one request, many answers).
pub const SERVER_STREAMS: [&str; 3] =
    ["/etcdserverpb.Maintenance/Snapshot", "/etcdserverpb.KV/RangeStream", "/v3electionpb.Election/Observe"];
