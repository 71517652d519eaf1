//! The bbolt reader on arbitrary bytes: opening, listing the buckets, walking every bucket and the size must
//! return (an error is fine) without a panic, a hang or unbounded memory, whatever the file holds.
//!
//! Run: `cd bbolt/fuzz && cargo +nightly fuzz run reader` (seeds: any bbolt file, e.g. an etcd snapshot).

#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The reader reads a file by offsets; a file in memory-backed /dev/shm keeps the run fast.
    let Ok(mut f) = tempfile_in_shm() else { return };
    if f.1.write_all(data).is_err() {
        return;
    }
    if let Ok(r) = bbolt::Reader::open(&f.0) {
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
    let _ = std::fs::remove_file(&f.0);
});

fn tempfile_in_shm() -> std::io::Result<(std::path::PathBuf, std::fs::File)> {
    let dir = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" };
    let path = std::path::PathBuf::from(format!("{dir}/bbolt-fuzz-{}", std::process::id()));
    let f = std::fs::File::create(&path)?;
    Ok((path, f))
}
