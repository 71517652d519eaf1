//! The backend's sync thread: keeps `--backend-batch-interval` beside the apply thread.
//!
//! The store is opened with `SyncPolicy::background`: a commit on the apply thread writes its pages and goes on,
//! and this thread, every tick, makes the latest commit durable once the interval has passed since the first
//! unsynced one (`Db::sync_if_due`, which writes while the apply thread keeps committing). So the apply thread
//! never waits out the two fdatasyncs of the store's periodic sync, which etcd's backend holds its batch lock
//! through. The WAL stays the source of truth: a crash loses at most the unsynced commits, which a restart
//! replays from it.
//!
//! Every second it also drops the store's mapped pages from the member's resident set (`Db::forget_resident`):
//! the page cache keeps them, and the next read maps the hot ones again. Otherwise every page version ever read
//! stays mapped, and the RSS grows to the store file's size.
//!
//! **Threading.** One thread, scoped to the apply thread's run. It reads the store slot at each tick, so a
//! snapshot that replaces the store is synced from then on. A failure poisons the store (nothing commits on top
//! of it), ends this thread, and is handed to the apply thread, which ends the member with it (and logs it).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::apply::store::StoreSlot;

/// Between two looks at the store's sync policy: at most this, and at most the interval itself.
const TICK: Duration = Duration::from_millis(10);
/// Between two drops of the store's mapped pages from the resident set.
const FORGET: Duration = Duration::from_secs(1);

/// The sync thread's shared state.
#[derive(Default)]
pub(crate) struct Syncer {
    stop: AtomicBool,
    failed: Mutex<Option<mvcc::Error>>,
}

impl Syncer {
    /// The thread's body: syncs the current store when due until [`Syncer::stop`] or a failure.
    pub(crate) fn run(&self, stores: &StoreSlot) {
        let mut forgot = Some(std::time::Instant::now());
        while !self.stop.load(Ordering::Acquire) {
            if forgot.is_some_and(|at| at.elapsed() >= FORGET) {
                // Only the resident set is at stake: a failure is logged once, and the pages stay mapped.
                forgot = match stores.get().db().forget_resident() {
                    Ok(()) => Some(std::time::Instant::now()),
                    Err(e) => {
                        let fields = [("error", e.to_string())];
                        crate::logging::log("warn", "failed to drop the backend's mapped pages from memory", &fields);
                        None
                    }
                };
            }
            let interval = stores.get().db().sync_policy().max_delay;
            std::thread::sleep(interval.clamp(Duration::from_millis(1), TICK));
            if let Err(e) = stores.get().db().sync_if_due() {
                *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                return;
            }
        }
    }

    /// Ends the thread within a tick.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// The failure that ended the thread, once.
    pub(crate) fn failure(&self) -> Option<mvcc::Error> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
