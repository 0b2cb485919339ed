//! File descriptor tables.

use super::fs::file::OpenFile;
use crate::errno::{Errno, KResult};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One descriptor: the open file description and the close-on-exec flag.
#[derive(Debug, Clone)]
pub struct FdEntry {
    /// The description.
    pub file: Arc<OpenFile>,
    /// FD_CLOEXEC.
    pub cloexec: bool,
}

/// A task's descriptor table.
#[derive(Debug, Clone, Default)]
pub struct FdTable {
    fds: BTreeMap<i32, FdEntry>,
}

impl FdTable {
    /// An empty table.
    pub fn new() -> FdTable {
        FdTable::default()
    }

    /// The description behind `fd`.
    pub fn get(&self, fd: i32) -> KResult<Arc<OpenFile>> {
        self.fds
            .get(&fd)
            .map(|e| e.file.clone())
            .ok_or(Errno::EBADF)
    }

    /// The entry behind `fd`.
    pub fn entry(&self, fd: i32) -> KResult<&FdEntry> {
        self.fds.get(&fd).ok_or(Errno::EBADF)
    }

    /// Sets FD_CLOEXEC.
    pub fn set_cloexec(&mut self, fd: i32, on: bool) -> KResult<()> {
        self.fds
            .get_mut(&fd)
            .map(|e| e.cloexec = on)
            .ok_or(Errno::EBADF)
    }

    /// Installs at the lowest free descriptor >= `min`, below `limit`.
    pub fn insert_from(
        &mut self,
        min: i32,
        file: Arc<OpenFile>,
        cloexec: bool,
        limit: u64,
    ) -> KResult<i32> {
        let mut fd = min.max(0);
        for (&k, _) in self.fds.range(fd..) {
            if k != fd {
                break;
            }
            fd += 1;
        }
        if fd as u64 >= limit {
            return Err(Errno::EMFILE);
        }
        self.fds.insert(fd, FdEntry { file, cloexec });
        Ok(fd)
    }

    /// Installs at the lowest free descriptor.
    pub fn insert(&mut self, file: Arc<OpenFile>, cloexec: bool, limit: u64) -> KResult<i32> {
        self.insert_from(0, file, cloexec, limit)
    }

    /// Installs at exactly `fd`, returning what was there.
    pub fn insert_at(&mut self, fd: i32, file: Arc<OpenFile>, cloexec: bool) -> Option<FdEntry> {
        self.fds.insert(fd, FdEntry { file, cloexec })
    }

    /// Removes `fd`.
    pub fn remove(&mut self, fd: i32) -> KResult<FdEntry> {
        self.fds.remove(&fd).ok_or(Errno::EBADF)
    }

    /// Closes descriptors marked close-on-exec.
    pub fn close_on_exec(&mut self) -> Vec<FdEntry> {
        let close: Vec<i32> = self
            .fds
            .iter()
            .filter(|(_, e)| e.cloexec)
            .map(|(k, _)| *k)
            .collect();
        close.iter().filter_map(|k| self.fds.remove(k)).collect()
    }

    /// All descriptors.
    pub fn iter(&self) -> impl Iterator<Item = (&i32, &FdEntry)> {
        self.fds.iter()
    }

    /// Removes every descriptor in `[lo, hi]`.
    pub fn remove_range(&mut self, lo: i32, hi: i32) -> Vec<FdEntry> {
        let keys: Vec<i32> = self.fds.range(lo..=hi).map(|(k, _)| *k).collect();
        keys.iter().filter_map(|k| self.fds.remove(k)).collect()
    }
}
