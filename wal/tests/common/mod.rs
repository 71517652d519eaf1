//! Helpers shared by the WAL's integration tests.

#![allow(dead_code)]

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use wal::{Config, EngineKind, RaftIndex, Record, Term, Wal};

/// Both engines: every behaviour test runs against each.
pub const ENGINES: [EngineKind; 2] = [EngineKind::Sync, EngineKind::Uring];

/// Small segments, so tests cross segment boundaries quickly.
pub fn small(engine: EngineKind) -> Config {
    Config { segment_size: 64 << 10, engine, buffer_size: 16 << 10, ..Config::default() }
}

/// A deterministic payload for entry `i`.
pub fn payload(i: u64) -> Vec<u8> {
    let len = (i * 37 % 300) as usize;
    (0..len).map(|b| (b as u64 ^ i) as u8).collect()
}

/// Appends entries `from..to` (term 1) one append each and waits for each.
pub fn append_range(wal: &Wal, from: u64, to: u64) {
    for i in from..to {
        let data = payload(i);
        wal.append(&[Record::Entry { index: RaftIndex(i), term: Term(1), data: &data }]).unwrap().wait().unwrap();
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// A minimal executor: polls `f` on this thread, parking between polls.
pub fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
