//! The completion of one append: resolves once every record of the append is durable, or with the error that
//! poisoned the WAL. Usable from a thread ([`Completion::wait`]) or an async task (it is a `Future`).
//!
//! **Concurrency**: one [`Slot`] per append call, shared by the appender and the I/O thread. When a batch is
//! durable the I/O thread stores the result in every slot of the batch and collects their waiters (a parked
//! thread or a task's waker) into a [`Fanout`]; it works through the list, and every appender that wakes up wakes
//! [`FANOUT`] more from the same list before it returns. Each appender is woken exactly once, never by a
//! broadcast, and the wake-ups (a few microseconds each on a VM) run on every core at once instead of one after
//! another on the I/O thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread::Thread;

use crate::error::{Error, Result};
use crate::types::RaftIndex;

/// What a durable append reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Index of the last entry in the log after this append (`None` when the log holds no live entry).
    pub last_index: Option<RaftIndex>,
}

enum Waiter {
    None,
    Thread(Thread),
    Task(Waker),
}

struct Inner {
    result: Option<Result<(), Arc<str>>>,
    waiter: Waiter,
    fanout: Option<Arc<Fanout>>,
}

/// Waiters each woken appender wakes in turn.
pub(crate) const FANOUT: usize = 2;

/// The waiters of one durable batch, woken as a tree (see the module header).
pub(crate) struct Fanout {
    waiters: OnceLock<Vec<Waiter>>,
    next: AtomicUsize,
}

impl Fanout {
    /// Wakes up to `n` waiters not woken yet.
    pub(crate) fn wake_some(&self, n: usize) {
        let Some(waiters) = self.waiters.get() else { return };
        let mut woken = 0;
        while woken < n {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(w) = waiters.get(i) else { return };
            match w {
                Waiter::None => continue,
                Waiter::Thread(t) => t.unpark(),
                Waiter::Task(k) => k.wake_by_ref(),
            }
            woken += 1;
        }
    }
}

/// Resolves every slot of a durable (or failed) batch, then wakes their waiters together with the appenders it
/// wakes, until none is left: the caller returns only when every waiter has been woken, so the next batch it forms
/// holds everyone who appended again meanwhile.
pub(crate) fn complete_all(slots: Vec<Arc<Slot>>, result: Result<(), Arc<str>>) {
    let fanout = Arc::new(Fanout { waiters: OnceLock::new(), next: AtomicUsize::new(0) });
    let waiters: Vec<Waiter> = slots
        .iter()
        .map(|slot| {
            let mut inner = slot.lock();
            inner.result = Some(result.clone());
            inner.fanout = Some(Arc::clone(&fanout));
            std::mem::replace(&mut inner.waiter, Waiter::None)
        })
        .collect();
    let _ = fanout.waiters.set(waiters);
    fanout.wake_some(usize::MAX);
}

/// Shared between an appender and the I/O thread.
pub(crate) struct Slot {
    inner: Mutex<Inner>,
}

impl Slot {
    pub(crate) fn new() -> Arc<Slot> {
        Arc::new(Slot { inner: Mutex::new(Inner { result: None, waiter: Waiter::None, fanout: None }) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot that is already resolved `Ok` (an empty append).
    pub(crate) fn done() -> Arc<Slot> {
        let slot = Slot::new();
        slot.lock().result = Some(Ok(()));
        slot
    }
}

/// Resolves when the append it came from is durable.
#[must_use = "an append is not known to be durable until its completion resolves"]
pub struct Completion {
    slot: Arc<Slot>,
    appended: Appended,
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion").field("appended", &self.appended).finish()
    }
}

fn into_result(r: Result<(), Arc<str>>, appended: Appended) -> Result<Appended> {
    r.map(|()| appended).map_err(|msg| Error::Poisoned(msg.to_string()))
}

impl Completion {
    pub(crate) fn new(slot: Arc<Slot>, appended: Appended) -> Self {
        Completion { slot, appended }
    }

    /// Blocks the calling thread until the append is durable.
    ///
    /// # Durability
    /// On `Ok`, every record of the append is on stable storage and will be replayed after a crash.
    pub fn wait(self) -> Result<Appended> {
        let mut inner = self.slot.lock();
        loop {
            if let Some(r) = inner.result.take() {
                let fanout = inner.fanout.take();
                drop(inner);
                if let Some(f) = fanout {
                    f.wake_some(FANOUT);
                }
                return into_result(r, self.appended);
            }
            inner.waiter = Waiter::Thread(std::thread::current());
            drop(inner);
            std::thread::park();
            inner = self.slot.lock();
        }
    }

    /// Whether the outcome is known (without blocking).
    pub fn is_done(&self) -> bool {
        self.slot.lock().result.is_some()
    }
}

impl Future for Completion {
    type Output = Result<Appended>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let appended = self.appended;
        let mut inner = self.slot.lock();
        match inner.result.take() {
            Some(r) => {
                let fanout = inner.fanout.take();
                drop(inner);
                if let Some(f) = fanout {
                    f.wake_some(FANOUT);
                }
                Poll::Ready(into_result(r, appended))
            }
            None => {
                inner.waiter = Waiter::Task(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
