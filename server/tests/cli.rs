//! The command line as an operator meets it: bad flags fail before anything touches the disk, `ETCD_*` variables
//! act like flags, `--version`, and `--log-level`; every flag etcd 3.4's `etcd --help` lists (and the 3.5/3.6
//! spellings) is known.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::free_port;

#[test]
fn log_level_filters_lines_and_bad_flags_fail_before_touching_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never-created");
    // A contradictory flag: one line naming it, exit status 2, and nothing written.
    let out = Command::new(env!("CARGO_BIN_EXE_ferrokv"))
        .args(["--data-dir", data.to_str().unwrap(), "--election-timeout", "300"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--election-timeout") && err.lines().count() == 1, "{err}");
    assert!(!data.exists(), "nothing is written before the flags are valid");
    // ETCD_* variables are read like the flags.
    let out = Command::new(env!("CARGO_BIN_EXE_ferrokv"))
        .env("ETCD_DATA_DIR", data.to_str().unwrap())
        .env("ETCD_INITIAL_CLUSTER_STATE", "sideways")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--initial-cluster-state"), "{out:?}");
    // etcd's layout: tools read the version from the first line.
    let out = Command::new(env!("CARGO_BIN_EXE_ferrokv")).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.starts_with("etcd Version: 3.4.") && text.contains("\nGo OS/Arch: linux/"), "{text}");
    // --log-level error: the info lines (including the ready line) are not printed.
    let (client, peer) = (free_port(), free_port());
    let c = format!("http://127.0.0.1:{client}");
    let p = format!("http://127.0.0.1:{peer}");
    let child = Command::new(env!("CARGO_BIN_EXE_ferrokv"))
        .args(["--data-dir", data.to_str().unwrap(), "--log-level", "error"])
        .args([
            "--listen-client-urls",
            &c,
            "--advertise-client-urls",
            &c,
            "--listen-peer-urls",
            &p,
            "--initial-advertise-peer-urls",
            &p,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it serves (a loaded machine may take more than a second to start a debug build), then a moment
    // more: the signal handlers are installed right after the listeners.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", client)).is_err() {
        assert!(std::time::Instant::now() < deadline, "the member never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill takes no pointers; the PID is our own live child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no info lines at --log-level error");
}

/// The flags `etcd --help` (Debian's etcd 3.4.23, which the test suite installs) lists, as `--name` words.
fn etcd_help_flags() -> Vec<String> {
    let out = Command::new("etcd").arg("--help").output().expect("etcd (etcd-server) is installed by scripts/test.sh");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let mut flags: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .map(|l| l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).next().unwrap_or("").to_string())
        .filter(|f| !f.is_empty())
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

/// `etcd --help` is the checklist: every flag it lists, and every flag 3.5 and 3.6 added, is in ferrokv's table,
/// and ferrokv takes each of them at etcd's default (read and validated as a start would).
#[test]
fn every_etcd_flag_is_known() {
    use server::config::{Parsed, flags};
    let listed = etcd_help_flags();
    assert!(listed.len() >= 75, "etcd --help listed only {listed:?}");
    let later: Vec<String> = include_str!("data/etcd-3.5-3.6-flags.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect();
    assert!(later.len() >= 60, "{later:?}");
    let unknown: Vec<&String> = listed.iter().chain(&later).filter(|f| flags::find(f).is_none()).collect();
    assert!(unknown.is_empty(), "flags etcd has that ferrokv does not know: {unknown:?}");
    for f in listed.iter().chain(&later) {
        let spec = flags::find(f).unwrap();
        if matches!(spec.name, "version" | "config-file") {
            continue;
        }
        let value = match (spec.kind, spec.default) {
            (flags::Kind::Bool, "") => "false",
            (_, d) => d,
        };
        let arg = format!("--{f}={value}");
        match server::config::from_args(std::slice::from_ref(&arg), &[]) {
            Ok(Parsed::Run(values)) => {
                if let Err(e) = values.validate() {
                    panic!("{arg}: {e}");
                }
            }
            other => panic!("{arg}: {other:?}"),
        }
    }
}
