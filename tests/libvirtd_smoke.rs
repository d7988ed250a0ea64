//! The daemon against a real libvirtd and a real guest (TCG QEMU, Debian kernel, virtio-balloon
//! driver): the guest's balloon, as `virsh dommemstat` sees it, moves because the coordinator
//! decided so. First an idle guest is shrunk; then it consumes memory and is grown in time.

mod common;

use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::lab;

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_real_guest_is_shrunk_when_idle_and_grown_when_it_consumes() {
    let name = format!("mc_smoke_{}", std::process::id());
    let Some(guest) = lab::booted_libvirt_guest("libvirtd smoke test", &name, 2048, 512) else { return };

    let mut d = Daemon::start(&["1", "--json"]);
    // Idle: ~400 MiB free at 512 MiB, far above threshold plus band: it is shrunk.
    let line = d.wait_for(&format!("shrink {name} 512 -> "), Duration::from_secs(30));
    eprintln!("{line}");
    wait_until("virsh to see the smaller balloon", Duration::from_secs(10), || {
        guest.memstat("actual").is_some_and(|kib| kib < 500 * 1024)
    });
    let settled = guest.memstat("actual").unwrap();

    // Consume 400 MiB at ~20 MB/s: more than the guest has free, so it must be grown.
    guest.send("consumer grow 400 20000 20");
    let line = d.wait_for(&format!("grow {name} "), Duration::from_secs(60));
    eprintln!("{line}");
    wait_until("the consumer to reach 400 MiB", Duration::from_secs(90), || {
        guest.console().contains("consumer: reached 400 MiB")
    });
    let grown = guest.memstat("actual").unwrap();
    assert!(grown > settled + 200 * 1024, "balloon {settled} KiB -> {grown} KiB");
    assert!(!guest.console().contains("Out of memory"), "the guest OOM-killed:\n{}", guest.console());

    // Its stats period was set by the coordinator: the guest reports fresh figures.
    let rounds = d.poll_rounds().to_vec();
    let ours =
        |r: &serde_json::Value| r["vms"].as_array().unwrap().iter().find(|v| v["name"] == name.as_str()).cloned();
    let stamps: Vec<u64> = rounds.iter().filter_map(ours).filter_map(|v| v["last_update_s"].as_u64()).collect();
    assert!(stamps.windows(2).filter(|w| w[1] > w[0]).count() > 10, "stats did not advance: {stamps:?}");
    let min_free = rounds.iter().filter_map(ours).filter_map(|v| v["unused_kib"].as_u64()).min().unwrap();
    eprintln!(
        "lowest reported free memory: {} MiB; balloon {} -> {} MiB",
        min_free / 1024,
        settled / 1024,
        grown / 1024
    );

    d.signal(libc::SIGTERM);
    let (code, _) = d.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0));
}
