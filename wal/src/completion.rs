//! The completion of one append: resolves once every record of the append is durable, or with the error that
//! poisoned the WAL. Usable from a thread ([`Completion::wait`]) or an async task (it is a `Future`).
//!
//! **Concurrency**: one [`Slot`] per append call, shared by the appender and the I/O thread. The I/O thread
//! stores the result, then wakes whichever waiter is registered (a parked thread or a task's waker): one wake-up
//! per appender, never a broadcast.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
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
}

/// Shared between an appender and the I/O thread.
pub(crate) struct Slot {
    inner: Mutex<Inner>,
}

impl Slot {
    pub(crate) fn new() -> Arc<Slot> {
        Arc::new(Slot { inner: Mutex::new(Inner { result: None, waiter: Waiter::None }) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the outcome and wakes the waiter. Called once, by the I/O thread.
    pub(crate) fn complete(&self, result: Result<(), Arc<str>>) {
        let waiter = {
            let mut inner = self.lock();
            inner.result = Some(result);
            std::mem::replace(&mut inner.waiter, Waiter::None)
        };
        match waiter {
            Waiter::None => {}
            Waiter::Thread(t) => t.unpark(),
            Waiter::Task(w) => w.wake(),
        }
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
            Some(r) => Poll::Ready(into_result(r, appended)),
            None => {
                inner.waiter = Waiter::Task(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
