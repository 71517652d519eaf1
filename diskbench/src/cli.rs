//! The command line: `diskbench [OPTIONS] [DIR]`, turned into a validated [`Job`].
//!
//! Parse errors are reported as one line (`diskbench: ...`) with exit status 2, like every other error; `--help`
//! and `--version` print as usual and exit 0.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::engine::EngineKind;
use crate::error::{Error, Result};
use crate::job::{FileMode, Job, Workload};
use crate::units::{parse_duration, parse_size};

const AFTER_HELP: &str = "\
Exit status: 0 the disk passes etcd's guidance (minimum or recommended), 1 it fails, 2 error.
Sizes take k, m, g suffixes (powers of 1024, as in fio); durations take ms, s, m.
The line 'INFO: 99th percentile of fsync is N ns' is printed for tooling that greps for it
(on stderr with --json, so stdout stays pure JSON).";

/// A fio-grade probe that tells whether a disk is fit for etcd (and ferrokv).
#[derive(Debug, Parser)]
#[command(name = "diskbench", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Directory to probe; diskbench works in a fresh subdirectory of it and removes it on exit.
    #[arg(default_value = "/var/lib/etcd")]
    pub dir: PathBuf,

    /// Workloads to run (comma-separated).
    #[arg(short, long, value_enum, value_delimiter = ',', default_value = "wal,group-commit,backend,bandwidth")]
    pub workload: Vec<Workload>,

    /// Engines to measure each workload with (comma-separated).
    #[arg(short, long, value_enum, value_delimiter = ',', default_value = "sync,uring")]
    pub engine: Vec<EngineKind>,

    /// WAL append size.
    #[arg(long, value_parser = parse_size, default_value = "2300")]
    pub bs: u64,

    /// Bytes each WAL run writes [default: 22m, 4m with --quick].
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,

    /// Make every run time-based, lasting this long [default: WAL runs by --size; others 2s, 0.5s with --quick].
    #[arg(long, value_parser = parse_duration)]
    pub runtime: Option<Duration>,

    /// WAL file layouts to measure (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "growing,preallocated")]
    pub file_mode: Vec<FileMode>,

    /// Group-commit writer counts (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub writers: Vec<u32>,

    /// Preallocated segment the group-commit workload cycles through [default: 64m, 16m with --quick].
    #[arg(long, value_parser = parse_size)]
    pub segment_size: Option<u64>,

    /// Random 4 KiB pages written per backend commit.
    #[arg(long, default_value_t = 16)]
    pub pages_per_commit: u32,

    /// Size of the backend's page file [default: 64m, 16m with --quick].
    #[arg(long, value_parser = parse_size)]
    pub backend_file_size: Option<u64>,

    /// Bytes the bandwidth workload writes [default: 256m, 64m with --quick].
    #[arg(long, value_parser = parse_size)]
    pub bandwidth_size: Option<u64>,

    /// Cap WAL appends at this many per second (like fio's rate_iops).
    #[arg(long)]
    pub rate_iops: Option<u32>,

    /// A short run (under 10 s on a fast disk): smaller files, 0.5 s time-based runs.
    #[arg(long)]
    pub quick: bool,

    /// Print every figure and the verdict as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Never draw progress bars (they are drawn only when stderr is a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

fn dedup<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

impl Cli {
    /// Parses `args` (program name first). `Ok(Err(e))` is help or version output for clap to print.
    pub fn parse_args<I, T>(args: I) -> Result<std::result::Result<Cli, clap::Error>>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        match Cli::try_parse_from(args) {
            Ok(cli) => Ok(Ok(cli)),
            Err(e)
                if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion) =>
            {
                Ok(Err(e))
            }
            Err(e) => Err(Error::Usage(one_line(&e))),
        }
    }

    /// Applies the --quick defaults, then validates.
    pub fn into_job(self) -> Result<Job> {
        let q = self.quick;
        let job = Job {
            dir: self.dir,
            workloads: dedup(self.workload),
            engines: dedup(self.engine),
            bs: self.bs,
            size: self.size.unwrap_or(if q { 4 << 20 } else { 22 << 20 }),
            runtime: self.runtime,
            timed_run: if q { Duration::from_millis(500) } else { Duration::from_secs(2) },
            file_modes: dedup(self.file_mode),
            writers: dedup(self.writers),
            segment_size: self.segment_size.unwrap_or(if q { 16 << 20 } else { 64 << 20 }),
            pages_per_commit: self.pages_per_commit,
            backend_file_size: self.backend_file_size.unwrap_or(if q { 16 << 20 } else { 64 << 20 }),
            bandwidth_size: self.bandwidth_size.unwrap_or(if q { 64 << 20 } else { 256 << 20 }),
            rate_iops: self.rate_iops,
            quick: q,
        };
        job.validate()?;
        Ok(job)
    }
}

/// clap's message without its "error: " prefix, usage block and hints, on one line.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
    first.trim().trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(args: &[&str]) -> Result<Job> {
        let argv = std::iter::once("diskbench").chain(args.iter().copied());
        match Cli::parse_args(argv)? {
            Ok(cli) => cli.into_job(),
            Err(e) => panic!("unexpected help output: {e}"),
        }
    }

    #[test]
    fn defaults_are_the_etcd_recipe() {
        let j = job(&[]).unwrap();
        assert_eq!(j.dir, PathBuf::from("/var/lib/etcd"));
        assert_eq!(j.bs, 2300);
        assert_eq!(j.size, 22 << 20);
        assert_eq!(j.engines, vec![EngineKind::Sync, EngineKind::Uring]);
        assert_eq!(j.workloads.len(), 4);
        assert_eq!(j.file_modes, vec![FileMode::Growing, FileMode::Preallocated]);
        assert_eq!(j.writers, vec![1, 8, 64]);
        assert_eq!(j.runtime, None);
    }

    #[test]
    fn quick_shrinks_defaults_but_not_explicit_values() {
        let j = job(&["--quick", "/d"]).unwrap();
        assert_eq!(j.size, 4 << 20);
        assert_eq!(j.timed(), Duration::from_millis(500));
        let j = job(&["--quick", "--size", "8m", "/d"]).unwrap();
        assert_eq!(j.size, 8 << 20);
    }

    #[test]
    fn lists_and_units_parse() {
        let j = job(&["-w", "backend,wal,wal", "-e", "dsync", "--bs", "8k", "--runtime", "1500ms", "/x"]).unwrap();
        assert_eq!(j.workloads, vec![Workload::Wal, Workload::Backend]);
        assert_eq!(j.engines, vec![EngineKind::Dsync]);
        assert_eq!(j.bs, 8192);
        assert_eq!(j.timed(), Duration::from_millis(1500));
    }

    #[test]
    fn bad_arguments_are_one_line_usage_errors() {
        for args in [
            &["--size", "abc"][..],
            &["--bs", "0"],
            &["--size", "1k", "--bs", "2k"],
            &["--runtime", "0s"],
            &["--runtime", "soon"],
            &["--engine", "spdk"],
            &["--workload", "random"],
            &["--writers", "0"],
            &["--rate-iops", "-3"],
            &["--no-such-flag"],
            &["a", "b"],
        ] {
            match job(args) {
                Err(Error::Usage(msg)) => {
                    assert!(!msg.contains('\n') && !msg.is_empty(), "{args:?}: {msg:?}");
                    assert!(!msg.starts_with("error:"), "{args:?}: {msg:?}");
                }
                other => panic!("{args:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn help_and_version_are_not_errors() {
        assert!(matches!(Cli::parse_args(["diskbench", "--help"]), Ok(Err(_))));
        assert!(matches!(Cli::parse_args(["diskbench", "--version"]), Ok(Err(_))));
    }
}
