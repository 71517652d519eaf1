//! etcd's snapshot file (a bbolt database with etcd's buckets, then a SHA-256 trailer): what
//! `Maintenance.Snapshot` streams (`etcdctl snapshot save`), so that `etcdctl snapshot status` and
//! `etcdctl snapshot restore`, and etcd itself, read ferrokv's backups.

pub mod export;
pub mod stream;
