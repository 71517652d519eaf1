//! The etcd API surface: the gRPC services (proto ↔ internal conversion and validation; `status` is the one
//! error → Status mapping), `http` (/metrics, /health), `client_conn` (the HTTP/2 shim in front of every client
//! connection) and `recv_limit` (the gRPC receive limit).

pub mod client_conn;
pub mod cluster;
pub mod http;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod node;
pub mod range_stream;
pub mod recv_limit;
mod status;
pub mod watch;
