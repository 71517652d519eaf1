//! The bbolt reader (etcd's snapshot and data files, for `snapshot restore` and migration) on arbitrary bytes:
//! opening, listing the buckets, walking every bucket and the size must return (an error is fine) without a
//! panic, a hang or unbounded memory, whatever the file holds.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = ferrokv_fuzz::scratch_dir("bbolt");
    let path = dir.join("db");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(r) = bbolt::Reader::open(&path) {
        let _ = r.size();
        if let Ok(names) = r.buckets() {
            for name in names {
                let mut n = 0u64;
                let _ = r.for_each(&name, &mut |k, v| {
                    n += (k.len() + v.len()) as u64;
                    Ok(())
                });
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});
