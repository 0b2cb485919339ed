//! Timers: the kernel-wide timer thread, and the interval (`alarm`,
//! `setitimer`) and POSIX (`timer_create`) timers of processes.
//!
//! One thread serves every timer of a kernel: a queue of deadlines ordered
//! by time and a condition variable. A timer is anything implementing
//! [`Expire`]; the queue holds it weakly, so a closed timerfd or a deleted
//! timer simply drops out. The thread holds no reference to the kernel and
//! exits when the kernel (which owns the [`TimerService`]) is dropped.
//!
//! Timers count expirations against [`Instant`] (CLOCK_MONOTONIC). A
//! CLOCK_REALTIME absolute deadline is converted when it is set, so a later
//! change of the host's wall clock does not move it (Linux would).

use crate::kernel::signal::{self, SigInfo};
use crate::kernel::syscalls::time::host_clock;
use crate::kernel::task::{Task, TgState, ThreadGroup, lock};
use crate::kernel::{Errno, KResult, Kernel};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// Something the timer thread calls back at a deadline.
pub trait Expire: Send + Sync {
    /// Handles the timer's expirations up to `now` (none if its deadline
    /// moved later meanwhile); returns when to be called next, if ever.
    fn expire(&self, now: Instant) -> Option<Instant>;
}

static NEXT_TIMER_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh identity for a timer in the [`TimerService`] queue.
pub fn next_timer_id() -> u64 {
    NEXT_TIMER_ID.fetch_add(1, Ordering::Relaxed)
}

/// Shortest gap between two callbacks of one periodic timer: a 1 ns
/// interval must not monopolise the thread. Expirations in between are not
/// lost; they are counted (timerfd ticks, POSIX timer overruns).
const MIN_GAP: Duration = Duration::from_micros(100);

/// A deadline far enough away to stand for "never" without overflowing.
fn far_future(now: Instant) -> Instant {
    now.checked_add(Duration::from_secs(1 << 36)).unwrap_or(now)
}

struct Entry {
    id: u64,
    target: Weak<dyn Expire>,
}

#[derive(Default)]
struct SvcState {
    queue: BTreeMap<(Instant, u64), Entry>,
    by_id: HashMap<u64, (Instant, u64)>,
    seq: u64,
    running: bool,
    shutdown: bool,
    /// A checkpoint is reading the timers: no callbacks.
    frozen: bool,
    /// A callback is running (without the lock).
    busy: bool,
}

impl SvcState {
    fn insert(&mut self, id: u64, at: Instant, target: Weak<dyn Expire>) {
        if let Some(k) = self.by_id.remove(&id) {
            self.queue.remove(&k);
        }
        self.seq += 1;
        let key = (at, self.seq);
        self.queue.insert(key, Entry { id, target });
        self.by_id.insert(id, key);
    }
}

struct Shared {
    st: Mutex<SvcState>,
    cv: Condvar,
}

/// The kernel's timer thread and its queue of deadlines.
pub struct TimerService {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TimerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = lock(&self.shared.st);
        write!(
            f,
            "TimerService(queued={}, running={})",
            st.queue.len(),
            st.running
        )
    }
}

impl Default for TimerService {
    fn default() -> Self {
        TimerService::new()
    }
}

impl TimerService {
    /// An empty service; the thread starts with the first armed timer.
    pub fn new() -> TimerService {
        TimerService {
            shared: Arc::new(Shared {
                st: Mutex::new(SvcState::default()),
                cv: Condvar::new(),
            }),
        }
    }

    /// Calls `target` back at `at`, replacing any earlier arming of `id`.
    pub fn arm(&self, id: u64, at: Instant, target: Weak<dyn Expire>) {
        let mut st = lock(&self.shared.st);
        if st.shutdown {
            return;
        }
        st.insert(id, at, target);
        if !st.running {
            let sh = self.shared.clone();
            match std::thread::Builder::new()
                .name("rvisor-timers".into())
                .stack_size(256 << 10)
                .spawn(move || run(sh))
            {
                Ok(_) => st.running = true,
                Err(e) => tracing::error!("cannot start the timer thread: {e}"),
            }
        }
        drop(st);
        self.shared.cv.notify_all();
    }

    /// Forgets `id`'s deadline.
    pub fn cancel(&self, id: u64) {
        let mut st = lock(&self.shared.st);
        if let Some(k) = st.by_id.remove(&id) {
            st.queue.remove(&k);
        }
    }

    /// Number of queued deadlines.
    pub fn queued(&self) -> usize {
        lock(&self.shared.st).queue.len()
    }

    /// Stops calling timers back (a checkpoint reads them meanwhile, so
    /// no expiry falls between the saved signals and the saved timers);
    /// returns once no callback runs. Deadlines still queue up; they
    /// fire late, after [`TimerService::thaw`].
    pub fn freeze(&self) {
        let mut st = lock(&self.shared.st);
        st.frozen = true;
        while st.busy {
            st = self.shared.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Undoes [`TimerService::freeze`].
    pub fn thaw(&self) {
        lock(&self.shared.st).frozen = false;
        self.shared.cv.notify_all();
    }
}

impl Drop for TimerService {
    fn drop(&mut self) {
        let mut st = lock(&self.shared.st);
        st.shutdown = true;
        st.queue.clear();
        st.by_id.clear();
        drop(st);
        self.shared.cv.notify_all();
    }
}

fn run(sh: Arc<Shared>) {
    let mut st = lock(&sh.st);
    loop {
        if st.shutdown {
            st.running = false;
            return;
        }
        if st.frozen {
            st = sh.cv.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        let now = Instant::now();
        let first = st.queue.first_key_value().map(|(k, _)| *k);
        match first {
            None => st = sh.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
            Some((at, _)) if at > now => {
                st = match sh.cv.wait_timeout(st, at - now) {
                    Ok((g, _)) => g,
                    Err(e) => e.into_inner().0,
                }
            }
            Some(key) => {
                let Some(e) = st.queue.remove(&key) else {
                    continue;
                };
                if st.by_id.get(&e.id) == Some(&key) {
                    st.by_id.remove(&e.id);
                }
                st.busy = true;
                drop(st);
                // Called without the queue lock: the callback takes its
                // own locks and may re-arm other timers.
                let next = e.target.upgrade().and_then(|t| t.expire(now));
                st = lock(&sh.st);
                st.busy = false;
                sh.cv.notify_all();
                if let Some(at) = next
                    && !st.shutdown
                {
                    let at = at.max(now + MIN_GAP);
                    // A concurrent re-arm keeps its own deadline if earlier;
                    // a spurious early call is harmless (expire re-checks).
                    let earlier = st.by_id.get(&e.id).is_some_and(|k| k.0 <= at);
                    if !earlier {
                        st.insert(e.id, at, e.target);
                    }
                }
            }
        }
    }
}

/// When a timer next expires and how often it repeats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Arm {
    /// Next expiry (None: disarmed).
    pub next: Option<Instant>,
    /// Period (zero: one-shot).
    pub interval: Duration,
}

impl Arm {
    /// Counts the expirations up to `now` and moves `next` past `now`
    /// (a one-shot timer disarms).
    pub fn advance(&mut self, now: Instant) -> u64 {
        let Some(n) = self.next else {
            return 0;
        };
        if n > now {
            return 0;
        }
        if self.interval.is_zero() {
            self.next = None;
            return 1;
        }
        let (count, next) = periods_after(n, self.interval, now);
        self.next = next;
        count
    }

    /// Time until the next expiry (zero when disarmed; for a periodic
    /// timer whose expiry is due, until the following period).
    pub fn remaining(&self, now: Instant) -> Duration {
        match self.next {
            None => Duration::ZERO,
            Some(n) if n > now => n - now,
            Some(n) if !self.interval.is_zero() => periods_after(n, self.interval, now)
                .1
                .map_or(Duration::ZERO, |t| t.saturating_duration_since(now)),
            Some(_) => Duration::ZERO,
        }
    }
}

/// For a periodic timer due at `n <= now`: how many periods expired and
/// the first deadline after `now` (None if it would overflow).
fn periods_after(n: Instant, interval: Duration, now: Instant) -> (u64, Option<Instant>) {
    let iv = interval.as_nanos().max(1);
    let k = (now - n).as_nanos() / iv + 1;
    let count = u64::try_from(k).unwrap_or(u64::MAX);
    let next = u64::try_from(k * iv)
        .ok()
        .and_then(|ns| n.checked_add(Duration::from_nanos(ns)));
    (count, next)
}

/// Reads clock `clock` as Linux timers see it.
pub fn clock_now(clock: i32) -> Duration {
    match clock {
        libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_ALARM | libc::CLOCK_TAI => {
            host_clock(libc::CLOCK_REALTIME)
        }
        _ => host_clock(libc::CLOCK_MONOTONIC),
    }
}

/// The instant a timer set to `value` on `clock` first expires: `value`
/// from now, or at absolute clock time `value` when `abs`.
pub fn first_expiry(clock: i32, value: Duration, abs: bool) -> Instant {
    let now = Instant::now();
    if !abs {
        return now.checked_add(value).unwrap_or_else(|| far_future(now));
    }
    let cnow = clock_now(clock);
    if value >= cnow {
        now.checked_add(value - cnow)
            .unwrap_or_else(|| far_future(now))
    } else {
        now.checked_sub(cnow - value).unwrap_or(now)
    }
}

// ---- interval timers (alarm, setitimer) ----

/// ITIMER_REAL.
pub const ITIMER_REAL: usize = 0;
/// ITIMER_VIRTUAL.
pub const ITIMER_VIRTUAL: usize = 1;
/// ITIMER_PROF.
pub const ITIMER_PROF: usize = 2;

/// One of a process's three interval timers. All three count wall-clock
/// time (ITIMER_VIRTUAL and ITIMER_PROF should count CPU time).
#[derive(Debug)]
pub struct ITimer {
    id: u64,
    signo: i32,
    arm: Mutex<Arm>,
    tg: Weak<ThreadGroup>,
    k: Weak<Kernel>,
}

impl Expire for ITimer {
    fn expire(&self, now: Instant) -> Option<Instant> {
        let tg = self.tg.upgrade()?;
        let mut a = lock(&self.arm);
        if lock(&tg.inner).state != TgState::Running {
            a.next = None;
            return None;
        }
        let n = a.advance(now);
        let next = a.next;
        drop(a);
        if n > 0
            && !init_drops(&tg, None, self.signo)
            && let Some(k) = self.k.upgrade()
        {
            // Linux sends itimer signals as the kernel (SEND_SIG_PRIV).
            k.signal_group(&tg, SigInfo::new(self.signo, signal::SI_KERNEL));
        }
        next
    }
}

/// Whether the signal `sig` from a timer is dropped on arrival: the PID
/// namespace's init ignores signals it has no handler for, unless it
/// blocks them (Linux `sig_task_ignored` for SIGNAL_UNKILLABLE; timer
/// signals are not forced). `task` is the target of a thread-directed
/// signal.
fn init_drops(tg: &ThreadGroup, task: Option<&Task>, sig: i32) -> bool {
    if tg.tgid != 1 {
        return false;
    }
    let dfl = lock(&tg.handlers()).get(sig).handler == signal::SIG_DFL;
    let blocked = match task {
        Some(t) => lock(&t.sig).mask & signal::bit(sig) != 0,
        None => lock(&tg.inner)
            .tasks
            .first()
            .is_some_and(|t| lock(&t.sig).mask & signal::bit(sig) != 0),
    };
    dfl && !blocked
}

// ---- POSIX timers ----

/// How a POSIX timer notifies its expiry (`struct sigevent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Notify {
    /// SIGEV_NONE: nothing; the timer is only read with timer_gettime.
    None,
    /// SIGEV_SIGNAL (or SIGEV_THREAD_ID with `tid`): queue `signo` with
    /// si_code SI_TIMER and `value` as si_value.
    Signal {
        /// Signal number.
        signo: i32,
        /// sigev_value.
        value: u64,
        /// SIGEV_THREAD_ID: the thread to signal (else the process).
        tid: Option<i32>,
    },
}

#[derive(Debug, Default)]
struct PState {
    arm: Arm,
    /// Overrun carried by the signal queued most recently.
    overrun_cur: i32,
    /// Overrun of the signal before it (already delivered).
    overrun_last: i32,
}

/// A timer made by timer_create(2).
#[derive(Debug)]
pub struct PosixTimer {
    id: u64,
    /// The id timer_create returned.
    pub timerid: i32,
    /// Its clock.
    pub clock: i32,
    notify: Notify,
    st: Mutex<PState>,
    tg: Weak<ThreadGroup>,
    k: Weak<Kernel>,
}

/// Byte offsets in `siginfo_t` of the timer fields.
const SI_TID: usize = 16;
const SI_OVERRUN: usize = 20;

fn si_i32(info: &SigInfo, off: usize) -> i32 {
    let b = &info.0[off..off + 4];
    i32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The siginfo of a POSIX timer's signal (si_code SI_TIMER).
pub fn timer_siginfo(signo: i32, timerid: i32, overrun: i32, value: u64) -> SigInfo {
    let mut info = SigInfo::new(signo, signal::SI_TIMER);
    info.0[SI_TID..SI_TID + 4].copy_from_slice(&timerid.to_le_bytes());
    info.0[SI_OVERRUN..SI_OVERRUN + 4].copy_from_slice(&overrun.to_le_bytes());
    info.set_value(value);
    info
}

impl PosixTimer {
    fn target_task(
        &self,
        k: &Kernel,
        tg: &Arc<ThreadGroup>,
        tid: Option<i32>,
    ) -> Option<Arc<Task>> {
        let t = k.task(tid?)?;
        Arc::ptr_eq(&t.tg, tg).then_some(t)
    }

    /// Runs `f` on this timer's queued signal, if one is still pending.
    fn with_queued<R>(&self, f: impl FnOnce(&mut SigInfo) -> R) -> Option<R> {
        let Notify::Signal { signo, tid, .. } = self.notify else {
            return None;
        };
        let tg = self.tg.upgrade()?;
        let k = self.k.upgrade()?;
        let mine = |i: &SigInfo| {
            i.signo() == signo && i.code() == signal::SI_TIMER && si_i32(i, SI_TID) == self.timerid
        };
        match tid {
            Some(_) => {
                let t = self.target_task(&k, &tg, tid)?;
                let mut s = lock(&t.sig);
                s.pending.queue.iter_mut().find(|i| mine(i)).map(f)
            }
            None => {
                let mut inner = lock(&tg.inner);
                inner.pending.queue.iter_mut().find(|i| mine(i)).map(f)
            }
        }
    }

    /// Signals `count` expirations.
    fn deliver(&self, st: &mut PState, count: u64) {
        let Notify::Signal { signo, value, tid } = self.notify else {
            return;
        };
        let count = i32::try_from(count).unwrap_or(i32::MAX);
        // Still queued from an earlier expiry: these are overruns of it.
        let bumped = self.with_queued(|i| {
            let o = si_i32(i, SI_OVERRUN).saturating_add(count);
            i.0[SI_OVERRUN..SI_OVERRUN + 4].copy_from_slice(&o.to_le_bytes());
        });
        if bumped.is_some() {
            st.overrun_cur = st.overrun_cur.saturating_add(count);
            return;
        }
        st.overrun_last = st.overrun_cur;
        st.overrun_cur = count - 1;
        let (Some(k), Some(tg)) = (self.k.upgrade(), self.tg.upgrade()) else {
            return;
        };
        let info = timer_siginfo(signo, self.timerid, count - 1, value);
        match tid {
            Some(_) => {
                if let Some(t) = self.target_task(&k, &tg, tid)
                    && !init_drops(&tg, Some(&t), signo)
                {
                    k.signal_task(&t, info);
                }
            }
            None if init_drops(&tg, None, signo) => {}
            None => k.signal_group(&tg, info),
        }
    }
}

impl Expire for PosixTimer {
    fn expire(&self, now: Instant) -> Option<Instant> {
        let tg = self.tg.upgrade()?;
        let mut st = lock(&self.st);
        if lock(&tg.inner).state != TgState::Running {
            st.arm.next = None;
            return None;
        }
        let n = st.arm.advance(now);
        if n > 0 {
            self.deliver(&mut st, n);
        }
        st.arm.next
    }
}

// ---- per-process tables ----

/// Most POSIX timers one process may have.
pub const MAX_POSIX_TIMERS: usize = 1 << 14;

#[derive(Debug)]
struct ProcEntry {
    tg: Weak<ThreadGroup>,
    itimers: [Option<Arc<ITimer>>; 3],
    posix: BTreeMap<i32, Arc<PosixTimer>>,
    next_id: i32,
}

/// The timers of every process, by tgid.
#[derive(Debug, Default)]
pub struct ProcTimers {
    map: Mutex<HashMap<i32, ProcEntry>>,
    inserts: AtomicU64,
}

impl ProcTimers {
    fn with<R>(&self, tg: &Arc<ThreadGroup>, f: impl FnOnce(&mut ProcEntry) -> R) -> R {
        let mut m = lock(&self.map);
        let fresh = || ProcEntry {
            tg: Arc::downgrade(tg),
            itimers: [None, None, None],
            posix: BTreeMap::new(),
            next_id: 0,
        };
        if !m.contains_key(&tg.tgid) && self.inserts.fetch_add(1, Ordering::Relaxed) % 64 == 63 {
            // Now and then, forget processes that are gone.
            m.retain(|_, e| e.tg.strong_count() > 0);
        }
        let e = m.entry(tg.tgid).or_insert_with(fresh);
        if !e.tg.upgrade().is_some_and(|g| Arc::ptr_eq(&g, tg)) {
            // A process that had this pid before: its timers died with it.
            *e = fresh();
        }
        f(e)
    }

    fn posix(&self, tg: &Arc<ThreadGroup>, id: i32) -> KResult<Arc<PosixTimer>> {
        self.with(tg, |e| e.posix.get(&id).cloned())
            .ok_or(Errno::EINVAL)
    }
}

impl super::Events {
    /// setitimer(2) / alarm(2): arms interval timer `which` of `tg` to
    /// expire after `value` and then every `interval` (`value` zero
    /// disarms). Returns the previous (remaining, interval).
    pub fn set_itimer(
        &self,
        k: &Arc<Kernel>,
        tg: &Arc<ThreadGroup>,
        which: usize,
        value: Duration,
        interval: Duration,
    ) -> (Duration, Duration) {
        let signo = itimer_signo(which);
        let t = self.procs.with(tg, |e| {
            e.itimers[which]
                .get_or_insert_with(|| {
                    Arc::new(ITimer {
                        id: next_timer_id(),
                        signo,
                        arm: Mutex::new(Arm::default()),
                        tg: Arc::downgrade(tg),
                        k: Arc::downgrade(k),
                    })
                })
                .clone()
        });
        let now = Instant::now();
        let mut a = lock(&t.arm);
        let old = (itimer_remaining(&a, now), a.interval);
        if value.is_zero() {
            *a = Arm::default();
            self.timers.cancel(t.id);
        } else {
            let at = now.checked_add(value).unwrap_or_else(|| far_future(now));
            *a = Arm {
                next: Some(at),
                interval,
            };
            let w: Weak<dyn Expire> = Arc::downgrade(&(t.clone() as Arc<dyn Expire>));
            self.timers.arm(t.id, at, w);
        }
        old
    }

    /// getitimer(2): (remaining, interval) of interval timer `which`.
    pub fn get_itimer(&self, tg: &Arc<ThreadGroup>, which: usize) -> (Duration, Duration) {
        let t = self.procs.with(tg, |e| e.itimers[which].clone());
        match t {
            None => (Duration::ZERO, Duration::ZERO),
            Some(t) => {
                let a = lock(&t.arm);
                (itimer_remaining(&a, Instant::now()), a.interval)
            }
        }
    }

    /// timer_create(2): a new disarmed timer of `tg`; returns its id.
    pub fn timer_create(
        &self,
        k: &Arc<Kernel>,
        tg: &Arc<ThreadGroup>,
        clock: i32,
        notify: Option<Notify>,
    ) -> KResult<i32> {
        self.procs.with(tg, |e| {
            if e.posix.len() >= MAX_POSIX_TIMERS {
                return Err(Errno::EAGAIN);
            }
            let mut id = e.next_id;
            while e.posix.contains_key(&id) {
                id = id.checked_add(1).unwrap_or(0);
            }
            e.next_id = id.checked_add(1).unwrap_or(0);
            // No sigevent: SIGALRM carrying the timer id (timer_create(2)).
            let notify = notify.unwrap_or(Notify::Signal {
                signo: libc::SIGALRM,
                value: id as u64,
                tid: None,
            });
            e.posix.insert(
                id,
                Arc::new(PosixTimer {
                    id: next_timer_id(),
                    timerid: id,
                    clock,
                    notify,
                    st: Mutex::new(PState::default()),
                    tg: Arc::downgrade(tg),
                    k: Arc::downgrade(k),
                }),
            );
            Ok(id)
        })
    }

    /// timer_settime(2): returns the previous (remaining, interval).
    pub fn timer_settime(
        &self,
        tg: &Arc<ThreadGroup>,
        id: i32,
        abs: bool,
        value: Duration,
        interval: Duration,
    ) -> KResult<(Duration, Duration)> {
        let t = self.procs.posix(tg, id)?;
        let now = Instant::now();
        let mut st = lock(&t.st);
        let old = (posix_remaining(&t, &st.arm, now), st.arm.interval);
        if value.is_zero() {
            st.arm = Arm::default();
            self.timers.cancel(t.id);
        } else {
            let at = first_expiry(t.clock, value, abs);
            st.arm = Arm {
                next: Some(at),
                interval,
            };
            st.overrun_cur = 0;
            let w: Weak<dyn Expire> = Arc::downgrade(&(t.clone() as Arc<dyn Expire>));
            self.timers.arm(t.id, at, w);
        }
        Ok(old)
    }

    /// timer_gettime(2): (remaining, interval).
    pub fn timer_gettime(&self, tg: &Arc<ThreadGroup>, id: i32) -> KResult<(Duration, Duration)> {
        let t = self.procs.posix(tg, id)?;
        let st = lock(&t.st);
        Ok((
            posix_remaining(&t, &st.arm, Instant::now()),
            st.arm.interval,
        ))
    }

    /// timer_getoverrun(2): the overrun count of the last delivered
    /// expiry signal.
    pub fn timer_getoverrun(&self, tg: &Arc<ThreadGroup>, id: i32) -> KResult<i32> {
        let t = self.procs.posix(tg, id)?;
        let st = lock(&t.st);
        let queued = t.with_queued(|_| ()).is_some();
        Ok(if queued {
            st.overrun_last
        } else {
            st.overrun_cur
        })
    }

    /// timer_delete(2). A signal it already queued stays pending.
    pub fn timer_delete(&self, tg: &Arc<ThreadGroup>, id: i32) -> KResult<()> {
        let t = self
            .procs
            .with(tg, |e| e.posix.remove(&id))
            .ok_or(Errno::EINVAL)?;
        lock(&t.st).arm = Arm::default();
        self.timers.cancel(t.id);
        Ok(())
    }

    /// execve: POSIX timers are deleted; interval timers survive
    /// (timer_create(2), getitimer(2)).
    pub fn exec(&self, tg: &Arc<ThreadGroup>) {
        let gone = self.procs.with(tg, |e| std::mem::take(&mut e.posix));
        for t in gone.values() {
            self.timers.cancel(t.id);
        }
    }

    /// Number of POSIX timers `tg` has.
    pub fn posix_timer_count(&self, tg: &Arc<ThreadGroup>) -> usize {
        self.procs.with(tg, |e| e.posix.len())
    }
}

/// getitimer's view: an armed timer whose expiry is due but not yet
/// processed reports 1 µs, like Linux (0 would mean disarmed).
fn itimer_remaining(a: &Arm, now: Instant) -> Duration {
    match a.next {
        None => Duration::ZERO,
        Some(_) => {
            let r = a.remaining(now);
            if r.is_zero() {
                Duration::from_micros(1)
            } else {
                r
            }
        }
    }
}

/// timer_gettime's view: like Linux, a signalling timer that is due but
/// not yet processed reports 1 ns; a SIGEV_NONE one-shot reports 0.
fn posix_remaining(t: &PosixTimer, a: &Arm, now: Instant) -> Duration {
    match a.next {
        None => Duration::ZERO,
        Some(_) => {
            let r = a.remaining(now);
            if r.is_zero() && t.notify != Notify::None {
                Duration::from_nanos(1)
            } else {
                r
            }
        }
    }
}

/// The signal interval timer `which` sends.
fn itimer_signo(which: usize) -> i32 {
    match which {
        ITIMER_REAL => libc::SIGALRM,
        ITIMER_VIRTUAL => libc::SIGVTALRM,
        _ => libc::SIGPROF,
    }
}

// ---- checkpoint ----

/// A saved interval timer (`setitimer`, `alarm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ITimerState {
    /// ITIMER_REAL, ITIMER_VIRTUAL or ITIMER_PROF.
    pub which: u8,
    /// Time from the save to the next expiry (None: disarmed; zero: due).
    pub remaining: Option<Duration>,
    /// Period (zero: one-shot).
    pub interval: Duration,
}

/// A saved POSIX timer (`timer_create`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PosixTimerState {
    /// The id timer_create returned.
    pub timerid: i32,
    /// Its clock.
    pub clock: i32,
    /// How it notifies (sigevent notify, signo, value, thread id).
    pub notify: Notify,
    /// Time from the save to the next expiry (None: disarmed; zero: due).
    pub remaining: Option<Duration>,
    /// Period (zero: one-shot).
    pub interval: Duration,
    /// Overrun carried by the signal queued most recently.
    pub overrun_cur: i32,
    /// Overrun of the signal before it.
    pub overrun_last: i32,
}

/// The saved timers of one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcTimersState {
    /// The process.
    pub tgid: i32,
    /// Its interval timers that were ever set.
    pub itimers: Vec<ITimerState>,
    /// Its POSIX timers.
    pub posix: Vec<PosixTimerState>,
    /// Where the next timer_create starts looking for a free id.
    pub next_id: i32,
}

/// Why saved timers cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerRestoreError {
    /// The timers belong to a process the state does not have.
    #[error("timers of unknown process {0}")]
    UnknownProcess(i32),
    /// Not ITIMER_REAL, ITIMER_VIRTUAL or ITIMER_PROF.
    #[error("process {tgid}: bad interval timer {which}")]
    BadITimer {
        /// The process.
        tgid: i32,
        /// The timer.
        which: u8,
    },
    /// Two POSIX timers with one id, or too many.
    #[error("process {tgid}: bad POSIX timer {timerid}")]
    BadPosixTimer {
        /// The process.
        tgid: i32,
        /// The timer id.
        timerid: i32,
    },
}

impl From<TimerRestoreError> for Errno {
    fn from(_: TimerRestoreError) -> Errno {
        Errno::EINVAL
    }
}

fn remaining_at(a: &Arm, now: Instant) -> Option<Duration> {
    a.next.map(|n| n.saturating_duration_since(now))
}

fn arm_at(remaining: Option<Duration>, interval: Duration, now: Instant) -> Arm {
    Arm {
        next: remaining.map(|r| now.checked_add(r).unwrap_or_else(|| far_future(now))),
        interval,
    }
}

impl super::Events {
    /// The interval and POSIX timers of every live process, with times
    /// relative to `now`. Call with the timer thread frozen
    /// ([`TimerService::freeze`]) so no expiry slips between this and the
    /// saved pending signals.
    pub fn save_timers(&self, now: Instant) -> Vec<ProcTimersState> {
        let m = lock(&self.procs.map);
        let mut out: Vec<ProcTimersState> = m
            .iter()
            .filter(|(_, e)| e.tg.strong_count() > 0)
            .map(|(tgid, e)| ProcTimersState {
                tgid: *tgid,
                itimers: e
                    .itimers
                    .iter()
                    .enumerate()
                    .filter_map(|(which, t)| {
                        let a = *lock(&t.as_ref()?.arm);
                        Some(ITimerState {
                            which: which as u8,
                            remaining: remaining_at(&a, now),
                            interval: a.interval,
                        })
                    })
                    .collect(),
                posix: e
                    .posix
                    .values()
                    .map(|t| {
                        let st = lock(&t.st);
                        PosixTimerState {
                            timerid: t.timerid,
                            clock: t.clock,
                            notify: t.notify,
                            remaining: remaining_at(&st.arm, now),
                            interval: st.arm.interval,
                            overrun_cur: st.overrun_cur,
                            overrun_last: st.overrun_last,
                        }
                    })
                    .collect(),
                next_id: e.next_id,
            })
            .collect();
        out.sort_by_key(|p| p.tgid);
        out
    }

    /// Rebuilds saved timers in this (restoring) kernel and arms them on
    /// its timer thread, relative to `now`. `groups` are the restored
    /// processes by tgid.
    pub fn restore_timers(
        &self,
        k: &Arc<Kernel>,
        groups: &HashMap<i32, Arc<ThreadGroup>>,
        saved: &[ProcTimersState],
        now: Instant,
    ) -> Result<(), TimerRestoreError> {
        let mut to_arm: Vec<(u64, Instant, Weak<dyn Expire>)> = Vec::new();
        for p in saved {
            let tg = groups
                .get(&p.tgid)
                .ok_or(TimerRestoreError::UnknownProcess(p.tgid))?;
            if p.posix.len() > MAX_POSIX_TIMERS {
                return Err(TimerRestoreError::BadPosixTimer {
                    tgid: p.tgid,
                    timerid: -1,
                });
            }
            let mut itimers: [Option<Arc<ITimer>>; 3] = [None, None, None];
            for it in &p.itimers {
                let which = usize::from(it.which);
                let slot = itimers.get_mut(which).filter(|s| s.is_none()).ok_or(
                    TimerRestoreError::BadITimer {
                        tgid: p.tgid,
                        which: it.which,
                    },
                )?;
                let arm = arm_at(it.remaining, it.interval, now);
                let t = Arc::new(ITimer {
                    id: next_timer_id(),
                    signo: itimer_signo(which),
                    arm: Mutex::new(arm),
                    tg: Arc::downgrade(tg),
                    k: Arc::downgrade(k),
                });
                if let Some(at) = arm.next {
                    to_arm.push((t.id, at, Arc::downgrade(&(t.clone() as Arc<dyn Expire>))));
                }
                *slot = Some(t);
            }
            let mut posix = BTreeMap::new();
            for pt in &p.posix {
                let arm = arm_at(pt.remaining, pt.interval, now);
                let t = Arc::new(PosixTimer {
                    id: next_timer_id(),
                    timerid: pt.timerid,
                    clock: pt.clock,
                    notify: pt.notify,
                    st: Mutex::new(PState {
                        arm,
                        overrun_cur: pt.overrun_cur,
                        overrun_last: pt.overrun_last,
                    }),
                    tg: Arc::downgrade(tg),
                    k: Arc::downgrade(k),
                });
                if let Some(at) = arm.next {
                    to_arm.push((t.id, at, Arc::downgrade(&(t.clone() as Arc<dyn Expire>))));
                }
                if posix.insert(pt.timerid, t).is_some() {
                    return Err(TimerRestoreError::BadPosixTimer {
                        tgid: p.tgid,
                        timerid: pt.timerid,
                    });
                }
            }
            self.procs.with(tg, |e| {
                e.itimers = itimers;
                e.posix = posix;
                e.next_id = p.next_id;
            });
        }
        for (id, at, w) in to_arm {
            self.timers.arm(id, at, w);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn one_shot_expires_once() {
        let now = Instant::now();
        let mut a = Arm {
            next: Some(now),
            interval: Duration::ZERO,
        };
        assert_eq!(a.advance(now - Duration::from_millis(1)), 0);
        assert_eq!(a.advance(now), 1);
        assert_eq!(a.next, None);
        assert_eq!(a.advance(now + Duration::from_secs(5)), 0);
        assert_eq!(a.remaining(now), Duration::ZERO);
    }

    #[test]
    fn periodic_counts_missed_periods() {
        let t0 = Instant::now();
        let iv = Duration::from_millis(10);
        let mut a = Arm {
            next: Some(t0),
            interval: iv,
        };
        // Due at t0, t0+10, t0+20, t0+30: four expirations by t0+35.
        let now = t0 + Duration::from_millis(35);
        assert_eq!(a.remaining(now), Duration::from_millis(5));
        assert_eq!(a.advance(now), 4);
        assert_eq!(a.next, Some(t0 + Duration::from_millis(40)));
        assert_eq!(a.remaining(now), Duration::from_millis(5));
        // Exactly on a period boundary counts that period.
        assert_eq!(a.advance(t0 + Duration::from_millis(40)), 1);
        assert_eq!(a.next, Some(t0 + Duration::from_millis(50)));
    }

    #[test]
    fn absolute_realtime_in_the_past_is_due() {
        let at = first_expiry(libc::CLOCK_REALTIME, Duration::from_secs(1), true);
        assert!(at <= Instant::now());
        let rel = first_expiry(libc::CLOCK_MONOTONIC, Duration::from_millis(50), false);
        assert!(rel > Instant::now());
    }

    struct Counter {
        n: AtomicUsize,
        every: Option<Duration>,
    }

    impl Expire for Counter {
        fn expire(&self, now: Instant) -> Option<Instant> {
            self.n.fetch_add(1, Ordering::SeqCst);
            self.every.map(|d| now + d)
        }
    }

    fn wait_for(f: impl Fn() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    }

    #[test]
    fn service_fires_rearms_and_cancels() {
        let svc = TimerService::new();
        let once = Arc::new(Counter {
            n: AtomicUsize::new(0),
            every: None,
        });
        let periodic = Arc::new(Counter {
            n: AtomicUsize::new(0),
            every: Some(Duration::from_millis(1)),
        });
        let now = Instant::now();
        let w1: Weak<dyn Expire> = Arc::downgrade(&(once.clone() as Arc<dyn Expire>));
        let w2: Weak<dyn Expire> = Arc::downgrade(&(periodic.clone() as Arc<dyn Expire>));
        svc.arm(1, now + Duration::from_millis(5), w1);
        svc.arm(2, now, w2);
        assert!(wait_for(|| once.n.load(Ordering::SeqCst) == 1));
        assert!(wait_for(|| periodic.n.load(Ordering::SeqCst) >= 3));
        svc.cancel(2);
        std::thread::sleep(Duration::from_millis(20));
        let n = periodic.n.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(
            periodic.n.load(Ordering::SeqCst),
            n,
            "cancelled timer fired"
        );
        assert_eq!(once.n.load(Ordering::SeqCst), 1);
        // A dropped target falls out of the queue.
        let gone = Arc::new(Counter {
            n: AtomicUsize::new(0),
            every: Some(Duration::from_millis(1)),
        });
        let w3: Weak<dyn Expire> = Arc::downgrade(&(gone.clone() as Arc<dyn Expire>));
        svc.arm(3, Instant::now() + Duration::from_millis(5), w3);
        drop(gone);
        assert!(wait_for(|| svc.queued() == 0));
    }

    #[test]
    fn frozen_service_fires_after_thaw() {
        let svc = TimerService::new();
        let c = Arc::new(Counter {
            n: AtomicUsize::new(0),
            every: None,
        });
        let w: Weak<dyn Expire> = Arc::downgrade(&(c.clone() as Arc<dyn Expire>));
        svc.freeze();
        svc.arm(1, Instant::now(), w);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(c.n.load(Ordering::SeqCst), 0, "fired while frozen");
        svc.thaw();
        assert!(wait_for(|| c.n.load(Ordering::SeqCst) == 1));
    }

    #[test]
    fn thread_exits_with_the_service() {
        let sh = {
            let svc = TimerService::new();
            let c = Arc::new(Counter {
                n: AtomicUsize::new(0),
                every: None,
            });
            let w: Weak<dyn Expire> = Arc::downgrade(&(c as Arc<dyn Expire>));
            svc.arm(1, Instant::now() + Duration::from_secs(3600), w);
            svc.shared.clone()
        };
        assert!(wait_for(|| !lock(&sh.st).running));
        assert_eq!(Arc::strong_count(&sh), 1);
    }

    #[test]
    fn timer_siginfo_layout() {
        let i = timer_siginfo(34, 7, 3, 0x1122_3344_5566_7788);
        assert_eq!(i.signo(), 34);
        assert_eq!(i.code(), signal::SI_TIMER);
        assert_eq!(si_i32(&i, SI_TID), 7);
        assert_eq!(si_i32(&i, SI_OVERRUN), 3);
        assert_eq!(&i.0[24..32], &0x1122_3344_5566_7788u64.to_le_bytes());
    }
}
