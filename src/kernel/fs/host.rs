//! Host-backed files: the host root directory (lower layer of the overlay,
//! or the whole root in `ReadOnly`/`Direct` mode) and host streams passed
//! through as stdio.
//!
//! Confinement: the host root directory is opened once `O_PATH`, and every
//! lookup below it is `openat2(rootfd, rel, RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)`: the host kernel resolves `..` and symlinks as
//! if `rootfd` were `/`, so no path, however crafted or raced, reaches a
//! host file outside the root. Mutations (Direct mode) open the parent
//! directory that way and then call `*at(parentfd, name)` with a single
//! component that is never followed if it is a symlink.

use super::file::{DirEntry, FileOps, IoctlCtx, MmapSource, OpenFile, PollEvents, Stat};
use super::path::split_last;
use super::vfs::{DirFile, MountFs, Owner, SetAttr, StatFs};
use crate::errno::{Errno, KResult};
use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

/// `struct open_how` for openat2(2).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}
static_assertions::assert_eq_size!(OpenHow, [u8; 24]);

/// Do not follow magic links (/proc/self/fd/N and the like).
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
/// Resolve as if the directory fd were the root directory.
const RESOLVE_IN_ROOT: u64 = 0x10;

/// openat2(2) confined to `dirfd` as root. Retries EAGAIN (a `..` race the
/// kernel refused to resolve) and EINTR a few times.
#[allow(unsafe_code)] // thin host-call wrapper; see the SAFETY comments
fn openat2_in_root(dirfd: BorrowedFd<'_>, rel: &[u8], flags: i32, mode: u32) -> KResult<OwnedFd> {
    let p = if rel.is_empty() {
        CString::from(c".")
    } else {
        CString::new(rel).map_err(|_| Errno::EINVAL)?
    };
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u32 as u64,
        mode: if flags & (libc::O_CREAT | libc::O_TMPFILE) != 0 {
            u64::from(mode & 0o7777)
        } else {
            0
        },
        resolve: RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
    };
    let mut tries = 0;
    loop {
        // SAFETY: `p` is a live NUL-terminated string, `how` a live
        // `open_how` whose size we pass; the syscall only reads them.
        let r = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd.as_raw_fd(),
                p.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if r >= 0 {
            // SAFETY: openat2 returned a new descriptor nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) });
        }
        let e = Errno::last();
        tries += 1;
        if (e == Errno::EAGAIN || e == Errno::EINTR) && tries < 16 {
            continue;
        }
        return Err(e);
    }
}

/// getdents64(2) into `buf`; returns the bytes filled (0 at the end).
#[allow(unsafe_code)] // thin host-call wrapper; see the SAFETY comments
fn getdents64(fd: BorrowedFd<'_>, buf: &mut [u8]) -> KResult<usize> {
    // SAFETY: `buf` is a live writable buffer of `buf.len()` bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as usize)
    }
}

/// Parses `linux_dirent64` records.
fn parse_dirents(buf: &[u8], out: &mut Vec<DirEntry>) {
    let mut off = 0;
    while off + 19 <= buf.len() {
        let rec = &buf[off..];
        let ino = u64::from_ne_bytes(rec[0..8].try_into().unwrap_or([0; 8]));
        let reclen = u16::from_ne_bytes([rec[16], rec[17]]) as usize;
        if reclen < 19 || reclen > rec.len() {
            break;
        }
        let kind = rec[18];
        let name_bytes = &rec[19..reclen];
        let len = name_bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(name_bytes.len());
        out.push(DirEntry {
            ino,
            kind,
            name: name_bytes[..len].to_vec(),
        });
        off += reclen;
    }
}

/// All entries of an open directory, from its start.
fn read_dir_fd(fd: BorrowedFd<'_>) -> KResult<Vec<DirEntry>> {
    nix::unistd::lseek(fd, 0, nix::unistd::Whence::SeekSet)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = getdents64(fd, &mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        parse_dirents(&buf[..n], &mut out);
    }
}

/// fstatfs(2), straight into our `StatFs` (libc hides `f_flags`).
#[allow(unsafe_code)] // thin host-call wrapper; see the SAFETY comments
fn host_fstatfs(fd: BorrowedFd<'_>) -> KResult<StatFs> {
    static_assertions::assert_eq_size!(StatFs, libc::statfs);
    let mut s = StatFs::default();
    // SAFETY: `StatFs` is `#[repr(C)]` with exactly the layout of x86_64's
    // `struct statfs` (size and offsets asserted), and `s` is live and
    // writable; fstatfs writes only that structure.
    let r = unsafe {
        libc::fstatfs(
            fd.as_raw_fd(),
            (&mut s as *mut StatFs).cast::<libc::statfs>(),
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    Ok(s)
}

fn cname(name: &[u8]) -> KResult<CString> {
    CString::new(name).map_err(|_| Errno::EINVAL)
}

fn fstat(fd: BorrowedFd<'_>, dev: u64) -> KResult<Stat> {
    let st = nix::sys::stat::fstat(fd)?;
    let mut s = Stat::from_host(&st);
    s.st_dev = dev;
    Ok(s)
}

/// The host root directory as a filesystem (see the module docs).
pub(crate) struct HostFs {
    root: OwnedFd,
    /// The host path `root` was opened at (checkpoints reopen it).
    path: std::path::PathBuf,
    writable: bool,
    dev: u64,
    /// The type /proc/mounts shows.
    name: &'static str,
}

/// The type name of a host filesystem, from its statfs magic.
fn host_fs_name(magic: i64) -> &'static str {
    match magic {
        0xef53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794c_7630 => "overlay",
        0x6969 => "nfs",
        0x0102_1997 => "9p",
        0x6573_5546 => "fuse",
        0x2fc1_2fc1 => "zfs",
        0xf2f5_2010 => "f2fs",
        _ => "bind",
    }
}

impl HostFs {
    /// Opens `path` as the root; `writable` allows Direct-mode writes.
    /// Every `st_dev` below it is reported as `dev`.
    pub(crate) fn new(path: &std::path::Path, writable: bool, dev: u64) -> std::io::Result<HostFs> {
        let root = nix::fcntl::open(
            path,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
        Ok(HostFs {
            root,
            path: path.to_path_buf(),
            writable,
            dev,
            name: "rootfs",
        })
    }

    /// The host path the root was opened at.
    pub(crate) fn host_path(&self) -> &std::path::Path {
        &self.path
    }

    /// Whether Direct-mode writes are allowed.
    pub(crate) fn writable(&self) -> bool {
        self.writable
    }

    /// The host's own `(st_dev, st_ino)` of `rel` (`b""`: the root the
    /// descriptor holds, even if its path now names something else).
    pub(crate) fn host_id(&self, rel: &[u8]) -> KResult<(u64, u64)> {
        let st = if rel.is_empty() {
            nix::sys::stat::fstat(self.root.as_fd())?
        } else {
            nix::sys::stat::fstat(self.open_fd(rel, libc::O_PATH)?.as_fd())?
        };
        Ok((st.st_dev, st.st_ino))
    }

    /// A bind mount of host directory `path` (see [`HostFs::new`]); shown
    /// in /proc/mounts with the host filesystem's type.
    pub(crate) fn new_bind(
        path: &std::path::Path,
        writable: bool,
        dev: u64,
    ) -> std::io::Result<HostFs> {
        let mut fs = HostFs::new(path, writable, dev)?;
        fs.name = host_fstatfs(fs.root.as_fd())
            .map(|s| host_fs_name(s.f_type))
            .unwrap_or("bind");
        Ok(fs)
    }

    /// The `st_dev` reported for every file.
    pub(crate) fn dev(&self) -> u64 {
        self.dev
    }

    /// A confined open of `rel` with `flags` (no final symlink followed).
    pub(crate) fn open_fd(&self, rel: &[u8], flags: i32) -> KResult<OwnedFd> {
        // openat2 refuses O_PATH combined with anything but O_DIRECTORY,
        // O_NOFOLLOW and O_CLOEXEC.
        let extra = if flags & libc::O_PATH != 0 {
            libc::O_NOFOLLOW
        } else {
            libc::O_NOFOLLOW | libc::O_NOCTTY
        };
        openat2_in_root(self.root.as_fd(), rel, flags | extra, 0)
    }

    fn parent(&self, rel: &[u8]) -> KResult<(OwnedFd, CString)> {
        let (p, name) = split_last(rel);
        if name.is_empty() {
            return Err(Errno::EBUSY);
        }
        let fd = self.open_fd(p, libc::O_PATH | libc::O_DIRECTORY)?;
        Ok((fd, cname(name)?))
    }

    fn check_writable(&self) -> KResult<()> {
        if self.writable {
            Ok(())
        } else {
            Err(Errno::EROFS)
        }
    }

    /// lstat.
    pub(crate) fn lstat_rel(&self, rel: &[u8]) -> KResult<Stat> {
        let fd = self.open_fd(rel, libc::O_PATH)?;
        fstat(fd.as_fd(), self.dev)
    }

    /// readlink (EINVAL if not a symlink).
    pub(crate) fn readlink_rel(&self, rel: &[u8]) -> KResult<Vec<u8>> {
        let fd = self.open_fd(rel, libc::O_PATH)?;
        let st = nix::sys::stat::fstat(fd.as_fd())?;
        if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
            return Err(Errno::EINVAL);
        }
        let t: OsString = nix::fcntl::readlinkat(fd.as_fd(), c"")?;
        Ok(t.into_vec())
    }

    /// The entries of directory `rel`, without `.` and `..`.
    pub(crate) fn list(&self, rel: &[u8]) -> KResult<Vec<DirEntry>> {
        let fd = self.open_fd(rel, libc::O_RDONLY | libc::O_DIRECTORY)?;
        let mut v = read_dir_fd(fd.as_fd())?;
        v.retain(|e| e.name != b"." && e.name != b"..");
        Ok(v)
    }

    /// Opens an existing file or directory of this tree for the sandbox.
    /// Host devices, FIFOs and sockets are never opened (ENXIO).
    pub(crate) fn open_ops(&self, rel: &[u8], flags: i32, st: &Stat) -> KResult<Box<dyn FileOps>> {
        match st.file_type() {
            libc::S_IFDIR => {
                let fd = Arc::new(self.open_fd(rel, libc::O_RDONLY | libc::O_DIRECTORY)?);
                let own = fstat(fd.as_fd(), self.dev)?.st_ino;
                let parent_ino = if rel.is_empty() {
                    own
                } else {
                    self.lstat_rel(split_last(rel).0)
                        .map(|s| s.st_ino)
                        .unwrap_or(own)
                };
                let dev = self.dev;
                let (f1, f2) = (fd.clone(), fd);
                let lock = Mutex::new(());
                Ok(Box::new(DirFile::new(
                    move || {
                        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
                        let mut v = vec![
                            DirEntry {
                                ino: own,
                                kind: libc::DT_DIR,
                                name: b".".to_vec(),
                            },
                            DirEntry {
                                ino: parent_ino,
                                kind: libc::DT_DIR,
                                name: b"..".to_vec(),
                            },
                        ];
                        let mut all = read_dir_fd(f1.as_fd())?;
                        all.retain(|e| e.name != b"." && e.name != b"..");
                        v.extend(all);
                        Ok(v)
                    },
                    move || fstat(f2.as_fd(), dev),
                )))
            }
            libc::S_IFREG => {
                let acc = flags & libc::O_ACCMODE;
                let writes = acc == libc::O_WRONLY || acc == libc::O_RDWR;
                if writes && !self.writable {
                    return Err(Errno::EROFS);
                }
                let host_flags = if writes { libc::O_RDWR } else { libc::O_RDONLY };
                let fd = self.open_fd(rel, host_flags)?;
                Ok(Box::new(HostFile {
                    fd: Arc::new(fd),
                    dev: self.dev,
                    writable: writes,
                }))
            }
            libc::S_IFLNK => Err(Errno::ELOOP),
            _ => Err(Errno::ENXIO),
        }
    }

    /// statfs of the host root, reported as `f_type`.
    pub(crate) fn statfs_as(&self, f_type: i64, read_only: bool) -> KResult<StatFs> {
        let s = host_fstatfs(self.root.as_fd())?;
        let mut flags = s.f_flags & !(libc::ST_RDONLY as i64);
        if read_only {
            flags |= libc::ST_RDONLY as i64;
        }
        Ok(StatFs {
            f_type,
            f_fsid: [(self.dev & 0xffff_ffff) as i32, 0],
            f_flags: flags,
            f_spare: [0; 4],
            ..s
        })
    }
}

impl MountFs for HostFs {
    fn fs_type(&self) -> &'static str {
        self.name
    }

    fn lstat(&self, rel: &[u8]) -> KResult<Stat> {
        self.lstat_rel(rel)
    }

    fn readlink(&self, rel: &[u8]) -> KResult<Vec<u8>> {
        self.readlink_rel(rel)
    }

    fn open(&self, rel: &[u8], flags: i32, st: &Stat) -> KResult<Box<dyn FileOps>> {
        self.open_ops(rel, flags, st)
    }

    fn create(
        &self,
        rel: &[u8],
        flags: i32,
        mode: u32,
        _owner: Owner,
    ) -> KResult<Box<dyn FileOps>> {
        self.check_writable()?;
        let (pfd, _) = self.parent(rel)?;
        let name = split_last(rel).1;
        let acc = flags & libc::O_ACCMODE;
        let writes = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        let fd = openat2_in_root(
            pfd.as_fd(),
            name,
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_NOCTTY,
            mode,
        )?;
        Ok(Box::new(HostFile {
            fd: Arc::new(fd),
            dev: self.dev,
            writable: writes,
        }))
    }

    fn mkdir(&self, rel: &[u8], mode: u32, _owner: Owner) -> KResult<()> {
        self.check_writable()?;
        let (pfd, name) = self.parent(rel)?;
        nix::sys::stat::mkdirat(
            pfd.as_fd(),
            name.as_c_str(),
            nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777),
        )?;
        Ok(())
    }

    fn mknod(&self, rel: &[u8], mode: u32, _rdev: u64, _owner: Owner) -> KResult<()> {
        self.check_writable()?;
        let kind = match mode & libc::S_IFMT {
            libc::S_IFIFO => nix::sys::stat::SFlag::S_IFIFO,
            libc::S_IFSOCK => nix::sys::stat::SFlag::S_IFSOCK,
            _ => return Err(Errno::EPERM),
        };
        let (pfd, name) = self.parent(rel)?;
        nix::sys::stat::mknodat(
            pfd.as_fd(),
            name.as_c_str(),
            kind,
            nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777),
            0,
        )?;
        Ok(())
    }

    fn symlink(&self, rel: &[u8], target: &[u8], _owner: Owner) -> KResult<()> {
        self.check_writable()?;
        let (pfd, name) = self.parent(rel)?;
        nix::unistd::symlinkat(cname(target)?.as_c_str(), pfd.as_fd(), name.as_c_str())?;
        Ok(())
    }

    fn unlink(&self, rel: &[u8]) -> KResult<()> {
        self.check_writable()?;
        let (pfd, name) = self.parent(rel)?;
        nix::unistd::unlinkat(
            pfd.as_fd(),
            name.as_c_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )?;
        Ok(())
    }

    fn rmdir(&self, rel: &[u8]) -> KResult<()> {
        self.check_writable()?;
        let (pfd, name) = self.parent(rel)?;
        nix::unistd::unlinkat(
            pfd.as_fd(),
            name.as_c_str(),
            nix::unistd::UnlinkatFlags::RemoveDir,
        )?;
        Ok(())
    }

    fn rename(&self, old: &[u8], new: &[u8], flags: u32) -> KResult<()> {
        self.check_writable()?;
        let (ofd, oname) = self.parent(old)?;
        let (nfd, nname) = self.parent(new)?;
        nix::fcntl::renameat2(
            ofd.as_fd(),
            oname.as_c_str(),
            nfd.as_fd(),
            nname.as_c_str(),
            nix::fcntl::RenameFlags::from_bits_truncate(flags),
        )?;
        Ok(())
    }

    fn link(&self, old: &[u8], new: &[u8]) -> KResult<()> {
        self.check_writable()?;
        let (ofd, oname) = self.parent(old)?;
        let (nfd, nname) = self.parent(new)?;
        nix::unistd::linkat(
            ofd.as_fd(),
            oname.as_c_str(),
            nfd.as_fd(),
            nname.as_c_str(),
            nix::fcntl::AtFlags::empty(),
        )?;
        Ok(())
    }

    fn setattr(&self, rel: &[u8], attr: &SetAttr) -> KResult<()> {
        self.check_writable()?;
        if let Some(size) = attr.size {
            let fd = self.open_fd(rel, libc::O_WRONLY)?;
            nix::unistd::ftruncate(&fd, size as libc::off_t)?;
        }
        if rel.is_empty() {
            // The root itself: chmod/chown/utimes through an O_RDONLY fd.
            let fd = self.open_fd(rel, libc::O_RDONLY | libc::O_DIRECTORY)?;
            if let Some(mode) = attr.mode {
                nix::sys::stat::fchmod(
                    &fd,
                    nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777),
                )?;
            }
            if attr.uid.is_some() || attr.gid.is_some() {
                nix::unistd::fchown(
                    &fd,
                    attr.uid.map(nix::unistd::Uid::from_raw),
                    attr.gid.map(nix::unistd::Gid::from_raw),
                )?;
            }
            if attr.atime.is_some() || attr.mtime.is_some() {
                nix::sys::stat::futimens(&fd, &ts(attr.atime), &ts(attr.mtime))?;
            }
            return Ok(());
        }
        let (pfd, name) = self.parent(rel)?;
        if let Some(mode) = attr.mode {
            nix::sys::stat::fchmodat(
                pfd.as_fd(),
                name.as_c_str(),
                nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777),
                nix::sys::stat::FchmodatFlags::NoFollowSymlink,
            )?;
        }
        if attr.uid.is_some() || attr.gid.is_some() {
            nix::unistd::fchownat(
                pfd.as_fd(),
                name.as_c_str(),
                attr.uid.map(nix::unistd::Uid::from_raw),
                attr.gid.map(nix::unistd::Gid::from_raw),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )?;
        }
        if attr.atime.is_some() || attr.mtime.is_some() {
            nix::sys::stat::utimensat(
                pfd.as_fd(),
                name.as_c_str(),
                &ts(attr.atime),
                &ts(attr.mtime),
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )?;
        }
        Ok(())
    }

    fn statfs(&self, _rel: &[u8]) -> KResult<StatFs> {
        let s = host_fstatfs(self.root.as_fd())?;
        self.statfs_as(s.f_type, !self.writable)
    }

    fn read_only(&self) -> bool {
        !self.writable
    }
}

/// A bind mount of a single host file: the file's parent directory is
/// opened `O_PATH` like a [`HostFs`] root, and only the file's own name is
/// ever looked up in it (never followed if it is a symlink). The mount
/// point itself is the file; nothing lies below it (ENOTDIR).
pub(crate) struct HostFileMount {
    dir: HostFs,
    name: Vec<u8>,
}

impl HostFileMount {
    /// Mounts host file `path` (already canonical).
    pub(crate) fn new(path: &std::path::Path, writable: bool, dev: u64) -> std::io::Result<Self> {
        let parent = path.parent().unwrap_or(std::path::Path::new("/"));
        let name = path
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
        Ok(HostFileMount {
            dir: HostFs::new_bind(parent, writable, dev)?,
            name,
        })
    }

    /// The mounted file's host path.
    pub(crate) fn host_path(&self) -> std::path::PathBuf {
        self.dir
            .host_path()
            .join(std::ffi::OsStr::from_bytes(&self.name))
    }

    /// The mounted file's host `(st_dev, st_ino)`.
    pub(crate) fn host_id(&self) -> KResult<(u64, u64)> {
        self.dir.host_id(&self.name)
    }

    fn rel(&self, rel: &[u8]) -> KResult<&[u8]> {
        if rel.is_empty() {
            Ok(&self.name)
        } else {
            Err(Errno::ENOTDIR)
        }
    }
}

impl MountFs for HostFileMount {
    fn fs_type(&self) -> &'static str {
        self.dir.name
    }
    fn lstat(&self, rel: &[u8]) -> KResult<Stat> {
        self.dir.lstat_rel(self.rel(rel)?)
    }
    fn readlink(&self, rel: &[u8]) -> KResult<Vec<u8>> {
        self.dir.readlink_rel(self.rel(rel)?)
    }
    fn open(&self, rel: &[u8], flags: i32, st: &Stat) -> KResult<Box<dyn FileOps>> {
        self.dir.open_ops(self.rel(rel)?, flags, st)
    }
    fn create(
        &self,
        _rel: &[u8],
        _flags: i32,
        _mode: u32,
        _owner: Owner,
    ) -> KResult<Box<dyn FileOps>> {
        Err(Errno::ENOTDIR)
    }
    fn mkdir(&self, _rel: &[u8], _mode: u32, _owner: Owner) -> KResult<()> {
        Err(Errno::ENOTDIR)
    }
    fn mknod(&self, _rel: &[u8], _mode: u32, _rdev: u64, _owner: Owner) -> KResult<()> {
        Err(Errno::ENOTDIR)
    }
    fn symlink(&self, _rel: &[u8], _target: &[u8], _owner: Owner) -> KResult<()> {
        Err(Errno::ENOTDIR)
    }
    fn unlink(&self, _rel: &[u8]) -> KResult<()> {
        Err(Errno::EBUSY)
    }
    fn rmdir(&self, _rel: &[u8]) -> KResult<()> {
        Err(Errno::EBUSY)
    }
    fn rename(&self, _old: &[u8], _new: &[u8], _flags: u32) -> KResult<()> {
        Err(Errno::EBUSY)
    }
    fn link(&self, _old: &[u8], _new: &[u8]) -> KResult<()> {
        Err(Errno::EXDEV)
    }
    fn setattr(&self, rel: &[u8], attr: &SetAttr) -> KResult<()> {
        let name = self.rel(rel)?.to_vec();
        self.dir.setattr(&name, attr)
    }
    fn statfs(&self, _rel: &[u8]) -> KResult<StatFs> {
        self.dir.statfs(b"")
    }
    fn read_only(&self) -> bool {
        !self.dir.writable
    }
}

fn ts(t: Option<(i64, i64)>) -> nix::sys::time::TimeSpec {
    match t {
        Some((s, ns)) => nix::sys::time::TimeSpec::new(s, ns),
        None => nix::sys::time::TimeSpec::UTIME_OMIT,
    }
}

/// An open regular file of the host tree: positional I/O on a host fd.
/// Read-only files are mapped by copying; files opened for writing (Direct
/// mode only) can be mapped shared through their host fd.
pub(crate) struct HostFile {
    fd: Arc<OwnedFd>,
    dev: u64,
    writable: bool,
}

impl FileOps for HostFile {
    fn read(&self, buf: &mut [u8], pos: Option<u64>) -> KResult<usize> {
        let off = i64::try_from(pos.unwrap_or(0)).map_err(|_| Errno::EINVAL)?;
        loop {
            match nix::sys::uio::pread(&*self.fd, buf, off) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return Ok(r?),
            }
        }
    }

    fn write(&self, buf: &[u8], pos: Option<u64>) -> KResult<usize> {
        if !self.writable {
            return Err(Errno::EBADF);
        }
        let off = i64::try_from(pos.unwrap_or(0)).map_err(|_| Errno::EINVAL)?;
        loop {
            match nix::sys::uio::pwrite(&*self.fd, buf, off) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return Ok(r?),
            }
        }
    }

    fn stat(&self) -> KResult<Stat> {
        fstat(self.fd.as_fd(), self.dev)
    }

    fn seekable(&self) -> bool {
        true
    }

    fn truncate(&self, len: u64) -> KResult<()> {
        if !self.writable {
            return Err(Errno::EINVAL);
        }
        nix::unistd::ftruncate(&*self.fd, i64::try_from(len).map_err(|_| Errno::EINVAL)?)?;
        Ok(())
    }

    fn sync(&self) -> KResult<()> {
        if self.writable {
            nix::unistd::fsync(&*self.fd)?;
        }
        Ok(())
    }

    fn mmap_source(&self) -> KResult<MmapSource> {
        if self.writable {
            Ok(MmapSource::HostFd(self.fd.clone()))
        } else {
            Ok(MmapSource::Copy)
        }
    }

    fn fallocate(&self, mode: i32, off: u64, len: u64) -> KResult<()> {
        if !self.writable {
            return Err(Errno::EBADF);
        }
        let off = i64::try_from(off).map_err(|_| Errno::EFBIG)?;
        let len = i64::try_from(len).map_err(|_| Errno::EFBIG)?;
        match nix::fcntl::fallocate(
            &*self.fd,
            nix::fcntl::FallocateFlags::from_bits_truncate(mode),
            off,
            len,
        ) {
            Ok(()) => Ok(()),
            // A host filesystem without the mode: fall back to writing.
            Err(nix::errno::Errno::EOPNOTSUPP) => {
                super::file::generic_fallocate(self, mode, off as u64, len as u64)
            }
            Err(e) => Err(e.into()),
        }
    }
}

// ---- host streams (stdio) ----

const TCGETS: u32 = 0x5401;
const TCSETS: u32 = 0x5402;
const TCSETSW: u32 = 0x5403;
const TCSETSF: u32 = 0x5404;
const TCSBRK: u32 = 0x5409;
const TCXONC: u32 = 0x540A;
const TCFLSH: u32 = 0x540B;
const TIOCSCTTY: u32 = 0x540E;
const TIOCGPGRP: u32 = 0x540F;
const TIOCSPGRP: u32 = 0x5410;
const TIOCOUTQ: u32 = 0x5411;
const TIOCGWINSZ: u32 = 0x5413;
const TIOCSWINSZ: u32 = 0x5414;
const FIONREAD: u32 = 0x541B;
const TIOCNOTTY: u32 = 0x5422;
/// Size of the kernel's `struct termios` (not glibc's).
const KERNEL_TERMIOS_SIZE: usize = 36;
/// Largest write that cannot block once POLLOUT is reported on a pipe.
const STREAM_WRITE_CHUNK: usize = 4096;

/// ioctl(2) whose argument points to `buf` (sized for the request).
#[allow(unsafe_code)] // thin host-call wrapper; see the SAFETY comments
fn host_ioctl_buf(fd: BorrowedFd<'_>, req: u32, buf: &mut [u8]) -> KResult<i32> {
    // SAFETY: every request passed here reads or writes at most the
    // structure `buf` was sized for (termios: 36 bytes, winsize: 8, int: 4),
    // and `buf` is live and writable for its whole length.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as libc::Ioctl, buf.as_mut_ptr()) };
    if r < 0 { Err(Errno::last()) } else { Ok(r) }
}

/// ioctl(2) with an integer argument (no memory access).
#[allow(unsafe_code)] // thin host-call wrapper; see the SAFETY comments
fn host_ioctl_int(fd: BorrowedFd<'_>, req: u32, arg: libc::c_ulong) -> KResult<i32> {
    // SAFETY: the requests passed here (TCSBRK, TCXONC, TCFLSH) take their
    // argument by value and touch no memory of ours.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as libc::Ioctl, arg) };
    if r < 0 { Err(Errno::last()) } else { Ok(r) }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Tty,
    Regular,
    Other,
}

/// A host fd passed through (see [`host_stream`]).
struct HostStream {
    fd: OwnedFd,
    kind: StreamKind,
    /// Foreground process group set through TIOCSPGRP (0: none yet).
    pgrp: AtomicI32,
}

/// Wraps a host fd given to the sandbox as stdin/stdout/stderr (terminal,
/// pipe, socket, file, /dev/null) into file operations that never block:
/// `read` and `write` first poll the fd with a zero timeout and return
/// EAGAIN when it is not ready (the caller then waits on `host_fd()`);
/// writes to non-regular files go in chunks of at most 4096 bytes, which a
/// ready pipe always accepts whole. A regular file is seekable: with
/// `pos` given, positional I/O; without, plain read/write sharing the host
/// description's offset. Terminal ioctls (TCGETS, TCSETS*, TIOCGWINSZ,
/// TIOCSWINSZ, TCFLSH, TCXONC, TCSBRK, TIOCOUTQ) go to the host fd when it
/// is a terminal, else ENOTTY. TIOCGPGRP/TIOCSPGRP are answered from a
/// value the sandbox set (never the host's process groups; ENOTTY until
/// one is set); FIONREAD works on anything.
pub fn host_stream(fd: OwnedFd) -> Box<dyn FileOps> {
    let kind = if nix::unistd::isatty(&fd).unwrap_or(false) {
        StreamKind::Tty
    } else {
        match nix::sys::stat::fstat(&fd) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => StreamKind::Regular,
            _ => StreamKind::Other,
        }
    };
    Box::new(HostStream {
        fd,
        kind,
        pgrp: AtomicI32::new(0),
    })
}

/// [`host_stream`] wrapped in an open file description with status flags
/// `flags`, whose position starts at the host fd's current offset (so a
/// regular file the host already wrote to is appended to, not
/// overwritten). Use this for the sandbox's stdio.
pub fn host_stream_file(fd: OwnedFd, flags: i32) -> Arc<OpenFile> {
    let off = nix::unistd::lseek(&fd, 0, nix::unistd::Whence::SeekCur)
        .unwrap_or(0)
        .max(0) as u64;
    let f = OpenFile::new(host_stream(fd), flags, Vec::new());
    if f.ops.seekable() {
        *f.pos.lock().unwrap_or_else(|e| e.into_inner()) = off;
    }
    f
}

impl HostStream {
    /// Keeps the host description's offset where the sandbox's is, so the
    /// host sees output where it expects it after the sandbox is done.
    fn sync_offset(&self, off: i64, n: usize) {
        let _ = nix::unistd::lseek(
            &self.fd,
            off.saturating_add(n as i64),
            nix::unistd::Whence::SeekSet,
        );
    }

    fn ready(&self, want: nix::poll::PollFlags) -> KResult<nix::poll::PollFlags> {
        let mut fds = [nix::poll::PollFd::new(self.fd.as_fd(), want)];
        loop {
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
                Ok(_) => return Ok(fds[0].revents().unwrap_or(nix::poll::PollFlags::empty())),
            }
        }
    }
}

impl FileOps for HostStream {
    fn read(&self, buf: &mut [u8], pos: Option<u64>) -> KResult<usize> {
        if self.kind == StreamKind::Regular {
            if let Some(p) = pos {
                let off = i64::try_from(p).map_err(|_| Errno::EINVAL)?;
                let n = nix::sys::uio::pread(&self.fd, buf, off)?;
                self.sync_offset(off, n);
                return Ok(n);
            }
        } else {
            let ev = self.ready(nix::poll::PollFlags::POLLIN)?;
            if ev.is_empty() {
                return Err(Errno::EAGAIN);
            }
        }
        loop {
            match nix::unistd::read(&self.fd, buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return Ok(r?),
            }
        }
    }

    fn write(&self, buf: &[u8], pos: Option<u64>) -> KResult<usize> {
        let mut buf = buf;
        if self.kind == StreamKind::Regular {
            if let Some(p) = pos {
                let off = i64::try_from(p).map_err(|_| Errno::EINVAL)?;
                let n = nix::sys::uio::pwrite(&self.fd, buf, off)?;
                self.sync_offset(off, n);
                return Ok(n);
            }
        } else {
            let ev = self.ready(nix::poll::PollFlags::POLLOUT)?;
            if ev.contains(nix::poll::PollFlags::POLLERR)
                || ev.contains(nix::poll::PollFlags::POLLHUP)
            {
                // Let write report EPIPE (or the real error) itself.
            } else if !ev.contains(nix::poll::PollFlags::POLLOUT) {
                return Err(Errno::EAGAIN);
            }
            if buf.len() > STREAM_WRITE_CHUNK {
                buf = &buf[..STREAM_WRITE_CHUNK];
            }
        }
        loop {
            match nix::unistd::write(&self.fd, buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return Ok(r?),
            }
        }
    }

    fn stat(&self) -> KResult<Stat> {
        Ok(Stat::from_host(&nix::sys::stat::fstat(&self.fd)?))
    }

    fn seekable(&self) -> bool {
        self.kind == StreamKind::Regular
    }

    fn poll(&self) -> PollEvents {
        if self.kind == StreamKind::Regular {
            return PollEvents::IN | PollEvents::OUT;
        }
        use nix::poll::PollFlags as F;
        let ev = self.ready(F::POLLIN | F::POLLOUT).unwrap_or(F::POLLERR);
        let mut out = PollEvents::empty();
        for (h, k) in [
            (F::POLLIN, PollEvents::IN),
            (F::POLLOUT, PollEvents::OUT),
            (F::POLLERR, PollEvents::ERR),
            (F::POLLHUP, PollEvents::HUP),
            (F::POLLPRI, PollEvents::PRI),
            (F::POLLNVAL, PollEvents::NVAL),
        ] {
            if ev.contains(h) {
                out |= k;
            }
        }
        out
    }

    fn host_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn ioctl(&self, cmd: u32, arg: u64, ctx: &mut dyn IoctlCtx) -> KResult<u64> {
        let tty = self.kind == StreamKind::Tty;
        match cmd {
            FIONREAD => {
                let n: i32 = if self.kind == StreamKind::Regular {
                    let st = nix::sys::stat::fstat(&self.fd)?;
                    let off = nix::unistd::lseek(&self.fd, 0, nix::unistd::Whence::SeekCur)?;
                    (st.st_size - off).clamp(0, i32::MAX as i64) as i32
                } else {
                    let mut b = [0u8; 4];
                    host_ioctl_buf(self.fd.as_fd(), FIONREAD, &mut b)?;
                    i32::from_ne_bytes(b)
                };
                ctx.write_mem(arg, &n.to_ne_bytes())?;
                Ok(0)
            }
            _ if !tty => Err(Errno::ENOTTY),
            TCGETS => {
                let mut b = [0u8; KERNEL_TERMIOS_SIZE];
                host_ioctl_buf(self.fd.as_fd(), TCGETS, &mut b)?;
                ctx.write_mem(arg, &b)?;
                Ok(0)
            }
            TCSETS | TCSETSW | TCSETSF => {
                let mut b = [0u8; KERNEL_TERMIOS_SIZE];
                ctx.read_mem(arg, &mut b)?;
                host_ioctl_buf(self.fd.as_fd(), cmd, &mut b)?;
                Ok(0)
            }
            TIOCGWINSZ | TIOCOUTQ => {
                let mut b = [0u8; 8];
                let len = if cmd == TIOCGWINSZ { 8 } else { 4 };
                host_ioctl_buf(self.fd.as_fd(), cmd, &mut b[..len])?;
                ctx.write_mem(arg, &b[..len])?;
                Ok(0)
            }
            TIOCSWINSZ => {
                let mut b = [0u8; 8];
                ctx.read_mem(arg, &mut b)?;
                host_ioctl_buf(self.fd.as_fd(), cmd, &mut b)?;
                Ok(0)
            }
            TCSBRK | TCXONC | TCFLSH => {
                host_ioctl_int(self.fd.as_fd(), cmd, arg as libc::c_ulong)?;
                Ok(0)
            }
            TIOCGPGRP => {
                let p = self.pgrp.load(Ordering::Relaxed);
                if p == 0 {
                    return Err(Errno::ENOTTY);
                }
                ctx.write_mem(arg, &p.to_ne_bytes())?;
                Ok(0)
            }
            TIOCSPGRP => {
                let mut b = [0u8; 4];
                ctx.read_mem(arg, &mut b)?;
                let p = i32::from_ne_bytes(b);
                if p <= 0 {
                    return Err(Errno::EINVAL);
                }
                self.pgrp.store(p, Ordering::Relaxed);
                Ok(0)
            }
            TIOCSCTTY | TIOCNOTTY => Ok(0),
            _ => Err(Errno::ENOTTY),
        }
    }

    fn proc_name(&self) -> Option<String> {
        // readlinkat, not readlink: the sandbox's seccomp filter allows
        // only the former.
        let link = format!("/proc/self/fd/{}", self.fd.as_raw_fd());
        let l = nix::fcntl::readlinkat(nix::fcntl::AT_FDCWD, link.as_str()).ok()?;
        let b = l.as_bytes();
        if b.starts_with(b"pipe:") || b.starts_with(b"socket:") || b.starts_with(b"anon_inode:") {
            Some(String::from_utf8_lossy(b).into_owned())
        } else {
            None
        }
    }
}

/// Whether `ops` is a host stdio stream (checkpoints replace those with the
/// restoring caller's stdio).
pub fn is_host_stream(ops: &dyn FileOps) -> bool {
    ops.as_any().downcast_ref::<HostStream>().is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    struct NoMem;
    impl IoctlCtx for NoMem {
        fn read_mem(&mut self, _addr: u64, _buf: &mut [u8]) -> KResult<()> {
            Err(Errno::EFAULT)
        }
        fn write_mem(&mut self, _addr: u64, _buf: &[u8]) -> KResult<()> {
            Err(Errno::EFAULT)
        }
    }

    #[test]
    fn openat2_confines_dotdot_and_symlinks() {
        let outer = tempfile::tempdir().unwrap();
        std::fs::write(outer.path().join("secret"), b"s3cret").unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("secret"), b"inside").unwrap();
        symlink(outer.path().join("secret"), root.join("abs")).unwrap();
        symlink("../../../../secret", root.join("rel")).unwrap();
        let fs = HostFs::new(&root, false, 7).unwrap();
        for p in [&b"../secret"[..], b"abs", b"rel", b"x/../../secret"] {
            let r = openat2_in_root(fs.root.as_fd(), p, libc::O_RDONLY, 0);
            if let Ok(fd) = r {
                let mut buf = [0u8; 16];
                let n = nix::unistd::read(&fd, &mut buf).unwrap();
                assert_eq!(&buf[..n], b"inside", "{:?}", String::from_utf8_lossy(p));
            }
        }
        assert_eq!(
            fs.lstat_rel(b"abs").unwrap().st_mode & libc::S_IFMT,
            libc::S_IFLNK
        );
        assert_eq!(fs.lstat_rel(b"abs").unwrap().st_dev, 7);
        assert_eq!(fs.readlink_rel(b"rel").unwrap(), b"../../../../secret");
        assert_eq!(fs.readlink_rel(b"secret").err(), Some(Errno::EINVAL));
        let names: Vec<Vec<u8>> = fs.list(b"").unwrap().into_iter().map(|e| e.name).collect();
        assert!(names.contains(&b"abs".to_vec()) && names.contains(&b"secret".to_vec()));
        assert!(!names.contains(&b".".to_vec()));
    }

    #[test]
    fn host_stream_pipe_never_blocks() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let rs = host_stream(r);
        let ws = host_stream(w);
        let mut buf = [0u8; 8];
        assert_eq!(rs.read(&mut buf, None).err(), Some(Errno::EAGAIN));
        assert!(!rs.poll().contains(PollEvents::IN));
        assert_eq!(ws.write(b"hey", None).unwrap(), 3);
        assert!(rs.poll().contains(PollEvents::IN));
        assert_eq!(rs.read(&mut buf, None).unwrap(), 3);
        // Fill the pipe: writes eventually report EAGAIN, never block.
        let big = vec![0u8; 100_000];
        let mut total = 0;
        loop {
            match ws.write(&big, None) {
                Ok(n) => total += n,
                Err(e) => {
                    assert_eq!(e, Errno::EAGAIN);
                    break;
                }
            }
            assert!(total < 10_000_000);
        }
        assert!(total >= 4096);
        assert!(rs.host_fd().is_some());
        assert_eq!(rs.ioctl(TCGETS, 0, &mut NoMem).err(), Some(Errno::ENOTTY));
        assert!(!rs.seekable());
    }

    #[test]
    fn host_stream_regular_file() {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, b"0123456789").unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0)).unwrap();
        let s = host_stream(OwnedFd::from(f));
        assert!(s.seekable());
        let mut b = [0u8; 4];
        assert_eq!(s.read(&mut b, None).unwrap(), 4);
        assert_eq!(&b, b"0123");
        assert_eq!(s.read(&mut b, Some(6)).unwrap(), 4);
        assert_eq!(&b, b"6789");
        assert_eq!(s.stat().unwrap().st_size, 10);
    }

    #[test]
    fn host_stream_file_starts_at_the_host_offset() {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, b"host:").unwrap();
        let dup = f.try_clone().unwrap();
        let of = host_stream_file(OwnedFd::from(dup), libc::O_WRONLY);
        assert_eq!(*of.pos.lock().unwrap(), 5);
        assert_eq!(of.ops.write(b"sandbox", Some(5)).unwrap(), 7);
        std::io::Write::write_all(&mut f, b";host").unwrap();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0)).unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).unwrap();
        assert_eq!(s, "host:sandbox;host");
    }
}
