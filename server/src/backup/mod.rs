//! etcd's snapshot file (a bbolt database with etcd's buckets, then a SHA-256 trailer): what
//! `Maintenance.Snapshot` streams (`etcdctl snapshot save`), so that `etcdctl snapshot status` and
//! `etcdctl snapshot restore`, and etcd itself, read ferrokv's backups; and what `ferrokv snapshot restore` reads
//! back (`import`), from ferrokv or etcd.

pub mod export;
pub mod import;
pub mod stream;
