//! Signal system calls.
#![allow(missing_docs)] // handlers are named after the syscalls they serve

use crate::kernel::run::Runner;
use crate::kernel::signal::{self, SS_DISABLE, SS_ONSTACK, SigAction, SigInfo, SigSet, StackT};
use crate::kernel::task::lock;
use crate::kernel::{Errno, KResult};
use std::time::{Duration, Instant};

type A = [u64; 6];

fn valid(sig: u64) -> KResult<i32> {
    if (1..=64).contains(&sig) {
        Ok(sig as i32)
    } else {
        Err(Errno::EINVAL)
    }
}

pub fn rt_sigaction(r: &mut Runner, a: A) -> KResult<u64> {
    let sig = valid(a[0])?;
    if a[3] != 8 {
        return Err(Errno::EINVAL);
    }
    let handlers = r.t.tg.handlers();
    let new = if a[1] != 0 {
        Some(r.read_val::<SigAction>(a[1])?)
    } else {
        None
    };
    if new.is_some() && (sig == libc::SIGKILL || sig == libc::SIGSTOP) {
        return Err(Errno::EINVAL);
    }
    let old = lock(&handlers).get(sig);
    if a[2] != 0 {
        r.write_val(a[2], &old)?;
    }
    if let Some(mut n) = new {
        n.mask &= !signal::UNBLOCKABLE;
        lock(&handlers).actions[(sig - 1) as usize] = n;
        // Setting SIG_IGN discards pending instances (POSIX).
        if lock(&handlers).ignored(sig) {
            lock(&r.t.sig).pending.discard(sig);
            lock(&r.t.tg.inner).pending.discard(sig);
        }
    }
    Ok(0)
}

pub fn rt_sigprocmask(r: &mut Runner, a: A) -> KResult<u64> {
    if a[3] != 8 {
        return Err(Errno::EINVAL);
    }
    let new = if a[1] != 0 {
        Some(r.read_val::<SigSet>(a[1])?)
    } else {
        None
    };
    let old = lock(&r.t.sig).mask;
    if let Some(set) = new {
        let mask = match a[0] as i32 {
            libc::SIG_BLOCK => old | set,
            libc::SIG_UNBLOCK => old & !set,
            libc::SIG_SETMASK => set,
            _ => return Err(Errno::EINVAL),
        };
        lock(&r.t.sig).mask = mask & !signal::UNBLOCKABLE;
    }
    if a[2] != 0 {
        r.write_val(a[2], &old)?;
    }
    Ok(0)
}

pub fn rt_sigreturn(r: &mut Runner, _: A) -> KResult<u64> {
    r.sigreturn()
}

pub fn rt_sigpending(r: &mut Runner, a: A) -> KResult<u64> {
    let s = lock(&r.t.sig);
    let set = (s.pending.set | lock(&r.t.tg.inner).pending.set) & s.mask;
    drop(s);
    r.write_val(a[0], &set)?;
    Ok(0)
}

pub fn sigaltstack(r: &mut Runner, a: A) -> KResult<u64> {
    let old = lock(&r.t.sig).altstack;
    let on = old.ss_flags & SS_DISABLE == 0
        && r.regs.rsp > old.ss_sp
        && r.regs.rsp <= old.ss_sp + old.ss_size;
    if a[0] != 0 {
        if on {
            return Err(Errno::EPERM);
        }
        let n: StackT = r.read_val(a[0])?;
        if n.ss_flags & !(SS_DISABLE | (1 << 31)) != 0 {
            return Err(Errno::EINVAL);
        }
        if n.ss_flags & SS_DISABLE == 0 && n.ss_size < 2048 {
            return Err(Errno::ENOMEM);
        }
        let n = if n.ss_flags & SS_DISABLE != 0 {
            StackT {
                ss_flags: SS_DISABLE,
                ..Default::default()
            }
        } else {
            n
        };
        lock(&r.t.sig).altstack = n;
    }
    if a[1] != 0 {
        let mut o = old;
        if old.ss_size == 0 {
            o.ss_flags = SS_DISABLE;
        } else if on {
            o.ss_flags = SS_ONSTACK;
        }
        r.write_val(a[1], &o)?;
    }
    Ok(0)
}

pub fn pause(r: &mut Runner, _: A) -> KResult<u64> {
    r.block::<()>(&[], &[], None, |_| None)
        .map(|_| 0)
        .map_err(|_| Errno::ERESTARTNOHAND)
}

pub fn rt_sigsuspend(r: &mut Runner, a: A) -> KResult<u64> {
    if a[1] != 8 {
        return Err(Errno::EINVAL);
    }
    let set: SigSet = r.read_val(a[0])?;
    {
        let mut s = lock(&r.t.sig);
        s.saved_mask = Some(s.mask);
        s.mask = set & !signal::UNBLOCKABLE;
    }
    let _ = r.block::<()>(&[], &[], None, |_| None);
    Err(Errno::ERESTARTNOHAND)
}

pub fn rt_sigtimedwait(r: &mut Runner, a: A) -> KResult<u64> {
    let set: SigSet = r.read_val(a[0])?;
    let deadline = if a[2] != 0 {
        let ts: [i64; 2] = r.read_val(a[2])?;
        if ts[0] < 0 || !(0..1_000_000_000).contains(&ts[1]) {
            return Err(Errno::EINVAL);
        }
        Some(Instant::now() + Duration::new(ts[0] as u64, ts[1] as u32))
    } else {
        None
    };
    let take = |r: &mut Runner| -> Option<SigInfo> {
        let mut s = lock(&r.t.sig);
        let others = !set;
        if let Some(i) = s.pending.pop(others) {
            return Some(i);
        }
        drop(s);
        lock(&r.t.tg.inner).pending.pop(others)
    };
    // Wait with the set unblocked-for-waiting: temporarily block nothing
    // extra; signals in `set` are picked up here instead of delivered.
    let old_mask = lock(&r.t.sig).mask;
    lock(&r.t.sig).mask = old_mask | set;
    let res = r.block(&[], &[], deadline, |r| take(r).map(Ok));
    lock(&r.t.sig).mask = old_mask;
    match res {
        Ok(info) => {
            if a[1] != 0 {
                r.write_val(a[1], &info)?;
            }
            Ok(info.signo() as u64)
        }
        Err(Errno::ETIMEDOUT) => Err(Errno::EAGAIN),
        Err(_) => Err(Errno::EINTR),
    }
}

fn sender_info(r: &Runner, sig: i32, code: i32) -> SigInfo {
    SigInfo::user(sig, code, r.t.tg.tgid, lock(&r.t.tg.inner).cred.uid.0)
}

pub fn kill(r: &mut Runner, a: A) -> KResult<u64> {
    let pid = a[0] as i32;
    let sig = a[1] as i32;
    if !(0..=64).contains(&sig) {
        return Err(Errno::EINVAL);
    }
    let targets: Vec<_> = match pid {
        p if p > 0 => vec![r.k.group(p).ok_or(Errno::ESRCH)?],
        0 | -1 => {
            let pgid = lock(&r.t.tg.inner).pgid;
            r.k.thread_groups()
                .into_iter()
                .filter(|g| {
                    if pid == 0 {
                        lock(&g.inner).pgid == pgid
                    } else {
                        g.tgid != 1 && g.tgid != r.t.tg.tgid
                    }
                })
                .collect()
        }
        p => {
            r.k.thread_groups()
                .into_iter()
                .filter(|g| lock(&g.inner).pgid == -p)
                .collect()
        }
    };
    let targets: Vec<_> = targets
        .into_iter()
        .filter(|g| lock(&g.inner).state == crate::kernel::task::TgState::Running)
        .collect();
    if targets.is_empty() {
        return Err(Errno::ESRCH);
    }
    if sig == 0 {
        return Ok(0);
    }
    for g in targets {
        // init ignores signals it has no handler for (except from outside),
        // unless it blocks them: a blocked signal stays pending, for
        // sigwait or signalfd (Linux sig_ignored checks the mask first).
        let blocked = lock(&g.inner)
            .tasks
            .first()
            .is_some_and(|t| lock(&t.sig).mask & signal::bit(sig) != 0);
        if g.tgid == 1 && !blocked && lock(&g.handlers()).get(sig).handler == signal::SIG_DFL {
            continue;
        }
        r.k.signal_group(&g, sender_info(r, sig, signal::SI_USER));
    }
    Ok(0)
}

fn thread_kill(r: &mut Runner, tgid: Option<i32>, tid: i32, sig: i32) -> KResult<u64> {
    if !(0..=64).contains(&sig) || tid <= 0 {
        return Err(Errno::EINVAL);
    }
    let t = r.k.task(tid).ok_or(Errno::ESRCH)?;
    if let Some(g) = tgid
        && t.tg.tgid != g
    {
        return Err(Errno::ESRCH);
    }
    if sig == 0 {
        return Ok(0);
    }
    if t.tg.tgid == 1
        && lock(&t.tg.handlers()).get(sig).handler == signal::SIG_DFL
        && !std::sync::Arc::ptr_eq(&t.tg, &r.t.tg)
    {
        return Ok(0);
    }
    let info = sender_info(r, sig, signal::SI_TKILL);
    r.k.signal_task(&t, info);
    Ok(0)
}

pub fn tkill(r: &mut Runner, a: A) -> KResult<u64> {
    thread_kill(r, None, a[0] as i32, a[1] as i32)
}

pub fn tgkill(r: &mut Runner, a: A) -> KResult<u64> {
    thread_kill(r, Some(a[0] as i32), a[1] as i32, a[2] as i32)
}

pub fn rt_sigqueueinfo(r: &mut Runner, a: A) -> KResult<u64> {
    let sig = valid(a[1])?;
    let mut info: SigInfo = r.read_val(a[2])?;
    info.0[0..4].copy_from_slice(&sig.to_le_bytes());
    let g = r.k.group(a[0] as i32).ok_or(Errno::ESRCH)?;
    r.k.signal_group(&g, info);
    Ok(0)
}
