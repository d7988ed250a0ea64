//! The libvirt backend and the daemon loop against libvirt's built-in `test:///` driver, through
//! our own FFI: real libvirt API calls, domains defined by a node XML of 4 VMs.
//!
//! The test driver's stats are fake and frozen (free memory is half the current size and
//! `last_update` never moves), so the policy treats its clock as frozen: after `stale_ticks`
//! rounds every round counts as a new sample, and its VMs are shrunk step by step.

mod common;

use std::path::Path;

use common::daemon::{self, json_lines};
use common::test_driver::{COURSE_NODE, TestDomain, node_uri};
use memory_coordinator::coordinator::{Coordinator, LoopOptions, Round};
use memory_coordinator::host::HostMemory;
use memory_coordinator::libvirt::{Connection, LibvirtBackend};
use memory_coordinator::policy::PolicyConfig;

fn memory_mib(conn: &Connection, name: &str) -> u64 {
    let dom = conn.list_active_domains().unwrap().find(|d| d.name().unwrap().to_bytes() == name.as_bytes()).unwrap();
    dom.info().unwrap().memory_kib / 1024
}

fn coordinator(uri: &str, options: LoopOptions) -> Coordinator<LibvirtBackend> {
    let backend = LibvirtBackend::connect(uri, 1).unwrap();
    let host = HostMemory::open(Path::new("/proc/meminfo")).unwrap();
    Coordinator::new(PolicyConfig::DEFAULT, options, backend, host)
}

#[test]
fn set_memory_really_changes_what_get_info_sees() {
    let dir = tempfile::tempdir().unwrap();
    let uri = node_uri(&dir, &COURSE_NODE);
    let mut c = coordinator(&uri, LoopOptions::default());
    // The first round only looks (a VM seen for the first time may be mid-balloon).
    assert_eq!(c.tick(), Round::Served(4));
    assert_eq!(c.summary().shrinks, 0);
    assert_eq!(c.tick(), Round::Served(4));
    let conn = c.backend().connection().unwrap();
    // aos_vm2: 1024 MiB, "512 MiB free" -> 25 % of (512 - 100) = 103 MiB.
    assert_eq!(memory_mib(conn, "aos_vm2"), 1024 - 103);
    // aos_vm3: 2048 MiB, 1024 free -> 25 % of 924 MiB.
    assert_eq!(memory_mib(conn, "aos_vm3"), 2048 - 231);
    // aos_vm4 has no balloon driver: untouched.
    assert_eq!(memory_mib(conn, "aos_vm4"), 1024);
    assert_eq!(c.summary().shrinks, 3);

    // The same sample is not acted on again; once the clock counts as frozen, shrinking
    // resumes, and converges well above the floor.
    for _ in 0..60 {
        c.tick();
    }
    let conn = c.backend().connection().unwrap();
    for name in ["aos_vm1", "aos_vm2", "aos_vm3"] {
        let mib = memory_mib(conn, name);
        assert!((256..=460).contains(&mib), "{name} at {mib} MiB");
    }
    assert_eq!(c.summary().failed_actions, 0);
}

#[test]
fn dry_run_decides_but_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let uri = node_uri(&dir, &COURSE_NODE);
    let mut c = coordinator(&uri, LoopOptions { dry_run: true, ..LoopOptions::default() });
    for _ in 0..10 {
        c.tick();
    }
    let conn = c.backend().connection().unwrap();
    for d in COURSE_NODE {
        assert_eq!(memory_mib(conn, d.name), d.current_mib, "{}", d.name);
    }
    assert_eq!(c.summary().shrinks + c.summary().grows, 0);
}

#[test]
fn the_binary_serves_four_domains_and_reports_each_round_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let uri = node_uri(&dir, &COURSE_NODE);
    let out = daemon::run(&["1", "--connect", &uri, "--ticks", "3", "--json", "-v"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for d in COURSE_NODE {
        assert!(stderr.contains(&format!("serving {}", d.name)), "{stderr}");
    }
    assert_eq!(stderr.matches("stats period set to 1 s").count(), 3, "{stderr}");
    // The VM without a balloon device is reported once, with libvirt's reason, and skipped.
    let warnings =
        stderr.lines().filter(|l| l.contains("WARN") && l.contains("aos_vm4: virDomainSetMemoryStatsPeriod"));
    assert_eq!(warnings.count(), 1, "{stderr}");
    assert!(stderr.contains("No memory balloon device configured"), "{stderr}");
    assert!(stderr.contains("shrink aos_vm3 2048 -> 1817 MiB (free 1024 MiB)"), "{stderr}");
    assert!(stderr.contains("stopped: 3 rounds, 0 grows (+0 MiB), 3 shrinks"), "{stderr}");

    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    assert!(lines[0]["vms"].as_array().unwrap().iter().all(|v| v["hold"] == "settling" || v["hold"] == "no_stats"));
    let vms = lines[1]["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 4);
    let vm3 = vms.iter().find(|v| v["name"] == "aos_vm3").unwrap();
    assert_eq!(vm3["action"], "shrink");
    assert_eq!(vm3["target_kib"], 1817 * 1024);
    assert_eq!(vm3["applied"], "done");
    let vm4 = vms.iter().find(|v| v["name"] == "aos_vm4").unwrap();
    assert_eq!(vm4["hold"], "no_stats");
    // Round 3 sees the new size: the change really happened in libvirt.
    let vm3 = lines[2]["vms"].as_array().unwrap().iter().find(|v| v["name"] == "aos_vm3").unwrap().clone();
    assert_eq!(vm3["actual_kib"], 1817 * 1024);
}

#[test]
fn the_binary_in_dry_run_logs_decisions_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let uri = node_uri(&dir, &COURSE_NODE);
    let out = daemon::run(&["1", "--connect", &uri, "--ticks", "3", "--json", "--dry-run"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("shrink aos_vm3 2048 -> 1817 MiB (free 1024 MiB) [dry run]"), "{stderr}");
    let lines = json_lines(&out);
    let vm3 = lines[2]["vms"].as_array().unwrap().iter().find(|v| v["name"] == "aos_vm3").unwrap().clone();
    assert_eq!(vm3["actual_kib"], 2048 * 1024, "dry run changed the balloon");
    assert!(lines[1]["vms"].as_array().unwrap().iter().all(|v| v["applied"] != "done"));
}

#[test]
fn a_bad_uri_exits_non_zero_with_libvirts_message() {
    let out = daemon::run(&["1", "--connect", "test:///nonexistent/node.xml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to libvirt: virConnectOpen failed:"), "{stderr}");
    assert!(stderr.contains("/nonexistent/node.xml"), "libvirt's own message names the file: {stderr}");
}

#[test]
fn exit_when_idle_stops_at_the_first_round_without_running_domains() {
    let dir = tempfile::tempdir().unwrap();
    let uri = node_uri(&dir, &[TestDomain { running: false, ..TestDomain::running("off_vm", 2048, 1024) }]);
    let started = std::time::Instant::now();
    let out = daemon::run(&["5", "--connect", &uri, "--exit-when-idle"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no running VM: exiting (--exit-when-idle)"), "{stderr}");
    assert!(started.elapsed().as_secs() < 4, "waited an interval before exiting");
}

#[test]
fn host_memory_below_the_reserve_takes_back_inside_the_band() {
    // A fake /proc/meminfo with 100 MiB available: the host is under its 200 MiB reserve (the
    // more so as the VM's 150 MiB of free memory count as memory the host may yet have to
    // back), so even a VM inside the band gives memory back.
    let dir = tempfile::tempdir().unwrap();
    let uri = node_uri(&dir, &[TestDomain::running("small", 2048, 300)]);
    let meminfo = dir.path().join("meminfo");
    std::fs::write(&meminfo, "MemTotal: 1048576 kB\nMemFree: 102400 kB\nMemAvailable: 102400 kB\n").unwrap();
    let out = daemon::run(&["1", "--connect", &uri, "--ticks", "2", "--json", "--meminfo", meminfo.to_str().unwrap()]);
    let lines = json_lines(&out);
    assert_eq!(lines[1]["pressure"], true);
    assert_eq!(lines[1]["headroom_kib"], 0);
    // 150 MiB free of 300 (the test driver's fake stats), excess 50 MiB is inside the 64 MiB
    // band; a quarter goes back.
    assert_eq!(lines[1]["vms"][0]["target_kib"], 300 * 1024 - 50 * 1024 / 4);
}

#[test]
fn unreadable_host_figures_skip_rounds_until_they_are_back() {
    // Host memory decides what may be given: without it no VM is served, and serving resumes
    // once the figures are back.
    let dir = tempfile::tempdir().unwrap();
    let uri = node_uri(&dir, &COURSE_NODE);
    let meminfo = dir.path().join("meminfo");
    let good = "MemTotal: 24000000 kB\nMemAvailable: 20000000 kB\n";
    std::fs::write(&meminfo, good).unwrap();
    let backend = LibvirtBackend::connect(&uri, 1).unwrap();
    let host = HostMemory::open(&meminfo).unwrap();
    let mut c = Coordinator::new(PolicyConfig::DEFAULT, LoopOptions::default(), backend, host);
    assert_eq!(c.tick(), Round::Served(4));
    std::fs::write(&meminfo, "MemTotal: garbage\n").unwrap();
    assert_eq!(c.tick(), Round::Skipped);
    assert_eq!(c.tick(), Round::Skipped);
    std::fs::write(&meminfo, good).unwrap();
    assert_eq!(c.tick(), Round::Served(4));
    assert!(c.summary().shrinks > 0, "served again");
}
