//! Checkpoint and restore of the kernel's state.
//!
//! Saving quiesces the world: every task leaves whatever syscall it was
//! blocked in (the syscall restarts when the task runs again) and parks
//! with nothing but user state — registers and FP state. Then the kernel's
//! objects are walked: thread groups, tasks, signal handler tables,
//! address spaces, descriptor tables, open file descriptions, pipes. Shared
//! objects are saved once and referred to by index, so sharing survives.
//! The memory file and the file namespace are saved beside this state by
//! the loader. Restoring rebuilds the objects in a fresh kernel and starts
//! every task paused, exactly where it stopped.

use super::events::snapshot::{self as event_snapshot, EventFileState};
use super::events::timers::{ProcTimersState, TimerService};
use super::fdtable::FdTable;
use super::fs::file::OpenFile;
use super::pipe::{Pipe, PipeEnd};
use super::run::{self, ContextSource};
use super::signal::{Pending, SigAction, SigHandlers, SigInfo, StackT};
use super::task::{Cred, FsContext, Task, TaskSignals, TgInner, TgState, ThreadGroup, lock};
use super::{Errno, KResult, Kernel};
use crate::mm::AddressSpace;
use crate::mm::address_space::MmState;
use crate::platform::Regs;
use crate::platform::ptrace::FpState;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A saved thread group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupState {
    /// PID.
    pub tgid: i32,
    /// Parent PID.
    pub parent: Option<i32>,
    /// Process group.
    pub pgid: i32,
    /// Session.
    pub sid: i32,
    /// Signal sent to the parent at exit.
    pub exit_signal: i32,
    /// Executable path.
    pub exe: Vec<u8>,
    /// Credentials.
    pub cred: Cred,
    /// Resource limits.
    pub rlimits: Vec<(u64, u64)>,
    /// Process-directed pending signals (siginfo bytes).
    pub pending: Vec<Vec<u8>>,
    /// Index of the signal handler table.
    pub handlers: usize,
    /// Zombie (true) or running.
    pub zombie: bool,
    /// Wait status once exited.
    pub exit_status: Option<i32>,
    /// Container id.
    pub container: String,
    /// CPU time of exited threads (ns).
    pub cpu_ns_dead: u64,
    /// CPU time of reaped children (ns).
    pub child_cpu_ns: u64,
}

/// A saved task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskState {
    /// Thread id.
    pub tid: i32,
    /// Its process.
    pub tgid: i32,
    /// General registers, in `user_regs_struct` order.
    pub regs: Vec<u64>,
    /// XSAVE area.
    pub fp: Vec<u8>,
    /// Blocked signals.
    pub mask: u64,
    /// Thread-directed pending signals.
    pub pending: Vec<Vec<u8>>,
    /// sigaltstack: (sp, flags, size).
    pub altstack: (u64, i32, u64),
    /// CLONE_CHILD_CLEARTID address.
    pub clear_child_tid: u64,
    /// Robust futex list.
    pub robust_list: u64,
    /// comm.
    pub comm: Vec<u8>,
    /// Index of the address space.
    pub mm: usize,
    /// Index of the descriptor table.
    pub files: usize,
    /// Index of the filesystem context.
    pub fs: usize,
    /// CPU time (ns).
    pub cpu_ns: u64,
}

/// What is behind a saved open file description.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FileKind {
    /// One of the container's host stdio streams (replaced by the
    /// restoring caller's stdio: stdin for read-only, stdout otherwise).
    Stdio,
    /// An end of a pipe (index into the pipes).
    Pipe {
        /// Pipe index.
        pipe: usize,
        /// The write end.
        write: bool,
    },
    /// A file of the file namespace, reopened by the VFS.
    Vfs(super::fs::snapshot::FileDesc),
    /// An eventfd, timerfd, signalfd or epoll instance.
    Event(EventFileState),
}

/// A saved open file description.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileState {
    /// Status flags.
    pub flags: i32,
    /// Position.
    pub pos: u64,
    /// Path inside the sandbox.
    pub path: Vec<u8>,
    /// What it is.
    pub kind: FileKind,
}

/// A saved filesystem context.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FsState {
    /// Working directory.
    pub cwd: Vec<u8>,
    /// umask.
    pub umask: u32,
}

/// Everything the kernel knows, minus memory contents and the file
/// namespace (saved beside it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KernelState {
    /// The highest PID handed out.
    pub last_pid: i32,
    /// Host name.
    pub hostname: Vec<u8>,
    /// Init's wait status if it exited.
    pub init_status: Option<i32>,
    /// Processes.
    pub groups: Vec<GroupState>,
    /// Threads.
    pub tasks: Vec<TaskState>,
    /// Signal handler tables.
    pub handlers: Vec<Vec<SigAction>>,
    /// Address spaces.
    pub mms: Vec<MmState>,
    /// Descriptor tables: (fd, file index, close-on-exec).
    pub fdtables: Vec<Vec<(i32, usize, bool)>>,
    /// Filesystem contexts.
    pub fscontexts: Vec<FsState>,
    /// Open file descriptions.
    pub files: Vec<FileState>,
    /// Pipe buffers.
    pub pipes: Vec<Vec<u8>>,
    /// Interval and POSIX timers of each process, times relative to the
    /// save.
    pub timers: Vec<ProcTimersState>,
}

fn zeroed_regs() -> Regs {
    regs_from_vec_unchecked(&[0; 27])
}

fn regs_from_vec_unchecked(v: &[u64; 27]) -> Regs {
    Regs {
        r15: v[0],
        r14: v[1],
        r13: v[2],
        r12: v[3],
        rbp: v[4],
        rbx: v[5],
        r11: v[6],
        r10: v[7],
        r9: v[8],
        r8: v[9],
        rax: v[10],
        rcx: v[11],
        rdx: v[12],
        rsi: v[13],
        rdi: v[14],
        orig_rax: v[15],
        rip: v[16],
        cs: v[17],
        eflags: v[18],
        rsp: v[19],
        ss: v[20],
        fs_base: v[21],
        gs_base: v[22],
        ds: v[23],
        es: v[24],
        fs: v[25],
        gs: v[26],
    }
}

fn regs_to_vec(r: &Regs) -> Vec<u64> {
    vec![
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx, r.rdx,
        r.rsi, r.rdi, r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base, r.gs_base, r.ds,
        r.es, r.fs, r.gs,
    ]
}

fn regs_from_vec(v: &[u64], base: &Regs) -> KResult<Regs> {
    if v.len() != 27 {
        return Err(Errno::EINVAL);
    }
    let mut r = *base;
    (
        r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8,
    ) = (v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]);
    (r.rax, r.rcx, r.rdx, r.rsi, r.rdi, r.orig_rax, r.rip) =
        (v[10], v[11], v[12], v[13], v[14], v[15], v[16]);
    (r.eflags, r.rsp, r.fs_base, r.gs_base) = (v[18], v[19], v[21], v[22]);
    Ok(r)
}

fn pending_to_vec(p: &Pending) -> Vec<Vec<u8>> {
    p.queue.iter().map(|i| i.0.to_vec()).collect()
}

fn pending_from_vec(v: &[Vec<u8>]) -> KResult<Pending> {
    let mut p = Pending::default();
    for b in v {
        let arr: [u8; 128] = b.as_slice().try_into().map_err(|_| Errno::EINVAL)?;
        p.push(SigInfo(arr));
    }
    Ok(p)
}

/// Assigns indices to shared objects by identity.
struct Interner<T> {
    ids: HashMap<usize, usize>,
    items: Vec<T>,
}

impl<T> Interner<T> {
    fn new() -> Self {
        Interner {
            ids: HashMap::new(),
            items: Vec::new(),
        }
    }

    fn get(&mut self, key: usize, make: impl FnOnce() -> KResult<T>) -> KResult<usize> {
        if let Some(&i) = self.ids.get(&key) {
            return Ok(i);
        }
        let item = make()?;
        self.items.push(item);
        self.ids.insert(key, self.items.len() - 1);
        Ok(self.items.len() - 1)
    }
}

impl Kernel {
    /// Whether a checkpoint is quiescing the world.
    pub fn is_checkpointing(&self) -> bool {
        self.checkpointing.load(Ordering::SeqCst)
    }

    /// Pauses the world and makes every task park with only user state
    /// (blocked syscalls are left and will restart). EBUSY if a task does
    /// not park in time.
    pub fn quiesce(&self) -> KResult<()> {
        self.checkpointing.store(true, Ordering::SeqCst);
        if let Err(e) = self.pause() {
            self.checkpointing.store(false, Ordering::SeqCst);
            return Err(e);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tasks: Vec<_> = lock(&self.pids).tasks.values().cloned().collect();
            let mut waiting = 0;
            for t in &tasks {
                if !t.parked.load(Ordering::SeqCst) && !t.killed.load(Ordering::Relaxed) {
                    waiting += 1;
                    t.waker.wake();
                }
            }
            if waiting == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                for t in tasks.iter().filter(|t| !t.parked.load(Ordering::SeqCst)) {
                    let nr = t.cur_syscall.load(Ordering::Relaxed);
                    tracing::warn!(
                        "checkpoint: task {} did not stop (in syscall {})",
                        t.tid,
                        if nr >= 0 {
                            super::syscalls::table::name_of(nr as u64)
                        } else {
                            "none"
                        }
                    );
                }
                self.checkpointing.store(false, Ordering::SeqCst);
                return Err(Errno::EBUSY);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Ends a checkpoint's quiescence (the world stays paused until
    /// `resume`).
    pub fn end_quiesce(&self) {
        self.checkpointing.store(false, Ordering::SeqCst);
    }

    /// Walks the quiesced kernel into a [`KernelState`].
    pub fn save(&self) -> KResult<KernelState> {
        if !self.is_checkpointing() {
            return Err(Errno::EINVAL);
        }
        // No timer fires while the walk reads signals and timers.
        self.events.timers.freeze();
        let _thaw = Thaw(&self.events.timers);
        let now = Instant::now();
        let mut epolls: Vec<Arc<OpenFile>> = Vec::new();
        let groups_live = self.thread_groups();
        let mut handlers: Interner<Vec<SigAction>> = Interner::new();
        let mut mms: Interner<MmState> = Interner::new();
        let mut fscontexts: Interner<FsState> = Interner::new();
        let mut files: Interner<FileState> = Interner::new();
        let mut pipes: Interner<Vec<u8>> = Interner::new();
        let mut fdtables: Interner<Vec<(i32, usize, bool)>> = Interner::new();
        let mut groups = Vec::new();
        let mut tasks = Vec::new();
        for g in &groups_live {
            let h = g.handlers();
            let hid = handlers.get(Arc::as_ptr(&h) as usize, || Ok(lock(&h).actions.to_vec()))?;
            let inner = lock(&g.inner);
            groups.push(GroupState {
                tgid: g.tgid,
                parent: inner.parent.as_ref().map(|p| p.tgid),
                pgid: inner.pgid,
                sid: inner.sid,
                exit_signal: inner.exit_signal,
                exe: inner.exe.clone(),
                cred: inner.cred,
                rlimits: inner.rlimits.to_vec(),
                pending: pending_to_vec(&inner.pending),
                handlers: hid,
                zombie: inner.state != TgState::Running,
                exit_status: inner.exit_status,
                container: g.container.clone(),
                cpu_ns_dead: inner.cpu_ns_dead,
                child_cpu_ns: inner.child_cpu_ns,
            });
            for t in &inner.tasks {
                let regs = lock(&t.regs_snapshot).ok_or(Errno::EBUSY)?;
                let fp = lock(&t.fp_snapshot).clone().ok_or(Errno::EBUSY)?;
                let mm = t.mm();
                let mid = mms.get(Arc::as_ptr(&mm) as usize, || Ok(lock(&mm).save()))?;
                let fs = t.fs();
                let fsid = fscontexts.get(Arc::as_ptr(&fs) as usize, || {
                    let f = lock(&fs);
                    Ok(FsState {
                        cwd: f.cwd.clone(),
                        umask: f.umask,
                    })
                })?;
                let table = t.files();
                let entries: Vec<(i32, Arc<OpenFile>, bool)> = lock(&table)
                    .iter()
                    .map(|(fd, e)| (*fd, e.file.clone(), e.cloexec))
                    .collect();
                let mut saved = Vec::with_capacity(entries.len());
                for (fd, f, cloexec) in entries {
                    let id = files.get(Arc::as_ptr(&f) as usize, || {
                        save_file(&f, &mut pipes, now, &mut epolls)
                    })?;
                    saved.push((fd, id, cloexec));
                }
                let fid = fdtables.get(Arc::as_ptr(&table) as usize, || Ok(saved))?;
                let s = lock(&t.sig);
                tasks.push(TaskState {
                    tid: t.tid,
                    tgid: g.tgid,
                    regs: regs_to_vec(&regs),
                    fp: fp.0,
                    mask: s.mask,
                    pending: pending_to_vec(&s.pending),
                    altstack: (s.altstack.ss_sp, s.altstack.ss_flags, s.altstack.ss_size),
                    clear_child_tid: t.clear_child_tid.load(Ordering::Relaxed),
                    robust_list: t.robust_list.load(Ordering::Relaxed),
                    comm: lock(&t.comm).clone(),
                    mm: mid,
                    files: fid,
                    fs: fsid,
                    cpu_ns: t.cpu_ns.load(Ordering::Relaxed),
                });
            }
        }
        // Epoll instances last: their interests name other descriptions.
        for f in &epolls {
            let Some(&i) = files.ids.get(&(Arc::as_ptr(f) as usize)) else {
                continue;
            };
            let list = event_snapshot::epoll_interests(f, |p| files.ids.get(&p).copied());
            if let Some(FileKind::Event(EventFileState::Epoll { interests })) =
                files.items.get_mut(i).map(|s| &mut s.kind)
            {
                *interests = list;
            }
        }
        let timers = self.events.save_timers(now);
        let last_pid = groups
            .iter()
            .map(|g| g.tgid)
            .chain(tasks.iter().map(|t| t.tid))
            .max()
            .unwrap_or(0);
        Ok(KernelState {
            last_pid,
            hostname: lock(&self.hostname).clone(),
            init_status: self.init_status(),
            groups,
            tasks,
            handlers: handlers.items,
            mms: mms.items,
            fdtables: fdtables.items,
            fscontexts: fscontexts.items,
            files: files.items,
            pipes: pipes.items,
            timers,
        })
    }
}

/// Thaws the timer thread when a save ends, however it ends.
struct Thaw<'a>(&'a TimerService);

impl Drop for Thaw<'_> {
    fn drop(&mut self) {
        self.0.thaw();
    }
}

fn save_file(
    f: &Arc<OpenFile>,
    pipes: &mut Interner<Vec<u8>>,
    now: Instant,
    epolls: &mut Vec<Arc<OpenFile>>,
) -> KResult<FileState> {
    let kind = if super::fs::host::is_host_stream(f.ops.as_ref()) {
        FileKind::Stdio
    } else if let Some(end) = f.ops.as_any().downcast_ref::<PipeEnd>() {
        let (id, write, buf) = end.snapshot();
        FileKind::Pipe {
            pipe: pipes.get(id, || Ok(buf))?,
            write,
        }
    } else if let Some(ev) = event_snapshot::snapshot(f, now) {
        if matches!(ev, EventFileState::Epoll { .. }) {
            epolls.push(f.clone());
        }
        FileKind::Event(ev)
    } else if let Some(desc) = super::fs::snapshot::describe(f) {
        FileKind::Vfs(desc)
    } else {
        tracing::warn!(
            "checkpoint: cannot save open file {:?}",
            String::from_utf8_lossy(&f.path)
        );
        return Err(Errno::EOPNOTSUPP);
    };
    Ok(FileState {
        flags: f.flags(),
        pos: *lock(&f.pos),
        path: f.path.clone(),
        kind,
    })
}

/// The caller's stdio for a restored sandbox.
pub struct RestoreStdio {
    /// Replaces read-only stdio descriptions.
    pub stdin: Arc<OpenFile>,
    /// Replaces writable stdio descriptions.
    pub stdout: Arc<OpenFile>,
}

/// Rebuilds the objects of `st` in `k` (whose memory file already holds
/// the saved memory) and starts every task, paused.
pub fn restore(k: &Arc<Kernel>, st: &KernelState, stdio: &RestoreStdio) -> KResult<()> {
    k.pause_for_restore();
    *lock(&k.hostname) = st.hostname.clone();
    // Shared objects first.
    let handlers: Vec<Arc<Mutex<SigHandlers>>> = st
        .handlers
        .iter()
        .map(|a| {
            let mut h = SigHandlers::default();
            for (i, act) in a.iter().take(h.actions.len()).enumerate() {
                h.actions[i] = *act;
            }
            Arc::new(Mutex::new(h))
        })
        .collect();
    let mut ranges = HashMap::new();
    let vfs = k.vfs.clone();
    let mut mms = Vec::with_capacity(st.mms.len());
    for m in &st.mms {
        let mut open_shared = |path: &str| -> KResult<Arc<std::os::fd::OwnedFd>> {
            let f = vfs.open(
                b"/",
                path.as_bytes(),
                libc::O_RDWR,
                0,
                &super::fs::vfs::Creds::root(),
            )?;
            match f.ops.mmap_source()? {
                super::fs::file::MmapSource::HostFd(fd) => Ok(fd),
                super::fs::file::MmapSource::Copy => Err(Errno::ENODEV),
            }
        };
        mms.push(Arc::new(Mutex::new(AddressSpace::restore(
            k.mf.clone(),
            m,
            &mut ranges,
            &mut open_shared,
        )?)));
    }
    k.mf.punch_free();
    let fss: Vec<Arc<Mutex<FsContext>>> = st
        .fscontexts
        .iter()
        .map(|f| {
            Arc::new(Mutex::new(FsContext {
                vfs: k.vfs.clone(),
                cwd: f.cwd.clone(),
                umask: f.umask,
            }))
        })
        .collect();
    let pipes: Vec<Arc<Pipe>> = st.pipes.iter().map(|b| Pipe::restored(b)).collect();
    let mut files = Vec::with_capacity(st.files.len());
    let now = Instant::now();
    for f in &st.files {
        let of = match &f.kind {
            FileKind::Stdio => {
                if f.flags & libc::O_ACCMODE == libc::O_RDONLY {
                    stdio.stdin.clone()
                } else {
                    stdio.stdout.clone()
                }
            }
            FileKind::Pipe { pipe, write } => {
                let p = pipes.get(*pipe).ok_or(Errno::EINVAL)?;
                OpenFile::new(Box::new(p.end(*write)), f.flags, f.path.clone())
            }
            FileKind::Vfs(desc) => {
                let of = k.vfs.reopen(desc, f.flags)?;
                *lock(&of.pos) = f.pos;
                of
            }
            FileKind::Event(ev) => event_snapshot::rebuild(k, ev, f.flags, f.path.clone(), now)?,
        };
        files.push(of);
    }
    // Every description exists now: fill the epoll interest lists.
    for (f, of) in st.files.iter().zip(&files) {
        if let FileKind::Event(ev) = &f.kind {
            event_snapshot::restore_interests(of, ev, &files)?;
        }
    }
    let mut tables = Vec::with_capacity(st.fdtables.len());
    for t in &st.fdtables {
        let mut table = FdTable::new();
        for (fd, file, cloexec) in t {
            table.insert_at(
                *fd,
                files.get(*file).ok_or(Errno::EINVAL)?.clone(),
                *cloexec,
            );
        }
        tables.push(Arc::new(Mutex::new(table)));
    }
    // Thread groups, then their parent links.
    let mut groups: HashMap<i32, Arc<ThreadGroup>> = HashMap::new();
    for g in &st.groups {
        let mut rlimits = super::task::default_rlimits();
        for (i, l) in g.rlimits.iter().take(rlimits.len()).enumerate() {
            rlimits[i] = *l;
        }
        let tg = Arc::new(ThreadGroup {
            tgid: g.tgid,
            inner: Mutex::new(TgInner {
                parent: None,
                children: Vec::new(),
                tasks: Vec::new(),
                pending: pending_from_vec(&g.pending)?,
                exit_status: g.exit_status,
                state: if g.zombie {
                    TgState::Zombie
                } else {
                    TgState::Running
                },
                pgid: g.pgid,
                sid: g.sid,
                exit_signal: g.exit_signal,
                exe: g.exe.clone(),
                cpu_ns_dead: g.cpu_ns_dead,
                child_cpu_ns: g.child_cpu_ns,
                cred: g.cred,
                rlimits,
                vfork_done: false,
            }),
            handlers: Mutex::new(handlers.get(g.handlers).ok_or(Errno::EINVAL)?.clone()),
            child_wq: Default::default(),
            start: Instant::now(),
            container: g.container.clone(),
        });
        groups.insert(g.tgid, tg);
    }
    for g in &st.groups {
        if let (Some(pid), Some(tg)) = (g.parent, groups.get(&g.tgid))
            && let Some(p) = groups.get(&pid)
        {
            lock(&tg.inner).parent = Some(p.clone());
            lock(&p.inner).children.push(tg.clone());
        }
    }
    // Tasks.
    let mut base: Regs = zeroed_regs();
    (base.cs, base.ss) = (0x33, 0x2b); // Linux's 64-bit user code and stack selectors
    let mut by_mm: HashMap<usize, Vec<(Arc<Task>, Regs, FpState)>> = HashMap::new();
    for t in &st.tasks {
        let tg = groups.get(&t.tgid).ok_or(Errno::EINVAL)?.clone();
        let waker = super::wait::Waker::new().map_err(|e| Errno::from_io(&e))?;
        let task = Arc::new(Task {
            tid: t.tid,
            tg: tg.clone(),
            waker,
            sig: Mutex::new(TaskSignals {
                mask: t.mask,
                pending: pending_from_vec(&t.pending)?,
                altstack: StackT {
                    ss_sp: t.altstack.0,
                    ss_flags: t.altstack.1,
                    _pad: 0,
                    ss_size: t.altstack.2,
                },
                ..Default::default()
            }),
            mm: Mutex::new(mms.get(t.mm).ok_or(Errno::EINVAL)?.clone()),
            files: Mutex::new(tables.get(t.files).ok_or(Errno::EINVAL)?.clone()),
            fs: Mutex::new(fss.get(t.fs).ok_or(Errno::EINVAL)?.clone()),
            killed: AtomicBool::new(false),
            clear_child_tid: AtomicU64::new(t.clear_child_tid),
            robust_list: AtomicU64::new(t.robust_list),
            comm: Mutex::new(t.comm.clone()),
            cpu_ns: AtomicU64::new(t.cpu_ns),
            cur_syscall: AtomicI32::new(-1),
            regs_snapshot: Mutex::new(None),
            fp_snapshot: Mutex::new(None),
            parked: AtomicBool::new(false),
        });
        lock(&tg.inner).tasks.push(task.clone());
        let regs = regs_from_vec(&t.regs, &base)?;
        by_mm
            .entry(t.mm)
            .or_default()
            .push((task, regs, FpState(t.fp.clone())));
    }
    {
        let mut pids = lock(&k.pids);
        for (pid, g) in &groups {
            pids.groups.insert(*pid, g.clone());
        }
        for list in by_mm.values() {
            for (t, _, _) in list {
                pids.tasks.insert(t.tid, t.clone());
            }
        }
        pids.set_last(st.last_pid);
    }
    if let Some(s) = st.init_status {
        k.set_init_status(s);
    }
    k.events
        .restore_timers(k, &groups, &st.timers, Instant::now())?;
    // Every address space gets a fresh stub from its first task; the
    // others are cloned into it from that task's kernel thread.
    for (_, mut list) in by_mm {
        let (first, regs, fp) = list.remove(0);
        let k2 = k.clone();
        let hook: run::StartHook = Box::new(move |r: &mut run::Runner| {
            for (t, regs, fp) in list {
                let pending = r.ctx.clone_member().map_err(Errno)?;
                run::spawn(
                    k2.clone(),
                    t,
                    regs,
                    ContextSource::Member(pending, Some(fp)),
                    None,
                    None,
                )
                .map_err(|e| Errno::from_io(&e))?;
            }
            Ok(())
        });
        run::spawn(
            k.clone(),
            first,
            regs,
            ContextSource::NewProcess { fp: Some(fp) },
            None,
            Some(hook),
        )
        .map_err(|e| Errno::from_io(&e))?;
    }
    Ok(())
}
