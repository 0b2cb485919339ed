//! The control socket: how a process outside the sandbox drives it.
//!
//! - [`proto`]: the messages, a [`Request`] per operation of `runsc boot`'s
//!   control server and the [`Response`]s, with errors that keep their
//!   errno ([`CtlError`]).
//! - [`frame`]: a frame is a little-endian `u32` length and a postcard
//!   payload of at most [`frame::MAX_PAYLOAD`] bytes; file descriptors ride
//!   with it as `SCM_RIGHTS`, at most [`frame::MAX_FDS`].
//! - [`server`]: [`Server`] binds a 0600 filesystem socket or the abstract
//!   [`control_socket_addr`], checks each peer's credentials (same uid or
//!   root) and serves each connection on a thread, calling a [`Handler`].
//! - [`client`]: [`Client`], one typed method per operation.
//!
//! ```no_run
//! use rvisor::ctl::{Client, SignalDelivery};
//!
//! let mut client = Client::connect_sandbox("my-sandbox")?;
//! client.pause()?;
//! client.resume()?;
//! client.signal("my-sandbox", 0, libc::SIGTERM, SignalDelivery::AllProcesses)?;
//! let status = client.wait("my-sandbox")?;
//! println!("exit code {}", status.shell_code());
//! # Ok::<(), rvisor::ctl::ClientError>(())
//! ```

#![forbid(unsafe_code)]

pub mod client;
pub mod frame;
pub mod proto;
pub mod sandbox;
pub mod server;

pub use client::{Client, ClientError};
pub use frame::FrameError;
pub use proto::{
    CheckpointOptions, CreateLinksAndRoutes, CtlError, ErrorKind, EventOut, ExecArgs, LogLevel,
    LoggingArgs, ProcessInfo, ProcessState, ProfileKind, Request, Response, SignalDelivery, Stacks,
    Stats, Strace, WaitStatus,
};
pub use server::{Handler, RunningServer, Server, ServerError, ShutdownHandle};

/// Abstract socket name of sandbox `id`'s control socket, as runsc names it
/// (with the leading NUL that marks an abstract address).
pub fn control_socket_addr(id: &str) -> String {
    format!("\0runsc-sandbox.{id}")
}
