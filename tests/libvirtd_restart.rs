//! libvirtd restarts under the daemon: the loss is logged once, the daemon reconnects with
//! backoff, sets the guest's stats period again (a restarted daemon forgot it) and serves on,
//! within 5 s of libvirtd's return. A separate test binary, because it kills the system
//! libvirtd (by its pid, under the lab lock).

mod common;

use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::lab;
use common::test_driver::{libvirtd_pid, signal};

/// Starts libvirtd again on drop, whatever happens to the test.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        lab::libvirtd_up();
    }
}

#[test]
fn a_libvirtd_restart_is_survived_and_stats_periods_are_set_again() {
    let name = format!("mc_restart_{}", std::process::id());
    let Some(guest) = lab::booted_libvirt_guest("libvirtd restart test", &name, 1024, 512) else { return };

    let mut d = Daemon::start(&["1", "-v"]);
    d.wait_for(&format!("{name}: stats period set to 1 s"), Duration::from_secs(20));

    let restart = RestartOnDrop;
    let pid = libvirtd_pid();
    signal(pid, libc::SIGTERM);
    d.wait_for("lost the libvirt connection", Duration::from_secs(30));
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(3));
    drop(restart);
    let back = Instant::now();

    d.wait_for("reconnected to qemu:///system", Duration::from_secs(5));
    d.wait_for(&format!("{name}: stats period set to 1 s"), Duration::from_secs(5));
    d.wait_for("libvirt qemu:///system is back", Duration::from_secs(5));
    d.wait_for(&format!("  {name}: actual"), Duration::from_secs(5));
    let served_after = back.elapsed();
    eprintln!("served again {served_after:?} after libvirtd answered");
    assert!(served_after < Duration::from_secs(5), "served again only {served_after:?} after libvirtd's return");
    let lost_lines = d.poll_stderr().iter().filter(|l| l.contains("lost the libvirt connection")).count();
    assert_eq!(lost_lines, 1, "the loss must be logged once:\n{}", d.stderr.join("\n"));
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(5)).0, Some(0));
    for line in d.stderr.iter().filter(|l| !l.contains("DEBUG")) {
        eprintln!("{line}");
    }
    drop(guest);
}
