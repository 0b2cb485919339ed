//! System call handlers, one file per family, and the table that maps
//! numbers to them.

pub mod events;
pub mod fs;
pub mod mm;
pub mod names;
pub mod net;
pub mod process;
pub mod signal;
pub mod table;
pub mod time;

use super::fs::file::{IoctlCtx, OpenFile};
use super::run::Runner;
use super::task::lock;
use super::{Errno, KResult};
use std::sync::Arc;

pub use table::{Entry, Support, dispatch, entries};

/// Longest path accepted (PATH_MAX).
pub const PATH_MAX: usize = 4096;

impl Runner {
    /// Copies application memory.
    pub fn read_mem(&self, addr: u64, buf: &mut [u8]) -> KResult<()> {
        lock(&self.mm).read(addr, buf)
    }

    /// Writes application memory.
    pub fn write_mem(&self, addr: u64, buf: &[u8]) -> KResult<()> {
        lock(&self.mm).write(addr, buf)
    }

    /// Reads a plain-data value.
    pub fn read_val<T: Copy + Default>(&self, addr: u64) -> KResult<T> {
        lock(&self.mm).read_val(addr)
    }

    /// Writes a plain-data value.
    pub fn write_val<T: Copy>(&self, addr: u64, v: &T) -> KResult<()> {
        lock(&self.mm).write_val(addr, v)
    }

    /// Reads a NUL-terminated path (ENOENT if empty, ENAMETOOLONG if long).
    pub fn read_path(&self, addr: u64) -> KResult<Vec<u8>> {
        let p = lock(&self.mm).read_cstr(addr, PATH_MAX)?;
        if p.is_empty() {
            return Err(Errno::ENOENT);
        }
        Ok(p)
    }

    /// Reads a NULL-terminated array of string pointers (argv/envp).
    pub fn read_str_array(&self, addr: u64) -> KResult<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        if addr == 0 {
            return Ok(out);
        }
        let mm = lock(&self.mm);
        let mut total = 0usize;
        for i in 0.. {
            let p: u64 = mm.read_val(addr + i * 8)?;
            if p == 0 {
                break;
            }
            let s = mm.read_cstr(p, 128 * 1024)?;
            total += s.len() + 9;
            if total > 2 << 20 {
                return Err(Errno::E2BIG);
            }
            out.push(s);
        }
        Ok(out)
    }

    /// The task's file namespace.
    pub fn vfs(&self) -> Arc<crate::kernel::fs::vfs::Vfs> {
        lock(&self.t.fs()).vfs.clone()
    }

    /// The description behind `fd`.
    pub fn file(&self, fd: u64) -> KResult<Arc<OpenFile>> {
        lock(&self.t.files()).get(fd as i32)
    }

    /// The task's credentials for permission checks.
    pub fn creds(&self) -> super::fs::vfs::Creds {
        super::exec::creds_of(&self.t)
    }

    /// The directory a `*at` call is relative to.
    pub fn dir_path(&self, dirfd: u64, path: &[u8]) -> KResult<Vec<u8>> {
        if path.first() == Some(&b'/') || dirfd as i32 == libc::AT_FDCWD {
            return Ok(lock(&self.t.fs()).cwd.clone());
        }
        let f = self.file(dirfd)?;
        if f.path.is_empty() || !f.ops.stat()?.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        Ok(f.path.clone())
    }

    /// RLIMIT_NOFILE soft limit.
    pub fn nofile_limit(&self) -> u64 {
        lock(&self.t.tg.inner).rlimits[libc::RLIMIT_NOFILE as usize].0
    }
}

impl IoctlCtx for Runner {
    fn read_mem(&mut self, addr: u64, buf: &mut [u8]) -> KResult<()> {
        Runner::read_mem(self, addr, buf)
    }
    fn write_mem(&mut self, addr: u64, buf: &[u8]) -> KResult<()> {
        Runner::write_mem(self, addr, buf)
    }
}

/// How strace shows one argument.
#[derive(Clone, Copy)]
enum ArgFmt {
    Hex,
    Dec,
    Path,
}

/// Argument formats of the syscalls strace decodes beyond hex.
fn arg_formats(nr: u64) -> &'static [ArgFmt] {
    use ArgFmt::*;
    match nr {
        0 | 1 | 17 | 18 => &[Dec, Hex, Dec, Dec], // read, write, pread, pwrite
        3 | 5 | 32 | 72 | 81 => &[Dec, Dec, Dec], // close, fstat, dup, fcntl, fchdir
        2 | 4 | 6 | 21 | 59 | 80 | 83 | 84 | 87 | 89 => &[Path, Hex, Hex], // path-first calls
        82 | 86 | 88 => &[Path, Path],            // rename, link, symlink
        257 | 262 | 263 | 267 | 269 | 332 | 439 | 258 => &[Dec, Path, Hex, Hex, Hex],
        61 => &[Dec, Hex, Dec, Hex], // wait4
        62 | 200 => &[Dec, Dec],     // kill, tkill
        60 | 231 => &[Dec],          // exit, exit_group
        _ => &[],
    }
}

/// Prints one strace line: `[tid] name(args) = result`, with paths and
/// descriptors decoded for the common calls.
pub fn strace_log(r: &Runner, nr: u64, args: &[u64; 6], res: &KResult<u64>) {
    let name = table::name_of(nr);
    let res = match res {
        Ok(v) if *v > 0xffff => format!("{v:#x}"),
        Ok(v) => format!("{v}"),
        Err(e) => format!("-1 {e}"),
    };
    let fmts = arg_formats(nr);
    let a: Vec<String> = args
        .iter()
        .enumerate()
        .take(if fmts.is_empty() { 6 } else { fmts.len() })
        .map(
            |(i, &v)| match fmts.get(i).copied().unwrap_or(ArgFmt::Hex) {
                ArgFmt::Dec => format!("{}", v as i64 as i32),
                ArgFmt::Hex => format!("{v:#x}"),
                ArgFmt::Path => match lock(&r.mm).read_cstr(v, PATH_MAX) {
                    Ok(p) => format!("{:?}", String::from_utf8_lossy(&p)),
                    Err(_) => format!("{v:#x}"),
                },
            },
        )
        .collect();
    eprintln!("[{:>4}] {}({}) = {}", r.t.tid, name, a.join(", "), res);
}
