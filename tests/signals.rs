//! Signal-safe shutdown of the real binary: SIGTERM or SIGINT in the middle of a 5 s interval
//! ends the wait at once and the daemon exits 0 with its summary line.

mod common;

use std::time::Duration;

use common::daemon::Daemon;

fn stops_promptly_on(signal: i32) {
    let mut d = Daemon::start(&["5", "--connect", "test:///default"]);
    d.wait_for("serving test", Duration::from_secs(10));
    // Mid-interval: the first round is done, the next is 5 s away.
    std::thread::sleep(Duration::from_millis(700));
    d.signal(signal);
    let (code, took) = d.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "stderr:\n{}", d.stderr.join("\n"));
    assert!(took < Duration::from_secs(1), "took {took:?} to exit");
    assert!(d.stderr.iter().any(|l| l.contains("stopped: 1 rounds")), "{}", d.stderr.join("\n"));
}

#[test]
fn sigterm_mid_interval_exits_0_within_a_second() {
    stops_promptly_on(libc::SIGTERM);
}

#[test]
fn sigint_mid_interval_exits_0_within_a_second() {
    stops_promptly_on(libc::SIGINT);
}

#[test]
fn sighup_without_a_config_file_is_logged_and_the_daemon_goes_on() {
    // SIGHUP's default action ends a process: the daemon must catch it, even with nothing to
    // reload, and answer at once rather than at the next round.
    let mut d = Daemon::start(&["5", "--connect", "test:///default"]);
    d.wait_for("serving test", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let sent = std::time::Instant::now();
    d.signal(libc::SIGHUP);
    d.wait_for("reload asked for, but there is no --config file", Duration::from_secs(2));
    assert!(sent.elapsed() < Duration::from_secs(1), "the reload waited for the next round");
    assert!(d.child.try_wait().unwrap().is_none(), "SIGHUP ended the daemon");
    d.signal(libc::SIGTERM);
    let (code, _) = d.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "stderr:\n{}", d.stderr.join("\n"));
    assert!(d.stderr.iter().any(|l| l.contains("stopped: 1 rounds")), "{}", d.stderr.join("\n"));
}
