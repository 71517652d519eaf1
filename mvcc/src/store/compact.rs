//! Compaction: drop every revision superseded at or before a revision, from the index and from the file, in
//! bounded steps.
//!
//! Steps, each durable or repeatable:
//! 1. `scheduled_compact = rev` is committed durably. From then on reads below `rev` fail, and a crash resumes
//!    from step 2 at open.
//! 2. Under the B+tree writer lock (so no write transaction holds a stale copy of an index entry), every key's
//!    history is pruned, collecting the revisions `<= rev` still needed ("keep").
//! 3. Revisions `<= rev` not kept are deleted, `compaction_batch` per commit; reads and writes run between the
//!    commits. Deleting in revision order keeps a resumed compaction's keep set the same.
//! 4. `finished_compact = rev` is committed durably.

use std::collections::HashSet;
use std::ops::Bound;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::failpoints as fp;
use crate::revision::Revision;
use crate::store::{FINISHED_COMPACT, SCHEDULED_COMPACT, Store, lock_read, lock_write};

/// What a compaction did and how long it held writers up (etcd's compaction metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactStats {
    /// Step 2: pruning the in-memory index under the writer lock.
    pub index_pause: Duration,
    /// Step 3: each batch's deletions and commit, under the writer lock.
    pub batch_pauses: Vec<Duration>,
    /// Revisions deleted from the file.
    pub deleted: u64,
    /// Steps 1 to 4 (2 to 4 for a resumed compaction).
    pub total: Duration,
}

impl Store {
    /// etcd's Compact: reads below `rev` fail from now on; superseded revisions are deleted in bounded steps.
    ///
    /// # Durability
    /// The compaction point is durable before anything is deleted; on `Ok` the compaction is complete.
    pub fn compact(&self, rev: i64) -> Result<CompactStats> {
        let started = Instant::now();
        {
            let st = lock_read(&self.state);
            if rev <= st.compact {
                return Err(Error::Compacted);
            }
            if rev > st.current {
                return Err(Error::FutureRev);
            }
        }
        let mut w = self.db.write()?;
        w.put(self.meta, SCHEDULED_COMPACT, &rev.to_le_bytes())?;
        fp::COMPACT_BEFORE_COMMIT_SCHEDULED.eval();
        w.commit_durable()?;
        fp::COMPACT_AFTER_COMMIT_SCHEDULED.eval();
        let mut stats = self.compact_resume(rev)?;
        stats.total = started.elapsed();
        Ok(stats)
    }

    /// Steps 2 to 4 (also run at open after a crash interrupted a compaction).
    pub(crate) fn compact_resume(&self, rev: i64) -> Result<CompactStats> {
        let started = Instant::now();
        let mut stats = CompactStats::default();
        let keep: HashSet<Revision> = {
            let _writer = self.db.write()?;
            let paused = Instant::now();
            let mut st = lock_write(&self.state);
            st.compact = st.compact.max(rev);
            let mut keep = Vec::new();
            for ki in st.index.values_mut() {
                ki.compact(rev, &mut keep);
            }
            st.index.retain(|_, ki| !ki.is_empty());
            stats.index_pause = paused.elapsed();
            keep.into_iter().collect()
        };
        let end = Revision::new(rev + 1, 0).encode();
        let mut from = Revision::default().encode();
        loop {
            let (batch, next) = {
                let r = self.db.read();
                let mut batch = Vec::new();
                let mut next = None;
                for item in r.range(self.key, Bound::Included(&from), Bound::Excluded(&end))? {
                    let (k, _) = item?;
                    let rev = Revision::decode(k).unwrap_or_default();
                    if batch.len() == self.compaction_batch {
                        next = Some(rev.encode());
                        break;
                    }
                    if !keep.contains(&rev) {
                        batch.push(rev);
                    }
                }
                (batch, next)
            };
            if !batch.is_empty() {
                let mut w = self.db.write()?;
                let paused = Instant::now();
                for r in &batch {
                    w.delete(self.key, &r.encode())?;
                }
                fp::COMPACT_BEFORE_COMMIT_BATCH.eval();
                w.commit()?;
                stats.batch_pauses.push(paused.elapsed());
                stats.deleted += batch.len() as u64;
                fp::COMPACT_AFTER_COMMIT_BATCH.eval();
            }
            match next {
                Some(n) => from = n,
                None => break,
            }
        }
        let mut w = self.db.write()?;
        w.put(self.meta, FINISHED_COMPACT, &rev.to_le_bytes())?;
        fp::COMPACT_BEFORE_SET_FINISHED.eval();
        w.commit_durable()?;
        fp::COMPACT_AFTER_SET_FINISHED.eval();
        stats.total = started.elapsed();
        Ok(stats)
    }
}
