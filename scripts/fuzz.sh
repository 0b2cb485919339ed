#!/usr/bin/env bash
# Runs each fuzz target for a bounded number of executions (stable Rust:
# no sanitizer, `-s none`). Used by .ci/run; installs cargo-fuzz if missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
runs_ctl=${RVISOR_FUZZ_RUNS:-1000000}
runs_elf=${RVISOR_FUZZ_ELF_RUNS:-200000}
cd fuzz
cargo fuzz run -s none --release ctl_frame -- -runs="$runs_ctl" -seed=1 2>&1 | tail -n 3
cargo fuzz run -s none --release elf_parse -- -runs="$runs_elf" -seed=1 2>&1 | tail -n 3
