//! Power loss at the server level: ferrokv runs, as its own process, on crashfs (a FUSE file system in this test
//! process that journals every write, sync, create and rename the kernel passes it), while 8 clients put and each
//! acknowledged put is marked in the journal; then the member is killed with SIGKILL. The power loss comes after:
//! for the moment of the kill and for sampled crash points before it, under each loss mode (every unsynced change
//! lost; each file's changes kept up to one torn at a sector; each sector as the page cache held it at some
//! moment; directory changes kept to a random prefix unless the directory was fsynced), the image left on disk is
//! written to a plain directory and ferrokv is started on it. It must start, and every put acknowledged before the
//! crash point must be there with its value and revision.
//!
//! The SIGKILL tests (tests/crash.rs) keep the page cache; this one drops what was never made durable.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{free_port, start};
use crashfs::{CrashFs, Loss};
use server::proto::etcdserverpb::{PutRequest, RangeRequest, kv_client::KvClient};

/// One acknowledged put: key, value, revision.
type Acked = (Vec<u8>, Vec<u8>, i64);

#[test]
fn acknowledged_puts_survive_power_loss() {
    if !common::is_root("FUSE mounts") || !CrashFs::usable_or_skip() {
        return;
    }
    let samples: usize = std::env::var("FERROKV_POWER_POINTS").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let failures = run(&[], samples);
    assert!(failures.is_empty(), "acknowledged puts lost after a power loss:\n{}", failures.join("\n"));
    // A deliberately broken build: WAL batches acknowledged without their fdatasync must be caught.
    let failures = run(&[("GOFAIL_FAILPOINTS", "walSkipFdatasync=return")], 2);
    assert!(!failures.is_empty(), "acknowledging WAL batches without fdatasync went unnoticed");
    eprintln!("without fdatasync, caught: {}", failures[0]);
}

/// Runs the workload with `env` set on the member, kills it, and restarts it on the images of the kill's moment
/// (every loss mode) and of `samples` crash points before it; returns what was lost, one line per image.
fn run(env: &[(&str, &str)], samples: usize) -> Vec<String> {
    let mnt = tempfile::tempdir().unwrap();
    let fs = CrashFs::mount(mnt.path()).unwrap();
    let (client, peer) = (free_port(), free_port());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // The workload: 8 clients put for 2 s; each acknowledgement is marked with its place in `acked`.
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let (member, ready) = common::start_detached_env(&fs.path().join("data"), client, peer, &[], env);
    let mut member = common::ready_within_20s(member, ready);
    let endpoint = format!("http://{}", member.endpoint);
    let fs = Arc::new(fs);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..8u32 {
            let (endpoint, acked, fs) = (endpoint.clone(), Arc::clone(&acked), Arc::clone(&fs));
            tasks.push(tokio::spawn(async move {
                let Ok(mut kv) = KvClient::connect(endpoint).await else { return };
                for n in 0u32.. {
                    let (key, value) = (format!("p-w{w}-{n}").into_bytes(), format!("v{w}.{n}").into_bytes());
                    let req = PutRequest { key: key.clone(), value: value.clone(), ..Default::default() };
                    let Ok(r) = kv.put(req).await else { return };
                    let rev = r.into_inner().header.map_or(0, |h| h.revision);
                    let mut a = acked.lock().unwrap();
                    fs.mark(a.len() as u64);
                    a.push((key, value, rev));
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        // SAFETY: kill takes no pointers; the PID is our own live child.
        unsafe { libc::kill(member.child.id() as i32, libc::SIGKILL) };
        for t in tasks {
            let _ = t.await;
        }
    });
    let _ = member.child.wait();
    drop(member);
    let fs = Arc::into_inner(fs).expect("the clients are done");
    let journal = fs.unmount().unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "only {} puts acknowledged in 2 s: the test did not test", acked.len());

    // The kill's moment under every loss mode, and sampled crash points before it under two.
    let end = journal.ops.len();
    let mut cases: Vec<(usize, Loss)> =
        [Loss::Everything, Loss::Prefix(5), Loss::Sectors(6)].into_iter().map(|l| (end, l)).collect();
    let sampled = journal.crash_points(samples + 2);
    for (i, &p) in sampled.iter().filter(|&&p| p != end).enumerate() {
        cases.push((p, if i % 2 == 0 { Loss::Everything } else { Loss::Sectors(i as u64) }));
    }
    cases.sort_by_key(|c| c.0);
    let mut points: Vec<usize> = cases.iter().map(|c| c.0).collect();
    points.dedup();
    let mut images = Vec::new();
    journal.replay(&points, |crash| {
        for &(_, loss) in cases.iter().filter(|c| c.0 == crash.point) {
            let out = tempfile::tempdir().unwrap();
            crash.image(loss).write_to(out.path()).unwrap();
            images.push((crash.point, loss, crash.marks.to_vec(), out));
        }
    });
    let (mut failures, mut wanted, mut restarted) = (Vec::new(), 0, 0);
    for (point, loss, marks, out) in images {
        let want: Vec<&Acked> = marks.iter().map(|&m| &acked[m as usize]).collect();
        wanted += want.len();
        let what = format!("crash point {point} of {end}, {loss:?}, {} puts acknowledged", want.len());
        let data = out.path().join("data");
        if want.is_empty() && !data.join("member").is_dir() {
            continue;
        }
        let before = walk(out.path());
        let member = start(&data, client, peer);
        restarted += 1;
        let endpoint = format!("http://{}", member.endpoint);
        let (stored, revision) = rt.block_on(async {
            let mut kv = KvClient::connect(endpoint).await.unwrap().max_decoding_message_size(256 << 20);
            let req = RangeRequest { key: b"p-".to_vec(), range_end: b"p.".to_vec(), ..Default::default() };
            let r = kv.range(req).await.unwrap().into_inner();
            let stored: HashMap<Vec<u8>, (Vec<u8>, i64)> =
                r.kvs.into_iter().map(|kv| (kv.key, (kv.value, kv.mod_revision))).collect();
            (stored, r.header.map_or(0, |h| h.revision))
        });
        drop(member);
        let lost: Vec<String> = want
            .iter()
            .filter(|(k, v, rev)| stored.get(k) != Some(&(v.clone(), *rev)))
            .map(|(k, _, rev)| format!("{} at {rev}", String::from_utf8_lossy(k)))
            .collect();
        let highest = want.iter().map(|a| a.2).max().unwrap_or(0);
        eprintln!("{what}: {} keys, revision {revision}, {} lost", stored.len(), lost.len());
        if !lost.is_empty() || revision < highest {
            eprintln!("{what}: the image held {before:?}");
            let first: Vec<&String> = lost.iter().take(5).collect();
            failures.push(format!(
                "{what}: revision {revision} (acknowledged up to {highest}); {} lost, first {first:?}",
                lost.len()
            ));
        }
    }
    eprintln!(
        "power loss{}: {} puts acknowledged, {end} journal operations, {restarted} images restarted, {wanted} \
         acknowledgements checked, {} images lost some",
        if env.is_empty() { String::new() } else { format!(" with {env:?}") },
        acked.len(),
        failures.len()
    );
    failures
}

/// Every file under `dir` with its length, for a failure's report.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let len = e.metadata().map_or(0, |m| m.len());
                out.push(format!("{} ({len})", p.strip_prefix(dir).unwrap_or(&p).display()));
            }
        }
    }
    out.sort();
    out
}
