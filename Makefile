# rvisor: run `make help` for the targets.
CARGO ?= cargo

.PHONY: help deps build demo test selftest clean-guests

help:
	@echo "make demo      - build rvisor (release) and run busybox in the sandbox"
	@echo "make test      - build everything and run all tests"
	@echo "make selftest  - run the integration tests with the sandbox side run natively"
	@echo "make deps      - install the Debian packages the tests need"

deps:
	bash scripts/deps.sh

build: deps
	$(CARGO) build --all-targets

demo: deps
	$(CARGO) run --release --bin rvisor -- do -- /bin/busybox sh -c 'echo hello from rvisor; echo pid $$$$; uname -a; ls /'

test: deps
	$(CARGO) build --all-targets
	$(CARGO) test --all-targets -- --test-threads=2
	$(CARGO) test --doc

# Checks the tests themselves: both sides run natively (chroot for rootfs
# runs, which needs root), so every case must pass whatever the kernel does.
selftest: deps
	RVISOR_HARNESS_SELFTEST=1 $(CARGO) test --tests -- --test-threads=2

clean-guests:
	rm -rf target/guests

# Benchmark: native vs rvisor (ptrace) vs the PTRACE_SYSEMU floor; builds
# rvisor (release) itself, prints a table and writes target/bench.json.
# Iteration counts: see the RVISOR_BENCH_* variables in examples/bench.rs.
.PHONY: bench
bench: deps
	$(CARGO) run --release --example bench

# File-system benchmark: native vs rvisor, 256 MiB sequential read/write in
# 1 MiB and 4 KiB blocks, stat, open+read+close, getdents64 of 10,000
# entries; scratch files in target/fsbench/, results in target/fsbench.json.
# Knobs: the RVISOR_FSBENCH_* variables in examples/fsbench.rs.
.PHONY: fsbench
fsbench: deps
	$(CARGO) run --release --example fsbench

# Checkpoint/restore time and statefile size for 16 MiB, 256 MiB, 1 GiB.
.PHONY: ckptbench
ckptbench: deps
	$(CARGO) run --release --example ckptbench
