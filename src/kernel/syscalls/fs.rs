//! File system calls: descriptors, I/O, paths, metadata, readiness.
#![allow(missing_docs)] // handlers are named after the syscalls they serve

use crate::kernel::fs::file::{DirEntry, OpenFile, PipeBuffer, PollEvents, Stat};
use crate::kernel::fs::lock::{FileKey, LockOwner, Range};
use crate::kernel::fs::vfs::Scope;
use crate::kernel::pipe::Pipe;
use crate::kernel::run::Runner;
use crate::kernel::task::lock;
use crate::kernel::{Errno, KResult};
use crate::mm::address_space::{UserSlices, UserSlicesMut};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

type A = [u64; 6];

/// Largest single read/write (Linux MAX_RW_COUNT).
const MAX_RW: usize = 0x7fff_f000;
/// Chunk for large transfers through kernel buffers.
const CHUNK: usize = 1 << 20;

// ---- blocking helpers ----

impl Runner {
    /// Waits until `f` reports one of `events` (or an error/hangup).
    pub fn wait_ready(&mut self, f: &Arc<OpenFile>, events: PollEvents) -> KResult<()> {
        let host: Vec<(i32, i16)> = f
            .ops
            .host_fd()
            .map(|fd| vec![(fd, events.bits())])
            .unwrap_or_default();
        let f2 = f.clone();
        let wq_owner = f.clone();
        let queues: Vec<&crate::kernel::wait::WaitQueue> =
            wq_owner.ops.wait_queue().into_iter().collect();
        self.block(&queues, &host, None, move |_| {
            let ev = f2.ops.poll();
            (ev.intersects(events | PollEvents::ERR | PollEvents::HUP)).then_some(Ok(()))
        })
    }

    /// Reads from a description, blocking unless it is non-blocking.
    pub fn file_read(
        &mut self,
        f: &Arc<OpenFile>,
        buf: &mut [u8],
        pos: Option<u64>,
    ) -> KResult<usize> {
        self.file_read_with(f, pos, |at| f.ops.read(buf, at))
    }

    /// `file_read` with the transfer done by `read(at)`: one non-blocking
    /// read at `at` (None for a stream). A seekable description's position
    /// stays locked during it.
    fn file_read_with(
        &mut self,
        f: &Arc<OpenFile>,
        pos: Option<u64>,
        mut read: impl FnMut(Option<u64>) -> KResult<usize>,
    ) -> KResult<usize> {
        if !f.readable() {
            return Err(Errno::EBADF);
        }
        loop {
            let res = if f.ops.seekable() && pos.is_none() {
                let mut p = lock(&f.pos);
                let n = read(Some(*p))?;
                *p += n as u64;
                Ok(n)
            } else {
                read(pos)
            };
            match res {
                Err(Errno::EAGAIN) if !f.nonblocking() => self.wait_ready(f, PollEvents::IN)?,
                r => return r,
            }
        }
    }

    /// Writes to a description, blocking unless non-blocking; blocking
    /// writes to streams complete fully unless interrupted.
    pub fn file_write(
        &mut self,
        f: &Arc<OpenFile>,
        buf: &[u8],
        pos: Option<u64>,
    ) -> KResult<usize> {
        self.file_write_with(f, buf.len(), pos, |skip, at| f.ops.write(&buf[skip..], at))
    }

    /// `file_write` of `len` bytes with the transfer done by
    /// `write(skip, at)`: one non-blocking write of the bytes from `skip`
    /// on, at `at` (None for a stream). A seekable description's position
    /// stays locked during it.
    fn file_write_with(
        &mut self,
        f: &Arc<OpenFile>,
        len: usize,
        pos: Option<u64>,
        mut write: impl FnMut(usize, Option<u64>) -> KResult<usize>,
    ) -> KResult<usize> {
        if !f.writable() {
            return Err(Errno::EBADF);
        }
        let mut done = 0;
        loop {
            let res = if f.ops.seekable() && pos.is_none() {
                let mut p = lock(&f.pos);
                if f.flags() & libc::O_APPEND != 0 {
                    *p = f.ops.stat()?.st_size as u64;
                }
                let n = write(done, Some(*p))?;
                *p += n as u64;
                Ok(n)
            } else if f.ops.seekable() && pos.is_some() && f.flags() & libc::O_APPEND != 0 {
                // Linux's pwrite(2) on an O_APPEND file appends, whatever
                // the offset (see BUGS in pwrite(2)).
                let size = f.ops.stat()?.st_size as u64;
                write(done, Some(size))
            } else {
                write(done, pos.map(|p| p + done as u64))
            };
            match res {
                Ok(n) => {
                    done += n;
                    // Only byte streams (pipes, host streams, terminals)
                    // finish a blocking write piecewise; a message-like file
                    // (eventfd, ...) takes what it takes in one call.
                    if done >= len
                        || f.nonblocking()
                        || f.ops.seekable()
                        || n == 0
                        || !is_byte_stream(f)
                    {
                        return Ok(done);
                    }
                }
                Err(Errno::EAGAIN) if !f.nonblocking() => {
                    if let Err(e) = self.wait_ready(f, PollEvents::OUT) {
                        return if done > 0 { Ok(done) } else { Err(e) };
                    }
                }
                Err(Errno::EPIPE) => {
                    if done == 0 {
                        let info = crate::kernel::signal::SigInfo::user(
                            libc::SIGPIPE,
                            0,
                            self.t.tg.tgid,
                            0,
                        );
                        self.k.signal_task(&self.t.clone(), info);
                        return Err(Errno::EPIPE);
                    }
                    return Ok(done);
                }
                Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
            }
        }
    }

    fn install(&self, f: Arc<OpenFile>, cloexec: bool) -> KResult<u64> {
        let limit = self.nofile_limit();
        lock(&self.t.files())
            .insert(f, cloexec, limit)
            .map(|fd| fd as u64)
    }
}

/// Reads from `f` into application memory at `addr`: in place where
/// possible (see `read_in_place`), through a kernel buffer otherwise.
fn read_into_app(
    r: &mut Runner,
    f: &Arc<OpenFile>,
    addr: u64,
    len: usize,
    pos: Option<u64>,
) -> KResult<usize> {
    let len = len.min(MAX_RW);
    read_in_place(r, f, &[(addr, len)], pos)
        .unwrap_or_else(|| read_through_buffer(r, f, addr, len, pos))
}

/// Reads from `f` straight into the application memory of `iov` (at most
/// MAX_RW bytes in all): the file's `read` gets the application's own
/// pages, so the bytes are copied once, as on Linux. `None` (nothing done)
/// where the memory is not all memory-file memory (a shared mapping of a
/// tmpfs file, a bad address: the caller copies, and so reports faults as
/// it always has), for empty transfers, and for a stream into several
/// pieces (its bytes must come in one read).
fn read_in_place(
    r: &mut Runner,
    f: &Arc<OpenFile>,
    iov: &[(u64, usize)],
    pos: Option<u64>,
) -> Option<KResult<usize>> {
    // A statement of its own: the address space must not stay locked
    // while the file reads (and perhaps blocks).
    let pinned = lock(&r.mm).user_slices_mut(iov);
    let mut dst = pinned.ok().flatten()?;
    if dst.is_empty() || (dst.pieces() > 1 && !f.ops.seekable()) {
        return None;
    }
    Some(r.file_read_with(f, pos, |at| read_pieces(f, &mut dst, at)))
}

/// One non-blocking read into pinned application memory, piece after
/// piece from `at` on, up to a short read. A stream (`at` None) is read
/// into the first piece only: callers give it one.
fn read_pieces(f: &OpenFile, dst: &mut UserSlicesMut, at: Option<u64>) -> KResult<usize> {
    let mut done = 0;
    let err = dst.for_each_mut(|buf| match f.ops.read(buf, at.map(|p| p + done as u64)) {
        Ok(n) => {
            done += n;
            if n < buf.len() || at.is_none() {
                ControlFlow::Break(None)
            } else {
                ControlFlow::Continue(())
            }
        }
        Err(e) => ControlFlow::Break(Some(e)),
    });
    match err {
        Some(Some(e)) if done == 0 => Err(e),
        _ => Ok(done),
    }
}

fn read_through_buffer(
    r: &mut Runner,
    f: &Arc<OpenFile>,
    addr: u64,
    len: usize,
    pos: Option<u64>,
) -> KResult<usize> {
    let mut buf = vec![0u8; len.min(CHUNK)];
    let mut done = 0;
    while done < len {
        let want = (len - done).min(buf.len());
        let res = r.file_read(f, &mut buf[..want], pos.map(|p| p + done as u64));
        let n = match res {
            Ok(n) => n,
            Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
        };
        if let Err(e) = r.write_mem(addr + done as u64, &buf[..n]) {
            return if done > 0 { Ok(done) } else { Err(e) };
        }
        done += n;
        if n < want || !f.ops.seekable() {
            break;
        }
    }
    Ok(done)
}

/// Writes application memory at `addr` to `f`: in place where possible
/// (see `write_in_place`), through a kernel buffer otherwise.
fn write_from_app(
    r: &mut Runner,
    f: &Arc<OpenFile>,
    addr: u64,
    len: usize,
    pos: Option<u64>,
) -> KResult<usize> {
    let len = len.min(MAX_RW);
    write_in_place(r, f, &[(addr, len)], pos)
        .unwrap_or_else(|| write_through_buffer(r, f, addr, len, pos))
}

/// Writes the application memory of `iov` (at most MAX_RW bytes in all)
/// to `f` straight from the application's pages; `None` (nothing done)
/// where that is not possible, as for `read_in_place`. (A stream gets
/// one piece only, so that a pipe write up to PIPE_BUF stays atomic. An
/// empty write goes the copying way, which hands the file an empty
/// buffer, as a zero-length datagram needs.)
fn write_in_place(
    r: &mut Runner,
    f: &Arc<OpenFile>,
    iov: &[(u64, usize)],
    pos: Option<u64>,
) -> Option<KResult<usize>> {
    let pinned = lock(&r.mm).user_slices(iov);
    let src = pinned.ok().flatten()?;
    if src.is_empty() || (src.pieces() > 1 && !f.ops.seekable()) {
        return None;
    }
    Some(r.file_write_with(f, src.len(), pos, |skip, at| {
        write_pieces(f, &src, skip, at)
    }))
}

/// One non-blocking write of pinned application memory, from byte `skip`
/// on, piece after piece from `at` on, up to a short write. A stream (`at`
/// None) is written from the first piece only: callers give it one.
fn write_pieces(
    f: &OpenFile,
    src: &UserSlices,
    mut skip: usize,
    at: Option<u64>,
) -> KResult<usize> {
    let mut done = 0;
    let err = src.for_each(|buf| {
        if skip >= buf.len() {
            skip -= buf.len();
            return ControlFlow::Continue(());
        }
        let buf = &buf[std::mem::take(&mut skip)..];
        match f.ops.write(buf, at.map(|p| p + done as u64)) {
            Ok(n) => {
                done += n;
                if n < buf.len() || at.is_none() {
                    ControlFlow::Break(None)
                } else {
                    ControlFlow::Continue(())
                }
            }
            Err(e) => ControlFlow::Break(Some(e)),
        }
    });
    match err {
        Some(Some(e)) if done == 0 => Err(e),
        _ => Ok(done),
    }
}

fn write_through_buffer(
    r: &mut Runner,
    f: &Arc<OpenFile>,
    addr: u64,
    len: usize,
    pos: Option<u64>,
) -> KResult<usize> {
    if len <= CHUNK || !f.ops.seekable() {
        let mut buf = vec![0u8; len];
        r.read_mem(addr, &mut buf)?;
        return r.file_write(f, &buf, pos);
    }
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CHUNK);
        let mut buf = vec![0u8; n];
        if let Err(e) = r.read_mem(addr + done as u64, &mut buf) {
            return if done > 0 { Ok(done) } else { Err(e) };
        }
        let w = match r.file_write(f, &buf, pos.map(|p| p + done as u64)) {
            Ok(w) => w,
            Err(e) => return if done > 0 { Ok(done) } else { Err(e) },
        };
        done += w;
        if w < n {
            break;
        }
    }
    Ok(done)
}

pub fn read(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    let len = a[2] as usize;
    // A directory's read says EISDIR (see `DirFile`), but an empty read
    // never reaches the file: ask it then only, keeping fstat off the hot
    // path.
    if len == 0 && f.ops.stat()?.is_dir() {
        return Err(Errno::EISDIR);
    }
    read_into_app(r, &f, a[1], len, None).map(|n| n as u64)
}

pub fn write(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    write_from_app(r, &f, a[1], a[2] as usize, None).map(|n| n as u64)
}

fn check_pos(f: &OpenFile, off: u64) -> KResult<u64> {
    if !f.ops.seekable() {
        return Err(Errno::ESPIPE);
    }
    if (off as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(off)
}

pub fn pread64(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    let off = check_pos(&f, a[3])?;
    read_into_app(r, &f, a[1], a[2] as usize, Some(off)).map(|n| n as u64)
}

pub fn pwrite64(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    let off = check_pos(&f, a[3])?;
    write_from_app(r, &f, a[1], a[2] as usize, Some(off)).map(|n| n as u64)
}

fn read_iov(r: &Runner, addr: u64, cnt: u64) -> KResult<Vec<(u64, usize)>> {
    if cnt > 1024 {
        return Err(Errno::EINVAL);
    }
    let mut v = Vec::with_capacity(cnt as usize);
    for i in 0..cnt {
        let e: [u64; 2] = r.read_val(addr + i * 16)?;
        if (e[1] as i64) < 0 {
            return Err(Errno::EINVAL);
        }
        v.push((e[0], e[1] as usize));
    }
    Ok(v)
}

/// The iovec list cut to MAX_RW bytes in all.
fn clamp_iov(iov: &mut Vec<(u64, usize)>) {
    let mut left = MAX_RW;
    for e in iov.iter_mut() {
        e.1 = e.1.min(left);
        left -= e.1;
    }
    iov.retain(|e| e.1 > 0);
}

fn do_readv(r: &mut Runner, fd: u64, iov: u64, cnt: u64, pos: Option<u64>) -> KResult<u64> {
    let f = r.file(fd)?;
    let mut iov = read_iov(r, iov, cnt)?;
    clamp_iov(&mut iov);
    if let Some(res) = read_in_place(r, &f, &iov, pos) {
        return res.map(|n| n as u64);
    }
    let total: usize = iov.iter().map(|e| e.1).sum();
    let mut buf = vec![0u8; total];
    let n = r.file_read(&f, &mut buf, pos)?;
    let mut off = 0;
    for (base, len) in iov {
        if off >= n {
            break;
        }
        let k = len.min(n - off);
        r.write_mem(base, &buf[off..off + k])?;
        off += k;
    }
    Ok(n as u64)
}

fn do_writev(r: &mut Runner, fd: u64, iov: u64, cnt: u64, pos: Option<u64>) -> KResult<u64> {
    let f = r.file(fd)?;
    let mut iov = read_iov(r, iov, cnt)?;
    clamp_iov(&mut iov);
    if let Some(res) = write_in_place(r, &f, &iov, pos) {
        return res.map(|n| n as u64);
    }
    let mut buf = Vec::new();
    for (base, len) in iov {
        let start = buf.len();
        buf.resize(start + len, 0);
        if let Err(e) = r.read_mem(base, &mut buf[start..]) {
            // Linux copies user data a page at a time and reports EFAULT
            // when the fault hits the first page it copies.
            buf.truncate(start - start % 4096);
            if buf.is_empty() {
                return Err(e);
            }
            break;
        }
    }
    r.file_write(&f, &buf, pos).map(|n| n as u64)
}

pub fn readv(r: &mut Runner, a: A) -> KResult<u64> {
    do_readv(r, a[0], a[1], a[2], None)
}
pub fn writev(r: &mut Runner, a: A) -> KResult<u64> {
    do_writev(r, a[0], a[1], a[2], None)
}
pub fn preadv(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    let off = check_pos(&f, a[3])?;
    do_readv(r, a[0], a[1], a[2], Some(off))
}
pub fn pwritev(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    let off = check_pos(&f, a[3])?;
    do_writev(r, a[0], a[1], a[2], Some(off))
}

pub fn lseek(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    if !f.ops.seekable() {
        return Err(Errno::ESPIPE);
    }
    let off = a[1] as i64;
    let mut p = lock(&f.pos);
    let base: i64 = match a[2] as i32 {
        libc::SEEK_SET => 0,
        libc::SEEK_CUR => *p as i64,
        libc::SEEK_END => f.ops.stat()?.st_size,
        libc::SEEK_DATA => {
            let size = f.ops.stat()?.st_size;
            if off >= size {
                return Err(Errno::ENXIO);
            }
            0
        }
        libc::SEEK_HOLE => {
            let size = f.ops.stat()?.st_size;
            if off >= size {
                return Err(Errno::ENXIO);
            }
            *p = size as u64;
            return Ok(size as u64);
        }
        _ => return Err(Errno::EINVAL),
    };
    let new = base.checked_add(off).ok_or(Errno::EOVERFLOW)?;
    if new < 0 {
        return Err(Errno::EINVAL);
    }
    *p = new as u64;
    Ok(new as u64)
}

// ---- open / close / dup ----

fn do_open(r: &mut Runner, dirfd: u64, path: &[u8], flags: i32, mode: u32) -> KResult<u64> {
    do_open_scoped(r, dirfd, path, flags, mode, &Scope::default())
}

fn do_open_scoped(
    r: &mut Runner,
    dirfd: u64,
    path: &[u8],
    flags: i32,
    mode: u32,
    scope: &Scope,
) -> KResult<u64> {
    // Linux 6.4+: O_CREAT with O_DIRECTORY (but not O_TMPFILE) is invalid.
    if flags & libc::O_CREAT != 0
        && flags & libc::O_DIRECTORY != 0
        && flags & libc::O_TMPFILE != libc::O_TMPFILE
    {
        return Err(Errno::EINVAL);
    }
    let scoped = scope.beneath || scope.in_root || scope.no_xdev;
    let cwd = if scoped && path.first() == Some(&b'/') {
        // The scope is the directory descriptor even for absolute paths.
        r.dir_path(dirfd, b"x")?
    } else {
        r.dir_path(dirfd, path)?
    };
    let umask = lock(&r.t.fs()).umask;
    let creds = r.creds();
    let f = r
        .vfs()
        .open_scoped(&cwd, path, flags, mode & 0o7777 & !umask, &creds, scope)?;
    r.install(f, flags & libc::O_CLOEXEC != 0)
}

/// `struct open_how` (openat2(2)).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}
static_assertions::assert_eq_size!(OpenHow, [u8; 24]);

pub fn openat2(r: &mut Runner, a: A) -> KResult<u64> {
    const RESOLVE_NO_XDEV: u64 = 0x01;
    const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
    const RESOLVE_NO_SYMLINKS: u64 = 0x04;
    const RESOLVE_BENEATH: u64 = 0x08;
    const RESOLVE_IN_ROOT: u64 = 0x10;
    const RESOLVE_CACHED: u64 = 0x20;
    let size = a[3] as usize;
    if size < std::mem::size_of::<OpenHow>() {
        return Err(Errno::EINVAL);
    }
    if size > 4096 {
        return Err(Errno::E2BIG);
    }
    let how: OpenHow = r.read_val(a[2])?;
    if size > std::mem::size_of::<OpenHow>() {
        // A larger struct from a newer libc: the extra bytes must be zero.
        let mut rest = vec![0u8; size - std::mem::size_of::<OpenHow>()];
        r.read_mem(a[2] + std::mem::size_of::<OpenHow>() as u64, &mut rest)?;
        if rest.iter().any(|&b| b != 0) {
            return Err(Errno::E2BIG);
        }
    }
    let valid_flags = (libc::O_ACCMODE
        | libc::O_CREAT
        | libc::O_EXCL
        | libc::O_NOCTTY
        | libc::O_TRUNC
        | libc::O_APPEND
        | libc::O_NONBLOCK
        | libc::O_SYNC
        | libc::O_DSYNC
        | libc::O_ASYNC
        | libc::O_DIRECT
        | libc::O_LARGEFILE
        | libc::O_DIRECTORY
        | libc::O_NOFOLLOW
        | libc::O_NOATIME
        | libc::O_CLOEXEC
        | libc::O_PATH
        | libc::O_TMPFILE) as u32 as u64;
    if how.flags & !valid_flags != 0 {
        return Err(Errno::EINVAL);
    }
    let flags = how.flags as i32;
    let creating = flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE;
    if (!creating && how.mode != 0) || how.mode & !0o7777 != 0 {
        return Err(Errno::EINVAL);
    }
    if flags & libc::O_PATH != 0
        && flags & !(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC) != 0
    {
        return Err(Errno::EINVAL);
    }
    let all = RESOLVE_NO_XDEV
        | RESOLVE_NO_MAGICLINKS
        | RESOLVE_NO_SYMLINKS
        | RESOLVE_BENEATH
        | RESOLVE_IN_ROOT
        | RESOLVE_CACHED;
    if how.resolve & !all != 0
        || how.resolve & (RESOLVE_BENEATH | RESOLVE_IN_ROOT) == (RESOLVE_BENEATH | RESOLVE_IN_ROOT)
    {
        return Err(Errno::EINVAL);
    }
    if how.resolve & RESOLVE_CACHED != 0 && (creating || flags & libc::O_TRUNC != 0) {
        return Err(Errno::EAGAIN);
    }
    let scope = Scope {
        beneath: how.resolve & RESOLVE_BENEATH != 0,
        in_root: how.resolve & RESOLVE_IN_ROOT != 0,
        no_symlinks: how.resolve & RESOLVE_NO_SYMLINKS != 0,
        no_magiclinks: how.resolve & RESOLVE_NO_MAGICLINKS != 0,
        no_xdev: how.resolve & RESOLVE_NO_XDEV != 0,
    };
    let path = r.read_path(a[1])?;
    do_open_scoped(r, a[0], &path, flags, how.mode as u32, &scope)
}

pub fn open(r: &mut Runner, a: A) -> KResult<u64> {
    let path = r.read_path(a[0])?;
    do_open(r, libc::AT_FDCWD as u64, &path, a[1] as i32, a[2] as u32)
}
pub fn openat(r: &mut Runner, a: A) -> KResult<u64> {
    let path = r.read_path(a[1])?;
    do_open(r, a[0], &path, a[2] as i32, a[3] as u32)
}
pub fn creat(r: &mut Runner, a: A) -> KResult<u64> {
    let path = r.read_path(a[0])?;
    do_open(
        r,
        libc::AT_FDCWD as u64,
        &path,
        libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
        a[1] as u32,
    )
}

pub fn close(r: &mut Runner, a: A) -> KResult<u64> {
    let e = lock(&r.t.files()).remove(a[0] as i32)?;
    release_posix_locks(r, &e.file);
    drop(e);
    Ok(0)
}

/// fcntl(2): closing any descriptor of a file releases the POSIX record
/// locks the process holds on it.
fn release_posix_locks(r: &Runner, f: &OpenFile) {
    let vfs = r.vfs();
    let locks = vfs.locks();
    if !locks.any() {
        return;
    }
    if let Ok(key) = file_key(f) {
        locks.release_process(key, &r.t.tg);
    }
}

fn file_key(f: &OpenFile) -> KResult<FileKey> {
    let st = f.ops.stat()?;
    Ok((st.st_dev, st.st_ino))
}

pub fn close_range(r: &mut Runner, a: A) -> KResult<u64> {
    const CLOSE_RANGE_CLOEXEC: u64 = 4;
    let (lo, hi) = (
        a[0].min(i32::MAX as u64) as i32,
        a[1].min(i32::MAX as u64) as i32,
    );
    if lo > hi {
        return Err(Errno::EINVAL);
    }
    let files = r.t.files();
    let mut t = lock(&files);
    if a[2] & CLOSE_RANGE_CLOEXEC != 0 {
        let fds: Vec<i32> = t
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| (lo..=hi).contains(k))
            .collect();
        for fd in fds {
            t.set_cloexec(fd, true)?;
        }
    } else {
        let closed = t.remove_range(lo, hi);
        drop(t);
        for e in &closed {
            release_posix_locks(r, &e.file);
        }
        drop(closed);
    }
    Ok(0)
}

pub fn dup(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    r.install(f, false)
}

fn do_dup3(r: &mut Runner, old: u64, new: u64, cloexec: bool) -> KResult<u64> {
    if new as i32 as u64 >= r.nofile_limit() || (new as i32) < 0 {
        return Err(Errno::EBADF);
    }
    let files = r.t.files();
    let mut t = lock(&files);
    let f = t.get(old as i32)?;
    let prev = t.insert_at(new as i32, f, cloexec);
    drop(t);
    if let Some(p) = &prev {
        release_posix_locks(r, &p.file);
    }
    drop(prev);
    Ok(new)
}

pub fn dup2(r: &mut Runner, a: A) -> KResult<u64> {
    if a[0] == a[1] {
        r.file(a[0])?;
        return Ok(a[1]);
    }
    do_dup3(r, a[0], a[1], false)
}

pub fn dup3(r: &mut Runner, a: A) -> KResult<u64> {
    if a[0] == a[1] || a[2] as i32 & !libc::O_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    do_dup3(r, a[0], a[1], a[2] as i32 & libc::O_CLOEXEC != 0)
}

pub fn fcntl(r: &mut Runner, a: A) -> KResult<u64> {
    let fd = a[0] as i32;
    let files = r.t.files();
    match a[1] as i32 {
        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
            let limit = r.nofile_limit();
            if a[2] >= limit {
                return Err(Errno::EINVAL);
            }
            let mut t = lock(&files);
            let f = t.get(fd)?;
            t.insert_from(a[2] as i32, f, a[1] as i32 == libc::F_DUPFD_CLOEXEC, limit)
                .map(|v| v as u64)
        }
        libc::F_GETFD => Ok(lock(&files).entry(fd)?.cloexec as u64),
        libc::F_SETFD => {
            lock(&files).set_cloexec(fd, a[2] & libc::FD_CLOEXEC as u64 != 0)?;
            Ok(0)
        }
        libc::F_GETFL => Ok(r.file(a[0])?.flags() as u64),
        libc::F_SETFL => {
            let f = r.file(a[0])?;
            let settable = libc::O_APPEND
                | libc::O_NONBLOCK
                | libc::O_ASYNC
                | libc::O_DIRECT
                | libc::O_NOATIME;
            let cur = f.flags();
            let new = (cur & !settable) | (a[2] as i32 & settable);
            f.flags
                .store(new as u32, std::sync::atomic::Ordering::Relaxed);
            Ok(0)
        }
        libc::F_GETLK | libc::F_OFD_GETLK => {
            let f = r.file(a[0])?;
            record_lock(r, &f, a[1] as i32, a[2])
        }
        libc::F_SETLK | libc::F_SETLKW | libc::F_OFD_SETLK | libc::F_OFD_SETLKW => {
            let f = r.file(a[0])?;
            record_lock(r, &f, a[1] as i32, a[2])
        }
        libc::F_GETPIPE_SZ => {
            r.file(a[0])?;
            Ok(crate::kernel::pipe::PIPE_BUF_SIZE as u64)
        }
        libc::F_SETPIPE_SZ => Ok(crate::kernel::pipe::PIPE_BUF_SIZE as u64),
        libc::F_GETOWN | libc::F_SETOWN | 10 | 11 => Ok(0),
        libc::F_ADD_SEALS | libc::F_GET_SEALS => Err(Errno::EINVAL),
        _ => Err(Errno::EINVAL),
    }
}

/// How long a blocked lock request sleeps before looking again: POSIX
/// locks of a process that exits are released lazily, without a wake-up.
const LOCK_RECHECK: Duration = Duration::from_millis(50);

/// Installs the close hook that releases `f`'s flock and OFD locks on
/// `key` when its last descriptor closes.
fn hook_ofd_locks(r: &Runner, f: &OpenFile, key: FileKey) {
    let vfs = r.vfs();
    let locks = vfs.locks();
    if locks.needs_hook(f.id, key) {
        let w = Arc::downgrade(locks);
        f.on_close(Box::new(move |id| {
            if let Some(t) = w.upgrade() {
                t.release_ofd(key, id);
            }
        }));
    }
}

/// Retries `attempt` until it stops failing with EAGAIN, sleeping on the
/// lock table's wait queue (interruptible).
fn wait_for_lock(r: &mut Runner, mut attempt: impl FnMut() -> KResult<()>) -> KResult<()> {
    let locks = r.vfs().locks().clone();
    loop {
        let res = r.block(
            &[locks.wait_queue()],
            &[],
            Some(Instant::now() + LOCK_RECHECK),
            |_| match attempt() {
                Err(Errno::EAGAIN) => None,
                other => Some(other),
            },
        );
        match res {
            Err(Errno::ETIMEDOUT) => continue,
            other => return other,
        }
    }
}

pub fn flock(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    if f.flags() & libc::O_PATH != 0 {
        return Err(Errno::EBADF);
    }
    let op = a[1] as i32;
    let nb = op & libc::LOCK_NB != 0;
    let want = match op & !libc::LOCK_NB {
        libc::LOCK_SH => Some(false),
        libc::LOCK_EX => Some(true),
        libc::LOCK_UN => None,
        _ => return Err(Errno::EINVAL),
    };
    let key = file_key(&f)?;
    let locks = r.vfs().locks().clone();
    if want.is_some() {
        hook_ofd_locks(r, &f, key);
    }
    match locks.flock(key, f.id, want) {
        Err(Errno::EAGAIN) if !nb => {
            wait_for_lock(r, || locks.flock(key, f.id, want))?;
        }
        res => res?,
    }
    Ok(0)
}

/// `struct flock` as x86_64 Linux lays it out.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Flock {
    l_type: i16,
    l_whence: i16,
    l_start: i64,
    l_len: i64,
    l_pid: i32,
}
static_assertions::assert_eq_size!(Flock, [u8; 32]);
static_assertions::const_assert_eq!(std::mem::offset_of!(Flock, l_start), 8);
static_assertions::const_assert_eq!(std::mem::offset_of!(Flock, l_pid), 24);

/// The byte range a `struct flock` names (fcntl(2); Linux's
/// flock64_to_posix_lock).
fn flock_range(f: &OpenFile, fl: &Flock) -> KResult<Range> {
    let base: i64 = match fl.l_whence as i32 {
        libc::SEEK_SET => 0,
        libc::SEEK_CUR => *lock(&f.pos) as i64,
        libc::SEEK_END => f.ops.stat()?.st_size,
        _ => return Err(Errno::EINVAL),
    };
    let mut start = base.checked_add(fl.l_start).ok_or(Errno::EOVERFLOW)?;
    if start < 0 {
        return Err(Errno::EINVAL);
    }
    let end: u64 = if fl.l_len > 0 {
        let last = start.checked_add(fl.l_len - 1).ok_or(Errno::EOVERFLOW)?;
        last as u64 + 1
    } else if fl.l_len < 0 {
        let end = start as u64;
        start = start.checked_add(fl.l_len).ok_or(Errno::EINVAL)?;
        if start < 0 {
            return Err(Errno::EINVAL);
        }
        end
    } else {
        u64::MAX
    };
    Ok(Range {
        start: start as u64,
        end,
    })
}

/// F_GETLK/F_SETLK/F_SETLKW and their OFD variants.
fn record_lock(r: &mut Runner, f: &Arc<OpenFile>, cmd: i32, addr: u64) -> KResult<u64> {
    if f.flags() & libc::O_PATH != 0 {
        return Err(Errno::EBADF);
    }
    let mut fl: Flock = r.read_val(addr)?;
    let ofd = matches!(
        cmd,
        libc::F_OFD_GETLK | libc::F_OFD_SETLK | libc::F_OFD_SETLKW
    );
    if ofd && fl.l_pid != 0 {
        return Err(Errno::EINVAL);
    }
    let want = match fl.l_type as i32 {
        libc::F_RDLCK => Some(false),
        libc::F_WRLCK => Some(true),
        libc::F_UNLCK => None,
        _ => return Err(Errno::EINVAL),
    };
    let range = flock_range(f, &fl)?;
    let key = file_key(f)?;
    let owner = if ofd {
        LockOwner::Ofd(f.id)
    } else {
        LockOwner::Process(Arc::downgrade(&r.t.tg), r.t.tg.tgid)
    };
    let locks = r.vfs().locks().clone();
    if matches!(cmd, libc::F_GETLK | libc::F_OFD_GETLK) {
        let Some(write) = want else {
            return Err(Errno::EINVAL);
        };
        match locks.test(key, &owner, write, range) {
            None => fl.l_type = libc::F_UNLCK as i16,
            Some(l) => {
                fl.l_type = if l.write {
                    libc::F_WRLCK
                } else {
                    libc::F_RDLCK
                } as i16;
                fl.l_whence = libc::SEEK_SET as i16;
                fl.l_start = l.range.start as i64;
                fl.l_len = if l.range.end == u64::MAX {
                    0
                } else {
                    (l.range.end - l.range.start) as i64
                };
                fl.l_pid = l.owner.pid();
            }
        }
        r.write_val(addr, &fl)?;
        return Ok(0);
    }
    match want {
        Some(false) if !f.readable() => return Err(Errno::EBADF),
        Some(true) if !f.writable() => return Err(Errno::EBADF),
        _ => {}
    }
    if ofd {
        hook_ofd_locks(r, f, key);
    }
    let wait = matches!(cmd, libc::F_SETLKW | libc::F_OFD_SETLKW);
    match locks.set(key, &owner, want, range) {
        Err(Errno::EAGAIN) if wait => {
            wait_for_lock(r, || locks.set(key, &owner, want, range))?;
        }
        res => res?,
    }
    Ok(0)
}

pub fn fsync(r: &mut Runner, a: A) -> KResult<u64> {
    r.file(a[0])?.ops.sync()?;
    Ok(0)
}

pub fn sync(_r: &mut Runner, _a: A) -> KResult<u64> {
    Ok(0)
}

pub fn fadvise64(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    if !f.ops.seekable() {
        return Err(Errno::ESPIPE);
    }
    Ok(0)
}

pub fn ioctl(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    match a[1] as u32 {
        x if x == libc::FIOCLEX as u32 => {
            lock(&r.t.files()).set_cloexec(a[0] as i32, true)?;
            Ok(0)
        }
        x if x == libc::FIONCLEX as u32 => {
            lock(&r.t.files()).set_cloexec(a[0] as i32, false)?;
            Ok(0)
        }
        x if x == libc::FIONBIO as u32 => {
            let on: i32 = r.read_val(a[2])?;
            let cur = f.flags();
            let new = if on != 0 {
                cur | libc::O_NONBLOCK
            } else {
                cur & !libc::O_NONBLOCK
            };
            f.flags
                .store(new as u32, std::sync::atomic::Ordering::Relaxed);
            Ok(0)
        }
        x if x == libc::FIONREAD as u32 && f.ops.seekable() => {
            let st = f.ops.stat()?;
            let pos = *lock(&f.pos);
            let n = (st.st_size as u64).saturating_sub(pos) as i32;
            r.write_val(a[2], &n)?;
            Ok(0)
        }
        cmd => f.ops.ioctl(cmd, a[2], r),
    }
}

// ---- stat family ----

fn write_stat(r: &Runner, addr: u64, st: &Stat) -> KResult<u64> {
    r.write_val(addr, st)?;
    Ok(0)
}

fn stat_at(r: &mut Runner, dirfd: u64, path: &[u8], flags: i32) -> KResult<Stat> {
    if path.is_empty() {
        if flags & libc::AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        return r.file(dirfd)?.ops.stat();
    }
    let cwd = r.dir_path(dirfd, path)?;
    r.vfs()
        .stat(&cwd, path, flags & libc::AT_SYMLINK_NOFOLLOW == 0)
}

fn read_path_or_empty(r: &Runner, addr: u64) -> KResult<Vec<u8>> {
    lock(&r.mm).read_cstr(addr, super::PATH_MAX)
}

pub fn stat(r: &mut Runner, a: A) -> KResult<u64> {
    let p = r.read_path(a[0])?;
    let st = stat_at(r, libc::AT_FDCWD as u64, &p, 0)?;
    write_stat(r, a[1], &st)
}
pub fn lstat(r: &mut Runner, a: A) -> KResult<u64> {
    let p = r.read_path(a[0])?;
    let st = stat_at(r, libc::AT_FDCWD as u64, &p, libc::AT_SYMLINK_NOFOLLOW)?;
    write_stat(r, a[1], &st)
}
pub fn fstat(r: &mut Runner, a: A) -> KResult<u64> {
    let st = r.file(a[0])?.ops.stat()?;
    write_stat(r, a[1], &st)
}
pub fn newfstatat(r: &mut Runner, a: A) -> KResult<u64> {
    let p = read_path_or_empty(r, a[1])?;
    let st = stat_at(r, a[0], &p, a[3] as i32)?;
    write_stat(r, a[2], &st)
}

/// `struct statx`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
#[allow(missing_docs)] // field names are the ABI's
pub struct Statx {
    pub stx_mask: u32,
    pub stx_blksize: u32,
    pub stx_attributes: u64,
    pub stx_nlink: u32,
    pub stx_uid: u32,
    pub stx_gid: u32,
    pub stx_mode: u16,
    pub __spare0: u16,
    pub stx_ino: u64,
    pub stx_size: u64,
    pub stx_blocks: u64,
    pub stx_attributes_mask: u64,
    pub stx_atime: [i64; 2],
    pub stx_btime: [i64; 2],
    pub stx_ctime: [i64; 2],
    pub stx_mtime: [i64; 2],
    pub stx_rdev_major: u32,
    pub stx_rdev_minor: u32,
    pub stx_dev_major: u32,
    pub stx_dev_minor: u32,
    pub __spare2: [u64; 14],
}
static_assertions::assert_eq_size!(Statx, [u8; 256]);
static_assertions::const_assert_eq!(std::mem::offset_of!(Statx, stx_atime), 64);
static_assertions::const_assert_eq!(std::mem::offset_of!(Statx, stx_rdev_major), 128);

fn major(d: u64) -> u32 {
    (((d >> 32) & 0xffff_f000) | ((d >> 8) & 0xfff)) as u32
}
fn minor(d: u64) -> u32 {
    (((d >> 12) & 0xffff_ff00) | (d & 0xff)) as u32
}

pub fn statx(r: &mut Runner, a: A) -> KResult<u64> {
    let p = read_path_or_empty(r, a[1])?;
    let st = stat_at(r, a[0], &p, a[2] as i32)?;
    let ts = |s: i64, ns: i64| [s, ns & 0xffff_ffff];
    let x = Statx {
        stx_mask: 0x7ff,
        stx_blksize: st.st_blksize as u32,
        stx_nlink: st.st_nlink as u32,
        stx_uid: st.st_uid,
        stx_gid: st.st_gid,
        stx_mode: st.st_mode as u16,
        stx_ino: st.st_ino,
        stx_size: st.st_size as u64,
        stx_blocks: st.st_blocks as u64,
        stx_atime: ts(st.st_atime, st.st_atime_nsec),
        stx_btime: ts(st.st_ctime, st.st_ctime_nsec),
        stx_ctime: ts(st.st_ctime, st.st_ctime_nsec),
        stx_mtime: ts(st.st_mtime, st.st_mtime_nsec),
        stx_rdev_major: major(st.st_rdev),
        stx_rdev_minor: minor(st.st_rdev),
        stx_dev_major: major(st.st_dev),
        stx_dev_minor: minor(st.st_dev),
        ..Default::default()
    };
    r.write_val(a[4], &x)?;
    Ok(0)
}

pub fn statfs(r: &mut Runner, a: A) -> KResult<u64> {
    let p = r.read_path(a[0])?;
    let cwd = r.dir_path(libc::AT_FDCWD as u64, &p)?;
    let s = r.vfs().statfs(&cwd, &p)?;
    r.write_val(a[1], &s)?;
    Ok(0)
}

pub fn fstatfs(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    let path = if f.path.is_empty() {
        b"/".to_vec()
    } else {
        f.path.clone()
    };
    let s = r.vfs().statfs(b"/", &path)?;
    r.write_val(a[1], &s)?;
    Ok(0)
}

// ---- directories ----

fn do_getdents(r: &mut Runner, a: A, legacy: bool) -> KResult<u64> {
    let f = r.file(a[0])?;
    let (addr, cap) = (a[1], a[2] as usize);
    let mut pos = lock(&f.pos);
    let entries: Vec<DirEntry> = f.ops.readdir(*pos)?;
    let mut out = Vec::with_capacity(cap.min(1 << 16));
    let mut consumed = 0u64;
    for e in &entries {
        let name_len = e.name.len();
        let reclen = if legacy {
            (8 + 8 + 2 + name_len + 2 + 7) & !7
        } else {
            (8 + 8 + 2 + 1 + name_len + 1 + 7) & !7
        };
        if out.len() + reclen > cap {
            break;
        }
        let next = *pos + consumed + 1;
        let start = out.len();
        out.extend_from_slice(&e.ino.to_le_bytes());
        out.extend_from_slice(&next.to_le_bytes());
        out.extend_from_slice(&(reclen as u16).to_le_bytes());
        if legacy {
            out.extend_from_slice(&e.name);
            out.push(0);
            out.resize(start + reclen - 1, 0);
            out.push(e.kind);
        } else {
            out.push(e.kind);
            out.extend_from_slice(&e.name);
            out.resize(start + reclen, 0);
        }
        consumed += 1;
    }
    if consumed == 0 && !entries.is_empty() {
        return Err(Errno::EINVAL);
    }
    r.write_mem(addr, &out)?;
    *pos += consumed;
    Ok(out.len() as u64)
}

pub fn getdents64(r: &mut Runner, a: A) -> KResult<u64> {
    do_getdents(r, a, false)
}
pub fn getdents(r: &mut Runner, a: A) -> KResult<u64> {
    do_getdents(r, a, true)
}

pub fn getcwd(r: &mut Runner, a: A) -> KResult<u64> {
    let mut cwd = lock(&r.t.fs()).cwd.clone();
    cwd.push(0);
    if cwd.len() > a[1] as usize {
        return Err(Errno::ERANGE);
    }
    r.write_mem(a[0], &cwd)?;
    Ok(cwd.len() as u64)
}

fn set_cwd(r: &mut Runner, base: &[u8], path: &[u8]) -> KResult<u64> {
    let resolved = r.vfs().resolve(base, path, true)?;
    let st = r.vfs().stat(b"/", &resolved, true)?;
    if !st.is_dir() {
        return Err(Errno::ENOTDIR);
    }
    r.vfs()
        .access(b"/", &resolved, libc::X_OK, true, &r.creds())?;
    lock(&r.t.fs()).cwd = resolved;
    Ok(0)
}

pub fn chdir(r: &mut Runner, a: A) -> KResult<u64> {
    let p = r.read_path(a[0])?;
    let cwd = lock(&r.t.fs()).cwd.clone();
    set_cwd(r, &cwd, &p)
}

pub fn fchdir(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    if f.path.is_empty() {
        return Err(Errno::ENOTDIR);
    }
    let p = f.path.clone();
    set_cwd(r, b"/", &p)
}

// ---- path operations ----

pub fn mkdir(r: &mut Runner, a: A) -> KResult<u64> {
    mkdirat(r, [libc::AT_FDCWD as u64, a[0], a[1], 0, 0, 0])
}
pub fn mkdirat(r: &mut Runner, a: A) -> KResult<u64> {
    let p = r.read_path(a[1])?;
    let cwd = r.dir_path(a[0], &p)?;
    let umask = lock(&r.t.fs()).umask;
    r.vfs()
        .mkdir(&cwd, &p, a[2] as u32 & 0o7777 & !umask, &r.creds())?;
    Ok(0)
}
pub fn rmdir(r: &mut Runner, a: A) -> KResult<u64> {
    let p = r.read_path(a[0])?;
    let cwd = r.dir_path(libc::AT_FDCWD as u64, &p)?;
    r.vfs().rmdir(&cwd, &p, &r.creds())?;
    Ok(0)
}
pub fn unlink(r: &mut Runner, a: A) -> KResult<u64> {
    unlinkat(r, [libc::AT_FDCWD as u64, a[0], 0, 0, 0, 0])
}
pub fn unlinkat(r: &mut Runner, a: A) -> KResult<u64> {
    let p = r.read_path(a[1])?;
    let cwd = r.dir_path(a[0], &p)?;
    if a[2] as i32 & libc::AT_REMOVEDIR != 0 {
        r.vfs().rmdir(&cwd, &p, &r.creds())?;
    } else {
        r.vfs().unlink(&cwd, &p, &r.creds())?;
    }
    Ok(0)
}
pub fn rename(r: &mut Runner, a: A) -> KResult<u64> {
    renameat2(
        r,
        [
            libc::AT_FDCWD as u64,
            a[0],
            libc::AT_FDCWD as u64,
            a[1],
            0,
            0,
        ],
    )
}
pub fn renameat(r: &mut Runner, a: A) -> KResult<u64> {
    renameat2(r, [a[0], a[1], a[2], a[3], 0, 0])
}
pub fn renameat2(r: &mut Runner, a: A) -> KResult<u64> {
    let old = r.read_path(a[1])?;
    let new = r.read_path(a[3])?;
    let c1 = r.dir_path(a[0], &old)?;
    let c2 = r.dir_path(a[2], &new)?;
    r.vfs()
        .rename(&c1, &old, &c2, &new, a[4] as u32, &r.creds())?;
    Ok(0)
}
pub fn link(r: &mut Runner, a: A) -> KResult<u64> {
    linkat(
        r,
        [
            libc::AT_FDCWD as u64,
            a[0],
            libc::AT_FDCWD as u64,
            a[1],
            0,
            0,
        ],
    )
}
pub fn linkat(r: &mut Runner, a: A) -> KResult<u64> {
    let old = r.read_path(a[1])?;
    let new = r.read_path(a[3])?;
    let c1 = r.dir_path(a[0], &old)?;
    let c2 = r.dir_path(a[2], &new)?;
    r.vfs().link(
        &c1,
        &old,
        &c2,
        &new,
        a[4] as i32 & libc::AT_SYMLINK_FOLLOW != 0,
        &r.creds(),
    )?;
    Ok(0)
}
pub fn symlink(r: &mut Runner, a: A) -> KResult<u64> {
    symlinkat(r, [a[0], libc::AT_FDCWD as u64, a[1], 0, 0, 0])
}
pub fn symlinkat(r: &mut Runner, a: A) -> KResult<u64> {
    let target = r.read_path(a[0])?;
    let p = r.read_path(a[2])?;
    let cwd = r.dir_path(a[1], &p)?;
    r.vfs().symlink(&target, &cwd, &p, &r.creds())?;
    Ok(0)
}
pub fn readlink(r: &mut Runner, a: A) -> KResult<u64> {
    readlinkat(r, [libc::AT_FDCWD as u64, a[0], a[1], a[2], 0, 0])
}
pub fn readlinkat(r: &mut Runner, a: A) -> KResult<u64> {
    let p = read_path_or_empty(r, a[1])?;
    if p.is_empty() {
        return Err(Errno::ENOENT);
    }
    if (a[3] as i64) <= 0 {
        return Err(Errno::EINVAL);
    }
    let cwd = r.dir_path(a[0], &p)?;
    let target = r.vfs().readlink(&cwd, &p)?;
    let n = target.len().min(a[3] as usize);
    r.write_mem(a[2], &target[..n])?;
    Ok(n as u64)
}
pub fn access(r: &mut Runner, a: A) -> KResult<u64> {
    faccessat2(r, [libc::AT_FDCWD as u64, a[0], a[1], 0, 0, 0])
}
pub fn faccessat(r: &mut Runner, a: A) -> KResult<u64> {
    faccessat2(r, [a[0], a[1], a[2], 0, 0, 0])
}
pub fn faccessat2(r: &mut Runner, a: A) -> KResult<u64> {
    let flags = a[3] as i32;
    if flags & !(libc::AT_EACCESS | libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
        return Err(Errno::EINVAL);
    }
    let p = read_path_or_empty(r, a[1])?;
    if p.is_empty() {
        if a[3] as i32 & libc::AT_EMPTY_PATH != 0 {
            r.file(a[0])?;
            return Ok(0);
        }
        return Err(Errno::ENOENT);
    }
    if a[2] & !7 != 0 {
        return Err(Errno::EINVAL);
    }
    let cwd = r.dir_path(a[0], &p)?;
    // access(2) checks with the real ids, AT_EACCESS with the effective.
    let mut creds = r.creds();
    if flags & libc::AT_EACCESS == 0 {
        let c = lock(&r.t.tg.inner).cred;
        creds.uid = c.uid.0;
        creds.gid = c.gid.0;
    }
    r.vfs().access(
        &cwd,
        &p,
        a[2] as i32,
        flags & libc::AT_SYMLINK_NOFOLLOW == 0,
        &creds,
    )?;
    Ok(0)
}
pub fn chmod(r: &mut Runner, a: A) -> KResult<u64> {
    fchmodat(r, [libc::AT_FDCWD as u64, a[0], a[1], 0, 0, 0])
}
pub fn fchmodat(r: &mut Runner, a: A) -> KResult<u64> {
    let p = r.read_path(a[1])?;
    let cwd = r.dir_path(a[0], &p)?;
    r.vfs().chmod(&cwd, &p, a[2] as u32 & 0o7777, &r.creds())?;
    Ok(0)
}
pub fn fchmod(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    if f.path.is_empty() {
        return Ok(0);
    }
    let p = f.path.clone();
    r.vfs().chmod(b"/", &p, a[1] as u32 & 0o7777, &r.creds())?;
    Ok(0)
}
fn id_opt(v: u64) -> Option<u32> {
    (v as u32 != u32::MAX).then_some(v as u32)
}
pub fn chown(r: &mut Runner, a: A) -> KResult<u64> {
    fchownat(r, [libc::AT_FDCWD as u64, a[0], a[1], a[2], 0, 0])
}
pub fn lchown(r: &mut Runner, a: A) -> KResult<u64> {
    fchownat(
        r,
        [
            libc::AT_FDCWD as u64,
            a[0],
            a[1],
            a[2],
            libc::AT_SYMLINK_NOFOLLOW as u64,
            0,
        ],
    )
}
pub fn fchownat(r: &mut Runner, a: A) -> KResult<u64> {
    let p = read_path_or_empty(r, a[1])?;
    let (cwd, p) = if p.is_empty() {
        if a[4] as i32 & libc::AT_EMPTY_PATH == 0 {
            return Err(Errno::ENOENT);
        }
        (b"/".to_vec(), r.file(a[0])?.path.clone())
    } else {
        (r.dir_path(a[0], &p)?, p)
    };
    r.vfs().chown(
        &cwd,
        &p,
        id_opt(a[2]),
        id_opt(a[3]),
        a[4] as i32 & libc::AT_SYMLINK_NOFOLLOW == 0,
        &r.creds(),
    )?;
    Ok(0)
}
pub fn fchown(r: &mut Runner, a: A) -> KResult<u64> {
    let p = r.file(a[0])?.path.clone();
    if p.is_empty() {
        return Ok(0);
    }
    r.vfs()
        .chown(b"/", &p, id_opt(a[1]), id_opt(a[2]), true, &r.creds())?;
    Ok(0)
}

fn read_times(r: &Runner, addr: u64) -> KResult<[Option<(i64, i64)>; 2]> {
    if addr == 0 {
        return Ok([Some((0, libc::UTIME_NOW)), Some((0, libc::UTIME_NOW))]);
    }
    let t: [i64; 4] = r.read_val(addr)?;
    let one = |s: i64, ns: i64| -> KResult<Option<(i64, i64)>> {
        if ns == libc::UTIME_OMIT {
            Ok(None)
        } else if ns == libc::UTIME_NOW || (0..1_000_000_000).contains(&ns) {
            Ok(Some((s, ns)))
        } else {
            Err(Errno::EINVAL)
        }
    };
    Ok([one(t[0], t[1])?, one(t[2], t[3])?])
}

pub fn utimensat(r: &mut Runner, a: A) -> KResult<u64> {
    let times = read_times(r, a[2])?;
    let follow = a[3] as i32 & libc::AT_SYMLINK_NOFOLLOW == 0;
    let (cwd, p) = if a[1] == 0 {
        (b"/".to_vec(), r.file(a[0])?.path.clone())
    } else {
        let p = r.read_path(a[1])?;
        (r.dir_path(a[0], &p)?, p)
    };
    if p.is_empty() {
        return Ok(0);
    }
    r.vfs().utimens(&cwd, &p, times, follow, &r.creds())?;
    Ok(0)
}

fn timeval_times(r: &Runner, addr: u64) -> KResult<[Option<(i64, i64)>; 2]> {
    if addr == 0 {
        return Ok([Some((0, libc::UTIME_NOW)), Some((0, libc::UTIME_NOW))]);
    }
    let t: [i64; 4] = r.read_val(addr)?;
    Ok([Some((t[0], t[1] * 1000)), Some((t[2], t[3] * 1000))])
}

pub fn utimes(r: &mut Runner, a: A) -> KResult<u64> {
    futimesat(r, [libc::AT_FDCWD as u64, a[0], a[1], 0, 0, 0])
}
pub fn futimesat(r: &mut Runner, a: A) -> KResult<u64> {
    let p = r.read_path(a[1])?;
    let cwd = r.dir_path(a[0], &p)?;
    let times = timeval_times(r, a[2])?;
    r.vfs().utimens(&cwd, &p, times, true, &r.creds())?;
    Ok(0)
}

pub fn truncate(r: &mut Runner, a: A) -> KResult<u64> {
    let p = r.read_path(a[0])?;
    if (a[1] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let cwd = r.dir_path(libc::AT_FDCWD as u64, &p)?;
    r.vfs().truncate(&cwd, &p, a[1], &r.creds())?;
    Ok(0)
}
pub fn ftruncate(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    if (a[1] as i64) < 0 || !f.writable() {
        return Err(Errno::EINVAL);
    }
    f.ops.truncate(a[1])?;
    Ok(0)
}
pub fn fallocate(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    let mode = a[1] as i32;
    let (off, len) = (a[2] as i64, a[3] as i64);
    // vfs_fallocate's checks, in its order.
    if off < 0 || len <= 0 {
        return Err(Errno::EINVAL);
    }
    let keep = libc::FALLOC_FL_KEEP_SIZE;
    let punch = libc::FALLOC_FL_PUNCH_HOLE;
    let zero = libc::FALLOC_FL_ZERO_RANGE;
    let collapse = libc::FALLOC_FL_COLLAPSE_RANGE;
    let insert = libc::FALLOC_FL_INSERT_RANGE;
    let unshare = libc::FALLOC_FL_UNSHARE_RANGE;
    if mode & !(keep | punch | zero | collapse | insert | unshare) != 0
        || (mode & punch != 0 && mode & zero != 0)
        || (mode & punch != 0 && mode & keep == 0)
    {
        return Err(Errno::EOPNOTSUPP);
    }
    if (mode & collapse != 0 && mode != collapse) || (mode & insert != 0 && mode != insert) {
        return Err(Errno::EINVAL);
    }
    // What tmpfs-like files support here (collapse/insert/unshare: no).
    let supported = [0, keep, punch | keep, zero, zero | keep];
    if !f.writable() {
        return Err(Errno::EBADF);
    }
    let st = f.ops.stat()?;
    match st.file_type() {
        libc::S_IFREG => {}
        libc::S_IFDIR => return Err(Errno::EISDIR),
        libc::S_IFIFO => return Err(Errno::ESPIPE),
        _ => return Err(Errno::ENODEV),
    }
    if !supported.contains(&mode) {
        return Err(Errno::EOPNOTSUPP);
    }
    if off.checked_add(len).is_none() {
        return Err(Errno::EFBIG);
    }
    f.ops.fallocate(mode, off as u64, len as u64)?;
    Ok(0)
}

/// sync_file_range(2): data reaches its backing store on fsync anyway.
pub fn sync_file_range(r: &mut Runner, a: A) -> KResult<u64> {
    if a[3] & !7 != 0 || (a[1] as i64) < 0 || (a[2] as i64) < 0 {
        return Err(Errno::EINVAL);
    }
    let f = r.file(a[0])?;
    let ft = f.ops.stat()?.file_type();
    if !matches!(ft, libc::S_IFREG | libc::S_IFDIR | libc::S_IFBLK) {
        return Err(Errno::ESPIPE);
    }
    if a[3] & 2 != 0 {
        f.ops.sync()?;
    }
    Ok(0)
}

/// readahead(2): a hint; checked and accepted.
pub fn readahead(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    if !f.readable() {
        return Err(Errno::EBADF);
    }
    if f.ops.stat()?.file_type() != libc::S_IFREG {
        return Err(Errno::EINVAL);
    }
    Ok(0)
}

/// syncfs(2): like sync(2), for the filesystem of `fd`.
pub fn syncfs(r: &mut Runner, a: A) -> KResult<u64> {
    r.file(a[0])?;
    Ok(0)
}
pub fn umask(r: &mut Runner, a: A) -> KResult<u64> {
    let fs = r.t.fs();
    let mut g = lock(&fs);
    let old = g.umask;
    g.umask = a[0] as u32 & 0o777;
    Ok(old as u64)
}

// ---- pipes ----

fn do_pipe(r: &mut Runner, addr: u64, flags: i32) -> KResult<u64> {
    if flags & !(libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_DIRECT) != 0 {
        return Err(Errno::EINVAL);
    }
    let (rd, wr) = Pipe::pair();
    let nb = flags & libc::O_NONBLOCK;
    let rf = OpenFile::new(Box::new(rd), libc::O_RDONLY | nb, Vec::new());
    let wf = OpenFile::new(Box::new(wr), libc::O_WRONLY | nb, Vec::new());
    let cloexec = flags & libc::O_CLOEXEC != 0;
    let limit = r.nofile_limit();
    let files = r.t.files();
    let mut t = lock(&files);
    let a = t.insert(rf, cloexec, limit)?;
    let b = match t.insert(wf, cloexec, limit) {
        Ok(b) => b,
        Err(e) => {
            let _ = t.remove(a);
            return Err(e);
        }
    };
    drop(t);
    if let Err(e) = r.write_val(addr, &[a, b]) {
        let mut t = lock(&files);
        let _ = t.remove(a);
        let _ = t.remove(b);
        return Err(e);
    }
    Ok(0)
}
pub fn pipe(r: &mut Runner, a: A) -> KResult<u64> {
    do_pipe(r, a[0], 0)
}
pub fn pipe2(r: &mut Runner, a: A) -> KResult<u64> {
    do_pipe(r, a[0], a[1] as i32)
}

pub fn sendfile(r: &mut Runner, a: A) -> KResult<u64> {
    let out = r.file(a[0])?;
    let inp = r.file(a[1])?;
    let count = (a[3] as usize).min(MAX_RW);
    let mut off: Option<u64> = if a[2] != 0 {
        Some(r.read_val(a[2])?)
    } else {
        None
    };
    let mut done = 0;
    let mut buf = vec![0u8; count.min(CHUNK)];
    while done < count {
        let want = (count - done).min(buf.len());
        let n = match r.file_read(&inp, &mut buf[..want], off) {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        let w = match r.file_write(&out, &buf[..n], None) {
            Ok(w) => w,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += w;
        if let Some(o) = off.as_mut() {
            *o += w as u64;
        }
        if w < n {
            break;
        }
    }
    if let (Some(o), true) = (off, a[2] != 0) {
        r.write_val(a[2], &o)?;
    }
    Ok(done as u64)
}

// ---- splice, tee, vmsplice, copy_file_range, memfd ----

const SPLICE_F_NONBLOCK: u64 = 2;

/// Sends SIGPIPE to the caller (a write to a pipe without readers).
fn raise_sigpipe(r: &Runner) {
    let info = crate::kernel::signal::SigInfo::user(libc::SIGPIPE, 0, r.t.tg.tgid, 0);
    r.k.signal_task(&r.t.clone(), info);
}

/// Room in the pipe behind `f`, waiting for some unless `nb`.
fn pipe_room(r: &mut Runner, f: &Arc<OpenFile>, nb: bool) -> KResult<usize> {
    loop {
        let room = match pipe_of(f)?.room() {
            Err(Errno::EPIPE) => {
                raise_sigpipe(r);
                return Err(Errno::EPIPE);
            }
            other => other?,
        };
        if room > 0 {
            return Ok(room);
        }
        if nb {
            return Err(Errno::EAGAIN);
        }
        r.wait_ready(f, PollEvents::OUT)?;
    }
}

/// Takes (or with `peek`, copies) up to `max` bytes from the pipe behind
/// `f`, waiting for some unless `nb`; empty at end of file.
fn pipe_data(
    r: &mut Runner,
    f: &Arc<OpenFile>,
    max: usize,
    nb: bool,
    peek: bool,
) -> KResult<Vec<u8>> {
    loop {
        let p = pipe_of(f)?;
        let res = if peek { p.peek(max) } else { p.take(max) };
        match res {
            Err(Errno::EAGAIN) if !nb => r.wait_ready(f, PollEvents::IN)?,
            other => return other,
        }
    }
}

fn pipe_of(f: &OpenFile) -> KResult<&dyn PipeBuffer> {
    f.ops.pipe_buffer().ok_or(Errno::EINVAL)
}

fn same_file(a: &OpenFile, b: &OpenFile) -> KResult<bool> {
    Ok(file_key(a)? == file_key(b)?)
}

/// Reads an optional `loff_t *` argument.
fn read_off(r: &Runner, addr: u64) -> KResult<Option<u64>> {
    if addr == 0 {
        return Ok(None);
    }
    let v: i64 = r.read_val(addr)?;
    if v < 0 {
        return Err(Errno::EINVAL);
    }
    Ok(Some(v as u64))
}

pub fn splice(r: &mut Runner, a: A) -> KResult<u64> {
    let (off_in_p, off_out_p, flags) = (a[1], a[3], a[5]);
    if flags & !0xf != 0 {
        return Err(Errno::EINVAL);
    }
    let fin = r.file(a[0])?;
    let fout = r.file(a[2])?;
    if !fin.readable() || !fout.writable() {
        return Err(Errno::EBADF);
    }
    let len = (a[4] as usize).min(MAX_RW);
    let (pin, pout) = (
        fin.ops.pipe_buffer().is_some(),
        fout.ops.pipe_buffer().is_some(),
    );
    if !pin && !pout {
        return Err(Errno::EINVAL);
    }
    if (pin && off_in_p != 0) || (pout && off_out_p != 0) {
        return Err(Errno::ESPIPE);
    }
    if !pout && fout.flags() & libc::O_APPEND != 0 {
        return Err(Errno::EINVAL);
    }
    if pin && pout && same_file(&fin, &fout)? {
        return Err(Errno::EINVAL);
    }
    let mut off_in = read_off(r, off_in_p)?;
    let mut off_out = read_off(r, off_out_p)?;
    if (off_in.is_some() && !fin.ops.seekable()) || (off_out.is_some() && !fout.ops.seekable()) {
        return Err(Errno::ESPIPE);
    }
    if len == 0 {
        return Ok(0);
    }
    let nb = flags & SPLICE_F_NONBLOCK != 0
        || (pin && fin.nonblocking())
        || (pout && fout.nonblocking());
    let moved = if pin && pout {
        let room = pipe_room(r, &fout, nb)?;
        let data = pipe_data(r, &fin, len.min(room), nb, false)?;
        if data.is_empty() {
            return Ok(0);
        }
        let w = match fout.ops.write(&data, None) {
            Ok(w) => w,
            Err(e) => {
                pipe_of(&fin)?.unread(&data);
                return Err(e);
            }
        };
        pipe_of(&fin)?.unread(&data[w..]);
        w
    } else if pin {
        let data = pipe_data(r, &fin, len.min(CHUNK), nb, false)?;
        if data.is_empty() {
            return Ok(0);
        }
        let res = r.file_write(&fout, &data, off_out);
        let w = match res {
            Ok(w) => w,
            Err(e) => {
                pipe_of(&fin)?.unread(&data);
                return Err(e);
            }
        };
        pipe_of(&fin)?.unread(&data[w..]);
        if let Some(o) = off_out.as_mut() {
            *o += w as u64;
        }
        w
    } else {
        let room = pipe_room(r, &fout, nb)?;
        let mut buf = vec![0u8; len.min(room).min(CHUNK)];
        let n = r.file_read(&fin, &mut buf, off_in)?;
        if n == 0 {
            return Ok(0);
        }
        let w = match fout.ops.write(&buf[..n], None) {
            Ok(w) => w,
            Err(e) => {
                if off_in.is_none() && fin.ops.seekable() {
                    *lock(&fin.pos) -= n as u64;
                }
                if e == Errno::EPIPE {
                    raise_sigpipe(r);
                }
                return Err(e);
            }
        };
        if w < n && off_in.is_none() && fin.ops.seekable() {
            *lock(&fin.pos) -= (n - w) as u64;
        }
        if let Some(o) = off_in.as_mut() {
            *o += w as u64;
        }
        w
    };
    if let Some(o) = off_in {
        r.write_val(off_in_p, &o)?;
    }
    if let Some(o) = off_out {
        r.write_val(off_out_p, &o)?;
    }
    Ok(moved as u64)
}

pub fn tee(r: &mut Runner, a: A) -> KResult<u64> {
    let flags = a[3];
    if flags & !0xf != 0 {
        return Err(Errno::EINVAL);
    }
    let fin = r.file(a[0])?;
    let fout = r.file(a[1])?;
    if !fin.readable() || !fout.writable() {
        return Err(Errno::EBADF);
    }
    if fin.ops.pipe_buffer().is_none()
        || fout.ops.pipe_buffer().is_none()
        || same_file(&fin, &fout)?
    {
        return Err(Errno::EINVAL);
    }
    let len = (a[2] as usize).min(MAX_RW);
    if len == 0 {
        return Ok(0);
    }
    let nb = flags & SPLICE_F_NONBLOCK != 0 || fin.nonblocking() || fout.nonblocking();
    let room = pipe_room(r, &fout, nb)?;
    let data = pipe_data(r, &fin, len.min(room), nb, true)?;
    if data.is_empty() {
        return Ok(0);
    }
    Ok(fout.ops.write(&data, None)? as u64)
}

pub fn vmsplice(r: &mut Runner, a: A) -> KResult<u64> {
    let f = r.file(a[0])?;
    if f.ops.pipe_buffer().is_none() {
        return Err(Errno::EBADF);
    }
    if a[3] & !0xf != 0 {
        return Err(Errno::EINVAL);
    }
    let nb = a[3] & SPLICE_F_NONBLOCK != 0;
    let iov = read_iov(r, a[1], a[2])?;
    let total: usize = iov.iter().map(|e| e.1).sum::<usize>().min(MAX_RW);
    if f.writable() {
        let mut buf = Vec::with_capacity(total);
        for (base, len) in iov {
            let start = buf.len();
            let len = len.min(total - start);
            buf.resize(start + len, 0);
            r.read_mem(base, &mut buf[start..])?;
        }
        if nb {
            return match f.ops.write(&buf, None) {
                Err(Errno::EPIPE) => {
                    raise_sigpipe(r);
                    Err(Errno::EPIPE)
                }
                other => other.map(|n| n as u64),
            };
        }
        return r.file_write(&f, &buf, None).map(|n| n as u64);
    }
    if !f.readable() {
        return Err(Errno::EBADF);
    }
    let data = pipe_data(r, &f, total, nb || f.nonblocking(), false)?;
    let mut off = 0;
    for (base, len) in iov {
        if off >= data.len() {
            break;
        }
        let k = len.min(data.len() - off);
        if let Err(e) = r.write_mem(base, &data[off..off + k]) {
            pipe_of(&f)?.unread(&data[off..]);
            return if off > 0 { Ok(off as u64) } else { Err(e) };
        }
        off += k;
    }
    Ok(off as u64)
}

pub fn copy_file_range(r: &mut Runner, a: A) -> KResult<u64> {
    let (off_in_p, off_out_p) = (a[1], a[3]);
    if a[5] != 0 {
        return Err(Errno::EINVAL);
    }
    let fin = r.file(a[0])?;
    let fout = r.file(a[2])?;
    if !fin.readable() || !fout.writable() || fout.flags() & libc::O_APPEND != 0 {
        return Err(Errno::EBADF);
    }
    let (sin, sout) = (fin.ops.stat()?, fout.ops.stat()?);
    if sin.is_dir() || sout.is_dir() {
        return Err(Errno::EISDIR);
    }
    if sin.file_type() != libc::S_IFREG || sout.file_type() != libc::S_IFREG {
        return Err(Errno::EINVAL);
    }
    let len = (a[4] as usize).min(MAX_RW);
    let mut off_in = read_off(r, off_in_p)?;
    let mut off_out = read_off(r, off_out_p)?;
    let pos_in = off_in.unwrap_or_else(|| *lock(&fin.pos));
    let pos_out = off_out.unwrap_or_else(|| *lock(&fout.pos));
    if (sin.st_dev, sin.st_ino) == (sout.st_dev, sout.st_ino)
        && pos_in < pos_out.saturating_add(len as u64)
        && pos_out < pos_in.saturating_add(len as u64)
    {
        return Err(Errno::EINVAL);
    }
    if pos_in
        .checked_add(len as u64)
        .is_none_or(|e| e > i64::MAX as u64)
        || pos_out
            .checked_add(len as u64)
            .is_none_or(|e| e > i64::MAX as u64)
    {
        return Err(Errno::EOVERFLOW);
    }
    let mut done = 0usize;
    let mut buf = vec![0u8; len.min(CHUNK)];
    while done < len {
        let want = (len - done).min(buf.len());
        let n = match fin.ops.read(&mut buf[..want], Some(pos_in + done as u64)) {
            Ok(n) => n,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        let w = match fout.ops.write(&buf[..n], Some(pos_out + done as u64)) {
            Ok(w) => w,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        done += w;
        if w < n {
            break;
        }
    }
    match off_in.as_mut() {
        Some(o) => {
            *o += done as u64;
            r.write_val(off_in_p, o)?;
        }
        None => *lock(&fin.pos) = pos_in + done as u64,
    }
    match off_out.as_mut() {
        Some(o) => {
            *o += done as u64;
            r.write_val(off_out_p, o)?;
        }
        None => *lock(&fout.pos) = pos_out + done as u64,
    }
    Ok(done as u64)
}

pub fn memfd_create(r: &mut Runner, a: A) -> KResult<u64> {
    const MFD_CLOEXEC: u64 = 1;
    const MFD_ALLOW_SEALING: u64 = 2;
    const MFD_HUGETLB: u64 = 4;
    const MFD_NOEXEC_SEAL: u64 = 8;
    const MFD_EXEC: u64 = 0x10;
    let flags = a[1];
    if flags & !(MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL | MFD_EXEC) != 0
        || flags & MFD_HUGETLB != 0
        || flags & (MFD_NOEXEC_SEAL | MFD_EXEC) == (MFD_NOEXEC_SEAL | MFD_EXEC)
    {
        return Err(Errno::EINVAL);
    }
    // NAME_MAX minus "memfd:".
    let name = lock(&r.mm).read_cstr(a[0], 250)?;
    if name.len() > 249 {
        return Err(Errno::EINVAL);
    }
    let shown = format!("/memfd:{} (deleted)", String::from_utf8_lossy(&name));
    let f = r
        .vfs()
        .anonymous_file(shown, &r.creds(), libc::O_RDWR | 0o100000)?;
    r.install(f, flags & MFD_CLOEXEC != 0)
}

// ---- readiness: poll, select ----

fn poll_files(r: &mut Runner, fds: &[(i32, i16)], deadline: Option<Instant>) -> KResult<Vec<i16>> {
    let files: Vec<Option<Arc<OpenFile>>> = {
        let t = r.t.files();
        let t = lock(&t);
        fds.iter()
            .map(|(fd, _)| if *fd < 0 { None } else { t.get(*fd).ok() })
            .collect()
    };
    let check = |files: &[Option<Arc<OpenFile>>]| -> (Vec<i16>, usize) {
        let mut out = Vec::with_capacity(fds.len());
        let mut n = 0;
        for (i, (fd, ev)) in fds.iter().enumerate() {
            let rev = if *fd < 0 {
                0
            } else {
                match &files[i] {
                    None => PollEvents::NVAL.bits(),
                    Some(f) => {
                        let mut want =
                            PollEvents::from_bits_truncate(*ev) | PollEvents::ERR | PollEvents::HUP;
                        if want.contains(PollEvents::IN) {
                            want |= PollEvents::RDNORM;
                        }
                        if want.contains(PollEvents::OUT) {
                            want |= PollEvents::WRNORM;
                        }
                        (f.ops.poll() & want).bits()
                    }
                }
            };
            if rev != 0 {
                n += 1;
            }
            out.push(rev);
        }
        (out, n)
    };
    let (first, n) = check(&files);
    if n > 0 || deadline.is_some_and(|d| d <= Instant::now()) {
        return Ok(first);
    }
    let holders: Vec<Arc<OpenFile>> = files.iter().flatten().cloned().collect();
    let queues: Vec<&crate::kernel::wait::WaitQueue> =
        holders.iter().filter_map(|f| f.ops.wait_queue()).collect();
    let host: Vec<(i32, i16)> = files
        .iter()
        .zip(fds)
        .filter_map(|(f, (_, ev))| f.as_ref().and_then(|f| f.ops.host_fd()).map(|h| (h, *ev)))
        .collect();
    let res = r.block(&queues, &host, deadline, |_| {
        let (out, n) = check(&files);
        (n > 0).then_some(Ok(out))
    });
    match res {
        Err(Errno::ETIMEDOUT) => Ok(vec![0; fds.len()]),
        other => other,
    }
}

fn do_poll(r: &mut Runner, addr: u64, nfds: u64, deadline: Option<Instant>) -> KResult<u64> {
    if nfds > r.nofile_limit().max(1024) {
        return Err(Errno::EINVAL);
    }
    let mut fds = Vec::with_capacity(nfds as usize);
    for i in 0..nfds {
        let p: [u8; 8] = r.read_val(addr + i * 8)?;
        fds.push((
            i32::from_le_bytes([p[0], p[1], p[2], p[3]]),
            i16::from_le_bytes([p[4], p[5]]),
        ));
    }
    let rev = poll_files(r, &fds, deadline)?;
    let mut n = 0;
    for (i, v) in rev.iter().enumerate() {
        r.write_val(addr + i as u64 * 8 + 6, v)?;
        if *v != 0 {
            n += 1;
        }
    }
    Ok(n)
}

fn timespec_deadline(r: &Runner, addr: u64) -> KResult<Option<Instant>> {
    if addr == 0 {
        return Ok(None);
    }
    let ts: [i64; 2] = r.read_val(addr)?;
    if ts[0] < 0 || !(0..1_000_000_000).contains(&ts[1]) {
        return Err(Errno::EINVAL);
    }
    Ok(Some(
        Instant::now() + Duration::new(ts[0] as u64, ts[1] as u32),
    ))
}

fn with_sigmask<T>(
    r: &mut Runner,
    mask_addr: u64,
    f: impl FnOnce(&mut Runner) -> KResult<T>,
) -> KResult<T> {
    if mask_addr == 0 {
        return f(r);
    }
    let set: u64 = r.read_val(mask_addr)?;
    let old = {
        let mut s = lock(&r.t.sig);
        let old = s.mask;
        s.mask = set & !crate::kernel::signal::UNBLOCKABLE;
        old
    };
    let res = f(r);
    let mut s = lock(&r.t.sig);
    if matches!(
        res,
        Err(Errno::ERESTARTSYS) | Err(Errno::ERESTARTNOHAND) | Err(Errno::EINTR)
    ) {
        // Restore after the handler runs (sigsuspend semantics).
        s.saved_mask = Some(old);
    } else {
        s.mask = old;
    }
    res
}

pub fn poll(r: &mut Runner, a: A) -> KResult<u64> {
    let t = a[2] as i32;
    let deadline = (t >= 0).then(|| Instant::now() + Duration::from_millis(t as u64));
    do_poll(r, a[0], a[1], deadline).map_err(|e| {
        if e == Errno::ERESTARTSYS {
            Errno::ERESTARTNOHAND
        } else {
            e
        }
    })
}

pub fn ppoll(r: &mut Runner, a: A) -> KResult<u64> {
    let deadline = timespec_deadline(r, a[2])?;
    with_sigmask(r, a[3], |r| do_poll(r, a[0], a[1], deadline)).map_err(|e| {
        if e == Errno::ERESTARTSYS {
            Errno::ERESTARTNOHAND
        } else {
            e
        }
    })
}

fn do_select(
    r: &mut Runner,
    n: u64,
    rd: u64,
    wr: u64,
    ex: u64,
    deadline: Option<Instant>,
) -> KResult<u64> {
    if n > 1024 * 64 {
        return Err(Errno::EINVAL);
    }
    let words = n.div_ceil(64) as usize;
    let read_set = |r: &Runner, addr: u64| -> KResult<Vec<u64>> {
        if addr == 0 {
            return Ok(vec![0; words]);
        }
        let mut v = vec![0u64; words];
        for (i, w) in v.iter_mut().enumerate() {
            *w = r.read_val(addr + i as u64 * 8)?;
        }
        Ok(v)
    };
    let (rs, ws, es) = (read_set(r, rd)?, read_set(r, wr)?, read_set(r, ex)?);
    let mut fds = Vec::new();
    for fd in 0..n as usize {
        let bitv = |s: &Vec<u64>| s[fd / 64] & (1 << (fd % 64)) != 0;
        let mut ev = 0i16;
        if bitv(&rs) {
            ev |= libc::POLLIN;
        }
        if bitv(&ws) {
            ev |= libc::POLLOUT;
        }
        if bitv(&es) {
            ev |= libc::POLLPRI;
        }
        if ev != 0 {
            fds.push((fd as i32, ev));
        }
    }
    let rev = poll_files(r, &fds, deadline)?;
    let (mut ro, mut wo, mut eo) = (vec![0u64; words], vec![0u64; words], vec![0u64; words]);
    let mut count = 0;
    for ((fd, ev), rv) in fds.iter().zip(rev) {
        if rv & PollEvents::NVAL.bits() != 0 {
            return Err(Errno::EBADF);
        }
        let (w, b) = (*fd as usize / 64, 1u64 << (*fd as usize % 64));
        if ev & libc::POLLIN != 0 && rv & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            ro[w] |= b;
            count += 1;
        }
        if ev & libc::POLLOUT != 0 && rv & (libc::POLLOUT | libc::POLLERR) != 0 {
            wo[w] |= b;
            count += 1;
        }
        if ev & libc::POLLPRI != 0 && rv & libc::POLLPRI != 0 {
            eo[w] |= b;
            count += 1;
        }
    }
    for (addr, set) in [(rd, &ro), (wr, &wo), (ex, &eo)] {
        if addr != 0 {
            for (i, w) in set.iter().enumerate() {
                r.write_val(addr + i as u64 * 8, w)?;
            }
        }
    }
    Ok(count)
}

pub fn select(r: &mut Runner, a: A) -> KResult<u64> {
    let deadline = if a[4] != 0 {
        let tv: [i64; 2] = r.read_val(a[4])?;
        if tv[0] < 0 || !(0..1_000_000).contains(&tv[1]) {
            return Err(Errno::EINVAL);
        }
        Some(Instant::now() + Duration::new(tv[0] as u64, tv[1] as u32 * 1000))
    } else {
        None
    };
    do_select(r, a[0], a[1], a[2], a[3], deadline).map_err(|e| {
        if e == Errno::ERESTARTSYS {
            Errno::ERESTARTNOHAND
        } else {
            e
        }
    })
}

pub fn pselect6(r: &mut Runner, a: A) -> KResult<u64> {
    let deadline = timespec_deadline(r, a[4])?;
    let mask_addr = if a[5] != 0 {
        let m: [u64; 2] = r.read_val(a[5])?;
        m[0]
    } else {
        0
    };
    with_sigmask(r, mask_addr, |r| {
        do_select(r, a[0], a[1], a[2], a[3], deadline)
    })
    .map_err(|e| {
        if e == Errno::ERESTARTSYS {
            Errno::ERESTARTNOHAND
        } else {
            e
        }
    })
}

pub fn mknod(r: &mut Runner, a: A) -> KResult<u64> {
    mknodat(r, [libc::AT_FDCWD as u64, a[0], a[1], a[2], 0, 0])
}
pub fn mknodat(r: &mut Runner, a: A) -> KResult<u64> {
    let p = r.read_path(a[1])?;
    let cwd = r.dir_path(a[0], &p)?;
    let umask = lock(&r.t.fs()).umask;
    let mode = a[2] as u32;
    let mode = (mode & libc::S_IFMT) | (mode & 0o7777 & !umask);
    r.vfs().mknod(&cwd, &p, mode, a[3], &r.creds())?;
    Ok(0)
}

/// Extended attributes: no filesystem here stores them.
pub fn xattr(r: &mut Runner, a: A) -> KResult<u64> {
    let _ = (r, a);
    Err(Errno::EOPNOTSUPP)
}

/// Whether a description is a byte stream whose blocking writes complete
/// piecewise (as Linux's pipe and tty writes do).
fn is_byte_stream(f: &OpenFile) -> bool {
    let any = f.ops.as_any();
    any.is::<crate::kernel::pipe::PipeEnd>()
        || any.is::<crate::kernel::pty::PtyMaster>()
        || any.is::<crate::kernel::pty::PtySlave>()
        || crate::kernel::fs::host::is_host_stream(f.ops.as_ref())
}
