//! Real tools that write, run natively and under `rvisor do`: busybox
//! `tar`, `cp -a`, `mv`, `rm -rf`, `find -newer`, `sort` of a 50 MB file,
//! `ps`; the host's python3 with SQLite and multiprocessing; a C program
//! exercising splice, copy_file_range, memfd, O_TMPFILE, flock, record and
//! OFD locks, fallocate and openat2. Sandbox-only sanity checks for `free`,
//! `df`, `mount` and `top`, whose output describes the machine.
//!
//! Every differential case works in a fresh directory it makes (and
//! removes) below a scratch directory holding a fixture tree. The native
//! run really writes there; the sandbox run writes into its overlay, and
//! after it the scratch directory must be exactly as before (tree hash).
//!
//! Under `RVISOR_HARNESS_SELFTEST=1` both sides run natively and the
//! unchanged-host check is skipped (natively the host does change).

mod common;
use common::*;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// A scratch directory under target/tmp (not /tmp, whatever is mounted
/// there) with a fixture tree `tree/` of files, directories, a symlink and
/// fixed modes and mtimes.
fn scratch() -> tempfile::TempDir {
    let base = target_dir().join("tmp");
    fs::create_dir_all(&base).expect("target/tmp");
    let t = tempfile::Builder::new()
        .prefix("rvisor-fs-")
        .tempdir_in(&base)
        .expect("tempdir");
    let root = t.path().join("tree");
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let stamp = |p: &Path, secs: u64| {
        let f = fs::File::open(p).expect("open for times");
        f.set_times(fs::FileTimes::new().set_modified(t0 + Duration::from_secs(secs)))
            .expect("set mtime");
    };
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    let files = [
        ("top.txt", "top level\n", 0o644, 10),
        ("a/one.txt", "one\n", 0o600, 20),
        ("a/b/two.txt", "two two\n", 0o640, 30),
        ("a/b/c/three.bin", "\u{1}\u{2}\u{3}three\n", 0o755, 40),
        ("a/b/c/long.txt", &"0123456789".repeat(1000), 0o644, 50),
    ];
    for (p, content, mode, secs) in files {
        let path = root.join(p);
        fs::write(&path, content).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        stamp(&path, secs);
    }
    symlink("a/b/two.txt", root.join("link")).unwrap();
    for (d, secs) in [
        ("a/b/c", 60),
        ("a/b", 70),
        ("a", 80),
        ("empty", 90),
        ("", 100),
    ] {
        stamp(&root.join(d), secs);
    }
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    t
}

/// Runs `argv` natively, then under the sandbox, and requires identical
/// status (`status` for the native run), stdout and stderr, and that the
/// sandbox run left `dir` unchanged.
fn differential(name: &str, argv: &[&str], dir: &Path, status: i32, limit: Duration) -> Output {
    let native = run_native_timeout(argv, b"", &[], limit);
    assert_eq!(
        native.status,
        status,
        "case {name}: the NATIVE run exited {} (expected {status}) — the test is wrong\nstdout: {}\nstderr: {}",
        native.status,
        truncate_lossy(&native.stdout, 2000),
        truncate_lossy(&native.stderr, 2000),
    );
    let before = tree_snapshot(dir);
    let sandbox = run_sandbox_timeout(argv, b"", &[], limit);
    let after = tree_snapshot(dir);
    if let Some(report) = compare(&native, &sandbox) {
        panic!("case `{name}` differs between native and sandbox\nargv: {argv:?}\n{report}");
    }
    if !selftest() && before != after {
        panic!(
            "case `{name}`: the host directory changed under `rvisor do`\n{}",
            describe_diff(
                "tree snapshot (before vs after)",
                before.as_bytes(),
                after.as_bytes()
            )
        );
    }
    native
}

/// `busybox sh -c SCRIPT sh SCRATCH`: the script starts in a fresh
/// directory below the scratch directory (`$W`), which it removes at the end.
fn sh_case(name: &str, script: &str, limit: Duration) -> Output {
    let t = scratch();
    let dir = t.path().to_str().expect("utf-8 path").to_string();
    let full = format!(
        "set -e; S=\"$1\"; W=$(mktemp -d -p \"$S\"); cd \"$W\"\n{script}\ncd /; rm -rf \"$W\""
    );
    differential(
        name,
        &[busybox(), "sh", "-c", &full, "sh", &dir],
        t.path(),
        0,
        limit,
    )
}

const MIN: Duration = Duration::from_secs(60);

#[test]
fn tar_create_and_extract() {
    let out = sh_case(
        "tar",
        r#"tar -cf a.tar -C "$S" tree
tar -tvf a.tar | sort -k 6
mkdir x; tar -xf a.tar -C x
find x | sort
find x -type f | sort | xargs md5sum
find x -type f | sort | xargs stat -c '%n %a %s %Y'
find x -type d | sort | xargs stat -c '%n %a'
readlink x/tree/link
tar -czf b.tgz -C x tree; mkdir y; tar -xzf b.tgz -C y; diff -r x y && echo gzip round trip same
"#,
        MIN,
    );
    assert!(out.stdout_str().contains("gzip round trip same"));
}

#[test]
fn cp_a_preserves_everything() {
    sh_case(
        "cp_a",
        r#"cp -a "$S/tree" copy
find copy | sort
find copy -type f | sort | xargs stat -c '%n %F %a %s %Y'
find copy -type d | sort | xargs stat -c '%n %F %a %Y'
readlink copy/link
cmp copy/a/b/c/long.txt "$S/tree/a/b/c/long.txt" && echo same content
cp -a copy copy2; diff -r copy copy2 && echo copies equal
cp copy/top.txt copy/top-plain.txt; stat -c '%n %a' copy/top-plain.txt
"#,
        MIN,
    );
}

#[test]
fn mv_files_and_directories() {
    sh_case(
        "mv",
        r#"cp -a "$S/tree" t
mv t/top.txt t/moved.txt
mv t/a/b t/b-moved
mv t/a/one.txt t/empty/
echo new > t/replace-me; mv t/moved.txt t/replace-me
mkdir t/target; mv t/b-moved t/target/
mv t/empty t/target/b-moved/c/
find t | sort
cat t/replace-me t/empty/one.txt 2>&1 || true
cat t/target/b-moved/c/empty/one.txt
mv t/nonexistent t/x 2>/dev/null || echo mv of missing fails
mv t/target t/target/b-moved 2>/dev/null || echo mv into itself fails
"#,
        MIN,
    );
}

#[test]
fn rm_rf_deep_trees() {
    sh_case(
        "rm_rf",
        r#"cp -a "$S/tree" t
mkdir -p d/1/2/3/4/5/6/7/8/9
for i in 1 2 3 4 5 6 7 8 9; do for j in a b c d e f; do echo $i$j > d/1/$i$j; done; done
ln -s ../../.. d/1/2/loop
chmod 000 d/1/2/3/4 2>/dev/null || true
chmod 755 d/1/2/3/4
rm -rf d t/a
find . | sort
test -e d || echo d is gone
rm -rf nonexistent && echo rm -rf of nothing succeeds
rm -r t/empty t/link; find t | sort
"#,
        MIN,
    );
}

#[test]
fn find_newer() {
    sh_case(
        "find_newer",
        r#"cp -a "$S/tree" t
touch -d '2021-01-01 00:00:00' ref
touch -d '2020-06-01 00:00:00' t/old.txt
touch -d '2022-02-02 00:00:00' t/new.txt
touch -d '2023-03-03 00:00:00' t/a/b/newer.txt
find t -newer ref | sort
find t -type f ! -newer ref | sort
find t -newer t/a/b/two.txt -type f | sort
find t -mtime +1000 -type f | sort
"#,
        MIN,
    );
}

#[test]
fn sort_50mb_file() {
    // About 51 MB: a 1 MB chunk from awk (which writes line by line),
    // then 42 prefixed copies of it through sed (which writes in blocks);
    // sorted in the scratch directory and checked by count and checksum.
    let out = sh_case(
        "sort_50mb",
        r#"awk 'BEGIN { for (i = 0; i < 72000; i++) printf "%07d %06d\n", (i * 7919) % 1000003, i }' > chunk
for i in $(seq 10 51); do sed "s/^/$i/" chunk; done > big
ls -l big | awk '{print $5}'
sort big > sorted
wc -l < sorted
md5sum < sorted
sort -r big | head -n 3
sort -c sorted && echo sorted check passes
"#,
        Duration::from_secs(600),
    );
    let size: u64 = out
        .stdout_str()
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("size line");
    assert!(size > 50_000_000, "the generated file is {size} bytes");
}

/// `ps` lists the shell, its background child and itself with the right
/// parent links and states; PIDs are replaced by roles.
#[test]
fn ps_sees_the_process_tree() {
    let script = r#"sleep 10 & bg=$!
# Wait until the child has become `sleep` and sleeps (a loaded machine
# may take a while).
n=0; until [ "$(cat /proc/$bg/comm)" = sleep ] && [ "$(cut -d' ' -f3 /proc/$bg/stat)" = S ]; do
  usleep 10000; n=$((n+1)); [ $n -lt 1000 ] || break; done
busybox ps -o pid,ppid,stat,comm,args | busybox awk -v me=$$ -v bg=$bg '
  NR == 1 { print "header:", $0; next }
  $1 == me { print "shell:", $3, $4 }
  $1 == bg { print "bg:", ($2 == me ? "child of shell" : "other parent"), $3, $5, $6, $7 }
  $4 == "ps" && $2 == me { print "ps:", $3, $5, $6 }'
kill $bg
"#;
    let t = scratch();
    differential("ps", &[busybox(), "sh", "-c", script], t.path(), 0, MIN);
}

#[test]
fn python_sqlite_and_multiprocessing() {
    let t = scratch();
    let dir = t.path().to_str().unwrap();
    let script = repo_root().join("tests/scripts/sqlite_mp.py");
    let out = differential(
        "python_sqlite_mp",
        &[python3(), script.to_str().unwrap(), dir],
        t.path(),
        0,
        Duration::from_secs(300),
    );
    let text = out.stdout_str();
    for want in [
        "count 10000",
        "pool sum of squares 332833500",
        "workers are other processes True",
        "via queue",
        "integrity ok",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

fn fileops(static_: bool) {
    let exe = guest("fileops", static_);
    let t = scratch();
    let out = differential(
        "fileops",
        &[exe.to_str().unwrap(), t.path().to_str().unwrap()],
        t.path(),
        0,
        MIN,
    );
    let text = out.stdout_str();
    for want in [
        "splice pipe->file: 9 [456789012]",
        "memfd link: /memfd:rvisor-test (deleted)",
        "memfd reopened: 10 [memfd DATA] own offset=10",
        "child got the lock after unlock: L, child exit 0",
        "child F_SETLKW [0,10) after parent's close: ok",
        "F_OFD_GETLK: type=W pid=-1",
        "punch hole: ok byte4096=0 byte4095=1 size=8192",
        "IN_ROOT abs symlink: ok [inside]",
        "NO_MAGICLINKS: ELOOP",
        "uid 1000 open 0600 root file: EACCES",
        "failures: 0",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
}

#[test]
fn fileops_static() {
    fileops(true);
}

#[test]
fn fileops_dynamic() {
    fileops(false);
}

// ---- sandbox-only: output that describes the machine ----

fn sandbox_ok(argv: &[&str]) -> String {
    let out = run_sandbox(argv, b"", &[]);
    assert_eq!(
        out.status,
        0,
        "{argv:?} failed in the sandbox\nstdout: {}\nstderr: {}",
        out.stdout_str(),
        out.stderr_str()
    );
    out.stdout_str()
}

#[test]
fn free_reports_numbers() {
    let text = sandbox_ok(&[busybox(), "free"]);
    let mem: Vec<u64> = text
        .lines()
        .find(|l| l.starts_with("Mem:"))
        .unwrap_or_else(|| panic!("no Mem: line in\n{text}"))
        .split_whitespace()
        .skip(1)
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("not a number: {v} in\n{text}"))
        })
        .collect();
    assert!(mem.len() >= 3, "{text}");
    assert!(mem[0] > 0 && mem[1] <= mem[0] && mem[2] <= mem[0], "{text}");
    assert!(text.lines().any(|l| l.starts_with("Swap:")), "{text}");
}

#[test]
fn mount_lists_root_and_proc() {
    let text = sandbox_ok(&[busybox(), "mount"]);
    assert!(text.lines().any(|l| l.contains(" on / type ")), "{text}");
    assert!(
        text.lines().any(|l| l.contains(" on /proc type proc ")),
        "{text}"
    );
    let info = sandbox_ok(&[busybox(), "cat", "/proc/self/mountinfo"]);
    assert!(
        info.lines().any(|l| l.split(' ').nth(4) == Some("/")),
        "{info}"
    );
}

#[test]
fn df_finds_its_mount_points() {
    let text = sandbox_ok(&[busybox(), "df", "-P"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "{text}");
    let root: Vec<&str> = lines
        .iter()
        .find(|l| l.ends_with(" /"))
        .unwrap_or_else(|| panic!("no / in\n{text}"))
        .split_whitespace()
        .collect();
    let total: u64 = root[1].parse().expect("blocks");
    assert!(total > 0, "{text}");
    // The overlay reports the host root's size, as `df /` does natively.
    let native = run_native(&[busybox(), "df", "-P", "/"], b"", &[]);
    let native_total: u64 = native
        .stdout_str()
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .expect("native df");
    assert_eq!(
        total,
        native_total,
        "sandbox:\n{text}native:\n{}",
        native.stdout_str()
    );
    assert!(text.contains(" /dev/shm"), "{text}");
    // Every mount point can be statfs'ed, even those df hides (no blocks).
    let all = sandbox_ok(&[busybox(), "df", "-a"]);
    for m in ["/proc", "/dev"] {
        assert!(
            all.lines().any(|l| l.ends_with(&format!(" {m}"))),
            "{m}: {all}"
        );
    }
}

#[test]
fn top_batch_mode() {
    let text = sandbox_ok(&[busybox(), "top", "-b", "-n", "1"]);
    assert!(
        text.contains("Mem:") && text.contains("Load average:"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.contains(" R ") && l.contains("top")),
        "top does not see itself running\n{text}"
    );
}

#[test]
fn proc_files_for_tools() {
    // What ps/top/python read, checked for shape.
    let script = "cat /proc/self/stat; echo; cat /proc/self/statm; head -n 3 /proc/self/status; \
                  cat /proc/uptime /proc/loadavg; head -n 1 /proc/stat; grep -c . /proc/self/maps; \
                  ls /proc/self/fd /proc/self/fdinfo /proc/self/task; cat /proc/self/fdinfo/0; \
                  readlink /proc/self/exe; readlink /proc/self/cwd; readlink /proc/self/root; cat /proc/sys/kernel/osrelease \
                  /proc/sys/kernel/pid_max; head -n 2 /proc/self/limits; grep -c '^Size:' /proc/self/smaps";
    let text = sandbox_ok(&[busybox(), "sh", "-c", script]);
    let mut lines = text.lines();
    let stat = lines.next().unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
    assert!(
        fields.len() >= 50,
        "stat has {} fields: {stat}",
        fields.len() + 2
    );
    assert_eq!(fields[0], "R", "the reader sees itself running: {stat}");
    assert!(text.contains("/bin/busybox"), "{text}");
    assert!(text.contains("pos:\t0") || text.contains("pos:"), "{text}");
    assert!(text.contains("4194304"), "{text}");
    assert!(text.contains("Max cpu time"), "{text}");
}

#[test]
fn proc_stat_shows_sleepers_sleeping() {
    // A process blocked in a syscall is 'S'; the reader itself is 'R'.
    let script = "sleep 5 & usleep 200000; cut -d' ' -f3 /proc/$!/stat; cut -d' ' -f3 /proc/self/stat; kill $!";
    let text = sandbox_ok(&[busybox(), "sh", "-c", script]);
    assert_eq!(text, "S\nR\n");
}

#[test]
fn dev_stdin_and_proc_fd_reopen() {
    // /dev/stdin is a magic link to fd 0; a here-document is a file the
    // shell opened, reopened by path.
    let script = "cat /dev/stdin <<EOF\nvia dev stdin\nEOF\n\
                  exec 3<<EOF\nfd three\nEOF\ncat /proc/self/fd/3; readlink /proc/self/fd/1 | grep -c . ";
    Case::new("dev_stdin", &[busybox(), "sh", "-c", script]).check();
}
