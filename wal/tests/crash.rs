//! Crash test: a child process appends from many threads and prints each acknowledged index; the parent kills it
//! with SIGKILL at a random moment, reopens the WAL, and checks that every acknowledged entry is present, intact and
//! in order, and that the WAL takes new appends. Rounds alternate the engines; small segments make kills land in
//! segment changes too. `WAL_CRASH_ROUNDS` sets the number of rounds (default 50).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ENGINES, payload, small};
use wal::{EngineKind, RaftIndex, Record, Term, Wal};

const CHILD_DIR: &str = "WAL_CRASH_CHILD_DIR";
const CHILD_ENGINE: &str = "WAL_CRASH_CHILD_ENGINE";

/// The child: appends forever from 8 threads, printing `ack <index>` after each durable append.
#[test]
#[ignore = "run by crash_test_acknowledged_appends_survive_sigkill as its child process"]
fn crash_child() {
    let dir = std::env::var(CHILD_DIR).expect("run only as the crash test's child");
    let engine =
        if std::env::var(CHILD_ENGINE).as_deref() == Ok("uring") { EngineKind::Uring } else { EngineKind::Sync };
    let wal = Arc::new(Wal::open(&dir, small(engine)).unwrap());
    let next = Arc::new(Mutex::new(wal.last_index().map_or(1, |i| i.0 + 1)));
    let out = Arc::new(Mutex::new(std::io::stdout()));
    std::thread::scope(|s| {
        for _ in 0..8 {
            let (wal, next, out) = (Arc::clone(&wal), Arc::clone(&next), Arc::clone(&out));
            s.spawn(move || {
                loop {
                    // Index choice and enqueue happen together, so indexes reach the log in order; the wait for
                    // durability happens outside the lock, so appends from all threads share flushes.
                    let (index, done) = {
                        let mut n = next.lock().unwrap();
                        let index = *n;
                        let data = payload(index);
                        let done = wal.append(&[Record::Entry { index: RaftIndex(index), term: Term(1), data: &data }]);
                        *n += 1;
                        (index, done.unwrap())
                    };
                    done.wait().unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ack {index}").unwrap();
                    o.flush().unwrap();
                }
            });
        }
    });
}

/// xorshift, seeded from the clock; the seed is printed so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn crash_test_acknowledged_appends_survive_sigkill() {
    let rounds: usize = std::env::var("WAL_CRASH_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(50);
    let seed = std::env::var("WAL_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("crash test: {rounds} rounds, WAL_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    drop(Wal::create(dir.path(), small(EngineKind::Sync)).unwrap());
    let exe = std::env::current_exe().unwrap();
    let mut acked_total = 0u64;
    let mut max_acked = 0u64;
    let mut torn_tails = 0;
    for round in 0..rounds {
        let engine = ENGINES[round % 2];
        let mut child = Command::new(&exe)
            .args(["--ignored", "--exact", "crash_child", "--nocapture", "--test-threads", "1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_ENGINE, if engine == EngineKind::Uring { "uring" } else { "sync" })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.strip_prefix("ack ").and_then(|i| i.parse::<u64>().ok()) {
                    acks.push(i);
                }
            }
            acks
        });
        // Kill at a random moment: sometimes during start-up and recovery, mostly while appending.
        let delay = if rng.below(5) == 0 { rng.below(15) } else { 20 + rng.below(120) };
        std::thread::sleep(Duration::from_millis(delay));
        // SAFETY: kill takes no pointers; the PID is our own child, not yet reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        let acks = reader.join().unwrap();

        let started = Instant::now();
        let wal = Wal::open(dir.path(), small(engine)).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        if wal.recovery().torn_tail.is_some() {
            torn_tails += 1;
        }
        let replay = wal.replay(RaftIndex(1)).unwrap();
        let last = replay.entries.last().map_or(0, |e| e.index.0);
        for (k, e) in replay.entries.iter().enumerate() {
            assert_eq!(e.index.0, k as u64 + 1, "round {round}: entries contiguous and in order");
            assert_eq!(e.data, payload(e.index.0), "round {round}: entry {} intact", e.index);
        }
        for &a in &acks {
            assert!(a <= last, "round {round} (seed {seed}): acknowledged entry {a} lost; log ends at {last}");
        }
        max_acked = max_acked.max(acks.iter().copied().max().unwrap_or(0));
        assert!(last >= max_acked, "round {round}: an entry acknowledged in an earlier round was lost");
        acked_total += acks.len() as u64;
        // The WAL accepts appends after recovery.
        let data = payload(last + 1);
        wal.append(&[Record::Entry { index: RaftIndex(last + 1), term: Term(1), data: &data }])
            .unwrap()
            .wait()
            .unwrap();
        drop(wal);
        assert!(started.elapsed() < Duration::from_secs(30), "round {round}: recovery took too long");
    }
    eprintln!("crash test: {acked_total} acknowledged appends over {rounds} rounds, {torn_tails} torn tails erased");
    assert!(acked_total > 0, "the children acknowledged nothing: the test did not test");
}
