//! `--snapshot-count`: the Raft log is compacted behind mvcc; a member restarted after compactions resumes from
//! the WAL's snapshot marker with every key intact, and SIGTERM stops it cleanly.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, start_with};
use server::proto::etcdserverpb::{PutRequest, RangeRequest, kv_client::KvClient};

#[test]
fn restart_after_log_compaction_and_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (client, peer) = (free_port(), free_port());
    let flags = ["--snapshot-count", "20"];
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let put_many = |endpoint: String, from: u32, to: u32| {
        rt.block_on(async move {
            let mut kv = KvClient::connect(endpoint).await.unwrap();
            let mut rev = 0;
            for i in from..to {
                let r = kv.put(PutRequest {
                    key: format!("key-{i:04}").into_bytes(),
                    value: i.to_le_bytes().to_vec(),
                    ..Default::default()
                });
                rev = r.await.unwrap().into_inner().header.unwrap().revision;
            }
            rev
        })
    };
    let count = |endpoint: String| {
        rt.block_on(async move {
            let mut kv = KvClient::connect(endpoint).await.unwrap();
            let r = kv
                .range(RangeRequest { key: b"key-".to_vec(), range_end: b"key.".to_vec(), ..Default::default() })
                .await
                .unwrap();
            let r = r.into_inner();
            assert!(
                r.kvs
                    .iter()
                    .all(|kv| kv.value == String::from_utf8_lossy(&kv.key[4..]).parse::<u32>().unwrap().to_le_bytes())
            );
            (r.count, r.header.unwrap().revision)
        })
    };
    let mut m = start_with(&data, client, peer, &flags);
    let rev = put_many(format!("http://{}", m.endpoint), 0, 150);
    // SIGKILL, then a restart that must replay from the latest snapshot marker.
    let _ = m.child.kill();
    let _ = m.child.wait();
    let mut m = start_with(&data, client, peer, &flags);
    let endpoint = format!("http://{}", m.endpoint);
    assert_eq!(count(endpoint.clone()), (150, rev), "every key, at the revision it had");
    let rev2 = put_many(endpoint.clone(), 150, 200);
    assert_eq!(rev2, rev + 50, "revisions continue");
    // SIGTERM: a clean, prompt exit.
    // SAFETY: kill takes no pointers; the PID is our own live child.
    unsafe { libc::kill(m.child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let status = loop {
        if let Some(s) = m.child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "ferrokv did not stop within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    let m = start_with(&data, client, peer, &flags);
    assert_eq!(count(format!("http://{}", m.endpoint)), (200, rev2));
}
