//! Checkpoint and restore through the CLI: a sandbox saved mid-run to a
//! statefile, destroyed, and restored in a new sandbox process carries on
//! so that the two halves of its output make the uninterrupted native
//! run's output. Broken statefiles are rejected with a typed, precise
//! error.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        let base = target_dir().join("tmp");
        std::fs::create_dir_all(&base).unwrap();
        Root {
            dir: tempfile::Builder::new()
                .prefix("rvisor-ckpt-")
                .tempdir_in(&base)
                .unwrap(),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `rvisor --root STATE args...` with stdout and stderr to `out`.
    fn rvisor_to(&self, out: &Path, args: &[&str]) -> i32 {
        let f = std::fs::File::create(out).unwrap();
        let st = Command::new(rvisor_bin())
            .arg("--root")
            .arg(self.state())
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .status()
            .expect("rvisor");
        st.code().unwrap_or(128)
    }

    fn rvisor(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(rvisor_bin());
        cmd.arg("--root").arg(self.state()).args(args);
        run_command(
            cmd,
            b"",
            Duration::from_secs(60),
            &format!("rvisor {args:?}"),
        )
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        if let Ok(entries) = std::fs::read_dir(self.state()) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = Command::new(rvisor_bin())
                    .arg("--root")
                    .arg(self.state())
                    .args(["delete", "--force", &id])
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// Runs `argv` natively, then in a sandbox checkpointed after `delay` and
/// restored in a new sandbox; the combined output must equal native.
fn checkpoint_midway(name: &str, argv: &[&str], delay: Duration) {
    let native = run_native(argv, b"", &[]);
    let r = Root::new();
    let (a, b) = (r.path("first.txt"), r.path("second.txt"));
    let image = r.path("image");
    let id1 = format!("{name}-a");
    let id2 = format!("{name}-b");
    let mut create = vec!["create", "--host-root", &id1, "--"];
    create.extend_from_slice(argv);
    assert_eq!(
        r.rvisor_to(&a, &create),
        0,
        "create: {}",
        std::fs::read_to_string(&a).unwrap_or_default()
    );
    let st = r.rvisor(&["start", &id1]);
    assert_eq!(st.status, 0, "start: {}", st.stderr_str());
    std::thread::sleep(delay);
    let ck = r.rvisor(&["checkpoint", "--image-path", image.to_str().unwrap(), &id1]);
    assert_eq!(ck.status, 0, "checkpoint: {}", ck.stderr_str());
    assert!(
        !r.state().join(&id1).exists(),
        "the checkpointed sandbox should have ended"
    );
    assert_eq!(
        r.rvisor_to(
            &b,
            &["restore", "--image-path", image.to_str().unwrap(), &id2]
        ),
        0,
        "restore: {}",
        std::fs::read_to_string(&b).unwrap_or_default()
    );
    let w = r.rvisor(&["wait", &id2]);
    let mut combined = std::fs::read(&a).unwrap();
    combined.extend(std::fs::read(&b).unwrap());
    let mut expected = native.stdout.clone();
    expected.extend(&native.stderr);
    assert_eq!(
        String::from_utf8_lossy(&combined),
        String::from_utf8_lossy(&expected),
        "output across the checkpoint differs from the native run"
    );
    assert_eq!(w.status, native.status, "exit status after restore");
    assert!(
        !std::fs::read(&a).unwrap().is_empty(),
        "nothing ran before the checkpoint"
    );
    assert!(
        !std::fs::read(&b).unwrap().is_empty(),
        "nothing ran after the restore"
    );
}

#[test]
fn threads_child_pipe_and_tmp_file_survive() {
    let exe = guest("ckpt", true);
    checkpoint_midway(
        "guest",
        &[exe.to_str().unwrap()],
        Duration::from_millis(300),
    );
}

#[test]
fn busybox_shell_loop_survives() {
    checkpoint_midway(
        "sh",
        &[
            "/bin/busybox",
            "sh",
            "-c",
            "i=0; while [ $i -lt 30 ]; do echo line $i; i=$((i+1)); sleep 0.02; done; echo end",
        ],
        Duration::from_millis(250),
    );
}

#[test]
fn broken_statefiles_are_rejected_with_a_reason() {
    let r = Root::new();
    let img = r.path("image");
    // A real statefile first.
    let a = r.path("a.txt");
    assert_eq!(
        r.rvisor_to(
            &a,
            &[
                "create",
                "--host-root",
                "src",
                "--",
                "/bin/busybox",
                "sleep",
                "10"
            ]
        ),
        0
    );
    assert_eq!(r.rvisor(&["start", "src"]).status, 0);
    let ck = r.rvisor(&[
        "checkpoint",
        "--leave-running",
        "--image-path",
        img.to_str().unwrap(),
        "src",
    ]);
    assert_eq!(ck.status, 0, "{}", ck.stderr_str());
    let good = std::fs::read(&img).unwrap();
    assert!(good.len() > 64);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not a statefile",
            b"hello world, not a statefile".to_vec(),
            "not",
        ),
        ("truncated", good[..good.len() / 2].to_vec(), "truncated"),
        (
            "flipped byte",
            {
                let mut g = good.clone();
                let i = g.len() / 2;
                g[i] ^= 0x55;
                g
            },
            "checksum",
        ),
        (
            "future version",
            {
                let mut g = good.clone();
                g[8] = 0xee;
                g
            },
            "version",
        ),
    ];
    for (what, bytes, word) in cases {
        let bad = r.path("bad");
        std::fs::write(&bad, &bytes).unwrap();
        let out = r.path("out.txt");
        let code = r.rvisor_to(
            &out,
            &["restore", "--image-path", bad.to_str().unwrap(), "broken"],
        );
        let msg = std::fs::read_to_string(&out).unwrap_or_default();
        assert_eq!(code, 125, "{what}: restore should fail: {msg}");
        assert!(
            msg.to_lowercase().contains(word),
            "{what}: the error should say {word:?}: {msg}"
        );
        assert!(
            !r.state().join("broken").exists(),
            "{what}: a failed restore left state behind"
        );
    }
    // The original sandbox is untouched.
    assert_eq!(r.rvisor(&["delete", "--force", "src"]).status, 0);
}

#[test]
fn python_state_in_memory_survives() {
    checkpoint_midway(
        "py",
        &[
            "/usr/bin/python3",
            "-c",
            "import time\nd = {i: i * i for i in range(100000)}\nprint('built', len(d))\nfor _ in range(40):\n    time.sleep(0.01)\nprint(sum(d.values()), d[99999])",
        ],
        Duration::from_millis(400),
    );
}

#[test]
fn bash_while_loop_survives() {
    checkpoint_midway(
        "bash",
        &[
            "/bin/bash",
            "-c",
            "i=0; while [ $i -lt 25 ]; do echo \"n=$i\"; i=$((i+1)); sleep 0.02; done; echo end",
        ],
        Duration::from_millis(300),
    );
}

#[test]
fn event_files_and_timers_survive() {
    let exe = guest("ckpt_events", true);
    checkpoint_midway(
        "events",
        &[exe.to_str().unwrap()],
        Duration::from_millis(250),
    );
}
