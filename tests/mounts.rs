//! OCI spec mounts, through the library: a container whose spec mounts a
//! size-limited tmpfs, a read-only and a read-write bind of host
//! directories, a single-file bind, sysfs and devpts runs busybox, which
//! must see ENOSPC past the tmpfs size, EROFS on the read-only bind, and
//! its writes to the read-write bind land in the host directory.
//!
//! These run the sandbox in the test process (`rvisor::Loader`), so they
//! do not depend on CLI flags for mounts.

mod common;
use common::*;

use oci_spec::runtime::{Mount, MountBuilder};
use std::fs;
use std::os::fd::OwnedFd;
use std::path::Path;

fn mount(typ: &str, src: Option<&Path>, dst: &str, opts: &[&str]) -> Mount {
    let mut b = MountBuilder::default()
        .typ(typ)
        .destination(dst)
        .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    if let Some(s) = src {
        b = b.source(s);
    }
    b.build().expect("mount")
}

/// Runs `script` with busybox sh in a sandbox whose root is the host's
/// `/` (read-only) with `mounts`; returns (status, stdout, stderr).
fn run_with_mounts(script: &str, mounts: Vec<Mount>) -> (i32, String, String) {
    let dir = tempfile::tempdir_in(target_dir()).expect("tempdir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    let mut spec = rvisor::simple_spec(
        "/",
        "/",
        &[busybox(), "sh", "-c", script],
        &["PATH=/usr/bin:/bin".to_string()],
    )
    .expect("spec");
    spec.set_mounts(Some(mounts));
    let stdio: [OwnedFd; 3] = [
        fs::File::open("/dev/null").expect("/dev/null").into(),
        fs::File::create(&out_path).expect("stdout file").into(),
        fs::File::create(&err_path).expect("stderr file").into(),
    ];
    let config = rvisor::Config {
        root_mode: rvisor::RootMode::ReadOnly,
        ..rvisor::Config::default()
    };
    let loader = rvisor::Loader::new(rvisor::Args {
        spec,
        config,
        stdio,
    })
    .expect("loader");
    let started = loader.start().expect("start");
    let status = started.wait().shell_code();
    started.destroy();
    (
        status,
        fs::read_to_string(&out_path).unwrap_or_default(),
        fs::read_to_string(&err_path).unwrap_or_default(),
    )
}

#[test]
fn tmpfs_size_and_bind_mounts() {
    let base = target_dir().join("tmp");
    fs::create_dir_all(&base).unwrap();
    let ro = tempfile::tempdir_in(&base).unwrap();
    fs::write(ro.path().join("existing"), "read me\n").unwrap();
    let rw = tempfile::tempdir_in(&base).unwrap();
    let single = ro.path().join("existing");
    let before = tree_snapshot(ro.path());
    let script = r#"
stat -c 'small: %a' /small
dd if=/dev/zero of=/small/fill bs=1024 count=100 2>/dev/null && echo 'fill: no error' || echo 'fill: failed'
wc -c < /small/fill
echo x > /small/more || echo 'more: failed'
cat /ro/existing
echo data > /ro/new || echo 'ro create: failed'
rm /ro/existing || echo 'ro rm: failed'
mkdir /ro/d || echo 'ro mkdir: failed'
echo written > /rw/created && echo 'rw: written'
cat /etc/single-file
echo y >> /etc/single-file || echo 'single: failed'
cat /sys/devices/system/cpu/online > /dev/null && echo 'sysfs: cpu online'
ls -d /sys/fs/cgroup
grep -c ' /ro ' /proc/mounts
grep ' /small ' /proc/mounts | cut -d' ' -f3,4
"#;
    let (status, out, err) = run_with_mounts(
        script,
        vec![
            mount("proc", Some(Path::new("proc")), "/proc", &[]),
            mount("tmpfs", None, "/small", &["size=64k", "mode=0700"]),
            mount("bind", Some(ro.path()), "/ro", &["rbind", "ro"]),
            mount("bind", Some(rw.path()), "/rw", &["rbind", "rw"]),
            mount("bind", Some(&single), "/etc/single-file", &["bind", "ro"]),
            mount("sysfs", Some(Path::new("sysfs")), "/sys", &["ro"]),
            mount("devpts", Some(Path::new("devpts")), "/dev/pts", &[]),
        ],
    );
    assert_eq!(status, 0, "stdout:\n{out}\nstderr:\n{err}");
    let want = "small: 700
fill: failed
65536
more: failed
read me
ro create: failed
ro rm: failed
ro mkdir: failed
rw: written
read me
single: failed
sysfs: cpu online
/sys/fs/cgroup
1
tmpfs rw,nosuid,nodev,size=64k,mode=700
";
    if out != want {
        panic!(
            "{}\nstderr:\n{err}",
            describe_diff(
                "stdout (expected vs sandbox)",
                want.as_bytes(),
                out.as_bytes()
            )
        );
    }
    // The errors are the right ones.
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(err.matches("Read-only file system").count(), 4, "{err}");
    // Writes to the read-write bind reach the host; the read-only one is
    // untouched.
    assert_eq!(
        fs::read_to_string(rw.path().join("created")).unwrap(),
        "written\n"
    );
    assert_eq!(before, tree_snapshot(ro.path()));
}

#[test]
fn gvisor_mount_hints_are_accepted() {
    let base = target_dir().join("tmp");
    fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut spec = rvisor::simple_spec("/", "/", &[busybox(), "true"], &[]).unwrap();
    let mut ann = std::collections::HashMap::new();
    ann.insert(
        "dev.gvisor.spec.mount.data.source".to_string(),
        dir.path().display().to_string(),
    );
    ann.insert(
        "dev.gvisor.spec.mount.data.type".to_string(),
        "bind".to_string(),
    );
    spec.set_annotations(Some(ann));
    spec.set_mounts(Some(vec![mount("mqueue", None, "/dev/mqueue", &[])]));
    let stdio: [OwnedFd; 3] = [
        fs::File::open("/dev/null").unwrap().into(),
        fs::File::create(dir.path().join("o")).unwrap().into(),
        fs::File::create(dir.path().join("e")).unwrap().into(),
    ];
    let loader = rvisor::Loader::new(rvisor::Args {
        spec,
        config: rvisor::Config::default(),
        stdio,
    })
    .expect("hints and ignored mount types are accepted");
    let started = loader.start().unwrap();
    assert_eq!(started.wait().shell_code(), 0);
    started.destroy();

    let mut spec = rvisor::simple_spec("/", "/", &[busybox(), "true"], &[]).unwrap();
    spec.set_mounts(Some(vec![mount("nfs", None, "/n", &[])]));
    let stdio: [OwnedFd; 3] = [
        fs::File::open("/dev/null").unwrap().into(),
        fs::File::create(dir.path().join("o")).unwrap().into(),
        fs::File::create(dir.path().join("e")).unwrap().into(),
    ];
    let e = rvisor::Loader::new(rvisor::Args {
        spec,
        config: rvisor::Config::default(),
        stdio,
    })
    .expect_err("an unknown mount type is refused");
    assert!(e.to_string().contains("nfs"), "{e}");
}
