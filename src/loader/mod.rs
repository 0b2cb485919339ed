//! The loader: builds a kernel from an OCI spec and runs its root
//! container, with a lifecycle encoded in types.

pub mod checkpoint;
pub mod filter;
pub mod mounts;

use crate::Errno;
use crate::kernel::control::{ProcessInfo, ProcessSpec, Usage};
use crate::kernel::fs::vfs::{RootMode, Vfs};
use crate::kernel::task::Cred;
use crate::kernel::{Kernel, KernelConfig};
use crate::platform::PlatformKind;
use crate::state::{Checkpointed, Created, Paused, Started, State};
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::sync::Arc;

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
    /// A kernel operation failed.
    #[error("{context}: {errno}")]
    Kernel {
        /// What was being done.
        context: String,
        /// The kernel's errno.
        errno: Errno,
    },
    /// No such container.
    #[error("no container {0:?}")]
    NoContainer(String),
    /// A statefile is unusable (corrupt, truncated, from another version
    /// or CPU); the message says exactly what.
    #[error("statefile: {0}")]
    Statefile(String),
}

impl Error {
    /// The errno that best describes this error.
    pub fn errno(&self) -> Errno {
        match self {
            Error::Io { source, .. } => Errno::from_io(source),
            Error::Spec(_) => Errno::EINVAL,
            Error::Exec { errno, .. } | Error::Kernel { errno, .. } => *errno,
            Error::Unsupported(_) => Errno::ENOSYS,
            Error::NoContainer(_) => Errno::ESRCH,
            Error::Statefile(_) => Errno::EINVAL,
        }
    }
}

fn kerr(context: &str) -> impl FnOnce(Errno) -> Error + '_ {
    move |errno| Error::Kernel {
        context: context.to_string(),
        errno,
    }
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

/// The root container's process, until it starts.
struct RootProcess {
    argv: Vec<Vec<u8>>,
    envp: Vec<Vec<u8>>,
    cwd: Vec<u8>,
    cred: Cred,
    stdio: [OwnedFd; 3],
}

/// A sub-container: its own root filesystem, sharing the sandbox's kernel.
struct SubContainer {
    vfs: Arc<Vfs>,
    pending: Option<RootProcess>,
    init: Option<i32>,
}

struct Inner {
    id: String,
    kernel: Arc<Kernel>,
    spec: oci_spec::runtime::Spec,
    config: Config,
    root: Option<RootProcess>,
    subs: std::sync::Mutex<std::collections::HashMap<String, SubContainer>>,
    /// The root container's terminal, when its spec asks for one.
    console: std::sync::Mutex<Option<crate::kernel::pty::Console>>,
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

/// How a signal reaches its target (gVisor's `SignalDeliveryMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SignalDelivery {
    /// To one process.
    Process(i32),
    /// To every process of the container; the world is paused while the
    /// signal is sent, so nothing forks its way out of a SIGKILL.
    AllProcesses,
    /// To the foreground process group of the container's terminal, or of
    /// the given process when there is no terminal.
    ForegroundProcessGroup(i32),
}

/// What to run for `exec`.
#[derive(Debug)]
pub struct ExecArgs {
    /// Program and arguments.
    pub argv: Vec<Vec<u8>>,
    /// Environment.
    pub envp: Vec<Vec<u8>>,
    /// Working directory.
    pub cwd: Vec<u8>,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// stdin, stdout, stderr.
    pub stdio: [OwnedFd; 3],
}

/// A handle on a sandbox's kernel for operations that may block (waiting
/// for a process) without holding the loader itself.
#[derive(Debug, Clone)]
pub struct KernelHandle(Arc<Kernel>);

impl KernelHandle {
    /// Waits for the root container's init and returns its status.
    pub fn wait_root(&self) -> ExitStatus {
        ExitStatus::from_wait(self.0.wait_init())
    }

    /// Waits for a process; one started from outside is reaped.
    pub fn wait_pid(&self, pid: i32) -> Result<ExitStatus, Error> {
        self.0
            .wait_pid(pid)
            .map(ExitStatus::from_wait)
            .map_err(kerr("wait"))
    }

    /// The root container's status, if its init has exited.
    pub fn root_status(&self) -> Option<ExitStatus> {
        self.0.init_status().map(ExitStatus::from_wait)
    }

    /// The kernel.
    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.0
    }
}

fn stdio_files(stdio: [OwnedFd; 3]) -> Vec<Arc<crate::kernel::fs::file::OpenFile>> {
    stdio
        .into_iter()
        .enumerate()
        .map(|(i, fd)| {
            crate::kernel::fs::host::host_stream_file(
                fd,
                if i == 0 {
                    libc::O_RDONLY
                } else {
                    libc::O_WRONLY
                },
            )
        })
        .collect()
}

impl<S: State> Loader<S> {
    fn into_state<T: State>(self) -> Loader<T> {
        Loader {
            inner: self.inner,
            _state: PhantomData,
        }
    }

    /// The sandbox's id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// A handle for blocking waits.
    pub fn handle(&self) -> KernelHandle {
        KernelHandle(self.inner.kernel.clone())
    }

    /// The kernel (for inspection).
    pub fn kernel(&self) -> &Arc<Kernel> {
        &self.inner.kernel
    }

    /// Kills every process and releases the sandbox.
    pub fn destroy(self) {
        self.inner.kernel.kill_all();
        if self.inner.kernel.is_paused() {
            self.inner.kernel.resume();
        }
    }
}

/// Operations that make sense whenever processes exist (running or paused).
macro_rules! inspect_ops {
    ($state:ty) => {
        impl Loader<$state> {
            /// The process listing (like `ps`).
            pub fn processes(&self) -> Vec<ProcessInfo> {
                self.inner.kernel.processes(None)
            }

            /// Resource usage.
            pub fn usage(&self) -> Usage {
                self.inner.kernel.usage(None)
            }

            /// Every task's state and registers, and the kernel's own stack.
            pub fn stacks(&self) -> String {
                self.inner.kernel.stacks()
            }

            /// Turns syscall tracing on or off (optionally only some syscalls).
            pub fn set_strace(&self, on: bool, allow: Option<Vec<String>>) {
                self.inner.kernel.set_strace(on, allow);
            }

            /// Sends a signal.
            pub fn signal(&self, signo: i32, mode: SignalDelivery) -> Result<(), Error> {
                let k = &self.inner.kernel;
                match mode {
                    SignalDelivery::Process(pid) => k.signal_process(pid, signo),
                    SignalDelivery::AllProcesses => k.signal_all(signo, Some(&self.inner.id)),
                    SignalDelivery::ForegroundProcessGroup(pid) => {
                        let g = k.group(pid).ok_or(Errno::ESRCH).map_err(kerr("signal"))?;
                        let pgid = crate::kernel::task::lock(&g.inner).pgid;
                        k.signal_process_group(pgid, signo)
                    }
                }
                .map_err(kerr("signal"))
            }
        }
    };
}

inspect_ops!(Started);
inspect_ops!(Paused);

impl Loader<Created> {
    /// Builds the kernel and the root container's file namespace.
    pub fn new(args: Args) -> Result<Loader<Created>, Error> {
        Self::with_id("sandbox", args)
    }

    /// Like `new`, naming the sandbox (and its root container) `id`.
    pub fn with_id(id: &str, args: Args) -> Result<Loader<Created>, Error> {
        let (process, vfs) = container_parts(&args.spec, &args.config, args.stdio)?;
        let kcfg = KernelConfig {
            strace: args.config.strace,
            hostname: args.spec.hostname().clone().unwrap_or_default(),
        };
        let kernel = Kernel::new(vfs.clone(), &kcfg).map_err(io_err("starting the kernel"))?;
        // Spec mounts go on once the kernel exists (a `proc` mount needs it).
        mounts::apply(&vfs, &args.spec).map_err(Error::Spec)?;
        Ok(Loader {
            inner: Box::new(Inner {
                id: id.to_string(),
                kernel,
                spec: args.spec.clone(),
                config: args.config.clone(),
                root: Some(process),
                subs: std::sync::Mutex::new(std::collections::HashMap::new()),
                console: std::sync::Mutex::new(None),
            }),
            _state: PhantomData,
        })
    }

    /// Starts the root container: its first process (PID 1) execs the
    /// spec's program.
    pub fn start(mut self) -> Result<Loader<Started>, Error> {
        let root = self
            .inner
            .root
            .take()
            .ok_or_else(|| Error::Spec("root container already started".into()))?;
        let path = String::from_utf8_lossy(&root.argv[0]).into_owned();
        let terminal = self
            .inner
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        let (stdio, console) = if terminal {
            // The container gets a pseudo-terminal as its controlling
            // terminal; our stdin/stdout are relayed to its master.
            let [stdin, stdout, _stderr] = root.stdio;
            let (slave, console) =
                crate::kernel::pty::attach_console(&self.inner.kernel, stdin, stdout)
                    .map_err(kerr("console"))?;
            (vec![slave.clone(), slave.clone(), slave], Some(console))
        } else {
            (stdio_files(root.stdio), None)
        };
        let spec = ProcessSpec {
            argv: root.argv,
            envp: root.envp,
            cwd: root.cwd,
            cred: root.cred,
            stdio,
            container: self.inner.id.clone(),
            vfs: None,
        };
        match self.inner.kernel.create_process(spec) {
            Ok(pid) => {
                if let Some(c) = console {
                    c.set_controlling(pid, pid);
                    *crate::kernel::task::lock(&self.inner.console) = Some(c);
                }
                Ok(self.into_state())
            }
            Err(errno) => Err(Error::Exec { path, errno }),
        }
    }
}

impl Loader<Started> {
    /// Blocks until the root container's init exits and returns its status.
    pub fn wait(&self) -> ExitStatus {
        let st = self.handle().wait_root();
        // Everything the container wrote to its terminal reaches ours.
        if let Some(c) = crate::kernel::task::lock(&self.inner.console).take() {
            c.close();
        }
        st
    }

    /// Waits for a process (reaping it if it was started by `exec`).
    pub fn wait_pid(&self, pid: i32) -> Result<ExitStatus, Error> {
        self.handle().wait_pid(pid)
    }

    /// Starts a new process in the root container; returns its PID.
    pub fn exec(&self, args: ExecArgs) -> Result<i32, Error> {
        let path =
            String::from_utf8_lossy(args.argv.first().map(|v| v.as_slice()).unwrap_or_default())
                .into_owned();
        let spec = ProcessSpec {
            argv: args.argv,
            envp: args.envp,
            cwd: args.cwd,
            cred: Cred {
                uid: (args.uid, args.uid, args.uid),
                gid: (args.gid, args.gid, args.gid),
            },
            stdio: stdio_files(args.stdio),
            container: self.inner.id.clone(),
            vfs: None,
        };
        self.inner
            .kernel
            .create_process(spec)
            .map_err(|errno| Error::Exec { path, errno })
    }

    /// Stops every task; no application instruction runs until `resume`.
    pub fn pause(self) -> Result<Loader<Paused>, (Self, Error)> {
        match self.inner.kernel.pause() {
            Ok(()) => Ok(self.into_state()),
            Err(e) => {
                self.inner.kernel.resume();
                Err((self, kerr("pause")(e)))
            }
        }
    }
}

impl Loader<Paused> {
    /// Lets the world run again.
    pub fn resume(self) -> Loader<Started> {
        self.inner.kernel.resume();
        self.into_state()
    }
}

impl Loader<Checkpointed> {
    /// Lets the saved sandbox run on.
    pub fn resume(self) -> Loader<Started> {
        self.inner.kernel.resume();
        self.into_state()
    }
}

/// The first process and the file namespace a container spec describes.
fn container_parts(
    spec: &oci_spec::runtime::Spec,
    config: &Config,
    stdio: [OwnedFd; 3],
) -> Result<(RootProcess, Arc<Vfs>), Error> {
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
        config.root_mode
    };
    let vfs = Arc::new(Vfs::new(root.path(), mode).map_err(io_err("opening the root filesystem"))?);
    if config.tmp_tmpfs && !spec_mounts_at(spec, "/tmp") {
        // Like gVisor: a fresh tmpfs at /tmp, unless the image has files
        // there that it would hide.
        vfs.mount_tmpfs_if_empty(b"/tmp", None);
    }
    let user = process.user();
    let cred = Cred {
        uid: (user.uid(), user.uid(), user.uid()),
        gid: (user.gid(), user.gid(), user.gid()),
    };
    Ok((
        RootProcess {
            argv,
            envp,
            cwd,
            cred,
            stdio,
        },
        vfs,
    ))
}

impl Loader<Started> {
    /// Creates sub-container `id` in this sandbox: its own root filesystem
    /// and mounts, sharing the kernel. Not started.
    pub fn create_subcontainer(
        &self,
        id: &str,
        spec: &oci_spec::runtime::Spec,
        config: &Config,
        stdio: [OwnedFd; 3],
    ) -> Result<(), Error> {
        if id == self.inner.id || id.is_empty() {
            return Err(Error::Kernel {
                context: format!("create container {id:?}"),
                errno: Errno::EEXIST,
            });
        }
        let mut subs = crate::kernel::task::lock(&self.inner.subs);
        if subs.contains_key(id) {
            return Err(Error::Kernel {
                context: format!("create container {id:?}"),
                errno: Errno::EEXIST,
            });
        }
        let (process, vfs) = container_parts(spec, config, stdio)?;
        self.inner.kernel.mount_proc(&vfs);
        mounts::apply(&vfs, spec).map_err(Error::Spec)?;
        subs.insert(
            id.to_string(),
            SubContainer {
                vfs,
                pending: Some(process),
                init: None,
            },
        );
        Ok(())
    }

    /// Starts sub-container `id`'s first process; returns its PID.
    pub fn start_subcontainer(&self, id: &str) -> Result<i32, Error> {
        let (process, vfs) = {
            let mut subs = crate::kernel::task::lock(&self.inner.subs);
            let sub = subs
                .get_mut(id)
                .ok_or_else(|| Error::NoContainer(id.to_string()))?;
            let p = sub.pending.take().ok_or_else(|| Error::Kernel {
                context: format!("start container {id:?}: already started"),
                errno: Errno::EINVAL,
            })?;
            (p, sub.vfs.clone())
        };
        let path = String::from_utf8_lossy(&process.argv[0]).into_owned();
        let spec = ProcessSpec {
            argv: process.argv,
            envp: process.envp,
            cwd: process.cwd,
            cred: process.cred,
            stdio: stdio_files(process.stdio),
            container: id.to_string(),
            vfs: Some(vfs),
        };
        let pid = self
            .inner
            .kernel
            .create_process(spec)
            .map_err(|errno| Error::Exec { path, errno })?;
        if let Some(s) = crate::kernel::task::lock(&self.inner.subs).get_mut(id) {
            s.init = Some(pid);
        }
        Ok(pid)
    }

    /// Kills every process of sub-container `id` and forgets it.
    pub fn destroy_subcontainer(&self, id: &str) -> Result<(), Error> {
        let sub = crate::kernel::task::lock(&self.inner.subs).remove(id);
        if sub.is_none() {
            return Err(Error::NoContainer(id.to_string()));
        }
        self.inner
            .kernel
            .signal_all(libc::SIGKILL, Some(id))
            .map_err(kerr("destroy"))?;
        if let Some(pid) = sub.and_then(|s| s.init) {
            let _ = self.inner.kernel.wait_pid(pid);
        }
        Ok(())
    }

    /// The init PID of sub-container `id` (None before it started).
    pub fn subcontainer_init(&self, id: &str) -> Result<Option<i32>, Error> {
        crate::kernel::task::lock(&self.inner.subs)
            .get(id)
            .map(|s| s.init)
            .ok_or_else(|| Error::NoContainer(id.to_string()))
    }

    /// The ids of the sub-containers.
    pub fn subcontainers(&self) -> Vec<String> {
        crate::kernel::task::lock(&self.inner.subs)
            .keys()
            .cloned()
            .collect()
    }
}

fn spec_mounts_at(spec: &oci_spec::runtime::Spec, dest: &str) -> bool {
    spec.mounts().as_ref().is_some_and(|m| {
        m.iter()
            .any(|m| m.destination() == std::path::Path::new(dest))
    })
}

/// Illegal transitions do not compile.
///
/// ```compile_fail,E0599
/// # fn f(l: rvisor::Loader<rvisor::state::Created>) {
/// let _ = l.pause(); // no pause before start
/// # }
/// ```
///
/// ```compile_fail,E0599
/// # fn f(l: rvisor::Loader<rvisor::state::Checkpointed>, a: rvisor::loader::ExecArgs) {
/// let _ = l.exec(a); // no exec on a saved sandbox
/// # }
/// ```
///
/// ```compile_fail,E0599
/// # fn f(l: rvisor::Loader<rvisor::state::Paused>) {
/// let _ = l.wait(); // wait only while started
/// # }
/// ```
///
/// ```compile_fail,E0599
/// # fn f(l: rvisor::Loader<rvisor::state::Started>) {
/// let _ = l.start(); // started once
/// # }
/// ```
///
/// And the legal ones do:
///
/// ```no_run
/// # fn f(l: rvisor::Loader<rvisor::state::Created>) -> Result<(), rvisor::Error> {
/// let started = l.start()?;
/// let paused = started.pause().map_err(|(_, e)| e)?;
/// let started = paused.resume();
/// started.destroy();
/// # Ok(()) }
/// ```
pub struct TransitionDocs;
