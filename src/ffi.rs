//! Thin wrappers over the few host calls the safe layers (kernel, loader)
//! make directly, so that `unsafe` stays in `platform/`, `mm/` and here.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// All-zero user registers (plain data).
pub fn zeroed_regs() -> crate::platform::Regs {
    // SAFETY: user_regs_struct is a plain C struct of integers; all-zero
    // is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Fills `buf` with random bytes from the host (getrandom(2)).
pub fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: writes at most `buf.len() - done` bytes into the live
        // slice.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        done += n as usize;
    }
    Ok(())
}

/// The host's sysinfo(2).
pub fn sysinfo() -> libc::sysinfo {
    // SAFETY: plain data; zero is valid and the call fills it in.
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: `si` is a valid out-pointer.
    unsafe { libc::sysinfo(&mut si) };
    si
}

/// A host clock (clock_gettime(2)) as (seconds, nanoseconds).
pub fn clock_gettime(id: libc::clockid_t) -> (i64, i64) {
    // SAFETY: plain data; zero is valid.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid out-pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    (ts.tv_sec, ts.tv_nsec)
}

/// A new non-blocking, close-on-exec eventfd.
pub fn eventfd() -> std::io::Result<OwnedFd> {
    // SAFETY: plain eventfd creation.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `v` to an eventfd's counter.
pub fn eventfd_write(fd: RawFd, v: u64) {
    // SAFETY: writes 8 bytes from a local.
    unsafe { libc::write(fd, (&v as *const u64).cast(), 8) };
}

/// Reads (and resets) an eventfd's counter; 0 if it was not signalled.
pub fn eventfd_read(fd: RawFd) -> u64 {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a local.
    let n = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
    if n == 8 { v } else { 0 }
}

/// The bytes of a plain-data value.
pub fn bytes_of<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: viewing a Copy value's bytes for the lifetime of the borrow.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
}

/// Waits for any of `fds` (poll(2) entries) or the timeout.
pub fn ppoll(fds: &mut [libc::pollfd], timeout: Option<std::time::Duration>) {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: d.subsec_nanos() as i64,
    });
    // SAFETY: `fds` is a live array of pollfd; `ts` is a valid timespec or
    // null.
    unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            ts.as_ref().map_or(std::ptr::null(), |t| t as *const _),
            std::ptr::null(),
        )
    };
}

/// Raises the soft RLIMIT_NOFILE to the hard limit (the kernel holds a
/// host descriptor per tmpfs file and per task).
pub fn raise_nofile_limit() {
    // SAFETY: get/setrlimit on our own process with a valid struct.
    unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}
