//! The space values take: a value up to half a page shares its leaf with others (1 KB values, the size of many
//! Kubernetes objects and of etcd's benchmark `--val-size 1024` puts, took a 4 KB overflow page each when the
//! limit was a quarter page: the file grew to 3x etcd's), and a larger one goes to an overflow run and reads back
//! whole.

use mvcc::{Db, DbConfig};

#[test]
fn one_kilobyte_values_share_pages_and_large_ones_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path().join("db"), &["t"], DbConfig::default()).unwrap();
    let ks = db.keyspace("t").unwrap();
    let empty = db.stats().in_use;
    // A 1 KB value as the store keeps it: the key and value of the put plus its revisions (~1,060 bytes).
    let value = |i: u32| {
        let mut v = vec![(i % 251) as u8; 1060];
        v[..4].copy_from_slice(&i.to_be_bytes());
        v
    };
    let n = 3000u32;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut w = db.write().unwrap();
        for &i in chunk {
            w.put(ks, &u64::from(i).to_be_bytes(), &value(i)).unwrap();
        }
        w.commit().unwrap();
    }
    let per_value = (db.stats().in_use - empty) / u64::from(n);
    eprintln!("{n} values of 1,060 bytes: {per_value} bytes of file each");
    assert!(per_value < 1600, "a 1 KB value takes {per_value} bytes of file (a whole page is 4,096)");
    let r = db.read();
    for i in [0, 1234, n - 1] {
        assert_eq!(r.get(ks, &u64::from(i).to_be_bytes()).unwrap(), Some(&value(i)[..]));
    }
    drop(r);

    // Just over half a page: an overflow run, read back whole; and the largest inline value beside the largest key.
    let page = 4096;
    let mut w = db.write().unwrap();
    w.put(ks, b"big", &vec![7u8; page / 2 + 1]).unwrap();
    w.put(ks, &[9u8; 512], &vec![8u8; page / 2]).unwrap();
    w.commit().unwrap();
    let r = db.read();
    assert_eq!(r.get(ks, b"big").unwrap().map(<[u8]>::len), Some(page / 2 + 1));
    assert_eq!(r.get(ks, &[9u8; 512]).unwrap(), Some(&vec![8u8; page / 2][..]));
}
