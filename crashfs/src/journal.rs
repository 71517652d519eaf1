//! The journal of what a program did to the file system, and what a power loss at any point of it leaves behind.
//!
//! **The durability model** (what POSIX promises and ext4 and XFS are allowed to do, not the luckier things they
//! usually do):
//! - a file's writes, length changes and allocations are durable once the file is fsynced or fdatasynced after them;
//!   until then any of them may be lost, kept, or kept in part, sector by sector (512 bytes), in any order;
//! - a directory's entries (create, mkdir, unlink, rename) are durable once that directory is fsynced after them;
//!   until then the directory keeps some prefix of its pending changes (journalled file systems commit metadata in
//!   order), and a rename is atomic: it is in the prefix or not;
//! - a rename between two directories is an unlink in one and a link in the other (each may be lost on its own);
//! - data of a file whose name is lost is unreachable, whatever was synced.
//!
//! A crash point `k` means: operations `0..k` happened, then the power went. Marks are the program's own notes
//! ("entry 42 is acknowledged"), placed in the journal after the calls that made them true.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::path::Path;

use crate::Error;
use crate::content::Content;

/// The root directory's inode.
pub const ROOT: u64 = 1;

/// Bytes of a write: kept as they are, or only counted when all zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// The bytes written.
    Bytes(Vec<u8>),
    /// This many zero bytes.
    Zeros(u64),
}

impl Data {
    /// Classifies a write's bytes.
    pub fn of(bytes: &[u8]) -> Data {
        if bytes.iter().all(|&b| b == 0) { Data::Zeros(bytes.len() as u64) } else { Data::Bytes(bytes.to_vec()) }
    }

    fn len(&self) -> u64 {
        match self {
            Data::Bytes(b) => b.len() as u64,
            Data::Zeros(n) => *n,
        }
    }

    fn apply(&self, c: &mut Content, off: u64) {
        match self {
            Data::Bytes(b) => c.write(off, b),
            Data::Zeros(n) => c.zero(off, *n),
        }
    }

    /// The part `from..to` (relative to the start of the write).
    fn slice(&self, from: u64, to: u64) -> Data {
        match self {
            Data::Bytes(b) => Data::Bytes(b[from as usize..to as usize].to_vec()),
            Data::Zeros(_) => Data::Zeros(to - from),
        }
    }
}

/// What a file or directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// One operation the file system carried out, in the order it replied to them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A new inode `ino` named `name` in directory `dir`.
    Create { dir: u64, name: OsString, ino: u64, kind: Kind },
    /// Bytes written to a file.
    Write { ino: u64, off: u64, data: Data },
    /// A file's length set (truncate, ftruncate, or fallocate growing it).
    SetLen { ino: u64, len: u64 },
    /// A name removed (unlink or rmdir).
    Unlink { dir: u64, name: OsString },
    /// A name moved, replacing any file at the target.
    Rename { from_dir: u64, from: OsString, to_dir: u64, to: OsString },
    /// fsync or fdatasync of a file.
    Sync { ino: u64 },
    /// fsync of a directory.
    SyncDir { ino: u64 },
    /// The program's own note.
    Mark(u64),
}

/// A change to a file's bytes or length that is not yet durable.
#[derive(Debug, Clone)]
enum FileChange {
    Write { off: u64, data: Data },
    SetLen(u64),
}

/// A change to a directory that is not yet durable.
#[derive(Debug, Clone)]
enum DirChange {
    Link(OsString, u64),
    Unlink(OsString),
    Rename(OsString, OsString),
}

/// What a power loss does to the changes not yet made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Nothing is lost: the page cache reaches the disk (a process crash, not a power loss).
    Nothing,
    /// Every unsynced change is lost.
    Everything,
    /// Each file keeps its unsynced changes up to a random one, that one torn at a random sector; each directory
    /// keeps a random prefix of its unsynced changes.
    Prefix(u64),
    /// Each sector the unsynced writes touched holds, on its own, what the page cache held at some moment: the
    /// durable bytes, or those after some prefix of the writes to that sector (writeback in any order, a sector at
    /// a time); the length is the durable one or one some prefix of the changes set; each directory keeps a
    /// random prefix.
    Sectors(u64),
}

/// The state a replay has reached: what is durable, and what is pending.
#[derive(Debug, Default)]
struct Disk {
    kinds: HashMap<u64, Kind>,
    files: HashMap<u64, Content>,
    dirs: HashMap<u64, BTreeMap<OsString, u64>>,
    file_pending: HashMap<u64, Vec<FileChange>>,
    dir_pending: HashMap<u64, Vec<DirChange>>,
}

/// The journal of a mounted [`crate::CrashFs`].
#[derive(Debug, Clone, Default)]
pub struct Journal {
    /// Every operation, in order.
    pub ops: Vec<Op>,
}

/// What [`Journal::check_images`] found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Operations in the journal.
    pub operations: usize,
    /// Images checked.
    pub checked: usize,
    /// One line per image that failed its check.
    pub failures: Vec<String>,
}

impl Report {
    /// Panics, with the first failures, unless every image passed.
    pub fn assert_clean(&self, what: &str) {
        assert!(
            self.failures.is_empty(),
            "{what}: {} of {} crash images lose or damage acknowledged writes; the first:\n{}",
            self.failures.len(),
            self.checked,
            self.failures.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
        );
    }
}

/// One crash point during a replay: the marks made before it, and the images it can leave.
#[derive(Debug)]
pub struct Crash<'a> {
    /// Operations `0..point` happened.
    pub point: usize,
    /// The marks made before the crash, in order.
    pub marks: &'a [u64],
    disk: &'a Disk,
}

/// What the disk holds after a crash: the files reachable from the root, by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Image {
    /// Directories, as paths relative to the root (parents before children).
    pub dirs: Vec<std::path::PathBuf>,
    /// Files, as paths relative to the root, with their bytes.
    pub files: Vec<(std::path::PathBuf, Content)>,
}

impl Journal {
    /// The crash points worth trying, at most `max` of them (spread evenly): just before and just after every sync,
    /// rename and create, just after every mark (the moment an acknowledgement is most exposed), and the end.
    pub fn crash_points(&self, max: usize) -> Vec<usize> {
        let mut points = Vec::new();
        for (i, op) in self.ops.iter().enumerate() {
            if matches!(op, Op::Sync { .. } | Op::SyncDir { .. } | Op::Rename { .. } | Op::Create { .. }) {
                points.push(i);
                points.push(i + 1);
            } else if matches!(op, Op::Mark(_)) {
                points.push(i + 1);
            }
        }
        points.push(self.ops.len());
        points.dedup();
        if points.len() > max.max(1) {
            let n = points.len();
            let keep = max.max(1);
            points = (0..keep).map(|j| points[j * (n - 1) / (keep - 1).max(1)]).collect();
            points.dedup();
        }
        points
    }

    /// Replays the journal, calling `visit` at each of `points` (ascending; others are skipped).
    pub fn replay(&self, points: &[usize], mut visit: impl FnMut(Crash<'_>)) {
        let mut disk = Disk::default();
        disk.kinds.insert(ROOT, Kind::Dir);
        disk.dirs.insert(ROOT, BTreeMap::new());
        let mut marks = Vec::new();
        let mut next = points.iter().copied().peekable();
        for k in 0..=self.ops.len() {
            while next.peek() == Some(&k) {
                next.next();
                visit(Crash { point: k, marks: &marks, disk: &disk });
            }
            let Some(op) = self.ops.get(k) else { break };
            disk.apply(op, &mut marks);
        }
    }

    /// Writes the image of each of up to `max_points` crash points under each of `losses` to a fresh temporary
    /// directory and calls `check(directory, marks made before the crash)`; what it returns as `Err` is a failure.
    pub fn check_images(
        &self,
        max_points: usize,
        losses: &[Loss],
        mut check: impl FnMut(&Path, &[u64]) -> Result<(), String>,
    ) -> Report {
        let points = self.crash_points(max_points);
        let mut report = Report { operations: self.ops.len(), checked: 0, failures: Vec::new() };
        self.replay(&points, |crash| {
            for &loss in losses {
                let out = tempfile::tempdir().expect("a temporary directory");
                crash.image(loss).write_to(out.path()).expect("the image written out");
                report.checked += 1;
                if let Err(why) = check(out.path(), crash.marks) {
                    report.failures.push(format!("crash point {} of {}, {loss:?}: {why}", crash.point, self.ops.len()));
                }
            }
        });
        report
    }

    /// The marks in the whole journal.
    pub fn marks(&self) -> Vec<u64> {
        self.ops.iter().filter_map(|op| if let Op::Mark(m) = op { Some(*m) } else { None }).collect()
    }
}

impl Disk {
    fn apply(&mut self, op: &Op, marks: &mut Vec<u64>) {
        match op {
            Op::Create { dir, name, ino, kind } => {
                self.kinds.insert(*ino, *kind);
                match kind {
                    Kind::File => {
                        self.files.entry(*ino).or_default();
                    }
                    Kind::Dir => {
                        self.dirs.entry(*ino).or_default();
                    }
                }
                self.dir_pending.entry(*dir).or_default().push(DirChange::Link(name.clone(), *ino));
            }
            Op::Write { ino, off, data } => {
                self.file_pending.entry(*ino).or_default().push(FileChange::Write { off: *off, data: data.clone() })
            }
            Op::SetLen { ino, len } => self.file_pending.entry(*ino).or_default().push(FileChange::SetLen(*len)),
            Op::Unlink { dir, name } => self.dir_pending.entry(*dir).or_default().push(DirChange::Unlink(name.clone())),
            Op::Rename { from_dir, from, to_dir, to } if from_dir == to_dir => {
                self.dir_pending.entry(*from_dir).or_default().push(DirChange::Rename(from.clone(), to.clone()))
            }
            Op::Rename { from_dir, from, to_dir, to } => {
                // The inode moved is the one the directory holds once its earlier pending changes are applied.
                let mut view = self.dirs.get(from_dir).cloned().unwrap_or_default();
                for c in self.dir_pending.get(from_dir).into_iter().flatten() {
                    c.apply(&mut view);
                }
                if let Some(&ino) = view.get(from) {
                    self.dir_pending.entry(*from_dir).or_default().push(DirChange::Unlink(from.clone()));
                    self.dir_pending.entry(*to_dir).or_default().push(DirChange::Link(to.clone(), ino));
                }
            }
            Op::Sync { ino } => {
                let content = self.files.entry(*ino).or_default();
                for c in self.file_pending.remove(ino).unwrap_or_default() {
                    c.apply(content);
                }
            }
            Op::SyncDir { ino } => {
                let dir = self.dirs.entry(*ino).or_default();
                for c in self.dir_pending.remove(ino).unwrap_or_default() {
                    c.apply(dir);
                }
            }
            Op::Mark(m) => marks.push(*m),
        }
    }
}

impl FileChange {
    fn apply(&self, c: &mut Content) {
        match self {
            FileChange::Write { off, data } => data.apply(c, *off),
            FileChange::SetLen(len) => c.set_len(*len),
        }
    }
}

impl DirChange {
    fn apply(&self, dir: &mut BTreeMap<OsString, u64>) {
        match self {
            DirChange::Link(name, ino) => {
                dir.insert(name.clone(), *ino);
            }
            DirChange::Unlink(name) => {
                dir.remove(name);
            }
            DirChange::Rename(from, to) => {
                if let Some(ino) = dir.remove(from) {
                    dir.insert(to.clone(), ino);
                }
            }
        }
    }
}

/// SplitMix64: a small, seedable generator (the loss modes must be reproducible from their seed).
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

const SECTOR: u64 = 512;

/// The sector-aligned pieces of a write: (start within the write, end within the write).
fn sectors(off: u64, len: u64) -> impl Iterator<Item = (u64, u64)> {
    let mut at = off;
    let end = off + len;
    std::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let to = ((at / SECTOR + 1) * SECTOR).min(end);
        let piece = (at - off, to - off);
        at = to;
        Some(piece)
    })
}

/// [`Loss::Sectors`] for one file: see there.
fn sectors_at_random(content: &mut Content, pending: &[FileChange], rng: &mut Rng) {
    let mut lens = vec![content.len()];
    let mut by_sector: BTreeMap<u64, Vec<(u64, &Data)>> = BTreeMap::new();
    let mut len = content.len();
    for c in pending {
        match c {
            FileChange::Write { off, data } => {
                for (from, _) in sectors(*off, data.len()) {
                    by_sector.entry((off + from) / SECTOR).or_default().push((*off, data));
                }
                len = len.max(off + data.len());
            }
            FileChange::SetLen(n) => len = *n,
        }
        lens.push(len);
    }
    for (sector, writes) in by_sector {
        let keep = rng.below(writes.len() as u64 + 1) as usize;
        let (lo, hi) = (sector * SECTOR, (sector + 1) * SECTOR);
        for &(off, data) in &writes[..keep] {
            let (from, to) = (lo.max(off), hi.min(off + data.len()));
            data.slice(from - off, to - off).apply(content, from);
        }
    }
    content.set_len(lens[rng.below(lens.len() as u64) as usize]);
}

impl Crash<'_> {
    /// What the disk holds if the power goes here, losing unsynced changes as `loss` says.
    pub fn image(&self, loss: Loss) -> Image {
        let seed = match loss {
            Loss::Prefix(s) | Loss::Sectors(s) => s ^ (self.point as u64).wrapping_mul(0x2545_f491_4f6c_dd1d),
            _ => 0,
        };
        let mut rng = Rng(seed);
        // Directories first, in inode order so the random choices do not depend on hash order.
        let mut dirs = self.disk.dirs.clone();
        let mut dir_inos: Vec<u64> = self.disk.dir_pending.keys().copied().collect();
        dir_inos.sort_unstable();
        for ino in dir_inos {
            let pending = &self.disk.dir_pending[&ino];
            let keep = match loss {
                Loss::Nothing => pending.len(),
                Loss::Everything => 0,
                Loss::Prefix(_) | Loss::Sectors(_) => rng.below(pending.len() as u64 + 1) as usize,
            };
            let dir = dirs.entry(ino).or_default();
            for c in &pending[..keep] {
                c.apply(dir);
            }
        }
        let mut image = Image::default();
        let mut stack = vec![(ROOT, std::path::PathBuf::new())];
        let mut files = Vec::new();
        while let Some((ino, path)) = stack.pop() {
            for (name, &child) in dirs.get(&ino).into_iter().flatten() {
                let p = path.join(name);
                match self.disk.kinds.get(&child) {
                    Some(Kind::Dir) => {
                        image.dirs.push(p.clone());
                        stack.push((child, p));
                    }
                    _ => files.push((p, child)),
                }
            }
        }
        image.dirs.sort();
        files.sort();
        for (path, ino) in files {
            let mut content = self.disk.files.get(&ino).cloned().unwrap_or_default();
            let pending = self.disk.file_pending.get(&ino).map(Vec::as_slice).unwrap_or_default();
            match loss {
                Loss::Nothing => pending.iter().for_each(|c| c.apply(&mut content)),
                Loss::Everything => {}
                Loss::Prefix(_) => {
                    let cut = rng.below(pending.len() as u64 + 1) as usize;
                    pending[..cut].iter().for_each(|c| c.apply(&mut content));
                    if let Some(FileChange::Write { off, data }) = pending.get(cut) {
                        let ends: Vec<u64> =
                            std::iter::once(0).chain(sectors(*off, data.len()).map(|(_, to)| to)).collect();
                        let torn = ends[rng.below(ends.len() as u64) as usize];
                        data.slice(0, torn).apply(&mut content, *off);
                    }
                }
                Loss::Sectors(_) => sectors_at_random(&mut content, pending, &mut rng),
            }
            image.files.push((path, content));
        }
        image
    }
}

impl Image {
    /// Writes the image under `dir` (which must exist and be empty): sparse files, with holes where no data is.
    pub fn write_to(&self, dir: &Path) -> Result<(), Error> {
        use std::os::unix::fs::FileExt;
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { what, path, source }
        };
        for d in &self.dirs {
            let p = dir.join(d);
            std::fs::create_dir_all(&p).map_err(io("create directory", &p))?;
        }
        for (f, content) in &self.files {
            let p = dir.join(f);
            let file = std::fs::File::create(&p).map_err(io("create", &p))?;
            for (off, bytes) in content.extents() {
                file.write_all_at(&bytes, off).map_err(io("write", &p))?;
            }
            file.set_len(content.len()).map_err(io("set length", &p))?;
        }
        Ok(())
    }

    /// The file at `path` (relative to the root), if the image holds it.
    pub fn file(&self, path: impl AsRef<Path>) -> Option<&Content> {
        self.files.iter().find(|(p, _)| p == path.as_ref()).map(|(_, c)| c)
    }
}
