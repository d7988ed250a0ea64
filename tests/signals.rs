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
