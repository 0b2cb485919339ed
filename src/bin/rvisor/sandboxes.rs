//! `rvisor create/boot/start/wait/exec/ps/kill/pause/resume/events/delete/
//! debug`: sandboxes driven by id through their control sockets.

use rvisor::ctl::proto::LogLevel;
use rvisor::ctl::sandbox::{LogLevelHook, SandboxHandler};
use rvisor::ctl::{Client, ExecArgs, LoggingArgs, Server, SignalDelivery, Strace};
use rvisor::{Args, Config, Loader, RootMode};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// What `create` and `boot` run.
#[derive(Debug, Clone, clap::Args)]
pub struct ContainerOpts {
    /// Root filesystem directory.
    #[arg(long, conflicts_with = "host_root")]
    pub rootfs: Option<PathBuf>,
    /// Use the host's / under a copy-on-write overlay (like `do`).
    #[arg(long)]
    pub host_root: bool,
    /// Working directory inside the sandbox.
    #[arg(long)]
    pub cwd: Option<String>,
    /// Environment variables (K=V).
    #[arg(long = "env")]
    pub env: Vec<String>,
    /// Platform (ptrace).
    #[arg(long, default_value = "ptrace")]
    pub platform: rvisor::PlatformKind,
    /// Log every syscall.
    #[arg(long)]
    pub strace: bool,
    /// Restore this statefile instead of starting CMD (used by `restore`).
    #[arg(long, hide = true)]
    pub restore: Option<PathBuf>,
    /// The sandbox's id.
    pub id: String,
    /// Command and arguments.
    #[arg(required = true, last = true)]
    pub cmd: Vec<String>,
}

impl ContainerOpts {
    fn to_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(r) = &self.rootfs {
            v.push("--rootfs".into());
            v.push(r.to_string_lossy().into_owned());
        }
        if self.host_root {
            v.push("--host-root".into());
        }
        if let Some(c) = &self.cwd {
            v.push("--cwd".into());
            v.push(c.clone());
        }
        for e in &self.env {
            v.push("--env".into());
            v.push(e.clone());
        }
        v.push("--platform".into());
        v.push(self.platform.to_string());
        if self.strace {
            v.push("--strace".into());
        }
        v.push(self.id.clone());
        v.push("--".into());
        v.extend(self.cmd.iter().cloned());
        v
    }
}

/// The state directory used when `--root` is not given.
pub fn default_root() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        PathBuf::from("/run/rvisor")
    } else if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR") {
        Path::new(&d).join("rvisor")
    } else {
        // SAFETY: as above.
        std::env::temp_dir().join(format!("rvisor-{}", unsafe { libc::geteuid() }))
    }
}

fn valid_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || id.starts_with('.')
    {
        return Err(format!(
            "invalid sandbox id {id:?}: use letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

fn state_dir(root: &Path, id: &str) -> Result<PathBuf, String> {
    valid_id(id)?;
    Ok(root.join(id))
}

fn socket_path(root: &Path, id: &str) -> Result<PathBuf, String> {
    Ok(state_dir(root, id)?.join("control.sock"))
}

/// Connects to sandbox `id`.
pub fn connect(root: &Path, id: &str) -> Result<Client, String> {
    let sock = socket_path(root, id)?;
    if !sock.exists() {
        return Err(format!("no sandbox {id:?} (no {})", sock.display()));
    }
    Client::connect(&sock).map_err(|e| format!("sandbox {id:?}: {e}"))
}

/// `rvisor create`: starts `rvisor boot` and returns once its control
/// socket answers.
pub fn create(root: &Path, opts: &ContainerOpts) -> Result<i32, String> {
    create_with(root, opts, None)
}

fn create_with(root: &Path, opts: &ContainerOpts, restore: Option<&Path>) -> Result<i32, String> {
    if opts.rootfs.is_none() && !opts.host_root {
        return Err("create needs --rootfs DIR or --host-root".into());
    }
    let dir = state_dir(root, &opts.id)?;
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    std::fs::create_dir(&dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!("sandbox {:?} already exists", opts.id)
        } else {
            format!("{}: {e}", dir.display())
        }
    })?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find rvisor itself: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root").arg(root).arg("boot");
    if let Some(img) = restore {
        cmd.arg("--restore").arg(img);
    }
    cmd.args(opts.to_args());
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe; the sandbox outlives `create`
    // and must not receive the terminal's signals meant for it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start the sandbox: {e}"))?;
    let sock = dir.join("control.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if sock.exists() && Client::connect(&sock).is_ok() {
            return Ok(0);
        }
        if let Ok(Some(st)) = child.try_wait() {
            let _ = std::fs::remove_dir_all(&dir);
            // boot printed its own one-line error.
            return Ok(st.code().unwrap_or(125).max(1));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = std::fs::remove_dir_all(&dir);
            return Err("the sandbox did not come up within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `rvisor boot`: the sandbox process. Serves the control socket until the
/// sandbox is deleted.
pub fn boot(
    root: &Path,
    opts: &ContainerOpts,
    log_level: Option<LogLevelHook>,
) -> Result<i32, String> {
    let dir = state_dir(root, &opts.id)?;
    let (rootfs, default_cwd) = match &opts.rootfs {
        Some(r) => (r.to_string_lossy().into_owned(), "/".to_string()),
        None => (
            "/".to_string(),
            std::env::current_dir()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "/".into()),
        ),
    };
    let cwd = opts.cwd.clone().unwrap_or(default_cwd);
    let env = if opts.host_root && opts.env.is_empty() {
        std::env::vars_os()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect()
    } else {
        opts.env.clone()
    };
    let argv: Vec<&str> = opts.cmd.iter().map(|s| s.as_str()).collect();
    let spec = rvisor::simple_spec(&rootfs, &cwd, &argv, &env).map_err(|e| e.to_string())?;
    let stdio = [
        std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| e.to_string())?,
        std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| e.to_string())?,
        std::io::stderr()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| e.to_string())?,
    ];
    let config = Config {
        platform: opts.platform,
        strace: opts.strace,
        root_mode: RootMode::Overlay,
        tmp_tmpfs: opts.rootfs.is_some(),
    };
    let loader = Loader::with_id(
        &opts.id,
        Args {
            spec,
            config,
            stdio,
        },
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(dir.join("boot.pid"), std::process::id().to_string())
        .map_err(|e| e.to_string())?;
    if std::env::var_os("RVISOR_NO_SECCOMP").is_none() {
        rvisor::loader::filter::install()?;
    }
    let handler = SandboxHandler::new(loader, log_level);
    // A restored sandbox answers on its socket only once it runs.
    if let Some(img) = &opts.restore {
        let f = std::fs::File::open(img).map_err(|e| format!("{}: {e}", img.display()))?;
        let (resp, _) =
            rvisor::ctl::Handler::handle(&*handler, rvisor::ctl::Request::Restore, vec![f.into()]);
        if let rvisor::ctl::Response::Error(e) = resp {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(format!("restore: {}", e.message));
        }
    }
    let server = Server::bind(&dir.join("control.sock")).map_err(|e| e.to_string())?;
    handler.set_shutdown(server.shutdown_handle());
    let res = server.serve(handler);
    let _ = std::fs::remove_dir_all(&dir);
    res.map_err(|e| e.to_string())?;
    Ok(0)
}

fn cerr(e: rvisor::ctl::ClientError) -> String {
    e.to_string()
}

/// `rvisor start ID`.
pub fn start(root: &Path, id: &str) -> Result<i32, String> {
    connect(root, id)?.start_root().map_err(cerr)?;
    Ok(0)
}

/// `rvisor wait ID`.
pub fn wait(root: &Path, id: &str) -> Result<i32, String> {
    let st = connect(root, id)?.wait(id).map_err(cerr)?;
    Ok(st.shell_code())
}

/// `rvisor exec [--detach] ID -- CMD...`.
pub fn exec(
    root: &Path,
    id: &str,
    detach: bool,
    cwd: Option<String>,
    env: Vec<String>,
    cmd: Vec<String>,
) -> Result<i32, String> {
    let mut c = connect(root, id)?;
    let env = if env.is_empty() {
        vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()]
    } else {
        env
    };
    let args = ExecArgs {
        argv: cmd,
        env,
        cwd: cwd.unwrap_or_else(|| "/".into()),
        uid: 0,
        gid: 0,
        extra_gids: Vec::new(),
    };
    let (i, o, e) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let pid = c
        .execute_async(id, &args, [i.as_fd(), o.as_fd(), e.as_fd()])
        .map_err(cerr)?;
    if detach {
        println!("{pid}");
        return Ok(0);
    }
    let st = c.wait_pid(id, pid).map_err(cerr)?;
    Ok(st.shell_code())
}

/// `rvisor ps [--format json] ID`.
pub fn ps(root: &Path, id: &str, json: bool) -> Result<i32, String> {
    let list = connect(root, id)?.processes(id).map_err(cerr)?;
    if json {
        println!(
            "{}",
            serde_json::to_string(&list).map_err(|e| e.to_string())?
        );
        return Ok(0);
    }
    println!(
        "{:<6} {:>6} {:>6} {:>3} {:>5} {:>9} {:>9}  CMD",
        "UID", "PID", "PPID", "THR", "STATE", "STIME", "TIME"
    );
    for p in list {
        println!(
            "{:<6} {:>6} {:>6} {:>3} {:>5} {:>8.2}s {:>8.2}s  {}",
            p.uid,
            p.pid,
            p.ppid,
            p.threads.len(),
            p.state.as_char(),
            p.start_time.as_secs_f64(),
            p.cpu_time.as_secs_f64(),
            p.cmd
        );
    }
    Ok(0)
}

/// Parses a signal given as a number, `TERM` or `SIGTERM`.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) {
            Ok(n)
        } else {
            Err(format!("invalid signal {s:?}"))
        };
    }
    let name = s.trim_start_matches("SIG").to_ascii_uppercase();
    let table = [
        ("HUP", 1),
        ("INT", 2),
        ("QUIT", 3),
        ("ILL", 4),
        ("TRAP", 5),
        ("ABRT", 6),
        ("BUS", 7),
        ("FPE", 8),
        ("KILL", 9),
        ("USR1", 10),
        ("SEGV", 11),
        ("USR2", 12),
        ("PIPE", 13),
        ("ALRM", 14),
        ("TERM", 15),
        ("STKFLT", 16),
        ("CHLD", 17),
        ("CONT", 18),
        ("STOP", 19),
        ("TSTP", 20),
        ("TTIN", 21),
        ("TTOU", 22),
        ("URG", 23),
        ("XCPU", 24),
        ("XFSZ", 25),
        ("VTALRM", 26),
        ("PROF", 27),
        ("WINCH", 28),
        ("IO", 29),
        ("PWR", 30),
        ("SYS", 31),
    ];
    table
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("unknown signal {s:?}"))
}

/// `rvisor kill [--all | --pid PID] ID [SIGNAL]`.
pub fn kill(
    root: &Path,
    id: &str,
    all: bool,
    pid: Option<i32>,
    signal: Option<String>,
) -> Result<i32, String> {
    let signo = parse_signal(signal.as_deref().unwrap_or("TERM"))?;
    let (pid, mode) = match (all, pid) {
        (true, _) => (0, SignalDelivery::AllProcesses),
        (false, Some(p)) => (p, SignalDelivery::Process),
        (false, None) => (0, SignalDelivery::Process),
    };
    connect(root, id)?
        .signal(id, pid, signo, mode)
        .map_err(cerr)?;
    Ok(0)
}

/// `rvisor pause ID` / `rvisor resume ID`.
pub fn pause(root: &Path, id: &str, resume: bool) -> Result<i32, String> {
    let mut c = connect(root, id)?;
    if resume { c.resume() } else { c.pause() }.map_err(cerr)?;
    Ok(0)
}

/// `rvisor events --stats ID`.
pub fn events(root: &Path, id: &str) -> Result<i32, String> {
    let ev = connect(root, id)?.event(id).map_err(cerr)?;
    println!("{}", ev.to_json().map_err(|e| e.to_string())?);
    Ok(0)
}

/// `rvisor delete [--force] ID`.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<i32, String> {
    let dir = state_dir(root, id)?;
    if !dir.exists() {
        return Err(format!("no sandbox {id:?}"));
    }
    let boot_pid: Option<i32> = std::fs::read_to_string(dir.join("boot.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    match connect(root, id) {
        Ok(mut c) => {
            if !force {
                let running = c
                    .processes(id)
                    .map_err(cerr)?
                    .iter()
                    .any(|p| p.pid == 1 && p.state.as_char() != 'Z');
                if running {
                    return Err(format!(
                        "sandbox {id:?} is running; stop it first or use --force"
                    ));
                }
            }
            c.destroy(id).map_err(cerr)?;
        }
        Err(_) => {
            // The sandbox process is gone: clean up what it left.
            let _ = std::fs::remove_dir_all(&dir);
            return Ok(0);
        }
    }
    // Wait for the sandbox process to leave, then make sure its state is gone.
    if let Some(pid) = boot_pid {
        let deadline = Instant::now() + Duration::from_secs(10);
        // SAFETY: kill with signal 0 only checks existence.
        while Instant::now() < deadline && unsafe { libc::kill(pid, 0) } == 0 && dir.exists() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(0)
}

/// `rvisor debug`.
pub fn debug(
    root: &Path,
    id: &str,
    stacks: bool,
    log_level: Option<String>,
    strace: Option<String>,
) -> Result<i32, String> {
    let mut c = connect(root, id)?;
    if stacks {
        print!("{}", c.stacks().map_err(cerr)?.render());
    }
    let level = match log_level {
        Some(l) => Some(l.parse::<LogLevel>().map_err(|e| e.to_string())?),
        None => None,
    };
    let strace = match strace.as_deref() {
        None => None,
        Some("on") => Some(Strace::On {
            allowlist: Vec::new(),
        }),
        Some("off") => Some(Strace::Off),
        Some(o) => return Err(format!("--strace takes on or off, not {o:?}")),
    };
    if level.is_some() || strace.is_some() {
        c.logging_change(&LoggingArgs { level, strace })
            .map_err(cerr)?;
    }
    Ok(0)
}

/// `rvisor checkpoint --image-path FILE [--leave-running] ID`.
pub fn checkpoint(root: &Path, id: &str, image: &Path, leave_running: bool) -> Result<i32, String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(image)
        .map_err(|e| format!("{}: {e}", image.display()))?;
    let mut c = connect(root, id)?;
    let opts = rvisor::ctl::CheckpointOptions {
        leave_running,
        ..Default::default()
    };
    c.checkpoint(opts, file.as_fd()).map_err(cerr)?;
    if !leave_running {
        // The sandbox ends after a successful save: wait for it to go.
        let dir = state_dir(root, id)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while dir.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Ok(0)
}

/// `rvisor restore --image-path FILE ID`: a new sandbox `id`, running the
/// saved one, with this command's stdio.
pub fn restore(root: &Path, id: &str, image: &Path) -> Result<i32, String> {
    if !image.is_file() {
        return Err(format!("{}: no such statefile", image.display()));
    }
    let opts = ContainerOpts {
        rootfs: None,
        host_root: true,
        cwd: Some("/".into()),
        env: Vec::new(),
        platform: rvisor::PlatformKind::Ptrace,
        strace: false,
        restore: None,
        id: id.to_string(),
        cmd: vec!["/bin/true".into()],
    };
    let image = image
        .canonicalize()
        .map_err(|e| format!("{}: {e}", image.display()))?;
    create_with(root, &opts, Some(&image))
}
