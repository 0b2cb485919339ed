//! Advisory file locks: `flock(2)` locks and `fcntl(2)` byte-range locks
//! (classic per-process POSIX locks and open-file-description locks).
//!
//! One [`LockTable`] per sandbox (it lives in the [`super::vfs::Vfs`]),
//! keyed by the file's `(st_dev, st_ino)`, so every process of the sandbox
//! sees the same locks. The table never blocks: a conflicting request
//! fails with EAGAIN, and a caller that wants to wait registers on
//! [`LockTable::wait_queue`], which is notified whenever a lock goes away.
//!
//! Semantics follow Linux (see flock(2), fcntl(2) "Advisory record
//! locking" and "Open file description locks"):
//! - flock locks belong to an open file description, are released by
//!   `LOCK_UN` or when the description's last descriptor closes, and a
//!   conversion drops the old lock before trying the new one;
//! - POSIX locks belong to a process, are released when the process closes
//!   *any* descriptor of the file or exits, and split and merge by range;
//! - OFD locks are byte ranges owned by an open file description; they
//!   conflict with POSIX locks (but not with flock locks).
//!
//! Deadlock detection (EDEADLK) is not done.

use crate::errno::{Errno, KResult};
use crate::kernel::task::{TgState, ThreadGroup, lock};
use crate::kernel::wait::WaitQueue;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

/// Identifies a file: `(st_dev, st_ino)`.
pub type FileKey = (u64, u64);

/// Who holds a byte-range lock.
#[derive(Debug, Clone)]
pub enum LockOwner {
    /// A classic POSIX lock of a process (its pid in the sandbox).
    Process(Weak<ThreadGroup>, i32),
    /// An open file description lock (the description's id).
    Ofd(u64),
}

impl LockOwner {
    fn same(&self, other: &LockOwner) -> bool {
        match (self, other) {
            (LockOwner::Process(a, _), LockOwner::Process(b, _)) => Weak::ptr_eq(a, b),
            (LockOwner::Ofd(a), LockOwner::Ofd(b)) => a == b,
            _ => false,
        }
    }

    /// A process owner whose process is gone no longer holds anything.
    fn alive(&self) -> bool {
        match self {
            LockOwner::Process(w, _) => w
                .upgrade()
                .is_some_and(|g| lock(&g.inner).state == TgState::Running),
            LockOwner::Ofd(_) => true,
        }
    }

    /// The pid F_GETLK reports (-1 for OFD locks).
    pub fn pid(&self) -> i32 {
        match self {
            LockOwner::Process(_, pid) => *pid,
            LockOwner::Ofd(_) => -1,
        }
    }
}

/// A byte range `[start, end)`; `end == u64::MAX` reaches to the end of
/// the file however it grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// One past the last byte (u64::MAX: to end of file).
    pub end: u64,
}

impl Range {
    fn overlaps(&self, o: &Range) -> bool {
        self.start < o.end && o.start < self.end
    }
}

/// A byte-range lock as F_GETLK reports it.
#[derive(Debug, Clone)]
pub struct RangeLock {
    /// Who holds it.
    pub owner: LockOwner,
    /// Write (exclusive) or read (shared).
    pub write: bool,
    /// The bytes.
    pub range: Range,
}

#[derive(Default)]
struct FileLocks {
    /// flock locks: (description id, exclusive).
    flocks: Vec<(u64, bool)>,
    /// Byte-range locks, POSIX and OFD.
    ranges: Vec<RangeLock>,
}

impl FileLocks {
    fn prune(&mut self) -> bool {
        let before = self.ranges.len();
        self.ranges.retain(|l| l.owner.alive());
        self.ranges.len() != before
    }

    fn is_empty(&self) -> bool {
        self.flocks.is_empty() && self.ranges.is_empty()
    }

    /// Removes `owner`'s locks inside `r`, splitting those that straddle it.
    fn carve(&mut self, owner: &LockOwner, r: Range) {
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        for l in self.ranges.drain(..) {
            if !l.owner.same(owner) || !l.range.overlaps(&r) {
                out.push(l);
                continue;
            }
            if l.range.start < r.start {
                out.push(RangeLock {
                    range: Range {
                        start: l.range.start,
                        end: r.start,
                    },
                    ..l.clone()
                });
            }
            if r.end < l.range.end {
                out.push(RangeLock {
                    range: Range {
                        start: r.end,
                        end: l.range.end,
                    },
                    ..l
                });
            }
        }
        self.ranges = out;
    }

    /// Inserts `owner`'s lock, merging with its adjacent or overlapping
    /// locks of the same type (after `carve`, only adjacent ones remain).
    fn insert(&mut self, owner: &LockOwner, write: bool, mut r: Range) {
        self.ranges.retain(|l| {
            let touch = l.owner.same(owner)
                && l.write == write
                && (l.range.end == r.start || r.end == l.range.start || l.range.overlaps(&r));
            if touch {
                r.start = r.start.min(l.range.start);
                r.end = r.end.max(l.range.end);
            }
            !touch
        });
        self.ranges.push(RangeLock {
            owner: owner.clone(),
            write,
            range: r,
        });
    }

    fn conflict(&self, owner: &LockOwner, write: bool, r: &Range) -> Option<&RangeLock> {
        self.ranges
            .iter()
            .find(|l| !l.owner.same(owner) && (write || l.write) && l.range.overlaps(r))
    }
}

/// Every advisory lock of one sandbox (see the module docs).
#[derive(Default)]
pub struct LockTable {
    files: Mutex<HashMap<FileKey, FileLocks>>,
    /// (description id, file) pairs whose close hook is installed.
    hooked: Mutex<HashSet<(u64, FileKey)>>,
    wq: WaitQueue,
}

impl std::fmt::Debug for LockTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LockTable({} files)", lock(&self.files).len())
    }
}

impl LockTable {
    /// An empty table.
    pub fn new() -> Arc<LockTable> {
        Arc::new(LockTable::default())
    }

    /// Notified whenever a lock is released.
    pub fn wait_queue(&self) -> &WaitQueue {
        &self.wq
    }

    /// Whether description `ofd` needs its close hook installed for `key`
    /// (true the first time it is asked).
    pub fn needs_hook(&self, ofd: u64, key: FileKey) -> bool {
        lock(&self.hooked).insert((ofd, key))
    }

    /// flock(2) for description `ofd`: `Some(exclusive)` locks, `None`
    /// unlocks. EAGAIN on conflict (the old lock of a conversion is gone
    /// by then, as on Linux).
    pub fn flock(&self, key: FileKey, ofd: u64, want: Option<bool>) -> KResult<()> {
        let mut files = lock(&self.files);
        let fl = files.entry(key).or_default();
        let mut released = false;
        if let Some(i) = fl.flocks.iter().position(|(o, _)| *o == ofd) {
            if Some(fl.flocks[i].1) == want {
                return Ok(());
            }
            fl.flocks.remove(i);
            released = true;
        }
        let res = match want {
            None => Ok(()),
            Some(excl) => {
                if fl.flocks.iter().any(|(o, e)| *o != ofd && (excl || *e)) {
                    Err(Errno::EAGAIN)
                } else {
                    fl.flocks.push((ofd, excl));
                    Ok(())
                }
            }
        };
        if fl.is_empty() {
            files.remove(&key);
        }
        drop(files);
        if released {
            self.wq.notify_all();
        }
        res
    }

    /// The first lock that conflicts with `owner` taking `r` (F_GETLK).
    pub fn test(
        &self,
        key: FileKey,
        owner: &LockOwner,
        write: bool,
        r: Range,
    ) -> Option<RangeLock> {
        let mut files = lock(&self.files);
        let fl = files.get_mut(&key)?;
        fl.prune();
        fl.conflict(owner, write, &r).cloned()
    }

    /// F_SETLK: `Some(write)` locks `r` for `owner`, `None` unlocks it.
    /// EAGAIN on conflict.
    pub fn set(
        &self,
        key: FileKey,
        owner: &LockOwner,
        want: Option<bool>,
        r: Range,
    ) -> KResult<()> {
        let mut files = lock(&self.files);
        let fl = files.entry(key).or_default();
        let mut released = fl.prune();
        let res = match want {
            None => {
                fl.carve(owner, r);
                released = true;
                Ok(())
            }
            Some(write) => {
                if fl.conflict(owner, write, &r).is_some() {
                    Err(Errno::EAGAIN)
                } else {
                    // Changing a write lock to a read lock releases.
                    released |= fl
                        .ranges
                        .iter()
                        .any(|l| l.owner.same(owner) && l.write && !write && l.range.overlaps(&r));
                    fl.carve(owner, r);
                    fl.insert(owner, write, r);
                    Ok(())
                }
            }
        };
        if fl.is_empty() {
            files.remove(&key);
        }
        drop(files);
        if released {
            self.wq.notify_all();
        }
        res
    }

    /// Releases every POSIX lock process `tg` holds on `key` (it closed a
    /// descriptor of the file).
    pub fn release_process(&self, key: FileKey, tg: &Arc<ThreadGroup>) {
        let w = Arc::downgrade(tg);
        let mut files = lock(&self.files);
        let Some(fl) = files.get_mut(&key) else {
            return;
        };
        let before = fl.ranges.len();
        fl.ranges
            .retain(|l| !matches!(&l.owner, LockOwner::Process(o, _) if Weak::ptr_eq(o, &w)));
        let changed = fl.ranges.len() != before;
        if fl.is_empty() {
            files.remove(&key);
        }
        drop(files);
        if changed {
            self.wq.notify_all();
        }
    }

    /// Releases the flock and OFD locks of description `ofd` on `key` (its
    /// last descriptor closed).
    pub fn release_ofd(&self, key: FileKey, ofd: u64) {
        lock(&self.hooked).remove(&(ofd, key));
        let mut files = lock(&self.files);
        let Some(fl) = files.get_mut(&key) else {
            return;
        };
        let before = (fl.flocks.len(), fl.ranges.len());
        fl.flocks.retain(|(o, _)| *o != ofd);
        fl.ranges
            .retain(|l| !matches!(l.owner, LockOwner::Ofd(o) if o == ofd));
        let changed = before != (fl.flocks.len(), fl.ranges.len());
        if fl.is_empty() {
            files.remove(&key);
        }
        drop(files);
        if changed {
            self.wq.notify_all();
        }
    }

    /// Whether any lock is held at all (a cheap test before work on close).
    pub fn any(&self) -> bool {
        !lock(&self.files).is_empty()
    }

    /// Whether any process holds a lock on `key` (for /proc/locks-style
    /// inspection and tests).
    pub fn is_locked(&self, key: FileKey) -> bool {
        lock(&self.files).get(&key).is_some_and(|f| !f.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: FileKey = (1, 2);

    fn r(start: u64, end: u64) -> Range {
        Range { start, end }
    }

    #[test]
    fn flock_shared_exclusive_and_conversion() {
        let t = LockTable::new();
        t.flock(K, 1, Some(false)).unwrap();
        t.flock(K, 2, Some(false)).unwrap();
        assert_eq!(t.flock(K, 3, Some(true)), Err(Errno::EAGAIN));
        // Converting 1 to exclusive fails (2 holds shared) and loses 1's lock.
        assert_eq!(t.flock(K, 1, Some(true)), Err(Errno::EAGAIN));
        t.flock(K, 2, None).unwrap();
        t.flock(K, 3, Some(true)).unwrap();
        assert_eq!(t.flock(K, 1, Some(false)), Err(Errno::EAGAIN));
        t.release_ofd(K, 3);
        t.flock(K, 1, Some(false)).unwrap();
        t.flock(K, 1, None).unwrap();
        assert!(!t.is_locked(K));
    }

    #[test]
    fn ranges_split_merge_and_conflict() {
        let t = LockTable::new();
        let a = LockOwner::Ofd(10);
        let b = LockOwner::Ofd(11);
        t.set(K, &a, Some(true), r(0, 100)).unwrap();
        assert!(t.test(K, &b, false, r(50, 60)).is_some());
        assert!(
            t.test(K, &a, true, r(50, 60)).is_none(),
            "own locks never conflict"
        );
        // Unlock the middle: two pieces remain.
        t.set(K, &a, None, r(40, 60)).unwrap();
        assert!(t.test(K, &b, true, r(40, 60)).is_none());
        assert_eq!(t.test(K, &b, false, r(30, 45)).unwrap().range, r(0, 40));
        assert_eq!(t.test(K, &b, false, r(55, 70)).unwrap().range, r(60, 100));
        t.set(K, &b, Some(false), r(40, 60)).unwrap();
        t.set(K, &a, Some(false), r(100, u64::MAX)).unwrap();
        assert_eq!(t.set(K, &b, Some(true), r(1000, 1001)), Err(Errno::EAGAIN));
        t.set(K, &b, Some(false), r(1000, 1001)).unwrap();
        // Downgrading a's first piece to read merges nothing across b.
        t.set(K, &a, Some(false), r(0, 40)).unwrap();
        t.release_ofd(K, 10);
        t.release_ofd(K, 11);
        assert!(!t.is_locked(K));
    }
}
