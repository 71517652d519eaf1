//! Helpers for diskbench's end-to-end tests: running the binary with a time bound, and tmpfs mounts.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The diskbench binary built for this test run.
pub fn diskbench() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_diskbench"));
    cmd.stdin(Stdio::null());
    cmd
}

/// Waits for `child` at most `limit`; kills it (by PID, through the handle) and panics if it overruns.
pub fn wait_bounded(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        match child.try_wait().expect("try_wait") {
            Some(_) => return child.wait_with_output().expect("collect output"),
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("collect output");
                panic!(
                    "diskbench ran longer than {limit:?}\nstdout: {}\nstderr: {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Runs diskbench with `args` and returns its output, bounded by `limit`.
pub fn run(args: &[&str], limit: Duration) -> Output {
    let child = diskbench().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    wait_bounded(child, limit)
}

/// The names in `dir`.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

/// Waits until diskbench's work directory shows up in `dir`.
pub fn wait_for_work_dir(dir: &Path, limit: Duration) -> PathBuf {
    let start = Instant::now();
    loop {
        if let Some(e) = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with(".diskbench-"))
        {
            return e.path();
        }
        assert!(start.elapsed() < limit, "no work directory appeared in {}", dir.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A tmpfs mounted on a fresh temporary directory, unmounted on drop.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs with `options` (e.g. `size=8m`). `None` when this process may not mount (not root); under CI
    /// (where tests run as root) that is a failure rather than a skip, so these checks cannot silently vanish.
    pub fn mount(options: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => Some(Tmpfs { dir }),
            _ if std::env::var_os("CI").is_some() => panic!("CI runs as root and must be able to mount a tmpfs"),
            _ => {
                eprintln!("skipping: cannot mount a tmpfs here (needs root)");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Asserts diskbench failed with exit status 2 and one line on stderr that contains `needle`.
pub fn assert_one_line_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line of error, got: {stderr:?}");
    assert!(lines[0].starts_with("diskbench: "), "{stderr:?}");
    assert!(lines[0].contains(needle), "{stderr:?} should contain {needle:?}");
}
