//! Clocks, sleeps and resource usage.
#![allow(missing_docs)] // handlers are named after the syscalls they serve

use crate::kernel::run::Runner;
use crate::kernel::task::lock;
use crate::kernel::{Errno, KResult};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

type A = [u64; 6];

/// Reads a host clock.
pub fn host_clock(id: i32) -> Duration {
    let (sec, nsec) = crate::ffi::clock_gettime(id);
    Duration::new(sec as u64, nsec as u32)
}

fn thread_cpu(r: &Runner) -> Duration {
    Duration::from_nanos(r.t.cpu_ns.load(Ordering::Relaxed))
}

fn process_cpu(r: &Runner) -> Duration {
    let inner = lock(&r.t.tg.inner);
    let live: u64 = inner
        .tasks
        .iter()
        .map(|t| t.cpu_ns.load(Ordering::Relaxed))
        .sum();
    Duration::from_nanos(live + inner.cpu_ns_dead)
}

fn clock_now(r: &Runner, id: i32) -> KResult<Duration> {
    match id {
        libc::CLOCK_REALTIME | libc::CLOCK_REALTIME_COARSE | libc::CLOCK_TAI => {
            Ok(host_clock(libc::CLOCK_REALTIME))
        }
        libc::CLOCK_MONOTONIC
        | libc::CLOCK_MONOTONIC_COARSE
        | libc::CLOCK_MONOTONIC_RAW
        | libc::CLOCK_BOOTTIME => Ok(host_clock(libc::CLOCK_MONOTONIC)),
        libc::CLOCK_PROCESS_CPUTIME_ID => Ok(process_cpu(r)),
        libc::CLOCK_THREAD_CPUTIME_ID => Ok(thread_cpu(r)),
        _ => Err(Errno::EINVAL),
    }
}

fn ts_bytes(d: Duration) -> [i64; 2] {
    [d.as_secs() as i64, d.subsec_nanos() as i64]
}

fn read_ts(r: &Runner, addr: u64) -> KResult<Duration> {
    let ts: [i64; 2] = r.read_val(addr)?;
    if ts[0] < 0 || !(0..1_000_000_000).contains(&ts[1]) {
        return Err(Errno::EINVAL);
    }
    Ok(Duration::new(ts[0] as u64, ts[1] as u32))
}

pub fn clock_gettime(r: &mut Runner, a: A) -> KResult<u64> {
    let d = clock_now(r, a[0] as i32)?;
    r.write_val(a[1], &ts_bytes(d))?;
    Ok(0)
}

pub fn clock_getres(r: &mut Runner, a: A) -> KResult<u64> {
    clock_now(r, a[0] as i32)?;
    if a[1] != 0 {
        r.write_val(a[1], &[0i64, 1])?;
    }
    Ok(0)
}

pub fn gettimeofday(r: &mut Runner, a: A) -> KResult<u64> {
    let d = host_clock(libc::CLOCK_REALTIME);
    if a[0] != 0 {
        r.write_val(a[0], &[d.as_secs() as i64, d.subsec_micros() as i64])?;
    }
    if a[1] != 0 {
        r.write_val(a[1], &[0i32, 0])?;
    }
    Ok(0)
}

pub fn time(r: &mut Runner, a: A) -> KResult<u64> {
    let s = host_clock(libc::CLOCK_REALTIME).as_secs();
    if a[0] != 0 {
        r.write_val(a[0], &(s as i64))?;
    }
    Ok(s)
}

fn sleep_until(r: &mut Runner, deadline: Instant, rem: u64) -> KResult<u64> {
    match r.block::<()>(&[], &[], Some(deadline), |_| None) {
        Err(Errno::ETIMEDOUT) => Ok(0),
        Err(Errno::ERESTARTNOINTR) => Err(Errno::ERESTARTNOINTR),
        Err(_) => {
            if rem != 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                r.write_val(rem, &ts_bytes(left))?;
            }
            Err(Errno::EINTR)
        }
        Ok(()) => Ok(0),
    }
}

pub fn nanosleep(r: &mut Runner, a: A) -> KResult<u64> {
    let d = read_ts(r, a[0])?;
    sleep_until(r, Instant::now() + d, a[1])
}

pub fn clock_nanosleep(r: &mut Runner, a: A) -> KResult<u64> {
    let id = a[0] as i32;
    let now = clock_now(r, id)?;
    let d = read_ts(r, a[2])?;
    let abs = a[1] as i32 & libc::TIMER_ABSTIME != 0;
    let wait = if abs { d.saturating_sub(now) } else { d };
    sleep_until(r, Instant::now() + wait, if abs { 0 } else { a[3] })
}

pub fn alarm(_r: &mut Runner, _a: A) -> KResult<u64> {
    Ok(0)
}

fn tv(d: Duration) -> [i64; 2] {
    [d.as_secs() as i64, d.subsec_micros() as i64]
}

pub fn getrusage(r: &mut Runner, a: A) -> KResult<u64> {
    let who = a[0] as i32;
    let cpu = match who {
        libc::RUSAGE_SELF => process_cpu(r),
        libc::RUSAGE_THREAD => thread_cpu(r),
        libc::RUSAGE_CHILDREN => Duration::from_nanos(lock(&r.t.tg.inner).child_cpu_ns),
        _ => return Err(Errno::EINVAL),
    };
    let mut buf = [0i64; 18];
    let u = tv(cpu);
    buf[0] = u[0];
    buf[1] = u[1];
    r.write_val(a[1], &buf)?;
    Ok(0)
}

pub fn times(r: &mut Runner, a: A) -> KResult<u64> {
    let ticks = |d: Duration| (d.as_millis() / 10) as i64;
    if a[0] != 0 {
        let child = Duration::from_nanos(lock(&r.t.tg.inner).child_cpu_ns);
        r.write_val(a[0], &[ticks(process_cpu(r)), 0, ticks(child), 0])?;
    }
    Ok(ticks(host_clock(libc::CLOCK_MONOTONIC)) as u64)
}
