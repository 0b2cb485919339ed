//! Measures the statefile checksum and a whole checkpoint/restore of a
//! synthetic memory through the statefile format.
//!
//! ```text
//! cargo run --release --example statefile_hash [MiB]
//! ```
//!
//! Prints the hash throughput (cache-resident and streaming from RAM, next
//! to a plain memory read for scale), then writes a statefile for a memory
//! of `MiB` mebibytes (default 256) of which half the pages are zero, to a
//! temporary file, and reads it back: time, throughput, statefile size and
//! its overhead over the non-zero pages.

use rvisor::state::statefile::{
    Hasher64, MemorySink, MemorySource, Metadata, StatefileReader, StatefileWriter, hash64,
};
use std::hint::black_box;
use std::io::{self, Seek};
use std::time::Instant;

const PAGE: usize = 4096;

/// Pseudo-random bytes (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.extend_from_slice(&s.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Runs `f` over `bytes` bytes `reps` times; returns GB/s.
fn rate(bytes: usize, reps: usize, mut f: impl FnMut() -> u64) -> f64 {
    let mut sink = 0u64;
    let t = Instant::now();
    for _ in 0..reps {
        sink = sink.wrapping_add(f());
    }
    black_box(sink);
    (bytes * reps) as f64 / t.elapsed().as_secs_f64() / 1e9
}

/// A plain read of every word, for scale.
fn fold(data: &[u8]) -> u64 {
    let (words, _) = data.as_chunks::<8>();
    words.iter().fold(0, |a, w| a ^ u64::from_ne_bytes(*w))
}

/// The memory: every other page zero (half of the zero pages are holes).
struct HalfZero {
    data: Vec<u8>,
}

impl MemorySource for HalfZero {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn data_ranges(&self) -> Vec<(u64, u64)> {
        // Holes: every fourth page.
        let pages = self.data.len() / PAGE;
        (0..pages)
            .filter(|p| p % 4 != 3)
            .map(|p| ((p * PAGE) as u64, PAGE as u64))
            .collect()
    }
    fn read(&self, off: u64, buf: &mut [u8]) {
        let off = off as usize;
        buf.copy_from_slice(&self.data[off..off + buf.len()]);
    }
}

/// Restores into a pre-sized vector.
struct VecSink(Vec<u8>);

impl MemorySink for VecSink {
    fn set_size(&mut self, size: u64) -> io::Result<()> {
        if size != self.0.len() as u64 {
            return Err(io::Error::other("unexpected memory size"));
        }
        Ok(())
    }
    fn write(&mut self, off: u64, data: &[u8]) -> io::Result<()> {
        let off = off as usize;
        self.0[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: usize = std::env::args().nth(1).map_or(Ok(256), |a| a.parse())?;

    // Hash throughput.
    let small = noise(256 << 10);
    let big = noise(mib << 20);
    println!(
        "hash64, 256 KiB in cache:  {:6.2} GB/s",
        rate(small.len(), 4000, || hash64(black_box(&small)))
    );
    println!(
        "hash64, {mib} MiB from RAM: {:6.2} GB/s",
        rate(big.len(), 4, || hash64(black_box(&big)))
    );
    println!(
        "hash64, 1 MiB updates:     {:6.2} GB/s",
        rate(big.len(), 4, || {
            let mut h = Hasher64::new();
            for c in big.chunks(1 << 20) {
                h.update(c);
            }
            h.finish()
        })
    );
    println!(
        "plain read, {mib} MiB:      {:6.2} GB/s (for scale)",
        rate(big.len(), 4, || fold(black_box(&big)))
    );

    // Checkpoint and restore through a file.
    let mut mem = big;
    for p in (1..mem.len() / PAGE).step_by(2) {
        mem[p * PAGE..(p + 1) * PAGE].fill(0);
    }
    let nonzero = mem.len() as u64 / 2;
    let src = HalfZero { data: mem };
    let meta = Metadata::current("ptrace", vec![]);
    let kernel = noise(64 << 10);
    let mut file = tempfile::tempfile()?;

    let t = Instant::now();
    let summary = StatefileWriter::new(&mut file, &meta)?
        .kernel(&kernel)?
        .memory(&src)?
        .finish()?;
    let write = t.elapsed();
    println!(
        "checkpoint {mib} MiB (half zero): {:.1} ms, {:.2} GB/s of memory; \
         statefile {} bytes = non-zero pages + {:.3}%; {} zero pages skipped",
        write.as_secs_f64() * 1e3,
        src.data.len() as f64 / write.as_secs_f64() / 1e9,
        summary.bytes,
        (summary.bytes as f64 / nonzero as f64 - 1.0) * 100.0,
        summary.zero_pages_skipped,
    );

    file.rewind()?;
    // Touch the sink's pages first: first-touch page faults (~65,000 for
    // 256 MiB, several µs each in a VM) belong to the restore target, not
    // to the format, and a real restore pays them in its memory file.
    let mut sink = VecSink(vec![1; src.data.len()]);
    sink.0.fill(0);
    let t = Instant::now();
    let (_, mut r) = StatefileReader::open(&mut file)?;
    let k = r.kernel()?;
    r.memory(&mut sink)?;
    let read = r.finish()?;
    let restore = t.elapsed();
    println!(
        "restore {mib} MiB: {:.1} ms, {:.2} GB/s of statefile",
        restore.as_secs_f64() * 1e3,
        read.bytes as f64 / restore.as_secs_f64() / 1e9,
    );
    assert!(k == kernel && sink.0 == src.data, "round trip differs");
    Ok(())
}
