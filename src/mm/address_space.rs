//! Application address spaces: the kernel's record of every mapping (VMA)
//! and the single place that changes them, keeping the platform's host
//! mappings in step.

use super::memfile::{MemRange, MemoryFile, PAGE_SIZE, page_down, page_up};
use crate::errno::{Errno, KResult};
use crate::platform::AddressSpaceOps;
use crate::platform::ptrace::stub::{STUB_ADDR, STUB_END};
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

/// Highest address (exclusive) of the application's stack.
pub const STACK_TOP: u64 = 0x7fff_ffff_0000;
/// Size reserved for the main thread's stack.
pub const STACK_SIZE: u64 = 8 << 20;
/// Top of the area searched top-down for mappings without an address.
pub const MMAP_TOP: u64 = STACK_TOP - STACK_SIZE - (64 << 20);
/// Lowest address handed out for mappings without an address.
pub const MMAP_MIN: u64 = 0x1_0000_0000;
/// Load address of position-independent executables.
pub const PIE_BASE: u64 = 0x5555_5555_4000;
/// Highest user address.
pub const TASK_SIZE: u64 = crate::platform::ptrace::stub::TASK_SIZE;

/// What a mapping's pages are.
#[derive(Clone, Debug)]
pub enum Backing {
    /// A range of the memory file; `off` is the offset within the range of
    /// the VMA's first byte.
    Mem {
        /// The allocation.
        range: Arc<MemRange>,
        /// Offset of the VMA's start within it.
        off: u64,
    },
    /// A shared mapping of another host file (a tmpfs file's memfd), whose
    /// page cache keeps every mapper and `read`/`write` coherent.
    File {
        /// The host file.
        fd: Arc<OwnedFd>,
        /// File offset of the VMA's start.
        off: u64,
    },
}

impl Backing {
    fn advanced(&self, by: u64) -> Backing {
        match self {
            Backing::Mem { range, off } => Backing::Mem {
                range: range.clone(),
                off: off + by,
            },
            Backing::File { fd, off } => Backing::File {
                fd: fd.clone(),
                off: off + by,
            },
        }
    }
}

/// How a mapping is labelled in `/proc/<pid>/maps`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum VmaName {
    /// Anonymous memory.
    #[default]
    Anon,
    /// The program break area.
    Heap,
    /// The main thread's stack.
    Stack,
    /// A file mapping.
    File {
        /// Path inside the sandbox.
        path: String,
        /// File offset of the mapping's start.
        offset: u64,
        /// Inode number.
        ino: u64,
    },
}

/// A virtual memory area.
#[derive(Clone, Debug)]
pub struct Vma {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// PROT_* bits.
    pub prot: i32,
    /// MAP_SHARED (changes visible to other mappers) vs private.
    pub shared: bool,
    /// Pages.
    pub backing: Backing,
    /// Label.
    pub name: VmaName,
}

impl Vma {
    fn split_at(&self, at: u64) -> (Vma, Vma) {
        let mut lo = self.clone();
        let mut hi = self.clone();
        lo.end = at;
        hi.start = at;
        hi.backing = self.backing.advanced(at - self.start);
        if let VmaName::File { offset, .. } = &mut hi.name {
            *offset += at - self.start;
        }
        (lo, hi)
    }

    fn host_fd_off(&self, mf: &MemoryFile) -> (i32, u64) {
        match &self.backing {
            Backing::Mem { range, off } => (mf.fd(), range.off + off),
            Backing::File { fd, off } => (fd.as_raw_fd(), *off),
        }
    }
}

/// An application address space.
#[derive(Debug)]
pub struct AddressSpace {
    mf: Arc<MemoryFile>,
    vmas: BTreeMap<u64, Vma>,
    /// Start of the program break area.
    pub brk_start: u64,
    /// Current program break.
    pub brk: u64,
    /// Where argv strings start and end (for /proc/<pid>/cmdline).
    pub arg_range: (u64, u64),
    /// Where environment strings start and end.
    pub env_range: (u64, u64),
    /// The auxiliary vector as given to the program.
    pub auxv: Vec<(u64, u64)>,
}

fn prot_ok(prot: i32, write: bool) -> bool {
    if write {
        prot & libc::PROT_WRITE != 0
    } else {
        prot & libc::PROT_READ != 0
    }
}

fn host_err(e: i32) -> Errno {
    Errno(e)
}

impl AddressSpace {
    /// An empty address space.
    pub fn new(mf: Arc<MemoryFile>) -> AddressSpace {
        AddressSpace {
            mf,
            vmas: BTreeMap::new(),
            brk_start: 0,
            brk: 0,
            arg_range: (0, 0),
            env_range: (0, 0),
            auxv: Vec::new(),
        }
    }

    /// The memory file backing this address space.
    pub fn memory_file(&self) -> &Arc<MemoryFile> {
        &self.mf
    }

    /// All VMAs in address order.
    pub fn vmas(&self) -> impl Iterator<Item = &Vma> {
        self.vmas.values()
    }

    /// The VMA containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Vma> {
        self.vmas
            .range(..=addr)
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| addr < v.end)
    }

    fn overlaps(&self, start: u64, end: u64) -> bool {
        if let Some((_, v)) = self.vmas.range(..end).next_back() {
            return v.end > start;
        }
        false
    }

    fn range_ok(start: u64, len: u64) -> bool {
        let Some(end) = start.checked_add(len) else {
            return false;
        };
        end <= TASK_SIZE && !(start < STUB_END && end > STUB_ADDR)
    }

    /// Finds a free range of `len` bytes, top-down below MMAP_TOP.
    pub fn find_free(&self, len: u64) -> Option<u64> {
        let mut top = MMAP_TOP;
        for (_, v) in self.vmas.range(..MMAP_TOP).rev() {
            if v.end <= top && top - v.end >= len {
                return Some(top - len);
            }
            top = top.min(v.start);
        }
        (top >= MMAP_MIN + len).then(|| top - len)
    }

    /// Chooses an address for a new mapping: `hint` if free, else a free
    /// range (EINVAL/ENOMEM as mmap(2) reports).
    pub fn pick_addr(&self, hint: u64, len: u64, fixed: bool) -> KResult<u64> {
        if fixed {
            if !hint.is_multiple_of(PAGE_SIZE) || !Self::range_ok(hint, len) {
                return Err(if !hint.is_multiple_of(PAGE_SIZE) {
                    Errno::EINVAL
                } else {
                    Errno::ENOMEM
                });
            }
            return Ok(hint);
        }
        let hint = page_down(hint);
        if hint >= MMAP_MIN && Self::range_ok(hint, len) && !self.overlaps(hint, hint + len) {
            return Ok(hint);
        }
        self.find_free(len).ok_or(Errno::ENOMEM)
    }

    /// Splits VMAs so that `addr` is a boundary.
    fn split(&mut self, addr: u64) {
        let Some(v) = self.find(addr).cloned() else {
            return;
        };
        if v.start == addr {
            return;
        }
        let (lo, hi) = v.split_at(addr);
        self.vmas.insert(lo.start, lo);
        self.vmas.insert(hi.start, hi);
    }

    /// Inserts a mapping at `[start, start+len)`, replacing whatever was
    /// there, and makes it real in the platform.
    #[allow(clippy::too_many_arguments)]
    pub fn insert(
        &mut self,
        ops: &mut dyn AddressSpaceOps,
        start: u64,
        len: u64,
        prot: i32,
        shared: bool,
        backing: Backing,
        name: VmaName,
    ) -> KResult<()> {
        let len = page_up(len);
        if !Self::range_ok(start, len) {
            return Err(Errno::ENOMEM);
        }
        self.remove_range(start, start + len);
        let vma = Vma {
            start,
            end: start + len,
            prot,
            shared,
            backing,
            name,
        };
        let (fd, off) = vma.host_fd_off(&self.mf);
        ops.map(start, len, prot, fd, off).map_err(host_err)?;
        self.vmas.insert(start, vma);
        Ok(())
    }

    /// Allocates fresh zeroed memory and maps it (anonymous private
    /// mapping, or shared anonymous if `shared`).
    pub fn map_anon(
        &mut self,
        ops: &mut dyn AddressSpaceOps,
        start: u64,
        len: u64,
        prot: i32,
        shared: bool,
        name: VmaName,
    ) -> KResult<()> {
        let range = self.mf.alloc(len).ok_or(Errno::ENOMEM)?;
        self.insert(
            ops,
            start,
            len,
            prot,
            shared,
            Backing::Mem { range, off: 0 },
            name,
        )
    }

    /// Removes VMAs in `[start, end)` from the records (no host call),
    /// releasing private pages.
    fn remove_range(&mut self, start: u64, end: u64) {
        if !self.overlaps(start, end) {
            return;
        }
        self.split(start);
        self.split(end);
        let keys: Vec<u64> = self.vmas.range(start..end).map(|(k, _)| *k).collect();
        for k in keys {
            if let Some(v) = self.vmas.remove(&k)
                && !v.shared
                && let Backing::Mem { range, off } = &v.backing
            {
                self.mf.punch(range.off + off, v.end - v.start);
            }
        }
    }

    /// munmap(2).
    pub fn unmap(&mut self, ops: &mut dyn AddressSpaceOps, start: u64, len: u64) -> KResult<()> {
        if !start.is_multiple_of(PAGE_SIZE) || len == 0 {
            return Err(Errno::EINVAL);
        }
        let len = page_up(len);
        let end = start.checked_add(len).ok_or(Errno::EINVAL)?;
        if end > TASK_SIZE {
            return Err(Errno::EINVAL);
        }
        if !self.overlaps(start, end) {
            return Ok(());
        }
        self.remove_range(start, end);
        ops.unmap(start, len).map_err(host_err)
    }

    /// mprotect(2).
    pub fn protect(
        &mut self,
        ops: &mut dyn AddressSpaceOps,
        start: u64,
        len: u64,
        prot: i32,
    ) -> KResult<()> {
        if !start.is_multiple_of(PAGE_SIZE) {
            return Err(Errno::EINVAL);
        }
        let end = start.checked_add(page_up(len)).ok_or(Errno::ENOMEM)?;
        if start == end {
            return Ok(());
        }
        // Every page must be mapped.
        let mut pos = start;
        while pos < end {
            let v = self.find(pos).ok_or(Errno::ENOMEM)?;
            pos = v.end;
        }
        self.split(start);
        self.split(end);
        for (_, v) in self.vmas.range_mut(start..end) {
            v.prot = prot;
        }
        ops.protect(start, end - start, prot).map_err(host_err)
    }

    /// madvise(MADV_DONTNEED): private pages read as zero afterwards.
    pub fn dont_need(&mut self, start: u64, len: u64) -> KResult<()> {
        let end = start.checked_add(page_up(len)).ok_or(Errno::EINVAL)?;
        let mut pos = start;
        while pos < end {
            let v = self.find(pos).ok_or(Errno::ENOMEM)?;
            let seg_end = v.end.min(end);
            if !v.shared
                && let Backing::Mem { range, off } = &v.backing
            {
                self.mf
                    .zero(range.off + off + (pos - v.start), seg_end - pos);
            }
            pos = seg_end;
        }
        Ok(())
    }

    /// mremap(2) for private and shared mappings.
    pub fn remap(
        &mut self,
        ops: &mut dyn AddressSpaceOps,
        old: u64,
        old_len: u64,
        new_len: u64,
        may_move: bool,
        fixed: Option<u64>,
    ) -> KResult<u64> {
        if !old.is_multiple_of(PAGE_SIZE) || new_len == 0 {
            return Err(Errno::EINVAL);
        }
        let old_len = page_up(old_len);
        let new_len = page_up(new_len);
        // The old range must be mapped throughout; it may span several
        // adjacent VMAs (Linux would have merged them).
        let mut pieces: Vec<Vma> = Vec::new();
        let mut pos = old;
        while pos < old + old_len {
            let v = self.find(pos).ok_or(Errno::EFAULT)?;
            let mut p = if v.start < pos {
                v.split_at(pos).1
            } else {
                v.clone()
            };
            if p.end > old + old_len {
                p = p.split_at(old + old_len).0;
            }
            pos = p.end;
            pieces.push(p);
        }
        if fixed.is_none() && new_len <= old_len {
            if new_len < old_len {
                self.unmap(ops, old + new_len, old_len - new_len)?;
            }
            return Ok(old);
        }
        let grows_in_place = fixed.is_none()
            && Self::range_ok(old, new_len)
            && !self.overlaps(old + old_len, old + new_len);
        let dest = match fixed {
            Some(d) => d,
            None if grows_in_place => old,
            None if may_move => self.find_free(new_len).ok_or(Errno::ENOMEM)?,
            None => return Err(Errno::ENOMEM),
        };
        if let Some(d) = fixed
            && d < old + old_len
            && old < d + new_len
        {
            return Err(Errno::EINVAL);
        }
        // The pages keep their backing: moving or growing copies nothing
        // (growing a private mapping adds a fresh tail next to it).
        let last = pieces.last().cloned().ok_or(Errno::EFAULT)?;
        let tail_len = new_len.saturating_sub(old_len);
        let tail = if tail_len > 0 {
            let piece_len = last.end - last.start;
            let backing = match &last.backing {
                Backing::File { fd, off } => Backing::File {
                    fd: fd.clone(),
                    off: off + piece_len,
                },
                Backing::Mem { range, off } if last.shared => {
                    let off = off + piece_len;
                    if off + tail_len > range.len {
                        return Err(Errno::ENOMEM);
                    }
                    Backing::Mem {
                        range: range.clone(),
                        off,
                    }
                }
                Backing::Mem { .. } => Backing::Mem {
                    range: self.mf.alloc(tail_len).ok_or(Errno::ENOMEM)?,
                    off: 0,
                },
            };
            let mut name = last.name.clone();
            if let VmaName::File { offset, .. } = &mut name {
                *offset += piece_len;
            }
            Some((backing, name))
        } else {
            None
        };
        if dest != old {
            // Forget the old records without releasing their pages.
            self.split(old);
            self.split(old + old_len);
            let keys: Vec<u64> = self
                .vmas
                .range(old..old + old_len)
                .map(|(k, _)| *k)
                .collect();
            for k in keys {
                self.vmas.remove(&k);
            }
            ops.unmap(old, old_len).map_err(host_err)?;
            for p in &pieces {
                let at = dest + (p.start - old);
                self.insert(
                    ops,
                    at,
                    p.end - p.start,
                    p.prot,
                    p.shared,
                    p.backing.clone(),
                    p.name.clone(),
                )?;
            }
        }
        if let Some((backing, name)) = tail {
            self.insert(
                ops,
                dest + old_len,
                tail_len,
                last.prot,
                last.shared,
                backing,
                name,
            )?;
        }
        Ok(dest)
    }

    /// A copy for a forked child: private memory is copied, shared memory
    /// is shared. The copy has no host mappings until materialized.
    pub fn fork(&self) -> KResult<AddressSpace> {
        let mut vmas = BTreeMap::new();
        for v in self.vmas.values() {
            let mut nv = v.clone();
            if !v.shared
                && let Backing::Mem { range, off } = &v.backing
            {
                let len = v.end - v.start;
                let nr = self.mf.alloc(len).ok_or(Errno::ENOMEM)?;
                self.mf.copy(nr.off, range.off + off, len);
                nv.backing = Backing::Mem { range: nr, off: 0 };
            }
            vmas.insert(nv.start, nv);
        }
        Ok(AddressSpace {
            mf: self.mf.clone(),
            vmas,
            brk_start: self.brk_start,
            brk: self.brk,
            arg_range: self.arg_range,
            env_range: self.env_range,
            auxv: self.auxv.clone(),
        })
    }

    /// Makes every recorded mapping real in a fresh platform address space.
    pub fn materialize(&self, ops: &mut dyn AddressSpaceOps) -> KResult<()> {
        for v in self.vmas.values() {
            let (fd, off) = v.host_fd_off(&self.mf);
            ops.map(v.start, v.end - v.start, v.prot, fd, off)
                .map_err(host_err)?;
        }
        Ok(())
    }

    /// brk(2): returns the new break (the old one on failure).
    pub fn set_brk(&mut self, ops: &mut dyn AddressSpaceOps, new: u64) -> u64 {
        if new < self.brk_start {
            return self.brk;
        }
        let old_top = page_up(self.brk);
        let new_top = page_up(new);
        if new_top > old_top {
            if self.overlaps(old_top, new_top) || !Self::range_ok(old_top, new_top - old_top) {
                return self.brk;
            }
            if self
                .map_anon(
                    ops,
                    old_top,
                    new_top - old_top,
                    libc::PROT_READ | libc::PROT_WRITE,
                    false,
                    VmaName::Heap,
                )
                .is_err()
            {
                return self.brk;
            }
        } else if new_top < old_top && self.unmap(ops, new_top, old_top - new_top).is_err() {
            return self.brk;
        }
        self.brk = new;
        self.brk
    }

    /// Walks `[addr, addr+len)` calling `f(vma, addr, len)` for each piece,
    /// failing with EFAULT where memory is missing or lacks `write`/read
    /// permission.
    fn walk(
        &self,
        addr: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(&Vma, u64, usize, usize),
    ) -> KResult<()> {
        let mut done = 0usize;
        while done < len {
            let a = addr.checked_add(done as u64).ok_or(Errno::EFAULT)?;
            let v = self.find(a).ok_or(Errno::EFAULT)?;
            if !prot_ok(v.prot, write) {
                return Err(Errno::EFAULT);
            }
            let n = ((v.end - a) as usize).min(len - done);
            f(v, a, n, done);
            done += n;
        }
        Ok(())
    }

    /// Copies application memory at `addr` into `buf` (EFAULT on a bad
    /// address).
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> KResult<()> {
        let mf = &self.mf;
        let mut err = None;
        self.walk(addr, buf.len(), false, |v, a, n, done| {
            let dst = &mut buf[done..done + n];
            match &v.backing {
                Backing::Mem { range, off } => mf.read(range.off + off + (a - v.start), dst),
                Backing::File { fd, off } => {
                    if pread_full(fd.as_raw_fd(), dst, off + (a - v.start)).is_err() {
                        err = Some(Errno::EFAULT);
                    }
                }
            }
        })?;
        err.map_or(Ok(()), Err)
    }

    /// Copies `buf` into application memory at `addr`.
    pub fn write(&self, addr: u64, buf: &[u8]) -> KResult<()> {
        self.write_impl(addr, buf, true)
    }

    /// Like `write` but ignores page protections (the kernel writing a
    /// loaded program's read-only pages, `ptrace(POKE)`-style).
    pub fn write_force(&self, addr: u64, buf: &[u8]) -> KResult<()> {
        self.write_impl(addr, buf, false)
    }

    fn write_impl(&self, addr: u64, buf: &[u8], check: bool) -> KResult<()> {
        let mf = &self.mf;
        let mut err = None;
        let mut done = 0usize;
        while done < buf.len() {
            let a = addr.checked_add(done as u64).ok_or(Errno::EFAULT)?;
            let v = self.find(a).ok_or(Errno::EFAULT)?;
            if check && !prot_ok(v.prot, true) {
                return Err(Errno::EFAULT);
            }
            let n = ((v.end - a) as usize).min(buf.len() - done);
            let src = &buf[done..done + n];
            match &v.backing {
                Backing::Mem { range, off } => mf.write(range.off + off + (a - v.start), src),
                Backing::File { fd, off } => {
                    if pwrite_full(fd.as_raw_fd(), src, off + (a - v.start)).is_err() {
                        err = Some(Errno::EFAULT);
                    }
                }
            }
            done += n;
        }
        err.map_or(Ok(()), Err)
    }

    /// Pins the application memory of `iov` (address, length pairs, in
    /// order) for the kernel to read in place: EFAULT if any of it is
    /// unmapped or unreadable, `None` if some of it is not in the memory
    /// file (a shared mapping of another file: copy with `read` then).
    pub fn user_slices(&self, iov: &[(u64, usize)]) -> KResult<Option<UserSlices>> {
        Ok(self.pin(iov, false)?.map(UserSlices))
    }

    /// Like [`AddressSpace::user_slices`], for the kernel to write in
    /// place: EFAULT if any of the memory is unmapped or not writable.
    pub fn user_slices_mut(&self, iov: &[(u64, usize)]) -> KResult<Option<UserSlicesMut>> {
        Ok(self.pin(iov, true)?.map(UserSlicesMut))
    }

    fn pin(&self, iov: &[(u64, usize)], write: bool) -> KResult<Option<Pinned>> {
        let mut pinned = Pinned {
            mf: self.mf.clone(),
            pieces: Vec::new(),
            ranges: Vec::new(),
        };
        let mut in_file = true;
        for &(addr, len) in iov {
            self.walk(addr, len, write, |v, a, n, _| {
                let Backing::Mem { range, off } = &v.backing else {
                    in_file = false;
                    return;
                };
                let at = range.off + off + (a - v.start);
                match pinned.pieces.last_mut() {
                    Some((o, l)) if *o + *l as u64 == at => *l += n,
                    _ => pinned.pieces.push((at, n)),
                }
                if !pinned.ranges.iter().any(|r| Arc::ptr_eq(r, range)) {
                    pinned.ranges.push(range.clone());
                }
            })?;
        }
        Ok(in_file.then_some(pinned))
    }

    /// Reads a NUL-terminated string of at most `max` bytes (without the
    /// NUL). ENAMETOOLONG if no NUL is found within `max`.
    pub fn read_cstr(&self, addr: u64, max: usize) -> KResult<Vec<u8>> {
        let mut out = Vec::new();
        let mut a = addr;
        while out.len() < max {
            let v = self.find(a).ok_or(Errno::EFAULT)?;
            if !prot_ok(v.prot, false) {
                return Err(Errno::EFAULT);
            }
            // Read up to the end of the page.
            let n = ((page_down(a) + PAGE_SIZE - a) as usize).min(max - out.len());
            let mut chunk = vec![0u8; n];
            self.read(a, &mut chunk)?;
            if let Some(p) = chunk.iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..p]);
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
            a += n as u64;
        }
        Err(Errno::ENAMETOOLONG)
    }

    /// Reads a plain-data value.
    pub fn read_val<T: Copy + Default>(&self, addr: u64) -> KResult<T> {
        let mut v = T::default();
        // SAFETY: T is Copy plain data (callers use integer and #[repr(C)]
        // ABI structs); we overwrite all its bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(&mut v as *mut T as *mut u8, std::mem::size_of::<T>())
        };
        self.read(addr, bytes)?;
        Ok(v)
    }

    /// Writes a plain-data value.
    pub fn write_val<T: Copy>(&self, addr: u64, v: &T) -> KResult<()> {
        // SAFETY: viewing a Copy value's bytes.
        let bytes = unsafe {
            std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>())
        };
        self.write(addr, bytes)
    }

    /// Bytes of virtual memory mapped.
    pub fn virtual_size(&self) -> u64 {
        self.vmas.values().map(|v| v.end - v.start).sum()
    }

    /// Fills `[addr, addr+len)` of a private Mem mapping from `src`,
    /// reading directly into the memory file (used by ELF loading and
    /// private file mappings). `src(buf, file_offset)` returns bytes read.
    pub fn fill_from(
        &self,
        addr: u64,
        len: u64,
        file_off: u64,
        src: &mut dyn FnMut(&mut [u8], u64) -> KResult<usize>,
    ) -> KResult<()> {
        let v = self.find(addr).ok_or(Errno::EFAULT)?;
        if addr + len > v.end {
            return Err(Errno::EFAULT);
        }
        let Backing::Mem { range, off } = &v.backing else {
            return Err(Errno::EINVAL);
        };
        let base = range.off + off + (addr - v.start);
        let mut done = 0u64;
        while done < len {
            let n = ((len - done) as usize).min(1 << 20);
            // SAFETY: the range lies inside this VMA's MemRange, which stays
            // alive while we hold `&self`; no other kernel code writes it now.
            let dst = unsafe { self.mf.slice_mut(base + done, n) };
            let got = src(dst, file_off + done)?;
            if got == 0 {
                break;
            }
            done += got as u64;
        }
        Ok(())
    }
}

/// Memory-file runs of application memory, kept allocated while held.
struct Pinned {
    mf: Arc<MemoryFile>,
    /// (offset in the memory file, length) in application address order;
    /// runs adjacent in the file are merged.
    pieces: Vec<(u64, usize)>,
    /// The allocations the pieces lie in.
    ranges: Vec<Arc<MemRange>>,
}

impl Pinned {
    fn len(&self) -> usize {
        self.pieces.iter().map(|p| p.1).sum()
    }
}

/// Application memory the kernel reads in place (`write(2)` hands a file
/// the application's own bytes; no kernel buffer, no copy), from
/// [`AddressSpace::user_slices`].
///
/// The memory stays allocated while this is held, so no lock on the
/// address space is needed meanwhile: if the application unmaps it in the
/// meantime, the transfer still finishes into (or from) pages nobody sees
/// any more, as it can on Linux. The bytes are the application's, which
/// may change them concurrently: treat them as a transfer buffer only.
pub struct UserSlices(Pinned);

impl UserSlices {
    /// Total bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.pieces.is_empty()
    }

    /// Number of contiguous pieces.
    pub fn pieces(&self) -> usize {
        self.0.pieces.len()
    }

    /// Calls `f` on each piece in order until it breaks; returns the
    /// break value.
    pub fn for_each<B>(&self, mut f: impl FnMut(&[u8]) -> ControlFlow<B>) -> Option<B> {
        for &(off, len) in &self.0.pieces {
            // Concurrent changes by the application are allowed by the
            // type's contract.
            // SAFETY: the piece lies in allocations `ranges` keeps alive,
            // and the slice lives only for this call.
            let s = unsafe { self.0.mf.slice(off, len) };
            if let ControlFlow::Break(b) = f(s) {
                return Some(b);
            }
        }
        None
    }
}

/// Application memory the kernel writes in place (`read(2)` hands a file
/// the application's buffer), from [`AddressSpace::user_slices_mut`]; as
/// [`UserSlices`] otherwise.
pub struct UserSlicesMut(Pinned);

impl UserSlicesMut {
    /// Total bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.pieces.is_empty()
    }

    /// Number of contiguous pieces.
    pub fn pieces(&self) -> usize {
        self.0.pieces.len()
    }

    /// Calls `f` on each piece in order until it breaks; returns the
    /// break value. One piece is lent at a time, so two pieces that are
    /// the same memory (a shared mapping mapped twice) never alias.
    pub fn for_each_mut<B>(&mut self, mut f: impl FnMut(&mut [u8]) -> ControlFlow<B>) -> Option<B> {
        for &(off, len) in &self.0.pieces {
            // SAFETY: as in `UserSlices::for_each`; the mutable slice is the
            // only one this pin lends at a time (`&mut self`).
            let s = unsafe { self.0.mf.slice_mut(off, len) };
            if let ControlFlow::Break(b) = f(s) {
                return Some(b);
            }
        }
        None
    }
}

fn pread_full(fd: i32, buf: &mut [u8], off: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: writing into the live slice.
        let r = unsafe {
            libc::pread(
                fd,
                buf[done..].as_mut_ptr().cast(),
                buf.len() - done,
                (off + done as u64) as i64,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if r == 0 {
            buf[done..].fill(0);
            return Ok(());
        }
        done += r as usize;
    }
    Ok(())
}

fn pwrite_full(fd: i32, buf: &[u8], off: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: reading from the live slice.
        let r = unsafe {
            libc::pwrite(
                fd,
                buf[done..].as_ptr().cast(),
                buf.len() - done,
                (off + done as u64) as i64,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        done += r as usize;
    }
    Ok(())
}

/// A VMA as saved in a checkpoint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VmaState {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
    /// PROT_* bits.
    pub prot: i32,
    /// MAP_SHARED.
    pub shared: bool,
    /// The pages.
    pub backing: BackingState,
    /// Label (file path for file mappings).
    pub name: VmaNameState,
}

/// Where a saved VMA's pages are.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum BackingState {
    /// A memory-file range (offset and length of the whole range), and the
    /// VMA's offset within it.
    Mem {
        /// Range offset in the memory file.
        range_off: u64,
        /// Range length.
        range_len: u64,
        /// Offset of the VMA's start in the range.
        off: u64,
    },
    /// A shared mapping of a file, reopened by its path on restore.
    File {
        /// File offset of the VMA's start.
        off: u64,
    },
}

/// A saved VMA label.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum VmaNameState {
    /// Anonymous.
    Anon,
    /// [heap].
    Heap,
    /// [stack].
    Stack,
    /// A file.
    File {
        /// Path.
        path: String,
        /// Offset.
        offset: u64,
        /// Inode.
        ino: u64,
    },
}

/// An address space as saved in a checkpoint (its memory is saved once,
/// for the whole memory file).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MmState {
    /// The mappings.
    pub vmas: Vec<VmaState>,
    /// Program break start.
    pub brk_start: u64,
    /// Program break.
    pub brk: u64,
    /// argv strings.
    pub arg_range: (u64, u64),
    /// Environment strings.
    pub env_range: (u64, u64),
    /// Auxiliary vector.
    pub auxv: Vec<(u64, u64)>,
}

impl AddressSpace {
    /// The address space's records, for a checkpoint.
    pub fn save(&self) -> MmState {
        let vmas = self
            .vmas
            .values()
            .map(|v| VmaState {
                start: v.start,
                end: v.end,
                prot: v.prot,
                shared: v.shared,
                backing: match &v.backing {
                    Backing::Mem { range, off } => BackingState::Mem {
                        range_off: range.off,
                        range_len: range.len,
                        off: *off,
                    },
                    Backing::File { off, .. } => BackingState::File { off: *off },
                },
                name: match &v.name {
                    VmaName::Anon => VmaNameState::Anon,
                    VmaName::Heap => VmaNameState::Heap,
                    VmaName::Stack => VmaNameState::Stack,
                    VmaName::File { path, offset, ino } => VmaNameState::File {
                        path: path.clone(),
                        offset: *offset,
                        ino: *ino,
                    },
                },
            })
            .collect();
        MmState {
            vmas,
            brk_start: self.brk_start,
            brk: self.brk,
            arg_range: self.arg_range,
            env_range: self.env_range,
            auxv: self.auxv.clone(),
        }
    }

    /// Rebuilds an address space from its records. Memory-file ranges are
    /// shared through `ranges` (keyed by offset) so that VMAs that shared a
    /// range before share it again; `open_shared(path)` gives the host file
    /// behind a shared file mapping. Host mappings are made later, by
    /// `materialize`.
    pub fn restore(
        mf: Arc<MemoryFile>,
        st: &MmState,
        ranges: &mut std::collections::HashMap<u64, Arc<MemRange>>,
        open_shared: &mut dyn FnMut(&str) -> KResult<Arc<OwnedFd>>,
    ) -> KResult<AddressSpace> {
        let mut vmas = BTreeMap::new();
        for v in &st.vmas {
            if v.end <= v.start || !Self::range_ok(v.start, v.end - v.start) {
                return Err(Errno::EINVAL);
            }
            let name = match &v.name {
                VmaNameState::Anon => VmaName::Anon,
                VmaNameState::Heap => VmaName::Heap,
                VmaNameState::Stack => VmaName::Stack,
                VmaNameState::File { path, offset, ino } => VmaName::File {
                    path: path.clone(),
                    offset: *offset,
                    ino: *ino,
                },
            };
            let backing = match &v.backing {
                BackingState::Mem {
                    range_off,
                    range_len,
                    off,
                } => {
                    let range = match ranges.get(range_off) {
                        Some(r) if r.len == *range_len => r.clone(),
                        Some(_) => return Err(Errno::EINVAL),
                        None => {
                            let r = mf.alloc_at(*range_off, *range_len).ok_or(Errno::EINVAL)?;
                            ranges.insert(*range_off, r.clone());
                            r
                        }
                    };
                    if off + (v.end - v.start) > range.len {
                        return Err(Errno::EINVAL);
                    }
                    Backing::Mem { range, off: *off }
                }
                BackingState::File { off } => {
                    let VmaName::File { path, .. } = &name else {
                        return Err(Errno::EINVAL);
                    };
                    Backing::File {
                        fd: open_shared(path)?,
                        off: *off,
                    }
                }
            };
            vmas.insert(
                v.start,
                Vma {
                    start: v.start,
                    end: v.end,
                    prot: v.prot,
                    shared: v.shared,
                    backing,
                    name,
                },
            );
        }
        Ok(AddressSpace {
            mf,
            vmas,
            brk_start: st.brk_start,
            brk: st.brk,
            arg_range: st.arg_range,
            env_range: st.env_range,
            auxv: st.auxv.clone(),
        })
    }
}
