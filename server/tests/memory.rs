//! What a member keeps of a burst once it is over: the heap the burst freed goes back to the system within seconds
//! (the binary's memory-return thread), instead of staying resident until the allocator is next busy.

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
