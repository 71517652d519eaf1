//! Consensus: the Raft node (`node`: the Ready loop over the WAL), the peer transport, snapshot transfer between
//! members, and a member's bootstrap (identity, initial configuration, joining).

pub mod bootstrap;
pub mod identity;
pub mod leadership;
pub mod node;
pub mod reads;
pub mod snapshot;
pub mod transport;
