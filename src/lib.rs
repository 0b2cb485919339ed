//! rvisor: a user-space Linux-compatible kernel that runs unmodified
//! x86_64 Linux programs in a sandbox — the Rust counterpart of gVisor's
//! `runsc boot`.
//!
//! An application's system calls never reach the host kernel: a platform
//! (ptrace today) traps each one and the [`kernel`] serves it from its own
//! objects. See `DESIGN.md` for the architecture.
//!
//! ```no_run
//! use rvisor::{Args, Config, Loader};
//! use std::os::fd::AsFd;
//!
//! let spec = rvisor::simple_spec("/", "/", &["/bin/true"], &[]).unwrap();
//! let stdio = [
//!     std::io::stdin().as_fd().try_clone_to_owned().unwrap(),
//!     std::io::stdout().as_fd().try_clone_to_owned().unwrap(),
//!     std::io::stderr().as_fd().try_clone_to_owned().unwrap(),
//! ];
//! let loader = Loader::new(Args { spec, config: Config::default(), stdio }).unwrap();
//! let started = loader.start().unwrap();
//! assert_eq!(started.wait().shell_code(), 0);
//! ```

#![warn(missing_docs)]

pub mod ctl;
pub mod errno;
pub mod ffi;
pub mod kernel;
pub mod loader;
pub mod mm;
pub mod net;
pub mod platform;
pub mod state;

pub use errno::{Errno, KResult};
pub use kernel::fs::vfs::RootMode;
pub use loader::{Args, Config, Error, ExitStatus, Loader};
pub use platform::PlatformKind;

/// Builds a minimal OCI spec: root directory, cwd, argv and environment.
pub fn simple_spec(
    root: &str,
    cwd: &str,
    argv: &[&str],
    env: &[String],
) -> Result<oci_spec::runtime::Spec, Error> {
    use oci_spec::runtime::{ProcessBuilder, RootBuilder, SpecBuilder};
    let process = ProcessBuilder::default()
        .args(argv.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .env(env.to_vec())
        .cwd(cwd)
        .build()
        .map_err(|e| Error::Spec(e.to_string()))?;
    let root = RootBuilder::default()
        .path(root)
        .readonly(false)
        .build()
        .map_err(|e| Error::Spec(e.to_string()))?;
    SpecBuilder::default()
        .process(process)
        .root(root)
        .build()
        .map_err(|e| Error::Spec(e.to_string()))
}
