//! The QMP backend against in-process QEMU 7.2 peers (tests/common/fake_qemu.rs): discovery and
//! set-up, glob rescans, and faulty peers that must not stop healthy ones being served in the
//! same round.

mod common;

use std::cell::RefCell;
use std::io::Write;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use common::daemon::{self, json_lines};
use common::fake_qemu::{FakeQemu, Fault};
use memory_coordinator::coordinator::{Coordinator, LoopOptions, Round};
use memory_coordinator::host::HostMemory;
use memory_coordinator::policy::PolicyConfig;
use memory_coordinator::qmp::{QmpBackend, QmpOptions};

const TIMEOUT: Duration = Duration::from_millis(200);

/// Collects the JSON lines of an in-process coordinator.
#[derive(Clone, Default)]
struct Lines(Rc<RefCell<Vec<u8>>>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn rounds(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.0.borrow()).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

fn coordinator(pattern: &str, rescan_ticks: u32) -> (Coordinator<QmpBackend>, Lines) {
    let options = QmpOptions {
        patterns: vec![pattern.to_owned()],
        balloon_path: None,
        timeout: TIMEOUT,
        stats_period_s: 1,
        rescan_ticks,
    };
    let host = HostMemory::open(Path::new("/proc/meminfo")).unwrap();
    let lines = Lines::default();
    let loop_options = LoopOptions { json: true, ..LoopOptions::default() };
    let c = Coordinator::new(PolicyConfig::DEFAULT, loop_options, QmpBackend::new(options), host)
        .with_json_output(Box::new(lines.clone()));
    (c, lines)
}

fn vm<'a>(round: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    round["vms"].as_array().unwrap().iter().find(|v| v["name"] == name)
}

#[test]
fn a_peer_is_discovered_configured_and_ballooned_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let qemu = FakeQemu::start(dir.path(), "vm1.sock", Some("aos_vm1"), Fault::None, 2048, 100);
    let (mut c, lines) = coordinator(&format!("{}/*.sock", dir.path().display()), 5);
    assert_eq!(c.tick(), Round::Served(1));
    {
        let g = qemu.guest.lock().unwrap();
        assert_eq!(g.polling_interval, 1, "guest-stats-polling-interval set to the interval");
        for cmd in [
            "qmp_capabilities",
            "query-name",
            "qom-list",
            "qom-set",
            "query-memory-size-summary",
            "query-balloon",
            "qom-get",
        ] {
            assert!(g.commands.iter().any(|c| c == cmd), "{cmd} never sent: {:?}", g.commands);
        }
    }
    c.tick();
    let calls = qemu.balloon_calls();
    assert_eq!(calls.len(), 1, "the idle VM is shrunk on the second round");
    let rounds = lines.rounds();
    let v = vm(&rounds[1], "aos_vm1").unwrap();
    assert_eq!(v["action"], "shrink");
    assert_eq!(calls[0], v["target_kib"].as_u64().unwrap() * 1024, "balloon takes bytes");
    assert_eq!(v["max_kib"], 2048 * 1024);
    // 2048 MiB, 80 MiB outside MemTotal, 100 MiB used: 1868 MiB free.
    assert_eq!(v["unused_kib"], 1868 * 1024);
}

#[test]
fn faulty_peers_do_not_stop_a_healthy_one_being_served_each_round() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = FakeQemu::start(dir.path(), "a-healthy.sock", Some("healthy"), Fault::None, 2048, 100);
    let faults = [
        ("events", Fault::EventsBetweenReplies),
        ("nostats", Fault::StatsNotReported),
        ("errors", Fault::ErrorReplies),
        ("hang", Fault::HangMidReply),
        ("close", Fault::CloseMidLine),
        ("garbage", Fault::GarbageLine),
        ("silent", Fault::Silent),
    ];
    let peers: Vec<FakeQemu> = faults
        .iter()
        .map(|(name, fault)| FakeQemu::start(dir.path(), &format!("{name}.sock"), Some(name), *fault, 2048, 100))
        .collect();
    let (mut c, lines) = coordinator(&format!("{}/*.sock", dir.path().display()), 5);

    // Rounds one second apart, as the daemon runs them: guests answer stats once a second.
    let mut slowest = Duration::ZERO;
    for _ in 0..8 {
        let started = Instant::now();
        c.tick();
        slowest = slowest.max(started.elapsed());
        std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
    }
    let rounds = lines.rounds();
    // The healthy VM got figures every round and was shrunk from the second on.
    for (i, r) in rounds.iter().enumerate() {
        let v = vm(r, "healthy").unwrap_or_else(|| panic!("round {i}: healthy VM missing: {r}"));
        assert!(v["unused_kib"].is_u64(), "round {i}: no figures for the healthy VM");
    }
    assert!(healthy.balloon_calls().len() >= 5, "healthy VM shrunk {} times", healthy.balloon_calls().len());
    // A round never waits on a stuck peer for more than its deadline per command.
    assert!(slowest < TIMEOUT * 4, "slowest round {slowest:?}");

    let by_name = |n: &str| &peers[faults.iter().position(|(f, _)| *f == n).unwrap()];
    // Events between replies are skipped: served like the healthy one.
    assert!(!by_name("events").balloon_calls().is_empty());
    // Stats not reported yet: present, never acted on.
    let last = rounds.last().unwrap();
    assert_eq!(vm(last, "nostats").unwrap()["hold"], "no_stats");
    assert!(by_name("nostats").balloon_calls().is_empty());
    // Error replies: skipped, connection kept.
    assert!(by_name("errors").balloon_calls().is_empty());
    assert_eq!(by_name("errors").guest.lock().unwrap().connections, 1);
    // Hung, closed and garbage peers are dropped, reconnected with backoff, then served.
    for name in ["hang", "close", "garbage"] {
        let p = by_name(name);
        assert!(p.guest.lock().unwrap().connections >= 2, "{name} was not reconnected");
        assert!(!p.balloon_calls().is_empty(), "{name} was not served after reconnecting");
    }
    // The silent one never gets past the greeting and costs only its deadline, with backoff.
    let silent = by_name("silent").guest.lock().unwrap().connections;
    assert!((1..=4).contains(&silent), "silent peer tried {silent} times");
}

#[test]
fn patterns_are_expanded_again_so_qemus_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, lines) = coordinator(&format!("{}/vm*.sock", dir.path().display()), 2);
    assert_eq!(c.tick(), Round::Idle, "nothing matches yet: a warning, not an exit");
    let late = FakeQemu::start(dir.path(), "vm7.sock", None, Fault::None, 1024, 100);
    FakeQemu::start(dir.path(), "other.sock", Some("ignored"), Fault::None, 1024, 100);
    c.tick();
    c.tick();
    let rounds = lines.rounds();
    // No -name: the socket's file name is the VM's name.
    assert!(vm(rounds.last().unwrap(), "vm7").is_some(), "{}", rounds.last().unwrap());
    assert!(vm(rounds.last().unwrap(), "ignored").is_none());
    drop(late);
    c.tick();
    assert_eq!(c.tick(), Round::Idle, "the vanished socket is dropped at the next rescan");
}

#[test]
fn the_binary_serves_qmp_sockets_given_as_a_quoted_glob() {
    let dir = tempfile::tempdir().unwrap();
    let _a = FakeQemu::start(dir.path(), "a.sock", Some("aos_vm1"), Fault::None, 2048, 100);
    let _b = FakeQemu::start(dir.path(), "b.sock", Some("aos_vm2"), Fault::EventsBetweenReplies, 600, 480);
    let pattern = format!("{}/*.sock", dir.path().display());
    let out = daemon::run(&["1", "--qmp", &pattern, "--ticks", "3", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("serving aos_vm1"), "{stderr}");
    assert!(stderr.contains("shrink aos_vm1 2048 -> "), "{stderr}");
    let rounds = json_lines(&out);
    assert_eq!(rounds.len(), 3);
    // aos_vm2: 600 MiB, 80 outside MemTotal, 480 used: 40 MiB free, starving: grown.
    assert_eq!(vm(&rounds[1], "aos_vm2").unwrap()["action"], "grow", "{}", rounds[1]);
}

#[test]
fn a_pattern_that_matches_nothing_is_a_warning_not_an_exit() {
    let dir = tempfile::tempdir().unwrap();
    let pattern = format!("{}/*.sock", dir.path().display());
    let out = daemon::run(&["1", "--qmp", &pattern, "--ticks", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains(&format!("--qmp {pattern} matches no socket (yet)")), "{stderr}");
    assert!(stderr.contains("stopped: 2 rounds"), "{stderr}");
}
