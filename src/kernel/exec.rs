//! execve(2): replace a process's program.

use super::fs::file::OpenFile;
use super::run::Runner;
use super::task::lock;
use super::{Errno, KResult};
use crate::mm::AddressSpace;
use crate::mm::elf::{self, ExecSource, StackArgs};
use crate::platform::ptrace::{FpState, PtraceContext, xstate_size};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

struct FileSource<'a>(&'a OpenFile);

impl ExecSource for FileSource<'_> {
    fn read_at(&self, buf: &mut [u8], off: u64) -> KResult<usize> {
        self.0.ops.read(buf, Some(off))
    }
}

const MAX_INTERP_DEPTH: usize = 4;

/// Opens an executable for exec: it must be a regular file with execute
/// permission.
fn open_exec(r: &Runner, path: &[u8]) -> KResult<(Arc<OpenFile>, Vec<u8>)> {
    let cwd = lock(&r.t.fs()).cwd.clone();
    let creds = r.creds();
    let resolved = r.vfs().resolve(&cwd, path, true)?;
    let st = r.vfs().stat(&cwd, path, true)?;
    if st.is_dir() {
        return Err(Errno::EACCES);
    }
    if st.file_type() != libc::S_IFREG {
        return Err(Errno::EACCES);
    }
    r.vfs().access(&cwd, path, libc::X_OK, true, &creds)?;
    let f = r.vfs().open(&cwd, path, libc::O_RDONLY, 0, &creds)?;
    Ok((f, resolved))
}

/// Result of preparing an image, before the point of no return.
struct Prepared {
    ctx: PtraceContext,
    mm: AddressSpace,
    entry: u64,
    sp: u64,
    exe: Vec<u8>,
    comm: Vec<u8>,
}

fn prepare(
    r: &Runner,
    path: &[u8],
    mut argv: Vec<Vec<u8>>,
    envp: Vec<Vec<u8>>,
) -> KResult<Prepared> {
    let mut path = path.to_vec();
    let execfn = path.clone();
    let (mut file, mut resolved) = open_exec(r, &path)?;
    for depth in 0..=MAX_INTERP_DEPTH {
        let mut head = [0u8; 256];
        let n = file.ops.read(&mut head, Some(0))?;
        if n >= 2 && &head[..2] == b"#!" {
            if depth == MAX_INTERP_DEPTH {
                return Err(Errno::ELOOP);
            }
            let line_end = head[..n].iter().position(|&b| b == b'\n').unwrap_or(n);
            let line = &head[2..line_end];
            let line: Vec<u8> = line
                .iter()
                .copied()
                .skip_while(|b| *b == b' ' || *b == b'\t')
                .collect();
            let mut parts = line.splitn(2, |b| *b == b' ' || *b == b'\t');
            let interp = parts.next().unwrap_or_default().to_vec();
            if interp.is_empty() {
                return Err(Errno::ENOEXEC);
            }
            let arg = parts
                .next()
                .map(|a| a.trim_ascii().to_vec())
                .filter(|a| !a.is_empty());
            let mut nargv = vec![interp.clone()];
            if let Some(a) = arg {
                nargv.push(a);
            }
            nargv.push(path.clone());
            nargv.extend(argv.into_iter().skip(1));
            argv = nargv;
            path = interp;
            (file, resolved) = open_exec(r, &path)?;
            continue;
        }
        break;
    }
    let src = FileSource(&file);
    let main = elf::parse(&src)?;
    let interp = match &main.interp {
        Some(ip) => {
            let (f, _) = open_exec(r, ip).map_err(|e| {
                if e == Errno::EACCES {
                    Errno::EACCES
                } else {
                    Errno::ENOENT
                }
            })?;
            let parsed = elf::parse(&FileSource(&f))?;
            if parsed.interp.is_some() {
                return Err(Errno::ELIBBAD);
            }
            Some((f, parsed, ip.clone()))
        }
        None => None,
    };
    let mut ctx = PtraceContext::new_process().map_err(Errno)?;
    let mut mm = AddressSpace::new(r.k.mf.clone());
    let ino = file.ops.stat().map(|s| s.st_ino).unwrap_or(0);
    let name = String::from_utf8_lossy(&resolved).into_owned();
    let loaded = elf::load(&mut mm, &mut ctx, &src, &main, true, &name, ino)?;
    let iloaded = match &interp {
        Some((f, parsed, ip)) => {
            let ino = f.ops.stat().map(|s| s.st_ino).unwrap_or(0);
            Some(elf::load(
                &mut mm,
                &mut ctx,
                &FileSource(f),
                parsed,
                false,
                &String::from_utf8_lossy(ip),
                ino,
            )?)
        }
        None => None,
    };
    mm.brk_start = crate::mm::page_up(loaded.end);
    mm.brk = mm.brk_start;
    let cred = lock(&r.t.tg.inner).cred;
    let sp = elf::build_stack(
        &mut mm,
        &mut ctx,
        &StackArgs {
            argv: &argv,
            envp: &envp,
            execfn: &execfn,
            main: loaded,
            interp: iloaded,
            creds: (cred.uid.0, cred.uid.1, cred.gid.0, cred.gid.1),
            min_sigstksz: (xstate_size() + 1024) as u64,
        },
    )?;
    ctx.set_fp(&FpState::initial()).map_err(Errno)?;
    let entry = iloaded.map(|i| i.entry).unwrap_or(loaded.entry);
    // Linux names the task after the path as given (bprm->filename):
    // "exe" for /proc/self/exe, which busybox relies on to rename itself.
    let base = execfn.rsplit(|b| *b == b'/').next().unwrap_or(&execfn);
    let comm = base[..base.len().min(15)].to_vec();
    Ok(Prepared {
        ctx,
        mm,
        entry,
        sp,
        exe: resolved,
        comm,
    })
}

/// execve: on success the task runs the new program (registers replaced).
pub fn execve(r: &mut Runner, path: &[u8], argv: Vec<Vec<u8>>, envp: Vec<Vec<u8>>) -> KResult<()> {
    let p = prepare(r, path, argv, envp)?;
    // Point of no return: other threads die.
    kill_other_threads(r);
    // POSIX timers do not survive exec (interval timers do).
    r.k.events.exec(&r.t.tg);
    let old_regs = r.regs;
    r.ctx = p.ctx;
    lock(&r.t.sig).host_pid = r.ctx.pid();
    let mm = Arc::new(Mutex::new(p.mm));
    *lock(&r.t.mm) = mm.clone();
    r.mm = mm;
    // Files: unshare, close close-on-exec descriptors.
    let files = r.t.files();
    let mut table = lock(&files).clone();
    let closed = table.close_on_exec();
    *lock(&r.t.files) = Arc::new(Mutex::new(table));
    drop(closed);
    // Signal handlers: unshare and reset.
    let handlers = r.t.tg.handlers();
    let mut h = lock(&handlers).clone();
    h.reset_for_exec();
    *lock(&r.t.tg.handlers) = Arc::new(Mutex::new(h));
    {
        let mut s = lock(&r.t.sig);
        s.altstack = Default::default();
        s.altstack.ss_flags = super::signal::SS_DISABLE;
    }
    r.t.clear_child_tid.store(0, Ordering::Relaxed);
    r.t.robust_list.store(0, Ordering::Relaxed);
    *lock(&r.t.comm) = p.comm;
    lock(&r.t.tg.inner).exe = p.exe;
    // Start from the fresh stub's own registers (valid segment selectors),
    // cleared.
    let base = r.ctx.get_regs().unwrap_or(old_regs);
    // SAFETY: user_regs_struct is plain data; all-zero is a valid value.
    let mut regs = crate::ffi::zeroed_regs();
    regs.rip = p.entry;
    regs.rsp = p.sp;
    regs.cs = base.cs;
    regs.ss = base.ss;
    regs.ds = base.ds;
    regs.es = base.es;
    regs.eflags = 0x202;
    regs.orig_rax = u64::MAX;
    r.regs = regs;
    r.regs_replaced = true;
    if let Some(v) = r.vfork_parent.take() {
        v.complete();
    }
    Ok(())
}

fn kill_other_threads(r: &Runner) {
    let others: Vec<_> = lock(&r.t.tg.inner)
        .tasks
        .iter()
        .filter(|t| !Arc::ptr_eq(t, &r.t))
        .cloned()
        .collect();
    if others.is_empty() {
        return;
    }
    for t in &others {
        t.killed.store(true, Ordering::Relaxed);
        t.interrupt();
    }
    // Wait for them to leave (they exit promptly once interrupted).
    for _ in 0..10_000 {
        if lock(&r.t.tg.inner).tasks.len() <= 1 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Resolves a task's credentials for the VFS.
pub fn creds_of(t: &super::task::Task) -> super::fs::vfs::Creds {
    let c = lock(&t.tg.inner).cred;
    super::fs::vfs::Creds {
        uid: c.uid.1,
        gid: c.gid.1,
        groups: Vec::new(),
    }
}
