//! What a member keeps of a burst once it is over: the heap the burst freed goes back to the system within seconds
//! (the binary's memory-return thread), instead of staying resident until the allocator is next busy.
//! Nor does the store file stay mapped in full once read.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, start_with, status_mib};

/// Eight concurrent ranges of 12 MiB each make the member allocate (and then free) about 100 MiB of response
/// buffers. Before the memory-return thread, all of it stayed resident in an idle member: mimalloc hands freed
/// pages back only a second after they were freed, and only when a thread next takes its slow path.
#[test]
fn a_burst_s_freed_heap_goes_back_to_the_system() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let cluster = format!("m=http://127.0.0.1:{peer}");
    let flags = ["--name", "m", "--initial-cluster", &cluster];
    let m = start_with(dir.path(), client, peer, &flags);
    let value = "v".repeat(1 << 20);
    for i in 0..12 {
        let (ok, _, err) = common::etcdctl(&m.endpoint, &["put", &format!("big{i:02}")], Some(&value));
        assert!(ok, "put of 1 MiB: {err}");
    }
    std::thread::sleep(Duration::from_secs(4));
    let before = status_mib(m.child.id(), "RssAnon:");
    let peak_before = status_mib(m.child.id(), "VmHWM:");

    let readers: Vec<_> = (0..8)
        .map(|_| {
            let endpoint = m.endpoint.clone();
            std::thread::spawn(move || common::etcdctl(&endpoint, &["get", "--prefix", "big", "-w", "json"], None))
        })
        .collect();
    for r in readers {
        let (ok, out, err) = r.join().unwrap();
        assert!(ok && out.len() > 12 << 20, "a 12 MiB range: {} bytes, {err}", out.len());
    }
    // The peak, not the heap now: the memory-return thread may well have handed the burst back already.
    let peak = status_mib(m.child.id(), "VmHWM:");
    assert!(peak >= peak_before + 32, "the burst was meant to grow the member: peak {peak_before} -> {peak} MiB");

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = status_mib(m.child.id(), "RssAnon:");
        if now <= before + 16 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "15 s after the burst the member still holds {now} MiB of heap (before it: {before}; peak {peak} MiB)"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// An idle member's anonymous memory stays near what it uses. mimalloc asks for transparent huge pages on its
/// arena, and each thread that allocates touches pages of its own: with them an idle member held 23 MB of
/// anonymous memory, 20 MB of it in ten 2 MiB pages (etcd 3.4.23 idle: 5 MB). The binary turns them off.
#[test]
fn an_idle_member_holds_no_huge_pages_of_heap() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let cluster = format!("m=http://127.0.0.1:{peer}");
    let m = start_with(dir.path(), client, peer, &["--name", "m", "--initial-cluster", &cluster]);
    let (ok, _, err) = common::etcdctl(&m.endpoint, &["put", "k", "v"], None);
    assert!(ok, "{err}");
    std::thread::sleep(Duration::from_secs(3));
    let heap = status_mib(m.child.id(), "RssAnon:");
    assert!(heap < 16, "{heap} MiB of anonymous memory in an idle member");
}

/// Resident kilobytes of `pid`'s mappings of `path`, from its smaps.
fn mapped_kib(pid: u32, path: &std::path::Path) -> u64 {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let name = path.to_str().unwrap();
    let mut inside = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            inside = line.ends_with(name);
        } else if inside && let Some(rest) = line.strip_prefix("Rss:") {
            kib += rest.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap();
        }
    }
    kib
}

/// The store file is mapped, and every page a range read stayed mapped: after reading its whole 32 MiB store once,
/// a member's resident set held all of it for good. The backend's sync thread drops the map's pages from the
/// resident set every second; the page cache keeps them.
#[test]
fn the_store_s_map_does_not_stay_resident() {
    let dir = tempfile::tempdir().unwrap();
    let (client, peer) = (free_port(), free_port());
    let cluster = format!("m=http://127.0.0.1:{peer}");
    let m = start_with(dir.path(), client, peer, &["--name", "m", "--initial-cluster", &cluster]);
    let value = "v".repeat(1 << 20);
    for i in 0..32 {
        let (ok, _, err) = common::etcdctl(&m.endpoint, &["put", &format!("big{i:02}")], Some(&value));
        assert!(ok, "put of 1 MiB: {err}");
    }
    let (ok, out, err) = common::etcdctl(&m.endpoint, &["get", "--prefix", "big", "--print-value-only"], None);
    assert!(ok && out.len() > 32 << 20, "a 32 MiB range: {} bytes, {err}", out.len());
    let db = dir.path().join("member").join("snap").join("db");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let kib = mapped_kib(m.child.id(), &db);
        if kib < 4 << 10 {
            break;
        }
        assert!(Instant::now() < deadline, "10 s after reading it, {kib} KiB of the store stays mapped");
        std::thread::sleep(Duration::from_millis(250));
    }
}
