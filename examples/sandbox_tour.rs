//! A tour of the sandbox lifecycle through the library: boot a sandbox,
//! exec two processes, list them, pause and show that a counter stops
//! advancing, resume, signal, and wait.
//!
//! Run it with `cargo run --example sandbox_tour`; the tests run it too.

use rvisor::loader::{ExecArgs, SignalDelivery};
use rvisor::{Args, Config, Loader, RootMode};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

fn devnull() -> std::io::Result<OwnedFd> {
    Ok(std::fs::File::open("/dev/null")?.into())
}

fn stdio_to(path: &Path) -> std::io::Result<[OwnedFd; 3]> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok([devnull()?, out.as_fd().try_clone_to_owned()?, out.into()])
}

fn exec(
    started: &Loader<rvisor::state::Started>,
    script: &str,
    out: &Path,
) -> Result<i32, Box<dyn std::error::Error>> {
    Ok(started.exec(ExecArgs {
        argv: vec![
            b"/bin/busybox".to_vec(),
            b"sh".to_vec(),
            b"-c".to_vec(),
            script.as_bytes().to_vec(),
        ],
        envp: vec![b"PATH=/bin:/usr/bin".to_vec()],
        cwd: b"/".to_vec(),
        uid: 0,
        gid: 0,
        stdio: stdio_to(out)?,
    })?)
}

/// Runs the tour; returns what it observed.
pub fn tour(scratch: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let mut report = String::new();
    std::fs::create_dir_all(scratch)?;
    let counter_out = scratch.join("counter.txt");
    let _ = std::fs::remove_file(&counter_out);
    // The root container sleeps; the work happens in exec'd processes.
    let spec = rvisor::simple_spec("/", "/", &["/bin/busybox", "sleep", "30"], &[])?;
    let stdio = [devnull()?, devnull()?, devnull()?];
    let config = Config {
        root_mode: RootMode::Overlay,
        ..Config::default()
    };
    let started = Loader::new(Args {
        spec,
        config,
        stdio,
    })?
    .start()?;

    let counter = exec(
        &started,
        "i=0; while true; do echo $i; i=$((i+1)); sleep 0.01; done",
        &counter_out,
    )?;
    let sleeper = exec(&started, "sleep 30", &scratch.join("sleeper.txt"))?;
    std::thread::sleep(Duration::from_millis(200));
    let procs = started.processes();
    report += &format!(
        "processes: {}\n",
        procs
            .iter()
            .map(|p| format!("{}:{}", p.pid, p.cmd))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(procs.iter().any(|p| p.pid == counter) && procs.iter().any(|p| p.pid == sleeper));

    let paused = started.pause().map_err(|(_, e)| e)?;
    let before = std::fs::metadata(&counter_out)?.len();
    std::thread::sleep(Duration::from_millis(300));
    let after = std::fs::metadata(&counter_out)?.len();
    report += &format!("paused: counter output {before} -> {after} bytes\n");
    let started = paused.resume();
    std::thread::sleep(Duration::from_millis(200));
    let resumed = std::fs::metadata(&counter_out)?.len();
    report += &format!("resumed: counter output {after} -> {resumed} bytes\n");

    started.signal(libc::SIGTERM, SignalDelivery::Process(counter))?;
    let st = started.wait_pid(counter)?;
    report += &format!("counter ended: {:?} (shell code {})\n", st, st.shell_code());
    started.signal(libc::SIGKILL, SignalDelivery::AllProcesses)?;
    let root = started.wait();
    report += &format!("root container ended: {:?}\n", root);
    started.destroy();
    Ok(report)
}

#[allow(dead_code)] // when included by the tests, `main` is not the entry point
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let scratch = std::env::temp_dir().join(format!("rvisor-tour-{}", std::process::id()));
    print!("{}", tour(&scratch)?);
    std::fs::remove_dir_all(&scratch).ok();
    Ok(())
}
