//! epoll(7): an interest list over other files, itself a pollable file.
//!
//! Readiness is always re-evaluated from each watched file's `poll()`
//! (level-triggered); nothing caches it. What epoll must learn from the
//! outside is *that something changed*, for two purposes:
//!
//! - waking waiters: every instance owns an aggregate [`Waker`] registered
//!   on the wait queue of every file it watches, directly or through nested
//!   instances. Its eventfd is the instance's `host_fd()`, so `poll`,
//!   `select` and an outer epoll can sleep on it. Whoever evaluates the
//!   instance clears it first and sets it again if the instance is ready,
//!   so several waiters never lose a wake-up to each other.
//! - edge-triggered interests (EPOLLET): Linux reports such an interest
//!   once per wake-up of the watched file. Each EPOLLET interest has its
//!   own [`Waker`] on the file's wait queue; a wake-up since the last report
//!   (or an ADD/MOD) arms one report. Our files have one queue for both
//!   directions, so a read may re-arm an EPOLLIN edge that Linux (with its
//!   per-direction queues) would not: an extra event, never a lost one.
//!   Files without a wait queue (host-backed streams) report an edge when
//!   their readiness gains a bit.
//!
//! Interests hold their files weakly: an interest disappears with the last
//! reference to its open file description, as in Linux.

use super::{Registry, anon_ino, anon_stat};
use crate::kernel::fs::file::{FileOps, OpenFile, PollEvents, Stat};
use crate::kernel::task::lock;
use crate::kernel::wait::{WaitQueue, Waker};
use crate::kernel::{Errno, KResult};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// EPOLLIN.
pub const EPOLLIN: u32 = 0x001;
/// EPOLLPRI.
pub const EPOLLPRI: u32 = 0x002;
/// EPOLLOUT.
pub const EPOLLOUT: u32 = 0x004;
/// EPOLLERR.
pub const EPOLLERR: u32 = 0x008;
/// EPOLLHUP.
pub const EPOLLHUP: u32 = 0x010;
/// EPOLLRDNORM.
pub const EPOLLRDNORM: u32 = 0x040;
/// EPOLLWRNORM.
pub const EPOLLWRNORM: u32 = 0x100;
/// EPOLLRDHUP.
pub const EPOLLRDHUP: u32 = 0x2000;
/// EPOLLEXCLUSIVE: accepted; every waiter is woken.
pub const EPOLLEXCLUSIVE: u32 = 1 << 28;
/// EPOLLWAKEUP: accepted, no effect.
pub const EPOLLWAKEUP: u32 = 1 << 29;
/// EPOLLONESHOT.
pub const EPOLLONESHOT: u32 = 1 << 30;
/// EPOLLET.
pub const EPOLLET: u32 = 1 << 31;
/// Flags that are not events.
pub const EP_PRIVATE_BITS: u32 = EPOLLEXCLUSIVE | EPOLLWAKEUP | EPOLLONESHOT | EPOLLET;
/// Events allowed together with EPOLLEXCLUSIVE.
pub const EPOLLEXCLUSIVE_OK_BITS: u32 =
    EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLWAKEUP | EPOLLET | EPOLLEXCLUSIVE;

/// EPOLL_CTL_ADD.
pub const EPOLL_CTL_ADD: i32 = 1;
/// EPOLL_CTL_DEL.
pub const EPOLL_CTL_DEL: i32 = 2;
/// EPOLL_CTL_MOD.
pub const EPOLL_CTL_MOD: i32 = 3;

/// Deepest nesting of epoll instances below the outermost one (Linux's
/// EP_MAX_NESTS): at most five instances in a chain.
pub const EP_MAX_NESTS: usize = 4;

/// `struct epoll_event`; packed on x86_64.
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, Default)]
pub struct EpollEvent {
    /// EPOLL* bits.
    pub events: u32,
    /// User data, returned as given.
    pub data: u64,
}
static_assertions::assert_eq_size!(EpollEvent, [u8; 12]);
static_assertions::const_assert_eq!(std::mem::offset_of!(EpollEvent, data), 4);

impl EpollEvent {
    /// Parses the 12 bytes of an application's `epoll_event`.
    pub fn from_bytes(b: [u8; 12]) -> EpollEvent {
        let mut d = [0u8; 8];
        d.copy_from_slice(&b[4..]);
        EpollEvent {
            events: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            data: u64::from_le_bytes(d),
        }
    }

    /// The 12 bytes the application sees.
    pub fn to_bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        let (e, d) = (self.events, self.data);
        b[..4].copy_from_slice(&e.to_le_bytes());
        b[4..].copy_from_slice(&d.to_le_bytes());
        b
    }
}

/// Bumped on every change of any interest list: waiters then re-collect
/// the host fds they sleep on and aggregators re-register.
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The current interest-list generation.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

fn bump() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// Held while adding an epoll instance to another, so two concurrent ADDs
/// cannot build a cycle between them.
static NEST_LOCK: Mutex<()> = Mutex::new(());

fn poll_bits(f: &OpenFile) -> u32 {
    f.ops.poll().bits() as u16 as u32
}

#[derive(Debug)]
struct Interest {
    fd: i32,
    file_id: u64,
    file: Weak<OpenFile>,
    /// EPOLL* events asked for, with EPOLLERR|EPOLLHUP, and flags. All
    /// event bits clear: disabled (a fired EPOLLONESHOT).
    events: u32,
    data: u64,
    /// Edge-triggered: one report is due.
    pending: bool,
    /// Edge-triggered: woken by the file's wait queue (or, for an epoll
    /// file, by every queue below it).
    waker: Option<Waker>,
    /// Edge-triggered on a file without a wait queue: readiness last seen.
    last: u32,
}

impl Interest {
    fn mask(&self) -> u32 {
        self.events & !EP_PRIVATE_BITS
    }

    fn et(&self) -> bool {
        self.events & EPOLLET != 0
    }

    /// Moves a wake-up recorded by the waker into `pending`.
    fn take_wake(&mut self) {
        if let Some(w) = &self.waker
            && w.clear()
        {
            self.pending = true;
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// Interests in report order (LT interests move to the back once
    /// reported, for fairness, as Linux's ready list does).
    items: BTreeMap<u64, Interest>,
    /// (fd, description id) -> key in `items`.
    keys: HashMap<(i32, u64), u64>,
    next: u64,
    /// Generation at the last registration walk.
    walked: u64,
}

/// An epoll instance.
pub struct EpollCore {
    inner: Mutex<Inner>,
    agg: Waker,
    ctl_wq: WaitQueue,
    registry: Arc<Registry>,
    ino: u64,
}

impl std::fmt::Debug for EpollCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EpollCore({} interests)", lock(&self.inner).items.len())
    }
}

/// What `collect` does with the interests it reports.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// epoll_wait: consume edges, disable one-shots, rotate.
    Harvest,
    /// poll(): only look.
    Peek,
}

impl EpollCore {
    /// A new, empty instance.
    pub fn new(registry: Arc<Registry>) -> KResult<Arc<EpollCore>> {
        Ok(Arc::new(EpollCore {
            inner: Mutex::new(Inner::default()),
            agg: Waker::new()?,
            ctl_wq: WaitQueue::new(),
            registry,
            ino: anon_ino(),
        }))
    }

    /// The eventfd that becomes readable when a watched file changes.
    pub fn wake_fd(&self) -> RawFd {
        self.agg.fd()
    }

    /// Number of live interests.
    pub fn len(&self) -> usize {
        lock(&self.inner).items.len()
    }

    /// Whether the interest list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn changed(&self) {
        bump();
        self.agg.wake();
        self.ctl_wq.notify_all();
    }

    /// Whether `target` is this instance or reachable from it.
    pub fn reaches(&self, target: &EpollCore, depth: usize) -> bool {
        if std::ptr::eq(self, target) {
            return true;
        }
        if depth > EP_MAX_NESTS + 1 {
            return false;
        }
        let children = self.child_epolls();
        children.iter().any(|c| c.reaches(target, depth + 1))
    }

    /// Levels of epoll instances from this one down (1: no nested epoll).
    pub fn depth(&self, limit: usize) -> usize {
        if limit == 0 {
            return 1;
        }
        1 + self
            .child_epolls()
            .iter()
            .map(|c| c.depth(limit - 1))
            .max()
            .unwrap_or(0)
    }

    fn child_epolls(&self) -> Vec<Arc<EpollCore>> {
        let files: Vec<Arc<OpenFile>> = lock(&self.inner)
            .items
            .values()
            .filter_map(|i| i.file.upgrade())
            .collect();
        files
            .iter()
            .filter_map(|f| self.registry.epoll(f))
            .collect()
    }

    /// epoll_ctl: ADD, MOD or DEL the interest (`fd`, `file`). The caller
    /// has checked the arguments that do not depend on the interest list.
    pub fn ctl(&self, op: i32, fd: i32, file: &Arc<OpenFile>, ev: EpollEvent) -> KResult<()> {
        let key = (fd, file.id);
        let mut inner = lock(&self.inner);
        let existing = inner.keys.get(&key).copied();
        match op {
            EPOLL_CTL_ADD => {
                if existing.is_some() {
                    return Err(Errno::EEXIST);
                }
                let events = ev.events | EPOLLERR | EPOLLHUP;
                let mut it = Interest {
                    fd,
                    file_id: file.id,
                    file: Arc::downgrade(file),
                    events,
                    data: ev.data,
                    pending: true,
                    waker: None,
                    last: 0,
                };
                self.set_edge_waker(&mut it, file)?;
                let seq = inner.next;
                inner.next += 1;
                inner.items.insert(seq, it);
                inner.keys.insert(key, seq);
            }
            EPOLL_CTL_MOD => {
                let seq = existing.ok_or(Errno::ENOENT)?;
                let it = inner.items.get_mut(&seq).ok_or(Errno::ENOENT)?;
                if it.events & EPOLLEXCLUSIVE != 0 {
                    return Err(Errno::EINVAL);
                }
                let was_et = it.et();
                it.events = ev.events | EPOLLERR | EPOLLHUP;
                it.data = ev.data;
                it.pending = true;
                it.last = 0;
                if it.et() != was_et {
                    if let Some(w) = it.waker.take() {
                        self.unregister(file, &[&w], 0);
                    }
                    self.set_edge_waker(it, file)?;
                }
            }
            EPOLL_CTL_DEL => {
                let seq = existing.ok_or(Errno::ENOENT)?;
                inner.keys.remove(&key);
                if let Some(it) = inner.items.remove(&seq) {
                    let mut ws = vec![&self.agg];
                    ws.extend(it.waker.as_ref());
                    self.unregister(file, &ws, 0);
                }
            }
            _ => return Err(Errno::EINVAL),
        }
        drop(inner);
        self.changed();
        Ok(())
    }

    fn set_edge_waker(&self, it: &mut Interest, file: &Arc<OpenFile>) -> KResult<()> {
        if !it.et() {
            return Ok(());
        }
        let nested = self.registry.epoll(file).is_some();
        if let Some(q) = file.ops.wait_queue() {
            let w = Waker::new()?;
            q.add(&w);
            it.waker = Some(w);
        } else if nested {
            // Registered on the queues below it by the next walk.
            it.waker = Some(Waker::new()?);
        }
        Ok(())
    }

    /// Registers `wakers` on the wait queues of `f` and, if `f` is an
    /// epoll instance, of everything below it.
    fn register(&self, f: &OpenFile, wakers: &[&Waker], depth: usize) {
        if let Some(q) = f.ops.wait_queue() {
            for w in wakers {
                q.add(w);
            }
        }
        if depth <= EP_MAX_NESTS
            && let Some(c) = self.registry.epoll(f)
        {
            for w in wakers {
                c.ctl_wq.add(w);
            }
            c.walk(wakers, depth + 1);
        }
    }

    fn walk(&self, wakers: &[&Waker], depth: usize) {
        let files: Vec<(Arc<OpenFile>, Option<Waker>)> = lock(&self.inner)
            .items
            .values()
            .filter_map(|i| Some((i.file.upgrade()?, i.waker.clone())))
            .collect();
        for (f, w) in &files {
            let mut ws: Vec<&Waker> = wakers.to_vec();
            ws.extend(w.as_ref());
            self.register(f, &ws, depth);
        }
    }

    /// Undoes `register`. A file still reachable another way gets its
    /// registration back at the next walk (the generation changed).
    fn unregister(&self, f: &OpenFile, wakers: &[&Waker], depth: usize) {
        if let Some(q) = f.ops.wait_queue() {
            for w in wakers {
                q.remove(w);
            }
        }
        if depth <= EP_MAX_NESTS
            && let Some(c) = self.registry.epoll(f)
        {
            for w in wakers {
                c.ctl_wq.remove(w);
            }
            let files: Vec<Arc<OpenFile>> = lock(&c.inner)
                .items
                .values()
                .filter_map(|i| i.file.upgrade())
                .collect();
            for g in &files {
                c.unregister(g, wakers, depth + 1);
            }
        }
    }

    /// Makes sure the aggregate waker (and edge wakers of nested
    /// instances) sit on every queue below this instance.
    fn ensure_registered(&self) {
        let g = generation();
        if lock(&self.inner).walked == g {
            return;
        }
        self.walk(&[&self.agg], 0);
        lock(&self.inner).walked = g;
    }

    fn collect(&self, max: usize, mode: Mode) -> Vec<EpollEvent> {
        self.agg.clear();
        self.ensure_registered();
        let mut inner = lock(&self.inner);
        let mut out = Vec::new();
        let mut dead = Vec::new();
        let mut rotate = Vec::new();
        let seqs: Vec<u64> = inner.items.keys().copied().collect();
        for seq in seqs {
            if out.len() >= max {
                break;
            }
            let Some(it) = inner.items.get_mut(&seq) else {
                continue;
            };
            let Some(f) = it.file.upgrade() else {
                dead.push(seq);
                continue;
            };
            if it.mask() == 0 {
                // Disabled: wake-ups meanwhile do not count.
                if let Some(w) = &it.waker {
                    w.clear();
                }
                continue;
            }
            let rev;
            if it.et() {
                it.take_wake();
                if it.waker.is_some() {
                    if !it.pending {
                        continue;
                    }
                    rev = poll_bits(&f) & it.mask();
                } else {
                    rev = poll_bits(&f) & it.mask();
                    if rev & !it.last != 0 {
                        it.pending = true;
                    }
                    if mode == Mode::Harvest {
                        it.last = rev;
                    }
                    if !it.pending {
                        continue;
                    }
                }
                if mode == Mode::Harvest {
                    it.pending = false;
                }
            } else {
                rev = poll_bits(&f) & it.mask();
            }
            if rev == 0 {
                continue;
            }
            out.push(EpollEvent {
                events: rev,
                data: it.data,
            });
            if mode == Mode::Harvest {
                if it.events & EPOLLONESHOT != 0 {
                    it.events &= EP_PRIVATE_BITS;
                } else if !it.et() {
                    rotate.push(seq);
                }
            }
        }
        for seq in dead {
            if let Some(it) = inner.items.remove(&seq) {
                inner.keys.remove(&(it.fd, it.file_id));
            }
        }
        let rotated = !rotate.is_empty();
        for seq in rotate {
            if let Some(it) = inner.items.remove(&seq) {
                let n = inner.next;
                inner.next += 1;
                inner.keys.insert((it.fd, it.file_id), n);
                inner.items.insert(n, it);
            }
        }
        drop(inner);
        if !out.is_empty() && (mode == Mode::Peek || rotated || out.len() >= max) {
            // (Probably) still ready: keep the aggregate set for other
            // waiters.
            self.agg.wake();
        }
        out
    }

    /// Ready events, at most `max`, as epoll_wait reports them (edges
    /// consumed, one-shots disabled).
    pub fn harvest(&self, max: usize) -> Vec<EpollEvent> {
        self.collect(max, Mode::Harvest)
    }

    /// Whether epoll_wait would report something now.
    pub fn ready(&self) -> bool {
        !self.collect(1, Mode::Peek).is_empty()
    }

    /// Host-backed files below this instance, with the poll events to
    /// sleep on, for epoll_wait's `ppoll` (held for the duration).
    pub fn host_sources(&self, out: &mut Vec<(Arc<OpenFile>, i16)>, depth: usize) {
        let items: Vec<(Arc<OpenFile>, u32, u32)> = lock(&self.inner)
            .items
            .values()
            .filter_map(|i| {
                let f = i.file.upgrade()?;
                let mut ev = i.mask();
                if i.et() && i.waker.is_none() {
                    // Wait only for what would be a new edge.
                    if i.last & (EPOLLERR | EPOLLHUP) != 0 {
                        return None;
                    }
                    ev &= !i.last;
                }
                Some((f, ev, i.mask()))
            })
            .collect();
        for (f, ev, mask) in items {
            if mask == 0 {
                continue;
            }
            if let Some(c) = self.registry.epoll(&f) {
                if depth < EP_MAX_NESTS {
                    c.host_sources(out, depth + 1);
                }
                continue;
            }
            if f.ops.host_fd().is_some() && ev & 0xffff != 0 {
                out.push((f, (ev & 0xffff) as u16 as i16));
            }
        }
    }
}

/// One interest of an epoll instance as a checkpoint sees it.
#[derive(Debug, Clone)]
pub struct InterestSnapshot {
    /// The descriptor it was added with.
    pub fd: i32,
    /// The watched description.
    pub file: Weak<OpenFile>,
    /// Events and flags (EPOLLET, EPOLLONESHOT; no event bit: a fired
    /// one-shot).
    pub events: u32,
    /// User data.
    pub data: u64,
    /// Edge-triggered: a report is due.
    pub pending: bool,
    /// Edge-triggered on a file without a wait queue: readiness last seen.
    pub last: u32,
}

impl EpollCore {
    /// The interest list, in report order, for a checkpoint.
    pub fn snapshot(&self) -> Vec<InterestSnapshot> {
        let mut inner = lock(&self.inner);
        inner
            .items
            .values_mut()
            .map(|it| {
                // A wake-up not yet looked at is a due edge.
                it.take_wake();
                InterestSnapshot {
                    fd: it.fd,
                    file: it.file.clone(),
                    events: it.events,
                    data: it.data,
                    pending: it.pending,
                    last: it.last,
                }
            })
            .collect()
    }

    /// Appends a saved interest on `file` (restore: the state was valid
    /// when saved, so no nesting check; instances nested in this one must
    /// already be in the registry).
    pub fn restore_interest(
        &self,
        file: &Arc<OpenFile>,
        fd: i32,
        events: u32,
        data: u64,
        pending: bool,
        last: u32,
    ) -> KResult<()> {
        let key = (fd, file.id);
        let mut inner = lock(&self.inner);
        if inner.keys.contains_key(&key) {
            return Err(Errno::EEXIST);
        }
        let mut it = Interest {
            fd,
            file_id: file.id,
            file: Arc::downgrade(file),
            events,
            data,
            pending,
            waker: None,
            last,
        };
        self.set_edge_waker(&mut it, file)?;
        let seq = inner.next;
        inner.next += 1;
        inner.items.insert(seq, it);
        inner.keys.insert(key, seq);
        drop(inner);
        self.changed();
        Ok(())
    }
}

/// epoll_ctl ADD of another epoll instance `child` to `core`: refuses a
/// cycle, or a chain of more than EP_MAX_NESTS + 1 instances (ELOOP).
pub fn add_nested(
    core: &Arc<EpollCore>,
    child: &Arc<EpollCore>,
    fd: i32,
    file: &Arc<OpenFile>,
    ev: EpollEvent,
) -> KResult<()> {
    let _g = NEST_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    if child.reaches(core, 0) || child.depth(EP_MAX_NESTS + 1) + 1 > EP_MAX_NESTS + 1 {
        return Err(Errno::ELOOP);
    }
    core.ctl(EPOLL_CTL_ADD, fd, file, ev)
}

impl Drop for EpollCore {
    fn drop(&mut self) {
        let items: Vec<(Arc<OpenFile>, Option<Waker>)> = {
            let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut inner.items)
                .into_values()
                .filter_map(|i| Some((i.file.upgrade()?, i.waker)))
                .collect()
        };
        for (f, w) in &items {
            let mut ws = vec![&self.agg];
            ws.extend(w.as_ref());
            self.unregister(f, &ws, 0);
        }
    }
}

/// The file side of an epoll instance.
#[derive(Debug)]
pub struct EpollFile(pub Arc<EpollCore>);

impl FileOps for EpollFile {
    fn stat(&self) -> KResult<Stat> {
        Ok(anon_stat(self.0.ino))
    }

    fn poll(&self) -> PollEvents {
        if self.0.ready() {
            PollEvents::IN | PollEvents::RDNORM
        } else {
            PollEvents::empty()
        }
    }

    fn host_fd(&self) -> Option<RawFd> {
        Some(self.0.wake_fd())
    }

    fn proc_name(&self) -> Option<String> {
        Some("anon_inode:[eventpoll]".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::events::eventfd::EventFd;
    use crate::kernel::pipe::Pipe;

    fn ev(events: u32, data: u64) -> EpollEvent {
        EpollEvent { events, data }
    }

    fn reported(c: &EpollCore) -> Vec<(u32, u64)> {
        c.harvest(16)
            .into_iter()
            .map(|e| (e.events, e.data))
            .collect()
    }

    fn pipe() -> (Arc<OpenFile>, Arc<OpenFile>) {
        let (r, w) = Pipe::pair();
        (
            OpenFile::new(Box::new(r), libc::O_RDONLY, Vec::new()),
            OpenFile::new(Box::new(w), libc::O_WRONLY, Vec::new()),
        )
    }

    #[test]
    fn event_bytes() {
        let e = ev(EPOLLIN | EPOLLET, 0x0102_0304_0506_0708);
        let b = e.to_bytes();
        assert_eq!(&b[..4], &(EPOLLIN | EPOLLET).to_le_bytes());
        let back = EpollEvent::from_bytes(b);
        let (x, y) = (back.events, back.data);
        assert_eq!((x, y), (EPOLLIN | EPOLLET, 0x0102_0304_0506_0708));
    }

    #[test]
    fn level_edge_oneshot() {
        let reg = Arc::new(Registry::default());
        let c = EpollCore::new(reg).expect("epoll");
        let (r, w) = pipe();
        c.ctl(EPOLL_CTL_ADD, 3, &r, ev(EPOLLIN, 1)).expect("add");
        assert_eq!(
            c.ctl(EPOLL_CTL_ADD, 3, &r, ev(EPOLLIN, 1)),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            c.ctl(EPOLL_CTL_MOD, 4, &r, ev(EPOLLIN, 1)),
            Err(Errno::ENOENT)
        );
        assert!(reported(&c).is_empty());
        assert!(!c.ready());
        w.ops.write(b"x", None).expect("write");
        assert!(c.ready());
        assert_eq!(reported(&c), vec![(EPOLLIN, 1)]);
        // Level-triggered: again.
        assert_eq!(reported(&c), vec![(EPOLLIN, 1)]);

        // Edge-triggered: once per change.
        c.ctl(EPOLL_CTL_MOD, 3, &r, ev(EPOLLIN | EPOLLET, 2))
            .expect("mod");
        assert_eq!(reported(&c), vec![(EPOLLIN, 2)]);
        assert!(reported(&c).is_empty());
        assert!(!c.ready());
        w.ops.write(b"y", None).expect("write");
        assert_eq!(reported(&c), vec![(EPOLLIN, 2)]);
        assert!(reported(&c).is_empty());

        // One-shot: once, then disabled until MOD.
        c.ctl(EPOLL_CTL_MOD, 3, &r, ev(EPOLLIN | EPOLLONESHOT, 3))
            .expect("mod");
        assert_eq!(reported(&c), vec![(EPOLLIN, 3)]);
        assert!(reported(&c).is_empty());
        c.ctl(EPOLL_CTL_MOD, 3, &r, ev(EPOLLIN | EPOLLONESHOT, 4))
            .expect("mod");
        assert_eq!(reported(&c), vec![(EPOLLIN, 4)]);

        // Hang-up is always reported.
        c.ctl(EPOLL_CTL_MOD, 3, &r, ev(EPOLLIN, 5)).expect("mod");
        drop(w);
        assert_eq!(reported(&c), vec![(EPOLLIN | EPOLLHUP, 5)]);
        c.ctl(EPOLL_CTL_DEL, 3, &r, EpollEvent::default())
            .expect("del");
        assert!(reported(&c).is_empty());
        assert_eq!(
            c.ctl(EPOLL_CTL_DEL, 3, &r, EpollEvent::default()),
            Err(Errno::ENOENT)
        );
    }

    #[test]
    fn interest_goes_with_the_description() {
        let reg = Arc::new(Registry::default());
        let c = EpollCore::new(reg).expect("epoll");
        let e = OpenFile::new(Box::new(EventFd::new(1, false)), libc::O_RDWR, Vec::new());
        c.ctl(EPOLL_CTL_ADD, 5, &e, ev(EPOLLIN | EPOLLOUT, 9))
            .expect("add");
        assert_eq!(reported(&c), vec![(EPOLLIN | EPOLLOUT, 9)]);
        drop(e);
        assert!(reported(&c).is_empty());
        assert!(c.is_empty());
    }

    #[test]
    fn snapshot_and_restore_keep_interest_state() {
        let reg = Arc::new(Registry::default());
        let c = EpollCore::new(reg.clone()).expect("epoll");
        let (r, w) = pipe();
        let e = OpenFile::new(Box::new(EventFd::new(1, false)), libc::O_RDWR, Vec::new());
        c.ctl(EPOLL_CTL_ADD, 3, &r, ev(EPOLLIN | EPOLLET, 1))
            .expect("add");
        c.ctl(EPOLL_CTL_ADD, 4, &e, ev(EPOLLIN | EPOLLONESHOT, 2))
            .expect("add");
        w.ops.write(b"x", None).expect("write");
        // Edge consumed, one-shot fired.
        assert_eq!(reported(&c), vec![(EPOLLIN, 1), (EPOLLIN, 2)]);
        let snap = c.snapshot();
        assert_eq!(snap.len(), 2);
        assert!(!snap[0].pending);
        assert_eq!(snap[1].events & !EP_PRIVATE_BITS, 0);
        let d = EpollCore::new(reg).expect("epoll");
        let files = [r.clone(), e.clone()];
        for (i, s) in snap.iter().enumerate() {
            d.restore_interest(&files[i], s.fd, s.events, s.data, s.pending, s.last)
                .expect("restore");
        }
        assert!(reported(&d).is_empty());
        w.ops.write(b"y", None).expect("write");
        assert_eq!(reported(&d), vec![(EPOLLIN, 1)]);
        assert_eq!(
            d.restore_interest(&r, 3, EPOLLIN, 0, false, 0),
            Err(Errno::EEXIST)
        );
    }

    #[test]
    fn nested_instance_and_wakeups() {
        let reg = Arc::new(Registry::default());
        let inner = EpollCore::new(reg.clone()).expect("epoll");
        let inner_f = OpenFile::new(Box::new(EpollFile(inner.clone())), libc::O_RDWR, Vec::new());
        reg.insert(&inner_f, super::super::Kind::Epoll(Arc::downgrade(&inner)));
        let outer = EpollCore::new(reg.clone()).expect("epoll");
        let (r, w) = pipe();
        inner
            .ctl(EPOLL_CTL_ADD, 3, &r, ev(EPOLLIN, 1))
            .expect("add");
        outer
            .ctl(EPOLL_CTL_ADD, 4, &inner_f, ev(EPOLLIN | EPOLLET, 2))
            .expect("add");
        assert!(outer.reaches(&inner, 0));
        assert!(!inner.reaches(&outer, 0));
        assert_eq!(outer.depth(8), 2);
        assert!(reported(&outer).is_empty());
        // The outer aggregate is registered on the pipe: a write wakes it.
        outer.agg.clear();
        w.ops.write(b"z", None).expect("write");
        assert!(outer.agg.clear(), "outer not woken by a nested file");
        assert_eq!(reported(&outer), vec![(EPOLLIN, 2)]);
        assert!(reported(&outer).is_empty());
        assert_eq!(reported(&inner), vec![(EPOLLIN, 1)]);
    }
}
