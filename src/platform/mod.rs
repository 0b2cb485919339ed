//! Platforms run application code until it traps back into the kernel.
//!
//! A platform knows nothing of what a system call means: it hands the
//! kernel the application's registers whenever the application makes a
//! system call, faults, receives a host signal, or is kicked by the kernel.
//! Only the ptrace platform exists so far; systrap and KVM will implement
//! the same [`Context`] contract.

pub mod ptrace;

use serde::{Deserialize, Serialize};

/// General-purpose registers of an application thread (the host's
/// `user_regs_struct` layout, including `fs_base`/`gs_base`).
pub type Regs = libc::user_regs_struct;

/// Why application code stopped running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trap {
    /// The application executed `syscall`; the number is in `orig_rax`.
    Syscall,
    /// A synchronous fault (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP) raised
    /// by the CPU while running application code.
    Fault {
        /// Host signal number describing the fault.
        signo: i32,
        /// `si_code` of the fault.
        code: i32,
        /// Faulting address (`si_addr`).
        addr: u64,
    },
    /// The kernel interrupted the application (a signal is pending, a pause
    /// was requested, ...).
    Interrupted,
    /// The host process behind this context died (for instance the host
    /// OOM killer); the application thread cannot continue.
    Died,
}

/// Which platform runs the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PlatformKind {
    /// `PTRACE_SYSEMU` on a stub process per address space.
    #[default]
    Ptrace,
}

impl std::str::FromStr for PlatformKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ptrace" => Ok(PlatformKind::Ptrace),
            "systrap" | "kvm" => Err(format!("platform {s:?} is not implemented yet")),
            _ => Err(format!("unknown platform {s:?}")),
        }
    }
}

impl std::fmt::Display for PlatformKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlatformKind::Ptrace => f.write_str("ptrace"),
        }
    }
}

/// Operations on the host side of an application address space.
///
/// The memory layer describes mappings; the platform makes them real in
/// whatever holds the application's page tables (a stub process, a VM).
pub trait AddressSpaceOps {
    /// Map `len` bytes of host file `fd` at `offset` to `addr` (shared,
    /// fixed), with protection `prot`.
    fn map(&mut self, addr: u64, len: u64, prot: i32, fd: i32, offset: u64) -> Result<(), i32>;
    /// Remove mappings in `[addr, addr+len)`.
    fn unmap(&mut self, addr: u64, len: u64) -> Result<(), i32>;
    /// Change protection of `[addr, addr+len)`.
    fn protect(&mut self, addr: u64, len: u64, prot: i32) -> Result<(), i32>;
}
