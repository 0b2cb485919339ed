//! Small C programs (tests/guests/*.c), each compiled static and dynamic,
//! run natively and under `rvisor do`; status, stdout and stderr must be
//! identical. Each program prints only deterministic facts (no PIDs,
//! addresses or timings) and exits with a known status, which the native
//! run is checked against too.

mod common;
use common::*;

/// Run one guest both ways. `expect` lines must appear in the native
/// stdout: they pin down what the program tests, so a guest that silently
/// stops testing anything fails here rather than passing vacuously.
fn run_guest(name: &str, static_: bool, status: i32, expect: &[&str]) {
    let exe = guest(name, static_);
    let kind = if static_ { "static" } else { "dyn" };
    let native = Case::new(&format!("{name}-{kind}"), &[&exe])
        .expect_status(status)
        .check();
    let out = native.stdout_str();
    for line in expect {
        assert!(
            out.contains(line),
            "guest {name}-{kind}: native stdout lacks {line:?}; the guest's assumptions do not \
             hold on this host\n{out}"
        );
    }
}

macro_rules! guest_test {
    ($name:ident, status = $status:expr $(, expect = [$($e:expr),* $(,)?])?) => {
        mod $name {
            use super::*;
            #[test]
            fn static_() {
                run_guest(stringify!($name), true, $status, &[$($($e),*)?]);
            }
            #[test]
            fn dynamic() {
                run_guest(stringify!($name), false, $status, &[$($($e),*)?]);
            }
        }
    };
}

guest_test!(
    threads,
    status = 0,
    expect = ["counter=200000 expected=200000", "threads ok"]
);
guest_test!(
    forkpipe,
    status = 0,
    expect = [
        "parent read 2000 bytes, 100 lines, last: line 099 from child",
        "writer child: exited 7",
        "killed child: killed by signal 9",
        "self-terminated child: killed by signal 15",
        "reaped 5 children, exit status sum 150",
    ]
);
guest_test!(
    execve,
    status = 9,
    expect = [
        "child: argc=5 argv0=/proc/self/exe [two words] [] [last] mark=inherited",
        "re-exec via /proc/self/exe -> 5",
        "hello from busybox",
        "missing -> 127",
        "after exec: inherited",
    ]
);
guest_test!(
    signals,
    status = 0,
    expect = [
        "SA_RESTART: first read was restarted, then got 4 bytes 'data', handler ran 1 time(s)",
        "no SA_RESTART: first read failed with EINTR, then got 4 bytes 'data', handler ran 1 time(s)",
        "handler on alt stack: 1, SS_ONSTACK reported: 1",
        "blocked: pending USR1=1 USR2=0 handler ran 0",
        "unblocked: pending USR1=0 handler ran 1",
        "rt signal queued deliveries: 3",
    ]
);
guest_test!(
    mmapfile,
    status = 0,
    expect = [
        "private write visible in mapping: 1, file unchanged: 1",
        "file sees shared write: 'SHARED!' last='Z'",
        "write to read-only page: signal 11, address exact: 1",
        "read past EOF: signal 7",
        "cleanup: unlink 0 rmdir 0",
    ]
);
guest_test!(bigmap, status = 0, expect = ["pages=65536 zero-filled=1"]);
guest_test!(
    getdents,
    status = 0,
    expect = [
        "entries=200 regular=200 dots=2",
        "after unlink: entries=190",
        "rmdir=0"
    ]
);
guest_test!(clocks, status = 0, expect = ["elapsed >= 10ms: 1"]);
guest_test!(
    badptr,
    status = 0,
    expect = [
        "write(1, 0x1, 10)            ret=-1 errno=EFAULT",
        "read(/dev/zero, NULL, 10)    ret=-1 errno=EFAULT",
        "syscall(1000)                ret=-1 errno=ENOSYS",
        "still alive",
    ]
);
guest_test!(
    rwpaths,
    status = 0,
    expect = [
        "read across mappings: 8192 pattern=1 pos=8292 untouched=1,1",
        "readv 3 iovs: 3500 pattern=1,1,1 pos=7596",
        "write across mappings: 8192, writev: 600, pwrite: 8192, file 20480 bytes, data=1,1,1,1",
        "pipe across mappings: wrote 8192 read 8192 data=1",
        "child read into shared memory: exit 0 pattern=1",
        "read into shared file mapping: 4096, file has it: 1",
        "read into read-only page: EFAULT",
        "read dir into NULL: EISDIR",
        "failures: 0",
    ]
);
guest_test!(
    exitcodes,
    status = 3,
    expect = ["atexit: registered first, runs last"]
);
guest_test!(
    sigkill_self,
    status = 139,
    expect = ["about to raise SIGSEGV"]
);

guest_test!(
    badexec,
    status = 0,
    expect = [
        "garbage                      ret=-1 errno=ENOEXEC",
        "still alive"
    ]
);

/// Static-PIE executables (no interpreter, relocated by their own startup
/// code at the kernel-chosen base).
mod static_pie {
    use super::*;

    fn build(name: &str) -> std::path::PathBuf {
        let src = repo_root().join("tests/guests").join(format!("{name}.c"));
        let out = target_dir()
            .join("guests")
            .join(format!("{name}-spie-{}", std::process::id()));
        std::fs::create_dir_all(out.parent().unwrap()).unwrap();
        let st = std::process::Command::new("cc")
            .args(["-O1", "-pthread", "-static-pie", "-o"])
            .arg(&out)
            .arg(&src)
            .status()
            .expect("cc");
        assert!(st.success(), "cc -static-pie {name}.c failed");
        out
    }

    #[test]
    fn threads() {
        let exe = build("threads");
        Case::new("threads-static-pie", &[&exe])
            .expect_status(0)
            .check();
        std::fs::remove_file(exe).ok();
    }

    #[test]
    fn signals() {
        let exe = build("signals");
        Case::new("signals-static-pie", &[&exe])
            .expect_status(0)
            .check();
        std::fs::remove_file(exe).ok();
    }
}

guest_test!(
    events,
    status = 0,
    expect = [
        "wait with both                                       2 [data=1 IN] [data=2 OUT]",
        "a second write is a new edge                         1 [data=1 IN]",
        "disabled after one report                            0",
        "epoll after a write                                  1 [data=9 IN OUT]",
        "outer epoll_wait(-1) woken through inner             1 [data=100 IN]",
        "chain: instances in the longest allowed chain        5",
        "  periodic 1s, 10s in the past: expirations          11",
        "epoll_wait(-1) on a timerfd                          1 [data=5 IN]",
        "read four at once                                    512 bytes: 10/0 12/0 RTMIN+2:0/42 RTMIN+2:0/43",
        "SIGCHLD                                              signo=17 code=1 status=7 pid_is_child=1",
        "events ok",
    ]
);
guest_test!(
    timers,
    status = 0,
    expect = [
        "alarm(3) returns the 5 s left (rounded)                  5",
        "  si_code is SI_KERNEL                                   1",
        "periodic 10ms for 120ms: >= 5 signals                    1",
        "  si_timerid is the id                                   1",
        "periodic 5ms, 80ms blocked: one signal, si_overrun >= 5  1",
        "  timer_getoverrun agrees                                1",
        "after exec: timer_gettime(old id)                        -1 EINVAL",
        "after exec: ITIMER_REAL still armed                      1",
        "timers ok",
    ]
);
guest_test!(
    pty,
    status = 0,
    expect = [
        "open while locked: -1 EIO",
        "default termios: iflag=0x500 oflag=0x5 cflag=0xbf lflag=0x8a3b",
        "master reads what it wrote: 'bye\\r\\n'",
        "child: TIOCSCTTY: 0",
        "child: ttyname matches ptsname: 1",
        "parent: typed 'junk\\x15helo\\x7flo\\r', echo 'junk\\x08 \\x08\\x08 \\x08\\x08 \\x08\\x08 \\x08helo\\x08 \\x08lo\\r\\n'",
        "child: canonical read 1: 6 bytes 'hello\\n'",
        "child: canonical read 3: 0 bytes ''",
        "child: window 24x80, SIGWINCH received: 1",
        "parent: echo of VINTR: '^C'",
        "child: SIGINT received: 1, then read 6 bytes 'after\\n'",
        "parent: slave output with OPOST then without: 'out\\r\\nraw\\n'",
        "child: VMIN=3 read: 3 bytes 'xyz'",
        "child: VMIN=0 VTIME=2 read with no input: 0",
        "child: read blocked at hangup: -1 EIO, SIGHUP received: 1",
        "child: read after hangup: 0",
        "child: /dev/tty after hangup: -1 ENXIO",
    ]
);

guest_test!(eventfd_len, status = 0, expect = ["wrote"]);
