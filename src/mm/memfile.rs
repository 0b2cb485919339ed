//! The memory file: one memfd per sandbox holding all application memory.
//!
//! The kernel maps the whole file once, read-write, so copying to and from
//! the application is a `memcpy` at `base + offset`. Stub processes map
//! ranges of the same file. Pages are allocated by the host on first touch;
//! freeing a range punches a hole so the host reclaims it.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

/// Page size of x86_64.
pub const PAGE_SIZE: u64 = 4096;

/// Rounds up to a page boundary.
pub fn page_up(x: u64) -> u64 {
    x.wrapping_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

/// Rounds down to a page boundary.
pub fn page_down(x: u64) -> u64 {
    x & !(PAGE_SIZE - 1)
}

/// Virtual size of the memory file: the sum of all live allocations may
/// not exceed it.
const FILE_SIZE: u64 = 1 << 38; // 256 GiB, sparse

/// The sandbox's memory file.
pub struct MemoryFile {
    fd: OwnedFd,
    base: *mut u8,
    size: u64,
    /// Free ranges: offset -> length.
    free: Mutex<BTreeMap<u64, u64>>,
}

// SAFETY: `base` points to a shared mapping valid for the life of the
// MemoryFile; concurrent access to application memory is inherent (the
// application itself is concurrent) and done with plain byte copies.
unsafe impl Send for MemoryFile {}
// SAFETY: as above.
unsafe impl Sync for MemoryFile {}

impl std::fmt::Debug for MemoryFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryFile(fd={})", self.fd.as_raw_fd())
    }
}

impl MemoryFile {
    /// Creates the memory file and maps it into the kernel.
    pub fn new() -> std::io::Result<Arc<MemoryFile>> {
        let name = c"rvisor-memory";
        // SAFETY: name is a valid C string.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by memfd_create and is owned by us.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain ftruncate on our fd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), FILE_SIZE as i64) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: mapping our own memfd shared; the mapping lives until Drop.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                FILE_SIZE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let mut free = BTreeMap::new();
        free.insert(0, FILE_SIZE);
        Ok(Arc::new(MemoryFile {
            fd,
            base: base as *mut u8,
            size: FILE_SIZE,
            free: Mutex::new(free),
        }))
    }

    /// Host fd of the file (valid in stub processes too, which share the
    /// kernel's fd table).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Allocates `len` bytes (page multiple) of zeroed file space.
    pub fn alloc(self: &Arc<Self>, len: u64) -> Option<Arc<MemRange>> {
        let len = page_up(len.max(PAGE_SIZE));
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let (&off, &flen) = free.iter().find(|&(_, &l)| l >= len)?;
        free.remove(&off);
        if flen > len {
            free.insert(off + len, flen - len);
        }
        Some(Arc::new(MemRange {
            mf: self.clone(),
            off,
            len,
        }))
    }

    /// Allocates exactly `[off, off+len)` (restore puts every range back
    /// where it was). Fails if any of it is in use.
    pub fn alloc_at(self: &Arc<Self>, off: u64, len: u64) -> Option<Arc<MemRange>> {
        let len = page_up(len.max(PAGE_SIZE));
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let (&foff, &flen) = free.range(..=off).next_back()?;
        if foff + flen < off + len {
            return None;
        }
        free.remove(&foff);
        if off > foff {
            free.insert(foff, off - foff);
        }
        if foff + flen > off + len {
            free.insert(off + len, foff + flen - (off + len));
        }
        Some(Arc::new(MemRange {
            mf: self.clone(),
            off,
            len,
        }))
    }

    /// The ranges of the file that hold data (SEEK_DATA/SEEK_HOLE), for
    /// saving: everything else reads as zero.
    pub fn data_ranges(&self) -> Vec<(u64, u64)> {
        let fd = self.fd.as_raw_fd();
        let mut out = Vec::new();
        let mut pos = 0u64;
        while pos < self.size {
            // SAFETY: lseek on our own fd.
            let data = unsafe { libc::lseek(fd, pos as i64, libc::SEEK_DATA) };
            if data < 0 {
                break;
            }
            // SAFETY: as above.
            let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
            let hole = if hole < 0 { self.size } else { hole as u64 };
            out.push((data as u64, hole - data as u64));
            pos = hole;
        }
        out
    }

    /// Releases the pages of every free range (after a restore wrote whole
    /// data runs, some of which no allocation claims).
    pub fn punch_free(&self) {
        let free: Vec<(u64, u64)> = self
            .free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(o, l)| (*o, *l))
            .collect();
        for (off, len) in free {
            self.punch(off, len);
        }
    }

    /// Size of the file's address range.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn release(&self, off: u64, len: u64) {
        self.punch(off, len);
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let mut start = off;
        let mut end = off + len;
        if let Some((&poff, &plen)) = free.range(..off).next_back()
            && poff + plen == off
        {
            free.remove(&poff);
            start = poff;
        }
        if let Some(&nlen) = free.get(&end) {
            free.remove(&end);
            end += nlen;
        }
        free.insert(start, end - start);
    }

    /// Frees the pages of a range (they read as zero afterwards).
    pub fn punch(&self, off: u64, len: u64) {
        // SAFETY: fallocate on our own fd within its size.
        unsafe {
            libc::fallocate(
                self.fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off as i64,
                len as i64,
            );
        }
    }

    fn check(&self, off: u64, len: usize) {
        assert!(
            off.checked_add(len as u64).is_some_and(|e| e <= self.size),
            "memory file access out of range"
        );
    }

    /// Copies from the file into `buf`.
    pub fn read(&self, off: u64, buf: &mut [u8]) {
        self.check(off, buf.len());
        // SAFETY: the range is inside the mapping (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.add(off as usize), buf.as_mut_ptr(), buf.len())
        }
    }

    /// Copies `buf` into the file.
    pub fn write(&self, off: u64, buf: &[u8]) {
        self.check(off, buf.len());
        // SAFETY: the range is inside the mapping (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(buf.as_ptr(), self.base.add(off as usize), buf.len())
        }
    }

    /// Fills a range with zeros (punching whole pages).
    pub fn zero(&self, off: u64, len: u64) {
        self.check(off, len as usize);
        let start = page_up(off);
        let end = page_down(off + len);
        if start < end {
            self.punch(start, end - start);
            // SAFETY: inside the mapping.
            unsafe {
                std::ptr::write_bytes(self.base.add(off as usize), 0, (start - off) as usize);
                std::ptr::write_bytes(self.base.add(end as usize), 0, (off + len - end) as usize);
            }
        } else {
            // SAFETY: inside the mapping.
            unsafe { std::ptr::write_bytes(self.base.add(off as usize), 0, len as usize) };
        }
    }

    /// A mutable view of `len` bytes at `off`, for reading file data
    /// straight into application memory.
    ///
    /// # Safety
    /// The caller must not keep the slice beyond the life of the range it
    /// covers and must accept that the application may change the bytes
    /// concurrently.
    #[allow(clippy::mut_from_ref)] // the aliasing contract is the caller's, as documented
    pub unsafe fn slice_mut(&self, off: u64, len: usize) -> &mut [u8] {
        self.check(off, len);
        // SAFETY: inside the mapping; aliasing as documented above.
        unsafe { std::slice::from_raw_parts_mut(self.base.add(off as usize), len) }
    }

    /// A view of `len` bytes at `off`, for writing application memory
    /// straight to a file.
    ///
    /// # Safety
    /// As for [`MemoryFile::slice_mut`]: the slice must not outlive the
    /// range it covers, and the application may change the bytes
    /// concurrently.
    pub unsafe fn slice(&self, off: u64, len: usize) -> &[u8] {
        self.check(off, len);
        // SAFETY: inside the mapping; aliasing as documented above.
        unsafe { std::slice::from_raw_parts(self.base.add(off as usize), len) }
    }

    /// Copies `len` bytes from `src` to `dst`, skipping holes (pages never
    /// touched stay unallocated in the copy).
    pub fn copy(&self, dst: u64, src: u64, len: u64) {
        let fd = self.fd.as_raw_fd();
        let end = src + len;
        let mut pos = src;
        while pos < end {
            // SAFETY: lseek on our fd.
            let data = unsafe { libc::lseek(fd, pos as i64, libc::SEEK_DATA) };
            if data < 0 || data as u64 >= end {
                break;
            }
            let data = data as u64;
            // SAFETY: lseek on our fd.
            let hole = unsafe { libc::lseek(fd, data as i64, libc::SEEK_HOLE) };
            let hole = if hole < 0 {
                end
            } else {
                (hole as u64).min(end)
            };
            self.check(dst + (data - src), (hole - data) as usize);
            // SAFETY: both ranges are inside the mapping and do not overlap
            // (distinct allocations).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.base.add(data as usize),
                    self.base.add((dst + (data - src)) as usize),
                    (hole - data) as usize,
                );
            }
            pos = hole;
        }
    }

    /// Bytes of the file currently backed by host memory.
    pub fn usage(&self) -> u64 {
        // SAFETY: fstat into a zeroed stat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and out-pointer.
        unsafe { libc::fstat(self.fd.as_raw_fd(), &mut st) };
        st.st_blocks as u64 * 512
    }
}

impl Drop for MemoryFile {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping made in `new`; no references remain
        // since every MemRange holds an Arc to us.
        unsafe { libc::munmap(self.base.cast(), self.size as usize) };
    }
}

/// A reference-counted allocation in the memory file; freed (and its pages
/// released) when the last holder drops it.
pub struct MemRange {
    mf: Arc<MemoryFile>,
    /// Offset in the memory file.
    pub off: u64,
    /// Length in bytes.
    pub len: u64,
}

impl MemRange {
    /// The memory file this range belongs to.
    pub fn file(&self) -> &Arc<MemoryFile> {
        &self.mf
    }
}

impl std::fmt::Debug for MemRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemRange({:#x}+{:#x})", self.off, self.len)
    }
}

impl Drop for MemRange {
    fn drop(&mut self) {
        self.mf.release(self.off, self.len);
    }
}
