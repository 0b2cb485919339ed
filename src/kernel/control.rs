//! What the control plane asks of the kernel: start processes, wait for
//! them, stop and resume the world, list processes, account usage.

use super::fdtable::FdTable;
use super::fs::file::OpenFile;
use super::run::{self, ContextSource};
use super::task::{
    Cred, FsContext, Task, TaskSignals, TgInner, TgState, ThreadGroup, default_rlimits, lock,
};
use super::{Errno, KResult, Kernel, exec};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A process to start in the sandbox.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Program and arguments (argv[0] is the path looked up).
    pub argv: Vec<Vec<u8>>,
    /// Environment.
    pub envp: Vec<Vec<u8>>,
    /// Working directory (absolute).
    pub cwd: Vec<u8>,
    /// Credentials.
    pub cred: Cred,
    /// Descriptors 0, 1, 2.
    pub stdio: Vec<Arc<OpenFile>>,
    /// Container the process belongs to.
    pub container: String,
    /// The container's file namespace (None: the sandbox's root one).
    pub vfs: Option<Arc<super::fs::vfs::Vfs>>,
}

/// One row of a process listing (like `ps`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessInfo {
    /// Effective user id.
    pub uid: u32,
    /// PID in the sandbox.
    pub pid: i32,
    /// Parent PID (0 for processes started from outside).
    pub ppid: i32,
    /// Number of threads.
    pub threads: u32,
    /// State letter as in /proc/<pid>/stat (R, S, Z).
    pub state: char,
    /// Start time, milliseconds since the sandbox booted.
    pub start_ms: u64,
    /// CPU time consumed, milliseconds.
    pub cpu_ms: u64,
    /// Command line.
    pub cmd: String,
    /// Container id.
    pub container: String,
}

/// Resource usage of the sandbox (or one container).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// CPU time of all tasks, live and exited, in nanoseconds.
    pub cpu_ns: u64,
    /// Bytes of application memory in use (memory-file pages).
    pub memory_bytes: u64,
    /// Number of live processes.
    pub pids: u64,
}

/// Where `execvp` would find `name`: itself if it contains a slash, else
/// the first executable regular file of that name on the environment's
/// PATH (OCI runtimes resolve the container's argv[0] this way).
fn find_program(vfs: &super::fs::vfs::Vfs, cwd: &[u8], name: &[u8], envp: &[Vec<u8>]) -> Vec<u8> {
    if name.contains(&b'/') || name.is_empty() {
        return name.to_vec();
    }
    let path = envp
        .iter()
        .find_map(|e| e.strip_prefix(b"PATH="))
        .unwrap_or(b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(|b| *b == b':').filter(|d| !d.is_empty()) {
        let mut cand = dir.to_vec();
        cand.push(b'/');
        cand.extend_from_slice(name);
        if let Ok(st) = vfs.stat(cwd, &cand, true)
            && st.file_type() == libc::S_IFREG
            && st.st_mode & 0o111 != 0
        {
            return cand;
        }
    }
    name.to_vec()
}

impl Kernel {
    /// Starts a process: a new thread group that execs `spec.argv[0]`.
    /// Returns its PID once the exec succeeded (or the exec's error).
    pub fn create_process(self: &Arc<Self>, spec: ProcessSpec) -> KResult<i32> {
        if spec.argv.is_empty() {
            return Err(Errno::EINVAL);
        }
        let mut files = FdTable::new();
        for (i, f) in spec.stdio.iter().enumerate() {
            files.insert_at(i as i32, f.clone(), false);
        }
        let tid = lock(&self.pids).alloc();
        let tg = Arc::new(ThreadGroup {
            tgid: tid,
            inner: Mutex::new(TgInner {
                parent: None,
                children: Vec::new(),
                tasks: Vec::new(),
                pending: Default::default(),
                exit_status: None,
                state: TgState::Running,
                pgid: tid,
                sid: tid,
                exit_signal: libc::SIGCHLD,
                exe: spec.argv[0].clone(),
                cpu_ns_dead: 0,
                child_cpu_ns: 0,
                cred: spec.cred,
                rlimits: default_rlimits(),
                vfork_done: false,
            }),
            handlers: Mutex::new(Default::default()),
            child_wq: Default::default(),
            start: Instant::now(),
            container: spec.container.clone(),
        });
        let waker = super::wait::Waker::new().map_err(|e| Errno::from_io(&e))?;
        let t = Arc::new(Task {
            tid,
            tg: tg.clone(),
            waker,
            sig: Mutex::new(TaskSignals::default()),
            mm: Mutex::new(Arc::new(Mutex::new(crate::mm::AddressSpace::new(
                self.mf.clone(),
            )))),
            files: Mutex::new(Arc::new(Mutex::new(files))),
            fs: Mutex::new(Arc::new(Mutex::new(FsContext {
                vfs: spec.vfs.clone().unwrap_or_else(|| self.vfs.clone()),
                cwd: spec.cwd.clone(),
                umask: 0o022,
            }))),
            killed: AtomicBool::new(false),
            clear_child_tid: AtomicU64::new(0),
            robust_list: AtomicU64::new(0),
            comm: Mutex::new(Vec::new()),
            cpu_ns: AtomicU64::new(0),
            cur_syscall: AtomicI32::new(-1),
            regs_snapshot: Mutex::new(None),
            fp_snapshot: Mutex::new(None),
            parked: AtomicBool::new(false),
        });
        {
            let mut p = lock(&self.pids);
            p.tasks.insert(tid, t.clone());
            p.groups.insert(tid, tg.clone());
        }
        lock(&tg.inner).tasks.push(t.clone());
        let (tx, rx) = crossbeam_channel::bounded(1);
        let argv = spec.argv.clone();
        let envp = spec.envp.clone();
        let vfs = spec.vfs.clone().unwrap_or_else(|| self.vfs.clone());
        let path = find_program(&vfs, &spec.cwd, &argv[0], &envp);
        // SAFETY: user_regs_struct is plain data; zero is a valid value.
        let regs = crate::ffi::zeroed_regs();
        run::spawn(
            self.clone(),
            t,
            regs,
            ContextSource::NewProcess { fp: None },
            None,
            Some(Box::new(move |r: &mut run::Runner| {
                let res = exec::execve(r, &path, argv, envp);
                let _ = tx.send(res);
                res
            })),
        )
        .map_err(|e| Errno::from_io(&e))?;
        match rx.recv() {
            Ok(Ok(())) => Ok(tid),
            Ok(Err(e)) => {
                // The failed process leaves no trace.
                self.reap_orphan(tid);
                Err(e)
            }
            Err(_) => Err(Errno::ESRCH),
        }
    }

    fn reap_orphan(&self, pid: i32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(g) = self.group(pid) {
                if lock(&g.inner).state != TgState::Running {
                    lock(&self.pids).groups.remove(&pid);
                    lock(&g.inner).state = TgState::Dead;
                    return;
                }
            } else {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for process `pid` to exit and returns its wait status. A
    /// process started from outside (no parent in the sandbox) is reaped;
    /// one with a parent is left for its parent to reap.
    pub fn wait_pid(&self, pid: i32) -> KResult<i32> {
        let g = self.group(pid).ok_or(Errno::ECHILD)?;
        let mut guard = lock(&self.exit_lock);
        loop {
            let (state, status, orphan) = {
                let i = lock(&g.inner);
                (i.state, i.exit_status, i.parent.is_none())
            };
            if state != TgState::Running {
                if orphan && pid != 1 {
                    lock(&self.pids).groups.remove(&pid);
                    lock(&g.inner).state = TgState::Dead;
                }
                return Ok(status.unwrap_or(0));
            }
            guard = self
                .exit_cv
                .wait_timeout(guard, Duration::from_millis(200))
                .map(|r| r.0)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Wakes control-plane waiters (a process exited).
    pub(crate) fn notify_exit(&self) {
        let _g = lock(&self.exit_lock);
        self.exit_cv.notify_all();
    }

    /// Whether the world is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Stops every task: when this returns no application instruction
    /// runs until `resume`. Tasks blocked in the kernel stay blocked and
    /// stop before returning to the application.
    pub fn pause(&self) -> KResult<()> {
        self.paused.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tasks: Vec<_> = lock(&self.pids).tasks.values().cloned().collect();
            let mut running = 0;
            for t in &tasks {
                let s = lock(&t.sig);
                if s.in_app {
                    running += 1;
                    if s.host_pid > 0 {
                        crate::platform::ptrace::PtraceContext::kick(s.host_pid);
                    }
                }
            }
            if running == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Errno::ETIMEDOUT);
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// Marks the world paused before any task exists (restore starts every
    /// task at its stop point).
    pub(crate) fn pause_for_restore(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    /// Lets every task run again.
    pub fn resume(&self) {
        let _g = lock(&self.pause_lock);
        self.paused.store(false, Ordering::SeqCst);
        self.pause_cv.notify_all();
    }

    /// Waits a little while the world is paused (unless the task must
    /// die); returns whether it still is.
    pub(crate) fn stop_point(&self, t: &Task) -> bool {
        let g = lock(&self.pause_lock);
        if !self.paused.load(Ordering::SeqCst) || t.killed.load(Ordering::Relaxed) {
            return false;
        }
        let _g = self
            .pause_cv
            .wait_timeout(g, Duration::from_millis(20))
            .map(|r| r.0)
            .unwrap_or_else(|e| e.into_inner().0);
        self.paused.load(Ordering::SeqCst) && !t.killed.load(Ordering::Relaxed)
    }

    /// The process listing, ordered by PID.
    pub fn processes(&self, container: Option<&str>) -> Vec<ProcessInfo> {
        let mut out = Vec::new();
        for g in self.thread_groups() {
            if container.is_some_and(|c| c != g.container) {
                continue;
            }
            let inner = lock(&g.inner);
            let cpu: u64 = inner
                .tasks
                .iter()
                .map(|t| t.cpu_ns.load(Ordering::Relaxed))
                .sum::<u64>()
                + inner.cpu_ns_dead;
            let leader = inner.tasks.first().cloned();
            let state = match inner.state {
                TgState::Running => {
                    if leader
                        .as_ref()
                        .is_some_and(|t| t.cur_syscall.load(Ordering::Relaxed) >= 0)
                    {
                        'S'
                    } else {
                        'R'
                    }
                }
                _ => 'Z',
            };
            let cmd = leader
                .map(|t| {
                    let mm = t.mm();
                    let mm = lock(&mm);
                    let (s, e) = mm.arg_range;
                    let mut buf = vec![0u8; e.saturating_sub(s).min(4096) as usize];
                    let _ = mm.read(s, &mut buf);
                    while buf.last() == Some(&0) {
                        buf.pop();
                    }
                    String::from_utf8_lossy(&buf).replace('\0', " ")
                })
                .unwrap_or_default();
            out.push(ProcessInfo {
                uid: inner.cred.uid.1,
                pid: g.tgid,
                ppid: inner.parent.as_ref().map(|p| p.tgid).unwrap_or(0),
                threads: inner.tasks.len() as u32,
                state,
                start_ms: g.start.saturating_duration_since(self.boot).as_millis() as u64,
                cpu_ms: cpu / 1_000_000,
                cmd,
                container: g.container.clone(),
            });
        }
        out
    }

    /// Resource usage, for the whole sandbox or one container.
    pub fn usage(&self, container: Option<&str>) -> Usage {
        let mut u = Usage {
            memory_bytes: self.mf.usage(),
            ..Default::default()
        };
        for g in self.thread_groups() {
            if container.is_some_and(|c| c != g.container) {
                continue;
            }
            let inner = lock(&g.inner);
            if inner.state == TgState::Running {
                u.pids += 1;
            }
            u.cpu_ns += inner
                .tasks
                .iter()
                .map(|t| t.cpu_ns.load(Ordering::Relaxed))
                .sum::<u64>()
                + inner.cpu_ns_dead
                + inner.child_cpu_ns;
        }
        u
    }

    /// A description of every task: tid, state, current syscall and the
    /// user registers last seen by the kernel.
    pub fn stacks(&self) -> String {
        let mut out = String::new();
        let mut tasks: Vec<_> = lock(&self.pids).tasks.values().cloned().collect();
        tasks.sort_by_key(|t| t.tid);
        for t in tasks {
            let nr = t.cur_syscall.load(Ordering::Relaxed);
            let state = if nr >= 0 {
                format!(
                    "in syscall {} ({nr})",
                    super::syscalls::table::name_of(nr as u64)
                )
            } else {
                "running application code".to_string()
            };
            out += &format!(
                "task {} (pid {}, {}): {}\n",
                t.tid,
                t.tg.tgid,
                String::from_utf8_lossy(&lock(&t.comm)),
                state
            );
            if let Some(r) = *lock(&t.regs_snapshot) {
                out += &format!(
                    "  rip={:#x} rsp={:#x} rax={:#x} rdi={:#x} rsi={:#x} rdx={:#x} r10={:#x} r8={:#x} r9={:#x} fs_base={:#x}\n",
                    r.rip, r.rsp, r.rax, r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9, r.fs_base
                );
            }
        }
        out += "kernel control thread:\n";
        out += &std::backtrace::Backtrace::force_capture().to_string();
        out
    }

    /// Sends `sig` to every process of the sandbox (or of a container),
    /// pausing first so nothing forks its way out.
    pub fn signal_all(&self, sig: i32, container: Option<&str>) -> KResult<()> {
        let was_paused = self.is_paused();
        if !was_paused {
            self.pause()?;
        }
        for g in self.thread_groups() {
            if container.is_some_and(|c| c != g.container) {
                continue;
            }
            self.signal_group(&g, super::signal::SigInfo::new(sig, super::signal::SI_USER));
        }
        if !was_paused {
            self.resume();
        }
        Ok(())
    }

    /// Sends `sig` to one process (from outside: init is not protected).
    pub fn signal_process(&self, pid: i32, sig: i32) -> KResult<()> {
        if !(1..=64).contains(&sig) {
            return Err(Errno::EINVAL);
        }
        let g = self.group(pid).ok_or(Errno::ESRCH)?;
        if lock(&g.inner).state != TgState::Running {
            return Err(Errno::ESRCH);
        }
        self.signal_group(&g, super::signal::SigInfo::new(sig, super::signal::SI_USER));
        Ok(())
    }

    /// Sends `sig` to the process group `pgid`.
    pub fn signal_process_group(&self, pgid: i32, sig: i32) -> KResult<()> {
        let targets: Vec<_> = self
            .thread_groups()
            .into_iter()
            .filter(|g| lock(&g.inner).pgid == pgid && lock(&g.inner).state == TgState::Running)
            .collect();
        if targets.is_empty() {
            return Err(Errno::ESRCH);
        }
        for g in targets {
            self.signal_group(&g, super::signal::SigInfo::new(sig, super::signal::SI_USER));
        }
        Ok(())
    }

    /// Turns syscall tracing on or off, optionally limited to some names.
    pub fn set_strace(&self, on: bool, allow: Option<Vec<String>>) {
        let filter = allow.map(|names| {
            super::syscalls::table::entries()
                .iter()
                .filter(|e| names.iter().any(|n| n == e.name))
                .map(|e| e.nr as u64)
                .collect()
        });
        *lock(&self.strace_filter) = filter;
        self.strace.store(on, Ordering::Relaxed);
    }
}

/// One task's state for a stack dump.
#[derive(Debug, Clone)]
pub struct TaskStackInfo {
    /// Thread id.
    pub tid: i32,
    /// Process id.
    pub pid: i32,
    /// 'R' running application code, 'S' in a syscall.
    pub state: char,
    /// The syscall in progress, by name.
    pub syscall: Option<String>,
    /// User registers last published (name, value).
    pub registers: Vec<(String, u64)>,
}

impl Kernel {
    /// Every task's state and last published user registers.
    pub fn task_stacks(&self) -> Vec<TaskStackInfo> {
        let mut tasks: Vec<_> = lock(&self.pids).tasks.values().cloned().collect();
        tasks.sort_by_key(|t| t.tid);
        tasks
            .iter()
            .map(|t| {
                let nr = t.cur_syscall.load(Ordering::Relaxed);
                let registers = lock(&t.regs_snapshot)
                    .map(|r| {
                        [
                            ("rip", r.rip),
                            ("rsp", r.rsp),
                            ("rbp", r.rbp),
                            ("rax", r.rax),
                            ("rdi", r.rdi),
                            ("rsi", r.rsi),
                            ("rdx", r.rdx),
                            ("r10", r.r10),
                            ("r8", r.r8),
                            ("r9", r.r9),
                            ("orig_rax", r.orig_rax),
                            ("eflags", r.eflags),
                            ("fs_base", r.fs_base),
                        ]
                        .iter()
                        .map(|(n, v)| (n.to_string(), *v))
                        .collect()
                    })
                    .unwrap_or_default();
                TaskStackInfo {
                    tid: t.tid,
                    pid: t.tg.tgid,
                    state: if nr >= 0 { 'S' } else { 'R' },
                    syscall: (nr >= 0)
                        .then(|| super::syscalls::table::name_of(nr as u64).to_string()),
                    registers,
                }
            })
            .collect()
    }
}
