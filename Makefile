# SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
#
# iser-rs top-level targets. Kbuild rules for the module itself are in ./Kbuild.
#
#   make            build ib_iser.ko (installs dependencies and the test kernel if missing)
#   make check      host unit tests + VM suite; ends with "N passed, N failed"
#   make check-long the same with the long loops (200 login/logout cycles, 50 link flaps,
#                   20 target restarts, 10 device removals, 10 iscsid restarts, 10 logouts
#                   under I/O) and 10 million fuzz executions per target
#   make check-harness  planted faults in a test build; passes only if the suite reports each
#   make demo       boot the VM, soft-RoCE + LIO, log in over iSER, run a short fio
#   make bench      benchmark against the C driver, iscsi_tcp, nvme-rdma (perf kernel)
#   make bench-pair ours vs the C driver in two VMs at once, swapped halfway (host noise
#                   cancels; BENCH_REPS rounds per half)
#   make bench-scaling  4k random reads through 1, 2, 4 sessions under dm-multipath, ours vs
#                   the C driver, and nvme-rdma with 1, 2, 4 I/O queues (BENCH_SCALING=1 adds
#                   these rows to make bench)
#   make bench-scaling-pair  the scaling rows of ours and the C driver paired: two VMs at
#                   once, configuration by configuration, swapped halfway
#   make clippy     the module built under clippy (warnings are errors)
#   make fuzz       libFuzzer on the rust/proto parsers, FUZZ_SECONDS (30) per target;
#                   the long run is make fuzz FUZZ_SECONDS=600
#   make install    into /lib/modules/<release>/updates + depmod (shadows the C ib_iser);
#                   make uninstall; make dkms-install / dkms-uninstall (DKMS, dkms.conf)
#   make fmt / fmt-check, make rust-analyzer, make host-test, make kernel, make deps
#
# KDIR=<tree> builds against another Rust-enabled kernel tree (see scripts/kbuild.sh).
# IMPL=c runs the demo with the in-tree C ib_iser (the reference) instead of ours.

# When Kbuild includes this directory's Makefile (it prefers Kbuild, but be safe).
ifneq ($(KERNELRELEASE),)
include $(src)/Kbuild
else

SHELL := /bin/bash
RUSTFMT ?= rustfmt
RUST_SRCS = $(shell find rust tests/host/src tests/fuzz/src tests/fuzz/fuzz_targets tests/icount/src -name '*.rs' ! -name '*generated*')

.PHONY: all modules deps kernel clippy rust-analyzer fmt fmt-check host-test fuzz check check-long check-harness demo bench bench-pair bench-scaling bench-scaling-pair bench-insns clean \
	install uninstall dkms-install dkms-uninstall

all: modules

deps:
	@scripts/deps.sh

kernel: deps
	@scripts/kernel.sh build debug

modules: deps
	@scripts/kbuild.sh modules

clippy: deps
	@scripts/kbuild.sh modules CLIPPY=1

rust-analyzer: deps
	@scripts/kbuild.sh rust-analyzer

fmt:
	@$(RUSTFMT) --edition 2021 --config-path .rustfmt.toml $(RUST_SRCS)

fmt-check:
	@$(RUSTFMT) --edition 2021 --config-path .rustfmt.toml --check $(RUST_SRCS)

host-test:
	@cd tests/host && cargo test --quiet

# Coverage-guided fuzzing of the parsers of target-controlled bytes (stable rustc, libFuzzer).
FUZZ_SECONDS ?= 30
fuzz:
	@scripts/fuzz.sh $(FUZZ_SECONDS)

check: deps
	@scripts/check.sh

# The long loops (200 login/logout cycles, 20 link flaps, 10 target restarts, ...) instead
# of the short versions make check runs.
check-long: deps
	@ISER_LOGIN_CYCLES=200 ISER_LONG=1 TEST_TIMEOUT=3600 ISER_FUZZ_RUNS=10000000 ISER_FUZZ_SECONDS=3600 scripts/check.sh

# The suite shown to fail: a test build with planted faults (rust/planted.rs), each of which
# the VM tests must report as a failure (scripts/check-harness.sh).
check-harness: deps
	@scripts/check-harness.sh

demo: deps
	@scripts/demo.sh

# Ours vs the C ib_iser, iscsi_tcp, nvme-rdma and the raw soft-RoCE limit on the perf kernel.
bench: deps
	@scripts/bench.sh

# Ours vs the C ib_iser at the same time in two VMs (scripts/bench.sh, BENCH_PAIR).
bench-pair: deps
	@BENCH_PAIR=1 scripts/bench.sh

# Scaling over sessions and I/O queues alone (scripts/bench.sh, BENCH_SCALING).
bench-scaling: deps
	@BENCH_SCALING=only scripts/bench.sh

# The scaling rows of ours and the C driver, paired (scripts/bench.sh, BENCH_PAIR and
# BENCH_SCALING).
bench-scaling-pair: deps
	@BENCH_PAIR=1 BENCH_SCALING=only BENCH_CONTENDERS="rs c" scripts/bench.sh

# Our module's instructions per I/O against the C driver's, counted exactly (a QEMU plugin,
# tests/icount; scripts/bench-insns.sh).
bench-insns: deps
	@scripts/bench-insns.sh

# Install paths (root): see scripts/install.sh and Documentation/admin-guide.rst.
install: modules
	@scripts/install.sh install

uninstall:
	@scripts/install.sh uninstall

dkms-install: deps
	@scripts/install.sh dkms-install

dkms-uninstall:
	@scripts/install.sh dkms-uninstall

clean:
	@if kdir=$$(KDIR=$(KDIR) scripts/kbuild.sh kdir 2>/dev/null); then \
		$(MAKE) -C $$kdir M=$(CURDIR) LLVM=1 clean; fi
	@rm -rf tests/host/target tests/fuzz/target results

endif
