//! A minimal read-only sysfs: what runtimes and libcs look for.
//!
//! - `devices/system/cpu/{online,possible,present,kernel_max}` and one
//!   `cpuN/` directory per CPU (glibc's `get_nprocs` reads `online`,
//!   `get_nprocs_conf` counts the `cpuN` entries);
//! - `fs/cgroup/`, empty (no cgroup hierarchy is exposed);
//! - `kernel/mm/transparent_hugepage/enabled` (allocators read it);
//! - empty `class/`, `block/`, `bus/`, `dev/`, `firmware/`, `module/`.
//!
//! Every write fails (EACCES/EPERM, or EROFS when mounted read-only).

use super::file::{DirEntry, FileOps, Stat};
use super::vfs::SyntheticFs;
use crate::errno::{Errno, KResult};

/// `SYSFS_MAGIC`.
const SYSFS_MAGIC: i64 = 0x6265_6572;

/// A fixed read-only file's contents.
pub(super) struct Text {
    data: Vec<u8>,
    stat: Stat,
}

impl FileOps for Text {
    fn read(&self, buf: &mut [u8], pos: Option<u64>) -> KResult<usize> {
        let p = usize::try_from(pos.unwrap_or(0)).unwrap_or(usize::MAX);
        if p >= self.data.len() {
            return Ok(0);
        }
        let n = buf.len().min(self.data.len() - p);
        buf[..n].copy_from_slice(&self.data[p..p + n]);
        Ok(n)
    }
    fn write(&self, _buf: &[u8], _pos: Option<u64>) -> KResult<usize> {
        Err(Errno::EBADF)
    }
    fn stat(&self) -> KResult<Stat> {
        Ok(self.stat)
    }
    fn seekable(&self) -> bool {
        true
    }
}

enum Node {
    Dir(Vec<(String, u8)>),
    File(String),
}

/// The sysfs instance (see the module docs).
#[derive(Debug)]
pub struct SysFs {
    ncpus: usize,
    pub(super) dev: u64,
}

impl Default for SysFs {
    fn default() -> Self {
        SysFs::new()
    }
}

impl SysFs {
    /// A sysfs describing the host's online CPUs.
    pub fn new() -> SysFs {
        SysFs {
            ncpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            dev: super::vfs::alloc_dev(),
        }
    }

    fn node(&self, rel: &[u8]) -> KResult<Node> {
        let rel = std::str::from_utf8(rel).map_err(|_| Errno::ENOENT)?;
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        let d = libc::DT_DIR;
        let r = libc::DT_REG;
        let dir = |v: &[(&str, u8)]| {
            Ok(Node::Dir(
                v.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
            ))
        };
        let range = if self.ncpus > 1 {
            format!("0-{}\n", self.ncpus - 1)
        } else {
            "0\n".to_string()
        };
        match parts.as_slice() {
            [] => dir(&[
                ("block", d),
                ("bus", d),
                ("class", d),
                ("dev", d),
                ("devices", d),
                ("firmware", d),
                ("fs", d),
                ("kernel", d),
                ("module", d),
            ]),
            ["block"] | ["bus"] | ["class"] | ["dev"] | ["firmware"] | ["module"] => dir(&[]),
            ["devices"] => dir(&[("system", d)]),
            ["devices", "system"] => dir(&[("cpu", d)]),
            ["devices", "system", "cpu"] => {
                let mut v: Vec<(String, u8)> = ["online", "possible", "present", "kernel_max"]
                    .iter()
                    .map(|n| (n.to_string(), r))
                    .collect();
                v.extend((0..self.ncpus).map(|i| (format!("cpu{i}"), d)));
                Ok(Node::Dir(v))
            }
            [
                "devices",
                "system",
                "cpu",
                "online" | "possible" | "present",
            ] => Ok(Node::File(range)),
            ["devices", "system", "cpu", "kernel_max"] => Ok(Node::File("8191\n".into())),
            ["devices", "system", "cpu", cpu] => {
                let n: usize = cpu
                    .strip_prefix("cpu")
                    .and_then(|n| n.parse().ok())
                    .ok_or(Errno::ENOENT)?;
                if n >= self.ncpus {
                    return Err(Errno::ENOENT);
                }
                dir(&[("online", r)])
            }
            ["devices", "system", "cpu", cpu, "online"] => {
                let n: usize = cpu
                    .strip_prefix("cpu")
                    .and_then(|n| n.parse().ok())
                    .ok_or(Errno::ENOENT)?;
                if n >= self.ncpus {
                    return Err(Errno::ENOENT);
                }
                Ok(Node::File("1\n".into()))
            }
            ["fs"] => dir(&[("cgroup", d)]),
            ["fs", "cgroup"] => dir(&[]),
            ["kernel"] => dir(&[("mm", d)]),
            ["kernel", "mm"] => dir(&[("transparent_hugepage", d)]),
            ["kernel", "mm", "transparent_hugepage"] => dir(&[("enabled", r)]),
            ["kernel", "mm", "transparent_hugepage", "enabled"] => {
                Ok(Node::File("always [madvise] never\n".into()))
            }
            _ => Err(Errno::ENOENT),
        }
    }

    fn ino(rel: &[u8]) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in rel {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        h | 1
    }
}

impl SyntheticFs for SysFs {
    fn stat(&self, rel: &[u8]) -> KResult<Stat> {
        let n = self.node(rel)?;
        let (mode, nlink) = match n {
            Node::Dir(_) => (libc::S_IFDIR | 0o755, 2),
            Node::File(_) => (libc::S_IFREG | 0o444, 1),
        };
        Ok(Stat {
            st_dev: self.dev,
            st_ino: SysFs::ino(rel),
            st_nlink: nlink,
            st_mode: mode,
            st_size: 4096,
            st_blksize: 4096,
            ..Stat::default()
        })
    }

    fn readlink(&self, rel: &[u8]) -> KResult<Vec<u8>> {
        self.node(rel)?;
        Err(Errno::EINVAL)
    }

    fn open(&self, rel: &[u8], flags: i32) -> KResult<Box<dyn FileOps>> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return Err(Errno::EACCES);
        }
        let stat = self.stat(rel)?;
        match self.node(rel)? {
            Node::File(s) => Ok(Box::new(Text {
                data: s.into_bytes(),
                stat,
            })),
            Node::Dir(_) => Err(Errno::EISDIR),
        }
    }

    fn readdir(&self, rel: &[u8]) -> KResult<Vec<DirEntry>> {
        match self.node(rel)? {
            Node::Dir(v) => Ok(v
                .into_iter()
                .map(|(name, kind)| {
                    let mut p = rel.to_vec();
                    if !p.is_empty() {
                        p.push(b'/');
                    }
                    p.extend_from_slice(name.as_bytes());
                    DirEntry {
                        ino: SysFs::ino(&p),
                        kind,
                        name: name.into_bytes(),
                    }
                })
                .collect()),
            Node::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn fs_magic(&self) -> i64 {
        SYSFS_MAGIC
    }

    fn fs_name(&self) -> &'static str {
        "sysfs"
    }
}
