//! Context that explains the numbers: which file system and device the directory lives on, and how they are set up.
//!
//! Sources: `/proc/self/mountinfo` (the mount holding the directory: the longest mount point that is a path prefix
//! of it, the last such entry winning as later mounts shadow earlier ones), `/sys/dev/block/MAJ:MIN` (the block
//! device behind `st_dev`, its parent for a partition) with `queue/rotational` and `queue/write_cache`, and
//! `/proc/sys/kernel/osrelease`. Everything is best effort: a missing file leaves a field empty, never an error.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Where the probed directory lives.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Context {
    pub dir: PathBuf,
    pub fs_type: Option<String>,
    pub mount_point: Option<String>,
    pub mount_options: Option<String>,
    /// The file system's own options (mountinfo's super options: `discard`, `barrier=0`, `data=ordered`, ...).
    pub fs_options: Option<String>,
    pub mount_source: Option<String>,
    pub device: Option<String>,
    pub rotational: Option<bool>,
    /// `write back` (volatile cache: flushes must reach it) or `write through`.
    pub write_cache: Option<String>,
    pub kernel: Option<String>,
    /// Facts worth knowing when reading the figures.
    pub notes: Vec<String>,
    /// Reasons the figures may not describe the disk etcd would use.
    pub warnings: Vec<String>,
}

/// One line of mountinfo, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: String,
    pub options: String,
    pub fs_type: String,
    pub source: String,
    pub super_options: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that holds `path` (absolute, canonical), from mountinfo's text.
pub fn find_mount(mountinfo: &str, path: &Path) -> Option<Mount> {
    let mut best: Option<Mount> = None;
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 6 || right.len() < 2 {
            continue;
        }
        let mount_point = unescape(left[4]);
        if !path.starts_with(&mount_point) {
            continue;
        }
        let longer = best.as_ref().is_none_or(|b| mount_point.len() >= b.mount_point.len());
        if longer {
            best = Some(Mount {
                mount_point,
                options: left[5].to_string(),
                fs_type: right[0].to_string(),
                source: unescape(right[1]),
                super_options: right.get(2).map(|o| o.to_string()).unwrap_or_default(),
            });
        }
    }
    best
}

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Fills in the block device's name, rotational flag and write-cache mode from sysfs.
fn inspect_device(dir: &Path, ctx: &mut Context) {
    let Ok(meta) = fs::metadata(dir) else { return };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    if major == 0 {
        return; // anonymous device: tmpfs, overlay, btrfs subvolumes, ...
    }
    let Ok(mut sys) = fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")) else { return };
    if sys.join("partition").exists() {
        sys.pop();
    }
    ctx.device = sys.file_name().map(|n| n.to_string_lossy().into_owned());
    ctx.rotational = read_trimmed(sys.join("queue/rotational")).map(|r| r == "1");
    ctx.write_cache = read_trimmed(sys.join("queue/write_cache"));
}

/// Adds the notes and warnings that the facts call for.
fn judge_context(ctx: &mut Context) {
    let fs_type = ctx.fs_type.clone().unwrap_or_default();
    match fs_type.as_str() {
        "tmpfs" | "ramfs" => ctx
            .warnings
            .push(format!("{fs_type}: the directory is in memory, so these figures say nothing about a disk")),
        "overlay" => ctx.warnings.push(
            "overlay: the directory is in a container's writable layer; probe the volume etcd's data dir is \
             mounted from"
                .to_string(),
        ),
        "nfs" | "nfs4" | "cifs" | "smb3" => ctx
            .warnings
            .push(format!("{fs_type}: a network file system; etcd's guidance is to keep its data on a local disk")),
        "btrfs" | "zfs" => ctx.notes.push(format!(
            "{fs_type}: a copy-on-write file system; fdatasync-heavy logs are usually slower here than on ext4 or xfs"
        )),
        t if t.starts_with("fuse") => {
            ctx.warnings.push(format!("{t}: a FUSE file system; its fdatasync may not reach a disk"))
        }
        _ => {}
    }
    let options = [ctx.mount_options.as_deref(), ctx.fs_options.as_deref()].into_iter().flatten().collect::<Vec<_>>();
    if options.join(",").split(',').any(|o| o == "nobarrier" || o == "barrier=0") {
        ctx.warnings.push(
            "mounted with nobarrier: fdatasync does not flush the device cache, so acknowledged writes can be lost \
             on power failure"
                .to_string(),
        );
    }
    if ctx.rotational == Some(true) {
        ctx.notes.push(
            "the device reports itself as rotational (a spinning disk; virtual disks often report this by default)"
                .to_string(),
        );
    }
    match ctx.write_cache.as_deref() {
        Some("write back") => ctx.notes.push(
            "the device reports a volatile write cache: every fdatasync also sends a cache flush, and these \
             figures include it"
                .to_string(),
        ),
        Some("write through") => ctx.notes.push("the device reports no volatile write cache".to_string()),
        _ => {}
    }
}

/// Gathers the context of `dir` (which must exist).
pub fn inspect(dir: &Path) -> Context {
    let canonical = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut ctx = Context { dir: canonical.clone(), ..Context::default() };
    if let Some(m) = fs::read_to_string("/proc/self/mountinfo").ok().and_then(|t| find_mount(&t, &canonical)) {
        ctx.fs_type = Some(m.fs_type);
        ctx.mount_point = Some(m.mount_point);
        ctx.mount_options = Some(m.options);
        ctx.fs_options = Some(m.super_options);
        ctx.mount_source = Some(m.source);
    }
    inspect_device(&canonical, &mut ctx);
    ctx.kernel = read_trimmed("/proc/sys/kernel/osrelease");
    judge_context(&mut ctx);
    ctx
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
25 22 0:21 / /proc rw,nosuid - proc proc rw
30 22 0:25 / /var/lib rw - xfs /dev/sdb1 rw
31 30 0:26 / /var/lib/etcd\\040data rw,noatime - tmpfs tmpfs rw,size=1024k
32 30 0:27 / /var/lib/etcd rw,noatime - overlay overlay rw,lowerdir=/a
33 30 0:28 / /var/lib/etcd rw,noatime - ext4 /dev/sdc rw,nobarrier,discard
";

    #[test]
    fn longest_prefix_wins_and_later_mounts_shadow() {
        let m = find_mount(MOUNTINFO, Path::new("/var/lib/etcd/member")).unwrap();
        assert_eq!((m.fs_type.as_str(), m.source.as_str()), ("ext4", "/dev/sdc"));
        assert_eq!((m.options.as_str(), m.super_options.as_str()), ("rw,noatime", "rw,nobarrier,discard"));
        let m = find_mount(MOUNTINFO, Path::new("/var/lib/etcdx")).unwrap();
        assert_eq!(m.mount_point, "/var/lib", "a path prefix must end at a component boundary");
        let m = find_mount(MOUNTINFO, Path::new("/var/lib/etcd data/x")).unwrap();
        assert_eq!(m.fs_type, "tmpfs", "escaped spaces are decoded");
        assert_eq!(find_mount(MOUNTINFO, Path::new("/home")).unwrap().fs_type, "ext4");
    }

    #[test]
    fn warnings_for_memory_containers_and_disabled_barriers() {
        let mut ctx = Context { fs_type: Some("tmpfs".into()), ..Context::default() };
        judge_context(&mut ctx);
        assert!(ctx.warnings[0].contains("in memory"), "{:?}", ctx.warnings);
        let mut ctx = Context { fs_type: Some("overlay".into()), ..Context::default() };
        judge_context(&mut ctx);
        assert!(ctx.warnings[0].contains("container"));
        for (mount, fs) in [("rw,nobarrier", "rw"), ("rw", "rw,barrier=0")] {
            let mut ctx = Context {
                fs_type: Some("ext4".into()),
                mount_options: Some(mount.into()),
                fs_options: Some(fs.into()),
                ..Context::default()
            };
            judge_context(&mut ctx);
            assert!(ctx.warnings[0].contains("nobarrier"), "{mount} / {fs}");
        }
        let mut ctx = Context {
            fs_type: Some("ext4".into()),
            rotational: Some(false),
            write_cache: Some("write back".into()),
            ..Context::default()
        };
        judge_context(&mut ctx);
        assert!(ctx.warnings.is_empty());
        assert!(ctx.notes[0].contains("volatile write cache"));
    }

    #[test]
    fn this_machines_root_is_found() {
        let ctx = inspect(Path::new("/"));
        assert!(ctx.fs_type.is_some(), "{ctx:?}");
        assert_eq!(ctx.mount_point.as_deref(), Some("/"));
    }
}
