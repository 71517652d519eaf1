//! gRPC services: proto ↔ internal conversion and validation only; `status` is the one error → Status mapping.

pub mod cluster;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod range_stream;
pub mod recv_limit;
mod status;
pub mod watch;
