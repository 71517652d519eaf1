//! What the `wal` crate reports through `tracing` reaches the member's JSON log: here, the torn tail it erases when a
//! member restarts after a crash left half a frame behind its last record. And what reading the WAL back at start
//! leaves behind: no copy of its segments in the heap.

mod common;

use std::io::{Seek, SeekFrom, Write};
use std::time::{Duration, Instant};

use common::{free_port, start_with, status_mib};

#[test]
fn a_torn_wal_tail_is_reported_in_the_json_log() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let cluster = format!("m=http://127.0.0.1:{peer}");
    let flags = ["--name", "m", "--initial-cluster", &cluster];
    let m = start_with(dir.path(), client, peer, &flags);
    for i in 0..20 {
        let (ok, _, err) = common::etcdctl(&m.endpoint, &["put", &format!("k{i}"), "v"], None);
        assert!(ok, "{err}");
    }
    drop(m); // killed: whatever it acknowledged is in the WAL
    // Half a frame after the last record, as a crash in the middle of a write leaves it: a plausible header (an
    // entry of 1,000 bytes) and a few bytes of it, the rest of its sectors never written (zero).
    let wal_dir = dir.path().join("member").join("wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    let last = segments.last().expect("a WAL segment");
    let bytes = std::fs::read(last).unwrap();
    let end = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1).next_multiple_of(8) as u64;
    let mut f = std::fs::File::options().write(true).open(last).unwrap();
    f.seek(SeekFrom::Start(end)).unwrap();
    let mut frame = 1000u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&[1, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]);
    frame.extend_from_slice(&[0x5a; 24]);
    f.write_all(&frame).unwrap();
    f.sync_all().unwrap();
    drop(f);

    let m = start_with(dir.path(), client, peer, &flags);
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let found = m.log.lock().unwrap().iter().find(|l| l.contains("erased a torn tail")).cloned();
        if let Some(l) = found {
            break l;
        }
        assert!(Instant::now() < deadline, "the WAL's torn-tail warning never reached the log");
        std::thread::sleep(Duration::from_millis(50));
    };
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(v["level"], "warn");
    assert_eq!(v["msg"], "wal: erased a torn tail (an unacknowledged, partly written batch)");
    assert_eq!(v["offset"], end.to_string());
    assert!(v["segment"].as_str().is_some_and(|s| s.ends_with(".wal")), "{line}");
    assert!(v["caller"].as_str().is_some_and(|s| s.starts_with("wal")), "{line}");
    let (ok, out, err) = common::etcdctl(&m.endpoint, &["get", "k19", "--print-value-only"], None);
    assert!(ok && out.trim() == "v", "every acknowledged put is still there: {out} {err}");
}

/// Starting reads every WAL segment back, and a segment is preallocated to 64 MiB: read into the heap, both passes'
/// copies stayed resident in the allocator for the life of the process (101 MiB of heap in an idle member, against
/// etcd's 5). Mapped, they leave with the map; and the zero tail past the log's end is checked without the map,
/// or all 64 MiB would count in the member's peak RSS (VmHWM) at every start.
#[test]
fn an_idle_member_does_not_keep_its_wal_in_the_heap() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let cluster = format!("m=http://127.0.0.1:{peer}");
    let flags = ["--name", "m", "--initial-cluster", &cluster];
    for start in ["first start", "restart"] {
        let m = start_with(dir.path(), client, peer, &flags);
        common::etcdctl_ok(&m.endpoint, &["put", "k", "v"]);
        let heap = status_mib(m.child.id(), "RssAnon:");
        assert!(heap < 48, "{start}: {heap} MiB of heap in an idle member (a WAL segment is 64 MiB)");
        let peak = status_mib(m.child.id(), "VmHWM:");
        assert!(peak < 80, "{start}: a peak RSS of {peak} MiB in an idle member (a WAL segment is 64 MiB)");
    }
}
