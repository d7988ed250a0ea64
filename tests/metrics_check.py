"""Checks a memory_coordinator metrics exposition against the --json lines of the same run.

Usage: metrics_check.py EXPOSITION JSONL

The exposition is parsed with the Prometheus project's own parser
(prometheus_client.parser.text_string_to_metric_families); the last JSON line must be the
round the exposition is of. Checked:
  - every family has HELP and a TYPE, and its name starts with memory_coordinator_;
  - ticks_total is the round number; host and per-VM gauges are the round's KiB figures in bytes;
  - a figure the JSON does not have (null or missing) has no series;
  - vm_state is 1 for exactly the VM's not_served reason (or "served"), 0 for the others;
  - the counters equal what all the JSON lines add up to (grows, shrinks, failures, bytes).
Prints what it checked; exits 1 with the first mismatch.
"""

import json
import sys

from prometheus_client.parser import text_string_to_metric_families

P = "memory_coordinator_"
KIB = 1024


def fail(msg):
    print("metrics_check: MISMATCH: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    exposition_path, jsonl_path = sys.argv[1], sys.argv[2]
    with open(exposition_path, encoding="utf-8") as f:
        text = f.read()
    with open(jsonl_path, encoding="utf-8") as f:
        rounds = [json.loads(line) for line in f if line.strip()]
    if not rounds:
        fail("no JSON line")
    last = rounds[-1]

    samples = {}
    families = 0
    for family in text_string_to_metric_families(text):
        families += 1
        if not family.name.startswith(P):
            fail("family %r lacks the prefix" % family.name)
        if not family.documentation:
            fail("family %r has no HELP" % family.name)
        if family.type not in ("gauge", "counter"):
            fail("family %r has type %r" % (family.name, family.type))
        for s in family.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in samples:
                fail("duplicate series %r" % (key,))
            samples[key] = s.value

    def value(name, **labels):
        return samples.get((P + name, tuple(sorted(labels.items()))))

    def expect(name, want, **labels):
        got = value(name, **labels)
        if want is None:
            if got is not None:
                fail("%s%r: expected no series, got %r" % (name, labels, got))
        elif got != want:
            fail("%s%r: expected %r, got %r" % (name, labels, want, got))

    expect("ticks_total", last["round"])
    expect("host_available_bytes", last["host_available_kib"] * KIB)
    expect("host_total_bytes", last["host_total_kib"] * KIB)
    expect("host_headroom_bytes", last["headroom_kib"] * KIB)
    expect("backend_up", 1)
    expect("vms", len(last["vms"]))

    states = ["served", "excluded", "unanswered", "no_stats", "stale", "inconsistent", "at_max"]
    for vm in last["vms"]:
        name = vm["name"]
        kib = lambda field: None if vm.get(field) is None else vm[field] * KIB  # noqa: E731
        expect("vm_actual_bytes", kib("actual_kib"), vm=name)
        expect("vm_max_bytes", kib("max_kib"), vm=name)
        expect("vm_free_bytes", kib("unused_kib"), vm=name)
        expect("vm_available_bytes", kib("usable_kib"), vm=name)
        consumption = vm["consumption_kib_s"] * KIB if "actual_kib" in vm else None
        expect("vm_consumption_bytes_per_second", consumption, vm=name)
        expect("vm_target_bytes", kib("target_kib"), vm=name)
        now = vm["not_served"] or "served"
        if now not in states:
            fail("%s: JSON reason %r is not a vm_state label" % (name, now))
        for state in states:
            expect("vm_state", 1 if state == now else 0, vm=name, reason=state)
    vm_names = {vm["name"] for vm in last["vms"]}
    for (series, labels), _ in samples.items():
        labels = dict(labels)
        if "vm" in labels and labels["vm"] not in vm_names:
            fail("series %s for VM %r, which is not in the JSON round" % (series, labels["vm"]))

    done = [vm for r in rounds for vm in r["vms"] if vm["applied"] == "done"]
    grows = [vm for vm in done if vm["action"] == "grow"]
    shrinks = [vm for vm in done if vm["action"] == "shrink"]
    failed = [vm for r in rounds for vm in r["vms"] if vm["applied"] == "failed"]
    expect("grows_total", len(grows))
    expect("shrinks_total", len(shrinks))
    expect("failed_actions_total", len(failed))
    expect("granted_bytes_total", sum(vm["target_kib"] - vm["actual_kib"] for vm in grows) * KIB)
    expect("released_bytes_total", sum(vm["actual_kib"] - vm["target_kib"] for vm in shrinks) * KIB)
    print(
        "metrics_check: ok: %d families, %d series, round %d, %d VMs, %d grows, %d shrinks"
        % (families, len(samples), last["round"], len(last["vms"]), len(grows), len(shrinks))
    )


main()
