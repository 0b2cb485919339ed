//! The stub: a few instructions that live at a fixed address in every stub
//! process and in the kernel process itself, so that a freshly forked stub
//! can drop every other mapping it inherited.

use std::sync::OnceLock;

/// Where the stub page lives, in the kernel process and in every stub.
pub const STUB_ADDR: u64 = 0x10000;
/// Size of the stub region.
pub const STUB_SIZE: u64 = 0x1000;
/// End of the stub region.
pub const STUB_END: u64 = STUB_ADDR + STUB_SIZE;
/// Highest user address on x86_64 with 4-level paging.
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

std::arch::global_asm!(
    ".pushsection .text.rvisor_stub,\"ax\",@progbits",
    ".p2align 12",
    ".globl rvisor_stub_start",
    "rvisor_stub_start:",
    // rseq(r12, 32 or r13, RSEQ_FLAG_UNREGISTER, RSEQ_SIG): the forking
    // thread's rseq registration is inherited, and the kernel would fault
    // writing to it once its memory is gone.
    "mov eax, 334",
    "mov rdi, r12",
    "mov esi, 32",
    "mov edx, 1",
    "mov r10d, 0x53053053",
    "syscall",
    "mov eax, 334",
    "mov rdi, r12",
    "mov rsi, r13",
    "mov edx, 1",
    "mov r10d, 0x53053053",
    "syscall",
    // prctl(PR_SET_PDEATHSIG, SIGKILL): die with the kernel thread that forked us.
    "mov eax, 157",
    "mov edi, 1",
    "mov esi, 9",
    "syscall",
    // ptrace(PTRACE_TRACEME)
    "mov eax, 101",
    "xor edi, edi",
    "xor esi, esi",
    "xor edx, edx",
    "xor r10d, r10d",
    "syscall",
    // setsid(): no terminal signals reach the stub.
    "mov eax, 112",
    "syscall",
    // rt_sigprocmask(SIG_SETMASK, &empty, NULL, 8)
    "mov eax, 14",
    "mov edi, 2",
    "lea rsi, [rip + 3f]",
    "xor edx, edx",
    "mov r10d, 8",
    "syscall",
    // rt_sigaction(SIGCHLD, {SIG_IGN}, NULL, 8): exited members are reaped by the host.
    "mov eax, 13",
    "mov edi, 17",
    "lea rsi, [rip + 4f]",
    "xor edx, edx",
    "mov r10d, 8",
    "syscall",
    // munmap(STUB_END, TASK_SIZE - STUB_END)
    "mov eax, 11",
    "mov rdi, {stub_end}",
    "movabs rsi, {upper_len}",
    "syscall",
    // munmap(0, STUB_ADDR)
    "mov eax, 11",
    "xor edi, edi",
    "mov esi, {stub_addr}",
    "syscall",
    // kill(getpid(), SIGSTOP): the tracer takes over from here.
    "mov eax, 39",
    "syscall",
    "mov edi, eax",
    "mov esi, 19",
    "mov eax, 62",
    "syscall",
    "int3",
    ".globl rvisor_stub_syscall",
    "rvisor_stub_syscall:",
    "syscall",
    "int3",
    ".globl rvisor_stub_clone",
    "rvisor_stub_clone:",
    "syscall",
    "test rax, rax",
    "jz 2f",
    "int3",
    "2:",
    "mov eax, 34",
    "syscall",
    "jmp 2b",
    ".p2align 3",
    "3:",
    ".quad 0",
    "4:",
    ".quad 1",
    ".quad 0",
    ".quad 0",
    ".quad 0",
    ".globl rvisor_stub_end",
    "rvisor_stub_end:",
    ".popsection",
    // extern "C" fn rvisor_fork_stub(flags: u64, rseq: u64, rseq_len: u64) -> i64
    ".pushsection .text.rvisor_fork,\"ax\",@progbits",
    ".globl rvisor_fork_stub",
    "rvisor_fork_stub:",
    "push r12",
    "push r13",
    "mov r12, rsi",
    "mov r13, rdx",
    "mov eax, 56",
    "xor esi, esi",
    "xor edx, edx",
    "xor r10d, r10d",
    "xor r8d, r8d",
    "syscall",
    "test rax, rax",
    "jnz 5f",
    "mov eax, {stub_addr}",
    "jmp rax",
    "5:",
    "pop r13",
    "pop r12",
    "ret",
    ".popsection",
    stub_end = const STUB_END,
    stub_addr = const STUB_ADDR,
    upper_len = const TASK_SIZE - STUB_END,
);

unsafe extern "C" {
    static rvisor_stub_start: u8;
    static rvisor_stub_end: u8;
    static rvisor_stub_syscall: u8;
    static rvisor_stub_clone: u8;
    fn rvisor_fork_stub(flags: u64, rseq: u64, rseq_len: u64) -> i64;
}

/// Addresses of the stub's entry points, in every stub process.
#[derive(Debug, Clone, Copy)]
pub struct StubLayout {
    /// `syscall; int3`: injected system calls.
    pub syscall_site: u64,
    /// `syscall; test; jz loop; int3`: injected clone of a new member.
    pub clone_site: u64,
}

fn offset_of(sym: *const u8) -> u64 {
    let start = &raw const rvisor_stub_start;
    sym as u64 - start as u64
}

/// Maps the stub page into the kernel process (once) and returns its layout.
pub fn install() -> Result<StubLayout, std::io::Error> {
    static LAYOUT: OnceLock<Result<StubLayout, i32>> = OnceLock::new();
    let r = LAYOUT.get_or_init(|| {
        let start = &raw const rvisor_stub_start;
        let end = &raw const rvisor_stub_end;
        let len = end as usize - start as usize;
        assert!(len as u64 <= STUB_SIZE, "stub code larger than its page");
        // SAFETY: mapping a fresh anonymous page at a fixed address that we
        // require to be free (MAP_FIXED_NOREPLACE fails otherwise); nothing
        // in the process refers to it yet.
        let p = unsafe {
            libc::mmap(
                STUB_ADDR as *mut libc::c_void,
                STUB_SIZE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED || p as u64 != STUB_ADDR {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EEXIST));
        }
        // SAFETY: `start..end` is our own code in the text section, readable;
        // the destination is the page mapped above, of at least `len` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(start, p as *mut u8, len);
            if libc::mprotect(p, STUB_SIZE as usize, libc::PROT_READ | libc::PROT_EXEC) != 0 {
                return Err(std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO));
            }
        }
        Ok(StubLayout {
            syscall_site: STUB_ADDR + offset_of(&raw const rvisor_stub_syscall),
            clone_site: STUB_ADDR + offset_of(&raw const rvisor_stub_clone),
        })
    });
    r.map_err(std::io::Error::from_raw_os_error)
}

/// Forks the calling process into a new stub. The child shares the fd
/// table (`CLONE_FILES`, so memory-file descriptors are valid in it), jumps
/// to the stub page, traces itself to the calling thread, drops every other
/// mapping and stops with SIGSTOP. Returns the child's host pid.
pub fn fork_stub() -> Result<i32, std::io::Error> {
    install()?;
    let flags = (libc::CLONE_FILES | libc::SIGCHLD) as u64;
    let (rseq, rseq_len) = rseq_area();
    // SAFETY: the child executes only the assembly stub (no Rust code, no
    // locks, no allocation), which is mapped at STUB_ADDR by `install`.
    let r = unsafe { rvisor_fork_stub(flags, rseq, rseq_len) };
    if r < 0 {
        return Err(std::io::Error::from_raw_os_error(-r as i32));
    }
    Ok(r as i32)
}

/// The calling thread's rseq area as glibc registered it (address and
/// glibc's advertised size), or zeros when glibc does not use rseq.
fn rseq_area() -> (u64, u64) {
    static SYMS: OnceLock<Option<(i64, u32)>> = OnceLock::new();
    let syms = SYMS.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT and NUL-terminated names; the
        // symbols, when present, are glibc's exported `const` variables of
        // these types.
        unsafe {
            let off = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr());
            let size = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr());
            if off.is_null() || size.is_null() {
                return None;
            }
            Some((*(off as *const i64), *(size as *const u32)))
        }
    });
    let Some((off, size)) = *syms else {
        return (0, 0);
    };
    if size == 0 {
        return (0, 0);
    }
    let fs_base: u64;
    // SAFETY: reading the thread pointer (fs:0 holds its own address on
    // x86_64 glibc), no memory is written.
    unsafe {
        std::arch::asm!("mov {}, fs:0", out(reg) fs_base, options(nostack, readonly, preserves_flags))
    };
    ((fs_base as i64 + off) as u64, size as u64)
}
