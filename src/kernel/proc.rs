//! procfs: the kernel's view of its tasks, generated on open.
//!
//! Every file is a snapshot taken when it is opened. Layout (see proc(5)):
//! - `/proc/{stat,uptime,loadavg,meminfo,cpuinfo,version,filesystems}`,
//!   `/proc/mounts` (a link to `self/mounts`), `/proc/self`,
//!   `/proc/thread-self` and `/proc/sys/{kernel,vm,fs}/...`;
//! - `/proc/<pid>/` with `stat`, `statm`, `status`, `cmdline`, `environ`,
//!   `comm`, `maps`, `smaps`, `auxv`, `limits`, `mounts`, `mountinfo`,
//!   `cgroup`, `oom_score_adj`, the links `cwd`, `root`, `exe`, the
//!   directories `fd/` (magic links to the open files), `fdinfo/` and
//!   `task/<tid>/` (the same per thread).
//!
//! A process's directory belongs to its effective uid and gid, as on
//! Linux (`ps` reads the owner from there). `/proc/<pid>/fd/N` are *magic
//! links* ([`SyntheticFs::magic_link`]): opening one reopens the file
//! itself, whatever `readlink` shows for it.

use super::fs::file::{DirEntry, FileOps, OpenFile, Stat};
use super::fs::vfs::{MountInfo, SyntheticFs};
use super::signal;
use super::task::{Task, TgState, ThreadGroup, lock};
use super::{Errno, KResult, Kernel};
use crate::mm::VmaName;
use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};

thread_local! {
    static CURRENT: Cell<(i32, i32)> = const { Cell::new((0, 0)) };
}

/// Records which task the calling kernel thread serves ("self").
pub fn set_current(tid: i32, tgid: i32) {
    CURRENT.with(|c| c.set((tid, tgid)));
}

/// The (tid, tgid) the calling kernel thread serves ((0, 0) for threads
/// that serve no task).
pub fn current() -> (i32, i32) {
    CURRENT.with(|c| c.get())
}

/// O_LARGEFILE as the kernel reports it on x86_64 (libc's constant is 0).
const O_LARGEFILE: i32 = 0o100000;
/// Clock ticks per second as `/proc` counts them (USER_HZ).
const HZ: u64 = 100;
/// `st_dev` of every procfs node.
const PROC_DEV: u64 = 0x16;
/// `PROC_SUPER_MAGIC`.
const PROC_SUPER_MAGIC: i64 = 0x9fa0;

fn ticks(ns: u64) -> u64 {
    ns / (1_000_000_000 / HZ)
}

/// A read-only snapshot file.
struct SnapFile {
    data: Vec<u8>,
    stat: Stat,
}

impl FileOps for SnapFile {
    fn read(&self, buf: &mut [u8], pos: Option<u64>) -> KResult<usize> {
        let p = usize::try_from(pos.unwrap_or(0)).unwrap_or(usize::MAX);
        if p >= self.data.len() {
            return Ok(0);
        }
        let n = buf.len().min(self.data.len() - p);
        buf[..n].copy_from_slice(&self.data[p..p + n]);
        Ok(n)
    }
    fn write(&self, _buf: &[u8], _pos: Option<u64>) -> KResult<usize> {
        Err(Errno::EBADF)
    }
    fn stat(&self) -> KResult<Stat> {
        Ok(self.stat)
    }
    fn seekable(&self) -> bool {
        true
    }
}

enum Node {
    Dir(Vec<(Vec<u8>, u8)>),
    File(Vec<u8>),
    Link(Vec<u8>),
    /// `/proc/<pid>/fd/N`: a magic link to an open file.
    Fd(Arc<OpenFile>),
}

/// A node with its owner and permission bits.
struct Entry {
    node: Node,
    uid: u32,
    gid: u32,
    perm: u32,
}

impl Entry {
    fn root(node: Node) -> Entry {
        let perm = default_perm(&node);
        Entry {
            node,
            uid: 0,
            gid: 0,
            perm,
        }
    }
}

fn default_perm(n: &Node) -> u32 {
    match n {
        Node::Dir(_) => 0o555,
        Node::File(_) => 0o444,
        Node::Link(_) | Node::Fd(_) => 0o777,
    }
}

fn parse_id(s: &[u8]) -> KResult<i32> {
    std::str::from_utf8(s)
        .ok()
        .filter(|s| !s.starts_with('+') && !s.starts_with('0') || *s == "0")
        .and_then(|s| s.parse().ok())
        .ok_or(Errno::ENOENT)
}

fn names(list: &[(&str, u8)]) -> Vec<(Vec<u8>, u8)> {
    list.iter()
        .map(|(n, t)| (n.as_bytes().to_vec(), *t))
        .collect()
}

/// The procfs instance of one kernel.
pub struct ProcFs {
    k: Weak<Kernel>,
    /// Wall-clock second the kernel booted, fixed at first use so
    /// `btime` and process start times never jitter.
    boot_epoch: OnceLock<u64>,
}

impl std::fmt::Debug for ProcFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcFs")
    }
}

impl ProcFs {
    /// procfs over `k`.
    pub fn new(k: Weak<Kernel>) -> ProcFs {
        ProcFs {
            k,
            boot_epoch: OnceLock::new(),
        }
    }

    fn kernel(&self) -> KResult<Arc<Kernel>> {
        self.k.upgrade().ok_or(Errno::ENOENT)
    }

    fn btime(&self, k: &Kernel) -> u64 {
        *self.boot_epoch.get_or_init(|| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            now.saturating_sub(k.boot.elapsed()).as_secs()
        })
    }

    fn lookup(&self, rel: &[u8]) -> KResult<Entry> {
        let k = self.kernel()?;
        let parts: Vec<&[u8]> = rel
            .split(|b| *b == b'/')
            .filter(|p| !p.is_empty())
            .collect();
        let (tid, tgid) = current();
        let d = libc::DT_DIR;
        let r = libc::DT_REG;
        let l = libc::DT_LNK;
        let file = |v: Vec<u8>| Ok(Entry::root(Node::File(v)));
        match parts.as_slice() {
            [] => {
                let mut v = names(&[
                    ("self", l),
                    ("thread-self", l),
                    ("cpuinfo", r),
                    ("meminfo", r),
                    ("stat", r),
                    ("uptime", r),
                    ("loadavg", r),
                    ("version", r),
                    ("cmdline", r),
                    ("mounts", l),
                    ("filesystems", r),
                    ("swaps", r),
                    ("sys", d),
                ]);
                for g in k.thread_groups() {
                    v.push((g.tgid.to_string().into_bytes(), d));
                }
                Ok(Entry::root(Node::Dir(v)))
            }
            [b"self"] => Ok(Entry::root(Node::Link(tgid.to_string().into_bytes()))),
            [b"thread-self"] => Ok(Entry::root(Node::Link(
                format!("{tgid}/task/{tid}").into_bytes(),
            ))),
            [b"mounts"] => Ok(Entry::root(Node::Link(b"self/mounts".to_vec()))),
            [b"cpuinfo"] => file(std::fs::read("/proc/cpuinfo").unwrap_or_default()),
            [b"meminfo"] => file(meminfo(&k)),
            [b"stat"] => file(self.stat_file(&k)),
            [b"uptime"] => {
                let up = k.boot.elapsed().as_secs_f64();
                let busy = total_cpu_ns(&k) as f64 / 1e9;
                let idle = (up * ncpus() as f64 - busy).max(0.0);
                file(format!("{up:.2} {idle:.2}\n").into_bytes())
            }
            [b"loadavg"] => {
                let tasks: Vec<Arc<Task>> = lock(&k.pids).tasks.values().cloned().collect();
                let running = tasks
                    .iter()
                    .filter(|t| t.cur_syscall.load(Ordering::Relaxed) < 0 || t.tid == tid)
                    .count()
                    .max(1);
                let last = tasks.iter().map(|t| t.tid).max().unwrap_or(1);
                file(format!("0.00 0.00 0.00 {running}/{} {last}\n", tasks.len()).into_bytes())
            }
            [b"version"] => file(
                b"Linux version 6.8.0-rvisor (rvisor@rvisor) (rustc) #1 SMP PREEMPT_DYNAMIC\n"
                    .to_vec(),
            ),
            [b"cmdline"] => file(b"BOOT_IMAGE=/vmlinuz-rvisor ro\n".to_vec()),
            [b"swaps"] => file(b"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n".to_vec()),
            [b"filesystems"] => file(
                b"nodev\tsysfs\nnodev\ttmpfs\nnodev\tproc\nnodev\tdevtmpfs\nnodev\tdevpts\nnodev\toverlay\n\text4\n"
                    .to_vec(),
            ),
            [b"sys", rest @ ..] => sys_node(&k, rest).map(Entry::root),
            [pid, rest @ ..] => {
                let pid = parse_id(pid)?;
                let g = k.group(pid).ok_or(Errno::ENOENT)?;
                let (uid, gid) = {
                    let c = lock(&g.inner).cred;
                    (c.uid.1, c.gid.1)
                };
                let mut e = match rest {
                    [b"task"] => {
                        let v = lock(&g.inner)
                            .tasks
                            .iter()
                            .map(|t| (t.tid.to_string().into_bytes(), d))
                            .collect();
                        Entry::root(Node::Dir(v))
                    }
                    [b"task", t, rest2 @ ..] => {
                        let t = parse_id(t)?;
                        let task = lock(&g.inner)
                            .tasks
                            .iter()
                            .find(|x| x.tid == t)
                            .cloned()
                            .ok_or(Errno::ENOENT)?;
                        self.pid_node(&k, &g, Some(task), rest2, true)?
                    }
                    _ => {
                        let task = leader(&g);
                        self.pid_node(&k, &g, task, rest, false)?
                    }
                };
                e.uid = uid;
                e.gid = gid;
                Ok(e)
            }
        }
    }

    fn pid_node(
        &self,
        k: &Arc<Kernel>,
        g: &Arc<ThreadGroup>,
        task: Option<Arc<Task>>,
        rest: &[&[u8]],
        in_task: bool,
    ) -> KResult<Entry> {
        let d = libc::DT_DIR;
        let r = libc::DT_REG;
        let l = libc::DT_LNK;
        let file = |v: Vec<u8>| Ok(Entry::root(Node::File(v)));
        let with_perm = |node: Node, perm: u32| {
            Ok(Entry {
                node,
                uid: 0,
                gid: 0,
                perm,
            })
        };
        match rest {
            [] => {
                let mut v = names(&[
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
                    ("smaps", r),
                    ("auxv", r),
                    ("mounts", r),
                    ("mountinfo", r),
                    ("cgroup", r),
                    ("oom_score_adj", r),
                    ("limits", r),
                    ("fd", d),
                    ("fdinfo", d),
                ]);
                if !in_task {
                    v.push((b"task".to_vec(), d));
                }
                Ok(Entry::root(Node::Dir(v)))
            }
            [b"exe"] => {
                let exe = lock(&g.inner).exe.clone();
                if exe.is_empty() {
                    return Err(Errno::ENOENT);
                }
                Ok(Entry::root(Node::Link(exe)))
            }
            [b"root"] => Ok(Entry::root(Node::Link(b"/".to_vec()))),
            [b"cwd"] => {
                let t = task.ok_or(Errno::ENOENT)?;
                Ok(Entry::root(Node::Link(lock(&t.fs()).cwd.clone())))
            }
            [b"comm"] => {
                let t = task.ok_or(Errno::ENOENT)?;
                let mut c = lock(&t.comm).clone();
                c.push(b'\n');
                with_perm(Node::File(c), 0o644)
            }
            [b"cmdline"] => file(task.map(|t| arg_bytes(&t, true)).unwrap_or_default()),
            [b"environ"] => with_perm(
                Node::File(task.map(|t| arg_bytes(&t, false)).unwrap_or_default()),
                0o400,
            ),
            [b"auxv"] => {
                let mut v = Vec::new();
                if let Some(t) = &task {
                    for (a, b) in &lock(&t.mm()).auxv {
                        v.extend_from_slice(&a.to_le_bytes());
                        v.extend_from_slice(&b.to_le_bytes());
                    }
                }
                with_perm(Node::File(v), 0o400)
            }
            [b"stat"] => file(self.pid_stat(k, g, task.as_deref(), in_task)),
            [b"statm"] => {
                let (vs, rss) = task.as_deref().map(mem_sizes).unwrap_or((0, 0));
                file(format!("{} {} 0 0 0 0 0\n", vs / 4096, rss / 4096).into_bytes())
            }
            [b"status"] => file(pid_status(g, task.as_deref())),
            [b"maps"] => file(task.map(|t| maps(&t, false)).unwrap_or_default()),
            [b"smaps"] => file(task.map(|t| maps(&t, true)).unwrap_or_default()),
            [b"mounts"] => file(mounts_text(&task_vfs(k, task.as_deref()).mounts())),
            [b"mountinfo"] => file(mountinfo_text(&task_vfs(k, task.as_deref()).mounts())),
            [b"cgroup"] => file(b"0::/\n".to_vec()),
            [b"oom_score_adj"] => with_perm(Node::File(b"0\n".to_vec()), 0o644),
            [b"limits"] => file(limits(g)),
            [b"fd"] | [b"fdinfo"] => {
                let t = task.ok_or(Errno::ENOENT)?;
                let kind = if rest[0] == b"fd" { l } else { r };
                let files = t.files();
                let v = lock(&files)
                    .iter()
                    .map(|(fd, _)| (fd.to_string().into_bytes(), kind))
                    .collect();
                with_perm(Node::Dir(v), 0o500)
            }
            [b"fd", n] => {
                let t = task.ok_or(Errno::ENOENT)?;
                let fd = parse_id(n)?;
                let f = lock(&t.files()).get(fd).map_err(|_| Errno::ENOENT)?;
                with_perm(Node::Fd(f), 0o700)
            }
            [b"fdinfo", n] => {
                let t = task.ok_or(Errno::ENOENT)?;
                let fd = parse_id(n)?;
                let (f, cloexec) = {
                    let files = t.files();
                    let files = lock(&files);
                    let e = files.entry(fd).map_err(|_| Errno::ENOENT)?;
                    (e.file.clone(), e.cloexec)
                };
                let pos = *lock(&f.pos);
                let mut flags = f.flags() | O_LARGEFILE;
                if cloexec {
                    flags |= libc::O_CLOEXEC;
                }
                let st = f.ops.stat().unwrap_or_default();
                let mnt = task_vfs(k, Some(&t))
                    .mounts()
                    .iter()
                    .find(|m| m.dev == st.st_dev)
                    .map_or(0, |m| m.id);
                file(
                    format!(
                        "pos:\t{pos}\nflags:\t0{flags:o}\nmnt_id:\t{mnt}\nino:\t{}\n",
                        st.st_ino
                    )
                    .into_bytes(),
                )
            }
            _ => Err(Errno::ENOENT),
        }
    }

    fn stat_file(&self, k: &Kernel) -> Vec<u8> {
        let n = ncpus();
        let busy = ticks(total_cpu_ns(k));
        let up = ticks(k.boot.elapsed().as_nanos() as u64);
        let idle = (up * n as u64).saturating_sub(busy);
        let mut s = format!("cpu  {busy} 0 0 {idle} 0 0 0 0 0 0\n");
        for i in 0..n {
            let _ = writeln!(
                s,
                "cpu{i} {} 0 0 {} 0 0 0 0 0 0",
                busy / n as u64,
                idle / n as u64
            );
        }
        let (running, total) = {
            let p = lock(&k.pids);
            let running = p
                .tasks
                .values()
                .filter(|t| t.cur_syscall.load(Ordering::Relaxed) < 0)
                .count();
            (running, p.groups.len())
        };
        let _ = write!(
            s,
            "intr 0\nctxt 0\nbtime {}\nprocesses {total}\nprocs_running {}\nprocs_blocked 0\nsoftirq 0 0 0 0 0 0 0 0 0 0 0\n",
            self.btime(k),
            running.max(1)
        );
        s.into_bytes()
    }

    fn pid_stat(&self, k: &Kernel, g: &ThreadGroup, t: Option<&Task>, in_task: bool) -> Vec<u8> {
        let inner = lock(&g.inner);
        let ppid = inner.parent.as_ref().map(|p| p.tgid).unwrap_or(0);
        let (pgid, sid) = (inner.pgid, inner.sid);
        let nthreads = inner.tasks.len().max(1);
        let cpu: u64 = if in_task {
            t.map(|t| t.cpu_ns.load(Ordering::Relaxed)).unwrap_or(0)
        } else {
            inner
                .tasks
                .iter()
                .map(|t| t.cpu_ns.load(Ordering::Relaxed))
                .sum::<u64>()
                + inner.cpu_ns_dead
        };
        let child_cpu = inner.child_cpu_ns;
        let exit_signal = inner.exit_signal;
        drop(inner);
        let comm = t
            .map(|t| String::from_utf8_lossy(&lock(&t.comm)).into_owned())
            .unwrap_or_default();
        let (vsize, rss) = t.map(mem_sizes).unwrap_or((0, 0));
        let start = ticks(g.start.saturating_duration_since(k.boot).as_nanos() as u64);
        let (mask, pending, ignored, caught) = sig_sets(g, t);
        let (brk_start, arg, env) = t
            .map(|t| {
                let mm = t.mm();
                let mm = lock(&mm);
                (mm.brk_start, mm.arg_range, mm.env_range)
            })
            .unwrap_or((0, (0, 0), (0, 0)));
        format!(
            "{pid} ({comm}) {state} {ppid} {pgid} {sid} 0 -1 4194560 0 0 0 0 {utime} 0 {cutime} 0 20 0 {nthreads} 0 {start} {vsize} {rss} 18446744073709551615 0 0 0 0 0 {pending} {mask} {ignored} {caught} 0 0 0 {exit_signal} 0 0 0 0 0 0 0 0 {brk_start} {} {} {} {} 0\n",
            arg.0,
            arg.1,
            env.0,
            env.1,
            pid = t.map(|t| t.tid).unwrap_or(g.tgid),
            state = state_char(g, t),
            utime = ticks(cpu),
            cutime = ticks(child_cpu),
            rss = rss / 4096,
        )
        .into_bytes()
    }
}

/// The file namespace of `t`'s container (the root container's if the
/// process has no live thread).
fn task_vfs(k: &Kernel, t: Option<&Task>) -> Arc<super::fs::vfs::Vfs> {
    match t {
        Some(t) => lock(&t.fs()).vfs.clone(),
        None => k.vfs.clone(),
    }
}

/// The thread group's leader, or any live thread.
fn leader(g: &ThreadGroup) -> Option<Arc<Task>> {
    let inner = lock(&g.inner);
    inner
        .tasks
        .iter()
        .find(|t| t.tid == g.tgid)
        .or(inner.tasks.first())
        .cloned()
}

fn ncpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn total_cpu_ns(k: &Kernel) -> u64 {
    let groups: Vec<Arc<ThreadGroup>> = lock(&k.pids).groups.values().cloned().collect();
    groups
        .iter()
        .map(|g| {
            let inner = lock(&g.inner);
            inner
                .tasks
                .iter()
                .map(|t| t.cpu_ns.load(Ordering::Relaxed))
                .sum::<u64>()
                + inner.cpu_ns_dead
                + inner.child_cpu_ns
        })
        .sum()
}

/// Virtual size and an estimate of the resident size (bytes): private
/// writable and file-backed mappings count, reserved-but-inaccessible
/// regions do not.
fn mem_sizes(t: &Task) -> (u64, u64) {
    let mm = t.mm();
    let mm = lock(&mm);
    let vs = mm.virtual_size();
    let rss = mm
        .vmas()
        .filter(|v| v.prot != libc::PROT_NONE && !matches!(v.name, VmaName::Stack))
        .map(|v| v.end - v.start)
        .sum::<u64>()
        .min(vs);
    (vs, rss)
}

/// cmdline (`args`) or environ, NUL-separated, from the process memory.
fn arg_bytes(t: &Task, args: bool) -> Vec<u8> {
    let mm = t.mm();
    let mm = lock(&mm);
    let (s, e) = if args { mm.arg_range } else { mm.env_range };
    let mut buf = vec![0u8; e.saturating_sub(s).min(1 << 20) as usize];
    if mm.read(s, &mut buf).is_err() {
        return Vec::new();
    }
    buf
}

fn sys_node(k: &Kernel, rest: &[&[u8]]) -> KResult<Node> {
    let d = libc::DT_DIR;
    let r = libc::DT_REG;
    let f = |s: &str| Ok(Node::File(s.as_bytes().to_vec()));
    match rest {
        [] => Ok(Node::Dir(names(&[("kernel", d), ("vm", d), ("fs", d)]))),
        [b"kernel"] => Ok(Node::Dir(names(&[
            ("hostname", r),
            ("domainname", r),
            ("osrelease", r),
            ("ostype", r),
            ("version", r),
            ("pid_max", r),
            ("threads-max", r),
            ("ngroups_max", r),
            ("cap_last_cap", r),
            ("random", d),
        ]))),
        [b"kernel", b"hostname"] => {
            let mut h = lock(&k.hostname).clone();
            h.push(b'\n');
            Ok(Node::File(h))
        }
        [b"kernel", b"domainname"] => f("(none)\n"),
        [b"kernel", b"osrelease"] => f("6.8.0-rvisor\n"),
        [b"kernel", b"ostype"] => f("Linux\n"),
        [b"kernel", b"version"] => f("#1 SMP PREEMPT_DYNAMIC\n"),
        [b"kernel", b"pid_max"] => f("4194304\n"),
        [b"kernel", b"threads-max"] => f("65536\n"),
        [b"kernel", b"ngroups_max"] => f("65536\n"),
        [b"kernel", b"cap_last_cap"] => f("40\n"),
        [b"kernel", b"random"] => Ok(Node::Dir(names(&[("boot_id", r), ("uuid", r)]))),
        [b"kernel", b"random", b"boot_id"] => f("6b1e0f2a-1d0c-4c65-9a53-727669736f72\n"),
        [b"kernel", b"random", b"uuid"] => {
            let mut b = [0u8; 16];
            let _ = std::fs::File::open("/dev/urandom")
                .and_then(|mut u| std::io::Read::read_exact(&mut u, &mut b));
            let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
            f(&format!(
                "{}-{}-{}-{}-{}\n",
                &h[0..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..32]
            ))
        }
        [b"vm"] => Ok(Node::Dir(names(&[
            ("overcommit_memory", r),
            ("max_map_count", r),
        ]))),
        [b"vm", b"overcommit_memory"] => f("0\n"),
        [b"vm", b"max_map_count"] => f("65530\n"),
        [b"fs"] => Ok(Node::Dir(names(&[("file-max", r), ("nr_open", r)]))),
        [b"fs", b"file-max"] => f("9223372036854775807\n"),
        [b"fs", b"nr_open"] => f("1048576\n"),
        _ => Err(Errno::ENOENT),
    }
}

fn meminfo(k: &Kernel) -> Vec<u8> {
    let total = nix::sys::sysinfo::sysinfo()
        .map(|s| s.ram_total())
        .unwrap_or(1 << 30)
        / 1024;
    let used = (k.mf.usage() / 1024).min(total);
    let free = total.saturating_sub(used);
    let mut s = String::new();
    for (name, v) in [
        ("MemTotal", total),
        ("MemFree", free),
        ("MemAvailable", free),
        ("Buffers", 0),
        ("Cached", 0),
        ("SwapCached", 0),
        ("Active", used),
        ("Inactive", 0),
        ("Active(anon)", used),
        ("Inactive(anon)", 0),
        ("Active(file)", 0),
        ("Inactive(file)", 0),
        ("Unevictable", 0),
        ("Mlocked", 0),
        ("SwapTotal", 0),
        ("SwapFree", 0),
        ("Dirty", 0),
        ("Writeback", 0),
        ("AnonPages", used),
        ("Mapped", 0),
        ("Shmem", 0),
        ("KReclaimable", 0),
        ("Slab", 0),
        ("SReclaimable", 0),
        ("SUnreclaim", 0),
        ("KernelStack", 0),
        ("PageTables", 0),
        ("CommitLimit", total),
        ("Committed_AS", used),
        ("VmallocTotal", 34_359_738_367),
        ("VmallocUsed", 0),
        ("VmallocChunk", 0),
        ("HugePages_Total", 0),
        ("HugePages_Free", 0),
    ] {
        let label = format!("{name}:");
        if name.starts_with("HugePages") {
            let _ = writeln!(s, "{label:<16}{v:>8}");
        } else {
            let _ = writeln!(s, "{label:<16}{v:>8} kB");
        }
    }
    s += "Hugepagesize:       2048 kB\n";
    s.into_bytes()
}

/// 'Z' for zombies, 'R' for the caller itself and for tasks running
/// application code, 'S' for tasks blocked in (or serving) a syscall.
fn state_char(g: &ThreadGroup, t: Option<&Task>) -> char {
    if lock(&g.inner).state != TgState::Running {
        return 'Z';
    }
    match t {
        Some(t) if t.tid == current().0 => 'R',
        Some(t) if t.cur_syscall.load(Ordering::Relaxed) >= 0 => 'S',
        Some(_) => 'R',
        None => 'Z',
    }
}

/// (blocked, pending, ignored, caught) signal sets.
fn sig_sets(g: &ThreadGroup, t: Option<&Task>) -> (u64, u64, u64, u64) {
    let (mask, mut pending) = t
        .map(|t| {
            let s = lock(&t.sig);
            (s.mask, s.pending.set)
        })
        .unwrap_or((0, 0));
    pending |= lock(&g.inner).pending.set;
    let handlers = g.handlers();
    let h = lock(&handlers);
    let (mut ign, mut cgt) = (0u64, 0u64);
    for (i, a) in h.actions.iter().enumerate() {
        if a.handler == signal::SIG_IGN {
            ign |= 1 << i;
        } else if a.handler != signal::SIG_DFL {
            cgt |= 1 << i;
        }
    }
    (mask, pending, ign, cgt)
}

fn pid_status(g: &ThreadGroup, t: Option<&Task>) -> Vec<u8> {
    let inner = lock(&g.inner);
    let ppid = inner.parent.as_ref().map(|p| p.tgid).unwrap_or(0);
    let c = inner.cred;
    let nthreads = inner.tasks.len().max(1);
    drop(inner);
    let comm = t
        .map(|t| String::from_utf8_lossy(&lock(&t.comm)).into_owned())
        .unwrap_or_default();
    let umask = t.map(|t| lock(&t.fs()).umask).unwrap_or(0o022);
    let (mask, pending, ign, cgt) = sig_sets(g, t);
    let (vs, rss) = t.map(mem_sizes).unwrap_or((0, 0));
    let (vs, rss) = (vs / 1024, rss / 1024);
    let fdsize = t
        .map(|t| {
            let files = t.files();
            let n = lock(&files).iter().map(|(fd, _)| *fd).max().unwrap_or(0);
            ((n as usize + 1).next_power_of_two()).max(64)
        })
        .unwrap_or(64);
    let st = match state_char(g, t) {
        'S' => "S (sleeping)",
        'Z' => "Z (zombie)",
        _ => "R (running)",
    };
    let cpus = ncpus();
    let mut s = String::new();
    let _ = write!(
        s,
        "Name:\t{comm}\nUmask:\t{umask:04o}\nState:\t{st}\nTgid:\t{tgid}\nNgid:\t0\nPid:\t{pid}\nPPid:\t{ppid}\nTracerPid:\t0\n\
         Uid:\t{}\t{}\t{}\t{}\nGid:\t{}\t{}\t{}\t{}\nFDSize:\t{fdsize}\nGroups:\t\nNStgid:\t{tgid}\nNSpid:\t{pid}\nNSpgid:\t{tgid}\nNSsid:\t{tgid}\n\
         VmPeak:\t{vs:>8} kB\nVmSize:\t{vs:>8} kB\nVmLck:\t       0 kB\nVmPin:\t       0 kB\nVmHWM:\t{rss:>8} kB\nVmRSS:\t{rss:>8} kB\n\
         RssAnon:\t{rss:>8} kB\nRssFile:\t       0 kB\nRssShmem:\t       0 kB\nVmData:\t{rss:>8} kB\nVmStk:\t     132 kB\nVmExe:\t       0 kB\nVmLib:\t       0 kB\nVmPTE:\t       0 kB\nVmSwap:\t       0 kB\n\
         Threads:\t{nthreads}\nSigQ:\t0/65536\nSigPnd:\t{pending:016x}\nShdPnd:\t{pending:016x}\nSigBlk:\t{mask:016x}\nSigIgn:\t{ign:016x}\nSigCgt:\t{cgt:016x}\n\
         CapInh:\t0000000000000000\nCapPrm:\t{cap}\nCapEff:\t{cap}\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t0\nSeccomp_filters:\t0\n\
         Cpus_allowed:\t{cpumask:x}\nCpus_allowed_list:\t0-{}\nMems_allowed:\t1\nMems_allowed_list:\t0\nvoluntary_ctxt_switches:\t0\nnonvoluntary_ctxt_switches:\t0\n",
        c.uid.0,
        c.uid.1,
        c.uid.2,
        c.uid.1,
        c.gid.0,
        c.gid.1,
        c.gid.2,
        c.gid.1,
        cpus - 1,
        tgid = g.tgid,
        pid = t.map(|t| t.tid).unwrap_or(g.tgid),
        cap = if c.uid.1 == 0 {
            "000001ffffffffff"
        } else {
            "0000000000000000"
        },
        cpumask = if cpus >= 64 {
            u64::MAX
        } else {
            (1u64 << cpus) - 1
        },
    );
    s.into_bytes()
}

fn limits(g: &ThreadGroup) -> Vec<u8> {
    let lim = lock(&g.inner).rlimits;
    let mut s = String::from(
        "Limit                     Soft Limit           Hard Limit           Units     \n",
    );
    let rows = [
        ("Max cpu time", "seconds"),
        ("Max file size", "bytes"),
        ("Max data size", "bytes"),
        ("Max stack size", "bytes"),
        ("Max core file size", "bytes"),
        ("Max resident set", "bytes"),
        ("Max processes", "processes"),
        ("Max open files", "files"),
        ("Max locked memory", "bytes"),
        ("Max address space", "bytes"),
        ("Max file locks", "locks"),
        ("Max pending signals", "signals"),
        ("Max msgqueue size", "bytes"),
        ("Max nice priority", ""),
        ("Max realtime priority", ""),
        ("Max realtime timeout", "us"),
    ];
    let f = |v: u64| {
        if v == u64::MAX {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    for (i, (n, unit)) in rows.iter().enumerate() {
        let _ = writeln!(
            s,
            "{:<26}{:<21}{:<21}{:<10}",
            n,
            f(lim[i].0),
            f(lim[i].1),
            unit
        );
    }
    s.into_bytes()
}

fn maps(t: &Task, smaps: bool) -> Vec<u8> {
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
            let _ = writeln!(s, "{line:<73}{name}");
        }
        if smaps {
            let kb = (v.end - v.start) / 1024;
            let _ = write!(
                s,
                "Size:           {kb:>8} kB\nKernelPageSize:        4 kB\nMMUPageSize:           4 kB\nRss:            {kb:>8} kB\nPss:            {kb:>8} kB\n\
                 Shared_Clean:          0 kB\nShared_Dirty:          0 kB\nPrivate_Clean:         0 kB\nPrivate_Dirty:  {kb:>8} kB\nReferenced:     {kb:>8} kB\n\
                 Anonymous:      {kb:>8} kB\nSwap:                  0 kB\nSwapPss:               0 kB\nLocked:                0 kB\nVmFlags: {}{}{}\n",
                if v.prot & libc::PROT_READ != 0 {
                    "rd "
                } else {
                    ""
                },
                if v.prot & libc::PROT_WRITE != 0 {
                    "wr "
                } else {
                    ""
                },
                if v.prot & libc::PROT_EXEC != 0 {
                    "ex "
                } else {
                    ""
                },
            );
        }
    }
    s.into_bytes()
}

/// Escapes a path for /proc/mounts (space, tab, newline, backslash).
fn mangle(p: &[u8]) -> String {
    let mut s = String::new();
    for &b in p {
        match b {
            b' ' => s += "\\040",
            b'\t' => s += "\\011",
            b'\n' => s += "\\012",
            b'\\' => s += "\\134",
            _ => s.push(b as char),
        }
    }
    s
}

fn mount_opts(m: &MountInfo) -> String {
    let mut o = String::from(if m.read_only { "ro" } else { "rw" });
    match m.fs_type {
        "proc" | "sysfs" => o += ",nosuid,nodev,noexec,relatime",
        "tmpfs" | "devtmpfs" => o += ",nosuid,nodev",
        _ => o += ",relatime",
    }
    o
}

/// /proc/mounts text for a mount table (the format of fstab(5)).
pub fn mounts_text(ms: &[MountInfo]) -> Vec<u8> {
    let mut s = String::new();
    for m in ms {
        let mut opts = mount_opts(m);
        if !m.data.is_empty() {
            opts.push(',');
            opts += &m.data;
        }
        let _ = writeln!(
            s,
            "{} {} {} {} 0 0",
            mangle(m.source.as_bytes()),
            mangle(&m.path),
            m.fs_type,
            opts
        );
    }
    s.into_bytes()
}

/// /proc/<pid>/mountinfo text (see proc(5)).
pub fn mountinfo_text(ms: &[MountInfo]) -> Vec<u8> {
    let mut s = String::new();
    for m in ms {
        let (maj, min) = (libc::major(m.dev), libc::minor(m.dev));
        let mut sopts = String::from(if m.read_only { "ro" } else { "rw" });
        if !m.data.is_empty() {
            sopts.push(',');
            sopts += &m.data;
        }
        let _ = writeln!(
            s,
            "{} {} {maj}:{min} / {} {} - {} {} {sopts}",
            m.id,
            m.parent,
            mangle(&m.path),
            mount_opts(m),
            m.fs_type,
            mangle(m.source.as_bytes()),
        );
    }
    s.into_bytes()
}

fn mode_of(n: &Node) -> u32 {
    match n {
        Node::Dir(_) => libc::S_IFDIR,
        Node::File(_) => libc::S_IFREG,
        Node::Link(_) | Node::Fd(_) => libc::S_IFLNK,
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

/// What `readlink` shows for an open file.
fn fd_target(f: &OpenFile) -> Vec<u8> {
    if let Some(n) = f.ops.proc_name() {
        return n.into_bytes();
    }
    if !f.path.is_empty() {
        return f.path.clone();
    }
    let ino = f.ops.stat().map(|s| s.st_ino).unwrap_or(0);
    format!("anon_inode:[{ino}]").into_bytes()
}

fn stat_of(rel: &[u8], e: &Entry) -> Stat {
    let size = match &e.node {
        Node::Link(t) => t.len() as i64,
        Node::Fd(f) => fd_target(f).len() as i64,
        _ => 0,
    };
    let (atime, mtime) = {
        let now = super::fs::vfs::now();
        (now, now)
    };
    Stat {
        st_dev: PROC_DEV,
        st_ino: ino_of(rel),
        st_nlink: if matches!(e.node, Node::Dir(_)) { 2 } else { 1 },
        st_mode: mode_of(&e.node) | e.perm,
        st_uid: e.uid,
        st_gid: e.gid,
        st_size: size,
        st_blksize: 1024,
        st_atime: atime.0,
        st_atime_nsec: atime.1,
        st_mtime: mtime.0,
        st_mtime_nsec: mtime.1,
        st_ctime: mtime.0,
        st_ctime_nsec: mtime.1,
        ..Default::default()
    }
}

impl SyntheticFs for ProcFs {
    fn stat(&self, rel: &[u8]) -> KResult<Stat> {
        Ok(stat_of(rel, &self.lookup(rel)?))
    }

    fn readlink(&self, rel: &[u8]) -> KResult<Vec<u8>> {
        match self.lookup(rel)?.node {
            Node::Link(t) => Ok(t),
            Node::Fd(f) => Ok(fd_target(&f)),
            _ => Err(Errno::EINVAL),
        }
    }

    fn magic_link(&self, rel: &[u8]) -> Option<Arc<OpenFile>> {
        // Only .../fd/N can be one: skip the lookup for everything else.
        let mut parts = rel.rsplit(|b| *b == b'/');
        let _n = parts.next()?;
        if parts.next()? != b"fd" {
            return None;
        }
        match self.lookup(rel).ok()?.node {
            Node::Fd(f) => Some(f),
            _ => None,
        }
    }

    fn open(&self, rel: &[u8], flags: i32) -> KResult<Box<dyn FileOps>> {
        let e = self.lookup(rel)?;
        let stat = stat_of(rel, &e);
        match e.node {
            Node::File(data) => {
                if flags & libc::O_ACCMODE != libc::O_RDONLY {
                    return Err(Errno::EACCES);
                }
                Ok(Box::new(SnapFile {
                    stat: Stat { st_size: 0, ..stat },
                    data,
                }))
            }
            Node::Dir(_) => Err(Errno::EISDIR),
            Node::Link(_) | Node::Fd(_) => Err(Errno::ELOOP),
        }
    }

    fn readdir(&self, rel: &[u8]) -> KResult<Vec<DirEntry>> {
        match self.lookup(rel)?.node {
            Node::Dir(v) => Ok(v
                .into_iter()
                .map(|(name, kind)| {
                    let mut p = rel.to_vec();
                    if !p.is_empty() {
                        p.push(b'/');
                    }
                    p.extend_from_slice(&name);
                    DirEntry {
                        ino: ino_of(&p),
                        kind,
                        name,
                    }
                })
                .collect()),
            _ => Err(Errno::ENOTDIR),
        }
    }

    fn fs_magic(&self) -> i64 {
        PROC_SUPER_MAGIC
    }

    fn fs_name(&self) -> &'static str {
        "proc"
    }
}
