//! The default root: a tmpfs upper layer over the read-only host directory.
//!
//! Reads see the upper layer's entry where there is one, else the lower
//! (host) entry. Every change lands in the upper layer: new nodes are made
//! there after their parent directories are *copied up* (recreated with
//! the lower directory's mode, owner and times); a regular file is copied
//! up (data into a memfd) when first opened for writing or truncated, and
//! any node before chmod/chown/utimes or a hard link. unlink/rmdir leave a
//! *whiteout* so the lower entry disappears; a directory made where a lower
//! one was removed is *opaque* (hides the lower directory's entries).
//! Renaming a directory first copies its whole merged subtree up. The host
//! directory is never written to.
//!
//! Inode numbers: lower files show their host inode number, copied-up
//! files keep it, new nodes get numbers from 2^40 up; `st_dev` is the
//! overlay's own for both layers.

use super::file::{DirEntry, FileOps, Stat};
use super::host::HostFs;
use super::path::{components, join_rel, split_last};
use super::tmpfs::{Content, Inode, NewNode, Probe, Remove, Tmpfs, new_memfd};
use super::vfs::{DirFile, MountFs, Owner, SetAttr, StatFs};
use crate::errno::{Errno, KResult};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// `OVERLAYFS_SUPER_MAGIC` for statfs.
pub const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

/// First inode number for nodes created in the upper layer.
const UPPER_INO_BASE: u64 = 1 << 40;

/// The overlay root filesystem.
pub(crate) struct Overlay {
    upper: Arc<Tmpfs>,
    lower: Arc<HostFs>,
    /// Serializes changes (which combine upper and lower lookups).
    mu: Mutex<()>,
}

/// The merged entries of directory `rel` (no `.`/`..`), sorted by name.
fn merged_list(upper: &Tmpfs, lower: &HostFs, rel: &[u8]) -> KResult<Vec<DirEntry>> {
    let (p, lp) = upper.probe(rel)?;
    let mut out: BTreeMap<Vec<u8>, DirEntry> = BTreeMap::new();
    let mut hidden: HashSet<Vec<u8>> = HashSet::new();
    let has_upper = match &p {
        Probe::Node(n) => {
            if !n.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            true
        }
        Probe::Whiteout => return Err(Errno::ENOENT),
        Probe::Absent if !lp => return Err(Errno::ENOENT),
        Probe::Absent => false,
    };
    let merge_lower = match &p {
        Probe::Node(n) => lp && !n.is_opaque(),
        _ => true,
    };
    if has_upper {
        let (entries, _) = upper.dir_raw(rel)?;
        for (name, v) in entries {
            match v {
                Some((ino, kind)) => {
                    out.insert(name.clone(), DirEntry { ino, kind, name });
                }
                None => {
                    hidden.insert(name);
                }
            }
        }
    }
    if merge_lower {
        match lower.list(rel) {
            Ok(v) => {
                for e in v {
                    if !out.contains_key(&e.name) && !hidden.contains(&e.name) {
                        out.insert(e.name.clone(), e);
                    }
                }
            }
            Err(_) if has_upper => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out.into_values().collect())
}

fn merged_lstat(upper: &Tmpfs, lower: &HostFs, rel: &[u8]) -> KResult<Stat> {
    let (p, lp) = upper.probe(rel)?;
    match p {
        Probe::Node(n) => {
            let mut st = n.stat();
            if n.is_dir() && lp && !n.is_opaque() {
                // A merged directory's link count is unknown (as overlayfs
                // says): 1 tells fts/find not to count subdirectories.
                st.st_nlink = 1;
            }
            Ok(st)
        }
        Probe::Whiteout => Err(Errno::ENOENT),
        Probe::Absent if lp => lower.lstat_rel(rel),
        Probe::Absent => Err(Errno::ENOENT),
    }
}

impl Overlay {
    /// An overlay over `lower` with an empty upper layer.
    pub(crate) fn new(lower: Arc<HostFs>) -> KResult<Overlay> {
        let st = lower.lstat_rel(b"")?;
        let upper = Tmpfs::with_root(
            lower.dev(),
            st.st_ino,
            UPPER_INO_BASE,
            None,
            st.st_mode,
            Owner {
                uid: st.st_uid,
                gid: st.st_gid,
            },
        );
        upper.set_root_meta(&st);
        Ok(Overlay {
            upper: Arc::new(upper),
            lower,
            mu: Mutex::new(()),
        })
    }

    /// An overlay of a restored upper layer over `lower`.
    pub(crate) fn from_parts(upper: Arc<Tmpfs>, lower: Arc<HostFs>) -> Overlay {
        Overlay {
            upper,
            lower,
            mu: Mutex::new(()),
        }
    }

    /// The upper (tmpfs) layer.
    pub(crate) fn upper(&self) -> &Arc<Tmpfs> {
        &self.upper
    }

    /// The lower (host) layer.
    pub(crate) fn lower(&self) -> &Arc<HostFs> {
        &self.lower
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.mu.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the lower layer shows an entry at `rel` (ignoring upper
    /// entries at `rel` itself).
    fn lower_visible(&self, rel: &[u8]) -> KResult<bool> {
        let (p, lp) = self.upper.probe(rel)?;
        if matches!(p, Probe::Whiteout) || !lp {
            return Ok(false);
        }
        Ok(self.lower.lstat_rel(rel).is_ok())
    }

    /// Copies up the single node at `rel`, whose parent is in the upper
    /// layer already. `data`: copy a regular file's bytes (else it comes up
    /// empty, for a truncation to 0).
    fn copy_up_one(&self, rel: &[u8], data: bool) -> KResult<Arc<Inode>> {
        let (p, lp) = self.upper.probe(rel)?;
        match p {
            Probe::Node(n) => return Ok(n),
            Probe::Whiteout => return Err(Errno::ENOENT),
            Probe::Absent if !lp => return Err(Errno::ENOENT),
            Probe::Absent => {}
        }
        let st = self.lower.lstat_rel(rel)?;
        let content = match st.file_type() {
            libc::S_IFDIR => Content::Dir { opaque: false },
            libc::S_IFLNK => Content::Symlink(self.lower.readlink_rel(rel)?),
            libc::S_IFREG if data && st.st_size > 0 => {
                let src = self.lower.open_fd(rel, libc::O_RDONLY)?;
                let memfd = new_memfd()?;
                let mut from = std::fs::File::from(src);
                let mut to = std::fs::File::from(memfd.try_clone().map_err(Errno::from)?);
                let n = std::io::copy(&mut from, &mut to).map_err(Errno::from)?;
                Content::Data(memfd, n)
            }
            libc::S_IFREG | libc::S_IFIFO | libc::S_IFSOCK | libc::S_IFCHR | libc::S_IFBLK => {
                Content::Empty
            }
            _ => return Err(Errno::EIO),
        };
        let spec = NewNode {
            mode: st.st_mode,
            owner: Owner {
                uid: st.st_uid,
                gid: st.st_gid,
            },
            rdev: st.st_rdev,
            ino: Some(st.st_ino),
            times: Some([
                (st.st_atime, st.st_atime_nsec),
                (st.st_mtime, st.st_mtime_nsec),
                (st.st_ctime, st.st_ctime_nsec),
            ]),
            content,
        };
        self.upper.create_node(rel, spec)
    }

    /// Copies `rel` and its ancestors up; returns the upper node.
    fn copy_up(&self, rel: &[u8], data: bool) -> KResult<Arc<Inode>> {
        let comps: Vec<&[u8]> = components(rel).collect();
        let mut prefix: Vec<u8> = Vec::new();
        let mut node = None;
        for (i, c) in comps.iter().enumerate() {
            prefix = join_rel(&prefix, c);
            let last = i + 1 == comps.len();
            let n = self.copy_up_one(&prefix, data || !last)?;
            if !last && !n.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            node = Some(n);
        }
        match node {
            Some(n) => Ok(n),
            None => self.upper.lookup(b""),
        }
    }

    /// Makes sure the parent directory of `rel` is in the upper layer.
    fn ensure_parent(&self, rel: &[u8]) -> KResult<()> {
        let n = self.copy_up(split_last(rel).0, true)?;
        if !n.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(())
    }

    /// Copies `rel` up with everything below it, making directories opaque
    /// (self-contained), so the subtree can move.
    fn copy_up_tree(&self, rel: &[u8]) -> KResult<()> {
        let n = self.copy_up(rel, true)?;
        if !n.is_dir() || n.is_opaque() {
            return Ok(());
        }
        for e in merged_list(&self.upper, &self.lower, rel)? {
            self.copy_up_tree(&join_rel(rel, &e.name))?;
        }
        self.upper.set_opaque(rel)
    }

    fn merged_dir(&self, rel: &[u8], st: Stat) -> KResult<Box<dyn FileOps>> {
        let parent_ino = if rel.is_empty() {
            st.st_ino
        } else {
            merged_lstat(&self.upper, &self.lower, split_last(rel).0)
                .map(|s| s.st_ino)
                .unwrap_or(st.st_ino)
        };
        let (u1, l1, r1) = (self.upper.clone(), self.lower.clone(), rel.to_vec());
        let (u2, l2, r2) = (self.upper.clone(), self.lower.clone(), rel.to_vec());
        Ok(Box::new(DirFile::new(
            move || {
                let mut v = vec![
                    DirEntry {
                        ino: st.st_ino,
                        kind: libc::DT_DIR,
                        name: b".".to_vec(),
                    },
                    DirEntry {
                        ino: parent_ino,
                        kind: libc::DT_DIR,
                        name: b"..".to_vec(),
                    },
                ];
                v.extend(merged_list(&u1, &l1, &r1)?);
                Ok(v)
            },
            move || {
                Ok(merged_lstat(&u2, &l2, &r2)
                    .ok()
                    .filter(|s| s.st_ino == st.st_ino)
                    .unwrap_or(st))
            },
        )))
    }
}

impl MountFs for Overlay {
    fn fs_type(&self) -> &'static str {
        "overlay"
    }

    fn lstat(&self, rel: &[u8]) -> KResult<Stat> {
        merged_lstat(&self.upper, &self.lower, rel)
    }

    fn readlink(&self, rel: &[u8]) -> KResult<Vec<u8>> {
        let (p, lp) = self.upper.probe(rel)?;
        match p {
            Probe::Node(n) => n.target(),
            Probe::Absent if lp => self.lower.readlink_rel(rel),
            _ => Err(Errno::ENOENT),
        }
    }

    fn open(&self, rel: &[u8], flags: i32, st: &Stat) -> KResult<Box<dyn FileOps>> {
        let (p, lp) = self.upper.probe(rel)?;
        match p {
            Probe::Node(n) => {
                if n.is_dir() && lp && !n.is_opaque() {
                    self.merged_dir(rel, merged_lstat(&self.upper, &self.lower, rel)?)
                } else {
                    self.upper.open_node(n, rel, flags)
                }
            }
            Probe::Whiteout => Err(Errno::ENOENT),
            Probe::Absent if !lp => Err(Errno::ENOENT),
            Probe::Absent => {
                let acc = flags & libc::O_ACCMODE;
                let writes =
                    acc == libc::O_WRONLY || acc == libc::O_RDWR || flags & libc::O_TRUNC != 0;
                match st.file_type() {
                    libc::S_IFDIR => self.merged_dir(rel, *st),
                    libc::S_IFREG if !writes => self.lower.open_ops(rel, libc::O_RDONLY, st),
                    libc::S_IFREG | libc::S_IFIFO => {
                        let n = {
                            let _g = self.lock();
                            self.copy_up(rel, true)?
                        };
                        self.upper.open_node(n, rel, flags)
                    }
                    libc::S_IFLNK => Err(Errno::ELOOP),
                    _ => Err(Errno::ENXIO),
                }
            }
        }
    }

    fn create(&self, rel: &[u8], flags: i32, mode: u32, owner: Owner) -> KResult<Box<dyn FileOps>> {
        let node = {
            let _g = self.lock();
            if self.lower_visible(rel)? {
                return Err(Errno::EEXIST);
            }
            self.ensure_parent(rel)?;
            self.upper.create_node(
                rel,
                NewNode::new(libc::S_IFREG | (mode & 0o7777), owner, Content::Empty),
            )?
        };
        self.upper.open_node(node, rel, flags)
    }

    fn mkdir(&self, rel: &[u8], mode: u32, owner: Owner) -> KResult<()> {
        let _g = self.lock();
        if self.lower_visible(rel)? {
            return Err(Errno::EEXIST);
        }
        self.ensure_parent(rel)?;
        self.upper.mkdir(rel, mode, owner)
    }

    fn mknod(&self, rel: &[u8], mode: u32, rdev: u64, owner: Owner) -> KResult<()> {
        let _g = self.lock();
        if self.lower_visible(rel)? {
            return Err(Errno::EEXIST);
        }
        self.ensure_parent(rel)?;
        self.upper.mknod(rel, mode, rdev, owner)
    }

    fn symlink(&self, rel: &[u8], target: &[u8], owner: Owner) -> KResult<()> {
        let _g = self.lock();
        if self.lower_visible(rel)? {
            return Err(Errno::EEXIST);
        }
        self.ensure_parent(rel)?;
        self.upper.symlink(rel, target, owner)
    }

    fn unlink(&self, rel: &[u8]) -> KResult<()> {
        let _g = self.lock();
        if merged_lstat(&self.upper, &self.lower, rel)?.is_dir() {
            return Err(Errno::EISDIR);
        }
        let whiteout = self.lower_visible(rel)?;
        if whiteout {
            self.ensure_parent(rel)?;
        }
        self.upper.remove(rel, Remove::Unlink, whiteout)
    }

    fn rmdir(&self, rel: &[u8]) -> KResult<()> {
        let _g = self.lock();
        if !merged_lstat(&self.upper, &self.lower, rel)?.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if !merged_list(&self.upper, &self.lower, rel)?.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        let whiteout = self.lower_visible(rel)?;
        if whiteout {
            self.ensure_parent(rel)?;
        }
        self.upper.remove(rel, Remove::Rmdir, whiteout)
    }

    fn rename(&self, old: &[u8], new: &[u8], flags: u32) -> KResult<()> {
        let _g = self.lock();
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let ost = merged_lstat(&self.upper, &self.lower, old)?;
        let nst = merged_lstat(&self.upper, &self.lower, new).ok();
        if let Some(nst) = &nst {
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(Errno::EEXIST);
            }
            if !exchange && nst.is_dir() && !merged_list(&self.upper, &self.lower, new)?.is_empty()
            {
                return Err(Errno::ENOTEMPTY);
            }
        } else if exchange {
            return Err(Errno::ENOENT);
        }
        let whiteout_old = !exchange && self.lower_visible(old)?;
        if ost.is_dir() {
            self.copy_up_tree(old)?;
        } else {
            self.copy_up(old, true)?;
        }
        if exchange {
            if nst.is_some_and(|s| s.is_dir()) {
                self.copy_up_tree(new)?;
            } else {
                self.copy_up(new, true)?;
            }
        }
        self.ensure_parent(new)?;
        self.upper.rename(old, new, flags, whiteout_old)
    }

    fn link(&self, old: &[u8], new: &[u8]) -> KResult<()> {
        let _g = self.lock();
        if self.lower_visible(new)? {
            return Err(Errno::EEXIST);
        }
        self.copy_up(old, true)?;
        self.ensure_parent(new)?;
        self.upper.link(old, new)
    }

    fn setattr(&self, rel: &[u8], attr: &SetAttr) -> KResult<()> {
        let _g = self.lock();
        self.copy_up(rel, attr.size != Some(0))?;
        self.upper.setattr_node(rel, attr)
    }

    fn statfs(&self, _rel: &[u8]) -> KResult<StatFs> {
        self.lower.statfs_as(OVERLAYFS_SUPER_MAGIC, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> (tempfile::TempDir, Overlay) {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("etc/sub")).unwrap();
        std::fs::write(r.join("etc/passwd"), b"root:x:0:0\n").unwrap();
        std::fs::write(r.join("etc/sub/a"), b"A").unwrap();
        std::fs::write(r.join("etc/sub/b"), b"B").unwrap();
        let lower = Arc::new(HostFs::new(r, false, 99).unwrap());
        (d, Overlay::new(lower).unwrap())
    }

    fn names(ov: &Overlay, rel: &[u8]) -> Vec<String> {
        merged_list(&ov.upper, &ov.lower, rel)
            .unwrap()
            .into_iter()
            .map(|e| String::from_utf8(e.name).unwrap())
            .collect()
    }

    #[test]
    fn copy_up_on_write_keeps_host_intact() {
        let (d, ov) = fixture();
        let st = ov.lstat(b"etc/passwd").unwrap();
        assert_eq!(st.st_dev, 99);
        let f = ov.open(b"etc/passwd", libc::O_RDWR, &st).unwrap();
        assert_eq!(f.write(b"ROOT", Some(0)).unwrap(), 4);
        let mut buf = [0u8; 64];
        let n = f.read(&mut buf, Some(0)).unwrap();
        assert_eq!(&buf[..n], b"ROOT:x:0:0\n");
        assert_eq!(
            ov.lstat(b"etc/passwd").unwrap().st_ino,
            st.st_ino,
            "copy-up keeps the inode number"
        );
        assert_eq!(
            std::fs::read(d.path().join("etc/passwd")).unwrap(),
            b"root:x:0:0\n"
        );
    }

    #[test]
    fn whiteouts_and_opaque_dirs() {
        let (d, ov) = fixture();
        ov.unlink(b"etc/sub/a").unwrap();
        assert_eq!(ov.lstat(b"etc/sub/a").err(), Some(Errno::ENOENT));
        assert_eq!(names(&ov, b"etc/sub"), ["b"]);
        assert_eq!(ov.rmdir(b"etc/sub").err(), Some(Errno::ENOTEMPTY));
        ov.unlink(b"etc/sub/b").unwrap();
        ov.rmdir(b"etc/sub").unwrap();
        assert_eq!(names(&ov, b"etc"), ["passwd"]);
        ov.mkdir(b"etc/sub", 0o755, Owner { uid: 0, gid: 0 })
            .unwrap();
        assert!(names(&ov, b"etc/sub").is_empty(), "recreated dir is opaque");
        assert!(d.path().join("etc/sub/a").exists());
    }
}
