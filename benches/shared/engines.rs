//! The B+tree workloads of issue 4, run identically on our `mvcc::Db` and on redb, for the criterion bench
//! (`benches/btree.rs`) and the table (`examples/mvcc_vs_redb.rs`). Keys are 24 random bytes and values 150 bytes
//! (redb's own benchmark shape); every write commit is durable (fdatasync) in both engines.

use std::ops::Bound;
use std::path::Path;

use redb::{ReadableDatabase, TableDefinition};

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("t");

/// One engine under test.
pub trait Engine {
    fn name(&self) -> &'static str;
    /// Inserts all items in one durable commit.
    fn insert_batch(&self, items: &[(Vec<u8>, Vec<u8>)]);
    /// Looks every key up in one read transaction; returns how many were found.
    fn get_all(&self, keys: &[Vec<u8>]) -> usize;
    /// Reads `n` entries in order from `start`, in one read transaction; returns the bytes read.
    fn scan(&self, start: &[u8], n: usize) -> usize;
    /// Writes one key in its own durable commit.
    fn put_one(&self, key: &[u8], value: &[u8]);
}

pub struct Ours {
    db: mvcc::Db,
    ks: mvcc::KeyspaceId,
}

impl Ours {
    pub fn create(dir: &Path) -> Ours {
        let db = mvcc::Db::open(dir.join("ours.db"), &["t"], mvcc::DbConfig::default()).expect("open mvcc");
        let ks = db.keyspace("t").expect("keyspace");
        Ours { db, ks }
    }
}

impl Engine for Ours {
    fn name(&self) -> &'static str {
        "ferrokv mvcc"
    }

    fn insert_batch(&self, items: &[(Vec<u8>, Vec<u8>)]) {
        let mut w = self.db.write().expect("write");
        for (k, v) in items {
            w.put(self.ks, k, v).expect("put");
        }
        w.commit_durable().expect("commit");
    }

    fn get_all(&self, keys: &[Vec<u8>]) -> usize {
        let r = self.db.read();
        keys.iter().filter(|k| r.get(self.ks, k).expect("get").is_some()).count()
    }

    fn scan(&self, start: &[u8], n: usize) -> usize {
        let r = self.db.read();
        r.range(self.ks, Bound::Included(start), Bound::Unbounded)
            .expect("range")
            .take(n)
            .map(|e| e.expect("entry").1.len())
            .sum()
    }

    fn put_one(&self, key: &[u8], value: &[u8]) {
        let mut w = self.db.write().expect("write");
        w.put(self.ks, key, value).expect("put");
        w.commit_durable().expect("commit");
    }
}

pub struct Redb {
    db: redb::Database,
}

impl Redb {
    pub fn create(dir: &Path) -> Redb {
        let db = redb::Database::create(dir.join("redb.db")).expect("open redb");
        let w = db.begin_write().expect("write");
        w.open_table(TABLE).expect("table");
        w.commit().expect("commit");
        Redb { db }
    }
}

impl Engine for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn insert_batch(&self, items: &[(Vec<u8>, Vec<u8>)]) {
        let w = self.db.begin_write().expect("write");
        {
            let mut t = w.open_table(TABLE).expect("table");
            for (k, v) in items {
                t.insert(k.as_slice(), v.as_slice()).expect("insert");
            }
        }
        w.commit().expect("commit");
    }

    fn get_all(&self, keys: &[Vec<u8>]) -> usize {
        let r = self.db.begin_read().expect("read");
        let t = r.open_table(TABLE).expect("table");
        keys.iter().filter(|k| t.get(k.as_slice()).expect("get").is_some()).count()
    }

    fn scan(&self, start: &[u8], n: usize) -> usize {
        let r = self.db.begin_read().expect("read");
        let t = r.open_table(TABLE).expect("table");
        t.range(start..).expect("range").take(n).map(|e| e.expect("entry").1.value().len()).sum()
    }

    fn put_one(&self, key: &[u8], value: &[u8]) {
        let w = self.db.begin_write().expect("write");
        {
            let mut t = w.open_table(TABLE).expect("table");
            t.insert(key, value).expect("insert");
        }
        w.commit().expect("commit");
    }
}

/// `n` random 24-byte keys with 150-byte values, from `seed`.
pub fn items(n: usize, seed: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let k: Vec<u8> = (0..3).flat_map(|_| next().to_le_bytes()).collect();
            let v: Vec<u8> = (0..19).flat_map(|_| next().to_le_bytes()).take(150).collect();
            (k, v)
        })
        .collect()
}
