//! A real guest without a balloon driver (its kernel refuses to load `virtio_balloon`): the
//! daemon names it once as not reporting stats, never once per round, and never moves its
//! balloon.

mod common;

use std::time::Duration;

use common::daemon::Daemon;
use common::lab::{self, LibvirtGuest};

#[test]
fn a_guest_without_a_balloon_driver_is_named_once_as_not_reporting_stats_and_left_alone() {
    let name = format!("mc_driverless_{}", std::process::id());
    let Some(image) = lab::lab_ready("driverless guest") else { return };
    // The balloon device is there; the driver is not: the kernel refuses the module.
    let guest = LibvirtGuest::start_custom(&image, &name, 1024, 1024, None, "module_blacklist=virtio_balloon");
    guest.wait_console("lab-guest: ready", Duration::from_secs(60));
    assert!(guest.console().contains("cannot load virtio_balloon"), "the driver loaded:\n{}", guest.console());

    let mut d = Daemon::start(&["1", "--json", "--domains", &name]);
    let needle = format!("{name}: not served: it reports no free-memory figure");
    d.wait_for(&needle, Duration::from_secs(30));
    let seen = d.rounds.len();
    // Ten more rounds: the reason stays, the line is not repeated.
    while d.poll_rounds().len() < seen + 10 {
        std::thread::sleep(Duration::from_millis(200));
    }
    d.signal(libc::SIGTERM);
    let (code, _) = d.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0));
    let lines = d.stderr.iter().filter(|l| l.contains(&needle)).count();
    assert_eq!(lines, 1, "{}", d.stderr.join("\n"));
    let last = d.rounds.last().unwrap();
    let vm = last["vms"].as_array().unwrap().iter().find(|v| v["name"] == name.as_str()).unwrap();
    assert_eq!(vm["not_served"], "no_stats", "{vm}");
    assert!(d.stderr.iter().all(|l| !l.contains(&format!("grow {name}")) && !l.contains(&format!("shrink {name}"))));
    assert_eq!(guest.memstat("actual"), Some(1024 * 1024));
}
