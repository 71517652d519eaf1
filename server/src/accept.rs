//! Waiting after a failed accept, for the client and peer listeners alike.
//!
//! An accept that fails for want of a resource (out of descriptors: EMFILE, ENFILE; out of buffers or memory:
//! ENOBUFS, ENOMEM) fails again at once while the want lasts, so a listener that retries without waiting spins a
//! core and starves the connections it already serves. This one waits 5 ms after the first failure, doubling up to
//! 1 s, and starts again from 5 ms after a success, as Go's servers (and so etcd's listeners) do. Connections that
//! arrive meanwhile wait in the kernel's backlog, and are served once descriptors are free again.
//!
//! Every failure is logged (at most one a second while it lasts) with the listener and the error, and counted.

use std::time::Duration;

use crate::logging::log;

const FIRST: Duration = Duration::from_millis(5);
const LONGEST: Duration = Duration::from_secs(1);

/// One listener's retry state.
#[derive(Debug)]
pub struct Backoff {
    listener: String,
    delay: Option<Duration>,
}

impl Backoff {
    /// The state for the listener named `listener` (its address, for the log).
    pub fn new(listener: impl Into<String>) -> Backoff {
        Backoff { listener: listener.into(), delay: None }
    }

    /// An accept succeeded: the next failure waits the shortest time again.
    pub fn succeeded(&mut self) {
        self.delay = None;
    }

    /// An accept failed with `error`: logs it and returns how long to wait before the next.
    pub fn failed(&mut self, error: &std::io::Error) -> Duration {
        let delay = self.delay.map_or(FIRST, |d| (d * 2).min(LONGEST));
        self.delay = Some(delay);
        let fields =
            [("address", self.listener.clone()), ("error", error.to_string()), ("retry-in", format!("{delay:?}"))];
        log("warn", "failed to accept a connection; retrying", &fields);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_a_second_and_start_again_after_a_success() {
        let mut b = Backoff::new("127.0.0.1:2379");
        let e = std::io::Error::from_raw_os_error(libc::EMFILE);
        let waits: Vec<u128> = (0..10).map(|_| b.failed(&e).as_millis()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(&e), FIRST);
    }
}
