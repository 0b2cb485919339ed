//! The statefile: the on-disk format of a checkpoint.
//!
//! A statefile is written and read strictly sequentially (it may be a pipe
//! or a socket), and memory is streamed in chunks of [`CHUNK`] bytes, so
//! neither side ever holds the whole memory file in RAM.
//!
//! # Layout
//!
//! All integers are little-endian.
//!
//! ```text
//! magic    b"RVISORSF"                     8 bytes
//! version  u32                             FORMAT_VERSION
//! section  tag: u8, len: u64, payload      repeated, in this order:
//!   1 Metadata  len = postcard(Metadata).len() + 8
//!               payload = postcard(Metadata), then a u64 running checksum:
//!               the hash of every byte of the file before it (magic,
//!               version, tag, len, postcard bytes)
//!   2 Kernel    len = blob.len() + 8
//!               payload = the caller's opaque blob, then a u64 running
//!               checksum (the hash of every byte of the file before it)
//!   3 Memory    len = the memory file's SIZE (not the payload length: the
//!               payload is streamed, and delimits itself):
//!               runs (offset: u64, len: u64, len bytes), in ascending,
//!               non-overlapping order, each inside [0, SIZE), then the
//!               terminator run (0, 0)
//!   4 End       len = 8; payload = u64 checksum: the hash of every byte
//!               of the file before it (including End's tag and len)
//! ```
//!
//! Everything the memory section does not cover is zero: holes of the
//! memory file (`SEEK_HOLE`) are not read, and pages that read as all zero
//! inside data ranges are not stored either.
//!
//! The hash is [`Hasher64`], an XXH64 implemented here (four independent
//! multiply-rotate lanes, 32 bytes per step).
//!
//! # Integrity
//!
//! [`StatefileReader::open`] verifies the metadata's running checksum
//! before it returns the [`Metadata`], so a compatibility verdict
//! ([`Metadata::check_compatible`]) is never an artefact of corruption;
//! likewise [`StatefileReader::kernel`] returns only a verified blob, so
//! decoding it can trust it. Memory is streamed: it is applied into the
//! [`MemorySink`] *as it is read*, and the checksum covering it is the
//! whole-file one, verified by [`StatefileReader::finish`]. Until `finish`
//! returns `Ok`, whatever was written into the sink is untrusted: on any
//! error the caller must discard it (for a restore: destroy the half-built
//! memory file and kernel) rather than run it.

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::marker::PhantomData;

/// The first eight bytes of every statefile.
pub const MAGIC: [u8; 8] = *b"RVISORSF";

/// The format version this build writes, and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;

/// The granularity of zero-page elision.
pub const PAGE_SIZE: u64 = 4096;

/// Memory is read from a [`MemorySource`] and written to a [`MemorySink`]
/// in pieces of at most this many bytes.
pub const CHUNK: usize = 1 << 20;

/// Largest encoded metadata accepted (and written), excluding its checksum.
pub const MAX_METADATA_LEN: u64 = 16 << 20;

/// Largest kernel blob accepted (and written), excluding its checksum.
pub const MAX_KERNEL_LEN: u64 = 1 << 30;

/// Largest memory file size accepted (and written): the x86_64 user
/// address space.
pub const MAX_MEMORY_SIZE: u64 = 1 << 47;

const TAG_METADATA: u8 = 1;
const TAG_KERNEL: u8 = 2;
const TAG_MEMORY: u8 = 3;
const TAG_END: u8 = 4;

/// Buffer size of the buffered writer and reader.
const IO_BUFFER: usize = 256 << 10;

// ---------------------------------------------------------------------------
// The hash.

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

#[inline(always)]
fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

#[inline(always)]
fn le32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

#[inline(always)]
fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

#[inline(always)]
fn merge_round(acc: u64, v: u64) -> u64 {
    (acc ^ round(0, v)).wrapping_mul(P1).wrapping_add(P4)
}

/// A streaming 64-bit hash: XXH64, written out here.
///
/// Four independent lanes each absorb one little-endian 64-bit word per
/// 32-byte stripe with a multiply-rotate-multiply round, so the CPU runs
/// the four multiply chains in parallel; the tail and the final avalanche
/// follow the XXH64 specification, so results match any XXH64
/// implementation. Feeding the input in any split gives the same result as
/// hashing it at once.
#[derive(Debug, Clone)]
pub struct Hasher64 {
    seed: u64,
    lanes: [u64; 4],
    buf: [u8; 32],
    buf_len: usize,
    total: u64,
}

impl Default for Hasher64 {
    fn default() -> Self {
        Self::new()
    }
}

impl Hasher64 {
    /// A hasher with seed 0 (the one statefiles use).
    pub fn new() -> Self {
        Self::with_seed(0)
    }

    /// A hasher with the given seed.
    pub fn with_seed(seed: u64) -> Self {
        Hasher64 {
            seed,
            lanes: [
                seed.wrapping_add(P1).wrapping_add(P2),
                seed.wrapping_add(P2),
                seed,
                seed.wrapping_sub(P1),
            ],
            buf: [0; 32],
            buf_len: 0,
            total: 0,
        }
    }

    /// Absorbs `data`.
    pub fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        if self.buf_len > 0 {
            let take = (32 - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
            if self.buf_len < 32 {
                return;
            }
            let stripe = self.buf;
            self.stripes(&stripe);
            self.buf_len = 0;
        }
        let whole = data.len() / 32 * 32;
        self.stripes(&data[..whole]);
        let rest = &data[whole..];
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    /// Absorbs whole 32-byte stripes (`data.len()` is a multiple of 32).
    #[inline]
    fn stripes(&mut self, data: &[u8]) {
        let [mut v1, mut v2, mut v3, mut v4] = self.lanes;
        let (stripes, _) = data.as_chunks::<32>();
        for s in stripes {
            let (w, _) = s.as_chunks::<8>();
            v1 = round(v1, u64::from_le_bytes(w[0]));
            v2 = round(v2, u64::from_le_bytes(w[1]));
            v3 = round(v3, u64::from_le_bytes(w[2]));
            v4 = round(v4, u64::from_le_bytes(w[3]));
        }
        self.lanes = [v1, v2, v3, v4];
    }

    /// The hash of everything absorbed so far (the hasher can go on).
    pub fn finish(&self) -> u64 {
        let mut h = if self.total >= 32 {
            let [v1, v2, v3, v4] = self.lanes;
            let mut h = v1
                .rotate_left(1)
                .wrapping_add(v2.rotate_left(7))
                .wrapping_add(v3.rotate_left(12))
                .wrapping_add(v4.rotate_left(18));
            h = merge_round(h, v1);
            h = merge_round(h, v2);
            h = merge_round(h, v3);
            merge_round(h, v4)
        } else {
            self.seed.wrapping_add(P5)
        };
        h = h.wrapping_add(self.total);
        let mut tail = &self.buf[..self.buf_len];
        while tail.len() >= 8 {
            h ^= round(0, le64(tail));
            h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
            tail = &tail[8..];
        }
        if tail.len() >= 4 {
            h ^= u64::from(le32(tail)).wrapping_mul(P1);
            h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
            tail = &tail[4..];
        }
        for &b in tail {
            h ^= u64::from(b).wrapping_mul(P5);
            h = h.rotate_left(11).wrapping_mul(P1);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P3);
        h ^ (h >> 32)
    }
}

/// The statefile hash ([`Hasher64`], seed 0) of `data`.
pub fn hash64(data: &[u8]) -> u64 {
    let mut h = Hasher64::new();
    h.update(data);
    h.finish()
}

// ---------------------------------------------------------------------------
// Metadata.

/// The statefile's header: who wrote it, where, when, and for what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The rvisor version that wrote the statefile (`CARGO_PKG_VERSION`).
    pub rvisor_version: String,
    /// The platform the sandbox ran on (`ptrace`, …).
    pub platform: String,
    /// When the checkpoint was taken.
    pub saved_at: SaveTime,
    /// The CPU features of the host that took the checkpoint.
    pub cpu: CpuFeatures,
    /// The sandbox's containers: `(id, OCI spec as JSON)`.
    pub containers: Vec<(String, String)>,
    /// Free-form `(key, value)` notes.
    pub notes: Vec<(String, String)>,
}

/// A wall-clock time, as seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SaveTime {
    /// Whole seconds since 1970-01-01T00:00:00Z.
    pub secs: u64,
    /// Nanoseconds past `secs` (< 1e9).
    pub nanos: u32,
}

impl SaveTime {
    /// The current wall-clock time (the epoch if the clock is before it).
    pub fn now() -> SaveTime {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        SaveTime {
            secs: d.as_secs(),
            nanos: d.subsec_nanos(),
        }
    }
}

/// The CPU features an application (and its saved FP state) may depend on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CpuFeatures {
    /// Size in bytes of the XSAVE area for the features the host OS
    /// enabled in XCR0 (CPUID.(EAX=0DH,ECX=0):EBX); 0 without XSAVE.
    pub xsave_size: u32,
    /// The XSAVE state components the CPU supports in XCR0
    /// (CPUID.(EAX=0DH,ECX=0):EDX:EAX); 0 without XSAVE.
    pub xfeatures: u64,
    /// CPUID.(EAX=1):ECX.
    pub cpuid1_ecx: u32,
    /// CPUID.(EAX=1):EDX.
    pub cpuid1_edx: u32,
    /// CPUID.(EAX=7,ECX=0):EBX.
    pub cpuid7_ebx: u32,
    /// CPUID.(EAX=7,ECX=0):ECX.
    pub cpuid7_ecx: u32,
    /// CPUID.(EAX=7,ECX=0):EDX.
    pub cpuid7_edx: u32,
}

impl CpuFeatures {
    /// This host's features, from CPUID.
    #[cfg(target_arch = "x86_64")]
    pub fn current() -> CpuFeatures {
        use std::arch::x86_64::__cpuid_count;
        let max_leaf = __cpuid_count(0, 0).eax;
        let l1 = __cpuid_count(1, 0);
        let (cpuid7_ebx, cpuid7_ecx, cpuid7_edx) = if max_leaf >= 7 {
            let r = __cpuid_count(7, 0);
            (r.ebx, r.ecx, r.edx)
        } else {
            (0, 0, 0)
        };
        let has_xsave = l1.ecx & (1 << 26) != 0;
        let (xsave_size, xfeatures) = if max_leaf >= 0xd && has_xsave {
            let r = __cpuid_count(0xd, 0);
            (r.ebx, (u64::from(r.edx) << 32) | u64::from(r.eax))
        } else {
            (0, 0)
        };
        CpuFeatures {
            xsave_size,
            xfeatures,
            cpuid1_ecx: l1.ecx,
            cpuid1_edx: l1.edx,
            cpuid7_ebx,
            cpuid7_ecx,
            cpuid7_edx,
        }
    }

    /// This host's features (none known off x86_64).
    #[cfg(not(target_arch = "x86_64"))]
    pub fn current() -> CpuFeatures {
        CpuFeatures::default()
    }

    /// What the saved features (`self`) need that `host` lacks: CPUID
    /// feature bits, XSAVE components, and XSAVE area size. A host with a
    /// superset of the features (and an XSAVE area at least as large) is
    /// compatible. Bits that are not capabilities an application can use
    /// (the hypervisor bit, HTT, speculation-control and other
    /// informational bits, the MAWAU field) are ignored.
    pub fn missing_on(&self, host: &CpuFeatures) -> Vec<Mismatch> {
        let mut out = Vec::new();
        for reg in CPUID_REGS {
            let saved = (reg.get)(self);
            let here = (reg.get)(host);
            let missing = saved & !here & !reg.ignore;
            for bit in 0..32 {
                if missing & (1 << bit) != 0 {
                    let name = reg.names[bit as usize];
                    out.push(Mismatch::CpuFeature {
                        name: if name.is_empty() { None } else { Some(name) },
                        register: reg.register,
                        bit,
                    });
                }
            }
        }
        let missing = self.xfeatures & !host.xfeatures;
        for bit in 0..64 {
            if missing & (1 << bit) != 0 {
                out.push(Mismatch::XsaveComponent {
                    bit,
                    name: XFEATURE_NAMES
                        .get(bit as usize)
                        .copied()
                        .filter(|n| !n.is_empty()),
                });
            }
        }
        if host.xsave_size < self.xsave_size {
            out.push(Mismatch::XsaveSize {
                saved: self.xsave_size,
                current: host.xsave_size,
            });
        }
        out
    }
}

struct CpuidReg {
    register: &'static str,
    get: fn(&CpuFeatures) -> u32,
    ignore: u32,
    names: [&'static str; 32],
}

#[rustfmt::skip]
const CPUID_REGS: [CpuidReg; 5] = [
    CpuidReg {
        register: "CPUID.(EAX=1):ECX",
        get: |c| c.cpuid1_ecx,
        // 31 hypervisor.
        ignore: 1 << 31,
        names: [
            "sse3", "pclmulqdq", "dtes64", "monitor", "ds_cpl", "vmx", "smx", "est", "tm2",
            "ssse3", "cnxt_id", "sdbg", "fma", "cx16", "xtpr", "pdcm", "", "pcid", "dca",
            "sse4_1", "sse4_2", "x2apic", "movbe", "popcnt", "tsc_deadline", "aes", "xsave",
            "osxsave", "avx", "f16c", "rdrand", "hypervisor",
        ],
    },
    CpuidReg {
        register: "CPUID.(EAX=1):EDX",
        get: |c| c.cpuid1_edx,
        // 28 htt (topology, not a capability).
        ignore: 1 << 28,
        names: [
            "fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", "", "sep",
            "mtrr", "pge", "mca", "cmov", "pat", "pse36", "psn", "clflush", "", "ds", "acpi",
            "mmx", "fxsr", "sse", "sse2", "ss", "htt", "tm", "ia64", "pbe",
        ],
    },
    CpuidReg {
        register: "CPUID.(EAX=7,ECX=0):EBX",
        get: |c| c.cpuid7_ebx,
        // 6 fdp_excptn_only and 13 zero_fcs_fds take something away.
        ignore: (1 << 6) | (1 << 13),
        names: [
            "fsgsbase", "tsc_adjust", "sgx", "bmi1", "hle", "avx2", "fdp_excptn_only", "smep",
            "bmi2", "erms", "invpcid", "rtm", "pqm", "zero_fcs_fds", "mpx", "pqe", "avx512f",
            "avx512dq", "rdseed", "adx", "smap", "avx512ifma", "pcommit", "clflushopt", "clwb",
            "intel_pt", "avx512pf", "avx512er", "avx512cd", "sha_ni", "avx512bw", "avx512vl",
        ],
    },
    CpuidReg {
        register: "CPUID.(EAX=7,ECX=0):ECX",
        get: |c| c.cpuid7_ecx,
        // 17..=21 are the MAWAU value, not flags.
        ignore: 0x1f << 17,
        names: [
            "prefetchwt1", "avx512_vbmi", "umip", "pku", "ospke", "waitpkg", "avx512_vbmi2",
            "cet_ss", "gfni", "vaes", "vpclmulqdq", "avx512_vnni", "avx512_bitalg", "tme",
            "avx512_vpopcntdq", "", "la57", "", "", "", "", "", "rdpid", "key_locker",
            "bus_lock_detect", "cldemote", "", "movdiri", "movdir64b", "enqcmd", "sgx_lc", "pks",
        ],
    },
    CpuidReg {
        register: "CPUID.(EAX=7,ECX=0):EDX",
        get: |c| c.cpuid7_edx,
        // 9 srbds_ctrl, 10 md_clear, 11 rtm_always_abort, 13 tsx_force_abort,
        // 15 hybrid, 26..=31 speculation control and capability MSRs.
        ignore: (1 << 9) | (1 << 10) | (1 << 11) | (1 << 13) | (1 << 15) | (0x3f << 26),
        names: [
            "", "", "avx512_4vnniw", "avx512_4fmaps", "fsrm", "uintr", "", "",
            "avx512_vp2intersect", "srbds_ctrl", "md_clear", "rtm_always_abort", "",
            "tsx_force_abort", "serialize", "hybrid", "tsxldtrk", "", "pconfig", "arch_lbr",
            "cet_ibt", "", "amx_bf16", "avx512_fp16", "amx_tile", "amx_int8", "spec_ctrl",
            "stibp", "flush_l1d", "arch_capabilities", "core_capabilities", "ssbd",
        ],
    },
];

#[rustfmt::skip]
const XFEATURE_NAMES: [&str; 20] = [
    "x87", "sse", "avx", "mpx_bndregs", "mpx_bndcsr", "avx512_opmask", "avx512_zmm_hi256",
    "avx512_hi16_zmm", "pt", "pkru", "pasid", "cet_u", "cet_s", "hdc", "uintr", "lbr", "hwp",
    "amx_tilecfg", "amx_tiledata", "apx",
];

/// One way in which a statefile does not fit this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// Written by another rvisor version (the kernel blob's layout is tied
    /// to the version).
    RvisorVersion {
        /// The version that wrote the statefile.
        saved: String,
        /// This rvisor's version.
        current: String,
    },
    /// Written on another platform.
    Platform {
        /// The platform in the statefile.
        saved: String,
        /// The platform asked for now.
        current: String,
    },
    /// A CPUID feature the saving host had and this host lacks.
    CpuFeature {
        /// The feature's conventional (Linux `/proc/cpuinfo`-like) name,
        /// when it has one.
        name: Option<&'static str>,
        /// The CPUID register holding the bit, e.g. `CPUID.(EAX=7,ECX=0):EBX`.
        register: &'static str,
        /// The bit number in that register.
        bit: u32,
    },
    /// An XSAVE state component the saving host supported and this host
    /// does not.
    XsaveComponent {
        /// The component number (bit of XCR0).
        bit: u32,
        /// Its name, when known.
        name: Option<&'static str>,
    },
    /// This host's XSAVE area is smaller than the saved FP state.
    XsaveSize {
        /// The saving host's XSAVE area size, bytes.
        saved: u32,
        /// This host's, bytes.
        current: u32,
    },
    /// A container in the statefile is not among the current ones.
    ContainerMissing {
        /// Its id.
        id: String,
    },
    /// A current container is not in the statefile.
    ContainerExtra {
        /// Its id.
        id: String,
    },
    /// A container's spec differs.
    ContainerSpec {
        /// The container's id.
        id: String,
        /// The first difference, as `json/pointer: saved …, now …`.
        difference: String,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::RvisorVersion { saved, current } => {
                write!(f, "rvisor version: saved by {saved}, this is {current}")
            }
            Mismatch::Platform { saved, current } => {
                write!(f, "platform: saved on {saved}, restoring on {current}")
            }
            Mismatch::CpuFeature {
                name,
                register,
                bit,
            } => write!(
                f,
                "CPU feature {} ({register}[{bit}]): present on the saving host, missing on this host",
                name.unwrap_or("unnamed")
            ),
            Mismatch::XsaveComponent { bit, name } => write!(
                f,
                "XSAVE component {bit} ({}): supported on the saving host, not on this host",
                name.unwrap_or("unnamed")
            ),
            Mismatch::XsaveSize { saved, current } => write!(
                f,
                "XSAVE area size: {saved} bytes on the saving host, {current} bytes on this host"
            ),
            Mismatch::ContainerMissing { id } => {
                write!(f, "container {id:?}: in the statefile, not given now")
            }
            Mismatch::ContainerExtra { id } => {
                write!(f, "container {id:?}: given now, not in the statefile")
            }
            Mismatch::ContainerSpec { id, difference } => {
                write!(f, "container {id:?}: spec differs at {difference}")
            }
        }
    }
}

impl Metadata {
    /// Metadata for a checkpoint taken now, on this host, by this rvisor:
    /// `containers` are `(id, OCI spec as JSON)`.
    pub fn current(platform: &str, containers: Vec<(String, String)>) -> Metadata {
        Metadata {
            rvisor_version: env!("CARGO_PKG_VERSION").to_string(),
            platform: platform.to_string(),
            saved_at: SaveTime::now(),
            cpu: CpuFeatures::current(),
            containers,
            notes: Vec::new(),
        }
    }

    /// Every way the saved metadata (`self`) does not fit `current` (see
    /// [`Metadata::check_compatible`]).
    pub fn mismatches(&self, current: &Metadata) -> Vec<Mismatch> {
        let mut out = Vec::new();
        if self.rvisor_version != current.rvisor_version {
            out.push(Mismatch::RvisorVersion {
                saved: self.rvisor_version.clone(),
                current: current.rvisor_version.clone(),
            });
        }
        if self.platform != current.platform {
            out.push(Mismatch::Platform {
                saved: self.platform.clone(),
                current: current.platform.clone(),
            });
        }
        out.extend(self.cpu.missing_on(&current.cpu));
        if !current.containers.is_empty() {
            for (id, spec) in &self.containers {
                match current.containers.iter().find(|(i, _)| i == id) {
                    None => out.push(Mismatch::ContainerMissing { id: id.clone() }),
                    Some((_, now)) => {
                        if let Some(difference) = spec_difference(spec, now) {
                            out.push(Mismatch::ContainerSpec {
                                id: id.clone(),
                                difference,
                            });
                        }
                    }
                }
            }
            for (id, _) in &current.containers {
                if !self.containers.iter().any(|(i, _)| i == id) {
                    out.push(Mismatch::ContainerExtra { id: id.clone() });
                }
            }
        }
        out
    }

    /// Whether a statefile with this (saved) metadata can be restored
    /// where `current` describes the host, the rvisor and the request
    /// (typically [`Metadata::current`]).
    ///
    /// The rvisor version and platform must be equal. The host CPU must
    /// have every saved feature (a superset is fine) and an XSAVE area at
    /// least as large. If `current.containers` is empty, the saved
    /// containers are taken as they are; otherwise the two sets must have
    /// the same ids with equal specs (compared as JSON values, so key
    /// order and whitespace do not matter). `saved_at` and `notes` are not
    /// compared.
    ///
    /// # Errors
    ///
    /// [`StatefileError::Incompatible`] listing every difference.
    pub fn check_compatible(&self, current: &Metadata) -> Result<(), StatefileError> {
        let m = self.mismatches(current);
        if m.is_empty() {
            Ok(())
        } else {
            Err(StatefileError::Incompatible(m))
        }
    }
}

/// The first difference between two JSON documents, or `None` if equal.
fn spec_difference(saved: &str, now: &str) -> Option<String> {
    match (
        serde_json::from_str::<serde_json::Value>(saved),
        serde_json::from_str::<serde_json::Value>(now),
    ) {
        (Ok(a), Ok(b)) => json_difference(&mut String::new(), &a, &b),
        _ if saved == now => None,
        _ => Some(format!(
            "(not both JSON): saved {}, now {}",
            clip(saved),
            clip(now)
        )),
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn json_difference(
    path: &mut String,
    a: &serde_json::Value,
    b: &serde_json::Value,
) -> Option<String> {
    use serde_json::Value;
    let here = |path: &str| {
        if path.is_empty() {
            "/".to_string()
        } else {
            path.to_string()
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let len = path.len();
                path.push('/');
                path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                let d = match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => json_difference(path, p, q),
                    (Some(p), None) => Some(format!(
                        "{path}: saved {}, now absent",
                        clip(&p.to_string())
                    )),
                    (None, Some(q)) => Some(format!(
                        "{path}: absent when saved, now {}",
                        clip(&q.to_string())
                    )),
                    (None, None) => None,
                };
                path.truncate(len);
                if d.is_some() {
                    return d;
                }
            }
            None
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                let len = path.len();
                path.push_str(&format!("/{i}"));
                let d = json_difference(path, p, q);
                path.truncate(len);
                if d.is_some() {
                    return d;
                }
            }
            (x.len() != y.len()).then(|| {
                format!(
                    "{}: saved {} elements, now {}",
                    here(path),
                    x.len(),
                    y.len()
                )
            })
        }
        _ if a == b => None,
        _ => Some(format!(
            "{}: saved {}, now {}",
            here(path),
            clip(&a.to_string()),
            clip(&b.to_string())
        )),
    }
}

// ---------------------------------------------------------------------------
// Errors.

/// A part of a statefile, as named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The magic and the format version.
    Header,
    /// The metadata section.
    Metadata,
    /// The kernel section.
    Kernel,
    /// The memory section.
    Memory,
    /// The end section (its checksum covers the whole file).
    End,
}

impl Section {
    /// The tag byte introducing the section (`None` for the header, which
    /// has none).
    pub const fn tag(self) -> Option<u8> {
        match self {
            Section::Header => None,
            Section::Metadata => Some(TAG_METADATA),
            Section::Kernel => Some(TAG_KERNEL),
            Section::Memory => Some(TAG_MEMORY),
            Section::End => Some(TAG_END),
        }
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Section::Header => "header",
            Section::Metadata => "metadata",
            Section::Kernel => "kernel",
            Section::Memory => "memory",
            Section::End => "end",
        })
    }
}

/// Why a statefile cannot be read or restored.
#[derive(Debug, thiserror::Error)]
pub enum StatefileError {
    /// The file does not start with [`MAGIC`] (or is shorter than it).
    #[error("not an rvisor statefile (bad magic)")]
    NotAStatefile,
    /// The file's format version is not [`FORMAT_VERSION`].
    #[error(
        "statefile format version {found} is not supported (this rvisor reads version {supported})"
    )]
    UnsupportedVersion {
        /// The version in the file.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// The file ends inside `section`.
    #[error("statefile truncated in the {section} section: {expected} bytes needed, {got} present")]
    Truncated {
        /// Where the file ends.
        section: Section,
        /// The bytes the item being read needed.
        expected: u64,
        /// The bytes that were there.
        got: u64,
    },
    /// A section tag is not the one that must come next.
    #[error("unexpected section tag {tag} where the {expected} section must come")]
    BadSection {
        /// The tag found.
        tag: u8,
        /// The section that must come there.
        expected: Section,
    },
    /// A length in the file exceeds its cap; nothing was allocated for it.
    #[error("{section} section claims {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// The section.
        section: Section,
        /// The length claimed.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The file's structure or a postcard payload does not decode.
    #[error("corrupt statefile: {what}")]
    Corrupt {
        /// What is wrong, and where.
        what: String,
    },
    /// A checksum does not match: the running checksum closing the
    /// metadata or kernel section, or (`section` [`Section::End`]) the
    /// whole-file one.
    #[error(
        "statefile checksum mismatch ({section}): stored {expected:#018x}, computed {computed:#018x}"
    )]
    ChecksumMismatch {
        /// Which checksum.
        section: Section,
        /// The checksum stored in the file.
        expected: u64,
        /// The checksum of the bytes read.
        computed: u64,
    },
    /// The statefile does not fit this host (see [`Metadata::check_compatible`]).
    #[error("statefile incompatible with this host: {}", join(.0))]
    Incompatible(Vec<Mismatch>),
    /// A [`StatefileReader`] method was called out of order, or after an
    /// earlier error (a bug in the caller).
    #[error("statefile reader misused: {called} section asked for, but {}", match .next {
        Some(s) => format!("the {s} section comes next"),
        None => "the reader is finished or failed".to_string(),
    })]
    OutOfOrder {
        /// The section the call reads.
        called: Section,
        /// The section that comes next (`None`: finished or failed).
        next: Option<Section>,
    },
    /// Reading the file, or writing into the [`MemorySink`], failed.
    #[error("statefile I/O: {0}")]
    Io(#[from] io::Error),
}

fn join(m: &[Mismatch]) -> String {
    m.iter()
        .map(|m| m.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------
// Memory source and sink.

/// Where the writer reads the memory file from.
pub trait MemorySource {
    /// Size of the memory file in bytes; nothing at or past it is saved.
    fn size(&self) -> u64;
    /// The `(offset, len)` ranges that may hold data (`SEEK_DATA` /
    /// `SEEK_HOLE`), as [`crate::mm::memfile::MemoryFile::data_ranges`]
    /// returns them; everything else is taken as zero and not read. Any
    /// order, overlaps and ranges past `size` are fine.
    fn data_ranges(&self) -> Vec<(u64, u64)>;
    /// Fills `buf` with the bytes at `off` (always inside `size`, at most
    /// [`CHUNK`] bytes at a time).
    fn read(&self, off: u64, buf: &mut [u8]);
}

/// A memory held in a slice: one data range covering it.
impl MemorySource for &[u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn data_ranges(&self) -> Vec<(u64, u64)> {
        vec![(0, self.len() as u64)]
    }
    fn read(&self, off: u64, buf: &mut [u8]) {
        let off = off as usize;
        buf.copy_from_slice(&self[off..off + buf.len()]);
    }
}

/// A memory held in a vector: one data range covering it.
impl MemorySource for Vec<u8> {
    fn size(&self) -> u64 {
        self.as_slice().size()
    }
    fn data_ranges(&self) -> Vec<(u64, u64)> {
        self.as_slice().data_ranges()
    }
    fn read(&self, off: u64, buf: &mut [u8]) {
        self.as_slice().read(off, buf)
    }
}

/// Where the reader restores the memory file into.
pub trait MemorySink {
    /// Called once, before any write, with the saved memory file's size
    /// (at most [`MAX_MEMORY_SIZE`]; no allocation should depend on it
    /// beyond a sparse file or mapping). Every write lies inside it. The
    /// default does nothing.
    fn set_size(&mut self, size: u64) -> io::Result<()> {
        let _ = size;
        Ok(())
    }
    /// Stores `data` at `off`. Offsets only grow, and bytes never written
    /// must read as zero. Not yet verified: see the module docs.
    fn write(&mut self, off: u64, data: &[u8]) -> io::Result<()>;
}

/// Whether `b` is all zero bytes.
#[inline]
fn is_zero(b: &[u8]) -> bool {
    let mut blocks = b.chunks_exact(64);
    for blk in &mut blocks {
        let mut acc = 0u64;
        for w in blk.chunks_exact(8) {
            acc |= le64(w);
        }
        if acc != 0 {
            return false;
        }
    }
    blocks.remainder().iter().all(|&x| x == 0)
}

/// Sorted, merged, page-aligned `[start, end)` ranges within `size`.
fn normalize_ranges(ranges: Vec<(u64, u64)>, size: u64) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = ranges
        .into_iter()
        .filter_map(|(off, len)| {
            let start = off.min(size) & !(PAGE_SIZE - 1);
            let end = off.saturating_add(len).min(size);
            let end = end
                .checked_add(PAGE_SIZE - 1)
                .map_or(size, |e| (e & !(PAGE_SIZE - 1)).min(size));
            (start < end).then_some((start, end))
        })
        .collect();
    v.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Writer.

/// The stages of a [`StatefileWriter`]: which section comes next. The
/// types have no values.
pub mod stage {
    /// The kernel section comes next.
    #[derive(Debug)]
    pub enum Kernel {}
    /// The memory section comes next.
    #[derive(Debug)]
    pub enum Memory {}
    /// Only the end section is left.
    #[derive(Debug)]
    pub enum End {}
}

/// What a [`StatefileWriter`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Total size of the statefile, bytes.
    pub bytes: u64,
    /// Size of the memory file saved (its address range), bytes.
    pub memory_size: u64,
    /// Bytes of memory stored (non-zero pages).
    pub memory_bytes: u64,
    /// Pages inside the source's data ranges that were all zero and so not
    /// stored (holes are not counted: they are never read).
    pub zero_pages_skipped: u64,
}

/// A writer that hashes and counts every byte.
struct HashWriter<W: Write> {
    inner: BufWriter<W>,
    hasher: Hasher64,
    bytes: u64,
}

impl<W: Write> HashWriter<W> {
    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.hasher.update(b);
        self.inner.write_all(b)?;
        self.bytes += b.len() as u64;
        Ok(())
    }

    fn section(&mut self, tag: u8, len: u64) -> io::Result<()> {
        let mut h = [0u8; 9];
        h[0] = tag;
        h[1..].copy_from_slice(&len.to_le_bytes());
        self.put(&h)
    }

    /// A section holding `payload` and then the running checksum of every
    /// byte before that checksum.
    fn checked_section(&mut self, tag: u8, payload: &[u8]) -> io::Result<()> {
        self.section(tag, payload.len() as u64 + 8)?;
        self.put(payload)?;
        let sum = self.hasher.finish();
        self.put(&sum.to_le_bytes())
    }
}

fn too_large(what: &str, len: u64, max: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} of {len} bytes exceeds the statefile limit of {max}"),
    )
}

/// Writes a statefile, one section at a time, in the order the stage type
/// enforces: `new` (header and metadata) → [`kernel`](StatefileWriter::kernel)
/// → [`memory`](StatefileWriter::memory) → [`finish`](StatefileWriter::finish).
///
/// ```no_run
/// use rvisor::state::statefile::{Metadata, StatefileWriter};
/// # fn f(file: std::fs::File, kernel_blob: &[u8], memory: &[u8]) -> std::io::Result<()> {
/// let meta = Metadata::current("ptrace", vec![]);
/// let summary = StatefileWriter::new(file, &meta)?
///     .kernel(kernel_blob)?
///     .memory(&memory)?
///     .finish()?;
/// println!("{} bytes, {} of memory", summary.bytes, summary.memory_bytes);
/// # Ok(()) }
/// ```
pub struct StatefileWriter<W: Write, S = stage::Kernel> {
    out: HashWriter<W>,
    summary: Summary,
    _stage: PhantomData<S>,
}

impl<W: Write, S> StatefileWriter<W, S> {
    fn next<T>(self) -> StatefileWriter<W, T> {
        StatefileWriter {
            out: self.out,
            summary: self.summary,
            _stage: PhantomData,
        }
    }
}

impl<W: Write> StatefileWriter<W, stage::Kernel> {
    /// Starts a statefile on `w` (buffered here): writes the magic, the
    /// format version and the metadata section.
    ///
    /// # Errors
    ///
    /// Writing fails, or the metadata encodes to more than
    /// [`MAX_METADATA_LEN`] (`InvalidInput`).
    pub fn new(w: W, meta: &Metadata) -> io::Result<Self> {
        let mut out = HashWriter {
            inner: BufWriter::with_capacity(IO_BUFFER, w),
            hasher: Hasher64::new(),
            bytes: 0,
        };
        out.put(&MAGIC)?;
        out.put(&FORMAT_VERSION.to_le_bytes())?;
        let payload = postcard::to_stdvec(meta).map_err(io::Error::other)?;
        let len = payload.len() as u64;
        if len > MAX_METADATA_LEN {
            return Err(too_large("metadata", len, MAX_METADATA_LEN));
        }
        out.checked_section(TAG_METADATA, &payload)?;
        Ok(StatefileWriter {
            out,
            summary: Summary::default(),
            _stage: PhantomData,
        })
    }

    /// Writes the kernel section: `blob`, the caller's postcard encoding
    /// of the kernel state, stored as is.
    ///
    /// # Errors
    ///
    /// Writing fails, or `blob` is larger than [`MAX_KERNEL_LEN`]
    /// (`InvalidInput`).
    pub fn kernel(mut self, blob: &[u8]) -> io::Result<StatefileWriter<W, stage::Memory>> {
        let len = blob.len() as u64;
        if len > MAX_KERNEL_LEN {
            return Err(too_large("kernel state", len, MAX_KERNEL_LEN));
        }
        self.out.checked_section(TAG_KERNEL, blob)?;
        Ok(self.next())
    }
}

impl<W: Write> StatefileWriter<W, stage::Memory> {
    /// Writes the memory section: the data ranges of `src`, read
    /// [`CHUNK`] bytes at a time, minus every page that is all zero.
    ///
    /// # Errors
    ///
    /// Writing fails, or `src.size()` exceeds [`MAX_MEMORY_SIZE`]
    /// (`InvalidInput`).
    pub fn memory(mut self, src: &dyn MemorySource) -> io::Result<StatefileWriter<W, stage::End>> {
        let size = src.size();
        if size > MAX_MEMORY_SIZE {
            return Err(too_large("memory file", size, MAX_MEMORY_SIZE));
        }
        self.summary.memory_size = size;
        self.out.section(TAG_MEMORY, size)?;
        let ranges = normalize_ranges(src.data_ranges(), size);
        let longest = ranges.iter().map(|(s, e)| e - s).max().unwrap_or(0);
        let mut buf = vec![0u8; longest.min(CHUNK as u64) as usize];
        let page = PAGE_SIZE as usize;
        for (start, end) in ranges {
            let mut off = start;
            while off < end {
                let n = (end - off).min(CHUNK as u64) as usize;
                let chunk = &mut buf[..n];
                src.read(off, chunk);
                // Runs of non-zero pages; a run never crosses a chunk.
                let mut run: Option<usize> = None;
                let mut p = 0;
                while p < n {
                    let q = (p + page).min(n);
                    if is_zero(&chunk[p..q]) {
                        self.summary.zero_pages_skipped += 1;
                        if let Some(s) = run.take() {
                            self.run(off + s as u64, &chunk[s..p])?;
                        }
                    } else if run.is_none() {
                        run = Some(p);
                    }
                    p = q;
                }
                if let Some(s) = run {
                    self.run(off + s as u64, &chunk[s..n])?;
                }
                off += n as u64;
            }
        }
        self.out.put(&[0u8; 16])?;
        Ok(self.next())
    }

    fn run(&mut self, off: u64, data: &[u8]) -> io::Result<()> {
        let mut h = [0u8; 16];
        h[..8].copy_from_slice(&off.to_le_bytes());
        h[8..].copy_from_slice(&(data.len() as u64).to_le_bytes());
        self.out.put(&h)?;
        self.out.put(data)?;
        self.summary.memory_bytes += data.len() as u64;
        Ok(())
    }
}

impl<W: Write> StatefileWriter<W, stage::End> {
    /// Writes the end section with the checksum and flushes.
    ///
    /// # Errors
    ///
    /// Writing or flushing fails.
    pub fn finish(mut self) -> io::Result<Summary> {
        self.out.section(TAG_END, 8)?;
        let sum = self.out.hasher.finish();
        self.out.inner.write_all(&sum.to_le_bytes())?;
        self.out.bytes += 8;
        self.out.inner.flush()?;
        self.summary.bytes = self.out.bytes;
        Ok(self.summary)
    }
}

// ---------------------------------------------------------------------------
// Reader.

/// What a [`StatefileReader`] read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// Total size of the statefile, bytes.
    pub bytes: u64,
    /// Size of the saved memory file, bytes.
    pub memory_size: u64,
    /// Bytes of memory written into the sink.
    pub memory_bytes: u64,
}

/// A reader that hashes and counts every byte.
struct HashReader<R: Read> {
    inner: BufReader<R>,
    hasher: Hasher64,
    bytes: u64,
}

impl<R: Read> HashReader<R> {
    /// Reads until `buf` is full or the input ends; returns the count.
    fn fill(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match self.inner.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn exact(&mut self, buf: &mut [u8], section: Section) -> Result<(), StatefileError> {
        let got = self.fill(buf)?;
        if got < buf.len() {
            return Err(StatefileError::Truncated {
                section,
                expected: buf.len() as u64,
                got: got as u64,
            });
        }
        Ok(())
    }

    fn u64(&mut self, section: Section) -> Result<u64, StatefileError> {
        let mut b = [0u8; 8];
        self.exact(&mut b, section)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a section header, checks its tag; returns its length.
    fn section(&mut self, want: Section) -> Result<u64, StatefileError> {
        let mut h = [0u8; 9];
        let got = self.fill(&mut h)?;
        if got > 0 && Some(h[0]) != want.tag() {
            return Err(StatefileError::BadSection {
                tag: h[0],
                expected: want,
            });
        }
        if got < h.len() {
            return Err(StatefileError::Truncated {
                section: want,
                expected: h.len() as u64,
                got: got as u64,
            });
        }
        Ok(le64(&h[1..]))
    }

    /// Reads `len` payload bytes (already capped), growing the buffer only
    /// as bytes arrive.
    fn payload(&mut self, len: u64, section: Section) -> Result<Vec<u8>, StatefileError> {
        let mut v = Vec::with_capacity(len.min(CHUNK as u64) as usize);
        while (v.len() as u64) < len {
            let want = (len - v.len() as u64).min(CHUNK as u64) as usize;
            let old = v.len();
            v.resize(old + want, 0);
            let got = self.fill(&mut v[old..])?;
            if got < want {
                return Err(StatefileError::Truncated {
                    section,
                    expected: len,
                    got: (old + got) as u64,
                });
            }
        }
        Ok(v)
    }

    /// Reads a section made of a payload and the running checksum of
    /// every byte before that checksum; verifies it; returns the payload.
    fn checked_section(&mut self, section: Section, max: u64) -> Result<Vec<u8>, StatefileError> {
        let len = self.section(section)?;
        if len > max + 8 {
            return Err(StatefileError::TooLarge {
                section,
                len,
                max: max + 8,
            });
        }
        if len < 8 {
            return Err(StatefileError::Corrupt {
                what: format!("{section} section of {len} bytes cannot hold its 8-byte checksum"),
            });
        }
        let payload = self.payload(len - 8, section)?;
        let computed = self.hasher.finish();
        let stored = self.u64(section)?;
        if stored != computed {
            return Err(StatefileError::ChecksumMismatch {
                section,
                expected: stored,
                computed,
            });
        }
        Ok(payload)
    }
}

/// Where a [`StatefileReader`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Kernel,
    Memory,
    End,
    /// Finished, or failed: the stream position is meaningless.
    Done,
}

/// Reads a statefile, strictly in order: [`open`](StatefileReader::open)
/// (header and verified metadata) → [`kernel`](StatefileReader::kernel)
/// (verified blob) → [`memory`](StatefileReader::memory) →
/// [`finish`](StatefileReader::finish) (whole-file checksum). A call out
/// of that order, or after any error, returns
/// [`StatefileError::OutOfOrder`].
///
/// The memory written into the sink is trustworthy only once `finish` has
/// returned `Ok`; see the module docs.
///
/// ```no_run
/// use rvisor::state::statefile::{Metadata, MemorySink, StatefileReader};
/// # fn f(file: std::fs::File, sink: &mut dyn MemorySink) -> Result<(), Box<dyn std::error::Error>> {
/// let (meta, mut r) = StatefileReader::open(file)?;
/// meta.check_compatible(&Metadata::current("ptrace", vec![]))?;
/// let kernel_blob = r.kernel()?; // verified by its section checksum
/// r.memory(sink)?;
/// r.finish()?; // only now is the sink's content valid
/// # let _ = kernel_blob; Ok(()) }
/// ```
pub struct StatefileReader<R: Read> {
    inp: HashReader<R>,
    summary: ReadSummary,
    next: Next,
}

impl<R: Read> StatefileReader<R> {
    /// Reads the header and the metadata from `r` (buffered here), and
    /// verifies the metadata's checksum.
    ///
    /// # Errors
    ///
    /// [`StatefileError::NotAStatefile`], `UnsupportedVersion`,
    /// `Truncated`, `BadSection`, `TooLarge`, `ChecksumMismatch` (section
    /// `Metadata`), `Corrupt` (metadata does not decode), `Io`.
    pub fn open(r: R) -> Result<(Metadata, Self), StatefileError> {
        let mut inp = HashReader {
            inner: BufReader::with_capacity(IO_BUFFER, r),
            hasher: Hasher64::new(),
            bytes: 0,
        };
        let mut magic = [0u8; 8];
        if inp.fill(&mut magic)? < magic.len() || magic != MAGIC {
            return Err(StatefileError::NotAStatefile);
        }
        let mut version = [0u8; 4];
        inp.exact(&mut version, Section::Header)?;
        let version = u32::from_le_bytes(version);
        if version != FORMAT_VERSION {
            return Err(StatefileError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let payload = inp.checked_section(Section::Metadata, MAX_METADATA_LEN)?;
        let meta = match postcard::take_from_bytes::<Metadata>(&payload) {
            Ok((meta, [])) => meta,
            Ok((_, rest)) => {
                return Err(StatefileError::Corrupt {
                    what: format!("metadata: {} bytes left over after decoding", rest.len()),
                });
            }
            Err(e) => {
                return Err(StatefileError::Corrupt {
                    what: format!("metadata does not decode: {e}"),
                });
            }
        };
        Ok((
            meta,
            StatefileReader {
                inp,
                summary: ReadSummary::default(),
                next: Next::Kernel,
            },
        ))
    }

    /// Moves from `want` to `then`, or fails if `want` is not next. The
    /// reader is `Done` meanwhile, so an error leaves it unusable.
    fn step(&mut self, want: Next, called: Section) -> Result<(), StatefileError> {
        if self.next != want {
            return Err(StatefileError::OutOfOrder {
                called,
                next: match self.next {
                    Next::Kernel => Some(Section::Kernel),
                    Next::Memory => Some(Section::Memory),
                    Next::End => Some(Section::End),
                    Next::Done => None,
                },
            });
        }
        self.next = Next::Done;
        Ok(())
    }

    /// Reads the kernel section and verifies its checksum: the bytes are
    /// exactly the blob the writer was given.
    ///
    /// # Errors
    ///
    /// `Truncated`, `BadSection`, `TooLarge` (over [`MAX_KERNEL_LEN`]),
    /// `ChecksumMismatch` (section `Kernel`), `OutOfOrder`, `Io`.
    pub fn kernel(&mut self) -> Result<Vec<u8>, StatefileError> {
        self.step(Next::Kernel, Section::Kernel)?;
        let blob = self.inp.checked_section(Section::Kernel, MAX_KERNEL_LEN)?;
        self.next = Next::Memory;
        Ok(blob)
    }

    /// Reads the memory section, writing each stored run into `sink` in
    /// [`CHUNK`]-sized pieces as it is read (after one
    /// [`MemorySink::set_size`]). Not yet verified: the sink's content is
    /// valid only once [`finish`](StatefileReader::finish) returns `Ok`.
    ///
    /// # Errors
    ///
    /// `Truncated`, `BadSection`, `TooLarge` (size over
    /// [`MAX_MEMORY_SIZE`]), `Corrupt` (a run out of order or out of
    /// bounds), `OutOfOrder`, `Io` (from the file or the sink).
    pub fn memory(&mut self, sink: &mut dyn MemorySink) -> Result<(), StatefileError> {
        self.step(Next::Memory, Section::Memory)?;
        let size = self.inp.section(Section::Memory)?;
        if size > MAX_MEMORY_SIZE {
            return Err(StatefileError::TooLarge {
                section: Section::Memory,
                len: size,
                max: MAX_MEMORY_SIZE,
            });
        }
        self.summary.memory_size = size;
        sink.set_size(size)?;
        let mut buf: Vec<u8> = Vec::new();
        let mut prev_end = 0u64;
        loop {
            let mut h = [0u8; 16];
            self.inp.exact(&mut h, Section::Memory)?;
            let off = le64(&h[..8]);
            let len = le64(&h[8..]);
            if len == 0 {
                if off != 0 {
                    return Err(StatefileError::Corrupt {
                        what: format!("memory terminator run has offset {off:#x}, not 0"),
                    });
                }
                break;
            }
            if off < prev_end {
                return Err(StatefileError::Corrupt {
                    what: format!(
                        "memory run at {off:#x} starts before the previous run's end {prev_end:#x}"
                    ),
                });
            }
            let end = match off.checked_add(len) {
                Some(end) if end <= size => end,
                _ => {
                    return Err(StatefileError::Corrupt {
                        what: format!(
                            "memory run of {len:#x} bytes at {off:#x} ends past the memory size {size:#x}"
                        ),
                    });
                }
            };
            let want = len.min(CHUNK as u64) as usize;
            if buf.len() < want {
                buf.resize(want, 0);
            }
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(CHUNK as u64) as usize;
                let got = self.inp.fill(&mut buf[..n])?;
                if got < n {
                    return Err(StatefileError::Truncated {
                        section: Section::Memory,
                        expected: len,
                        got: done + got as u64,
                    });
                }
                sink.write(off + done, &buf[..n])?;
                done += n as u64;
            }
            self.summary.memory_bytes += len;
            prev_end = end;
        }
        self.next = Next::End;
        Ok(())
    }

    /// Reads the end section and verifies the whole-file checksum; then
    /// checks that nothing follows it. Only after `Ok` here is the content
    /// written into the [`MemorySink`] valid.
    ///
    /// # Errors
    ///
    /// `Truncated`, `BadSection`, `Corrupt` (bad end length, trailing
    /// bytes), `ChecksumMismatch` (section `End`), `OutOfOrder`, `Io`.
    pub fn finish(&mut self) -> Result<ReadSummary, StatefileError> {
        self.step(Next::End, Section::End)?;
        let len = self.inp.section(Section::End)?;
        if len != 8 {
            return Err(StatefileError::Corrupt {
                what: format!("end section is {len} bytes long, not 8"),
            });
        }
        let computed = self.inp.hasher.finish();
        let stored = self.inp.u64(Section::End)?;
        if stored != computed {
            return Err(StatefileError::ChecksumMismatch {
                section: Section::End,
                expected: stored,
                computed,
            });
        }
        let mut extra = [0u8; 1];
        if self.inp.fill(&mut extra)? != 0 {
            return Err(StatefileError::Corrupt {
                what: format!(
                    "data after the end section (at byte {})",
                    self.inp.bytes - 1
                ),
            });
        }
        self.summary.bytes = self.inp.bytes;
        Ok(self.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xxh64_reference_vectors() {
        assert_eq!(hash64(b""), 0xEF46_DB37_51D8_E999);
        assert_eq!(hash64(b"a"), 0xD24E_C4F1_A98C_6E5B);
        assert_eq!(hash64(b"abc"), 0x44BC_2CF5_AD77_0999);
        assert_eq!(
            hash64(b"Nobody inspects the spammish repetition"),
            0xFBCE_A83C_8A37_8BF1
        );
    }

    #[test]
    fn streaming_matches_one_shot() {
        let data: Vec<u8> = (0..1000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in [0, 1, 7, 31, 32, 33, 63, 64, 100, 999, 1000] {
            let want = hash64(&data[..len]);
            for split in [1, 3, 8, 17, 32, 33] {
                let mut h = Hasher64::new();
                for piece in data[..len].chunks(split) {
                    h.update(piece);
                }
                assert_eq!(h.finish(), want, "len {len} split {split}");
            }
        }
    }

    #[test]
    fn zero_detection() {
        let mut page = vec![0u8; 4096];
        assert!(is_zero(&page));
        for i in [0, 63, 64, 4095] {
            page[i] = 1;
            assert!(!is_zero(&page), "byte {i}");
            page[i] = 0;
        }
        assert!(is_zero(&page[..100]));
        assert!(!is_zero(&[0, 0, 0, 9]));
    }

    #[test]
    fn ranges_are_page_aligned_merged_and_clamped() {
        let size = 10 * PAGE_SIZE + 100;
        let r = normalize_ranges(
            vec![
                (3 * PAGE_SIZE + 5, 10),
                (0, 1),
                (PAGE_SIZE, PAGE_SIZE),
                (9 * PAGE_SIZE, u64::MAX),
                (u64::MAX - 3, 10),
                (4 * PAGE_SIZE, 0),
            ],
            size,
        );
        assert_eq!(
            r,
            vec![
                (0, 2 * PAGE_SIZE),
                (3 * PAGE_SIZE, 4 * PAGE_SIZE),
                (9 * PAGE_SIZE, size)
            ]
        );
    }

    fn cpu() -> CpuFeatures {
        CpuFeatures {
            xsave_size: 832,
            xfeatures: 0b111,
            cpuid1_ecx: 1 << 28,
            cpuid1_edx: 1 << 26,
            cpuid7_ebx: 1 << 5,
            cpuid7_ecx: 0,
            cpuid7_edx: 0,
        }
    }

    #[test]
    fn superset_host_is_compatible_and_missing_features_are_named() {
        let saved = cpu();
        let mut bigger = saved;
        bigger.cpuid7_ebx |= 1 << 16;
        bigger.xfeatures |= 0xe0;
        bigger.xsave_size = 2696;
        assert!(saved.missing_on(&bigger).is_empty());
        let m = bigger.missing_on(&saved);
        let text: Vec<String> = m.iter().map(|m| m.to_string()).collect();
        assert!(
            text.iter()
                .any(|t| t.contains("avx512f") && t.contains("EBX[16]")),
            "{text:?}"
        );
        assert!(text.iter().any(|t| t.contains("avx512_opmask")), "{text:?}");
        assert!(
            text.iter().any(|t| t.contains("2696") && t.contains("832")),
            "{text:?}"
        );
        // Informational bits never make a host incompatible.
        let mut vm = saved;
        vm.cpuid1_ecx |= 1 << 31;
        vm.cpuid7_edx |= 1 << 31;
        assert!(vm.missing_on(&saved).is_empty());
    }

    #[test]
    fn spec_differences_name_the_path() {
        assert_eq!(
            spec_difference(r#"{"a":1,"b":[1,2]}"#, r#"{ "b":[1,2], "a":1 }"#),
            None
        );
        let d = spec_difference(
            r#"{"process":{"args":["sh","-c"]}}"#,
            r#"{"process":{"args":["bash","-c"]}}"#,
        )
        .unwrap();
        assert_eq!(d, r#"/process/args/0: saved "sh", now "bash""#);
        let d = spec_difference(r#"{"x":[1]}"#, r#"{"x":[1,2]}"#).unwrap();
        assert_eq!(d, "/x: saved 1 elements, now 2");
        let d = spec_difference(r#"{"x":1}"#, r#"{}"#).unwrap();
        assert_eq!(d, "/x: saved 1, now absent");
    }

    #[test]
    fn current_host_is_compatible_with_itself() {
        let m = Metadata::current("ptrace", vec![("c".into(), "{}".into())]);
        m.check_compatible(&m).unwrap();
        #[cfg(target_arch = "x86_64")]
        {
            // Every x86_64 CPU has SSE2 and FXSR.
            assert_ne!(m.cpu.cpuid1_edx & (1 << 26), 0);
            assert_ne!(m.cpu.cpuid1_edx & (1 << 24), 0);
        }
    }
}
