//! The control plane end to end: sandboxes created with the CLI
//! (`rvisor create` starts a dedicated `rvisor boot` process), driven from
//! this test process through the typed `ctl::Client`, running real
//! programs (busybox sh, sleep, a counter loop).

mod common;
use common::*;
use rvisor::ctl::{Client, ErrorKind, ExecArgs, LoggingArgs, SignalDelivery, Strace};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../examples/sandbox_tour.rs"]
mod sandbox_tour;

/// A sandbox created with `rvisor create`, deleted on drop.
struct Sandbox {
    root: PathBuf,
    id: String,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Sandbox {
    fn create(name: &str, script: &str) -> Sandbox {
        let base = target_dir().join("tmp");
        std::fs::create_dir_all(&base).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("rvisor-ctl-")
            .tempdir_in(&base)
            .unwrap();
        let root = dir.path().join("state");
        let out = dir.path().join("out.txt");
        let id = format!("{name}-{}", std::process::id());
        let f = std::fs::File::create(&out).unwrap();
        let st = Command::new(rvisor_bin())
            .arg("--root")
            .arg(&root)
            .args([
                "create",
                "--host-root",
                &id,
                "--",
                "/bin/busybox",
                "sh",
                "-c",
                script,
            ])
            .stdin(std::process::Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .status()
            .expect("rvisor create");
        assert!(
            st.success(),
            "create failed: {st:?}\n{}",
            std::fs::read_to_string(&out).unwrap_or_default()
        );
        Sandbox {
            root,
            id,
            out,
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        Client::connect(self.root.join(&self.id).join("control.sock")).expect("connect")
    }

    fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(rvisor_bin());
        cmd.arg("--root").arg(&self.root).args(args);
        run_command(
            cmd,
            b"",
            Duration::from_secs(60),
            &format!("rvisor {args:?}"),
        )
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.root.join(&self.id).exists() {
            let _ = Command::new(rvisor_bin())
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "--force", &self.id])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn exec_args(argv: &[&str]) -> ExecArgs {
    ExecArgs {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec!["PATH=/bin:/usr/bin".into()],
        cwd: "/".into(),
        ..Default::default()
    }
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[test]
fn lifecycle_start_exec_wait_delete() {
    let sb = Sandbox::create("life", "echo root says hi; exit 3");
    let mut c = sb.client();
    // Before start: Wait is an invalid state, with its errno.
    let e = c.wait(&sb.id).expect_err("wait before start");
    assert_eq!(e.kind(), Some(ErrorKind::InvalidState), "{e}");
    c.start_root().expect("start");
    let e = c.start_root().expect_err("second start");
    assert_eq!(e.kind(), Some(ErrorKind::InvalidState));
    let st = c.wait(&sb.id).expect("wait");
    assert_eq!(st.shell_code(), 3);
    assert_eq!(sb.output(), "root says hi\n");
    // The CLI's wait reports the same status.
    assert_eq!(sb.cli(&["wait", &sb.id]).status, 3);
    let del = sb.cli(&["delete", &sb.id]);
    assert_eq!(del.status, 0, "{}", del.stderr_str());
    assert!(!sb.root.join(&sb.id).exists(), "state dir left behind");
}

#[test]
fn exec_wait_pid_processes_events_signals() {
    let sb = Sandbox::create("ops", "sleep 30");
    let mut c = sb.client();
    c.start_root().unwrap();
    // ExecuteAsync with our descriptors; WaitPid reaps it.
    let out = sb._dir.path().join("exec.txt");
    let f = std::fs::File::create(&out).unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let pid = c
        .execute_async(
            &sb.id,
            &exec_args(&["/bin/busybox", "sh", "-c", "echo exec output; exit 5"]),
            [null.as_fd(), f.as_fd(), f.as_fd()],
        )
        .expect("exec");
    assert!(pid > 1);
    assert_eq!(c.wait_pid(&sb.id, pid).unwrap().shell_code(), 5);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "exec output\n");
    // A missing program is a typed error with ENOENT.
    let e = c
        .execute_async(
            &sb.id,
            &exec_args(&["/no/such"]),
            [null.as_fd(), f.as_fd(), f.as_fd()],
        )
        .expect_err("missing");
    assert_eq!(e.errno().map(|e| e.0), Some(libc::ENOENT), "{e}");
    // Processes like ps.
    let sleeper = c
        .execute_async(
            &sb.id,
            &exec_args(&["/bin/busybox", "sleep", "30"]),
            [null.as_fd(), f.as_fd(), f.as_fd()],
        )
        .unwrap();
    let ps = c.processes(&sb.id).unwrap();
    let init = ps.iter().find(|p| p.pid == 1).expect("init listed");
    assert!(init.cmd.contains("sleep 30"), "{ps:?}");
    assert!(
        ps.iter()
            .any(|p| p.pid == sleeper && p.cmd == "/bin/busybox sleep 30"),
        "{ps:?}"
    );
    // Stats.
    let ev = c.event(&sb.id).unwrap();
    assert_eq!(ev.event.id, sb.id);
    assert!(ev.event.data.pids.current >= 2, "{ev:?}");
    assert!(ev.event.data.memory.usage.usage > 0, "{ev:?}");
    // SignalProcess.
    c.signal(&sb.id, sleeper, libc::SIGTERM, SignalDelivery::Process)
        .unwrap();
    assert_eq!(
        c.wait_pid(&sb.id, sleeper).unwrap().signal(),
        Some(libc::SIGTERM)
    );
    // Signal to a missing process: ESRCH.
    let e = c
        .signal(&sb.id, 99999, libc::SIGTERM, SignalDelivery::Process)
        .expect_err("no such pid");
    assert_eq!(e.errno().map(|e| e.0), Some(libc::ESRCH));
    // Foreground process group of init (no terminal): init's group.
    c.signal(
        &sb.id,
        0,
        libc::SIGKILL,
        SignalDelivery::ForegroundProcessGroup,
    )
    .unwrap();
    assert_eq!(c.wait(&sb.id).unwrap().signal(), Some(libc::SIGKILL));
}

#[test]
fn pause_stops_the_world() {
    let sb = Sandbox::create(
        "pause",
        "i=0; while true; do echo $i; i=$((i+1)); sleep 0.01; done",
    );
    let mut c = sb.client();
    c.start_root().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while file_len(&sb.out) < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        file_len(&sb.out) >= 20,
        "counter never started: {:?}",
        sb.output()
    );
    c.pause().unwrap();
    let e = c.pause().expect_err("second pause");
    assert_eq!(e.kind(), Some(ErrorKind::InvalidState));
    let frozen = file_len(&sb.out);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        file_len(&sb.out),
        frozen,
        "the counter advanced while paused"
    );
    // Inspection works while paused.
    assert!(!c.processes(&sb.id).unwrap().is_empty());
    let stacks = c.stacks().unwrap();
    assert!(
        stacks.tasks.iter().any(|t| t.pid == 1),
        "{}",
        stacks.render()
    );
    c.resume().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while file_len(&sb.out) <= frozen && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(file_len(&sb.out) > frozen, "the counter did not resume");
    // The CLI forms.
    assert_eq!(sb.cli(&["pause", &sb.id]).status, 0);
    assert_eq!(sb.cli(&["resume", &sb.id]).status, 0);
    let ps = sb.cli(&["ps", "--format", "json", &sb.id]);
    assert_eq!(ps.status, 0);
    assert!(ps.stdout_str().contains("\"pid\":1"), "{}", ps.stdout_str());
    let ev = sb.cli(&["events", "--stats", &sb.id]);
    assert!(
        ev.stdout_str().contains("\"type\":\"stats\""),
        "{}",
        ev.stdout_str()
    );
}

#[test]
fn kill_all_stops_a_fork_bomb() {
    // Forks without end, each child sleeping; only pausing while signalling
    // catches every one.
    let sb = Sandbox::create("bomb", "while true; do /bin/busybox sleep 100 & done");
    let mut c = sb.client();
    c.start_root().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let before = c.processes(&sb.id).unwrap().len();
    assert!(before > 3, "the bomb did not fork: {before}");
    let k = sb.cli(&["kill", "--all", &sb.id, "KILL"]);
    assert_eq!(k.status, 0, "{}", k.stderr_str());
    let st = c.wait(&sb.id).unwrap();
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let live: Vec<_> = c
            .processes(&sb.id)
            .unwrap()
            .into_iter()
            .filter(|p| p.state.as_char() != 'Z')
            .collect();
        if live.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "processes survived kill --all: {live:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn debug_logging_and_unsupported_operations() {
    let sb = Sandbox::create("dbg", "sleep 30");
    let mut c = sb.client();
    c.start_root().unwrap();
    c.logging_change(&LoggingArgs {
        level: Some("debug".parse().unwrap()),
        strace: Some(Strace::On {
            allowlist: vec!["getpid".into()],
        }),
    })
    .unwrap();
    c.logging_change(&LoggingArgs {
        level: None,
        strace: Some(Strace::Off),
    })
    .unwrap();
    assert_eq!(sb.cli(&["debug", "--strace", "off", &sb.id]).status, 0);
    let stacks = sb.cli(&["debug", "--stacks", &sb.id]);
    assert!(
        stacks.stdout_str().contains("task 1"),
        "{}",
        stacks.stdout_str()
    );
    // Profiling is not there yet: typed Unsupported, and the sandbox keeps
    // serving.
    let prof = std::fs::File::create(sb._dir.path().join("prof")).unwrap();
    let e = c
        .profile(
            rvisor::ctl::ProfileKind::Cpu,
            Duration::from_millis(10),
            prof.as_fd(),
        )
        .expect_err("profile");
    assert_eq!(e.kind(), Some(ErrorKind::Unsupported), "{e}");
    assert!(c.processes(&sb.id).is_ok());
    // Unknown container ids are NotFound.
    let e = c.processes("nope").expect_err("unknown id");
    assert_eq!(e.kind(), Some(ErrorKind::NotFound));
}

#[test]
fn library_tour_example() {
    let scratch = target_dir()
        .join("tmp")
        .join(format!("tour-{}", std::process::id()));
    let report = sandbox_tour::tour(&scratch).expect("tour");
    std::fs::remove_dir_all(&scratch).ok();
    let paused = report.lines().find(|l| l.starts_with("paused:")).unwrap();
    let nums: Vec<&str> = paused
        .split_whitespace()
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(nums[0], nums[1], "counter advanced while paused: {report}");
    assert!(report.contains("shell code 143"), "{report}");
}

/// A simple deterministic generator (xorshift) for hostile input.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn hostile_clients_do_not_disturb_the_sandbox() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    let sb = Sandbox::create(
        "hostile",
        "i=0; while true; do echo $i; i=$((i+1)); sleep 0.01; done",
    );
    let sock = sb.root.join(&sb.id).join("control.sock");
    let mut good = sb.client();
    good.start_root().unwrap();
    let valid =
        rvisor::ctl::frame::encode(&rvisor::ctl::Request::Processes { id: sb.id.clone() }).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let started = Instant::now();
    let mut answered = 0usize;
    for i in 0..10_000u32 {
        let mut frame = match i % 5 {
            // Random bytes.
            0 => (0..(rng.next() % 64) as usize)
                .map(|_| rng.next() as u8)
                .collect::<Vec<u8>>(),
            // A valid frame with a few bytes flipped.
            1 => {
                let mut f = valid.clone();
                for _ in 0..3 {
                    let at = (rng.next() as usize) % f.len();
                    f[at] ^= (rng.next() as u8) | 1;
                }
                f
            }
            // An oversized length.
            2 => {
                let mut f = (u32::MAX - (rng.next() as u32 % 1000))
                    .to_le_bytes()
                    .to_vec();
                f.extend_from_slice(&[0; 8]);
                f
            }
            // Truncated.
            3 => valid[..(rng.next() as usize) % valid.len()].to_vec(),
            // Trailing garbage inside the declared length.
            _ => {
                let mut f = valid.clone();
                f.push(0x42);
                let len = (f.len() - 4) as u32;
                f[..4].copy_from_slice(&len.to_le_bytes());
                f
            }
        };
        if frame.is_empty() {
            frame.push(0);
        }
        let mut s = UnixStream::connect(&sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(&frame);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        if !resp.is_empty() {
            answered += 1;
        }
    }
    let rate = 10_000.0 / started.elapsed().as_secs_f64();
    eprintln!("hostile frames: 10000 sent, {answered} answered, {rate:.0} frames/s");
    // 1,000 descriptors, 16 per message on one connection each.
    let pipe = nix::unistd::pipe().unwrap();
    for _ in 0..63 {
        let s = UnixStream::connect(&sock).unwrap();
        let fds: Vec<std::os::fd::BorrowedFd<'_>> = (0..16).map(|_| pipe.1.as_fd()).collect();
        let _ = rvisor::ctl::frame::send(&s, &rvisor::ctl::Request::Pause, &fds);
    }
    // A peer with another uid cannot connect (the socket is 0600).
    // SAFETY: the child only calls setuid, connect and _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = unsafe {
            if libc::setuid(65534) != 0 {
                libc::_exit(2);
            }
            match UnixStream::connect(&sock) {
                Ok(_) => 1,
                Err(_) => 0,
            }
        };
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "another uid could connect"
    );
    // The well-formed client and the application are unaffected.
    let ps = good
        .processes(&sb.id)
        .expect("well-formed client still served");
    assert!(ps.iter().any(|p| p.pid == 1));
    let before = file_len(&sb.out);
    std::thread::sleep(Duration::from_millis(300));
    assert!(file_len(&sb.out) > before, "the application stopped");
    // The stray Pause requests were refused (they carried descriptors).
    let e = good.resume().expect_err("not paused");
    assert_eq!(e.kind(), Some(ErrorKind::InvalidState));
}

#[test]
fn sub_containers_share_the_kernel_with_their_own_root() {
    let sb = Sandbox::create("subs", "sleep 30");
    let mut c = sb.client();
    c.start_root().unwrap();
    // A second container with its own rootfs holding only busybox.
    let rootfs = sb._dir.path().join("subroot");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy(busybox(), rootfs.join("bin/busybox")).unwrap();
    std::fs::write(rootfs.join("hello.txt"), "only in the sub-container\n").unwrap();
    let spec = rvisor::simple_spec(
        rootfs.to_str().unwrap(),
        "/",
        &[
            "/bin/busybox",
            "sh",
            "-c",
            "cat /hello.txt; /bin/busybox ls /; sleep 0.3; exit 4",
        ],
        &[],
    )
    .unwrap();
    let out = sb._dir.path().join("sub.txt");
    let f = std::fs::File::create(&out).unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    c.create("sub1", &spec, Some([null.as_fd(), f.as_fd(), f.as_fd()]))
        .expect("create sub-container");
    let e = c.create("sub1", &spec, None).expect_err("duplicate id");
    assert_eq!(e.errno().map(|e| e.0), Some(libc::EEXIST), "{e}");
    c.start("sub1").expect("start sub-container");
    let ps = c.processes("sub1").unwrap();
    assert!(!ps.is_empty(), "{ps:?}");
    assert!(
        !ps.iter().any(|p| p.pid == 1),
        "the root container's init is not the sub-container's: {ps:?}"
    );
    assert_eq!(c.wait("sub1").unwrap().shell_code(), 4);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.starts_with("only in the sub-container\n"), "{text}");
    assert!(
        text.contains("hello.txt") && !text.contains("usr"),
        "the sub-container saw another root: {text}"
    );
    // The root container is untouched.
    assert!(
        c.processes(&sb.id)
            .unwrap()
            .iter()
            .any(|p| p.pid == 1 && p.state.as_char() != 'Z')
    );
    c.destroy("sub1").expect("destroy sub-container");
    let e = c.processes("sub1").expect_err("destroyed");
    assert_eq!(e.kind(), Some(ErrorKind::NotFound));
}
