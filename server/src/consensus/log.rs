//! The Raft log over the WAL: raft-rs's entry cache (`MemStorage`) rebuilt from the WAL at start, every Ready's
//! entries and hard state made durable in the WAL before Raft is told they are, and log compaction.
//!
//! **Invariants**
//! 1. The WAL is the source of truth: the cache holds exactly the WAL's entries after its newest snapshot marker,
//!    and an entry or hard state reaches the cache only after the WAL write holding it is durable.
//! 2. **Compaction.** When the apply loop has made mvcc durable up to index A (every `--snapshot-count` entries),
//!    the cache drops the entries below A, a snapshot marker for A is made durable, and only then are whole WAL
//!    segments below A released. At start the newest marker seeds the cache (first index A + 1): mvcc, the state
//!    machine's snapshot, already holds everything up to it, and the commit index is at least A.
//! 3. A snapshot installed from the leader becomes the start of the log the same way: marker first, then cache.
//!
//! **Threading**: owned by the Raft thread; the `MemStorage` handle it shares with the `RawNode` is the same cache.

use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::Storage;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::storage::MemStorage;

use crate::error::Error;

/// The Raft log: the WAL and the cache Raft reads.
pub struct RaftLog {
    wal: wal::Wal,
    cache: MemStorage,
}

impl std::fmt::Debug for RaftLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftLog")
            .field("first", &self.cache.first_index())
            .field("last", &self.cache.last_index())
            .finish()
    }
}

/// Converts a raft entry to the WAL record that persists it.
fn wal_entry(e: &Entry) -> Result<Vec<u8>, Error> {
    e.write_to_bytes().map_err(|source| Error::Encoding { what: "encode raft entry".into(), source })
}

impl RaftLog {
    /// Rebuilds the cache from `wal` (see invariant 2), with Raft's configuration `conf`.
    pub fn open(wal: wal::Wal, conf: &ConfState) -> Result<Self, Error> {
        let cache = MemStorage::new_with_conf_state(conf.clone());
        let replay = wal.replay(wal::RaftIndex(1))?;
        let floor = replay.snapshot.map_or(0, |s| s.index.0);
        if let Some(snap) = replay.snapshot {
            let mut meta = SnapshotMetadata::default();
            meta.set_index(snap.index.0);
            meta.set_term(snap.term.0);
            meta.set_conf_state(conf.clone());
            let mut snapshot = Snapshot::default();
            snapshot.set_metadata(meta);
            cache.wl().apply_snapshot(snapshot).map_err(Error::raft("raft snapshot"))?;
        }
        let mut entries = Vec::with_capacity(replay.entries.len());
        for e in replay.entries.iter().filter(|e| e.index.0 > floor) {
            let mut entry = Entry::default();
            entry
                .merge_from_bytes(&e.data)
                .map_err(|source| Error::Encoding { what: format!("decode raft entry {}", e.index), source })?;
            entries.push(entry);
        }
        {
            let mut w = cache.wl();
            w.append(&entries).map_err(Error::raft("rebuild the raft log"))?;
            if let Some(hs) = replay.hard_state {
                let mut h = HardState::default();
                h.set_term(hs.term.0.max(w.hard_state().term));
                h.set_vote(hs.vote);
                // Everything up to the snapshot marker was committed and applied before it was written.
                h.set_commit(hs.commit.0.max(floor));
                w.set_hardstate(h);
            }
        }
        Ok(RaftLog { wal, cache })
    }

    /// The cache, for the `RawNode` (a handle on the same entries).
    pub fn cache(&self) -> MemStorage {
        self.cache.clone()
    }

    /// The commit index persisted with the last hard state (later advances live only in memory).
    pub fn persisted_commit(&self) -> u64 {
        self.cache.initial_state().map(|s| s.hard_state.commit).unwrap_or(0)
    }

    /// Makes a Ready's `entries` and hard state durable in the WAL, then hands them to the cache (invariant 1).
    /// Returns how long the WAL write took (a slow disk shows here).
    pub fn persist(&mut self, entries: &[Entry], hs: Option<HardState>) -> Result<Duration, Error> {
        if entries.is_empty() && hs.is_none() {
            return Ok(Duration::ZERO);
        }
        let data: Vec<(u64, u64, Vec<u8>)> =
            entries.iter().map(|e| Ok((e.index, e.term, wal_entry(e)?))).collect::<Result<_, Error>>()?;
        let mut records: Vec<wal::Record<'_>> = data
            .iter()
            .map(|(i, t, d)| wal::Record::Entry { index: wal::RaftIndex(*i), term: wal::Term(*t), data: d })
            .collect();
        if let Some(h) = &hs {
            records.push(wal::Record::HardState(wal::HardState {
                term: wal::Term(h.term),
                vote: h.vote,
                commit: wal::RaftIndex(h.commit),
            }));
        }
        let started = Instant::now();
        self.wal.append_durable(&records)?;
        let took = started.elapsed();
        let mut w = self.cache.wl();
        w.append(entries).map_err(Error::raft("append to the raft log"))?;
        if let Some(h) = hs {
            w.set_hardstate(h);
        }
        Ok(took)
    }

    /// Records a commit index Raft advanced in memory (a LightReady's).
    pub fn set_commit(&mut self, commit: u64) {
        self.cache.wl().mut_hard_state().set_commit(commit);
    }

    /// Drops the log below `index` (invariant 2). The marker is durable before any segment goes. An index at or
    /// below the log's start (a compaction asked for before a snapshot from the leader moved the start past it)
    /// changes nothing.
    pub fn compact(&mut self, index: u64) -> Result<(), Error> {
        if index <= self.cache.first_index().unwrap_or(1) {
            return Ok(());
        }
        let term = self.cache.term(index).map_err(Error::raft(format!("raft term of {index}")))?;
        self.cache.wl().compact(index).map_err(Error::raft("raft compact"))?;
        self.mark(index, term)?;
        self.wal.release_to(wal::RaftIndex(index))?;
        Ok(())
    }

    /// Makes the installed `snap` the start of the log: its marker in the WAL, then the cache (invariant 3).
    pub fn install(&mut self, snap: Snapshot) -> Result<(), Error> {
        self.mark(snap.get_metadata().index, snap.get_metadata().term)?;
        self.cache.wl().apply_snapshot(snap).map_err(Error::raft("raft snapshot"))
    }

    /// Records Raft's configuration after a change.
    pub fn set_conf_state(&mut self, cs: ConfState) {
        self.cache.wl().set_conf_state(cs);
    }

    /// The voters of the current configuration.
    pub fn voters(&self) -> Vec<u64> {
        self.cache.initial_state().map(|s| s.conf_state.voters).unwrap_or_default()
    }

    fn mark(&mut self, index: u64, term: u64) -> Result<(), Error> {
        let marker = wal::Record::Snapshot(wal::SnapshotMarker { index: wal::RaftIndex(index), term: wal::Term(term) });
        self.wal.append_durable(&[marker])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry { index, term, data: format!("e{index}").into_bytes().into(), ..Default::default() }
    }

    fn conf() -> ConfState {
        ConfState { voters: vec![1], ..Default::default() }
    }

    /// What was persisted comes back at the next start; after a compaction the log starts past the marker, the
    /// commit index is at least the marker, and the entries after it are still there.
    #[test]
    fn persisted_entries_and_compaction_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let mut log = RaftLog::open(wal::Wal::create(&path, wal::Config::default()).unwrap(), &conf()).unwrap();
        let entries: Vec<Entry> = (1..=10).map(|i| entry(i, 1)).collect();
        let mut hs = HardState::default();
        hs.set_term(1);
        hs.set_commit(4);
        log.persist(&entries, Some(hs)).unwrap();
        assert_eq!(log.cache().last_index().unwrap(), 10);
        log.compact(6).unwrap();
        assert_eq!(log.cache().first_index().unwrap(), 6, "the cache keeps the entry at the compaction index");
        drop(log);

        let log = RaftLog::open(wal::Wal::open(&path, wal::Config::default()).unwrap(), &conf()).unwrap();
        let cache = log.cache();
        assert_eq!((cache.first_index().unwrap(), cache.last_index().unwrap()), (7, 10));
        assert_eq!(log.persisted_commit(), 6, "everything up to the marker was committed");
        let got = cache.entries(7, 11, None, raft::GetEntriesContext::empty(false)).unwrap();
        assert_eq!(
            got.iter().map(|e| e.data.to_vec()).collect::<Vec<_>>(),
            (7..=10).map(|i| format!("e{i}").into_bytes()).collect::<Vec<_>>()
        );
        assert_eq!(cache.term(6).unwrap(), 1);
    }

    /// A compaction at or below the log's start changes nothing. It can come late: the apply thread asked for it
    /// before a snapshot from the leader moved the start past it. (It was a fatal error of the Raft thread.)
    #[test]
    fn a_late_compaction_below_the_start_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RaftLog::open(wal::Wal::create(dir.path(), wal::Config::default()).unwrap(), &conf()).unwrap();
        log.persist(&[entry(1, 1), entry(2, 1), entry(3, 1)], None).unwrap();
        log.compact(3).unwrap();
        log.compact(2).unwrap();
        assert_eq!(log.cache().first_index().unwrap(), 3);
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 50;
        snap.mut_metadata().term = 2;
        snap.mut_metadata().set_conf_state(conf());
        log.install(snap).unwrap();
        log.compact(10).unwrap();
        assert_eq!(log.cache().first_index().unwrap(), 51);
    }
}
