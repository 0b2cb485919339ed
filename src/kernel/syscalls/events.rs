//! Event system calls: epoll, eventfd, timerfd, signalfd, timers.
#![allow(missing_docs)] // handlers are named after the syscalls they serve

use super::table::{Row, Support::*};
use crate::kernel::events::Kind;
use crate::kernel::events::epoll::{
    self, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD, EPOLLEXCLUSIVE, EPOLLEXCLUSIVE_OK_BITS,
    EpollCore, EpollEvent, EpollFile,
};
use crate::kernel::events::eventfd::{EFD_SEMAPHORE, EventFd};
use crate::kernel::events::signalfd::{SignalFd, SignalFdFile};
use crate::kernel::events::timerfd::{TimerFd, TimerFdFile};
use crate::kernel::events::timers::{Expire, ITIMER_REAL, Notify};
use crate::kernel::fs::file::OpenFile;
use crate::kernel::run::Runner;
use crate::kernel::signal::{self, SigSet};
use crate::kernel::task::lock;
use crate::kernel::{Errno, KResult};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

type A = [u64; 6];

/// Table rows of this family, merged into the syscall table.
pub const ROWS: &[Row] = &[
    (213, epoll_create, Full, ""),
    (291, epoll_create1, Full, ""),
    (
        233,
        epoll_ctl,
        Partial,
        "EPOLLEXCLUSIVE wakes every waiter; EPOLLET may report an extra edge after a read \
         (one wait queue per file, not one per direction)",
    ),
    (232, epoll_wait, Full, ""),
    (281, epoll_pwait, Full, ""),
    (441, epoll_pwait2, Full, ""),
    (284, eventfd, Full, ""),
    (290, eventfd2, Full, ""),
    (
        283,
        timerfd_create,
        Partial,
        "CLOCK_REALTIME deadlines ignore later wall-clock changes (TFD_TIMER_CANCEL_ON_SET \
         never cancels); _ALARM clocks act as their base clock",
    ),
    (
        286,
        timerfd_settime,
        Partial,
        "CLOCK_REALTIME deadlines ignore later wall-clock changes",
    ),
    (287, timerfd_gettime, Full, ""),
    (282, signalfd, Full, ""),
    (289, signalfd4, Full, ""),
    (37, alarm, Full, ""),
    (
        36,
        getitimer,
        Partial,
        "ITIMER_VIRTUAL and ITIMER_PROF count wall-clock time, not CPU time",
    ),
    (
        38,
        setitimer,
        Partial,
        "ITIMER_VIRTUAL and ITIMER_PROF count wall-clock time, not CPU time",
    ),
    (
        222,
        timer_create,
        Partial,
        "CPU-time clocks count wall-clock time; SIGEV_THREAD is signalled like SIGEV_SIGNAL \
         (libc implements the thread)",
    ),
    (223, timer_settime, Full, ""),
    (224, timer_gettime, Full, ""),
    (225, timer_getoverrun, Full, ""),
    (226, timer_delete, Full, ""),
    (
        253,
        inotify_unimplemented,
        Unimplemented,
        "no inotify yet: ENOSYS (programs fall back to polling)",
    ),
    (
        254,
        inotify_unimplemented,
        Unimplemented,
        "no inotify yet: ENOSYS",
    ),
    (
        255,
        inotify_unimplemented,
        Unimplemented,
        "no inotify yet: ENOSYS",
    ),
    (
        294,
        inotify_unimplemented,
        Unimplemented,
        "no inotify yet: ENOSYS (programs fall back to polling)",
    ),
];

// ---- helpers ----

fn install(r: &Runner, f: Arc<OpenFile>, cloexec: bool) -> KResult<u64> {
    let limit = r.nofile_limit();
    lock(&r.t.files())
        .insert(f, cloexec, limit)
        .map(|fd| fd as u64)
}

/// Reads a `struct timespec`; EINVAL unless 0 <= tv_nsec < 1e9 and
/// tv_sec >= 0.
fn read_timespec(r: &Runner, addr: u64) -> KResult<Duration> {
    let ts: [i64; 2] = r.read_val(addr)?;
    if ts[0] < 0 || !(0..1_000_000_000).contains(&ts[1]) {
        return Err(Errno::EINVAL);
    }
    Ok(Duration::new(ts[0] as u64, ts[1] as u32))
}

/// Reads a `struct itimerspec`: (interval, value).
fn read_itimerspec(r: &Runner, addr: u64) -> KResult<(Duration, Duration)> {
    let v: [i64; 4] = r.read_val(addr)?;
    let ok = |s: i64, ns: i64| s >= 0 && (0..1_000_000_000).contains(&ns);
    if !ok(v[0], v[1]) || !ok(v[2], v[3]) {
        return Err(Errno::EINVAL);
    }
    Ok((
        Duration::new(v[0] as u64, v[1] as u32),
        Duration::new(v[2] as u64, v[3] as u32),
    ))
}

fn ts(d: Duration) -> [i64; 2] {
    [d.as_secs() as i64, d.subsec_nanos() as i64]
}

/// Writes a `struct itimerspec` from (value, interval).
fn write_itimerspec(r: &Runner, addr: u64, (value, interval): (Duration, Duration)) -> KResult<()> {
    let i = ts(interval);
    let v = ts(value);
    r.write_val(addr, &[i[0], i[1], v[0], v[1]])
}

/// The timer thread's handle on an object.
fn weak_expire<T: Expire + 'static>(t: &Arc<T>) -> Weak<dyn Expire> {
    let a: Arc<dyn Expire> = t.clone();
    Arc::downgrade(&a)
}

/// Runs `f` with the signal mask at `mask_addr` (if any) installed; after
/// an interruption the old mask comes back once the handler ran
/// (sigsuspend semantics, as epoll_pwait(2) requires).
fn with_sigmask<T>(
    r: &mut Runner,
    mask_addr: u64,
    size: u64,
    f: impl FnOnce(&mut Runner) -> KResult<T>,
) -> KResult<T> {
    if mask_addr == 0 {
        return f(r);
    }
    if size != 8 {
        return Err(Errno::EINVAL);
    }
    let set: SigSet = r.read_val(mask_addr)?;
    let old = {
        let mut s = lock(&r.t.sig);
        let old = s.mask;
        s.mask = set & !signal::UNBLOCKABLE;
        old
    };
    let res = f(r);
    let mut s = lock(&r.t.sig);
    if matches!(res, Err(Errno::EINTR)) {
        s.saved_mask = Some(old);
    } else {
        s.mask = old;
    }
    res
}

// ---- epoll ----

fn new_epoll(r: &mut Runner, cloexec: bool) -> KResult<u64> {
    let reg = r.k.events.registry.clone();
    let core = EpollCore::new(reg.clone())?;
    let f = OpenFile::new(Box::new(EpollFile(core.clone())), libc::O_RDWR, Vec::new());
    reg.insert(&f, Kind::Epoll(Arc::downgrade(&core)));
    install(r, f, cloexec)
}

pub fn epoll_create(r: &mut Runner, a: A) -> KResult<u64> {
    if a[0] as i32 <= 0 {
        return Err(Errno::EINVAL);
    }
    new_epoll(r, false)
}

pub fn epoll_create1(r: &mut Runner, a: A) -> KResult<u64> {
    let flags = a[0] as i32;
    if flags & !libc::EPOLL_CLOEXEC != 0 {
        return Err(Errno::EINVAL);
    }
    new_epoll(r, flags & libc::EPOLL_CLOEXEC != 0)
}

pub fn epoll_ctl(r: &mut Runner, a: A) -> KResult<u64> {
    let op = a[1] as i32;
    let fd = a[2] as i32;
    let ev = if op != EPOLL_CTL_DEL {
        EpollEvent::from_bytes(r.read_val::<[u8; 12]>(a[3])?)
    } else {
        EpollEvent::default()
    };
    let ep = r.file(a[0])?;
    let target = r.file(a[2])?;
    // Files without a poll operation in Linux (regular files, directories,
    // /dev/null, /dev/zero, /dev/full) cannot be watched.
    let st = target.ops.stat()?;
    let no_poll_dev = st.file_type() == libc::S_IFCHR
        && [(1, 3), (1, 5), (1, 7)]
            .iter()
            .any(|&(ma, mi)| st.st_rdev == libc::makedev(ma, mi));
    if matches!(st.file_type(), libc::S_IFREG | libc::S_IFDIR) || no_poll_dev {
        return Err(Errno::EPERM);
    }
    let reg = &r.k.events.registry;
    if Arc::ptr_eq(&ep, &target) {
        return Err(Errno::EINVAL);
    }
    let core = reg.epoll(&ep).ok_or(Errno::EINVAL)?;
    let nested = reg.epoll(&target);
    let events = ev.events;
    if op != EPOLL_CTL_DEL && events & EPOLLEXCLUSIVE != 0 {
        if op == EPOLL_CTL_MOD {
            return Err(Errno::EINVAL);
        }
        if op == EPOLL_CTL_ADD && (nested.is_some() || events & !EPOLLEXCLUSIVE_OK_BITS != 0) {
            return Err(Errno::EINVAL);
        }
    }
    match (op, nested) {
        (EPOLL_CTL_ADD, Some(child)) => epoll::add_nested(&core, &child, fd, &target, ev)?,
        _ => core.ctl(op, fd, &target, ev)?,
    }
    Ok(0)
}

/// Most events one epoll_wait may ask for (Linux's EP_MAX_EVENTS).
const EP_MAX_EVENTS: u64 = (i32::MAX as u64) / 12;
/// End of the application's address space (access_ok).
const TASK_SIZE: u64 = 0x7fff_ffff_f000;

fn do_epoll_wait(
    r: &mut Runner,
    epfd: u64,
    addr: u64,
    max: u64,
    deadline: Option<Instant>,
) -> KResult<u64> {
    let max_i = max as i32;
    if max_i <= 0 || max_i as u64 > EP_MAX_EVENTS {
        return Err(Errno::EINVAL);
    }
    let max = max_i as usize;
    if addr
        .checked_add(max as u64 * 12)
        .is_none_or(|end| end > TASK_SIZE)
    {
        return Err(Errno::EFAULT);
    }
    let f = r.file(epfd)?;
    let core = r.k.events.registry.epoll(&f).ok_or(Errno::EINVAL)?;
    let got = loop {
        let got = core.harvest(max);
        if !got.is_empty() {
            break got;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(0);
        }
        // Sleep on the instance's aggregate eventfd and on the host fds of
        // host-backed files below it (held open while we sleep).
        let generation = epoll::generation();
        let mut hosts = Vec::new();
        core.host_sources(&mut hosts, 0);
        let mut fds = vec![(core.wake_fd(), libc::POLLIN)];
        fds.extend(
            hosts
                .iter()
                .filter_map(|(f, ev)| f.ops.host_fd().map(|h| (h, *ev))),
        );
        let res = r.block(&[], &fds, deadline, |_| {
            let got = core.harvest(max);
            if !got.is_empty() {
                Some(Ok(Some(got)))
            } else if epoll::generation() != generation {
                // Interest lists changed: re-collect what to sleep on.
                Some(Ok(None))
            } else {
                None
            }
        });
        drop(hosts);
        match res {
            Ok(Some(got)) => break got,
            Ok(None) => continue,
            Err(Errno::ETIMEDOUT) => return Ok(0),
            // epoll_wait is never restarted (signal(7)).
            Err(Errno::ERESTARTSYS) => return Err(Errno::EINTR),
            Err(e) => return Err(e),
        }
    };
    let mut buf = Vec::with_capacity(got.len() * 12);
    for e in &got {
        buf.extend_from_slice(&e.to_bytes());
    }
    r.write_mem(addr, &buf)?;
    Ok(got.len() as u64)
}

fn ms_deadline(ms: i32) -> Option<Instant> {
    (ms >= 0).then(|| Instant::now() + Duration::from_millis(ms as u64))
}

pub fn epoll_wait(r: &mut Runner, a: A) -> KResult<u64> {
    do_epoll_wait(r, a[0], a[1], a[2], ms_deadline(a[3] as i32))
}

pub fn epoll_pwait(r: &mut Runner, a: A) -> KResult<u64> {
    let deadline = ms_deadline(a[3] as i32);
    with_sigmask(r, a[4], a[5], |r| {
        do_epoll_wait(r, a[0], a[1], a[2], deadline)
    })
}

pub fn epoll_pwait2(r: &mut Runner, a: A) -> KResult<u64> {
    let deadline = if a[3] != 0 {
        let d = read_timespec(r, a[3])?;
        // A timeout too far away to represent never expires.
        Instant::now().checked_add(d)
    } else {
        None
    };
    with_sigmask(r, a[4], a[5], |r| {
        do_epoll_wait(r, a[0], a[1], a[2], deadline)
    })
}

// ---- eventfd ----

pub fn eventfd(r: &mut Runner, a: A) -> KResult<u64> {
    eventfd2(r, [a[0], 0, 0, 0, 0, 0])
}

pub fn eventfd2(r: &mut Runner, a: A) -> KResult<u64> {
    let init = a[0] as u32 as u64;
    let flags = a[1] as i32;
    if flags & !(libc::EFD_CLOEXEC | libc::EFD_NONBLOCK | EFD_SEMAPHORE) != 0 {
        return Err(Errno::EINVAL);
    }
    let e = EventFd::new(init, flags & EFD_SEMAPHORE != 0);
    let f = OpenFile::new(
        Box::new(e),
        libc::O_RDWR | (flags & libc::O_NONBLOCK),
        Vec::new(),
    );
    install(r, f, flags & libc::EFD_CLOEXEC != 0)
}

// ---- timerfd ----

fn timerfd_of(r: &Runner, fd: u64) -> KResult<Arc<TimerFd>> {
    let f = r.file(fd)?;
    r.k.events.registry.timerfd(&f).ok_or(Errno::EINVAL)
}

pub fn timerfd_create(r: &mut Runner, a: A) -> KResult<u64> {
    let clock = a[0] as i32;
    let flags = a[1] as i32;
    let clock_ok = matches!(
        clock,
        libc::CLOCK_REALTIME
            | libc::CLOCK_MONOTONIC
            | libc::CLOCK_BOOTTIME
            | libc::CLOCK_REALTIME_ALARM
            | libc::CLOCK_BOOTTIME_ALARM
    );
    if !clock_ok || flags & !(libc::TFD_CLOEXEC | libc::TFD_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    let t = TimerFd::new(clock);
    let f = OpenFile::new(
        Box::new(TimerFdFile(t.clone())),
        libc::O_RDWR | (flags & libc::O_NONBLOCK),
        Vec::new(),
    );
    r.k.events
        .registry
        .insert(&f, Kind::TimerFd(Arc::downgrade(&t)));
    install(r, f, flags & libc::TFD_CLOEXEC != 0)
}

pub fn timerfd_settime(r: &mut Runner, a: A) -> KResult<u64> {
    let flags = a[1] as i32;
    let (interval, value) = read_itimerspec(r, a[2])?;
    if flags & !(libc::TFD_TIMER_ABSTIME | libc::TFD_TIMER_CANCEL_ON_SET) != 0 {
        return Err(Errno::EINVAL);
    }
    let t = timerfd_of(r, a[0])?;
    let (old, next) = t.set(value, interval, flags & libc::TFD_TIMER_ABSTIME != 0);
    match next {
        Some(at) => r.k.events.timers.arm(t.id, at, weak_expire(&t)),
        None => r.k.events.timers.cancel(t.id),
    }
    if a[3] != 0 {
        write_itimerspec(r, a[3], old)?;
    }
    Ok(0)
}

pub fn timerfd_gettime(r: &mut Runner, a: A) -> KResult<u64> {
    let t = timerfd_of(r, a[0])?;
    write_itimerspec(r, a[1], t.get())?;
    Ok(0)
}

// ---- signalfd ----

pub fn signalfd(r: &mut Runner, a: A) -> KResult<u64> {
    signalfd4(r, [a[0], a[1], a[2], 0, 0, 0])
}

pub fn signalfd4(r: &mut Runner, a: A) -> KResult<u64> {
    let fd = a[0] as i32;
    if a[2] != 8 {
        return Err(Errno::EINVAL);
    }
    let mask: SigSet = r.read_val(a[1])?;
    let flags = a[3] as i32;
    if flags & !(libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    if fd != -1 {
        let f = r.file(a[0])?;
        let s = r.k.events.registry.signalfd(&f).ok_or(Errno::EINVAL)?;
        s.set_mask(mask);
        return Ok(fd as u64);
    }
    let s = SignalFd::new(&r.k, mask);
    let f = OpenFile::new(
        Box::new(SignalFdFile(s.clone())),
        libc::O_RDWR | (flags & libc::O_NONBLOCK),
        Vec::new(),
    );
    r.k.events
        .registry
        .insert(&f, Kind::SignalFd(Arc::downgrade(&s)));
    install(r, f, flags & libc::SFD_CLOEXEC != 0)
}

// ---- interval timers ----

fn read_itimerval(r: &Runner, addr: u64) -> KResult<(Duration, Duration)> {
    let v: [i64; 4] = r.read_val(addr)?;
    let ok = |s: i64, us: i64| s >= 0 && (0..1_000_000).contains(&us);
    if !ok(v[0], v[1]) || !ok(v[2], v[3]) {
        return Err(Errno::EINVAL);
    }
    Ok((
        Duration::new(v[0] as u64, v[1] as u32 * 1000),
        Duration::new(v[2] as u64, v[3] as u32 * 1000),
    ))
}

fn write_itimerval(r: &Runner, addr: u64, (value, interval): (Duration, Duration)) -> KResult<()> {
    let tv = |d: Duration| [d.as_secs() as i64, d.subsec_micros() as i64];
    let i = tv(interval);
    let v = tv(value);
    r.write_val(addr, &[i[0], i[1], v[0], v[1]])
}

fn which(a: u64) -> KResult<usize> {
    match a as i32 {
        w @ 0..=2 => Ok(w as usize),
        _ => Err(Errno::EINVAL),
    }
}

pub fn alarm(r: &mut Runner, a: A) -> KResult<u64> {
    let secs = a[0] as u32;
    let (old, _) = r.k.events.set_itimer(
        &r.k,
        &r.t.tg,
        ITIMER_REAL,
        Duration::from_secs(secs as u64),
        Duration::ZERO,
    );
    // Round like Linux: a pending alarm never reads as 0 seconds.
    let mut s = old.as_secs();
    let us = old.subsec_micros();
    if (s == 0 && us > 0) || us >= 500_000 {
        s += 1;
    }
    Ok(s)
}

pub fn setitimer(r: &mut Runner, a: A) -> KResult<u64> {
    let (interval, value) = if a[1] != 0 {
        read_itimerval(r, a[1])?
    } else {
        (Duration::ZERO, Duration::ZERO)
    };
    let w = which(a[0])?;
    let old = r.k.events.set_itimer(&r.k, &r.t.tg, w, value, interval);
    if a[2] != 0 {
        write_itimerval(r, a[2], old)?;
    }
    Ok(0)
}

pub fn getitimer(r: &mut Runner, a: A) -> KResult<u64> {
    let w = which(a[0])?;
    let cur = r.k.events.get_itimer(&r.t.tg, w);
    write_itimerval(r, a[1], cur)?;
    Ok(0)
}

// ---- POSIX timers ----

const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;
const SIGEV_THREAD: i32 = 2;
const SIGEV_THREAD_ID: i32 = 4;

/// Checks a `struct sigevent` (Linux's `good_sigevent`).
fn parse_sigevent(r: &Runner, b: &[u8; 64]) -> KResult<Notify> {
    let i32_at = |o: usize| i32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[..8]);
    let value = u64::from_le_bytes(v);
    let signo = i32_at(8);
    let notify = i32_at(12);
    let tid = i32_at(16);
    let sig_ok = (1..=64).contains(&signo);
    match notify {
        SIGEV_NONE => Ok(Notify::None),
        SIGEV_SIGNAL | SIGEV_THREAD if sig_ok => Ok(Notify::Signal {
            signo,
            value,
            tid: None,
        }),
        SIGEV_THREAD_ID => {
            let t = r.k.task(tid).ok_or(Errno::EINVAL)?;
            if !Arc::ptr_eq(&t.tg, &r.t.tg) || !sig_ok {
                return Err(Errno::EINVAL);
            }
            Ok(Notify::Signal {
                signo,
                value,
                tid: Some(tid),
            })
        }
        _ => Err(Errno::EINVAL),
    }
}

pub fn timer_create(r: &mut Runner, a: A) -> KResult<u64> {
    let sev = if a[1] != 0 {
        let mut b = [0u8; 64];
        r.read_mem(a[1], &mut b)?;
        Some(b)
    } else {
        None
    };
    let clock = a[0] as i32;
    match clock {
        libc::CLOCK_REALTIME
        | libc::CLOCK_MONOTONIC
        | libc::CLOCK_PROCESS_CPUTIME_ID
        | libc::CLOCK_THREAD_CPUTIME_ID
        | libc::CLOCK_BOOTTIME
        | libc::CLOCK_REALTIME_ALARM
        | libc::CLOCK_BOOTTIME_ALARM
        | libc::CLOCK_TAI => {}
        libc::CLOCK_MONOTONIC_RAW | libc::CLOCK_REALTIME_COARSE | libc::CLOCK_MONOTONIC_COARSE => {
            return Err(Errno::EOPNOTSUPP);
        }
        _ => return Err(Errno::EINVAL),
    }
    let notify = match sev {
        Some(b) => Some(parse_sigevent(r, &b)?),
        None => None,
    };
    let id = r.k.events.timer_create(&r.k, &r.t.tg, clock, notify)?;
    if let Err(e) = r.write_val(a[2], &id) {
        let _ = r.k.events.timer_delete(&r.t.tg, id);
        return Err(e);
    }
    Ok(0)
}

pub fn timer_settime(r: &mut Runner, a: A) -> KResult<u64> {
    if a[2] == 0 {
        return Err(Errno::EINVAL);
    }
    let (interval, value) = read_itimerspec(r, a[2])?;
    let abs = a[1] as i32 & libc::TIMER_ABSTIME != 0;
    let old =
        r.k.events
            .timer_settime(&r.t.tg, a[0] as i32, abs, value, interval)?;
    if a[3] != 0 {
        write_itimerspec(r, a[3], old)?;
    }
    Ok(0)
}

pub fn timer_gettime(r: &mut Runner, a: A) -> KResult<u64> {
    let cur = r.k.events.timer_gettime(&r.t.tg, a[0] as i32)?;
    write_itimerspec(r, a[1], cur)?;
    Ok(0)
}

pub fn timer_getoverrun(r: &mut Runner, a: A) -> KResult<u64> {
    r.k.events
        .timer_getoverrun(&r.t.tg, a[0] as i32)
        .map(|n| n as u64)
}

pub fn timer_delete(r: &mut Runner, a: A) -> KResult<u64> {
    r.k.events.timer_delete(&r.t.tg, a[0] as i32)?;
    Ok(0)
}

// ---- inotify ----

/// inotify_init, inotify_init1, inotify_add_watch, inotify_rm_watch.
pub fn inotify_unimplemented(r: &mut Runner, _a: A) -> KResult<u64> {
    let nr = r.regs.orig_rax;
    r.k.log_enosys(nr, super::table::name_of(nr));
    Err(Errno::ENOSYS)
}

#[cfg(test)]
mod tests {
    use super::super::table::{self, Support};
    use super::ROWS;

    #[test]
    fn rows_are_the_right_syscalls() {
        let names: Vec<(u32, &str)> = ROWS
            .iter()
            .map(|r| (r.0, table::name_of(r.0 as u64)))
            .collect();
        let want = [
            "epoll_create",
            "epoll_create1",
            "epoll_ctl",
            "epoll_wait",
            "epoll_pwait",
            "epoll_pwait2",
            "eventfd",
            "eventfd2",
            "timerfd_create",
            "timerfd_settime",
            "timerfd_gettime",
            "signalfd",
            "signalfd4",
            "alarm",
            "getitimer",
            "setitimer",
            "timer_create",
            "timer_settime",
            "timer_gettime",
            "timer_getoverrun",
            "timer_delete",
            "inotify_init",
            "inotify_add_watch",
            "inotify_rm_watch",
            "inotify_init1",
        ];
        let got: Vec<&str> = names.iter().map(|(_, n)| *n).collect();
        assert_eq!(got, want);
        for e in table::entries() {
            if e.name.starts_with("inotify") {
                assert_eq!(e.support, Support::Unimplemented, "{}", e.name);
                assert!(!e.note.is_empty());
            }
            if e.name == "alarm" || e.name == "epoll_wait" || e.name == "signalfd4" {
                assert_eq!(e.support, Support::Full, "{}", e.name);
            }
        }
    }
}
