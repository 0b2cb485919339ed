//! The syscall table: one entry per x86_64 syscall number with its name,
//! handler and support status. It is data: the compatibility page is
//! generated from it (`rvisor debug --syscalls`).

use super::names::SYSCALL_NAMES;
use super::{fs, mm, net, process, signal, time};
use crate::kernel::run::Runner;
use crate::kernel::{Errno, KResult};
use std::sync::LazyLock;

/// A syscall handler: raw arguments in, return value or errno out.
pub type Handler = fn(&mut Runner, [u64; 6]) -> KResult<u64>;

/// How completely a syscall is implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// Implemented as Linux documents it.
    Full,
    /// Implemented with the limits given in the note.
    Partial,
    /// Returns ENOSYS (logged once).
    Unimplemented,
}

/// One table row.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Syscall number.
    pub nr: u32,
    /// Name.
    pub name: &'static str,
    /// Handler, if implemented.
    pub handler: Option<Handler>,
    /// Support status.
    pub support: Support,
    /// What is missing, for partial support.
    pub note: &'static str,
}

use Support::*;

/// One implemented syscall: number, handler, support, note.
pub type Row = (u32, Handler, Support, &'static str);

const IMPLEMENTED: &[Row] = &[
    (0, fs::read, Full, ""),
    (1, fs::write, Full, ""),
    (2, fs::open, Full, ""),
    (3, fs::close, Full, ""),
    (4, fs::stat, Full, ""),
    (5, fs::fstat, Full, ""),
    (6, fs::lstat, Full, ""),
    (7, fs::poll, Full, ""),
    (8, fs::lseek, Full, ""),
    (
        9,
        mm::mmap,
        Partial,
        "private file mappings are copied at map time",
    ),
    (10, mm::mprotect, Full, ""),
    (11, mm::munmap, Full, ""),
    (12, mm::brk, Full, ""),
    (13, signal::rt_sigaction, Full, ""),
    (14, signal::rt_sigprocmask, Full, ""),
    (15, signal::rt_sigreturn, Full, ""),
    (
        16,
        fs::ioctl,
        Partial,
        "terminal ioctls on host terminals, FIONREAD, FIOCLEX",
    ),
    (17, fs::pread64, Full, ""),
    (18, fs::pwrite64, Full, ""),
    (19, fs::readv, Full, ""),
    (20, fs::writev, Full, ""),
    (21, fs::access, Full, ""),
    (22, fs::pipe, Full, ""),
    (23, fs::select, Full, ""),
    (24, process::sched_yield, Full, ""),
    (25, mm::mremap, Full, ""),
    (26, mm::msync, Full, ""),
    (
        27,
        mm::mincore,
        Partial,
        "reports every mapped page resident",
    ),
    (
        28,
        mm::madvise,
        Partial,
        "MADV_DONTNEED/FREE zero private pages; other advice accepted",
    ),
    (32, fs::dup, Full, ""),
    (33, fs::dup2, Full, ""),
    (34, signal::pause, Full, ""),
    (35, time::nanosleep, Full, ""),
    (39, process::getpid, Full, ""),
    (40, fs::sendfile, Full, ""),
    (
        41,
        net::socket,
        Partial,
        "no address family yet: EAFNOSUPPORT",
    ),
    (42, net::on_fd, Partial, "ENOTSOCK: no sockets yet"),
    (43, net::on_fd, Partial, "ENOTSOCK: no sockets yet"),
    (44, net::on_fd, Partial, "ENOTSOCK: no sockets yet"),
    (45, net::on_fd, Partial, "ENOTSOCK: no sockets yet"),
    (46, net::on_fd, Partial, "ENOTSOCK: no sockets yet"),
    (47, net::on_fd, Partial, "ENOTSOCK: no sockets yet"),
    (48, net::on_fd, Partial, "ENOTSOCK: no sockets yet"),
    (49, net::on_fd, Partial, "ENOTSOCK: no sockets yet"),
    (50, net::on_fd, Partial, "ENOTSOCK: no sockets yet"),
    (51, net::on_fd, Partial, "ENOTSOCK: no sockets yet"),
    (52, net::on_fd, Partial, "ENOTSOCK: no sockets yet"),
    (54, net::on_fd, Partial, "ENOTSOCK: no sockets yet"),
    (55, net::on_fd, Partial, "ENOTSOCK: no sockets yet"),
    (288, net::on_fd, Partial, "ENOTSOCK: no sockets yet"),
    (56, process::clone, Partial, "no CLONE_NEWNS/NEWPID etc."),
    (57, process::fork, Full, ""),
    (58, process::vfork, Full, ""),
    (59, process::execve, Full, ""),
    (60, process::exit, Full, ""),
    (61, process::wait4, Full, ""),
    (62, signal::kill, Full, ""),
    (63, process::uname, Full, ""),
    (
        72,
        fs::fcntl,
        Partial,
        "F_ADD_SEALS/F_GET_SEALS give EINVAL; no EDEADLK detection; F_SETPIPE_SZ fixed size",
    ),
    (73, fs::flock, Full, ""),
    (74, fs::fsync, Full, ""),
    (75, fs::fsync, Full, ""),
    (76, fs::truncate, Full, ""),
    (77, fs::ftruncate, Full, ""),
    (78, fs::getdents, Full, ""),
    (79, fs::getcwd, Full, ""),
    (80, fs::chdir, Full, ""),
    (81, fs::fchdir, Full, ""),
    (82, fs::rename, Full, ""),
    (83, fs::mkdir, Full, ""),
    (84, fs::rmdir, Full, ""),
    (85, fs::creat, Full, ""),
    (86, fs::link, Full, ""),
    (87, fs::unlink, Full, ""),
    (88, fs::symlink, Full, ""),
    (89, fs::readlink, Full, ""),
    (90, fs::chmod, Full, ""),
    (91, fs::fchmod, Full, ""),
    (92, fs::chown, Full, ""),
    (93, fs::fchown, Full, ""),
    (94, fs::lchown, Full, ""),
    (95, fs::umask, Full, ""),
    (96, time::gettimeofday, Full, ""),
    (97, process::getrlimit, Full, ""),
    (98, time::getrusage, Partial, "CPU times only"),
    (99, process::sysinfo, Full, ""),
    (100, time::times, Full, ""),
    (102, process::getuid, Full, ""),
    (104, process::getgid, Full, ""),
    (105, process::setuid, Partial, "root only"),
    (106, process::setgid, Partial, "root only"),
    (107, process::geteuid, Full, ""),
    (108, process::getegid, Full, ""),
    (109, process::setpgid, Full, ""),
    (110, process::getppid, Full, ""),
    (111, process::getpgrp, Full, ""),
    (112, process::setsid, Full, ""),
    (113, process::setreuid, Partial, "root only"),
    (114, process::setregid, Partial, "root only"),
    (115, process::getgroups, Full, ""),
    (116, process::setgroups, Partial, "accepted"),
    (117, process::setresuid, Partial, "root only"),
    (118, process::getresuid, Full, ""),
    (119, process::setresgid, Partial, "root only"),
    (120, process::getresgid, Full, ""),
    (121, process::getpgid, Full, ""),
    (124, process::getsid, Full, ""),
    (
        125,
        process::capget,
        Partial,
        "reports full capabilities for root",
    ),
    (127, signal::rt_sigpending, Full, ""),
    (128, signal::rt_sigtimedwait, Full, ""),
    (129, signal::rt_sigqueueinfo, Full, ""),
    (130, signal::rt_sigsuspend, Full, ""),
    (131, signal::sigaltstack, Full, ""),
    (
        133,
        fs::mknod,
        Partial,
        "regular files, FIFOs and sockets; no device nodes",
    ),
    (
        259,
        fs::mknodat,
        Partial,
        "regular files, FIFOs and sockets; no device nodes",
    ),
    (
        188,
        fs::xattr,
        Partial,
        "EOPNOTSUPP: no extended attributes",
    ),
    (
        189,
        fs::xattr,
        Partial,
        "EOPNOTSUPP: no extended attributes",
    ),
    (
        190,
        fs::xattr,
        Partial,
        "EOPNOTSUPP: no extended attributes",
    ),
    (
        191,
        fs::xattr,
        Partial,
        "EOPNOTSUPP: no extended attributes",
    ),
    (
        192,
        fs::xattr,
        Partial,
        "EOPNOTSUPP: no extended attributes",
    ),
    (
        193,
        fs::xattr,
        Partial,
        "EOPNOTSUPP: no extended attributes",
    ),
    (
        194,
        fs::xattr,
        Partial,
        "EOPNOTSUPP: no extended attributes",
    ),
    (
        195,
        fs::xattr,
        Partial,
        "EOPNOTSUPP: no extended attributes",
    ),
    (
        196,
        fs::xattr,
        Partial,
        "EOPNOTSUPP: no extended attributes",
    ),
    (
        197,
        fs::xattr,
        Partial,
        "EOPNOTSUPP: no extended attributes",
    ),
    (
        198,
        fs::xattr,
        Partial,
        "EOPNOTSUPP: no extended attributes",
    ),
    (
        199,
        fs::xattr,
        Partial,
        "EOPNOTSUPP: no extended attributes",
    ),
    (137, fs::statfs, Full, ""),
    (138, fs::fstatfs, Full, ""),
    (140, process::getpriority, Full, ""),
    (141, process::setpriority, Partial, "accepted"),
    (149, mm::mlock, Partial, "accepted"),
    (150, mm::mlock, Partial, "accepted"),
    (151, mm::mlock, Partial, "accepted"),
    (152, mm::mlock, Partial, "accepted"),
    (
        157,
        process::prctl,
        Partial,
        "PR_SET/GET_NAME, PDEATHSIG, DUMPABLE, NO_NEW_PRIVS, CHILD_SUBREAPER",
    ),
    (158, process::arch_prctl, Full, ""),
    (160, process::setrlimit, Full, ""),
    (162, fs::sync, Full, ""),
    (186, process::gettid, Full, ""),
    (200, signal::tkill, Full, ""),
    (201, time::time, Full, ""),
    (202, process::futex, Full, ""),
    (203, process::sched_setaffinity, Partial, "accepted"),
    (204, process::sched_getaffinity, Full, ""),
    (217, fs::getdents64, Full, ""),
    (218, process::set_tid_address, Full, ""),
    (221, fs::fadvise64, Full, ""),
    (228, time::clock_gettime, Full, ""),
    (229, time::clock_getres, Full, ""),
    (230, time::clock_nanosleep, Full, ""),
    (231, process::exit_group, Full, ""),
    (234, signal::tgkill, Full, ""),
    (235, fs::utimes, Full, ""),
    (247, process::waitid, Full, ""),
    (257, fs::openat, Full, ""),
    (258, fs::mkdirat, Full, ""),
    (260, fs::fchownat, Full, ""),
    (261, fs::futimesat, Full, ""),
    (262, fs::newfstatat, Full, ""),
    (263, fs::unlinkat, Full, ""),
    (264, fs::renameat, Full, ""),
    (265, fs::linkat, Full, ""),
    (266, fs::symlinkat, Full, ""),
    (267, fs::readlinkat, Full, ""),
    (268, fs::fchmodat, Full, ""),
    (269, fs::faccessat, Full, ""),
    (270, fs::pselect6, Full, ""),
    (271, fs::ppoll, Full, ""),
    (273, process::set_robust_list, Full, ""),
    (274, process::get_robust_list, Full, ""),
    (280, fs::utimensat, Full, ""),
    (
        285,
        fs::fallocate,
        Partial,
        "COLLAPSE_RANGE/INSERT_RANGE/UNSHARE_RANGE give EOPNOTSUPP",
    ),
    (292, fs::dup3, Full, ""),
    (293, fs::pipe2, Full, ""),
    (295, fs::preadv, Full, ""),
    (296, fs::pwritev, Full, ""),
    (302, process::prlimit64, Full, ""),
    (316, fs::renameat2, Full, ""),
    (318, process::getrandom, Full, ""),
    (332, fs::statx, Full, ""),
    (
        334,
        process::rseq,
        Unimplemented,
        "glibc falls back without it",
    ),
    (
        435,
        process::clone3,
        Partial,
        "returns ENOSYS so libc falls back to clone",
    ),
    (436, fs::close_range, Full, ""),
    (439, fs::faccessat2, Full, ""),
    // ---- file syscalls (issue 3) ----
    (187, fs::readahead, Full, ""),
    (275, fs::splice, Full, ""),
    (276, fs::tee, Full, ""),
    (277, fs::sync_file_range, Full, ""),
    (278, fs::vmsplice, Partial, "copies; SPLICE_F_GIFT ignored"),
    (306, fs::syncfs, Full, ""),
    (
        319,
        fs::memfd_create,
        Partial,
        "no sealing (F_ADD_SEALS gives EINVAL), no MFD_HUGETLB",
    ),
    (326, fs::copy_file_range, Full, ""),
    (
        437,
        fs::openat2,
        Partial,
        "RESOLVE_CACHED lookups are never refused except with O_CREAT/O_TRUNC/O_TMPFILE",
    ),
    // ---- end of file syscalls (issue 3) ----
];

static TABLE: LazyLock<Vec<Entry>> = LazyLock::new(|| {
    let max = SYSCALL_NAMES.iter().map(|(n, _)| *n).max().unwrap_or(0) as usize;
    let mut t: Vec<Entry> = (0..=max as u32)
        .map(|nr| Entry {
            nr,
            name: "",
            handler: None,
            support: Unimplemented,
            note: "",
        })
        .collect();
    for (nr, name) in SYSCALL_NAMES {
        t[*nr as usize].name = name;
    }
    for (nr, h, s, note) in IMPLEMENTED.iter().chain(super::events::ROWS) {
        let e = &mut t[*nr as usize];
        e.handler = Some(*h);
        e.support = *s;
        e.note = note;
    }
    t
});

/// Every row of the table.
pub fn entries() -> &'static [Entry] {
    &TABLE
}

/// The name of syscall `nr`.
pub fn name_of(nr: u64) -> &'static str {
    TABLE
        .get(nr as usize)
        .map(|e| e.name)
        .filter(|n| !n.is_empty())
        .unwrap_or("unknown")
}

/// Runs the handler of syscall `nr`; unknown and unimplemented syscalls
/// return ENOSYS and are logged once by name.
pub fn dispatch(r: &mut Runner, nr: u64, args: [u64; 6]) -> KResult<u64> {
    match TABLE.get(nr as usize) {
        Some(Entry {
            handler: Some(h), ..
        }) => h(r, args),
        Some(e) => {
            r.k.log_enosys(nr, if e.name.is_empty() { "unknown" } else { e.name });
            Err(Errno::ENOSYS)
        }
        None => {
            r.k.log_enosys(nr, "unknown");
            Err(Errno::ENOSYS)
        }
    }
}
