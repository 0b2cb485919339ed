//! Blocking: wait queues and the per-task waker.
//!
//! A task that must wait registers its [`Waker`] on the wait queues of the
//! objects it waits for, re-checks its condition, and sleeps in `ppoll` on
//! the waker's eventfd (plus any host fds). Anything that changes an
//! object's state notifies its queue; a signal sent to the task wakes it
//! through the same eventfd.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

/// Wakes one task. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Waker(Arc<OwnedFd>);

impl Waker {
    /// A new waker (an eventfd).
    pub fn new() -> std::io::Result<Waker> {
        Ok(Waker(Arc::new(crate::ffi::eventfd()?)))
    }

    /// Wakes the task (idempotent until it consumes the wake-up).
    pub fn wake(&self) {
        crate::ffi::eventfd_write(self.0.as_raw_fd(), 1);
    }

    /// Consumes pending wake-ups; reports whether there were any (epoll
    /// uses this to learn which watched file changed).
    pub fn clear(&self) -> bool {
        crate::ffi::eventfd_read(self.0.as_raw_fd()) != 0
    }

    /// The eventfd.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }

    fn same(&self, other: &Waker) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A queue of tasks waiting for an object's state to change.
#[derive(Debug, Default)]
pub struct WaitQueue {
    waiters: Mutex<Vec<Waker>>,
}

impl WaitQueue {
    /// An empty queue.
    pub fn new() -> WaitQueue {
        WaitQueue::default()
    }

    /// Registers a waker (until `remove`).
    pub fn add(&self, w: &Waker) {
        let mut q = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        if !q.iter().any(|x| x.same(w)) {
            q.push(w.clone());
        }
    }

    /// Unregisters a waker.
    pub fn remove(&self, w: &Waker) {
        let mut q = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        q.retain(|x| !x.same(w));
    }

    /// Wakes every registered waiter.
    pub fn notify_all(&self) {
        let q = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        for w in q.iter() {
            w.wake();
        }
    }
}
