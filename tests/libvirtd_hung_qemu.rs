//! A real guest whose QEMU stops answering (SIGSTOP) under libvirt: libvirt's monitor has no
//! timeout, so its calls to that QEMU wait until it runs again. The daemon must keep serving
//! the other guest every round, name the hung one once, serve it again once its QEMU
//! continues, and stop at once on SIGTERM while a call to it hangs.

mod common;

use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::lab::{self, LibvirtGuest};

/// Continues the stopped QEMU whatever happens, so that the guest can be destroyed.
struct Stopped(i32);

impl Stopped {
    fn stop(pid: i32) -> Stopped {
        signal(pid, libc::SIGSTOP);
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a QEMU process this test started through libvirt; no memory involved.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// A thread that keeps one core busy until dropped, as `yes > /dev/null` does (writes: a pure
/// spin did not show the race as often).
struct Busy(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Busy {
    fn start() -> Busy {
        use std::io::Write;
        let run = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let spin = std::sync::Arc::clone(&run);
        let mut null = std::fs::OpenOptions::new().write(true).open("/dev/null").unwrap();
        std::thread::spawn(move || {
            let line = [b'y'; 8192];
            while spin.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = null.write_all(&line);
            }
        });
        Busy(run)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The pid of the QEMU running the libvirt domain `name`.
fn qemu_pid(name: &str) -> i32 {
    let out = std::process::Command::new("pgrep").args(["-f", &format!("guest={name},")]).output().unwrap();
    let pids: Vec<i32> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(pids.len(), 1, "one QEMU for {name}: {pids:?}");
    pids[0]
}

fn has_figures(round: &serde_json::Value, name: &str) -> bool {
    let vms = round["vms"].as_array().unwrap();
    vms.iter().any(|vm| vm["name"] == name && vm.get("actual_kib").is_some())
}

/// Waits for `count` rounds after those seen so far.
fn next_rounds(d: &mut Daemon, count: usize, timeout: Duration) -> Vec<serde_json::Value> {
    let seen = d.poll_rounds().len();
    let deadline = Instant::now() + timeout;
    while d.poll_rounds().len() < seen + count {
        assert!(Instant::now() < deadline, "fewer than {count} rounds in {timeout:?}:\n{}", d.stderr.join("\n"));
        std::thread::sleep(Duration::from_millis(100));
    }
    d.rounds[seen..seen + count].to_vec()
}

#[test]
fn a_hung_qemu_leaves_its_guest_unserved_the_others_served_every_round_and_sigterm_obeyed() {
    let pid = std::process::id();
    let (hung, healthy) = (format!("mc_hung_{pid}"), format!("mc_healthy_{pid}"));
    let Some(image) = lab::lab_ready("hung QEMU under libvirt") else { return };
    let guests = [LibvirtGuest::start(&image, &hung, 1024, 1024), LibvirtGuest::start(&image, &healthy, 1024, 1024)];
    for g in &guests {
        g.wait_console("lab-guest: ready", Duration::from_secs(60));
    }
    let qemu = qemu_pid(&hung);
    let mut d = Daemon::start(&["1", "--json", "--domains", &hung, "--domains", &healthy]);
    let served = |rounds: &[serde_json::Value], name: &str| rounds.iter().all(|r| has_figures(r, name));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !served(&next_rounds(&mut d, 2, Duration::from_secs(10)), &hung) {
        assert!(Instant::now() < deadline, "the guests were never both served");
    }

    // A busy host, as CI is: a thread of this test spins on one of the two cores while the QEMU
    // hangs. libvirt's client loses a wake-up when its socket's thread is preempted at the
    // wrong moment (calls.rs, NUDGE_EVERY); without the nudges, the healthy guest went
    // unserved for the whole hang in 3 runs of 4 under such load.
    let _busy = Busy::start();
    let stopped = Stopped::stop(qemu);
    // The bulk call waits on the stopped QEMU: given up at the deadline, the round reads
    // domain by domain, and the hung domain's own read is given up in turn.
    d.wait_for("the bulk statistics call has not returned within 2 s", Duration::from_secs(10));
    let hung_line = format!("{hung}: libvirt has not answered within 2 s");
    if !d.stderr.iter().any(|l| l.contains(&hung_line)) {
        d.wait_for(&hung_line, Duration::from_secs(10));
    }
    // From the round after the one that gave up on it: the hung guest is never served, the
    // healthy one is served in all but at most one round (the one in which the hang began may
    // take the deadline) and in the last three, and all but one round keep the interval. A
    // failure prints the daemon's log.
    let rounds = next_rounds(&mut d, 7, Duration::from_secs(15)).split_off(1);
    let log = |d: &mut Daemon| d.poll_stderr().join("\n");
    for r in &rounds {
        assert!(!has_figures(r, &hung), "{hung} has figures while its QEMU is stopped: {r}");
        let vm = r["vms"].as_array().unwrap().iter().find(|vm| vm["name"] == hung.as_str()).unwrap();
        assert_eq!(vm["hold"], "unanswered", "{hung} is shown as not answered: {vm}");
    }
    let unserved = rounds.iter().filter(|r| !has_figures(r, &healthy)).count();
    assert!(unserved <= 1, "{healthy} unserved in {unserved} rounds while {hung} hangs: {rounds:?}\n{}", log(&mut d));
    assert!(rounds[3..].iter().all(|r| has_figures(r, &healthy)), "{healthy} not served lately: {}", log(&mut d));
    // Rounds keep their interval: no call waits for the hung QEMU any more.
    let gaps: Vec<u64> = rounds
        .windows(2)
        .map(|pair| pair[1]["elapsed_ms"].as_u64().unwrap() - pair[0]["elapsed_ms"].as_u64().unwrap())
        .collect();
    let slow = gaps.iter().filter(|gap| **gap >= 1500).count();
    assert!(slow <= 1, "rounds {gaps:?} ms apart while {hung} hangs\n{}", log(&mut d));
    let warned = d.poll_stderr().iter().filter(|l| l.contains(&format!("{hung}: libvirt has not answered"))).count();
    assert_eq!(warned, 1, "the hang is named once, not once per round");

    drop(stopped);
    // The stuck bulk call returns first (the next round's listing sees it), then the read.
    d.wait_for("reading in bulk again", Duration::from_secs(10));
    d.wait_for(&format!("{hung}: libvirt answered again"), Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_figures(&next_rounds(&mut d, 1, Duration::from_secs(5))[0], &hung) {
        assert!(Instant::now() < deadline, "{hung} was not served again after its QEMU continued");
    }

    // Stopped again, with a round waiting on it: SIGTERM is obeyed at once all the same.
    let _stopped = Stopped::stop(qemu);
    std::thread::sleep(Duration::from_millis(1500));
    d.signal(libc::SIGTERM);
    let (code, took) = d.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "exit status; stderr:\n{}", d.stderr.join("\n"));
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?} while a call hangs");
}
