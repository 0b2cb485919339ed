//! Processes and threads: identity, clone/fork/exec/exit/wait, futexes,
#![allow(missing_docs)] // handlers are named after the syscalls they serve
//! limits and miscellaneous process state.

use crate::kernel::futex::{FutexWaiter, key_of};
use crate::kernel::run::{self, ContextSource, Exit, Runner, VforkDone};
use crate::kernel::signal::{self, SigHandlers};
use crate::kernel::task::{Task, TaskSignals, TgInner, TgState, ThreadGroup, lock};
use crate::kernel::{Errno, KResult, exec};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type A = [u64; 6];

pub fn getpid(r: &mut Runner, _: A) -> KResult<u64> {
    Ok(r.t.tg.tgid as u64)
}
pub fn gettid(r: &mut Runner, _: A) -> KResult<u64> {
    Ok(r.t.tid as u64)
}
pub fn getppid(r: &mut Runner, _: A) -> KResult<u64> {
    Ok(r.t.tg.ppid() as u64)
}
fn cred(r: &Runner) -> crate::kernel::task::Cred {
    lock(&r.t.tg.inner).cred
}
pub fn getuid(r: &mut Runner, _: A) -> KResult<u64> {
    Ok(cred(r).uid.0 as u64)
}
pub fn geteuid(r: &mut Runner, _: A) -> KResult<u64> {
    Ok(cred(r).uid.1 as u64)
}
pub fn getgid(r: &mut Runner, _: A) -> KResult<u64> {
    Ok(cred(r).gid.0 as u64)
}
pub fn getegid(r: &mut Runner, _: A) -> KResult<u64> {
    Ok(cred(r).gid.1 as u64)
}
pub fn getresuid(r: &mut Runner, a: A) -> KResult<u64> {
    let c = cred(r).uid;
    r.write_val(a[0], &c.0)?;
    r.write_val(a[1], &c.1)?;
    r.write_val(a[2], &c.2)?;
    Ok(0)
}
pub fn getresgid(r: &mut Runner, a: A) -> KResult<u64> {
    let c = cred(r).gid;
    r.write_val(a[0], &c.0)?;
    r.write_val(a[1], &c.1)?;
    r.write_val(a[2], &c.2)?;
    Ok(0)
}
fn set_ids(r: &Runner, uid: bool, ids: [u64; 3]) -> KResult<u64> {
    let mut inner = lock(&r.t.tg.inner);
    let c = &mut inner.cred;
    let cur = if uid { c.uid } else { c.gid };
    if c.uid.1 != 0 {
        // Unprivileged: may only set ids it already has.
        for &id in &ids {
            if id as u32 != u32::MAX && ![cur.0, cur.1, cur.2].contains(&(id as u32)) {
                return Err(Errno::EPERM);
            }
        }
    }
    let pick = |new: u64, old: u32| {
        if new as u32 == u32::MAX {
            old
        } else {
            new as u32
        }
    };
    let n = (
        pick(ids[0], cur.0),
        pick(ids[1], cur.1),
        pick(ids[2], cur.2),
    );
    if uid {
        c.uid = n
    } else {
        c.gid = n
    }
    Ok(0)
}
pub fn setuid(r: &mut Runner, a: A) -> KResult<u64> {
    set_ids(r, true, [a[0], a[0], a[0]])
}
pub fn setgid(r: &mut Runner, a: A) -> KResult<u64> {
    set_ids(r, false, [a[0], a[0], a[0]])
}
pub fn setreuid(r: &mut Runner, a: A) -> KResult<u64> {
    set_ids(r, true, [a[0], a[1], u32::MAX as u64])
}
pub fn setregid(r: &mut Runner, a: A) -> KResult<u64> {
    set_ids(r, false, [a[0], a[1], u32::MAX as u64])
}
pub fn setresuid(r: &mut Runner, a: A) -> KResult<u64> {
    set_ids(r, true, [a[0], a[1], a[2]])
}
pub fn setresgid(r: &mut Runner, a: A) -> KResult<u64> {
    set_ids(r, false, [a[0], a[1], a[2]])
}
pub fn getgroups(_r: &mut Runner, _a: A) -> KResult<u64> {
    Ok(0)
}
pub fn setgroups(_r: &mut Runner, _a: A) -> KResult<u64> {
    Ok(0)
}
pub fn capget(r: &mut Runner, a: A) -> KResult<u64> {
    if a[1] != 0 {
        let full: u32 = if cred(r).uid.1 == 0 { 0xffff_ffff } else { 0 };
        let data = [full, full, 0u32, full, full, 0u32];
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        r.write_mem(a[1], &bytes)?;
    }
    Ok(0)
}

fn find_group(r: &Runner, pid: i32) -> KResult<Arc<ThreadGroup>> {
    if pid == 0 {
        return Ok(r.t.tg.clone());
    }
    r.k.group(pid).ok_or(Errno::ESRCH)
}
pub fn getpgid(r: &mut Runner, a: A) -> KResult<u64> {
    Ok(lock(&find_group(r, a[0] as i32)?.inner).pgid as u64)
}
pub fn getpgrp(r: &mut Runner, _: A) -> KResult<u64> {
    Ok(lock(&r.t.tg.inner).pgid as u64)
}
pub fn getsid(r: &mut Runner, a: A) -> KResult<u64> {
    Ok(lock(&find_group(r, a[0] as i32)?.inner).sid as u64)
}
pub fn setpgid(r: &mut Runner, a: A) -> KResult<u64> {
    let g = find_group(r, a[0] as i32)?;
    let pgid = if a[1] == 0 { g.tgid } else { a[1] as i32 };
    if pgid < 0 {
        return Err(Errno::EINVAL);
    }
    lock(&g.inner).pgid = pgid;
    Ok(0)
}
pub fn setsid(r: &mut Runner, _: A) -> KResult<u64> {
    let mut inner = lock(&r.t.tg.inner);
    if inner.pgid == r.t.tg.tgid {
        return Err(Errno::EPERM);
    }
    inner.sid = r.t.tg.tgid;
    inner.pgid = r.t.tg.tgid;
    Ok(r.t.tg.tgid as u64)
}
pub fn getpriority(_r: &mut Runner, _a: A) -> KResult<u64> {
    Ok(20)
}
pub fn setpriority(_r: &mut Runner, _a: A) -> KResult<u64> {
    Ok(0)
}

pub fn sched_yield(_r: &mut Runner, _: A) -> KResult<u64> {
    std::thread::yield_now();
    Ok(0)
}
pub fn sched_getaffinity(r: &mut Runner, a: A) -> KResult<u64> {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let len = a[1] as usize;
    if len < 8 || !len.is_multiple_of(8) {
        return Err(Errno::EINVAL);
    }
    let mut mask = vec![0u8; len.min(128)];
    for cpu in 0..n.min(mask.len() * 8) {
        mask[cpu / 8] |= 1 << (cpu % 8);
    }
    r.write_mem(a[2], &mask)?;
    Ok(mask.len() as u64)
}
pub fn sched_setaffinity(_r: &mut Runner, _a: A) -> KResult<u64> {
    Ok(0)
}

pub fn set_tid_address(r: &mut Runner, a: A) -> KResult<u64> {
    r.t.clear_child_tid.store(a[0], Ordering::Relaxed);
    Ok(r.t.tid as u64)
}
pub fn set_robust_list(r: &mut Runner, a: A) -> KResult<u64> {
    if a[1] != 24 {
        return Err(Errno::EINVAL);
    }
    r.t.robust_list.store(a[0], Ordering::Relaxed);
    Ok(0)
}
pub fn get_robust_list(r: &mut Runner, a: A) -> KResult<u64> {
    let t = if a[0] == 0 {
        r.t.clone()
    } else {
        r.k.task(a[0] as i32).ok_or(Errno::ESRCH)?
    };
    r.write_val(a[1], &t.robust_list.load(Ordering::Relaxed))?;
    r.write_val(a[2], &24u64)?;
    Ok(0)
}
pub fn rseq(_r: &mut Runner, _a: A) -> KResult<u64> {
    Err(Errno::ENOSYS)
}
pub fn clone3(_r: &mut Runner, _a: A) -> KResult<u64> {
    Err(Errno::ENOSYS)
}

pub fn arch_prctl(r: &mut Runner, a: A) -> KResult<u64> {
    const ARCH_SET_GS: u64 = 0x1001;
    const ARCH_SET_FS: u64 = 0x1002;
    const ARCH_GET_FS: u64 = 0x1003;
    const ARCH_GET_GS: u64 = 0x1004;
    const ARCH_GET_CPUID: u64 = 0x1011;
    const ARCH_SET_CPUID: u64 = 0x1012;
    match a[0] {
        ARCH_SET_FS => {
            if a[1] >= crate::mm::address_space::TASK_SIZE {
                return Err(Errno::EPERM);
            }
            r.regs.fs_base = a[1];
            Ok(0)
        }
        ARCH_SET_GS => {
            r.regs.gs_base = a[1];
            Ok(0)
        }
        ARCH_GET_FS => r.write_val(a[1], &r.regs.fs_base).map(|_| 0),
        ARCH_GET_GS => r.write_val(a[1], &r.regs.gs_base).map(|_| 0),
        ARCH_GET_CPUID => Ok(1),
        ARCH_SET_CPUID => Err(Errno::ENODEV),
        _ => Err(Errno::EINVAL),
    }
}

pub fn prctl(r: &mut Runner, a: A) -> KResult<u64> {
    match a[0] as i32 {
        libc::PR_SET_NAME => {
            let mut name = lock(&r.mm).read_cstr(a[1], 16).or_else(|e| {
                if e == Errno::ENAMETOOLONG {
                    let mut b = [0u8; 15];
                    r.read_mem(a[1], &mut b)?;
                    Ok(b.to_vec())
                } else {
                    Err(e)
                }
            })?;
            name.truncate(15);
            *lock(&r.t.comm) = name;
            Ok(0)
        }
        libc::PR_GET_NAME => {
            let mut b = lock(&r.t.comm).clone();
            b.resize(16, 0);
            r.write_mem(a[1], &b)?;
            Ok(0)
        }
        libc::PR_SET_PDEATHSIG
        | libc::PR_SET_DUMPABLE
        | libc::PR_SET_NO_NEW_PRIVS
        | libc::PR_SET_CHILD_SUBREAPER
        | libc::PR_SET_KEEPCAPS
        | libc::PR_SET_TIMERSLACK
        | libc::PR_SET_THP_DISABLE => Ok(0),
        libc::PR_GET_DUMPABLE => Ok(1),
        libc::PR_GET_NO_NEW_PRIVS | libc::PR_GET_CHILD_SUBREAPER | libc::PR_GET_KEEPCAPS => Ok(0),
        libc::PR_GET_PDEATHSIG => r.write_val(a[1], &0i32).map(|_| 0),
        libc::PR_CAPBSET_READ => Ok(1),
        libc::PR_SET_VMA => Ok(0),
        _ => Err(Errno::EINVAL),
    }
}

pub fn uname(r: &mut Runner, a: A) -> KResult<u64> {
    let mut buf = [0u8; 65 * 6];
    let host = lock(&r.k.hostname).clone();
    let fields: [&[u8]; 6] = [
        b"Linux",
        &host,
        b"6.8.0-rvisor",
        b"#1 SMP PREEMPT_DYNAMIC rvisor",
        b"x86_64",
        b"(none)",
    ];
    for (i, f) in fields.iter().enumerate() {
        let n = f.len().min(64);
        buf[i * 65..i * 65 + n].copy_from_slice(&f[..n]);
    }
    r.write_mem(a[0], &buf)?;
    Ok(0)
}

pub fn getrandom(r: &mut Runner, a: A) -> KResult<u64> {
    let len = (a[1] as usize).min(1 << 25);
    let mut buf = vec![0u8; len];
    crate::ffi::getrandom(&mut buf).map_err(|e| Errno::from_io(&e))?;
    r.write_mem(a[0], &buf)?;
    Ok(len as u64)
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Rlimit {
    cur: u64,
    max: u64,
}

pub fn getrlimit(r: &mut Runner, a: A) -> KResult<u64> {
    let res = a[0] as usize;
    if res >= 16 {
        return Err(Errno::EINVAL);
    }
    let (cur, max) = lock(&r.t.tg.inner).rlimits[res];
    r.write_val(a[1], &Rlimit { cur, max })?;
    Ok(0)
}
pub fn setrlimit(r: &mut Runner, a: A) -> KResult<u64> {
    let res = a[0] as usize;
    if res >= 16 {
        return Err(Errno::EINVAL);
    }
    let l: Rlimit = r.read_val(a[1])?;
    if l.cur > l.max {
        return Err(Errno::EINVAL);
    }
    lock(&r.t.tg.inner).rlimits[res] = (l.cur, l.max);
    Ok(0)
}
pub fn prlimit64(r: &mut Runner, a: A) -> KResult<u64> {
    let g = find_group(r, a[0] as i32)?;
    let res = a[1] as usize;
    if res >= 16 {
        return Err(Errno::EINVAL);
    }
    let old = lock(&g.inner).rlimits[res];
    if a[2] != 0 {
        let l: Rlimit = r.read_val(a[2])?;
        if l.cur > l.max {
            return Err(Errno::EINVAL);
        }
        lock(&g.inner).rlimits[res] = (l.cur, l.max);
    }
    if a[3] != 0 {
        r.write_val(
            a[3],
            &Rlimit {
                cur: old.0,
                max: old.1,
            },
        )?;
    }
    Ok(0)
}

pub fn sysinfo(r: &mut Runner, a: A) -> KResult<u64> {
    let mut si = crate::ffi::sysinfo();
    si.uptime = r.k.boot.elapsed().as_secs() as i64;
    si.procs = lock(&r.k.pids).tasks.len() as u16;
    si.loads = [0; 3];
    r.write_mem(a[0], crate::ffi::bytes_of(&si))?;
    Ok(0)
}

// ---- exit and wait ----

pub fn exit(r: &mut Runner, a: A) -> KResult<u64> {
    r.exit = Some(Exit::Thread(((a[0] & 0xff) << 8) as i32));
    r.regs_replaced = true;
    Ok(0)
}
pub fn exit_group(r: &mut Runner, a: A) -> KResult<u64> {
    r.exit = Some(Exit::Group(((a[0] & 0xff) << 8) as i32));
    r.regs_replaced = true;
    Ok(0)
}

const WNOHANG: u64 = 1;
const WUNTRACED: u64 = 2;
const WEXITED: u64 = 4;
const WCONTINUED: u64 = 8;
const WNOWAIT: u64 = 0x0100_0000;
const WNOTHREAD: u64 = 0x2000_0000;
const WALL: u64 = 0x4000_0000;
const WCLONE: u64 = 0x8000_0000;

/// Which children a wait selects.
#[derive(Clone, Copy)]
enum Sel {
    Any,
    Pid(i32),
    Pgid(i32),
}

fn matches(sel: Sel, c: &ThreadGroup) -> bool {
    match sel {
        Sel::Any => true,
        Sel::Pid(p) => c.tgid == p,
        Sel::Pgid(g) => lock(&c.inner).pgid == g,
    }
}

/// Waits for a zombie child; returns (pid, wait status, child uid).
fn wait_child(r: &mut Runner, sel: Sel, opts: u64) -> KResult<Option<(i32, i32)>> {
    let tg = r.t.tg.clone();
    let k = r.k.clone();
    let tg2 = tg.clone();
    r.block(&[&tg2.child_wq], &[], None, move |_| {
        let children: Vec<_> = lock(&tg.inner).children.clone();
        let mut any = false;
        for c in &children {
            if !matches(sel, c) {
                continue;
            }
            any = true;
            let (state, status) = {
                let ci = lock(&c.inner);
                (ci.state, ci.exit_status.unwrap_or(0))
            };
            if state == TgState::Zombie {
                if opts & WNOWAIT == 0 {
                    run::reap(&k, &tg, c);
                }
                return Some(Ok(Some((c.tgid, status))));
            }
        }
        if !any {
            return Some(Err(Errno::ECHILD));
        }
        if opts & WNOHANG != 0 {
            return Some(Ok(None));
        }
        None
    })
}

pub fn wait4(r: &mut Runner, a: A) -> KResult<u64> {
    let pid = a[0] as i32;
    let opts = a[2];
    if opts & !(WNOHANG | WUNTRACED | WCONTINUED | WNOTHREAD | WALL | WCLONE) != 0 {
        return Err(Errno::EINVAL);
    }
    let sel = match pid {
        -1 => Sel::Any,
        0 => Sel::Pgid(lock(&r.t.tg.inner).pgid),
        p if p < -1 => Sel::Pgid(-p),
        p => Sel::Pid(p),
    };
    match wait_child(r, sel, opts)? {
        Some((p, st)) => {
            if a[1] != 0 {
                r.write_val(a[1], &st)?;
            }
            if a[3] != 0 {
                r.write_mem(a[3], &[0u8; 144])?;
            }
            Ok(p as u64)
        }
        None => Ok(0),
    }
}

pub fn waitid(r: &mut Runner, a: A) -> KResult<u64> {
    let (idtype, id, infop, opts) = (a[0], a[1] as i32, a[2], a[3]);
    let sel = match idtype {
        0 => Sel::Any,     // P_ALL
        1 => Sel::Pid(id), // P_PID
        2 => Sel::Pgid(if id == 0 {
            lock(&r.t.tg.inner).pgid
        } else {
            id
        }), // P_PGID
        _ => return Err(Errno::EINVAL),
    };
    if opts & (WEXITED | WUNTRACED | WCONTINUED) == 0 {
        return Err(Errno::EINVAL);
    }
    let res = wait_child(r, sel, opts)?;
    if infop != 0 {
        let info = match res {
            Some((p, st)) => {
                let (code, status) = if st & 0x7f != 0 {
                    (if st & 0x80 != 0 { 3 } else { 2 }, st & 0x7f)
                } else {
                    (1, (st >> 8) & 0xff)
                };
                signal::SigInfo::child(code, p, 0, status)
            }
            None => signal::SigInfo([0; 128]),
        };
        r.write_val(infop, &info)?;
    }
    Ok(0)
}

// ---- clone, fork, vfork, execve ----

const CSIGNAL: u64 = 0xff;

fn new_task(r: &Runner, tid: i32, tg: Arc<ThreadGroup>, flags: u64) -> KResult<Arc<Task>> {
    let mm = if flags & libc::CLONE_VM as u64 != 0 {
        r.t.mm()
    } else {
        Arc::new(Mutex::new(lock(&r.mm).fork()?))
    };
    let files = if flags & libc::CLONE_FILES as u64 != 0 {
        r.t.files()
    } else {
        Arc::new(Mutex::new(lock(&r.t.files()).clone()))
    };
    let fs = if flags & libc::CLONE_FS as u64 != 0 {
        r.t.fs()
    } else {
        Arc::new(Mutex::new(lock(&r.t.fs()).clone()))
    };
    let (mask, altstack) = {
        let s = lock(&r.t.sig);
        (s.mask, s.altstack)
    };
    let waker = crate::kernel::wait::Waker::new().map_err(|e| Errno::from_io(&e))?;
    Ok(Arc::new(Task {
        tid,
        tg,
        waker,
        sig: Mutex::new(TaskSignals {
            mask,
            altstack,
            ..Default::default()
        }),
        mm: Mutex::new(mm),
        files: Mutex::new(files),
        fs: Mutex::new(fs),
        killed: AtomicBool::new(false),
        clear_child_tid: AtomicU64::new(0),
        robust_list: AtomicU64::new(0),
        comm: Mutex::new(lock(&r.t.comm).clone()),
        cpu_ns: AtomicU64::new(0),
        cur_syscall: AtomicI32::new(-1),
        regs_snapshot: Mutex::new(None),
        fp_snapshot: Mutex::new(None),
        parked: AtomicBool::new(false),
    }))
}

/// clone(2) with the x86_64 argument order (flags, stack, ptid, ctid, tls).
fn do_clone(
    r: &mut Runner,
    flags: u64,
    stack: u64,
    ptid: u64,
    ctid: u64,
    tls: u64,
) -> KResult<u64> {
    let thread = flags & libc::CLONE_THREAD as u64 != 0;
    let vm = flags & libc::CLONE_VM as u64 != 0;
    if thread && (flags & libc::CLONE_SIGHAND as u64 == 0 || !vm) {
        return Err(Errno::EINVAL);
    }
    if flags & libc::CLONE_SIGHAND as u64 != 0 && !vm {
        return Err(Errno::EINVAL);
    }
    let unsupported = (libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP) as u64;
    if flags & unsupported != 0 {
        return Err(Errno::EPERM);
    }
    let k = r.k.clone();
    let tid = lock(&k.pids).alloc();
    let tg = if thread {
        r.t.tg.clone()
    } else {
        let parent_inner = lock(&r.t.tg.inner);
        let handlers = if flags & libc::CLONE_SIGHAND as u64 != 0 {
            r.t.tg.handlers()
        } else {
            Arc::new(Mutex::new(lock(&r.t.tg.handlers()).clone()))
        };
        let parent = if flags & libc::CLONE_PARENT as u64 != 0 {
            parent_inner.parent.clone()
        } else {
            Some(r.t.tg.clone())
        };
        Arc::new(ThreadGroup {
            tgid: tid,
            inner: Mutex::new(TgInner {
                parent,
                children: Vec::new(),
                tasks: Vec::new(),
                pending: Default::default(),
                exit_status: None,
                state: TgState::Running,
                pgid: parent_inner.pgid,
                sid: parent_inner.sid,
                exit_signal: (flags & CSIGNAL) as i32,
                exe: parent_inner.exe.clone(),
                cpu_ns_dead: 0,
                child_cpu_ns: 0,
                cred: parent_inner.cred,
                rlimits: parent_inner.rlimits,
                vfork_done: false,
            }),
            handlers: Mutex::new(handlers),
            child_wq: Default::default(),
            start: Instant::now(),
            container: r.t.tg.container.clone(),
        })
    };
    let t = new_task(r, tid, tg.clone(), flags)?;
    if flags & libc::CLONE_CHILD_CLEARTID as u64 != 0 {
        t.clear_child_tid.store(ctid, Ordering::Relaxed);
    }
    // Child registers: return 0, optional new stack and TLS.
    let mut regs = r.regs;
    regs.rax = 0;
    if stack != 0 {
        regs.rsp = stack;
    }
    if flags & libc::CLONE_SETTLS as u64 != 0 {
        regs.fs_base = tls;
    }
    let src = if vm {
        ContextSource::Member(r.ctx.clone_member().map_err(Errno)?, None)
    } else {
        ContextSource::NewProcess {
            fp: Some(r.ctx.get_fp().map_err(Errno)?),
        }
    };
    if flags & libc::CLONE_PARENT_SETTID as u64 != 0 {
        r.write_val(ptid, &(tid as u32))?;
    }
    if flags & libc::CLONE_CHILD_SETTID as u64 != 0 {
        lock(&t.mm()).write_val(ctid, &(tid as u32))?;
    }
    // Register the task before it runs.
    {
        let mut pids = lock(&k.pids);
        pids.tasks.insert(tid, t.clone());
        if !thread {
            pids.groups.insert(tid, tg.clone());
        }
    }
    lock(&tg.inner).tasks.push(t.clone());
    if !thread {
        let parent = lock(&tg.inner).parent.clone();
        if let Some(p) = parent {
            lock(&p.inner).children.push(tg.clone());
        }
    }
    let vfork = if flags & libc::CLONE_VFORK as u64 != 0 {
        Some(Arc::new(VforkDone::default()))
    } else {
        None
    };
    if let Err(e) = run::spawn(k.clone(), t.clone(), regs, src, vfork.clone(), None) {
        tracing::error!("cannot start a kernel thread: {e}");
        run::exit_task(&k, &t, Exit::Group(libc::SIGKILL));
        return Err(Errno::EAGAIN);
    }
    if let Some(v) = vfork {
        // The parent sleeps until the child execs or exits. Signals do not
        // interrupt this wait (vfork semantics); a fatal one still does.
        let v2 = v.clone();
        loop {
            let res = r.block(
                &[&v2.wq],
                &[],
                Some(Instant::now() + Duration::from_millis(100)),
                |_| v.done.load(Ordering::Acquire).then_some(Ok(())),
            );
            if res.is_ok() || r.t.killed.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    Ok(tid as u64)
}

pub fn clone(r: &mut Runner, a: A) -> KResult<u64> {
    do_clone(r, a[0], a[1], a[2], a[3], a[4])
}
pub fn fork(r: &mut Runner, _: A) -> KResult<u64> {
    do_clone(r, libc::SIGCHLD as u64, 0, 0, 0, 0)
}
pub fn vfork(r: &mut Runner, _: A) -> KResult<u64> {
    do_clone(
        r,
        (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64,
        0,
        0,
        0,
        0,
    )
}

pub fn execve(r: &mut Runner, a: A) -> KResult<u64> {
    let path = r.read_path(a[0])?;
    let argv = r.read_str_array(a[1])?;
    let envp = r.read_str_array(a[2])?;
    exec::execve(r, &path, argv, envp)?;
    Ok(0)
}

// ---- futex ----

const FUTEX_WAIT: u64 = 0;
const FUTEX_WAKE: u64 = 1;
const FUTEX_REQUEUE: u64 = 3;
const FUTEX_CMP_REQUEUE: u64 = 4;
const FUTEX_WAKE_OP: u64 = 5;
const FUTEX_WAIT_BITSET: u64 = 9;
const FUTEX_WAKE_BITSET: u64 = 10;
const FUTEX_CLOCK_REALTIME: u64 = 256;

fn read_timespec(r: &Runner, addr: u64) -> KResult<Duration> {
    let ts: [i64; 2] = r.read_val(addr)?;
    if ts[0] < 0 || !(0..1_000_000_000).contains(&ts[1]) {
        return Err(Errno::EINVAL);
    }
    Ok(Duration::new(ts[0] as u64, ts[1] as u32))
}

pub fn futex(r: &mut Runner, a: A) -> KResult<u64> {
    let (uaddr, op, val, timeout, uaddr2, val3) =
        (a[0], a[1], a[2] as u32, a[3], a[4], a[5] as u32);
    let cmd = op & 0x7f;
    let key = key_of(&lock(&r.mm), uaddr)?;
    match cmd {
        FUTEX_WAIT | FUTEX_WAIT_BITSET => {
            let bitset = if cmd == FUTEX_WAIT { u32::MAX } else { val3 };
            if bitset == 0 {
                return Err(Errno::EINVAL);
            }
            let deadline = if timeout != 0 {
                let d = read_timespec(r, timeout)?;
                if cmd == FUTEX_WAIT {
                    Some(Instant::now() + d)
                } else {
                    // Absolute time on CLOCK_MONOTONIC or CLOCK_REALTIME.
                    let clock = if op & FUTEX_CLOCK_REALTIME != 0 {
                        libc::CLOCK_REALTIME
                    } else {
                        libc::CLOCK_MONOTONIC
                    };
                    let now = super::time::host_clock(clock);
                    Some(Instant::now() + d.saturating_sub(now))
                }
            } else {
                None
            };
            let w = Arc::new(FutexWaiter {
                woken: AtomicBool::new(false),
                waker: r.t.waker.clone(),
                bitset,
            });
            let mm = r.mm.clone();
            r.k.futexes.enqueue(key, w.clone(), || {
                let cur: u32 = lock(&mm).read_val(uaddr)?;
                if cur != val {
                    Err(Errno::EAGAIN)
                } else {
                    Ok(())
                }
            })?;
            let w2 = w.clone();
            let res = r.block(&[], &[], deadline, move |_| {
                w2.woken.load(Ordering::Acquire).then_some(Ok(()))
            });
            if res.is_err() && r.k.futexes.dequeue(key, &w) {
                return match res {
                    Err(Errno::ERESTARTSYS) => Err(Errno::EINTR),
                    Err(e) => Err(e),
                    Ok(()) => Ok(0),
                };
            }
            Ok(0)
        }
        FUTEX_WAKE | FUTEX_WAKE_BITSET => {
            let bitset = if cmd == FUTEX_WAKE { u32::MAX } else { val3 };
            if bitset == 0 {
                return Err(Errno::EINVAL);
            }
            Ok(r.k.futexes.wake(key, val as usize, bitset) as u64)
        }
        FUTEX_REQUEUE | FUTEX_CMP_REQUEUE => {
            let key2 = key_of(&lock(&r.mm), uaddr2)?;
            let mm = r.mm.clone();
            let n =
                r.k.futexes
                    .requeue(key, key2, val as usize, timeout as u32 as usize, || {
                        if cmd == FUTEX_CMP_REQUEUE {
                            let cur: u32 = lock(&mm).read_val(uaddr)?;
                            if cur != val3 {
                                return Err(Errno::EAGAIN);
                            }
                        }
                        Ok(())
                    })?;
            Ok(n as u64)
        }
        FUTEX_WAKE_OP => {
            let key2 = key_of(&lock(&r.mm), uaddr2)?;
            let (opn, cmp) = ((val3 >> 28) & 0xf, (val3 >> 24) & 0xf);
            let mut oparg = (val3 >> 12) & 0xfff;
            let cmparg = val3 & 0xfff;
            if opn & 8 != 0 {
                oparg = 1u32.checked_shl(oparg).unwrap_or(0);
            }
            let old: u32 = {
                let mm = lock(&r.mm);
                let old: u32 = mm.read_val(uaddr2)?;
                let new = match opn & 7 {
                    0 => oparg,
                    1 => old.wrapping_add(oparg),
                    2 => old | oparg,
                    3 => old & !oparg,
                    4 => old ^ oparg,
                    _ => return Err(Errno::ENOSYS),
                };
                mm.write_val(uaddr2, &new)?;
                old
            };
            let mut n = r.k.futexes.wake(key, val as usize, u32::MAX);
            let (o, c) = (old as i32, cmparg as i32);
            let hit = match cmp {
                0 => o == c,
                1 => o != c,
                2 => o < c,
                3 => o <= c,
                4 => o > c,
                5 => o >= c,
                _ => false,
            };
            if hit {
                n += r.k.futexes.wake(key2, timeout as u32 as usize, u32::MAX);
            }
            Ok(n as u64)
        }
        _ => Err(Errno::ENOSYS),
    }
}

/// Signal handlers shared with CLONE_SIGHAND (for tests and procfs).
pub fn handlers_of(t: &Task) -> Arc<Mutex<SigHandlers>> {
    t.tg.handlers()
}
