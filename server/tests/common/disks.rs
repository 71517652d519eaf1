//! Loop-mounted ext4 file systems, one per member, that a test can freeze (`fsfreeze`) as a hung disk would
//! stall. Needs root (mount, fsfreeze; see `common::is_root`).
//!
//! A frozen file system must never outlive the test: a detached watchdog process thaws every mount once the test
//! process has exited or after the given limit, whatever happens to the test process, and the guard thaws and
//! unmounts (lazily, so members still running do not keep the mount) when dropped.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The mounts, thawed and unmounted when dropped.
pub struct Disks {
    pub mounts: Vec<PathBuf>,
    watchdog: Child,
}

impl Disks {
    /// A 512 MiB (sparse) ext4 image per name, mounted at `dir/<name>`; every mount is thawed at the latest
    /// `limit` from now or when this process ends.
    pub fn create(dir: &Path, names: &[&str], limit: Duration) -> Disks {
        let mounts: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
        let thaw_all = mounts.iter().map(|m| format!("fsfreeze -u '{}' 2>/dev/null;", m.display())).collect::<String>();
        let (pid, ticks) = (std::process::id(), limit.as_secs().max(1));
        let script = format!(
            "i=0; while [ $i -lt {ticks} ] && kill -0 {pid} 2>/dev/null; do sleep 1; i=$((i+1)); done; {thaw_all}"
        );
        let watchdog = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("setsid");
        let disks = Disks { mounts, watchdog };
        for m in &disks.mounts {
            let image = m.with_extension("img");
            let f = std::fs::File::create(&image).unwrap();
            f.set_len(512 << 20).unwrap();
            std::fs::create_dir_all(m).unwrap();
            assert!(run("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]), "mkfs.ext4");
            assert!(run("mount", &["-o", "loop", image.to_str().unwrap(), m.to_str().unwrap()]), "mount -o loop");
        }
        disks
    }

    pub fn freeze(&self, i: usize) {
        assert!(run("fsfreeze", &["-f", self.mounts[i].to_str().unwrap()]), "fsfreeze -f");
    }

    pub fn thaw(&self, i: usize) {
        run("fsfreeze", &["-u", self.mounts[i].to_str().unwrap()]);
    }
}

impl Drop for Disks {
    fn drop(&mut self) {
        for i in 0..self.mounts.len() {
            self.thaw(i);
        }
        for m in &self.mounts {
            run("umount", &["-l", m.to_str().unwrap()]);
        }
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}
