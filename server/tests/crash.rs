//! Crash test: a single member is killed with SIGKILL while 8 clients put concurrently, then restarted; every
//! acknowledged put must be readable with the revision it was acknowledged at, and the revision never goes
//! backwards. `FERROKV_CRASH_ROUNDS` rounds (default 30).

mod common;

use std::time::Duration;

use common::{free_port, start};
use server::proto::etcdserverpb::{PutRequest, RangeRequest, kv_client::KvClient};
use tokio::sync::mpsc;

#[test]
fn acknowledged_puts_survive_sigkill() {
    let rounds: usize = std::env::var("FERROKV_CRASH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (client, peer) = (free_port(), free_port());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut acked: Vec<(Vec<u8>, Vec<u8>, i64)> = Vec::new();
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("server crash test: {rounds} rounds, seed {seed}");
    let mut last_rev = 0i64;
    for round in 0..rounds {
        let mut member = start(&data, client, peer);
        let endpoint = format!("http://{}", member.endpoint);
        // Everything acknowledged before is still there, at the revision it was acknowledged with.
        let (current, missing) = rt.block_on(async {
            let mut kv = KvClient::connect(endpoint.clone()).await.unwrap().max_decoding_message_size(256 << 20);
            // One linearizable range over every key the test wrote, checked against what was acknowledged.
            let r = kv
                .range(RangeRequest { key: b"r".to_vec(), range_end: b"s".to_vec(), ..Default::default() })
                .await
                .unwrap()
                .into_inner();
            let stored: std::collections::HashMap<Vec<u8>, (Vec<u8>, i64)> =
                r.kvs.into_iter().map(|kv| (kv.key, (kv.value, kv.mod_revision))).collect();
            let missing: Vec<String> = acked
                .iter()
                .filter(|(k, v, rev)| stored.get(k) != Some(&(v.clone(), *rev)))
                .map(|(k, _, rev)| format!("{:?} at {rev}: {:?}", String::from_utf8_lossy(k), stored.get(k)))
                .collect();
            (r.header.unwrap().revision, missing)
        });
        assert!(missing.is_empty(), "round {round} (seed {seed}): acknowledged puts lost: {missing:?}");
        assert!(current >= last_rev, "round {round}: revision went back from {last_rev} to {current}");
        // 8 clients put until the member is killed at a random moment.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = Duration::from_millis(100 + seed % 400);
        let (tx, mut rx) = mpsc::unbounded_channel();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for w in 0..8u32 {
                let (endpoint, tx) = (endpoint.clone(), tx.clone());
                tasks.push(tokio::spawn(async move {
                    let Ok(mut kv) = KvClient::connect(endpoint).await else { return };
                    for n in 0u32.. {
                        let key = format!("r{round}-w{w}-{n}").into_bytes();
                        let value = format!("v{round}.{w}.{n}").into_bytes();
                        match kv.put(PutRequest { key: key.clone(), value: value.clone(), ..Default::default() }).await
                        {
                            Ok(r) => {
                                let rev = r.into_inner().header.map_or(0, |h| h.revision);
                                if tx.send((key, value, rev)).is_err() {
                                    return;
                                }
                            }
                            Err(_) => return,
                        }
                    }
                }));
            }
            tokio::time::sleep(kill_after).await;
            // SAFETY: kill takes no pointers; the PID is our own live child.
            unsafe { libc::kill(member.child.id() as i32, libc::SIGKILL) };
            for t in tasks {
                let _ = t.await;
            }
        });
        let _ = member.child.wait();
        drop(tx);
        while let Ok(a) = rx.try_recv() {
            last_rev = last_rev.max(a.2);
            acked.push(a);
        }
    }
    eprintln!("server crash test: {} acknowledged puts over {rounds} rounds, last revision {last_rev}", acked.len());
    assert!(acked.len() > rounds * 10, "the clients got almost nothing acknowledged: the test did not test");
}
