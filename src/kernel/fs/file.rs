//! Open file descriptions and the operations every kind of file provides.

use crate::errno::{Errno, KResult};
use crate::kernel::wait::WaitQueue;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// `struct stat` as x86_64 Linux lays it out.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)] // field names are the ABI's
pub struct Stat {
    pub st_dev: u64,
    pub st_ino: u64,
    pub st_nlink: u64,
    pub st_mode: u32,
    pub st_uid: u32,
    pub st_gid: u32,
    pub __pad0: i32,
    pub st_rdev: u64,
    pub st_size: i64,
    pub st_blksize: i64,
    pub st_blocks: i64,
    pub st_atime: i64,
    pub st_atime_nsec: i64,
    pub st_mtime: i64,
    pub st_mtime_nsec: i64,
    pub st_ctime: i64,
    pub st_ctime_nsec: i64,
    pub __unused: [i64; 3],
}
static_assertions::assert_eq_size!(Stat, [u8; 144]);
static_assertions::const_assert_eq!(std::mem::offset_of!(Stat, st_mode), 24);
static_assertions::const_assert_eq!(std::mem::offset_of!(Stat, st_size), 48);
static_assertions::const_assert_eq!(std::mem::offset_of!(Stat, st_mtime), 88);

impl Stat {
    /// From a host `struct stat`.
    pub fn from_host(s: &libc::stat) -> Stat {
        Stat {
            st_dev: s.st_dev,
            st_ino: s.st_ino,
            st_nlink: s.st_nlink,
            st_mode: s.st_mode,
            st_uid: s.st_uid,
            st_gid: s.st_gid,
            __pad0: 0,
            st_rdev: s.st_rdev,
            st_size: s.st_size,
            st_blksize: s.st_blksize,
            st_blocks: s.st_blocks,
            st_atime: s.st_atime,
            st_atime_nsec: s.st_atime_nsec,
            st_mtime: s.st_mtime,
            st_mtime_nsec: s.st_mtime_nsec,
            st_ctime: s.st_ctime,
            st_ctime_nsec: s.st_ctime_nsec,
            __unused: [0; 3],
        }
    }

    /// The S_IFMT bits.
    pub fn file_type(&self) -> u32 {
        self.st_mode & libc::S_IFMT
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.file_type() == libc::S_IFDIR
    }
}

/// One directory entry as `getdents64` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number.
    pub ino: u64,
    /// DT_* type.
    pub kind: u8,
    /// Name.
    pub name: Vec<u8>,
}

bitflags::bitflags! {
    /// poll(2) events.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct PollEvents: i16 {
        /// Data to read.
        const IN = libc::POLLIN;
        /// Urgent data.
        const PRI = libc::POLLPRI;
        /// Writing will not block.
        const OUT = libc::POLLOUT;
        /// Error condition.
        const ERR = libc::POLLERR;
        /// Hang up.
        const HUP = libc::POLLHUP;
        /// Invalid descriptor.
        const NVAL = libc::POLLNVAL;
        /// Normal data to read.
        const RDNORM = libc::POLLRDNORM;
        /// Normal data may be written.
        const WRNORM = libc::POLLWRNORM;
        /// Peer closed its writing half.
        const RDHUP = libc::POLLRDHUP;
    }
}

/// How `mmap` may map a file.
pub enum MmapSource {
    /// Private mappings copy the file's bytes; shared writable mappings are
    /// refused (EACCES) unless the file is copied up first.
    Copy,
    /// The file's data lives in this host file (a tmpfs memfd): both private
    /// (copied) and shared (mapped directly) mappings work.
    HostFd(Arc<OwnedFd>),
}

/// Lets code that must know a file's concrete kind (checkpointing,
/// registries keyed by object) look behind `dyn FileOps`.
pub trait AsAny {
    /// The file as `Any`.
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<T: std::any::Any> AsAny for T {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// What every kind of open file can do. Methods never block: a file that
/// has nothing to give returns EAGAIN and the syscall layer waits on
/// `wait_queue()` / `host_fd()` unless the description is non-blocking.
pub trait FileOps: Send + Sync + AsAny {
    /// Reads at `pos` (seekable files) or from the stream (`pos` None).
    fn read(&self, _buf: &mut [u8], _pos: Option<u64>) -> KResult<usize> {
        Err(Errno::EINVAL)
    }
    /// Writes at `pos` or to the stream.
    fn write(&self, _buf: &[u8], _pos: Option<u64>) -> KResult<usize> {
        Err(Errno::EINVAL)
    }
    /// fstat.
    fn stat(&self) -> KResult<Stat>;
    /// Whether `lseek` and positional I/O work.
    fn seekable(&self) -> bool {
        false
    }
    /// Directory entries starting at index `from` (`.` and `..` included).
    fn readdir(&self, _from: u64) -> KResult<Vec<DirEntry>> {
        Err(Errno::ENOTDIR)
    }
    /// Readiness right now.
    fn poll(&self) -> PollEvents {
        PollEvents::IN | PollEvents::OUT
    }
    /// Where waiters for readiness changes queue (kernel objects).
    fn wait_queue(&self) -> Option<&WaitQueue> {
        None
    }
    /// A host fd whose readiness is this file's (host-backed streams).
    fn host_fd(&self) -> Option<RawFd> {
        None
    }
    /// ioctl(2). `arg` is the raw argument; memory access goes through the
    /// caller (see `IoctlCtx`).
    fn ioctl(&self, _cmd: u32, _arg: u64, _ctx: &mut dyn IoctlCtx) -> KResult<u64> {
        Err(Errno::ENOTTY)
    }
    /// truncate to `len`.
    fn truncate(&self, _len: u64) -> KResult<()> {
        Err(Errno::EINVAL)
    }
    /// fsync.
    fn sync(&self) -> KResult<()> {
        Ok(())
    }
    /// How this file can be mapped (ENODEV if it cannot).
    fn mmap_source(&self) -> KResult<MmapSource> {
        Err(Errno::ENODEV)
    }
    /// Called when the last descriptor of the description is closed.
    fn release(&self) {}
    /// Target shown by /proc/<pid>/fd/N for non-path files ("pipe:[N]").
    fn proc_name(&self) -> Option<String> {
        None
    }
    /// The pipe buffer behind a pipe or FIFO end (splice, tee).
    fn pipe_buffer(&self) -> Option<&dyn PipeBuffer> {
        None
    }
    /// A new, independent open of the same file with `flags`, for
    /// reopening files that have no path (memfd, O_TMPFILE) through
    /// /proc/<pid>/fd/N. ENXIO where that is impossible.
    fn reopen(&self, _flags: i32) -> KResult<Box<dyn FileOps>> {
        Err(Errno::ENXIO)
    }
    /// fallocate(2) on a regular file: `mode` is 0, FALLOC_FL_KEEP_SIZE,
    /// FALLOC_FL_PUNCH_HOLE|KEEP_SIZE or FALLOC_FL_ZERO_RANGE (with or
    /// without KEEP_SIZE); the caller has checked the arguments. The
    /// default works through `stat`, `truncate` and `write`.
    fn fallocate(&self, mode: i32, off: u64, len: u64) -> KResult<()> {
        generic_fallocate(self, mode, off, len)
    }
}

/// fallocate through `stat`, `truncate` and `write` (see
/// [`FileOps::fallocate`]): space is not reserved, holes are zeroed.
pub fn generic_fallocate<F: FileOps + ?Sized>(f: &F, mode: i32, off: u64, len: u64) -> KResult<()> {
    let size = f.stat()?.st_size.max(0) as u64;
    let end = off.checked_add(len).ok_or(Errno::EFBIG)?;
    let keep = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
    if mode & (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_ZERO_RANGE) != 0 {
        let stop = if keep { end.min(size) } else { end };
        let zeros = vec![0u8; 64 * 1024];
        let mut at = off;
        while at < stop {
            let n = ((stop - at) as usize).min(zeros.len());
            let w = f.write(&zeros[..n], Some(at))?;
            if w == 0 {
                return Err(Errno::EIO);
            }
            at += w as u64;
        }
        return Ok(());
    }
    if !keep && end > size {
        f.truncate(end)?;
    }
    Ok(())
}

/// The buffer of a pipe or FIFO as splice(2) and tee(2) move it.
pub trait PipeBuffer {
    /// Removes and returns up to `max` buffered bytes: empty at end of file
    /// (nothing buffered, no writers), EAGAIN when empty with writers.
    fn take(&self, max: usize) -> KResult<Vec<u8>>;
    /// Like `take`, but leaves the bytes buffered (tee).
    fn peek(&self, max: usize) -> KResult<Vec<u8>>;
    /// Puts back, at the front, bytes taken but not delivered.
    fn unread(&self, data: &[u8]);
    /// Bytes a write could add right now (0 when full); EPIPE without
    /// readers.
    fn room(&self) -> KResult<usize>;
}

/// Application-memory access for ioctls.
pub trait IoctlCtx {
    /// Copies application memory.
    fn read_mem(&mut self, addr: u64, buf: &mut [u8]) -> KResult<()>;
    /// Writes application memory.
    fn write_mem(&mut self, addr: u64, buf: &[u8]) -> KResult<()>;
}

/// Work done when an open file description goes away (its last
/// descriptor closed): releasing its flock and OFD locks.
pub type CloseHook = Box<dyn FnOnce(u64) + Send>;

static NEXT_OFD_ID: AtomicU64 = AtomicU64::new(1);

/// An open file description: shared by dup'ed and inherited descriptors.
pub struct OpenFile {
    /// The file.
    pub ops: Box<dyn FileOps>,
    /// O_* status flags (access mode, O_APPEND, O_NONBLOCK, ...).
    pub flags: AtomicU32,
    /// File position.
    pub pos: Mutex<u64>,
    /// Path inside the sandbox, where there is one.
    pub path: Vec<u8>,
    /// Unique id of this description (owner of its flock and OFD locks).
    pub id: u64,
    /// Run with `id` when the description is dropped.
    on_close: Mutex<Vec<CloseHook>>,
}

impl std::fmt::Debug for OpenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenFile({})", String::from_utf8_lossy(&self.path))
    }
}

impl OpenFile {
    /// Wraps file operations into a description.
    pub fn new(ops: Box<dyn FileOps>, flags: i32, path: Vec<u8>) -> Arc<OpenFile> {
        Arc::new(OpenFile {
            ops,
            flags: AtomicU32::new(flags as u32),
            pos: Mutex::new(0),
            path,
            id: NEXT_OFD_ID.fetch_add(1, Ordering::Relaxed),
            on_close: Mutex::new(Vec::new()),
        })
    }

    /// Registers work to do when the description goes away.
    pub fn on_close(&self, hook: CloseHook) {
        self.on_close
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(hook);
    }

    /// Status flags.
    pub fn flags(&self) -> i32 {
        self.flags.load(Ordering::Relaxed) as i32
    }

    /// Whether reads are allowed.
    pub fn readable(&self) -> bool {
        let acc = self.flags() & libc::O_ACCMODE;
        acc == libc::O_RDONLY || acc == libc::O_RDWR
    }

    /// Whether writes are allowed.
    pub fn writable(&self) -> bool {
        let acc = self.flags() & libc::O_ACCMODE;
        acc == libc::O_WRONLY || acc == libc::O_RDWR
    }

    /// Whether the description is non-blocking.
    pub fn nonblocking(&self) -> bool {
        self.flags() & libc::O_NONBLOCK != 0
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        let hooks = std::mem::take(self.on_close.get_mut().unwrap_or_else(|e| e.into_inner()));
        for h in hooks {
            h(self.id);
        }
        self.ops.release();
    }
}

/// DT_* type of a mode.
pub fn dtype_of(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFREG => libc::DT_REG,
        libc::S_IFDIR => libc::DT_DIR,
        libc::S_IFLNK => libc::DT_LNK,
        libc::S_IFCHR => libc::DT_CHR,
        libc::S_IFBLK => libc::DT_BLK,
        libc::S_IFIFO => libc::DT_FIFO,
        libc::S_IFSOCK => libc::DT_SOCK,
        _ => libc::DT_UNKNOWN,
    }
}

/// A file shown under a fixed name in /proc/<pid>/fd (memfd's
/// "/memfd:NAME (deleted)", an O_TMPFILE's "/dir/#INO (deleted)"); every
/// operation goes to the wrapped file.
pub struct Named {
    inner: Box<dyn FileOps>,
    name: String,
}

impl Named {
    /// Wraps `inner`, shown as `name`.
    pub fn new(inner: Box<dyn FileOps>, name: String) -> Named {
        Named { inner, name }
    }

    /// The wrapped file.
    pub fn inner(&self) -> &dyn FileOps {
        self.inner.as_ref()
    }

    /// The name shown in `/proc/<pid>/fd`.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl FileOps for Named {
    fn read(&self, buf: &mut [u8], pos: Option<u64>) -> KResult<usize> {
        self.inner.read(buf, pos)
    }
    fn write(&self, buf: &[u8], pos: Option<u64>) -> KResult<usize> {
        self.inner.write(buf, pos)
    }
    fn stat(&self) -> KResult<Stat> {
        self.inner.stat()
    }
    fn seekable(&self) -> bool {
        self.inner.seekable()
    }
    fn readdir(&self, from: u64) -> KResult<Vec<DirEntry>> {
        self.inner.readdir(from)
    }
    fn poll(&self) -> PollEvents {
        self.inner.poll()
    }
    fn wait_queue(&self) -> Option<&WaitQueue> {
        self.inner.wait_queue()
    }
    fn host_fd(&self) -> Option<RawFd> {
        self.inner.host_fd()
    }
    fn ioctl(&self, cmd: u32, arg: u64, ctx: &mut dyn IoctlCtx) -> KResult<u64> {
        self.inner.ioctl(cmd, arg, ctx)
    }
    fn truncate(&self, len: u64) -> KResult<()> {
        self.inner.truncate(len)
    }
    fn sync(&self) -> KResult<()> {
        self.inner.sync()
    }
    fn mmap_source(&self) -> KResult<MmapSource> {
        self.inner.mmap_source()
    }
    fn release(&self) {
        self.inner.release()
    }
    fn proc_name(&self) -> Option<String> {
        Some(self.name.clone())
    }
    fn pipe_buffer(&self) -> Option<&dyn PipeBuffer> {
        self.inner.pipe_buffer()
    }
    fn reopen(&self, flags: i32) -> KResult<Box<dyn FileOps>> {
        Ok(Box::new(Named {
            inner: self.inner.reopen(flags)?,
            name: self.name.clone(),
        }))
    }
    fn fallocate(&self, mode: i32, off: u64, len: u64) -> KResult<()> {
        self.inner.fallocate(mode, off, len)
    }
}
