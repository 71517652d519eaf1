//! Crash test: a child process commits a deterministic workload (puts, deletes, overflow values, compactions)
//! and reports each commit it knows to be durable; the parent kills it with SIGKILL at a random moment (50 rounds
//! by default, `MVCC_CRASH_ROUNDS`), reopens, and checks that the store equals the workload's committed prefix up
//! to its revision, which includes the last reported durable commit, and that every invariant holds.
//! Odd rounds batch commits (sync every 8) and report only after an explicit sync.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::{commit_step, expected};
use mvcc::{DbConfig, RangeOptions, Store, StoreConfig, SyncPolicy};

const CHILD_PATH: &str = "MVCC_CRASH_CHILD_PATH";
const CHILD_BATCHED: &str = "MVCC_CRASH_CHILD_BATCHED";

fn config(batched: bool) -> StoreConfig {
    let sync = if batched {
        SyncPolicy { max_commits: 8, max_delay: Duration::from_secs(3600), background: false }
    } else {
        SyncPolicy::default()
    };
    StoreConfig { db: DbConfig { sync, ..DbConfig::default() }, compaction_batch: 50 }
}

#[test]
#[ignore = "run by crash_test_committed_prefix_survives_sigkill as its child process"]
fn crash_child() {
    let path = std::env::var(CHILD_PATH).expect("run only as the crash test's child");
    let batched = std::env::var(CHILD_BATCHED).is_ok();
    let store = Store::open(&path, &[], config(batched)).unwrap();
    let mut out = std::io::stdout();
    loop {
        // Like a Raft index: one step per applied entry, whether or not it changes anything.
        let next = store.applied().0 as i64 + 1;
        let rev = commit_step(&store, next);
        if next % 97 == 0 && rev > 31 && rev - 30 > store.compact_revision() {
            store.compact(rev - 30).unwrap();
        }
        if batched {
            if next % 8 == 0 {
                store.db().sync().unwrap();
                writeln!(out, "durable {next}").unwrap();
            }
        } else {
            writeln!(out, "durable {next}").unwrap();
        }
        out.flush().unwrap();
    }
}

#[test]
fn crash_test_committed_prefix_survives_sigkill() {
    let rounds: usize = std::env::var("MVCC_CRASH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("mvcc crash test: {rounds} rounds, seed {seed}");
    let mut last_durable = 0i64;
    for round in 0..rounds {
        let batched = round % 2 == 1;
        let mut cmd = Command::new(&exe);
        cmd.args(["--ignored", "--exact", "crash_child", "--nocapture", "--test-threads", "1"])
            .env(CHILD_PATH, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if batched {
            cmd.env(CHILD_BATCHED, "1");
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(|l| l.ok())
                .filter_map(|l| l.strip_prefix("durable ").and_then(|r| r.parse::<i64>().ok()))
                .max()
        });
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(10 + seed % 150));
        // SAFETY: kill takes no pointers; the PID is our own child, not yet reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        if let Some(d) = reader.join().unwrap() {
            last_durable = last_durable.max(d);
        }

        let store = Store::open(&path, &[], config(false)).unwrap_or_else(|e| panic!("round {round}: reopen: {e}"));
        let rev = store.current_revision();
        let applied = store.applied().0 as i64;
        assert!(applied >= last_durable, "round {round}: applied {applied} is behind the durable {last_durable}");
        let (want, want_rev) = expected(applied);
        assert_eq!(rev, want_rev, "round {round}: the applied index is committed with the data it produced");
        let got: BTreeMap<Vec<u8>, Vec<u8>> = store
            .range(b"key-", &[0], RangeOptions::default())
            .unwrap()
            .kvs
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect();
        assert_eq!(got, want, "round {round}: the store is the committed prefix up to step {applied}");
        store.check().unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    assert!(last_durable > 50, "the children committed almost nothing: the test did not test");
    eprintln!("mvcc crash test: reached durable step {last_durable}");
}
