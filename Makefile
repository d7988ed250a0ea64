# memory_coordinator: build, test, fuzz, bench, install.
# `make deps && make all && make test` on a fresh Debian 12 machine (as root).

CARGO        ?= cargo
PREFIX       ?= /usr/local
DESTDIR      ?=
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= decide qmp_reply meminfo
BIN          := memory_coordinator

# What the build and the tests need from Debian (README "Build").
DEBIAN_PACKAGES := build-essential pkg-config libvirt-dev libclang-dev clang \
                   libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients \
                   qemu-system-x86 busybox-static cpio kmod procps

# cargo-fuzz needs nightly features; with no nightly toolchain, stable is allowed to use them.
FUZZ_TOOLCHAIN := $(shell rustup toolchain list 2>/dev/null | grep -q '^nightly' && echo +nightly)
FUZZ_ENV       := $(if $(FUZZ_TOOLCHAIN),,RUSTC_BOOTSTRAP=1)

.PHONY: all build test fuzz bench bench-policy deps install clean demo e2e e2e-short

all: build
	install -m 0755 target/release/$(BIN) ./$(BIN)

build:
	$(CARGO) build --release --locked

# Everything in release mode, then the policy's unit and property tests once more in a debug
# build, where integer overflow panics instead of wrapping.
test:
	$(CARGO) test --release --locked
	$(CARGO) test --locked --lib policy::

# Each target runs FUZZ_SECONDS, starting from the seeds kept in fuzz/seeds (real inputs and
# a small merged corpus); what it finds goes to fuzz/corpus (not committed).
fuzz:
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t && \
		$(FUZZ_ENV) $(CARGO) $(FUZZ_TOOLCHAIN) fuzz run $$t corpus/$$t seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

bench:
	$(CARGO) bench --locked --bench decide

# The policy's scores on simulated hosts, one row per scenario (tests/common/sim.rs).
bench-policy:
	$(CARGO) bench --locked --bench policy

# The real-VM lab (tests/lab): boots TCG guests, needs root. Results in target/lab/results.
LAB := $(CARGO) test --release --locked --test lab --

# See it work: installs, builds, runs T1 on libvirt with four guests and a live table.
demo: deps all
	$(LAB) demo

# T1, T2, T3 on libvirt and on bare QEMU + QMP, four guests each, scores asserted.
e2e: all
	$(LAB) e2e

# What CI runs: T1 with two guests on each backend.
e2e-short: all
	$(LAB) e2e --short

deps:
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(DEBIAN_PACKAGES)

install: build
	install -D -m 0755 target/release/$(BIN) $(DESTDIR)$(PREFIX)/bin/$(BIN)

clean:
	$(CARGO) clean
	rm -rf fuzz/target ./$(BIN)
