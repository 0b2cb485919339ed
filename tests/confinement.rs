//! Rootfs confinement: `rvisor run --rootfs DIR` must never let the
//! application read a file outside DIR, whatever path, `..`, symlink or
//! /proc magic link it uses. A secret file sits next to the rootfs (in its
//! parent directory); every escape attempt runs `busybox cat` on some path
//! to it, and the secret's text must never appear in the output.
//!
//! Absolute paths and absolute symlinks resolve inside the rootfs (chroot
//! semantics), where a decoy file waits at the secret's host path: reading
//! the decoy is the right answer, reading the secret is an escape.
//!
//! Under `RVISOR_HARNESS_SELFTEST=1` the runs use a native chroot instead.

mod common;
use common::*;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

const INSIDE: &str = "inside the rootfs: readable\n";
const DECOY: &str = "decoy inside the rootfs\n";

struct Fixture {
    _tmp: tempfile::TempDir,
    rootfs: PathBuf,
    /// Absolute host path of the secret file (outside the rootfs).
    secret_path: String,
    /// The secret's content: a token that appears nowhere else.
    secret: String,
}

fn fixture() -> Fixture {
    let bb = busybox();
    // Not under /tmp: `rvisor run` mounts a fresh tmpfs there, which would
    // hide the decoy at the secret's path.
    let scratch = target_dir().join("tmp");
    fs::create_dir_all(&scratch).expect("target/tmp");
    let tmp = tempfile::Builder::new()
        .prefix("rvisor-confine-")
        .tempdir_in(&scratch)
        .expect("tempdir");
    let base = tmp.path().canonicalize().expect("canonicalize tempdir");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let secret = format!("TOP-SECRET-{}-{nanos:x}", std::process::id());
    let secret_file = base.join("secret.txt");
    fs::write(&secret_file, format!("{secret}\n")).unwrap();
    fs::write(base.join("secret2.txt"), format!("{secret}\n")).unwrap();
    let secret_path = secret_file.to_str().unwrap().to_string();

    let rootfs = base.join("rootfs");
    for d in ["bin", "etc", "tmp", "proc", "dev", "sub/deeper"] {
        fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    let bb_dst = rootfs.join("bin/busybox");
    fs::copy(bb, &bb_dst).unwrap();
    fs::set_permissions(&bb_dst, fs::Permissions::from_mode(0o755)).unwrap();
    symlink("busybox", rootfs.join("bin/sh")).unwrap();
    symlink("busybox", rootfs.join("bin/cat")).unwrap();
    fs::write(rootfs.join("etc/inside.txt"), INSIDE).unwrap();

    // The decoy at the secret's host path, but inside the rootfs.
    let decoy = rootfs.join(secret_path.trim_start_matches('/'));
    fs::create_dir_all(decoy.parent().unwrap()).unwrap();
    fs::write(&decoy, DECOY).unwrap();

    let dots = "../../../../../../../../../..";
    // absolute symlink to the secret's host path
    symlink(&secret_path, rootfs.join("escape_abs")).unwrap();
    // relative symlink climbing far above the root
    symlink(format!("../../../../..{secret_path}"), rootfs.join("rel")).unwrap();
    // relative symlink to the secret as seen from the rootfs on the host
    symlink("../secret.txt", rootfs.join("rel_parent")).unwrap();
    symlink("../../secret.txt", rootfs.join("sub/deeper/rel_parent")).unwrap();
    // directory symlinks: absolute to the secret's directory, relative up
    symlink(base.to_str().unwrap(), rootfs.join("dirlink")).unwrap();
    symlink("..", rootfs.join("dirlink_rel")).unwrap();
    symlink(dots, rootfs.join("sub/deeper/up")).unwrap();
    // a chain: link -> link -> outside
    symlink("/chain2", rootfs.join("chain1")).unwrap();
    symlink("../../../../../secret.txt", rootfs.join("chain2")).unwrap();
    // a symlink that stays inside (positive control)
    symlink("/etc/inside.txt", rootfs.join("inlink")).unwrap();

    Fixture {
        _tmp: tmp,
        rootfs,
        secret_path,
        secret,
    }
}

/// Run `argv` in the fixture's rootfs and assert the secret did not leak.
/// Returns stdout. A run that did not really execute (rvisor failing with
/// 125, a crash) proves nothing, so only exit status 0 or 1 is accepted.
fn attempt(fx: &Fixture, cwd: Option<&str>, argv: &[&str]) -> String {
    let out = run_in_rootfs(&fx.rootfs, cwd, argv);
    let (so, se) = (out.stdout_str(), out.stderr_str());
    assert!(
        !so.contains(&fx.secret) && !se.contains(&fx.secret),
        "ESCAPE: {argv:?} (cwd {cwd:?}) read the secret outside the rootfs\nstdout: {so}\nstderr: {se}"
    );
    assert!(
        out.status == 0 || out.status == 1,
        "{argv:?} (cwd {cwd:?}) exited {} — expected the program's own 0/1, not a sandbox failure\n\
         stdout: {so}\nstderr: {se}",
        out.status
    );
    so
}

fn cat(fx: &Fixture, path: &str) -> String {
    attempt(fx, None, &["/bin/busybox", "cat", path])
}

fn sh(fx: &Fixture, script: &str) -> String {
    attempt(fx, None, &["/bin/busybox", "sh", "-c", script])
}

fn rel_to_root(p: &str) -> &str {
    p.trim_start_matches('/')
}

// --- positive controls: the test can fail meaningfully --------------------

#[test]
fn control_file_inside_rootfs_is_readable() {
    let fx = fixture();
    assert_eq!(cat(&fx, "/etc/inside.txt"), INSIDE);
    assert_eq!(cat(&fx, "etc/inside.txt"), INSIDE);
}

#[test]
fn control_symlink_inside_rootfs_is_followed() {
    let fx = fixture();
    assert_eq!(cat(&fx, "/inlink"), INSIDE);
}

#[test]
fn control_shell_runs_in_rootfs() {
    let fx = fixture();
    let out = sh(&fx, "cd /etc && cat inside.txt && echo shell-ok");
    assert_eq!(out, format!("{INSIDE}shell-ok\n"));
}

#[test]
fn control_host_secret_really_exists() {
    // Natively the secret is readable: the escape tests are not vacuous.
    let fx = fixture();
    let out = run_native(&[busybox(), "cat", &fx.secret_path], b"", &[]);
    assert_eq!(out.stdout_str().trim(), fx.secret);
    assert!(Path::new(&fx.rootfs).join("rel_parent").exists());
}

#[test]
fn absolute_path_resolves_inside_root() {
    let fx = fixture();
    assert_eq!(cat(&fx, &fx.secret_path), DECOY);
}

#[test]
fn absolute_symlink_resolves_inside_root() {
    let fx = fixture();
    assert_eq!(cat(&fx, "/escape_abs"), DECOY);
}

#[test]
fn relative_symlink_clamped_at_root() {
    let fx = fixture();
    assert_eq!(cat(&fx, "/rel"), DECOY);
}

// --- escape attempts --------------------------------------------------------

#[test]
fn dotdot_from_root() {
    let fx = fixture();
    for p in [
        "../secret.txt",
        "/../secret.txt",
        "../../../../../../../../secret.txt",
        "/./../secret.txt",
    ] {
        cat(&fx, p);
    }
}

#[test]
fn dotdot_then_host_absolute_path() {
    let fx = fixture();
    let p = format!("../../../../../../../../..{}", fx.secret_path);
    assert_eq!(cat(&fx, &p), DECOY);
    let p = format!("/..{}", fx.secret_path);
    assert_eq!(cat(&fx, &p), DECOY);
}

#[test]
fn dotdot_through_subdirectories() {
    let fx = fixture();
    for p in [
        "bin/../../secret.txt",
        "/bin/../../secret.txt",
        "/sub/deeper/../../../secret.txt",
        "etc/../bin/../../secret.txt",
    ] {
        cat(&fx, p);
    }
}

#[test]
fn dotdot_from_nested_cwd() {
    let fx = fixture();
    attempt(
        &fx,
        Some("/sub/deeper"),
        &["/bin/busybox", "cat", "../../../secret.txt"],
    );
    attempt(
        &fx,
        Some("/bin"),
        &["/bin/busybox", "cat", "../../secret.txt"],
    );
}

#[test]
fn relative_symlink_to_parent_of_rootfs() {
    let fx = fixture();
    cat(&fx, "/rel_parent");
    cat(&fx, "/sub/deeper/rel_parent");
}

#[test]
fn directory_symlink_absolute() {
    let fx = fixture();
    assert_eq!(cat(&fx, "/dirlink/secret.txt"), DECOY);
    cat(&fx, "/dirlink/../secret.txt");
    cat(&fx, "/dirlink/secret2.txt");
}

#[test]
fn directory_symlink_relative() {
    let fx = fixture();
    cat(&fx, "/dirlink_rel/secret.txt");
    cat(&fx, "/dirlink_rel/../secret.txt");
    cat(&fx, "/sub/deeper/up/secret.txt");
    let p = format!("/sub/deeper/up/{}", rel_to_root(&fx.secret_path));
    assert_eq!(cat(&fx, &p), DECOY);
}

#[test]
fn symlink_chain() {
    let fx = fixture();
    cat(&fx, "/chain1");
}

#[test]
fn proc_self_root() {
    let fx = fixture();
    cat(&fx, "/proc/self/root/../secret.txt");
    cat(&fx, "/proc/self/root/../../../../secret.txt");
    cat(&fx, &format!("/proc/self/root{}", fx.secret_path));
    cat(&fx, &format!("/proc/self/root/../../..{}", fx.secret_path));
}

#[test]
fn proc_self_cwd() {
    let fx = fixture();
    cat(&fx, "/proc/self/cwd/../secret.txt");
    cat(&fx, "/proc/self/cwd/../../../../../secret.txt");
    cat(
        &fx,
        &format!("/proc/self/cwd/../../../..{}", fx.secret_path),
    );
    attempt(
        &fx,
        Some("/bin"),
        &["/bin/busybox", "cat", "/proc/self/cwd/../../secret.txt"],
    );
}

#[test]
fn proc_pid1_root() {
    let fx = fixture();
    cat(&fx, "/proc/1/root/../secret.txt");
    cat(&fx, &format!("/proc/1/root/../../..{}", fx.secret_path));
    cat(&fx, "/proc/1/cwd/../secret.txt");
}

#[test]
fn proc_self_fd_of_root() {
    let fx = fixture();
    sh(
        &fx,
        "exec 3</; cat /proc/self/fd/3/../secret.txt; cat /proc/self/fd/3/../../../secret2.txt; true",
    );
}

#[test]
fn shell_cd_above_root() {
    let fx = fixture();
    let abs = fx.secret_path.clone();
    let out = sh(
        &fx,
        &format!(
            "cd /../../..; pwd; cat secret.txt; cat ../secret.txt; cat .{abs}; \
             cd ..; cd ..; pwd; cat secret.txt secret2.txt; echo done"
        ),
    );
    assert!(
        out.ends_with("done\n"),
        "script did not run to the end: {out}"
    );
    let out = sh(
        &fx,
        "cd /dirlink_rel/..; cat secret.txt; cd /sub/deeper/up/..; cat secret.txt; echo done",
    );
    assert!(
        out.ends_with("done\n"),
        "script did not run to the end: {out}"
    );
}

#[test]
fn symlink_created_at_run_time() {
    // The application makes its own escaping symlinks (if it may write).
    let fx = fixture();
    let out = sh(
        &fx,
        "ln -s ../../../../../.. /tmp/up 2>/dev/null; ln -s /../.. /tmp/up2 2>/dev/null; \
         cat /tmp/up/secret.txt; cat /tmp/up2/secret.txt; cd /tmp/up && cat ../secret.txt; echo done",
    );
    assert!(
        out.ends_with("done\n"),
        "script did not run to the end: {out}"
    );
}

#[test]
fn listing_root_shows_rootfs_only() {
    let fx = fixture();
    let out = sh(&fx, "ls / /.. /../..");
    assert!(
        out.contains("escape_abs"),
        "ls / does not show the rootfs: {out}"
    );
    assert!(
        !out.contains("secret.txt") && !out.contains("rootfs"),
        "ls above / shows the host: {out}"
    );
}
