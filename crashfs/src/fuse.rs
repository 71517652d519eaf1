//! The live file system the program under test sees: an in-memory tree served over FUSE, which journals every
//! change it makes, in the order it replies.
//!
//! **Threading**: fuser calls these methods from its session thread; the state is one mutex shared with
//! [`crate::CrashFs`], which adds marks and copies the journal. A reply is sent after the operation is journalled,
//! so a mark the program makes after a call returns lands after that call's operation.
//!
//! The kernel is told nothing is cached for long (one second) and keeps file pages across opens; writes go through
//! to us (no writeback cache), so the journal sees each write when the program makes it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::content::Content;
use crate::journal::{Data, Journal, Kind, Op, ROOT};

const TTL: Duration = Duration::from_secs(1);

/// An inode of the live tree.
#[derive(Debug)]
enum Node {
    File(Content),
    Dir(BTreeMap<OsString, u64>),
}

#[derive(Debug)]
struct Inode {
    node: Node,
    perm: u16,
    uid: u32,
    gid: u32,
}

/// The live tree and its journal.
#[derive(Debug)]
pub(crate) struct Live {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    pub(crate) journal: Journal,
}

impl Live {
    pub(crate) fn new() -> Live {
        let root = Inode { node: Node::Dir(BTreeMap::new()), perm: 0o755, uid: 0, gid: 0 };
        Live { inodes: HashMap::from([(ROOT, root)]), next_ino: ROOT + 1, journal: Journal::default() }
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let i = self.inodes.get(&ino).ok_or(Errno::ENOENT)?;
        let (kind, size, nlink) = match &i.node {
            Node::File(c) => (FileType::RegularFile, c.len(), 1),
            Node::Dir(_) => (FileType::Directory, 4096, 2),
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: SystemTime::UNIX_EPOCH,
            mtime: SystemTime::UNIX_EPOCH,
            ctime: SystemTime::UNIX_EPOCH,
            crtime: SystemTime::UNIX_EPOCH,
            kind,
            perm: i.perm,
            nlink,
            uid: i.uid,
            gid: i.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn dir(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.inodes.get_mut(&ino).map(|i| &mut i.node) {
            Some(Node::Dir(d)) => Ok(d),
            Some(Node::File(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn file(&mut self, ino: u64) -> Result<&mut Content, Errno> {
        match self.inodes.get_mut(&ino).map(|i| &mut i.node) {
            Some(Node::File(c)) => Ok(c),
            Some(Node::Dir(_)) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn lookup(&mut self, parent: u64, name: &OsStr) -> Result<u64, Errno> {
        self.dir(parent)?.get(name).copied().ok_or(Errno::ENOENT)
    }

    fn create(&mut self, req: &Request, parent: u64, name: &OsStr, mode: u32, kind: Kind) -> Result<u64, Errno> {
        if self.dir(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let node = match kind {
            Kind::File => Node::File(Content::default()),
            Kind::Dir => Node::Dir(BTreeMap::new()),
        };
        self.inodes.insert(ino, Inode { node, perm: (mode & 0o7777) as u16, uid: req.uid(), gid: req.gid() });
        self.dir(parent)?.insert(name.to_os_string(), ino);
        self.journal.ops.push(Op::Create { dir: parent, name: name.to_os_string(), ino, kind });
        Ok(ino)
    }

    fn remove(&mut self, parent: u64, name: &OsStr, want_dir: bool) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        match (&self.inodes[&ino].node, want_dir) {
            (Node::Dir(d), true) if !d.is_empty() => return Err(Errno::ENOTEMPTY),
            (Node::Dir(_), false) => return Err(Errno::EISDIR),
            (Node::File(_), true) => return Err(Errno::ENOTDIR),
            _ => {}
        }
        self.dir(parent)?.remove(name);
        // The inode stays while the kernel may hold it open; an unlinked inode is simply never reached again.
        self.journal.ops.push(Op::Unlink { dir: parent, name: name.to_os_string() });
        Ok(())
    }

    fn rename(&mut self, parent: u64, name: &OsStr, to_dir: u64, to: &OsStr, flags: RenameFlags) -> Result<(), Errno> {
        let ino = self.lookup(parent, name)?;
        if let Ok(existing) = self.lookup(to_dir, to) {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            if let Node::Dir(d) = &self.inodes[&existing].node {
                if !d.is_empty() {
                    return Err(Errno::ENOTEMPTY);
                }
            }
        }
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            return Err(Errno::EINVAL);
        }
        self.dir(parent)?.remove(name);
        self.dir(to_dir)?.insert(to.to_os_string(), ino);
        self.journal.ops.push(Op::Rename {
            from_dir: parent,
            from: name.to_os_string(),
            to_dir,
            to: to.to_os_string(),
        });
        Ok(())
    }

    fn set_len(&mut self, ino: u64, len: u64) -> Result<(), Errno> {
        self.file(ino)?.set_len(len);
        self.journal.ops.push(Op::SetLen { ino, len });
        Ok(())
    }

    fn fallocate(&mut self, ino: u64, off: u64, len: u64, mode: i32) -> Result<(), Errno> {
        let size = self.file(ino)?.len();
        let end = off.checked_add(len).ok_or(Errno::EFBIG)?;
        let keep_size = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        match mode & !libc::FALLOC_FL_KEEP_SIZE {
            0 => {}
            m if m == libc::FALLOC_FL_PUNCH_HOLE || m == libc::FALLOC_FL_ZERO_RANGE => {
                let to = if keep_size { end.min(size) } else { end };
                if to > off {
                    self.file(ino)?.zero(off, to - off);
                    self.journal.ops.push(Op::Write { ino, off, data: Data::Zeros(to - off) });
                }
            }
            _ => return Err(Errno::from_i32(libc::EOPNOTSUPP)),
        }
        if !keep_size && end > self.file(ino)?.len() {
            self.set_len(ino, end)?;
        }
        Ok(())
    }
}

/// The FUSE face of [`Live`].
#[derive(Debug)]
pub(crate) struct Fuse(pub(crate) Arc<Mutex<Live>>);

impl Fuse {
    fn live(&self) -> MutexGuard<'_, Live> {
        // A panic while holding the lock leaves a tree no worse than the operation that panicked; keep serving.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn entry(reply: ReplyEntry, r: Result<FileAttr, Errno>) {
    match r {
        Ok(a) => reply.entry(&TTL, &a, Generation(0)),
        Err(e) => reply.error(e),
    }
}

fn empty(reply: ReplyEmpty, r: Result<(), Errno>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

impl Filesystem for Fuse {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut live = self.live();
        entry(reply, live.lookup(parent.0, name).and_then(|ino| live.attr(ino)));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.live().attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut live = self.live();
        let r = (|| {
            if let Some(len) = size {
                live.set_len(ino.0, len)?;
            }
            let i = live.inodes.get_mut(&ino.0).ok_or(Errno::ENOENT)?;
            if let Some(m) = mode {
                i.perm = (m & 0o7777) as u16;
            }
            i.uid = uid.unwrap_or(i.uid);
            i.gid = gid.unwrap_or(i.gid);
            live.attr(ino.0)
        })();
        match r {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        let mut live = self.live();
        entry(reply, live.create(req, parent.0, name, mode & !umask, Kind::File).and_then(|ino| live.attr(ino)));
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let mut live = self.live();
        entry(reply, live.create(req, parent.0, name, mode & !umask, Kind::Dir).and_then(|ino| live.attr(ino)));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.live().remove(parent.0, name, false));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.live().remove(parent.0, name, true));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.live().rename(parent.0, name, newparent.0, newname, flags));
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.live().file(ino.0) {
            Ok(c) => reply.data(&c.read(offset, size as usize)),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut live = self.live();
        match live.file(ino.0) {
            Ok(c) => {
                c.write(offset, data);
                live.journal.ops.push(Op::Write { ino: ino.0, off: offset, data: Data::of(data) });
                reply.written(data.len() as u32);
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.live().journal.ops.push(Op::Sync { ino: ino.0 });
        reply.ok();
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let mut live = self.live();
        let names: Vec<(OsString, u64)> = match live.dir(ino.0) {
            Ok(d) => d.iter().map(|(n, &i)| (n.clone(), i)).collect(),
            Err(e) => return reply.error(e),
        };
        let all = [(OsString::from("."), ino.0), (OsString::from(".."), ino.0)].into_iter().chain(names);
        for (i, (name, child)) in all.enumerate().skip(offset as usize) {
            let kind = match live.inodes.get(&child).map(|n| &n.node) {
                Some(Node::Dir(_)) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            if reply.add(INodeNo(child), i as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.live().journal.ops.push(Op::SyncDir { ino: ino.0 });
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // 1 TiB free in 4 KiB blocks: the store's free-space checks pass.
        reply.statfs(1 << 28, 1 << 28, 1 << 28, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut live = self.live();
        match live.create(req, parent.0, name, mode & !umask, Kind::File).and_then(|ino| live.attr(ino)) {
            Ok(a) => reply.created(&TTL, &a, Generation(0), FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.live().fallocate(ino.0, offset, length, mode));
    }
}
