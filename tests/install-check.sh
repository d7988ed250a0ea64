#!/usr/bin/env bash
# What `make install` puts on a machine, checked with the tools an operator would use:
#   - a DESTDIR install lands every file under DESTDIR, with run-time paths free of DESTDIR,
#     and never overwrites /etc/default/memory-coordinator;
#   - the installed unit passes `systemd-analyze verify` with no diagnostic at all (its
#     ExecStart= binary and its Documentation= man page resolvable), and a unit with a typo'd
#     key, a missing binary or an unparsable RestartPreventExitStatus= fails the same check
#     (so the check can fail);
#   - `man -l` renders the installed page without a warning, with the options and examples.
# Run by `make test` (after the build and `make man`). No running systemd is needed:
# `systemd-analyze verify` loads units itself. A check whose tool is missing is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0 skipped=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAILED: $*"; failed=$((failed + 1)); }
skip() { echo "skipped: $*"; skipped=$((skipped + 1)); }
install_into() { make --no-print-directory --silent install "$@" >"$tmp/make.log" 2>&1 || { cat "$tmp/make.log"; return 1; }; }

# 1. A package-style install: DESTDIR staging, PREFIX=/usr.
dest=$tmp/dest
if install_into DESTDIR="$dest" PREFIX=/usr; then
    missing=0
    for f in usr/bin/memory_coordinator usr/share/man/man8/memory_coordinator.8 \
        usr/lib/systemd/system/memory-coordinator.service usr/share/doc/memory_coordinator/vms.example.json \
        usr/share/doc/memory_coordinator/memory-coordinator.default etc/default/memory-coordinator; do
        [ -f "$dest/$f" ] || { bad "make install DESTDIR: $f not installed"; missing=1; }
    done
    [ "$missing" = 0 ] && ok "make install DESTDIR=... PREFIX=/usr installs binary, man page, unit, example, defaults"
    unit=$dest/usr/lib/systemd/system/memory-coordinator.service
    if grep -q '^ExecStart=/usr/bin/memory_coordinator \$MEMORY_COORDINATOR_ARGS$' "$unit" && ! grep -q "$dest" "$unit"; then
        ok "the unit's ExecStart= is the run-time path, without DESTDIR"
    else
        bad "ExecStart= in the installed unit: $(grep '^ExecStart=' "$unit")"
    fi
    echo 'MEMORY_COORDINATOR_ARGS="5 --exclude keep-me"' >"$dest/etc/default/memory-coordinator"
    install_into DESTDIR="$dest" PREFIX=/usr
    if grep -q keep-me "$dest/etc/default/memory-coordinator"; then
        ok "a second make install keeps the administrator's /etc/default/memory-coordinator"
    else
        bad "make install overwrote /etc/default/memory-coordinator"
    fi
else
    bad "make install DESTDIR=$dest PREFIX=/usr failed"
fi

# 2. systemd-analyze verify on a unit whose paths resolve on this machine: PREFIX is a real
# directory here, so ExecStart= and the man page exist where the unit says.
prefix=$tmp/prefix
if ! command -v systemd-analyze >/dev/null; then
    skip "systemd-analyze not found: unit checks"
elif ! install_into PREFIX="$prefix" SYSCONFDIR="$tmp/etc"; then
    bad "make install PREFIX=$prefix failed"
else
    unit=$prefix/lib/systemd/system/memory-coordinator.service
    # Silence is the pass: systemd-analyze exits 0 even for unknown keys, and prints them.
    verify() {
        local man=no
        command -v man >/dev/null && man=yes
        MANPATH=$prefix/share/man systemd-analyze verify --man=$man "$1" >"$tmp/verify.log" 2>&1 && [ ! -s "$tmp/verify.log" ]
    }
    if verify "$unit"; then
        ok "systemd-analyze verify: the installed unit, no diagnostic"
    else
        bad "systemd-analyze verify on the installed unit:"; cat "$tmp/verify.log"
    fi
    mkdir -p "$tmp/broken1" "$tmp/broken2" "$tmp/broken3" "$tmp/broken4"
    sed 's/^ProtectSystem=/ProtectSytem=/' "$unit" >"$tmp/broken1/memory-coordinator.service"
    sed 's|^ExecStart=[^ ]*|ExecStart=/nonexistent/memory_coordinator|' "$unit" >"$tmp/broken2/memory-coordinator.service"
    # An exit status systemd cannot parse is ignored with a warning: the daemon would then be
    # restarted on it.
    sed 's/^RestartPreventExitStatus=.*/&x/' "$unit" >"$tmp/broken4/memory-coordinator.service"
    broken=("$tmp/broken1" "$tmp/broken2" "$tmp/broken4")
    # Documentation= is checked only where man can look the page up.
    if command -v man >/dev/null; then
        sed 's|^Documentation=man:memory_coordinator(8)|Documentation=man:memory_coordinatr(8)|' "$unit" \
            >"$tmp/broken3/memory-coordinator.service"
        broken+=("$tmp/broken3")
    fi
    for broken in "${broken[@]}"; do
        if verify "$broken/memory-coordinator.service"; then
            bad "systemd-analyze verify passed a broken unit ($broken)"
        else
            ok "systemd-analyze verify rejects a broken unit: $(head -1 "$tmp/verify.log" | sed 's|.*service:||')"
        fi
    done
fi

# 3. The man page renders.
page=$dest/usr/share/man/man8/memory_coordinator.8
if ! command -v man >/dev/null; then
    skip "man not found: man page check"
elif [ ! -f "$page" ]; then
    bad "no man page to render"
else
    if MANWIDTH=100 man --warnings -l "$page" >"$tmp/man.txt" 2>"$tmp/man.err" && [ ! -s "$tmp/man.err" ] &&
        grep -q -- "--domains <GLOB>" "$tmp/man.txt" && grep -q "^EXAMPLES" "$tmp/man.txt" &&
        grep -q -- "memory_coordinator 1 --qmp '/run/qemu/\*.sock'" "$tmp/man.txt" && grep -q "^SIGNALS" "$tmp/man.txt"; then
        ok "man -l renders memory_coordinator(8) without warnings ($(wc -l <"$tmp/man.txt") lines)"
    else
        bad "man -l on $page:"; cat "$tmp/man.err"; head -20 "$tmp/man.txt"
    fi
fi

echo "install-check: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
