//! The command line as an operator meets it: bad flags fail before anything touches the disk, `ETCD_*` variables
//! act like flags, `--version`, and `--log-level`.

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
    let out = Command::new(env!("CARGO_BIN_EXE_ferrokv")).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ferrokv Version: "));
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
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill takes no pointers; the PID is our own live child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "no info lines at --log-level error");
}
