//! One daemon per host: a second instance refuses with one clear line naming the first and
//! an exit status of its own, which the service unit does not restart on; a dry run may watch
//! beside it, and a daemon killed with SIGKILL leaves no lock behind.

mod common;

use std::time::Duration;

use common::daemon::{self, Daemon};
use memory_coordinator::instance::RUNNING_EXIT;

const URI: &str = "test:///default";

fn with_lock(lock: &std::path::Path, args: &[&str]) -> std::process::Output {
    daemon::command().env("MEMORY_COORDINATOR_LOCK_FILE", lock).args(args).output().unwrap()
}

#[test]
fn a_second_daemon_refuses_naming_the_first_a_dry_run_may_watch_and_a_killed_daemon_leaves_no_lock() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("run/memory_coordinator.lock");
    let lock_arg = lock.to_str().unwrap();
    let mut first = Daemon::start(&["1", "--connect", URI, "--lock-file", lock_arg]);
    first.wait_for("serving", Duration::from_secs(10));
    let pid = first.child.id();

    let second = with_lock(&lock, &["1", "--connect", URI, "--ticks", "2"]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(i32::from(RUNNING_EXIT)), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("another memory_coordinator (pid {pid}) already runs on this host")), "{stderr}");
    assert!(stderr.contains("--dry-run"), "{stderr}");

    let watcher = with_lock(&lock, &["1", "--connect", URI, "--ticks", "2", "--dry-run"]);
    assert_eq!(watcher.status.code(), Some(0), "{}", String::from_utf8_lossy(&watcher.stderr));

    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(5));
    let after = with_lock(&lock, &["1", "--connect", URI, "--ticks", "2"]);
    assert_eq!(after.status.code(), Some(0), "{}", String::from_utf8_lossy(&after.stderr));
}

/// The exit statuses the stock unit must not restart on: a usage error and another daemon
/// holding the lock. Restarting cannot fix either; on a held lock systemd would otherwise
/// start the service again every 5 s, forever.
#[test]
fn the_service_unit_does_not_restart_on_a_usage_error_nor_on_a_held_lock() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/memory-coordinator.service")).unwrap();
    let settings: Vec<&str> = unit.lines().filter_map(|l| l.strip_prefix("RestartPreventExitStatus=")).collect();
    assert_eq!(settings.len(), 1, "one RestartPreventExitStatus= line: {settings:?}");
    let statuses: Vec<&str> = settings[0].split_whitespace().collect();
    assert!(statuses.contains(&"2"), "usage errors: {statuses:?}");
    assert!(statuses.contains(&RUNNING_EXIT.to_string().as_str()), "another daemon running: {statuses:?}");
    assert!(unit.lines().any(|l| l == "Restart=on-failure"), "exit 1 (a backend that cannot start) is retried");
    // --help (and so the man page, made from the same text) lists the status.
    let help = daemon::run(&["--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains(&format!("  {RUNNING_EXIT}     another memory_coordinator already runs")), "{help}");
}
