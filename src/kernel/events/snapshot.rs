//! Checkpoint of event files: what an eventfd, timerfd, signalfd or epoll
//! description holds, and rebuilding one from it in a restoring kernel.
//!
//! Times are saved relative to the moment of the save and re-armed
//! relative to the moment of the restore, so the time the sandbox spends
//! checkpointed does not count (monotonic continuity). An epoll instance
//! refers to other descriptions by their index in the saved list; the
//! restorer rebuilds every description first ([`rebuild`], epoll instances
//! empty) and then fills the interest lists ([`restore_interests`]), so
//! nested instances and any order of the list work.

use super::Kind;
use super::epoll::{EpollCore, EpollFile};
use super::eventfd::EventFd;
use super::signalfd::{SignalFd, SignalFdFile};
use super::timerfd::{TimerFd, TimerFdFile};
use crate::kernel::fs::file::OpenFile;
use crate::kernel::{Errno, Kernel};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// A saved event file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventFileState {
    /// An eventfd.
    EventFd {
        /// The counter.
        count: u64,
        /// EFD_SEMAPHORE.
        semaphore: bool,
    },
    /// A timerfd.
    TimerFd {
        /// Its clock.
        clock: i32,
        /// Time from the save to the next expiry (None: disarmed).
        remaining: Option<Duration>,
        /// Period (zero: one-shot).
        interval: Duration,
        /// Expirations not yet read.
        ticks: u64,
    },
    /// A signalfd.
    SignalFd {
        /// The signals it reads.
        mask: u64,
    },
    /// An epoll instance.
    Epoll {
        /// Its interest list, in report order.
        interests: Vec<EpollInterestState>,
    },
}

/// A saved epoll interest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpollInterestState {
    /// The descriptor number it was added with.
    pub fd: i32,
    /// The watched description: its index in the saved files.
    pub file: usize,
    /// Events and flags (EPOLLET, EPOLLONESHOT; no event bit left: a
    /// one-shot that fired).
    pub events: u32,
    /// User data.
    pub data: u64,
    /// Edge-triggered: a report is due.
    pub pending: bool,
    /// Edge-triggered on a file without a wait queue: readiness last seen.
    pub last: u32,
}

/// Why a saved event file cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventRestoreError {
    /// An interest list was given for a description that is no epoll
    /// instance.
    #[error("interest list for a file that is not an epoll instance")]
    NotEpoll,
    /// An interest names a description the state does not have.
    #[error("epoll interest on unknown file {0}")]
    BadFile(usize),
    /// The interest could not be added.
    #[error("epoll interest on fd {fd}: {err:?}")]
    Interest {
        /// Its descriptor number.
        fd: i32,
        /// Why.
        err: Errno,
    },
    /// A kernel object could not be made.
    #[error("cannot create the event object: {0:?}")]
    Create(Errno),
}

impl From<EventRestoreError> for Errno {
    fn from(e: EventRestoreError) -> Errno {
        match e {
            EventRestoreError::Interest { err, .. } | EventRestoreError::Create(err) => err,
            _ => Errno::EINVAL,
        }
    }
}

/// The state of `f` if it is an event file (None otherwise), times
/// relative to `now`. An epoll instance comes back with an empty interest
/// list: fill it with [`epoll_interests`] once every description has an
/// index.
pub fn snapshot(f: &OpenFile, now: Instant) -> Option<EventFileState> {
    let any = f.ops.as_any();
    if let Some(e) = any.downcast_ref::<EventFd>() {
        Some(EventFileState::EventFd {
            count: e.value(),
            semaphore: e.is_semaphore(),
        })
    } else if let Some(t) = any.downcast_ref::<TimerFdFile>() {
        let (remaining, interval, ticks) = t.0.snapshot(now);
        Some(EventFileState::TimerFd {
            clock: t.0.clock,
            remaining,
            interval,
            ticks,
        })
    } else if let Some(s) = any.downcast_ref::<SignalFdFile>() {
        Some(EventFileState::SignalFd { mask: s.0.mask() })
    } else if any.downcast_ref::<EpollFile>().is_some() {
        Some(EventFileState::Epoll {
            interests: Vec::new(),
        })
    } else {
        None
    }
}

/// The interest list of the epoll description `f` (empty if it is none).
/// `index_of` maps a watched description (by `Arc::as_ptr` address) to
/// its index in the saved files; interests on descriptions that were not
/// saved (nothing the sandbox can reach holds them) are left out.
pub fn epoll_interests(
    f: &OpenFile,
    index_of: impl Fn(usize) -> Option<usize>,
) -> Vec<EpollInterestState> {
    let Some(ep) = f.ops.as_any().downcast_ref::<EpollFile>() else {
        return Vec::new();
    };
    ep.0.snapshot()
        .into_iter()
        .filter(|i| i.file.strong_count() > 0)
        .filter_map(|i| {
            Some(EpollInterestState {
                fd: i.fd,
                file: index_of(Weak::as_ptr(&i.file) as usize)?,
                events: i.events,
                data: i.data,
                pending: i.pending,
                last: i.last,
            })
        })
        .collect()
}

/// Rebuilds a saved event file in `k` with status `flags`: registered
/// with the kernel's event registry, a timerfd armed on its timer thread
/// relative to `now`, an epoll instance still empty (see
/// [`restore_interests`]).
pub fn rebuild(
    k: &Arc<Kernel>,
    st: &EventFileState,
    flags: i32,
    path: Vec<u8>,
    now: Instant,
) -> Result<Arc<OpenFile>, EventRestoreError> {
    let reg = &k.events.registry;
    Ok(match st {
        EventFileState::EventFd { count, semaphore } => {
            OpenFile::new(Box::new(EventFd::new(*count, *semaphore)), flags, path)
        }
        EventFileState::TimerFd {
            clock,
            remaining,
            interval,
            ticks,
        } => {
            let t = TimerFd::restored(*clock, *remaining, *interval, *ticks, now);
            let f = OpenFile::new(Box::new(TimerFdFile(t.clone())), flags, path);
            reg.insert(&f, Kind::TimerFd(Arc::downgrade(&t)));
            if let Some(at) = t.next_expiry() {
                let w: Weak<dyn super::timers::Expire> =
                    Arc::downgrade(&(t.clone() as Arc<dyn super::timers::Expire>));
                k.events.timers.arm(t.id, at, w);
            }
            f
        }
        EventFileState::SignalFd { mask } => {
            let s = SignalFd::new(k, *mask);
            let f = OpenFile::new(Box::new(SignalFdFile(s.clone())), flags, path);
            reg.insert(&f, Kind::SignalFd(Arc::downgrade(&s)));
            f
        }
        EventFileState::Epoll { .. } => {
            let core = EpollCore::new(reg.clone()).map_err(EventRestoreError::Create)?;
            let f = OpenFile::new(Box::new(EpollFile(core.clone())), flags, path);
            reg.insert(&f, Kind::Epoll(Arc::downgrade(&core)));
            f
        }
    })
}

/// Fills the interest list of the rebuilt epoll description `f` from
/// `st`; `files` are all the rebuilt descriptions, by saved index. Does
/// nothing for other kinds of state.
pub fn restore_interests(
    f: &OpenFile,
    st: &EventFileState,
    files: &[Arc<OpenFile>],
) -> Result<(), EventRestoreError> {
    let EventFileState::Epoll { interests } = st else {
        return Ok(());
    };
    let ep = f
        .ops
        .as_any()
        .downcast_ref::<EpollFile>()
        .ok_or(EventRestoreError::NotEpoll)?;
    for i in interests {
        let target = files
            .get(i.file)
            .ok_or(EventRestoreError::BadFile(i.file))?;
        ep.0.restore_interest(target, i.fd, i.events, i.data, i.pending, i.last)
            .map_err(|err| EventRestoreError::Interest { fd: i.fd, err })?;
    }
    Ok(())
}
