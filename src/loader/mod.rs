//! The loader: builds a kernel from an OCI spec and runs its root
//! container, with a lifecycle encoded in types.

pub mod mounts;

use crate::kernel::fdtable::FdTable;
use crate::kernel::fs::vfs::{RootMode, Vfs};
use crate::kernel::run::{self, ContextSource};
use crate::kernel::task::{
    Cred, FsContext, Task, TaskSignals, TgInner, TgState, ThreadGroup, default_rlimits, lock,
};
use crate::kernel::{Kernel, KernelConfig, exec};
use crate::platform::PlatformKind;
use crate::state::{Created, Started, State};
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Errors of the loader.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A host operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The host error.
        source: std::io::Error,
    },
    /// The OCI spec is unusable.
    #[error("invalid spec: {0}")]
    Spec(String),
    /// The container's program could not be executed.
    #[error("cannot execute {path}: {errno}")]
    Exec {
        /// The program.
        path: String,
        /// Why.
        errno: crate::Errno,
    },
    /// The requested feature is not available.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Sandbox configuration beyond the OCI spec.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Which platform runs application code.
    pub platform: PlatformKind,
    /// Log every syscall (like `runsc --strace`).
    pub strace: bool,
    /// How the root filesystem is written.
    pub root_mode: RootMode,
    /// Mount a fresh tmpfs at /tmp.
    pub tmp_tmpfs: bool,
}

/// Everything needed to create a sandbox.
#[derive(Debug)]
pub struct Args {
    /// The OCI runtime spec (process, root).
    pub spec: oci_spec::runtime::Spec,
    /// Sandbox configuration.
    pub config: Config,
    /// stdin, stdout, stderr of the root container.
    pub stdio: [OwnedFd; 3],
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// exit(code).
    Exited(i32),
    /// Killed by a signal.
    Signaled {
        /// The signal.
        signal: i32,
        /// Whether a core dump was reported.
        core: bool,
    },
}

impl ExitStatus {
    /// From a wait status.
    pub fn from_wait(s: i32) -> ExitStatus {
        if s & 0x7f == 0 {
            ExitStatus::Exited((s >> 8) & 0xff)
        } else {
            ExitStatus::Signaled {
                signal: s & 0x7f,
                core: s & 0x80 != 0,
            }
        }
    }

    /// The exit code a shell would report: the code, or 128+signal.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled { signal, .. } => 128 + signal,
        }
    }
}

struct Inner {
    kernel: Arc<Kernel>,
    argv: Vec<Vec<u8>>,
    envp: Vec<Vec<u8>>,
    cwd: Vec<u8>,
    cred: Cred,
    stdio: Option<[OwnedFd; 3]>,
}

/// A sandbox, in lifecycle state `S`.
pub struct Loader<S: State> {
    inner: Box<Inner>,
    _state: PhantomData<S>,
}

impl<S: State> std::fmt::Debug for Loader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Loader<{}>", S::NAME)
    }
}

fn io_err(context: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        context: context.to_string(),
        source,
    }
}

impl Loader<Created> {
    /// Builds the kernel and the root container's file namespace.
    pub fn new(args: Args) -> Result<Loader<Created>, Error> {
        let spec = &args.spec;
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::Spec("no process".into()))?;
        let argv: Vec<Vec<u8>> = process
            .args()
            .as_ref()
            .map(|a| a.iter().map(|s| s.clone().into_bytes()).collect())
            .unwrap_or_default();
        if argv.is_empty() {
            return Err(Error::Spec("process.args is empty".into()));
        }
        let envp = process
            .env()
            .as_ref()
            .map(|e| e.iter().map(|s| s.clone().into_bytes()).collect())
            .unwrap_or_default();
        let cwd = process.cwd().to_string_lossy().into_owned().into_bytes();
        if cwd.first() != Some(&b'/') {
            return Err(Error::Spec(format!(
                "process.cwd must be absolute, got {:?}",
                process.cwd()
            )));
        }
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| Error::Spec("no root".into()))?;
        let mode = if root.readonly().unwrap_or(false) {
            RootMode::ReadOnly
        } else {
            args.config.root_mode
        };
        let vfs = Vfs::new(root.path(), mode).map_err(io_err("opening the root filesystem"))?;
        let vfs = Arc::new(vfs);
        vfs.mount(b"/dev", Arc::new(crate::kernel::fs::dev::DevFs::new()));
        if args.config.tmp_tmpfs {
            vfs.mount_tmpfs(b"/tmp", None);
        }
        let kcfg = KernelConfig {
            strace: args.config.strace,
            hostname: spec.hostname().clone().unwrap_or_default(),
        };
        let kernel = Kernel::new(vfs, &kcfg).map_err(io_err("starting the kernel"))?;
        let user = process.user();
        let cred = Cred {
            uid: (user.uid(), user.uid(), user.uid()),
            gid: (user.gid(), user.gid(), user.gid()),
        };
        Ok(Loader {
            inner: Box::new(Inner {
                kernel,
                argv,
                envp,
                cwd,
                cred,
                stdio: Some(args.stdio),
            }),
            _state: PhantomData,
        })
    }

    /// Starts the root container: its first process (PID 1) execs the
    /// spec's program.
    pub fn start(mut self) -> Result<Loader<Started>, Error> {
        let inner = &mut self.inner;
        let k = inner.kernel.clone();
        let stdio = inner
            .stdio
            .take()
            .ok_or_else(|| Error::Spec("stdio already used".into()))?;
        let mut files = FdTable::new();
        for (i, fd) in stdio.into_iter().enumerate() {
            let flags = if i == 0 {
                libc::O_RDONLY
            } else {
                libc::O_WRONLY
            };
            let f = crate::kernel::fs::host::host_stream_file(fd, flags);
            files.insert_at(i as i32, f, false);
        }
        let tid = lock(&k.pids).alloc();
        let tg = Arc::new(ThreadGroup {
            tgid: tid,
            inner: Mutex::new(TgInner {
                parent: None,
                children: Vec::new(),
                tasks: Vec::new(),
                pending: Default::default(),
                exit_status: None,
                state: TgState::Running,
                pgid: tid,
                sid: tid,
                exit_signal: libc::SIGCHLD,
                exe: inner.argv[0].clone(),
                cpu_ns_dead: 0,
                child_cpu_ns: 0,
                cred: inner.cred,
                rlimits: default_rlimits(),
                vfork_done: false,
            }),
            handlers: Mutex::new(Default::default()),
            child_wq: Default::default(),
            start: Instant::now(),
        });
        let waker = crate::kernel::wait::Waker::new().map_err(io_err("creating a waker"))?;
        let t = Arc::new(Task {
            tid,
            tg: tg.clone(),
            waker,
            sig: Mutex::new(TaskSignals::default()),
            mm: Mutex::new(Arc::new(Mutex::new(crate::mm::AddressSpace::new(
                k.mf.clone(),
            )))),
            files: Mutex::new(Arc::new(Mutex::new(files))),
            fs: Mutex::new(Arc::new(Mutex::new(FsContext {
                cwd: inner.cwd.clone(),
                umask: 0o022,
            }))),
            killed: AtomicBool::new(false),
            clear_child_tid: AtomicU64::new(0),
            robust_list: AtomicU64::new(0),
            comm: Mutex::new(Vec::new()),
            cpu_ns: AtomicU64::new(0),
            cur_syscall: AtomicI32::new(-1),
        });
        {
            let mut p = lock(&k.pids);
            p.tasks.insert(tid, t.clone());
            p.groups.insert(tid, tg.clone());
        }
        lock(&tg.inner).tasks.push(t.clone());
        let (tx, rx) = crossbeam_channel::bounded(1);
        let argv = inner.argv.clone();
        let envp = inner.envp.clone();
        let path = argv[0].clone();
        // SAFETY: user_regs_struct is plain data; zero is a valid value.
        let regs: crate::platform::Regs = unsafe { std::mem::zeroed() };
        run::spawn(
            k.clone(),
            t,
            regs,
            ContextSource::NewProcess { fp: None },
            None,
            Some(Box::new(move |r: &mut run::Runner| {
                let res = exec::execve(r, &path, argv, envp);
                let _ = tx.send(res);
                res
            })),
        )
        .map_err(io_err("starting the init task"))?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(errno)) => {
                return Err(Error::Exec {
                    path: String::from_utf8_lossy(&inner.argv[0]).into_owned(),
                    errno,
                });
            }
            Err(_) => return Err(Error::Spec("init task vanished".into())),
        }
        Ok(Loader {
            inner: self.inner,
            _state: PhantomData,
        })
    }
}

impl Loader<Started> {
    /// Blocks until the root container's init exits and returns its status.
    pub fn wait(&self) -> ExitStatus {
        ExitStatus::from_wait(self.inner.kernel.wait_init())
    }

    /// The kernel (for inspection).
    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.inner.kernel
    }
}

impl<S: State> Loader<S> {
    /// Kills every process and releases the sandbox.
    pub fn destroy(self) {
        self.inner.kernel.kill_all();
    }
}
