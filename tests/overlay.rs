//! The copy-on-write root of `rvisor do`: an application may create,
//! modify, rename and delete files and directories in a host directory,
//! sees its own writes, and the host directory is left exactly as it was
//! (paths, contents, modes, mtimes).
//!
//! Under `RVISOR_HARNESS_SELFTEST=1` the script runs natively, so the host
//! directory *does* change: the test then asserts that the snapshot sees
//! the change, which shows the detector works.

mod common;
use common::*;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

const SCRIPT: &str = r#"set -e
cd "$1"
echo "== before"
ls -a
cat keep.txt modify.txt
echo "== writes"
echo "brand new" > created.txt
echo "appended" >> modify.txt
printf 'XY' | dd of=modify.txt bs=1 seek=2 conv=notrunc 2>/dev/null
mv rename_me.txt renamed.txt
echo "renamed and extended" >> renamed.txt
rm delete.txt
mkdir -p newdir/inner
echo deep > newdir/inner/deep.txt
mv newdir/inner newdir/moved
rmdir emptydir
rm -r subdir
chmod 755 created.txt
chmod 644 private.txt
ln -s created.txt created.link
rm keep.link
mkfifo pipe.fifo 2>/dev/null && rm pipe.fifo
truncate -s 4 keep.txt
echo "== reads"
find . | sort
for f in $(find . -type f | sort); do echo "--- $f"; cat "$f"; done
echo "--- via link"; cat created.link
stat -c '%n %a %s' created.txt private.txt keep.txt modify.txt
test -e delete.txt || echo "delete.txt is gone"
test -d subdir || echo "subdir is gone"
test -d emptydir || echo "emptydir is gone"
test -L keep.link || echo "keep.link is gone"
wc -c < modify.txt
echo "== done"
"#;

const EXPECTED: &str = "== before
.
..
delete.txt
emptydir
keep.link
keep.txt
modify.txt
private.txt
rename_me.txt
subdir
keep me
original
== writes
== reads
.
./created.link
./created.txt
./keep.txt
./modify.txt
./newdir
./newdir/moved
./newdir/moved/deep.txt
./private.txt
./renamed.txt
--- ./created.txt
brand new
--- ./keep.txt
keep--- ./modify.txt
orXYinal
appended
--- ./newdir/moved/deep.txt
deep
--- ./private.txt
private
--- ./renamed.txt
moving
renamed and extended
--- via link
brand new
created.txt 755 10
private.txt 644 8
keep.txt 644 4
modify.txt 644 18
delete.txt is gone
subdir is gone
emptydir is gone
keep.link is gone
18
== done
";

fn write(p: &Path, content: &str, mode: u32) {
    fs::write(p, content).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn populate(dir: &Path) {
    write(&dir.join("keep.txt"), "keep me\n", 0o644);
    write(&dir.join("modify.txt"), "original\n", 0o644);
    write(&dir.join("delete.txt"), "doomed\n", 0o644);
    write(&dir.join("rename_me.txt"), "moving\n", 0o644);
    write(&dir.join("private.txt"), "private\n", 0o600);
    fs::create_dir(dir.join("subdir")).unwrap();
    write(&dir.join("subdir/nested.txt"), "nested\n", 0o644);
    fs::create_dir(dir.join("emptydir")).unwrap();
    symlink("keep.txt", dir.join("keep.link")).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A pre-populated host directory. It lives under Cargo's target/tmp rather
/// than /tmp, so the test does not depend on what the sandbox mounts at /tmp.
fn host_dir() -> tempfile::TempDir {
    let base = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&base).unwrap();
    let t = tempfile::Builder::new()
        .prefix("rvisor-overlay-")
        .tempdir_in(&base)
        .expect("tempdir");
    populate(t.path());
    t
}

#[test]
fn writes_are_visible_inside_and_host_is_unchanged() {
    let tmp = host_dir();
    let dir = tmp.path().to_str().unwrap().to_string();
    let before = tree_snapshot(tmp.path());

    let out = run_sandbox(&[busybox(), "sh", "-c", SCRIPT, "sh", &dir], b"", &[]);
    let after = tree_snapshot(tmp.path());

    assert_eq!(
        out.status,
        0,
        "script failed in the sandbox\nstdout:\n{}\nstderr:\n{}",
        out.stdout_str(),
        out.stderr_str()
    );
    if out.stdout != EXPECTED.as_bytes() {
        panic!(
            "{}",
            describe_diff(
                "stdout (expected vs sandbox)",
                EXPECTED.as_bytes(),
                &out.stdout
            )
        );
    }
    assert_eq!(out.stderr_str(), "", "unexpected stderr");

    if selftest() {
        assert_ne!(
            before, after,
            "selftest: the native run changed the directory, but the snapshot did not notice"
        );
    } else if before != after {
        panic!(
            "the host directory changed under `rvisor do`\n{}",
            describe_diff(
                "tree snapshot (before vs after)",
                before.as_bytes(),
                after.as_bytes()
            )
        );
    }

    // A later run sees the host directory as the host does: the first
    // run's writes lived only in that sandbox's memory.
    let list = [
        "sh",
        "-c",
        "cd \"$1\" && find . | sort && cat keep.txt modify.txt",
        "sh",
        &dir,
    ];
    let argv: Vec<&str> = std::iter::once(busybox()).chain(list).collect();
    let native = run_native(&argv, b"", &[]);
    let sandbox = run_sandbox(&argv, b"", &[]);
    if let Some(report) = compare(&native, &sandbox) {
        panic!("a second sandbox run does not see the host directory as it is\n{report}");
    }
}

#[test]
fn overwrite_and_delete_host_file_in_place() {
    // Truncate-and-rewrite, then delete, a pre-existing host file; the
    // sandbox reads back each step, the host keeps the original.
    let tmp = host_dir();
    let f = tmp.path().join("modify.txt");
    let before = tree_snapshot(tmp.path());
    let script = "set -e; echo replaced > \"$1\"; cat \"$1\"; : > \"$1\"; wc -c < \"$1\"; \
                  rm \"$1\"; test -e \"$1\" || echo deleted; echo again > \"$1\"; cat \"$1\"";
    let out = run_sandbox(
        &[busybox(), "sh", "-c", script, "sh", f.to_str().unwrap()],
        b"",
        &[],
    );
    assert_eq!(
        out.stdout_str(),
        "replaced\n0\ndeleted\nagain\n",
        "stderr: {}",
        out.stderr_str()
    );
    assert_eq!(out.status, 0);
    let after = tree_snapshot(tmp.path());
    if selftest() {
        assert_ne!(before, after);
    } else {
        assert_eq!(
            fs::read_to_string(&f).unwrap(),
            "original\n",
            "host file was modified"
        );
        if before != after {
            panic!(
                "{}",
                describe_diff(
                    "tree snapshot (before vs after)",
                    before.as_bytes(),
                    after.as_bytes()
                )
            );
        }
    }
}

#[test]
fn large_file_write_and_read_back() {
    // A few MiB written through the overlay and read back by checksum.
    let tmp = host_dir();
    let dir = tmp.path().to_str().unwrap().to_string();
    let before = tree_snapshot(tmp.path());
    let script = "set -e; cd \"$1\"; dd if=/dev/zero bs=65536 count=64 2>/dev/null | tr '\\0' 'a' > big; \
                  wc -c < big; md5sum < big; dd if=/dev/zero bs=65536 count=64 2>/dev/null | tr '\\0' 'a' | md5sum; \
                  cat big big > bigger; wc -c < bigger; rm big bigger";
    let out = run_sandbox(&[busybox(), "sh", "-c", script, "sh", &dir], b"", &[]);
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        out.status,
        0,
        "stdout: {text}\nstderr: {}",
        out.stderr_str()
    );
    assert_eq!(lines.len(), 4, "unexpected output: {text}");
    assert_eq!(lines[0], "4194304");
    assert_eq!(
        lines[1], lines[2],
        "read-back checksum differs from the written data"
    );
    assert_eq!(lines[3], "8388608");
    if !selftest() {
        assert_eq!(before, tree_snapshot(tmp.path()), "host directory changed");
    }
}
