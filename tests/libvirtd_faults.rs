//! Faults of single domains, injected through a real libvirtd that serves libvirt's test
//! driver over its socket (`test+unix:///default`, a node shared by every client of the
//! daemon): `virsh` destroys, pauses, restarts and resizes domains the coordinator serves, at
//! the moment a test chooses. Each test takes the lab lock (it talks to the system libvirtd),
//! and the tests of this file run one at a time (they share the node).

mod common;

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use common::lab;
use common::test_driver::{CapturedLog, JsonSink, SHARED_NODE, SharedDomains, virsh_shared, worker_threads};
use memory_coordinator::coordinator::{Backend, Coordinator, LoopOptions, Roster, Round};
use memory_coordinator::host::HostMemory;
use memory_coordinator::libvirt::{LibvirtBackend, LibvirtBackendError, Reading};
use memory_coordinator::policy::{MAX_DOMAINS, PolicyConfig, VmStats};

static SERIAL: Mutex<()> = Mutex::new(());

/// The lab lock, libvirtd up, and this file's tests one at a time; `None` under MC_SKIP_LAB=1.
fn lab_turn(test: &str) -> Option<MutexGuard<'static, ()>> {
    if lab::skip_lab(test) {
        return None;
    }
    lab::libvirtd_up();
    Some(SERIAL.lock().unwrap_or_else(PoisonError::into_inner))
}

fn coordinator<B: Backend>(backend: B, json: &JsonSink, dry_run: bool) -> Coordinator<B> {
    let host = HostMemory::open(Path::new("/proc/meminfo")).unwrap();
    let options = LoopOptions { json: true, dry_run, ..LoopOptions::default() };
    Coordinator::new(PolicyConfig::DEFAULT, options, backend, host).with_json_output(Box::new(json.clone()))
}

fn has_figures(vm: &serde_json::Value) -> bool {
    vm.get("actual_kib").is_some()
}

#[test]
fn a_domain_destroyed_between_listing_and_reading_is_skipped_and_the_others_served() {
    destroyed_between_listing_and_reading("destroyed between listing and reading", "mcf_list", 3);
}

/// The same with more domains than workers, so that reads are in flight side by side: the
/// destroyed domain's failed read is sorted out as any other, and every other domain gets its
/// own figures (sizes differ per domain, so a result handed to the wrong domain shows).
#[test]
fn a_domain_destroyed_between_listing_and_reading_side_by_side_is_skipped_and_the_others_served() {
    destroyed_between_listing_and_reading("destroyed while read side by side", "mcf_many", 24);
}

/// A defined domain stopped between listing and reading still exists: its read fails as
/// "operation invalid", which is also how libvirt words some refusals of a running domain. The
/// worker asks its state (`calls::settle`) and it is skipped as gone, without a warning.
#[test]
fn a_defined_domain_stopped_between_listing_and_reading_is_skipped_without_a_warning() {
    destroyed_between_listing_and_reading("defined domain stopped between listing and reading", "mcf_def", 3);
}

fn destroyed_between_listing_and_reading(test: &str, prefix: &str, count: usize) {
    let Some(_turn) = lab_turn(test) else { return };
    let log = CapturedLog::install();
    let json = JsonSink::default();
    // The coordinator's connection holds the shared node while the domains exist.
    let backend = LibvirtBackend::connect(SHARED_NODE, 1).unwrap();
    let mut domains = SharedDomains::new();
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}_{i:02}")).collect();
    let victim = names[1].clone();
    for (i, name) in names.iter().enumerate() {
        if *name == victim && prefix == "mcf_def" {
            domains.define_and_start(name, 2048, 1024 + 4 * i as u64);
        } else {
            domains.create(name, 2048, 1024 + 4 * i as u64, None);
        }
    }
    let mut c = coordinator(backend, &json, true);
    assert_eq!(c.tick(), Round::Served(count + 1), "the node's own domain `test` and ours");
    assert_eq!(c.backend().reading(), Reading::StatePerDomain);
    assert!(worker_threads() > 0, "the reads were made on the backend's workers");

    let mut destroyed = false;
    let destroy = victim.clone();
    c.backend_mut().inject_after_listing(Box::new(move || {
        if !std::mem::replace(&mut destroyed, true) {
            virsh_shared(&["destroy", &destroy]);
        }
    }));
    c.tick();
    // It was listed, then its figures could not be read: no figures, no warning.
    assert!(!has_figures(&json.last_vm(&victim).unwrap()));
    for (i, name) in names.iter().enumerate().filter(|(_, n)| **n != victim) {
        let vm = json.last_vm(name).unwrap_or_else(|| panic!("{name} was not listed"));
        assert!(has_figures(&vm), "{name} was not served");
        assert_eq!(vm["actual_kib"], (1024 + 4 * i as u64) * 1024, "{name} got another domain's figures");
    }
    assert!(has_figures(&json.last_vm("test").unwrap()), "test was not served");
    let went = log.lines_with(&["DEBUG", &format!("{victim} went away"), "virDomainMemoryStats"]);
    assert_eq!(went.len(), 1, "the read of the destroyed domain failed as not found: {went:?}");
    assert_eq!(c.tick(), Round::Served(count));
    assert!(json.last_vm(&victim).is_none());
    assert_eq!(log.lines_with(&["INFO", &format!("{victim} is gone")]).len(), 1);
    assert!(log.lines_with(&["WARN", &victim]).is_empty(), "{:?}", log.lines_with(&[&victim]));
    drop(c);
    assert_eq!(worker_threads(), 0, "the workers outlived their backend");
}

/// Fault injection: destroys the domain named `victim` (with `virsh`) right before the first
/// target for it is applied.
struct DestroyBeforeApply {
    inner: LibvirtBackend,
    victim: &'static str,
    victim_slot: Option<usize>,
    destroyed: bool,
}

impl Backend for DestroyBeforeApply {
    type Error = LibvirtBackendError;

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn refresh(&mut self, vms: &mut [Option<VmStats>; MAX_DOMAINS], roster: &mut Roster) -> Result<(), Self::Error> {
        self.inner.refresh(vms, roster)?;
        self.victim_slot = (0..MAX_DOMAINS).find(|s| roster.present[*s] && roster.names[*s].as_str() == self.victim);
        Ok(())
    }

    fn apply(&mut self, slot: usize, target_kib: u64) -> Result<(), Self::Error> {
        if Some(slot) == self.victim_slot && !self.destroyed {
            virsh_shared(&["destroy", self.victim]);
            self.destroyed = true;
        }
        self.inner.apply(slot, target_kib)
    }
}

#[test]
fn a_domain_destroyed_between_deciding_and_applying_is_skipped_logged_once_and_the_others_served() {
    let Some(_turn) = lab_turn("destroyed between deciding and applying") else { return };
    let log = CapturedLog::install();
    let json = JsonSink::default();
    let inner = LibvirtBackend::connect(SHARED_NODE, 1).unwrap();
    let mut domains = SharedDomains::new();
    for name in ["mcf_apply_a", "mcf_apply_b", "mcf_apply_c"] {
        domains.create(name, 4096, 4096, None);
    }
    let backend = DestroyBeforeApply { inner, victim: "mcf_apply_b", victim_slot: None, destroyed: false };
    let mut c = coordinator(backend, &json, false);
    // Large idle domains: shrunk as soon as the policy trusts the test driver's frozen figures.
    for _ in 0..20 {
        c.tick();
        if c.backend().destroyed {
            break;
        }
    }
    assert!(c.backend().destroyed, "no target was ever applied to the victim");
    let victim = json.last_vm("mcf_apply_b").unwrap();
    assert_eq!(victim["applied"], "failed", "{victim}");
    for other in ["mcf_apply_a", "mcf_apply_c"] {
        let vm = json.last_vm(other).unwrap();
        assert_eq!(vm["applied"], "done", "{other} was not served in the same round: {vm}");
    }
    for _ in 0..3 {
        assert_eq!(c.tick(), Round::Served(3));
    }
    let warnings = log.lines_with(&["WARN", "mcf_apply_b"]);
    assert_eq!(warnings.len(), 1, "logged once: {warnings:?}");
    assert!(warnings[0].contains("virDomainSetMemoryFlags failed"), "{warnings:?}");
    assert_eq!(c.summary().failed_actions, 1);
}

#[test]
fn a_paused_domain_is_left_alone_until_it_runs_again() {
    let Some(_turn) = lab_turn("paused domain") else { return };
    let log = CapturedLog::install();
    let json = JsonSink::default();
    let backend = LibvirtBackend::connect(SHARED_NODE, 1).unwrap();
    let mut domains = SharedDomains::new();
    domains.create("mcf_pause_a", 4096, 4096, None);
    domains.create("mcf_pause_b", 4096, 4096, None);
    let mut c = coordinator(backend, &json, false);
    c.tick();
    virsh_shared(&["suspend", "mcf_pause_a"]);
    for _ in 0..12 {
        c.tick();
        let paused = json.last_vm("mcf_pause_a").unwrap();
        assert_eq!(paused["hold"], "no_stats", "{paused}");
        assert_eq!(paused["applied"], "none", "{paused}");
        assert_eq!(paused["actual_kib"], 4096 * 1024, "{paused}");
        assert!(paused["unused_kib"].is_null(), "{paused}");
    }
    assert!(c.summary().shrinks > 0, "the running domain was served meanwhile");
    assert_eq!(log.lines_with(&["INFO", "mcf_pause_a is paused: left alone"]).len(), 1);

    virsh_shared(&["resume", "mcf_pause_a"]);
    c.tick();
    assert_eq!(log.lines_with(&["INFO", "mcf_pause_a runs again"]).len(), 1);
    let running = json.last_vm("mcf_pause_a").unwrap();
    assert_eq!(running["unused_kib"], 2048 * 1024, "{running}");
}

#[test]
fn sizes_set_with_virsh_are_what_the_next_round_uses() {
    let Some(_turn) = lab_turn("virsh setmem") else { return };
    let json = JsonSink::default();
    let backend = LibvirtBackend::connect(SHARED_NODE, 1).unwrap();
    let mut domains = SharedDomains::new();
    domains.create("mcf_setmem", 2048, 1024, None);
    let mut c = coordinator(backend, &json, true);
    c.tick();
    for mib in ["700", "1500", "333"] {
        virsh_shared(&["setmem", "mcf_setmem", &format!("{mib}M"), "--live"]);
        c.tick();
        let vm = json.last_vm("mcf_setmem").unwrap();
        assert_eq!(vm["actual_kib"], mib.parse::<u64>().unwrap() * 1024, "{vm}");
    }
}

#[test]
fn a_domain_restarted_between_rounds_is_served_afresh() {
    let Some(_turn) = lab_turn("restarted domain") else { return };
    let log = CapturedLog::install();
    let json = JsonSink::default();
    let backend = LibvirtBackend::connect(SHARED_NODE, 1).unwrap();
    let uuid = "6d3a4c1e-0f5b-4d55-9a71-3c2f2b7e0a11";
    let mut domains = SharedDomains::new();
    domains.create("mcf_restart", 2048, 1024, Some(uuid));
    let mut c = coordinator(backend, &json, true);
    for _ in 0..3 {
        c.tick();
    }
    assert_ne!(json.last_vm("mcf_restart").unwrap()["hold"], "settling");
    // Same UUID, new run: a new ID, a fresh guest, a stats period to set again.
    virsh_shared(&["destroy", "mcf_restart"]);
    domains.create("mcf_restart", 2048, 1024, Some(uuid));
    c.tick();
    assert_eq!(log.lines_with(&["INFO", "mcf_restart was restarted: serving it afresh"]).len(), 1);
    assert_eq!(log.lines_with(&["DEBUG", "mcf_restart: stats period set"]).len(), 2);
    // Its history was forgotten: seen for the first time again.
    assert_eq!(json.last_vm("mcf_restart").unwrap()["hold"], "settling");
}

#[test]
fn a_user_without_permission_on_the_system_daemon_gets_one_clear_line_and_exit_1() {
    let Some(_turn) = lab_turn("no permission on qemu:///system") else { return };
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", common::daemon::BIN, "1"])
        .args(["--connect", "qemu:///system"])
        .env_remove("RUST_LOG")
        .env("MEMORY_COORDINATOR_LOCK_FILE", common::daemon::fresh_lock_file())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot connect to libvirt: virConnectOpen failed:"), "{stderr}");
    assert!(stderr.contains("run as root or as a member of the libvirt group"), "{stderr}");
    eprintln!("{stderr}");
}
