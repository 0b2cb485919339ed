//! The sandbox process's own seccomp filter.
//!
//! `rvisor boot` installs it on itself before the first application
//! instruction runs. It lists, as data, every host system call the kernel,
//! the platform's stubs and the control server make; anything else kills
//! the sandbox. Application system calls never reach it: `PTRACE_SYSEMU`
//! intercepts them before seccomp runs.

use libseccomp::{ScmpAction, ScmpArch, ScmpFilterContext, ScmpSyscall};

/// Host system calls the sandbox needs, grouped by who makes them.
pub const ALLOWED: &[&str] = &[
    // Memory: the memory file, heap, thread stacks, stub address spaces
    // (injected mmap/munmap/mprotect run under this filter too).
    "mmap",
    "munmap",
    "mprotect",
    "mremap",
    "madvise",
    "brk",
    "memfd_create",
    "fallocate",
    "ftruncate",
    // Threads, waiting and time.
    "clone",
    "clone3",
    "futex",
    "set_robust_list",
    "rseq",
    "sched_yield",
    "sched_getaffinity",
    "sched_setaffinity",
    "nanosleep",
    "clock_nanosleep",
    "clock_gettime",
    "gettimeofday",
    "ppoll",
    "poll",
    "eventfd2",
    "getrandom",
    "exit",
    "exit_group",
    "restart_syscall",
    // Platform: ptrace and stub processes (fork, kill, wait; the stub's
    // start-up calls).
    "ptrace",
    "wait4",
    "waitid",
    "kill",
    "tgkill",
    "tkill",
    "getpid",
    "gettid",
    "getppid",
    "prctl",
    "setsid",
    "pause",
    "rt_sigaction",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
    "rt_sigtimedwait",
    "readlink",
    "unlink",
    "rmdir",
    // Files: the host root through openat2, host stdio, the memory file.
    "openat",
    "openat2",
    "open",
    "close",
    "close_range",
    "read",
    "write",
    "readv",
    "writev",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "lseek",
    "fstat",
    "newfstatat",
    "statx",
    "fstatfs",
    "statfs",
    "readlinkat",
    "getdents64",
    "fcntl",
    "ioctl",
    "dup",
    "dup3",
    "fsync",
    "fdatasync",
    "sendfile",
    "copy_file_range",
    "splice",
    "pipe2",
    "faccessat2",
    "flock",
    // Direct root mode writes to the host directory.
    "mkdirat",
    "unlinkat",
    "renameat2",
    "linkat",
    "symlinkat",
    "fchmodat",
    "fchownat",
    "utimensat",
    "fchmod",
    "fchown",
    "mknodat",
    // Control socket.
    "socket",
    "bind",
    "listen",
    "accept4",
    "connect",
    "recvmsg",
    "sendmsg",
    "recvfrom",
    "sendto",
    "getsockopt",
    "setsockopt",
    "shutdown",
    "getsockname",
    "getpeername",
    "socketpair",
    // Identity and limits.
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "getrlimit",
    "prlimit64",
    "setrlimit",
    "sysinfo",
    "uname",
    "getcwd",
    "umask",
];

/// Installs the filter on the calling process (all its threads, and
/// every process it forks afterwards).
pub fn install() -> Result<(), String> {
    let mut f =
        ScmpFilterContext::new(ScmpAction::KillProcess).map_err(|e| format!("seccomp: {e}"))?;
    f.add_arch(ScmpArch::Native)
        .map_err(|e| format!("seccomp: {e}"))?;
    for name in ALLOWED {
        let sc = ScmpSyscall::from_name(name)
            .map_err(|e| format!("seccomp: unknown syscall {name}: {e}"))?;
        f.add_rule(ScmpAction::Allow, sc)
            .map_err(|e| format!("seccomp: {name}: {e}"))?;
    }
    f.set_ctl_tsync(true).map_err(|e| format!("seccomp: {e}"))?;
    f.load().map_err(|e| format!("seccomp: load: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a forked child: the filter allows the listed calls and kills the
    /// process on anything else.
    #[test]
    fn filter_kills_on_unlisted_syscall() {
        // SAFETY: the child only makes raw syscalls and exits; it does not
        // touch locks held by other test threads.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = match install() {
                Ok(()) => {
                    // getpid is allowed; personality is not.
                    // SAFETY: raw syscalls without memory arguments.
                    unsafe {
                        libc::syscall(libc::SYS_getpid);
                        libc::syscall(libc::SYS_personality, 0xffff_ffffu64);
                    }
                    0
                }
                Err(_) => 3,
            };
            // SAFETY: terminate the child without running test-harness code.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(
            libc::WIFSIGNALED(status),
            "child was not killed: status {status:#x}"
        );
        assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
    }
}
