//! Signals: sets, actions, queued signal information, default actions and
//! the x86_64 signal frame.

pub mod frame;

use std::collections::VecDeque;

/// Number of signals (1..=64).
pub const NSIG: usize = 64;

/// A set of signals, bit `n-1` for signal `n`.
pub type SigSet = u64;

/// The bit of signal `sig`.
pub fn bit(sig: i32) -> SigSet {
    if (1..=64).contains(&sig) {
        1u64 << (sig - 1)
    } else {
        0
    }
}

/// Signals that can be neither caught, blocked nor ignored.
pub const UNBLOCKABLE: SigSet = (1 << (libc::SIGKILL - 1)) | (1 << (libc::SIGSTOP - 1));

/// `struct sigaction` as the kernel ABI lays it out (`rt_sigaction`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SigAction {
    /// Handler address, or SIG_DFL (0) / SIG_IGN (1).
    pub handler: u64,
    /// SA_* flags.
    pub flags: u64,
    /// sa_restorer.
    pub restorer: u64,
    /// Signals blocked while the handler runs.
    pub mask: SigSet,
}
static_assertions::assert_eq_size!(SigAction, [u8; 32]);

/// SIG_DFL.
pub const SIG_DFL: u64 = 0;
/// SIG_IGN.
pub const SIG_IGN: u64 = 1;
/// SA_NOCLDSTOP.
pub const SA_NOCLDSTOP: u64 = 1;
/// SA_NOCLDWAIT.
pub const SA_NOCLDWAIT: u64 = 2;
/// SA_SIGINFO.
pub const SA_SIGINFO: u64 = 4;
/// SA_ONSTACK.
pub const SA_ONSTACK: u64 = 0x0800_0000;
/// SA_RESTART.
pub const SA_RESTART: u64 = 0x1000_0000;
/// SA_NODEFER.
pub const SA_NODEFER: u64 = 0x4000_0000;
/// SA_RESETHAND.
pub const SA_RESETHAND: u64 = 0x8000_0000;
/// SA_RESTORER.
pub const SA_RESTORER: u64 = 0x0400_0000;

/// What a signal does when its action is SIG_DFL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultAction {
    /// Terminate the thread group.
    Terminate,
    /// Terminate and dump core (reported as such in the wait status).
    Core,
    /// Ignore.
    Ignore,
    /// Stop the thread group.
    Stop,
    /// Continue a stopped thread group.
    Continue,
}

/// The default action of `sig` (signal(7)).
pub fn default_action(sig: i32) -> DefaultAction {
    use DefaultAction::*;
    match sig {
        libc::SIGCHLD | libc::SIGURG | libc::SIGWINCH => Ignore,
        libc::SIGCONT => Continue,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU => Stop,
        libc::SIGQUIT
        | libc::SIGILL
        | libc::SIGTRAP
        | libc::SIGABRT
        | libc::SIGBUS
        | libc::SIGFPE
        | libc::SIGSEGV
        | libc::SIGXCPU
        | libc::SIGXFSZ
        | libc::SIGSYS => Core,
        _ => Terminate,
    }
}

/// The handlers of a thread group (shared with CLONE_SIGHAND).
#[derive(Debug, Clone)]
pub struct SigHandlers {
    /// Action per signal, index `sig-1`.
    pub actions: [SigAction; NSIG],
}

impl Default for SigHandlers {
    fn default() -> Self {
        SigHandlers {
            actions: [SigAction::default(); NSIG],
        }
    }
}

impl SigHandlers {
    /// The action of `sig`.
    pub fn get(&self, sig: i32) -> SigAction {
        self.actions[(sig - 1) as usize]
    }

    /// Whether `sig` would be ignored if delivered now.
    pub fn ignored(&self, sig: i32) -> bool {
        let a = self.get(sig);
        a.handler == SIG_IGN
            || (a.handler == SIG_DFL && default_action(sig) == DefaultAction::Ignore)
    }

    /// On execve: handled signals return to SIG_DFL, ignored stay ignored.
    pub fn reset_for_exec(&mut self) {
        for a in self.actions.iter_mut() {
            if a.handler != SIG_IGN {
                *a = SigAction::default();
            }
        }
    }
}

/// `siginfo_t`, 128 bytes, filled field by field.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SigInfo(pub [u8; 128]);
static_assertions::assert_eq_size!(SigInfo, [u8; 128]);

impl Default for SigInfo {
    fn default() -> Self {
        SigInfo([0; 128])
    }
}

impl std::fmt::Debug for SigInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigInfo(signo={}, code={})", self.signo(), self.code())
    }
}

/// si_code: sent by kill(2).
pub const SI_USER: i32 = 0;
/// si_code: sent by the kernel.
pub const SI_KERNEL: i32 = 0x80;
/// si_code: sent by tkill/tgkill.
pub const SI_TKILL: i32 = -6;
/// si_code: sent by sigqueue.
pub const SI_QUEUE: i32 = -1;
/// si_code: timer expiry.
pub const SI_TIMER: i32 = -2;

impl SigInfo {
    fn put_i32(&mut self, off: usize, v: i32) {
        self.0[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, off: usize, v: u64) {
        self.0[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }
    fn get_i32(&self, off: usize) -> i32 {
        i32::from_le_bytes([
            self.0[off],
            self.0[off + 1],
            self.0[off + 2],
            self.0[off + 3],
        ])
    }

    /// A siginfo with signo and code.
    pub fn new(signo: i32, code: i32) -> SigInfo {
        let mut s = SigInfo([0; 128]);
        s.put_i32(0, signo);
        s.put_i32(8, code);
        s
    }

    /// From a kill/tkill sender.
    pub fn user(signo: i32, code: i32, pid: i32, uid: u32) -> SigInfo {
        let mut s = SigInfo::new(signo, code);
        s.put_i32(16, pid);
        s.put_i32(20, uid as i32);
        s
    }

    /// SIGCHLD information.
    pub fn child(code: i32, pid: i32, uid: u32, status: i32) -> SigInfo {
        let mut s = SigInfo::user(libc::SIGCHLD, code, pid, uid);
        s.put_i32(24, status);
        s
    }

    /// A fault (SIGSEGV etc.) at `addr`.
    pub fn fault(signo: i32, code: i32, addr: u64) -> SigInfo {
        let mut s = SigInfo::new(signo, code);
        s.put_u64(16, addr);
        s
    }

    /// Sets the sigval (si_value) field.
    pub fn set_value(&mut self, v: u64) {
        self.put_u64(24, v);
    }

    /// Signal number.
    pub fn signo(&self) -> i32 {
        self.get_i32(0)
    }

    /// si_code.
    pub fn code(&self) -> i32 {
        self.get_i32(8)
    }
}

/// Pending signals of a task or thread group. Standard signals coalesce;
/// real-time signals queue.
#[derive(Debug, Default, Clone)]
pub struct Pending {
    /// Queued signal information, in arrival order.
    pub queue: VecDeque<SigInfo>,
    /// Signals present in the queue.
    pub set: SigSet,
}

impl Pending {
    /// Queues a signal (a standard signal already pending is dropped).
    pub fn push(&mut self, info: SigInfo) {
        let sig = info.signo();
        if sig < 32 && self.set & bit(sig) != 0 {
            return;
        }
        self.set |= bit(sig);
        self.queue.push_back(info);
    }

    /// Removes and returns the lowest-numbered pending signal not in `mask`
    /// (synchronous signals first, like Linux).
    pub fn pop(&mut self, mask: SigSet) -> Option<SigInfo> {
        let avail = self.set & !mask;
        if avail == 0 {
            return None;
        }
        let sync = bit(libc::SIGSEGV)
            | bit(libc::SIGBUS)
            | bit(libc::SIGILL)
            | bit(libc::SIGTRAP)
            | bit(libc::SIGFPE)
            | bit(libc::SIGSYS);
        let pick = if avail & sync != 0 {
            avail & sync
        } else {
            avail
        };
        let sig = pick.trailing_zeros() as i32 + 1;
        let idx = self.queue.iter().position(|i| i.signo() == sig)?;
        let info = self.queue.remove(idx)?;
        if !self.queue.iter().any(|i| i.signo() == sig) {
            self.set &= !bit(sig);
        }
        Some(info)
    }

    /// Drops every queued instance of `sig`.
    pub fn discard(&mut self, sig: i32) {
        self.queue.retain(|i| i.signo() != sig);
        self.set &= !bit(sig);
    }
}

/// `stack_t` for sigaltstack.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StackT {
    /// Base.
    pub ss_sp: u64,
    /// SS_* flags.
    pub ss_flags: i32,
    /// Padding.
    pub _pad: i32,
    /// Size.
    pub ss_size: u64,
}
static_assertions::assert_eq_size!(StackT, [u8; 24]);

/// SS_ONSTACK.
pub const SS_ONSTACK: i32 = 1;
/// SS_DISABLE.
pub const SS_DISABLE: i32 = 2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_signals_coalesce_rt_queue() {
        let mut p = Pending::default();
        p.push(SigInfo::new(libc::SIGUSR1, 0));
        p.push(SigInfo::new(libc::SIGUSR1, 0));
        p.push(SigInfo::new(40, 0));
        p.push(SigInfo::new(40, 0));
        assert_eq!(p.queue.len(), 3);
        assert_eq!(p.pop(0).map(|i| i.signo()), Some(libc::SIGUSR1));
        assert_eq!(p.pop(bit(40)), None);
        assert_eq!(p.pop(0).map(|i| i.signo()), Some(40));
        assert_eq!(p.set, bit(40));
        assert_eq!(p.pop(0).map(|i| i.signo()), Some(40));
        assert_eq!(p.set, 0);
    }

    #[test]
    fn synchronous_signals_first() {
        let mut p = Pending::default();
        p.push(SigInfo::new(libc::SIGHUP, 0));
        p.push(SigInfo::new(libc::SIGSEGV, 1));
        assert_eq!(p.pop(0).map(|i| i.signo()), Some(libc::SIGSEGV));
    }
}
