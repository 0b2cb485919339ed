//! The ptrace platform: every application thread runs in a *stub member*, a
//! host process whose only mappings are the stub page and the application's
//! memory, traced with `PTRACE_SYSEMU` by the kernel thread serving it.
//!
//! Threads of one application process are separate host processes sharing
//! one address space (`CLONE_VM` without `CLONE_THREAD`), so a host signal
//! or stop of one never touches another. A new member is cloned by
//! injecting `clone` into an existing member; the kernel thread that will
//! serve it then attaches with `PTRACE_SEIZE`.

pub mod stub;

use super::{AddressSpaceOps, Regs, Trap};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Host signal used to kick a running stub back to its tracer.
pub const KICK_SIGNAL: i32 = libc::SIGUSR2;

const PTRACE_SYSEMU: libc::c_uint = 31;
const NT_X86_XSTATE: libc::c_int = 0x202;

/// Size in bytes of the XSAVE area on this CPU with the features the host
/// enabled (CPUID leaf 0xD).
pub fn xstate_size() -> usize {
    static SIZE: OnceLock<usize> = OnceLock::new();
    *SIZE.get_or_init(|| {
        // CPUID leaf 0xD is defined wherever XSAVE is, zeros otherwise.
        let r = std::arch::x86_64::__cpuid_count(0xd, 0);
        (r.ebx as usize).max(512)
    })
}

/// The feature mask the host enabled in XCR0 (CPUID 0xD.0 EAX:EDX).
pub fn xfeatures() -> u64 {
    let r = std::arch::x86_64::__cpuid_count(0xd, 0);
    (r.eax as u64) | ((r.edx as u64) << 32)
}

/// FP/SSE/AVX state of a thread in XSAVE (standard, uncompacted) format.
#[derive(Clone)]
pub struct FpState(pub Vec<u8>);

impl FpState {
    /// The state of a fresh thread after exec: x87 control word 0x37f,
    /// MXCSR 0x1f80, everything else zero.
    pub fn initial() -> FpState {
        let mut v = vec![0u8; xstate_size()];
        v[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        v[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        v[28..32].copy_from_slice(&0xffffu32.to_le_bytes()); // MXCSR mask
        FpState(v)
    }
}

impl std::fmt::Debug for FpState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FpState({} bytes)", self.0.len())
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn ptrace(req: libc::c_uint, pid: i32, addr: usize, data: usize) -> Result<i64, i32> {
    // SAFETY: the raw ptrace syscall; `addr`/`data` point to live buffers of
    // the size the request expects where the request uses them (callers
    // below), or are plain integers.
    let r = unsafe {
        libc::ptrace(
            req,
            pid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    if r < 0 { Err(errno()) } else { Ok(r) }
}

fn waitpid(pid: i32) -> Result<i32, i32> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if r == pid {
            return Ok(status);
        }
        if r < 0 && errno() != libc::EINTR {
            return Err(errno());
        }
    }
}

fn set_affinity(pid: i32, cpu: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn pick_cpu() -> Option<usize> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if n <= 1 {
        return None;
    }
    Some(NEXT.fetch_add(1, Ordering::Relaxed) % n)
}

/// One application thread's execution context: a traced stub member.
///
/// Must be used only from the host thread that created or attached it (the
/// tracer), as ptrace requires.
#[derive(Debug)]
pub struct PtraceContext {
    pid: i32,
    layout: stub::StubLayout,
    alive: bool,
}

/// A member cloned into an existing address space, not yet attached.
#[derive(Debug)]
pub struct PendingMember {
    /// Host pid of the new member.
    pub pid: i32,
}

impl PtraceContext {
    /// Creates a stub process with an empty address space, traced by the
    /// calling thread.
    pub fn new_process() -> Result<PtraceContext, i32> {
        let layout = stub::install().map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let pid = stub::fork_stub().map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let mut ctx = PtraceContext {
            pid,
            layout,
            alive: true,
        };
        let status = waitpid(pid)?;
        if !libc::WIFSTOPPED(status) || libc::WSTOPSIG(status) != libc::SIGSTOP {
            ctx.alive = libc::WIFSTOPPED(status);
            return Err(libc::ECHILD);
        }
        ptrace(
            libc::PTRACE_SETOPTIONS,
            pid,
            0,
            (libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL) as usize,
        )?;
        ctx.pin();
        Ok(ctx)
    }

    /// Attaches the calling thread to a member created by
    /// [`PtraceContext::clone_member`].
    pub fn attach(pending: PendingMember) -> Result<PtraceContext, i32> {
        let layout = stub::install().map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
        let pid = pending.pid;
        let opts = (libc::PTRACE_O_TRACESYSGOOD | libc::PTRACE_O_EXITKILL) as usize;
        if let Err(e) = ptrace(libc::PTRACE_SEIZE, pid, 0, opts) {
            // SAFETY: plain kill of the member we created.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return Err(e);
        }
        let mut ctx = PtraceContext {
            pid,
            layout,
            alive: true,
        };
        ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0)?;
        loop {
            let status = waitpid(pid)?;
            if !libc::WIFSTOPPED(status) {
                ctx.alive = false;
                return Err(libc::ESRCH);
            }
            if status >> 16 == libc::PTRACE_EVENT_STOP {
                break;
            }
            // A signal stop (e.g. a stray kick) before the interrupt: suppress.
            ptrace(libc::PTRACE_CONT, pid, 0, 0)?;
        }
        ctx.pin();
        Ok(ctx)
    }

    fn pin(&self) {
        if let Some(cpu) = pick_cpu() {
            set_affinity(0, cpu);
            set_affinity(self.pid, cpu);
        }
    }

    /// Host pid of the stub member (for kicking it from other threads).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Reads the member's general registers.
    pub fn get_regs(&self) -> Result<Regs, i32> {
        // SAFETY: Regs is plain data; PTRACE_GETREGS fills it.
        let mut regs: Regs = unsafe { std::mem::zeroed() };
        ptrace(
            libc::PTRACE_GETREGS,
            self.pid,
            0,
            &mut regs as *mut Regs as usize,
        )?;
        Ok(regs)
    }

    /// Writes the member's general registers.
    pub fn set_regs(&self, regs: &Regs) -> Result<(), i32> {
        ptrace(
            libc::PTRACE_SETREGS,
            self.pid,
            0,
            regs as *const Regs as usize,
        )?;
        Ok(())
    }

    /// Reads the member's FP/vector state.
    pub fn get_fp(&self) -> Result<FpState, i32> {
        let mut buf = vec![0u8; xstate_size()];
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        ptrace(
            libc::PTRACE_GETREGSET,
            self.pid,
            NT_X86_XSTATE as usize,
            &mut iov as *mut libc::iovec as usize,
        )?;
        buf.truncate(iov.iov_len);
        buf.resize(xstate_size(), 0);
        Ok(FpState(buf))
    }

    /// Writes the member's FP/vector state.
    pub fn set_fp(&self, fp: &FpState) -> Result<(), i32> {
        let mut buf = fp.0.clone();
        buf.resize(xstate_size(), 0);
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        ptrace(
            libc::PTRACE_SETREGSET,
            self.pid,
            NT_X86_XSTATE as usize,
            &mut iov as *mut libc::iovec as usize,
        )?;
        Ok(())
    }

    /// Runs application code with `regs` until it traps; `regs` then holds
    /// the registers at the trap.
    pub fn switch(&mut self, regs: &mut Regs) -> Trap {
        if !self.alive {
            return Trap::Died;
        }
        if self.set_regs(regs).is_err() {
            self.alive = false;
            return Trap::Died;
        }
        let mut sig = 0usize;
        loop {
            if ptrace(PTRACE_SYSEMU, self.pid, 0, sig).is_err() {
                self.alive = false;
                return Trap::Died;
            }
            sig = 0;
            let status = match waitpid(self.pid) {
                Ok(s) => s,
                Err(_) => {
                    self.alive = false;
                    return Trap::Died;
                }
            };
            if !libc::WIFSTOPPED(status) {
                self.alive = false;
                return Trap::Died;
            }
            let stopsig = libc::WSTOPSIG(status);
            if status >> 16 != 0 {
                // A ptrace event stop (e.g. PTRACE_INTERRUPT): just go on.
                continue;
            }
            if stopsig == libc::SIGTRAP | 0x80 {
                match self.get_regs() {
                    Ok(r) => *regs = r,
                    Err(_) => {
                        self.alive = false;
                        return Trap::Died;
                    }
                }
                return Trap::Syscall;
            }
            match stopsig {
                libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL | libc::SIGTRAP => {
                    // SAFETY: siginfo_t is plain data filled by the kernel.
                    let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
                    let _ = ptrace(
                        libc::PTRACE_GETSIGINFO,
                        self.pid,
                        0,
                        &mut si as *mut _ as usize,
                    );
                    if si.si_code <= 0 {
                        // Sent by some host process, not raised by the CPU: ignore.
                        continue;
                    }
                    // SAFETY: for these signals si_addr is the valid union member.
                    let addr = unsafe { si.si_addr() } as u64;
                    match self.get_regs() {
                        Ok(r) => *regs = r,
                        Err(_) => {
                            self.alive = false;
                            return Trap::Died;
                        }
                    }
                    return Trap::Fault {
                        signo: stopsig,
                        code: si.si_code,
                        addr,
                    };
                }
                KICK_SIGNAL => {
                    match self.get_regs() {
                        Ok(r) => *regs = r,
                        Err(_) => {
                            self.alive = false;
                            return Trap::Died;
                        }
                    }
                    return Trap::Interrupted;
                }
                libc::SIGKILL => {
                    self.alive = false;
                    return Trap::Died;
                }
                _ => {
                    // Host noise (SIGCHLD of a member, SIGSTOP, SIGCONT...):
                    // suppressed, the application never sees host signals.
                    continue;
                }
            }
        }
    }

    /// Executes a system call in the member (for address-space
    /// operations), preserving its registers. Returns the raw result.
    pub fn inject(&mut self, nr: i64, args: [u64; 6]) -> Result<i64, i32> {
        self.inject_at(self.layout.syscall_site, nr, args)
    }

    fn inject_at(&mut self, site: u64, nr: i64, args: [u64; 6]) -> Result<i64, i32> {
        let saved = self.get_regs()?;
        let mut r = saved;
        r.rip = site;
        r.rax = nr as u64;
        r.orig_rax = u64::MAX;
        r.rdi = args[0];
        r.rsi = args[1];
        r.rdx = args[2];
        r.r10 = args[3];
        r.r8 = args[4];
        r.r9 = args[5];
        self.set_regs(&r)?;
        loop {
            ptrace(libc::PTRACE_CONT, self.pid, 0, 0)?;
            let status = waitpid(self.pid)?;
            if !libc::WIFSTOPPED(status) {
                self.alive = false;
                return Err(libc::ESRCH);
            }
            if libc::WSTOPSIG(status) == libc::SIGTRAP && status >> 16 == 0 {
                break;
            }
            if libc::WSTOPSIG(status) == libc::SIGSEGV {
                // SAFETY: plain data.
                let mut si: libc::siginfo_t = unsafe { std::mem::zeroed() };
                let _ = ptrace(
                    libc::PTRACE_GETSIGINFO,
                    self.pid,
                    0,
                    &mut si as *mut _ as usize,
                );
                if si.si_code > 0 {
                    self.alive = false;
                    return Err(libc::EFAULT);
                }
            }
            // Anything else (a kick, SIGCHLD): suppressed; the syscall was
            // restarted or already done; continue to the int3.
        }
        let out = self.get_regs()?;
        self.set_regs(&saved)?;
        Ok(out.rax as i64)
    }

    /// Clones a new member sharing this member's address space. The
    /// returned member runs a pause loop until a thread attaches to it.
    pub fn clone_member(&mut self) -> Result<PendingMember, i32> {
        let flags = (libc::CLONE_VM | libc::CLONE_FILES | libc::SIGCHLD) as u64;
        let r = self.inject_at(
            self.layout.clone_site,
            libc::SYS_clone,
            [flags, 0, 0, 0, 0, 0],
        )?;
        if r < 0 {
            return Err(-r as i32);
        }
        Ok(PendingMember { pid: r as i32 })
    }

    /// Kicks the member with the given host pid out of application code.
    /// Callable from any thread.
    pub fn kick(pid: i32) {
        // SAFETY: tgkill to a member we own; members are single-threaded
        // host processes so tgid == tid.
        unsafe {
            libc::syscall(libc::SYS_tgkill, pid, pid, KICK_SIGNAL);
        }
    }

    /// Kills and reaps the member.
    pub fn kill(&mut self) {
        if self.pid > 0 {
            // SAFETY: killing our own member process.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let mut status = 0;
            // SAFETY: valid out-pointer; reaps the traced member.
            while unsafe { libc::waitpid(self.pid, &mut status, libc::__WALL) } == self.pid {
                if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                    break;
                }
            }
            self.alive = false;
            self.pid = -1;
        }
    }
}

impl Drop for PtraceContext {
    fn drop(&mut self) {
        self.kill();
    }
}

impl AddressSpaceOps for PtraceContext {
    fn map(&mut self, addr: u64, len: u64, prot: i32, fd: i32, offset: u64) -> Result<(), i32> {
        let flags = (libc::MAP_SHARED | libc::MAP_FIXED) as u64;
        let r = self.inject(
            libc::SYS_mmap,
            [addr, len, prot as u64, flags, fd as u64, offset],
        )?;
        if r < 0 { Err(-r as i32) } else { Ok(()) }
    }

    fn unmap(&mut self, addr: u64, len: u64) -> Result<(), i32> {
        let r = self.inject(libc::SYS_munmap, [addr, len, 0, 0, 0, 0])?;
        if r < 0 { Err(-r as i32) } else { Ok(()) }
    }

    fn protect(&mut self, addr: u64, len: u64, prot: i32) -> Result<(), i32> {
        let r = self.inject(libc::SYS_mprotect, [addr, len, prot as u64, 0, 0, 0])?;
        if r < 0 { Err(-r as i32) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::MemoryFile;

    /// Runs a few real instructions in a stub: two system calls trap to us
    /// with their numbers and arguments, and our return value is seen by
    /// the application.
    #[test]
    fn sysemu_traps_syscalls_and_returns_values() {
        let mf = MemoryFile::new().expect("memory file");
        let range = mf.alloc(4096).expect("alloc");
        // mov eax, 39; syscall; mov edi, eax; mov eax, 60; syscall; ud2
        let code: [u8; 18] = [
            0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0x89, 0xc7, 0xb8, 60, 0, 0, 0, 0x0f, 0x05, 0x0f, 0x0b,
        ];
        mf.write(range.off, &code);
        let mut ctx = PtraceContext::new_process().expect("stub");
        let addr = 0x40_0000;
        ctx.map(
            addr,
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            mf.fd(),
            range.off,
        )
        .expect("map");
        let mut regs = ctx.get_regs().expect("regs");
        regs.rip = addr;
        assert_eq!(ctx.switch(&mut regs), Trap::Syscall);
        assert_eq!(regs.orig_rax, 39);
        regs.rax = 1234;
        assert_eq!(ctx.switch(&mut regs), Trap::Syscall);
        assert_eq!(regs.orig_rax, 60);
        assert_eq!(regs.rdi, 1234);
        // ud2 raises SIGILL: a fault trap.
        assert!(matches!(
            ctx.switch(&mut regs),
            Trap::Fault {
                signo: libc::SIGILL,
                ..
            }
        ));
    }

    #[test]
    fn stub_has_no_kernel_mappings() {
        let mut ctx = PtraceContext::new_process().expect("stub");
        let maps = std::fs::read_to_string(format!("/proc/{}/maps", ctx.pid())).expect("maps");
        let lines: Vec<&str> = maps.lines().filter(|l| !l.contains("[vsyscall]")).collect();
        assert_eq!(lines.len(), 1, "stub maps more than its page:\n{maps}");
        assert!(lines[0].starts_with("00010000-00011000"), "{maps}");
        ctx.kill();
    }

    #[test]
    fn cloned_member_shares_memory_and_is_attachable() {
        let mf = MemoryFile::new().expect("memory file");
        let range = mf.alloc(4096).expect("alloc");
        // mov eax, 39; syscall; ud2
        mf.write(range.off, &[0xb8, 39, 0, 0, 0, 0x0f, 0x05, 0x0f, 0x0b]);
        let mut ctx = PtraceContext::new_process().expect("stub");
        ctx.map(
            0x40_0000,
            4096,
            libc::PROT_READ | libc::PROT_EXEC,
            mf.fd(),
            range.off,
        )
        .expect("map");
        let pending = ctx.clone_member().expect("clone");
        let h = std::thread::spawn(move || {
            let mut m = PtraceContext::attach(pending).expect("attach");
            let mut regs = m.get_regs().expect("regs");
            regs.rip = 0x40_0000;
            regs.orig_rax = u64::MAX;
            let t = m.switch(&mut regs);
            (t, regs.orig_rax)
        });
        let (t, nr) = h.join().expect("thread");
        assert_eq!(t, Trap::Syscall);
        assert_eq!(nr, 39);
    }
}
