# memory_coordinator: build, test, fuzz, bench, install.
# `make deps && make all && make test` on a fresh Debian 12 machine (as root).

CARGO        ?= cargo
PREFIX       ?= /usr/local
DESTDIR      ?=
BINDIR       ?= $(PREFIX)/bin
MANDIR       ?= $(PREFIX)/share/man
DOCDIR       ?= $(PREFIX)/share/doc/memory_coordinator
SYSCONFDIR   ?= /etc
# Units installed with the software go under PREFIX/lib/systemd/system: systemd searches
# /usr/local/lib/systemd/system and /usr/lib/systemd/system ("systemd-analyze unit-paths"),
# and /etc/systemd/system stays the administrator's, for overrides (systemctl edit).
UNITDIR      ?= $(PREFIX)/lib/systemd/system
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= decide qmp_reply meminfo
BIN          := memory_coordinator

# What the build and the tests need from Debian (README "Build").
DEBIAN_PACKAGES := build-essential pkg-config libvirt-dev libclang-dev clang \
                   libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients \
                   qemu-system-x86 busybox-static cpio kmod procps man-db \
                   python3-prometheus-client systemd socat

# cargo-fuzz needs nightly features; with no nightly toolchain, stable is allowed to use them.
FUZZ_TOOLCHAIN := $(shell rustup toolchain list 2>/dev/null | grep -q '^nightly' && echo +nightly)
FUZZ_ENV       := $(if $(FUZZ_TOOLCHAIN),,RUSTC_BOOTSTRAP=1)

.PHONY: all build test fuzz bench bench-policy deps install uninstall man check-install clean demo e2e e2e-short

all: build
	install -m 0755 target/release/$(BIN) ./$(BIN)

build:
	$(CARGO) build --release --locked

# Everything in release mode, then the policy's unit and property tests once more in a debug
# build, where integer overflow panics instead of wrapping.
test:
	$(CARGO) test --release --locked
	$(CARGO) test --locked --lib policy::
	$(MAKE) --no-print-directory check-install

# The installed unit passes systemd-analyze verify, a broken one fails it, and man renders the
# page (tests/install-check.sh; each check is skipped where its tool is missing).
check-install: build man
	tests/install-check.sh

# Each target runs FUZZ_SECONDS, starting from the seeds kept in fuzz/seeds (real inputs and
# a small merged corpus); what it finds goes to fuzz/corpus (not committed).
fuzz:
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t && \
		$(FUZZ_ENV) $(CARGO) $(FUZZ_TOOLCHAIN) fuzz run $$t corpus/$$t seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

bench:
	$(CARGO) bench --locked --bench decide
	$(CARGO) bench --locked --bench libvirtd_tick
	$(CARGO) bench --locked --bench qmp_tick

# The policy's scores on simulated hosts, one row per scenario (tests/common/sim.rs).
bench-policy:
	$(CARGO) bench --locked --bench policy

# The real-VM lab (tests/lab): boots TCG guests, needs root. Results in target/lab/results.
LAB := $(CARGO) test --release --locked --test lab --

# See it work: installs, builds, runs T1 on libvirt with four guests and a live table.
demo: deps all
	$(LAB) demo

# T1, T2, T3, HS (host held short), PC (page cache) and RE (--restore-on-exit) on libvirt and
# on bare QEMU + QMP, four guests each, scores asserted. One scenario: `$(LAB) e2e HS`.
e2e: all
	$(LAB) e2e

# What CI runs (about 10 minutes): T1 with two guests on each backend, PC on libvirt.
e2e-short: all
	$(LAB) e2e --short

deps:
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(DEBIAN_PACKAGES)

# The man page, from the clap definition (examples/man.rs). Always made again: it depends on
# the options, their defaults and the version, and an up-to-date example runs in a moment.
man:
	mkdir -p target/man
	MAN_DATE="$$(git log -1 --format=%cs 2>/dev/null)" \
		$(CARGO) run --release --locked --quiet --example man > target/man/$(BIN).8.tmp
	mv target/man/$(BIN).8.tmp target/man/$(BIN).8

# The binary, the man page, the systemd unit (ExecStart= pointing at BINDIR), the example
# configuration file, and /etc/default/memory-coordinator unless it exists (an administrator's
# settings are never overwritten).
install: build man
	install -D -m 0755 target/release/$(BIN) $(DESTDIR)$(BINDIR)/$(BIN)
	install -D -m 0644 target/man/$(BIN).8 $(DESTDIR)$(MANDIR)/man8/$(BIN).8
	install -d $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/local/bin/$(BIN)|$(BINDIR)/$(BIN)|' \
	    -e 's|/etc/default/memory-coordinator|$(SYSCONFDIR)/default/memory-coordinator|' \
	    contrib/memory-coordinator.service > $(DESTDIR)$(UNITDIR)/memory-coordinator.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/memory-coordinator.service
	install -D -m 0644 contrib/vms.example.json $(DESTDIR)$(DOCDIR)/vms.example.json
	install -D -m 0644 contrib/memory-coordinator.default $(DESTDIR)$(DOCDIR)/memory-coordinator.default
	sed -i 's|/usr/local/share/doc/memory_coordinator|$(DOCDIR)|' $(DESTDIR)$(DOCDIR)/memory-coordinator.default
	if [ ! -e $(DESTDIR)$(SYSCONFDIR)/default/memory-coordinator ]; then \
		install -D -m 0644 $(DESTDIR)$(DOCDIR)/memory-coordinator.default $(DESTDIR)$(SYSCONFDIR)/default/memory-coordinator; \
	fi

# Leaves /etc/default/memory-coordinator (settings are kept, as a package removal keeps them).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/$(BIN) $(DESTDIR)$(MANDIR)/man8/$(BIN).8 \
	      $(DESTDIR)$(UNITDIR)/memory-coordinator.service \
	      $(DESTDIR)$(DOCDIR)/vms.example.json $(DESTDIR)$(DOCDIR)/memory-coordinator.default
	-rmdir $(DESTDIR)$(DOCDIR)

clean:
	$(CARGO) clean
	rm -rf fuzz/target ./$(BIN)
