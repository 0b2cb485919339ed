//! timerfd_create(2): a timer whose expirations are read from a file.
//!
//! Expirations are counted from the clock whenever the file is looked at
//! (read, poll, gettime), so the count is exact however late the timer
//! thread runs; the timer thread's only job is to wake waiters.

use super::timers::{Arm, Expire, first_expiry, next_timer_id};
use super::{anon_ino, anon_stat};
use crate::kernel::fs::file::{FileOps, PollEvents, Stat};
use crate::kernel::task::lock;
use crate::kernel::wait::WaitQueue;
use crate::kernel::{Errno, KResult};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct State {
    arm: Arm,
    ticks: u64,
}

impl State {
    fn advance(&mut self, now: Instant) {
        let n = self.arm.advance(now);
        self.ticks = self.ticks.saturating_add(n);
    }
}

/// A timerfd.
#[derive(Debug)]
pub struct TimerFd {
    /// Identity in the timer queue.
    pub id: u64,
    /// CLOCK_REALTIME, CLOCK_MONOTONIC or CLOCK_BOOTTIME (or an _ALARM
    /// variant, which behaves like its base clock here).
    pub clock: i32,
    st: Mutex<State>,
    wq: WaitQueue,
    ino: u64,
}

impl TimerFd {
    /// A disarmed timer on `clock`.
    pub fn new(clock: i32) -> Arc<TimerFd> {
        Arc::new(TimerFd {
            id: next_timer_id(),
            clock,
            st: Mutex::new(State::default()),
            wq: WaitQueue::new(),
            ino: anon_ino(),
        })
    }

    /// timerfd_settime: arms (or with a zero `value`, disarms) the timer
    /// and clears unread expirations. Returns the previous (remaining,
    /// interval) and the new first expiry, which the caller hands to the
    /// timer thread.
    pub fn set(
        &self,
        value: Duration,
        interval: Duration,
        abs: bool,
    ) -> ((Duration, Duration), Option<Instant>) {
        let now = Instant::now();
        let mut st = lock(&self.st);
        st.advance(now);
        let old = (st.arm.remaining(now), st.arm.interval);
        st.ticks = 0;
        st.arm = if value.is_zero() {
            Arm::default()
        } else {
            Arm {
                next: Some(first_expiry(self.clock, value, abs)),
                interval,
            }
        };
        let next = st.arm.next;
        drop(st);
        // Readers and pollers re-check (a pending expiration may be gone).
        self.wq.notify_all();
        (old, next)
    }

    /// For a checkpoint: (time from `now` to the next expiry, None when
    /// disarmed; interval; expirations not yet read), expirations up to
    /// `now` counted.
    pub fn snapshot(&self, now: Instant) -> (Option<Duration>, Duration, u64) {
        let mut st = lock(&self.st);
        st.advance(now);
        (
            st.arm.next.map(|n| n.saturating_duration_since(now)),
            st.arm.interval,
            st.ticks,
        )
    }

    /// A timer rebuilt from [`TimerFd::snapshot`], its next expiry
    /// `remaining` after `now` (the caller arms the timer thread with
    /// [`TimerFd::next_expiry`]).
    pub fn restored(
        clock: i32,
        remaining: Option<Duration>,
        interval: Duration,
        ticks: u64,
        now: Instant,
    ) -> Arc<TimerFd> {
        let t = TimerFd::new(clock);
        {
            let mut st = lock(&t.st);
            st.arm = Arm {
                next: remaining.map(|r| now.checked_add(r).unwrap_or(now)),
                interval,
            };
            st.ticks = ticks;
        }
        t
    }

    /// When the timer next expires, if armed.
    pub fn next_expiry(&self) -> Option<Instant> {
        lock(&self.st).arm.next
    }

    /// timerfd_gettime: (remaining, interval).
    pub fn get(&self) -> (Duration, Duration) {
        let now = Instant::now();
        let mut st = lock(&self.st);
        st.advance(now);
        (st.arm.remaining(now), st.arm.interval)
    }
}

impl Expire for TimerFd {
    fn expire(&self, now: Instant) -> Option<Instant> {
        let mut st = lock(&self.st);
        st.advance(now);
        let (ticks, next) = (st.ticks, st.arm.next);
        drop(st);
        if ticks > 0 {
            self.wq.notify_all();
        }
        next
    }
}

/// The file side of a timerfd.
#[derive(Debug)]
pub struct TimerFdFile(pub Arc<TimerFd>);

impl FileOps for TimerFdFile {
    /// Returns the number of expirations since the last read (8 bytes) and
    /// resets it; EAGAIN while there are none.
    fn read(&self, buf: &mut [u8], _pos: Option<u64>) -> KResult<usize> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let mut st = lock(&self.0.st);
        st.advance(Instant::now());
        if st.ticks == 0 {
            return Err(Errno::EAGAIN);
        }
        let t = std::mem::take(&mut st.ticks);
        buf[..8].copy_from_slice(&t.to_ne_bytes());
        Ok(8)
    }

    fn stat(&self) -> KResult<Stat> {
        Ok(anon_stat(self.0.ino))
    }

    fn poll(&self) -> PollEvents {
        let mut st = lock(&self.0.st);
        st.advance(Instant::now());
        if st.ticks > 0 {
            PollEvents::IN | PollEvents::RDNORM
        } else {
            PollEvents::empty()
        }
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.0.wq)
    }

    fn proc_name(&self) -> Option<String> {
        Some("anon_inode:[timerfd]".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticks(f: &TimerFdFile) -> KResult<u64> {
        let mut b = [0u8; 8];
        f.read(&mut b, None)?;
        Ok(u64::from_ne_bytes(b))
    }

    #[test]
    fn one_shot_and_periodic() {
        let t = TimerFd::new(libc::CLOCK_MONOTONIC);
        let f = TimerFdFile(t.clone());
        assert_eq!(ticks(&f), Err(Errno::EAGAIN));
        let mut small = [0u8; 7];
        assert_eq!(f.read(&mut small, None), Err(Errno::EINVAL));
        // Already due: absolute time zero on the monotonic clock.
        let (old, next) = t.set(Duration::from_nanos(1), Duration::ZERO, true);
        assert_eq!(old, (Duration::ZERO, Duration::ZERO));
        assert!(next.is_some());
        assert!(f.poll().contains(PollEvents::IN));
        assert_eq!(ticks(&f), Ok(1));
        assert_eq!(t.get(), (Duration::ZERO, Duration::ZERO));
        // Periodic, 5 ms: one expiration per full period elapsed.
        let iv = Duration::from_millis(5);
        let start = Instant::now();
        t.set(iv, iv, false);
        std::thread::sleep(Duration::from_millis(23));
        let n = ticks(&f).expect("expired");
        let most = (start.elapsed().as_millis() / 5) as u64;
        assert!((4..=most).contains(&n), "{n} ticks, at most {most}");
        let (rem, ival) = t.get();
        assert!(rem <= iv);
        assert_eq!(ival, iv);
        // Re-arming clears unread expirations; zero disarms.
        std::thread::sleep(Duration::from_millis(6));
        t.set(Duration::ZERO, Duration::ZERO, false);
        assert_eq!(ticks(&f), Err(Errno::EAGAIN));
    }
}
