//! The kernel: tasks, thread groups, the syscall table, signals, files.
//!
//! Every system call an application makes is served here from the
//! kernel's own objects; the host sees only the platform's address-space
//! operations and the kernel's own narrow use of host files.

pub mod checkpoint;
pub mod control;
pub mod events;
pub mod exec;
pub mod fdtable;
pub mod fs;
pub mod futex;
pub mod pipe;
pub mod proc;
pub mod pty;
pub mod run;
pub mod signal;
pub mod syscalls;
pub mod task;
pub mod wait;

pub use crate::errno::{Errno, KResult};

use crate::mm::MemoryFile;
use fs::vfs::Vfs;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;
use task::{Task, ThreadGroup, lock};

/// The sandbox's PID namespace.
#[derive(Debug, Default)]
pub struct PidTable {
    next: i32,
    /// Live tasks by tid.
    pub tasks: HashMap<i32, Arc<Task>>,
    /// Thread groups (live or zombie) by tgid.
    pub groups: HashMap<i32, Arc<ThreadGroup>>,
}

impl PidTable {
    /// Continues numbering after `last` (restore).
    pub fn set_last(&mut self, last: i32) {
        self.next = self.next.max(last);
    }

    /// Allocates the next free id.
    pub fn alloc(&mut self) -> i32 {
        loop {
            self.next = if self.next >= 4_194_303 {
                1
            } else {
                self.next + 1
            };
            if !self.tasks.contains_key(&self.next) && !self.groups.contains_key(&self.next) {
                return self.next;
            }
        }
    }
}

/// Kernel-wide configuration.
#[derive(Debug, Clone, Default)]
pub struct KernelConfig {
    /// Log every syscall.
    pub strace: bool,
    /// Host name seen by uname.
    pub hostname: String,
}

/// One sandbox kernel.
#[derive(Debug)]
pub struct Kernel {
    /// Application memory.
    pub mf: Arc<MemoryFile>,
    /// The file namespace.
    pub vfs: Arc<Vfs>,
    /// Futex queues.
    pub futexes: futex::Futexes,
    /// Tasks and processes.
    pub pids: Mutex<PidTable>,
    /// Syscall tracing.
    pub strace: AtomicBool,
    enosys_logged: Mutex<HashSet<u64>>,
    /// When the kernel booted.
    pub boot: Instant,
    /// uname nodename.
    pub hostname: Mutex<Vec<u8>>,
    /// Wait status of the container's init once it exited.
    init_status: Mutex<Option<i32>>,
    init_cv: Condvar,
    /// Control-plane waiters for process exits.
    exit_lock: Mutex<()>,
    exit_cv: Condvar,
    /// The world is paused.
    paused: std::sync::atomic::AtomicBool,
    /// A checkpoint is quiescing or saving the world.
    checkpointing: std::sync::atomic::AtomicBool,
    pause_lock: Mutex<()>,
    pause_cv: Condvar,
    /// Syscalls strace shows (None: all).
    pub strace_filter: Mutex<Option<HashSet<u64>>>,
    /// Timers, signalfd wake-ups and the event-object registry.
    pub events: events::Events,
    /// Pseudo-terminals (`/dev/ptmx`, `/dev/pts/N`): the kernel owns them
    /// so that a pty can signal its foreground process group.
    pub ptys: pty::PtyRegistry,
}

impl Kernel {
    /// Creates a kernel over a file namespace.
    pub fn new(vfs: Arc<Vfs>, cfg: &KernelConfig) -> std::io::Result<Arc<Kernel>> {
        crate::platform::ptrace::stub::install()?;
        raise_nofile_limit();
        let mf = MemoryFile::new()?;
        let hostname = if cfg.hostname.is_empty() {
            "rvisor".to_string()
        } else {
            cfg.hostname.clone()
        };
        let k = Arc::new(Kernel {
            mf,
            vfs: vfs.clone(),
            futexes: futex::Futexes::default(),
            pids: Mutex::new(PidTable::default()),
            strace: AtomicBool::new(cfg.strace),
            enosys_logged: Mutex::new(HashSet::new()),
            boot: Instant::now(),
            hostname: Mutex::new(hostname.into_bytes()),
            init_status: Mutex::new(None),
            init_cv: Condvar::new(),
            exit_lock: Mutex::new(()),
            exit_cv: Condvar::new(),
            paused: AtomicBool::new(false),
            checkpointing: AtomicBool::new(false),
            pause_lock: Mutex::new(()),
            pause_cv: Condvar::new(),
            strace_filter: Mutex::new(None),
            events: events::Events::new(),
            ptys: pty::PtyRegistry::new(),
        });
        k.mount_proc(&vfs);
        Ok(k)
    }

    /// Mounts this kernel's procfs at /proc of a file namespace, and
    /// points its devfs at this kernel's ptys (`/dev/ptmx`, `/dev/pts`,
    /// `/dev/tty`).
    pub fn mount_proc(self: &Arc<Self>, vfs: &Vfs) {
        vfs.mount(b"/proc", Arc::new(proc::ProcFs::new(Arc::downgrade(self))));
        fs::dev::bind_kernel(vfs, self);
    }

    /// Logs an unimplemented syscall once per number.
    pub fn log_enosys(&self, nr: u64, name: &str) {
        if lock(&self.enosys_logged).insert(nr) {
            // Info, not warn: the CLI's stderr is often the application's,
            // and a runtime must not write into it unasked.
            tracing::info!("unsupported syscall {name} ({nr}): returning ENOSYS");
        }
    }

    /// Whether strace is on.
    pub fn strace_on(&self) -> bool {
        self.strace.load(Ordering::Relaxed)
    }

    /// Whether strace shows syscall `nr` (the allowlist, if any).
    pub fn strace_allows(&self, nr: u64) -> bool {
        lock(&self.strace_filter)
            .as_ref()
            .is_none_or(|f| f.contains(&nr))
    }

    /// Looks up a task by tid.
    pub fn task(&self, tid: i32) -> Option<Arc<Task>> {
        lock(&self.pids).tasks.get(&tid).cloned()
    }

    /// Looks up a thread group by tgid.
    pub fn group(&self, tgid: i32) -> Option<Arc<ThreadGroup>> {
        lock(&self.pids).groups.get(&tgid).cloned()
    }

    /// Records init's exit and wakes `wait_init`.
    pub(crate) fn set_init_status(&self, status: i32) {
        *lock(&self.init_status) = Some(status);
        self.init_cv.notify_all();
        self.notify_exit();
    }

    /// Blocks until the container's init exits; returns its wait status.
    pub fn wait_init(&self) -> i32 {
        let mut g = lock(&self.init_status);
        loop {
            if let Some(s) = *g {
                return s;
            }
            g = self.init_cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Init's wait status if it has exited.
    pub fn init_status(&self) -> Option<i32> {
        *lock(&self.init_status)
    }

    /// Every live thread group.
    pub fn thread_groups(&self) -> Vec<Arc<ThreadGroup>> {
        let mut v: Vec<_> = lock(&self.pids).groups.values().cloned().collect();
        v.sort_by_key(|g| g.tgid);
        v
    }

    /// Sends a process-directed signal to a thread group, picking a thread
    /// that does not block it.
    pub fn signal_group(&self, tg: &Arc<ThreadGroup>, info: signal::SigInfo) {
        let sig = info.signo();
        let mut inner = lock(&tg.inner);
        if inner.state != task::TgState::Running {
            return;
        }
        let handlers = tg.handlers();
        if sig == libc::SIGKILL {
            for t in &inner.tasks {
                t.killed.store(true, Ordering::Relaxed);
            }
            if inner.exit_status.is_none() {
                inner.exit_status = Some(libc::SIGKILL);
            }
            for t in &inner.tasks {
                t.interrupt();
            }
            drop(inner);
            // Killed tasks leave a paused world too.
            let _g = lock(&self.pause_lock);
            self.pause_cv.notify_all();
            return;
        }
        if sig == libc::SIGCONT {
            inner.pending.discard(libc::SIGSTOP);
            inner.pending.discard(libc::SIGTSTP);
        }
        // An ignored signal is dropped, unless blocked: it may be read with
        // signalfd or unignored before it is unblocked (Linux sig_ignored
        // looks at the leader's mask).
        let blocked = inner
            .tasks
            .first()
            .is_some_and(|t| lock(&t.sig).mask & signal::bit(sig) != 0);
        if lock(&handlers).ignored(sig) && !blocked {
            return;
        }
        inner.pending.push(info);
        let target = inner
            .tasks
            .iter()
            .find(|t| lock(&t.sig).mask & signal::bit(sig) == 0)
            .or(inner.tasks.first())
            .cloned();
        drop(inner);
        // Wake signalfd readers.
        self.events.signal_queued();
        if let Some(t) = target {
            t.interrupt();
        }
    }

    /// Sends a thread-directed signal.
    pub fn signal_task(&self, t: &Arc<Task>, info: signal::SigInfo) {
        if info.signo() == libc::SIGKILL {
            self.signal_group(&t.tg, info);
            return;
        }
        // Ignored and not blocked: dropped (see signal_group).
        let blocked = lock(&t.sig).mask & signal::bit(info.signo()) != 0;
        if lock(&t.tg.handlers()).ignored(info.signo()) && !blocked {
            return;
        }
        t.send(info);
        // Wake signalfd readers.
        self.events.signal_queued();
    }

    /// Kills every process (SIGKILL), for sandbox teardown.
    pub fn kill_all(&self) {
        for g in self.thread_groups() {
            self.signal_group(&g, signal::SigInfo::new(libc::SIGKILL, signal::SI_KERNEL));
        }
    }
}

fn raise_nofile_limit() {
    crate::ffi::raise_nofile_limit();
}
