//! Fuzzes the ELF header parser that guards execve: any bytes must give a
//! parsed image or ENOEXEC, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvisor::mm::elf::{ExecSource, parse};

struct Bytes<'a>(&'a [u8]);

impl ExecSource for Bytes<'_> {
    fn read_at(&self, buf: &mut [u8], off: u64) -> rvisor::KResult<usize> {
        let off = off.min(self.0.len() as u64) as usize;
        let n = buf.len().min(self.0.len() - off);
        buf[..n].copy_from_slice(&self.0[off..off + n]);
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = parse(&Bytes(data));
});
