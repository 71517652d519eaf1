//! Consensus: the Raft node (`node`: the Ready loop over the WAL), the peer transport, snapshot transfer between
//! members, a member's bootstrap (identity, initial configuration, joining), and `view`: what the services see of
//! the cluster and its leadership.

pub mod bootstrap;
pub mod conf;
pub mod conn;
pub mod discovery;
pub mod force;
pub mod identity;
pub mod leadership;
pub mod log;
pub mod node;
pub mod reads;
pub mod snapshot;
pub mod tls;
pub mod tls_policy;
pub mod transport;
pub mod view;
