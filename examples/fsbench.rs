//! File-system benchmark: native vs rvisor (ptrace platform), side by side
//! in one run.
//!
//! ```text
//! cargo run --release --example fsbench      # or: make fsbench
//! ```
//!
//! What it measures (issue 3), each with `tests/guests/bench.c` run
//! natively and as `target/release/rvisor do -- GUEST MODE ...`:
//!
//! 1. sequential `read` of a 256 MiB host file in 1 MiB and 4 KiB blocks;
//! 2. sequential `write` of a 256 MiB file in 1 MiB and 4 KiB blocks (the
//!    guest creates it, then overwrites it pass after pass);
//! 3. sequential `read` of a 256 MiB file the guest wrote itself, in 1 MiB
//!    and 4 KiB blocks;
//! 4. `stat` of a small file;
//! 5. `open` + `read` + `close` of that small file;
//! 6. listing a 10,000-entry directory with `getdents64` (32 KiB buffer),
//!    open and close included.
//!
//! Where the bytes live differs between the sides, and the table says so:
//! natively everything is the host file system (through the page cache,
//! which the warm-up pass fills). Under `rvisor do` the root is an overlay:
//! reads of existing host files go through host fds (rows 1, 4–6), but
//! writes go to the in-memory upper layer (a tmpfs whose files are
//! memfds), so rows 2–3 measure rvisor's tmpfs against the host's page
//! cache of a disk file. For those rows a third column runs the guest
//! natively on a memfd (`memfd:NAME` as the path), the sandbox's medium, so
//! that rvisor's own overhead can be told from the medium's (shmem is
//! slower than a disk file's page cache here). After the sandboxed write
//! rows the benchmark checks that the host file was not created (the
//! overlay kept it).
//!
//! The data lives in a scratch directory, `TARGET/fsbench/`: the 256 MiB
//! file (every 4 KiB page starts with its offset as a little-endian u64,
//! the rest is `0xa5`, which the guest checks), the 10,000-entry
//! directory and the small file; they are reused by later runs when they
//! look right. The guest is compiled with `cc -O2 -static` into
//! `target/guests/bench-static` (shared with `examples/bench.rs`), and
//! rvisor is built with `cargo build --release --bin rvisor`.
//!
//! Every measurement is repeated (`RVISOR_FSBENCH_RUNS`, default 3), the
//! sides alternating, and the best run of each side is reported: on a
//! small shared machine other work (a competing process on the CPU a
//! sandboxed thread and its kernel thread share) only ever adds time. The
//! JSON (`target/fsbench.json`) has every run and the medians too.
//!
//! Environment overrides:
//!
//! | variable                        | default   | meaning                           |
//! |---------------------------------|-----------|-----------------------------------|
//! | `RVISOR_FSBENCH_SIZE_MIB`       | 256       | size of the big file              |
//! | `RVISOR_FSBENCH_PASSES_1M`      | 4         | timed passes, 1 MiB blocks        |
//! | `RVISOR_FSBENCH_PASSES_4K`      | 2         | timed passes, 4 KiB blocks        |
//! | `RVISOR_FSBENCH_STAT_N`         | 20000     | stat calls                        |
//! | `RVISOR_FSBENCH_OPENREAD_N`     | 10000     | open+read+close triples           |
//! | `RVISOR_FSBENCH_GETDENTS_N`     | 20        | directory listings                |
//! | `RVISOR_FSBENCH_DIR_ENTRIES`    | 10000     | files in the directory            |
//! | `RVISOR_FSBENCH_RUNS`           | 3         | runs per side (best reported)     |
//! | `RVISOR_FSBENCH_TIMEOUT`        | 120       | seconds before a run is killed    |
//! | `RVISOR_FSBENCH_ONLY`           | —         | comma-separated row ids to run    |
//! | `RVISOR_BIN`                    | —         | use this rvisor, do not build     |
//! | `RVISOR_BENCH_NO_BUILD`         | —         | `1`: do not run `cargo build`     |

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

#[path = "benchkit/mod.rs"]
mod benchkit;
use benchkit::{cpu_model, describe_status, kernel_release, reader, tail};

/// The target for 1 MiB reads of a host file: rvisor / native.
const READ_1M_RATIO_TARGET: f64 = 1.2;
const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

fn main() {
    let settings = Settings::from_env();
    let paths = Paths::discover();
    if cfg!(debug_assertions) {
        eprintln!(
            "fsbench: warning: this is a debug build; use `cargo run --release --example fsbench`"
        );
    }
    print_header(&settings, &paths);

    let rvisor = prepare_rvisor(&paths);
    let guest = compile_guest(&paths);
    let scratch = Scratch::prepare(&paths, &settings);

    let mut rows = Vec::new();
    for case in Case::all(&settings) {
        if !settings.selected(case.id) {
            continue;
        }
        eprintln!("fsbench: {}...", case.label);
        rows.push(run_case(&case, &settings, &guest, &rvisor, &scratch));
    }

    println!();
    print_table(&rows);
    println!();
    let read_1m = rows
        .iter()
        .find(|r| r.id == "read_1m")
        .and_then(|r| r.ratio());
    match read_1m {
        Some(x) => println!(
            "Target: 1 MiB reads of a host file within {READ_1M_RATIO_TARGET}x of native: \
             {x:.2}x ({})",
            if x <= READ_1M_RATIO_TARGET {
                "met"
            } else {
                "MISSED"
            }
        ),
        None => println!("Target: 1 MiB reads within {READ_1M_RATIO_TARGET}x of native: n/a"),
    }

    let json = to_json(&settings, &paths, &rows, read_1m);
    let out = paths.target.join("fsbench.json");
    match fs::write(&out, json.render() + "\n") {
        Ok(()) => println!("\nresults written to {}", out.display()),
        Err(e) => eprintln!("fsbench: cannot write {}: {e}", out.display()),
    }
}

// ---------------------------------------------------------------------------
// Settings and paths
// ---------------------------------------------------------------------------

struct Settings {
    size: u64,
    passes_1m: u64,
    passes_4k: u64,
    stat_n: u64,
    openread_n: u64,
    getdents_n: u64,
    dir_entries: u64,
    runs: usize,
    timeout: Duration,
    only: Option<Vec<String>>,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            size: env_num("RVISOR_FSBENCH_SIZE_MIB", 256u64).max(1) * MIB,
            passes_1m: env_num("RVISOR_FSBENCH_PASSES_1M", 4).max(1),
            passes_4k: env_num("RVISOR_FSBENCH_PASSES_4K", 2).max(1),
            stat_n: env_num("RVISOR_FSBENCH_STAT_N", 20_000).max(1),
            openread_n: env_num("RVISOR_FSBENCH_OPENREAD_N", 10_000).max(1),
            getdents_n: env_num("RVISOR_FSBENCH_GETDENTS_N", 20).max(1),
            dir_entries: env_num("RVISOR_FSBENCH_DIR_ENTRIES", 10_000).max(1),
            runs: env_num("RVISOR_FSBENCH_RUNS", 3usize).max(1),
            timeout: Duration::from_secs(env_num("RVISOR_FSBENCH_TIMEOUT", 120).max(1)),
            only: std::env::var("RVISOR_FSBENCH_ONLY")
                .ok()
                .map(|s| s.split(',').map(|w| w.trim().to_string()).collect()),
        }
    }

    fn selected(&self, id: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|w| w == id))
    }
}

/// Reads a number from the environment; a bad value is reported and ignored.
fn env_num<T: std::str::FromStr + Copy + std::fmt::Display>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Err(_) => default,
        Ok(s) => s.trim().parse().unwrap_or_else(|_| {
            eprintln!("fsbench: ignoring {name}={s:?} (not a number); using {default}");
            default
        }),
    }
}

struct Paths {
    /// The repository root.
    root: PathBuf,
    /// Cargo's target directory.
    target: PathBuf,
}

impl Paths {
    /// The target directory is found from this executable
    /// (`TARGET/PROFILE/examples/fsbench`), so `CARGO_TARGET_DIR` is
    /// honoured; failing that, `target/` in the repository.
    fn discover() -> Paths {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let from_exe = std::env::current_exe().ok().and_then(|exe| {
            let examples = exe.parent()?;
            (examples.file_name()? == "examples").then_some(())?;
            Some(examples.parent()?.parent()?.to_path_buf())
        });
        let target = from_exe.unwrap_or_else(|| root.join("target"));
        Paths { root, target }
    }
}

fn print_header(s: &Settings, paths: &Paths) {
    let cpus = thread::available_parallelism().map_or(0, |n| n.get());
    println!("rvisor file-system benchmark — native vs rvisor (ptrace platform)");
    println!(
        "host: {}, {} CPU(s), kernel {}",
        cpu_model().unwrap_or_else(|| "unknown CPU".into()),
        cpus,
        kernel_release().unwrap_or_else(|| "?".into())
    );
    println!(
        "file {} MiB, passes {} (1 MiB) / {} (4 KiB), stat {}, open+read+close {}, \
         getdents {} x {} entries; best of {} run(s) per side; timeout {} s",
        s.size / MIB,
        s.passes_1m,
        s.passes_4k,
        s.stat_n,
        s.openread_n,
        s.getdents_n,
        s.dir_entries,
        s.runs,
        s.timeout.as_secs()
    );
    println!("scratch dir: {}", paths.target.join("fsbench").display());
}

// ---------------------------------------------------------------------------
// Preparation: rvisor, the guest, the scratch directory
// ---------------------------------------------------------------------------

/// The rvisor binary to run, or why there is none.
type Rvisor = Result<PathBuf, String>;

/// Builds `target/release/rvisor` (unless `RVISOR_BIN` names one, or
/// `RVISOR_BENCH_NO_BUILD=1` says to use the existing one).
fn prepare_rvisor(paths: &Paths) -> Rvisor {
    if let Some(bin) = std::env::var_os("RVISOR_BIN") {
        let bin = PathBuf::from(bin);
        eprintln!("fsbench: using RVISOR_BIN={}", bin.display());
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("RVISOR_BIN={} does not exist", bin.display()))
        };
    }
    let bin = paths.target.join("release").join("rvisor");
    if std::env::var_os("RVISOR_BENCH_NO_BUILD").is_some_and(|v| v == "1") {
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!(
                "{} missing; run `cargo build --release --bin rvisor`",
                bin.display()
            ))
        };
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("fsbench: building rvisor: cargo build --release --bin rvisor");
    let status = Command::new(&cargo)
        .args(["build", "--release", "--bin", "rvisor"])
        .current_dir(&paths.root)
        .env("CARGO_TARGET_DIR", &paths.target)
        .stdin(Stdio::null())
        .status();
    match status {
        Ok(st) if st.success() && bin.is_file() => Ok(bin),
        Ok(st) if st.success() => Err(format!(
            "cargo build succeeded but {} is missing",
            bin.display()
        )),
        Ok(st) => Err(format!(
            "`cargo build --release --bin rvisor` failed ({})",
            describe_status(st)
        )),
        Err(e) => Err(format!(
            "cannot run cargo ({}): {e}",
            Path::new(&cargo).display()
        )),
    }
}

/// Compiles `tests/guests/bench.c` with `cc -O2 -static` into
/// `target/guests/bench-static`, unless that is newer than the source.
fn compile_guest(paths: &Paths) -> Result<PathBuf, String> {
    let src = paths.root.join("tests/guests/bench.c");
    let dir = paths.target.join("guests");
    let out = dir.join("bench-static");
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    match (mtime(&out), mtime(&src)) {
        (_, None) => return Err(format!("guest source {} not found", src.display())),
        (Some(o), Some(s)) if o >= s => return Ok(out),
        _ => {}
    }
    fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    // Compile to a private name and rename, so a concurrent reader never
    // sees a half-written binary.
    let tmp = dir.join(format!(".bench-static.{}.tmp", std::process::id()));
    eprintln!("fsbench: compiling {} -> {}", src.display(), out.display());
    let res = Command::new("cc")
        .args(["-O2", "-static", "-Wall", "-D_GNU_SOURCE", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .map_err(|e| format!("cannot run cc: {e} (install gcc and libc6-dev: scripts/deps.sh)"))?;
    if !res.status.success() {
        let _ = fs::remove_file(&tmp);
        return Err(format!(
            "cc failed ({}): {}",
            describe_status(res.status),
            tail(&res.stderr, 5)
        ));
    }
    fs::rename(&tmp, &out).map_err(|e| format!("rename {}: {e}", tmp.display()))?;
    Ok(out)
}

/// The files the benchmark works on, under `TARGET/fsbench/`.
struct Scratch {
    /// The big file the read rows read: `data-<MiB>M`.
    big: Result<PathBuf, String>,
    /// Where the write rows write (must not exist before a sandboxed run).
    written: PathBuf,
    /// A small file (stat, open+read+close).
    small: Result<PathBuf, String>,
    /// The directory of `dir_entries` empty files.
    dir: Result<PathBuf, String>,
}

impl Scratch {
    fn prepare(paths: &Paths, s: &Settings) -> Scratch {
        let root = paths.target.join("fsbench");
        if let Err(e) = fs::create_dir_all(&root) {
            let e = format!("create {}: {e}", root.display());
            return Scratch {
                big: Err(e.clone()),
                written: root.join("written"),
                small: Err(e.clone()),
                dir: Err(e),
            };
        }
        let big = root.join(format!("data-{}M", s.size / MIB));
        let small = root.join("small.txt");
        let dir = root.join(format!("dir-{}", s.dir_entries));
        let written = root.join("written");
        // A leftover from an interrupted run would be copied up.
        let _ = fs::remove_file(&written);
        Scratch {
            big: make_big_file(&big, s.size).map(|()| big),
            written,
            small: fs::write(&small, "a small file for the open+read+close benchmark\n")
                .map(|()| small.clone())
                .map_err(|e| format!("create {}: {e}", small.display())),
            dir: make_dir(&dir, s.dir_entries).map(|()| dir),
        }
    }
}

/// Creates `path` with `size` bytes in the guest's format (each 4 KiB page:
/// its offset as a little-endian u64, then `0xa5`), unless it exists with
/// that size and its first and last pages look right.
fn make_big_file(path: &Path, size: u64) -> Result<(), String> {
    let page_ok = |f: &mut fs::File, off: u64| -> bool {
        use std::io::{Seek, SeekFrom};
        let mut buf = [0u8; PAGE as usize];
        f.seek(SeekFrom::Start(off)).is_ok()
            && f.read_exact(&mut buf).is_ok()
            && buf[..8] == off.to_le_bytes()
            && buf[8..].iter().all(|&b| b == 0xa5)
    };
    if let Ok(mut f) = fs::File::open(path)
        && f.metadata().is_ok_and(|m| m.len() == size)
        && page_ok(&mut f, 0)
        && page_ok(&mut f, size - PAGE)
    {
        return Ok(());
    }
    eprintln!("fsbench: creating {} ({} MiB)", path.display(), size / MIB);
    let err = |e: io::Error| format!("create {}: {e}", path.display());
    let tmp = path.with_extension("tmp");
    let mut w = BufWriter::with_capacity(MIB as usize, fs::File::create(&tmp).map_err(err)?);
    let mut page = [0xa5u8; PAGE as usize];
    for off in (0..size).step_by(PAGE as usize) {
        page[..8].copy_from_slice(&off.to_le_bytes());
        w.write_all(&page).map_err(err)?;
    }
    w.into_inner()
        .map_err(|e| err(e.into_error()))?
        .sync_all()
        .map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

/// Creates `dir` holding exactly `n` empty files, unless it already does.
fn make_dir(dir: &Path, n: u64) -> Result<(), String> {
    let err = |e: io::Error| format!("{}: {e}", dir.display());
    if fs::read_dir(dir).is_ok_and(|d| d.count() as u64 == n) {
        return Ok(());
    }
    eprintln!("fsbench: creating {} ({n} files)", dir.display());
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).map_err(err)?;
    for i in 0..n {
        fs::File::create(dir.join(format!("file-{i:06}"))).map_err(err)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Running processes
// ---------------------------------------------------------------------------

/// The result of one run of a command.
struct RunOutcome {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    timed_out: bool,
}

impl RunOutcome {
    fn ok(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    fn failure(&self) -> Failure {
        let status = if self.timed_out {
            "timed out (killed)".to_string()
        } else {
            describe_status(self.status)
        };
        Failure {
            status,
            detail: tail(&self.stderr, 6),
        }
    }
}

/// Runs `cmd` with stdin from /dev/null and stdout/stderr captured, in its
/// own process group, killing the group after `timeout`.
///
/// The exit is observed with `waitid(WNOWAIT)` before the child is reaped,
/// so the watchdog can never signal a recycled pid, and any process the
/// command left behind in its group is killed too, so it cannot hold the
/// output pipes open.
fn run(cmd: &mut Command, timeout: Duration) -> io::Result<RunOutcome> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;
    let stdout = reader(child.stdout.take());
    let stderr = reader(child.stderr.take());

    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        let timed_out = done_rx.recv_timeout(timeout) == Err(mpsc::RecvTimeoutError::Timeout);
        if timed_out {
            // SAFETY: plain kill(2); the group leader is not reaped yet.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        timed_out
    });

    // Wait for the exit without reaping.
    loop {
        // SAFETY: waitid writes into a zeroed siginfo_t we own.
        let r = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            let _ = done_tx.send(());
            let _ = watchdog.join();
            // SAFETY: kill(2) on our own, not yet reaped, process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
            return Err(err);
        }
    }
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    // SAFETY: kill(2) on our own, not yet reaped, process group.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    let status = child.wait()?;

    let grace = Duration::from_secs(2);
    let stdout = stdout.recv_timeout(grace).unwrap_or_default();
    let mut stderr = stderr.recv_timeout(grace).unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(format!("\n[killed after {} s]", timeout.as_secs()).as_bytes());
    }
    Ok(RunOutcome {
        status,
        stdout,
        stderr,
        timed_out,
    })
}

// ---------------------------------------------------------------------------
// The cases
// ---------------------------------------------------------------------------

/// Which file a case works on.
#[derive(Clone, Copy)]
enum Target {
    Big,
    Written,
    Small,
    Dir,
}

/// One row: a guest mode with its arguments.
struct Case {
    id: &'static str,
    label: String,
    mode: &'static str,
    iterations: u64,
    target: Target,
    /// Extra guest arguments after the path (block size, size, entries).
    extra: Vec<String>,
    /// What the sandboxed side measures.
    sandbox_side: &'static str,
    /// Whether the sandboxed run must leave no file on the host.
    writes: bool,
}

impl Case {
    fn all(s: &Settings) -> Vec<Case> {
        let size = s.size.to_string();
        let seq = |id, what: &str, mode, block: u64, passes, target, side, writes| Case {
            id,
            label: format!(
                "{what} {} (x{passes} passes)",
                if block == MIB { "1 MiB" } else { "4 KiB" }
            ),
            mode,
            iterations: passes,
            target,
            extra: vec![block.to_string(), size.clone()],
            sandbox_side: side,
            writes,
        };
        vec![
            seq(
                "read_1m",
                "read",
                "read",
                MIB,
                s.passes_1m,
                Target::Big,
                "host file, host fd",
                false,
            ),
            seq(
                "read_4k",
                "read",
                "read",
                PAGE,
                s.passes_4k,
                Target::Big,
                "host file, host fd",
                false,
            ),
            seq(
                "write_1m",
                "write",
                "write",
                MIB,
                s.passes_1m,
                Target::Written,
                "overlay upper (memfd)",
                true,
            ),
            seq(
                "write_4k",
                "write",
                "write",
                PAGE,
                s.passes_4k,
                Target::Written,
                "overlay upper (memfd)",
                true,
            ),
            seq(
                "readback_1m",
                "read own file",
                "readback",
                MIB,
                s.passes_1m,
                Target::Written,
                "overlay upper (memfd)",
                true,
            ),
            seq(
                "readback_4k",
                "read own file",
                "readback",
                PAGE,
                s.passes_4k,
                Target::Written,
                "overlay upper (memfd)",
                true,
            ),
            Case {
                id: "stat",
                label: format!("stat (x{})", s.stat_n),
                mode: "stat",
                iterations: s.stat_n,
                target: Target::Small,
                extra: vec![],
                sandbox_side: "host file",
                writes: false,
            },
            Case {
                id: "openread",
                label: format!("open+read+close (x{})", s.openread_n),
                mode: "openread",
                iterations: s.openread_n,
                target: Target::Small,
                extra: vec![],
                sandbox_side: "host file, host fd",
                writes: false,
            },
            Case {
                id: "getdents",
                label: format!("getdents64 {} entries (x{})", s.dir_entries, s.getdents_n),
                mode: "getdents",
                iterations: s.getdents_n,
                target: Target::Dir,
                // The guest checks the count, `.` and `..` included.
                extra: vec![(s.dir_entries + 2).to_string()],
                sandbox_side: "host dir through the overlay",
                writes: false,
            },
        ]
    }

    fn unit(&self) -> &'static str {
        match self.mode {
            "read" | "readback" | "write" => "µs/block",
            "getdents" => "µs/list",
            "openread" => "ns/triple",
            _ => "ns/call",
        }
    }

    /// From the guest's ns/op to the row's unit.
    fn divisor(&self) -> f64 {
        if self.unit().starts_with("µs") {
            1000.0
        } else {
            1.0
        }
    }
}

/// Why one side of a row has no number.
#[derive(Clone)]
struct Failure {
    status: String,
    detail: String,
}

impl Failure {
    fn new(status: impl Into<String>, detail: impl Into<String>) -> Failure {
        Failure {
            status: status.into(),
            detail: detail.into(),
        }
    }
}

/// One side of a row: every run's value (in the row's unit) and its
/// throughput in MiB/s where the guest reports one.
struct Side {
    values: Vec<f64>,
    mib_per_s: Vec<f64>,
}

impl Side {
    /// The least disturbed run.
    fn best(&self) -> f64 {
        self.values.iter().copied().fold(f64::INFINITY, f64::min)
    }

    fn best_mib_per_s(&self) -> Option<f64> {
        self.mib_per_s.iter().copied().reduce(f64::max)
    }

    fn median(&self) -> f64 {
        median(&self.values)
    }
}

type Measurement = Result<Side, Failure>;

struct Row {
    id: &'static str,
    label: String,
    unit: &'static str,
    sandbox_side: &'static str,
    native: Measurement,
    rvisor: Measurement,
    /// For the rows of files the sandbox writes: the same natively on a
    /// memfd, the medium of rvisor's overlay upper layer.
    native_memfd: Option<Measurement>,
    /// For write rows: whether the host was left without the file.
    host_untouched: Option<bool>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        ratio(&self.native, &self.rvisor)
    }

    fn ratio_vs_memfd(&self) -> Option<f64> {
        ratio(self.native_memfd.as_ref()?, &self.rvisor)
    }
}

/// `of / to`, of the best runs.
fn ratio(to: &Measurement, of: &Measurement) -> Option<f64> {
    match (to, of) {
        (Ok(n), Ok(r)) if n.best() > 0.0 => Some(r.best() / n.best()),
        _ => None,
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.is_empty() {
        f64::NAN
    } else if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Runs one case natively and under rvisor, `runs` times each,
/// alternating sides so that background noise hits both alike.
fn run_case(
    case: &Case,
    s: &Settings,
    guest: &Result<PathBuf, String>,
    rvisor: &Rvisor,
    scratch: &Scratch,
) -> Row {
    let mut row = Row {
        id: case.id,
        label: case.label.clone(),
        unit: case.unit(),
        sandbox_side: case.sandbox_side,
        native: Err(Failure::new("not run", "")),
        rvisor: Err(Failure::new("not run", "")),
        native_memfd: None,
        host_untouched: None,
    };
    let fail = |row: &mut Row, f: Failure| {
        row.native = Err(f.clone());
        row.rvisor = Err(f);
    };
    let guest = match guest {
        Ok(g) => g,
        Err(e) => {
            fail(&mut row, Failure::new("guest not built", e.clone()));
            return row;
        }
    };
    let path = match case.target {
        Target::Big => scratch.big.clone(),
        Target::Written => Ok(scratch.written.clone()),
        Target::Small => scratch.small.clone(),
        Target::Dir => scratch.dir.clone(),
    };
    let path = match path {
        Ok(p) => p,
        Err(e) => {
            fail(&mut row, Failure::new("no scratch file", e));
            return row;
        }
    };
    let mut args: Vec<OsString> = vec![case.mode.into(), case.iterations.to_string().into()];
    args.push(path.clone().into_os_string());
    args.extend(case.extra.iter().map(OsString::from));

    let one = |cmd: &mut Command| -> Result<(f64, Option<f64>), Failure> {
        let out = run(cmd, s.timeout).map_err(|e| Failure::new("cannot spawn", e.to_string()))?;
        if !out.ok() {
            return Err(out.failure());
        }
        let ns = field(&out.stdout, "ns_per_op=").ok_or_else(|| {
            Failure::new("no result", format!("stdout: {}", tail(&out.stdout, 3)))
        })?;
        Ok((ns / case.divisor(), field(&out.stdout, "MiB_per_s=")))
    };
    let mut native = Ok(Side {
        values: vec![],
        mib_per_s: vec![],
    });
    let mut memfd_args = args.clone();
    memfd_args[2] = "memfd:fsbench".into();
    let mut native_memfd = Ok(Side {
        values: vec![],
        mib_per_s: vec![],
    });
    let mut sandboxed = match rvisor {
        Ok(_) => Ok(Side {
            values: vec![],
            mib_per_s: vec![],
        }),
        Err(e) => Err(Failure::new("rvisor not built", e.clone())),
    };
    let mut untouched = true;
    let record = |side: &mut Measurement, r: Result<(f64, Option<f64>), Failure>| {
        if let Ok(acc) = side {
            match r {
                Ok((v, mibs)) => {
                    acc.values.push(v);
                    acc.mib_per_s.extend(mibs);
                }
                Err(f) => *side = Err(f),
            }
        }
    };
    for _ in 0..s.runs {
        if native.is_ok() {
            let r = one(Command::new(guest).args(&args));
            if case.writes {
                let _ = fs::remove_file(&path);
            }
            record(&mut native, r);
        }
        if case.writes && native_memfd.is_ok() {
            let r = one(Command::new(guest).args(&memfd_args));
            record(&mut native_memfd, r);
        }
        if let (Ok(bin), true) = (rvisor, sandboxed.is_ok()) {
            let r = one(Command::new(bin).args(["do", "--"]).arg(guest).args(&args));
            if case.writes && path.exists() {
                untouched = false;
                let _ = fs::remove_file(&path);
            }
            record(&mut sandboxed, r);
        }
    }
    row.native = native;
    row.rvisor = sandboxed;
    if case.writes {
        row.native_memfd = Some(native_memfd);
    }
    if case.writes && row.rvisor.is_ok() {
        row.host_untouched = Some(untouched);
    }
    row
}

/// Finds `NAME=X` in the guest's output.
fn field(stdout: &[u8], name: &str) -> Option<f64> {
    let text = String::from_utf8_lossy(stdout);
    let value = text.split_whitespace().find_map(|w| w.strip_prefix(name))?;
    value.parse().ok().filter(|v: &f64| v.is_finite())
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

fn print_table(rows: &[Row]) {
    let cell = |m: &Measurement| match m {
        Ok(side) => format_value(side.best()),
        Err(f) => format!("FAILED: {}", f.status),
    };
    let rate = |m: &Measurement| match m {
        Ok(side) => side
            .best_mib_per_s()
            .map_or_else(|| "-".into(), |v| format!("{v:.0}")),
        _ => "-".into(),
    };
    let times = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |x| format!("{x:.2}x"));
    println!(
        "{:<34} {:>9} {:>9} {:>9} {:>7} {:>9} {:>7}  {:>11}  rvisor side",
        "benchmark", "unit", "native", "rvisor", "ratio", "memfd", "vs memfd", "MiB/s n/rv"
    );
    println!("{}", "-".repeat(132));
    for r in rows {
        let mut side = r.sandbox_side.to_string();
        if r.host_untouched == Some(false) {
            side.push_str("; HOST FILE CREATED");
        }
        println!(
            "{:<34} {:>9} {:>9} {:>9} {:>7} {:>9} {:>7}  {:>11}  {}",
            r.label,
            r.unit,
            cell(&r.native),
            cell(&r.rvisor),
            times(r.ratio()),
            r.native_memfd
                .as_ref()
                .map_or_else(|| "-".to_string(), cell),
            times(r.ratio_vs_memfd()),
            format!("{}/{}", rate(&r.native), rate(&r.rvisor)),
            side
        );
        let memfd = r.native_memfd.as_ref();
        for (name, m) in [
            ("native", Some(&r.native)),
            ("rvisor", Some(&r.rvisor)),
            ("memfd", memfd),
        ] {
            if let Some(Err(f)) = m {
                for line in f.detail.lines() {
                    println!("    {name} | {line}");
                }
            }
        }
    }
    println!(
        "best of the runs; ratio = rvisor / native; natively every row is the host file system \
         (page cache). memfd = the same natively on a memfd, the medium of the files a \
         sandbox writes (the overlay's upper layer); vs memfd = rvisor / memfd. \
         rvisor side: where the sandbox's bytes live."
    );
}

fn format_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

// ---------------------------------------------------------------------------
// JSON (tiny writer; the crate has no JSON dependency for examples)
// ---------------------------------------------------------------------------

enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(&'static str, Json)>),
}

impl Json {
    fn render(&self) -> String {
        let mut s = String::new();
        self.write(&mut s, 0);
        s
    }

    fn write(&self, out: &mut String, indent: usize) {
        let pad = |out: &mut String, n: usize| out.push_str(&"  ".repeat(n));
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(v) if v.is_finite() => {
                let _ = write!(out, "{v}");
            }
            Json::Num(_) => out.push_str("null"),
            Json::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        c if (c as u32) < 0x20 => {
                            let _ = write!(out, "\\u{:04x}", c as u32);
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    pad(out, indent + 1);
                    item.write(out, indent + 1);
                }
                if !items.is_empty() {
                    out.push('\n');
                    pad(out, indent);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    out.push_str(if i == 0 { "\n" } else { ",\n" });
                    pad(out, indent + 1);
                    Json::Str((*k).to_string()).write(out, indent + 1);
                    out.push_str(": ");
                    v.write(out, indent + 1);
                }
                if !fields.is_empty() {
                    out.push('\n');
                    pad(out, indent);
                }
                out.push('}');
            }
        }
    }
}

fn opt_num(v: Option<f64>) -> Json {
    v.map_or(Json::Null, Json::Num)
}

fn nums(v: &[f64]) -> Json {
    Json::Arr(v.iter().map(|&x| Json::Num(x)).collect())
}

/// (best, median, runs, MiB/s runs, error) of one side.
fn side_json(m: &Measurement) -> [Json; 5] {
    match m {
        Ok(s) => [
            Json::Num(s.best()),
            Json::Num(s.median()),
            nums(&s.values),
            nums(&s.mib_per_s),
            Json::Null,
        ],
        Err(f) => [
            Json::Null,
            Json::Null,
            Json::Arr(vec![]),
            Json::Arr(vec![]),
            Json::Obj(vec![
                ("status", Json::Str(f.status.clone())),
                ("stderr_tail", Json::Str(f.detail.clone())),
            ]),
        ],
    }
}

fn to_json(s: &Settings, paths: &Paths, rows: &[Row], read_1m: Option<f64>) -> Json {
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rows = rows
        .iter()
        .map(|r| {
            let [native, native_median, native_runs, native_mibs, native_err] =
                side_json(&r.native);
            let [rvisor, rvisor_median, rvisor_runs, rvisor_mibs, rvisor_err] =
                side_json(&r.rvisor);
            let [native_memfd, _, native_memfd_runs, ..] = match &r.native_memfd {
                Some(m) => side_json(m),
                None => [Json::Null, Json::Null, Json::Null, Json::Null, Json::Null],
            };
            Json::Obj(vec![
                ("id", Json::Str(r.id.into())),
                ("label", Json::Str(r.label.clone())),
                ("unit", Json::Str(r.unit.into())),
                ("rvisor_side", Json::Str(r.sandbox_side.into())),
                ("native", native),
                ("rvisor", rvisor),
                ("ratio", opt_num(r.ratio())),
                ("native_median", native_median),
                ("rvisor_median", rvisor_median),
                ("native_memfd", native_memfd),
                ("native_memfd_runs", native_memfd_runs),
                ("ratio_vs_memfd", opt_num(r.ratio_vs_memfd())),
                ("native_runs", native_runs),
                ("rvisor_runs", rvisor_runs),
                ("native_mib_per_s", native_mibs),
                ("rvisor_mib_per_s", rvisor_mibs),
                ("native_error", native_err),
                ("rvisor_error", rvisor_err),
                (
                    "host_untouched",
                    r.host_untouched.map_or(Json::Null, Json::Bool),
                ),
            ])
        })
        .collect();
    Json::Obj(vec![
        ("unix_time", Json::Num(unix_time as f64)),
        (
            "host",
            Json::Obj(vec![
                ("cpu", Json::Str(cpu_model().unwrap_or_default())),
                (
                    "cpus",
                    Json::Num(thread::available_parallelism().map_or(0, |n| n.get()) as f64),
                ),
                ("kernel", Json::Str(kernel_release().unwrap_or_default())),
                ("target_dir", Json::Str(paths.target.display().to_string())),
            ]),
        ),
        (
            "settings",
            Json::Obj(vec![
                ("size_bytes", Json::Num(s.size as f64)),
                ("passes_1m", Json::Num(s.passes_1m as f64)),
                ("passes_4k", Json::Num(s.passes_4k as f64)),
                ("stat_n", Json::Num(s.stat_n as f64)),
                ("openread_n", Json::Num(s.openread_n as f64)),
                ("getdents_n", Json::Num(s.getdents_n as f64)),
                ("dir_entries", Json::Num(s.dir_entries as f64)),
                ("runs", Json::Num(s.runs as f64)),
                ("timeout_s", Json::Num(s.timeout.as_secs() as f64)),
            ]),
        ),
        ("rows", Json::Arr(rows)),
        (
            "targets",
            Json::Obj(vec![
                ("read_1m_ratio", opt_num(read_1m)),
                ("read_1m_ratio_target", Json::Num(READ_1M_RATIO_TARGET)),
            ]),
        ),
    ])
}
