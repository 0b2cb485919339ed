//! Transport tests of the control socket: a real [`Server`] on a real
//! socket, driven from a second process (this test binary run again with
//! `RVISOR_CTL_CHILD` set) through the typed [`Client`], and attacked by
//! hostile clients.
//!
//! The handler here is a recording fake: these tests are about the
//! protocol and its transport (framing, descriptor passing, credentials,
//! errors that keep their errno, robustness), not about the sandbox behind
//! it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rvisor::Errno;
use rvisor::ctl::frame::{self, MAX_FDS, MAX_PAYLOAD, Message};
use rvisor::ctl::proto::{
    CheckpointOptions, CreateLinksAndRoutes, ErrorKind, Event, EventOut, ExecArgs, FdBasedLink,
    LogLevel, LoggingArgs, ProcessInfo, ProcessState, ProfileKind, QueueingDiscipline, Request,
    Response, SignalDelivery, Stacks, Strace, TaskStack, WaitStatus,
};
use rvisor::ctl::{
    Client, ClientError, CtlError, Handler, RunningServer, Server, control_socket_addr,
};

const CHILD_ENV: &str = "RVISOR_CTL_CHILD";
const ADDR_ENV: &str = "RVISOR_CTL_ADDR";

/// The tests of this file count the process's descriptors and change its
/// umask: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------
// The fake handler.

/// Answers every operation with fixed data, records what it was asked,
/// and uses the descriptors it is given so that passing them is checked
/// end to end.
#[derive(Default)]
struct Recorder {
    log: Mutex<Vec<String>>,
    paused: AtomicBool,
}

impl Recorder {
    fn names(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

fn err(kind: ErrorKind, msg: &str) -> Response {
    Response::Error(CtlError::new(kind, msg))
}

fn write_to(fd: OwnedFd, text: &str) -> Response {
    match File::from(fd).write_all(text.as_bytes()) {
        Ok(()) => Response::Ok,
        Err(e) => Response::Error(e.into()),
    }
}

impl Handler for Recorder {
    fn handle(&self, req: Request, mut fds: Vec<OwnedFd>) -> (Response, Vec<OwnedFd>) {
        self.log.lock().unwrap().push(req.name().to_string());
        let resp = match req {
            Request::Create { id, spec, .. } => {
                if id == "exists" {
                    err(ErrorKind::AlreadyExists, "container exists")
                } else if spec.process().as_ref().and_then(|p| p.args().clone())
                    != Some(vec!["/bin/true".to_string()])
                {
                    err(ErrorKind::InvalidArgument, "unexpected spec")
                } else {
                    Response::Ok
                }
            }
            Request::Start { id } if id == "panic" => panic!("handler bug"),
            Request::Start { .. } | Request::StartRoot => Response::Ok,
            Request::Destroy { id } if id == "missing" => {
                Response::Error(CtlError::from_errno(Errno::ESRCH, "no such container"))
            }
            Request::Destroy { .. } => Response::Ok,
            Request::Wait { .. } => Response::WaitStatus(WaitStatus::exited(7)),
            Request::WaitPid { pid: 42, .. } => {
                Response::WaitStatus(WaitStatus::signaled(libc::SIGKILL, false))
            }
            Request::WaitPid { .. } => Response::Error(Errno::ECHILD.into()),
            Request::ExecuteAsync { args, .. } => {
                let stdout = fds.swap_remove(1);
                match write_to(stdout, &format!("exec {}\n", args.argv.join(" "))) {
                    Response::Ok => Response::Pid(1000 + args.argv.len() as i32),
                    e => e,
                }
            }
            Request::Signal { signo, .. } if !(1..=64).contains(&signo) => Response::Error(
                CtlError::new(ErrorKind::InvalidArgument, format!("bad signal {signo}")),
            ),
            Request::Signal { .. } => Response::Ok,
            Request::Pause => {
                if self.paused.swap(true, Ordering::SeqCst) {
                    err(ErrorKind::InvalidState, "already paused")
                } else {
                    Response::Ok
                }
            }
            Request::Resume => {
                if self.paused.swap(false, Ordering::SeqCst) {
                    Response::Ok
                } else {
                    err(ErrorKind::InvalidState, "not paused")
                }
            }
            Request::Processes { .. } => Response::Processes(processes()),
            Request::Event { id } => Response::Event(Box::new(event(&id))),
            Request::Checkpoint(opts) => write_to(
                fds.remove(0),
                &format!("statefile leave_running={}", opts.leave_running),
            ),
            Request::Restore => {
                let mut s = String::new();
                let mut f = File::from(fds.remove(0));
                match f.rewind().and_then(|()| f.read_to_string(&mut s)) {
                    Ok(_) if s.starts_with("statefile") => Response::Ok,
                    Ok(_) => err(ErrorKind::InvalidArgument, "not a statefile"),
                    Err(e) => Response::Error(e.into()),
                }
            }
            Request::CreateLinksAndRoutes(args) if args.fd_based_links.is_empty() => Response::Ok,
            Request::CreateLinksAndRoutes(_) => {
                err(ErrorKind::Unsupported, "fd-based links arrive later")
            }
            Request::Stacks => {
                // Also hand back a descriptor: a pipe with a message in it.
                let (r, w) = nix::unistd::pipe().unwrap();
                let _ = File::from(w).write_all(b"from the server");
                return (Response::Stacks(stacks()), vec![r]);
            }
            Request::LoggingChange(_) => Response::Ok,
            Request::Profile { kind, duration } => match kind {
                ProfileKind::Cpu => write_to(
                    fds.remove(0),
                    &format!("profile {kind:?} {}ms", duration.as_millis()),
                ),
                _ => err(ErrorKind::Unsupported, "only CPU profiles"),
            },
        };
        (resp, Vec::new())
    }
}

fn processes() -> Vec<ProcessInfo> {
    let p = |pid, ppid, cmd: &str| ProcessInfo {
        uid: 0,
        pid,
        ppid,
        threads: vec![pid],
        state: ProcessState::Sleeping,
        start_time: Duration::from_secs(1_700_000_000),
        cpu_time: Duration::from_millis(12),
        cmd: cmd.into(),
    };
    vec![p(1, 0, "sh"), p(2, 1, "sleep")]
}

fn event(id: &str) -> EventOut {
    let mut ev = EventOut {
        event: Event {
            event_type: "stats".into(),
            id: id.into(),
            data: Default::default(),
        },
        container_usage: BTreeMap::new(),
    };
    ev.event.data.pids.current = 2;
    ev.event.data.cpu.usage.total = 5_000_000;
    ev.container_usage.insert(id.into(), 5_000_000);
    ev
}

fn stacks() -> Stacks {
    Stacks {
        tasks: vec![TaskStack {
            tid: 1,
            pid: 1,
            state: ProcessState::Sleeping,
            syscall: Some("wait4(-1, 0x0, 0, 0x0)".into()),
            registers: vec![("rip".into(), 0x401000), ("rsp".into(), 0x7ffc_0000)],
        }],
        kernel: "thread main: ...".into(),
    }
}

// ---------------------------------------------------------------------
// Helpers.

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn unique_name(what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "rvisor-ctl-test-{what}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Where a child finds the server: `path:/x` or `abstract:name`.
fn connect(addr: &str) -> Result<Client, ClientError> {
    match addr.split_once(':') {
        Some(("path", p)) => Client::connect(p),
        Some(("abstract", n)) => Client::connect_abstract(n),
        _ => panic!("bad address {addr}"),
    }
}

fn raw_connect(addr: &str) -> std::io::Result<UnixStream> {
    match addr.split_once(':') {
        Some(("path", p)) => UnixStream::connect(p),
        Some(("abstract", n)) => {
            use std::os::linux::net::SocketAddrExt;
            let a = std::os::unix::net::SocketAddr::from_abstract_name(n.as_bytes())?;
            UnixStream::connect_addr(&a)
        }
        _ => panic!("bad address {addr}"),
    }
}

struct ChildRun {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl ChildRun {
    /// The values of the child's `CTL key=value` lines.
    fn value(&self, key: &str) -> Option<String> {
        self.stdout.lines().find_map(|l| {
            // The harness may have printed on the same line first.
            l.split_once("CTL ")?
                .1
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
        })
    }

    fn assert_ok(&self, what: &str) {
        assert!(
            self.ok,
            "{what} child failed\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
    }
}

/// Runs this test binary again, as `mode` against `addr`, with a deadline.
fn run_child(mode: &str, addr: &str, timeout: Duration) -> ChildRun {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, mode)
        .env(ADDR_ENV, addr)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut errs = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = errs.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    ChildRun {
        ok: status.is_some_and(|s| s.success()),
        stdout: reader.join().unwrap(),
        stderr: err_reader.join().unwrap()
            + if status.is_none() {
                "\n(timed out)"
            } else {
                ""
            },
    }
}

fn wait_idle(server: &RunningServer) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.active_connections() > 0 {
        assert!(Instant::now() < deadline, "connections never closed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn spec() -> oci_spec::runtime::Spec {
    rvisor::simple_spec("/", "/", &["/bin/true"], &[]).unwrap()
}

// ---------------------------------------------------------------------
// The child side.

/// Entry point of the child processes; a no-op in the parent.
#[test]
fn child_entry() {
    let Ok(mode) = std::env::var(CHILD_ENV) else {
        return;
    };
    let addr = std::env::var(ADDR_ENV).unwrap();
    match mode.as_str() {
        "client" => child_all_operations(&addr),
        "ping" => child_ping(&addr),
        "hostile" => child_hostile(&addr),
        "other-uid" => child_other_uid(&addr),
        "foreign-server" => child_foreign_server(&addr),
        other => panic!("unknown child mode {other}"),
    }
}

fn expect_server_error<T: std::fmt::Debug>(
    r: Result<T, ClientError>,
    kind: ErrorKind,
    errno: Errno,
) {
    let e = r.expect_err("expected an error response");
    assert_eq!(e.kind(), Some(kind), "{e}");
    assert_eq!(e.errno(), Some(errno), "{e}");
}

/// Every operation, through the typed client.
fn child_all_operations(addr: &str) {
    let mut c = connect(addr).unwrap();
    let spec = spec();
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    c.create(
        "c1",
        &spec,
        Some([stdin.as_fd(), stdout.as_fd(), stderr.as_fd()]),
    )
    .unwrap();
    expect_server_error(
        c.create("exists", &spec, None),
        ErrorKind::AlreadyExists,
        Errno::EEXIST,
    );
    c.start("c1").unwrap();
    c.start_root().unwrap();
    assert_eq!(c.wait("c1").unwrap().exit_code(), Some(7));
    let st = c.wait_pid("c1", 42).unwrap();
    assert_eq!((st.signal(), st.shell_code()), (Some(9), 137));
    expect_server_error(c.wait_pid("c1", 43), ErrorKind::NotFound, Errno::ECHILD);

    // Exec: the server writes into the stdout we pass.
    let (r, w) = nix::unistd::pipe().unwrap();
    let null = File::open("/dev/null").unwrap();
    let args = ExecArgs {
        argv: vec!["/bin/echo".into(), "hi".into()],
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        extra_gids: vec![],
    };
    let pid = c
        .execute_async("c1", &args, [null.as_fd(), w.as_fd(), w.as_fd()])
        .unwrap();
    assert_eq!(pid, 1002);
    drop(w);
    let mut out = String::new();
    File::from(r).read_to_string(&mut out).unwrap();
    assert_eq!(out, "exec /bin/echo hi\n");

    c.signal("c1", 0, libc::SIGTERM, SignalDelivery::Process)
        .unwrap();
    c.signal("c1", 0, libc::SIGKILL, SignalDelivery::AllProcesses)
        .unwrap();
    c.signal(
        "c1",
        1,
        libc::SIGINT,
        SignalDelivery::ForegroundProcessGroup,
    )
    .unwrap();
    expect_server_error(
        c.signal("c1", 0, 99, SignalDelivery::Process),
        ErrorKind::InvalidArgument,
        Errno::EINVAL,
    );

    c.pause().unwrap();
    expect_server_error(c.pause(), ErrorKind::InvalidState, Errno::EINVAL);
    c.resume().unwrap();
    expect_server_error(c.resume(), ErrorKind::InvalidState, Errno::EINVAL);

    assert_eq!(c.processes("c1").unwrap(), processes());
    let ev = c.event("c1").unwrap();
    assert_eq!(ev, event("c1"));
    let json: serde_json::Value = serde_json::from_str(&ev.to_json().unwrap()).unwrap();
    assert_eq!(json["event"]["type"], "stats");

    // Checkpoint into a file, restore from it.
    let mut state = tempfile::tempfile().unwrap();
    let opts = CheckpointOptions {
        leave_running: true,
        compress: false,
    };
    c.checkpoint(opts, state.as_fd()).unwrap();
    let mut s = String::new();
    state.rewind().unwrap();
    state.read_to_string(&mut s).unwrap();
    assert_eq!(s, "statefile leave_running=true");
    c.restore(state.as_fd()).unwrap();
    let bogus = tempfile::tempfile().unwrap();
    expect_server_error(
        c.restore(bogus.as_fd()),
        ErrorKind::InvalidArgument,
        Errno::EINVAL,
    );

    c.create_links_and_routes(&CreateLinksAndRoutes::default(), &[])
        .unwrap();
    let mut links = CreateLinksAndRoutes::default();
    links.fd_based_links.push(FdBasedLink {
        name: "eth0".into(),
        mtu: 1500,
        addresses: vec![],
        routes: vec![],
        gso_max_size: 0,
        software_gso: false,
        tx_checksum_offload: false,
        rx_checksum_offload: false,
        link_address: vec![2, 0, 0, 0, 0, 1],
        qdisc: QueueingDiscipline::None,
        num_channels: 2,
    });
    let (l1, l2) = UnixStream::pair().unwrap();
    expect_server_error(
        c.create_links_and_routes(&links, &[l1.as_fd(), l2.as_fd()]),
        ErrorKind::Unsupported,
        Errno::EOPNOTSUPP,
    );
    // The wrong number of descriptors never reaches the handler.
    expect_server_error(
        c.create_links_and_routes(&links, &[l1.as_fd()]),
        ErrorKind::BadRequest,
        Errno::EBADF,
    );

    let st = c.stacks().unwrap();
    assert_eq!(st, stacks());
    assert!(st.render().contains("wait4"));
    // The raw call also hands back the descriptor the server attached.
    let (resp, fds) = c.call(&Request::Stacks, &[]).unwrap();
    assert_eq!(resp, Response::Stacks(stacks()));
    assert_eq!(fds.len(), 1);
    let mut got = String::new();
    File::from(fds.into_iter().next().unwrap())
        .read_to_string(&mut got)
        .unwrap();
    assert_eq!(got, "from the server");

    c.logging_change(&LoggingArgs {
        level: Some(LogLevel::Debug),
        strace: Some(Strace::On {
            allowlist: vec!["openat".into(), "read".into()],
        }),
    })
    .unwrap();
    let mut prof = tempfile::tempfile().unwrap();
    c.profile(ProfileKind::Cpu, Duration::from_millis(250), prof.as_fd())
        .unwrap();
    let mut s = String::new();
    prof.rewind().unwrap();
    prof.read_to_string(&mut s).unwrap();
    assert_eq!(s, "profile Cpu 250ms");
    expect_server_error(
        c.profile(ProfileKind::Heap, Duration::ZERO, prof.as_fd()),
        ErrorKind::Unsupported,
        Errno::EOPNOTSUPP,
    );

    // A request with a descriptor too many is refused, and the connection
    // goes on.
    let (resp, _) = c.call(&Request::Pause, &[null.as_fd()]).unwrap();
    match resp {
        Response::Error(e) => assert_eq!((e.kind, e.errno), (ErrorKind::BadRequest, Errno::EBADF)),
        other => panic!("{other:?}"),
    }
    // A panicking handler is an Internal error, and the connection goes on.
    expect_server_error(c.start("panic"), ErrorKind::Internal, Errno::EIO);

    expect_server_error(c.destroy("missing"), ErrorKind::NotFound, Errno::ESRCH);
    c.destroy("c1").unwrap();
    println!("CTL done=1");
}

/// A well-formed client doing a few stateless calls.
fn child_ping(addr: &str) {
    let mut c = connect(addr).unwrap();
    assert_eq!(c.processes("root").unwrap(), processes());
    assert_eq!(c.event("root").unwrap(), event("root"));
    assert_eq!(c.wait("root").unwrap(), WaitStatus::exited(7));
    println!("CTL ping=1");
}

/// Drops to uid/gid 65534 and tries the socket.
fn child_other_uid(addr: &str) {
    use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
    setgroups(&[]).unwrap();
    setgid(Gid::from_raw(65534)).unwrap();
    setuid(Uid::from_raw(65534)).unwrap();
    match connect(addr) {
        Err(ClientError::Connect { source, .. }) => {
            println!(
                "CTL refused=connect errno={}",
                source.raw_os_error().unwrap_or(0)
            );
        }
        Err(e) => panic!("unexpected: {e}"),
        Ok(mut c) => {
            let e = c.pause().expect_err("a foreign uid was served");
            assert_eq!(e.kind(), Some(ErrorKind::PermissionDenied), "{e}");
            assert_eq!(e.errno(), Some(Errno::EACCES), "{e}");
            // And the connection is closed.
            assert!(c.pause().is_err());
            println!("CTL refused=server errno={}", libc::EACCES);
        }
    }
}

/// Binds `addr` as uid 65534 and accepts one connection.
fn child_foreign_server(addr: &str) {
    use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
    use std::os::linux::net::SocketAddrExt;
    setgroups(&[]).unwrap();
    setgid(Gid::from_raw(65534)).unwrap();
    setuid(Uid::from_raw(65534)).unwrap();
    let name = addr.strip_prefix("abstract:").unwrap();
    let a = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind_addr(&a).unwrap();
    let (conn, _) = listener.accept().unwrap();
    // The client must hang up without sending anything.
    let mut buf = Vec::new();
    (&conn).read_to_end(&mut buf).unwrap();
    assert!(buf.is_empty(), "the client sent {} bytes", buf.len());
    println!("CTL foreign=1");
}

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One request of each kind, as mutation seeds.
fn seed_frames() -> Vec<Vec<u8>> {
    let reqs = vec![
        Request::Create {
            id: "c1".into(),
            spec: Box::new(spec()),
            stdio_fds: 0,
        },
        Request::Start { id: "c1".into() },
        Request::StartRoot,
        Request::Destroy { id: "c1".into() },
        Request::Wait { id: "c1".into() },
        Request::WaitPid {
            id: "c1".into(),
            pid: 42,
        },
        Request::ExecuteAsync {
            id: "c1".into(),
            args: ExecArgs {
                argv: vec!["/bin/sh".into(), "-c".into(), "true".into()],
                ..Default::default()
            },
        },
        Request::Signal {
            id: "c1".into(),
            pid: 0,
            signo: 15,
            mode: SignalDelivery::AllProcesses,
        },
        Request::Pause,
        Request::Resume,
        Request::Processes { id: "c1".into() },
        Request::Event { id: "c1".into() },
        Request::Checkpoint(CheckpointOptions::default()),
        Request::Restore,
        Request::CreateLinksAndRoutes(CreateLinksAndRoutes::default()),
        Request::Stacks,
        Request::LoggingChange(LoggingArgs {
            level: Some(LogLevel::Info),
            strace: Some(Strace::Off),
        }),
        Request::Profile {
            kind: ProfileKind::Cpu,
            duration: Duration::from_secs(1),
        },
    ];
    reqs.iter().map(|r| frame::encode(r).unwrap()).collect()
}

/// Reads every response on `s` until the server closes it; each must be a
/// well-formed [`Response`]. Returns how many there were.
fn drain_responses(s: &UnixStream) -> usize {
    let mut n = 0;
    loop {
        match frame::recv::<Response>(s) {
            Ok(_) => n += 1,
            Err(frame::FrameError::Closed) => return n,
            Err(frame::FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return n;
            }
            Err(e) => panic!("server sent a bad frame: {e}"),
        }
    }
}

/// A hostile frame: random bytes, or a valid frame mutated, truncated,
/// extended, or given an absurd length or an unknown variant.
fn hostile_frame(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let seed = &seeds[rng.below(seeds.len())];
    match rng.below(8) {
        0 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
        1 | 2 => {
            let mut f = seed.clone();
            for _ in 0..=rng.below(4) {
                let i = rng.below(f.len());
                f[i] = rng.next() as u8;
            }
            f
        }
        3 => seed[..rng.below(seed.len())].to_vec(),
        4 => {
            let mut f = seed.clone();
            f.extend((0..=rng.below(16)).map(|_| rng.next() as u8));
            f
        }
        5 => {
            let mut f = seed.clone();
            let len = [MAX_PAYLOAD as u32 + 1, u32::MAX, 0x7fff_ffff][rng.below(3)];
            f[..4].copy_from_slice(&len.to_le_bytes());
            f
        }
        6 => {
            let mut f = vec![1, 0, 0, 0];
            f.push(<Request as Message>::VARIANTS as u8 + rng.below(100) as u8);
            f
        }
        _ => {
            // A valid frame whose header lies about the length.
            let mut f = seed.clone();
            let len = (f.len() - 4) as u32;
            let lie = if rng.below(2) == 0 {
                len.saturating_sub(1 + rng.below(4) as u32)
            } else {
                len + 1 + rng.below(64) as u32
            };
            f[..4].copy_from_slice(&lie.to_le_bytes());
            f
        }
    }
}

/// Everything a hostile peer can throw at the socket.
fn child_hostile(addr: &str) {
    let seeds = seed_frames();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

    // 1. 10,000 random and mutated frames, each on its own connection,
    //    some after a valid request on the same connection.
    let frames = 10_000;
    let mut answers = 0;
    let start = Instant::now();
    for i in 0..frames {
        let s = raw_connect(addr).unwrap();
        if i % 10 == 0 {
            frame::send_frame(&s, &seeds[2 + i % 14], &[]).unwrap();
        }
        let f = hostile_frame(&mut rng, &seeds);
        // The server may have closed already (it refuses at the first bad
        // byte it can judge); that is fine.
        let _ = frame::send_frame(&s, &f, &[]);
        let _ = s.shutdown(std::net::Shutdown::Write);
        answers += drain_responses(&s);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "CTL frames={frames} answers={answers} secs={secs:.3} rate={:.0}",
        frames as f64 / secs
    );

    // 2. Descriptors: at least 1,000 copies of a pipe's write end, 100 per
    //    message, each message one byte of a would-be frame, over as many
    //    connections as it takes (the server drops a connection as soon as
    //    a frame holds more than the cap); then 253 (the host's maximum per
    //    message) in one message; then exactly the cap on a request that
    //    takes none.
    let (r, w) = nix::unistd::pipe().unwrap();
    let mut sent = 0;
    for _ in 0..1000 {
        if sent >= 1000 {
            break;
        }
        let s = raw_connect(addr).unwrap();
        let hundred: Vec<BorrowedFd<'_>> = (0..100).map(|_| w.as_fd()).collect();
        let header = 1000u32.to_le_bytes();
        for b in header.iter().chain(std::iter::repeat(&0u8)).take(1004) {
            if raw_send(&s, &[*b], &hundred).is_err() {
                break;
            }
            sent += 100;
        }
        let _ = s.shutdown(std::net::Shutdown::Write);
        assert!(drain_responses(&s) <= 1);
    }
    println!("CTL fds_sent={sent}");
    {
        let s = raw_connect(addr).unwrap();
        let many: Vec<BorrowedFd<'_>> = (0..253).map(|_| w.as_fd()).collect();
        let pause = frame::encode(&Request::Pause).unwrap();
        let _ = raw_send(&s, &pause, &many);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut buf = Vec::new();
        let _ = (&s).read_to_end(&mut buf);
    }
    {
        let s = raw_connect(addr).unwrap();
        let cap: Vec<BorrowedFd<'_>> = (0..MAX_FDS).map(|_| w.as_fd()).collect();
        frame::send(&s, &Request::Processes { id: "x".into() }, &cap).unwrap();
        match frame::recv::<Response>(&s).unwrap().0 {
            Response::Error(e) => assert_eq!(e.errno, Errno::EBADF),
            other => panic!("{other:?}"),
        }
        // The connection still serves.
        frame::send(&s, &Request::Processes { id: "x".into() }, &[]).unwrap();
        assert!(matches!(
            frame::recv::<Response>(&s).unwrap().0,
            Response::Processes(_)
        ));
    }
    // Every copy of `w` the server received is closed: once ours is gone,
    // the pipe reports end of file.
    drop(w);
    let mut pfd = [nix::poll::PollFd::new(
        r.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ready = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(10_000u16)).unwrap();
    assert_eq!(ready, 1, "a passed descriptor is still open in the server");
    let mut buf = [0u8; 1];
    assert_eq!(File::from(r).read(&mut buf).unwrap(), 0);
    println!("CTL fds_closed=1");

    // 3. More connections than the server serves at once: the excess are
    //    told Busy, and nothing breaks.
    let idle: Vec<UnixStream> = (0..80).map(|_| raw_connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut busy = 0;
    for s in &idle {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        if let Ok((Response::Error(e), _)) = frame::recv::<Response>(s) {
            assert_eq!(e.kind, ErrorKind::Busy);
            busy += 1;
        }
    }
    drop(idle);
    println!("CTL busy={busy}");
}

/// Sends `bytes` with `fds` in one message, bypassing the frame layer's
/// checks.
fn raw_send(s: &UnixStream, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> std::io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags, sendmsg};
    let mut space =
        vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    assert!(control.push(SendAncillaryMessage::ScmRights(fds)));
    Ok(sendmsg(
        s,
        &[std::io::IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?)
}

// ---------------------------------------------------------------------
// The parent side.

fn start(server: Server) -> (RunningServer, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let running = server.spawn(rec.clone()).unwrap();
    (running, rec)
}

#[test]
fn every_operation_from_a_second_process() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    let (server, rec) = start(Server::bind(&path).unwrap());
    let run = run_child(
        "client",
        &format!("path:{}", path.display()),
        Duration::from_secs(60),
    );
    run.assert_ok("client");
    assert_eq!(run.value("done").as_deref(), Some("1"));
    let names = rec.names();
    for op in [
        "Create",
        "Start",
        "StartRoot",
        "Destroy",
        "Wait",
        "WaitPid",
        "ExecuteAsync",
        "Signal",
        "Pause",
        "Resume",
        "Processes",
        "Event",
        "Checkpoint",
        "Restore",
        "CreateLinksAndRoutes",
        "Stacks",
        "LoggingChange",
        "Profile",
    ] {
        assert!(
            names.iter().any(|n| n == op),
            "{op} never reached the handler"
        );
    }
    // The two requests with the wrong number of descriptors did not.
    assert_eq!(
        names
            .iter()
            .filter(|n| *n == "CreateLinksAndRoutes")
            .count(),
        2
    );
    assert_eq!(names.iter().filter(|n| *n == "Pause").count(), 2);
    server.stop().unwrap();
    assert!(!path.exists(), "the socket file outlived the server");
}

#[test]
fn abstract_socket_from_a_second_process() {
    let _g = serial();
    let id = unique_name("abstract");
    let addr = control_socket_addr(&id);
    assert!(addr.starts_with('\0'));
    let (server, _rec) = start(Server::bind_abstract(&addr).unwrap());
    let run = run_child(
        "client",
        &format!("abstract:{}", &addr[1..]),
        Duration::from_secs(60),
    );
    run.assert_ok("client");
    // The conventional name is reachable by sandbox id too.
    let mut c = Client::connect_sandbox(&id).unwrap();
    assert_eq!(c.processes(&id).unwrap(), processes());
    drop(c);
    server.stop().unwrap();
    assert!(matches!(
        Client::connect_sandbox(&id),
        Err(ClientError::Connect { .. })
    ));
}

#[test]
fn socket_file_is_0600_whatever_the_umask() {
    use nix::sys::stat::{Mode, umask};
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    for (i, mask) in [0o000, 0o002, 0o022, 0o077].into_iter().enumerate() {
        let path = dir.path().join(format!("s{i}.sock"));
        let old = umask(Mode::from_bits_truncate(mask));
        let bound = Server::bind(&path);
        umask(old);
        let server = bound.unwrap();
        let mode = std::fs::symlink_metadata(&path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "umask {mask:o}");
        // A second server cannot take the same path.
        assert!(Server::bind(&path).is_err());
        drop(server);
        assert!(!path.exists());
    }
}

#[test]
fn peer_with_another_uid_is_refused() {
    let _g = serial();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run a child as uid 65534");
        return;
    }
    // Abstract socket: no file mode, the credential check refuses.
    let name = unique_name("uid");
    let (server, rec) = start(Server::bind_abstract(&name).unwrap());
    let run = run_child(
        "other-uid",
        &format!("abstract:{name}"),
        Duration::from_secs(30),
    );
    run.assert_ok("other-uid");
    assert_eq!(run.value("refused").as_deref(), Some("server"));
    assert!(rec.names().is_empty(), "a foreign peer reached the handler");
    // The server goes on serving its own user.
    let mut c = Client::connect_abstract(&name).unwrap();
    c.pause().unwrap();
    server.stop().unwrap();

    // Filesystem socket in a world-searchable directory: its 0600 mode
    // refuses the connection itself.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("ctl.sock");
    let (server, rec) = start(Server::bind(&path).unwrap());
    let run = run_child(
        "other-uid",
        &format!("path:{}", path.display()),
        Duration::from_secs(30),
    );
    run.assert_ok("other-uid");
    assert_eq!(run.value("refused").as_deref(), Some("connect"));
    assert_eq!(run.value("errno"), Some(libc::EACCES.to_string()));
    assert!(rec.names().is_empty());
    server.stop().unwrap();
}

#[test]
fn hostile_clients_leave_the_server_serving_and_leak_nothing() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    let (server, rec) = start(Server::bind(&path).unwrap().with_max_connections(64));
    let addr = format!("path:{}", path.display());
    // Warm up (thread stacks, lazily opened files) before counting.
    run_child("ping", &addr, Duration::from_secs(30)).assert_ok("ping");
    wait_idle(&server);
    let before = open_fds();
    // Count panics on the server's threads (none is expected: the server
    // must not panic, and this handler never does on these inputs).
    static SERVER_PANICS: AtomicUsize = AtomicUsize::new(0);
    std::panic::set_hook(Box::new(|info| {
        if std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("ctl-"))
        {
            SERVER_PANICS.fetch_add(1, Ordering::SeqCst);
        }
        eprintln!("{info}");
    }));

    let run = run_child("hostile", &addr, Duration::from_secs(300));
    // Back to the default hook.
    drop(std::panic::take_hook());
    assert_eq!(
        SERVER_PANICS.load(Ordering::SeqCst),
        0,
        "the server panicked"
    );
    run.assert_ok("hostile");
    let frames: usize = run.value("frames").unwrap().parse().unwrap();
    assert_eq!(frames, 10_000);
    assert!(run.value("fds_sent").unwrap().parse::<usize>().unwrap() >= 1000);
    assert_eq!(run.value("fds_closed").as_deref(), Some("1"));
    let busy: usize = run.value("busy").unwrap().parse().unwrap();
    assert!(busy >= 80 - 64, "only {busy} connections were told Busy");
    eprintln!(
        "hostile: {frames} frames in {}s ({} frames/s), {} answers, {} fds sent, {busy} busy",
        run.value("secs").unwrap(),
        run.value("rate").unwrap(),
        run.value("answers").unwrap(),
        run.value("fds_sent").unwrap(),
    );

    wait_idle(&server);
    assert_eq!(open_fds(), before, "the server leaked descriptors");
    assert!(!rec.names().is_empty());

    // A well-formed client, from another process and from this one.
    run_child("ping", &addr, Duration::from_secs(30)).assert_ok("ping");
    let mut c = Client::connect(&path).unwrap();
    assert_eq!(c.event("x").unwrap(), event("x"));
    drop(c);
    wait_idle(&server);
    assert_eq!(open_fds(), before);
    server.stop().unwrap();
}

#[test]
fn stop_ends_blocked_connections_and_panics_are_contained() {
    struct Slow;
    impl Handler for Slow {
        fn handle(&self, req: Request, _: Vec<OwnedFd>) -> (Response, Vec<OwnedFd>) {
            match req {
                Request::Wait { .. } => {
                    std::thread::sleep(Duration::from_secs(3));
                    (Response::WaitStatus(WaitStatus::exited(0)), vec![])
                }
                Request::Stacks => panic!("boom"),
                _ => (Response::Ok, vec![]),
            }
        }
    }
    let _g = serial();
    let name = unique_name("stop");
    let server = Server::bind_abstract(&name)
        .unwrap()
        .with_shutdown_grace(Duration::from_millis(200))
        .spawn(Arc::new(Slow))
        .unwrap();
    let mut c = Client::connect_abstract(&name).unwrap();
    let e = c.stacks().unwrap_err();
    assert_eq!(e.kind(), Some(ErrorKind::Internal));
    c.pause().unwrap();
    let waiter = std::thread::spawn(move || c.wait("x"));
    let mut idle = Client::connect_abstract(&name).unwrap();
    idle.resume().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    server.stop().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop waited for a blocked handler"
    );
    // The idle connection was shut down.
    assert!(idle.pause().is_err());
    // The blocked call fails rather than hang forever.
    assert!(waiter.join().unwrap().is_err());
    assert!(Client::connect_abstract(&name).is_err());
}

#[test]
fn client_refuses_a_server_of_another_uid() {
    let _g = serial();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to run a child as uid 65534");
        return;
    }
    let name = unique_name("foreign");
    let addr = format!("abstract:{name}");
    let child =
        std::thread::spawn(move || run_child("foreign-server", &addr, Duration::from_secs(30)));
    let deadline = Instant::now() + Duration::from_secs(20);
    let err = loop {
        match Client::connect_abstract(&name) {
            Err(ClientError::Connect { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => break e,
            Ok(_) => panic!("a server of uid 65534 was trusted"),
        }
    };
    assert!(
        matches!(err, ClientError::UntrustedServer { uid: 65534 }),
        "{err}"
    );
    assert_eq!(err.errno(), Some(Errno::EPERM));
    child.join().unwrap().assert_ok("foreign-server");
}
