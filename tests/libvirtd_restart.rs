//! libvirtd restarts under the daemon: the loss is logged once, the daemon reconnects with
//! backoff, sets the guest's stats period again (a restarted daemon forgot it) and serves on.
//! A separate test binary, because it kills the system libvirtd.

mod common;

use std::process::Command;
use std::time::Duration;

use common::daemon::Daemon;
use common::lab;

#[test]
fn a_libvirtd_restart_is_survived_and_stats_periods_are_set_again() {
    let name = format!("mc_restart_{}", std::process::id());
    let Some(guest) = lab::booted_libvirt_guest("libvirtd restart test", &name, 1024, 512) else { return };

    let mut d = Daemon::start(&["1", "-v"]);
    d.wait_for(&format!("{name}: stats period set to 1 s"), Duration::from_secs(20));

    let killed = Command::new("pkill").args(["-x", "libvirtd"]).status().unwrap();
    assert!(killed.success(), "no libvirtd to kill");
    d.wait_for("lost the libvirt connection", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    lab::libvirtd_up();

    d.wait_for("reconnected to qemu:///system", Duration::from_secs(60));
    d.wait_for(&format!("{name}: stats period set to 1 s"), Duration::from_secs(20));
    d.wait_for("libvirt qemu:///system is back", Duration::from_secs(20));
    let lost_lines = d.poll_stderr().iter().filter(|l| l.contains("lost the libvirt connection")).count();
    assert_eq!(lost_lines, 1, "the loss must be logged once:\n{}", d.stderr.join("\n"));
    // Still serving: a round after the restart sees the guest.
    d.wait_for(&format!("  {name}: actual"), Duration::from_secs(10));
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(5)).0, Some(0));
    for line in d.stderr.iter().filter(|l| !l.contains("DEBUG")) {
        eprintln!("{line}");
    }
    drop(guest);
}
