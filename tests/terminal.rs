//! A container whose spec asks for a terminal (`rvisor run -t`) gets a
//! pseudo-terminal as its controlling terminal; its output reaches ours
//! through the console relay.

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

#[test]
fn run_with_terminal_gives_a_controlling_pty() {
    let dir = tempfile::Builder::new()
        .prefix("rvisor-tty-")
        .tempdir_in({
            let t = target_dir().join("tmp");
            std::fs::create_dir_all(&t).unwrap();
            t
        })
        .unwrap();
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::fs::copy(busybox(), dir.path().join("bin/busybox")).unwrap();
    let mut cmd = Command::new(rvisor_bin());
    cmd.args(["run", "-t", "--rootfs"]).arg(dir.path()).args([
        "--",
        "/bin/busybox",
        "sh",
        "-c",
        "tty; [ -t 0 ] && [ -t 1 ] && echo stdio-is-a-tty; ps -o pid,tty | head -3 >/dev/null; echo done",
    ]);
    let out = run_command(cmd, b"", Duration::from_secs(60), "rvisor run -t");
    assert_eq!(out.status, 0, "{}", out.stderr_str());
    let text = out.stdout_str().replace('\r', "");
    assert!(text.contains("/dev/pts/0\n"), "{text:?}");
    assert!(text.contains("stdio-is-a-tty\n"), "{text:?}");
    assert!(text.ends_with("done\n"), "{text:?}");
}
