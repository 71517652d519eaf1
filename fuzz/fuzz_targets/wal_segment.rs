//! The WAL reader on arbitrary segment bytes: scanning a directory whose one segment holds the input must
//! return (an error is fine) without a panic, a hang or unbounded memory: the segment header, every frame's
//! header, length, type, checksum chain and payload, the torn-tail rule.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = ferrokv_fuzz::scratch_dir("wal");
    let path = wal::segment::path(&dir, wal::SegmentSeq(1));
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let mut n = 0usize;
    let _ = wal::reader::scan(&dir, |_| n += 1);
    let _ = wal::reader::replay(&dir, wal::RaftIndex(1));
    let _ = std::fs::remove_dir_all(&dir);
});
