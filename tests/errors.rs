//! Bad input from the application or the command line gets a clear error,
//! never a panic or a hang: a program that is not an ELF, a missing
//! program, an unsupported syscall (ENOSYS, logged once by name).

mod common;
use common::*;
use std::process::Command;
use std::time::Duration;

fn rvisor(args: &[&str]) -> Output {
    let mut cmd = Command::new(rvisor_bin());
    cmd.args(args);
    run_command(
        cmd,
        b"",
        Duration::from_secs(60),
        &format!("rvisor {args:?}"),
    )
}

#[test]
fn missing_program_is_a_sandbox_error() {
    let out = rvisor(&["do", "--", "/no/such/program"]);
    assert_eq!(out.status, 125, "stderr: {}", out.stderr_str());
    let err = out.stderr_str();
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    assert!(
        err.contains("ENOENT") && err.contains("/no/such/program"),
        "{err}"
    );
}

#[test]
fn non_elf_program_is_enoexec() {
    let dir = target_dir().join("tmp");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("not-elf-{}", std::process::id()));
    std::fs::write(&path, b"\x00\x01\x02garbage").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = rvisor(&["do", "--", path.to_str().unwrap()]);
    std::fs::remove_file(&path).ok();
    assert_eq!(out.status, 125, "stderr: {}", out.stderr_str());
    assert!(out.stderr_str().contains("ENOEXEC"), "{}", out.stderr_str());
}

#[test]
fn unsupported_syscall_is_enosys_and_logged_once_by_name() {
    // badptr calls syscall(1000) (no such syscall); run it and a second
    // unknown call through busybox twice in one sandbox.
    let exe = guest("badptr", true);
    let out = rvisor(&[
        "--log-level",
        "info",
        "do",
        "--",
        "/bin/busybox",
        "sh",
        "-c",
        &format!("{0} >/dev/null; {0} >/dev/null", exe.display()),
    ]);
    assert_eq!(out.status, 0, "stderr: {}", out.stderr_str());
    let err = out.stderr_str();
    let notices: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("unsupported syscall") && l.contains("(1000)"))
        .collect();
    assert_eq!(
        notices.len(),
        1,
        "expected one ENOSYS notice for syscall 1000:\n{err}"
    );
    assert!(notices[0].contains("ENOSYS"), "{}", notices[0]);
}

#[test]
fn bad_rootfs_is_a_sandbox_error() {
    let out = rvisor(&["run", "--rootfs", "/no/such/dir", "--", "/bin/true"]);
    assert_eq!(out.status, 125);
    assert_eq!(out.stderr_str().lines().count(), 1, "{}", out.stderr_str());
}
