//! libvirtd hung (SIGSTOP) in the middle of the daemon's calls, and libvirtd killed and
//! started again: the real binary, serving 4 domains of libvirt's test driver through the system
//! libvirtd, notices the loss, waits without spinning, never exits, obeys SIGTERM at once, and
//! serves again within 5 s of the daemon's return; over its local socket and over a relayed
//! transport (where keepalive is on). Lab-locked (it stops and kills the system libvirtd); the
//! tests run one at a time.

mod common;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::lab;
use common::test_driver::{COURSE_NODE, StoppedLibvirtd, Transport, cpu_time, libvirtd_pid, node_uri_over, signal};

static SERIAL: Mutex<()> = Mutex::new(());

/// How soon after libvirtd is back the daemon must serve again.
const BACK_WITHIN: Duration = Duration::from_secs(5);

fn lab_turn(test: &str) -> Option<MutexGuard<'static, ()>> {
    if lab::skip_lab(test) {
        return None;
    }
    lab::libvirtd_up();
    Some(SERIAL.lock().unwrap_or_else(PoisonError::into_inner))
}

/// The number of the last JSON round that served all four domains, waiting up to `timeout`
/// for one numbered above `after`; also how long that took.
fn served_round_after(d: &mut Daemon, after: u64, timeout: Duration) -> (u64, Duration) {
    let started = Instant::now();
    loop {
        let served = d.poll_rounds().iter().rev().find(|r| {
            r["round"].as_u64().unwrap() > after
                && r["vms"].as_array().unwrap().iter().filter(|v| v["actual_kib"].is_number()).count() == 4
        });
        if let Some(r) = served {
            return (r["round"].as_u64().unwrap(), started.elapsed());
        }
        assert!(
            started.elapsed() < timeout,
            "no round served all 4 domains within {timeout:?}; stderr:\n{}",
            d.poll_stderr().join("\n")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn last_round(d: &mut Daemon) -> u64 {
    d.poll_rounds().last().map_or(0, |r| r["round"].as_u64().unwrap())
}

/// Stops the daemon and returns how many rounds it ran in all.
fn stop(mut d: Daemon) -> u64 {
    d.signal(libc::SIGTERM);
    let (code, _) = d.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", d.stderr.join("\n"));
    let summary = d.stderr.iter().find(|l| l.contains("stopped: ")).expect("the summary line").clone();
    summary.split("stopped: ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap()
}

/// Stops libvirtd for 20 s under a daemon serving 4 test-driver domains over `transport`, then
/// lets it run again and waits until the daemon serves all four again. Checks what every
/// transport must do: the hang noticed by the listing's deadline (2 s) within the round after
/// the stop and logged once, no spinning meanwhile, served again within 5 s, one round per
/// interval. Returns the daemon's log.
fn hang_libvirtd(transport: Transport) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let uri = node_uri_over(&dir, &COURSE_NODE, transport);
    let started = Instant::now();
    let mut d = Daemon::start(&["1", "--connect", &uri, "--json", "-v"]);
    served_round_after(&mut d, 0, Duration::from_secs(10));

    let cpu_before = cpu_time(d.child.id());
    let stopped_at = Instant::now();
    let stopped = StoppedLibvirtd::stop();
    d.wait_for("has not answered the domain listing", Duration::from_secs(5));
    let noticed = stopped_at.elapsed();
    std::thread::sleep(Duration::from_secs(20).saturating_sub(stopped_at.elapsed()));
    let cpu_while_hung = cpu_time(d.child.id()) - cpu_before;
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon exited while libvirtd hung");
    let round_before = last_round(&mut d);

    stopped.resume();
    let (_, back_after) = served_round_after(&mut d, round_before, BACK_WITHIN);
    let stderr = d.poll_stderr().to_vec();
    let rounds = stop(d);
    eprintln!(
        "{transport:?}: loss noticed after {noticed:?}, {cpu_while_hung:?} of CPU while hung, served again \
         {back_after:?} after SIGCONT, {rounds} rounds in {:?}",
        started.elapsed()
    );
    assert!(noticed < Duration::from_secs(4), "noticed after {noticed:?}");
    assert_eq!(count(&stderr, "has not answered the domain listing"), 1, "the hang is logged once");
    assert!(cpu_while_hung < Duration::from_millis(500), "busy while hung: {cpu_while_hung:?} of CPU");
    let limit = started.elapsed().as_secs() + 2;
    assert!(rounds <= limit, "{rounds} rounds in {:?}: not one per interval", started.elapsed());
    stderr
}

fn count(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_hung_local_libvirtd_is_noticed_by_the_deadline_waited_for_without_spinning_and_served_again_when_it_continues() {
    let Some(_turn) = lab_turn("libvirtd hung with SIGSTOP") else { return };
    let log = hang_libvirtd(Transport::Libvirtd);
    // A local socket has no keepalive: the connection outlives the hang, its stuck listing
    // returns when libvirtd does.
    assert_eq!(count(&log, "reconnected to"), 0, "{}", log.join("\n"));
    assert_eq!(count(&log, "libvirtd answered again"), 1, "{}", log.join("\n"));
}

#[test]
fn a_hung_libvirtd_over_a_relayed_transport_is_dropped_by_keepalive_and_reconnected_when_it_continues() {
    let Some(_turn) = lab_turn("libvirtd hung under a relayed transport") else { return };
    let log = hang_libvirtd(Transport::Relayed);
    // Keepalive (3 probes, 3 s apart) closed the connection under the stuck listing; the
    // reconnection, made by a thread of its own, waited for libvirtd.
    assert_eq!(count(&log, "keepalive timeout"), 1, "{}", log.join("\n"));
    assert_eq!(count(&log, "the connection attempt has not been answered"), 1, "{}", log.join("\n"));
    assert_eq!(count(&log, "reconnected to"), 1, "{}", log.join("\n"));
}

/// SIGTERM while libvirtd hangs: the daemon exits 0 at once, whether no round has met the hang
/// yet (the handles it releases on exit would wait for libvirtd), its listing is stuck on the
/// connection (local socket) or its reconnection waits for an answer (relayed, after keepalive
/// closed the connection).
#[test]
fn sigterm_while_libvirtd_hangs_exits_at_once() {
    let Some(_turn) = lab_turn("SIGTERM while libvirtd hangs") else { return };
    for (transport, phase) in [
        (Transport::Libvirtd, None),
        (Transport::Libvirtd, Some("has not answered the domain listing")),
        (Transport::Relayed, Some("the connection attempt has not been answered")),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let uri = node_uri_over(&dir, &COURSE_NODE, transport);
        // A long interval for the first case: the stop comes between two rounds.
        let interval = if phase.is_none() { "5" } else { "1" };
        let mut d = Daemon::start(&[interval, "--connect", &uri, "--json", "-v"]);
        served_round_after(&mut d, 0, Duration::from_secs(10));
        let stopped = StoppedLibvirtd::stop();
        match phase {
            Some(phase) => drop(d.wait_for(phase, Duration::from_secs(25))),
            None => std::thread::sleep(Duration::from_millis(200)),
        }
        d.signal(libc::SIGTERM);
        let (code, took) = d.wait_exit(Duration::from_secs(10));
        drop(stopped);
        eprintln!("{transport:?} {phase:?}: exit {code:?} {took:?} after SIGTERM");
        assert_eq!(code, Some(0), "{}", d.stderr.join("\n"));
        assert!(took < Duration::from_secs(1), "{transport:?}: exit took {took:?} after SIGTERM");
    }
}

/// The daemon started while libvirtd accepts connections but answers nothing: it warns once
/// and waits (no exit 1: libvirtd may be starting), a SIGTERM meanwhile ends it at once with
/// exit 0, and once libvirtd answers it serves.
#[test]
fn a_daemon_started_while_libvirtd_hangs_waits_for_it_obeys_sigterm_and_serves_once_it_answers() {
    let Some(_turn) = lab_turn("daemon started while libvirtd hangs") else { return };
    let dir = tempfile::tempdir().unwrap();
    let uri = node_uri_over(&dir, &COURSE_NODE, Transport::Libvirtd);
    let waiting = "the connection to libvirt has not completed within 2 s";

    let stopped = StoppedLibvirtd::stop();
    let mut d = Daemon::start(&["1", "--connect", &uri, "--json"]);
    d.wait_for(waiting, Duration::from_secs(5));
    d.signal(libc::SIGTERM);
    let (code, took) = d.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{}", d.stderr.join("\n"));
    assert!(took < Duration::from_secs(1), "exit took {took:?} after SIGTERM");
    assert!(d.stderr.iter().any(|l| l.contains("stopped before libvirt answered")), "{}", d.stderr.join("\n"));

    let mut d = Daemon::start(&["1", "--connect", &uri, "--json"]);
    d.wait_for(waiting, Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon gave up on a libvirtd that hangs");
    let resumed = Instant::now();
    stopped.resume();
    served_round_after(&mut d, 0, BACK_WITHIN);
    eprintln!("served {:?} after libvirtd continued", resumed.elapsed());
    d.wait_for("libvirt answered after", Duration::from_secs(1));
    stop(d);
}

/// Starts libvirtd again on drop, whatever happens to the test.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        lab::libvirtd_up();
    }
}

#[test]
fn a_killed_libvirtd_is_waited_for_with_backoff_and_served_again_within_5_s_of_its_restart() {
    let Some(_turn) = lab_turn("libvirtd killed and restarted") else { return };
    let dir = tempfile::tempdir().unwrap();
    let uri = node_uri_over(&dir, &COURSE_NODE, Transport::Libvirtd);
    let started = Instant::now();
    let mut d = Daemon::start(&["1", "--connect", &uri, "--json", "-v"]);
    served_round_after(&mut d, 0, Duration::from_secs(10));

    let cpu_before = cpu_time(d.child.id());
    let killed_at = Instant::now();
    let restart = RestartOnDrop;
    let pid = libvirtd_pid();
    signal(pid, libc::SIGTERM);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(killed_at.elapsed() < Duration::from_secs(30), "libvirtd did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    d.wait_for("lost the libvirt connection", Duration::from_secs(10));
    // Down long enough for the waits between attempts to grow to their cap.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(killed_at.elapsed()));
    let cpu_while_down = cpu_time(d.child.id()) - cpu_before;
    let round_before = last_round(&mut d);
    drop(restart);
    let back_at = Instant::now();
    let (_, back_after) = served_round_after(&mut d, round_before, BACK_WITHIN);
    let attempts = d.poll_stderr().iter().filter(|l| l.contains("reconnecting to") && l.contains("failed")).count();
    let rounds = stop(d);
    eprintln!(
        "down {:?} ({attempts} failed attempts, {cpu_while_down:?} of CPU), served again {back_after:?} after \
         libvirtd answered, {rounds} rounds in {:?}",
        back_at - killed_at,
        started.elapsed()
    );
    assert!(cpu_while_down < Duration::from_millis(500), "busy while libvirtd was down: {cpu_while_down:?}");
    // Attempts 1, 2, 3, 3, ... s apart: about 4 in 10 s, not one per round, not none.
    assert!((2..=7).contains(&attempts), "{attempts} reconnection attempts in 10 s");
    let limit = started.elapsed().as_secs() + 2;
    assert!(rounds <= limit, "{rounds} rounds in {:?}: not one per interval", started.elapsed());
}
