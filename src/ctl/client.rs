//! The control client: one typed method per control operation, usable from
//! any process that may talk to the sandbox.
//!
//! A [`Client`] holds one connection and makes one call at a time; a call
//! that blocks (such as [`Client::wait`]) holds the connection until it
//! returns, so use another client meanwhile. After a transport error
//! ([`ClientError::Frame`]) the connection may be out of step: connect
//! again.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt};
use oci_spec::runtime::Spec;

use super::control_socket_addr;
use super::frame::{self, FrameError};
use super::proto::{
    CheckpointOptions, CreateLinksAndRoutes, CtlError, ErrorKind, EventOut, ExecArgs, LoggingArgs,
    ProcessInfo, ProfileKind, Request, Response, SignalDelivery, Stacks, WaitStatus,
};
use crate::Errno;

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot connect to control socket {addr}: {source}")]
    Connect {
        /// The address, for humans (abstract names start with `@`).
        addr: String,
        /// The cause.
        source: io::Error,
    },
    /// The process serving the socket is neither our user nor root, so we
    /// will not hand it requests (or descriptors).
    #[error("control socket is served by uid {uid}, neither us nor root")]
    UntrustedServer {
        /// The server's uid.
        uid: u32,
    },
    /// The sandbox answered the request with an error.
    #[error("{request}: {error}")]
    Server {
        /// The request's name.
        request: &'static str,
        /// The sandbox's error, with its errno.
        error: CtlError,
    },
    /// The sandbox answered with a response that does not fit the request.
    #[error("{request}: unexpected {response} response")]
    UnexpectedResponse {
        /// The request's name.
        request: &'static str,
        /// The response's name.
        response: &'static str,
    },
    /// Sending the request or receiving the response failed.
    #[error("control socket: {0}")]
    Frame(#[from] FrameError),
}

impl ClientError {
    /// The errno of the failure: the sandbox's for [`ClientError::Server`],
    /// the host's for I/O errors.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            ClientError::Server { error, .. } => Some(error.errno),
            ClientError::Connect { source, .. } => source.raw_os_error().map(Errno),
            ClientError::Frame(FrameError::Io(e)) => e.raw_os_error().map(Errno),
            ClientError::UntrustedServer { .. } => Some(Errno::EPERM),
            ClientError::UnexpectedResponse { .. } | ClientError::Frame(_) => None,
        }
    }

    /// The sandbox's error kind, for [`ClientError::Server`].
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            ClientError::Server { error, .. } => Some(error.kind),
            _ => None,
        }
    }
}

/// A connection to a sandbox's control socket.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connects to the filesystem socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            addr: path.display().to_string(),
            source,
        })?;
        Client::from_stream(stream)
    }

    /// Connects to the abstract socket `name` (a leading NUL, as
    /// [`control_socket_addr`] writes it, is optional).
    pub fn connect_abstract(name: &str) -> Result<Client, ClientError> {
        let name = name.strip_prefix('\0').unwrap_or(name);
        let connect_err = |source| ClientError::Connect {
            addr: format!("@{name}"),
            source,
        };
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(connect_err)?;
        let stream = UnixStream::connect_addr(&addr).map_err(connect_err)?;
        Client::from_stream(stream)
    }

    /// Connects to sandbox `id` at its conventional abstract address
    /// ([`control_socket_addr`]).
    pub fn connect_sandbox(id: &str) -> Result<Client, ClientError> {
        Client::connect_abstract(&control_socket_addr(id))
    }

    /// Uses an already connected stream, after checking that its peer is
    /// our user or root.
    pub fn from_stream(stream: UnixStream) -> Result<Client, ClientError> {
        let cred = getsockopt(&stream, sockopt::PeerCredentials)
            .map_err(|e| ClientError::Frame(FrameError::Io(e.into())))?;
        let uid = cred.uid();
        if uid != 0 && uid != nix::unistd::geteuid().as_raw() {
            return Err(ClientError::UntrustedServer { uid });
        }
        Ok(Client { stream })
    }

    /// Bounds how long one call may wait for the sandbox (`None`: forever,
    /// the default). A call that times out fails with an I/O error and
    /// leaves the connection out of step.
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)
    }

    /// Sends `req` with `fds` and returns the raw response and the
    /// descriptors that came with it. [`Response::Error`] is returned as is;
    /// the typed methods turn it into [`ClientError::Server`].
    pub fn call(
        &mut self,
        req: &Request,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(Response, Vec<OwnedFd>), ClientError> {
        if let Err(e) = frame::send(&self.stream, req, fds) {
            // A server that refused us has already answered and closed its
            // end; its answer says more than the broken pipe.
            if matches!(&e, FrameError::Io(io) if matches!(io.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset))
                && let Ok((resp @ Response::Error(_), fds)) = frame::recv::<Response>(&self.stream)
            {
                return Ok((resp, fds));
            }
            return Err(e.into());
        }
        Ok(frame::recv::<Response>(&self.stream)?)
    }

    /// Calls, turning an error response into [`ClientError::Server`] and
    /// closing any descriptor that came back.
    fn request(&mut self, req: Request, fds: &[BorrowedFd<'_>]) -> Result<Response, ClientError> {
        match self.call(&req, fds)?.0 {
            Response::Error(error) => Err(ClientError::Server {
                request: req.name(),
                error,
            }),
            resp => Ok(resp),
        }
    }

    /// Calls an operation whose answer is [`Response::Ok`].
    fn request_ok(&mut self, req: Request, fds: &[BorrowedFd<'_>]) -> Result<(), ClientError> {
        let name = req.name();
        match self.request(req, fds)? {
            Response::Ok => Ok(()),
            other => Err(unexpected(name, &other)),
        }
    }

    /// Calls an operation whose answer is [`Response::WaitStatus`].
    fn request_status(&mut self, req: Request) -> Result<WaitStatus, ClientError> {
        let name = req.name();
        match self.request(req, &[])? {
            Response::WaitStatus(status) => Ok(status),
            other => Err(unexpected(name, &other)),
        }
    }

    /// Creates sub-container `id` from `spec`, with `stdio` (stdin, stdout,
    /// stderr) or, if `None`, `/dev/null`.
    pub fn create(
        &mut self,
        id: &str,
        spec: &Spec,
        stdio: Option<[BorrowedFd<'_>; 3]>,
    ) -> Result<(), ClientError> {
        let fds: &[BorrowedFd<'_>] = match &stdio {
            Some(fds) => fds,
            None => &[],
        };
        let req = Request::Create {
            id: id.to_string(),
            spec: Box::new(spec.clone()),
            // At most 3, by the type.
            stdio_fds: if stdio.is_some() { 3 } else { 0 },
        };
        self.request_ok(req, fds)
    }

    /// Starts the created sub-container `id`.
    pub fn start(&mut self, id: &str) -> Result<(), ClientError> {
        self.request_ok(Request::Start { id: id.to_string() }, &[])
    }

    /// Starts the root container.
    pub fn start_root(&mut self) -> Result<(), ClientError> {
        self.request_ok(Request::StartRoot, &[])
    }

    /// Kills every process of container `id` and frees it.
    pub fn destroy(&mut self, id: &str) -> Result<(), ClientError> {
        self.request_ok(Request::Destroy { id: id.to_string() }, &[])
    }

    /// Waits for container `id`'s init process to exit.
    pub fn wait(&mut self, id: &str) -> Result<WaitStatus, ClientError> {
        self.request_status(Request::Wait { id: id.to_string() })
    }

    /// Waits for, and reaps, process `pid` of container `id`.
    pub fn wait_pid(&mut self, id: &str, pid: i32) -> Result<WaitStatus, ClientError> {
        self.request_status(Request::WaitPid {
            id: id.to_string(),
            pid,
        })
    }

    /// Runs a process in container `id` with `stdio` (stdin, stdout,
    /// stderr); returns its PID at once.
    pub fn execute_async(
        &mut self,
        id: &str,
        args: &ExecArgs,
        stdio: [BorrowedFd<'_>; 3],
    ) -> Result<i32, ClientError> {
        let req = Request::ExecuteAsync {
            id: id.to_string(),
            args: args.clone(),
        };
        let name = req.name();
        match self.request(req, &stdio)? {
            Response::Pid(pid) => Ok(pid),
            other => Err(unexpected(name, &other)),
        }
    }

    /// Sends signal `signo` to process `pid` of container `id` (0: its
    /// init), or to the processes `mode` names.
    pub fn signal(
        &mut self,
        id: &str,
        pid: i32,
        signo: i32,
        mode: SignalDelivery,
    ) -> Result<(), ClientError> {
        let req = Request::Signal {
            id: id.to_string(),
            pid,
            signo,
            mode,
        };
        self.request_ok(req, &[])
    }

    /// Stops every task of the sandbox.
    pub fn pause(&mut self) -> Result<(), ClientError> {
        self.request_ok(Request::Pause, &[])
    }

    /// Lets a paused sandbox run again.
    pub fn resume(&mut self) -> Result<(), ClientError> {
        self.request_ok(Request::Resume, &[])
    }

    /// Lists container `id`'s processes.
    pub fn processes(&mut self, id: &str) -> Result<Vec<ProcessInfo>, ClientError> {
        let req = Request::Processes { id: id.to_string() };
        let name = req.name();
        match self.request(req, &[])? {
            Response::Processes(list) => Ok(list),
            other => Err(unexpected(name, &other)),
        }
    }

    /// Container `id`'s statistics.
    pub fn event(&mut self, id: &str) -> Result<EventOut, ClientError> {
        let req = Request::Event { id: id.to_string() };
        let name = req.name();
        match self.request(req, &[])? {
            Response::Event(event) => Ok(*event),
            other => Err(unexpected(name, &other)),
        }
    }

    /// Saves the sandbox's state into `statefile`.
    pub fn checkpoint(
        &mut self,
        options: CheckpointOptions,
        statefile: BorrowedFd<'_>,
    ) -> Result<(), ClientError> {
        self.request_ok(Request::Checkpoint(options), &[statefile])
    }

    /// Restores the (created) sandbox from `statefile`.
    pub fn restore(&mut self, statefile: BorrowedFd<'_>) -> Result<(), ClientError> {
        self.request_ok(Request::Restore, &[statefile])
    }

    /// Configures the sandbox's network; `fds` are the fd-based links'
    /// channels, in order ([`CreateLinksAndRoutes::fd_count`] of them).
    pub fn create_links_and_routes(
        &mut self,
        args: &CreateLinksAndRoutes,
        fds: &[BorrowedFd<'_>],
    ) -> Result<(), ClientError> {
        self.request_ok(Request::CreateLinksAndRoutes(args.clone()), fds)
    }

    /// Every task's state and the kernel's thread backtraces.
    pub fn stacks(&mut self) -> Result<Stacks, ClientError> {
        match self.request(Request::Stacks, &[])? {
            Response::Stacks(stacks) => Ok(stacks),
            other => Err(unexpected("Stacks", &other)),
        }
    }

    /// Changes the log level and strace settings.
    pub fn logging_change(&mut self, args: &LoggingArgs) -> Result<(), ClientError> {
        self.request_ok(Request::LoggingChange(args.clone()), &[])
    }

    /// Profiles the kernel for `duration`, writing the profile to `out`.
    pub fn profile(
        &mut self,
        kind: ProfileKind,
        duration: Duration,
        out: BorrowedFd<'_>,
    ) -> Result<(), ClientError> {
        self.request_ok(Request::Profile { kind, duration }, &[out])
    }
}

impl AsFd for Client {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

fn unexpected(request: &'static str, resp: &Response) -> ClientError {
    ClientError::UnexpectedResponse {
        request,
        response: resp.name(),
    }
}
