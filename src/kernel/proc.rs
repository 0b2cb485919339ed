//! procfs: the kernel's view of its tasks, generated on open.

use super::fs::file::{DirEntry, FileOps, Stat};
use super::fs::vfs::SyntheticFs;
use super::task::{TgState, ThreadGroup, lock};
use super::{Errno, KResult, Kernel};
use crate::mm::VmaName;
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

thread_local! {
    static CURRENT: Cell<(i32, i32)> = const { Cell::new((0, 0)) };
}

/// Records which task the calling kernel thread serves ("self").
pub fn set_current(tid: i32, tgid: i32) {
    CURRENT.with(|c| c.set((tid, tgid)));
}

fn current() -> (i32, i32) {
    CURRENT.with(|c| c.get())
}

/// A read-only snapshot file.
struct SnapFile {
    data: Vec<u8>,
    stat: Stat,
}

impl FileOps for SnapFile {
    fn read(&self, buf: &mut [u8], pos: Option<u64>) -> KResult<usize> {
        let p = pos.unwrap_or(0) as usize;
        if p >= self.data.len() {
            return Ok(0);
        }
        let n = buf.len().min(self.data.len() - p);
        buf[..n].copy_from_slice(&self.data[p..p + n]);
        Ok(n)
    }
    fn stat(&self) -> KResult<Stat> {
        Ok(self.stat)
    }
    fn seekable(&self) -> bool {
        true
    }
}

/// A directory listing.
struct DirFile {
    entries: Vec<DirEntry>,
    stat: Stat,
}

impl FileOps for DirFile {
    fn stat(&self) -> KResult<Stat> {
        Ok(self.stat)
    }
    fn seekable(&self) -> bool {
        true
    }
    fn readdir(&self, from: u64) -> KResult<Vec<DirEntry>> {
        Ok(self.entries.iter().skip(from as usize).cloned().collect())
    }
    fn read(&self, _buf: &mut [u8], _pos: Option<u64>) -> KResult<usize> {
        Err(Errno::EISDIR)
    }
}

const PROC_DEV: u64 = 0x16;

enum Node {
    Dir(Vec<(Vec<u8>, u8)>),
    File(Vec<u8>),
    Link(Vec<u8>),
}

/// The procfs instance of one kernel.
pub struct ProcFs {
    k: Weak<Kernel>,
}

impl std::fmt::Debug for ProcFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcFs")
    }
}

impl ProcFs {
    /// procfs over `k`.
    pub fn new(k: Weak<Kernel>) -> ProcFs {
        ProcFs { k }
    }

    fn kernel(&self) -> KResult<Arc<Kernel>> {
        self.k.upgrade().ok_or(Errno::ENOENT)
    }

    fn node(&self, rel: &[u8]) -> KResult<Node> {
        let k = self.kernel()?;
        let parts: Vec<&[u8]> = rel
            .split(|b| *b == b'/')
            .filter(|p| !p.is_empty())
            .collect();
        let (tid, tgid) = current();
        let d = libc::DT_DIR;
        let r = libc::DT_REG;
        let l = libc::DT_LNK;
        match parts.as_slice() {
            [] => {
                let mut v: Vec<(Vec<u8>, u8)> = vec![
                    (b"self".to_vec(), l),
                    (b"thread-self".to_vec(), l),
                    (b"cpuinfo".to_vec(), r),
                    (b"meminfo".to_vec(), r),
                    (b"stat".to_vec(), r),
                    (b"uptime".to_vec(), r),
                    (b"loadavg".to_vec(), r),
                    (b"version".to_vec(), r),
                    (b"mounts".to_vec(), l),
                    (b"filesystems".to_vec(), r),
                    (b"sys".to_vec(), d),
                ];
                for g in k.thread_groups() {
                    v.push((g.tgid.to_string().into_bytes(), d));
                }
                Ok(Node::Dir(v))
            }
            [b"self"] => Ok(Node::Link(tgid.to_string().into_bytes())),
            [b"thread-self"] => Ok(Node::Link(format!("{tgid}/task/{tid}").into_bytes())),
            [b"mounts"] => Ok(Node::Link(b"self/mounts".to_vec())),
            [b"cpuinfo"] => Ok(Node::File(std::fs::read("/proc/cpuinfo").unwrap_or_default())),
            [b"meminfo"] => Ok(Node::File(meminfo(&k))),
            [b"stat"] => Ok(Node::File(stat_file(&k))),
            [b"uptime"] => {
                let up = k.boot.elapsed().as_secs_f64();
                Ok(Node::File(format!("{up:.2} {up:.2}\n").into_bytes()))
            }
            [b"loadavg"] => {
                let n = lock(&k.pids).tasks.len();
                Ok(Node::File(format!("0.00 0.00 0.00 1/{n} {}\n", lock(&k.pids).tasks.keys().max().unwrap_or(&1)).into_bytes()))
            }
            [b"version"] => Ok(Node::File(b"Linux version 6.8.0-rvisor (rvisor) #1 SMP PREEMPT_DYNAMIC\n".to_vec())),
            [b"filesystems"] => Ok(Node::File(b"nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\nnodev\tdevtmpfs\nnodev\tdevpts\nnodev\toverlay\n".to_vec())),
            [b"sys"] => Ok(Node::Dir(vec![(b"kernel".to_vec(), d), (b"vm".to_vec(), d)])),
            [b"sys", b"kernel"] => Ok(Node::Dir(vec![
                (b"hostname".to_vec(), r),
                (b"osrelease".to_vec(), r),
                (b"ostype".to_vec(), r),
                (b"pid_max".to_vec(), r),
                (b"ngroups_max".to_vec(), r),
            ])),
            [b"sys", b"kernel", b"hostname"] => {
                let mut h = lock(&k.hostname).clone();
                h.push(b'\n');
                Ok(Node::File(h))
            }
            [b"sys", b"kernel", b"osrelease"] => Ok(Node::File(b"6.8.0-rvisor\n".to_vec())),
            [b"sys", b"kernel", b"ostype"] => Ok(Node::File(b"Linux\n".to_vec())),
            [b"sys", b"kernel", b"pid_max"] => Ok(Node::File(b"4194304\n".to_vec())),
            [b"sys", b"kernel", b"ngroups_max"] => Ok(Node::File(b"65536\n".to_vec())),
            [b"sys", b"vm"] => Ok(Node::Dir(vec![(b"overcommit_memory".to_vec(), r)])),
            [b"sys", b"vm", b"overcommit_memory"] => Ok(Node::File(b"0\n".to_vec())),
            [pid, rest @ ..] => {
                let pid: i32 = std::str::from_utf8(pid).ok().and_then(|s| s.parse().ok()).ok_or(Errno::ENOENT)?;
                let g = k.group(pid).ok_or(Errno::ENOENT)?;
                match rest {
                    [b"task", t, rest2 @ ..] => {
                        let t: i32 = std::str::from_utf8(t).ok().and_then(|s| s.parse().ok()).ok_or(Errno::ENOENT)?;
                        if !lock(&g.inner).tasks.iter().any(|x| x.tid == t) {
                            return Err(Errno::ENOENT);
                        }
                        self.pid_node(&k, &g, t, rest2)
                    }
                    [b"task"] => {
                        let v = lock(&g.inner).tasks.iter().map(|t| (t.tid.to_string().into_bytes(), d)).collect();
                        Ok(Node::Dir(v))
                    }
                    _ => self.pid_node(&k, &g, g.tgid, rest),
                }
            }
        }
    }

    fn pid_node(
        &self,
        k: &Arc<Kernel>,
        g: &Arc<ThreadGroup>,
        tid: i32,
        rest: &[&[u8]],
    ) -> KResult<Node> {
        let d = libc::DT_DIR;
        let r = libc::DT_REG;
        let l = libc::DT_LNK;
        let task = lock(&g.inner)
            .tasks
            .iter()
            .find(|t| t.tid == tid)
            .cloned()
            .or_else(|| lock(&g.inner).tasks.first().cloned());
        match rest {
            [] => Ok(Node::Dir(
                [
                    ("exe", l),
                    ("cwd", l),
                    ("root", l),
                    ("cmdline", r),
                    ("environ", r),
                    ("comm", r),
                    ("stat", r),
                    ("statm", r),
                    ("status", r),
                    ("maps", r),
                    ("mounts", r),
                    ("fd", d),
                    ("task", d),
                    ("limits", r),
                ]
                .iter()
                .map(|(n, t)| (n.as_bytes().to_vec(), *t))
                .collect(),
            )),
            [b"exe"] => Ok(Node::Link(lock(&g.inner).exe.clone())),
            [b"root"] => Ok(Node::Link(b"/".to_vec())),
            [b"cwd"] => {
                let t = task.ok_or(Errno::ENOENT)?;
                Ok(Node::Link(lock(&t.fs()).cwd.clone()))
            }
            [b"comm"] => {
                let t = task.ok_or(Errno::ENOENT)?;
                let mut c = lock(&t.comm).clone();
                c.push(b'\n');
                Ok(Node::File(c))
            }
            [b"cmdline"] | [b"environ"] => {
                let Some(t) = task else { return Ok(Node::File(Vec::new())) };
                let mm = t.mm();
                let mm = lock(&mm);
                let (s, e) = if rest[0] == b"cmdline" { mm.arg_range } else { mm.env_range };
                let mut buf = vec![0u8; e.saturating_sub(s).min(1 << 20) as usize];
                let _ = mm.read(s, &mut buf);
                Ok(Node::File(buf))
            }
            [b"stat"] => Ok(Node::File(pid_stat(k, g, task.as_deref()))),
            [b"statm"] => {
                let vs = task.map(|t| lock(&t.mm()).virtual_size()).unwrap_or(0) / 4096;
                Ok(Node::File(format!("{vs} 0 0 0 0 0 0\n").into_bytes()))
            }
            [b"status"] => Ok(Node::File(pid_status(g, task.as_deref()))),
            [b"maps"] => Ok(Node::File(task.map(|t| maps(&t)).unwrap_or_default())),
            [b"mounts"] => Ok(Node::File(
                b"overlay / overlay rw,relatime 0 0\nproc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\ntmpfs /dev tmpfs rw,nosuid 0 0\n".to_vec(),
            )),
            [b"limits"] => {
                let lim = lock(&g.inner).rlimits;
                let mut s = String::from("Limit                     Soft Limit           Hard Limit           Units     \n");
                let names = [
                    "Max cpu time", "Max file size", "Max data size", "Max stack size", "Max core file size",
                    "Max resident set", "Max processes", "Max open files", "Max locked memory", "Max address space",
                    "Max file locks", "Max pending signals", "Max msgqueue size", "Max nice priority",
                    "Max realtime priority", "Max realtime timeout",
                ];
                let f = |v: u64| if v == u64::MAX { "unlimited".to_string() } else { v.to_string() };
                for (i, n) in names.iter().enumerate() {
                    s += &format!("{:<26}{:<21}{:<21}\n", n, f(lim[i].0), f(lim[i].1));
                }
                Ok(Node::File(s.into_bytes()))
            }
            [b"fd"] => {
                let t = task.ok_or(Errno::ENOENT)?;
                let files = t.files();
                let v = lock(&files).iter().map(|(fd, _)| (fd.to_string().into_bytes(), l)).collect();
                Ok(Node::Dir(v))
            }
            [b"fd", n] => {
                let t = task.ok_or(Errno::ENOENT)?;
                let fd: i32 = std::str::from_utf8(n).ok().and_then(|s| s.parse().ok()).ok_or(Errno::ENOENT)?;
                let f = lock(&t.files()).get(fd).map_err(|_| Errno::ENOENT)?;
                let target = f.ops.proc_name().map(|s| s.into_bytes()).unwrap_or_else(|| f.path.clone());
                Ok(Node::Link(target))
            }
            _ => Err(Errno::ENOENT),
        }
    }
}

fn meminfo(k: &Kernel) -> Vec<u8> {
    // SAFETY: plain data filled by the host.
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    unsafe { libc::sysinfo(&mut si) };
    let total = si.totalram * si.mem_unit as u64 / 1024;
    let used = k.mf.usage() / 1024;
    let free = total.saturating_sub(used);
    format!(
        "MemTotal:       {total:>8} kB\nMemFree:        {free:>8} kB\nMemAvailable:   {free:>8} kB\nBuffers:               0 kB\nCached:                0 kB\nSwapCached:            0 kB\nActive:         {used:>8} kB\nInactive:              0 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\nShmem:                 0 kB\n"
    )
    .into_bytes()
}

fn stat_file(k: &Kernel) -> Vec<u8> {
    let n = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut s = String::from("cpu  0 0 0 0 0 0 0 0 0 0\n");
    for i in 0..n {
        s += &format!("cpu{i} 0 0 0 0 0 0 0 0 0 0\n");
    }
    let boot = super::syscalls::time::host_clock(libc::CLOCK_REALTIME).as_secs()
        - k.boot.elapsed().as_secs();
    s += &format!(
        "intr 0\nctxt 0\nbtime {boot}\nprocesses {}\nprocs_running 1\nprocs_blocked 0\n",
        lock(&k.pids).tasks.len()
    );
    s.into_bytes()
}

fn state_char(g: &ThreadGroup, t: Option<&super::task::Task>) -> char {
    if lock(&g.inner).state != TgState::Running {
        return 'Z';
    }
    match t {
        Some(t) if t.cur_syscall.load(Ordering::Relaxed) >= 0 => 'S',
        _ => 'R',
    }
}

fn pid_stat(k: &Kernel, g: &ThreadGroup, t: Option<&super::task::Task>) -> Vec<u8> {
    let inner = lock(&g.inner);
    let ppid = inner.parent.as_ref().map(|p| p.tgid).unwrap_or(0);
    let (pgid, sid) = (inner.pgid, inner.sid);
    let nthreads = inner.tasks.len().max(1);
    let cpu: u64 = inner
        .tasks
        .iter()
        .map(|t| t.cpu_ns.load(Ordering::Relaxed))
        .sum::<u64>()
        + inner.cpu_ns_dead;
    drop(inner);
    let comm = t
        .map(|t| String::from_utf8_lossy(&lock(&t.comm)).into_owned())
        .unwrap_or_default();
    let vsize = t.map(|t| lock(&t.mm()).virtual_size()).unwrap_or(0);
    let start_ticks = g.start.saturating_duration_since(k.boot).as_millis() / 10;
    let utime = cpu / 10_000_000;
    format!(
        "{} ({}) {} {} {} {} 0 -1 4194560 0 0 0 0 {} 0 0 0 20 0 {} 0 {} {} 0 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
        t.map(|t| t.tid).unwrap_or(g.tgid),
        comm,
        state_char(g, t),
        ppid,
        pgid,
        sid,
        utime,
        nthreads,
        start_ticks,
        vsize
    )
    .into_bytes()
}

fn pid_status(g: &ThreadGroup, t: Option<&super::task::Task>) -> Vec<u8> {
    let inner = lock(&g.inner);
    let ppid = inner.parent.as_ref().map(|p| p.tgid).unwrap_or(0);
    let c = inner.cred;
    let nthreads = inner.tasks.len().max(1);
    drop(inner);
    let comm = t
        .map(|t| String::from_utf8_lossy(&lock(&t.comm)).into_owned())
        .unwrap_or_default();
    let (mask, pending) = t
        .map(|t| {
            let s = lock(&t.sig);
            (s.mask, s.pending.set)
        })
        .unwrap_or((0, 0));
    let vs = t.map(|t| lock(&t.mm()).virtual_size()).unwrap_or(0) / 1024;
    let st = match state_char(g, t) {
        'S' => "S (sleeping)",
        'Z' => "Z (zombie)",
        _ => "R (running)",
    };
    format!(
        "Name:\t{comm}\nUmask:\t0022\nState:\t{st}\nTgid:\t{}\nNgid:\t0\nPid:\t{}\nPPid:\t{ppid}\nTracerPid:\t0\nUid:\t{}\t{}\t{}\t{}\nGid:\t{}\t{}\t{}\t{}\nFDSize:\t64\nGroups:\t\nVmSize:\t{vs} kB\nVmRSS:\t{vs} kB\nThreads:\t{nthreads}\nSigPnd:\t{pending:016x}\nShdPnd:\t0000000000000000\nSigBlk:\t{mask:016x}\nSigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\nCapBnd:\t000001ffffffffff\nSeccomp:\t0\nCpus_allowed_list:\t0-{}\n",
        g.tgid,
        t.map(|t| t.tid).unwrap_or(g.tgid),
        c.uid.0, c.uid.1, c.uid.2, c.uid.1,
        c.gid.0, c.gid.1, c.gid.2, c.gid.1,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) - 1,
    )
    .into_bytes()
}

fn maps(t: &super::task::Task) -> Vec<u8> {
    let mm = t.mm();
    let mm = lock(&mm);
    let mut s = String::new();
    for v in mm.vmas() {
        let p = |b: i32, c: char| if v.prot & b != 0 { c } else { '-' };
        let (off, ino, name) = match &v.name {
            VmaName::File { path, offset, ino } => (*offset, *ino, path.clone()),
            VmaName::Heap => (0, 0, "[heap]".into()),
            VmaName::Stack => (0, 0, "[stack]".into()),
            VmaName::Anon => (0, 0, String::new()),
        };
        let line = format!(
            "{:08x}-{:08x} {}{}{}{} {:08x} 00:00 {}",
            v.start,
            v.end,
            p(libc::PROT_READ, 'r'),
            p(libc::PROT_WRITE, 'w'),
            p(libc::PROT_EXEC, 'x'),
            if v.shared { 's' } else { 'p' },
            off,
            ino
        );
        if name.is_empty() {
            s += &line;
            s.push('\n');
        } else {
            s += &format!("{line:<73}{name}\n");
        }
    }
    s.into_bytes()
}

fn mode_of(n: &Node) -> u32 {
    match n {
        Node::Dir(_) => libc::S_IFDIR | 0o555,
        Node::File(_) => libc::S_IFREG | 0o444,
        Node::Link(_) => libc::S_IFLNK | 0o777,
    }
}

fn ino_of(rel: &[u8]) -> u64 {
    // FNV-1a: stable inode numbers per path.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rel {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h | 1
}

impl SyntheticFs for ProcFs {
    fn stat(&self, rel: &[u8]) -> KResult<Stat> {
        let n = self.node(rel)?;
        let size = match &n {
            Node::Link(t) => t.len() as i64,
            _ => 0,
        };
        Ok(Stat {
            st_dev: PROC_DEV,
            st_ino: ino_of(rel),
            st_nlink: if matches!(n, Node::Dir(_)) { 2 } else { 1 },
            st_mode: mode_of(&n),
            st_size: size,
            st_blksize: 1024,
            ..Default::default()
        })
    }

    fn readlink(&self, rel: &[u8]) -> KResult<Vec<u8>> {
        match self.node(rel)? {
            Node::Link(t) => Ok(t),
            _ => Err(Errno::EINVAL),
        }
    }

    fn open(&self, rel: &[u8], flags: i32) -> KResult<Box<dyn FileOps>> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return Err(Errno::EACCES);
        }
        let stat = self.stat(rel)?;
        match self.node(rel)? {
            Node::File(data) => Ok(Box::new(SnapFile {
                stat: Stat { st_size: 0, ..stat },
                data,
            })),
            Node::Dir(_) => Ok(Box::new(DirFile {
                entries: self.readdir(rel)?,
                stat,
            })),
            Node::Link(_) => Err(Errno::ELOOP),
        }
    }

    fn readdir(&self, rel: &[u8]) -> KResult<Vec<DirEntry>> {
        match self.node(rel)? {
            Node::Dir(v) => {
                let mut out = vec![
                    DirEntry {
                        ino: ino_of(rel),
                        kind: libc::DT_DIR,
                        name: b".".to_vec(),
                    },
                    DirEntry {
                        ino: 1,
                        kind: libc::DT_DIR,
                        name: b"..".to_vec(),
                    },
                ];
                for (name, kind) in v {
                    let mut p = rel.to_vec();
                    if !p.is_empty() {
                        p.push(b'/');
                    }
                    p.extend_from_slice(&name);
                    out.push(DirEntry {
                        ino: ino_of(&p),
                        kind,
                        name,
                    });
                }
                Ok(out)
            }
            _ => Err(Errno::ENOTDIR),
        }
    }
}
