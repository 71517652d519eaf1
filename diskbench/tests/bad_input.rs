//! Every kind of bad input gets one line naming the problem, exit status 2, and leaves no files behind.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Tmpfs, assert_one_line_error, diskbench, entries, run, wait_bounded, wait_for_work_dir};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let out = run(&[missing.to_str().unwrap()], LIMIT);
    assert_one_line_error(&out, "no-such-dir: no such directory");
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn file_instead_of_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"data").unwrap();
    let out = run(&[file.to_str().unwrap()], LIMIT);
    assert_one_line_error(&out, "plain-file: not a directory");
    assert_eq!(std::fs::read(&file).unwrap(), b"data");
}

#[test]
fn no_write_permission() {
    // Root ignores permission bits, so as root the directory is a read-only mount instead.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let Some(ro) = Tmpfs::mount("ro,size=1m") else { return };
        let out = run(&["--quick", ro.path().to_str().unwrap()], LIMIT);
        assert_one_line_error(&out, "cannot write in");
        assert_one_line_error(&out, "read-only file system");
    } else {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
        let out = run(&["--quick", dir.path().to_str().unwrap()], LIMIT);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_one_line_error(&out, "permission denied");
        assert!(entries(dir.path()).is_empty());
    }
}

#[test]
fn too_little_free_space() {
    let Some(small) = Tmpfs::mount("size=8m") else { return };
    let out = run(&[small.path().to_str().unwrap()], LIMIT);
    assert_one_line_error(&out, "free, but the selected workloads need 272.0 MiB");
    assert!(entries(small.path()).is_empty());
}

#[test]
fn disk_full_in_the_middle_of_a_run() {
    let Some(fs) = Tmpfs::mount("size=64m") else { return };
    let data = fs.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for engine in ["sync", "uring"] {
        // 32 MiB at 2,000 appends/s takes about 7 s: ample time to fill the disk under it.
        let child = diskbench()
            .args(["-w", "wal", "-e", engine, "--file-mode", "growing", "--size", "32m", "--rate-iops", "2000"])
            .arg(&data)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_work_dir(&data, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(100));
        let filler = fs.path().join("filler");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            let block = vec![0xA5u8; 64 << 10];
            while f.write_all(&block).is_ok() {}
        }
        let out = wait_bounded(child, LIMIT);
        std::fs::remove_file(&filler).unwrap();
        if String::from_utf8_lossy(&out.stderr).contains("uring unavailable") {
            continue;
        }
        assert_one_line_error(&out, "no space left on device while writing");
        assert_one_line_error(&out, "ENOSPC");
        assert!(entries(&data).is_empty(), "{engine}: work directory removed after ENOSPC");
    }
}

#[test]
fn nonsense_sizes_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--size", "abc", d], "not a size"),
        (&["--size", "0", d], "--size must be greater than 0"),
        (&["--bs", "0", d], "--bs must be between"),
        (&["--bs", "1g", d], "--bs must be between"),
        (&["--bs", "8k", "--size", "4k", d], "is larger than --size"),
        (&["--runtime", "0", d], "--runtime must be greater than 0"),
        (&["--runtime", "forever", d], "not a duration"),
        (&["--writers", "0", d], "--writers"),
        (&["--pages-per-commit", "0", d], "--pages-per-commit"),
        (&["--engine", "spdk", d], "spdk"),
        (&["--workload", "oltp", d], "oltp"),
        (&["--bogus", d], "--bogus"),
    ];
    for (args, needle) in cases {
        let out = run(args, LIMIT);
        assert_one_line_error(&out, needle);
    }
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn ctrl_c_and_sigterm_remove_the_work_directory() {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let dir = tempfile::tempdir().unwrap();
        let child = diskbench()
            .args(["-w", "wal", "--rate-iops", "100"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let work = wait_for_work_dir(dir.path(), Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(200));
        // SAFETY: kill has no memory-safety preconditions; the PID is our own live child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let out = wait_bounded(child, Duration::from_secs(20));
        assert_one_line_error(&out, "interrupted");
        assert!(!work.exists(), "signal {signal}: work directory left behind");
        assert!(entries(dir.path()).is_empty());
    }
}

#[test]
fn help_and_version_exit_zero() {
    let out = run(&["--help"], LIMIT);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Exit status: 0") && help.contains("--quick"), "{help}");
    let out = run(&["--version"], LIMIT);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("diskbench "));
}
