//! Memory system calls.
#![allow(missing_docs)] // handlers are named after the syscalls they serve

use crate::kernel::fs::file::MmapSource;
use crate::kernel::run::Runner;
use crate::kernel::task::lock;
use crate::kernel::{Errno, KResult};
use crate::mm::{Backing, PAGE_SIZE, VmaName, page_up};

type A = [u64; 6];

const MAP_SHARED: u64 = 0x01;
const MAP_PRIVATE: u64 = 0x02;
const MAP_SHARED_VALIDATE: u64 = 0x03;
const MAP_FIXED: u64 = 0x10;
const MAP_ANONYMOUS: u64 = 0x20;
const MAP_FIXED_NOREPLACE: u64 = 0x10_0000;

pub fn mmap(r: &mut Runner, a: A) -> KResult<u64> {
    let (hint, len, prot, flags, fd, off) = (a[0], a[1], a[2] as i32, a[3], a[4] as i32, a[5]);
    if len == 0 || !off.is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    let len = page_up(len);
    if len == 0 || len > crate::mm::address_space::TASK_SIZE {
        return Err(Errno::ENOMEM);
    }
    let shared = match flags & 0x3 {
        MAP_SHARED | MAP_SHARED_VALIDATE => true,
        MAP_PRIVATE => false,
        _ => return Err(Errno::EINVAL),
    };
    let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
    let mut mm = lock(&r.mm);
    let addr = mm.pick_addr(hint, len, fixed)?;
    if flags & MAP_FIXED_NOREPLACE != 0
        && (addr..addr + len)
            .step_by(PAGE_SIZE as usize)
            .any(|p| mm.find(p).is_some())
    {
        return Err(Errno::EEXIST);
    }
    if flags & MAP_ANONYMOUS != 0 {
        mm.map_anon(&mut r.ctx, addr, len, prot, shared, VmaName::Anon)?;
        return Ok(addr);
    }
    drop(mm);
    let f = r.file(fd as u64)?;
    if !f.readable() {
        return Err(Errno::EACCES);
    }
    if shared && prot & libc::PROT_WRITE != 0 && !f.writable() {
        return Err(Errno::EACCES);
    }
    let st = f.ops.stat()?;
    let name = VmaName::File {
        path: String::from_utf8_lossy(&f.path).into_owned(),
        offset: off,
        ino: st.st_ino,
    };
    let source = f.ops.mmap_source()?;
    let mut mm = lock(&r.mm);
    match source {
        MmapSource::HostFd(hfd) if shared => {
            mm.insert(
                &mut r.ctx,
                addr,
                len,
                prot,
                true,
                Backing::File { fd: hfd, off },
                name,
            )?;
        }
        _ => {
            // Private (or read-only shared) mapping: a private copy of the
            // file's bytes.
            mm.map_anon(&mut r.ctx, addr, len, prot, false, name)?;
            let size = st.st_size.max(0) as u64;
            if off < size {
                let n = len.min(size - off);
                mm.fill_from(addr, n, off, &mut |buf, o| f.ops.read(buf, Some(o)))?;
            }
        }
    }
    Ok(addr)
}

pub fn munmap(r: &mut Runner, a: A) -> KResult<u64> {
    lock(&r.mm).unmap(&mut r.ctx, a[0], a[1])?;
    Ok(0)
}

pub fn mprotect(r: &mut Runner, a: A) -> KResult<u64> {
    let prot = a[2] as i32;
    if prot
        & !(libc::PROT_READ
            | libc::PROT_WRITE
            | libc::PROT_EXEC
            | libc::PROT_GROWSDOWN
            | libc::PROT_GROWSUP)
        != 0
    {
        return Err(Errno::EINVAL);
    }
    let prot = prot & (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC);
    lock(&r.mm).protect(&mut r.ctx, a[0], a[1], prot)?;
    Ok(0)
}

pub fn brk(r: &mut Runner, a: A) -> KResult<u64> {
    Ok(lock(&r.mm).set_brk(&mut r.ctx, a[0]))
}

pub fn mremap(r: &mut Runner, a: A) -> KResult<u64> {
    const MREMAP_MAYMOVE: u64 = 1;
    const MREMAP_FIXED: u64 = 2;
    let flags = a[3];
    if flags & !(MREMAP_MAYMOVE | MREMAP_FIXED | 4) != 0
        || (flags & MREMAP_FIXED != 0 && flags & MREMAP_MAYMOVE == 0)
    {
        return Err(Errno::EINVAL);
    }
    let fixed = (flags & MREMAP_FIXED != 0).then_some(a[4]);
    lock(&r.mm).remap(
        &mut r.ctx,
        a[0],
        a[1],
        a[2],
        flags & MREMAP_MAYMOVE != 0,
        fixed,
    )
}

pub fn madvise(r: &mut Runner, a: A) -> KResult<u64> {
    if !a[0].is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    match a[2] as i32 {
        libc::MADV_DONTNEED | libc::MADV_FREE => {
            lock(&r.mm).dont_need(a[0], a[1])?;
            Ok(0)
        }
        _ => Ok(0),
    }
}

pub fn msync(r: &mut Runner, a: A) -> KResult<u64> {
    if !a[0].is_multiple_of(PAGE_SIZE) {
        return Err(Errno::EINVAL);
    }
    // Shared mappings are the file's own pages: nothing to write back.
    let mm = lock(&r.mm);
    let end = a[0].saturating_add(page_up(a[1]));
    let mut p = a[0];
    while p < end {
        let v = mm.find(p).ok_or(Errno::ENOMEM)?;
        p = v.end;
    }
    Ok(0)
}

pub fn mincore(r: &mut Runner, a: A) -> KResult<u64> {
    let pages = page_up(a[1]) / PAGE_SIZE;
    {
        let mm = lock(&r.mm);
        for i in 0..pages {
            mm.find(a[0] + i * PAGE_SIZE).ok_or(Errno::ENOMEM)?;
        }
    }
    r.write_mem(a[2], &vec![1u8; pages as usize])?;
    Ok(0)
}

pub fn mlock(_r: &mut Runner, _a: A) -> KResult<u64> {
    Ok(0)
}
