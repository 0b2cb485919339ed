//! The sandbox process runs under its own seccomp filter while the
//! application runs, and the application does not notice it.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sandbox_process_is_filtered_while_the_application_runs() {
    let mut child = Command::new(rvisor_bin())
        .args(["do", "--", "/bin/busybox", "sleep", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rvisor");
    let status_path = format!("/proc/{}/status", child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut mode = String::new();
    while Instant::now() < deadline {
        let s = std::fs::read_to_string(&status_path).unwrap_or_default();
        mode = s
            .lines()
            .find(|l| l.starts_with("Seccomp:"))
            .unwrap_or("")
            .to_string();
        if mode.ends_with('2') {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = child.wait().expect("wait");
    assert_eq!(
        mode.split_whitespace().last(),
        Some("2"),
        "sandbox not in seccomp filter mode: {mode:?}"
    );
    assert!(st.success(), "sandboxed sleep failed: {st:?}");
}
