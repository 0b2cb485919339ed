//! Benchmark: native vs rvisor (ptrace platform), against the
//! `PTRACE_SYSEMU` floor.
//!
//! ```text
//! cargo run --release --example bench        # or: make bench
//! ```
//!
//! What it measures (see DESIGN.md, "Where the time goes"):
//!
//! 1. `getppid` loop, ns per call;
//! 2. `open`+`close` of a small file the bench creates, ns per pair;
//! 3. `fork`+`waitpid` of a child that `_exit(0)`s, µs per pair;
//! 4. start-to-exit of `/bin/busybox true`, wall time of the whole command,
//!    median of several runs, in ms;
//! 5. the floor: a minimal `PTRACE_SYSEMU` round trip (plus `GETREGS` and
//!    `SETREGS`, the least a ptrace kernel does per syscall), measured in
//!    this process with tracer and tracee on the same CPU, and for
//!    information also unpinned and forced onto different CPUs.
//!
//! Items 1–3 run the guest `tests/guests/bench.c` (compiled here with
//! `cc -O2 -static` into `target/guests/bench-static` unless up to date),
//! natively and as `target/release/rvisor do -- GUEST MODE N`. The guest
//! times its own loop with `CLOCK_MONOTONIC` after a warm-up, so process
//! start-up is not counted. rvisor is built first with
//! `cargo build --release --bin rvisor`. When the sandbox side fails, its
//! exit status and stderr tail are printed in that row and the benchmark
//! goes on.
//!
//! Results are printed as a table and written to `target/bench.json`.
//!
//! Environment overrides (defaults keep the whole run well under a minute
//! on a 2-core machine):
//!
//! | variable                       | default | meaning                             |
//! |--------------------------------|---------|-------------------------------------|
//! | `RVISOR_BENCH_GETPPID_N`       | 200000  | getppid calls                       |
//! | `RVISOR_BENCH_OPEN_N`          | 50000   | open+close pairs                    |
//! | `RVISOR_BENCH_FORK_N`          | 500     | fork+waitpid pairs                  |
//! | `RVISOR_BENCH_START_RUNS`      | 20      | `busybox true` runs per side        |
//! | `RVISOR_BENCH_FLOOR_N`         | 100000  | SYSEMU round trips, same CPU        |
//! | `RVISOR_BENCH_FLOOR_CROSS_N`   | 5000    | SYSEMU round trips, unpinned/cross  |
//! | `RVISOR_BENCH_TIMEOUT`         | 30      | seconds before a run is killed      |
//! | `RVISOR_BENCH_OPEN_PATH`       | (file under target/) | file to open + close   |
//! | `RVISOR_BIN`                   | —       | use this rvisor, do not build       |
//! | `RVISOR_BENCH_NO_BUILD`        | —       | `1`: do not run `cargo build`       |

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

#[path = "benchkit/mod.rs"]
mod benchkit;
use benchkit::{cpu_model, describe_status, kernel_release, reader, tail};

/// The per-syscall target for rvisor's `getppid`, as a multiple of the floor.
const FLOOR_RATIO_TARGET: f64 = 1.3;
/// The start-to-exit target for `rvisor do -- /bin/busybox true`, in ms.
const START_MS_TARGET: f64 = 10.0;
/// The static binary timed from start to exit.
const BUSYBOX: &str = "/bin/busybox";

fn main() {
    let settings = Settings::from_env();
    let paths = Paths::discover();
    if cfg!(debug_assertions) {
        eprintln!(
            "bench: warning: this is a debug build; use `cargo run --release --example bench`"
        );
    }
    print_header(&settings, &paths);

    // The floor first, while nothing else of ours is running.
    eprintln!("bench: measuring the PTRACE_SYSEMU floor...");
    let floor = Floor::measure(&settings);

    let rvisor = prepare_rvisor(&paths);
    let guest = compile_guest(&paths);
    let open_path = prepare_open_file(&paths);

    let mut rows = Vec::new();
    for bench in GuestBench::ALL {
        eprintln!("bench: {}...", bench.label());
        rows.push(run_guest_row(bench, &settings, &guest, &rvisor, &open_path));
    }
    eprintln!("bench: start-to-exit of {BUSYBOX} true...");
    rows.push(run_start_row(&settings, &rvisor));

    let summary = Summary::new(&rows, &floor);
    println!();
    print_table(&rows);
    println!();
    floor.print();
    println!();
    summary.print();

    let json = to_json(&settings, &paths, &rows, &floor, &summary);
    let out = paths.target.join("bench.json");
    match fs::write(&out, json.render() + "\n") {
        Ok(()) => println!("\nresults written to {}", out.display()),
        Err(e) => eprintln!("bench: cannot write {}: {e}", out.display()),
    }
}

// ---------------------------------------------------------------------------
// Settings and paths
// ---------------------------------------------------------------------------

/// Iteration counts and knobs, from the environment.
struct Settings {
    getppid_n: u64,
    open_n: u64,
    fork_n: u64,
    start_runs: usize,
    floor_n: u64,
    floor_cross_n: u64,
    timeout: Duration,
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            getppid_n: env_num("RVISOR_BENCH_GETPPID_N", 200_000).max(1),
            open_n: env_num("RVISOR_BENCH_OPEN_N", 50_000).max(1),
            fork_n: env_num("RVISOR_BENCH_FORK_N", 500).max(1),
            start_runs: env_num("RVISOR_BENCH_START_RUNS", 20).max(1),
            floor_n: env_num("RVISOR_BENCH_FLOOR_N", 100_000).max(1),
            floor_cross_n: env_num("RVISOR_BENCH_FLOOR_CROSS_N", 5_000).max(1),
            timeout: Duration::from_secs(env_num("RVISOR_BENCH_TIMEOUT", 30).max(1)),
        }
    }
}

/// Reads a number from the environment; a bad value is reported and ignored.
fn env_num<T: std::str::FromStr + Copy + std::fmt::Display>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Err(_) => default,
        Ok(s) => s.trim().parse().unwrap_or_else(|_| {
            eprintln!("bench: ignoring {name}={s:?} (not a number); using {default}");
            default
        }),
    }
}

/// Where things are.
struct Paths {
    /// The repository root.
    root: PathBuf,
    /// Cargo's target directory.
    target: PathBuf,
}

impl Paths {
    /// The target directory is found from this executable
    /// (`TARGET/PROFILE/examples/bench`), so `CARGO_TARGET_DIR` is honoured;
    /// failing that, `target/` in the repository.
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
    println!("rvisor benchmark — native vs rvisor (ptrace platform)");
    println!(
        "host: {}, {} CPU(s), kernel {}",
        cpu_model().unwrap_or_else(|| "unknown CPU".into()),
        cpus,
        kernel_release().unwrap_or_else(|| "?".into())
    );
    println!(
        "iterations: getppid {}, open+close {}, fork {}, start-to-exit {} runs, \
         floor {} (same CPU) / {} (other placements); timeout {} s",
        s.getppid_n,
        s.open_n,
        s.fork_n,
        s.start_runs,
        s.floor_n,
        s.floor_cross_n,
        s.timeout.as_secs()
    );
    println!("target dir: {}", paths.target.display());
}

// ---------------------------------------------------------------------------
// Preparation: rvisor, the guest, the file to open
// ---------------------------------------------------------------------------

/// The rvisor binary to run, or why there is none.
type Rvisor = Result<PathBuf, String>;

/// Builds `target/release/rvisor` (unless `RVISOR_BIN` names one, or
/// `RVISOR_BENCH_NO_BUILD=1` says to use the existing one).
fn prepare_rvisor(paths: &Paths) -> Rvisor {
    if let Some(bin) = std::env::var_os("RVISOR_BIN") {
        let bin = PathBuf::from(bin);
        eprintln!("bench: using RVISOR_BIN={}", bin.display());
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
    eprintln!("bench: building rvisor: cargo build --release --bin rvisor");
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
    eprintln!("bench: compiling {} -> {}", src.display(), out.display());
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

/// The small existing file the open+close benchmark opens: the
/// `RVISOR_BENCH_OPEN_PATH`, or `TARGET/bench-open.txt` (created here).
fn prepare_open_file(paths: &Paths) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("RVISOR_BENCH_OPEN_PATH") {
        return Ok(PathBuf::from(p));
    }
    let p = paths.target.join("bench-open.txt");
    fs::write(&p, "a small file for the open+close benchmark\n")
        .map_err(|e| format!("create {}: {e}", p.display()))?;
    Ok(p)
}

// ---------------------------------------------------------------------------
// Running processes
// ---------------------------------------------------------------------------

/// The result of one run of a command.
struct RunOutcome {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// From just before spawning to the moment the process exited.
    wall: Duration,
    timed_out: bool,
}

impl RunOutcome {
    /// Whether it exited 0 in time.
    fn ok(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// A one-line summary of a failure plus the stderr tail.
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
    let start = Instant::now();
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
    let wall = start.elapsed();
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
        wall,
        timed_out,
    })
}

// ---------------------------------------------------------------------------
// Rows 1–4: native vs rvisor
// ---------------------------------------------------------------------------

/// Why one side of a row has no number.
#[derive(Clone)]
struct Failure {
    /// e.g. "exit 125", "timed out (killed)", "rvisor not built".
    status: String,
    /// Stderr tail or explanation; may be empty.
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

/// One side of a row: the measured value in the row's unit, or a failure.
type Measurement = Result<f64, Failure>;

/// A row of the table.
struct Row {
    /// Stable identifier (JSON key).
    id: &'static str,
    /// Human label.
    label: String,
    /// Unit of `native` and `rvisor`.
    unit: &'static str,
    native: Measurement,
    rvisor: Measurement,
    /// Free-form extra facts for the JSON (e.g. min and max of runs).
    extra: Vec<(&'static str, Json)>,
}

impl Row {
    /// rvisor / native, when both are there.
    fn ratio(&self) -> Option<f64> {
        match (&self.native, &self.rvisor) {
            (Ok(n), Ok(r)) if *n > 0.0 => Some(r / n),
            _ => None,
        }
    }
}

/// The three modes of `tests/guests/bench.c`.
#[derive(Clone, Copy)]
enum GuestBench {
    Getppid,
    OpenClose,
    Fork,
}

impl GuestBench {
    const ALL: [GuestBench; 3] = [GuestBench::Getppid, GuestBench::OpenClose, GuestBench::Fork];

    fn mode(self) -> &'static str {
        match self {
            GuestBench::Getppid => "getppid",
            GuestBench::OpenClose => "open",
            GuestBench::Fork => "fork",
        }
    }

    fn label(self) -> &'static str {
        match self {
            GuestBench::Getppid => "getppid",
            GuestBench::OpenClose => "open+close",
            GuestBench::Fork => "fork+waitpid",
        }
    }

    /// Display unit, and the divisor from the guest's ns/op to it.
    fn unit(self) -> (&'static str, f64) {
        match self {
            GuestBench::Getppid => ("ns/call", 1.0),
            GuestBench::OpenClose => ("ns/pair", 1.0),
            GuestBench::Fork => ("µs/pair", 1000.0),
        }
    }

    fn iterations(self, s: &Settings) -> u64 {
        match self {
            GuestBench::Getppid => s.getppid_n,
            GuestBench::OpenClose => s.open_n,
            GuestBench::Fork => s.fork_n,
        }
    }
}

/// Runs one guest benchmark natively and under rvisor.
fn run_guest_row(
    bench: GuestBench,
    s: &Settings,
    guest: &Result<PathBuf, String>,
    rvisor: &Rvisor,
    open_path: &Result<PathBuf, String>,
) -> Row {
    let n = bench.iterations(s);
    let (unit, divisor) = bench.unit();
    let row = |native, rvisor| Row {
        id: bench.mode(),
        label: format!("{} (x{n})", bench.label()),
        unit,
        native,
        rvisor,
        extra: vec![("iterations", Json::Num(n as f64))],
    };

    let guest = match guest {
        Ok(g) => g,
        Err(e) => {
            let f = Failure::new("guest not built", e.clone());
            return row(Err(f.clone()), Err(f));
        }
    };
    let mut args: Vec<OsString> = vec![bench.mode().into(), n.to_string().into()];
    if let GuestBench::OpenClose = bench {
        match open_path {
            Ok(p) => args.push(p.clone().into_os_string()),
            Err(e) => {
                let f = Failure::new("no file to open", e.clone());
                return row(Err(f.clone()), Err(f));
            }
        }
    }

    let measure = |cmd: &mut Command| -> Measurement {
        let out = run(cmd, s.timeout).map_err(|e| Failure::new("cannot spawn", e.to_string()))?;
        if !out.ok() {
            return Err(out.failure());
        }
        parse_ns_per_op(&out.stdout)
            .map(|ns| ns / divisor)
            .ok_or_else(|| Failure::new("no result", format!("stdout: {}", tail(&out.stdout, 3))))
    };

    let native = measure(Command::new(guest).args(&args));
    let sandboxed = match rvisor {
        Ok(bin) => measure(Command::new(bin).args(["do", "--"]).arg(guest).args(&args)),
        Err(e) => Err(Failure::new("rvisor not built", e.clone())),
    };
    row(native, sandboxed)
}

/// Finds `ns_per_op=X` in the guest's output.
fn parse_ns_per_op(stdout: &[u8]) -> Option<f64> {
    let text = String::from_utf8_lossy(stdout);
    let value = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ns_per_op="))?;
    value.parse().ok().filter(|v: &f64| v.is_finite())
}

/// Start-to-exit of `/bin/busybox true`, median of `start_runs` runs per
/// side after one untimed warm-up run each.
fn run_start_row(s: &Settings, rvisor: &Rvisor) -> Row {
    let mut extra = vec![("runs", Json::Num(s.start_runs as f64))];
    let static_note = match is_static_elf(Path::new(BUSYBOX)) {
        Some(true) => "static",
        Some(false) => "DYNAMIC (install busybox-static)",
        None => "missing",
    };
    extra.push(("busybox", Json::Str(static_note.into())));
    if static_note != "static" {
        eprintln!("bench: warning: {BUSYBOX} is {static_note}");
    }

    // Runs one side: the median, and the min and max, in ms.
    let measure = |make: &dyn Fn() -> Command| -> Result<(f64, f64, f64), Failure> {
        let mut walls = Vec::with_capacity(s.start_runs);
        for i in 0..=s.start_runs {
            let out = run(&mut make(), s.timeout)
                .map_err(|e| Failure::new("cannot spawn", e.to_string()))?;
            if !out.ok() {
                return Err(out.failure());
            }
            if i > 0 {
                walls.push(out.wall.as_secs_f64() * 1e3);
            }
        }
        walls.sort_by(f64::total_cmp);
        Ok((median_sorted(&walls), walls[0], walls[walls.len() - 1]))
    };

    let native = measure(&|| {
        let mut c = Command::new(BUSYBOX);
        c.arg("true");
        c
    });
    let rvisor = match rvisor {
        Ok(bin) => measure(&|| {
            let mut c = Command::new(bin);
            c.args(["do", "--", BUSYBOX, "true"]);
            c
        }),
        Err(e) => Err(Failure::new("rvisor not built", e.clone())),
    };
    if let Ok((_, min, max)) = native {
        extra.extend([
            ("native_min_ms", Json::Num(min)),
            ("native_max_ms", Json::Num(max)),
        ]);
    }
    if let Ok((_, min, max)) = rvisor {
        extra.extend([
            ("rvisor_min_ms", Json::Num(min)),
            ("rvisor_max_ms", Json::Num(max)),
        ]);
    }
    Row {
        id: "start_to_exit",
        label: format!("busybox true (median/{})", s.start_runs),
        unit: "ms",
        native: native.map(|(median, _, _)| median),
        rvisor: rvisor.map(|(median, _, _)| median),
        extra,
    }
}

fn median_sorted(v: &[f64]) -> f64 {
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Whether the ELF file at `path` has no `PT_INTERP` program header
/// (`None` if it cannot be read or is not a 64-bit ELF).
fn is_static_elf(path: &Path) -> Option<bool> {
    let data = fs::read(path).ok()?;
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?));
    let phoff = u64::from_le_bytes(data.get(0x20..0x28)?.try_into().ok()?) as usize;
    let phentsize = u16_at(0x36)? as usize;
    let phnum = u16_at(0x38)? as usize;
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?);
        if p_type == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

// ---------------------------------------------------------------------------
// Row 5: the PTRACE_SYSEMU floor
// ---------------------------------------------------------------------------

/// Where tracer and tracee run during a floor measurement.
#[derive(Clone, Copy, Debug)]
enum Placement {
    /// Both pinned to this CPU.
    Same(usize),
    /// Whatever the scheduler does.
    Unpinned,
    /// Tracer on the first CPU, tracee on the second.
    Cross(usize, usize),
}

/// One floor measurement.
struct FloorCase {
    id: &'static str,
    label: String,
    /// GETREGS + SETREGS in each round trip.
    with_regs: bool,
    iterations: u64,
    result: Result<f64, String>,
}

/// The floor measurements; the first is "the floor".
struct Floor {
    cases: Vec<FloorCase>,
}

impl Floor {
    fn measure(s: &Settings) -> Floor {
        let cpus = allowed_cpus();
        let here = current_cpu()
            .filter(|c| cpus.contains(c))
            .or_else(|| cpus.first().copied());
        let mut cases = Vec::new();
        let mut case = |id, label: String, placement: Option<Placement>, with_regs, iterations| {
            let result = match placement {
                Some(p) => sysemu_round_trip_ns(p, with_regs, iterations),
                None => Err("needs 2 CPUs".to_string()),
            };
            cases.push(FloorCase {
                id,
                label,
                with_regs,
                iterations,
                result,
            });
        };
        let cpu_label = here.map_or("?".to_string(), |c| c.to_string());
        case(
            "same_cpu",
            format!("same CPU (cpu {cpu_label}), SYSEMU+wait+GETREGS+SETREGS"),
            here.map(Placement::Same),
            true,
            s.floor_n,
        );
        case(
            "same_cpu_bare",
            format!("same CPU (cpu {cpu_label}), SYSEMU+wait only"),
            here.map(Placement::Same),
            false,
            s.floor_n,
        );
        case(
            "unpinned",
            "unpinned, SYSEMU+wait+GETREGS+SETREGS".into(),
            Some(Placement::Unpinned),
            true,
            s.floor_cross_n,
        );
        let cross = match cpus.as_slice() {
            [a, b, ..] => Some(Placement::Cross(*a, *b)),
            _ => None,
        };
        let cross_label = match cross {
            Some(Placement::Cross(a, b)) => {
                format!("cross-CPU (tracer cpu {a}, tracee cpu {b}), +REGS")
            }
            _ => "cross-CPU, +REGS".into(),
        };
        case("cross_cpu", cross_label, cross, true, s.floor_cross_n);
        Floor { cases }
    }

    /// The floor: same CPU, with GETREGS + SETREGS.
    fn floor_ns(&self) -> Option<f64> {
        self.cases
            .first()
            .and_then(|c| c.result.as_ref().ok().copied())
    }

    fn print(&self) {
        println!("PTRACE_SYSEMU floor (this process traces a child looping on getppid):");
        for c in &self.cases {
            let value = match &c.result {
                Ok(ns) => format!("{:>10.0} ns/round trip", ns),
                Err(e) => format!("FAILED: {e}"),
            };
            let mark = if c.id == "same_cpu" {
                "  <- the floor"
            } else {
                ""
            };
            println!("  {:<56} {value}  (x{}){mark}", c.label, c.iterations);
        }
    }
}

/// The CPUs this thread may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills a cpu_set_t we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

fn current_cpu() -> Option<usize> {
    // SAFETY: no arguments, no memory.
    let c = unsafe { libc::sched_getcpu() };
    usize::try_from(c).ok()
}

/// Pins thread/process `pid` (0: the calling thread) to one CPU.
fn pin(pid: libc::pid_t, cpu: usize) -> Result<(), String> {
    // SAFETY: the cpu_set_t is ours and fully initialised.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!(
                "sched_setaffinity(cpu {cpu}): {}",
                io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

/// Restores the calling thread's CPU mask when dropped, so processes
/// spawned later are not confined to the CPU the floor used.
struct AffinityGuard(libc::cpu_set_t);

impl AffinityGuard {
    fn save() -> AffinityGuard {
        // SAFETY: sched_getaffinity fills a cpu_set_t we own.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set);
            AffinityGuard(set)
        }
    }
}

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        // SAFETY: restores a mask previously returned by the kernel.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
    }
}

/// A traced child; killed and reaped when dropped.
struct Tracee(libc::pid_t);

impl Drop for Tracee {
    fn drop(&mut self) {
        // SAFETY: kill + waitpid on our own child.
        unsafe {
            libc::kill(self.0, libc::SIGKILL);
            let mut status = 0;
            while libc::waitpid(self.0, &mut status, libc::__WALL) == self.0 {
                if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                    break;
                }
            }
        }
    }
}

/// Forks a child that loops on `syscall(SYS_getppid)` under
/// `PTRACE_SYSEMU`, and returns the mean wall time of one round trip:
/// `PTRACE_SYSEMU` + `waitpid` (+ `PTRACE_GETREGS`, emulating the call by
/// setting `rax`, `PTRACE_SETREGS` when `with_regs`).
#[cfg(target_arch = "x86_64")]
fn sysemu_round_trip_ns(
    placement: Placement,
    with_regs: bool,
    iterations: u64,
) -> Result<f64, String> {
    let _restore = AffinityGuard::save();
    let (tracer_cpu, tracee_cpu) = match placement {
        Placement::Same(c) => (Some(c), Some(c)),
        Placement::Unpinned => (None, None),
        Placement::Cross(a, b) => (Some(a), Some(b)),
    };
    if let Some(c) = tracer_cpu {
        pin(0, c)?;
    }

    // SAFETY: the child only makes async-signal-safe calls (prctl, ptrace,
    // raise, syscall, _exit) before it is killed.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; never returns.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) != 0 {
                libc::_exit(127);
            }
            libc::raise(libc::SIGSTOP);
            loop {
                libc::syscall(libc::SYS_getppid);
            }
        }
    }
    let tracee = Tracee(pid);
    let ptrace = |req: libc::c_uint, data: *mut libc::c_void| -> Result<(), String> {
        // SAFETY: `data` is null or points to a live user_regs_struct.
        let r = unsafe { libc::ptrace(req, tracee.0, std::ptr::null_mut::<libc::c_void>(), data) };
        if r < 0 {
            Err(format!("ptrace({req}): {}", io::Error::last_os_error()))
        } else {
            Ok(())
        }
    };
    let wait = || -> Result<libc::c_int, String> {
        let mut status = 0;
        // SAFETY: waitpid on our child into a local.
        let r = unsafe { libc::waitpid(tracee.0, &mut status, libc::__WALL) };
        if r != tracee.0 {
            return Err(format!("waitpid: {}", io::Error::last_os_error()));
        }
        Ok(status)
    };

    let status = wait()?;
    if !libc::WIFSTOPPED(status) || libc::WSTOPSIG(status) != libc::SIGSTOP {
        return Err(format!(
            "child did not stop with SIGSTOP (status {status:#x})"
        ));
    }
    let options = (libc::PTRACE_O_EXITKILL | libc::PTRACE_O_TRACESYSGOOD) as usize;
    ptrace(libc::PTRACE_SETOPTIONS, options as *mut libc::c_void)?;
    if let Some(c) = tracee_cpu {
        pin(tracee.0, c)?;
    }

    // SAFETY: getppid's answer for the tracee is our pid.
    let ppid = unsafe { libc::getpid() } as u64;
    // SAFETY: user_regs_struct is plain data.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    let mut round_trip = || -> Result<(), String> {
        ptrace(libc::PTRACE_SYSEMU, std::ptr::null_mut())?;
        let status = wait()?;
        if !libc::WIFSTOPPED(status) || libc::WSTOPSIG(status) != libc::SIGTRAP | 0x80 {
            return Err(format!("unexpected stop (status {status:#x})"));
        }
        if with_regs {
            ptrace(libc::PTRACE_GETREGS, (&raw mut regs).cast())?;
            if regs.orig_rax != libc::SYS_getppid as u64 {
                return Err(format!(
                    "tracee made syscall {} instead of getppid",
                    regs.orig_rax
                ));
            }
            regs.rax = ppid;
            ptrace(libc::PTRACE_SETREGS, (&raw mut regs).cast())?;
        }
        Ok(())
    };

    for _ in 0..(iterations / 10).max(1) {
        round_trip()?;
    }
    let start = Instant::now();
    for _ in 0..iterations {
        round_trip()?;
    }
    let ns = start.elapsed().as_nanos() as f64 / iterations as f64;
    drop(tracee);
    Ok(ns)
}

#[cfg(not(target_arch = "x86_64"))]
fn sysemu_round_trip_ns(_: Placement, _: bool, _: u64) -> Result<f64, String> {
    Err("the floor measurement is x86_64 only".into())
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

/// The two headline numbers against their targets.
struct Summary {
    /// rvisor's getppid ns/call divided by the floor.
    getppid_over_floor: Option<f64>,
    /// rvisor's `busybox true` median, ms.
    start_ms: Option<f64>,
}

impl Summary {
    fn new(rows: &[Row], floor: &Floor) -> Summary {
        let rvisor = |id: &str| {
            rows.iter()
                .find(|r| r.id == id)
                .and_then(|r| r.rvisor.as_ref().ok().copied())
        };
        Summary {
            getppid_over_floor: rvisor("getppid").zip(floor.floor_ns()).map(|(g, f)| g / f),
            start_ms: rvisor("start_to_exit"),
        }
    }

    fn print(&self) {
        println!("Targets:");
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        match self.getppid_over_floor {
            Some(r) => println!(
                "  rvisor getppid / SYSEMU floor = {r:.2}x   (target <= {FLOOR_RATIO_TARGET}x: {})",
                verdict(r <= FLOOR_RATIO_TARGET)
            ),
            None => println!(
                "  rvisor getppid / SYSEMU floor = n/a     (target <= {FLOOR_RATIO_TARGET}x)"
            ),
        }
        match self.start_ms {
            Some(ms) => println!(
                "  rvisor start-to-exit (busybox true) = {ms:.2} ms   (target < {START_MS_TARGET} ms: {})",
                verdict(ms < START_MS_TARGET)
            ),
            None => println!(
                "  rvisor start-to-exit (busybox true) = n/a     (target < {START_MS_TARGET} ms)"
            ),
        }
    }
}

fn print_table(rows: &[Row]) {
    let cell = |m: &Measurement| match m {
        Ok(v) => format_value(*v),
        Err(f) => format!("FAILED: {}", f.status),
    };
    println!(
        "{:<28} {:>8} {:>10}  {:>18} {:>7}",
        "benchmark", "unit", "native", "rvisor-ptrace", "ratio"
    );
    println!("{}", "-".repeat(75));
    for r in rows {
        let ratio = r
            .ratio()
            .map_or_else(|| "-".to_string(), |x| format!("{x:.1}x"));
        println!(
            "{:<28} {:>8} {:>10}  {:>18} {:>7}",
            r.label,
            r.unit,
            cell(&r.native),
            cell(&r.rvisor),
            ratio
        );
        // A failed side gets its explanation (stderr tail) under the row.
        for (side, m) in [("native", &r.native), ("rvisor", &r.rvisor)] {
            if let Err(f) = m {
                for line in f.detail.lines() {
                    println!("    {side} | {line}");
                }
            }
        }
    }
    println!("ratio = rvisor / native; start-to-exit is the wall time of the whole command");
}

/// Three significant-ish digits without exponent.
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
// JSON (tiny writer; the crate has no JSON dependency)
// ---------------------------------------------------------------------------

#[derive(Clone)]
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

fn measurement_json(m: &Measurement) -> (Json, Json) {
    match m {
        Ok(v) => (Json::Num(*v), Json::Null),
        Err(f) => (
            Json::Null,
            Json::Obj(vec![
                ("status", Json::Str(f.status.clone())),
                ("stderr_tail", Json::Str(f.detail.clone())),
            ]),
        ),
    }
}

fn to_json(s: &Settings, paths: &Paths, rows: &[Row], floor: &Floor, summary: &Summary) -> Json {
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rows = rows
        .iter()
        .map(|r| {
            let (native, native_err) = measurement_json(&r.native);
            let (rvisor, rvisor_err) = measurement_json(&r.rvisor);
            let mut fields = vec![
                ("id", Json::Str(r.id.into())),
                ("label", Json::Str(r.label.clone())),
                ("unit", Json::Str(r.unit.into())),
                ("native", native),
                ("rvisor", rvisor),
                ("ratio", opt_num(r.ratio())),
                ("native_error", native_err),
                ("rvisor_error", rvisor_err),
            ];
            fields.extend(r.extra.iter().map(|(k, v)| (*k, v.clone())));
            Json::Obj(fields)
        })
        .collect();
    let floor_cases = floor
        .cases
        .iter()
        .map(|c| {
            Json::Obj(vec![
                ("id", Json::Str(c.id.into())),
                ("label", Json::Str(c.label.clone())),
                ("with_regs", Json::Bool(c.with_regs)),
                ("iterations", Json::Num(c.iterations as f64)),
                (
                    "ns_per_round_trip",
                    opt_num(c.result.as_ref().ok().copied()),
                ),
                (
                    "error",
                    c.result
                        .as_ref()
                        .err()
                        .map_or(Json::Null, |e| Json::Str(e.clone())),
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
                ("getppid_n", Json::Num(s.getppid_n as f64)),
                ("open_n", Json::Num(s.open_n as f64)),
                ("fork_n", Json::Num(s.fork_n as f64)),
                ("start_runs", Json::Num(s.start_runs as f64)),
                ("floor_n", Json::Num(s.floor_n as f64)),
                ("floor_cross_n", Json::Num(s.floor_cross_n as f64)),
                ("timeout_s", Json::Num(s.timeout.as_secs() as f64)),
            ]),
        ),
        ("rows", Json::Arr(rows)),
        ("floor", Json::Arr(floor_cases)),
        (
            "targets",
            Json::Obj(vec![
                ("getppid_over_floor", opt_num(summary.getppid_over_floor)),
                ("getppid_over_floor_target", Json::Num(FLOOR_RATIO_TARGET)),
                ("start_to_exit_ms", opt_num(summary.start_ms)),
                ("start_to_exit_ms_target", Json::Num(START_MS_TARGET)),
            ]),
        ),
    ])
}
