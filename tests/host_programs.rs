//! Real host programs — the host's dynamically linked bash and python3 —
//! running scripts from tests/scripts natively and under `rvisor do`.

mod common;
use common::*;

#[test]
fn bash_funcs_script() {
    let out = Case::new("bash funcs.sh", &[bash(), "tests/scripts/funcs.sh"])
        .expect_status(0)
        .check();
    let text = out.stdout_str();
    for want in [
        "fact 10 = 3628800",
        "pipestatus: 1 0",
        "trapped TERM",
        "== done",
    ] {
        assert!(
            text.contains(want),
            "funcs.sh native output lacks {want:?}:\n{text}"
        );
    }
}

#[test]
fn bash_stdin_script() {
    // The script comes on stdin rather than from a file.
    Case::new("bash -s", &[bash(), "-s", "arg1", "arg 2"])
        .stdin("echo \"args: $# [$1] [$2]\"; while read -r l; do echo \"read: $l\"; done\n")
        .expect_status(0)
        .check();
}

#[test]
fn python_program() {
    // Absolute path on purpose: not a pyenv shim from PATH.
    let out = Case::new(
        "python3 pyprog.py",
        &[python3(), "tests/scripts/pyprog.py", "x", "y z"],
    )
    .expect_status(0)
    .check();
    let text = out.stdout_str();
    for want in [
        "counter: 80000",
        "busybox echo: b'hi\\n' rc 0",
        "killed child rc -9",
        "argv: ['x', 'y z']",
    ] {
        assert!(
            text.contains(want),
            "pyprog.py native output lacks {want:?}:\n{text}"
        );
    }
}

#[test]
fn python_exit_status_and_stderr() {
    Case::new(
        "python3 -c raise",
        &[
            python3(),
            "-c",
            "import sys; print('out'); sys.stderr.write('err\\n'); sys.exit(17)",
        ],
    )
    .expect_status(17)
    .check();
}

#[test]
fn python_uncaught_exception() {
    Case::new(
        "python3 traceback",
        &[python3(), "-c", "def f():\n    1/0\nf()\n"],
    )
    .expect_status(1)
    .check();
}
