//! Checkpoint and restore of the file namespace.
//!
//! [`Vfs::save`] turns a namespace into a [`VfsState`] (serde, postcard
//! friendly): the root mode and host root path, the mount table with every
//! filesystem instance once (aliases of one instance stay shared), and the
//! whole in-memory state: each tmpfs (and the overlay's upper layer) as an
//! inode table — directories with their entries, whiteouts and opaque
//! markers, regular files with their data (holes stay holes), symlinks,
//! FIFOs with their buffered bytes, owners, modes, times, inode numbers and
//! link counts — hard links share one inode, and inodes that are unlinked
//! but still open are kept too. Host directories are not saved: they are
//! reopened by path, and their identity (`st_dev`, `st_ino`) is checked so
//! that restoring over a host root or bind source that is gone or was
//! replaced fails with a [`RestoreError`] saying which. devfs and sysfs are
//! recreated with their device numbers; procfs belongs to the kernel, which
//! re-attaches it with [`Vfs::attach_procfs`].
//!
//! Open files: [`describe`] says what is behind an open file description
//! as a [`FileDesc`] (a tmpfs inode by its stable serial, a host file by
//! path with its size and mtime, a directory or device by path...), and
//! [`Vfs::reopen`] makes a new description of the same file in the
//! restored namespace. The caller saves and restores the position.
//!
//! Restoring pins the tmpfs inodes that were unlinked but open, so that
//! the descriptions can be reopened; [`Vfs::release_restore_pins`] lets go
//! of them once every description is back.

use super::dev::{CharDev, DevFs};
use super::file::{DirEntry, FileOps, Named, OpenFile, Stat};
use super::host::{HostFile, HostFileMount, HostFs};
use super::lock::LockTable;
use super::overlay::Overlay;
use super::path;
use super::sysfs::{SysFs, Text};
use super::tmpfs::{
    DirData, Entry, FifoEnd, FileData, FileState, Inode, Kind, Meta, Space, TmpFile, Tmpfs,
    new_memfd,
};
use super::vfs::{
    Creds, DirFile, Mount, MountFs, PathFile, ReadOnlyMount, RootMode, Synth, SyntheticFs,
    Timestamp, Vfs, reserve_dev, reserve_mount_id,
};
use crate::errno::{Errno, KResult};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------
// The saved state.

/// The saved file namespace (see the module docs). Plain data: serialize
/// it with postcard (or any serde format) beside the kernel's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VfsState {
    root_mode: RootMode,
    /// The host root directory's path (bytes of a host path).
    host_root: Vec<u8>,
    /// The host root's `(st_dev, st_ino)` on the host.
    host_root_id: (u64, u64),
    /// Every filesystem instance, once.
    filesystems: Vec<FsState>,
    /// The mount table in lookup order (longest mount point first).
    mounts: Vec<MountState>,
    /// The holder of anonymous files (memfd_create).
    anon: TmpfsState,
}

/// One saved filesystem instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum FsState {
    /// The host root directory (`st_dev` shown for it), with the overlay's
    /// upper layer in Overlay mode.
    Root { dev: u64, upper: Option<TmpfsState> },
    /// A tmpfs.
    Tmpfs(TmpfsState),
    /// A bind mount of a host directory.
    BindDir {
        host: Vec<u8>,
        id: (u64, u64),
        writable: bool,
        dev: u64,
    },
    /// A bind mount of a host file.
    BindFile {
        host: Vec<u8>,
        id: (u64, u64),
        writable: bool,
        dev: u64,
    },
    /// devfs.
    DevFs { dev: u64, time: Timestamp },
    /// sysfs.
    SysFs { dev: u64 },
    /// procfs: re-attached by the kernel ([`Vfs::attach_procfs`]).
    ProcFs,
}

/// One saved mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct MountState {
    at: Vec<u8>,
    id: u64,
    /// Index into `VfsState::filesystems`.
    fs: u32,
    /// Mounted through the read-only wrapper.
    read_only: bool,
    source: String,
    data: String,
}

/// A saved tmpfs: its inode table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct TmpfsState {
    dev: u64,
    limit: Option<u64>,
    next_ino: u64,
    next_serial: u64,
    /// Serial of the root directory.
    root: u64,
    inodes: Vec<InodeState>,
}

/// A saved tmpfs inode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct InodeState {
    serial: u64,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    rdev: u64,
    atime: Timestamp,
    mtime: Timestamp,
    ctime: Timestamp,
    node: NodeState,
}

/// What a saved inode holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum NodeState {
    /// Entries by name: `Some(serial)` of a node, `None` for a whiteout.
    Dir {
        opaque: bool,
        entries: Vec<(Vec<u8>, Option<u64>)>,
    },
    /// Size and the data ranges (offset, bytes); the rest are holes.
    File {
        size: u64,
        extents: Vec<(u64, Vec<u8>)>,
    },
    /// Target.
    Symlink(Vec<u8>),
    /// Bytes buffered in the FIFO.
    Fifo(Vec<u8>),
    /// Socket or device node.
    Other,
}

impl VfsState {
    /// How the host directory was the root.
    pub fn root_mode(&self) -> RootMode {
        self.root_mode
    }

    /// The host root directory the namespace was built over.
    pub fn host_root(&self) -> PathBuf {
        PathBuf::from(std::ffi::OsString::from_vec(self.host_root.clone()))
    }

    /// The procfs mount points (absolute path, mounted read-only), which
    /// [`Vfs::restore`] leaves out and [`Vfs::attach_procfs`] fills.
    pub fn procfs_mounts(&self) -> Vec<(Vec<u8>, bool)> {
        self.mounts
            .iter()
            .filter(|m| matches!(self.filesystems.get(m.fs as usize), Some(FsState::ProcFs)))
            .map(|m| (m.at.clone(), m.read_only))
            .collect()
    }
}

/// Why a saved namespace could not be restored. [`Vfs::restore`] returns
/// it inside an [`io::Error`] (`get_ref()` and downcast to read it).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The host root directory cannot be opened.
    #[error("host root {path:?} is gone: {source}")]
    HostRootMissing {
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The host root directory is not the one the checkpoint was taken
    /// over (another directory is at its path).
    #[error(
        "host root {path:?} was replaced: saved (dev {:#x}, ino {}), found (dev {:#x}, ino {})",
        saved.0, saved.1, found.0, found.1
    )]
    HostRootReplaced {
        /// The path given.
        path: PathBuf,
        /// `(st_dev, st_ino)` at checkpoint.
        saved: (u64, u64),
        /// `(st_dev, st_ino)` now.
        found: (u64, u64),
    },
    /// A bind mount's host source cannot be opened.
    #[error("bind mount source {path:?} (at {at}) is gone: {source}")]
    BindSourceMissing {
        /// Host path.
        path: PathBuf,
        /// Mount point in the sandbox.
        at: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A bind mount's host source is not the one the checkpoint saw.
    #[error(
        "bind mount source {path:?} (at {at}) was replaced: saved (dev {:#x}, ino {}), found (dev {:#x}, ino {})",
        saved.0, saved.1, found.0, found.1
    )]
    BindSourceReplaced {
        /// Host path.
        path: PathBuf,
        /// Mount point in the sandbox.
        at: String,
        /// `(st_dev, st_ino)` at checkpoint.
        saved: (u64, u64),
        /// `(st_dev, st_ino)` now.
        found: (u64, u64),
    },
    /// The state contradicts itself (a damaged or forged statefile).
    #[error("inconsistent file namespace state: {0}")]
    Corrupt(String),
    /// Recreating an object failed on the host.
    #[error("restoring {what}: {errno:?}")]
    Host {
        /// What was being recreated.
        what: String,
        /// The host's error.
        errno: Errno,
    },
}

impl From<RestoreError> for io::Error {
    fn from(e: RestoreError) -> io::Error {
        let kind = match &e {
            RestoreError::HostRootMissing { source, .. }
            | RestoreError::BindSourceMissing { source, .. } => source.kind(),
            RestoreError::HostRootReplaced { .. } | RestoreError::BindSourceReplaced { .. } => {
                io::ErrorKind::StaleNetworkFileHandle
            }
            RestoreError::Corrupt(_) => io::ErrorKind::InvalidData,
            RestoreError::Host { .. } => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

fn corrupt(msg: impl Into<String>) -> RestoreError {
    RestoreError::Corrupt(msg.into())
}

// ---------------------------------------------------------------------
// Open files.

/// What is behind an open file description, enough to open the same file
/// again in a restored namespace ([`Vfs::reopen`]). Made by [`describe`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDesc {
    /// The description's sandbox path (may be empty).
    path: Vec<u8>,
    what: FileSnapshot,
}

/// The file itself, without the description's flags and position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum FileSnapshot {
    /// A tmpfs regular file: the tmpfs's `st_dev` and the inode's serial.
    Tmpfs { dev: u64, serial: u64 },
    /// An end of a tmpfs FIFO.
    Fifo {
        dev: u64,
        serial: u64,
        read: bool,
        write: bool,
        peer_seen: bool,
    },
    /// A host regular file, reopened by path and checked against these.
    Host {
        dev: u64,
        ino: u64,
        size: i64,
        mtime: Timestamp,
    },
    /// A directory, reopened by path (if it is gone: an empty, deleted
    /// directory).
    Dir { stat: SavedStat },
    /// An `O_PATH` descriptor, reopened by path.
    OPath,
    /// A devfs device, reopened by path and checked by device number.
    Device { rdev: u64 },
    /// A sysfs file, reopened by path.
    SysFile,
    /// A file shown under a fixed name (memfd, O_TMPFILE).
    Named {
        name: String,
        inner: Box<FileSnapshot>,
    },
}

/// The parts of a `Stat` a deleted directory's stand-in shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct SavedStat {
    dev: u64,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    atime: Timestamp,
    mtime: Timestamp,
    ctime: Timestamp,
}

impl FileSnapshot {
    /// Whether reopening goes through the description's path.
    fn by_path(&self) -> bool {
        match self {
            FileSnapshot::Tmpfs { .. } | FileSnapshot::Fifo { .. } => false,
            FileSnapshot::Named { inner, .. } => inner.by_path(),
            _ => true,
        }
    }
}

/// Describes the file behind `file` for a checkpoint, or None if this kind
/// of file cannot be reopened by the VFS (pipes, sockets, host streams,
/// procfs files and the like are the caller's). The description's flags
/// and position are not part of it.
pub fn describe(file: &OpenFile) -> Option<FileDesc> {
    let what = describe_ops(file.ops.as_ref())?;
    if what.by_path() && file.path.first() != Some(&b'/') {
        return None;
    }
    Some(FileDesc {
        path: file.path.clone(),
        what,
    })
}

fn describe_ops(ops: &dyn FileOps) -> Option<FileSnapshot> {
    let any = ops.as_any();
    if let Some(f) = any.downcast_ref::<TmpFile>() {
        return Some(FileSnapshot::Tmpfs {
            dev: f.node.dev,
            serial: f.node.serial,
        });
    }
    if let Some(f) = any.downcast_ref::<FifoEnd>() {
        return Some(FileSnapshot::Fifo {
            dev: f.node.dev,
            serial: f.node.serial,
            read: f.read,
            write: f.write,
            peer_seen: f.peer_seen_now(),
        });
    }
    if let Some(f) = any.downcast_ref::<HostFile>() {
        let st = f.stat().ok()?;
        return Some(FileSnapshot::Host {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
        });
    }
    if let Some(f) = any.downcast_ref::<DirFile>() {
        let st = f.stat().ok()?;
        return Some(FileSnapshot::Dir {
            stat: SavedStat {
                dev: st.st_dev,
                ino: st.st_ino,
                mode: st.st_mode,
                uid: st.st_uid,
                gid: st.st_gid,
                atime: (st.st_atime, st.st_atime_nsec),
                mtime: (st.st_mtime, st.st_mtime_nsec),
                ctime: (st.st_ctime, st.st_ctime_nsec),
            },
        });
    }
    if any.downcast_ref::<PathFile>().is_some() {
        return Some(FileSnapshot::OPath);
    }
    if let Some(f) = any.downcast_ref::<CharDev>() {
        return Some(FileSnapshot::Device {
            rdev: f.stat().ok()?.st_rdev,
        });
    }
    if any.downcast_ref::<Text>().is_some() {
        return Some(FileSnapshot::SysFile);
    }
    if let Some(f) = any.downcast_ref::<Named>() {
        return Some(FileSnapshot::Named {
            name: f.name().to_string(),
            inner: Box::new(describe_ops(f.inner())?),
        });
    }
    None
}

/// Handed to the tmpfs of a restored namespace: its inodes by serial, and
/// the unlinked ones held until [`Vfs::release_restore_pins`].
pub(super) struct RestoreIndex {
    by_serial: HashMap<u64, Weak<Inode>>,
    /// Only held (the unlinked inodes).
    _pins: Vec<Arc<Inode>>,
}

// ---------------------------------------------------------------------
// Saving.

/// The filesystem below a read-only wrapper.
fn unwrap_ro(fs: &Arc<dyn MountFs>) -> (&Arc<dyn MountFs>, bool) {
    match fs.as_any().downcast_ref::<ReadOnlyMount>() {
        Some(ro) => (&ro.0, true),
        None => (fs, false),
    }
}

/// Identity of a filesystem instance (for sharing between mounts).
fn fs_key(fs: &Arc<dyn MountFs>) -> usize {
    if let Some(s) = fs.as_any().downcast_ref::<Synth>() {
        return Arc::as_ptr(&s.0) as *const () as usize;
    }
    Arc::as_ptr(fs) as *const () as usize
}

fn save_fs(fs: &Arc<dyn MountFs>, at: &[u8], mode: RootMode) -> KResult<FsState> {
    let any = fs.as_any();
    if let Some(ov) = any.downcast_ref::<Overlay>() {
        return Ok(FsState::Root {
            dev: ov.lower().dev(),
            upper: Some(save_tmpfs(ov.upper())?),
        });
    }
    if let Some(t) = any.downcast_ref::<Tmpfs>() {
        return Ok(FsState::Tmpfs(save_tmpfs(t)?));
    }
    if let Some(h) = any.downcast_ref::<HostFs>() {
        if h.fs_type() == "rootfs" && at == b"/" && mode != RootMode::Overlay {
            return Ok(FsState::Root {
                dev: h.dev(),
                upper: None,
            });
        }
        return Ok(FsState::BindDir {
            host: h.host_path().as_os_str().as_bytes().to_vec(),
            id: h.host_id(b"")?,
            writable: h.writable(),
            dev: h.dev(),
        });
    }
    if let Some(h) = any.downcast_ref::<HostFileMount>() {
        return Ok(FsState::BindFile {
            host: h.host_path().as_os_str().as_bytes().to_vec(),
            id: h.host_id()?,
            writable: !h.read_only(),
            dev: h.lstat(b"")?.st_dev,
        });
    }
    if let Some(s) = any.downcast_ref::<Synth>() {
        let sany = s.0.as_any();
        if let Some(d) = sany.downcast_ref::<DevFs>() {
            return Ok(FsState::DevFs {
                dev: d.dev,
                time: d.time,
            });
        }
        if let Some(d) = sany.downcast_ref::<SysFs>() {
            return Ok(FsState::SysFs { dev: d.dev });
        }
        if s.0.fs_name() == "proc" {
            return Ok(FsState::ProcFs);
        }
    }
    tracing::warn!(
        "checkpoint: cannot save the {} mount at {}",
        fs.fs_type(),
        String::from_utf8_lossy(at)
    );
    Err(Errno::EOPNOTSUPP)
}

/// The data ranges of `fd` below `size` (holes skipped).
fn read_extents(fd: &OwnedFd, size: u64) -> KResult<Vec<(u64, Vec<u8>)>> {
    use nix::unistd::{Whence, lseek};
    let mut out = Vec::new();
    let mut off = 0u64;
    while off < size {
        let start = match lseek(fd, off as libc::off_t, Whence::SeekData) {
            Ok(s) => s as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if start >= size {
            break;
        }
        let end = match lseek(fd, start as libc::off_t, Whence::SeekHole) {
            Ok(e) => (e as u64).min(size),
            Err(_) => size,
        };
        if end <= start {
            break;
        }
        let len = usize::try_from(end - start).map_err(|_| Errno::EFBIG)?;
        let mut data = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match nix::sys::uio::pread(fd, &mut data[got..], (start + got as u64) as libc::off_t) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Past the memfd's end (never written) reads as zeros already.
        out.push((start, data));
        off = end;
    }
    Ok(out)
}

fn save_inode(n: &Arc<Inode>, stack: &mut Vec<Arc<Inode>>) -> KResult<InodeState> {
    let m: Meta = *lock(&n.meta);
    let node = match &n.kind {
        Kind::Dir(d) => {
            let d = lock(d);
            let entries = d
                .entries
                .iter()
                .map(|(name, e)| match e {
                    Entry::Node(c) => {
                        stack.push(c.clone());
                        (name.clone(), Some(c.serial))
                    }
                    Entry::Whiteout => (name.clone(), None),
                })
                .collect();
            NodeState::Dir {
                opaque: d.opaque,
                entries,
            }
        }
        Kind::File(f) => {
            let (fd, size) = {
                let st = lock(&f.state);
                (st.fd.clone(), st.size)
            };
            let extents = match fd {
                Some(fd) => read_extents(&fd, size)?,
                None => Vec::new(),
            };
            NodeState::File { size, extents }
        }
        Kind::Symlink(t) => NodeState::Symlink(t.clone()),
        Kind::Fifo(f) => NodeState::Fifo(lock(&f.st).buf.iter().copied().collect()),
        Kind::Other => NodeState::Other,
    };
    Ok(InodeState {
        serial: n.serial,
        ino: n.ino,
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        nlink: m.nlink,
        rdev: m.rdev,
        atime: m.atime,
        mtime: m.mtime,
        ctime: m.ctime,
        node,
    })
}

/// Saves the tree of `fs` and its unlinked-but-open inodes.
fn save_tmpfs(fs: &Tmpfs) -> KResult<TmpfsState> {
    let _ns = lock(&fs.ns);
    let mut seen = HashSet::new();
    let mut inodes = Vec::new();
    let mut stack = vec![fs.root.clone()];
    while let Some(n) = stack.pop() {
        if seen.insert(n.serial) {
            inodes.push(save_inode(&n, &mut stack)?);
        }
    }
    let orphans: Vec<Arc<Inode>> = lock(&fs.orphans)
        .0
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    for n in orphans {
        if !n.is_dir() && seen.insert(n.serial) {
            inodes.push(save_inode(&n, &mut Vec::new())?);
        }
    }
    Ok(TmpfsState {
        dev: fs.dev,
        limit: fs.space.limit,
        next_ino: fs.next_ino.load(std::sync::atomic::Ordering::Relaxed),
        next_serial: fs.next_serial.load(std::sync::atomic::Ordering::Relaxed),
        root: fs.root.serial,
        inodes,
    })
}

impl Vfs {
    /// Saves the namespace (see the module docs). The sandbox must be
    /// paused. EOPNOTSUPP if a mount of a kind that cannot be saved is
    /// present.
    pub fn save(&self) -> Result<VfsState, Errno> {
        let mounts: Vec<MountRow> = {
            let m = self.mounts.read().unwrap_or_else(|e| e.into_inner());
            m.iter()
                .map(|m| {
                    (
                        m.at.clone(),
                        m.id,
                        m.fs.clone(),
                        m.source.clone(),
                        m.data.clone(),
                    )
                })
                .collect()
        };
        let mut filesystems: Vec<FsState> = Vec::new();
        let mut index: HashMap<usize, u32> = HashMap::new();
        let mut saved = Vec::with_capacity(mounts.len());
        let mut host_root = None;
        for (at, id, fs, source, data) in &mounts {
            let (inner, read_only) = unwrap_ro(fs);
            let key = fs_key(inner);
            let fsi = match index.get(&key) {
                Some(i) => *i,
                None => {
                    let st = save_fs(inner, at, self.mode)?;
                    if matches!(st, FsState::Root { .. }) {
                        host_root = Some(root_host(inner).ok_or(Errno::EINVAL)?);
                    }
                    let i = u32::try_from(filesystems.len()).map_err(|_| Errno::ENOMEM)?;
                    filesystems.push(st);
                    index.insert(key, i);
                    i
                }
            };
            saved.push(MountState {
                at: at.clone(),
                id: *id as u64,
                fs: fsi,
                read_only,
                source: source.clone(),
                data: data.clone(),
            });
        }
        let (host_root, host_root_id) = host_root.ok_or(Errno::EINVAL)?;
        Ok(VfsState {
            root_mode: self.mode,
            host_root,
            host_root_id,
            filesystems,
            mounts: saved,
            anon: save_tmpfs(&self.anon)?,
        })
    }
}

/// A mount table entry copied out of the table: mount point, id,
/// filesystem, source, data.
type MountRow = (Vec<u8>, usize, Arc<dyn MountFs>, String, String);

/// The host root behind a root filesystem: path bytes and host identity.
fn root_host(fs: &Arc<dyn MountFs>) -> Option<(Vec<u8>, (u64, u64))> {
    let any = fs.as_any();
    let h: &HostFs = match any.downcast_ref::<Overlay>() {
        Some(ov) => ov.lower(),
        None => any.downcast_ref::<HostFs>()?,
    };
    Some((
        h.host_path().as_os_str().as_bytes().to_vec(),
        h.host_id(b"").ok()?,
    ))
}

// ---------------------------------------------------------------------
// Restoring.

fn host_id_of(p: &Path) -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(p)?;
    Ok((md.dev(), md.ino()))
}

fn os_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}

fn host_err(what: impl Into<String>) -> impl FnOnce(Errno) -> RestoreError {
    let what = what.into();
    move |errno| RestoreError::Host { what, errno }
}

fn io_host_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RestoreError {
    let what = what.into();
    move |e| RestoreError::Host {
        what,
        errno: Errno::from_io(&e),
    }
}

fn check_bind(host: &[u8], id: (u64, u64), at: &[u8]) -> Result<PathBuf, RestoreError> {
    let path = os_path(host);
    let at = String::from_utf8_lossy(at).into_owned();
    match host_id_of(&path) {
        Err(source) => Err(RestoreError::BindSourceMissing { path, at, source }),
        Ok(found) if found != id => Err(RestoreError::BindSourceReplaced {
            path,
            at,
            saved: id,
            found,
        }),
        Ok(_) => Ok(path),
    }
}

/// Whether the type bits of `mode` fit what the inode holds.
fn mode_fits(mode: u32, node: &NodeState) -> bool {
    let t = mode & libc::S_IFMT;
    match node {
        NodeState::Dir { .. } => t == libc::S_IFDIR,
        NodeState::File { .. } => t == libc::S_IFREG,
        NodeState::Symlink(_) => t == libc::S_IFLNK,
        NodeState::Fifo(_) => t == libc::S_IFIFO,
        NodeState::Other => matches!(t, libc::S_IFSOCK | libc::S_IFCHR | libc::S_IFBLK),
    }
}

/// A regular file's data in a fresh memfd.
fn restore_file_data(size: u64, extents: &[(u64, Vec<u8>)]) -> Result<FileState, RestoreError> {
    if size > i64::MAX as u64 {
        return Err(corrupt("file size out of range"));
    }
    if size == 0 && extents.is_empty() {
        return Ok(FileState { fd: None, size: 0 });
    }
    let fd = new_memfd().map_err(host_err("a tmpfs file's memfd"))?;
    nix::unistd::ftruncate(&fd, size as libc::off_t).map_err(|e| RestoreError::Host {
        what: "sizing a tmpfs file".into(),
        errno: e.into(),
    })?;
    for (off, data) in extents {
        let end = off
            .checked_add(data.len() as u64)
            .filter(|&e| e <= size)
            .ok_or_else(|| corrupt("file data beyond the file's size"))?;
        let mut at = *off;
        while at < end {
            let i = (at - off) as usize;
            match nix::sys::uio::pwrite(&fd, &data[i..], at as libc::off_t) {
                Ok(0) => return Err(corrupt("short write restoring a tmpfs file")),
                Ok(n) => at += n as u64,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    return Err(RestoreError::Host {
                        what: "writing a tmpfs file".into(),
                        errno: e.into(),
                    });
                }
            }
        }
    }
    Ok(FileState {
        fd: Some(Arc::new(fd)),
        size,
    })
}

/// Rebuilds a tmpfs from `st`.
fn restore_tmpfs(st: &TmpfsState) -> Result<Tmpfs, RestoreError> {
    let space = Arc::new(Space::new(st.limit));
    let mut by_serial: HashMap<u64, usize> = HashMap::with_capacity(st.inodes.len());
    for (i, n) in st.inodes.iter().enumerate() {
        if by_serial.insert(n.serial, i).is_some() {
            return Err(corrupt(format!("tmpfs inode serial {} twice", n.serial)));
        }
        if !mode_fits(n.mode, &n.node) {
            return Err(corrupt(format!(
                "tmpfs inode {}: mode {:o} does not fit its contents",
                n.serial, n.mode
            )));
        }
    }
    let mut nodes: Vec<Arc<Inode>> = Vec::with_capacity(st.inodes.len());
    for n in &st.inodes {
        let kind = match &n.node {
            NodeState::Dir { opaque, .. } => Kind::Dir(Mutex::new(DirData {
                entries: BTreeMap::new(),
                opaque: *opaque,
            })),
            NodeState::File { size, extents } => {
                let state = restore_file_data(*size, extents)?;
                space
                    .reserve_exact(state.size)
                    .map_err(|_| corrupt("tmpfs data exceeds its size limit"))?;
                Kind::File(FileData {
                    state: Mutex::new(state),
                    space: space.clone(),
                })
            }
            NodeState::Symlink(t) => Kind::Symlink(t.clone()),
            NodeState::Fifo(buf) => {
                let fifo = super::tmpfs::Fifo::default();
                lock(&fifo.st).buf = VecDeque::from(buf.clone());
                Kind::Fifo(Arc::new(fifo))
            }
            NodeState::Other => Kind::Other,
        };
        nodes.push(Arc::new(Inode {
            serial: n.serial,
            ino: n.ino,
            dev: st.dev,
            meta: Mutex::new(Meta {
                mode: n.mode,
                uid: n.uid,
                gid: n.gid,
                nlink: n.nlink,
                rdev: n.rdev,
                atime: n.atime,
                mtime: n.mtime,
                ctime: n.ctime,
            }),
            kind,
        }));
    }
    let root_i = *by_serial
        .get(&st.root)
        .ok_or_else(|| corrupt("tmpfs root inode missing"))?;
    // Link the tree from the root; a directory met twice would be a
    // directory hard link or a cycle.
    let mut reached = vec![false; nodes.len()];
    let mut stack = vec![root_i];
    if !matches!(st.inodes[root_i].node, NodeState::Dir { .. }) {
        return Err(corrupt("tmpfs root is not a directory"));
    }
    reached[root_i] = true;
    while let Some(i) = stack.pop() {
        let NodeState::Dir { entries, .. } = &st.inodes[i].node else {
            continue;
        };
        let Kind::Dir(d) = &nodes[i].kind else {
            continue;
        };
        let mut d = lock(d);
        for (name, target) in entries {
            if name.is_empty()
                || name.contains(&b'/')
                || name.contains(&0)
                || name == b"."
                || name == b".."
            {
                return Err(corrupt("bad name in a tmpfs directory"));
            }
            let entry = match target {
                None => Entry::Whiteout,
                Some(s) => {
                    let j = *by_serial
                        .get(s)
                        .ok_or_else(|| corrupt(format!("tmpfs entry to missing inode {s}")))?;
                    if nodes[j].is_dir() {
                        if reached[j] {
                            return Err(corrupt("tmpfs directory linked twice"));
                        }
                        stack.push(j);
                    }
                    reached[j] = true;
                    Entry::Node(nodes[j].clone())
                }
            };
            d.entries.insert(name.clone(), entry);
        }
    }
    let mut orphans = Vec::new();
    let mut pins = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if !reached[i] && !n.is_dir() {
            orphans.push(Arc::downgrade(n));
            pins.push(n.clone());
        }
    }
    let max_serial = st.inodes.iter().map(|n| n.serial).max().unwrap_or(0);
    let index = RestoreIndex {
        by_serial: nodes
            .iter()
            .map(|n| (n.serial, Arc::downgrade(n)))
            .collect(),
        _pins: pins,
    };
    let orphan_cap = (orphans.len() * 2).max(64);
    Ok(Tmpfs {
        dev: st.dev,
        next_ino: AtomicU64::new(st.next_ino),
        next_serial: AtomicU64::new(st.next_serial.max(max_serial.saturating_add(1))),
        root: nodes[root_i].clone(),
        ns: Mutex::new(()),
        space,
        orphans: Mutex::new((orphans, orphan_cap)),
        restored: Mutex::new(Some(index)),
    })
}

/// Every device number a state uses.
fn devs_of(state: &VfsState) -> Vec<u64> {
    let mut v = vec![state.anon.dev];
    for f in &state.filesystems {
        match f {
            FsState::Root { dev, upper } => {
                v.push(*dev);
                if let Some(u) = upper {
                    v.push(u.dev);
                }
            }
            FsState::Tmpfs(t) => v.push(t.dev),
            FsState::BindDir { dev, .. }
            | FsState::BindFile { dev, .. }
            | FsState::DevFs { dev, .. }
            | FsState::SysFs { dev } => v.push(*dev),
            FsState::ProcFs => {}
        }
    }
    v
}

impl Vfs {
    /// Rebuilds a saved namespace over the host directory `host_root` (the
    /// one it was saved over: [`VfsState::host_root`], possibly moved).
    /// Fails with a [`RestoreError`] inside the `io::Error` when the host
    /// root or a bind source is gone or was replaced, or the state is
    /// inconsistent. procfs mounts are left out: see
    /// [`Vfs::attach_procfs`]. Advisory locks start empty.
    pub fn restore(host_root: &Path, state: &VfsState) -> io::Result<Vfs> {
        Vfs::restore_inner(host_root, state).map_err(io::Error::from)
    }

    fn restore_inner(host_root: &Path, state: &VfsState) -> Result<Vfs, RestoreError> {
        match host_id_of(host_root) {
            Err(source) => {
                return Err(RestoreError::HostRootMissing {
                    path: host_root.to_path_buf(),
                    source,
                });
            }
            Ok(found) if found != state.host_root_id => {
                return Err(RestoreError::HostRootReplaced {
                    path: host_root.to_path_buf(),
                    saved: state.host_root_id,
                    found,
                });
            }
            Ok(_) => {}
        }
        for dev in devs_of(state) {
            reserve_dev(dev);
        }
        // The place a filesystem is first mounted, for error messages.
        let first_at = |i: usize| -> Vec<u8> {
            state
                .mounts
                .iter()
                .find(|m| m.fs as usize == i)
                .map(|m| m.at.clone())
                .unwrap_or_default()
        };
        let mut built: Vec<Option<Arc<dyn MountFs>>> = Vec::with_capacity(state.filesystems.len());
        let mut roots = 0;
        for (i, f) in state.filesystems.iter().enumerate() {
            let fs: Option<Arc<dyn MountFs>> = match f {
                FsState::Root { dev, upper } => {
                    roots += 1;
                    let host = HostFs::new(host_root, state.root_mode == RootMode::Direct, *dev)
                        .map_err(|source| RestoreError::HostRootMissing {
                            path: host_root.to_path_buf(),
                            source,
                        })?;
                    match (state.root_mode, upper) {
                        (RootMode::Overlay, Some(u)) => Some(Arc::new(Overlay::from_parts(
                            Arc::new(restore_tmpfs(u)?),
                            Arc::new(host),
                        ))),
                        (RootMode::ReadOnly | RootMode::Direct, None) => Some(Arc::new(host)),
                        _ => return Err(corrupt("root mode and overlay upper layer disagree")),
                    }
                }
                FsState::Tmpfs(t) => Some(Arc::new(restore_tmpfs(t)?)),
                FsState::BindDir {
                    host,
                    id,
                    writable,
                    dev,
                } => {
                    let path = check_bind(host, *id, &first_at(i))?;
                    Some(Arc::new(
                        HostFs::new_bind(&path, *writable, *dev)
                            .map_err(io_host_err(format!("bind mount of {path:?}")))?,
                    ))
                }
                FsState::BindFile {
                    host,
                    id,
                    writable,
                    dev,
                } => {
                    let path = check_bind(host, *id, &first_at(i))?;
                    Some(Arc::new(
                        HostFileMount::new(&path, *writable, *dev)
                            .map_err(io_host_err(format!("bind mount of {path:?}")))?,
                    ))
                }
                FsState::DevFs { dev, time } => {
                    let mut d = DevFs::new();
                    d.dev = *dev;
                    d.time = *time;
                    Some(Arc::new(Synth(Arc::new(d))))
                }
                FsState::SysFs { dev } => {
                    let mut s = SysFs::new();
                    s.dev = *dev;
                    Some(Arc::new(Synth(Arc::new(s))))
                }
                FsState::ProcFs => None,
            };
            built.push(fs);
        }
        if roots != 1 {
            return Err(corrupt("not exactly one root filesystem"));
        }
        let mut mounts = Vec::with_capacity(state.mounts.len());
        let mut have_root = false;
        for m in &state.mounts {
            if m.at.first() != Some(&b'/') || path::normalize(b"/", &m.at) != m.at {
                return Err(corrupt("mount point not an absolute normalized path"));
            }
            let slot = built
                .get(m.fs as usize)
                .ok_or_else(|| corrupt("mount of a missing filesystem"))?;
            let Some(fs) = slot else {
                continue; // procfs
            };
            let id = usize::try_from(m.id).map_err(|_| corrupt("mount id out of range"))?;
            if mounts.iter().any(|x: &Mount| x.at == m.at || x.id == id) {
                return Err(corrupt("two mounts at one place or with one id"));
            }
            have_root |= m.at == b"/";
            reserve_mount_id(id);
            let fs: Arc<dyn MountFs> = if m.read_only {
                Arc::new(ReadOnlyMount(fs.clone()))
            } else {
                fs.clone()
            };
            mounts.push(Mount {
                at: m.at.clone(),
                id,
                fs,
                source: m.source.clone(),
                data: m.data.clone(),
            });
        }
        if !have_root {
            return Err(corrupt("nothing mounted at /"));
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.at.len()));
        Ok(Vfs {
            mode: state.root_mode,
            mounts: RwLock::new(mounts),
            locks: LockTable::new(),
            anon: restore_tmpfs(&state.anon)?,
        })
    }

    /// Mounts procfs instance `fs` wherever `state` (the state this
    /// namespace was restored from) had procfs, with the saved mount ids
    /// and read-only flags. Call it before reopening files below /proc.
    pub fn attach_procfs(&self, state: &VfsState, fs: Arc<dyn SyntheticFs>) {
        let synth: Arc<dyn MountFs> = Arc::new(Synth(fs));
        let mut mounts = self.mounts.write().unwrap_or_else(|e| e.into_inner());
        for m in &state.mounts {
            if !matches!(state.filesystems.get(m.fs as usize), Some(FsState::ProcFs)) {
                continue;
            }
            let Ok(id) = usize::try_from(m.id) else {
                continue;
            };
            let at = path::normalize(b"/", &m.at);
            mounts.retain(|x| x.at != at);
            reserve_mount_id(id);
            mounts.push(Mount {
                at,
                id,
                fs: if m.read_only {
                    Arc::new(ReadOnlyMount(synth.clone()))
                } else {
                    synth.clone()
                },
                source: m.source.clone(),
                data: m.data.clone(),
            });
        }
        mounts.sort_by_key(|m| std::cmp::Reverse(m.at.len()));
    }

    /// Every tmpfs of this namespace (mounted ones, the overlay's upper
    /// layer, the anonymous-file holder).
    fn each_tmpfs(&self, mut f: impl FnMut(&Tmpfs)) {
        f(&self.anon);
        let fss: Vec<Arc<dyn MountFs>> = {
            let m = self.mounts.read().unwrap_or_else(|e| e.into_inner());
            m.iter().map(|m| m.fs.clone()).collect()
        };
        for fs in &fss {
            let (inner, _) = unwrap_ro(fs);
            let any = inner.as_any();
            if let Some(t) = any.downcast_ref::<Tmpfs>() {
                f(t);
            } else if let Some(ov) = any.downcast_ref::<Overlay>() {
                f(ov.upper());
            }
        }
    }

    /// Drops what a restore kept alive for [`Vfs::reopen`]: unlinked tmpfs
    /// inodes that no reopened description holds go away. Call it once
    /// every saved description is reopened.
    pub fn release_restore_pins(&self) {
        self.each_tmpfs(|t| {
            lock(&t.restored).take();
        });
    }

    /// Describes the tmpfs file whose data lives in memfd `fd` (what
    /// [`MmapSource::HostFd`](super::file::MmapSource) gave for a shared
    /// mapping), so that a mapping can find its file again after a
    /// restore: [`Vfs::reopen`] the description and ask it for its
    /// `mmap_source`. None if no tmpfs file of this namespace, linked or
    /// open, holds that memfd (a mapping that outlived its file: save the
    /// mapping's bytes instead).
    pub fn describe_memfd(&self, fd: &Arc<OwnedFd>) -> Option<FileDesc> {
        let mut found = None;
        self.each_tmpfs(|t| {
            if found.is_some() {
                return;
            }
            found = find_in_tmpfs(t, |n| match &n.kind {
                Kind::File(f) => lock(&f.state)
                    .fd
                    .as_ref()
                    .is_some_and(|x| Arc::ptr_eq(x, fd)),
                _ => false,
            });
        });
        found.map(|n| FileDesc {
            path: Vec::new(),
            what: FileSnapshot::Tmpfs {
                dev: n.dev,
                serial: n.serial,
            },
        })
    }

    /// The tmpfs inode `serial` of the tmpfs with `st_dev` `dev`.
    fn find_inode(&self, dev: u64, serial: u64) -> Option<Arc<Inode>> {
        let mut found = None;
        self.each_tmpfs(|t| {
            if found.is_some() || t.dev != dev {
                return;
            }
            if let Some(n) = lock(&t.restored)
                .as_ref()
                .and_then(|r| r.by_serial.get(&serial))
                .and_then(Weak::upgrade)
            {
                found = Some(n);
                return;
            }
            found = find_in_tmpfs(t, |n| n.serial == serial);
        });
        found
    }

    /// Opens the file `desc` describes again, as a new description with
    /// status `flags` (the saved ones) and the saved path; the caller sets
    /// the position. ESTALE when the file is not there any more: a host
    /// file whose inode, size or mtime changed (or that is gone), a tmpfs
    /// inode the namespace does not have, a device with another number.
    pub fn reopen(&self, desc: &FileDesc, flags: i32) -> KResult<Arc<OpenFile>> {
        let root = Creds::root();
        match &desc.what {
            FileSnapshot::Dir { stat } => {
                match self.open(b"/", &desc.path, flags | libc::O_DIRECTORY, 0, &root) {
                    Ok(f) => {
                        f.flags
                            .store(flags as u32, std::sync::atomic::Ordering::Relaxed);
                        Ok(f)
                    }
                    Err(Errno::ENOENT) => Ok(OpenFile::new(
                        Box::new(deleted_dir(*stat)),
                        flags,
                        desc.path.clone(),
                    )),
                    Err(e) => Err(e),
                }
            }
            FileSnapshot::OPath | FileSnapshot::SysFile => {
                self.open(b"/", &desc.path, flags, 0, &root)
            }
            FileSnapshot::Device { rdev } => {
                let f = self.open(b"/", &desc.path, flags, 0, &root)?;
                if f.ops.stat()?.st_rdev != *rdev {
                    return Err(Errno::ESTALE);
                }
                Ok(f)
            }
            what => Ok(OpenFile::new(
                self.reopen_ops(&desc.path, what, flags)?,
                flags,
                desc.path.clone(),
            )),
        }
    }

    fn reopen_ops(&self, p: &[u8], what: &FileSnapshot, flags: i32) -> KResult<Box<dyn FileOps>> {
        match what {
            FileSnapshot::Tmpfs { dev, serial } => {
                let node = self.find_inode(*dev, *serial).ok_or(Errno::ESTALE)?;
                if !matches!(node.kind, Kind::File(_)) {
                    return Err(Errno::ESTALE);
                }
                Ok(Box::new(TmpFile { node }))
            }
            FileSnapshot::Fifo {
                dev,
                serial,
                read,
                write,
                peer_seen,
            } => {
                let node = self.find_inode(*dev, *serial).ok_or(Errno::ESTALE)?;
                Ok(Box::new(
                    FifoEnd::restored(node, *read, *write, *peer_seen)
                        .map_err(|_| Errno::ESTALE)?,
                ))
            }
            FileSnapshot::Host {
                dev,
                ino,
                size,
                mtime,
            } => self.reopen_host(p, *dev, *ino, *size, *mtime, flags),
            FileSnapshot::Named { name, inner } => Ok(Box::new(Named::new(
                self.reopen_ops(p, inner, flags)?,
                name.clone(),
            ))),
            // Reopened through the path (see `reopen`).
            _ => Err(Errno::EINVAL),
        }
    }

    /// Reopens host regular file `p` directly in its host layer (below an
    /// overlay: the lower file, even if the merged view copied it up).
    fn reopen_host(
        &self,
        p: &[u8],
        dev: u64,
        ino: u64,
        size: i64,
        mtime: Timestamp,
        flags: i32,
    ) -> KResult<Box<dyn FileOps>> {
        if p.first() != Some(&b'/') {
            return Err(Errno::ESTALE);
        }
        let abs = path::normalize(b"/", p);
        let loc = self.locate(&abs);
        let (inner, _) = unwrap_ro(&loc.fs);
        let layer: &dyn MountFs = match inner.as_any().downcast_ref::<Overlay>() {
            Some(ov) => ov.lower().as_ref(),
            None => inner.as_ref(),
        };
        let any = layer.as_any();
        if any.downcast_ref::<HostFs>().is_none() && any.downcast_ref::<HostFileMount>().is_none() {
            return Err(Errno::ESTALE);
        }
        let st = layer.lstat(loc.rel).map_err(|_| Errno::ESTALE)?;
        if st.file_type() != libc::S_IFREG
            || st.st_dev != dev
            || st.st_ino != ino
            || st.st_size != size
            || (st.st_mtime, st.st_mtime_nsec) != mtime
        {
            return Err(Errno::ESTALE);
        }
        let ops = layer.open(loc.rel, flags & (libc::O_ACCMODE | libc::O_NONBLOCK), &st)?;
        // The file may have changed between the check and the open.
        let now = ops.stat()?;
        if now.st_ino != ino || now.st_size != size {
            return Err(Errno::ESTALE);
        }
        Ok(ops)
    }
}

/// The first inode of `t` (its tree, then its unlinked ones) that `pred`
/// accepts.
fn find_in_tmpfs(t: &Tmpfs, pred: impl Fn(&Inode) -> bool) -> Option<Arc<Inode>> {
    let orphan = lock(&t.orphans)
        .0
        .iter()
        .filter_map(Weak::upgrade)
        .find(|n| pred(n));
    if orphan.is_some() {
        return orphan;
    }
    let _ns = lock(&t.ns);
    let mut stack = vec![t.root.clone()];
    while let Some(n) = stack.pop() {
        if pred(&n) {
            return Some(n);
        }
        if let Kind::Dir(d) = &n.kind {
            for e in lock(d).entries.values() {
                if let Entry::Node(c) = e {
                    stack.push(c.clone());
                }
            }
        }
    }
    None
}

/// A directory that was removed while open: lists nothing, shows its last
/// stat with no links.
fn deleted_dir(s: SavedStat) -> DirFile {
    let st = Stat {
        st_dev: s.dev,
        st_ino: s.ino,
        st_nlink: 0,
        st_mode: s.mode,
        st_uid: s.uid,
        st_gid: s.gid,
        st_blksize: 4096,
        st_atime: s.atime.0,
        st_atime_nsec: s.atime.1,
        st_mtime: s.mtime.0,
        st_mtime_nsec: s.mtime.1,
        st_ctime: s.ctime.0,
        st_ctime_nsec: s.ctime.1,
        ..Stat::default()
    };
    DirFile::new(|| Ok(Vec::<DirEntry>::new()), move || Ok(st))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const RDWR: i32 = libc::O_RDWR;
    const CREAT: i32 = libc::O_RDWR | libc::O_CREAT;

    fn root() -> Creds {
        Creds::root()
    }

    fn write_all(f: &OpenFile, data: &[u8]) {
        let mut pos = lock(&f.pos);
        let mut done = 0;
        while done < data.len() {
            let n = f.ops.write(&data[done..], Some(*pos)).unwrap();
            done += n;
            *pos += n as u64;
        }
    }

    fn read_at(f: &OpenFile, pos: u64, max: usize) -> Vec<u8> {
        let mut buf = vec![0u8; max];
        let n = f.ops.read(&mut buf, Some(pos)).unwrap();
        buf.truncate(n);
        buf
    }

    fn read_file(v: &Vfs, p: &[u8]) -> Vec<u8> {
        let f = v.open(b"/", p, libc::O_RDONLY, 0, &root()).unwrap();
        let mut out = Vec::new();
        loop {
            let chunk = read_at(&f, out.len() as u64, 1 << 16);
            if chunk.is_empty() {
                return out;
            }
            out.extend(chunk);
        }
    }

    /// A cheap content digest (FNV-1a) and length.
    fn digest(data: &[u8]) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in data {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        format!("{}:{h:x}", data.len())
    }

    /// Every node below `/` (names, types, modes, owners, sizes, link
    /// counts, st_dev/st_ino, mtime/ctime, contents, link targets).
    fn listing(v: &Vfs) -> BTreeMap<String, String> {
        fn walk(v: &Vfs, dir: &[u8], out: &mut BTreeMap<String, String>) {
            let f = v
                .open(b"/", dir, libc::O_RDONLY | libc::O_DIRECTORY, 0, &root())
                .unwrap();
            let mut names: Vec<Vec<u8>> = f
                .ops
                .readdir(0)
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .filter(|n| n != b"." && n != b"..")
                .collect();
            names.sort();
            for name in names {
                let p = path::join(dir, &name);
                let st = match v.stat(b"/", &p, false) {
                    Ok(st) => st,
                    Err(e) => {
                        // Listed but not there (devfs's pts without a
                        // kernel): the same before and after.
                        out.insert(String::from_utf8_lossy(&p).into_owned(), format!("{e:?}"));
                        continue;
                    }
                };
                let what = match st.file_type() {
                    libc::S_IFREG => digest(&read_file(v, &p)),
                    libc::S_IFLNK => {
                        String::from_utf8_lossy(&v.readlink(b"/", &p).unwrap()).into_owned()
                    }
                    _ => String::new(),
                };
                out.insert(
                    String::from_utf8_lossy(&p).into_owned(),
                    format!(
                        "mode={:o} uid={} gid={} size={} nlink={} dev={:x} ino={} rdev={:x} mtime={:?} ctime={:?} {what}",
                        st.st_mode,
                        st.st_uid,
                        st.st_gid,
                        st.st_size,
                        st.st_nlink,
                        st.st_dev,
                        st.st_ino,
                        st.st_rdev,
                        (st.st_mtime, st.st_mtime_nsec),
                        (st.st_ctime, st.st_ctime_nsec),
                    ),
                );
                if st.is_dir() {
                    walk(v, &p, out);
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(v, b"/", &mut out);
        out
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        host: PathBuf,
        bind: PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("root");
        let bind = dir.path().join("bind");
        std::fs::create_dir_all(host.join("etc")).unwrap();
        std::fs::create_dir_all(host.join("d/inner")).unwrap();
        std::fs::create_dir_all(host.join("tree/a/b")).unwrap();
        std::fs::write(host.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
        std::fs::write(host.join("etc/motd"), b"welcome\n").unwrap();
        std::fs::write(host.join("lower.txt"), b"lower layer data").unwrap();
        std::fs::write(host.join("d/x"), b"x").unwrap();
        std::fs::write(host.join("d/inner/y"), b"y").unwrap();
        std::fs::write(host.join("tree/a/b/leaf"), b"leaf").unwrap();
        std::os::unix::fs::symlink("etc/hosts", host.join("hostlink")).unwrap();
        std::fs::create_dir_all(&bind).unwrap();
        std::fs::write(bind.join("shared.txt"), b"from the host").unwrap();
        Fixture {
            _dir: dir,
            host,
            bind,
        }
    }

    /// Open descriptions kept across the checkpoint, with what reading
    /// them from the start must give.
    struct Opened {
        files: Vec<(Arc<OpenFile>, &'static str)>,
        /// The memfd of `ghost` as a mapping would describe it.
        mapped: FileDesc,
    }

    /// Builds a busy namespace over the fixture.
    fn populate(fx: &Fixture) -> (Vfs, Opened) {
        let v = Vfs::new(&fx.host, RootMode::Overlay).unwrap();
        let r = root();
        // Copy-up and modify a lower file.
        let f = v.open(b"/", b"/etc/motd", RDWR, 0, &r).unwrap();
        write_all(&f, b"WELCOME");
        let motd = f;
        // New files and directories, owners, modes, times.
        v.mkdir(b"/", b"/nd", 0o750, &r).unwrap();
        v.mkdir(b"/", b"/nd/sub", 0o700, &r).unwrap();
        let f = v.open(b"/", b"/nd/sub/f", CREAT, 0o640, &r).unwrap();
        write_all(&f, b"hard linked file");
        v.chown(b"/", b"/nd/sub/f", Some(1000), Some(100), false, &r)
            .unwrap();
        v.utimens(
            b"/",
            b"/nd/sub",
            [Some((1_000_000, 5)), Some((2_000_000, 7))],
            false,
            &r,
        )
        .unwrap();
        v.link(b"/", b"/nd/sub/f", b"/", b"/hl", false, &r).unwrap();
        let f2 = v.open(b"/", b"/new.txt", CREAT, 0o600, &r).unwrap();
        write_all(&f2, b"renamed later");
        v.rename(b"/", b"/new.txt", b"/", b"/nd/renamed.txt", 0, &r)
            .unwrap();
        // Delete lower entries (whiteouts), recreate a directory (opaque).
        v.unlink(b"/", b"/d/x", &r).unwrap();
        v.unlink(b"/", b"/d/inner/y", &r).unwrap();
        v.rmdir(b"/", b"/d/inner", &r).unwrap();
        v.mkdir(b"/", b"/d/inner", 0o755, &r).unwrap();
        let g = v.open(b"/", b"/d/inner/z", CREAT, 0o644, &r).unwrap();
        write_all(&g, b"zzz");
        // Rename a lower directory (whole subtree copied up).
        v.rename(b"/", b"/tree", b"/", b"/moved", 0, &r).unwrap();
        // A symlink.
        v.symlink(b"../etc/hosts", b"/", b"/nd/link", &r).unwrap();
        // A FIFO with buffered data and both ends open.
        v.mknod(b"/", b"/fifo", libc::S_IFIFO | 0o644, 0, &r)
            .unwrap();
        let fr = v
            .open(b"/", b"/fifo", libc::O_RDONLY | libc::O_NONBLOCK, 0, &r)
            .unwrap();
        let fw = v.open(b"/", b"/fifo", libc::O_WRONLY, 0, &r).unwrap();
        assert_eq!(fw.ops.write(b"in the pipe", None).unwrap(), 11);
        // Unlinked but open.
        let ghost = v.open(b"/", b"/ghost", CREAT, 0o644, &r).unwrap();
        write_all(&ghost, b"still here");
        v.unlink(b"/", b"/ghost", &r).unwrap();
        // An anonymous file.
        let memfd = v
            .anonymous_file("/memfd:test (deleted)".into(), &r, 0)
            .unwrap();
        write_all(&memfd, b"anonymous bytes");
        // A size-limited tmpfs, and an unlimited one with a sparse file.
        v.mount_tmpfs(b"/tmp", Some(64 * 1024));
        let t = v.open(b"/", b"/tmp/limited", CREAT, 0o644, &r).unwrap();
        write_all(&t, &[7u8; 40 * 1024]);
        v.mount_tmpfs(b"/big", None);
        let s = v.open(b"/", b"/big/sparse", CREAT, 0o644, &r).unwrap();
        s.ops.truncate(64 << 20).unwrap();
        s.ops.write(b"middle", Some(32 << 20)).unwrap();
        // A bind mount (writes reach the host) and an alias of /tmp.
        v.mount_bind(b"/mnt/host", &fx.bind, false).unwrap();
        let b = v
            .open(b"/", b"/mnt/host/written.txt", CREAT, 0o644, &r)
            .unwrap();
        write_all(&b, b"through the bind");
        v.mount_alias(b"/tmp2", b"/tmp").unwrap();
        // Read-only opens: a lower file, a directory, a device, O_PATH.
        let lower = v.open(b"/", b"/lower.txt", libc::O_RDONLY, 0, &r).unwrap();
        let dir = v
            .open(b"/", b"/nd", libc::O_RDONLY | libc::O_DIRECTORY, 0, &r)
            .unwrap();
        let null = v.open(b"/", b"/dev/null", RDWR, 0, &r).unwrap();
        let opath = v.open(b"/", b"/etc/hosts", libc::O_PATH, 0, &r).unwrap();
        // A shared mapping's memfd, here of an unlinked file.
        let super::super::file::MmapSource::HostFd(mapped) = ghost.ops.mmap_source().unwrap()
        else {
            panic!("tmpfs files map their memfd");
        };
        let mapped = v.describe_memfd(&mapped).unwrap();
        assert!(v.describe_memfd(&Arc::new(new_memfd().unwrap())).is_none());
        let opened = Opened {
            files: vec![
                (motd, "WELCOME\n"),
                (f, "hard linked file"),
                (ghost, "still here"),
                (memfd, "anonymous bytes"),
                (lower, "lower layer data"),
                (fr, "in the pipe"),
                (fw, ""),
                (dir, ""),
                (null, ""),
                (opath, ""),
                (t, ""),
                (b, "through the bind"),
            ],
            mapped,
        };
        (v, opened)
    }

    fn roundtrip(state: &VfsState) -> VfsState {
        let bytes = postcard::to_allocvec(state).unwrap();
        postcard::from_bytes(&bytes).unwrap()
    }

    #[test]
    fn save_restore_keeps_the_namespace() {
        let fx = fixture();
        let (v, opened) = populate(&fx);
        let before = listing(&v);
        let mounts_before = v.mounts();
        let descs: Vec<(FileDesc, i32, &str)> = opened
            .files
            .iter()
            .map(|(f, want)| (describe(f).expect("describable"), f.flags(), *want))
            .collect();
        let state = v.save().unwrap();
        let bytes = postcard::to_allocvec(&state).unwrap();
        // The 64 MiB sparse file costs its data, not its size.
        assert!(bytes.len() < 1 << 20, "state is {} bytes", bytes.len());
        let state2: VfsState = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(state, state2);
        assert_eq!(state2.host_root(), fx.host);

        let w = Vfs::restore(&fx.host, &state2).unwrap();
        let after = listing(&w);
        assert_eq!(before.len(), after.len());
        for (k, b) in &before {
            assert_eq!(Some(b), after.get(k), "{k}");
        }
        assert_eq!(mounts_before, w.mounts());
        // Spot checks of what the listing covers.
        assert!(before.contains_key("/nd/link"));
        assert!(!before.contains_key("/d/x"), "whiteout");
        assert!(!before.contains_key("/tree"));
        assert_eq!(read_file(&w, b"/moved/a/b/leaf"), b"leaf");
        assert_eq!(
            w.stat(b"/", b"/hl", false).unwrap().st_ino,
            w.stat(b"/", b"/nd/sub/f", false).unwrap().st_ino
        );
        assert_eq!(w.stat(b"/", b"/hl", false).unwrap().st_nlink, 2);
        assert_eq!(
            read_file(&w, b"/big/sparse")[32 << 20..(32 << 20) + 6],
            *b"middle"
        );

        // Every description reopens onto the same data.
        let mut reopened = Vec::new();
        for (d, flags, want) in &descs {
            let f = w.reopen(d, *flags).unwrap();
            assert_eq!(f.flags(), *flags);
            if !want.is_empty() {
                assert_eq!(read_at(&f, 0, 64), want.as_bytes(), "{d:?}");
            }
            reopened.push(f);
        }
        // A mapping finds its file's data again.
        let m = w.reopen(&opened.mapped, RDWR).unwrap();
        let super::super::file::MmapSource::HostFd(fd) = m.ops.mmap_source().unwrap() else {
            panic!("tmpfs files map their memfd");
        };
        let mut buf = [0u8; 10];
        nix::sys::uio::pread(&*fd, &mut buf, 0).unwrap();
        assert_eq!(&buf, b"still here");
        // The hard link and the reopened file are one inode.
        write_all(&reopened[1], b"");
        reopened[1].ops.write(b"HARD", Some(0)).unwrap();
        assert_eq!(&read_file(&w, b"/hl")[..4], b"HARD");
        // The unlinked file is still unlinked, and stays alive while open.
        assert_eq!(reopened[2].ops.stat().unwrap().st_nlink, 0);
        w.release_restore_pins();
        assert_eq!(read_at(&reopened[2], 0, 64), b"still here");
        // The FIFO's writer still writes to the reader.
        reopened[6].ops.write(b"!", None).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(reopened[5].ops.read(&mut buf, None).unwrap(), 1);
        // The directory lists its entries; the device and O_PATH work.
        let names: Vec<Vec<u8>> = reopened[7]
            .ops
            .readdir(0)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert!(names.contains(&b"renamed.txt".to_vec()));
        assert_eq!(reopened[8].ops.write(b"gone", Some(0)).unwrap(), 4);
        assert!(reopened[9].ops.stat().unwrap().st_size > 0);
        // The size limit still holds in the restored tmpfs.
        let t = &reopened[10];
        assert_eq!(
            t.ops.write(&[1u8; 30 * 1024], Some(40 * 1024)).unwrap(),
            24 * 1024
        );
        assert_eq!(t.ops.write(b"x", Some(64 * 1024)), Err(Errno::ENOSPC));
        // The alias shares the instance.
        assert_eq!(read_file(&w, b"/tmp2/limited").len(), 64 * 1024);
        // The host file behind the bind mount is the host's.
        assert_eq!(read_file(&w, b"/mnt/host/written.txt"), b"through the bind");
        // New mounts and filesystems do not collide with restored ones.
        w.mount_tmpfs(b"/fresh", None);
        let devs: Vec<u64> = w.mounts().iter().map(|m| m.dev).collect();
        let fresh = w.stat(b"/", b"/fresh", false).unwrap().st_dev;
        assert_eq!(devs.iter().filter(|&&d| d == fresh).count(), 1);
        drop(opened);
    }

    #[test]
    fn changed_host_files_are_stale() {
        let fx = fixture();
        let v = Vfs::new(&fx.host, RootMode::Overlay).unwrap();
        let f = v
            .open(b"/", b"/lower.txt", libc::O_RDONLY, 0, &root())
            .unwrap();
        let d = describe(&f).unwrap();
        let state = roundtrip(&v.save().unwrap());
        let w = Vfs::restore(&fx.host, &state).unwrap();
        assert_eq!(read_at(&w.reopen(&d, f.flags()).unwrap(), 0, 5), b"lower");
        // Copying the file up in the restored namespace does not matter:
        // the description is of the lower file.
        let up = w.open(b"/", b"/lower.txt", RDWR, 0, &root()).unwrap();
        up.ops.write(b"UPPER", Some(0)).unwrap();
        assert_eq!(read_at(&w.reopen(&d, f.flags()).unwrap(), 0, 5), b"lower");
        // Changing the host file does.
        std::fs::write(fx.host.join("lower.txt"), b"lower layer data, changed").unwrap();
        assert_eq!(w.reopen(&d, f.flags()).err(), Some(Errno::ESTALE));
        std::fs::remove_file(fx.host.join("lower.txt")).unwrap();
        assert_eq!(w.reopen(&d, f.flags()).err(), Some(Errno::ESTALE));
    }

    #[test]
    fn replaced_or_missing_host_root_fails_restore() {
        let fx = fixture();
        let v = Vfs::new(&fx.host, RootMode::Overlay).unwrap();
        let state = roundtrip(&v.save().unwrap());
        drop(v);
        let moved = fx.host.with_file_name("moved-root");
        std::fs::rename(&fx.host, &moved).unwrap();
        // Moved: restoring at the new path works.
        assert!(Vfs::restore(&moved, &state).is_ok());
        let e = Vfs::restore(&fx.host, &state).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(matches!(
            e.get_ref().and_then(|e| e.downcast_ref::<RestoreError>()),
            Some(RestoreError::HostRootMissing { .. })
        ));
        std::fs::create_dir(&fx.host).unwrap();
        let e = Vfs::restore(&fx.host, &state).unwrap_err();
        assert!(
            matches!(
                e.get_ref().and_then(|e| e.downcast_ref::<RestoreError>()),
                Some(RestoreError::HostRootReplaced { .. })
            ),
            "{e}"
        );
        assert!(e.to_string().contains("was replaced"), "{e}");
    }

    #[test]
    fn replaced_bind_source_fails_restore() {
        let fx = fixture();
        let v = Vfs::new(&fx.host, RootMode::ReadOnly).unwrap();
        v.mount_bind(b"/mnt", &fx.bind, true).unwrap();
        v.mount_bind(b"/one", &fx.bind.join("shared.txt"), false)
            .unwrap();
        let state = roundtrip(&v.save().unwrap());
        let w = Vfs::restore(&fx.host, &state).unwrap();
        assert_eq!(listing(&v), listing(&w));
        assert_eq!(read_file(&w, b"/one"), b"from the host");
        assert_eq!(
            w.open(b"/", b"/mnt/new", CREAT, 0o644, &root()).err(),
            Some(Errno::EROFS)
        );
        // Replaced (the new file exists before the old one goes, so its
        // inode number differs).
        std::fs::write(fx.bind.join("other.txt"), b"another file").unwrap();
        std::fs::rename(fx.bind.join("other.txt"), fx.bind.join("shared.txt")).unwrap();
        let e = Vfs::restore(&fx.host, &state).unwrap_err();
        assert!(
            matches!(
                e.get_ref().and_then(|e| e.downcast_ref::<RestoreError>()),
                Some(RestoreError::BindSourceReplaced { .. })
            ),
            "{e}"
        );
    }

    #[test]
    fn direct_mode_host_files_reopen() {
        let fx = fixture();
        let v = Vfs::new(&fx.host, RootMode::Direct).unwrap();
        let f = v.open(b"/", b"/etc/motd", RDWR, 0, &root()).unwrap();
        f.ops.write(b"W", Some(0)).unwrap();
        let d = describe(&f).unwrap();
        let state = roundtrip(&v.save().unwrap());
        assert_eq!(state.root_mode(), RootMode::Direct);
        let w = Vfs::restore(&fx.host, &state).unwrap();
        let g = w.reopen(&d, f.flags()).unwrap();
        g.ops.write(b"E", Some(1)).unwrap();
        assert_eq!(
            std::fs::read(fx.host.join("etc/motd")).unwrap(),
            b"WElcome\n"
        );
    }

    #[test]
    fn procfs_is_left_to_the_kernel() {
        let fx = fixture();
        let v = Vfs::new(&fx.host, RootMode::Overlay).unwrap();
        v.mount_synthetic(b"/sys", Arc::new(SysFs::new()), true);
        struct FakeProc;
        impl SyntheticFs for FakeProc {
            fn stat(&self, rel: &[u8]) -> KResult<Stat> {
                if !rel.is_empty() {
                    return Err(Errno::ENOENT);
                }
                Ok(Stat {
                    st_mode: libc::S_IFDIR | 0o555,
                    st_ino: 1,
                    ..Stat::default()
                })
            }
            fn readlink(&self, _rel: &[u8]) -> KResult<Vec<u8>> {
                Err(Errno::EINVAL)
            }
            fn open(&self, _rel: &[u8], _flags: i32) -> KResult<Box<dyn FileOps>> {
                Err(Errno::ENOENT)
            }
            fn readdir(&self, _rel: &[u8]) -> KResult<Vec<DirEntry>> {
                Ok(Vec::new())
            }
            fn fs_name(&self) -> &'static str {
                "proc"
            }
        }
        v.mount(b"/proc", Arc::new(FakeProc));
        v.mount_alias(b"/other/proc", b"/proc").unwrap();
        let sysfile = v
            .open(
                b"/",
                b"/sys/devices/system/cpu/online",
                libc::O_RDONLY,
                0,
                &root(),
            )
            .unwrap();
        let d = describe(&sysfile).unwrap();
        let state = roundtrip(&v.save().unwrap());
        assert_eq!(
            state.procfs_mounts(),
            vec![(b"/other/proc".to_vec(), false), (b"/proc".to_vec(), false)]
        );
        let w = Vfs::restore(&fx.host, &state).unwrap();
        assert!(!w.mounts().iter().any(|m| m.fs_type == "proc"));
        w.attach_procfs(&state, Arc::new(FakeProc));
        assert_eq!(v.mounts(), w.mounts());
        assert_eq!(
            read_at(&w.reopen(&d, sysfile.flags()).unwrap(), 0, 64),
            read_at(&sysfile, 0, 64)
        );
    }

    #[test]
    fn removed_open_directory_reopens_empty() {
        let fx = fixture();
        let v = Vfs::new(&fx.host, RootMode::Overlay).unwrap();
        v.mkdir(b"/", b"/gone", 0o755, &root()).unwrap();
        let dir = v
            .open(
                b"/",
                b"/gone",
                libc::O_RDONLY | libc::O_DIRECTORY,
                0,
                &root(),
            )
            .unwrap();
        let d = describe(&dir).unwrap();
        v.rmdir(b"/", b"/gone", &root()).unwrap();
        let w = Vfs::restore(&fx.host, &roundtrip(&v.save().unwrap())).unwrap();
        let f = w.reopen(&d, dir.flags()).unwrap();
        assert!(f.ops.readdir(0).unwrap().is_empty());
        assert_eq!(f.ops.stat().unwrap().st_nlink, 0);
    }

    #[test]
    fn garbled_state_never_panics() {
        let fx = fixture();
        let (v, _opened) = populate(&fx);
        let bytes = postcard::to_allocvec(&v.save().unwrap()).unwrap();
        // Truncations never decode.
        let step = (bytes.len() / 500).max(1);
        for n in (0..bytes.len()).step_by(step) {
            assert!(
                postcard::from_bytes::<VfsState>(&bytes[..n]).is_err(),
                "{n}"
            );
        }
        // Flipped bytes decode or not; a decoded state restores or fails
        // with an error, never a panic.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut restored = 0;
        for _ in 0..300 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut b = bytes.clone();
            let i = (seed % b.len() as u64) as usize;
            b[i] ^= (seed >> 32) as u8 | 1;
            if let Ok(st) = postcard::from_bytes::<VfsState>(&b)
                && let Ok(w) = Vfs::restore(&fx.host, &st)
            {
                restored += 1;
                let _ = w.save();
            }
        }
        assert!(restored > 0);
        // Inconsistent states are typed errors.
        let mut st: VfsState = postcard::from_bytes(&bytes).unwrap();
        if let Some(FsState::Root { upper: Some(u), .. }) = st
            .filesystems
            .iter_mut()
            .find(|f| matches!(f, FsState::Root { .. }))
        {
            u.root = u64::MAX;
        }
        let e = Vfs::restore(&fx.host, &st).unwrap_err();
        assert!(matches!(
            e.get_ref().and_then(|e| e.downcast_ref::<RestoreError>()),
            Some(RestoreError::Corrupt(_))
        ));
    }

    #[test]
    fn second_checkpoint_after_restore() {
        let fx = fixture();
        let (v, opened) = populate(&fx);
        let ghost = describe(&opened.files[2].0).unwrap();
        let w = Vfs::restore(&fx.host, &roundtrip(&v.save().unwrap())).unwrap();
        let g = w.reopen(&ghost, RDWR).unwrap();
        w.release_restore_pins();
        let ghost2 = describe(&g).unwrap();
        let x = Vfs::restore(&fx.host, &roundtrip(&w.save().unwrap())).unwrap();
        assert_eq!(listing(&w), listing(&x));
        assert_eq!(
            read_at(&x.reopen(&ghost2, RDWR).unwrap(), 0, 64),
            b"still here"
        );
    }
}
