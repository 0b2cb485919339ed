//! tmpfs: an in-memory filesystem.
//!
//! Directories, symlinks, FIFOs and socket nodes live in kernel memory. A
//! regular file's bytes live in a host memfd of its own (created on the
//! first write or size change), so `mmap` can map the file directly
//! ([`MmapSource::HostFd`]) and shared mappings stay coherent with
//! `read`/`write`, which are `pread`/`pwrite` on that memfd.
//!
//! The same type is the upper layer of the root overlay: it then also
//! stores *whiteouts* (entries that hide a lower-layer name) and *opaque*
//! directories (which hide the whole lower directory). A plain tmpfs never
//! creates either.
//!
//! Locking: `ns` serializes every namespace change (create, remove, rename,
//! link); a directory's entry map has its own mutex, taken one at a time by
//! lookups (two at once only by rename, under `ns`); an inode's metadata
//! mutex is a leaf lock, never held while taking another.

use super::file::{DirEntry, FileOps, MmapSource, PipeBuffer, PollEvents, Stat, dtype_of};
use super::path::{components, split_last};
use super::vfs::{DirFile, MountFs, Owner, SetAttr, StatFs, Timestamp, now};
use crate::errno::{Errno, KResult};
use crate::kernel::wait::WaitQueue;
use std::collections::{BTreeMap, VecDeque};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// `TMPFS_MAGIC` for statfs.
pub const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Capacity of a FIFO's buffer (Linux's default pipe size).
const FIFO_CAPACITY: usize = 65536;
/// Writes up to this size are atomic on a FIFO.
const PIPE_BUF: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Byte accounting against an optional size limit.
#[derive(Debug)]
pub(crate) struct Space {
    pub(super) limit: Option<u64>,
    used: AtomicU64,
}

impl Space {
    pub(super) fn new(limit: Option<u64>) -> Space {
        Space {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// Reserves up to `want` bytes; returns how many were granted.
    fn reserve_upto(&self, want: u64) -> u64 {
        let Some(limit) = self.limit else {
            self.used.fetch_add(want, Ordering::Relaxed);
            return want;
        };
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let grant = want.min(limit.saturating_sub(cur));
            if grant == 0 {
                return 0;
            }
            match self.used.compare_exchange_weak(
                cur,
                cur + grant,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return grant,
                Err(v) => cur = v,
            }
        }
    }

    /// Reserves exactly `n` bytes or fails with ENOSPC.
    pub(super) fn reserve_exact(&self, n: u64) -> KResult<()> {
        if n == 0 {
            return Ok(());
        }
        let got = self.reserve_upto(n);
        if got < n {
            self.release(got);
            return Err(Errno::ENOSPC);
        }
        Ok(())
    }

    fn release(&self, n: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }

    fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// An inode's metadata.
#[derive(Debug, Clone, Copy)]
pub(super) struct Meta {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) nlink: u64,
    pub(super) rdev: u64,
    pub(super) atime: Timestamp,
    pub(super) mtime: Timestamp,
    pub(super) ctime: Timestamp,
}

/// A directory entry of the tmpfs: a node or (overlay upper only) a
/// whiteout hiding the lower layer's entry of that name.
#[derive(Clone)]
pub(crate) enum Entry {
    /// A real node.
    Node(Arc<Inode>),
    /// Hides the lower layer's entry.
    Whiteout,
}

/// A directory's entries.
pub(super) struct DirData {
    pub(super) entries: BTreeMap<Vec<u8>, Entry>,
    /// Lower-layer entries below this directory are hidden (overlay only).
    pub(super) opaque: bool,
}

/// A regular file's data: a memfd (None until first needed) and the size.
pub(super) struct FileState {
    pub(super) fd: Option<Arc<OwnedFd>>,
    pub(super) size: u64,
}

/// A regular file: its data, charged to `space`.
pub(super) struct FileData {
    pub(super) state: Mutex<FileState>,
    pub(super) space: Arc<Space>,
}

impl Drop for FileData {
    fn drop(&mut self) {
        let size = lock(&self.state).size;
        self.space.release(size);
    }
}

/// What an inode is.
pub(super) enum Kind {
    Dir(Mutex<DirData>),
    File(FileData),
    Symlink(Vec<u8>),
    Fifo(Arc<Fifo>),
    /// Socket nodes (bound AF_UNIX addresses) and anything else inert.
    Other,
}

/// A tmpfs inode.
pub(crate) struct Inode {
    /// Identity of the inode within its tmpfs, never reused (unlike
    /// `ino`, which copy-up may repeat): checkpoints refer to it.
    pub(super) serial: u64,
    pub(super) ino: u64,
    pub(super) dev: u64,
    pub(super) meta: Mutex<Meta>,
    pub(super) kind: Kind,
}

/// A fresh close-on-exec memfd for file data.
pub(crate) fn new_memfd() -> KResult<OwnedFd> {
    nix::sys::memfd::memfd_create(c"rvisor-tmpfs", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(Errno::from)
}

fn pwrite_all(fd: &OwnedFd, mut buf: &[u8], mut off: u64) -> KResult<()> {
    while !buf.is_empty() {
        let n = nix::sys::uio::pwrite(fd, buf, off as libc::off_t)?;
        if n == 0 {
            return Err(Errno::EIO);
        }
        buf = &buf[n..];
        off += n as u64;
    }
    Ok(())
}

impl Inode {
    fn meta(&self) -> Meta {
        *lock(&self.meta)
    }

    pub(crate) fn mode(&self) -> u32 {
        lock(&self.meta).mode
    }

    pub(crate) fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }

    fn dir(&self) -> KResult<MutexGuard<'_, DirData>> {
        match &self.kind {
            Kind::Dir(d) => Ok(lock(d)),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// The entry called `name` in this directory.
    fn child(&self, name: &[u8]) -> KResult<Option<Entry>> {
        Ok(self.dir()?.entries.get(name).cloned())
    }

    pub(crate) fn is_opaque(&self) -> bool {
        match &self.kind {
            Kind::Dir(d) => lock(d).opaque,
            _ => false,
        }
    }

    fn has_nodes(&self) -> bool {
        match &self.kind {
            Kind::Dir(d) => lock(d)
                .entries
                .values()
                .any(|e| matches!(e, Entry::Node(_))),
            _ => false,
        }
    }

    fn touch(&self, m: bool, c: bool) {
        let t = now();
        let mut meta = lock(&self.meta);
        if m {
            meta.mtime = t;
        }
        if c {
            meta.ctime = t;
        }
    }

    fn inc_nlink(&self) {
        let t = now();
        let mut meta = lock(&self.meta);
        meta.nlink += 1;
        meta.ctime = t;
    }

    fn drop_link(&self) {
        let t = now();
        let mut meta = lock(&self.meta);
        meta.nlink = if self.is_dir() {
            0
        } else {
            meta.nlink.saturating_sub(1)
        };
        meta.ctime = t;
    }

    /// fstat of this inode.
    pub(crate) fn stat(&self) -> Stat {
        let m = self.meta();
        let (size, nlink) = match &self.kind {
            Kind::Dir(d) => {
                let d = lock(d);
                let subdirs = d
                    .entries
                    .values()
                    .filter(|e| matches!(e, Entry::Node(n) if n.is_dir()))
                    .count() as u64;
                let n = d
                    .entries
                    .values()
                    .filter(|e| matches!(e, Entry::Node(_)))
                    .count() as i64;
                (((n + 2) * 20), if m.nlink == 0 { 0 } else { 2 + subdirs })
            }
            Kind::File(f) => (lock(&f.state).size as i64, m.nlink),
            Kind::Symlink(t) => (t.len() as i64, m.nlink),
            _ => (0, m.nlink),
        };
        Stat {
            st_dev: self.dev,
            st_ino: self.ino,
            st_nlink: nlink,
            st_mode: m.mode,
            st_uid: m.uid,
            st_gid: m.gid,
            st_rdev: m.rdev,
            st_size: size,
            st_blksize: 4096,
            st_blocks: if matches!(self.kind, Kind::File(_)) {
                (size + 4095) / 4096 * 8
            } else {
                0
            },
            st_atime: m.atime.0,
            st_atime_nsec: m.atime.1,
            st_mtime: m.mtime.0,
            st_mtime_nsec: m.mtime.1,
            st_ctime: m.ctime.0,
            st_ctime_nsec: m.ctime.1,
            ..Stat::default()
        }
    }

    fn file(&self) -> KResult<&FileData> {
        match &self.kind {
            Kind::File(f) => Ok(f),
            Kind::Dir(_) => Err(Errno::EISDIR),
            _ => Err(Errno::EINVAL),
        }
    }

    /// pread.
    pub(crate) fn read_at(&self, buf: &mut [u8], pos: u64) -> KResult<usize> {
        let f = self.file()?;
        let (fd, size) = {
            let st = lock(&f.state);
            (st.fd.clone(), st.size)
        };
        if pos >= size || buf.is_empty() {
            return Ok(0);
        }
        let n = buf.len().min((size - pos).min(usize::MAX as u64) as usize);
        let Some(fd) = fd else {
            buf[..n].fill(0);
            return Ok(n);
        };
        let got = nix::sys::uio::pread(&*fd, &mut buf[..n], pos as libc::off_t)?;
        Ok(got)
    }

    /// pwrite; extends the file, charging the size limit (a write that
    /// does not fit is shortened; ENOSPC when nothing fits).
    pub(crate) fn write_at(&self, buf: &[u8], pos: u64) -> KResult<usize> {
        let f = self.file()?;
        if buf.is_empty() {
            return Ok(0);
        }
        let end = pos.checked_add(buf.len() as u64).ok_or(Errno::EFBIG)?;
        if end > i64::MAX as u64 {
            return Err(Errno::EFBIG);
        }
        let mut st = lock(&f.state);
        let mut len = buf.len();
        if end > st.size {
            let want = end - st.size;
            let got = f.space.reserve_upto(want);
            if got < want {
                let short = want - got;
                if short >= len as u64 {
                    f.space.release(got);
                    return Err(Errno::ENOSPC);
                }
                len -= short as usize;
            }
        }
        let fd = match &st.fd {
            Some(fd) => fd.clone(),
            None => {
                let fd = Arc::new(new_memfd()?);
                st.fd = Some(fd.clone());
                fd
            }
        };
        let new_end = pos + len as u64;
        if let Err(e) = pwrite_all(&fd, &buf[..len], pos) {
            if new_end > st.size {
                f.space.release(new_end - st.size);
            }
            return Err(e);
        }
        if new_end > st.size {
            st.size = new_end;
        }
        drop(st);
        self.touch(true, true);
        Ok(len)
    }

    /// Sets the size (ENOSPC past the limit).
    pub(crate) fn truncate(&self, len: u64) -> KResult<()> {
        let f = self.file()?;
        if len > i64::MAX as u64 {
            return Err(Errno::EFBIG);
        }
        let mut st = lock(&f.state);
        if len > st.size {
            f.space.reserve_exact(len - st.size)?;
        }
        if st.fd.is_none() && len > 0 {
            st.fd = Some(Arc::new(new_memfd()?));
        }
        if let Some(Err(e)) = st
            .fd
            .as_ref()
            .map(|fd| nix::unistd::ftruncate(&**fd, len as libc::off_t))
        {
            if len > st.size {
                f.space.release(len - st.size);
            }
            return Err(e.into());
        }
        if len < st.size {
            f.space.release(st.size - len);
        }
        st.size = len;
        drop(st);
        self.touch(true, true);
        Ok(())
    }

    /// Deallocates `[off, off+len)` (clamped to the size), which then
    /// reads as zeros; the size does not change.
    pub(crate) fn punch_hole(&self, off: u64, len: u64) -> KResult<()> {
        let f = self.file()?;
        let (fd, size) = {
            let st = lock(&f.state);
            (st.fd.clone(), st.size)
        };
        let end = off.saturating_add(len).min(size);
        if let Some(fd) = fd
            && off < end
        {
            nix::fcntl::fallocate(
                &*fd,
                nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                    | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
                off as libc::off_t,
                (end - off) as libc::off_t,
            )?;
            self.touch(true, true);
        }
        Ok(())
    }

    /// The memfd holding the data (created if missing).
    pub(crate) fn memfd(&self) -> KResult<Arc<OwnedFd>> {
        let f = self.file()?;
        let mut st = lock(&f.state);
        if let Some(fd) = &st.fd {
            return Ok(fd.clone());
        }
        let fd = Arc::new(new_memfd()?);
        st.fd = Some(fd.clone());
        Ok(fd)
    }

    /// The symlink target.
    pub(crate) fn target(&self) -> KResult<Vec<u8>> {
        match &self.kind {
            Kind::Symlink(t) => Ok(t.clone()),
            _ => Err(Errno::EINVAL),
        }
    }

    fn apply(&self, attr: &SetAttr) -> KResult<()> {
        if let Some(size) = attr.size {
            self.truncate(size)?;
        }
        let t = now();
        let mut m = lock(&self.meta);
        if let Some(mode) = attr.mode {
            m.mode = (m.mode & libc::S_IFMT) | (mode & 0o7777);
        }
        if let Some(uid) = attr.uid {
            m.uid = uid;
        }
        if let Some(gid) = attr.gid {
            m.gid = gid;
        }
        if let Some(a) = attr.atime {
            m.atime = a;
        }
        if let Some(mt) = attr.mtime {
            m.mtime = mt;
        }
        m.ctime = t;
        Ok(())
    }
}

/// What a new node is made of.
pub(crate) enum Content {
    /// An empty regular file, FIFO or socket node (by the mode's type).
    Empty,
    /// A directory; `opaque` hides the lower layer below it (overlay).
    Dir {
        /// Hide lower entries.
        opaque: bool,
    },
    /// A symlink with this target.
    Symlink(Vec<u8>),
    /// A regular file whose data is already in this memfd of this size.
    Data(OwnedFd, u64),
}

/// Everything needed to make a node.
pub(crate) struct NewNode {
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub owner: Owner,
    /// Device number of device nodes.
    pub rdev: u64,
    /// Inode number to use instead of a fresh one (overlay copy-up keeps
    /// the lower file's number).
    pub ino: Option<u64>,
    /// atime, mtime, ctime (default: now).
    pub times: Option<[Timestamp; 3]>,
    /// Contents.
    pub content: Content,
}

impl NewNode {
    /// A node with the given mode/owner/content, fresh ino, current times.
    pub(crate) fn new(mode: u32, owner: Owner, content: Content) -> NewNode {
        NewNode {
            mode,
            owner,
            rdev: 0,
            ino: None,
            times: None,
            content,
        }
    }
}

/// A raw directory entry: name and (inode number, DT_* type), or None
/// for a whiteout.
pub(crate) type RawEntry = (Vec<u8>, Option<(u64, u8)>);

/// What the upper layer says about a path (see [`Tmpfs::probe`]).
pub(crate) enum Probe {
    /// No entry (nor any ancestor's entry) in this layer.
    Absent,
    /// The name is whited out.
    Whiteout,
    /// A node.
    Node(Arc<Inode>),
}

/// How [`Tmpfs::remove`] treats the victim.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Remove {
    /// unlink: the node must not be a directory.
    Unlink,
    /// rmdir: the node must be a directory without nodes in it.
    Rmdir,
}

/// An in-memory filesystem (see the module docs).
pub struct Tmpfs {
    pub(super) dev: u64,
    pub(super) next_ino: AtomicU64,
    /// Next [`Inode::serial`].
    pub(super) next_serial: AtomicU64,
    pub(super) root: Arc<Inode>,
    pub(super) ns: Mutex<()>,
    pub(super) space: Arc<Space>,
    /// Non-directories whose last link went while they may still be open
    /// (checkpoints save those still alive), and the list length at which
    /// dead ones are next pruned.
    pub(super) orphans: Mutex<(Vec<Weak<Inode>>, usize)>,
    /// After a restore: the restored inodes by serial (see
    /// `super::snapshot`).
    pub(super) restored: Mutex<Option<super::snapshot::RestoreIndex>>,
}

impl std::fmt::Debug for Tmpfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tmpfs(dev={:#x}, used={})", self.dev, self.space.used())
    }
}

impl Tmpfs {
    /// A fresh empty tmpfs whose root is owned by root with mode 01777
    /// (like /tmp), holding at most `limit` bytes of file data.
    pub fn new(limit: Option<u64>) -> Tmpfs {
        Tmpfs::with_root(
            super::vfs::alloc_dev(),
            1,
            2,
            limit,
            libc::S_IFDIR | 0o1777,
            Owner { uid: 0, gid: 0 },
        )
    }

    /// A tmpfs with a given device number, root inode number, first inode
    /// number for new nodes, and root mode/owner.
    pub(crate) fn with_root(
        dev: u64,
        root_ino: u64,
        first_ino: u64,
        limit: Option<u64>,
        root_mode: u32,
        owner: Owner,
    ) -> Tmpfs {
        let t = now();
        let root = Arc::new(Inode {
            serial: 0,
            ino: root_ino,
            dev,
            meta: Mutex::new(Meta {
                mode: libc::S_IFDIR | (root_mode & 0o7777),
                uid: owner.uid,
                gid: owner.gid,
                nlink: 2,
                rdev: 0,
                atime: t,
                mtime: t,
                ctime: t,
            }),
            kind: Kind::Dir(Mutex::new(DirData {
                entries: BTreeMap::new(),
                opaque: false,
            })),
        });
        Tmpfs {
            dev,
            next_ino: AtomicU64::new(first_ino),
            next_serial: AtomicU64::new(1),
            root,
            ns: Mutex::new(()),
            space: Arc::new(Space::new(limit)),
            orphans: Mutex::new((Vec::new(), 64)),
            restored: Mutex::new(None),
        }
    }

    /// Remembers `n` if its last link just went (it may still be open).
    fn note_orphan(&self, n: &Arc<Inode>) {
        if n.is_dir() || lock(&n.meta).nlink != 0 {
            return;
        }
        let mut o = lock(&self.orphans);
        if o.0.len() >= o.1 {
            o.0.retain(|w| w.strong_count() > 0);
            o.1 = (o.0.len() * 2).max(64);
        }
        o.0.push(Arc::downgrade(n));
    }

    /// The device number reported in `st_dev`.
    pub fn dev(&self) -> u64 {
        self.dev
    }

    /// Bytes of file data stored.
    pub fn used(&self) -> u64 {
        self.space.used()
    }

    /// Sets the root directory's permission bits and, if given, its owner
    /// (uid, gid).
    pub fn set_root_mode(&self, mode: u32, owner: Option<(u32, u32)>) {
        let mut m = lock(&self.root.meta);
        m.mode = libc::S_IFDIR | (mode & 0o7777);
        if let Some((uid, gid)) = owner {
            m.uid = uid;
            m.gid = gid;
        }
    }

    /// Sets the root directory's metadata (overlay: copy of the lower root).
    pub(crate) fn set_root_meta(&self, st: &Stat) {
        let mut m = lock(&self.root.meta);
        m.mode = libc::S_IFDIR | (st.st_mode & 0o7777);
        m.uid = st.st_uid;
        m.gid = st.st_gid;
        m.atime = (st.st_atime, st.st_atime_nsec);
        m.mtime = (st.st_mtime, st.st_mtime_nsec);
        m.ctime = (st.st_ctime, st.st_ctime_nsec);
    }

    /// Looks `rel` up in this layer. The flag says whether a lower layer
    /// may still show through at `rel`: false below an opaque directory or
    /// a whiteout. Whiteouts of intermediate components give ENOENT, a
    /// non-directory intermediate ENOTDIR.
    pub(crate) fn probe(&self, rel: &[u8]) -> KResult<(Probe, bool)> {
        let mut cur = self.root.clone();
        let mut lower = true;
        let mut comps = components(rel).peekable();
        if comps.peek().is_none() {
            return Ok((Probe::Node(cur), true));
        }
        while let Some(c) = comps.next() {
            let last = comps.peek().is_none();
            match cur.child(c)? {
                None => return Ok((Probe::Absent, lower)),
                Some(Entry::Whiteout) => {
                    return if last {
                        Ok((Probe::Whiteout, false))
                    } else {
                        Err(Errno::ENOENT)
                    };
                }
                Some(Entry::Node(n)) => {
                    if last {
                        return Ok((Probe::Node(n), lower));
                    }
                    if !n.is_dir() {
                        return Err(Errno::ENOTDIR);
                    }
                    if n.is_opaque() {
                        lower = false;
                    }
                    cur = n;
                }
            }
        }
        Ok((Probe::Node(cur), lower))
    }

    /// The node at `rel` (ENOENT if absent or whited out).
    pub(crate) fn lookup(&self, rel: &[u8]) -> KResult<Arc<Inode>> {
        match self.probe(rel)?.0 {
            Probe::Node(n) => Ok(n),
            _ => Err(Errno::ENOENT),
        }
    }

    fn parent_dir<'a>(&self, rel: &'a [u8]) -> KResult<(Arc<Inode>, &'a [u8])> {
        let (parent, name) = split_last(rel);
        if name.is_empty() {
            return Err(Errno::EEXIST);
        }
        let dir = self.lookup(parent)?;
        if !dir.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok((dir, name))
    }

    fn make_inode(&self, spec: NewNode) -> KResult<Arc<Inode>> {
        let t = now();
        let [atime, mtime, ctime] = spec.times.unwrap_or([t, t, t]);
        let ino = spec
            .ino
            .unwrap_or_else(|| self.next_ino.fetch_add(1, Ordering::Relaxed));
        let ftype = spec.mode & libc::S_IFMT;
        let kind = match spec.content {
            Content::Dir { opaque } => Kind::Dir(Mutex::new(DirData {
                entries: BTreeMap::new(),
                opaque,
            })),
            Content::Symlink(t) => Kind::Symlink(t),
            Content::Data(fd, size) => {
                self.space.reserve_exact(size)?;
                Kind::File(FileData {
                    state: Mutex::new(FileState {
                        fd: Some(Arc::new(fd)),
                        size,
                    }),
                    space: self.space.clone(),
                })
            }
            Content::Empty => match ftype {
                libc::S_IFREG => Kind::File(FileData {
                    state: Mutex::new(FileState { fd: None, size: 0 }),
                    space: self.space.clone(),
                }),
                libc::S_IFIFO => Kind::Fifo(Arc::new(Fifo::default())),
                libc::S_IFSOCK | libc::S_IFCHR | libc::S_IFBLK => Kind::Other,
                _ => return Err(Errno::EINVAL),
            },
        };
        let mode = match &kind {
            Kind::Dir(_) => libc::S_IFDIR,
            Kind::Symlink(_) => libc::S_IFLNK,
            Kind::File(_) => libc::S_IFREG,
            _ => ftype,
        } | (spec.mode & 0o7777);
        let mode = if matches!(kind, Kind::Symlink(_)) {
            libc::S_IFLNK | 0o777
        } else {
            mode
        };
        Ok(Arc::new(Inode {
            serial: self.next_serial.fetch_add(1, Ordering::Relaxed),
            ino,
            dev: self.dev,
            meta: Mutex::new(Meta {
                mode,
                uid: spec.owner.uid,
                gid: spec.owner.gid,
                nlink: if matches!(kind, Kind::Dir(_)) { 2 } else { 1 },
                rdev: spec.rdev,
                atime,
                mtime,
                ctime,
            }),
            kind,
        }))
    }

    /// Creates a node at `rel`, replacing a whiteout; EEXIST if a node is
    /// there.
    pub(crate) fn create_node(&self, rel: &[u8], spec: NewNode) -> KResult<Arc<Inode>> {
        let _ns = lock(&self.ns);
        let (dir, name) = self.parent_dir(rel)?;
        if matches!(dir.child(name)?, Some(Entry::Node(_))) {
            return Err(Errno::EEXIST);
        }
        let node = self.make_inode(spec)?;
        dir.dir()?
            .entries
            .insert(name.to_vec(), Entry::Node(node.clone()));
        dir.touch(true, true);
        Ok(node)
    }

    /// Removes the node at `rel` (checking its type per `how`), leaving a
    /// whiteout if `whiteout`. With `whiteout`, a missing entry just gets
    /// a whiteout (hiding a lower-only name).
    pub(crate) fn remove(&self, rel: &[u8], how: Remove, whiteout: bool) -> KResult<()> {
        let _ns = lock(&self.ns);
        let (dir, name) = self
            .parent_dir(rel)
            .map_err(|e| if e == Errno::EEXIST { Errno::EBUSY } else { e })?;
        let victim = match dir.child(name)? {
            Some(Entry::Node(n)) => Some(n),
            _ if whiteout => None,
            _ => return Err(Errno::ENOENT),
        };
        if let Some(n) = &victim {
            match how {
                Remove::Unlink if n.is_dir() => return Err(Errno::EISDIR),
                Remove::Rmdir if !n.is_dir() => return Err(Errno::ENOTDIR),
                Remove::Rmdir if n.has_nodes() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        {
            let mut d = dir.dir()?;
            if whiteout {
                d.entries.insert(name.to_vec(), Entry::Whiteout);
            } else {
                d.entries.remove(name);
            }
        }
        if let Some(n) = victim {
            n.drop_link();
            self.note_orphan(&n);
        }
        dir.touch(true, true);
        Ok(())
    }

    /// rename(2) within this tmpfs. `flags`: RENAME_NOREPLACE and
    /// RENAME_EXCHANGE. `whiteout_old` leaves a whiteout at `old`.
    pub(crate) fn rename(
        &self,
        old: &[u8],
        new: &[u8],
        flags: u32,
        whiteout_old: bool,
    ) -> KResult<()> {
        let _ns = lock(&self.ns);
        let (od, oname) = self
            .parent_dir(old)
            .map_err(|e| if e == Errno::EEXIST { Errno::EBUSY } else { e })?;
        let (nd, nname) = self
            .parent_dir(new)
            .map_err(|e| if e == Errno::EEXIST { Errno::EBUSY } else { e })?;
        let src = match od.child(oname)? {
            Some(Entry::Node(n)) => n,
            _ => return Err(Errno::ENOENT),
        };
        let dst = match nd.child(nname)? {
            Some(Entry::Node(n)) => Some(n),
            _ => None,
        };
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        if exchange {
            let Some(dst) = dst else {
                return Err(Errno::ENOENT);
            };
            od.dir()?
                .entries
                .insert(oname.to_vec(), Entry::Node(dst.clone()));
            nd.dir()?
                .entries
                .insert(nname.to_vec(), Entry::Node(src.clone()));
            src.touch(false, true);
            dst.touch(false, true);
        } else {
            if let Some(d) = &dst {
                if Arc::ptr_eq(d, &src) {
                    return Ok(());
                }
                if flags & libc::RENAME_NOREPLACE != 0 {
                    return Err(Errno::EEXIST);
                }
                match (src.is_dir(), d.is_dir()) {
                    (true, false) => return Err(Errno::ENOTDIR),
                    (false, true) => return Err(Errno::EISDIR),
                    (true, true) if d.has_nodes() => return Err(Errno::ENOTEMPTY),
                    _ => {}
                }
            }
            {
                let mut o = od.dir()?;
                if whiteout_old {
                    o.entries.insert(oname.to_vec(), Entry::Whiteout);
                } else {
                    o.entries.remove(oname);
                }
            }
            nd.dir()?
                .entries
                .insert(nname.to_vec(), Entry::Node(src.clone()));
            if let Some(d) = dst {
                d.drop_link();
                self.note_orphan(&d);
            }
            src.touch(false, true);
        }
        od.touch(true, true);
        if !Arc::ptr_eq(&od, &nd) {
            nd.touch(true, true);
        }
        Ok(())
    }

    /// Adds a hard link `new` to the node at `old`.
    pub(crate) fn link(&self, old: &[u8], new: &[u8]) -> KResult<()> {
        let _ns = lock(&self.ns);
        let node = self.lookup(old)?;
        if node.is_dir() {
            return Err(Errno::EPERM);
        }
        let (dir, name) = self.parent_dir(new)?;
        if matches!(dir.child(name)?, Some(Entry::Node(_))) {
            return Err(Errno::EEXIST);
        }
        dir.dir()?
            .entries
            .insert(name.to_vec(), Entry::Node(node.clone()));
        node.inc_nlink();
        dir.touch(true, true);
        Ok(())
    }

    /// The raw entries of the directory at `rel` (None = whiteout) and
    /// whether it is opaque.
    pub(crate) fn dir_raw(&self, rel: &[u8]) -> KResult<(Vec<RawEntry>, bool)> {
        let node = self.lookup(rel)?;
        let d = node.dir()?;
        let list = d
            .entries
            .iter()
            .map(|(k, e)| {
                let v = match e {
                    Entry::Node(n) => Some((n.ino, dtype_of(n.mode()))),
                    Entry::Whiteout => None,
                };
                (k.clone(), v)
            })
            .collect();
        Ok((list, d.opaque))
    }

    /// Marks the directory at `rel` opaque and drops its whiteouts.
    pub(crate) fn set_opaque(&self, rel: &[u8]) -> KResult<()> {
        let _ns = lock(&self.ns);
        let node = self.lookup(rel)?;
        let mut d = node.dir()?;
        d.opaque = true;
        d.entries.retain(|_, e| matches!(e, Entry::Node(_)));
        Ok(())
    }

    /// Applies attribute changes to the node at `rel`.
    pub(crate) fn setattr_node(&self, rel: &[u8], attr: &SetAttr) -> KResult<()> {
        self.lookup(rel)?.apply(attr)
    }

    /// Opens a node found at `rel` (directories list `rel`'s entries).
    pub(crate) fn open_node(
        &self,
        node: Arc<Inode>,
        rel: &[u8],
        flags: i32,
    ) -> KResult<Box<dyn FileOps>> {
        match &node.kind {
            Kind::File(_) => Ok(Box::new(TmpFile { node })),
            Kind::Dir(_) => {
                let parent_ino = match split_last(rel) {
                    (_, b"") => node.ino,
                    (p, _) => self.lookup(p).map(|n| n.ino).unwrap_or(node.ino),
                };
                let (n1, n2) = (node.clone(), node);
                Ok(Box::new(DirFile::new(
                    move || {
                        let mut v = vec![
                            DirEntry {
                                ino: n1.ino,
                                kind: libc::DT_DIR,
                                name: b".".to_vec(),
                            },
                            DirEntry {
                                ino: parent_ino,
                                kind: libc::DT_DIR,
                                name: b"..".to_vec(),
                            },
                        ];
                        let d = n1.dir()?;
                        for (name, e) in d.entries.iter() {
                            if let Entry::Node(c) = e {
                                v.push(DirEntry {
                                    ino: c.ino,
                                    kind: dtype_of(c.mode()),
                                    name: name.clone(),
                                });
                            }
                        }
                        Ok(v)
                    },
                    move || Ok(n2.stat()),
                )))
            }
            Kind::Fifo(f) => Ok(Box::new(FifoEnd::open(node.clone(), f.clone(), flags)?)),
            Kind::Symlink(_) => Err(Errno::ELOOP),
            Kind::Other => Err(Errno::ENXIO),
        }
    }

    fn statfs_impl(&self) -> StatFs {
        let (blocks, bfree) = match self.space.limit {
            Some(l) => (l / 4096, l.saturating_sub(self.space.used()) / 4096),
            None => {
                // Linux's default: half of RAM.
                let total = nix::sys::sysinfo::sysinfo()
                    .map(|s| s.ram_total() / 2 / 4096)
                    .unwrap_or(1 << 20);
                (total, total.saturating_sub(self.space.used() / 4096))
            }
        };
        StatFs {
            f_type: TMPFS_MAGIC,
            f_bsize: 4096,
            f_blocks: blocks,
            f_bfree: bfree,
            f_bavail: bfree,
            f_files: 1 << 20,
            f_ffree: (1u64 << 20).saturating_sub(self.next_ino.load(Ordering::Relaxed) & 0xff_ffff),
            f_fsid: [(self.dev & 0xffff_ffff) as i32, 0],
            f_namelen: 255,
            f_frsize: 4096,
            f_flags: libc::ST_NOSUID as i64 | libc::ST_NODEV as i64,
            f_spare: [0; 4],
        }
    }
}

impl MountFs for Tmpfs {
    fn fs_type(&self) -> &'static str {
        "tmpfs"
    }

    fn lstat(&self, rel: &[u8]) -> KResult<Stat> {
        Ok(self.lookup(rel)?.stat())
    }

    fn readlink(&self, rel: &[u8]) -> KResult<Vec<u8>> {
        self.lookup(rel)?.target()
    }

    fn open(&self, rel: &[u8], flags: i32, _st: &Stat) -> KResult<Box<dyn FileOps>> {
        let node = self.lookup(rel)?;
        self.open_node(node, rel, flags)
    }

    fn create(&self, rel: &[u8], flags: i32, mode: u32, owner: Owner) -> KResult<Box<dyn FileOps>> {
        let node = self.create_node(
            rel,
            NewNode::new(libc::S_IFREG | (mode & 0o7777), owner, Content::Empty),
        )?;
        self.open_node(node, rel, flags)
    }

    fn mkdir(&self, rel: &[u8], mode: u32, owner: Owner) -> KResult<()> {
        self.create_node(
            rel,
            NewNode::new(
                libc::S_IFDIR | (mode & 0o7777),
                owner,
                Content::Dir { opaque: true },
            ),
        )
        .map(|_| ())
    }

    fn mknod(&self, rel: &[u8], mode: u32, rdev: u64, owner: Owner) -> KResult<()> {
        let mut spec = NewNode::new(mode, owner, Content::Empty);
        spec.rdev = rdev;
        self.create_node(rel, spec).map(|_| ())
    }

    fn symlink(&self, rel: &[u8], target: &[u8], owner: Owner) -> KResult<()> {
        self.create_node(
            rel,
            NewNode::new(
                libc::S_IFLNK | 0o777,
                owner,
                Content::Symlink(target.to_vec()),
            ),
        )
        .map(|_| ())
    }

    fn unlink(&self, rel: &[u8]) -> KResult<()> {
        self.remove(rel, Remove::Unlink, false)
    }

    fn rmdir(&self, rel: &[u8]) -> KResult<()> {
        self.remove(rel, Remove::Rmdir, false)
    }

    fn rename(&self, old: &[u8], new: &[u8], flags: u32) -> KResult<()> {
        Tmpfs::rename(self, old, new, flags, false)
    }

    fn link(&self, old: &[u8], new: &[u8]) -> KResult<()> {
        Tmpfs::link(self, old, new)
    }

    fn setattr(&self, rel: &[u8], attr: &SetAttr) -> KResult<()> {
        self.setattr_node(rel, attr)
    }

    fn statfs(&self, _rel: &[u8]) -> KResult<StatFs> {
        Ok(self.statfs_impl())
    }
}

/// An open tmpfs regular file.
pub(super) struct TmpFile {
    pub(super) node: Arc<Inode>,
}

impl FileOps for TmpFile {
    fn read(&self, buf: &mut [u8], pos: Option<u64>) -> KResult<usize> {
        self.node.read_at(buf, pos.unwrap_or(0))
    }

    fn write(&self, buf: &[u8], pos: Option<u64>) -> KResult<usize> {
        self.node.write_at(buf, pos.unwrap_or(0))
    }

    fn stat(&self) -> KResult<Stat> {
        Ok(self.node.stat())
    }

    fn seekable(&self) -> bool {
        true
    }

    fn truncate(&self, len: u64) -> KResult<()> {
        self.node.truncate(len)
    }

    fn mmap_source(&self) -> KResult<MmapSource> {
        Ok(MmapSource::HostFd(self.node.memfd()?))
    }

    fn reopen(&self, _flags: i32) -> KResult<Box<dyn FileOps>> {
        Ok(Box::new(TmpFile {
            node: self.node.clone(),
        }))
    }

    fn fallocate(&self, mode: i32, off: u64, len: u64) -> KResult<()> {
        if mode & libc::FALLOC_FL_PUNCH_HOLE != 0 {
            return self.node.punch_hole(off, len);
        }
        super::file::generic_fallocate(self, mode, off, len)
    }
}

/// A named pipe's shared state.
#[derive(Default)]
pub(crate) struct Fifo {
    pub(super) st: Mutex<FifoState>,
    wq: WaitQueue,
}

/// A FIFO's buffer and ends.
#[derive(Default)]
pub(super) struct FifoState {
    pub(super) buf: VecDeque<u8>,
    readers: u32,
    writers: u32,
    reader_opens: u64,
    writer_opens: u64,
}

/// One open end of a FIFO. Opening never blocks: until the other side
/// has been opened once, an empty read (or a write without readers)
/// reports EAGAIN instead of EOF (EPIPE), so the caller waits as Linux's
/// blocking open would.
pub(super) struct FifoEnd {
    pub(super) node: Arc<Inode>,
    fifo: Arc<Fifo>,
    pub(super) read: bool,
    pub(super) write: bool,
    /// Opens of the other side counted when this end was opened.
    peer_opens_at_open: u64,
    peer_present_at_open: bool,
}

impl FifoEnd {
    fn open(node: Arc<Inode>, fifo: Arc<Fifo>, flags: i32) -> KResult<FifoEnd> {
        let acc = flags & libc::O_ACCMODE;
        let read = acc == libc::O_RDONLY || acc == libc::O_RDWR;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        let mut st = lock(&fifo.st);
        if write && !read && flags & libc::O_NONBLOCK != 0 && st.readers == 0 {
            return Err(Errno::ENXIO);
        }
        let (peer_opens_at_open, peer_present_at_open) = if read && !write {
            (st.writer_opens, st.writers > 0)
        } else if write && !read {
            (st.reader_opens, st.readers > 0)
        } else {
            (0, true)
        };
        if read {
            st.readers += 1;
            st.reader_opens += 1;
        }
        if write {
            st.writers += 1;
            st.writer_opens += 1;
        }
        drop(st);
        fifo.wq.notify_all();
        Ok(FifoEnd {
            node,
            fifo,
            read,
            write,
            peer_opens_at_open,
            peer_present_at_open,
        })
    }

    /// An end of the FIFO of `node` as a checkpoint saved it: counted as
    /// open like [`FifoEnd::open`] does, but never refused, and with the
    /// other side seen already if `peer_seen`.
    pub(super) fn restored(
        node: Arc<Inode>,
        read: bool,
        write: bool,
        peer_seen: bool,
    ) -> KResult<FifoEnd> {
        let Kind::Fifo(fifo) = &node.kind else {
            return Err(Errno::EINVAL);
        };
        let fifo = fifo.clone();
        let mut st = lock(&fifo.st);
        let peer_opens_at_open = if read {
            st.writer_opens
        } else {
            st.reader_opens
        };
        if read {
            st.readers += 1;
            st.reader_opens += 1;
        }
        if write {
            st.writers += 1;
            st.writer_opens += 1;
        }
        drop(st);
        fifo.wq.notify_all();
        Ok(FifoEnd {
            node,
            fifo,
            read,
            write,
            peer_opens_at_open,
            peer_present_at_open: peer_seen || (read && write),
        })
    }

    /// Whether this end has seen the other side (so an empty read means
    /// end of file, a write without readers EPIPE).
    pub(super) fn peer_seen_now(&self) -> bool {
        self.peer_seen(&lock(&self.fifo.st))
    }

    fn peer_seen(&self, st: &FifoState) -> bool {
        let opens = if self.read {
            st.writer_opens
        } else {
            st.reader_opens
        };
        self.peer_present_at_open || opens > self.peer_opens_at_open
    }
}

impl FileOps for FifoEnd {
    fn read(&self, buf: &mut [u8], _pos: Option<u64>) -> KResult<usize> {
        if !self.read {
            return Err(Errno::EBADF);
        }
        let mut st = lock(&self.fifo.st);
        if st.buf.is_empty() {
            if buf.is_empty() {
                return Ok(0);
            }
            return if st.writers == 0 && self.peer_seen(&st) {
                Ok(0)
            } else {
                Err(Errno::EAGAIN)
            };
        }
        let n = buf.len().min(st.buf.len());
        for (i, b) in st.buf.drain(..n).enumerate() {
            buf[i] = b;
        }
        drop(st);
        self.fifo.wq.notify_all();
        Ok(n)
    }

    fn write(&self, buf: &[u8], _pos: Option<u64>) -> KResult<usize> {
        if !self.write {
            return Err(Errno::EBADF);
        }
        let mut st = lock(&self.fifo.st);
        if st.readers == 0 {
            return if self.peer_seen(&st) {
                Err(Errno::EPIPE)
            } else {
                Err(Errno::EAGAIN)
            };
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let free = FIFO_CAPACITY - st.buf.len().min(FIFO_CAPACITY);
        if free == 0 || (buf.len() <= PIPE_BUF && free < buf.len()) {
            return Err(Errno::EAGAIN);
        }
        let n = free.min(buf.len());
        st.buf.extend(&buf[..n]);
        drop(st);
        self.fifo.wq.notify_all();
        Ok(n)
    }

    fn stat(&self) -> KResult<Stat> {
        Ok(self.node.stat())
    }

    fn poll(&self) -> PollEvents {
        let st = lock(&self.fifo.st);
        let mut ev = PollEvents::empty();
        if self.read {
            if !st.buf.is_empty() {
                ev |= PollEvents::IN | PollEvents::RDNORM;
            }
            if st.writers == 0 && self.peer_seen(&st) {
                ev |= PollEvents::HUP;
            }
        }
        if self.write {
            if st.readers == 0 && self.peer_seen(&st) {
                ev |= PollEvents::ERR;
            } else if st.readers > 0 && FIFO_CAPACITY - st.buf.len().min(FIFO_CAPACITY) >= PIPE_BUF
            {
                ev |= PollEvents::OUT | PollEvents::WRNORM;
            }
        }
        ev
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.fifo.wq)
    }

    fn release(&self) {
        let mut st = lock(&self.fifo.st);
        if self.read {
            st.readers = st.readers.saturating_sub(1);
        }
        if self.write {
            st.writers = st.writers.saturating_sub(1);
        }
        if st.readers == 0 && st.writers == 0 {
            st.buf.clear();
        }
        drop(st);
        self.fifo.wq.notify_all();
    }

    fn proc_name(&self) -> Option<String> {
        None
    }

    fn pipe_buffer(&self) -> Option<&dyn PipeBuffer> {
        Some(self)
    }
}

impl FifoEnd {
    fn take_or_peek(&self, max: usize, take: bool) -> KResult<Vec<u8>> {
        if !self.read {
            return Err(Errno::EBADF);
        }
        let mut st = lock(&self.fifo.st);
        if st.buf.is_empty() {
            return if max == 0 || (st.writers == 0 && self.peer_seen(&st)) {
                Ok(Vec::new())
            } else {
                Err(Errno::EAGAIN)
            };
        }
        let n = max.min(st.buf.len());
        if !take {
            return Ok(st.buf.iter().take(n).copied().collect());
        }
        let out: Vec<u8> = st.buf.drain(..n).collect();
        drop(st);
        self.fifo.wq.notify_all();
        Ok(out)
    }
}

impl PipeBuffer for FifoEnd {
    fn take(&self, max: usize) -> KResult<Vec<u8>> {
        self.take_or_peek(max, true)
    }

    fn peek(&self, max: usize) -> KResult<Vec<u8>> {
        self.take_or_peek(max, false)
    }

    fn unread(&self, data: &[u8]) {
        let mut st = lock(&self.fifo.st);
        for &b in data.iter().rev() {
            st.buf.push_front(b);
        }
        drop(st);
        self.fifo.wq.notify_all();
    }

    fn room(&self) -> KResult<usize> {
        if !self.write {
            return Err(Errno::EBADF);
        }
        let st = lock(&self.fifo.st);
        if st.readers == 0 {
            return if self.peer_seen(&st) {
                Err(Errno::EPIPE)
            } else {
                Ok(0)
            };
        }
        Ok(FIFO_CAPACITY.saturating_sub(st.buf.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Owner {
        Owner {
            uid: 1000,
            gid: 1000,
        }
    }

    #[test]
    fn create_write_read_stat() {
        let fs = Tmpfs::new(None);
        fs.mkdir(b"d", 0o755, owner()).unwrap();
        let f = fs.create(b"d/f", libc::O_RDWR, 0o644, owner()).unwrap();
        assert_eq!(f.write(b"hello", Some(0)).unwrap(), 5);
        assert_eq!(f.write(b"!", Some(10)).unwrap(), 1);
        let mut buf = [0u8; 32];
        let n = f.read(&mut buf, Some(0)).unwrap();
        assert_eq!(&buf[..n], b"hello\0\0\0\0\0!");
        let st = fs.lstat(b"d/f").unwrap();
        assert_eq!(st.st_size, 11);
        assert_eq!(st.st_mode, libc::S_IFREG | 0o644);
        assert_eq!(st.st_uid, 1000);
        assert_eq!(st.st_dev, fs.dev());
        let d = fs.lstat(b"d").unwrap();
        assert_eq!(d.st_nlink, 2);
        fs.mkdir(b"d/sub", 0o700, owner()).unwrap();
        assert_eq!(fs.lstat(b"d").unwrap().st_nlink, 3);
        assert_eq!(fs.lstat(b"").unwrap().st_nlink, 3);
        assert_ne!(
            fs.lstat(b"d/sub").unwrap().st_ino,
            fs.lstat(b"d").unwrap().st_ino
        );
    }

    #[test]
    fn size_limit_gives_enospc() {
        let fs = Tmpfs::new(Some(10_000));
        let f = fs.create(b"a", libc::O_RDWR, 0o644, owner()).unwrap();
        assert_eq!(f.write(&[1u8; 8000], Some(0)).unwrap(), 8000);
        // Partly fits: shortened.
        assert_eq!(f.write(&[2u8; 4000], Some(8000)).unwrap(), 2000);
        assert_eq!(f.write(&[3u8; 10], Some(10_000)), Err(Errno::ENOSPC));
        // Overwriting inside the file needs no space.
        assert_eq!(f.write(&[4u8; 100], Some(0)).unwrap(), 100);
        assert_eq!(f.truncate(20_000).err(), Some(Errno::ENOSPC));
        let g = fs.create(b"b", libc::O_RDWR, 0o644, owner()).unwrap();
        assert_eq!(g.write(b"x", Some(0)), Err(Errno::ENOSPC));
        // Deleting frees the space once the last reference goes.
        drop(f);
        fs.unlink(b"a").unwrap();
        assert_eq!(fs.used(), 0);
        assert_eq!(g.write(&[5u8; 9000], Some(0)).unwrap(), 9000);
        let sf = fs.statfs(b"").unwrap();
        assert_eq!(sf.f_type, TMPFS_MAGIC);
    }

    #[test]
    fn mmap_source_is_coherent_with_writes() {
        let fs = Tmpfs::new(None);
        let f = fs.create(b"m", libc::O_RDWR, 0o644, owner()).unwrap();
        f.write(b"abcdef", Some(0)).unwrap();
        let MmapSource::HostFd(fd) = f.mmap_source().unwrap() else {
            panic!("not a host fd")
        };
        let mut buf = [0u8; 6];
        nix::sys::uio::pread(&*fd, &mut buf, 0).unwrap();
        assert_eq!(&buf, b"abcdef");
        // Changes through the memfd (as a MAP_SHARED mapping makes) are
        // seen by read, and writes are seen through the memfd.
        nix::sys::uio::pwrite(&*fd, b"XY", 1).unwrap();
        let mut rb = [0u8; 6];
        f.read(&mut rb, Some(0)).unwrap();
        assert_eq!(&rb, b"aXYdef");
        f.write(b"Q", Some(5)).unwrap();
        nix::sys::uio::pread(&*fd, &mut buf, 0).unwrap();
        assert_eq!(&buf, b"aXYdeQ");
        // A fresh empty file gets a memfd on demand.
        let g = fs.create(b"n", libc::O_RDWR, 0o644, owner()).unwrap();
        assert!(matches!(g.mmap_source().unwrap(), MmapSource::HostFd(_)));
    }

    #[test]
    fn rename_link_unlink() {
        let fs = Tmpfs::new(None);
        fs.mkdir(b"a", 0o755, owner()).unwrap();
        fs.mkdir(b"b", 0o755, owner()).unwrap();
        fs.create(b"a/f", 0, 0o644, owner()).unwrap();
        MountFs::link(&fs, b"a/f", b"b/g").unwrap();
        assert_eq!(fs.lstat(b"a/f").unwrap().st_nlink, 2);
        MountFs::rename(&fs, b"a/f", b"b/h", 0).unwrap();
        assert_eq!(fs.lstat(b"a/f").err(), Some(Errno::ENOENT));
        assert_eq!(
            fs.lstat(b"b/h").unwrap().st_ino,
            fs.lstat(b"b/g").unwrap().st_ino
        );
        // Same inode: no-op.
        MountFs::rename(&fs, b"b/h", b"b/g", 0).unwrap();
        assert!(fs.lstat(b"b/h").is_ok());
        fs.unlink(b"b/h").unwrap();
        assert_eq!(fs.lstat(b"b/g").unwrap().st_nlink, 1);
        assert_eq!(
            MountFs::rename(&fs, b"a", b"b", 0).err(),
            Some(Errno::ENOTEMPTY)
        );
        assert_eq!(
            MountFs::rename(&fs, b"b/g", b"a", 0).err(),
            Some(Errno::EISDIR)
        );
        MountFs::rename(&fs, b"a", b"b", libc::RENAME_EXCHANGE).unwrap();
        assert!(fs.lstat(b"a/g").is_ok());
        assert_eq!(fs.rmdir(b"a").err(), Some(Errno::ENOTEMPTY));
        fs.rmdir(b"b").unwrap();
        fs.symlink(b"l", b"/x/y", owner()).unwrap();
        assert_eq!(fs.readlink(b"l").unwrap(), b"/x/y");
        assert_eq!(fs.readlink(b"a").err(), Some(Errno::EINVAL));
    }

    #[test]
    fn fifo_roundtrip() {
        let fs = Tmpfs::new(None);
        fs.mknod(b"p", libc::S_IFIFO | 0o644, 0, owner()).unwrap();
        let st = fs.lstat(b"p").unwrap();
        let r = fs.open(b"p", libc::O_RDONLY, &st).unwrap();
        // No writer yet: EAGAIN, not EOF.
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut buf, None).err(), Some(Errno::EAGAIN));
        let w = fs.open(b"p", libc::O_WRONLY, &st).unwrap();
        assert_eq!(w.write(b"hi", None).unwrap(), 2);
        assert!(r.poll().contains(PollEvents::IN));
        assert_eq!(r.read(&mut buf, None).unwrap(), 2);
        w.release();
        drop(w);
        assert_eq!(r.read(&mut buf, None).unwrap(), 0);
        assert_eq!(
            fs.open(b"p", libc::O_WRONLY | libc::O_NONBLOCK, &st).err(),
            None,
            "a reader exists, so a non-blocking writer may open"
        );
    }
}
