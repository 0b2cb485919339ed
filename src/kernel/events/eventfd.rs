//! eventfd(2): a 64-bit counter as a file.

use super::{anon_ino, anon_stat};
use crate::kernel::fs::file::{FileOps, PollEvents, Stat};
use crate::kernel::task::lock;
use crate::kernel::wait::WaitQueue;
use crate::kernel::{Errno, KResult};
use std::sync::Mutex;

/// The largest value the counter may hold (`0xffff_ffff_ffff_fffe`).
pub const EVENTFD_MAX: u64 = u64::MAX - 1;

/// EFD_SEMAPHORE.
pub const EFD_SEMAPHORE: i32 = 1;

/// An eventfd object.
#[derive(Debug)]
pub struct EventFd {
    count: Mutex<u64>,
    semaphore: bool,
    wq: WaitQueue,
    ino: u64,
}

impl EventFd {
    /// A counter starting at `init`; `semaphore` reads decrement by one.
    pub fn new(init: u64, semaphore: bool) -> EventFd {
        EventFd {
            count: Mutex::new(init),
            semaphore,
            wq: WaitQueue::new(),
            ino: anon_ino(),
        }
    }

    /// The counter now.
    pub fn value(&self) -> u64 {
        *lock(&self.count)
    }

    /// Whether reads decrement by one (EFD_SEMAPHORE).
    pub fn is_semaphore(&self) -> bool {
        self.semaphore
    }
}

impl FileOps for EventFd {
    /// Returns the counter and resets it (or returns 1 and decrements, in
    /// semaphore mode); EAGAIN while it is zero.
    fn read(&self, buf: &mut [u8], _pos: Option<u64>) -> KResult<usize> {
        if buf.len() < 8 {
            return Err(Errno::EINVAL);
        }
        let mut c = lock(&self.count);
        if *c == 0 {
            return Err(Errno::EAGAIN);
        }
        let v = if self.semaphore { 1 } else { *c };
        *c -= v;
        drop(c);
        buf[..8].copy_from_slice(&v.to_ne_bytes());
        self.wq.notify_all();
        Ok(8)
    }

    /// Adds an 8-byte value; EAGAIN if the sum would pass
    /// [`EVENTFD_MAX`], EINVAL for the value `u64::MAX`.
    fn write(&self, buf: &[u8], _pos: Option<u64>) -> KResult<usize> {
        // Exactly one 8-byte value: current Linux refuses longer writes too.
        let Ok(b) = <[u8; 8]>::try_from(buf) else {
            return Err(Errno::EINVAL);
        };
        let v = u64::from_ne_bytes(b);
        if v == u64::MAX {
            return Err(Errno::EINVAL);
        }
        let mut c = lock(&self.count);
        if EVENTFD_MAX - *c < v {
            return Err(Errno::EAGAIN);
        }
        *c += v;
        drop(c);
        if v > 0 {
            self.wq.notify_all();
        }
        Ok(8)
    }

    fn stat(&self) -> KResult<Stat> {
        Ok(anon_stat(self.ino))
    }

    fn poll(&self) -> PollEvents {
        let c = *lock(&self.count);
        let mut ev = PollEvents::empty();
        if c > 0 {
            ev |= PollEvents::IN | PollEvents::RDNORM;
        }
        if c < EVENTFD_MAX {
            ev |= PollEvents::OUT | PollEvents::WRNORM;
        }
        ev
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.wq)
    }

    fn proc_name(&self) -> Option<String> {
        Some("anon_inode:[eventfd]".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(e: &EventFd) -> KResult<u64> {
        let mut b = [0u8; 8];
        e.read(&mut b, None)?;
        Ok(u64::from_ne_bytes(b))
    }

    fn wr(e: &EventFd, v: u64) -> KResult<usize> {
        e.write(&v.to_ne_bytes(), None)
    }

    #[test]
    fn counter_mode() {
        let e = EventFd::new(3, false);
        assert!(e.poll().contains(PollEvents::IN | PollEvents::OUT));
        assert_eq!(wr(&e, 4), Ok(8));
        assert_eq!(rd(&e), Ok(7));
        assert_eq!(rd(&e), Err(Errno::EAGAIN));
        assert!(!e.poll().contains(PollEvents::IN));
    }

    #[test]
    fn semaphore_mode() {
        let e = EventFd::new(2, true);
        assert_eq!(rd(&e), Ok(1));
        assert_eq!(rd(&e), Ok(1));
        assert_eq!(rd(&e), Err(Errno::EAGAIN));
    }

    #[test]
    fn sizes_and_overflow() {
        let e = EventFd::new(0, false);
        assert_eq!(e.write(&[1, 2, 3], None), Err(Errno::EINVAL));
        let mut small = [0u8; 4];
        assert_eq!(e.read(&mut small, None), Err(Errno::EINVAL));
        assert_eq!(wr(&e, u64::MAX), Err(Errno::EINVAL));
        assert_eq!(wr(&e, EVENTFD_MAX), Ok(8));
        assert!(!e.poll().contains(PollEvents::OUT));
        assert_eq!(wr(&e, 1), Err(Errno::EAGAIN));
        assert_eq!(wr(&e, 0), Ok(8));
        assert_eq!(rd(&e), Ok(EVENTFD_MAX));
        assert!(e.poll().contains(PollEvents::OUT));
    }
}
