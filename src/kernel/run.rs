//! The kernel thread serving one task: run application code, serve its
//! system calls, deliver its signals, and tear it down when it exits.

use super::signal::frame::{
    FP_XSTATE_MAGIC1, FP_XSTATE_MAGIC2, RtSigFrame, SigContext, UC_FP_XSTATE, UC_SIGCONTEXT_SS,
    UC_STRICT_RESTORE_SS,
};
use super::signal::{self, DefaultAction, SS_DISABLE, SS_ONSTACK, SigInfo};
use super::task::{Task, TgState, lock};
use super::wait::WaitQueue;
use super::{Errno, KResult, Kernel};
use crate::mm::AddressSpace;
use crate::platform::ptrace::{FpState, PtraceContext, xfeatures, xstate_size};
use crate::platform::{Regs, Trap};
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How a task's platform context comes to be, on its own kernel thread.
pub enum ContextSource {
    /// A fresh stub process whose address space is materialized from the
    /// task's `mm` (fork) or filled by exec (init).
    NewProcess {
        /// FP state to start with.
        fp: Option<FpState>,
    },
    /// A member cloned into the parent's address space (CLONE_VM), with
    /// the FP state to load once attached (restore), if any.
    Member(crate::platform::ptrace::PendingMember, Option<FpState>),
}

/// A task's kernel-side execution state, owned by its kernel thread.
pub struct Runner {
    /// The kernel.
    pub k: Arc<Kernel>,
    /// The task.
    pub t: Arc<Task>,
    /// The platform context.
    pub ctx: PtraceContext,
    /// Application registers.
    pub regs: Regs,
    /// Cached address space.
    pub mm: Arc<Mutex<AddressSpace>>,
    /// Set when a handler replaced all registers (sigreturn, execve).
    pub regs_replaced: bool,
    /// Exit requested: wait status for exit(2)/exit_group(2).
    pub exit: Option<Exit>,
    /// Signalled when a vfork child execs or exits.
    pub vfork_parent: Option<Arc<VforkDone>>,
}

/// How a task leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// exit(2): this thread only.
    Thread(i32),
    /// exit_group(2) or a fatal signal: wait status of the group.
    Group(i32),
}

/// Completion of a vfork child's use of its parent's memory.
#[derive(Debug, Default)]
pub struct VforkDone {
    /// Set when done.
    pub done: std::sync::atomic::AtomicBool,
    /// The parent waits here.
    pub wq: WaitQueue,
}

impl VforkDone {
    /// Marks done and wakes the parent.
    pub fn complete(&self) {
        self.done.store(true, Ordering::Release);
        self.wq.notify_all();
    }
}

/// Work a new task's thread does before running application code (init's
/// first execve).
pub type StartHook = Box<dyn FnOnce(&mut Runner) -> KResult<()> + Send>;

/// Starts the kernel thread for `t`.
pub fn spawn(
    k: Arc<Kernel>,
    t: Arc<Task>,
    regs: Regs,
    src: ContextSource,
    vfork: Option<Arc<VforkDone>>,
    after: Option<StartHook>,
) -> std::io::Result<()> {
    let name = format!("task-{}", t.tid);
    std::thread::Builder::new()
        .name(name)
        .stack_size(1 << 20)
        .spawn(move || {
            super::proc::set_current(t.tid, t.tg.tgid);
            let ctx = match src {
                ContextSource::NewProcess { fp } => {
                    PtraceContext::new_process().and_then(|mut c| {
                        let mm = t.mm();
                        lock(&mm).materialize(&mut c).map_err(|e| e.0)?;
                        if let Some(fp) = fp {
                            c.set_fp(&fp)?;
                        }
                        Ok(c)
                    })
                }
                ContextSource::Member(p, fp) => PtraceContext::attach(p).and_then(|c| {
                    if let Some(fp) = fp {
                        c.set_fp(&fp)?;
                    }
                    Ok(c)
                }),
            };
            let ctx = match ctx {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(
                        "task {}: cannot create its platform context: {}",
                        t.tid,
                        Errno(e)
                    );
                    if let Some(v) = &vfork {
                        v.complete();
                    }
                    exit_task(&k, &t, Exit::Group(libc::SIGKILL));
                    return;
                }
            };
            lock(&t.sig).host_pid = ctx.pid();
            let mm = t.mm();
            let mut r = Runner {
                k,
                t,
                ctx,
                regs,
                mm,
                regs_replaced: false,
                exit: None,
                vfork_parent: vfork,
            };
            if let Some(f) = after
                && let Err(e) = f(&mut r)
            {
                // The hook reports its own failure to whoever started the task.
                tracing::debug!("task {}: start failed: {e}", r.t.tid);
                r.exit = Some(Exit::Group(libc::SIGKILL));
            }
            r.run();
        })?;
    Ok(())
}

impl Runner {
    fn run(&mut self) {
        loop {
            if let Some(e) = self.exit {
                self.finish(e);
                return;
            }
            if self.t.killed.load(Ordering::Relaxed) {
                // Killed by exit_group or a fatal signal (group status
                // set), or by another thread's execve (no status).
                let st = lock(&self.t.tg.inner).exit_status;
                self.finish(st.map_or(Exit::Thread(0), Exit::Group));
                return;
            }
            self.deliver_signals(None);
            if self.exit.is_some() {
                continue;
            }
            lock(&self.t.sig).in_app = true;
            if self.t.signal_pending() || self.k.is_paused() {
                // Set in_app first, then look: a sender (or pause) either
                // sees in_app and kicks, or its signal is seen here.
                lock(&self.t.sig).in_app = false;
                if self.k.is_paused() {
                    *lock(&self.t.regs_snapshot) = Some(self.regs);
                    loop {
                        if self.k.is_checkpointing() && !self.t.parked.load(Ordering::SeqCst) {
                            // Everything a checkpoint needs of this thread
                            // is its user state, published here (a pause may
                            // turn into a checkpoint while we wait).
                            *lock(&self.t.fp_snapshot) = self.ctx.get_fp().ok();
                            self.t.parked.store(true, Ordering::SeqCst);
                        }
                        if !self.k.stop_point(&self.t) {
                            break;
                        }
                    }
                    self.t.parked.store(false, Ordering::SeqCst);
                }
                continue;
            }
            let start = Instant::now();
            let trap = self.ctx.switch(&mut self.regs);
            lock(&self.t.sig).in_app = false;
            self.t
                .cpu_ns
                .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
            match trap {
                Trap::Syscall => self.syscall(),
                Trap::Fault { signo, code, addr } => {
                    self.force_signal(SigInfo::fault(signo, code, addr));
                }
                Trap::Interrupted => {}
                Trap::Died => {
                    if self.exit.is_none() && !self.t.killed.load(Ordering::Relaxed) {
                        tracing::warn!("task {}: platform context died", self.t.tid);
                    }
                    self.exit = Some(Exit::Group(libc::SIGKILL));
                }
            }
        }
    }

    /// Queues a synchronous signal that cannot be blocked or ignored
    /// (a fault): the handler runs if there is one, else the group dies.
    pub fn force_signal(&mut self, info: SigInfo) {
        let sig = info.signo();
        let handlers = self.t.tg.handlers();
        {
            let mut h = lock(&handlers);
            let mut s = lock(&self.t.sig);
            let blocked = s.mask & signal::bit(sig) != 0;
            if blocked || h.get(sig).handler == signal::SIG_IGN {
                h.actions[(sig - 1) as usize].handler = signal::SIG_DFL;
                s.mask &= !signal::bit(sig);
            }
            s.pending.push(info);
        }
    }

    fn syscall(&mut self) {
        let nr = self.regs.orig_rax;
        let args = [
            self.regs.rdi,
            self.regs.rsi,
            self.regs.rdx,
            self.regs.r10,
            self.regs.r8,
            self.regs.r9,
        ];
        self.t.cur_syscall.store(nr as i32, Ordering::Relaxed);
        self.regs_replaced = false;
        let strace = self.k.strace_on() && self.k.strace_allows(nr);
        let res = super::syscalls::dispatch(self, nr, args);
        if strace {
            super::syscalls::strace_log(self, nr, &args, &res);
        }
        self.t.cur_syscall.store(-1, Ordering::Relaxed);
        if self.regs_replaced {
            return;
        }
        match res {
            Ok(v) => self.regs.rax = v,
            Err(e) if e.is_restart() => {
                self.regs.rax = (-(e.0 as i64)) as u64;
                self.deliver_signals(Some(e));
            }
            Err(e) => self.regs.rax = (-(e.0 as i64)) as u64,
        }
    }

    fn restart_syscall(&mut self) {
        self.regs.rax = self.regs.orig_rax;
        self.regs.rip -= 2;
    }

    fn next_signal(&mut self) -> Option<SigInfo> {
        let mut s = lock(&self.t.sig);
        let mask = s.mask;
        if let Some(i) = s.pending.pop(mask) {
            return Some(i);
        }
        drop(s);
        lock(&self.t.tg.inner).pending.pop(mask)
    }

    /// Delivers pending signals. `interrupted` is the restart code of a
    /// syscall that was interrupted, if any.
    pub fn deliver_signals(&mut self, interrupted: Option<Errno>) {
        let mut restart = interrupted;
        while let Some(info) = self.next_signal() {
            let sig = info.signo();
            let handlers = self.t.tg.handlers();
            let act = lock(&handlers).get(sig);
            if sig == libc::SIGKILL || act.handler == signal::SIG_DFL {
                match signal::default_action(sig) {
                    DefaultAction::Ignore | DefaultAction::Continue | DefaultAction::Stop
                        if sig != libc::SIGKILL =>
                    {
                        continue;
                    }
                    DefaultAction::Core => {
                        self.exit = Some(Exit::Group(sig | 0x80));
                        return;
                    }
                    _ => {
                        self.exit = Some(Exit::Group(sig));
                        return;
                    }
                }
            }
            if act.handler == signal::SIG_IGN {
                continue;
            }
            if let Some(e) = restart.take() {
                match e {
                    Errno::ERESTARTSYS if act.flags & signal::SA_RESTART != 0 => {
                        self.restart_syscall()
                    }
                    Errno::ERESTARTNOINTR => self.restart_syscall(),
                    _ => self.regs.rax = (-(Errno::EINTR.0 as i64)) as u64,
                }
            }
            if self.setup_frame(&info, &act).is_err() {
                // Cannot write the frame: the process dies of SIGSEGV.
                self.exit = Some(Exit::Group(libc::SIGSEGV | 0x80));
                return;
            }
            if act.flags & signal::SA_RESETHAND != 0 {
                lock(&handlers).actions[(sig - 1) as usize] = signal::SigAction::default();
            }
            return;
        }
        if let Some(e) = restart {
            // No handler ran: restart transparently (or EINTR for calls that
            // must not restart).
            match e {
                Errno::ERESTART_RESTARTBLOCK => self.regs.rax = (-(Errno::EINTR.0 as i64)) as u64,
                _ => self.restart_syscall(),
            }
        }
        // A sigsuspend-style mask is restored once no handler needs it.
        if let Some(m) = lock(&self.t.sig).saved_mask.take() {
            lock(&self.t.sig).mask = m;
        }
    }

    fn setup_frame(&mut self, info: &SigInfo, act: &signal::SigAction) -> KResult<()> {
        let sig = info.signo();
        let fp = self.ctx.get_fp().map_err(Errno)?;
        let (altstack, old_mask) = {
            let mut s = lock(&self.t.sig);
            let old = s.saved_mask.take().unwrap_or(s.mask);
            (s.altstack, old)
        };
        let mut sp = self.regs.rsp.wrapping_sub(128);
        let on_alt = altstack.ss_flags & SS_DISABLE == 0
            && altstack.ss_size > 0
            && self.regs.rsp > altstack.ss_sp
            && self.regs.rsp <= altstack.ss_sp + altstack.ss_size;
        if act.flags & signal::SA_ONSTACK != 0
            && altstack.ss_flags & SS_DISABLE == 0
            && altstack.ss_size > 0
            && !on_alt
        {
            sp = altstack.ss_sp + altstack.ss_size;
        }
        let xsize = xstate_size();
        sp = (sp - (xsize as u64 + 4)) & !63;
        let fpstate = sp;
        sp -= std::mem::size_of::<RtSigFrame>() as u64;
        sp = (sp & !15) - 8;
        let mut frame = RtSigFrame {
            pretcode: act.restorer,
            ..Default::default()
        };
        frame.uc.uc_flags = UC_FP_XSTATE | UC_SIGCONTEXT_SS | UC_STRICT_RESTORE_SS;
        frame.uc.uc_stack = signal::StackT {
            ss_sp: altstack.ss_sp,
            ss_flags: if on_alt {
                SS_ONSTACK
            } else {
                altstack.ss_flags
            },
            _pad: 0,
            ss_size: altstack.ss_size,
        };
        frame.uc.uc_mcontext = SigContext::from_regs(&self.regs);
        frame.uc.uc_mcontext.fpstate = fpstate;
        frame.uc.uc_mcontext.oldmask = old_mask;
        frame.uc.uc_sigmask = old_mask;
        frame.info = *info;
        let mut fpbuf = fp.0.clone();
        fpbuf.resize(xsize, 0);
        fpbuf[464..468].copy_from_slice(&FP_XSTATE_MAGIC1.to_le_bytes());
        fpbuf[468..472].copy_from_slice(&((xsize + 4) as u32).to_le_bytes());
        fpbuf[472..480].copy_from_slice(&xfeatures().to_le_bytes());
        fpbuf[480..484].copy_from_slice(&(xsize as u32).to_le_bytes());
        fpbuf.extend_from_slice(&FP_XSTATE_MAGIC2.to_le_bytes());
        {
            let mm = lock(&self.mm);
            mm.write(fpstate, &fpbuf)?;
            mm.write_val(sp, &frame)?;
        }
        self.regs.rsp = sp;
        self.regs.rip = act.handler;
        self.regs.rdi = sig as u64;
        self.regs.rsi = sp + std::mem::offset_of!(RtSigFrame, info) as u64;
        self.regs.rdx = sp + std::mem::offset_of!(RtSigFrame, uc) as u64;
        self.regs.rax = 0;
        self.regs.eflags &= !(0x100 | 0x400); // TF, DF
        self.regs.orig_rax = u64::MAX;
        let _ = self.ctx.set_fp(&FpState::initial());
        let mut s = lock(&self.t.sig);
        s.mask |= act.mask;
        if act.flags & signal::SA_NODEFER == 0 {
            s.mask |= signal::bit(sig);
        }
        s.mask &= !signal::UNBLOCKABLE;
        Ok(())
    }

    /// rt_sigreturn(2): restores the context saved by `setup_frame`.
    pub fn sigreturn(&mut self) -> KResult<u64> {
        let frame_addr = self.regs.rsp - 8;
        let (frame, fpbuf) = {
            let mm = lock(&self.mm);
            let frame: RtSigFrame = read_frame(&mm, frame_addr)?;
            let mut fpbuf = vec![0u8; xstate_size()];
            let fpaddr = frame.uc.uc_mcontext.fpstate;
            if fpaddr != 0 {
                mm.read(fpaddr, &mut fpbuf)?;
            }
            (frame, if fpaddr != 0 { Some(fpbuf) } else { None })
        };
        frame.uc.uc_mcontext.to_regs(&mut self.regs);
        if let Some(mut fp) = fpbuf {
            // The sw_reserved bytes are ours; the hardware header must be sane.
            fp[464..512].fill(0);
            let _ = self.ctx.set_fp(&FpState(fp));
        }
        {
            let mut s = lock(&self.t.sig);
            s.mask = frame.uc.uc_sigmask & !signal::UNBLOCKABLE;
        }
        self.regs_replaced = true;
        Ok(self.regs.rax)
    }

    /// Blocks until `cond` yields a result, the deadline passes (ETIMEDOUT),
    /// or a signal arrives (ERESTARTSYS). Registers on `queues` and polls
    /// `host_fds` while waiting.
    pub fn block<T>(
        &mut self,
        queues: &[&WaitQueue],
        host_fds: &[(RawFd, i16)],
        deadline: Option<Instant>,
        mut cond: impl FnMut(&mut Self) -> Option<KResult<T>>,
    ) -> KResult<T> {
        let waker = self.t.waker.clone();
        for q in queues {
            q.add(&waker);
        }
        *lock(&self.t.regs_snapshot) = Some(self.regs);
        let res = loop {
            if let Some(r) = cond(self) {
                break r;
            }
            if self.k.is_checkpointing() {
                // Leave the syscall so the thread parks with nothing but
                // user state; it restarts the syscall when it runs again.
                break Err(Errno::ERESTARTNOINTR);
            }
            if self.t.signal_pending() {
                break Err(Errno::ERESTARTSYS);
            }
            let timeout = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break Err(Errno::ETIMEDOUT);
                    }
                    Some(d - now)
                }
                None => None,
            };
            let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(1 + host_fds.len());
            pfds.push(libc::pollfd {
                fd: waker.fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            for &(fd, ev) in host_fds {
                pfds.push(libc::pollfd {
                    fd,
                    events: ev,
                    revents: 0,
                });
            }
            crate::ffi::ppoll(&mut pfds, timeout);
            waker.clear();
        };
        for q in queues {
            q.remove(&waker);
        }
        res
    }

    fn finish(&mut self, e: Exit) {
        if let Some(v) = self.vfork_parent.take() {
            v.complete();
        }
        // clear_child_tid: zero the word and wake a futex waiter.
        let ctid = self.t.clear_child_tid.swap(0, Ordering::Relaxed);
        if ctid != 0 {
            let mm = lock(&self.mm);
            if mm.write_val(ctid, &0u32).is_ok()
                && let Ok(key) = super::futex::key_of(&mm, ctid)
            {
                self.k.futexes.wake(key, 1, u32::MAX);
            }
        }
        self.ctx.kill();
        exit_task(&self.k, &self.t, e);
    }
}

fn read_frame(mm: &AddressSpace, addr: u64) -> KResult<RtSigFrame> {
    mm.read_val::<RtSigFrame>(addr)
}

/// Removes a task; the last task of a group turns it into a zombie (or
/// reaps it) and notifies the parent.
pub fn exit_task(k: &Arc<Kernel>, t: &Arc<Task>, e: Exit) {
    let tg = t.tg.clone();
    let last = {
        let mut inner = lock(&tg.inner);
        if let Exit::Group(st) = e {
            if inner.exit_status.is_none() {
                inner.exit_status = Some(st);
            }
            for o in &inner.tasks {
                if !Arc::ptr_eq(o, t) {
                    o.killed.store(true, Ordering::Relaxed);
                    o.interrupt();
                }
            }
        }
        inner.tasks.retain(|o| !Arc::ptr_eq(o, t));
        inner.cpu_ns_dead += t.cpu_ns.load(Ordering::Relaxed);
        if inner.tasks.is_empty() {
            if inner.exit_status.is_none() {
                inner.exit_status = Some(match e {
                    Exit::Thread(s) | Exit::Group(s) => s,
                });
            }
            inner.state = TgState::Zombie;
            true
        } else {
            false
        }
    };
    lock(&k.pids).tasks.remove(&t.tid);
    // Drop descriptors now so pipe ends close promptly.
    *lock(&t.files) = Arc::new(Mutex::new(super::fdtable::FdTable::new()));
    if !last {
        return;
    }
    group_exited(k, &tg);
}

fn group_exited(k: &Arc<Kernel>, tg: &Arc<super::task::ThreadGroup>) {
    let (status, parent, children, exit_signal) = {
        let mut inner = lock(&tg.inner);
        let children = std::mem::take(&mut inner.children);
        (
            inner.exit_status.unwrap_or(0),
            inner.parent.clone(),
            children,
            inner.exit_signal,
        )
    };
    // Orphans go to init (pid 1); if init is the one exiting, the whole
    // namespace dies with it.
    if tg.tgid == 1 {
        for c in &children {
            k.signal_group(c, SigInfo::new(libc::SIGKILL, signal::SI_KERNEL));
        }
        k.kill_all();
    } else if let Some(init) = k.group(1) {
        let mut reap_now = Vec::new();
        {
            let mut ii = lock(&init.inner);
            for c in &children {
                lock(&c.inner).parent = Some(init.clone());
                if lock(&c.inner).state == TgState::Zombie {
                    reap_now.push(c.clone());
                }
                ii.children.push(c.clone());
            }
        }
        if !reap_now.is_empty() {
            init.child_wq.notify_all();
        }
    }
    match parent {
        Some(p) => {
            let handlers = p.handlers();
            let act = lock(&handlers).get(libc::SIGCHLD);
            let autoreap = exit_signal == libc::SIGCHLD
                && (act.handler == signal::SIG_IGN || act.flags & signal::SA_NOCLDWAIT != 0);
            if autoreap {
                reap(k, &p, tg);
            } else if exit_signal > 0 {
                let (code, st) = if status & 0x7f != 0 {
                    (if status & 0x80 != 0 { 3 } else { 2 }, status & 0x7f)
                } else {
                    (1, (status >> 8) & 0xff)
                };
                k.signal_group(&p, SigInfo::child(code, tg.tgid, 0, st));
            }
            p.child_wq.notify_all();
        }
        None if tg.tgid == 1 => {
            // The container's init.
            let st = wait_status(status);
            k.set_init_status(st);
        }
        None => {
            // Started from outside (exec): stays a zombie until the
            // control plane's wait_pid reaps it.
            k.notify_exit();
        }
    }
}

/// Converts the internal exit record (a signal number with the core bit,
/// or an exit code shifted left by 8) into a wait status.
pub fn wait_status(s: i32) -> i32 {
    s
}

/// Reaps zombie `child` of `parent`: removes it from the tables and adds
/// its CPU time to the parent's children time.
pub fn reap(
    k: &Kernel,
    parent: &Arc<super::task::ThreadGroup>,
    child: &Arc<super::task::ThreadGroup>,
) {
    let cpu = {
        let mut ci = lock(&child.inner);
        ci.state = TgState::Dead;
        ci.cpu_ns_dead + ci.child_cpu_ns
    };
    {
        let mut pi = lock(&parent.inner);
        pi.children.retain(|c| !Arc::ptr_eq(c, child));
        pi.child_cpu_ns += cpu;
    }
    lock(&k.pids).groups.remove(&child.tgid);
}
