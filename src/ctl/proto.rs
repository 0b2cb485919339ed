//! The control protocol's messages: one [`Request`] per operation of
//! `runsc boot`'s control server, one [`Response`] shape per kind of result.
//!
//! Every type here is plain data with serde derives and no
//! `skip_serializing_if`: postcard is not self-describing, so a skipped
//! field would desynchronise the decoder. The OCI [`Spec`] (whose serde
//! impls do skip fields) therefore travels as a JSON string inside the
//! postcard payload.
//!
//! File descriptors never appear in these types: they ride next to the
//! frame with `SCM_RIGHTS`, and [`Request::expected_fds`] says how many a
//! request must carry. The server checks that count before any handler
//! sees the request.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::frame::{MAX_FDS, Message};
use crate::Errno;

/// A container's id inside a sandbox (the root container's id is the
/// sandbox id).
pub type ContainerId = String;

/// A control request: one variant per operation of the control server.
///
/// The comment of each variant names the file descriptors that must ride
/// with it; see [`Request::expected_fds`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Creates a sub-container `id` from `spec`, not yet started
    /// (`containerManager.Create`). Carries `stdio_fds` descriptors: 0 (the
    /// container's stdio is `/dev/null`) or 3 (stdin, stdout, stderr).
    Create {
        /// The new container's id.
        id: ContainerId,
        /// Its OCI runtime spec (process, root, mounts...).
        #[serde(with = "spec_json")]
        spec: Box<Spec>,
        /// How many stdio descriptors ride with the request.
        stdio_fds: u8,
    },
    /// Starts the created sub-container `id` (`containerManager.Start`).
    Start {
        /// The container to start.
        id: ContainerId,
    },
    /// Starts the root container (`containerManager.StartRoot`).
    StartRoot,
    /// Kills every process of container `id` and frees its resources
    /// (`containerManager.Destroy`).
    Destroy {
        /// The container to destroy.
        id: ContainerId,
    },
    /// Waits for container `id`'s init process to exit; answered with
    /// [`Response::WaitStatus`] (`containerManager.Wait`).
    Wait {
        /// The container to wait for.
        id: ContainerId,
    },
    /// Waits for, and reaps, process `pid` (in the container's PID
    /// namespace, or an exec'd process); answered with
    /// [`Response::WaitStatus`] (`containerManager.WaitPID`).
    WaitPid {
        /// The container the process belongs to.
        id: ContainerId,
        /// The process, in the container's PID namespace.
        pid: i32,
    },
    /// Runs a new process in container `id` and answers at once with its
    /// PID ([`Response::Pid`]) (`containerManager.ExecuteAsync`). Carries
    /// exactly 3 descriptors: the process's stdin, stdout and stderr.
    ExecuteAsync {
        /// The container to run in.
        id: ContainerId,
        /// What to run, and as whom.
        args: ExecArgs,
    },
    /// Sends signal `signo` (`containerManager.Signal` and `SignalProcess`).
    Signal {
        /// The container.
        id: ContainerId,
        /// The target process in the container; 0 means its init process.
        pid: i32,
        /// The signal number.
        signo: i32,
        /// Which processes receive it.
        mode: SignalDelivery,
    },
    /// Stops every task of the sandbox: no application instruction runs
    /// until [`Request::Resume`] (`containerManager.Pause`).
    Pause,
    /// Lets a paused sandbox run again (`containerManager.Resume`).
    Resume,
    /// Lists container `id`'s processes, like `ps`; answered with
    /// [`Response::Processes`] (`containerManager.Processes`).
    Processes {
        /// The container.
        id: ContainerId,
    },
    /// Reports container `id`'s statistics; answered with
    /// [`Response::Event`] (`containerManager.Event`).
    Event {
        /// The container.
        id: ContainerId,
    },
    /// Saves the sandbox's state (`containerManager.Checkpoint`). Carries
    /// exactly 1 descriptor: the statefile to write.
    Checkpoint(CheckpointOptions),
    /// Restores a sandbox in the created state from a statefile
    /// (`containerManager.Restore`). Carries exactly 1 descriptor: the
    /// statefile to read.
    Restore,
    /// Configures the sandbox's network (`Network.CreateLinksAndRoutes`).
    /// Carries one descriptor per channel of each fd-based link, in order
    /// (see [`CreateLinksAndRoutes::fd_count`]).
    CreateLinksAndRoutes(CreateLinksAndRoutes),
    /// Dumps every task's state and the kernel's own thread backtraces;
    /// answered with [`Response::Stacks`] (`debug.Stacks`).
    Stacks,
    /// Changes logging: level, strace (`Logging.Change`).
    LoggingChange(LoggingArgs),
    /// Profiles the kernel for `duration` into the descriptor that rides
    /// with the request (exactly 1) (`Profile.*`).
    Profile {
        /// What to profile.
        kind: ProfileKind,
        /// For how long (ignored by snapshot kinds such as the heap).
        duration: Duration,
    },
}

impl Request {
    /// The operation's name, for logs and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Create { .. } => "Create",
            Request::Start { .. } => "Start",
            Request::StartRoot => "StartRoot",
            Request::Destroy { .. } => "Destroy",
            Request::Wait { .. } => "Wait",
            Request::WaitPid { .. } => "WaitPid",
            Request::ExecuteAsync { .. } => "ExecuteAsync",
            Request::Signal { .. } => "Signal",
            Request::Pause => "Pause",
            Request::Resume => "Resume",
            Request::Processes { .. } => "Processes",
            Request::Event { .. } => "Event",
            Request::Checkpoint(_) => "Checkpoint",
            Request::Restore => "Restore",
            Request::CreateLinksAndRoutes(_) => "CreateLinksAndRoutes",
            Request::Stacks => "Stacks",
            Request::LoggingChange(_) => "LoggingChange",
            Request::Profile { .. } => "Profile",
        }
    }

    /// How many file descriptors must ride with this request. The server
    /// answers a request carrying any other number with
    /// [`ErrorKind::BadRequest`] without calling the handler. A count above
    /// [`MAX_FDS`] can never be satisfied.
    pub fn expected_fds(&self) -> usize {
        match self {
            Request::Create { stdio_fds, .. } => usize::from(*stdio_fds),
            Request::ExecuteAsync { .. } => 3,
            Request::Checkpoint(_) | Request::Restore | Request::Profile { .. } => 1,
            Request::CreateLinksAndRoutes(args) => args.fd_count(),
            Request::Start { .. }
            | Request::StartRoot
            | Request::Destroy { .. }
            | Request::Wait { .. }
            | Request::WaitPid { .. }
            | Request::Signal { .. }
            | Request::Pause
            | Request::Resume
            | Request::Processes { .. }
            | Request::Event { .. }
            | Request::Stacks
            | Request::LoggingChange(_) => 0,
        }
    }
}

impl Message for Request {
    const VARIANTS: u32 = 18;
    const NAME: &'static str = "Request";
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The operation succeeded and has no result.
    Ok,
    /// A process id (from [`Request::ExecuteAsync`]).
    Pid(i32),
    /// A wait status (from [`Request::Wait`] and [`Request::WaitPid`]).
    WaitStatus(WaitStatus),
    /// A process list (from [`Request::Processes`]).
    Processes(Vec<ProcessInfo>),
    /// Statistics (from [`Request::Event`]).
    Event(Box<EventOut>),
    /// Task and kernel stacks (from [`Request::Stacks`]).
    Stacks(Stacks),
    /// The operation failed.
    Error(CtlError),
}

impl Response {
    /// The variant's name, for logs and error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Response::Ok => "Ok",
            Response::Pid(_) => "Pid",
            Response::WaitStatus(_) => "WaitStatus",
            Response::Processes(_) => "Processes",
            Response::Event(_) => "Event",
            Response::Stacks(_) => "Stacks",
            Response::Error(_) => "Error",
        }
    }

    /// An error response of `kind` with the kind's default errno.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Response {
        Response::Error(CtlError::new(kind, message))
    }
}

impl Message for Response {
    const VARIANTS: u32 = 7;
    const NAME: &'static str = "Response";
}

impl From<CtlError> for Response {
    fn from(e: CtlError) -> Response {
        Response::Error(e)
    }
}

/// What went wrong, coarsely; the precise cause is the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The frame or request was malformed (oversized, truncated, trailing
    /// bytes, unknown variant, wrong number of descriptors).
    BadRequest,
    /// The peer is not allowed to use the control socket.
    PermissionDenied,
    /// The server cannot take the request now (too many connections).
    Busy,
    /// The operation is not valid in the sandbox's current lifecycle state
    /// (e.g. `Pause` before `StartRoot`).
    InvalidState,
    /// No such container or process.
    NotFound,
    /// The container already exists.
    AlreadyExists,
    /// The operation, or this form of it, is not supported (yet).
    Unsupported,
    /// A well-formed request with an unacceptable value.
    InvalidArgument,
    /// A host I/O error.
    Io,
    /// A bug in the server (for instance a handler that panicked).
    Internal,
}

impl ErrorKind {
    /// The errno an error of this kind carries unless told otherwise.
    pub fn default_errno(self) -> Errno {
        match self {
            ErrorKind::BadRequest => Errno(libc::EBADMSG),
            ErrorKind::PermissionDenied => Errno::EACCES,
            ErrorKind::Busy => Errno::EAGAIN,
            ErrorKind::InvalidState => Errno::EINVAL,
            ErrorKind::NotFound => Errno::ENOENT,
            ErrorKind::AlreadyExists => Errno::EEXIST,
            ErrorKind::Unsupported => Errno::EOPNOTSUPP,
            ErrorKind::InvalidArgument => Errno::EINVAL,
            ErrorKind::Io => Errno::EIO,
            ErrorKind::Internal => Errno::EIO,
        }
    }

    /// The kind that best describes `errno`.
    pub fn from_errno(errno: Errno) -> ErrorKind {
        match errno.0 {
            libc::ENOENT | libc::ESRCH | libc::ECHILD => ErrorKind::NotFound,
            libc::EEXIST => ErrorKind::AlreadyExists,
            libc::EACCES | libc::EPERM => ErrorKind::PermissionDenied,
            libc::EOPNOTSUPP | libc::ENOSYS => ErrorKind::Unsupported,
            libc::EINVAL => ErrorKind::InvalidArgument,
            libc::EAGAIN | libc::EBUSY => ErrorKind::Busy,
            libc::EBADMSG => ErrorKind::BadRequest,
            _ => ErrorKind::Io,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// An error as the control socket carries it: a kind, the errno, and a
/// message for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind} ({errno}): {message}")]
pub struct CtlError {
    /// What went wrong, coarsely.
    pub kind: ErrorKind,
    /// The precise cause.
    pub errno: Errno,
    /// Details for humans.
    pub message: String,
}

impl CtlError {
    /// An error of `kind` carrying the kind's default errno.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> CtlError {
        CtlError {
            kind,
            errno: kind.default_errno(),
            message: message.into(),
        }
    }

    /// An error carrying `errno`, of the kind that best describes it.
    pub fn from_errno(errno: Errno, message: impl Into<String>) -> CtlError {
        CtlError {
            kind: ErrorKind::from_errno(errno),
            errno,
            message: message.into(),
        }
    }

    /// The same error with another errno.
    pub fn with_errno(mut self, errno: Errno) -> CtlError {
        self.errno = errno;
        self
    }
}

impl From<Errno> for CtlError {
    fn from(errno: Errno) -> CtlError {
        CtlError::from_errno(errno, errno.name())
    }
}

impl From<std::io::Error> for CtlError {
    fn from(e: std::io::Error) -> CtlError {
        CtlError {
            kind: ErrorKind::Io,
            errno: Errno::from_io(&e),
            message: e.to_string(),
        }
    }
}

/// A raw wait status, as `waitpid(2)` encodes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WaitStatus(pub i32);

impl WaitStatus {
    /// The status of a process that exited with `code` (0..=255).
    pub fn exited(code: u8) -> WaitStatus {
        WaitStatus(i32::from(code) << 8)
    }

    /// The status of a process killed by signal `signo`.
    pub fn signaled(signo: i32, core_dumped: bool) -> WaitStatus {
        WaitStatus((signo & 0x7f) | if core_dumped { 0x80 } else { 0 })
    }

    /// The exit code, if the process exited.
    pub fn exit_code(self) -> Option<i32> {
        libc::WIFEXITED(self.0).then(|| libc::WEXITSTATUS(self.0))
    }

    /// The signal that killed the process, if one did.
    pub fn signal(self) -> Option<i32> {
        libc::WIFSIGNALED(self.0).then(|| libc::WTERMSIG(self.0))
    }

    /// The shell's `$?`: the exit code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match (self.exit_code(), self.signal()) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => 128,
        }
    }
}

/// Which processes a [`Request::Signal`] reaches (the seed's
/// `SignalDeliveryMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SignalDelivery {
    /// The process `pid` (the container's init process if `pid` is 0).
    Process,
    /// Every process of the container; `pid` must be 0. The sandbox pauses
    /// the container first, so nothing forks its way out of a `SIGKILL`.
    AllProcesses,
    /// The foreground process group of the terminal session of `pid` (of
    /// the init process if `pid` is 0).
    ForegroundProcessGroup,
}

/// What [`Request::ExecuteAsync`] runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExecArgs {
    /// The program and its arguments; `argv[0]` is looked up in `PATH`
    /// from `env` unless it contains a `/`.
    pub argv: Vec<String>,
    /// The environment, `KEY=VALUE` each.
    pub env: Vec<String>,
    /// The working directory, inside the container.
    pub cwd: String,
    /// The user id the process runs as.
    pub uid: u32,
    /// The group id the process runs as.
    pub gid: u32,
    /// Supplementary group ids.
    pub extra_gids: Vec<u32>,
}

/// A process's scheduling state, as the letter `ps` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProcessState {
    /// `R`: running or runnable.
    Running,
    /// `S`: interruptible sleep (blocked in a system call).
    Sleeping,
    /// `D`: uninterruptible sleep.
    DiskSleep,
    /// `T`: stopped by a signal, or by a sandbox pause.
    Stopped,
    /// `t`: stopped by a tracer.
    TracingStop,
    /// `Z`: exited, not yet reaped.
    Zombie,
    /// `X`: dead.
    Dead,
}

impl ProcessState {
    /// The letter `ps` uses.
    pub fn as_char(self) -> char {
        match self {
            ProcessState::Running => 'R',
            ProcessState::Sleeping => 'S',
            ProcessState::DiskSleep => 'D',
            ProcessState::Stopped => 'T',
            ProcessState::TracingStop => 't',
            ProcessState::Zombie => 'Z',
            ProcessState::Dead => 'X',
        }
    }
}

/// One line of [`Response::Processes`], like a line of `ps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// The real user id.
    pub uid: u32,
    /// The process id, in the container's PID namespace.
    pub pid: i32,
    /// The parent's process id (0 for the container's init).
    pub ppid: i32,
    /// The ids of the process's threads.
    pub threads: Vec<i32>,
    /// The scheduling state.
    pub state: ProcessState,
    /// When the process started, since the Unix epoch.
    pub start_time: Duration,
    /// CPU time used, user plus system.
    pub cpu_time: Duration,
    /// The command name.
    pub cmd: String,
}

/// The answer to [`Request::Event`]: the seed's `EventOut`. Its JSON form
/// ([`EventOut::to_json`]) is what `rvisor events --stats` prints, with the
/// field names runc uses.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventOut {
    /// The event.
    pub event: Event,
    /// Every container's total CPU usage, in nanoseconds, by id.
    #[serde(rename = "containerUsage")]
    pub container_usage: BTreeMap<String, u64>,
}

impl EventOut {
    /// The JSON form, with runc's field names.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// An event about a container (runc's `event`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Event {
    /// The event's type: `"stats"` for statistics.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The container id.
    pub id: String,
    /// The statistics.
    pub data: Stats,
}

/// A container's statistics (runc's `stats`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// CPU usage.
    pub cpu: Cpu,
    /// Memory usage.
    pub memory: Memory,
    /// Process count.
    pub pids: Pids,
}

/// CPU statistics.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Cpu {
    /// Time used.
    pub usage: CpuUsage,
}

/// CPU time used, in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CpuUsage {
    /// Time spent in the (sandbox) kernel on the container's behalf.
    pub kernel: u64,
    /// Time spent running application code.
    pub user: u64,
    /// `kernel + user`.
    pub total: u64,
    /// Total time by CPU.
    #[serde(rename = "percpu")]
    pub per_cpu: Vec<u64>,
}

/// Memory statistics, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Memory {
    /// Page cache.
    pub cache: u64,
    /// Memory in use.
    pub usage: MemoryEntry,
    /// Swap in use.
    pub swap: MemoryEntry,
    /// Kernel memory.
    pub kernel: MemoryEntry,
    /// Kernel memory used by TCP.
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// Other counters, by name.
    pub raw: BTreeMap<String, u64>,
}

/// One kind of memory's statistics.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MemoryEntry {
    /// The limit (0: none).
    pub limit: u64,
    /// Bytes in use.
    pub usage: u64,
    /// The most ever in use.
    pub max: u64,
    /// How many times the limit was hit.
    pub failcnt: u64,
}

/// Process statistics.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Pids {
    /// Processes alive.
    pub current: u64,
    /// The limit (0: none).
    pub limit: u64,
}

/// The answer to [`Request::Stacks`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stacks {
    /// Every application task.
    pub tasks: Vec<TaskStack>,
    /// The kernel's own threads' backtraces, as text.
    pub kernel: String,
}

impl Stacks {
    /// A human-readable rendering, for `rvisor debug --stacks`.
    pub fn render(&self) -> String {
        use fmt::Write as _;
        let mut out = String::new();
        for t in &self.tasks {
            let _ = writeln!(
                out,
                "task {} (pid {}, {}): {}",
                t.tid,
                t.pid,
                t.state.as_char(),
                t.syscall.as_deref().unwrap_or("running application code")
            );
            for (name, value) in &t.registers {
                let _ = writeln!(out, "    {name:>8} = {value:#018x}");
            }
        }
        if !self.kernel.is_empty() {
            let _ = writeln!(out, "kernel threads:\n{}", self.kernel);
        }
        out
    }
}

/// One application task in [`Stacks`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStack {
    /// The thread id.
    pub tid: i32,
    /// The process (thread group) id.
    pub pid: i32,
    /// The scheduling state.
    pub state: ProcessState,
    /// The system call the task is in, if any (name and arguments).
    pub syscall: Option<String>,
    /// The user registers, by name, in a stable order.
    pub registers: Vec<(String, u64)>,
}

/// Options of [`Request::Checkpoint`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CheckpointOptions {
    /// Resume the sandbox once the statefile is written instead of leaving
    /// it checkpointed.
    pub leave_running: bool,
    /// Compress the statefile.
    pub compress: bool,
}

/// A log level of [`LoggingArgs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Informational messages and above.
    Info,
    /// Debugging messages and above.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The level's lower-case name, as [`FromStr`] accepts it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a [`LogLevel`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log level {0:?} (expected error, warn, info, debug or trace)")]
pub struct ParseLogLevelError(pub String);

impl FromStr for LogLevel {
    type Err = ParseLogLevelError;

    fn from_str(s: &str) -> Result<LogLevel, ParseLogLevelError> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(LogLevel::Error),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            _ => Err(ParseLogLevelError(s.to_string())),
        }
    }
}

/// The strace setting of [`LoggingArgs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strace {
    /// No system call tracing.
    Off,
    /// Trace system calls.
    On {
        /// The system calls to trace, by name; empty means all.
        allowlist: Vec<String>,
    },
}

/// Arguments of [`Request::LoggingChange`]; `None` leaves a setting as it
/// is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LoggingArgs {
    /// The new log level.
    pub level: Option<LogLevel>,
    /// The new strace setting.
    pub strace: Option<Strace>,
}

/// What [`Request::Profile`] profiles (the seed's `Profile.*` commands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProfileKind {
    /// CPU samples of the kernel's threads.
    Cpu,
    /// A heap snapshot.
    Heap,
    /// Blocking events.
    Block,
    /// Lock contention.
    Mutex,
    /// An execution trace.
    Trace,
}

/// An IP address with its subnet prefix length (the seed's
/// `IPWithPrefix`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IpWithPrefix {
    /// The address.
    pub address: IpAddr,
    /// The prefix length (0..=32 for IPv4, 0..=128 for IPv6).
    pub prefix_len: u8,
}

impl fmt::Display for IpWithPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix_len)
    }
}

/// A route: packets to `destination` go through `gateway`, or directly to
/// the link if there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    /// The destination network.
    pub destination: IpWithPrefix,
    /// The next hop, if not on the link.
    pub gateway: Option<IpAddr>,
}

/// A catch-all route through a gateway on a named link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRoute {
    /// The gateway's address.
    pub gateway: IpAddr,
    /// The link the gateway is on.
    pub link: String,
}

/// A loopback link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopbackLink {
    /// The interface name (`lo`).
    pub name: String,
    /// Its addresses.
    pub addresses: Vec<IpWithPrefix>,
    /// Routes through it.
    pub routes: Vec<Route>,
}

/// A queueing discipline of an fd-based link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QueueingDiscipline {
    /// None: packets are written as they come.
    None,
    /// A FIFO queue.
    Fifo,
}

/// A link whose packets travel over host file descriptors (the seed's
/// `FDBasedLink`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FdBasedLink {
    /// The interface name.
    pub name: String,
    /// Maximum transmission unit.
    pub mtu: u32,
    /// Its addresses.
    pub addresses: Vec<IpWithPrefix>,
    /// Routes through it.
    pub routes: Vec<Route>,
    /// Largest generic segmentation offload size (0: no GSO).
    pub gso_max_size: u32,
    /// Whether the sandbox segments in software.
    pub software_gso: bool,
    /// Whether transmit checksums are offloaded.
    pub tx_checksum_offload: bool,
    /// Whether receive checksums are offloaded.
    pub rx_checksum_offload: bool,
    /// The hardware (MAC) address.
    pub link_address: Vec<u8>,
    /// The queueing discipline.
    pub qdisc: QueueingDiscipline,
    /// How many host descriptors back the link; that many ride with the
    /// request for this link.
    pub num_channels: u32,
}

/// Arguments of [`Request::CreateLinksAndRoutes`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CreateLinksAndRoutes {
    /// Loopback links.
    pub loopback_links: Vec<LoopbackLink>,
    /// Fd-based links.
    pub fd_based_links: Vec<FdBasedLink>,
    /// The IPv4 default route.
    pub default_v4_gateway: Option<DefaultRoute>,
    /// The IPv6 default route.
    pub default_v6_gateway: Option<DefaultRoute>,
}

impl CreateLinksAndRoutes {
    /// How many descriptors ride with the request: the sum of every
    /// fd-based link's channels (saturating; anything above [`MAX_FDS`] is
    /// refused).
    pub fn fd_count(&self) -> usize {
        self.fd_based_links.iter().fold(0usize, |n, l| {
            n.saturating_add(usize::try_from(l.num_channels).unwrap_or(usize::MAX))
        })
    }
}

/// The OCI spec travels as JSON inside the postcard payload: its serde
/// impls skip absent fields, which only a self-describing format survives.
mod spec_json {
    use oci_spec::runtime::Spec;
    use serde::{Deserialize, Deserializer, Serializer, de, ser};

    pub fn serialize<S: Serializer>(spec: &Spec, s: S) -> Result<S::Ok, S::Error> {
        let json = serde_json::to_string(spec).map_err(ser::Error::custom)?;
        s.serialize_str(&json)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<Spec>, D::Error> {
        let json = String::deserialize(d)?;
        serde_json::from_str(&json).map_err(de::Error::custom)
    }
}

// Guard the fd cap against a count no request could satisfy by accident.
const _: () = assert!(MAX_FDS >= 3);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ctl::frame::{decode, encode};
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    /// The number of variants serde's derive declares for `T`, read by a
    /// deserializer that only answers `deserialize_enum`.
    fn declared_variants<T: serde::de::DeserializeOwned>() -> u32 {
        use serde::de::{self, Visitor};

        #[derive(Debug)]
        struct Found(usize);
        impl fmt::Display for Found {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} variants", self.0)
            }
        }
        impl std::error::Error for Found {}
        impl de::Error for Found {
            fn custom<M: fmt::Display>(_: M) -> Found {
                Found(usize::MAX)
            }
        }
        struct Probe;
        impl<'de> de::Deserializer<'de> for Probe {
            type Error = Found;
            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Found> {
                Err(Found(usize::MAX))
            }
            fn deserialize_enum<V: Visitor<'de>>(
                self,
                _: &'static str,
                variants: &'static [&'static str],
                _: V,
            ) -> Result<V::Value, Found> {
                Err(Found(variants.len()))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
                bytes byte_buf option unit unit_struct newtype_struct seq tuple
                tuple_struct map struct identifier ignored_any
            }
        }
        match T::deserialize(Probe) {
            Err(Found(n)) => u32::try_from(n).unwrap(),
            Ok(_) => unreachable!(),
        }
    }

    #[test]
    fn variant_counts_match_the_enums() {
        assert_eq!(Request::VARIANTS, declared_variants::<Request>());
        assert_eq!(Response::VARIANTS, declared_variants::<Response>());
    }

    fn text() -> impl Strategy<Value = String> {
        "\\PC{0,12}"
    }

    fn duration() -> impl Strategy<Value = Duration> {
        (any::<u64>(), 0..1_000_000_000u32).prop_map(|(s, n)| Duration::new(s, n))
    }

    /// A small fixed set of specs: the default one and a few minimal ones.
    fn spec() -> impl Strategy<Value = Box<Spec>> {
        prop_oneof![
            Just(Box::new(Spec::default())),
            Just(Box::new(
                crate::simple_spec("/", "/", &["/bin/true"], &[]).unwrap()
            )),
            Just(Box::new(
                crate::simple_spec(
                    "/srv/rootfs",
                    "/tmp",
                    &["/bin/sh", "-c", "echo hi; exit 3"],
                    &["PATH=/bin".to_string(), "HOME=/".to_string()]
                )
                .unwrap()
            )),
        ]
    }

    fn signal_delivery() -> impl Strategy<Value = SignalDelivery> {
        prop_oneof![
            Just(SignalDelivery::Process),
            Just(SignalDelivery::AllProcesses),
            Just(SignalDelivery::ForegroundProcessGroup),
        ]
    }

    fn exec_args() -> impl Strategy<Value = ExecArgs> {
        (
            vec(text(), 0..4),
            vec(text(), 0..4),
            text(),
            any::<u32>(),
            any::<u32>(),
            vec(any::<u32>(), 0..3),
        )
            .prop_map(|(argv, env, cwd, uid, gid, extra_gids)| ExecArgs {
                argv,
                env,
                cwd,
                uid,
                gid,
                extra_gids,
            })
    }

    fn ip_with_prefix() -> impl Strategy<Value = IpWithPrefix> {
        (any::<IpAddr>(), any::<u8>()).prop_map(|(address, prefix_len)| IpWithPrefix {
            address,
            prefix_len,
        })
    }

    fn route() -> impl Strategy<Value = Route> {
        (ip_with_prefix(), proptest::option::of(any::<IpAddr>())).prop_map(
            |(destination, gateway)| Route {
                destination,
                gateway,
            },
        )
    }

    fn default_route() -> impl Strategy<Value = Option<DefaultRoute>> {
        proptest::option::of(
            (any::<IpAddr>(), text()).prop_map(|(gateway, link)| DefaultRoute { gateway, link }),
        )
    }

    fn links() -> impl Strategy<Value = CreateLinksAndRoutes> {
        let lo = (text(), vec(ip_with_prefix(), 0..3), vec(route(), 0..3)).prop_map(
            |(name, addresses, routes)| LoopbackLink {
                name,
                addresses,
                routes,
            },
        );
        let fd_link = (
            (
                text(),
                any::<u32>(),
                vec(ip_with_prefix(), 0..3),
                vec(route(), 0..3),
            ),
            (any::<u32>(), any::<[bool; 3]>(), vec(any::<u8>(), 0..8)),
            (
                prop_oneof![
                    Just(QueueingDiscipline::None),
                    Just(QueueingDiscipline::Fifo)
                ],
                any::<u32>(),
            ),
        )
            .prop_map(
                |((name, mtu, addresses, routes), (gso, [sw, tx, rx], mac), (qdisc, ch))| {
                    FdBasedLink {
                        name,
                        mtu,
                        addresses,
                        routes,
                        gso_max_size: gso,
                        software_gso: sw,
                        tx_checksum_offload: tx,
                        rx_checksum_offload: rx,
                        link_address: mac,
                        qdisc,
                        num_channels: ch,
                    }
                },
            );
        (
            vec(lo, 0..2),
            vec(fd_link, 0..2),
            default_route(),
            default_route(),
        )
            .prop_map(
                |(loopback_links, fd_based_links, default_v4_gateway, default_v6_gateway)| {
                    CreateLinksAndRoutes {
                        loopback_links,
                        fd_based_links,
                        default_v4_gateway,
                        default_v6_gateway,
                    }
                },
            )
    }

    fn log_level() -> impl Strategy<Value = LogLevel> {
        prop_oneof![
            Just(LogLevel::Error),
            Just(LogLevel::Warn),
            Just(LogLevel::Info),
            Just(LogLevel::Debug),
            Just(LogLevel::Trace),
        ]
    }

    fn logging() -> impl Strategy<Value = LoggingArgs> {
        let strace = prop_oneof![
            Just(Strace::Off),
            vec(text(), 0..4).prop_map(|allowlist| Strace::On { allowlist }),
        ];
        (
            proptest::option::of(log_level()),
            proptest::option::of(strace),
        )
            .prop_map(|(level, strace)| LoggingArgs { level, strace })
    }

    fn profile_kind() -> impl Strategy<Value = ProfileKind> {
        prop_oneof![
            Just(ProfileKind::Cpu),
            Just(ProfileKind::Heap),
            Just(ProfileKind::Block),
            Just(ProfileKind::Mutex),
            Just(ProfileKind::Trace),
        ]
    }

    /// Every request shape.
    pub(crate) fn request() -> impl Strategy<Value = Request> {
        prop_oneof![
            (text(), spec(), any::<u8>()).prop_map(|(id, spec, stdio_fds)| Request::Create {
                id,
                spec,
                stdio_fds
            }),
            text().prop_map(|id| Request::Start { id }),
            Just(Request::StartRoot),
            text().prop_map(|id| Request::Destroy { id }),
            text().prop_map(|id| Request::Wait { id }),
            (text(), any::<i32>()).prop_map(|(id, pid)| Request::WaitPid { id, pid }),
            (text(), exec_args()).prop_map(|(id, args)| Request::ExecuteAsync { id, args }),
            (text(), any::<i32>(), any::<i32>(), signal_delivery()).prop_map(
                |(id, pid, signo, mode)| Request::Signal {
                    id,
                    pid,
                    signo,
                    mode
                }
            ),
            Just(Request::Pause),
            Just(Request::Resume),
            text().prop_map(|id| Request::Processes { id }),
            text().prop_map(|id| Request::Event { id }),
            any::<(bool, bool)>().prop_map(|(leave_running, compress)| Request::Checkpoint(
                CheckpointOptions {
                    leave_running,
                    compress
                }
            )),
            Just(Request::Restore),
            links().prop_map(Request::CreateLinksAndRoutes),
            Just(Request::Stacks),
            logging().prop_map(Request::LoggingChange),
            (profile_kind(), duration())
                .prop_map(|(kind, duration)| Request::Profile { kind, duration }),
        ]
    }

    fn process_state() -> impl Strategy<Value = ProcessState> {
        prop_oneof![
            Just(ProcessState::Running),
            Just(ProcessState::Sleeping),
            Just(ProcessState::DiskSleep),
            Just(ProcessState::Stopped),
            Just(ProcessState::TracingStop),
            Just(ProcessState::Zombie),
            Just(ProcessState::Dead),
        ]
    }

    fn process_info() -> impl Strategy<Value = ProcessInfo> {
        (
            (
                any::<u32>(),
                any::<i32>(),
                any::<i32>(),
                vec(any::<i32>(), 0..4),
            ),
            (process_state(), duration(), duration(), text()),
        )
            .prop_map(
                |((uid, pid, ppid, threads), (state, start_time, cpu_time, cmd))| ProcessInfo {
                    uid,
                    pid,
                    ppid,
                    threads,
                    state,
                    start_time,
                    cpu_time,
                    cmd,
                },
            )
    }

    fn memory_entry() -> impl Strategy<Value = MemoryEntry> {
        any::<[u64; 4]>().prop_map(|[limit, usage, max, failcnt]| MemoryEntry {
            limit,
            usage,
            max,
            failcnt,
        })
    }

    fn event_out() -> impl Strategy<Value = EventOut> {
        let cpu = (any::<[u64; 3]>(), vec(any::<u64>(), 0..4)).prop_map(
            |([kernel, user, total], per_cpu)| Cpu {
                usage: CpuUsage {
                    kernel,
                    user,
                    total,
                    per_cpu,
                },
            },
        );
        let memory = (
            any::<u64>(),
            [
                memory_entry(),
                memory_entry(),
                memory_entry(),
                memory_entry(),
            ],
            btree_map(text(), any::<u64>(), 0..3),
        )
            .prop_map(|(cache, [usage, swap, kernel, kernel_tcp], raw)| Memory {
                cache,
                usage,
                swap,
                kernel,
                kernel_tcp,
                raw,
            });
        let pids = any::<[u64; 2]>().prop_map(|[current, limit]| Pids { current, limit });
        (
            text(),
            text(),
            cpu,
            memory,
            pids,
            btree_map(text(), any::<u64>(), 0..3),
        )
            .prop_map(
                |(event_type, id, cpu, memory, pids, container_usage)| EventOut {
                    event: Event {
                        event_type,
                        id,
                        data: Stats { cpu, memory, pids },
                    },
                    container_usage,
                },
            )
    }

    fn stacks() -> impl Strategy<Value = Stacks> {
        let task = (
            any::<i32>(),
            any::<i32>(),
            process_state(),
            proptest::option::of(text()),
            vec((text(), any::<u64>()), 0..4),
        )
            .prop_map(|(tid, pid, state, syscall, registers)| TaskStack {
                tid,
                pid,
                state,
                syscall,
                registers,
            });
        (vec(task, 0..3), text()).prop_map(|(tasks, kernel)| Stacks { tasks, kernel })
    }

    fn error_kind() -> impl Strategy<Value = ErrorKind> {
        prop_oneof![
            Just(ErrorKind::BadRequest),
            Just(ErrorKind::PermissionDenied),
            Just(ErrorKind::Busy),
            Just(ErrorKind::InvalidState),
            Just(ErrorKind::NotFound),
            Just(ErrorKind::AlreadyExists),
            Just(ErrorKind::Unsupported),
            Just(ErrorKind::InvalidArgument),
            Just(ErrorKind::Io),
            Just(ErrorKind::Internal),
        ]
    }

    /// Every response shape.
    pub(crate) fn response() -> impl Strategy<Value = Response> {
        prop_oneof![
            Just(Response::Ok),
            any::<i32>().prop_map(Response::Pid),
            any::<i32>().prop_map(|s| Response::WaitStatus(WaitStatus(s))),
            vec(process_info(), 0..4).prop_map(Response::Processes),
            event_out().prop_map(|e| Response::Event(Box::new(e))),
            stacks().prop_map(Response::Stacks),
            (error_kind(), any::<i32>(), text()).prop_map(|(kind, errno, message)| {
                Response::Error(CtlError {
                    kind,
                    errno: Errno(errno),
                    message,
                })
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn requests_round_trip(req in request()) {
            let frame = encode(&req).unwrap();
            prop_assert_eq!(decode::<Request>(&frame).unwrap(), req);
        }

        #[test]
        fn responses_round_trip(resp in response()) {
            let frame = encode(&resp).unwrap();
            prop_assert_eq!(decode::<Response>(&frame).unwrap(), resp);
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in vec(any::<u8>(), 0..64)) {
            let _ = decode::<Request>(&bytes);
            let _ = decode::<Response>(&bytes);
            let _ = crate::ctl::frame::decode_payload::<Request>(&bytes);
        }

        #[test]
        fn mutated_requests_fail_cleanly(req in request(), at in any::<usize>(), byte in any::<u8>()) {
            let mut frame = encode(&req).unwrap();
            let i = at % frame.len();
            frame[i] = byte;
            if let Ok(decoded) = decode::<Request>(&frame) {
                // Whatever decodes is a request like any other. (Not always
                // the same bytes: the spec's JSON ignores unknown fields.)
                let again = encode(&decoded).unwrap();
                prop_assert_eq!(decode::<Request>(&again).unwrap(), decoded);
            }
        }

        #[test]
        fn wait_status_helpers(code in any::<u8>(), sig in 1..64i32) {
            prop_assert_eq!(WaitStatus::exited(code).exit_code(), Some(i32::from(code)));
            prop_assert_eq!(WaitStatus::exited(code).shell_code(), i32::from(code));
            let s = WaitStatus::signaled(sig, false);
            prop_assert_eq!(s.signal(), Some(sig));
            prop_assert_eq!(s.shell_code(), 128 + sig);
        }
    }

    #[test]
    fn expected_fds() {
        assert_eq!(Request::Pause.expected_fds(), 0);
        assert_eq!(Request::Restore.expected_fds(), 1);
        let mut links = CreateLinksAndRoutes::default();
        let link = FdBasedLink {
            name: "eth0".into(),
            mtu: 1500,
            addresses: vec![],
            routes: vec![],
            gso_max_size: 0,
            software_gso: false,
            tx_checksum_offload: false,
            rx_checksum_offload: false,
            link_address: vec![2, 0, 0, 0, 0, 1],
            qdisc: QueueingDiscipline::Fifo,
            num_channels: u32::MAX,
        };
        links.fd_based_links = vec![link.clone(), link];
        assert!(Request::CreateLinksAndRoutes(links).expected_fds() > MAX_FDS);
    }

    #[test]
    fn event_out_json_uses_runc_names() {
        let mut ev = EventOut::default();
        ev.event.event_type = "stats".into();
        ev.event.id = "c1".into();
        ev.event.data.pids.current = 3;
        ev.container_usage.insert("c1".into(), 42);
        let json: serde_json::Value = serde_json::from_str(&ev.to_json().unwrap()).unwrap();
        assert_eq!(json["event"]["type"], "stats");
        assert_eq!(json["event"]["id"], "c1");
        assert_eq!(json["event"]["data"]["pids"]["current"], 3);
        assert!(json["event"]["data"]["cpu"]["usage"]["percpu"].is_array());
        assert!(json["event"]["data"]["memory"]["kernelTCP"].is_object());
        assert_eq!(json["containerUsage"]["c1"], 42);
    }

    #[test]
    fn errors_keep_their_errno() {
        let e = CtlError::from(Errno::ESRCH);
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(e.errno, Errno::ESRCH);
        let io = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e = CtlError::from(io);
        assert_eq!((e.kind, e.errno), (ErrorKind::Io, Errno::ENOSPC));
        let e = CtlError::new(ErrorKind::Unsupported, "later").with_errno(Errno::ENOSYS);
        let back = decode::<Response>(&encode(&Response::Error(e.clone())).unwrap()).unwrap();
        assert_eq!(back, Response::Error(e));
        assert_eq!("DEBUG".parse::<LogLevel>().unwrap(), LogLevel::Debug);
        assert!("loud".parse::<LogLevel>().is_err());
    }
}
