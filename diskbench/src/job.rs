//! What a run measures: the validated job spec built from the command line.
//!
//! **Invariants** (established by [`Job::validate`], relied on by every workload):
//! 1. Every size and count is non-zero; `bs <= size`; a group-commit batch (`max(writers) * bs`) fits in a segment;
//!    a backend commit's pages fit in the backend file beside its two meta pages.
//! 2. At least one workload and one engine are selected, each once, in a fixed order.
//! 3. [`Job::space_needed`] bounds the bytes on disk at any moment: runs execute one at a time and each removes its
//!    file before the next starts.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::engine::EngineKind;
use crate::error::{Error, Result};

/// A workload, in the order runs execute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// etcd's WAL: sequential appends of --bs, fdatasync after each, queue depth 1.
    Wal,
    /// Concurrent writers batched under one write + one fdatasync.
    GroupCommit,
    /// B+tree commit: random 4 KiB pages, fdatasync, meta page, fdatasync.
    Backend,
    /// Large sequential writes, fsync at the end.
    Bandwidth,
}

/// How the WAL workload's file is laid out before the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum FileMode {
    /// A new, empty file that grows with each append (each fdatasync also commits the new size).
    Growing,
    /// A file allocated up front with fallocate, as fio's etcd recipe and etcd's WAL segments are.
    Preallocated,
    /// A file written and synced before the run, as a recycled WAL segment is.
    Overwrite,
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Workload::Wal => "wal",
            Workload::GroupCommit => "group-commit",
            Workload::Backend => "backend",
            Workload::Bandwidth => "bandwidth",
        })
    }
}

impl std::fmt::Display for FileMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileMode::Growing => "growing",
            FileMode::Preallocated => "preallocated",
            FileMode::Overwrite => "overwrite",
        })
    }
}

/// Size of a backend page, and of its meta page.
pub const PAGE_SIZE: u64 = 4096;
/// Block size of the bandwidth workload.
pub const BANDWIDTH_BLOCK: u64 = 1 << 20;
/// Slack kept free beyond the largest file, for file-system metadata.
pub const SPACE_MARGIN: u64 = 16 << 20;

/// The validated spec of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub dir: PathBuf,
    pub workloads: Vec<Workload>,
    pub engines: Vec<EngineKind>,
    /// WAL append size.
    pub bs: u64,
    /// WAL file size: the amount written by a size-based run.
    pub size: u64,
    /// When set, every run lasts this long (WAL runs wrap around their file, as fio's time_based does).
    pub runtime: Option<Duration>,
    /// Length of each group-commit and backend run when `runtime` is not set.
    pub timed_run: Duration,
    pub file_modes: Vec<FileMode>,
    pub writers: Vec<u32>,
    /// Size of the preallocated segment the group-commit workload cycles through.
    pub segment_size: u64,
    pub pages_per_commit: u32,
    pub backend_file_size: u64,
    pub bandwidth_size: u64,
    /// Optional cap on WAL appends per second.
    pub rate_iops: Option<u32>,
    pub quick: bool,
}

fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

impl Job {
    /// Checks the invariants in the module header.
    pub fn validate(&self) -> Result<()> {
        if self.workloads.is_empty() {
            return Err(usage("--workload: select at least one workload"));
        }
        if self.engines.is_empty() {
            return Err(usage("--engine: select at least one engine"));
        }
        if self.bs == 0 || self.bs > 64 << 20 {
            return Err(usage(format!("--bs must be between 1 B and 64 MiB, not {}", self.bs)));
        }
        if self.size == 0 {
            return Err(usage("--size must be greater than 0"));
        }
        if self.bs > self.size {
            return Err(usage(format!("--bs ({}) is larger than --size ({})", self.bs, self.size)));
        }
        if self.runtime.is_some_and(|d| d.is_zero()) || self.timed_run.is_zero() {
            return Err(usage("--runtime must be greater than 0"));
        }
        if self.file_modes.is_empty() {
            return Err(usage("--file-mode: select at least one mode"));
        }
        if self.writers.is_empty() || self.writers.iter().any(|&w| w == 0 || w > 4096) {
            return Err(usage("--writers: each count must be between 1 and 4096"));
        }
        let max_writers = u64::from(self.writers.iter().copied().max().unwrap_or(1));
        if self.segment_size < max_writers * self.bs {
            return Err(usage(format!(
                "--segment-size ({}) cannot hold one batch of {max_writers} writers x --bs {}",
                self.segment_size, self.bs
            )));
        }
        if self.pages_per_commit == 0 || u64::from(self.pages_per_commit) + 2 > self.backend_file_size / PAGE_SIZE {
            return Err(usage(format!(
                "--pages-per-commit must be between 1 and {} for a --backend-file-size of {}",
                (self.backend_file_size / PAGE_SIZE).saturating_sub(2),
                self.backend_file_size
            )));
        }
        if self.bandwidth_size < BANDWIDTH_BLOCK {
            return Err(usage("--bandwidth-size must be at least 1 MiB"));
        }
        if self.rate_iops == Some(0) {
            return Err(usage("--rate-iops must be greater than 0"));
        }
        Ok(())
    }

    /// The most bytes the selected workloads have on disk at once, plus [`SPACE_MARGIN`].
    pub fn space_needed(&self) -> u64 {
        let largest = self
            .workloads
            .iter()
            .map(|w| match w {
                Workload::Wal => self.size,
                Workload::GroupCommit => self.segment_size,
                Workload::Backend => self.backend_file_size,
                Workload::Bandwidth => self.bandwidth_size,
            })
            .max()
            .unwrap_or(0);
        largest.saturating_add(SPACE_MARGIN)
    }

    /// The duration of a time-based run (group-commit, backend, or any run when --runtime is set).
    pub fn timed(&self) -> Duration {
        self.runtime.unwrap_or(self.timed_run)
    }
}

#[cfg(test)]
pub(crate) fn sample() -> Job {
    Job {
        dir: PathBuf::from("/tmp"),
        workloads: vec![Workload::Wal, Workload::GroupCommit, Workload::Backend, Workload::Bandwidth],
        engines: vec![EngineKind::Sync],
        bs: 2300,
        size: 22 << 20,
        runtime: None,
        timed_run: Duration::from_secs(2),
        file_modes: vec![FileMode::Growing, FileMode::Preallocated],
        writers: vec![1, 8, 64],
        segment_size: 64 << 20,
        pages_per_commit: 16,
        backend_file_size: 64 << 20,
        bandwidth_size: 256 << 20,
        rate_iops: None,
        quick: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_is_valid_and_needs_its_largest_file() {
        let j = sample();
        j.validate().unwrap();
        assert_eq!(j.space_needed(), (256 << 20) + SPACE_MARGIN);
        let wal_only = Job { workloads: vec![Workload::Wal], ..sample() };
        assert_eq!(wal_only.space_needed(), (22 << 20) + SPACE_MARGIN);
    }

    #[test]
    fn nonsense_is_rejected_with_the_option_named() {
        let cases: Vec<(Job, &str)> = vec![
            (Job { bs: 0, ..sample() }, "--bs"),
            (Job { size: 0, ..sample() }, "--size"),
            (Job { bs: 4096, size: 1024, ..sample() }, "larger than --size"),
            (Job { runtime: Some(Duration::ZERO), ..sample() }, "--runtime"),
            (Job { writers: vec![0], ..sample() }, "--writers"),
            (Job { writers: vec![5000], ..sample() }, "--writers"),
            (Job { segment_size: 1000, ..sample() }, "--segment-size"),
            (Job { pages_per_commit: 0, ..sample() }, "--pages-per-commit"),
            (Job { pages_per_commit: 20_000, ..sample() }, "--pages-per-commit"),
            (Job { bandwidth_size: 1000, ..sample() }, "--bandwidth-size"),
            (Job { rate_iops: Some(0), ..sample() }, "--rate-iops"),
            (Job { workloads: vec![], ..sample() }, "--workload"),
            (Job { engines: vec![], ..sample() }, "--engine"),
            (Job { file_modes: vec![], ..sample() }, "--file-mode"),
        ];
        for (job, needle) in cases {
            let e = job.validate().unwrap_err().to_string();
            assert!(e.contains(needle), "{e:?} should name {needle}");
            assert!(!e.contains('\n'));
        }
    }
}
