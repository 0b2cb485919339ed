//! devfs: the sandbox's `/dev`.
//!
//! Character devices `null` (1:3), `zero` (1:5), `full` (1:7), `random`
//! (1:8), `urandom` (1:9), `tty` (5:0: the caller's controlling terminal,
//! ENXIO without one) and `ptmx` (5:2: every open makes a new pty master);
//! symlinks `fd -> /proc/self/fd`, `stdin`/`stdout`/`stderr ->
//! /proc/self/fd/0..2`; directories `pts` (the devpts view: `ptmx` and
//! one `N` (136:N) per pty whose master is open, see
//! [`crate::kernel::pty`]) and `shm` (the VFS mounts a tmpfs on
//! `/dev/shm`, see `Vfs::new`). The ptys are the kernel's: a devfs opens
//! them once [`bind_kernel`] has told it which kernel it serves (until
//! then `ptmx` gives ENODEV and `pts` is empty).

use super::file::{DirEntry, FileOps, MmapSource, Stat};
use super::vfs::{Synth, SyntheticFs, Vfs, alloc_dev, now};
use crate::errno::{Errno, KResult};
use crate::kernel::Kernel;
use crate::kernel::pty::{PTMX_MINOR, TTYAUX_MAJOR};
use std::sync::{Arc, Mutex, Weak};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dev {
    Null,
    Zero,
    Full,
    Random,
    Tty,
    Ptmx,
}

#[derive(Debug, Clone, Copy)]
enum Node {
    Dir(u32),
    Chr(Dev, u32, u32),
    Link(&'static [u8]),
    /// `pts/ptmx`.
    PtsPtmx,
    /// `pts/N`.
    Pts(u32),
}

/// (name, node, inode number) of every entry below the root.
const ENTRIES: &[(&[u8], Node, u64)] = &[
    (b"null", Node::Chr(Dev::Null, 1, 3), 3),
    (b"zero", Node::Chr(Dev::Zero, 1, 5), 4),
    (b"full", Node::Chr(Dev::Full, 1, 7), 5),
    (b"random", Node::Chr(Dev::Random, 1, 8), 6),
    (b"urandom", Node::Chr(Dev::Random, 1, 9), 7),
    (b"tty", Node::Chr(Dev::Tty, 5, 0), 8),
    (b"fd", Node::Link(b"/proc/self/fd"), 9),
    (b"stdin", Node::Link(b"/proc/self/fd/0"), 10),
    (b"stdout", Node::Link(b"/proc/self/fd/1"), 11),
    (b"stderr", Node::Link(b"/proc/self/fd/2"), 12),
    (b"ptmx", Node::Chr(Dev::Ptmx, TTYAUX_MAJOR, PTMX_MINOR), 13),
    (b"pts", Node::Dir(0o755), 14),
    (b"shm", Node::Dir(0o1777), 15),
];

const ROOT_INO: u64 = 2;

/// The device filesystem (see the module docs).
#[derive(Debug)]
pub struct DevFs {
    pub(super) dev: u64,
    pub(super) time: (i64, i64),
    /// The kernel whose ptys `ptmx`, `pts` and `tty` open.
    kernel: Mutex<Weak<Kernel>>,
}

/// Points every devfs mounted in `vfs` at `kernel`'s ptys (called for
/// each file namespace the kernel serves, from `Kernel::mount_proc`).
pub fn bind_kernel(vfs: &Vfs, kernel: &Arc<Kernel>) {
    let mounts = vfs.mounts.read().unwrap_or_else(|e| e.into_inner());
    for m in mounts.iter() {
        if let Some(s) = m.fs.as_any().downcast_ref::<Synth>()
            && let Some(d) = s.0.as_any().downcast_ref::<DevFs>()
        {
            *d.kernel.lock().unwrap_or_else(|e| e.into_inner()) = Arc::downgrade(kernel);
        }
    }
}

impl Default for DevFs {
    fn default() -> DevFs {
        DevFs::new()
    }
}

impl DevFs {
    /// A devfs instance (its ptys once [`bind_kernel`] ran).
    pub fn new() -> DevFs {
        DevFs {
            dev: alloc_dev(),
            time: now(),
            kernel: Mutex::new(Weak::new()),
        }
    }

    fn kernel(&self) -> Option<Arc<Kernel>> {
        self.kernel
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .upgrade()
    }

    fn node(&self, rel: &[u8]) -> KResult<(Node, u64)> {
        if rel.is_empty() {
            return Ok((Node::Dir(0o755), ROOT_INO));
        }
        if let Some((_, n, ino)) = ENTRIES.iter().find(|(name, _, _)| *name == rel) {
            return Ok((*n, *ino));
        }
        if let Some(name) = rel.strip_prefix(b"pts/") {
            if name == b"ptmx" {
                return Ok((Node::PtsPtmx, 2));
            }
            // N: decimal without leading zeros, a pty whose master is open.
            if let Some(n) = std::str::from_utf8(name)
                .ok()
                .filter(|s| !s.starts_with('0') || s.len() == 1)
                .and_then(|s| s.parse::<u32>().ok())
                && let Some(k) = self.kernel()
                && k.ptys.get(n).is_some()
            {
                return Ok((Node::Pts(n), u64::from(n) + 3));
            }
        }
        // Below a directory (nothing there), or below a device.
        match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => match self.node(&rel[..i])? {
                (Node::Dir(_), _) => Err(Errno::ENOENT),
                _ => Err(Errno::ENOTDIR),
            },
            None => Err(Errno::ENOENT),
        }
    }

    fn stat_of(&self, node: Node, ino: u64) -> KResult<Stat> {
        let (mode, rdev, size, nlink) = match node {
            Node::Dir(m) => (libc::S_IFDIR | m, 0, 0, 2),
            Node::Chr(_, ma, mi) => (libc::S_IFCHR | 0o666, libc::makedev(ma, mi), 0, 1),
            Node::Link(t) => (libc::S_IFLNK | 0o777, 0, t.len() as i64, 1),
            Node::PtsPtmx | Node::Pts(_) => {
                let k = self.kernel().ok_or(Errno::ENOENT)?;
                return match node {
                    Node::Pts(n) => Ok(k.ptys.get(n).ok_or(Errno::ENOENT)?.slave_stat()),
                    _ => Ok(k.ptys.ptmx_stat()),
                };
            }
        };
        let nlink = if ino == ROOT_INO {
            2 + ENTRIES
                .iter()
                .filter(|e| matches!(e.1, Node::Dir(_)))
                .count() as u64
        } else {
            nlink
        };
        Ok(Stat {
            st_dev: self.dev,
            st_ino: ino,
            st_nlink: nlink,
            st_mode: mode,
            st_rdev: rdev,
            st_size: size,
            st_blksize: 4096,
            st_atime: self.time.0,
            st_atime_nsec: self.time.1,
            st_mtime: self.time.0,
            st_mtime_nsec: self.time.1,
            st_ctime: self.time.0,
            st_ctime_nsec: self.time.1,
            ..Stat::default()
        })
    }
}

impl SyntheticFs for DevFs {
    fn stat(&self, rel: &[u8]) -> KResult<Stat> {
        let (n, ino) = self.node(rel)?;
        self.stat_of(n, ino)
    }

    fn readlink(&self, rel: &[u8]) -> KResult<Vec<u8>> {
        match self.node(rel)? {
            (Node::Link(t), _) => Ok(t.to_vec()),
            _ => Err(Errno::EINVAL),
        }
    }

    fn open(&self, rel: &[u8], flags: i32) -> KResult<Box<dyn FileOps>> {
        let (n, ino) = self.node(rel)?;
        match n {
            Node::Chr(Dev::Tty, _, _) => {
                let k = self.kernel().ok_or(Errno::ENXIO)?;
                let st = self.stat_of(n, ino)?;
                Ok(Box::new(k.ptys.open_controlling(&k, flags, st)?))
            }
            Node::Chr(Dev::Ptmx, _, _) | Node::PtsPtmx => {
                let k = self.kernel().ok_or(Errno::ENODEV)?;
                let st = self.stat_of(n, ino)?;
                Ok(Box::new(k.ptys.open_master(&k, st)?))
            }
            Node::Pts(index) => {
                let k = self.kernel().ok_or(Errno::ENOENT)?;
                Ok(Box::new(k.ptys.open_slave(index, flags)?))
            }
            Node::Chr(dev, _, _) => Ok(Box::new(CharDev {
                dev,
                stat: self.stat_of(n, ino)?,
            })),
            Node::Dir(_) => Err(Errno::EISDIR),
            Node::Link(_) => Err(Errno::ELOOP),
        }
    }

    fn readdir(&self, rel: &[u8]) -> KResult<Vec<DirEntry>> {
        match self.node(rel)? {
            (Node::Dir(_), _) if rel.is_empty() => Ok(ENTRIES
                .iter()
                .map(|(name, n, ino)| DirEntry {
                    ino: *ino,
                    kind: match n {
                        Node::Dir(_) => libc::DT_DIR,
                        Node::Link(_) => libc::DT_LNK,
                        _ => libc::DT_CHR,
                    },
                    name: name.to_vec(),
                })
                .collect()),
            (Node::Dir(_), _) if rel == b"pts" => {
                let mut v = vec![DirEntry {
                    ino: 2,
                    kind: libc::DT_CHR,
                    name: b"ptmx".to_vec(),
                }];
                if let Some(k) = self.kernel() {
                    v.extend(k.ptys.indices().into_iter().map(|n| DirEntry {
                        ino: u64::from(n) + 3,
                        kind: libc::DT_CHR,
                        name: n.to_string().into_bytes(),
                    }));
                }
                Ok(v)
            }
            (Node::Dir(_), _) => Ok(Vec::new()),
            _ => Err(Errno::ENOTDIR),
        }
    }
}

/// Fills `buf` from the host's random source.
fn fill_random(buf: &mut [u8]) -> KResult<()> {
    crate::ffi::getrandom(buf).map_err(|e| Errno::from_io(&e))
}

/// An open memory character device.
pub(super) struct CharDev {
    dev: Dev,
    stat: Stat,
}

impl FileOps for CharDev {
    fn read(&self, buf: &mut [u8], _pos: Option<u64>) -> KResult<usize> {
        match self.dev {
            Dev::Null | Dev::Tty | Dev::Ptmx => Ok(0),
            Dev::Zero | Dev::Full => {
                buf.fill(0);
                Ok(buf.len())
            }
            Dev::Random => {
                fill_random(buf)?;
                Ok(buf.len())
            }
        }
    }

    fn write(&self, buf: &[u8], _pos: Option<u64>) -> KResult<usize> {
        match self.dev {
            Dev::Full => Err(Errno::ENOSPC),
            _ => Ok(buf.len()),
        }
    }

    fn stat(&self) -> KResult<Stat> {
        Ok(self.stat)
    }

    fn seekable(&self) -> bool {
        true
    }

    fn truncate(&self, _len: u64) -> KResult<()> {
        Ok(())
    }

    fn mmap_source(&self) -> KResult<MmapSource> {
        match self.dev {
            Dev::Zero => Ok(MmapSource::Copy),
            _ => Err(Errno::ENODEV),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_behave() {
        let d = DevFs::new();
        let st = d.stat(b"null").unwrap();
        assert_eq!(st.st_mode, libc::S_IFCHR | 0o666);
        assert_eq!(st.st_rdev, libc::makedev(1, 3));
        assert_eq!(d.stat(b"urandom").unwrap().st_rdev, libc::makedev(1, 9));
        let mut buf = [7u8; 64];
        let null = d.open(b"null", libc::O_RDWR).unwrap();
        assert_eq!(null.read(&mut buf, Some(0)).unwrap(), 0);
        assert_eq!(null.write(b"xyz", Some(0)).unwrap(), 3);
        let zero = d.open(b"zero", libc::O_RDONLY).unwrap();
        assert_eq!(zero.read(&mut buf, Some(0)).unwrap(), 64);
        assert!(buf.iter().all(|&b| b == 0));
        let full = d.open(b"full", libc::O_WRONLY).unwrap();
        assert_eq!(full.write(b"x", Some(0)).err(), Some(Errno::ENOSPC));
        let r = d.open(b"urandom", libc::O_RDONLY).unwrap();
        let mut a = [0u8; 32];
        r.read(&mut a, None).unwrap();
        assert!(a.iter().any(|&b| b != 0));
        assert_eq!(d.open(b"tty", libc::O_RDWR).err(), Some(Errno::ENXIO));
        assert_eq!(d.readlink(b"stdin").unwrap(), b"/proc/self/fd/0");
        assert_eq!(d.readlink(b"null").err(), Some(Errno::EINVAL));
        assert_eq!(d.stat(b"null/x").err(), Some(Errno::ENOTDIR));
        assert_eq!(d.stat(b"nope").err(), Some(Errno::ENOENT));
        assert!(d.readdir(b"").unwrap().iter().any(|e| e.name == b"shm"));
        // Without a kernel: no ptys.
        let pts: Vec<_> = d
            .readdir(b"pts")
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(pts, vec![b"ptmx".to_vec()]);
        assert_eq!(d.stat(b"ptmx").unwrap().st_rdev, libc::makedev(5, 2));
        assert_eq!(d.open(b"ptmx", libc::O_RDWR).err(), Some(Errno::ENODEV));
        assert_eq!(d.stat(b"pts/0").err(), Some(Errno::ENOENT));
        assert_eq!(d.stat(b"pts/x/y").err(), Some(Errno::ENOENT));
    }
}
