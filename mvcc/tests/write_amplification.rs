//! A commit writes the pages it changed, not the tree: random inserts into a large tree rewrite about one leaf
//! per insert plus the branches above them.

use mvcc::{Db, DbConfig};

#[test]
fn random_inserts_rewrite_only_the_paths_they_touch() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db"), &["t"], DbConfig::default()).unwrap();
    let ks = db.keyspace("t").unwrap();
    let mut x = 12345u64;
    let mut key = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x.to_be_bytes()
    };
    for _ in 0..20 {
        let mut w = db.write().unwrap();
        for _ in 0..5000 {
            w.put(ks, &key(), &[1u8; 150]).unwrap();
        }
        w.commit().unwrap();
    }
    let before = db.stats();
    let mut w = db.write().unwrap();
    for _ in 0..100 {
        w.put(ks, &key(), &[2u8; 150]).unwrap();
    }
    w.commit().unwrap();
    let after = db.stats();
    let written = after.pages_written - before.pages_written;
    eprintln!("100 random inserts into {} pages wrote {written} pages", before.page_count);
    assert!(written <= 300, "100 inserts touch at most ~100 leaves and their branches, wrote {written}");
}
