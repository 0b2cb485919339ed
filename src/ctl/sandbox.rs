//! The control handler of a sandbox: serves requests on the loader, which
//! it holds as an enum of its four lifecycle states. An operation in the
//! wrong state is a typed `InvalidState` error, never a panic; blocking
//! waits run without holding the loader.

use super::proto::{
    Cpu, CpuUsage, CreateLinksAndRoutes, CtlError, ErrorKind, Event, EventOut, LogLevel, Memory,
    MemoryEntry, Pids, ProcessInfo, ProcessState, Request, Response, SignalDelivery, Stacks, Stats,
    Strace, TaskStack, WaitStatus,
};
use super::server::{Handler, ShutdownHandle};
use crate::loader::{self, ExecArgs, KernelHandle, Loader};
use crate::state::{Checkpointed, Created, Paused, Started};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// A loader in any lifecycle state.
#[derive(Debug)]
pub enum AnyLoader {
    /// Built, root container not started.
    Created(Loader<Created>),
    /// Running.
    Started(Loader<Started>),
    /// Paused.
    Paused(Loader<Paused>),
    /// Saved.
    Checkpointed(Loader<Checkpointed>),
}

impl AnyLoader {
    fn state_name(&self) -> &'static str {
        match self {
            AnyLoader::Created(_) => "created",
            AnyLoader::Started(_) => "running",
            AnyLoader::Paused(_) => "paused",
            AnyLoader::Checkpointed(_) => "checkpointed",
        }
    }
}

/// Changes the sandbox's log level (installed by the process that owns the
/// logger).
pub type LogLevelHook = Box<dyn Fn(LogLevel) -> Result<(), String> + Send + Sync>;

/// Serves control requests for one sandbox.
pub struct SandboxHandler {
    id: String,
    loader: Mutex<Option<AnyLoader>>,
    handle: Mutex<KernelHandle>,
    links: Mutex<Option<CreateLinksAndRoutes>>,
    shutdown: Mutex<Option<ShutdownHandle>>,
    log_level: Option<LogLevelHook>,
}

impl std::fmt::Debug for SandboxHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SandboxHandler({})", self.id)
    }
}

fn invalid_state(op: &str, state: &str) -> Response {
    Response::error(
        ErrorKind::InvalidState,
        format!("{op}: the sandbox is {state}"),
    )
}

fn err(e: loader::Error) -> Response {
    Response::Error(CtlError::from_errno(e.errno(), e.to_string()))
}

fn cstrings(v: Vec<String>) -> Vec<Vec<u8>> {
    v.into_iter().map(String::into_bytes).collect()
}

impl SandboxHandler {
    /// A handler over a freshly created loader.
    pub fn new(loader: Loader<Created>, log_level: Option<LogLevelHook>) -> Arc<SandboxHandler> {
        Arc::new(SandboxHandler {
            id: loader.id().to_string(),
            handle: Mutex::new(loader.handle()),
            loader: Mutex::new(Some(AnyLoader::Created(loader))),
            links: Mutex::new(None),
            shutdown: Mutex::new(None),
            log_level,
        })
    }

    fn handle(&self) -> KernelHandle {
        lock(&self.handle).clone()
    }

    fn kernel(&self) -> Arc<crate::kernel::Kernel> {
        lock(&self.handle).kernel().clone()
    }

    /// Lets `Destroy` of the root container stop the server.
    pub fn set_shutdown(&self, h: ShutdownHandle) {
        *lock(&self.shutdown) = Some(h);
    }

    /// Stops the server once the current response has gone out.
    fn shutdown_soon(&self) {
        if let Some(h) = lock(&self.shutdown).clone() {
            let _ = std::thread::Builder::new()
                .name("ctl-shutdown".into())
                .spawn(move || {
                    std::thread::sleep(Duration::from_millis(100));
                    h.shutdown();
                });
        }
    }

    /// Whether the root container was destroyed.
    pub fn destroyed(&self) -> bool {
        lock(&self.loader).is_none()
    }

    fn is_sub(&self, id: &str) -> bool {
        !id.is_empty() && id != self.id && self.subs().iter().any(|s| s == id)
    }

    fn subs(&self) -> Vec<String> {
        match lock(&self.loader).as_ref() {
            Some(AnyLoader::Started(l)) => l.subcontainers(),
            _ => Vec::new(),
        }
    }

    fn sub_init(&self, id: &str) -> Option<i32> {
        match lock(&self.loader).as_ref() {
            Some(AnyLoader::Started(l)) => l.subcontainer_init(id).ok().flatten(),
            _ => None,
        }
    }

    /// The root container or a sub-container.
    fn check_any(&self, id: &str) -> Result<(), Response> {
        if self.is_sub(id) {
            Ok(())
        } else {
            self.check_id(id)
        }
    }

    fn check_id(&self, id: &str) -> Result<(), Response> {
        if id == self.id || id.is_empty() {
            Ok(())
        } else {
            Err(Response::error(
                ErrorKind::NotFound,
                format!("no container {id:?} in sandbox {:?}", self.id),
            ))
        }
    }

    /// Runs a state transition: takes the loader out, puts back what `f`
    /// returns.
    fn transition(&self, f: impl FnOnce(AnyLoader) -> (Option<AnyLoader>, Response)) -> Response {
        let mut g = lock(&self.loader);
        let Some(l) = g.take() else {
            return Response::error(ErrorKind::InvalidState, "the sandbox was destroyed");
        };
        let (l, resp) = f(l);
        *g = l;
        resp
    }

    fn with_loader(&self, f: impl FnOnce(&AnyLoader) -> Response) -> Response {
        match lock(&self.loader).as_ref() {
            Some(l) => f(l),
            None => Response::error(ErrorKind::InvalidState, "the sandbox was destroyed"),
        }
    }

    fn processes(&self, id: &str) -> Response {
        let list = self
            .kernel()
            .processes(Some(if id.is_empty() { self.id.as_str() } else { id }));
        Response::Processes(
            list.into_iter()
                .map(|p| ProcessInfo {
                    uid: p.uid,
                    pid: p.pid,
                    ppid: p.ppid,
                    threads: self.threads_of(p.pid),
                    state: match p.state {
                        'S' => ProcessState::Sleeping,
                        'Z' => ProcessState::Zombie,
                        _ => ProcessState::Running,
                    },
                    start_time: Duration::from_millis(p.start_ms),
                    cpu_time: Duration::from_millis(p.cpu_ms),
                    cmd: p.cmd,
                })
                .collect(),
        )
    }

    fn threads_of(&self, pid: i32) -> Vec<i32> {
        self.kernel()
            .group(pid)
            .map(|g| {
                crate::kernel::task::lock(&g.inner)
                    .tasks
                    .iter()
                    .map(|t| t.tid)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn event(&self, id: &str) -> Response {
        let id = if id.is_empty() { self.id.as_str() } else { id };
        let k = self.kernel();
        let u = k.usage(Some(id));
        let mut usage = std::collections::BTreeMap::new();
        usage.insert(self.id.clone(), k.usage(Some(&self.id)).memory_bytes);
        for sub in self.subs() {
            usage.insert(sub.clone(), k.usage(Some(&sub)).memory_bytes);
        }
        Response::Event(Box::new(EventOut {
            event: Event {
                event_type: "stats".into(),
                id: id.to_string(),
                data: Stats {
                    cpu: Cpu {
                        usage: CpuUsage {
                            kernel: 0,
                            user: u.cpu_ns,
                            total: u.cpu_ns,
                            per_cpu: Vec::new(),
                        },
                    },
                    memory: Memory {
                        cache: 0,
                        usage: MemoryEntry {
                            limit: 0,
                            usage: u.memory_bytes,
                            max: 0,
                            failcnt: 0,
                        },
                        ..Default::default()
                    },
                    pids: Pids {
                        current: u.pids,
                        limit: 0,
                    },
                },
            },
            container_usage: usage,
        }))
    }

    fn stacks(&self) -> Response {
        let k = self.kernel();
        let tasks = k
            .task_stacks()
            .into_iter()
            .map(|t| TaskStack {
                tid: t.tid,
                pid: t.pid,
                state: if t.state == 'S' {
                    ProcessState::Sleeping
                } else {
                    ProcessState::Running
                },
                syscall: t.syscall,
                registers: t.registers,
            })
            .collect();
        Response::Stacks(Stacks {
            tasks,
            kernel: std::backtrace::Backtrace::force_capture().to_string(),
        })
    }

    fn signal(&self, id: &str, pid: i32, signo: i32, mode: SignalDelivery) -> Response {
        let is_sub = self.is_sub(id);
        let pid = match (pid, is_sub) {
            (0, false) => 1,
            (0, true) => match self.sub_init(id) {
                Some(p) => p,
                None => return invalid_state("Signal", "created"),
            },
            (p, _) => p,
        };
        if is_sub && mode == SignalDelivery::AllProcesses {
            return match self.kernel().signal_all(signo, Some(id)) {
                Ok(()) => Response::Ok,
                Err(e) => Response::Error(CtlError::from_errno(e, "signal")),
            };
        }
        let mode = match mode {
            SignalDelivery::Process => loader::SignalDelivery::Process(pid),
            SignalDelivery::AllProcesses => loader::SignalDelivery::AllProcesses,
            SignalDelivery::ForegroundProcessGroup => {
                loader::SignalDelivery::ForegroundProcessGroup(pid)
            }
        };
        self.with_loader(|l| {
            let r = match l {
                AnyLoader::Started(l) => l.signal(signo, mode),
                AnyLoader::Paused(l) => l.signal(signo, mode),
                other => return invalid_state("Signal", other.state_name()),
            };
            r.map_or_else(err, |_| Response::Ok)
        })
    }
}

fn devnull3() -> std::io::Result<[OwnedFd; 3]> {
    let f = || -> std::io::Result<OwnedFd> {
        Ok(std::fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/null")?
            .into())
    };
    Ok([f()?, f()?, f()?])
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Handler for SandboxHandler {
    fn handle(&self, req: Request, fds: Vec<OwnedFd>) -> (Response, Vec<OwnedFd>) {
        let resp = match req {
            Request::StartRoot => self.transition(|l| match l {
                AnyLoader::Created(c) => match c.start() {
                    Ok(s) => (Some(AnyLoader::Started(s)), Response::Ok),
                    // A failed start leaves nothing to run; the sandbox can
                    // only be destroyed.
                    Err(e) => (None, err(e)),
                },
                other => {
                    let name = other.state_name();
                    (Some(other), invalid_state("StartRoot", name))
                }
            }),
            Request::Create { id, spec, .. } => {
                let stdio = match fds.len() {
                    3 => match <[OwnedFd; 3]>::try_from(fds) {
                        Ok(s) => s,
                        Err(_) => {
                            return (
                                Response::error(ErrorKind::BadRequest, "bad stdio"),
                                Vec::new(),
                            );
                        }
                    },
                    _ => match devnull3() {
                        Ok(s) => s,
                        Err(e) => return (Response::Error(e.into()), Vec::new()),
                    },
                };
                self.with_loader(|l| match l {
                    AnyLoader::Started(l) => {
                        let config = loader::Config {
                            tmp_tmpfs: true,
                            ..Default::default()
                        };
                        l.create_subcontainer(&id, &spec, &config, stdio)
                            .map_or_else(err, |_| Response::Ok)
                    }
                    other => invalid_state("Create", other.state_name()),
                })
            }
            Request::Start { id } => self.with_loader(|l| match l {
                AnyLoader::Started(l) => {
                    l.start_subcontainer(&id).map_or_else(err, |_| Response::Ok)
                }
                other => invalid_state("Start", other.state_name()),
            }),
            Request::Destroy { id } if self.is_sub(&id) => self.with_loader(|l| match l {
                AnyLoader::Started(l) => l
                    .destroy_subcontainer(&id)
                    .map_or_else(err, |_| Response::Ok),
                other => invalid_state("Destroy", other.state_name()),
            }),
            Request::Destroy { id } => match self.check_id(&id) {
                Err(r) => r,
                Ok(()) => {
                    match lock(&self.loader).take() {
                        Some(AnyLoader::Created(l)) => l.destroy(),
                        Some(AnyLoader::Started(l)) => l.destroy(),
                        Some(AnyLoader::Paused(l)) => l.destroy(),
                        Some(AnyLoader::Checkpointed(l)) => l.destroy(),
                        None => {
                            let k = self.kernel();
                            k.kill_all();
                            k.resume();
                        }
                    }
                    self.shutdown_soon();
                    Response::Ok
                }
            },
            Request::Wait { id } if self.is_sub(&id) => match self.sub_init(&id) {
                Some(pid) => match self.kernel().wait_pid(pid) {
                    Ok(st) => Response::WaitStatus(WaitStatus(st)),
                    Err(e) => Response::Error(CtlError::from_errno(
                        e,
                        format!("wait for container {id:?}: {e}"),
                    )),
                },
                None => invalid_state("Wait", "created"),
            },
            Request::Wait { id } => match self.check_id(&id) {
                Err(r) => r,
                Ok(()) => {
                    let started = matches!(
                        lock(&self.loader).as_ref(),
                        Some(
                            AnyLoader::Started(_)
                                | AnyLoader::Paused(_)
                                | AnyLoader::Checkpointed(_)
                        )
                    );
                    if started || self.handle().root_status().is_some() {
                        // Blocks without holding the loader.
                        Response::WaitStatus(WaitStatus(self.kernel().wait_init()))
                    } else {
                        invalid_state("Wait", "created")
                    }
                }
            },
            Request::WaitPid { id, pid } => match self.check_any(&id) {
                Err(r) => r,
                Ok(()) => match self.kernel().wait_pid(pid) {
                    Ok(st) => Response::WaitStatus(WaitStatus(st)),
                    Err(e) => {
                        Response::Error(CtlError::from_errno(e, format!("wait for pid {pid}: {e}")))
                    }
                },
            },
            Request::ExecuteAsync { id, args } => {
                match (self.check_id(&id), <[OwnedFd; 3]>::try_from(fds)) {
                    (Err(r), _) => return (r, Vec::new()),
                    (_, Err(_)) => Response::error(
                        ErrorKind::BadRequest,
                        "ExecuteAsync needs 3 stdio descriptors",
                    ),
                    (Ok(()), Ok(stdio)) => self.with_loader(|l| match l {
                        AnyLoader::Started(l) => {
                            let a = ExecArgs {
                                argv: cstrings(args.argv),
                                envp: cstrings(args.env),
                                cwd: if args.cwd.is_empty() {
                                    b"/".to_vec()
                                } else {
                                    args.cwd.into_bytes()
                                },
                                uid: args.uid,
                                gid: args.gid,
                                stdio,
                            };
                            l.exec(a).map_or_else(err, Response::Pid)
                        }
                        other => invalid_state("ExecuteAsync", other.state_name()),
                    }),
                }
            }
            Request::Signal {
                id,
                pid,
                signo,
                mode,
            } => match self.check_any(&id) {
                Err(r) => r,
                Ok(()) => self.signal(&id, pid, signo, mode),
            },
            Request::Pause => self.transition(|l| match l {
                AnyLoader::Started(s) => match s.pause() {
                    Ok(p) => (Some(AnyLoader::Paused(p)), Response::Ok),
                    Err((s, e)) => (Some(AnyLoader::Started(s)), err(e)),
                },
                other => {
                    let name = other.state_name();
                    (Some(other), invalid_state("Pause", name))
                }
            }),
            Request::Resume => self.transition(|l| match l {
                AnyLoader::Paused(p) => (Some(AnyLoader::Started(p.resume())), Response::Ok),
                AnyLoader::Checkpointed(c) => (Some(AnyLoader::Started(c.resume())), Response::Ok),
                other => {
                    let name = other.state_name();
                    (Some(other), invalid_state("Resume", name))
                }
            }),
            Request::Processes { id } => match self.check_any(&id) {
                Err(r) => r,
                Ok(()) => self.processes(&id),
            },
            Request::Event { id } => match self.check_any(&id) {
                Err(r) => r,
                Ok(()) => self.event(&id),
            },
            Request::Checkpoint(opts) => {
                let Some(fd) = fds.into_iter().next() else {
                    return (
                        Response::error(
                            ErrorKind::BadRequest,
                            "Checkpoint needs the statefile descriptor",
                        ),
                        Vec::new(),
                    );
                };
                let mut file = std::fs::File::from(fd);
                let mut end_sandbox = false;
                let resp = self.transition(|l| {
                    let paused = match l {
                        AnyLoader::Started(s) => match s.pause() {
                            Ok(p) => p,
                            Err((s, e)) => return (Some(AnyLoader::Started(s)), err(e)),
                        },
                        AnyLoader::Paused(p) => p,
                        other => {
                            let name = other.state_name();
                            return (Some(other), invalid_state("Checkpoint", name));
                        }
                    };
                    match paused.checkpoint(&mut file) {
                        Ok((saved, _summary)) => {
                            if opts.leave_running {
                                (Some(AnyLoader::Started(saved.resume())), Response::Ok)
                            } else {
                                end_sandbox = true;
                                (Some(AnyLoader::Checkpointed(saved)), Response::Ok)
                            }
                        }
                        Err((p, e)) => (Some(AnyLoader::Started(p.resume())), err(e)),
                    }
                });
                if end_sandbox {
                    // Like runsc: a checkpoint without --leave-running ends
                    // the sandbox once the statefile is safe.
                    if let Err(e) = file.sync_all() {
                        return (Response::Error(e.into()), Vec::new());
                    }
                    if let Some(AnyLoader::Checkpointed(l)) = lock(&self.loader).take() {
                        l.destroy();
                    }
                    self.shutdown_soon();
                }
                resp
            }
            Request::Restore => {
                let Some(fd) = fds.into_iter().next() else {
                    return (
                        Response::error(
                            ErrorKind::BadRequest,
                            "Restore needs the statefile descriptor",
                        ),
                        Vec::new(),
                    );
                };
                let mut file = std::fs::File::from(fd);
                self.transition(|l| match l {
                    AnyLoader::Created(c) => match c.restore(&mut file) {
                        Ok(p) => {
                            *lock(&self.handle) = p.handle();
                            (Some(AnyLoader::Started(p.resume())), Response::Ok)
                        }
                        Err(e) => (None, err(e)),
                    },
                    other => {
                        let name = other.state_name();
                        (Some(other), invalid_state("Restore", name))
                    }
                })
            }
            Request::CreateLinksAndRoutes(args) => {
                let unsupported = !args.fd_based_links.is_empty();
                *lock(&self.links) = Some(args);
                if unsupported {
                    Response::error(
                        ErrorKind::Unsupported,
                        "fd-based links are stored but not served until the network stack lands",
                    )
                } else {
                    Response::Ok
                }
            }
            Request::Stacks => self.stacks(),
            Request::LoggingChange(args) => {
                let mut resp = Response::Ok;
                if let Some(level) = args.level {
                    match &self.log_level {
                        Some(f) => {
                            if let Err(e) = f(level) {
                                resp = Response::error(ErrorKind::Internal, e);
                            }
                        }
                        None => {
                            resp = Response::error(
                                ErrorKind::Unsupported,
                                "this sandbox's log level is fixed",
                            )
                        }
                    }
                }
                if let Some(s) = args.strace {
                    match s {
                        Strace::Off => self.kernel().set_strace(false, None),
                        Strace::On { allowlist } => self.kernel().set_strace(
                            true,
                            if allowlist.is_empty() {
                                None
                            } else {
                                Some(allowlist)
                            },
                        ),
                    }
                }
                resp
            }
            Request::Profile { .. } => {
                Response::error(ErrorKind::Unsupported, "profiling is not implemented")
            }
        };
        (resp, Vec::new())
    }
}
