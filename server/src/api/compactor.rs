//! etcd's automatic compaction (`--auto-compaction-mode`, `--auto-compaction-retention`), run by the leader only
//! and proposed through Raft like a client's Compact, with etcd's log lines ("starting auto periodic compaction",
//! "completed auto revision compaction", ...).
//!
//! - **Periodic** (retention P): the current revision is sampled every P/10 (P capped at one hour for the
//!   sampling and the retries), keeping the samples of the last P. Once P has passed since the last success (the
//!   start counts as one), the oldest sample is compacted: the store keeps at least P of history. After a first
//!   compaction, the next comes one capped period later; a failure is retried at the next sample.
//! - **Revision** (retention N): every 5 minutes, if the current revision minus N is positive and new, it is
//!   compacted: the store keeps the last N revisions.
//!
//! A follower samples too (so a new leader has the history of samples at once) but never compacts. A compaction
//! already done ("required revision has been compacted") counts as a success, as in etcd.
//!
//! **Threading**: one async task on the services' runtime; it only reads the store's revision and proposes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::apply::store::StoreSlot;
use crate::config::AutoCompaction;
use crate::consensus::view::ClusterView;
use crate::error::Error;
use crate::logging::log;
use crate::proposals::Proposer;
use crate::proto::etcdserverpb::CompactionRequest;
use crate::request::Op;

/// How often revision mode looks (etcd's `revInterval`).
pub const REVISION_INTERVAL: Duration = Duration::from_secs(300);

/// The sampling and retry interval of periodic mode: a tenth of the period, capped at one hour.
fn retry_interval(period: Duration) -> Duration {
    period.min(Duration::from_secs(3600)) / 10
}

/// Periodic mode's decisions, apart from the clock and the store: fed one sample per interval, says which revision
/// to compact, if any.
#[derive(Debug)]
pub struct Periodic {
    period: Duration,
    samples: VecDeque<i64>,
    keep: usize,
    last_success: Instant,
    /// How long after the last success the next compaction is due: the period before the first, then the capped
    /// period.
    wait: Duration,
}

impl Periodic {
    pub fn new(period: Duration, now: Instant) -> Self {
        let retry = retry_interval(period).max(Duration::from_millis(1));
        let keep = (period.as_nanos() / retry.as_nanos()) as usize + 1;
        Periodic { period, samples: VecDeque::new(), keep, last_success: now, wait: period }
    }

    /// Records the revision sampled now.
    pub fn sample(&mut self, revision: i64) {
        self.samples.push_back(revision);
        if self.samples.len() > self.keep {
            self.samples.pop_front();
        }
    }

    /// The revision to compact at `now`, if one is due (the oldest sample, about one period old).
    pub fn due(&mut self, now: Instant) -> Option<i64> {
        if now.duration_since(self.last_success) < self.wait {
            return None;
        }
        self.wait = self.period.min(Duration::from_secs(3600));
        self.samples.front().copied()
    }

    pub fn succeeded(&mut self, now: Instant) {
        self.last_success = now;
    }
}

/// Proposes a compaction at `revision`; an already compacted revision is a success.
async fn compact(proposer: &Proposer, revision: i64) -> Result<(), Error> {
    match proposer
        .propose(&crate::request::Caller::member(), &Op::Compaction(CompactionRequest { revision, physical: false }))
        .await
    {
        Ok(_) | Err(Error::Compacted) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The compactor's task: runs until the runtime stops.
pub async fn run(mode: AutoCompaction, proposer: Proposer, stores: Arc<StoreSlot>, cluster: ClusterView) {
    match mode {
        AutoCompaction::Periodic(period) => periodic(period, proposer, stores, cluster).await,
        AutoCompaction::Revision(keep) => revision(keep, proposer, stores, cluster).await,
    }
}

async fn periodic(period: Duration, proposer: Proposer, stores: Arc<StoreSlot>, cluster: ClusterView) {
    let retry = retry_interval(period);
    let mut state = Periodic::new(period, Instant::now());
    loop {
        state.sample(stores.get().current_revision());
        tokio::time::sleep(retry).await;
        if !cluster.is_leader() {
            continue;
        }
        let Some(rev) = state.due(Instant::now()) else { continue };
        let period_text = format!("{period:?}");
        log(
            "info",
            "starting auto periodic compaction",
            &[("revision", rev.to_string()), ("compact-period", period_text.clone())],
        );
        let started = Instant::now();
        match compact(&proposer, rev).await {
            Ok(()) => {
                let fields = [
                    ("revision", rev.to_string()),
                    ("compact-period", period_text),
                    ("took", format!("{:?}", started.elapsed())),
                ];
                log("info", "completed auto periodic compaction", &fields);
                state.succeeded(Instant::now());
            }
            Err(e) => {
                let fields = [
                    ("revision", rev.to_string()),
                    ("compact-period", period_text),
                    ("retry-interval", format!("{retry:?}")),
                    ("error", e.to_string()),
                ];
                log("warn", "failed auto periodic compaction", &fields);
            }
        }
    }
}

/// Revision mode's decision: the revision `keep` behind `current`, if positive and not compacted last time.
pub fn revision_due(current: i64, keep: i64, prev: i64) -> Option<i64> {
    let rev = current - keep;
    (rev > 0 && rev != prev).then_some(rev)
}

async fn revision(keep: i64, proposer: Proposer, stores: Arc<StoreSlot>, cluster: ClusterView) {
    let mut prev = 0;
    loop {
        tokio::time::sleep(REVISION_INTERVAL).await;
        if !cluster.is_leader() {
            continue;
        }
        let Some(rev) = revision_due(stores.get().current_revision(), keep, prev) else { continue };
        let fields = |extra: &[(&'static str, String)]| {
            let mut f = vec![("revision", rev.to_string()), ("revision-compaction-retention", keep.to_string())];
            f.extend_from_slice(extra);
            f
        };
        log("info", "starting auto revision compaction", &fields(&[]));
        let started = Instant::now();
        match compact(&proposer, rev).await {
            Ok(()) => {
                prev = rev;
                log(
                    "info",
                    "completed auto revision compaction",
                    &fields(&[("took", format!("{:?}", started.elapsed()))]),
                );
            }
            Err(e) => {
                let extra = [("retry-interval", format!("{REVISION_INTERVAL:?}")), ("error", e.to_string())];
                log("warn", "failed auto revision compaction", &fields(&extra));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_keeps_one_period_of_history() {
        let start = Instant::now();
        let period = Duration::from_secs(10);
        let mut p = Periodic::new(period, start);
        // Samples every second (a tenth of the period); revisions grow by 100 a second.
        let mut compacted = Vec::new();
        for s in 0..=30u64 {
            let now = start + Duration::from_secs(s);
            if let Some(rev) = p.due(now) {
                compacted.push((s, rev));
                p.succeeded(now);
            }
            p.sample(100 * s as i64);
        }
        // Nothing before one period; then, once per period, the oldest sample kept: one period and one interval old.
        assert_eq!(compacted, vec![(10, 0), (20, 900), (30, 1900)]);
    }

    #[test]
    fn revision_mode_keeps_the_last_n_revisions() {
        assert_eq!(revision_due(1000, 100, 0), Some(900));
        assert_eq!(revision_due(1000, 100, 900), None, "nothing new since the last compaction");
        assert_eq!(revision_due(50, 100, 0), None, "fewer revisions than kept");
    }

    #[test]
    fn a_long_period_samples_hourly_at_most() {
        let day = Duration::from_secs(24 * 3600);
        assert_eq!(retry_interval(day), Duration::from_secs(360));
        let p = Periodic::new(day, Instant::now());
        assert_eq!(p.keep, 241);
    }
}
