//! The bulk reading against a real guest (TCG QEMU, Debian kernel, virtio-balloon driver) under
//! the system libvirtd: the field names the QEMU driver sends in `virConnectGetAllDomainStats`
//! and their units, checked against `virsh domstats`, `virsh dommemstat` and the guest's own
//! /proc/meminfo; the backend reads it in one call per round, with the QEMU process's RSS.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::lab;
use common::test_driver::JsonSink;
use memory_coordinator::coordinator::{Backend, Coordinator, LoopOptions};
use memory_coordinator::host::HostMemory;
use memory_coordinator::libvirt::{Connection, DomainFigures, LibvirtBackend, Reading, StatsGroups, ffi};
use memory_coordinator::policy::PolicyConfig;

fn bulk_figures(conn: &Connection, name: &str) -> DomainFigures {
    let list = conn.all_domain_stats(StatsGroups::StateAndBalloon).unwrap();
    let record = list
        .iter()
        .find(|r| r.domain().unwrap().name().unwrap().to_bytes() == name.as_bytes())
        .expect("our domain in the bulk records");
    record.figures()
}

/// `virsh domstats --state --balloon NAME` as field -> value.
fn virsh_domstats(name: &str) -> HashMap<String, u64> {
    lab::virsh(&["domstats", "--state", "--balloon", name])
        .lines()
        .filter_map(|l| l.trim().split_once('='))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect()
}

/// The guest's own /proc/meminfo line `field` (kB), printed on its console on request.
fn guest_meminfo(guest: &lab::LibvirtGuest, field: &str) -> u64 {
    let marker =
        format!("mcbulk{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    guest.send(&format!("echo {marker} $(grep '^{field}:' /proc/meminfo)"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = guest.console().lines().find(|l| l.starts_with(&format!("{marker} "))) {
            return line.split_whitespace().nth(2).unwrap().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "the guest never printed {field}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn near(a: u64, b: u64, tolerance: u64) -> bool {
    a.abs_diff(b) <= tolerance
}

#[test]
fn the_qemu_driver_gives_every_balloon_figure_in_one_bulk_call_in_kib() {
    let name = format!("mc_bulk_{}", std::process::id());
    let Some(guest) = lab::booted_libvirt_guest("bulk balloon figures", &name, 2048, 512) else { return };
    let conn = Connection::open("qemu:///system").unwrap();
    let dom = conn.list_active_domains().unwrap().find(|d| d.name().unwrap().to_bytes() == name.as_bytes()).unwrap();

    // At boot the guest's driver inflates the balloon from 2048 MiB to the 512 MiB libvirt set.
    let booted = Instant::now();
    while guest.memstat("actual") != Some(512 * 1024) {
        assert!(booted.elapsed() < Duration::from_secs(60), "the balloon never reached 512 MiB");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1500));
    // Before a stats period is set only the sizes and the host side come back.
    let before = bulk_figures(&conn, &name);
    assert_eq!(before.current_kib, Some(512 * 1024));
    assert_eq!(before.maximum_kib, Some(2048 * 1024));
    assert!(before.rss_kib.is_some_and(|kib| kib > 10 * 1024), "{before:?}");
    eprintln!("without a stats period: {before:?}");

    dom.set_memory_stats_period(1).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let ours = bulk_figures(&conn, &name);
    let virsh = virsh_domstats(&name);
    eprintln!("ours:  {ours:?}\nvirsh: {virsh:?}");
    // Every figure we read, under the name virsh shows, with the same value (those that move
    // between the two calls within a little).
    assert_eq!(virsh["state.state"], u64::from(ffi::VIR_DOMAIN_RUNNING));
    assert_eq!(ours.state, Some(ffi::VIR_DOMAIN_RUNNING));
    for (field, value, tolerance) in [
        ("balloon.current", ours.current_kib, 0),
        ("balloon.maximum", ours.maximum_kib, 0),
        ("balloon.available", ours.available_kib, 0),
        ("balloon.unused", ours.unused_kib, 8 * 1024),
        ("balloon.usable", ours.usable_kib, 8 * 1024),
        ("balloon.rss", ours.rss_kib, 8 * 1024),
        ("balloon.last-update", ours.last_update_s, 2),
        ("balloon.swap_in", ours.swap_in_kib, 0),
        ("balloon.swap_out", ours.swap_out_kib, 0),
        ("balloon.major_fault", ours.major_faults, 100),
    ] {
        let value = value.unwrap_or_else(|| panic!("no {field} in our figures: {ours:?}"));
        let theirs = virsh.get(field).unwrap_or_else(|| panic!("virsh shows no {field}: {virsh:?}"));
        assert!(near(value, *theirs, tolerance), "{field}: ours {value}, virsh {theirs}");
    }
    // Units: KiB, as the guest itself counts its memory (kB in /proc/meminfo are KiB).
    let mem_total = guest_meminfo(&guest, "MemTotal");
    let mem_free = guest_meminfo(&guest, "MemFree");
    let mem_available = guest_meminfo(&guest, "MemAvailable");
    let ours = bulk_figures(&conn, &name);
    eprintln!("guest: MemTotal {mem_total} kB, MemFree {mem_free} kB, MemAvailable {mem_available} kB");
    assert_eq!(ours.available_kib, Some(mem_total), "balloon.available is MemTotal");
    assert!(near(ours.unused_kib.unwrap(), mem_free, 16 * 1024), "balloon.unused is MemFree: {ours:?}");
    assert!(near(ours.usable_kib.unwrap(), mem_available, 16 * 1024), "balloon.usable is MemAvailable: {ours:?}");
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!(near(ours.last_update_s.unwrap(), now_s, 3), "last-update is epoch seconds: {ours:?}");

    // The backend reads this driver in bulk and fills every figure, RSS included.
    let json = JsonSink::default();
    let backend = LibvirtBackend::connect("qemu:///system", 1).unwrap();
    let host = HostMemory::open(Path::new("/proc/meminfo")).unwrap();
    let options = LoopOptions { json: true, dry_run: true, ..LoopOptions::default() };
    let mut c =
        Coordinator::new(PolicyConfig::DEFAULT, options, backend, host).with_json_output(Box::new(json.clone()));
    c.tick();
    assert_eq!(c.backend().reading(), Reading::Bulk);
    let vm = json.last_vm(&name).unwrap();
    eprintln!("{vm}");
    for field in ["actual_kib", "max_kib", "unused_kib", "usable_kib", "available_kib", "last_update_s", "rss_kib"] {
        assert!(vm[field].is_u64(), "{field} missing: {vm}");
    }

    // A size set from outside: the bulk balloon size follows the balloon (libvirt updates it
    // from QEMU's BALLOON_CHANGE events, which QEMU sends at most once a second), later than
    // `virDomainMemoryStats`' live balloon size.
    lab::virsh(&["setmem", &name, "400M", "--live"]);
    let set_at = Instant::now();
    let (mut live_at, mut bulk_at) = (None, None);
    while set_at.elapsed() < Duration::from_secs(10) && (live_at.is_none() || bulk_at.is_none()) {
        let live = dom.memory_stats().unwrap().get(ffi::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON);
        if live == Some(400 * 1024) && live_at.is_none() {
            live_at = Some(set_at.elapsed());
        }
        if bulk_figures(&conn, &name).current_kib == Some(400 * 1024) && bulk_at.is_none() {
            bulk_at = Some(set_at.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "after virsh setmem 400M: live balloon size there after {live_at:?}, bulk balloon.current after {bulk_at:?}"
    );
    assert!(bulk_at.is_some() && live_at.is_some());
    c.tick();
    assert_eq!(json.last_vm(&name).unwrap()["actual_kib"], 400 * 1024);

    // Our own moves are seen as they land: the round after a target is set reads that domain's
    // size live, so it shows the new size as soon as `virsh dommemstat` does.
    let slot = c.backend().slot_of(&name).unwrap();
    c.backend_mut().apply(slot, 300 * 1024).unwrap();
    let applied_at = Instant::now();
    while guest.memstat("actual") != Some(300 * 1024) {
        assert!(applied_at.elapsed() < Duration::from_secs(10), "the balloon never reached 300 MiB");
        std::thread::sleep(Duration::from_millis(10));
    }
    let bulk_now = bulk_figures(&conn, &name).current_kib;
    c.tick();
    let seen = json.last_vm(&name).unwrap()["actual_kib"].as_u64();
    eprintln!(
        "{:?} after our target: live 300 MiB, bulk {bulk_now:?} KiB, the round saw {seen:?} KiB",
        applied_at.elapsed()
    );
    assert_eq!(seen, Some(300 * 1024));

    // Paused: figures but no free-memory figure; and what the driver says to a target.
    lab::virsh(&["suspend", &name]);
    c.tick();
    let vm = json.last_vm(&name).unwrap();
    assert_eq!(vm["hold"], "no_stats", "{vm}");
    let paused_set = dom.set_memory_kib(380 * 1024);
    eprintln!("virDomainSetMemoryFlags on the paused domain: {paused_set:?}");
    lab::virsh(&["resume", &name]);
    drop(guest);
}
