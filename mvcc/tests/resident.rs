//! The store's map and the process's resident set: pages read stay mapped until `Db::forget_resident`, which
//! unmaps them without changing what readers see, including a reader that holds a snapshot across it.

use std::ops::Bound;
use std::path::Path;

use mvcc::{Db, DbConfig};

/// Resident kilobytes of this process's mappings of `path` (from /proc/self/smaps).
fn mapped_kb(path: &Path) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = path.to_str().unwrap();
    let mut inside = false;
    let mut kb = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            inside = line.ends_with(name);
        } else if inside && let Some(rest) = line.strip_prefix("Rss:") {
            kb += rest.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap();
        }
    }
    kb
}

fn value(i: u64) -> Vec<u8> {
    format!("value-{i}-").into_bytes().into_iter().cycle().take(1500).collect()
}

#[test]
fn forgetting_the_resident_pages_shrinks_the_map_and_keeps_every_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let db = Db::open(&path, &["k"], DbConfig::default()).unwrap();
    let ks = db.keyspace("k").unwrap();
    for batch in 0..20u64 {
        let mut w = db.write().unwrap();
        for i in batch * 1000..(batch + 1) * 1000 {
            w.put(ks, format!("key-{i:06}").as_bytes(), &value(i)).unwrap();
        }
        w.commit().unwrap();
    }
    // A reader holds a snapshot across the drop, as a long range does.
    let held = db.read();
    let read_all = |r: &mvcc::ReadTxn| {
        let mut n = 0u64;
        for (k, v) in r.range(ks, Bound::Unbounded, Bound::Unbounded).unwrap().map(|e| e.unwrap()) {
            let i: u64 = std::str::from_utf8(&k[4..]).unwrap().parse().unwrap();
            assert_eq!(v, value(i), "key {i} read back wrong");
            n += 1;
        }
        n
    };
    assert_eq!(read_all(&held), 20_000);
    let before = mapped_kb(&path);
    // 20,000 values of 1.5 KB: about 30 MB of leaves, all read once.
    assert!(before > 20_000, "reading every page mapped only {before} kB");
    db.forget_resident().unwrap();
    let after = mapped_kb(&path);
    assert!(after < before / 10, "{after} kB stayed mapped of {before} kB");
    assert_eq!(read_all(&held), 20_000);
    assert_eq!(read_all(&db.read()), 20_000);
    drop(held);
    db.check().unwrap();
}
