//! The rvisor command line.

#[path = "rvisor/sandboxes.rs"]
mod sandboxes;

use clap::{Parser, Subcommand};
use rvisor::{Args, Config, Loader, PlatformKind, RootMode};
use sandboxes::ContainerOpts;
use std::os::fd::AsFd;
use std::process::ExitCode;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

#[derive(Parser, Debug)]
#[command(
    name = "rvisor",
    version,
    about = "Run Linux programs in a user-space kernel sandbox"
)]
struct Cli {
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn")]
    log_level: String,
    /// Write the sandbox's log here instead of stderr (which the
    /// application shares).
    #[arg(long, global = true)]
    log_file: Option<std::path::PathBuf>,
    /// Directory holding each sandbox's state and control socket.
    #[arg(long, global = true)]
    root: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run a command with the host's root as a copy-on-write rootfs.
    Do {
        /// Platform (ptrace).
        #[arg(long, default_value = "ptrace")]
        platform: PlatformKind,
        /// Log every syscall.
        #[arg(long)]
        strace: bool,
        /// Command and arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Run a command in a given rootfs.
    Run {
        /// Root filesystem directory.
        #[arg(long)]
        rootfs: std::path::PathBuf,
        /// Give the program a terminal (the spec's `process.terminal`).
        #[arg(long, short = 't')]
        terminal: bool,
        /// Working directory inside the sandbox.
        #[arg(long, default_value = "/")]
        cwd: String,
        /// Environment variables (K=V).
        #[arg(long = "env")]
        env: Vec<String>,
        /// Platform (ptrace).
        #[arg(long, default_value = "ptrace")]
        platform: PlatformKind,
        /// Log every syscall.
        #[arg(long)]
        strace: bool,
        /// Command and arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<String>,
    },
    /// Create a sandbox (its root container created, not started).
    Create(ContainerOpts),
    /// The sandbox process itself (started by `create`).
    #[command(hide = true)]
    Boot(ContainerOpts),
    /// Start a created sandbox's root container.
    Start {
        /// Sandbox id.
        id: String,
    },
    /// Wait for the root container; exit with its status.
    Wait {
        /// Sandbox id.
        id: String,
    },
    /// Run a process in a running sandbox.
    Exec {
        /// Print the PID and return at once.
        #[arg(long)]
        detach: bool,
        /// Working directory.
        #[arg(long)]
        cwd: Option<String>,
        /// Environment variables (K=V).
        #[arg(long = "env")]
        env: Vec<String>,
        /// Sandbox id.
        id: String,
        /// Command and arguments.
        #[arg(required = true, last = true)]
        cmd: Vec<String>,
    },
    /// List a sandbox's processes.
    Ps {
        /// Output format: table or json.
        #[arg(long, default_value = "table")]
        format: String,
        /// Sandbox id.
        id: String,
    },
    /// Send a signal (default SIGTERM) to the root container's init, a
    /// process, or all processes.
    Kill {
        /// Every process (the sandbox pauses while signalling).
        #[arg(long, conflicts_with = "pid")]
        all: bool,
        /// One process.
        #[arg(long)]
        pid: Option<i32>,
        /// Sandbox id.
        id: String,
        /// Signal name or number.
        signal: Option<String>,
    },
    /// Stop every task of a sandbox.
    Pause {
        /// Sandbox id.
        id: String,
    },
    /// Resume a paused sandbox.
    Resume {
        /// Sandbox id.
        id: String,
    },
    /// Print resource usage as one JSON object.
    Events {
        /// Print statistics once (the only mode so far).
        #[arg(long)]
        stats: bool,
        /// Sandbox id.
        id: String,
    },
    /// Destroy a sandbox.
    Delete {
        /// Kill a running sandbox.
        #[arg(long)]
        force: bool,
        /// Sandbox id.
        id: String,
    },
    /// Inspect or tune a running sandbox.
    Debug {
        /// Print every task's state and registers.
        #[arg(long)]
        stacks: bool,
        /// Change the log level.
        #[arg(long)]
        log_level: Option<String>,
        /// Turn syscall tracing on or off.
        #[arg(long)]
        strace: Option<String>,
        /// Sandbox id.
        id: String,
    },
    /// Save a sandbox to a statefile (it ends, unless --leave-running).
    Checkpoint {
        /// The statefile to write.
        #[arg(long)]
        image_path: std::path::PathBuf,
        /// Keep the sandbox running after the save.
        #[arg(long)]
        leave_running: bool,
        /// Sandbox id.
        id: String,
    },
    /// Restore a statefile into a new, running sandbox.
    Restore {
        /// The statefile to read.
        #[arg(long)]
        image_path: std::path::PathBuf,
        /// Id of the new sandbox.
        id: String,
    },
    /// Print the syscall compatibility table.
    Syscalls,
}

fn stdio() -> std::io::Result<[std::os::fd::OwnedFd; 3]> {
    Ok([
        std::io::stdin().as_fd().try_clone_to_owned()?,
        std::io::stdout().as_fd().try_clone_to_owned()?,
        std::io::stderr().as_fd().try_clone_to_owned()?,
    ])
}

fn run_sandbox(spec: oci_spec::runtime::Spec, config: Config) -> Result<i32, String> {
    let stdio = stdio().map_err(|e| format!("stdio: {e}"))?;
    let loader = Loader::new(Args {
        spec,
        config,
        stdio,
    })
    .map_err(|e| e.to_string())?;
    // The sandbox process confines itself before the first application
    // instruction runs (RVISOR_NO_SECCOMP=1 turns this off for debugging).
    if std::env::var_os("RVISOR_NO_SECCOMP").is_none() {
        rvisor::loader::filter::install()?;
    }
    let started = loader.start().map_err(|e| e.to_string())?;
    forward_signals(started.kernel().clone());
    let status = started.wait();
    started.destroy();
    Ok(status.shell_code())
}

/// Signals that `do` and `run` pass on to the application instead of
/// dying of them (like a shell running the program in the foreground).
const FORWARDED: [i32; 6] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGWINCH,
];

/// Blocks the forwarded signals in this (still single-purpose) thread;
/// must run before any other thread starts so all inherit the mask.
fn block_forwarded() {
    let mut set = nix::sys::signal::SigSet::empty();
    for s in FORWARDED {
        if let Ok(sig) = nix::sys::signal::Signal::try_from(s) {
            set.add(sig);
        }
    }
    let _ = set.thread_block();
}

/// Forwards signals sent to rvisor to the container's foreground process
/// group (init's).
fn forward_signals(k: std::sync::Arc<rvisor::kernel::Kernel>) {
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut set = nix::sys::signal::SigSet::empty();
            for s in FORWARDED {
                if let Ok(sig) = nix::sys::signal::Signal::try_from(s) {
                    set.add(sig);
                }
            }
            while let Ok(sig) = set.wait() {
                if k.init_status().is_some() {
                    return;
                }
                let pgid = k
                    .group(1)
                    .map(|g| rvisor::kernel::task::lock(&g.inner).pgid)
                    .unwrap_or(1);
                if k.signal_process_group(pgid, sig as i32).is_err() {
                    let _ = k.signal_process(1, sig as i32);
                }
            }
        });
}

/// Sets an environment variable for the processes we start (`create`
/// starts `boot`), while this process is still single-threaded.
fn set_env_early(k: &str, v: &std::ffi::OsStr) {
    // SAFETY: called at the top of main, before any other thread exists,
    // so nothing reads the environment concurrently.
    unsafe { std::env::set_var(k, v) };
}

fn level_filter(l: rvisor::ctl::LogLevel) -> LevelFilter {
    use rvisor::ctl::LogLevel::*;
    match l {
        Error => LevelFilter::ERROR,
        Warn => LevelFilter::WARN,
        Info => LevelFilter::INFO,
        Debug => LevelFilter::DEBUG,
        Trace => LevelFilter::TRACE,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.cmd, Cmd::Do { .. } | Cmd::Run { .. }) {
        block_forwarded();
    }
    // `create` passes its logging flags on to the sandbox process it starts.
    if let Some(f) = &cli.log_file {
        set_env_early("RVISOR_LOG_FILE", f.as_os_str());
        set_env_early("RVISOR_LOG_LEVEL", std::ffi::OsStr::new(&cli.log_level));
    }
    let log_file = cli
        .log_file
        .clone()
        .or_else(|| std::env::var_os("RVISOR_LOG_FILE").map(Into::into));
    let log_level = std::env::var("RVISOR_LOG_LEVEL")
        .ok()
        .filter(|_| cli.log_file.is_none())
        .unwrap_or(cli.log_level.clone());
    let level: LevelFilter = log_level.parse().unwrap_or(LevelFilter::WARN);
    let (filter, reload) = tracing_subscriber::reload::Layer::new(level);
    let fmt = tracing_subscriber::fmt::layer().with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    match log_file.as_ref().map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
    }) {
        Some(Ok(f)) => registry
            .with(fmt.with_ansi(false).with_writer(std::sync::Mutex::new(f)))
            .init(),
        Some(Err(e)) => {
            eprintln!("rvisor: cannot open the log file: {e}");
            return ExitCode::from(125);
        }
        None => registry
            .with(
                fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
    let root = cli.root.clone().unwrap_or_else(sandboxes::default_root);
    let res = match cli.cmd {
        Cmd::Do {
            platform,
            strace,
            cmd,
        } => {
            let cwd = std::env::current_dir()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "/".into());
            let env: Vec<String> = std::env::vars_os()
                .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
                .collect();
            let argv: Vec<&str> = cmd.iter().map(|s| s.as_str()).collect();
            rvisor::simple_spec("/", &cwd, &argv, &env)
                .map_err(|e| e.to_string())
                .and_then(|spec| {
                    run_sandbox(
                        spec,
                        Config {
                            platform,
                            strace,
                            root_mode: RootMode::Overlay,
                            tmp_tmpfs: false,
                        },
                    )
                })
        }
        Cmd::Run {
            rootfs,
            terminal,
            cwd,
            env,
            platform,
            strace,
            cmd,
        } => {
            let argv: Vec<&str> = cmd.iter().map(|s| s.as_str()).collect();
            let root = rootfs.to_string_lossy().into_owned();
            rvisor::simple_spec(&root, &cwd, &argv, &env)
                .map_err(|e| e.to_string())
                .map(|mut spec| {
                    if terminal && let Some(p) = spec.process().clone() {
                        let mut p = p;
                        p.set_terminal(Some(true));
                        spec.set_process(Some(p));
                    }
                    spec
                })
                .and_then(|spec| {
                    run_sandbox(
                        spec,
                        Config {
                            platform,
                            strace,
                            root_mode: RootMode::Overlay,
                            tmp_tmpfs: true,
                        },
                    )
                })
        }
        Cmd::Create(opts) => sandboxes::create(&root, &opts),
        Cmd::Boot(opts) => {
            let hook: rvisor::ctl::sandbox::LogLevelHook = Box::new(move |l| {
                reload
                    .modify(|f| *f = level_filter(l))
                    .map_err(|e| e.to_string())
            });
            sandboxes::boot(&root, &opts, Some(hook))
        }
        Cmd::Start { id } => sandboxes::start(&root, &id),
        Cmd::Wait { id } => sandboxes::wait(&root, &id),
        Cmd::Exec {
            detach,
            cwd,
            env,
            id,
            cmd,
        } => sandboxes::exec(&root, &id, detach, cwd, env, cmd),
        Cmd::Ps { format, id } => sandboxes::ps(&root, &id, format == "json"),
        Cmd::Kill {
            all,
            pid,
            id,
            signal,
        } => sandboxes::kill(&root, &id, all, pid, signal),
        Cmd::Pause { id } => sandboxes::pause(&root, &id, false),
        Cmd::Resume { id } => sandboxes::pause(&root, &id, true),
        Cmd::Events { stats: _, id } => sandboxes::events(&root, &id),
        Cmd::Delete { force, id } => sandboxes::delete(&root, &id, force),
        Cmd::Debug {
            stacks,
            log_level,
            strace,
            id,
        } => sandboxes::debug(&root, &id, stacks, log_level, strace),
        Cmd::Checkpoint {
            image_path,
            leave_running,
            id,
        } => sandboxes::checkpoint(&root, &id, &image_path, leave_running),
        Cmd::Restore { image_path, id } => sandboxes::restore(&root, &id, &image_path),
        Cmd::Syscalls => {
            for e in rvisor::kernel::syscalls::entries() {
                if e.name.is_empty() {
                    continue;
                }
                let note = if e.note.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", e.note)
                };
                println!("{:>3} {:<24} {:?}{}", e.nr, e.name, e.support, note);
            }
            Ok(0)
        }
    };
    match res {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("rvisor: {e}");
            ExitCode::from(125)
        }
    }
}
