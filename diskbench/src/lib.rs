//! `diskbench`: the probe an operator runs as `diskbench /var/lib/etcd` before deploying etcd or ferrokv.
//!
//! It replays the two I/O streams of an etcd member on the target directory's disk — the WAL (small sequential
//! appends, each made durable) and the backend (B+tree commits of random pages) — plus group commit and bulk
//! bandwidth, then holds the figures against etcd's published guidance and prints a verdict.
//!
//! Reading the source: [`cli`] turns arguments into a validated [`job::Job`]; [`run`] checks the directory, gathers
//! [`sysinfo`] context, creates the [`workdir::WorkDir`] and runs each [`workload`] with each [`engine`], timing
//! every flush into a [`hist::Histogram`]; [`verdict`] applies etcd's thresholds; [`report`] prints the result.
//! The binary (`main.rs`) only wires the signal handler and the exit status (0 pass, 1 fail, 2 error).

pub mod cli;
pub mod control;
pub mod engine;
pub mod error;
pub mod hist;
pub mod job;
pub mod report;
pub mod sysinfo;
pub mod units;
pub mod verdict;
pub mod workdir;
pub mod workload;

pub use error::{Error, Result};

/// Runs a whole probe: checks, context, every workload, verdict. The work directory is gone when this returns,
/// whether it returns `Ok` or `Err`.
pub fn run(job: job::Job, ctl: &control::Control) -> Result<report::Report> {
    workdir::check_target(&job.dir)?;
    let context = sysinfo::inspect(&job.dir);
    let results = {
        let work = workdir::WorkDir::create(&job.dir, job.space_needed())?;
        workload::run_all(&job, &work, ctl)?
    };
    let verdict = verdict::judge(&results);
    Ok(report::Report::new(job, context, results, verdict))
}
