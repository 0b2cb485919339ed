//! signalfd(2): reading pending signals from a file.
//!
//! Like Linux, a signalfd reads the pending signals of whichever task
//! reads (or polls) it: its thread-directed ones, then its process's. The
//! application blocks the signals with sigprocmask so they stay pending
//! instead of being delivered.

use super::{anon_ino, anon_stat, current_tid};
use crate::kernel::fs::file::{FileOps, PollEvents, Stat};
use crate::kernel::signal::{self, SigInfo, SigSet};
use crate::kernel::task::{Task, lock};
use crate::kernel::wait::WaitQueue;
use crate::kernel::{Errno, KResult, Kernel};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

/// `struct signalfd_siginfo`, what a read returns per signal.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)] // field names are the ABI's
pub struct SignalfdSiginfo {
    pub ssi_signo: u32,
    pub ssi_errno: i32,
    pub ssi_code: i32,
    pub ssi_pid: u32,
    pub ssi_uid: u32,
    pub ssi_fd: i32,
    pub ssi_tid: u32,
    pub ssi_band: u32,
    pub ssi_overrun: u32,
    pub ssi_trapno: u32,
    pub ssi_status: i32,
    pub ssi_int: i32,
    pub ssi_ptr: u64,
    pub ssi_utime: u64,
    pub ssi_stime: u64,
    pub ssi_addr: u64,
    pub ssi_addr_lsb: u16,
    pub __pad2: u16,
    pub ssi_syscall: i32,
    pub ssi_call_addr: u64,
    pub ssi_arch: u32,
    pub __pad: [u8; 28],
}
static_assertions::assert_eq_size!(SignalfdSiginfo, [u8; 128]);
static_assertions::const_assert_eq!(std::mem::offset_of!(SignalfdSiginfo, ssi_pid), 12);
static_assertions::const_assert_eq!(std::mem::offset_of!(SignalfdSiginfo, ssi_tid), 24);
static_assertions::const_assert_eq!(std::mem::offset_of!(SignalfdSiginfo, ssi_overrun), 32);
static_assertions::const_assert_eq!(std::mem::offset_of!(SignalfdSiginfo, ssi_status), 40);
static_assertions::const_assert_eq!(std::mem::offset_of!(SignalfdSiginfo, ssi_int), 44);
static_assertions::const_assert_eq!(std::mem::offset_of!(SignalfdSiginfo, ssi_ptr), 48);
static_assertions::const_assert_eq!(std::mem::offset_of!(SignalfdSiginfo, ssi_addr), 72);
static_assertions::const_assert_eq!(std::mem::offset_of!(SignalfdSiginfo, ssi_addr_lsb), 80);
static_assertions::const_assert_eq!(std::mem::offset_of!(SignalfdSiginfo, ssi_syscall), 84);
static_assertions::const_assert_eq!(std::mem::offset_of!(SignalfdSiginfo, ssi_call_addr), 88);
static_assertions::const_assert_eq!(std::mem::offset_of!(SignalfdSiginfo, ssi_arch), 96);

fn get_i32(i: &SigInfo, off: usize) -> i32 {
    let b = &i.0[off..off + 4];
    i32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn get_u64(i: &SigInfo, off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&i.0[off..off + 8]);
    u64::from_le_bytes(b)
}

/// Which union member of `siginfo_t` a signal uses (Linux's
/// `siginfo_layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Kill,
    Timer,
    Poll,
    Fault,
    Chld,
    Rt,
    Sys,
}

fn layout(sig: i32, code: i32) -> Layout {
    if code > signal::SI_USER && code < signal::SI_KERNEL {
        // Kernel-generated codes: the signal decides (limits are the
        // NSIG* counts of each signal's codes).
        let by_sig = match sig {
            libc::SIGILL if code <= 11 => Some(Layout::Fault),
            libc::SIGFPE if code <= 15 => Some(Layout::Fault),
            libc::SIGSEGV if code <= 10 => Some(Layout::Fault),
            libc::SIGBUS if code <= 5 => Some(Layout::Fault),
            libc::SIGTRAP if code <= 6 => Some(Layout::Fault),
            libc::SIGCHLD if code <= 6 => Some(Layout::Chld),
            libc::SIGIO if code <= 6 => Some(Layout::Poll),
            libc::SIGSYS if code <= 2 => Some(Layout::Sys),
            _ => None,
        };
        match by_sig {
            Some(l) => l,
            None if code <= 6 => Layout::Poll,
            None => Layout::Kill,
        }
    } else if code == signal::SI_TIMER {
        Layout::Timer
    } else if code == -5 {
        // SI_SIGIO
        Layout::Poll
    } else if code < 0 {
        Layout::Rt
    } else {
        Layout::Kill
    }
}

impl SignalfdSiginfo {
    /// Converts a queued siginfo the way Linux's `signalfd_copyinfo` does.
    pub fn from_siginfo(i: &SigInfo) -> SignalfdSiginfo {
        let mut s = SignalfdSiginfo {
            ssi_signo: i.signo() as u32,
            ssi_errno: get_i32(i, 4),
            ssi_code: i.code(),
            ..Default::default()
        };
        match layout(i.signo(), i.code()) {
            Layout::Kill => {
                s.ssi_pid = get_i32(i, 16) as u32;
                s.ssi_uid = get_i32(i, 20) as u32;
            }
            Layout::Timer => {
                s.ssi_tid = get_i32(i, 16) as u32;
                s.ssi_overrun = get_i32(i, 20) as u32;
                s.ssi_ptr = get_u64(i, 24);
                s.ssi_int = get_i32(i, 24);
            }
            Layout::Poll => {
                s.ssi_band = get_u64(i, 16) as u32;
                s.ssi_fd = get_i32(i, 24);
            }
            Layout::Fault => s.ssi_addr = get_u64(i, 16),
            Layout::Chld => {
                s.ssi_pid = get_i32(i, 16) as u32;
                s.ssi_uid = get_i32(i, 20) as u32;
                s.ssi_status = get_i32(i, 24);
                s.ssi_utime = get_u64(i, 32);
                s.ssi_stime = get_u64(i, 40);
            }
            Layout::Rt => {
                s.ssi_pid = get_i32(i, 16) as u32;
                s.ssi_uid = get_i32(i, 20) as u32;
                s.ssi_ptr = get_u64(i, 24);
                s.ssi_int = get_i32(i, 24);
            }
            Layout::Sys => {
                s.ssi_call_addr = get_u64(i, 16);
                s.ssi_syscall = get_i32(i, 24);
                s.ssi_arch = get_i32(i, 28) as u32;
            }
        }
        s
    }

    /// The 128 bytes a read returns.
    pub fn to_bytes(&self) -> [u8; 128] {
        let mut b = [0u8; 128];
        let mut put = |off: usize, v: &[u8]| b[off..off + v.len()].copy_from_slice(v);
        put(0, &self.ssi_signo.to_le_bytes());
        put(4, &self.ssi_errno.to_le_bytes());
        put(8, &self.ssi_code.to_le_bytes());
        put(12, &self.ssi_pid.to_le_bytes());
        put(16, &self.ssi_uid.to_le_bytes());
        put(20, &self.ssi_fd.to_le_bytes());
        put(24, &self.ssi_tid.to_le_bytes());
        put(28, &self.ssi_band.to_le_bytes());
        put(32, &self.ssi_overrun.to_le_bytes());
        put(36, &self.ssi_trapno.to_le_bytes());
        put(40, &self.ssi_status.to_le_bytes());
        put(44, &self.ssi_int.to_le_bytes());
        put(48, &self.ssi_ptr.to_le_bytes());
        put(56, &self.ssi_utime.to_le_bytes());
        put(64, &self.ssi_stime.to_le_bytes());
        put(72, &self.ssi_addr.to_le_bytes());
        put(80, &self.ssi_addr_lsb.to_le_bytes());
        put(84, &self.ssi_syscall.to_le_bytes());
        put(88, &self.ssi_call_addr.to_le_bytes());
        put(96, &self.ssi_arch.to_le_bytes());
        b
    }
}

/// A signalfd: a set of signals to read.
#[derive(Debug)]
pub struct SignalFd {
    mask: AtomicU64,
    k: Weak<Kernel>,
    wq: Arc<WaitQueue>,
    ino: u64,
}

impl SignalFd {
    /// A signalfd for `mask` (SIGKILL and SIGSTOP are dropped from it).
    pub fn new(k: &Arc<Kernel>, mask: SigSet) -> Arc<SignalFd> {
        Arc::new(SignalFd {
            mask: AtomicU64::new(mask & !signal::UNBLOCKABLE),
            k: Arc::downgrade(k),
            wq: k.events.sig_wq.clone(),
            ino: anon_ino(),
        })
    }

    /// The signals it reads.
    pub fn mask(&self) -> SigSet {
        self.mask.load(Ordering::Relaxed)
    }

    /// Replaces the set (signalfd on an existing descriptor).
    pub fn set_mask(&self, mask: SigSet) {
        self.mask
            .store(mask & !signal::UNBLOCKABLE, Ordering::Relaxed);
        self.wq.notify_all();
    }

    fn caller(&self) -> Option<Arc<Task>> {
        self.k.upgrade()?.task(current_tid()?)
    }

    /// Dequeues one pending signal of the caller in the set.
    fn dequeue(&self, t: &Task) -> Option<SigInfo> {
        let skip = !self.mask();
        if let Some(i) = lock(&t.sig).pending.pop(skip) {
            return Some(i);
        }
        lock(&t.tg.inner).pending.pop(skip)
    }
}

/// The file side of a signalfd.
#[derive(Debug)]
pub struct SignalFdFile(pub Arc<SignalFd>);

impl FileOps for SignalFdFile {
    /// Dequeues as many pending signals of the set as fit (128 bytes
    /// each); EAGAIN when there are none, EINVAL for a buffer too small
    /// for one.
    fn read(&self, buf: &mut [u8], _pos: Option<u64>) -> KResult<usize> {
        const SZ: usize = std::mem::size_of::<SignalfdSiginfo>();
        if buf.len() < SZ {
            return Err(Errno::EINVAL);
        }
        let t = self.0.caller().ok_or(Errno::EAGAIN)?;
        let mut n = 0;
        for chunk in buf.chunks_exact_mut(SZ) {
            let Some(info) = self.0.dequeue(&t) else {
                break;
            };
            chunk.copy_from_slice(&SignalfdSiginfo::from_siginfo(&info).to_bytes());
            n += SZ;
        }
        if n == 0 {
            return Err(Errno::EAGAIN);
        }
        Ok(n)
    }

    fn stat(&self) -> KResult<Stat> {
        Ok(anon_stat(self.0.ino))
    }

    fn poll(&self) -> PollEvents {
        let Some(t) = self.0.caller() else {
            return PollEvents::empty();
        };
        let mask = self.0.mask();
        let mine = lock(&t.sig).pending.set;
        let shared = lock(&t.tg.inner).pending.set;
        if (mine | shared) & mask != 0 {
            PollEvents::IN | PollEvents::RDNORM
        } else {
            PollEvents::empty()
        }
    }

    fn wait_queue(&self) -> Option<&WaitQueue> {
        Some(&self.0.wq)
    }

    fn proc_name(&self) -> Option<String> {
        Some("anon_inode:[signalfd]".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_kill_rt_timer_and_child_infos() {
        let k = SignalfdSiginfo::from_siginfo(&SigInfo::user(libc::SIGUSR1, 0, 42, 1000));
        assert_eq!(
            (k.ssi_signo, k.ssi_code, k.ssi_pid, k.ssi_uid),
            (10, 0, 42, 1000)
        );

        let mut q = SigInfo::user(40, signal::SI_QUEUE, 7, 0);
        q.set_value(0xdead_beef_0000_0005);
        let r = SignalfdSiginfo::from_siginfo(&q);
        assert_eq!(r.ssi_pid, 7);
        assert_eq!(r.ssi_int, 5);
        assert_eq!(r.ssi_ptr, 0xdead_beef_0000_0005);

        let t = SignalfdSiginfo::from_siginfo(&super::super::timers::timer_siginfo(
            libc::SIGALRM,
            3,
            9,
            77,
        ));
        assert_eq!(
            (t.ssi_code, t.ssi_tid, t.ssi_overrun, t.ssi_int),
            (signal::SI_TIMER, 3, 9, 77)
        );

        let c = SignalfdSiginfo::from_siginfo(&SigInfo::child(1, 99, 0, 3));
        assert_eq!(
            (c.ssi_signo, c.ssi_code, c.ssi_pid, c.ssi_status),
            (17, 1, 99, 3)
        );

        let f = SignalfdSiginfo::from_siginfo(&SigInfo::fault(libc::SIGSEGV, 1, 0x1000));
        assert_eq!(f.ssi_addr, 0x1000);
        assert_eq!(f.ssi_pid, 0);
    }

    #[test]
    fn bytes_match_layout() {
        let s = SignalfdSiginfo {
            ssi_signo: 1,
            ssi_pid: 2,
            ssi_ptr: 3,
            ssi_arch: 4,
            ..Default::default()
        };
        let b = s.to_bytes();
        assert_eq!(b[0], 1);
        assert_eq!(b[12], 2);
        assert_eq!(b[48], 3);
        assert_eq!(b[96], 4);
    }
}
