//! Damage to the store file and the documented outcome of each:
//! - a flipped byte in a data page → open fails with `Corrupted` naming the page (nothing is served);
//! - a flipped byte in the newest meta page → open falls back to the other meta: the previous commit;
//! - a truncated file → open fails with a `Format` error saying so, and the file is left as it was.

use std::os::unix::fs::FileExt;

use mvcc::{Db, DbConfig, Error};

fn build(path: &std::path::Path) {
    let db = Db::open(path, &["t"], DbConfig::default()).unwrap();
    let ks = db.keyspace("t").unwrap();
    for round in 0..3u32 {
        let mut w = db.write().unwrap();
        for i in 0..500u32 {
            w.put(ks, format!("{i:06}").as_bytes(), &[round as u8; 100]).unwrap();
        }
        w.commit().unwrap();
    }
}

fn flip(path: &std::path::Path, offset: u64) {
    let f = std::fs::File::options().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ 0x10], offset).unwrap();
}

#[test]
fn flipped_byte_in_a_data_page_is_reported_with_its_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    build(&path);
    // Find a page the tree reaches: open, read, note the root's page.
    let pages = std::fs::metadata(&path).unwrap().len() / 4096;
    let mut hit = None;
    for p in 2..pages {
        flip(&path, p * 4096 + 200);
        match Db::open(&path, &["t"], DbConfig::default()) {
            Err(Error::Corrupted { page, .. }) => {
                hit = Some((p, page.0));
                break;
            }
            Ok(_) => flip(&path, p * 4096 + 200), // a free page: undo and try the next
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    let (flipped, reported) = hit.expect("some page is reachable");
    assert_eq!(flipped, reported, "the error names the damaged page");
}

#[test]
fn torn_newest_meta_falls_back_to_the_previous_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    build(&path);
    let db = Db::open(&path, &["t"], DbConfig::default()).unwrap();
    let newest = db.stats().txn;
    drop(db);
    // The newest meta sits in one of the two slots; damage that one.
    let slot = (0..2u64)
        .find(|s| {
            let mut b = vec![0u8; 4096];
            std::fs::File::open(&path).unwrap().read_exact_at(&mut b, s * 4096).unwrap();
            u64::from_le_bytes(b[32..40].try_into().unwrap()) == newest.0
        })
        .unwrap();
    flip(&path, slot * 4096 + 3000);
    let db = Db::open(&path, &["t"], DbConfig::default()).unwrap();
    assert_eq!(db.stats().txn.0, newest.0 - 1, "the previous commit");
    let ks = db.keyspace("t").unwrap();
    assert_eq!(db.read().get(ks, b"000007").unwrap(), Some(&[1u8; 100][..]), "the previous commit's values");
    db.check().unwrap();
    // The next commit overwrites the damaged slot and the store goes on.
    let mut w = db.write().unwrap();
    w.put(ks, b"after", b"x").unwrap();
    w.commit().unwrap();
    drop(db);
    let db = Db::open(&path, &["t"], DbConfig::default()).unwrap();
    assert_eq!(db.read().get(ks, b"after").unwrap(), Some(&b"x"[..]));
}

#[test]
fn truncated_file_is_an_error_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    build(&path);
    let len = std::fs::metadata(&path).unwrap().len();
    let db = Db::open(&path, &["t"], DbConfig::default()).unwrap();
    let used = db.stats().page_count * 4096;
    drop(db);
    std::fs::File::options().write(true).open(&path).unwrap().set_len(used / 2).unwrap();
    match Db::open(&path, &["t"], DbConfig::default()) {
        Err(Error::Format { what, .. }) => assert!(what.contains("truncated"), "{what}"),
        other => panic!("expected a truncation error, got {other:?}"),
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), used / 2, "a failed open does not grow the file");
    assert!(len >= used);
    // Both meta pages destroyed: a clear error too.
    std::fs::File::options().write(true).open(&path).unwrap().write_all_at(&[0u8; 8192], 0).unwrap();
    assert!(matches!(Db::open(&path, &["t"], DbConfig::default()), Err(Error::NoValidMeta { .. })));
}
