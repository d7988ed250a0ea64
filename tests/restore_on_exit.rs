//! `--restore-on-exit`: stopping the daemon gives the VMs their memory back, largest shortfall
//! first, as far as the host's reserve allows. On libvirt's `test:///` driver, in process (the
//! restore itself) and through the binary (SIGTERM in the middle of an interval).

mod common;

use std::time::Duration;

use common::daemon::Daemon;
use common::test_driver::{TestDomain, node_uri};
use memory_coordinator::coordinator::{Coordinator, LoopOptions};
use memory_coordinator::host::HostMemory;
use memory_coordinator::libvirt::{Connection, LibvirtBackend};
use memory_coordinator::policy::PolicyConfig;

const NODE: [TestDomain; 3] = [
    TestDomain::running("big", 4096, 4096),
    TestDomain::running("mid", 2048, 2048),
    TestDomain::running("small", 1024, 1024),
];

fn memory_mib(conn: &Connection, name: &str) -> u64 {
    let dom = conn.list_active_domains().unwrap().find(|d| d.name().unwrap().to_bytes() == name.as_bytes()).unwrap();
    dom.info().unwrap().memory_kib / 1024
}

/// A coordinator on the node with a host of `available_mib`, after 40 rounds of shrinking.
fn shrunk(dir: &tempfile::TempDir, available_mib: u64) -> Coordinator<LibvirtBackend> {
    let uri = node_uri(dir, &NODE);
    let meminfo = dir.path().join("meminfo");
    std::fs::write(&meminfo, "MemTotal: 33554432 kB\nMemAvailable: 16777216 kB\n").unwrap();
    let backend = LibvirtBackend::connect(&uri, 1).unwrap();
    let host = HostMemory::open(&meminfo).unwrap();
    let options = LoopOptions { restore_on_exit: true, ..LoopOptions::default() };
    let mut c = Coordinator::new(PolicyConfig::DEFAULT, options, backend, host);
    for _ in 0..40 {
        c.tick();
    }
    let conn = c.backend().connection().unwrap();
    for d in NODE {
        assert!(memory_mib(conn, d.name) < d.max_mib / 2, "{} was not shrunk", d.name);
    }
    std::fs::write(&meminfo, format!("MemTotal: 33554432 kB\nMemAvailable: {} kB\n", available_mib * 1024)).unwrap();
    c
}

#[test]
fn a_roomy_host_gives_every_vm_its_max_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = shrunk(&dir, 16 * 1024);
    c.restore();
    let conn = c.backend().connection().unwrap();
    for d in NODE {
        assert_eq!(memory_mib(conn, d.name), d.max_mib, "{}", d.name);
    }
}

#[test]
fn a_short_host_restores_the_largest_shortfall_first_and_keeps_its_reserve() {
    // The test driver's guests report half their size free; all of that counts as memory the
    // host may yet have to back. Leave room for about 1.5 GiB more above the reserve: the big
    // VM (largest shortfall) gets it all, the others nothing.
    let dir = tempfile::tempdir().unwrap();
    let mut c = shrunk(&dir, 0);
    let conn = c.backend().connection().unwrap();
    let sizes: Vec<u64> = NODE.iter().map(|d| memory_mib(conn, d.name)).collect();
    // The test driver reports RSS as half the size: half of each balloon is unbacked.
    let debt_mib: u64 = sizes.iter().map(|s| s / 2).sum();
    let available_kib = (debt_mib + 200 + 1536) * 1024;
    std::fs::write(dir.path().join("meminfo"), format!("MemTotal: 33554432 kB\nMemAvailable: {available_kib} kB\n"))
        .unwrap();
    c.restore();
    let conn = c.backend().connection().unwrap();
    let big = memory_mib(conn, "big");
    assert!(big > sizes[0] + 1400 && big <= sizes[0] + 1536, "big at {big} MiB (was {})", sizes[0]);
    assert_eq!(memory_mib(conn, "mid"), sizes[1]);
    assert_eq!(memory_mib(conn, "small"), sizes[2]);
}

#[test]
fn sigterm_with_restore_on_exit_gives_memory_back_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let uri = node_uri(&dir, &NODE);
    let mut d = Daemon::start(&["1", "--connect", &uri, "--restore-on-exit"]);
    d.wait_for("shrink big", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(1500));
    d.signal(libc::SIGTERM);
    let (code, took) = d.wait_exit(Duration::from_secs(10));
    let stderr = d.stderr.join("\n");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(stderr.contains("restore big"), "{stderr}");
    assert!(stderr.contains("restored 3 VM(s)"), "{stderr}");
}
