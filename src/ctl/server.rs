//! The control server: accepts connections on a Unix stream socket, checks
//! each peer's credentials, and serves each connection on its own thread,
//! handing every well-formed [`Request`] to a [`Handler`].
//!
//! A connection is a sequence of request/response exchanges. A frame that
//! cannot be decoded gets an [`ErrorKind::BadRequest`] response and the
//! connection is closed; nothing a peer sends makes the server panic or
//! keep a descriptor it was not meant to keep.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::linux::fs::MetadataExt as _;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, getsockopt, listen, socket, sockopt,
};
use nix::sys::stat::{Mode, fchmod};

use super::frame::{self, FrameError, MAX_FDS};
use super::proto::{CtlError, ErrorKind, Request, Response};
use crate::Errno;

/// The default cap on connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// The default time [`Server::serve`] waits, once stopped, for connection
/// threads to finish.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// How long the accepting thread may spend writing a refusal.
const REFUSAL_TIMEOUT: Duration = Duration::from_millis(100);

/// Serves control requests. The sandbox implements it over its loader;
/// tests implement it with fakes.
pub trait Handler: Send + Sync {
    /// Serves `req`, which came with exactly [`Request::expected_fds`]
    /// descriptors `fds`. Returns the response and the descriptors to send
    /// with it (at most [`MAX_FDS`]); they are closed once sent.
    fn handle(&self, req: Request, fds: Vec<OwnedFd>) -> (Response, Vec<OwnedFd>);
}

/// Why the server could not start or keep serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The socket could not be created, bound or listened on.
    #[error("cannot bind control socket {addr}: {source}")]
    Bind {
        /// The address, for humans (abstract names start with `@`).
        addr: String,
        /// The cause.
        source: io::Error,
    },
    /// A bound filesystem socket came out with a mode wider than 0600.
    #[error("control socket {path} has mode {mode:o}, wider than 0600")]
    InsecureMode {
        /// The socket's path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A host I/O error while serving.
    #[error("control socket i/o error: {0}")]
    Io(#[from] io::Error),
    /// The serving thread panicked.
    #[error("control server thread panicked")]
    Panicked,
}

/// A bound control socket, ready to [`serve`](Server::serve).
pub struct Server {
    listener: UnixListener,
    socket_file: Option<SocketFile>,
    max_connections: usize,
    grace: Duration,
    shutdown: ShutdownHandle,
    conns: Arc<Connections>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("path", &self.socket_file.as_ref().map(|s| &s.path))
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds a filesystem socket at `path` with mode 0600.
    ///
    /// The socket's inode gets mode 0600 before `bind(2)` creates the file,
    /// and Linux creates it with that mode less the umask, so the file is
    /// never, even briefly, wider than 0600. Fails if `path` exists. The
    /// file is removed when the server ends (if it is still ours).
    pub fn bind(path: &Path) -> Result<Server, ServerError> {
        let bind_err = |source: io::Error| ServerError::Bind {
            addr: path.display().to_string(),
            source,
        };
        let addr = UnixAddr::new(path).map_err(|e| bind_err(e.into()))?;
        let fd = new_socket().map_err(bind_err)?;
        fchmod(&fd, Mode::from_bits_truncate(0o600)).map_err(|e| bind_err(e.into()))?;
        bind(fd.as_raw_fd(), &addr).map_err(|e| bind_err(e.into()))?;
        let meta = std::fs::symlink_metadata(path).map_err(bind_err)?;
        let socket_file = SocketFile {
            path: path.to_path_buf(),
            dev: meta.st_dev(),
            ino: meta.st_ino(),
        };
        let mode = meta.permissions().mode() & 0o7777;
        if mode & !0o600 != 0 || !meta.file_type().is_socket() {
            drop(socket_file);
            return Err(ServerError::InsecureMode {
                path: path.to_path_buf(),
                mode,
            });
        }
        listen(&fd, Backlog::MAXCONN).map_err(|e| bind_err(e.into()))?;
        let mut server = Server::from_listener(UnixListener::from(fd)).map_err(bind_err)?;
        server.socket_file = Some(socket_file);
        Ok(server)
    }

    /// Binds the abstract socket `name` (a leading NUL, as
    /// [`control_socket_addr`](super::control_socket_addr) writes it, is
    /// optional). Abstract sockets have no file mode: the peer credential
    /// check is their only guard.
    pub fn bind_abstract(name: &str) -> Result<Server, ServerError> {
        let name = name.strip_prefix('\0').unwrap_or(name);
        let bind_err = |source: io::Error| ServerError::Bind {
            addr: format!("@{name}"),
            source,
        };
        let addr = UnixAddr::new_abstract(name.as_bytes()).map_err(|e| bind_err(e.into()))?;
        let fd = new_socket().map_err(bind_err)?;
        bind(fd.as_raw_fd(), &addr).map_err(|e| bind_err(e.into()))?;
        listen(&fd, Backlog::MAXCONN).map_err(|e| bind_err(e.into()))?;
        Server::from_listener(UnixListener::from(fd)).map_err(bind_err)
    }

    /// Serves an already bound and listening socket, for instance one
    /// inherited from the process that started the sandbox.
    pub fn from_listener(listener: UnixListener) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            socket_file: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            grace: DEFAULT_SHUTDOWN_GRACE,
            shutdown: ShutdownHandle::new()?,
            conns: Arc::new(Connections::default()),
        })
    }

    /// Caps the number of connections served at once (at least 1); a peer
    /// beyond the cap gets an [`ErrorKind::Busy`] response and is closed.
    pub fn with_max_connections(mut self, max: usize) -> Server {
        self.max_connections = max.max(1);
        self
    }

    /// Sets how long [`serve`](Server::serve) waits, once stopped, for
    /// connection threads to finish (a handler blocked in, say, `Wait` is
    /// left to finish on its own).
    pub fn with_shutdown_grace(mut self, grace: Duration) -> Server {
        self.grace = grace;
        self
    }

    /// A handle that stops this server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// The filesystem path of the socket, if it has one.
    pub fn path(&self) -> Option<&Path> {
        self.socket_file.as_ref().map(|s| s.path.as_path())
    }

    /// Serves connections until [`ShutdownHandle::shutdown`] is called.
    /// Then it stops accepting, shuts every open connection down, waits up
    /// to the shutdown grace for their threads, and removes the socket
    /// file.
    pub fn serve(self, handler: Arc<dyn Handler>) -> Result<(), ServerError> {
        let result = self.accept_loop(&handler);
        self.conns.close_all();
        self.conns.wait_idle(self.grace);
        result
    }

    /// Serves on a new thread; the returned value stops it.
    pub fn spawn(self, handler: Arc<dyn Handler>) -> Result<RunningServer, ServerError> {
        let shutdown = self.shutdown.clone();
        let conns = self.conns.clone();
        let thread = std::thread::Builder::new()
            .name("ctl-accept".into())
            .spawn(move || self.serve(handler))?;
        Ok(RunningServer {
            shutdown,
            conns,
            thread,
        })
    }

    fn accept_loop(&self, handler: &Arc<dyn Handler>) -> Result<(), ServerError> {
        let our_uid = nix::unistd::geteuid().as_raw();
        while !self.shutdown.is_shutdown() {
            let mut fds = [
                PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.shutdown.inner.wake.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(io::Error::from(e).into()),
            }
            if self.shutdown.is_shutdown() {
                break;
            }
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream, our_uid, handler),
                // EAGAIN (the peer left before we accepted), EINTR,
                // ECONNABORTED, EPROTO...: nothing to do. Out of descriptors
                // or memory: back off rather than spin.
                Err(e) => {
                    if let Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) =
                        e.raw_os_error()
                    {
                        tracing::warn!("control socket: accept: {e}");
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks the peer, takes a connection slot and starts its thread.
    fn admit(&self, stream: UnixStream, our_uid: u32, handler: &Arc<dyn Handler>) {
        let peer = match getsockopt(&stream, sockopt::PeerCredentials) {
            Ok(cred) => cred.uid(),
            Err(e) => {
                refuse(
                    &stream,
                    CtlError::from_errno(Errno::from(e), "cannot identify peer"),
                );
                return;
            }
        };
        if peer != 0 && peer != our_uid {
            tracing::warn!("control socket: refused a peer with uid {peer}");
            refuse(
                &stream,
                CtlError::new(
                    ErrorKind::PermissionDenied,
                    format!("uid {peer} may not use this control socket"),
                ),
            );
            return;
        }
        let stream = Arc::new(stream);
        let Some(slot) = self.conns.register(&stream, self.max_connections) else {
            refuse(
                &stream,
                CtlError::new(ErrorKind::Busy, "too many control connections"),
            );
            return;
        };
        let handler = handler.clone();
        let spawned = std::thread::Builder::new()
            .name("ctl-conn".into())
            .spawn(move || serve_connection(stream, &*handler, slot));
        if let Err(e) = spawned {
            tracing::warn!("control socket: cannot start a connection thread: {e}");
        }
    }
}

/// A server running on its own thread (from [`Server::spawn`]).
#[derive(Debug)]
pub struct RunningServer {
    shutdown: ShutdownHandle,
    conns: Arc<Connections>,
    thread: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// A handle that stops the server.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// How many connections are being served now.
    pub fn active_connections(&self) -> usize {
        self.conns.lock().live.len()
    }

    /// Stops the server and waits for its accepting thread (see
    /// [`Server::serve`]).
    pub fn stop(self) -> Result<(), ServerError> {
        self.shutdown.shutdown();
        self.thread.join().map_err(|_| ServerError::Panicked)?
    }
}

/// Stops a [`Server`]; cheap to clone and usable from any thread.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    inner: Arc<ShutdownInner>,
}

#[derive(Debug)]
struct ShutdownInner {
    requested: AtomicBool,
    wake: EventFd,
}

impl ShutdownHandle {
    fn new() -> io::Result<ShutdownHandle> {
        let wake =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        Ok(ShutdownHandle {
            inner: Arc::new(ShutdownInner {
                requested: AtomicBool::new(false),
                wake,
            }),
        })
    }

    /// Asks the server to stop; returns at once.
    pub fn shutdown(&self) {
        self.inner.requested.store(true, Ordering::SeqCst);
        // Non-blocking; a full counter already wakes the server.
        let _ = self.inner.wake.write(1);
    }

    /// Whether [`shutdown`](ShutdownHandle::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }
}

/// A bound socket file, removed on drop if it is still the one we made.
struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path)
            && meta.st_dev() == self.dev
            && meta.st_ino() == self.ino
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn new_socket() -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// Sends `error` to a peer we will not serve; the caller then closes it.
fn refuse(stream: &UnixStream, error: CtlError) {
    let _ = stream.set_write_timeout(Some(REFUSAL_TIMEOUT));
    let _ = frame::send(stream, &Response::Error(error), &[]);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// The open connections, so that stopping the server can shut them down.
#[derive(Debug, Default)]
struct Connections {
    table: Mutex<ConnTable>,
    idle: Condvar,
}

#[derive(Debug, Default)]
struct ConnTable {
    next_id: u64,
    live: HashMap<u64, Arc<UnixStream>>,
    closing: bool,
}

impl Connections {
    fn lock(&self) -> MutexGuard<'_, ConnTable> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(self: &Arc<Self>, stream: &Arc<UnixStream>, max: usize) -> Option<ConnSlot> {
        let mut t = self.lock();
        if t.closing || t.live.len() >= max {
            return None;
        }
        let id = t.next_id;
        t.next_id += 1;
        t.live.insert(id, stream.clone());
        Some(ConnSlot {
            conns: self.clone(),
            id,
        })
    }

    fn close_all(&self) {
        let mut t = self.lock();
        t.closing = true;
        for stream in t.live.values() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    fn wait_idle(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut t = self.lock();
        while !t.live.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(
                    "control socket: {} connection(s) still busy at shutdown",
                    t.live.len()
                );
                return;
            }
            t = match self.idle.wait_timeout(t, deadline - now) {
                Ok((t, _)) => t,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

/// A connection's place in [`Connections`]; freed on drop, even if the
/// connection thread unwinds.
struct ConnSlot {
    conns: Arc<Connections>,
    id: u64,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut t = self.conns.lock();
        t.live.remove(&self.id);
        drop(t);
        self.conns.idle.notify_all();
    }
}

/// Serves one connection, then frees its slot.
fn serve_connection(stream: Arc<UnixStream>, handler: &dyn Handler, slot: ConnSlot) {
    serve_frames(&stream, handler);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    // Our reference goes first, so the socket is closed by the time the
    // slot is seen free.
    drop(stream);
    drop(slot);
}

/// Answers requests on `stream` until the peer closes it, sends a bad
/// frame, or the server stops.
fn serve_frames(stream: &UnixStream, handler: &dyn Handler) {
    loop {
        match frame::recv::<Request>(stream) {
            Ok((req, fds)) => {
                let (resp, out_fds) = dispatch(handler, req, fds);
                if send_response(stream, &resp, &out_fds).is_err() {
                    break;
                }
            }
            Err(FrameError::Closed) => break,
            // The connection itself failed (reset, shut down): no one to
            // answer.
            Err(FrameError::Io(_)) => break,
            Err(e) => {
                let _ = frame::send(
                    stream,
                    &Response::Error(CtlError::new(ErrorKind::BadRequest, e.to_string())),
                    &[],
                );
                break;
            }
        }
    }
}

/// Serves one decoded request as a connection does: a request carrying
/// other than [`Request::expected_fds`] descriptors gets an
/// [`ErrorKind::BadRequest`] (`EBADF`) response without reaching
/// `handler`, and a handler that panics gives an [`ErrorKind::Internal`]
/// response.
pub fn dispatch(
    handler: &dyn Handler,
    req: Request,
    fds: Vec<OwnedFd>,
) -> (Response, Vec<OwnedFd>) {
    let name = req.name();
    let expected = req.expected_fds();
    if fds.len() != expected {
        let err = CtlError::new(
            ErrorKind::BadRequest,
            format!(
                "{name} carries {} file descriptors, expected {expected}",
                fds.len()
            ),
        )
        .with_errno(Errno::EBADF);
        return (Response::Error(err), Vec::new());
    }
    match catch_unwind(AssertUnwindSafe(|| handler.handle(req, fds))) {
        Ok(answer) => answer,
        Err(_) => {
            tracing::error!("control socket: the {name} handler panicked");
            (
                Response::error(ErrorKind::Internal, format!("{name}: handler panicked")),
                Vec::new(),
            )
        }
    }
}

/// Sends a handler's answer; an answer that cannot travel (too large, too
/// many descriptors) is replaced by an [`ErrorKind::Internal`] error.
fn send_response(stream: &UnixStream, resp: &Response, fds: &[OwnedFd]) -> Result<(), FrameError> {
    if fds.len() > MAX_FDS {
        let err = CtlError::new(
            ErrorKind::Internal,
            format!(
                "{} response carries more than {MAX_FDS} descriptors",
                resp.name()
            ),
        );
        return frame::send(stream, &Response::Error(err), &[]);
    }
    match frame::encode(resp) {
        Ok(bytes) => {
            let fds: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
            frame::send_frame(stream, &bytes, &fds)
        }
        Err(e) => {
            let err = CtlError::new(
                ErrorKind::Internal,
                format!("{} response: {e}", resp.name()),
            )
            .with_errno(Errno::EMSGSIZE);
            frame::send(stream, &Response::Error(err), &[])
        }
    }
}
