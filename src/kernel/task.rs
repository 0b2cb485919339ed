//! Tasks (application threads) and thread groups (processes).

use super::fdtable::FdTable;
use super::signal::{Pending, SigHandlers, SigInfo, SigSet, StackT};
use super::wait::{WaitQueue, Waker};
use crate::mm::AddressSpace;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Locks a mutex, carrying on if a panicking thread poisoned it (kernel
/// state stays usable; the panic itself is reported where it happened).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Filesystem context of a task (shared with CLONE_FS).
#[derive(Debug, Clone)]
pub struct FsContext {
    /// The file namespace (the task's container's root).
    pub vfs: Arc<super::fs::vfs::Vfs>,
    /// Current directory, absolute and normalized.
    pub cwd: Vec<u8>,
    /// File mode creation mask.
    pub umask: u32,
}

/// Credentials.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cred {
    /// Real, effective and saved user ids.
    pub uid: (u32, u32, u32),
    /// Real, effective and saved group ids.
    pub gid: (u32, u32, u32),
}

/// State of a thread group as `ps` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TgState {
    /// Has live threads.
    Running,
    /// Every thread exited; waiting to be reaped.
    Zombie,
    /// Reaped.
    Dead,
}

/// The mutable part of a thread group.
#[derive(Debug)]
pub struct TgInner {
    /// Parent process (None for the container's init).
    pub parent: Option<Arc<ThreadGroup>>,
    /// Child processes not yet reaped.
    pub children: Vec<Arc<ThreadGroup>>,
    /// Live threads.
    pub tasks: Vec<Arc<Task>>,
    /// Process-directed pending signals.
    pub pending: Pending,
    /// Wait status once the group exited (or is exiting via exit_group).
    pub exit_status: Option<i32>,
    /// Lifecycle.
    pub state: TgState,
    /// Process group id.
    pub pgid: i32,
    /// Session id.
    pub sid: i32,
    /// Signal sent to the parent on exit.
    pub exit_signal: i32,
    /// Path of the executable.
    pub exe: Vec<u8>,
    /// Accumulated CPU time of exited threads and reaped children (ns).
    pub cpu_ns_dead: u64,
    /// Reaped children's CPU time (for times(2) cutime).
    pub child_cpu_ns: u64,
    /// Credentials.
    pub cred: Cred,
    /// Resource limits: (soft, hard) by RLIMIT_* index.
    pub rlimits: [(u64, u64); 16],
    /// Whether a vfork child is still using our memory (parent blocks).
    pub vfork_done: bool,
}

/// A process: threads sharing a PID, signal handlers and a parent.
#[derive(Debug)]
pub struct ThreadGroup {
    /// PID in the sandbox's namespace.
    pub tgid: i32,
    /// Mutable state.
    pub inner: Mutex<TgInner>,
    /// Signal handlers (shared by all threads; CLONE_SIGHAND shares it
    /// with another group too, which Linux only allows with CLONE_VM).
    pub handlers: Mutex<Arc<Mutex<SigHandlers>>>,
    /// Woken when a child changes state (wait4) or a vfork child releases.
    pub child_wq: WaitQueue,
    /// When the process started.
    pub start: Instant,
    /// Container the process belongs to.
    pub container: String,
}

impl ThreadGroup {
    /// The signal handler table.
    pub fn handlers(&self) -> Arc<Mutex<SigHandlers>> {
        lock(&self.handlers).clone()
    }

    /// Parent's pid (0 for init).
    pub fn ppid(&self) -> i32 {
        lock(&self.inner)
            .parent
            .as_ref()
            .map(|p| p.tgid)
            .unwrap_or(0)
    }
}

/// Default resource limits (soft, hard).
pub fn default_rlimits() -> [(u64, u64); 16] {
    let inf = u64::MAX;
    let mut r = [(inf, inf); 16];
    r[libc::RLIMIT_STACK as usize] = (8 << 20, inf);
    r[libc::RLIMIT_NOFILE as usize] = (1024, 1 << 20);
    r[libc::RLIMIT_CORE as usize] = (0, inf);
    r[libc::RLIMIT_NPROC as usize] = (1 << 16, 1 << 16);
    r[libc::RLIMIT_SIGPENDING as usize] = (1 << 16, 1 << 16);
    r[libc::RLIMIT_MSGQUEUE as usize] = (819200, 819200);
    r[libc::RLIMIT_MEMLOCK as usize] = (8 << 20, 8 << 20);
    r
}

/// Signal state private to one thread.
#[derive(Debug, Default)]
pub struct TaskSignals {
    /// Blocked signals.
    pub mask: SigSet,
    /// Thread-directed pending signals.
    pub pending: Pending,
    /// Mask to restore after a sigsuspend-style wait delivers a signal.
    pub saved_mask: Option<SigSet>,
    /// Alternate signal stack.
    pub altstack: StackT,
    /// Whether the thread runs application code right now (a sender must
    /// kick the platform to interrupt it).
    pub in_app: bool,
    /// Host pid of the platform context (for kicking).
    pub host_pid: i32,
}

/// One application thread.
#[derive(Debug)]
pub struct Task {
    /// Thread id in the sandbox.
    pub tid: i32,
    /// Its process.
    pub tg: Arc<ThreadGroup>,
    /// Wakes the task's kernel thread.
    pub waker: Waker,
    /// Signal state.
    pub sig: Mutex<TaskSignals>,
    /// Address space (replaced by execve).
    pub mm: Mutex<Arc<Mutex<AddressSpace>>>,
    /// Descriptor table (shared with CLONE_FILES).
    pub files: Mutex<Arc<Mutex<FdTable>>>,
    /// Filesystem context (shared with CLONE_FS).
    pub fs: Mutex<Arc<Mutex<FsContext>>>,
    /// Set when the thread must exit (exit_group, fatal signal, exec).
    pub killed: AtomicBool,
    /// CLONE_CHILD_CLEARTID address.
    pub clear_child_tid: AtomicU64,
    /// Robust futex list head.
    pub robust_list: AtomicU64,
    /// Command name (comm), up to 15 bytes.
    pub comm: Mutex<Vec<u8>>,
    /// CPU time consumed (ns), updated by the kernel thread.
    pub cpu_ns: AtomicU64,
    /// Syscall number in progress (-1 when in application code).
    pub cur_syscall: AtomicI32,
    /// User registers last published by the kernel thread (when it
    /// blocks, or when the world pauses), for `stacks`.
    pub regs_snapshot: Mutex<Option<crate::platform::Regs>>,
    /// FP state published at a checkpoint's stop point.
    pub fp_snapshot: Mutex<Option<crate::platform::ptrace::FpState>>,
    /// Stopped with only user state left (a checkpoint can save it).
    pub parked: AtomicBool,
}

impl Task {
    /// Current address space.
    pub fn mm(&self) -> Arc<Mutex<AddressSpace>> {
        lock(&self.mm).clone()
    }

    /// Current descriptor table.
    pub fn files(&self) -> Arc<Mutex<FdTable>> {
        lock(&self.files).clone()
    }

    /// Current filesystem context.
    pub fn fs(&self) -> Arc<Mutex<FsContext>> {
        lock(&self.fs).clone()
    }

    /// Interrupts the task: wakes it if it is blocked in the kernel, kicks
    /// it out of application code otherwise.
    pub fn interrupt(&self) {
        self.waker.wake();
        let s = lock(&self.sig);
        if s.in_app && s.host_pid > 0 {
            crate::platform::ptrace::PtraceContext::kick(s.host_pid);
        }
    }

    /// Queues a thread-directed signal and interrupts the task.
    pub fn send(&self, info: SigInfo) {
        {
            let mut s = lock(&self.sig);
            s.pending.push(info);
        }
        self.interrupt();
    }

    /// Whether an unblocked signal is pending for this task, or it must exit.
    pub fn signal_pending(&self) -> bool {
        if self.killed.load(Ordering::Relaxed) {
            return true;
        }
        let s = lock(&self.sig);
        let mask = s.mask;
        if s.pending.set & !mask != 0 {
            return true;
        }
        drop(s);
        lock(&self.tg.inner).pending.set & !mask != 0
    }
}
