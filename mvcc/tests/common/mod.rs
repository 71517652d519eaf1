//! The deterministic workload the crash tests (kill -9, and power loss on crashfs) commit and check against.

#![allow(dead_code)]

use std::collections::BTreeMap;

/// What revision `r` does: `Some(value)` puts, `None` deletes (if the key exists).
pub fn change(r: i64) -> (Vec<u8>, Option<Vec<u8>>) {
    let key = format!("key-{:02}", (r * 7) % 50).into_bytes();
    if r % 11 == 0 {
        return (key, None);
    }
    let len = if r % 13 == 0 { 5000 } else { (r % 40) as usize };
    (key, Some(format!("v{r}-").into_bytes().into_iter().cycle().take(len).collect()))
}

/// The key space after applying steps `1..=applied`, and the revision it is at (1 plus the changes made).
pub fn expected(applied: i64) -> (BTreeMap<Vec<u8>, Vec<u8>>, i64) {
    let mut m = BTreeMap::new();
    let mut rev = 1;
    for step in 1..=applied {
        let (k, v) = change(step);
        match v {
            Some(v) => {
                m.insert(k, v);
                rev += 1;
            }
            None => {
                if m.remove(&k).is_some() {
                    rev += 1;
                }
            }
        }
    }
    (m, rev)
}

/// Commits step `step` of the workload (see [`change`]) with the applied index set to it; returns the revision.
pub fn commit_step(store: &mvcc::Store, step: i64) -> i64 {
    let (key, value) = change(step);
    let mut w = store.write().unwrap();
    match &value {
        Some(v) => {
            w.put(&key, v, 0, mvcc::PutOptions::default()).unwrap();
        }
        None => {
            w.delete_range(&key, &[]).unwrap();
        }
    }
    w.set_applied(step as u64, 1);
    w.commit().unwrap()
}
