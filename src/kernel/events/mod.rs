//! Readiness and event objects: epoll, eventfd, timerfd, signalfd, and
//! interval/POSIX timers.
//!
//! Every object here is a kernel file ([`FileOps`]) that never blocks: a
//! read with nothing to give returns EAGAIN and the syscall layer waits on
//! the object's wait queue, like it does for pipes. Timers (timerfd,
//! `alarm`/`setitimer`, `timer_create`) share one kernel-wide timer thread
//! ([`timers::TimerService`]).
//!
//! [`Events`] is the kernel's part of all this: the timer thread, the
//! per-process timer tables, the queue signalfd readers wait on, and a
//! registry that tells which open file descriptions are epoll instances,
//! timerfds or signalfds (so `epoll_ctl`, `timerfd_settime` and `signalfd`
//! can find the object behind a descriptor).

pub mod epoll;
pub mod eventfd;
pub mod signalfd;
pub mod snapshot;
pub mod timerfd;
pub mod timers;

use super::fs::file::{OpenFile, Stat};
use super::task::lock;
use super::wait::WaitQueue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// The kernel's event state.
#[derive(Debug)]
pub struct Events {
    /// Notified whenever a signal is queued to any task or process, so
    /// signalfd readers (and epoll instances watching signalfds) re-check.
    pub sig_wq: Arc<WaitQueue>,
    /// The timer thread.
    pub timers: timers::TimerService,
    /// Interval and POSIX timers by process.
    pub procs: timers::ProcTimers,
    /// Which descriptions are event objects.
    pub registry: Arc<Registry>,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    /// Fresh state; the timer thread starts with the first armed timer.
    pub fn new() -> Events {
        Events {
            sig_wq: Arc::new(WaitQueue::new()),
            timers: timers::TimerService::new(),
            procs: timers::ProcTimers::default(),
            registry: Arc::new(Registry::default()),
        }
    }

    /// Called after a signal was queued: wakes signalfd readers.
    pub fn signal_queued(&self) {
        self.sig_wq.notify_all();
    }
}

/// What kind of event object a description is.
#[derive(Debug, Clone)]
pub enum Kind {
    /// An epoll instance.
    Epoll(Weak<epoll::EpollCore>),
    /// A timerfd.
    TimerFd(Weak<timerfd::TimerFd>),
    /// A signalfd.
    SignalFd(Weak<signalfd::SignalFd>),
}

/// Maps open file descriptions (by [`OpenFile::id`]) to the event objects
/// behind them. Entries go away with their description.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<HashMap<u64, Kind>>,
}

impl Registry {
    /// Records that `f` is the event object `kind`; the entry is dropped
    /// when `f` is.
    pub fn insert(self: &Arc<Self>, f: &Arc<OpenFile>, kind: Kind) {
        lock(&self.map).insert(f.id, kind);
        let me = Arc::downgrade(self);
        f.on_close(Box::new(move |id| {
            if let Some(r) = me.upgrade() {
                lock(&r.map).remove(&id);
            }
        }));
    }

    /// The kind of `f`, if it is an event object.
    pub fn kind(&self, f: &OpenFile) -> Option<Kind> {
        lock(&self.map).get(&f.id).cloned()
    }

    /// The epoll instance behind `f`.
    pub fn epoll(&self, f: &OpenFile) -> Option<Arc<epoll::EpollCore>> {
        match self.kind(f)? {
            Kind::Epoll(w) => w.upgrade(),
            _ => None,
        }
    }

    /// The timerfd behind `f`.
    pub fn timerfd(&self, f: &OpenFile) -> Option<Arc<timerfd::TimerFd>> {
        match self.kind(f)? {
            Kind::TimerFd(w) => w.upgrade(),
            _ => None,
        }
    }

    /// The signalfd behind `f`.
    pub fn signalfd(&self, f: &OpenFile) -> Option<Arc<signalfd::SignalFd>> {
        match self.kind(f)? {
            Kind::SignalFd(w) => w.upgrade(),
            _ => None,
        }
    }
}

/// Device number of anonymous inodes (Linux's anon_inodefs is an unnamed
/// device on major 0).
pub const ANON_DEV: u64 = 0xd;

static NEXT_ANON_INO: AtomicU64 = AtomicU64::new(1);

/// A fresh inode number for an anonymous-inode file.
pub fn anon_ino() -> u64 {
    NEXT_ANON_INO.fetch_add(1, Ordering::Relaxed)
}

/// `fstat` of an anonymous-inode file (mode 0600, no file type bits, as
/// Linux reports for eventfd, epoll, timerfd and signalfd).
pub fn anon_stat(ino: u64) -> Stat {
    Stat {
        st_dev: ANON_DEV,
        st_ino: ino,
        st_nlink: 1,
        st_mode: 0o600,
        st_blksize: 4096,
        ..Default::default()
    }
}

/// The sandbox tid of the task the calling kernel thread serves, if it
/// serves one. Files whose behaviour depends on the caller (signalfd reads
/// the caller's pending signals, as Linux does) use it.
///
/// Every task runs on its own kernel thread, which records whom it serves
/// (`proc::set_current`).
pub fn current_tid() -> Option<i32> {
    let (tid, _) = super::proc::current();
    (tid > 0).then_some(tid)
}
