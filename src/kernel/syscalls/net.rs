//! Socket system calls. The network stack is not there yet: `socket`
//! refuses every family, and calls on descriptors that are not sockets
//! answer ENOTSOCK as Linux does.
#![allow(missing_docs)] // handlers are named after the syscalls they serve

use crate::kernel::run::Runner;
use crate::kernel::{Errno, KResult};

type A = [u64; 6];

pub fn socket(_r: &mut Runner, _a: A) -> KResult<u64> {
    Err(Errno::EAFNOSUPPORT)
}

/// Any socket call on a descriptor: EBADF if it is not open, ENOTSOCK
/// otherwise (there are no sockets yet).
pub fn on_fd(r: &mut Runner, a: A) -> KResult<u64> {
    r.file(a[0])?;
    Err(Errno::ENOTSOCK)
}
