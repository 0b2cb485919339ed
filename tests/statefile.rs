//! The statefile format: round trips, zero-page elision, and typed errors
//! for truncated, corrupted, foreign and incompatible statefiles.

use proptest::prelude::*;
use rvisor::state::statefile::{
    CpuFeatures, FORMAT_VERSION, MAGIC, MemorySink, MemorySource, Metadata, Mismatch, ReadSummary,
    Section, StatefileError, StatefileReader, StatefileWriter, hash64,
};
use std::io;

const PAGE: usize = 4096;

/// A memory file held in a Vec; only `ranges` (offset, len) hold data, the
/// rest are holes (and read as zero).
struct SparseMem {
    data: Vec<u8>,
    ranges: Vec<(u64, u64)>,
}

impl MemorySource for SparseMem {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }
    fn data_ranges(&self) -> Vec<(u64, u64)> {
        self.ranges.clone()
    }
    fn read(&self, off: u64, buf: &mut [u8]) {
        let off = off as usize;
        buf.copy_from_slice(&self.data[off..off + buf.len()]);
    }
}

/// Rebuilds memory in a Vec; refuses sizes over `cap` and writes outside
/// the size, as a real restore target would.
struct VecSink {
    data: Vec<u8>,
    cap: u64,
    writes: usize,
}

impl VecSink {
    fn new(cap: u64) -> VecSink {
        VecSink {
            data: Vec::new(),
            cap,
            writes: 0,
        }
    }
}

impl MemorySink for VecSink {
    fn set_size(&mut self, size: u64) -> io::Result<()> {
        if size > self.cap {
            return Err(io::Error::other(format!(
                "memory size {size} over {}",
                self.cap
            )));
        }
        self.data = vec![0; size as usize];
        Ok(())
    }
    fn write(&mut self, off: u64, data: &[u8]) -> io::Result<()> {
        let end = off
            .checked_add(data.len() as u64)
            .filter(|&e| e <= self.data.len() as u64)
            .ok_or_else(|| io::Error::other("write outside the memory"))?;
        self.data[off as usize..end as usize].copy_from_slice(data);
        self.writes += 1;
        Ok(())
    }
}

/// A memory of `pages` pages plus a partial one: about half the pages are
/// zero, some of those are holes and some zero pages inside data ranges.
/// Returns it with (non-zero bytes, zero pages inside data ranges).
fn sample_memory(pages: usize) -> (SparseMem, u64, u64) {
    let tail = 123;
    let mut data = vec![0u8; pages * PAGE + tail];
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut nonzero = 0u64;
    let mut zero_in_data = 0u64;
    let mut seed = 0x1234_5678_9abc_def0u64;
    for i in 0..=pages {
        let start = i * PAGE;
        let end = (start + PAGE).min(data.len());
        let hole = i % 7 == 3 || (i / 64) % 3 == 2;
        let zero = i % 5 == 1 || i % 4 == 2;
        if hole {
            continue;
        }
        match ranges.last_mut() {
            Some((off, len)) if *off + *len == start as u64 => *len += (end - start) as u64,
            _ => ranges.push((start as u64, (end - start) as u64)),
        }
        if zero {
            zero_in_data += 1;
            continue;
        }
        for b in &mut data[start..end] {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        // A page that is zero except for its last byte is not a zero page.
        if i % 9 == 0 {
            data[start..end - 1].fill(0);
            data[end - 1] = 0xff;
        }
        nonzero += (end - start) as u64;
    }
    (SparseMem { data, ranges }, nonzero, zero_in_data)
}

fn spec_json(args: &[&str]) -> String {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": { "args": args, "cwd": "/" },
        "root": { "path": "/", "readonly": false },
    })
    .to_string()
}

fn sample_meta() -> Metadata {
    let mut m = Metadata::current(
        "ptrace",
        vec![("box".into(), spec_json(&["sh", "-c", "true"]))],
    );
    m.notes.push(("reason".into(), "test".into()));
    m
}

fn kernel_blob(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn write_statefile(meta: &Metadata, kernel: &[u8], mem: &dyn MemorySource) -> Vec<u8> {
    let mut out = Vec::new();
    let summary = StatefileWriter::new(&mut out, meta)
        .unwrap()
        .kernel(kernel)
        .unwrap()
        .memory(mem)
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(summary.bytes, out.len() as u64);
    out
}

type Restored = (Metadata, Vec<u8>, ReadSummary);

fn read_statefile(bytes: &[u8], sink: &mut VecSink) -> Result<Restored, StatefileError> {
    let (meta, mut r) = StatefileReader::open(bytes)?;
    let kernel = r.kernel()?;
    r.memory(sink)?;
    let summary = r.finish()?;
    Ok((meta, kernel, summary))
}

/// A small statefile: metadata, a 200-byte kernel blob, 3 pages of memory
/// (one zero) plus a partial page.
fn small_statefile() -> (Vec<u8>, SparseMem) {
    let mut data = vec![0u8; 3 * PAGE + 10];
    data[..PAGE].fill(0x11);
    data[2 * PAGE + 7] = 0x22;
    data[3 * PAGE..].fill(0x33);
    let mem = SparseMem {
        ranges: vec![(0, data.len() as u64)],
        data,
    };
    (
        write_statefile(&sample_meta(), &kernel_blob(200), &mem),
        mem,
    )
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

/// Where each part of a statefile starts: (metadata, kernel, memory, end).
fn layout(f: &[u8]) -> (usize, usize, usize, usize) {
    let meta = 12;
    let kernel = meta + 9 + le64(&f[meta + 1..]) as usize;
    let memory = kernel + 9 + le64(&f[kernel + 1..]) as usize;
    let end = f.len() - 17;
    (meta, kernel, memory, end)
}

#[test]
fn round_trip_elides_zero_pages_and_restores_every_byte() {
    let (mem, nonzero, zero_in_data) = sample_memory(2048);
    let meta = sample_meta();
    let kernel = kernel_blob(10_000);

    let mut file = Vec::new();
    let w = StatefileWriter::new(&mut file, &meta).unwrap();
    let summary = w
        .kernel(&kernel)
        .unwrap()
        .memory(&mem)
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(summary.bytes, file.len() as u64);
    assert_eq!(summary.memory_size, mem.data.len() as u64);
    assert_eq!(summary.memory_bytes, nonzero);
    assert_eq!(summary.zero_pages_skipped, zero_in_data);
    assert!(
        nonzero < mem.data.len() as u64 * 6 / 10,
        "the sample is about half zero"
    );

    // The statefile is the non-zero pages plus at most 1% (the kernel
    // blob is payload too).
    let payload = nonzero + kernel.len() as u64;
    assert!(
        file.len() as u64 <= payload + payload / 100,
        "statefile {} bytes for {payload} bytes of payload",
        file.len()
    );
    println!(
        "statefile {} bytes for {} of memory ({} non-zero), overhead {:.3}%",
        file.len(),
        mem.data.len(),
        nonzero,
        (file.len() as f64 / payload as f64 - 1.0) * 100.0
    );

    let mut sink = VecSink::new(1 << 30);
    let (meta2, kernel2, read) = read_statefile(&file, &mut sink).unwrap();
    assert_eq!(meta2, meta);
    assert_eq!(kernel2, kernel);
    assert!(sink.data == mem.data, "restored memory differs");
    assert_eq!(read.bytes, file.len() as u64);
    assert_eq!(read.memory_size, mem.data.len() as u64);
    assert_eq!(read.memory_bytes, nonzero);
    meta2
        .check_compatible(&Metadata::current("ptrace", vec![]))
        .unwrap();
}

#[test]
fn large_runs_are_streamed_in_chunks() {
    // 3 MiB + a bit of non-zero data in one range: several 1 MiB chunks.
    let data: Vec<u8> = (0..(3 << 20) + 5000).map(|i| (i % 253) as u8 | 1).collect();
    let file = write_statefile(&sample_meta(), &[], &data);
    let mut sink = VecSink::new(1 << 30);
    read_statefile(&file, &mut sink).unwrap();
    assert!(sink.data == data);
    assert!(sink.writes >= 4, "{} writes", sink.writes);
}

#[test]
fn empty_memory_and_kernel() {
    let file = write_statefile(&sample_meta(), &[], &Vec::new());
    let mut sink = VecSink::new(0);
    let (_, kernel, s) = read_statefile(&file, &mut sink).unwrap();
    assert!(kernel.is_empty());
    assert_eq!((s.memory_size, s.memory_bytes), (0, 0));
}

#[test]
fn writes_to_and_reads_from_a_real_file() {
    use std::io::Seek;
    let (mem, _, _) = sample_memory(300);
    let mut f = tempfile::tempfile().unwrap();
    let w: &mut dyn io::Write = &mut f;
    StatefileWriter::new(w, &sample_meta())
        .unwrap()
        .kernel(b"kernel")
        .unwrap()
        .memory(&mem)
        .unwrap()
        .finish()
        .unwrap();
    f.rewind().unwrap();
    let r: &mut dyn io::Read = &mut f;
    let (_, mut reader) = StatefileReader::open(r).unwrap();
    assert_eq!(reader.kernel().unwrap(), b"kernel");
    let mut sink = VecSink::new(1 << 30);
    reader.memory(&mut sink).unwrap();
    reader.finish().unwrap();
    assert!(sink.data == mem.data);
}

#[test]
fn every_truncation_is_a_typed_error_naming_the_section() {
    let (file, _) = small_statefile();
    let (meta, kernel, memory, end) = layout(&file);
    assert_eq!(file[meta], 1);
    assert_eq!(file[kernel], 2);
    assert_eq!(file[memory], 3);
    assert_eq!(file[end], 4);
    read_statefile(&file, &mut VecSink::new(1 << 20)).unwrap();
    for cut in 0..file.len() {
        let err = read_statefile(&file[..cut], &mut VecSink::new(1 << 20)).unwrap_err();
        if cut < 8 {
            assert!(
                matches!(err, StatefileError::NotAStatefile),
                "cut {cut}: {err}"
            );
            continue;
        }
        let want = match cut {
            c if c < meta => Section::Header,
            c if c < kernel => Section::Metadata,
            c if c < memory => Section::Kernel,
            c if c < end => Section::Memory,
            _ => Section::End,
        };
        match err {
            StatefileError::Truncated {
                section,
                expected,
                got,
            } => {
                assert_eq!(section, want, "cut {cut}");
                assert!(got < expected, "cut {cut}: got {got} of {expected}");
            }
            e => panic!("cut {cut}: expected Truncated in {want}, got {e:?}"),
        }
    }
}

#[test]
fn not_a_statefile() {
    let mut sink = VecSink::new(0);
    for junk in [
        &b""[..],
        b"RVISOR",
        b"GIF89a\0\0\0\0\0\0\0\0\0\0\0",
        b"rvisorsf\x01\0\0\0",
    ] {
        let err = read_statefile(junk, &mut sink).unwrap_err();
        assert!(matches!(err, StatefileError::NotAStatefile), "{err:?}");
        assert!(err.to_string().contains("not an rvisor statefile"));
    }
}

#[test]
fn format_version_mismatch_names_both_versions() {
    let (mut file, _) = small_statefile();
    file[8..12].copy_from_slice(&7u32.to_le_bytes());
    let err = read_statefile(&file, &mut VecSink::new(1 << 20)).unwrap_err();
    match &err {
        StatefileError::UnsupportedVersion { found, supported } => {
            assert_eq!((*found, *supported), (7, FORMAT_VERSION));
        }
        e => panic!("{e:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("version 7") && msg.contains(&format!("version {FORMAT_VERSION}")),
        "{msg}"
    );
}

#[test]
fn rvisor_version_and_platform_mismatches_are_named() {
    let mut saved = sample_meta();
    saved.rvisor_version = "0.0.9-old".into();
    saved.platform = "kvm".into();
    let file = write_statefile(&saved, b"k", &Vec::new());
    let (meta, _) = StatefileReader::open(&file[..]).unwrap();
    let err = meta
        .check_compatible(&Metadata::current("ptrace", vec![]))
        .unwrap_err();
    let StatefileError::Incompatible(m) = &err else {
        panic!("{err:?}")
    };
    assert!(m.contains(&Mismatch::RvisorVersion {
        saved: "0.0.9-old".into(),
        current: env!("CARGO_PKG_VERSION").into(),
    }));
    assert!(m.contains(&Mismatch::Platform {
        saved: "kvm".into(),
        current: "ptrace".into(),
    }));
    let msg = err.to_string();
    assert!(
        msg.contains("0.0.9-old") && msg.contains(env!("CARGO_PKG_VERSION")),
        "{msg}"
    );
    assert!(msg.contains("kvm") && msg.contains("ptrace"), "{msg}");
}

fn synthetic_cpu() -> CpuFeatures {
    CpuFeatures {
        xsave_size: 832,
        xfeatures: 0x7,
        cpuid1_ecx: (1 << 0) | (1 << 9) | (1 << 19) | (1 << 20) | (1 << 26) | (1 << 28),
        cpuid1_edx: (1 << 24) | (1 << 25) | (1 << 26),
        cpuid7_ebx: (1 << 3) | (1 << 5) | (1 << 8),
        cpuid7_ecx: 0,
        cpuid7_edx: 0,
    }
}

#[test]
fn cpu_feature_mismatch_names_the_feature_and_a_superset_host_is_fine() {
    let host_cpu = synthetic_cpu();
    let mut saved = sample_meta();
    saved.cpu = host_cpu;
    saved.cpu.cpuid7_ebx |= 1 << 16; // avx512f
    saved.cpu.cpuid7_ecx |= 1 << 1; // avx512_vbmi
    saved.cpu.xfeatures |= 0xe0; // opmask, zmm_hi256, hi16_zmm
    saved.cpu.xsave_size = 2696;
    let file = write_statefile(&saved, b"k", &Vec::new());
    let (meta, _) = StatefileReader::open(&file[..]).unwrap();

    let mut host = Metadata::current("ptrace", vec![]);
    host.cpu = host_cpu;
    let err = meta.check_compatible(&host).unwrap_err();
    let StatefileError::Incompatible(m) = &err else {
        panic!("{err:?}")
    };
    assert!(m.contains(&Mismatch::CpuFeature {
        name: Some("avx512f"),
        register: "CPUID.(EAX=7,ECX=0):EBX",
        bit: 16,
    }));
    assert!(m.contains(&Mismatch::XsaveSize {
        saved: 2696,
        current: 832,
    }));
    assert_eq!(m.len(), 2 + 3 + 1, "{m:?}");
    let msg = err.to_string();
    for word in [
        "avx512f",
        "avx512_vbmi",
        "avx512_opmask",
        "avx512_hi16_zmm",
        "2696",
        "832",
    ] {
        assert!(msg.contains(word), "{word} not in {msg}");
    }
    assert!(
        !msg.contains("rvisor version") && !msg.contains("platform"),
        "{msg}"
    );

    // A newer host with more features (and a larger XSAVE area) is fine.
    host.cpu = saved.cpu;
    host.cpu.cpuid7_ebx |= 1 << 29;
    host.cpu.cpuid7_edx |= 1 << 24;
    host.cpu.xfeatures |= 0x60000;
    host.cpu.xsave_size = 11008;
    meta.check_compatible(&host).unwrap();
    // The hypervisor bit is not a feature an application can lose.
    host.cpu.cpuid1_ecx &= !(1 << 31);
    let mut vm = meta.clone();
    vm.cpu.cpuid1_ecx |= 1 << 31;
    vm.check_compatible(&host).unwrap();
}

#[test]
fn container_spec_mismatch_names_the_field() {
    let saved = sample_meta();
    let file = write_statefile(&saved, b"k", &Vec::new());
    let (meta, _) = StatefileReader::open(&file[..]).unwrap();
    // Same spec, other key order: compatible.
    let same = r#"{"root":{"readonly":false,"path":"/"},"process":{"cwd":"/","args":["sh","-c","true"]},"ociVersion":"1.0.2"}"#;
    meta.check_compatible(&Metadata::current(
        "ptrace",
        vec![("box".into(), same.into())],
    ))
    .unwrap();
    let other = Metadata::current(
        "ptrace",
        vec![
            ("box".into(), spec_json(&["sh", "-c", "false"])),
            ("sidecar".into(), spec_json(&["true"])),
        ],
    );
    let msg = meta.check_compatible(&other).unwrap_err().to_string();
    assert!(
        msg.contains(r#"/process/args/2: saved "true", now "false""#),
        "{msg}"
    );
    assert!(
        msg.contains(r#"container "sidecar": given now, not in the statefile"#),
        "{msg}"
    );
}

#[test]
fn modified_sections_fail_their_checksum() {
    let (file, _) = small_statefile();
    let (meta, kernel, memory, end) = layout(&file);
    for (at, want) in [
        (meta + 9 + 3, Section::Metadata),
        (kernel + 9 + 100, Section::Kernel),
        (memory + 9 + 16 + 5, Section::End),
        (end + 9 + 2, Section::End),
    ] {
        let mut f = file.clone();
        f[at] ^= 0x40;
        match read_statefile(&f, &mut VecSink::new(1 << 20)).unwrap_err() {
            StatefileError::ChecksumMismatch {
                section,
                expected,
                computed,
            } => {
                assert_eq!(section, want, "byte {at}");
                assert_ne!(expected, computed);
            }
            e => panic!("byte {at}: {e:?}"),
        }
    }
}

#[test]
fn structural_damage_is_named() {
    let (file, _) = small_statefile();
    let (meta, kernel, memory, _) = layout(&file);
    let read = |f: &[u8]| read_statefile(f, &mut VecSink::new(1 << 20)).unwrap_err();

    let mut f = file.clone();
    f[kernel] = 9;
    assert!(matches!(
        read(&f),
        StatefileError::BadSection {
            tag: 9,
            expected: Section::Kernel
        }
    ));

    let mut f = file.clone();
    f[meta + 1..meta + 9].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(
        matches!(read(&f), StatefileError::TooLarge { section: Section::Metadata, len, .. } if len == 1 << 40)
    );

    let mut f = file.clone();
    f[kernel + 1..kernel + 9].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = read(&f);
    assert!(
        matches!(
            e,
            StatefileError::TooLarge {
                section: Section::Kernel,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("kernel section claims"), "{e}");

    // A large but allowed kernel length on a short file: Truncated, and
    // nothing near that size is allocated up front (the section length
    // counts the blob's 8-byte checksum too).
    let mut f = file.clone();
    f[kernel + 1..kernel + 9].copy_from_slice(&(900u64 << 20).to_le_bytes());
    assert!(
        matches!(read(&f), StatefileError::Truncated { section: Section::Kernel, expected, .. } if expected == (900 << 20) - 8)
    );

    let mut f = file.clone();
    f[memory + 1..memory + 9].copy_from_slice(&(1u64 << 50).to_le_bytes());
    assert!(matches!(
        read(&f),
        StatefileError::TooLarge {
            section: Section::Memory,
            ..
        }
    ));

    // A run past the memory size.
    let mut f = file.clone();
    f[memory + 9..memory + 17].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = read(&f);
    assert!(
        matches!(&e, StatefileError::Corrupt { what } if what.contains("past the memory size")),
        "{e:?}"
    );

    // Data after the end.
    let mut f = file.clone();
    f.push(0);
    let e = read(&f);
    assert!(
        matches!(&e, StatefileError::Corrupt { what } if what.contains("after the end")),
        "{e:?}"
    );

    // A sink that refuses the memory size: its error comes through.
    let e = read_statefile(&file, &mut VecSink::new(10)).unwrap_err();
    assert!(matches!(e, StatefileError::Io(_)), "{e:?}");
}

#[test]
fn undecodable_metadata_is_corrupt_not_eof() {
    // A well-formed file whose metadata payload is not a Metadata: build
    // it by hand with a correct running checksum.
    let mut f = MAGIC.to_vec();
    f.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    let payload = [0xffu8; 5];
    f.push(1);
    f.extend_from_slice(&(payload.len() as u64 + 8).to_le_bytes());
    f.extend_from_slice(&payload);
    let sum = hash64(&f);
    f.extend_from_slice(&sum.to_le_bytes());
    let e = StatefileReader::open(&f[..]).err().unwrap();
    assert!(
        matches!(&e, StatefileError::Corrupt { what } if what.starts_with("metadata")),
        "{e:?}"
    );
}

#[test]
fn reader_calls_out_of_order_are_refused() {
    let (file, _) = small_statefile();
    let (_, mut r) = StatefileReader::open(&file[..]).unwrap();
    let mut sink = VecSink::new(1 << 20);
    assert!(matches!(
        r.memory(&mut sink),
        Err(StatefileError::OutOfOrder {
            called: Section::Memory,
            next: Some(Section::Kernel)
        })
    ));
    r.kernel().unwrap();
    assert!(matches!(
        r.finish(),
        Err(StatefileError::OutOfOrder {
            called: Section::End,
            next: Some(Section::Memory)
        })
    ));
    r.memory(&mut sink).unwrap();
    r.finish().unwrap();
    assert!(matches!(
        r.finish(),
        Err(StatefileError::OutOfOrder { next: None, .. })
    ));

    // After an error the reader is spent.
    let (_, mut r) = StatefileReader::open(&file[..file.len() - 30]).unwrap();
    r.kernel().unwrap();
    assert!(matches!(
        r.memory(&mut sink),
        Err(StatefileError::Truncated { .. })
    ));
    assert!(matches!(
        r.finish(),
        Err(StatefileError::OutOfOrder { next: None, .. })
    ));
}

fn small_file() -> &'static [u8] {
    static FILE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    FILE.get_or_init(|| small_statefile().0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Flipped bytes and truncation: reading never panics, and a modified
    /// file is always rejected.
    #[test]
    fn modified_statefiles_are_rejected(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let orig = small_file();
        let mut f = orig.to_vec();
        for (i, x) in &flips {
            let i = i.index(f.len());
            f[i] ^= x;
        }
        if let Some(c) = cut {
            f.truncate(c.index(f.len()));
        }
        prop_assume!(f != orig);
        let mut sink = VecSink::new(1 << 20);
        prop_assert!(read_statefile(&f, &mut sink).is_err());
    }

    /// Anything after a valid magic and version: never a panic.
    #[test]
    fn arbitrary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut f = MAGIC.to_vec();
        f.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        f.extend_from_slice(&body);
        let mut sink = VecSink::new(1 << 20);
        prop_assert!(read_statefile(&f, &mut sink).is_err());
    }
}

/// Hash throughput (run with `cargo test --release --test statefile --
/// --ignored --nocapture`; `examples/statefile_hash.rs` measures more).
#[test]
#[ignore = "a measurement, not a check: run in release"]
fn hash_throughput() {
    let data: Vec<u8> = (0..256u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let t = std::time::Instant::now();
    let mut acc = 0;
    for _ in 0..4 {
        acc = hash64(std::hint::black_box(&data));
    }
    let secs = t.elapsed().as_secs_f64();
    let gbps = 4.0 * data.len() as f64 / secs / 1e9;
    println!("hash64: {gbps:.2} GB/s ({acc:x})");
    if !cfg!(debug_assertions) {
        assert!(gbps >= 2.0, "{gbps:.2} GB/s");
    }
}
