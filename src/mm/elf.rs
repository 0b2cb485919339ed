//! ELF loading: static, static-PIE and dynamic (`PT_INTERP`) x86_64
//! executables, and the initial stack (argv, envp, auxiliary vector).

use super::address_space::{AddressSpace, PIE_BASE, STACK_SIZE, STACK_TOP, VmaName};
use super::memfile::{page_down, page_up};
use crate::errno::{Errno, KResult};
use crate::platform::AddressSpaceOps;

/// Something an executable can be read from.
pub trait ExecSource {
    /// Reads at `off`; returns bytes read (0 at end of file).
    fn read_at(&self, buf: &mut [u8], off: u64) -> KResult<usize>;
}

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;

/// A program header.
#[derive(Debug, Clone, Copy)]
pub struct Phdr {
    /// Segment type.
    pub p_type: u32,
    /// PF_* flags.
    pub p_flags: u32,
    /// File offset.
    pub p_offset: u64,
    /// Virtual address.
    pub p_vaddr: u64,
    /// Bytes in the file.
    pub p_filesz: u64,
    /// Bytes in memory.
    pub p_memsz: u64,
}

/// A parsed ELF header with its program headers.
#[derive(Debug, Clone)]
pub struct ElfFile {
    /// ET_EXEC or ET_DYN.
    pub e_type: u16,
    /// Entry point (unrelocated).
    pub entry: u64,
    /// Offset of the program headers in the file.
    pub phoff: u64,
    /// Program headers.
    pub phdrs: Vec<Phdr>,
    /// Path of the interpreter, if any.
    pub interp: Option<Vec<u8>>,
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or([0; 8]))
}

fn read_exact(src: &dyn ExecSource, buf: &mut [u8], off: u64) -> KResult<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = src.read_at(&mut buf[done..], off + done as u64)?;
        if n == 0 {
            return Err(Errno::ENOEXEC);
        }
        done += n;
    }
    Ok(())
}

/// Parses the ELF header and program headers of `hdr` (the file's first
/// bytes, at least 64) reading the rest from `src`. Anything that is not a
/// loadable x86_64 ELF is ENOEXEC.
pub fn parse(src: &dyn ExecSource) -> KResult<ElfFile> {
    let mut h = [0u8; 64];
    read_exact(src, &mut h, 0)?;
    if &h[0..4] != b"\x7fELF" || h[4] != 2 || h[5] != 1 || h[6] != 1 {
        return Err(Errno::ENOEXEC);
    }
    let e_type = u16_at(&h, 16);
    if (e_type != ET_EXEC && e_type != ET_DYN) || u16_at(&h, 18) != EM_X86_64 {
        return Err(Errno::ENOEXEC);
    }
    let entry = u64_at(&h, 24);
    let phoff = u64_at(&h, 32);
    let phentsize = u16_at(&h, 54) as usize;
    let phnum = u16_at(&h, 56) as usize;
    if phentsize != 56 || phnum == 0 || phnum > 128 {
        return Err(Errno::ENOEXEC);
    }
    let mut ph = vec![0u8; phnum * 56];
    read_exact(src, &mut ph, phoff)?;
    let mut phdrs = Vec::with_capacity(phnum);
    let mut interp = None;
    for i in 0..phnum {
        let b = &ph[i * 56..(i + 1) * 56];
        let p = Phdr {
            p_type: u32_at(b, 0),
            p_flags: u32_at(b, 4),
            p_offset: u64_at(b, 8),
            p_vaddr: u64_at(b, 16),
            p_filesz: u64_at(b, 32),
            p_memsz: u64_at(b, 40),
        };
        if p.p_type == PT_LOAD
            && (p.p_filesz > p.p_memsz
                || p.p_vaddr.checked_add(p.p_memsz).is_none_or(|e| e > 1 << 47)
                || p.p_offset % 4096 != p.p_vaddr % 4096)
        {
            return Err(Errno::ENOEXEC);
        }
        if p.p_type == PT_INTERP {
            if p.p_filesz == 0 || p.p_filesz > 4096 {
                return Err(Errno::ENOEXEC);
            }
            let mut s = vec![0u8; p.p_filesz as usize];
            read_exact(src, &mut s, p.p_offset)?;
            while s.last() == Some(&0) {
                s.pop();
            }
            interp = Some(s);
        }
        phdrs.push(p);
    }
    if !phdrs.iter().any(|p| p.p_type == PT_LOAD) {
        return Err(Errno::ENOEXEC);
    }
    Ok(ElfFile {
        e_type,
        entry,
        phoff,
        phdrs,
        interp,
    })
}

/// Where an image landed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Loaded {
    /// Load bias (0 for ET_EXEC).
    pub bias: u64,
    /// Relocated entry point.
    pub entry: u64,
    /// Address of the program headers in memory.
    pub phdr: u64,
    /// Number of program headers.
    pub phnum: u64,
    /// End of the highest segment (start of brk for the main program).
    pub end: u64,
}

fn prot_of(flags: u32) -> i32 {
    let mut p = 0;
    if flags & 4 != 0 {
        p |= libc::PROT_READ;
    }
    if flags & 2 != 0 {
        p |= libc::PROT_WRITE;
    }
    if flags & 1 != 0 {
        p |= libc::PROT_EXEC;
    }
    p
}

/// Maps the PT_LOAD segments of `elf` into `mm`. `main` chooses the PIE
/// base for ET_DYN main programs; interpreters go to a free range.
pub fn load(
    mm: &mut AddressSpace,
    ops: &mut dyn AddressSpaceOps,
    src: &dyn ExecSource,
    elf: &ElfFile,
    main: bool,
    name: &str,
    ino: u64,
) -> KResult<Loaded> {
    let loads: Vec<&Phdr> = elf.phdrs.iter().filter(|p| p.p_type == PT_LOAD).collect();
    let lo = page_down(loads.iter().map(|p| p.p_vaddr).min().unwrap_or(0));
    let hi = page_up(
        loads
            .iter()
            .map(|p| p.p_vaddr + p.p_memsz)
            .max()
            .unwrap_or(0),
    );
    if hi <= lo {
        return Err(Errno::ENOEXEC);
    }
    let span = hi - lo;
    let bias = if elf.e_type == ET_DYN {
        if main && lo == 0 {
            PIE_BASE
        } else {
            mm.pick_addr(0, span, false)? - lo
        }
    } else {
        0
    };
    let start = lo + bias;
    mm.map_anon(
        ops,
        start,
        span,
        libc::PROT_READ | libc::PROT_WRITE,
        false,
        VmaName::File {
            path: name.to_string(),
            offset: 0,
            ino,
        },
    )?;
    for p in &loads {
        let vstart = page_down(p.p_vaddr) + bias;
        let foff = page_down(p.p_offset);
        let flen = p.p_offset + p.p_filesz - foff;
        mm.fill_from(vstart, flen, foff, &mut |buf, off| src.read_at(buf, off))?;
        if p.p_memsz > p.p_filesz {
            // Zero the rest of the last file page (bss start).
            let bss = p.p_vaddr + p.p_filesz + bias;
            let pad = page_up(bss) - bss;
            if pad > 0 {
                mm.write_force(bss, &vec![0u8; pad as usize])?;
            }
        }
    }
    // Protections: gaps between segments become inaccessible.
    mm.protect(ops, start, span, libc::PROT_NONE)?;
    for p in &loads {
        let s = page_down(p.p_vaddr) + bias;
        let e = page_up(p.p_vaddr + p.p_memsz) + bias;
        mm.protect(ops, s, e - s, prot_of(p.p_flags))?;
    }
    let phdr = if let Some(p) = elf.phdrs.iter().find(|p| p.p_type == PT_PHDR) {
        p.p_vaddr + bias
    } else {
        let first = loads[0];
        first.p_vaddr - first.p_offset + elf.phoff + bias
    };
    Ok(Loaded {
        bias,
        entry: elf.entry + bias,
        phdr,
        phnum: elf.phdrs.len() as u64,
        end: hi + bias,
    })
}

/// Auxiliary vector keys.
#[allow(missing_docs)]
pub mod auxv {
    pub const AT_NULL: u64 = 0;
    pub const AT_PHDR: u64 = 3;
    pub const AT_PHENT: u64 = 4;
    pub const AT_PHNUM: u64 = 5;
    pub const AT_PAGESZ: u64 = 6;
    pub const AT_BASE: u64 = 7;
    pub const AT_FLAGS: u64 = 8;
    pub const AT_ENTRY: u64 = 9;
    pub const AT_UID: u64 = 11;
    pub const AT_EUID: u64 = 12;
    pub const AT_GID: u64 = 13;
    pub const AT_EGID: u64 = 14;
    pub const AT_PLATFORM: u64 = 15;
    pub const AT_HWCAP: u64 = 16;
    pub const AT_CLKTCK: u64 = 17;
    pub const AT_SECURE: u64 = 23;
    pub const AT_RANDOM: u64 = 25;
    pub const AT_HWCAP2: u64 = 26;
    pub const AT_EXECFN: u64 = 31;
    pub const AT_MINSIGSTKSZ: u64 = 51;
}

/// Inputs of the initial stack.
#[derive(Debug)]
pub struct StackArgs<'a> {
    /// argv strings.
    pub argv: &'a [Vec<u8>],
    /// envp strings.
    pub envp: &'a [Vec<u8>],
    /// AT_EXECFN string.
    pub execfn: &'a [u8],
    /// Main program.
    pub main: Loaded,
    /// Interpreter, if any.
    pub interp: Option<Loaded>,
    /// Real/effective uid/gid.
    pub creds: (u32, u32, u32, u32),
    /// Minimum signal stack size to advertise.
    pub min_sigstksz: u64,
}

/// Maps the main thread's stack and writes argc/argv/envp/auxv on it.
/// Returns the initial stack pointer.
pub fn build_stack(
    mm: &mut AddressSpace,
    ops: &mut dyn AddressSpaceOps,
    a: &StackArgs<'_>,
) -> KResult<u64> {
    let base = STACK_TOP - STACK_SIZE;
    mm.map_anon(
        ops,
        base,
        STACK_SIZE,
        libc::PROT_READ | libc::PROT_WRITE,
        false,
        VmaName::Stack,
    )?;
    let total: usize = a
        .argv
        .iter()
        .chain(a.envp.iter())
        .map(|s| s.len() + 1)
        .sum::<usize>()
        + a.execfn.len()
        + 1;
    if total > (STACK_SIZE / 4) as usize {
        return Err(Errno::E2BIG);
    }
    let mut sp = STACK_TOP - 16;
    fn push(mm: &mut AddressSpace, sp: &mut u64, b: &[u8]) -> KResult<u64> {
        *sp -= b.len() as u64 + 1;
        mm.write(*sp, b)?;
        mm.write(*sp + b.len() as u64, &[0])?;
        Ok(*sp)
    }
    let execfn = push(mm, &mut sp, a.execfn)?;
    let env_end = sp;
    let mut envp = Vec::with_capacity(a.envp.len());
    for e in a.envp.iter().rev() {
        envp.push(push(mm, &mut sp, e)?);
    }
    envp.reverse();
    let env_start = sp;
    let arg_end = sp;
    let mut argv = Vec::with_capacity(a.argv.len());
    for s in a.argv.iter().rev() {
        argv.push(push(mm, &mut sp, s)?);
    }
    argv.reverse();
    let arg_start = sp;
    let platform = push(mm, &mut sp, b"x86_64")?;
    let mut random = [0u8; 16];
    // SAFETY: getrandom into a local buffer.
    unsafe { libc::getrandom(random.as_mut_ptr().cast(), 16, 0) };
    sp = (sp - 16) & !15;
    let random_addr = sp;
    mm.write(random_addr, &random)?;

    // CPUID leaf 1 exists on every x86_64 CPU.
    let hwcap = std::arch::x86_64::__cpuid(1).edx as u64;
    let interp_base = a.interp.map(|i| i.bias).unwrap_or(0);
    let aux: Vec<(u64, u64)> = vec![
        (auxv::AT_HWCAP, hwcap),
        (auxv::AT_PAGESZ, 4096),
        (auxv::AT_CLKTCK, 100),
        (auxv::AT_PHDR, a.main.phdr),
        (auxv::AT_PHENT, 56),
        (auxv::AT_PHNUM, a.main.phnum),
        (auxv::AT_BASE, interp_base),
        (auxv::AT_FLAGS, 0),
        (auxv::AT_ENTRY, a.main.entry),
        (auxv::AT_UID, a.creds.0 as u64),
        (auxv::AT_EUID, a.creds.1 as u64),
        (auxv::AT_GID, a.creds.2 as u64),
        (auxv::AT_EGID, a.creds.3 as u64),
        (auxv::AT_SECURE, 0),
        (auxv::AT_RANDOM, random_addr),
        (auxv::AT_HWCAP2, 0),
        (auxv::AT_EXECFN, execfn),
        (auxv::AT_PLATFORM, platform),
        (auxv::AT_MINSIGSTKSZ, a.min_sigstksz),
        (auxv::AT_NULL, 0),
    ];
    let words = 1 + argv.len() + 1 + envp.len() + 1 + aux.len() * 2;
    sp -= (words * 8) as u64;
    sp &= !15;
    let mut out: Vec<u64> = Vec::with_capacity(words);
    out.push(argv.len() as u64);
    out.extend(&argv);
    out.push(0);
    out.extend(&envp);
    out.push(0);
    for (k, v) in &aux {
        out.push(*k);
        out.push(*v);
    }
    let bytes: Vec<u8> = out.iter().flat_map(|w| w.to_le_bytes()).collect();
    mm.write(sp, &bytes)?;
    mm.arg_range = (arg_start, arg_end);
    mm.env_range = (env_start, env_end);
    mm.auxv = aux;
    Ok(sp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Bytes(Vec<u8>);
    impl ExecSource for Bytes {
        fn read_at(&self, buf: &mut [u8], off: u64) -> KResult<usize> {
            let off = off.min(self.0.len() as u64) as usize;
            let n = buf.len().min(self.0.len() - off);
            buf[..n].copy_from_slice(&self.0[off..off + n]);
            Ok(n)
        }
    }

    #[test]
    fn parses_host_busybox_or_true() {
        let path = ["/bin/busybox", "/bin/true"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("a host binary");
        let e = parse(&Bytes(std::fs::read(path).expect("read"))).expect("parse");
        assert!(e.phdrs.iter().any(|p| p.p_type == PT_LOAD));
    }

    #[test]
    fn garbage_is_enoexec() {
        assert_eq!(
            parse(&Bytes(b"#!/bin/sh\necho hi\n".to_vec())).err(),
            Some(Errno::ENOEXEC)
        );
        assert_eq!(parse(&Bytes(Vec::new())).err(), Some(Errno::ENOEXEC));
    }

    proptest! {
        #[test]
        fn mutated_headers_never_panic(flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..16)) {
            let mut b = std::fs::read("/bin/true").unwrap_or_else(|_| vec![0; 4096]);
            b.truncate(4096);
            for (i, v) in flips {
                if i < b.len() { b[i] = v; }
            }
            let _ = parse(&Bytes(b));
        }
    }
}
