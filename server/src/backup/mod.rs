//! etcd's snapshot file (a bbolt database with etcd's buckets, then a SHA-256 trailer): what
//! `Maintenance.Snapshot` streams (`etcdctl snapshot save`), so that `etcdctl snapshot status` and
//! `etcdctl snapshot restore`, and etcd itself, read ferrokv's backups; and what `ferrokv snapshot restore` reads
//! back (`import`), from ferrokv or etcd; and an etcd member's directory converted in place (`migrate`, reading
//! etcd's WAL and snapshot files with `etcd_dir`).

pub mod etcd_dir;
pub mod export;
pub mod import;
pub mod migrate;
pub mod restore;
pub mod stream;
