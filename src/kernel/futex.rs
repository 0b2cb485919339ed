//! Futexes. A futex is keyed by the memory it lives in (memory-file offset
//! or host file and offset), so private and shared futexes both work and
//! process-shared futexes in MAP_SHARED memory match across processes.

use super::task::lock;
use super::wait::Waker;
use crate::errno::{Errno, KResult};
use crate::mm::{AddressSpace, Backing};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Where a futex word lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FutexKey {
    /// Offset in the memory file.
    Mem(u64),
    /// Host fd and offset (shared file mappings).
    File(i32, u64),
}

/// Computes the key of the word at `addr`.
pub fn key_of(mm: &AddressSpace, addr: u64) -> KResult<FutexKey> {
    if !addr.is_multiple_of(4) {
        return Err(Errno::EINVAL);
    }
    let v = mm.find(addr).ok_or(Errno::EFAULT)?;
    Ok(match &v.backing {
        Backing::Mem { range, off } => FutexKey::Mem(range.off + off + (addr - v.start)),
        Backing::File { fd, off } => FutexKey::File(fd.as_raw_fd(), off + (addr - v.start)),
    })
}

/// A waiter: woken by setting `woken` and waking its task.
#[derive(Debug)]
pub struct FutexWaiter {
    /// Set by a waker.
    pub woken: AtomicBool,
    /// The task's waker.
    pub waker: Waker,
    /// FUTEX_WAIT_BITSET mask.
    pub bitset: u32,
}

/// All futex queues of a sandbox.
#[derive(Debug, Default)]
pub struct Futexes {
    queues: Mutex<HashMap<FutexKey, Vec<Arc<FutexWaiter>>>>,
}

impl Futexes {
    /// Enqueues `w` on `key` if `check()` (run under the futex lock, so no
    /// wake-up is lost) succeeds.
    pub fn enqueue(
        &self,
        key: FutexKey,
        w: Arc<FutexWaiter>,
        check: impl FnOnce() -> KResult<()>,
    ) -> KResult<()> {
        let mut q = lock(&self.queues);
        check()?;
        q.entry(key).or_default().push(w);
        Ok(())
    }

    /// Removes `w` from `key` (after a timeout or signal); returns whether
    /// it was still queued.
    pub fn dequeue(&self, key: FutexKey, w: &Arc<FutexWaiter>) -> bool {
        let mut q = lock(&self.queues);
        // The waiter may have been requeued: search every queue if needed.
        if let Some(v) = q.get_mut(&key)
            && let Some(i) = v.iter().position(|x| Arc::ptr_eq(x, w))
        {
            v.remove(i);
            if v.is_empty() {
                q.remove(&key);
            }
            return true;
        }
        let mut found = false;
        q.retain(|_, v| {
            if let Some(i) = v.iter().position(|x| Arc::ptr_eq(x, w)) {
                v.remove(i);
                found = true;
            }
            !v.is_empty()
        });
        found
    }

    /// Wakes up to `n` waiters whose bitset intersects `bitset`.
    pub fn wake(&self, key: FutexKey, n: usize, bitset: u32) -> usize {
        let mut q = lock(&self.queues);
        let Some(v) = q.get_mut(&key) else { return 0 };
        let mut woken = 0;
        v.retain(|w| {
            if woken < n && w.bitset & bitset != 0 {
                w.woken.store(true, Ordering::Release);
                w.waker.wake();
                woken += 1;
                false
            } else {
                true
            }
        });
        if v.is_empty() {
            q.remove(&key);
        }
        woken
    }

    /// FUTEX_CMP_REQUEUE / FUTEX_REQUEUE: wakes `n_wake` then moves up to
    /// `n_requeue` waiters to `to`. `check` runs under the lock.
    pub fn requeue(
        &self,
        from: FutexKey,
        to: FutexKey,
        n_wake: usize,
        n_requeue: usize,
        check: impl FnOnce() -> KResult<()>,
    ) -> KResult<usize> {
        let mut q = lock(&self.queues);
        check()?;
        let mut v = q.remove(&from).unwrap_or_default();
        let mut count = 0;
        let mut rest = Vec::new();
        let mut moved = Vec::new();
        for w in v.drain(..) {
            if count < n_wake {
                w.woken.store(true, Ordering::Release);
                w.waker.wake();
                count += 1;
            } else if moved.len() < n_requeue {
                moved.push(w);
            } else {
                rest.push(w);
            }
        }
        let nmoved = moved.len();
        if !rest.is_empty() {
            q.insert(from, rest);
        }
        if !moved.is_empty() {
            q.entry(to).or_default().extend(moved);
        }
        Ok(count + nmoved)
    }
}
