# memory_coordinator: build, test, fuzz, bench, install.
# `make deps && make all && make test` on a fresh Debian 12 machine (as root).

CARGO        ?= cargo
PREFIX       ?= /usr/local
DESTDIR      ?=
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= decide qmp_reply
BIN          := memory_coordinator

# What the build and the tests need from Debian (README "Build").
DEBIAN_PACKAGES := build-essential pkg-config libvirt-dev libclang-dev clang \
                   libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients \
                   qemu-system-x86 busybox-static cpio kmod procps

# cargo-fuzz needs nightly features; with no nightly toolchain, stable is allowed to use them.
FUZZ_TOOLCHAIN := $(shell rustup toolchain list 2>/dev/null | grep -q '^nightly' && echo +nightly)
FUZZ_ENV       := $(if $(FUZZ_TOOLCHAIN),,RUSTC_BOOTSTRAP=1)

.PHONY: all build test fuzz bench deps install clean demo e2e e2e-short

all: build
	install -m 0755 target/release/$(BIN) ./$(BIN)

build:
	$(CARGO) build --release --locked

test:
	$(CARGO) test --release --locked

# Each target runs FUZZ_SECONDS.
fuzz:
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		$(FUZZ_ENV) $(CARGO) $(FUZZ_TOOLCHAIN) fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

bench:
	$(CARGO) bench --locked --bench decide
	$(CARGO) bench --locked --bench libvirtd_tick

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
