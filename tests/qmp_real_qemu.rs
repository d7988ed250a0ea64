//! The QMP backend against a real QEMU (TCG, the lab guest with its virtio-balloon driver):
//! the coordinator reads real guest stats over QMP and the guest's balloon moves, as a second
//! QMP monitor on the same QEMU sees it.

mod common;

use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::lab::{self, QemuGuest};
use memory_coordinator::qmp::client::QmpClient;
use memory_coordinator::qmp::protocol::BalloonInfo;

const MIB: u64 = 1024 * 1024;

fn actual_mib(watch: &mut QmpClient) -> u64 {
    watch.execute::<_, BalloonInfo>("query-balloon", None::<()>).unwrap().actual / MIB
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[derive(serde::Serialize)]
struct Target {
    value: u64,
}

#[test]
fn a_real_qemu_guest_is_served_over_qmp() {
    if lab::skip_lab("QMP real-QEMU test") {
        return;
    }
    let image = lab::guest_image();
    let dir = tempfile::Builder::new().prefix("mc-qmp-").tempdir().unwrap();
    std::fs::create_dir(dir.path().join("vms")).unwrap();
    let name = format!("qvm_{}", std::process::id());
    let served = dir.path().join("vms").join(format!("{name}.sock"));
    let watch_path = dir.path().join("watch.mon");
    let guest = QemuGuest::start(&image, &name, 2048, dir.path(), &[served, watch_path.clone()]);
    let mut watch = QmpClient::connect(&watch_path, Duration::from_secs(5)).unwrap();
    guest.wait_console("lab-guest: ready", Duration::from_secs(60));
    // As bare-QEMU users do: boot with -m 2048, balloon down to 512 MiB.
    watch.execute::<_, serde::de::IgnoredAny>("balloon", Some(Target { value: 512 * MIB })).unwrap();
    wait_until("the guest to reach 512 MiB", Duration::from_secs(20), || actual_mib(&mut watch) <= 512);

    let pattern = format!("{}/vms/*.sock", dir.path().display());
    let mut d = Daemon::start(&["1", "--qmp", &pattern, "--json"]);
    d.wait_for(&format!("serving {name} ("), Duration::from_secs(10));
    let line = d.wait_for(&format!("shrink {name} 512 -> "), Duration::from_secs(30));
    eprintln!("{line}");
    wait_until("the watcher to see the smaller balloon", Duration::from_secs(10), || actual_mib(&mut watch) < 500);
    let settled = actual_mib(&mut watch);

    guest.send("consumer grow 400 20000 20");
    let line = d.wait_for(&format!("grow {name} "), Duration::from_secs(60));
    eprintln!("{line}");
    wait_until("the consumer to reach 400 MiB", Duration::from_secs(90), || {
        guest.console().contains("consumer: reached 400 MiB")
    });
    let grown = actual_mib(&mut watch);
    assert!(grown > settled + 200, "balloon {settled} MiB -> {grown} MiB");
    assert!(!guest.console().contains("Out of memory"), "the guest OOM-killed:\n{}", guest.console());

    // Real stats came over QMP: free memory reported, timestamps advancing every second.
    let rounds = d.poll_rounds().to_vec();
    let ours: Vec<&serde_json::Value> = rounds
        .iter()
        .filter_map(|r| r["vms"].as_array().unwrap().iter().find(|v| v["name"] == name.as_str()))
        .collect();
    let stamps: Vec<u64> = ours.iter().filter_map(|v| v["last_update_s"].as_u64()).collect();
    assert!(stamps.windows(2).filter(|w| w[1] > w[0]).count() > 10, "stats did not advance: {stamps:?}");
    let min_free = ours.iter().filter_map(|v| v["unused_kib"].as_u64()).min().unwrap();
    eprintln!("lowest reported free memory: {} MiB; balloon {settled} -> {grown} MiB", min_free / 1024);
    assert!(ours.iter().all(|v| v["max_kib"] == 2048 * 1024));

    d.signal(libc::SIGINT);
    assert_eq!(d.wait_exit(Duration::from_secs(5)).0, Some(0));
}
