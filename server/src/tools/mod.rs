//! The operator tools that ship in the `ferrokv` binary: `bench` (etcd's benchmark tool) and `cluster` (local
//! clusters of ferrokv or etcd).

pub mod bench;
pub mod cluster;
