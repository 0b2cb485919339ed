//! The rvisor command line.

use clap::{Parser, Subcommand};
use rvisor::{Args, Config, Loader, PlatformKind, RootMode};
use std::os::fd::AsFd;
use std::process::ExitCode;

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
    let status = started.wait();
    started.destroy();
    Ok(status.shell_code())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = cli.log_level.parse().unwrap_or(tracing::Level::WARN);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false);
    match cli.log_file.as_ref().map(|p| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
    }) {
        Some(Ok(f)) => builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .init(),
        Some(Err(e)) => {
            eprintln!("rvisor: cannot open the log file: {e}");
            return ExitCode::from(125);
        }
        None => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .init(),
    }
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
        Cmd::Syscalls => {
            for e in rvisor::kernel::syscalls::entries() {
                if e.name.is_empty() {
                    continue;
                }
                println!(
                    "{:>3} {:<24} {:?}{}",
                    e.nr,
                    e.name,
                    e.support,
                    if e.note.is_empty() {
                        String::new()
                    } else {
                        format!(" — {}", e.note)
                    }
                );
            }
            Ok(0)
        }
    };
    match res {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("rvisor: {e}");
            ExitCode::from(125)
        }
    }
}
