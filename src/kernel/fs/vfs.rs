//! The sandbox's file namespace: path resolution, mounts, permission
//! checks and the path-based file operations the syscall layer calls.
//!
//! Every operation takes `cwd`, the absolute normalized sandbox path that a
//! relative `path` is resolved against (the task's cwd, or the path of an
//! `*at()` call's directory descriptor). Resolution walks the path one
//! component at a time: `.` and `..` are applied to the already-resolved
//! prefix (so `..` never climbs above `/`), every symlink met is read and
//! followed (absolute targets restart at the sandbox root, at most
//! [`MAX_SYMLINKS`] per lookup, else ELOOP), and the mount table decides
//! which filesystem serves each prefix. Filesystems below this layer only
//! ever see normalized relative paths whose intermediate components are
//! real directories; the host-backed ones additionally confine every host
//! lookup with `openat2(RESOLVE_IN_ROOT)`, so even a resolution bug here
//! cannot leave the host root directory.

use super::dev::DevFs;
use super::file::{AsAny, DirEntry, FileOps, OpenFile, Stat};
use super::host::{HostFileMount, HostFs};
use super::lock::LockTable;
use super::overlay::Overlay;
use super::path::{self, MAX_SYMLINKS, PATH_MAX, components, join, join_rel};
use super::tmpfs::Tmpfs;
use crate::errno::{Errno, KResult};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// A point in time as (seconds, nanoseconds) since the epoch.
pub type Timestamp = (i64, i64);

/// The current time.
pub(crate) fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos() as i64)
}

static NEXT_DEV: AtomicU32 = AtomicU32::new(0x40);

/// A fresh anonymous device number (`st_dev`) for a filesystem instance.
pub(crate) fn alloc_dev() -> u64 {
    libc::makedev(0, NEXT_DEV.fetch_add(1, Ordering::Relaxed))
}

/// Makes sure [`alloc_dev`] never hands out `dev` (a restored filesystem
/// keeps its saved device number).
pub(crate) fn reserve_dev(dev: u64) {
    if libc::major(dev) == 0 {
        NEXT_DEV.fetch_max(libc::minor(dev).saturating_add(1), Ordering::Relaxed);
    }
}

/// `utimensat`'s "set to the current time" nanosecond value.
pub const UTIME_NOW: i64 = (1 << 30) - 1;
/// `utimensat`'s "leave unchanged" nanosecond value.
pub const UTIME_OMIT: i64 = (1 << 30) - 2;

/// The credentials file operations are checked against (the caller passes
/// the filesystem uid/gid, or the real ones for `access`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Creds {
    /// User id; 0 bypasses permission checks (except that executing needs
    /// some x bit).
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub groups: Vec<u32>,
}

impl Creds {
    /// uid 0, gid 0.
    pub fn root() -> Creds {
        Creds::default()
    }

    /// Whether `gid` is the primary or a supplementary group.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// Whether `creds` may access a file with `st` for `want` (R=4, W=2, X=1).
pub fn permits(creds: &Creds, st: &Stat, want: u32) -> bool {
    let want = want & 7;
    if want == 0 {
        return true;
    }
    if creds.is_root() {
        return want & 1 == 0 || st.is_dir() || st.st_mode & 0o111 != 0;
    }
    let bits = if creds.uid == st.st_uid {
        st.st_mode >> 6
    } else if creds.in_group(st.st_gid) {
        st.st_mode >> 3
    } else {
        st.st_mode
    } & 7;
    bits & want == want
}

fn check_perm(creds: &Creds, st: &Stat, want: u32) -> KResult<()> {
    if permits(creds, st, want) {
        Ok(())
    } else {
        Err(Errno::EACCES)
    }
}

/// `struct statfs` as x86_64 Linux lays it out.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatFs {
    /// Filesystem magic (TMPFS_MAGIC, OVERLAYFS_SUPER_MAGIC, ...).
    pub f_type: i64,
    /// Optimal transfer block size.
    pub f_bsize: i64,
    /// Total data blocks.
    pub f_blocks: u64,
    /// Free blocks.
    pub f_bfree: u64,
    /// Free blocks for unprivileged users.
    pub f_bavail: u64,
    /// Total inodes.
    pub f_files: u64,
    /// Free inodes.
    pub f_ffree: u64,
    /// Filesystem id.
    pub f_fsid: [i32; 2],
    /// Longest file name.
    pub f_namelen: i64,
    /// Fragment size.
    pub f_frsize: i64,
    /// Mount flags (ST_RDONLY, ST_NOSUID, ...).
    pub f_flags: i64,
    /// Padding.
    pub f_spare: [i64; 4],
}
static_assertions::assert_eq_size!(StatFs, [u8; 120]);
static_assertions::const_assert_eq!(std::mem::offset_of!(StatFs, f_files), 40);
static_assertions::const_assert_eq!(std::mem::offset_of!(StatFs, f_fsid), 56);
static_assertions::const_assert_eq!(std::mem::offset_of!(StatFs, f_namelen), 64);
static_assertions::const_assert_eq!(std::mem::offset_of!(StatFs, f_flags), 80);

/// Owner of a node being created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    /// uid.
    pub uid: u32,
    /// gid.
    pub gid: u32,
}

/// Attribute changes; `None` leaves a field alone. ctime is always set.
#[derive(Debug, Clone, Default)]
pub(crate) struct SetAttr {
    /// New permission bits (07777).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New access time.
    pub atime: Option<Timestamp>,
    /// New modification time.
    pub mtime: Option<Timestamp>,
    /// New size (regular files).
    pub size: Option<u64>,
}

/// What the VFS needs from a mounted filesystem. Paths are relative to
/// the mount point and normalized; intermediate components have been
/// checked to be directories. The VFS has already done permission, type
/// and existence checks; implementations re-check what races could change.
pub(crate) trait MountFs: Send + Sync + AsAny {
    /// Stat without following a final symlink.
    fn lstat(&self, rel: &[u8]) -> KResult<Stat>;
    /// Symlink target (EINVAL if not a symlink).
    fn readlink(&self, rel: &[u8]) -> KResult<Vec<u8>>;
    /// The open file a magic link (/proc/<pid>/fd/N) stands for.
    fn magic_link(&self, _rel: &[u8]) -> Option<Arc<OpenFile>> {
        None
    }
    /// Opens an existing non-symlink node whose lstat is `st`.
    fn open(&self, rel: &[u8], flags: i32, st: &Stat) -> KResult<Box<dyn FileOps>>;
    /// Creates a regular file (EEXIST if present) and opens it.
    fn create(&self, rel: &[u8], flags: i32, mode: u32, owner: Owner) -> KResult<Box<dyn FileOps>>;
    /// mkdir.
    fn mkdir(&self, rel: &[u8], mode: u32, owner: Owner) -> KResult<()>;
    /// mknod of FIFOs and sockets (`mode` includes the type).
    fn mknod(&self, rel: &[u8], mode: u32, rdev: u64, owner: Owner) -> KResult<()>;
    /// symlink.
    fn symlink(&self, rel: &[u8], target: &[u8], owner: Owner) -> KResult<()>;
    /// unlink of a non-directory.
    fn unlink(&self, rel: &[u8]) -> KResult<()>;
    /// rmdir of an empty directory.
    fn rmdir(&self, rel: &[u8]) -> KResult<()>;
    /// rename within this filesystem (RENAME_NOREPLACE / RENAME_EXCHANGE).
    fn rename(&self, old: &[u8], new: &[u8], flags: u32) -> KResult<()>;
    /// Hard link.
    fn link(&self, old: &[u8], new: &[u8]) -> KResult<()>;
    /// chmod/chown/utimes/truncate.
    fn setattr(&self, rel: &[u8], attr: &SetAttr) -> KResult<()>;
    /// statfs.
    fn statfs(&self, rel: &[u8]) -> KResult<StatFs>;
    /// Whether every write fails with EROFS.
    fn read_only(&self) -> bool {
        false
    }
    /// The type shown in /proc/mounts.
    fn fs_type(&self) -> &'static str;
}

/// A filesystem whose contents the kernel synthesizes (devfs, procfs).
/// Paths are relative to the mount point and normalized; `b""` is its
/// root. It is read-mostly: creating, removing and renaming in it fail
/// (EACCES/EPERM); changing times or truncating is accepted and ignored.
pub trait SyntheticFs: Send + Sync + AsAny {
    /// lstat of `rel` (symlinks are reported as symlinks).
    fn stat(&self, rel: &[u8]) -> KResult<Stat>;
    /// The target of the symlink at `rel`; EINVAL if not a symlink.
    fn readlink(&self, rel: &[u8]) -> KResult<Vec<u8>>;
    /// Opens the non-directory at `rel` (directories are opened by the VFS
    /// from `readdir` and `stat`).
    fn open(&self, rel: &[u8], flags: i32) -> KResult<Box<dyn FileOps>>;
    /// The entries of the directory at `rel` (with or without `.`/`..`:
    /// the VFS supplies those itself).
    fn readdir(&self, rel: &[u8]) -> KResult<Vec<DirEntry>>;
    /// For a *magic link* such as /proc/<pid>/fd/N: the open file it stands
    /// for. Following the link then yields that file (reopened by its path
    /// if it has one, else the description itself) instead of resolving
    /// the `readlink` text. Default: not a magic link.
    fn magic_link(&self, _rel: &[u8]) -> Option<Arc<OpenFile>> {
        None
    }
    /// `f_type` reported by statfs (default TMPFS_MAGIC; procfs: 0x9fa0).
    fn fs_magic(&self) -> i64 {
        super::tmpfs::TMPFS_MAGIC
    }
    /// The type shown in /proc/mounts (default "tmpfs"; procfs: "proc").
    fn fs_name(&self) -> &'static str {
        "tmpfs"
    }
}

/// One entry of the mount table (for /proc/mounts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Absolute mount point.
    pub path: Vec<u8>,
    /// Filesystem type ("overlay", "rootfs", "tmpfs", "proc", ...).
    pub fs_type: &'static str,
    /// Mounted read-only.
    pub read_only: bool,
    /// Mount id (/proc/<pid>/mountinfo).
    pub id: usize,
    /// Id of the mount this one is mounted on (itself for `/`).
    pub parent: usize,
    /// `st_dev` of the filesystem's root.
    pub dev: u64,
    /// The source /proc/mounts shows ("tmpfs", "proc", a host path, ...).
    pub source: String,
    /// Filesystem-specific options ("size=1024k,mode=1777"), may be empty.
    pub data: String,
}

/// A directory's open file: lists through `list` (a snapshot taken at
/// index 0, so a listing in several getdents calls is consistent), and
/// stats through `stat`.
pub(crate) struct DirFile {
    list: Box<dyn Fn() -> KResult<Vec<DirEntry>> + Send + Sync>,
    stat: Box<dyn Fn() -> KResult<Stat> + Send + Sync>,
    cache: Mutex<Option<Vec<DirEntry>>>,
}

impl DirFile {
    /// A directory file from a lister (including `.` and `..`) and a stat.
    pub(crate) fn new(
        list: impl Fn() -> KResult<Vec<DirEntry>> + Send + Sync + 'static,
        stat: impl Fn() -> KResult<Stat> + Send + Sync + 'static,
    ) -> DirFile {
        DirFile {
            list: Box::new(list),
            stat: Box::new(stat),
            cache: Mutex::new(None),
        }
    }
}

impl FileOps for DirFile {
    fn read(&self, _buf: &mut [u8], _pos: Option<u64>) -> KResult<usize> {
        Err(Errno::EISDIR)
    }
    fn write(&self, _buf: &[u8], _pos: Option<u64>) -> KResult<usize> {
        Err(Errno::EISDIR)
    }
    fn stat(&self) -> KResult<Stat> {
        (self.stat)()
    }
    fn seekable(&self) -> bool {
        true
    }
    fn readdir(&self, from: u64) -> KResult<Vec<DirEntry>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if from == 0 || cache.is_none() {
            *cache = Some((self.list)()?);
        }
        let list = cache.as_ref().map(|v| v.as_slice()).unwrap_or(&[]);
        let from = usize::try_from(from).unwrap_or(usize::MAX).min(list.len());
        Ok(list[from..].to_vec())
    }
}

/// An `O_PATH` descriptor: only fstat works.
pub(super) struct PathFile {
    fs: Arc<dyn MountFs>,
    rel: Vec<u8>,
}

impl FileOps for PathFile {
    fn read(&self, _buf: &mut [u8], _pos: Option<u64>) -> KResult<usize> {
        Err(Errno::EBADF)
    }
    fn write(&self, _buf: &[u8], _pos: Option<u64>) -> KResult<usize> {
        Err(Errno::EBADF)
    }
    fn stat(&self) -> KResult<Stat> {
        self.fs.lstat(&self.rel)
    }
    fn readdir(&self, _from: u64) -> KResult<Vec<DirEntry>> {
        Err(Errno::EBADF)
    }
    fn truncate(&self, _len: u64) -> KResult<()> {
        Err(Errno::EBADF)
    }
}

/// Adapts a [`SyntheticFs`] to the VFS.
pub(super) struct Synth(pub(super) Arc<dyn SyntheticFs>);

impl MountFs for Synth {
    fn lstat(&self, rel: &[u8]) -> KResult<Stat> {
        self.0.stat(rel)
    }
    fn readlink(&self, rel: &[u8]) -> KResult<Vec<u8>> {
        self.0.readlink(rel)
    }
    fn magic_link(&self, rel: &[u8]) -> Option<Arc<OpenFile>> {
        self.0.magic_link(rel)
    }
    fn open(&self, rel: &[u8], flags: i32, st: &Stat) -> KResult<Box<dyn FileOps>> {
        if !st.is_dir() {
            return self.0.open(rel, flags);
        }
        let (fs1, fs2) = (self.0.clone(), self.0.clone());
        let (r1, r2) = (rel.to_vec(), rel.to_vec());
        Ok(Box::new(DirFile::new(
            move || {
                let me = fs1.stat(&r1)?;
                let parent = if r1.is_empty() {
                    me.st_ino
                } else {
                    fs1.stat(path::split_last(&r1).0)
                        .map(|s| s.st_ino)
                        .unwrap_or(me.st_ino)
                };
                let mut v = vec![
                    DirEntry {
                        ino: me.st_ino,
                        kind: libc::DT_DIR,
                        name: b".".to_vec(),
                    },
                    DirEntry {
                        ino: parent,
                        kind: libc::DT_DIR,
                        name: b"..".to_vec(),
                    },
                ];
                v.extend(
                    fs1.readdir(&r1)?
                        .into_iter()
                        .filter(|e| e.name != b"." && e.name != b".."),
                );
                Ok(v)
            },
            move || fs2.stat(&r2),
        )))
    }
    fn create(
        &self,
        _rel: &[u8],
        _flags: i32,
        _mode: u32,
        _owner: Owner,
    ) -> KResult<Box<dyn FileOps>> {
        Err(Errno::EACCES)
    }
    fn mkdir(&self, _rel: &[u8], _mode: u32, _owner: Owner) -> KResult<()> {
        Err(Errno::EACCES)
    }
    fn mknod(&self, _rel: &[u8], _mode: u32, _rdev: u64, _owner: Owner) -> KResult<()> {
        Err(Errno::EACCES)
    }
    fn symlink(&self, _rel: &[u8], _target: &[u8], _owner: Owner) -> KResult<()> {
        Err(Errno::EACCES)
    }
    fn unlink(&self, _rel: &[u8]) -> KResult<()> {
        Err(Errno::EPERM)
    }
    fn rmdir(&self, _rel: &[u8]) -> KResult<()> {
        Err(Errno::EPERM)
    }
    fn rename(&self, _old: &[u8], _new: &[u8], _flags: u32) -> KResult<()> {
        Err(Errno::EPERM)
    }
    fn link(&self, _old: &[u8], _new: &[u8]) -> KResult<()> {
        Err(Errno::EPERM)
    }
    fn setattr(&self, _rel: &[u8], attr: &SetAttr) -> KResult<()> {
        if attr.mode.is_some() || attr.uid.is_some() || attr.gid.is_some() {
            return Err(Errno::EPERM);
        }
        Ok(())
    }
    fn statfs(&self, _rel: &[u8]) -> KResult<StatFs> {
        Ok(StatFs {
            f_type: self.0.fs_magic(),
            f_bsize: 4096,
            f_namelen: 255,
            f_frsize: 4096,
            ..StatFs::default()
        })
    }
    fn fs_type(&self) -> &'static str {
        self.0.fs_name()
    }
}

/// `st_dev` of virtual directories (missing parents of mount points).
const VIRTUAL_DIR_DEV: u64 = 0x3f;

/// The stat of the virtual directory at `abs` (see `Vfs::has_mount_below`).
fn virtual_dir_stat(abs: &[u8]) -> Stat {
    let mut ino: u64 = 0xcbf2_9ce4_8422_2325;
    for b in abs {
        ino ^= *b as u64;
        ino = ino.wrapping_mul(0x100_0000_01b3);
    }
    Stat {
        st_dev: VIRTUAL_DIR_DEV,
        st_ino: ino | 1,
        st_nlink: 2,
        st_mode: libc::S_IFDIR | 0o755,
        st_blksize: 4096,
        ..Stat::default()
    }
}

/// Options of a tmpfs mount ([`Vfs::mount_tmpfs_opts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TmpfsOptions {
    /// Most bytes of file data it holds (ENOSPC beyond); None: unlimited.
    pub size: Option<u64>,
    /// Permission bits of its root (default 01777).
    pub mode: Option<u32>,
    /// Owner of its root (default root).
    pub uid: Option<u32>,
    /// Group of its root (default root).
    pub gid: Option<u32>,
    /// Every change fails with EROFS.
    pub read_only: bool,
}

/// A mount made read-only: lookups and reads go through; every change
/// fails with EROFS (the VFS checks `read_only` first for most).
pub(super) struct ReadOnlyMount(pub(super) Arc<dyn MountFs>);

impl MountFs for ReadOnlyMount {
    fn lstat(&self, rel: &[u8]) -> KResult<Stat> {
        self.0.lstat(rel)
    }
    fn readlink(&self, rel: &[u8]) -> KResult<Vec<u8>> {
        self.0.readlink(rel)
    }
    fn magic_link(&self, rel: &[u8]) -> Option<Arc<OpenFile>> {
        self.0.magic_link(rel)
    }
    fn open(&self, rel: &[u8], flags: i32, st: &Stat) -> KResult<Box<dyn FileOps>> {
        let acc = flags & libc::O_ACCMODE;
        if st.file_type() == libc::S_IFREG
            && (acc == libc::O_WRONLY || acc == libc::O_RDWR || flags & libc::O_TRUNC != 0)
        {
            return Err(Errno::EROFS);
        }
        self.0.open(rel, flags, st)
    }
    fn create(
        &self,
        _rel: &[u8],
        _flags: i32,
        _mode: u32,
        _owner: Owner,
    ) -> KResult<Box<dyn FileOps>> {
        Err(Errno::EROFS)
    }
    fn mkdir(&self, _rel: &[u8], _mode: u32, _owner: Owner) -> KResult<()> {
        Err(Errno::EROFS)
    }
    fn mknod(&self, _rel: &[u8], _mode: u32, _rdev: u64, _owner: Owner) -> KResult<()> {
        Err(Errno::EROFS)
    }
    fn symlink(&self, _rel: &[u8], _target: &[u8], _owner: Owner) -> KResult<()> {
        Err(Errno::EROFS)
    }
    fn unlink(&self, _rel: &[u8]) -> KResult<()> {
        Err(Errno::EROFS)
    }
    fn rmdir(&self, _rel: &[u8]) -> KResult<()> {
        Err(Errno::EROFS)
    }
    fn rename(&self, _old: &[u8], _new: &[u8], _flags: u32) -> KResult<()> {
        Err(Errno::EROFS)
    }
    fn link(&self, _old: &[u8], _new: &[u8]) -> KResult<()> {
        Err(Errno::EROFS)
    }
    fn setattr(&self, _rel: &[u8], _attr: &SetAttr) -> KResult<()> {
        Err(Errno::EROFS)
    }
    fn statfs(&self, rel: &[u8]) -> KResult<StatFs> {
        let mut s = self.0.statfs(rel)?;
        s.f_flags |= libc::ST_RDONLY as i64;
        Ok(s)
    }
    fn read_only(&self) -> bool {
        true
    }
    fn fs_type(&self) -> &'static str {
        self.0.fs_type()
    }
}

/// How the host directory becomes the sandbox root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum RootMode {
    /// A tmpfs upper layer over the read-only host directory: the sandbox
    /// can write, the host directory never changes.
    #[default]
    Overlay,
    /// The host directory, read-only: writes fail with EROFS.
    ReadOnly,
    /// The host directory itself, writable.
    Direct,
}

/// One mount of the table.
pub(super) struct Mount {
    /// Absolute normalized mount point.
    pub(super) at: Vec<u8>,
    /// Mount id.
    pub(super) id: usize,
    /// The filesystem.
    pub(super) fs: Arc<dyn MountFs>,
    /// What /proc/mounts shows as the source ("tmpfs", a host path, ...).
    pub(super) source: String,
    /// Filesystem-specific options /proc/mounts shows ("size=...").
    pub(super) data: String,
}

static NEXT_MOUNT_ID: AtomicUsize = AtomicUsize::new(1);

/// Makes sure new mounts never get id `id` (a restored mount keeps its
/// saved id).
pub(super) fn reserve_mount_id(id: usize) {
    NEXT_MOUNT_ID.fetch_max(id.saturating_add(1), Ordering::Relaxed);
}

/// Where a path lives.
pub(super) struct Loc<'p> {
    /// The filesystem mounted there.
    pub(super) fs: Arc<dyn MountFs>,
    /// The path relative to the mount point.
    pub(super) rel: &'p [u8],
    /// The mount's id.
    pub(super) id: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// Follow a final symlink.
    Yes,
    /// Do not, unless the path has a trailing slash.
    No,
    /// Never (operations on the name itself: unlink, rename, mkdir, ...).
    Never,
}

/// Restrictions on path resolution: openat2(2)'s RESOLVE_* flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scope {
    /// RESOLVE_BENEATH: the path must stay below the starting directory
    /// (absolute paths, escaping `..` and absolute symlinks give EXDEV).
    pub beneath: bool,
    /// RESOLVE_IN_ROOT: the starting directory acts as `/`.
    pub in_root: bool,
    /// RESOLVE_NO_SYMLINKS: following any symlink gives ELOOP.
    pub no_symlinks: bool,
    /// RESOLVE_NO_MAGICLINKS: following /proc/<pid>/fd/N gives ELOOP.
    pub no_magiclinks: bool,
    /// RESOLVE_NO_XDEV: crossing a mount point gives EXDEV.
    pub no_xdev: bool,
}

enum Found {
    /// Exists; `path` canonical.
    Node { path: Vec<u8>, st: Stat },
    /// The last component does not exist; `parent` exists and is a dir.
    Missing { parent: Vec<u8>, name: Vec<u8> },
    /// A magic link (/proc/<pid>/fd/N) at `path`, standing for `file`.
    Magic { path: Vec<u8>, file: Arc<OpenFile> },
}

struct Walked {
    r: Found,
    /// The path ended in a slash (or a final symlink's target did).
    must_dir: bool,
}

/// What a path's last written component is, for operations on names.
#[derive(PartialEq, Eq)]
enum Last {
    Name,
    Dot,
    DotDot,
    Root,
}

fn last_kind(p: &[u8]) -> Last {
    match path::last_written_component(p) {
        None => Last::Root,
        Some(b".") => Last::Dot,
        Some(b"..") => Last::DotDot,
        Some(_) => Last::Name,
    }
}

/// Flags that describe how a file was opened, not the open description.
const OPEN_ONLY_FLAGS: i32 =
    libc::O_CREAT | libc::O_EXCL | libc::O_NOCTTY | libc::O_TRUNC | libc::O_CLOEXEC;

/// The sandbox's file namespace (see the module docs). `Send + Sync`;
/// share it as `Arc<Vfs>`.
pub struct Vfs {
    pub(super) mode: RootMode,
    /// Longest mount point first.
    pub(super) mounts: RwLock<Vec<Mount>>,
    pub(super) locks: Arc<LockTable>,
    /// Holds anonymous files (memfd_create) while they are open.
    pub(super) anon: Tmpfs,
}
static_assertions::assert_impl_all!(Vfs: Send, Sync);

impl std::fmt::Debug for Vfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mounts = self.mounts.read().unwrap_or_else(|e| e.into_inner());
        let at: Vec<String> = mounts
            .iter()
            .map(|m| String::from_utf8_lossy(&m.at).into_owned())
            .collect();
        write!(f, "Vfs({:?}, mounts={:?})", self.mode, at)
    }
}

impl Vfs {
    /// A namespace rooted at `host_root` in `mode`, with devfs at `/dev`
    /// and an empty tmpfs at `/dev/shm` already mounted (mount another
    /// filesystem at the same path to replace one).
    pub fn new(host_root: &std::path::Path, mode: RootMode) -> std::io::Result<Vfs> {
        let dev = alloc_dev();
        let host = HostFs::new(host_root, mode == RootMode::Direct, dev)?;
        let root: Arc<dyn MountFs> = match mode {
            RootMode::Overlay => Arc::new(
                Overlay::new(Arc::new(host)).map_err(|e| std::io::Error::from_raw_os_error(e.0))?,
            ),
            RootMode::ReadOnly | RootMode::Direct => Arc::new(host),
        };
        let vfs = Vfs {
            mode,
            mounts: RwLock::new(Vec::new()),
            locks: LockTable::new(),
            anon: Tmpfs::new(None),
        };
        let source = match mode {
            RootMode::Overlay => "overlay".to_string(),
            _ => "rootfs".to_string(),
        };
        vfs.add_mount(b"/", root, source, String::new());
        vfs.mount(b"/dev", Arc::new(DevFs::new()));
        vfs.mount_tmpfs(b"/dev/shm", None);
        Ok(vfs)
    }

    /// The root mode.
    pub fn root_mode(&self) -> RootMode {
        self.mode
    }

    /// An anonymous regular file (memfd_create(2)): a tmpfs file without
    /// a name, mode 0777, owned by `creds`, opened read-write with status
    /// `flags`, and shown in /proc/<pid>/fd as `shown`.
    pub fn anonymous_file(
        &self,
        shown: String,
        creds: &Creds,
        flags: i32,
    ) -> KResult<Arc<OpenFile>> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("anon-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let owner = Owner {
            uid: creds.uid,
            gid: creds.gid,
        };
        let ops = self
            .anon
            .create(name.as_bytes(), libc::O_RDWR, 0o777, owner)?;
        MountFs::unlink(&self.anon, name.as_bytes())?;
        Ok(OpenFile::new(
            Box::new(super::file::Named::new(ops, shown)),
            flags | libc::O_RDWR,
            Vec::new(),
        ))
    }

    /// The sandbox's advisory file locks.
    pub fn locks(&self) -> &Arc<LockTable> {
        &self.locks
    }

    fn add_mount(&self, at: &[u8], fs: Arc<dyn MountFs>, source: String, data: String) {
        let at = path::normalize(b"/", at);
        let mut mounts = self.mounts.write().unwrap_or_else(|e| e.into_inner());
        mounts.retain(|m| m.at != at);
        mounts.push(Mount {
            at,
            id: NEXT_MOUNT_ID.fetch_add(1, Ordering::Relaxed),
            fs,
            source,
            data,
        });
        mounts.sort_by_key(|m| std::cmp::Reverse(m.at.len()));
    }

    /// Mounts a synthetic filesystem (devfs, procfs) at absolute path `at`,
    /// replacing whatever was mounted there. The mount point need not
    /// exist in the filesystem below; it is listed in its parent anyway.
    pub fn mount(&self, at: &[u8], fs: Arc<dyn SyntheticFs>) {
        let source = fs.fs_name().to_string();
        self.add_mount(at, Arc::new(Synth(fs)), source, String::new());
    }

    /// Mounts a synthetic filesystem like [`Vfs::mount`]; with
    /// `read_only`, every change below it fails with EROFS.
    pub fn mount_synthetic(&self, at: &[u8], fs: Arc<dyn SyntheticFs>, read_only: bool) {
        let source = fs.fs_name().to_string();
        let m: Arc<dyn MountFs> = Arc::new(Synth(fs));
        let m = if read_only {
            Arc::new(ReadOnlyMount(m))
        } else {
            m
        };
        self.add_mount(at, m, source, String::new());
    }

    /// Mounts at `at` the filesystem that is mounted at `from` (both
    /// absolute), as a second mount of the same instance (a bind mount of
    /// a mount's root). EINVAL if nothing is mounted at `from`.
    pub fn mount_alias(&self, at: &[u8], from: &[u8]) -> KResult<()> {
        let from = path::normalize(b"/", from);
        let (fs, source, data) = {
            let mounts = self.mounts.read().unwrap_or_else(|e| e.into_inner());
            let m = mounts.iter().find(|m| m.at == from).ok_or(Errno::EINVAL)?;
            (m.fs.clone(), m.source.clone(), m.data.clone())
        };
        self.add_mount(at, fs, source, data);
        Ok(())
    }

    /// Mounts a fresh empty tmpfs (mode 01777, owned by root) at `at`,
    /// holding at most `size` bytes of file data (ENOSPC beyond).
    pub fn mount_tmpfs(&self, at: &[u8], size: Option<u64>) {
        self.mount_tmpfs_opts(
            at,
            &TmpfsOptions {
                size,
                ..TmpfsOptions::default()
            },
        );
    }

    /// Mounts a fresh empty tmpfs at `at` with options `o`.
    pub fn mount_tmpfs_opts(&self, at: &[u8], o: &TmpfsOptions) {
        let fs = Tmpfs::new(o.size);
        let mode = o.mode.unwrap_or(0o1777) & 0o7777;
        let owner = match (o.uid, o.gid) {
            (None, None) => None,
            (u, g) => Some((u.unwrap_or(0), g.unwrap_or(0))),
        };
        fs.set_root_mode(mode, owner);
        let mut data = Vec::new();
        if let Some(sz) = o.size {
            data.push(format!("size={}k", sz.div_ceil(1024)));
        }
        data.push(format!("mode={mode:o}"));
        if let Some((u, g)) = owner {
            data.push(format!("uid={u},gid={g}"));
        }
        let m: Arc<dyn MountFs> = Arc::new(fs);
        let m = if o.read_only {
            Arc::new(ReadOnlyMount(m))
        } else {
            m
        };
        self.add_mount(at, m, "tmpfs".into(), data.join(","));
    }

    /// Bind-mounts the host directory or file `host` at `at`, confined like
    /// the root (every lookup under it is `openat2(RESOLVE_IN_ROOT)` on
    /// its own `O_PATH` descriptor; a file is reached through its parent
    /// directory's descriptor by its name only). Writes go to the host;
    /// with `read_only` they fail with EROFS. The host path is resolved
    /// (symlinks followed) once, here.
    pub fn mount_bind(
        &self,
        at: &[u8],
        host: &std::path::Path,
        read_only: bool,
    ) -> std::io::Result<()> {
        let real = std::fs::canonicalize(host)?;
        let md = std::fs::metadata(&real)?;
        // Host paths are not shown to the sandbox (as gVisor does).
        let source = "none".to_string();
        let fs: Arc<dyn MountFs> = if md.is_dir() {
            Arc::new(HostFs::new_bind(&real, !read_only, alloc_dev())?)
        } else {
            Arc::new(HostFileMount::new(&real, !read_only, alloc_dev())?)
        };
        self.add_mount(at, fs, source, String::new());
        Ok(())
    }

    /// Mounts a fresh tmpfs at `at` like [`Vfs::mount_tmpfs`], but only if
    /// that is safe, as gVisor does for /tmp: `at` is not a mount point
    /// already and is missing or an empty directory (mounting would hide
    /// files). Returns whether it mounted.
    pub fn mount_tmpfs_if_empty(&self, at: &[u8], size: Option<u64>) -> bool {
        let at = path::normalize(b"/", at);
        if self.locate(&at).rel.is_empty() {
            return false;
        }
        let empty = match self.stat(b"/", &at, true) {
            Err(Errno::ENOENT) => true,
            Ok(st) if st.is_dir() => self
                .open(
                    b"/",
                    &at,
                    libc::O_RDONLY | libc::O_DIRECTORY,
                    0,
                    &Creds::root(),
                )
                .and_then(|f| f.ops.readdir(0))
                .map(|v| v.iter().all(|e| e.name == b"." || e.name == b".."))
                .unwrap_or(false),
            _ => false,
        };
        if empty {
            self.mount_tmpfs(&at, size);
        }
        empty
    }

    /// The mount table, parents before children (shorter mount points
    /// first, then in mount order).
    pub fn mounts(&self) -> Vec<MountInfo> {
        let (infos, roots) = {
            let mounts = self.mounts.read().unwrap_or_else(|e| e.into_inner());
            let mut order: Vec<&Mount> = mounts.iter().collect();
            order.sort_by_key(|m| (m.at.len(), m.id));
            let parent_of = |m: &Mount| -> usize {
                if m.at == b"/" {
                    return m.id;
                }
                mounts
                    .iter()
                    .filter(|p| p.at != m.at && path::is_within(&m.at, &p.at))
                    .max_by_key(|p| p.at.len())
                    .map_or(m.id, |p| p.id)
            };
            let infos: Vec<MountInfo> = order
                .iter()
                .map(|m| MountInfo {
                    path: m.at.clone(),
                    fs_type: m.fs.fs_type(),
                    read_only: m.fs.read_only(),
                    id: m.id,
                    parent: parent_of(m),
                    dev: 0,
                    source: m.source.clone(),
                    data: m.data.clone(),
                })
                .collect();
            let roots: Vec<Arc<dyn MountFs>> = order.iter().map(|m| m.fs.clone()).collect();
            (infos, roots)
        };
        // Filesystems are asked outside the table's lock.
        infos
            .into_iter()
            .zip(roots)
            .map(|(mut i, fs)| {
                i.dev = fs.lstat(b"").map(|s| s.st_dev).unwrap_or(0);
                i
            })
            .collect()
    }

    /// Removes the mount at `at` (EINVAL if none; `/` cannot be unmounted).
    pub fn unmount(&self, at: &[u8]) -> KResult<()> {
        let at = path::normalize(b"/", at);
        if at == b"/" {
            return Err(Errno::EBUSY);
        }
        let mut mounts = self.mounts.write().unwrap_or_else(|e| e.into_inner());
        let before = mounts.len();
        mounts.retain(|m| m.at != at);
        if mounts.len() == before {
            Err(Errno::EINVAL)
        } else {
            Ok(())
        }
    }

    /// The mount serving absolute normalized path `abs`.
    pub(super) fn locate<'p>(&self, abs: &'p [u8]) -> Loc<'p> {
        let mounts = self.mounts.read().unwrap_or_else(|e| e.into_inner());
        for m in mounts.iter() {
            if path::is_within(abs, &m.at) {
                return Loc {
                    fs: m.fs.clone(),
                    rel: path::relative_to(abs, &m.at),
                    id: m.id,
                };
            }
        }
        // "/" is always mounted; this is unreachable in practice.
        let m = mounts.last().map(|m| (m.fs.clone(), m.id));
        drop(mounts);
        match m {
            Some((fs, id)) => Loc {
                fs,
                rel: path::relative_to(abs, b"/"),
                id,
            },
            None => Loc {
                fs: Arc::new(Tmpfs::new(Some(0))),
                rel: b"",
                id: 0,
            },
        }
    }

    fn lstat_abs(&self, abs: &[u8]) -> KResult<Stat> {
        let loc = self.locate(abs);
        match loc.fs.lstat(loc.rel) {
            Err(Errno::ENOENT) if self.has_mount_below(abs) => Ok(virtual_dir_stat(abs)),
            r => r,
        }
    }

    /// Whether some mount point lies strictly below `abs` (which then
    /// exists as a directory even if the filesystem below lacks it, as a
    /// read-only, otherwise empty *virtual directory*).
    fn has_mount_below(&self, abs: &[u8]) -> bool {
        let mounts = self.mounts.read().unwrap_or_else(|e| e.into_inner());
        mounts
            .iter()
            .any(|m| m.at != abs && path::is_within(&m.at, abs))
    }

    /// Mounts whose mount point is a direct child of `dir`.
    fn child_mounts(&self, dir: &[u8]) -> Vec<DirEntry> {
        let mounts = self.mounts.read().unwrap_or_else(|e| e.into_inner());
        let list: Vec<(Vec<u8>, Arc<dyn MountFs>)> = mounts
            .iter()
            .filter(|m| m.at != b"/" && path::parent(&m.at) == dir)
            .map(|m| (path::basename(&m.at).to_vec(), m.fs.clone()))
            .collect();
        drop(mounts);
        list.into_iter()
            .filter_map(|(name, fs)| {
                fs.lstat(b"").ok().map(|st| DirEntry {
                    ino: st.st_ino,
                    kind: super::file::dtype_of(st.st_mode),
                    name,
                })
            })
            .collect()
    }

    /// Resolves `path` (see the module docs).
    fn walk(&self, cwd: &[u8], p: &[u8], follow: Follow, creds: Option<&Creds>) -> KResult<Walked> {
        self.walk_scoped(cwd, p, follow, creds, &Scope::default())
    }

    /// Resolves `path` under the restrictions of `scope` (openat2's
    /// RESOLVE_* flags).
    fn walk_scoped(
        &self,
        cwd: &[u8],
        p: &[u8],
        follow: Follow,
        creds: Option<&Creds>,
        scope: &Scope,
    ) -> KResult<Walked> {
        path::check(p)?;
        let creds = creds.filter(|c| !c.is_root());
        let mut must_dir = p.last() == Some(&b'/');
        let scoped = scope.beneath || scope.in_root;
        let root: Vec<u8> = if scoped {
            path::normalize(b"/", cwd)
        } else {
            b"/".to_vec()
        };
        let start_mount = if scope.no_xdev {
            Some(self.locate(&path::normalize(b"/", cwd)).id)
        } else {
            None
        };
        let mut cur: Vec<u8> = if p.first() == Some(&b'/') {
            if scope.beneath {
                return Err(Errno::EXDEV);
            }
            root.clone()
        } else {
            path::normalize(b"/", cwd)
        };
        let mut cur_st: Option<Stat> = None;
        let mut queue: VecDeque<Vec<u8>> = components(p).map(|c| c.to_vec()).collect();
        let mut links = 0u32;
        while let Some(c) = queue.pop_front() {
            if let Some(cr) = creds {
                let st = match cur_st {
                    Some(s) => s,
                    None => {
                        let s = self.lstat_abs(&cur)?;
                        cur_st = Some(s);
                        s
                    }
                };
                check_perm(cr, &st, 1)?;
            }
            if c == b"." {
                continue;
            }
            if c == b".." {
                if scoped && cur == root {
                    if scope.beneath {
                        return Err(Errno::EXDEV);
                    }
                    continue;
                }
                cur = path::parent(&cur).to_vec();
                cur_st = None;
                if let Some(id) = start_mount
                    && self.locate(&cur).id != id
                {
                    return Err(Errno::EXDEV);
                }
                continue;
            }
            if c.len() > path::NAME_MAX {
                return Err(Errno::ENAMETOOLONG);
            }
            let last = queue.is_empty();
            let cand = join(&cur, &c);
            if let Some(id) = start_mount
                && self.locate(&cand).id != id
            {
                return Err(Errno::EXDEV);
            }
            let st = match self.lstat_abs(&cand) {
                Ok(st) => st,
                Err(e) if e == Errno::ENOENT && last => {
                    return Ok(Walked {
                        r: Found::Missing {
                            parent: cur,
                            name: c,
                        },
                        must_dir,
                    });
                }
                Err(e) => return Err(e),
            };
            if st.file_type() == libc::S_IFLNK {
                let follow_this = !last
                    || match follow {
                        Follow::Yes => true,
                        Follow::No => must_dir,
                        Follow::Never => false,
                    };
                if follow_this {
                    links += 1;
                    if links > MAX_SYMLINKS || scope.no_symlinks {
                        return Err(Errno::ELOOP);
                    }
                    let loc = self.locate(&cand);
                    let target = match loc.fs.magic_link(loc.rel) {
                        Some(file) => {
                            if scope.no_magiclinks {
                                return Err(Errno::ELOOP);
                            }
                            if scoped {
                                return Err(Errno::EXDEV);
                            }
                            if last {
                                return Ok(Walked {
                                    r: Found::Magic { path: cand, file },
                                    must_dir,
                                });
                            }
                            if file.path.first() != Some(&b'/') {
                                return Err(Errno::ENOTDIR);
                            }
                            file.path.clone()
                        }
                        None => loc.fs.readlink(loc.rel)?,
                    };
                    if target.is_empty() {
                        return Err(Errno::ENOENT);
                    }
                    if target.len() >= PATH_MAX {
                        return Err(Errno::ENAMETOOLONG);
                    }
                    if target[0] == b'/' {
                        if scope.beneath {
                            return Err(Errno::EXDEV);
                        }
                        cur = root.clone();
                        cur_st = None;
                    }
                    if last && target.last() == Some(&b'/') {
                        must_dir = true;
                    }
                    for comp in components(&target).rev() {
                        queue.push_front(comp.to_vec());
                    }
                    continue;
                }
            }
            if !last {
                if !st.is_dir() {
                    return Err(Errno::ENOTDIR);
                }
                cur = cand;
                cur_st = Some(st);
                continue;
            }
            if must_dir && !st.is_dir() && st.file_type() != libc::S_IFLNK {
                return Err(Errno::ENOTDIR);
            }
            return Ok(Walked {
                r: Found::Node { path: cand, st },
                must_dir,
            });
        }
        let st = match cur_st {
            Some(s) => s,
            None => self.lstat_abs(&cur)?,
        };
        Ok(Walked {
            r: Found::Node { path: cur, st },
            must_dir,
        })
    }

    /// An existing node: magic links with a path are re-resolved by it.
    fn existing(&self, w: Walked) -> KResult<(Vec<u8>, Stat)> {
        match w.r {
            Found::Node { path, st } => Ok((path, st)),
            Found::Missing { .. } => Err(Errno::ENOENT),
            Found::Magic { file, .. } => {
                if file.path.first() != Some(&b'/') {
                    return Err(Errno::ENOENT);
                }
                match self.walk(b"/", &file.path, Follow::No, None)?.r {
                    Found::Node { path, st } => Ok((path, st)),
                    _ => Err(Errno::ENOENT),
                }
            }
        }
    }

    fn owner_for(creds: &Creds, parent: &Stat) -> (Owner, bool) {
        let sgid = parent.st_mode & libc::S_ISGID != 0;
        (
            Owner {
                uid: creds.uid,
                gid: if sgid { parent.st_gid } else { creds.gid },
            },
            sgid,
        )
    }

    /// Checks that a new entry may be made in `parent` and says where.
    fn prepare_create<'a>(&self, parent: &'a [u8], creds: &Creds) -> KResult<(Loc<'a>, Stat)> {
        let pst = self.lstat_abs(parent)?;
        if !pst.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let loc = self.locate(parent);
        if loc.fs.read_only() || pst.st_dev == VIRTUAL_DIR_DEV {
            return Err(Errno::EROFS);
        }
        check_perm(creds, &pst, 3)?;
        Ok((loc, pst))
    }

    /// The canonical absolute path of `path`: every symlink resolved (the
    /// final one only if `follow`). ENOENT if it does not exist.
    pub fn resolve(&self, cwd: &[u8], path: &[u8], follow: bool) -> KResult<Vec<u8>> {
        let w = self.walk(
            cwd,
            path,
            if follow { Follow::Yes } else { Follow::No },
            None,
        )?;
        match w.r {
            Found::Node { path, .. } => Ok(path),
            Found::Magic { path, file } => Ok(if file.path.first() == Some(&b'/') {
                file.path.clone()
            } else {
                path
            }),
            Found::Missing { .. } => Err(Errno::ENOENT),
        }
    }

    /// stat (`follow`) or lstat.
    pub fn stat(&self, cwd: &[u8], path: &[u8], follow: bool) -> KResult<Stat> {
        let w = self.walk(
            cwd,
            path,
            if follow { Follow::Yes } else { Follow::No },
            None,
        )?;
        match w.r {
            Found::Node { st, .. } => Ok(st),
            Found::Magic { file, .. } => file.ops.stat(),
            Found::Missing { .. } => Err(Errno::ENOENT),
        }
    }

    /// The target of the symlink at `path` (EINVAL if not a symlink).
    pub fn readlink(&self, cwd: &[u8], path: &[u8]) -> KResult<Vec<u8>> {
        let w = self.walk(cwd, path, Follow::No, None)?;
        match w.r {
            Found::Node { path, st } if st.file_type() == libc::S_IFLNK => {
                let loc = self.locate(&path);
                loc.fs.readlink(loc.rel)
            }
            Found::Missing { .. } => Err(Errno::ENOENT),
            _ => Err(Errno::EINVAL),
        }
    }

    /// open(2)/openat(2). `mode` is already umask-masked. The description
    /// keeps `flags` minus O_CREAT/O_EXCL/O_NOCTTY/O_TRUNC/O_CLOEXEC.
    /// O_APPEND is the caller's (it writes at the size); O_TMPFILE gives
    /// EOPNOTSUPP. FIFOs open without blocking (see tmpfs).
    pub fn open(
        &self,
        cwd: &[u8],
        path: &[u8],
        flags: i32,
        mode: u32,
        creds: &Creds,
    ) -> KResult<Arc<OpenFile>> {
        self.open_at_depth(cwd, path, flags, mode, creds, 0, &Scope::default())
    }

    /// openat2(2): [`Vfs::open`] with resolution restricted by `scope`
    /// (relative to `cwd`, the directory descriptor's path).
    pub fn open_scoped(
        &self,
        cwd: &[u8],
        path: &[u8],
        flags: i32,
        mode: u32,
        creds: &Creds,
        scope: &Scope,
    ) -> KResult<Arc<OpenFile>> {
        self.open_at_depth(cwd, path, flags, mode, creds, 0, scope)
    }

    /// O_TMPFILE: an unnamed regular file in the directory `path`, made
    /// by creating a hidden name and unlinking it at once.
    fn open_tmpfile(
        &self,
        cwd: &[u8],
        path: &[u8],
        flags: i32,
        mode: u32,
        creds: &Creds,
        scope: &Scope,
    ) -> KResult<Arc<OpenFile>> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let acc = flags & libc::O_ACCMODE;
        if acc != libc::O_WRONLY && acc != libc::O_RDWR {
            return Err(Errno::EINVAL);
        }
        let w = self.walk_scoped(cwd, path, Follow::Yes, Some(creds), scope)?;
        let (dir, st) = self.existing(w)?;
        if !st.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let (loc, pst) = self.prepare_create(&dir, creds)?;
        let (owner, _) = Vfs::owner_for(creds, &pst);
        let name = format!(
            ".rvisor-tmpfile-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let rel = join_rel(loc.rel, name.as_bytes());
        let create_flags =
            (flags & !(libc::O_TMPFILE | libc::O_CREAT | libc::O_EXCL)) | libc::O_RDWR;
        let ops = loc.fs.create(&rel, create_flags, mode & 0o7777, owner)?;
        loc.fs.unlink(&rel)?;
        let ino = ops.stat()?.st_ino;
        let shown = format!("{}/#{ino} (deleted)", String::from_utf8_lossy(&dir));
        let ops: Box<dyn FileOps> = Box::new(super::file::Named::new(ops, shown));
        let stored = flags & !OPEN_ONLY_FLAGS & !libc::O_TMPFILE;
        Ok(OpenFile::new(ops, stored, Vec::new()))
    }

    #[allow(clippy::too_many_arguments)]
    fn open_at_depth(
        &self,
        cwd: &[u8],
        path: &[u8],
        flags: i32,
        mode: u32,
        creds: &Creds,
        depth: u32,
        scope: &Scope,
    ) -> KResult<Arc<OpenFile>> {
        if flags & libc::O_TMPFILE == libc::O_TMPFILE {
            return self.open_tmpfile(cwd, path, flags, mode, creds, scope);
        }
        let acc = flags & libc::O_ACCMODE;
        let opath = flags & libc::O_PATH != 0;
        if acc == libc::O_ACCMODE && !opath {
            return Err(Errno::EINVAL);
        }
        let creat = flags & libc::O_CREAT != 0 && !opath;
        let excl = creat && flags & libc::O_EXCL != 0;
        let follow = if flags & libc::O_NOFOLLOW != 0 || excl {
            Follow::No
        } else {
            Follow::Yes
        };
        let stored = flags & !OPEN_ONLY_FLAGS;
        if creat && path.len() > 1 && path.last() == Some(&b'/') {
            // O_CREAT with a trailing slash: EISDIR once the parent resolves.
            let end = path.iter().rposition(|&b| b != b'/').map_or(0, |i| i + 1);
            if end > 0 {
                self.walk(cwd, &path[..end], Follow::Never, Some(creds))?;
            }
            return Err(Errno::EISDIR);
        }
        let w = self.walk_scoped(cwd, path, follow, Some(creds), scope)?;
        let must_dir = w.must_dir;
        match w.r {
            Found::Magic { path: link, file } => {
                if excl {
                    return Err(Errno::EEXIST);
                }
                if file.path.first() == Some(&b'/') && file.path != link && depth < 8 {
                    // Reopen by path: a new description with these flags.
                    let p = file.path.clone();
                    return self.open_at_depth(
                        b"/",
                        &p,
                        flags & !(libc::O_CREAT | libc::O_EXCL),
                        mode,
                        creds,
                        depth + 1,
                        &Scope::default(),
                    );
                }
                if !opath && let Ok(ops) = file.ops.reopen(flags) {
                    // A file without a path (memfd, O_TMPFILE): a new
                    // description of the same file.
                    let writes = acc == libc::O_WRONLY || acc == libc::O_RDWR;
                    let st = ops.stat()?;
                    check_perm(
                        creds,
                        &st,
                        if writes { 2 } else { 0 } | if acc != libc::O_WRONLY { 4 } else { 0 },
                    )?;
                    if flags & libc::O_TRUNC != 0 && writes {
                        ops.truncate(0)?;
                    }
                    return Ok(OpenFile::new(ops, stored, file.path.clone()));
                }
                Ok(file)
            }
            Found::Missing { parent, name } => {
                if !creat {
                    return Err(Errno::ENOENT);
                }
                if must_dir {
                    return Err(Errno::EISDIR);
                }
                let (loc, pst) = self.prepare_create(&parent, creds)?;
                let (owner, _) = Vfs::owner_for(creds, &pst);
                let rel = join_rel(loc.rel, &name);
                let ops = loc.fs.create(&rel, flags, mode & 0o7777, owner)?;
                Ok(OpenFile::new(ops, stored, join(&parent, &name)))
            }
            Found::Node { path: p, st } => {
                if excl {
                    return Err(Errno::EEXIST);
                }
                let ft = st.file_type();
                let loc = self.locate(&p);
                if ft == libc::S_IFLNK {
                    if opath && flags & libc::O_NOFOLLOW != 0 {
                        let ops = Box::new(PathFile {
                            fs: loc.fs.clone(),
                            rel: loc.rel.to_vec(),
                        });
                        return Ok(OpenFile::new(ops, stored, p.clone()));
                    }
                    return Err(Errno::ELOOP);
                }
                if flags & libc::O_DIRECTORY != 0 && !st.is_dir() {
                    return Err(Errno::ENOTDIR);
                }
                if opath {
                    let ops = Box::new(PathFile {
                        fs: loc.fs.clone(),
                        rel: loc.rel.to_vec(),
                    });
                    return Ok(OpenFile::new(ops, stored, p.clone()));
                }
                let writes = acc == libc::O_WRONLY || acc == libc::O_RDWR;
                if st.is_dir() && (creat || writes) {
                    return Err(Errno::EISDIR);
                }
                let trunc = flags & libc::O_TRUNC != 0 && ft == libc::S_IFREG;
                let mut want = 0;
                if acc == libc::O_RDONLY || acc == libc::O_RDWR {
                    want |= 4;
                }
                if writes || trunc {
                    want |= 2;
                }
                check_perm(creds, &st, want)?;
                if (writes || trunc)
                    && (ft == libc::S_IFREG || ft == libc::S_IFDIR)
                    && loc.fs.read_only()
                {
                    return Err(Errno::EROFS);
                }
                if trunc && st.st_size != 0 {
                    let t = now();
                    loc.fs.setattr(
                        loc.rel,
                        &SetAttr {
                            size: Some(0),
                            mtime: Some(t),
                            ..SetAttr::default()
                        },
                    )?;
                }
                let ops: Box<dyn FileOps> = if st.st_dev == VIRTUAL_DIR_DEV {
                    let me = st;
                    Box::new(DirFile::new(
                        move || {
                            Ok(vec![
                                DirEntry {
                                    ino: me.st_ino,
                                    kind: libc::DT_DIR,
                                    name: b".".to_vec(),
                                },
                                DirEntry {
                                    ino: me.st_ino,
                                    kind: libc::DT_DIR,
                                    name: b"..".to_vec(),
                                },
                            ])
                        },
                        move || Ok(me),
                    ))
                } else {
                    loc.fs.open(loc.rel, flags, &st)?
                };
                let ops = if st.is_dir() {
                    self.with_mounts(&p, ops)
                } else {
                    ops
                };
                Ok(OpenFile::new(ops, stored, p.clone()))
            }
        }
    }

    /// Adds mount points below `dir` to its listing.
    fn with_mounts(&self, dir: &[u8], ops: Box<dyn FileOps>) -> Box<dyn FileOps> {
        let extra = self.child_mounts(dir);
        if extra.is_empty() {
            return ops;
        }
        let inner: Arc<dyn FileOps> = Arc::from(ops);
        let i2 = inner.clone();
        Box::new(DirFile::new(
            move || {
                let mut v = inner.readdir(0)?;
                for e in &extra {
                    if !v.iter().any(|x| x.name == e.name) {
                        v.push(e.clone());
                    }
                }
                Ok(v)
            },
            move || i2.stat(),
        ))
    }

    /// access(2)/faccessat(2): F_OK (0) or a mask of R_OK/W_OK/X_OK.
    pub fn access(
        &self,
        cwd: &[u8],
        path: &[u8],
        mode: i32,
        follow: bool,
        creds: &Creds,
    ) -> KResult<()> {
        if mode & !7 != 0 {
            return Err(Errno::EINVAL);
        }
        let w = self.walk(
            cwd,
            path,
            if follow { Follow::Yes } else { Follow::No },
            Some(creds),
        )?;
        let (p, st) = match w.r {
            Found::Node { path, st } => (path, st),
            Found::Magic { file, .. } => (file.path.clone(), file.ops.stat()?),
            Found::Missing { .. } => return Err(Errno::ENOENT),
        };
        if mode == 0 {
            return Ok(());
        }
        let ft = st.file_type();
        if mode & libc::W_OK != 0
            && p.first() == Some(&b'/')
            && matches!(ft, libc::S_IFREG | libc::S_IFDIR | libc::S_IFLNK)
            && self.locate(&p).fs.read_only()
        {
            return Err(Errno::EROFS);
        }
        check_perm(creds, &st, mode as u32)
    }

    /// mkdir(2). `mode` is already umask-masked.
    pub fn mkdir(&self, cwd: &[u8], path: &[u8], mode: u32, creds: &Creds) -> KResult<()> {
        if last_kind(path) != Last::Name {
            path::check(path)?;
            return Err(Errno::EEXIST);
        }
        let w = self.walk(cwd, path, Follow::Never, Some(creds))?;
        let Found::Missing { parent, name } = w.r else {
            return Err(Errno::EEXIST);
        };
        let (loc, pst) = self.prepare_create(&parent, creds)?;
        let (owner, sgid) = Vfs::owner_for(creds, &pst);
        let mode = (mode & 0o1777) | if sgid { libc::S_ISGID } else { 0 };
        loc.fs.mkdir(&join_rel(loc.rel, &name), mode, owner)
    }

    /// mknod(2): regular files, FIFOs and sockets; device nodes give EPERM.
    pub fn mknod(
        &self,
        cwd: &[u8],
        path: &[u8],
        mode: u32,
        dev: u64,
        creds: &Creds,
    ) -> KResult<()> {
        let ftype = mode & libc::S_IFMT;
        match ftype {
            0 | libc::S_IFREG | libc::S_IFIFO | libc::S_IFSOCK => {}
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFDIR => return Err(Errno::EPERM),
            _ => return Err(Errno::EINVAL),
        }
        if last_kind(path) != Last::Name {
            path::check(path)?;
            return Err(Errno::EEXIST);
        }
        let w = self.walk(cwd, path, Follow::Never, Some(creds))?;
        let Found::Missing { parent, name } = w.r else {
            return Err(Errno::EEXIST);
        };
        if w.must_dir {
            return Err(Errno::ENOENT);
        }
        let (loc, pst) = self.prepare_create(&parent, creds)?;
        let (owner, _) = Vfs::owner_for(creds, &pst);
        let rel = join_rel(loc.rel, &name);
        if ftype == 0 || ftype == libc::S_IFREG {
            loc.fs
                .create(&rel, libc::O_RDONLY, mode & 0o7777, owner)
                .map(|_| ())
        } else {
            loc.fs.mknod(&rel, ftype | (mode & 0o7777), dev, owner)
        }
    }

    /// Looks up the final name of a path for unlink/rmdir/rename: no final
    /// symlink followed; the mount-point and parent-permission checks done.
    fn name_op(&self, cwd: &[u8], path: &[u8], creds: &Creds) -> KResult<(Vec<u8>, Stat, bool)> {
        let w = self.walk(cwd, path, Follow::Never, Some(creds))?;
        let must_dir = w.must_dir;
        let Found::Node { path: p, st } = w.r else {
            return Err(Errno::ENOENT);
        };
        Ok((p, st, must_dir))
    }

    fn check_parent_writable(&self, p: &[u8], creds: &Creds) -> KResult<()> {
        let pst = self.lstat_abs(path::parent(p))?;
        check_perm(creds, &pst, 3)
    }

    /// rmdir(2).
    pub fn rmdir(&self, cwd: &[u8], path: &[u8], creds: &Creds) -> KResult<()> {
        match last_kind(path) {
            Last::Dot => return Err(Errno::EINVAL),
            Last::DotDot => return Err(Errno::ENOTEMPTY),
            Last::Root => return Err(Errno::EBUSY),
            Last::Name => {}
        }
        let (p, st, _) = self.name_op(cwd, path, creds)?;
        if !st.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let loc = self.locate(&p);
        if loc.rel.is_empty() {
            return Err(Errno::EBUSY);
        }
        if loc.fs.read_only() {
            return Err(Errno::EROFS);
        }
        self.check_parent_writable(&p, creds)?;
        loc.fs.rmdir(loc.rel)
    }

    /// unlink(2) (EISDIR for directories).
    pub fn unlink(&self, cwd: &[u8], path: &[u8], creds: &Creds) -> KResult<()> {
        if last_kind(path) != Last::Name {
            path::check(path)?;
            return Err(Errno::EISDIR);
        }
        let (p, st, must_dir) = self.name_op(cwd, path, creds)?;
        if st.is_dir() {
            return Err(Errno::EISDIR);
        }
        if must_dir {
            return Err(Errno::ENOTDIR);
        }
        let loc = self.locate(&p);
        if loc.rel.is_empty() {
            return Err(Errno::EBUSY);
        }
        if loc.fs.read_only() {
            return Err(Errno::EROFS);
        }
        self.check_parent_writable(&p, creds)?;
        loc.fs.unlink(loc.rel)
    }

    /// renameat2(2); `flags` may hold RENAME_NOREPLACE or RENAME_EXCHANGE.
    pub fn rename(
        &self,
        cwd_old: &[u8],
        old: &[u8],
        cwd_new: &[u8],
        new: &[u8],
        flags: u32,
        creds: &Creds,
    ) -> KResult<()> {
        let known = libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE;
        if flags & !known != 0 || flags == known {
            return Err(Errno::EINVAL);
        }
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        if last_kind(old) != Last::Name || last_kind(new) != Last::Name {
            path::check(old)?;
            path::check(new)?;
            return Err(Errno::EBUSY);
        }
        let (op, ost, omust) = self.name_op(cwd_old, old, creds)?;
        let wn = self.walk(cwd_new, new, Follow::Never, Some(creds))?;
        let nmust = wn.must_dir;
        let (np, nst) = match wn.r {
            Found::Node { path, st } => (path, Some(st)),
            Found::Missing { parent, name } => (join(&parent, &name), None),
            Found::Magic { path, .. } => (path, None),
        };
        if omust && !ost.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let (ol, nl) = (self.locate(&op), self.locate(&np));
        if ol.id != nl.id {
            return Err(Errno::EXDEV);
        }
        if ol.rel.is_empty() || nl.rel.is_empty() {
            return Err(Errno::EBUSY);
        }
        if ol.fs.read_only() {
            return Err(Errno::EROFS);
        }
        self.check_parent_writable(&op, creds)?;
        self.check_parent_writable(&np, creds)?;
        if op == np {
            return Ok(());
        }
        if ost.is_dir() && path::is_within(&np, &op) {
            return Err(Errno::EINVAL);
        }
        match nst {
            Some(nst) => {
                if flags & libc::RENAME_NOREPLACE != 0 {
                    return Err(Errno::EEXIST);
                }
                if exchange {
                    if nst.is_dir() && path::is_within(&op, &np) {
                        return Err(Errno::EINVAL);
                    }
                    if nmust && !nst.is_dir() {
                        return Err(Errno::ENOTDIR);
                    }
                } else {
                    if ost.is_dir() && !nst.is_dir() {
                        return Err(Errno::ENOTDIR);
                    }
                    if !ost.is_dir() && nst.is_dir() {
                        return Err(Errno::EISDIR);
                    }
                    if nmust && !nst.is_dir() {
                        return Err(Errno::ENOTDIR);
                    }
                    if path::is_within(&op, &np) {
                        return Err(Errno::ENOTEMPTY);
                    }
                    if nst.st_ino == ost.st_ino && nst.st_dev == ost.st_dev && !ost.is_dir() {
                        return Ok(());
                    }
                }
            }
            None => {
                if exchange {
                    return Err(Errno::ENOENT);
                }
                if nmust && !ost.is_dir() {
                    return Err(Errno::ENOTDIR);
                }
            }
        }
        ol.fs.rename(ol.rel, nl.rel, flags)
    }

    /// symlink(2): a link at `linkpath` pointing to `target`.
    pub fn symlink(
        &self,
        target: &[u8],
        cwd: &[u8],
        linkpath: &[u8],
        creds: &Creds,
    ) -> KResult<()> {
        if target.is_empty() {
            return Err(Errno::ENOENT);
        }
        if target.len() >= PATH_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if last_kind(linkpath) != Last::Name {
            path::check(linkpath)?;
            return Err(Errno::EEXIST);
        }
        let w = self.walk(cwd, linkpath, Follow::Never, Some(creds))?;
        let Found::Missing { parent, name } = w.r else {
            return Err(Errno::EEXIST);
        };
        if w.must_dir {
            return Err(Errno::ENOENT);
        }
        let (loc, pst) = self.prepare_create(&parent, creds)?;
        let (owner, _) = Vfs::owner_for(creds, &pst);
        loc.fs.symlink(&join_rel(loc.rel, &name), target, owner)
    }

    /// link(2)/linkat(2); `follow` = AT_SYMLINK_FOLLOW.
    pub fn link(
        &self,
        cwd_old: &[u8],
        old: &[u8],
        cwd_new: &[u8],
        new: &[u8],
        follow: bool,
        creds: &Creds,
    ) -> KResult<()> {
        let wo = self.walk(
            cwd_old,
            old,
            if follow { Follow::Yes } else { Follow::Never },
            Some(creds),
        )?;
        let (op, ost) = self.existing(wo)?;
        if ost.is_dir() {
            return Err(Errno::EPERM);
        }
        if last_kind(new) != Last::Name {
            path::check(new)?;
            return Err(Errno::EEXIST);
        }
        let wn = self.walk(cwd_new, new, Follow::Never, Some(creds))?;
        let Found::Missing { parent, name } = wn.r else {
            return Err(Errno::EEXIST);
        };
        if wn.must_dir {
            return Err(Errno::ENOENT);
        }
        let (nl, _) = self.prepare_create(&parent, creds)?;
        let ol = self.locate(&op);
        if ol.id != nl.id {
            return Err(Errno::EXDEV);
        }
        ol.fs.link(ol.rel, &join_rel(nl.rel, &name))
    }

    fn attr_target(
        &self,
        cwd: &[u8],
        path: &[u8],
        follow: bool,
        creds: &Creds,
    ) -> KResult<(Vec<u8>, Stat)> {
        let w = self.walk(
            cwd,
            path,
            if follow { Follow::Yes } else { Follow::No },
            Some(creds),
        )?;
        let (p, st) = self.existing(w)?;
        if self.locate(&p).fs.read_only() {
            return Err(Errno::EROFS);
        }
        Ok((p, st))
    }

    fn setattr(&self, p: &[u8], attr: &SetAttr) -> KResult<()> {
        let loc = self.locate(p);
        loc.fs.setattr(loc.rel, attr)
    }

    /// chmod(2)/fchmodat(2) (a final symlink is followed).
    pub fn chmod(&self, cwd: &[u8], path: &[u8], mode: u32, creds: &Creds) -> KResult<()> {
        let (p, st) = self.attr_target(cwd, path, true, creds)?;
        if st.file_type() == libc::S_IFLNK {
            return Err(Errno::EOPNOTSUPP);
        }
        if !creds.is_root() && creds.uid != st.st_uid {
            return Err(Errno::EPERM);
        }
        let mut m = mode & 0o7777;
        if !creds.is_root() && !st.is_dir() && !creds.in_group(st.st_gid) {
            m &= !libc::S_ISGID;
        }
        self.setattr(
            &p,
            &SetAttr {
                mode: Some(m),
                ..SetAttr::default()
            },
        )
    }

    /// chown(2)/lchown(2)/fchownat(2); `None` leaves an id unchanged.
    pub fn chown(
        &self,
        cwd: &[u8],
        path: &[u8],
        uid: Option<u32>,
        gid: Option<u32>,
        follow: bool,
        creds: &Creds,
    ) -> KResult<()> {
        let (p, st) = self.attr_target(cwd, path, follow, creds)?;
        let uid = uid.filter(|&u| u != u32::MAX);
        let gid = gid.filter(|&g| g != u32::MAX);
        if !creds.is_root() {
            let owner = creds.uid == st.st_uid;
            if uid.is_some_and(|u| u != st.st_uid) {
                return Err(Errno::EPERM);
            }
            if gid.is_some_and(|g| !owner || (g != st.st_gid && !creds.in_group(g))) {
                return Err(Errno::EPERM);
            }
            if uid.is_some() && !owner {
                return Err(Errno::EPERM);
            }
        }
        if uid.is_none() && gid.is_none() {
            return Ok(());
        }
        let mut attr = SetAttr {
            uid,
            gid,
            ..SetAttr::default()
        };
        let ft = st.file_type();
        if ft != libc::S_IFDIR && ft != libc::S_IFLNK {
            let old = st.st_mode & 0o7777;
            let mut m = old & !libc::S_ISUID;
            if m & libc::S_IXGRP != 0 {
                m &= !libc::S_ISGID;
            }
            if m != old {
                attr.mode = Some(m);
            }
        }
        self.setattr(&p, &attr)
    }

    /// utimensat(2): `[atime, mtime]`, each `(sec, nsec)` where nsec may be
    /// [`UTIME_NOW`] ("now") or [`UTIME_OMIT`]; `None` also means "leave
    /// unchanged". A null `times` pointer is `[Some((0, UTIME_NOW)); 2]`.
    /// Setting explicit times needs ownership (EPERM); setting "now" needs
    /// ownership or write permission (EACCES).
    pub fn utimens(
        &self,
        cwd: &[u8],
        path: &[u8],
        times: [Option<(i64, i64)>; 2],
        follow: bool,
        creds: &Creds,
    ) -> KResult<()> {
        let t = now();
        let mut explicit = false;
        let mut resolved = [None, None];
        for (i, tm) in times.iter().enumerate() {
            resolved[i] = match *tm {
                None | Some((_, UTIME_OMIT)) => None,
                Some((_, UTIME_NOW)) => Some(t),
                Some((s, ns)) => {
                    if !(0..1_000_000_000).contains(&ns) {
                        return Err(Errno::EINVAL);
                    }
                    explicit = true;
                    Some((s, ns))
                }
            };
        }
        let (p, st) = self.attr_target(cwd, path, follow, creds)?;
        if resolved == [None, None] {
            return Ok(());
        }
        if !creds.is_root() && creds.uid != st.st_uid {
            if explicit {
                return Err(Errno::EPERM);
            }
            check_perm(creds, &st, 2)?;
        }
        self.setattr(
            &p,
            &SetAttr {
                atime: resolved[0],
                mtime: resolved[1],
                ..SetAttr::default()
            },
        )
    }

    /// truncate(2).
    pub fn truncate(&self, cwd: &[u8], path: &[u8], len: u64, creds: &Creds) -> KResult<()> {
        if len > i64::MAX as u64 {
            return Err(Errno::EINVAL);
        }
        let w = self.walk(cwd, path, Follow::Yes, Some(creds))?;
        let (p, st) = self.existing(w)?;
        if st.is_dir() {
            return Err(Errno::EISDIR);
        }
        if st.file_type() != libc::S_IFREG {
            return Err(Errno::EINVAL);
        }
        check_perm(creds, &st, 2)?;
        if self.locate(&p).fs.read_only() {
            return Err(Errno::EROFS);
        }
        self.setattr(
            &p,
            &SetAttr {
                size: Some(len),
                mtime: Some(now()),
                ..SetAttr::default()
            },
        )
    }

    /// statfs(2) of the filesystem holding `path`.
    pub fn statfs(&self, cwd: &[u8], path: &[u8]) -> KResult<StatFs> {
        let w = self.walk(cwd, path, Follow::Yes, None)?;
        let (p, _) = self.existing(w)?;
        let loc = self.locate(&p);
        let mut s = loc.fs.statfs(loc.rel)?;
        if loc.fs.read_only() {
            s.f_flags |= libc::ST_RDONLY as i64;
        }
        Ok(s)
    }

    /// Whether `path` (resolved, following symlinks) lies on a read-only
    /// mount.
    pub fn is_read_only(&self, cwd: &[u8], path: &[u8]) -> KResult<bool> {
        let w = self.walk(cwd, path, Follow::Yes, None)?;
        let (p, _) = self.existing(w)?;
        Ok(self.locate(&p).fs.read_only())
    }
}

#[cfg(test)]
mod tests {
    use super::super::file::MmapSource;
    use super::*;
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
    use std::path::{Path, PathBuf};

    const RDONLY: i32 = libc::O_RDONLY;
    const RDWR: i32 = libc::O_RDWR;
    const CREAT: i32 = libc::O_CREAT | libc::O_RDWR;

    fn root() -> Creds {
        Creds::root()
    }

    fn user() -> Creds {
        Creds {
            uid: 1000,
            gid: 1000,
            groups: vec![],
        }
    }

    /// A host tree: outer/secret (must never be reachable) and
    /// outer/root/... (the sandbox root).
    struct Fixture {
        outer: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            let outer = tempfile::tempdir().unwrap();
            let o = outer.path();
            std::fs::write(o.join("secret"), b"TOPSECRET").unwrap();
            let r = o.join("root");
            std::fs::create_dir_all(r.join("etc/sub/deeper")).unwrap();
            std::fs::create_dir_all(r.join("usr/lib")).unwrap();
            std::fs::create_dir_all(r.join("empty")).unwrap();
            std::fs::write(r.join("etc/passwd"), b"root:x:0:0:root:/root:/bin/sh\n").unwrap();
            std::fs::write(r.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
            std::fs::write(r.join("etc/sub/a"), b"AAAA").unwrap();
            std::fs::write(r.join("etc/sub/b"), b"BBBB").unwrap();
            std::fs::write(r.join("etc/sub/deeper/c"), b"CCCC").unwrap();
            std::fs::write(r.join("usr/lib/libc.so"), vec![0x7fu8; 10_000]).unwrap();
            std::fs::write(r.join("private"), b"root only").unwrap();
            std::fs::set_permissions(r.join("private"), std::fs::Permissions::from_mode(0o600))
                .unwrap();
            std::fs::write(r.join("script"), b"#!/bin/sh\n").unwrap();
            std::fs::set_permissions(r.join("script"), std::fs::Permissions::from_mode(0o644))
                .unwrap();
            symlink("usr/lib", r.join("lib")).unwrap();
            symlink(o.join("secret"), r.join("abs_escape")).unwrap();
            symlink("../../../../../../../../secret", r.join("rel_escape")).unwrap();
            symlink(o, r.join("outer_dir")).unwrap();
            symlink("..", r.join("up")).unwrap();
            // A chain: esc1 -> etc/esc2 -> ../up/up/rel_escape -> ../../..
            symlink("etc/esc2", r.join("esc1")).unwrap();
            symlink("../up/up/rel_escape", r.join("etc/esc2")).unwrap();
            symlink(o.join("root/../secret"), r.join("etc/esc3")).unwrap();
            symlink("loop_b", r.join("loop_a")).unwrap();
            symlink("loop_a", r.join("loop_b")).unwrap();
            symlink("/nonexistent/target", r.join("dangling")).unwrap();
            Fixture { outer }
        }

        fn root(&self) -> PathBuf {
            self.outer.path().join("root")
        }

        fn vfs(&self, mode: RootMode) -> Vfs {
            Vfs::new(&self.root(), mode).unwrap()
        }
    }

    /// path -> description of every node below `dir` (type, mode, owner,
    /// content or target).
    fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
            let mut names: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for p in names {
                let m = std::fs::symlink_metadata(&p).unwrap();
                let rel = p.strip_prefix(base).unwrap().to_path_buf();
                let desc = if m.file_type().is_symlink() {
                    format!("link {:?}", std::fs::read_link(&p).unwrap())
                } else if m.is_dir() {
                    walk(base, &p, out);
                    format!("dir {:o} {} {} {}", m.mode(), m.uid(), m.gid(), m.mtime())
                } else {
                    format!(
                        "file {:o} {} {:?} {}",
                        m.mode(),
                        m.nlink(),
                        std::fs::read(&p).unwrap(),
                        m.mtime()
                    )
                };
                out.insert(rel, desc);
            }
        }
        let mut out = BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    }

    fn read_all(f: &OpenFile) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = f.ops.read(&mut buf, Some(out.len() as u64)).unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    fn cat(v: &Vfs, p: &str) -> KResult<Vec<u8>> {
        let f = v.open(b"/", p.as_bytes(), RDONLY, 0, &root())?;
        Ok(read_all(&f))
    }

    fn write_file(v: &Vfs, p: &str, data: &[u8]) {
        let f = v
            .open(b"/", p.as_bytes(), CREAT | libc::O_TRUNC, 0o644, &root())
            .unwrap();
        assert_eq!(f.ops.write(data, Some(0)).unwrap(), data.len());
    }

    fn ls(v: &Vfs, p: &str) -> Vec<String> {
        let f = v
            .open(b"/", p.as_bytes(), RDONLY | libc::O_DIRECTORY, 0, &root())
            .unwrap();
        let mut names: Vec<String> = f
            .ops
            .readdir(0)
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .collect();
        names.sort();
        names
    }

    fn err<T>(r: KResult<T>) -> Errno {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => e,
        }
    }

    #[test]
    fn confinement_in_every_mode() {
        let fx = Fixture::new();
        let outer = fx.outer.path().to_str().unwrap().to_string();
        for mode in [RootMode::Overlay, RootMode::ReadOnly, RootMode::Direct] {
            let v = fx.vfs(mode);
            let attempts = [
                "/../secret".to_string(),
                "/../../../../secret".to_string(),
                "../../secret".to_string(),
                "/etc/../../../secret".to_string(),
                "/abs_escape".to_string(),
                "/rel_escape".to_string(),
                "/outer_dir/secret".to_string(),
                "/up/up/up/secret".to_string(),
                "/up/secret".to_string(),
                "/esc1".to_string(),
                "/etc/esc3".to_string(),
                "etc/esc2".to_string(),
                format!("{outer}/secret"),
                format!("/lib/../../..{outer}/secret"),
            ];
            for a in &attempts {
                for cwd in [&b"/"[..], b"/etc/sub/deeper"] {
                    match v.open(cwd, a.as_bytes(), RDONLY, 0, &root()) {
                        Ok(f) => assert_ne!(read_all(&f), b"TOPSECRET", "{mode:?} {a}"),
                        Err(e) => assert!(
                            e == Errno::ENOENT || e == Errno::ENOTDIR,
                            "{mode:?} {a}: {e}"
                        ),
                    }
                    if let Ok(p) = v.resolve(cwd, a.as_bytes(), true) {
                        assert!(p.starts_with(b"/"), "{a}");
                    }
                }
            }
            // Where the escapes land instead.
            assert_eq!(
                v.resolve(b"/", b"/../../etc/./passwd", true).unwrap(),
                b"/etc/passwd"
            );
            assert_eq!(
                v.resolve(b"/etc/sub", b"../../../../etc", true).unwrap(),
                b"/etc"
            );
            assert_eq!(v.resolve(b"/", b"/up/up/etc", true).unwrap(), b"/etc");
            assert_eq!(
                v.resolve(b"/", b"/lib/libc.so", true).unwrap(),
                b"/usr/lib/libc.so"
            );
            assert_eq!(v.resolve(b"/", b"/lib", false).unwrap(), b"/lib");
            assert_eq!(err(v.resolve(b"/", b"/rel_escape", true)), Errno::ENOENT);
            assert_eq!(err(v.stat(b"/", b"/loop_a", true)), Errno::ELOOP);
            assert_eq!(
                v.stat(b"/", b"/loop_a", false).unwrap().file_type(),
                libc::S_IFLNK
            );
            // Secret planted inside the root is what /secret means.
            assert_eq!(err(cat(&v, "/secret")), Errno::ENOENT);
            assert_eq!(
                cat(&v, "/etc/sub/deeper/../../passwd").unwrap(),
                b"root:x:0:0:root:/root:/bin/sh\n"
            );
            // Creating through an escaping symlink stays inside.
            if mode != RootMode::ReadOnly {
                v.symlink(
                    format!("{outer}/planted").as_bytes(),
                    b"/",
                    b"/plant",
                    &root(),
                )
                .unwrap();
                assert_eq!(
                    err(v.open(b"/", b"/plant", CREAT, 0o644, &root())),
                    Errno::ENOENT
                );
                v.symlink(b"../../../../planted2", b"/", b"/plant2", &root())
                    .unwrap();
                let f = v.open(b"/", b"/plant2", CREAT, 0o644, &root()).unwrap();
                assert_eq!(f.path, b"/planted2");
                assert!(!fx.outer.path().join("planted").exists());
                assert!(!fx.outer.path().join("planted2").exists());
            }
        }
    }

    #[test]
    fn scoped_resolution() {
        let fx = Fixture::new();
        let v = fx.vfs(RootMode::Overlay);
        let r = root();
        let open = |cwd: &[u8], p: &str, sc: Scope| {
            v.open_scoped(cwd, p.as_bytes(), RDONLY, 0, &r, &sc)
                .map(|f| f.path.clone())
        };
        let beneath = Scope {
            beneath: true,
            ..Scope::default()
        };
        let in_root = Scope {
            in_root: true,
            ..Scope::default()
        };
        assert_eq!(
            open(b"/etc", "sub/../passwd", beneath).unwrap(),
            b"/etc/passwd"
        );
        assert_eq!(err(open(b"/etc/sub", "../passwd", beneath)), Errno::EXDEV);
        assert_eq!(err(open(b"/etc", "/etc/passwd", beneath)), Errno::EXDEV);
        assert_eq!(
            open(b"/", "lib/libc.so", beneath).unwrap(),
            b"/usr/lib/libc.so"
        );
        // In the root scope, `..` stops at the directory and absolute
        // paths and symlinks start there.
        assert_eq!(
            open(b"/etc", "../../passwd", in_root).unwrap(),
            b"/etc/passwd"
        );
        assert_eq!(open(b"/etc", "/passwd", in_root).unwrap(), b"/etc/passwd");
        v.symlink(b"/passwd", b"/etc", b"abs", &r).unwrap();
        assert_eq!(open(b"/etc", "abs", in_root).unwrap(), b"/etc/passwd");
        assert_eq!(err(open(b"/etc", "abs", beneath)), Errno::EXDEV);
        let nosym = Scope {
            no_symlinks: true,
            ..Scope::default()
        };
        assert_eq!(err(open(b"/", "lib/libc.so", nosym)), Errno::ELOOP);
        assert_eq!(
            open(b"/", "usr/lib/libc.so", nosym).unwrap(),
            b"/usr/lib/libc.so"
        );
        let noxdev = Scope {
            no_xdev: true,
            ..Scope::default()
        };
        assert_eq!(err(open(b"/", "dev/null", noxdev)), Errno::EXDEV);
        assert!(open(b"/", "etc/passwd", noxdev).is_ok());
    }

    #[test]
    fn bind_mounts_are_confined() {
        let fx = Fixture::new();
        let v = fx.vfs(RootMode::Overlay);
        let r = root();
        // A bind of the fixture's root directory: its escaping symlinks
        // stay inside the bind.
        v.mount_bind(b"/mnt/b", &fx.root(), false).unwrap();
        assert_eq!(
            cat(&v, "/mnt/b/etc/hosts").unwrap(),
            b"127.0.0.1 localhost\n"
        );
        // Symlinks resolve in the sandbox's namespace: `..` leaves the bind.
        assert_eq!(v.resolve(b"/", b"/mnt/b/up", true).unwrap(), b"/mnt");
        assert_eq!(ls(&v, "/mnt"), [".", "..", "b"], "a virtual directory");
        match v.open(b"/", b"/mnt/b/rel_escape", RDONLY, 0, &r) {
            Ok(f) => assert_ne!(read_all(&f), b"TOPSECRET"),
            Err(e) => assert!(e == Errno::ENOENT || e == Errno::ENOTDIR),
        }
        write_file(&v, "/mnt/b/etc/written", b"host");
        assert_eq!(
            std::fs::read(fx.root().join("etc/written")).unwrap(),
            b"host"
        );
        v.mount_bind(b"/mnt/ro", &fx.root(), true).unwrap();
        assert_eq!(
            err(v.open(b"/", b"/mnt/ro/etc/new", CREAT, 0o644, &r)),
            Errno::EROFS
        );
        assert!(v.statfs(b"/", b"/mnt/ro").unwrap().f_flags & libc::ST_RDONLY as i64 != 0);
        assert_eq!(
            err(v.rename(b"/", b"/mnt/b/etc/written", b"/", b"/etc/w", 0, &r)),
            Errno::EXDEV
        );
        assert_eq!(err(v.rmdir(b"/", b"/mnt/b", &r)), Errno::EBUSY);
    }

    #[test]
    fn symlink_limits() {
        let fx = Fixture::new();
        let v = fx.vfs(RootMode::Overlay);
        v.mkdir(b"/", b"/chain", 0o755, &root()).unwrap();
        write_file(&v, "/chain/end", b"end");
        let mut prev = "end".to_string();
        for i in 0..41 {
            let name = format!("l{i}");
            v.symlink(prev.as_bytes(), b"/chain", name.as_bytes(), &root())
                .unwrap();
            prev = name;
        }
        // l39 is 40 links from the file: fine; l40 is 41: ELOOP.
        assert_eq!(cat(&v, "/chain/l39").unwrap(), b"end");
        assert_eq!(err(cat(&v, "/chain/l40")), Errno::ELOOP);
        let long = "a".repeat(256);
        assert_eq!(
            err(v.stat(b"/", long.as_bytes(), true)),
            Errno::ENAMETOOLONG
        );
        let deep = "/x".repeat(2100);
        assert_eq!(
            err(v.stat(b"/", deep.as_bytes(), true)),
            Errno::ENAMETOOLONG
        );
    }

    #[test]
    fn lookup_errors_like_linux() {
        let fx = Fixture::new();
        let v = fx.vfs(RootMode::Overlay);
        let r = root();
        assert_eq!(err(v.stat(b"/", b"/etc/passwd/", true)), Errno::ENOTDIR);
        assert_eq!(err(v.stat(b"/", b"/etc/passwd/x", true)), Errno::ENOTDIR);
        assert_eq!(err(v.stat(b"/", b"/etc/nope/x", true)), Errno::ENOENT);
        assert_eq!(err(v.stat(b"/", b"", true)), Errno::ENOENT);
        assert!(v.stat(b"/", b"/lib/", true).unwrap().is_dir());
        assert!(
            v.stat(b"/", b"/lib/", false).unwrap().is_dir(),
            "a trailing slash follows"
        );
        assert_eq!(
            err(v.open(b"/", b"/etc/passwd", RDONLY | libc::O_DIRECTORY, 0, &r)),
            Errno::ENOTDIR
        );
        assert_eq!(
            err(v.open(b"/", b"/etc", libc::O_WRONLY, 0, &r)),
            Errno::EISDIR
        );
        assert_eq!(err(v.open(b"/", b"/etc", CREAT, 0o644, &r)), Errno::EISDIR);
        assert_eq!(
            err(v.open(b"/", b"/etc/passwd", CREAT | libc::O_EXCL, 0o644, &r)),
            Errno::EEXIST
        );
        assert_eq!(
            err(v.open(b"/", b"/lib", RDONLY | libc::O_NOFOLLOW, 0, &r)),
            Errno::ELOOP
        );
        assert_eq!(
            err(v.open(b"/", b"/newdir/", CREAT, 0o644, &r)),
            Errno::EISDIR
        );
        assert_eq!(
            err(v.open(b"/", b"/etc/passwd/", CREAT, 0o644, &r)),
            Errno::EISDIR
        );
        assert_eq!(
            err(v.open(b"/", b"/nope/x/", CREAT, 0o644, &r)),
            Errno::ENOENT
        );
        assert_eq!(
            err(v.open(b"/", b"/etc/passwd/", RDONLY, 0, &r)),
            Errno::ENOTDIR
        );
        assert_eq!(err(v.open(b"/", b"/nope", RDONLY, 0, &r)), Errno::ENOENT);
        assert_eq!(
            err(v.open(b"/", b"/x", libc::O_TMPFILE | libc::O_RDWR, 0o600, &r)),
            Errno::ENOENT
        );
        // O_TMPFILE: an unnamed file in the directory.
        let t = v
            .open(b"/", b"/etc", libc::O_TMPFILE | libc::O_RDWR, 0o600, &r)
            .unwrap();
        assert_eq!(t.ops.write(b"tmp", Some(0)).unwrap(), 3);
        let st = t.ops.stat().unwrap();
        assert_eq!((st.st_nlink, st.st_mode), (0, libc::S_IFREG | 0o600));
        assert!(!ls(&v, "/etc").iter().any(|n| n.contains("tmpfile")));
        assert!(t.ops.proc_name().unwrap().starts_with("/etc/#"));
        assert_eq!(
            err(v.open(b"/", b"/etc", libc::O_TMPFILE | libc::O_RDONLY, 0o600, &r)),
            Errno::EINVAL
        );
        assert_eq!(
            err(v.open(
                b"/",
                b"/etc/passwd",
                libc::O_TMPFILE | libc::O_RDWR,
                0o600,
                &r
            )),
            Errno::ENOTDIR
        );
        let p = v
            .open(b"/", b"/lib", libc::O_PATH | libc::O_NOFOLLOW, 0, &r)
            .unwrap();
        assert_eq!(p.ops.stat().unwrap().file_type(), libc::S_IFLNK);
        assert_eq!(err(v.mkdir(b"/", b"/etc", 0o755, &r)), Errno::EEXIST);
        assert_eq!(err(v.mkdir(b"/", b"/dangling", 0o755, &r)), Errno::EEXIST);
        assert_eq!(err(v.mkdir(b"/", b"/etc/.", 0o755, &r)), Errno::EEXIST);
        assert_eq!(err(v.mkdir(b"/", b"/nope/x", 0o755, &r)), Errno::ENOENT);
        v.mkdir(b"/", b"/newdir/", 0o755, &r).unwrap();
        assert_eq!(err(v.rmdir(b"/", b"/etc", &r)), Errno::ENOTEMPTY);
        assert_eq!(err(v.rmdir(b"/", b"/etc/passwd", &r)), Errno::ENOTDIR);
        assert_eq!(err(v.rmdir(b"/", b"/etc/.", &r)), Errno::EINVAL);
        assert_eq!(err(v.rmdir(b"/", b"/lib/", &r)), Errno::ENOTDIR);
        assert_eq!(err(v.rmdir(b"/", b"/", &r)), Errno::EBUSY);
        assert_eq!(err(v.rmdir(b"/", b"/dev", &r)), Errno::EBUSY);
        assert_eq!(err(v.unlink(b"/", b"/etc", &r)), Errno::EISDIR);
        assert_eq!(err(v.unlink(b"/", b"/etc/passwd/", &r)), Errno::ENOTDIR);
        assert_eq!(
            err(v.rename(b"/", b"/etc", b"/", b"/etc/sub/x", 0, &r)),
            Errno::EINVAL
        );
        assert_eq!(
            err(v.rename(b"/", b"/etc/passwd", b"/", b"/dev/passwd", 0, &r)),
            Errno::EXDEV
        );
        assert_eq!(
            err(v.rename(b"/", b"/etc/passwd", b"/", b"/etc", 0, &r)),
            Errno::EISDIR
        );
        assert_eq!(
            err(v.rename(b"/", b"/empty", b"/", b"/etc/passwd", 0, &r)),
            Errno::ENOTDIR
        );
        assert_eq!(
            err(v.rename(b"/", b"/empty", b"/", b"/etc", 0, &r)),
            Errno::ENOTEMPTY
        );
        assert_eq!(
            err(v.rename(
                b"/",
                b"/etc/hosts",
                b"/",
                b"/etc/passwd",
                libc::RENAME_NOREPLACE,
                &r
            )),
            Errno::EEXIST
        );
        assert_eq!(
            err(v.rename(b"/", b"/nope", b"/", b"/x", 0, &r)),
            Errno::ENOENT
        );
        assert_eq!(
            err(v.link(b"/", b"/etc", b"/", b"/etc2", false, &r)),
            Errno::EPERM
        );
        assert_eq!(
            err(v.link(b"/", b"/etc/passwd", b"/", b"/etc/hosts", false, &r)),
            Errno::EEXIST
        );
        assert_eq!(err(v.symlink(b"", b"/", b"/s", &r)), Errno::ENOENT);
        assert_eq!(err(v.symlink(b"x", b"/", b"/etc", &r)), Errno::EEXIST);
        assert_eq!(err(v.readlink(b"/", b"/etc")), Errno::EINVAL);
        assert_eq!(v.readlink(b"/", b"/lib").unwrap(), b"usr/lib");
        assert_eq!(
            err(v.mknod(b"/", b"/null", libc::S_IFCHR | 0o666, 0x103, &r)),
            Errno::EPERM
        );
        assert_eq!(err(v.truncate(b"/", b"/etc", 0, &r)), Errno::EISDIR);
        // O_CREAT through a dangling symlink creates its target.
        v.symlink(b"/etc/created-via-link", b"/", b"/dl", &r)
            .unwrap();
        v.open(b"/", b"/dl", CREAT, 0o600, &r).unwrap();
        assert_eq!(
            v.stat(b"/", b"/etc/created-via-link", true)
                .unwrap()
                .st_mode,
            libc::S_IFREG | 0o600
        );
        assert_eq!(
            err(v.open(b"/", b"/dl", CREAT | libc::O_EXCL, 0o600, &r)),
            Errno::EEXIST
        );
    }

    #[test]
    fn overlay_changes_never_touch_the_host() {
        let fx = Fixture::new();
        let before = snapshot(fx.outer.path());
        let v = fx.vfs(RootMode::Overlay);
        let r = root();

        // Copy-up on write; the rest of the file is kept.
        let f = v.open(b"/", b"/etc/passwd", libc::O_WRONLY, 0, &r).unwrap();
        f.ops.write(b"ROOT", Some(0)).unwrap();
        assert_eq!(
            cat(&v, "/etc/passwd").unwrap(),
            b"ROOT:x:0:0:root:/root:/bin/sh\n"
        );
        // A big lower file copies up whole.
        let f = v.open(b"/", b"/lib/libc.so", RDWR, 0, &r).unwrap();
        f.ops.write(b"ELF", Some(9_997)).unwrap();
        let data = cat(&v, "/usr/lib/libc.so").unwrap();
        assert_eq!(data.len(), 10_000);
        assert_eq!(&data[9_997..], b"ELF");
        assert!(data[..9_997].iter().all(|&b| b == 0x7f));
        // O_TRUNC.
        let f = v
            .open(b"/", b"/etc/hosts", libc::O_WRONLY | libc::O_TRUNC, 0, &r)
            .unwrap();
        assert_eq!(f.ops.stat().unwrap().st_size, 0);
        f.ops.write(b"::1 localhost\n", Some(0)).unwrap();
        assert_eq!(cat(&v, "/etc/hosts").unwrap(), b"::1 localhost\n");

        // New nodes in lower directories; readdir merges.
        write_file(&v, "/etc/sub/new", b"new");
        v.mkdir(b"/", b"/etc/sub/newdir", 0o700, &r).unwrap();
        v.symlink(b"../passwd", b"/etc/sub", b"pl", &r).unwrap();
        v.mknod(b"/", b"/etc/fifo", libc::S_IFIFO | 0o644, 0, &r)
            .unwrap();
        assert_eq!(
            ls(&v, "/etc/sub"),
            [".", "..", "a", "b", "deeper", "new", "newdir", "pl"]
        );
        assert_eq!(
            cat(&v, "/etc/sub/pl").unwrap(),
            b"ROOT:x:0:0:root:/root:/bin/sh\n"
        );

        // unlink/rmdir leave whiteouts.
        v.unlink(b"/", b"/etc/sub/a", &r).unwrap();
        assert_eq!(err(v.stat(b"/", b"/etc/sub/a", false)), Errno::ENOENT);
        assert_eq!(
            ls(&v, "/etc/sub"),
            [".", "..", "b", "deeper", "new", "newdir", "pl"]
        );
        v.unlink(b"/", b"/etc/sub/deeper/c", &r).unwrap();
        v.rmdir(b"/", b"/etc/sub/deeper", &r).unwrap();
        assert_eq!(err(v.stat(b"/", b"/etc/sub/deeper", false)), Errno::ENOENT);
        v.mkdir(b"/", b"/etc/sub/deeper", 0o755, &r).unwrap();
        assert_eq!(
            ls(&v, "/etc/sub/deeper"),
            [".", ".."],
            "recreated directory is empty"
        );
        write_file(&v, "/etc/sub/a", b"again");
        assert_eq!(cat(&v, "/etc/sub/a").unwrap(), b"again");
        v.unlink(b"/", b"/lib", &r).unwrap();
        assert_eq!(err(v.stat(b"/", b"/lib", false)), Errno::ENOENT);
        v.rmdir(b"/", b"/empty", &r).unwrap();
        assert!(!ls(&v, "/").contains(&"empty".to_string()));

        // Renames across layers: files, over existing files, directories.
        v.rename(b"/", b"/etc/sub/b", b"/", b"/b-moved", 0, &r)
            .unwrap();
        assert_eq!(cat(&v, "/b-moved").unwrap(), b"BBBB");
        assert_eq!(err(v.stat(b"/", b"/etc/sub/b", false)), Errno::ENOENT);
        v.rename(b"/", b"/b-moved", b"/", b"/private", 0, &r)
            .unwrap();
        assert_eq!(cat(&v, "/private").unwrap(), b"BBBB");
        v.rename(b"/", b"/etc", b"/", b"/etc2", 0, &r).unwrap();
        assert_eq!(err(v.stat(b"/", b"/etc", false)), Errno::ENOENT);
        assert_eq!(
            ls(&v, "/etc2/sub"),
            [".", "..", "a", "deeper", "new", "newdir", "pl"]
        );
        assert_eq!(
            cat(&v, "/etc2/passwd").unwrap(),
            b"ROOT:x:0:0:root:/root:/bin/sh\n"
        );
        assert_eq!(cat(&v, "/etc2/sub/new").unwrap(), b"new");
        v.mkdir(b"/", b"/etc", 0o755, &r).unwrap();
        assert_eq!(ls(&v, "/etc"), [".", ".."]);
        v.rename(b"/", b"/etc2", b"/", b"/etc", 0, &r).unwrap();
        assert_eq!(cat(&v, "/etc/hosts").unwrap(), b"::1 localhost\n");
        v.rename(
            b"/",
            b"/etc/passwd",
            b"/",
            b"/etc/hosts",
            libc::RENAME_EXCHANGE,
            &r,
        )
        .unwrap();
        assert_eq!(
            cat(&v, "/etc/hosts").unwrap(),
            b"ROOT:x:0:0:root:/root:/bin/sh\n"
        );
        assert_eq!(cat(&v, "/etc/passwd").unwrap(), b"::1 localhost\n");

        // Attributes copy up.
        v.chmod(b"/", b"/script", 0o755, &r).unwrap();
        assert_eq!(
            v.stat(b"/", b"/script", true).unwrap().st_mode,
            libc::S_IFREG | 0o755
        );
        v.chown(b"/", b"/script", Some(1234), Some(99), true, &r)
            .unwrap();
        let st = v.stat(b"/", b"/script", true).unwrap();
        assert_eq!((st.st_uid, st.st_gid), (1234, 99));
        v.utimens(
            b"/",
            b"/usr",
            [Some((1, 0)), Some((1_000_000, 5))],
            true,
            &r,
        )
        .unwrap();
        let st = v.stat(b"/", b"/usr", true).unwrap();
        assert_eq!(
            (st.st_mtime, st.st_mtime_nsec, st.st_atime),
            (1_000_000, 5, 1)
        );
        v.utimens(b"/", b"/usr", [None, Some((2_000_000, 0))], true, &r)
            .unwrap();
        let st = v.stat(b"/", b"/usr", true).unwrap();
        assert_eq!(
            (st.st_mtime, st.st_atime),
            (2_000_000, 1),
            "None leaves atime alone"
        );
        assert_eq!(
            v.statfs(b"/", b"/usr").unwrap().f_type,
            super::super::overlay::OVERLAYFS_SUPER_MAGIC
        );
        v.truncate(b"/", b"/usr/lib/libc.so", 3, &r).unwrap();
        assert_eq!(cat(&v, "/usr/lib/libc.so").unwrap(), [0x7f; 3]);

        // Hard links within the upper layer share data.
        v.link(b"/", b"/script", b"/", b"/script-link", false, &r)
            .unwrap();
        assert_eq!(v.stat(b"/", b"/script-link", true).unwrap().st_nlink, 2);
        let f = v.open(b"/", b"/script-link", RDWR, 0, &r).unwrap();
        f.ops.write(b"#!/bin/bash", Some(0)).unwrap();
        assert_eq!(cat(&v, "/script").unwrap(), b"#!/bin/bash");

        // The root lists mount points and new entries, never whiteouts.
        let top = ls(&v, "/");
        for want in ["dev", "b-moved", "private", "script-link", "etc"] {
            assert_eq!(
                top.contains(&want.to_string()),
                want != "b-moved",
                "{want}: {top:?}"
            );
        }
        assert!(!top.contains(&"lib".to_string()));

        assert_eq!(before, snapshot(fx.outer.path()), "the host tree changed");
    }

    #[test]
    #[allow(unsafe_code)] // maps the memfd to check coherence; see the SAFETY comments
    fn overlay_mmap_source_is_coherent() {
        let fx = Fixture::new();
        let v = fx.vfs(RootMode::Overlay);
        // Read-only lower file: copied.
        let ro = v.open(b"/", b"/etc/passwd", RDONLY, 0, &root()).unwrap();
        assert!(matches!(ro.ops.mmap_source().unwrap(), MmapSource::Copy));
        // Opened for writing: copied up into a memfd-backed tmpfs file.
        let f = v.open(b"/", b"/etc/passwd", RDWR, 0, &root()).unwrap();
        let MmapSource::HostFd(fd) = f.ops.mmap_source().unwrap() else {
            panic!("expected a host fd")
        };
        let len = std::num::NonZeroUsize::new(4096).unwrap();
        // SAFETY: a fresh shared mapping of a memfd we own, unmapped below;
        // nothing else aliases it.
        let map = unsafe {
            nix::sys::mman::mmap(
                None,
                len,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_SHARED,
                &*fd,
                0,
            )
        }
        .unwrap();
        let ptr = map.as_ptr().cast::<u8>();
        // SAFETY: `ptr` points to a live 4096-byte mapping; the file is
        // longer than 4 bytes so these pages are backed.
        let view = |n: usize| unsafe { std::slice::from_raw_parts(ptr, n).to_vec() };
        assert_eq!(view(4), b"root");
        f.ops.write(b"toor", Some(0)).unwrap();
        assert_eq!(view(4), b"toor", "write is visible in the shared mapping");
        // SAFETY: in bounds of the live mapping (see above).
        unsafe { ptr.add(1).write(b'X') };
        let mut b = [0u8; 4];
        f.ops.read(&mut b, Some(0)).unwrap();
        assert_eq!(
            &b, b"tXor",
            "a store through the mapping is visible to read"
        );
        // SAFETY: unmapping the mapping made above, no longer used.
        unsafe { nix::sys::mman::munmap(map, 4096) }.unwrap();
    }

    #[test]
    fn tmpfs_mount_size_limit() {
        let fx = Fixture::new();
        let v = fx.vfs(RootMode::ReadOnly);
        v.mount_tmpfs(b"/tmp", Some(16 * 1024));
        let st = v.stat(b"/", b"/tmp", true).unwrap();
        assert_eq!(st.st_mode, libc::S_IFDIR | 0o1777);
        assert_ne!(st.st_dev, v.stat(b"/", b"/etc", true).unwrap().st_dev);
        assert_ne!(st.st_dev, v.stat(b"/", b"/dev/shm", true).unwrap().st_dev);
        let f = v.open(b"/", b"/tmp/big", CREAT, 0o644, &user()).unwrap();
        assert_eq!(f.ops.stat().unwrap().st_uid, 1000);
        assert_eq!(f.ops.write(&[1u8; 16 * 1024], Some(0)).unwrap(), 16 * 1024);
        assert_eq!(err(f.ops.write(b"x", Some(16 * 1024))), Errno::ENOSPC);
        let sf = v.statfs(b"/", b"/tmp").unwrap();
        assert_eq!(
            (sf.f_type, sf.f_blocks, sf.f_bfree),
            (super::super::tmpfs::TMPFS_MAGIC, 4, 0)
        );
        drop(f);
        v.unlink(b"/", b"/tmp/big", &user()).unwrap();
        write_file(&v, "/tmp/ok", b"fits again");
        assert_eq!(
            err(v.rename(b"/", b"/tmp/ok", b"/", b"/dev/shm/ok", 0, &root())),
            Errno::EXDEV
        );
        // /dev/shm is writable (Python's multiprocessing needs it).
        write_file(&v, "/dev/shm/sem.x", b"1");
        assert!(ls(&v, "/dev").contains(&"shm".to_string()));
        assert!(ls(&v, "/").contains(&"tmp".to_string()));
        let m = v.mounts();
        let at: Vec<&[u8]> = m.iter().map(|m| m.path.as_slice()).collect();
        assert_eq!(at, [&b"/"[..], b"/dev", b"/tmp", b"/dev/shm"]);
        assert_eq!((m[0].fs_type, m[0].read_only), ("rootfs", true));
        assert_eq!(m[2].fs_type, "tmpfs");
        // Not over a non-empty directory, nor twice.
        assert!(!v.mount_tmpfs_if_empty(b"/etc", None));
        assert!(!v.mount_tmpfs_if_empty(b"/tmp", None));
        assert!(v.mount_tmpfs_if_empty(b"/empty", None));
        assert!(v.mount_tmpfs_if_empty(b"/not-there", None));
        assert_eq!(
            v.stat(b"/", b"/empty", true).unwrap().st_mode,
            libc::S_IFDIR | 0o1777
        );
    }

    #[test]
    fn read_only_root_gives_erofs() {
        let fx = Fixture::new();
        let before = snapshot(fx.outer.path());
        let v = fx.vfs(RootMode::ReadOnly);
        let r = root();
        assert_eq!(
            cat(&v, "/etc/passwd").unwrap(),
            b"root:x:0:0:root:/root:/bin/sh\n"
        );
        assert_eq!(err(v.open(b"/", b"/etc/passwd", RDWR, 0, &r)), Errno::EROFS);
        assert_eq!(
            err(v.open(b"/", b"/etc/passwd", RDONLY | libc::O_TRUNC, 0, &r)),
            Errno::EROFS
        );
        assert_eq!(
            err(v.open(b"/", b"/etc/new", CREAT, 0o644, &r)),
            Errno::EROFS
        );
        assert_eq!(err(v.mkdir(b"/", b"/d", 0o755, &r)), Errno::EROFS);
        assert_eq!(err(v.unlink(b"/", b"/etc/passwd", &r)), Errno::EROFS);
        assert_eq!(err(v.rmdir(b"/", b"/empty", &r)), Errno::EROFS);
        assert_eq!(
            err(v.rename(b"/", b"/etc/passwd", b"/", b"/p", 0, &r)),
            Errno::EROFS
        );
        assert_eq!(err(v.symlink(b"x", b"/", b"/s", &r)), Errno::EROFS);
        assert_eq!(
            err(v.link(b"/", b"/etc/passwd", b"/", b"/l", false, &r)),
            Errno::EROFS
        );
        assert_eq!(err(v.chmod(b"/", b"/etc/passwd", 0o777, &r)), Errno::EROFS);
        assert_eq!(
            err(v.chown(b"/", b"/etc/passwd", Some(1), None, true, &r)),
            Errno::EROFS
        );
        assert_eq!(
            err(v.utimens(b"/", b"/etc/passwd", [None, Some((0, UTIME_NOW))], true, &r)),
            Errno::EROFS
        );
        assert_eq!(err(v.truncate(b"/", b"/etc/passwd", 0, &r)), Errno::EROFS);
        assert_eq!(
            err(v.access(b"/", b"/etc/passwd", libc::W_OK, true, &r)),
            Errno::EROFS
        );
        assert_eq!(
            err(v.mknod(b"/", b"/fifo", libc::S_IFIFO | 0o600, 0, &r)),
            Errno::EROFS
        );
        assert!(v.statfs(b"/", b"/").unwrap().f_flags & libc::ST_RDONLY as i64 != 0);
        // /dev still works.
        let null = v.open(b"/", b"/dev/null", RDWR, 0, &r).unwrap();
        assert_eq!(null.ops.write(b"gone", Some(0)).unwrap(), 4);
        assert_eq!(before, snapshot(fx.outer.path()));
    }

    #[test]
    fn direct_mode_writes_the_host() {
        let fx = Fixture::new();
        let v = fx.vfs(RootMode::Direct);
        let r = root();
        write_file(&v, "/etc/new", b"direct");
        assert_eq!(std::fs::read(fx.root().join("etc/new")).unwrap(), b"direct");
        v.mkdir(b"/", b"/etc/d", 0o750, &r).unwrap();
        v.rename(b"/", b"/etc/new", b"/", b"/etc/d/moved", 0, &r)
            .unwrap();
        assert_eq!(
            std::fs::read(fx.root().join("etc/d/moved")).unwrap(),
            b"direct"
        );
        v.chmod(b"/", b"/etc/d/moved", 0o640, &r).unwrap();
        assert_eq!(
            std::fs::metadata(fx.root().join("etc/d/moved"))
                .unwrap()
                .mode()
                & 0o7777,
            0o640
        );
        v.truncate(b"/", b"/etc/d/moved", 2, &r).unwrap();
        assert_eq!(std::fs::read(fx.root().join("etc/d/moved")).unwrap(), b"di");
        v.utimens(
            b"/",
            b"/etc/d/moved",
            [Some((5, 0)), Some((7, 0))],
            true,
            &r,
        )
        .unwrap();
        assert_eq!(
            std::fs::metadata(fx.root().join("etc/d/moved"))
                .unwrap()
                .mtime(),
            7
        );
        v.link(b"/", b"/etc/d/moved", b"/", b"/etc/d/hard", false, &r)
            .unwrap();
        assert_eq!(v.stat(b"/", b"/etc/d/hard", true).unwrap().st_nlink, 2);
        v.unlink(b"/", b"/etc/d/hard", &r).unwrap();
        v.unlink(b"/", b"/etc/d/moved", &r).unwrap();
        v.rmdir(b"/", b"/etc/d", &r).unwrap();
        assert!(!fx.root().join("etc/d").exists());
        v.symlink(b"passwd", b"/etc", b"pw", &r).unwrap();
        assert_eq!(
            std::fs::read_link(fx.root().join("etc/pw")).unwrap(),
            Path::new("passwd")
        );
        // A writable host file maps shared through its own fd.
        let f = v.open(b"/", b"/etc/passwd", RDWR, 0, &r).unwrap();
        assert!(matches!(
            f.ops.mmap_source().unwrap(),
            MmapSource::HostFd(_)
        ));
        assert_eq!(
            v.stat(b"/", b"/etc/passwd", true).unwrap().st_dev,
            f.ops.stat().unwrap().st_dev
        );
    }

    #[test]
    fn permissions_for_non_root() {
        let fx = Fixture::new();
        let v = fx.vfs(RootMode::Overlay);
        let u = user();
        let r = root();
        assert_eq!(err(v.open(b"/", b"/private", RDONLY, 0, &u)), Errno::EACCES);
        assert!(v.open(b"/", b"/private", RDONLY, 0, &r).is_ok());
        assert_eq!(
            err(v.open(b"/", b"/etc/passwd", RDWR, 0, &u)),
            Errno::EACCES
        );
        assert_eq!(
            err(v.access(b"/", b"/etc/passwd", libc::W_OK, true, &u)),
            Errno::EACCES
        );
        assert!(v.access(b"/", b"/etc/passwd", libc::R_OK, true, &u).is_ok());
        // Root needs some x bit to execute, not to read or write.
        assert_eq!(
            err(v.access(b"/", b"/script", libc::X_OK, true, &r)),
            Errno::EACCES
        );
        assert!(
            v.access(b"/", b"/script", libc::R_OK | libc::W_OK, true, &r)
                .is_ok()
        );
        assert!(v.access(b"/", b"/etc", libc::X_OK, true, &r).is_ok());
        // Creating in a root-owned 0755 directory.
        assert_eq!(
            err(v.open(b"/", b"/etc/mine", CREAT, 0o644, &u)),
            Errno::EACCES
        );
        assert_eq!(err(v.mkdir(b"/", b"/etc/mine", 0o755, &u)), Errno::EACCES);
        assert_eq!(err(v.unlink(b"/", b"/etc/passwd", &u)), Errno::EACCES);
        assert_eq!(err(v.chmod(b"/", b"/etc/passwd", 0o777, &u)), Errno::EPERM);
        assert_eq!(
            err(v.chown(b"/", b"/etc/passwd", Some(1000), None, true, &u)),
            Errno::EPERM
        );
        assert_eq!(
            err(v.utimens(b"/", b"/etc/passwd", [Some((1, 0)), Some((1, 0))], true, &u)),
            Errno::EPERM
        );
        assert_eq!(
            err(v.utimens(b"/", b"/etc/passwd", [Some((0, UTIME_NOW)); 2], true, &u)),
            Errno::EACCES
        );
        // A directory the user owns, then one without search permission.
        v.mkdir(b"/", b"/home", 0o755, &r).unwrap();
        v.chown(b"/", b"/home", Some(1000), Some(1000), true, &r)
            .unwrap();
        v.mkdir(b"/", b"/home/u", 0o700, &u).unwrap();
        write_file(&v, "/home/u/f", b"data");
        v.chown(b"/", b"/home/u/f", Some(1000), Some(1000), true, &r)
            .unwrap();
        assert_eq!(v.stat(b"/", b"/home/u", true).unwrap().st_uid, 1000);
        assert!(v.open(b"/", b"/home/u/f", RDWR, 0, &u).is_ok());
        v.chmod(b"/", b"/home/u", 0o600, &u).unwrap();
        assert_eq!(
            err(v.open(b"/", b"/home/u/f", RDONLY, 0, &u)),
            Errno::EACCES
        );
        let other = Creds {
            uid: 2000,
            gid: 2000,
            groups: vec![1000],
        };
        v.chmod(b"/", b"/home/u", 0o750, &u).unwrap();
        assert!(
            v.open(b"/", b"/home/u/f", RDONLY, 0, &other).is_ok(),
            "group member via supplementary group"
        );
        // setgid directories pass their group on.
        v.chmod(b"/", b"/home/u", 0o2777, &u).unwrap();
        v.mkdir(b"/", b"/home/u/sub", 0o755, &other).unwrap();
        let st = v.stat(b"/", b"/home/u/sub", true).unwrap();
        assert_eq!((st.st_uid, st.st_gid), (2000, 1000));
        assert!(st.st_mode & libc::S_ISGID != 0);
    }

    struct FakeProc {
        file: Arc<OpenFile>,
        pipe: Arc<OpenFile>,
    }

    impl SyntheticFs for FakeProc {
        fn stat(&self, rel: &[u8]) -> KResult<Stat> {
            let mode = match rel {
                b"" | b"self" | b"self/fd" => libc::S_IFDIR | 0o555,
                b"self/fd/0" | b"self/fd/1" => libc::S_IFLNK | 0o777,
                _ => return Err(Errno::ENOENT),
            };
            Ok(Stat {
                st_mode: mode,
                st_ino: rel.len() as u64 + 1,
                ..Stat::default()
            })
        }
        fn readlink(&self, rel: &[u8]) -> KResult<Vec<u8>> {
            match rel {
                b"self/fd/0" => Ok(self.file.path.clone()),
                b"self/fd/1" => Ok(b"pipe:[42]".to_vec()),
                _ => Err(Errno::EINVAL),
            }
        }
        fn open(&self, _rel: &[u8], _flags: i32) -> KResult<Box<dyn FileOps>> {
            Err(Errno::EACCES)
        }
        fn readdir(&self, rel: &[u8]) -> KResult<Vec<DirEntry>> {
            match rel {
                b"" => Ok(vec![DirEntry {
                    ino: 5,
                    kind: libc::DT_DIR,
                    name: b"self".to_vec(),
                }]),
                _ => Ok(vec![]),
            }
        }
        fn magic_link(&self, rel: &[u8]) -> Option<Arc<OpenFile>> {
            match rel {
                b"self/fd/0" => Some(self.file.clone()),
                b"self/fd/1" => Some(self.pipe.clone()),
                _ => None,
            }
        }
        fn fs_magic(&self) -> i64 {
            0x9fa0
        }
    }

    #[test]
    fn devfs_and_magic_links() {
        let fx = Fixture::new();
        let v = Arc::new(fx.vfs(RootMode::Overlay));
        let file = v.open(b"/", b"/etc/hosts", RDONLY, 0, &root()).unwrap();
        let pipe = OpenFile::new(
            Box::new(DirFile::new(
                || Ok(vec![]),
                || {
                    Ok(Stat {
                        st_ino: 4242,
                        ..Stat::default()
                    })
                },
            )),
            RDONLY,
            vec![],
        );
        v.mount(
            b"/proc",
            Arc::new(FakeProc {
                file,
                pipe: pipe.clone(),
            }),
        );
        assert_eq!(ls(&v, "/proc"), [".", "..", "self"]);
        assert_eq!(v.statfs(b"/", b"/proc/self").unwrap().f_type, 0x9fa0);
        // /dev/stdin -> /proc/self/fd/0 -> a file with a path: reopened.
        assert_eq!(cat(&v, "/dev/stdin").unwrap(), b"127.0.0.1 localhost\n");
        assert_eq!(v.resolve(b"/", b"/dev/stdin", true).unwrap(), b"/etc/hosts");
        assert_eq!(v.readlink(b"/", b"/dev/stdin").unwrap(), b"/proc/self/fd/0");
        // /dev/stdout -> a pathless file: the description itself.
        let o = v
            .open(b"/", b"/dev/stdout", libc::O_WRONLY, 0, &root())
            .unwrap();
        assert!(Arc::ptr_eq(&o, &pipe));
        assert_eq!(v.stat(b"/", b"/dev/stdout", true).unwrap().st_ino, 4242);
        assert_eq!(
            v.stat(b"/", b"/dev/null", true).unwrap().st_rdev,
            libc::makedev(1, 3)
        );
        assert_eq!(
            err(v.open(b"/", b"/dev/newfile", CREAT, 0o644, &root())),
            Errno::EACCES
        );
        let devs = ls(&v, "/dev");
        for d in [
            "null", "zero", "full", "random", "urandom", "tty", "fd", "stdin", "stdout", "stderr",
            "shm", "pts",
        ] {
            assert!(devs.contains(&d.to_string()), "{d}");
        }
        assert!(ls(&v, "/").contains(&"proc".to_string()));
    }

    #[test]
    fn fifo_through_the_vfs() {
        let fx = Fixture::new();
        let v = fx.vfs(RootMode::Overlay);
        v.mknod(b"/", b"/etc/fifo", libc::S_IFIFO | 0o666, 0, &root())
            .unwrap();
        assert_eq!(
            v.stat(b"/", b"/etc/fifo", true).unwrap().file_type(),
            libc::S_IFIFO
        );
        let r = v
            .open(b"/", b"/etc/fifo", RDONLY | libc::O_NONBLOCK, 0, &root())
            .unwrap();
        let w = v
            .open(b"/", b"/etc/fifo", libc::O_WRONLY, 0, &root())
            .unwrap();
        assert_eq!(w.ops.write(b"ping", None).unwrap(), 4);
        let mut b = [0u8; 8];
        assert_eq!(r.ops.read(&mut b, None).unwrap(), 4);
        assert!(r.ops.wait_queue().is_some());
        drop(w);
        assert_eq!(
            r.ops.read(&mut b, None).unwrap(),
            0,
            "EOF once the writer is gone"
        );
        v.mknod(b"/", b"/sock", libc::S_IFSOCK | 0o755, 0, &root())
            .unwrap();
        assert_eq!(
            err(v.open(b"/", b"/sock", RDONLY, 0, &root())),
            Errno::ENXIO
        );
    }

    #[test]
    fn concurrent_use_from_threads() {
        let fx = Fixture::new();
        let v = Arc::new(fx.vfs(RootMode::Overlay));
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let v = v.clone();
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let p = format!("/etc/t{t}-{i}");
                        write_file(&v, &p, p.as_bytes());
                        assert_eq!(cat(&v, &p).unwrap(), p.as_bytes());
                        let q = format!("/usr/t{t}-{i}");
                        v.rename(b"/", p.as_bytes(), b"/", q.as_bytes(), 0, &root())
                            .unwrap();
                        v.unlink(b"/", q.as_bytes(), &root()).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(ls(&v, "/usr"), [".", "..", "lib"]);
    }
}
