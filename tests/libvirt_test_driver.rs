//! The libvirt backend and the daemon loop against libvirt's built-in `test:///` driver, through
//! our own FFI: real libvirt API calls, domains defined by a node XML of 4 VMs.
//!
//! The test driver's stats are fake and frozen (free memory is half the current size and
//! `last_update` never moves), so the policy treats its clock as frozen: after `stale_ticks`
//! rounds every round counts as a new sample, and its VMs are shrunk step by step.

mod common;

use std::path::Path;

use common::daemon::{self, json_lines};
use common::test_driver::{COURSE_NODE, CapturedLog, JsonSink, TestDomain, node_uri};
use memory_coordinator::coordinator::{Backend, Coordinator, LoopOptions, Roster, Round};
use memory_coordinator::host::HostMemory;
use memory_coordinator::libvirt::{Connection, LibvirtBackend, LibvirtBackendError, Reading};
use memory_coordinator::policy::{MAX_DOMAINS, PolicyConfig, VmStats};

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

#[test]
fn the_test_driver_is_read_with_bulk_state_and_one_memory_stats_call_per_domain() {
    let log = CapturedLog::install();
    let dir = tempfile::tempdir().unwrap();
    let uri = node_uri(&dir, &COURSE_NODE);
    let mut c = coordinator(&uri, LoopOptions::default());
    assert_eq!(c.backend().reading(), Reading::Unknown);
    for _ in 0..3 {
        assert_eq!(c.tick(), Round::Served(4));
    }
    // libvirt 9.0's test driver refuses the balloon group with ENFORCE_STATS, gives state.
    assert_eq!(c.backend().reading(), Reading::StatePerDomain);
    let lines = log.lines_with(&[&uri, "one virDomainMemoryStats per domain"]);
    assert_eq!(lines.len(), 1, "the reading is logged once per connection: {lines:?}");
    assert!(lines[0].starts_with("DEBUG"), "{lines:?}");
}

/// Fault injection: reports every VM's maximum 4 GiB above the driver's, so that the policy asks
/// for more than the driver allows.
struct InflatedMax {
    inner: LibvirtBackend,
    inflate: bool,
}

impl Backend for InflatedMax {
    type Error = LibvirtBackendError;

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn refresh(&mut self, vms: &mut [Option<VmStats>; MAX_DOMAINS], roster: &mut Roster) -> Result<(), Self::Error> {
        self.inner.refresh(vms, roster)?;
        if self.inflate {
            for vm in vms.iter_mut().flatten() {
                vm.max_kib += 4 * 1024 * 1024;
            }
        }
        Ok(())
    }

    fn apply(&mut self, slot: usize, target_kib: u64) -> Result<(), Self::Error> {
        self.inner.apply(slot, target_kib)
    }
}

#[test]
fn a_target_the_driver_rejects_is_reported_failed_not_recorded_and_retried_only_while_wanted() {
    let log = CapturedLog::install();
    let dir = tempfile::tempdir().unwrap();
    // 150 MiB of which the test driver reports half free: below the 100 MiB floor, so the
    // policy grows it, past the driver's real maximum of 200 MiB.
    let uri = node_uri(&dir, &[TestDomain::running("tight_vm", 200, 150)]);
    let inner = LibvirtBackend::connect(&uri, 1).unwrap();
    let host = HostMemory::open(Path::new("/proc/meminfo")).unwrap();
    let json = JsonSink::default();
    let options = LoopOptions { json: true, ..LoopOptions::default() };
    let mut c = Coordinator::new(PolicyConfig::DEFAULT, options, InflatedMax { inner, inflate: true }, host)
        .with_json_output(Box::new(json.clone()));

    let mut failed_rounds = 0;
    for _ in 0..6 {
        assert_eq!(c.tick(), Round::Served(1));
        let vm = json.last_vm("tight_vm").unwrap();
        if vm["applied"] == "failed" {
            assert_eq!(vm["action"], "grow", "{vm}");
            assert!(vm["target_kib"].as_u64().unwrap() > 200 * 1024, "{vm}");
            failed_rounds += 1;
        }
    }
    // Not recorded as done: the same sample is acted on again, round after round (a recorded
    // target would make the policy wait for the balloon to move to it).
    assert!(failed_rounds >= 4, "retried while wanted: {failed_rounds} failed rounds");
    assert_eq!(c.summary().failed_actions, failed_rounds);
    assert_eq!(c.summary().grows, 0);
    let warnings = log.lines_with(&["WARN", "grow tight_vm", "virDomainSetMemoryFlags"]);
    assert_eq!(warnings.len(), 1, "a failure that repeats is logged once: {warnings:?}");
    assert!(log.lines_with(&["DEBUG", "grow tight_vm", "failed again"]).len() >= 3);
    let memory = c.backend().inner.connection().unwrap();
    assert_eq!(memory_mib(memory, "tight_vm"), 150, "the rejected target changed nothing");

    // Once the maximum is told truly, the wanted size fits under it and is applied.
    c.backend_mut().inflate = false;
    c.tick();
    let vm = json.last_vm("tight_vm").unwrap();
    assert_eq!(vm["applied"], "done", "{vm}");
    assert!(vm["target_kib"].as_u64().unwrap() <= 200 * 1024, "{vm}");
    assert_eq!(log.lines_with(&["INFO", "tight_vm: targets are applied again"]).len(), 1);
    assert_eq!(c.summary().failed_actions, failed_rounds);
}

#[test]
fn a_size_set_from_another_connection_is_what_the_next_round_uses() {
    // test:///default is one node per process, shared by every connection to it, as a
    // libvirtd's domains are shared by its clients: the second connection plays `virsh setmem`.
    let json = JsonSink::default();
    let options = LoopOptions { json: true, dry_run: true, ..LoopOptions::default() };
    let backend = LibvirtBackend::connect("test:///default", 1).unwrap();
    let host = HostMemory::open(Path::new("/proc/meminfo")).unwrap();
    let mut c =
        Coordinator::new(PolicyConfig::DEFAULT, options, backend, host).with_json_output(Box::new(json.clone()));
    let other = Connection::open("test:///default").unwrap();
    let dom = other.list_active_domains().unwrap().find(|d| d.name().unwrap().to_bytes() == b"test").unwrap();
    for size_mib in [3000, 1234, 4321] {
        dom.set_memory_kib(size_mib * 1024).unwrap();
        c.tick();
        let vm = json.last_vm("test").unwrap();
        assert_eq!(vm["actual_kib"], size_mib * 1024, "{vm}");
        // The test driver's free figure follows the size too: half of it.
        assert_eq!(vm["unused_kib"], size_mib * 512, "{vm}");
    }
}

#[test]
fn an_unreachable_uri_is_one_clear_line_and_exit_1() {
    let out = daemon::run(&["1", "--connect", "test+unix:///default?socket=/nonexistent/libvirt-sock"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("ERROR"), "{stderr}");
    assert!(stderr.contains("cannot connect to libvirt: virConnectOpen failed:"), "{stderr}");
    assert!(stderr.contains("/nonexistent/libvirt-sock"), "libvirt's message names the socket: {stderr}");
    assert!(stderr.contains("is libvirtd running?"), "{stderr}");
}

#[test]
fn a_socket_without_permission_is_one_clear_line_and_exit_1() {
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root to run the binary as another user");
        return;
    }
    // A listening socket in a directory only root may enter: `nobody` cannot connect to it.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("libvirt-sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let uri = format!("test+unix:///default?socket={}", socket.display());
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", daemon::BIN, "1", "--connect", &uri])
        .env_remove("RUST_LOG")
        .env("MEMORY_COORDINATOR_LOCK_FILE", common::daemon::fresh_lock_file())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot connect to libvirt: virConnectOpen failed:"), "{stderr}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(stderr.contains("run as root or as a member of the libvirt group"), "{stderr}");
}

#[test]
fn version_names_the_crate_and_the_linked_libvirt_offline_and_help_still_works() {
    // No URI and no daemon: the libvirt version is the library's, asked locally.
    let libvirt = memory_coordinator::libvirt::library_version().unwrap();
    for flag in ["--version", "-V"] {
        let out = daemon::run(&[flag]);
        assert_eq!(out.status.code(), Some(0));
        let expected = format!("memory_coordinator {} (libvirt {libvirt})\n", env!("CARGO_PKG_VERSION"));
        assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
        assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let help = daemon::run(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("Usage: memory_coordinator [OPTIONS] <INTERVAL>"), "{text}");
    assert!(text.contains("-V, --version"), "{text}");
    assert_eq!(daemon::run(&["1", "--version"]).status.code(), Some(0), "clap: --version wins");
}
