//! Differential test harness shared by the integration tests.
//!
//! Every case runs a real program twice — natively on the host and inside
//! the sandbox (`rvisor do -- ARGV...`) — and compares the exit status,
//! stdout and stderr byte for byte. Nothing is normalised unless a case
//! supplies a filter, which should be rare and explained where it is used.
//!
//! Environment switches:
//! - `RVISOR_HARNESS_SELFTEST=1`: the "sandbox" side runs natively too
//!   (and `rvisor run --rootfs` becomes `chroot`). Used to check that the
//!   tests themselves are deterministic and their expectations right,
//!   independently of the kernel.
//! - `RVISOR_PLATFORM=NAME`: pass `--platform NAME` to every rvisor run.
//! - `RVISOR_BIN=PATH`: use this rvisor binary instead of Cargo's.
//! - `RVISOR_TEST_TIMEOUT=SECS`: per-run timeout (default 60).
//! - `RVISOR_TEST_VERBOSE=1`: print each case's native output (with
//!   `--nocapture`).
#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// Result of one run: `status` follows the rvisor CLI convention, i.e. the
/// exit code, or 128+N when the program was killed by signal N.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Filter applied to stdout and stderr of both sides before comparing.
pub type Filter = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// The repository root (Cargo runs integration tests from there as well).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Cargo's target directory (the parent of `CARGO_TARGET_TMPDIR`).
pub fn target_dir() -> PathBuf {
    match option_env!("CARGO_TARGET_TMPDIR") {
        Some(t) => Path::new(t)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| repo_root().join("target")),
        None => repo_root().join("target"),
    }
}

/// True when `RVISOR_HARNESS_SELFTEST=1`: the sandbox side runs natively.
pub fn selftest() -> bool {
    std::env::var_os("RVISOR_HARNESS_SELFTEST").is_some_and(|v| v == "1")
}

/// Per-run timeout.
pub fn timeout() -> Duration {
    let secs = std::env::var("RVISOR_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(60);
    Duration::from_secs(secs)
}

/// Path of the rvisor binary under test.
pub fn rvisor_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RVISOR_BIN") {
        return PathBuf::from(p);
    }
    let p = match option_env!("CARGO_BIN_EXE_rvisor") {
        Some(p) => PathBuf::from(p),
        // Fallback when the bin target is not (yet) declared: the binary
        // next to the `deps` directory holding this test executable.
        None => std::env::current_exe()
            .ok()
            .and_then(|e| e.parent()?.parent().map(|d| d.join("rvisor")))
            .unwrap_or_else(|| target_dir().join("debug").join("rvisor")),
    };
    assert!(
        p.is_file(),
        "rvisor binary not found at {} (is src/bin/rvisor.rs built? try `cargo build --all-targets`)",
        p.display()
    );
    p
}

/// Extra `--platform NAME` arguments from `RVISOR_PLATFORM`.
fn platform_args() -> Vec<OsString> {
    match std::env::var_os("RVISOR_PLATFORM") {
        Some(p) if !p.is_empty() => vec!["--platform".into(), p],
        _ => vec![],
    }
}

fn to_os(argv: &[impl AsRef<OsStr>]) -> Vec<OsString> {
    argv.iter().map(|a| a.as_ref().to_os_string()).collect()
}

// ---------------------------------------------------------------------------
// Running programs with a timeout
// ---------------------------------------------------------------------------

/// Spawn `cmd` (in its own process group) with `stdin` fed to it, collect
/// stdout/stderr, and wait at most `limit`. On expiry the whole process
/// group is killed and the test fails.
pub fn run_command(mut cmd: Command, stdin: &[u8], limit: Duration, what: &str) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot spawn {cmd:?}: {e}"));
    let pid = child.id() as i32;

    let mut sin = child.stdin.take().expect("stdin piped");
    let data = stdin.to_vec();
    // EPIPE (the program did not read all of its input) is not an error.
    let writer = thread::spawn(move || {
        let _ = sin.write_all(&data);
    });

    let (tx, rx) = mpsc::channel::<(usize, Vec<u8>)>();
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let tx2 = tx.clone();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = out.read_to_end(&mut buf);
        let _ = tx.send((1, buf));
    });
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        let _ = tx2.send((2, buf));
    });

    let deadline = Instant::now() + limit;
    let kill_group = || {
        // SAFETY: plain libc call on a process group this harness created.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    };

    let mut status = None;
    let mut sleep = Duration::from_millis(1);
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(s)) => {
                status = Some(s);
                break;
            }
            Ok(None) => {}
            Err(e) => panic!("{what}: wait failed: {e}"),
        }
        thread::sleep(sleep);
        sleep = (sleep * 2).min(Duration::from_millis(20));
    }

    let mut stdout = None;
    let mut stderr = None;
    let collect = |until: Instant, stdout: &mut Option<Vec<u8>>, stderr: &mut Option<Vec<u8>>| {
        while stdout.is_none() || stderr.is_none() {
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok((1, b)) => *stdout = Some(b),
                Ok((_, b)) => *stderr = Some(b),
                Err(_) => return false,
            }
        }
        true
    };

    let Some(status) = status else {
        kill_group();
        let _ = child.wait();
        collect(
            Instant::now() + Duration::from_secs(5),
            &mut stdout,
            &mut stderr,
        );
        panic!(
            "{what}: TIMED OUT after {:?} (killed)\n--- partial stdout ---\n{}\n--- partial stderr ---\n{}",
            limit,
            truncate_lossy(stdout.as_deref().unwrap_or(b""), 2000),
            truncate_lossy(stderr.as_deref().unwrap_or(b""), 2000),
        );
    };

    // The program exited; its pipes may still be held by a leftover
    // descendant. Give that until the deadline, then kill the group.
    let until = deadline.max(Instant::now() + Duration::from_secs(1));
    if !collect(until, &mut stdout, &mut stderr) {
        kill_group();
        collect(
            Instant::now() + Duration::from_secs(5),
            &mut stdout,
            &mut stderr,
        );
        panic!(
            "{what}: exited with {status:?} but its stdout/stderr stayed open past {limit:?} \
             (a descendant kept them open)"
        );
    }
    // The stdin writer is not joined: a descendant that keeps stdin open
    // without reading must not hang the harness.
    drop(writer);

    let status = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        _ => panic!("{what}: odd exit status {status:?}"),
    };
    Output {
        status,
        stdout: stdout.unwrap_or_default(),
        stderr: stderr.unwrap_or_default(),
    }
}

fn apply_env(cmd: &mut Command, env: &[(&str, &str)]) {
    for (k, v) in env {
        cmd.env(k, v);
    }
}

/// Run `argv` natively (cwd = repository root, environment inherited plus
/// `env`).
pub fn run_native(argv: &[impl AsRef<OsStr>], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    run_native_timeout(argv, stdin, env, timeout())
}

pub fn run_native_timeout(
    argv: &[impl AsRef<OsStr>],
    stdin: &[u8],
    env: &[(&str, &str)],
    limit: Duration,
) -> Output {
    let argv = to_os(argv);
    assert!(!argv.is_empty(), "empty argv");
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).current_dir(repo_root());
    apply_env(&mut cmd, env);
    run_command(cmd, stdin, limit, &format!("native {argv:?}"))
}

/// Run `argv` in the sandbox: `rvisor do [--platform P] -- argv...`, from
/// the repository root, with the environment inherited plus `env` (rvisor
/// passes the caller's environment through). Under
/// `RVISOR_HARNESS_SELFTEST=1` it runs natively instead.
pub fn run_sandbox(argv: &[impl AsRef<OsStr>], stdin: &[u8], env: &[(&str, &str)]) -> Output {
    run_sandbox_timeout(argv, stdin, env, timeout())
}

pub fn run_sandbox_timeout(
    argv: &[impl AsRef<OsStr>],
    stdin: &[u8],
    env: &[(&str, &str)],
    limit: Duration,
) -> Output {
    if selftest() {
        return run_native_timeout(argv, stdin, env, limit);
    }
    let argv = to_os(argv);
    let mut cmd = Command::new(rvisor_bin());
    cmd.arg("do")
        .args(platform_args())
        .arg("--")
        .args(&argv)
        .current_dir(repo_root());
    apply_env(&mut cmd, env);
    run_command(cmd, stdin, limit, &format!("sandbox {argv:?}"))
}

/// `rvisor run --rootfs ROOTFS [--cwd CWD] -- argv...`. Under selftest it
/// is emulated with a native `chroot` (needs root; the path semantics of a
/// chroot are the reference for the sandbox's rootfs confinement).
pub fn run_in_rootfs(rootfs: &Path, cwd: Option<&str>, argv: &[impl AsRef<OsStr>]) -> Output {
    let argv = to_os(argv);
    let what = format!("rootfs {} {argv:?}", rootfs.display());
    if selftest() {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "selftest of rootfs runs uses chroot and needs root"
        );
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        use std::os::unix::ffi::OsStrExt;
        let root = std::ffi::CString::new(rootfs.as_os_str().as_bytes()).expect("rootfs path");
        let dir = std::ffi::CString::new(cwd.unwrap_or("/")).expect("cwd");
        // SAFETY: only async-signal-safe calls (chroot/chdir) on strings
        // allocated before the fork run between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::chroot(root.as_ptr()) != 0 || libc::chdir(dir.as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        return run_command(cmd, b"", timeout(), &what);
    }
    let mut cmd = Command::new(rvisor_bin());
    cmd.arg("run").arg("--rootfs").arg(rootfs);
    if let Some(c) = cwd {
        cmd.arg("--cwd").arg(c);
    }
    cmd.args(platform_args()).arg("--").args(&argv);
    run_command(cmd, b"", timeout(), &what)
}

// ---------------------------------------------------------------------------
// Differential cases
// ---------------------------------------------------------------------------

/// A differential case: built with [`Case::new`], run with [`Case::check`].
pub struct Case {
    name: String,
    argv: Vec<OsString>,
    stdin: Vec<u8>,
    env: Vec<(String, String)>,
    filter: Option<Filter>,
    expect_status: Option<i32>,
    timeout: Duration,
}

impl Case {
    pub fn new(name: &str, argv: &[impl AsRef<OsStr>]) -> Case {
        Case {
            name: name.to_string(),
            argv: to_os(argv),
            stdin: Vec::new(),
            env: Vec::new(),
            filter: None,
            expect_status: None,
            timeout: timeout(),
        }
    }
    pub fn stdin(mut self, data: impl AsRef<[u8]>) -> Case {
        self.stdin = data.as_ref().to_vec();
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Case {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
    /// Normalise stdout and stderr of both runs before comparing. Use only
    /// for output that legitimately differs (PIDs, say), and say why.
    pub fn filter(mut self, f: impl Fn(&[u8]) -> Vec<u8> + 'static) -> Case {
        self.filter = Some(Box::new(f));
        self
    }
    /// The status both runs must have. The native run is checked too, so a
    /// wrong expectation shows up as a broken test, not a kernel bug.
    pub fn expect_status(mut self, status: i32) -> Case {
        self.expect_status = Some(status);
        self
    }
    pub fn timeout(mut self, t: Duration) -> Case {
        self.timeout = t;
        self
    }

    /// Run natively and in the sandbox; panic with a readable report on
    /// any difference. Returns the (filtered) native output.
    pub fn check(self) -> Output {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut native = run_native_timeout(&self.argv, &self.stdin, &env, self.timeout);
        if let Some(want) = self.expect_status {
            assert_eq!(
                native.status,
                want,
                "case {}: the NATIVE run exited {} but the test expects {} — the test is wrong\n\
                 stdout: {}\nstderr: {}",
                self.name,
                native.status,
                want,
                truncate_lossy(&native.stdout, 1000),
                truncate_lossy(&native.stderr, 1000),
            );
        }
        if std::env::var_os("RVISOR_TEST_VERBOSE").is_some() {
            eprintln!(
                "=== case {} argv {:?}\nstatus {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.name,
                self.argv,
                native.status,
                truncate_lossy(&native.stdout, 600),
                truncate_lossy(&native.stderr, 600)
            );
        }
        let mut sandbox = run_sandbox_timeout(&self.argv, &self.stdin, &env, self.timeout);
        if let Some(f) = &self.filter {
            native.stdout = f(&native.stdout);
            native.stderr = f(&native.stderr);
            sandbox.stdout = f(&sandbox.stdout);
            sandbox.stderr = f(&sandbox.stderr);
        }
        if let Some(report) = compare(&native, &sandbox) {
            panic!(
                "case `{}` differs between native and sandbox\nargv: {:?}\n{}",
                self.name, self.argv, report
            );
        }
        native
    }
}

/// Run `argv` with `stdin` natively and in the sandbox and require the same
/// exit status, stdout and stderr.
pub fn assert_same(case_name: &str, argv: &[impl AsRef<OsStr>], stdin: &[u8]) -> Output {
    Case::new(case_name, argv).stdin(stdin).check()
}

/// `None` when equal, else a human-readable report.
pub fn compare(native: &Output, sandbox: &Output) -> Option<String> {
    let mut report = String::new();
    if native.status != sandbox.status {
        report.push_str(&format!(
            "exit status: native {} vs sandbox {}\n",
            native.status, sandbox.status
        ));
    }
    for (label, n, s) in [
        ("stdout", &native.stdout, &sandbox.stdout),
        ("stderr", &native.stderr, &sandbox.stderr),
    ] {
        if n != s {
            report.push_str(&describe_diff(label, n, s));
        }
    }
    if report.is_empty() {
        None
    } else {
        // Always show both stderrs: a sandbox error message explains a lot.
        if native.stderr == sandbox.stderr && !sandbox.stderr.is_empty() {
            report.push_str(&format!(
                "(stderr identical:)\n{}\n",
                truncate_lossy(&sandbox.stderr, 1000)
            ));
        }
        Some(report)
    }
}

/// Report on two differing byte strings: first differing line, then both
/// texts, truncated.
pub fn describe_diff(label: &str, native: &[u8], sandbox: &[u8]) -> String {
    let nl: Vec<&[u8]> = native.split_inclusive(|&b| b == b'\n').collect();
    let sl: Vec<&[u8]> = sandbox.split_inclusive(|&b| b == b'\n').collect();
    let mut i = 0;
    while i < nl.len() && i < sl.len() && nl[i] == sl[i] {
        i += 1;
    }
    let line = |v: &Vec<&[u8]>| match v.get(i) {
        Some(l) => format!("{:?}", truncate_lossy(l, 200)),
        None => "<end of output>".to_string(),
    };
    format!(
        "{label} differs ({} vs {} bytes); first difference at line {}:\n  native : {}\n  sandbox: {}\n\
         --- native {label} ---\n{}\n--- sandbox {label} ---\n{}\n---\n",
        native.len(),
        sandbox.len(),
        i + 1,
        line(&nl),
        line(&sl),
        truncate_lossy(native, 2000),
        truncate_lossy(sandbox, 2000),
    )
}

pub fn truncate_lossy(b: &[u8], max: usize) -> String {
    if b.len() <= max {
        String::from_utf8_lossy(b).into_owned()
    } else {
        format!(
            "{}... ({} more bytes)",
            String::from_utf8_lossy(&b[..max]),
            b.len() - max
        )
    }
}

/// A filter replacing every run of ASCII digits with `N`.
pub fn digits_to_n(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut in_num = false;
    for &c in b {
        if c.is_ascii_digit() {
            if !in_num {
                out.push(b'N');
            }
            in_num = true;
        } else {
            in_num = false;
            out.push(c);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Required host tools
// ---------------------------------------------------------------------------

/// Panic unless `path` is an executable file. Tests never skip on a missing
/// tool: CI installs them (scripts/deps.sh) and a missing one must fail.
pub fn require(path: &str, debian_package: &str) -> &'static str {
    let ok = fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false);
    assert!(
        ok,
        "required tool {path} is missing: install the Debian package `{debian_package}` \
         (`bash scripts/deps.sh` installs everything the tests need)"
    );
    Box::leak(path.to_string().into_boxed_str())
}

/// `/bin/busybox`, checked to exist and to be statically linked (Debian's
/// busybox-static): the confinement tests copy it into a bare rootfs.
pub fn busybox() -> &'static str {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        require("/bin/busybox", "busybox-static");
        let data = fs::read("/bin/busybox").expect("read /bin/busybox");
        assert!(
            !elf_has_interp(&data),
            "/bin/busybox is dynamically linked; install Debian's `busybox-static` \
             (apt-get install -y busybox-static)"
        );
    });
    "/bin/busybox"
}

/// Does this ELF64 file have a PT_INTERP program header (dynamic linking)?
fn elf_has_interp(d: &[u8]) -> bool {
    assert!(
        d.len() > 64 && &d[..4] == b"\x7fELF" && d[4] == 2,
        "not an ELF64 file"
    );
    let u16_at = |o: usize| u16::from_le_bytes([d[o], d[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(d[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= d.len() && u32::from_le_bytes(d[o..o + 4].try_into().unwrap()) == 3
    })
}

pub fn bash() -> &'static str {
    require("/bin/bash", "bash")
}

pub fn python3() -> &'static str {
    require("/usr/bin/python3", "python3")
}

// ---------------------------------------------------------------------------
// Guest C programs
// ---------------------------------------------------------------------------

/// Compile `tests/guests/NAME.c` with `cc -O1 -pthread [-static]` into
/// `target/guests/NAME-{static,dyn}` unless that is newer than the source.
/// Safe against parallel tests compiling the same guest: each compiles to
/// a private temporary name and renames it into place atomically.
pub fn guest(name: &str, static_: bool) -> PathBuf {
    let src = repo_root().join("tests/guests").join(format!("{name}.c"));
    assert!(src.is_file(), "guest source {} not found", src.display());
    let dir = target_dir().join("guests");
    fs::create_dir_all(&dir).expect("create target/guests");
    let kind = if static_ { "static" } else { "dyn" };
    let out = dir.join(format!("{name}-{kind}"));

    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(o), Some(s)) = (mtime(&out), mtime(&src))
        && o >= s
    {
        return out;
    }

    let cc = find_in_path("cc").unwrap_or_else(|| {
        panic!(
            "no `cc` in PATH: install the Debian packages `gcc` and `libc6-dev` (scripts/deps.sh)"
        )
    });
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let tmp = dir.join(format!(
        ".{name}-{kind}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let mut cmd = Command::new(cc);
    cmd.args(["-O1", "-pthread", "-Wall", "-D_GNU_SOURCE"]);
    if static_ {
        cmd.arg("-static");
    }
    cmd.arg("-o").arg(&tmp).arg(&src);
    let res = cmd.output().expect("run cc");
    if !res.status.success() {
        let _ = fs::remove_file(&tmp);
        panic!(
            "compiling guest {name} ({kind}) failed: {cmd:?}\n{}",
            String::from_utf8_lossy(&res.stderr)
        );
    }
    fs::rename(&tmp, &out).expect("rename compiled guest into place");
    out
}

fn find_in_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------
// Host tree snapshots (overlay tests)
// ---------------------------------------------------------------------------

/// A textual snapshot of a directory tree: one line per entry with its
/// relative path, type, mode, mtime, and size and content hash (files) or
/// target (symlinks).
pub fn tree_snapshot(root: &Path) -> String {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let md = fs::symlink_metadata(&p).expect("lstat");
            let mode = md.permissions().mode() & 0o7777;
            let mode = format!("{mode:o} mtime={}.{:09}", md.mtime(), md.mtime_nsec());
            let ft = md.file_type();
            if ft.is_symlink() {
                let t = fs::read_link(&p).expect("readlink");
                out.push(format!("{rel} link {mode} -> {}", t.display()));
            } else if ft.is_dir() {
                out.push(format!("{rel} dir {mode}"));
                walk(root, &p, out);
            } else {
                let data = fs::read(&p).expect("read file");
                out.push(format!(
                    "{rel} file {mode} {} {:016x}",
                    data.len(),
                    fnv1a(&data)
                ));
            }
        }
    }
    let mut lines = Vec::new();
    let md = fs::metadata(root).expect("stat root");
    lines.push(format!(
        ". dir {:o} mtime={}.{:09}",
        md.permissions().mode() & 0o7777,
        md.mtime(),
        md.mtime_nsec()
    ));
    walk(root, root, &mut lines);
    lines.join("\n") + "\n"
}

pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
