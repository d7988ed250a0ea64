//! Which VMs are served and within which limits (`--domains`, `--exclude`, `--config`), the
//! SIGHUP reload of the configuration file, and the one log line that says why a VM is not
//! served: on libvirt's `test:///` driver (several domains from a node XML) and on the
//! in-process QEMU peer (tests/common/fake_qemu.rs), in-process and through the real binary.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::counting_alloc::{CountingAlloc, allocations_during};
use common::daemon::{self, Daemon, json_lines};
use common::fake_qemu::{FakeQemu, Fault};
use common::test_driver::{TestDomain, node_uri};
use memory_coordinator::coordinator::{Coordinator, LoopOptions, Round};
use memory_coordinator::host::HostMemory;
use memory_coordinator::libvirt::{Connection, LibvirtBackend};
use memory_coordinator::policy::PolicyConfig;
use memory_coordinator::qmp::{QmpBackend, QmpOptions};
use memory_coordinator::vmconfig::VmRules;
use serde_json::Value;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MIB: u64 = 1024 * 1024;

/// A web/db/mail host: every VM 1024 of 2048 MiB, idle (the test driver reports half free).
const NODE: [TestDomain; 5] = [
    TestDomain::running("web-1", 2048, 1024),
    TestDomain::running("web-2", 2048, 1024),
    TestDomain::running("db-1", 2048, 1024),
    TestDomain::running("db-2", 2048, 1024),
    TestDomain::running("mail", 2048, 1024),
];

fn memory_mib(conn: &Connection, name: &str) -> u64 {
    let dom = conn.list_active_domains().unwrap().find(|d| d.name().unwrap().to_bytes() == name.as_bytes()).unwrap();
    dom.info().unwrap().memory_kib / 1024
}

/// An in-process coordinator writing its JSON lines to `dir/rounds.jsonl`.
fn libvirt_coordinator(dir: &Path, uri: &str, rules: VmRules) -> Coordinator<LibvirtBackend> {
    let backend = LibvirtBackend::connect(uri, 1).unwrap();
    let host = HostMemory::open(Path::new("/proc/meminfo")).unwrap();
    let out = std::fs::File::create(dir.join("rounds.jsonl")).unwrap();
    let options = LoopOptions { json: true, ..LoopOptions::default() };
    Coordinator::new(PolicyConfig::DEFAULT, options, backend, host).with_json_output(Box::new(out)).with_vm_rules(rules)
}

fn qmp_coordinator(dir: &Path, rules: VmRules) -> Coordinator<QmpBackend> {
    let options = QmpOptions {
        patterns: vec![format!("{}/*.sock", dir.display())],
        balloon_path: None,
        timeout: Duration::from_millis(200),
        stats_period_s: 1,
        rescan_ticks: 5,
    };
    let host = HostMemory::open(Path::new("/proc/meminfo")).unwrap();
    let out = std::fs::File::create(dir.join("rounds.jsonl")).unwrap();
    let loop_options = LoopOptions { json: true, ..LoopOptions::default() };
    Coordinator::new(PolicyConfig::DEFAULT, loop_options, QmpBackend::new(options), host)
        .with_json_output(Box::new(out))
        .with_vm_rules(rules)
}

fn rounds(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("rounds.jsonl")).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn vm<'a>(round: &'a Value, name: &str) -> &'a Value {
    round["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {round}"))
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("vms.json");
    std::fs::write(&path, text).unwrap();
    path
}

/// One round, then a wait until the next second: the fake QEMU stamps its stats with the
/// wall clock (1 s resolution), so rounds closer together would see the same sample.
fn tick_each_second<B: memory_coordinator::coordinator::Backend>(c: &mut Coordinator<B>) -> Round {
    let started = Instant::now();
    let round = c.tick();
    std::thread::sleep(Duration::from_millis(1050).saturating_sub(started.elapsed()));
    round
}

#[test]
fn domains_and_exclude_leave_the_other_libvirt_domains_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let uri = node_uri(&dir, &NODE);
    let rules = VmRules::new(vec!["web-*".into(), "db-[0-9]".into()], vec!["web-2".into()], None).unwrap();
    let mut c = libvirt_coordinator(dir.path(), &uri, rules);
    for _ in 0..3 {
        assert_eq!(c.tick(), Round::Served(5));
    }
    let conn = c.backend().connection().unwrap();
    for served in ["web-1", "db-1", "db-2"] {
        assert!(memory_mib(conn, served) < 1024, "{served} was not shrunk");
    }
    for left_alone in ["web-2", "mail"] {
        assert_eq!(memory_mib(conn, left_alone), 1024, "{left_alone} was changed");
    }
    let last = rounds(dir.path()).pop().unwrap();
    for excluded in ["web-2", "mail"] {
        let v = vm(&last, excluded);
        assert_eq!(v["hold"], "excluded", "{v}");
        assert_eq!(v["not_served"], "excluded", "{v}");
        assert!(v.get("actual_kib").is_none(), "the policy was given its figures: {v}");
    }
    assert_eq!(vm(&last, "web-1")["not_served"], Value::Null);
}

#[test]
fn per_vm_bounds_and_weights_reach_the_policy_for_every_matching_domain() {
    let dir = tempfile::tempdir().unwrap();
    let uri = node_uri(&dir, &NODE);
    let config = write_config(
        dir.path(),
        r#"{"defaults": {"min_mib": 300},
            "vms": [{"name": "db-1", "max_mib": 1800},
                    {"name": "db-*", "min_mib": 512, "max_mib": 1536, "weight": 10},
                    {"name": "web-?", "weight": 3},
                    {"name": "mail", "exclude": true}]}"#,
    );
    let rules = VmRules::new(vec![], vec![], Some(config)).unwrap();
    let mut c = libvirt_coordinator(dir.path(), &uri, rules);
    c.tick();
    let round = rounds(dir.path()).pop().unwrap();
    // (name, min MiB, max MiB, weight): the first matching entry, the defaults for the rest.
    let expected = [
        ("db-1", Some(300), Some(1800), 1),
        ("db-2", Some(512), Some(1536), 10),
        ("web-1", Some(300), None, 3),
        ("web-2", Some(300), None, 3),
    ];
    for (name, min, max, weight) in expected {
        let v = vm(&round, name);
        assert_eq!(v["limit_min_kib"].as_u64(), min.map(|m: u64| m * 1024), "{v}");
        assert_eq!(v["limit_max_kib"].as_u64(), max.map(|m: u64| m * 1024), "{v}");
        assert_eq!(v["weight"], weight, "{v}");
    }
    assert_eq!(vm(&round, "mail")["hold"], "excluded");
    // The JSON shows what the policy was given: the snapshot's limits, slot by slot.
    let limits = &c.snapshot().limits;
    let mut weights: Vec<u32> = limits.iter().take(5).map(|l| l.weight).collect();
    weights.sort_unstable();
    assert_eq!(weights, [1, 1, 3, 3, 10], "db-1, mail (excluded: defaults), web-1, web-2, db-2");
    assert!(limits.iter().skip(5).all(|l| *l == memory_coordinator::policy::VmLimits::DEFAULT));
}

#[test]
fn a_qmp_vm_excluded_by_a_glob_in_the_file_gets_no_balloon_command() {
    let dir = tempfile::tempdir().unwrap();
    let served = FakeQemu::start(dir.path(), "a.sock", Some("aos_vm1"), Fault::None, 2048, 100);
    let scratch = [
        FakeQemu::start(dir.path(), "b.sock", Some("scratch-1"), Fault::None, 2048, 100),
        FakeQemu::start(dir.path(), "c.sock", Some("scratch-2"), Fault::None, 2048, 100),
    ];
    let config = write_config(dir.path(), r#"{"vms": [{"name": "scratch-*", "exclude": true}]}"#);
    let mut c = qmp_coordinator(dir.path(), VmRules::new(vec![], vec![], Some(config)).unwrap());
    for _ in 0..3 {
        tick_each_second(&mut c);
    }
    assert!(!served.balloon_calls().is_empty(), "the served VM was not shrunk");
    for s in &scratch {
        assert!(s.balloon_calls().is_empty(), "an excluded VM got a balloon command");
        assert_eq!(s.guest.lock().unwrap().connections, 1, "still watched: connected once, kept");
    }
    let last = rounds(dir.path()).pop().unwrap();
    assert_eq!(vm(&last, "scratch-2")["not_served"], "excluded");
}

#[test]
fn a_reload_keeps_every_vms_history_and_a_bad_file_keeps_the_old_rules() {
    // A starving VM is grown, then held off from shrinking for 5 rounds. A reload in the
    // middle must not make it a new VM (a new VM would be "settling"); the other VM's new
    // weight applies at once. Re-including an excluded VM, by contrast, starts it afresh.
    let dir = tempfile::tempdir().unwrap();
    let _hungry = FakeQemu::start(dir.path(), "a.sock", Some("hungry"), Fault::None, 600, 480);
    let _idle = FakeQemu::start(dir.path(), "b.sock", Some("idle"), Fault::None, 2048, 100);
    let config = write_config(dir.path(), r#"{"vms": [{"name": "idle", "weight": 2}]}"#);
    let mut c = qmp_coordinator(dir.path(), VmRules::new(vec![], vec![], Some(config.clone())).unwrap());
    tick_each_second(&mut c);
    tick_each_second(&mut c);
    tick_each_second(&mut c);
    let r = rounds(dir.path());
    assert_eq!(vm(&r[1], "hungry")["action"], "grow", "{}", r[1]);
    assert_eq!(vm(&r[2], "hungry")["hold"], "holdoff", "{}", r[2]);

    std::fs::write(&config, r#"{"vms": [{"name": "idle", "weight": 5}]}"#).unwrap();
    c.reload();
    tick_each_second(&mut c);
    let r = rounds(dir.path());
    assert_eq!(vm(&r[3], "hungry")["hold"], "holdoff", "history lost on reload: {}", r[3]);
    assert_eq!(vm(&r[3], "idle")["weight"], 5);

    std::fs::write(&config, r#"{"vms": [{"name": "idle", "weight": 0}]}"#).unwrap();
    c.reload();
    tick_each_second(&mut c);
    let r = rounds(dir.path());
    assert_eq!(vm(&r[4], "idle")["weight"], 5, "a bad file replaced the rules");
    assert_eq!(vm(&r[4], "hungry")["hold"], "holdoff");

    std::fs::write(&config, r#"{"vms": [{"name": "hungry", "exclude": true}]}"#).unwrap();
    c.reload();
    tick_each_second(&mut c);
    std::fs::write(&config, r#"{"vms": []}"#).unwrap();
    c.reload();
    tick_each_second(&mut c);
    let r = rounds(dir.path());
    assert_eq!(vm(&r[5], "hungry")["hold"], "excluded");
    assert_eq!(vm(&r[6], "hungry")["hold"], "settling", "back from exclusion: watched afresh: {}", r[6]);
}

#[test]
fn the_binary_reloads_on_sighup_and_keeps_its_rules_when_the_file_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let _a = FakeQemu::start(dir.path(), "a.sock", Some("aos_vm1"), Fault::None, 2048, 100);
    let b = FakeQemu::start(dir.path(), "b.sock", Some("aos_vm2"), Fault::None, 2048, 100);
    let config = write_config(dir.path(), r#"{"vms": [{"name": "aos_vm1", "weight": 4}]}"#);
    let pattern = format!("{}/*.sock", dir.path().display());
    let mut d = Daemon::start(&["1", "--qmp", &pattern, "--config", config.to_str().unwrap(), "--json"]);
    d.wait_for("per-VM configuration", Duration::from_secs(10));
    wait_rounds(&mut d, 2);
    assert_eq!(vm(d.rounds.last().unwrap(), "aos_vm2")["not_served"], Value::Null);

    std::fs::write(&config, r#"{"vms": [{"name": "aos_vm2", "exclude": true}]}"#).unwrap();
    d.signal(libc::SIGHUP);
    let line = d.wait_for("reloaded", Duration::from_secs(5));
    assert!(line.contains("vms.json (1 entries)"), "{line}");
    d.wait_for("aos_vm2: not served: excluded by", Duration::from_secs(5));
    let calls = b.balloon_calls().len();
    let seen = wait_rounds(&mut d, 2);
    assert_eq!(vm(&seen[1], "aos_vm2")["hold"], "excluded");

    std::fs::write(&config, r#"{"vms": [{"name": "aos_vm2", "exclud": true}]}"#).unwrap();
    d.signal(libc::SIGHUP);
    let warning = d.wait_for("keeping the configuration loaded before", Duration::from_secs(5));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("vms.json: vms[0] (\"aos_vm2\"): unknown field \"exclud\""), "{warning}");
    let seen = wait_rounds(&mut d, 3);
    assert!(seen.iter().all(|r| vm(r, "aos_vm2")["hold"] == "excluded"), "the old rules did not stay");
    assert_eq!(b.balloon_calls().len(), calls, "the excluded VM was changed");

    d.signal(libc::SIGTERM);
    let (code, _) = d.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0), "{}", d.stderr.join("\n"));
    let count = |needle: &str| d.stderr.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count("keeping the configuration loaded before"), 1, "{}", d.stderr.join("\n"));
    assert_eq!(count("aos_vm2: not served: excluded"), 1, "{}", d.stderr.join("\n"));
}

/// Waits for `n` more JSON rounds and returns them.
fn wait_rounds(d: &mut Daemon, n: usize) -> Vec<Value> {
    let start = d.poll_rounds().len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.poll_rounds().len() < start + n {
        assert!(Instant::now() < deadline, "no {n} rounds within 10 s; stderr:\n{}", d.poll_stderr().join("\n"));
        std::thread::sleep(Duration::from_millis(50));
    }
    d.rounds[start..start + n].to_vec()
}

#[test]
fn why_a_vm_is_not_served_is_logged_once_when_it_starts_and_once_when_it_ends() {
    // "full" is at its max and starving; "quiet" stops reporting stats for a while (as a guest
    // whose balloon driver is unloaded). Each start and end is one line, whatever the rounds.
    let dir = tempfile::tempdir().unwrap();
    let full = FakeQemu::start(dir.path(), "a.sock", Some("full"), Fault::None, 2048, 2000);
    let quiet = FakeQemu::start(dir.path(), "b.sock", Some("quiet"), Fault::None, 2048, 100);
    let pattern = format!("{}/*.sock", dir.path().display());
    let mut d = Daemon::start(&["1", "--qmp", &pattern, "--json"]);
    d.wait_for("full: needs more memory but is at its max of 2048 MiB", Duration::from_secs(10));
    full.guest.lock().unwrap().used = 100 * MIB;
    d.wait_for("full: no longer held at its max; served normally", Duration::from_secs(10));

    quiet.guest.lock().unwrap().polling_interval = 0;
    d.wait_for("quiet: not served: it reports no free-memory figure", Duration::from_secs(10));
    wait_rounds(&mut d, 3);
    quiet.guest.lock().unwrap().polling_interval = 1;
    d.wait_for("quiet: reports its free memory now; served normally", Duration::from_secs(10));
    wait_rounds(&mut d, 2);
    d.signal(libc::SIGTERM);
    d.wait_exit(Duration::from_secs(5));

    let all = d.stderr.join("\n");
    for needle in [
        "full: needs more memory",
        "full: no longer held at its max",
        "quiet: not served: it reports no free-memory figure",
        "quiet: reports its free memory now",
    ] {
        assert_eq!(d.stderr.iter().filter(|l| l.contains(needle)).count(), 1, "{needle:?}:\n{all}");
    }
    // JSON says it every round it holds.
    let no_stats = d.rounds.iter().filter(|r| vm(r, "quiet")["not_served"] == "no_stats").count();
    assert!(no_stats >= 4, "{no_stats} rounds with not_served no_stats");
}

#[test]
fn the_binary_names_each_rule_that_leaves_a_libvirt_domain_alone_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NODE.to_vec();
    node.push(TestDomain { balloon: false, ..TestDomain::running("web-nob", 2048, 1024) });
    let uri = node_uri(&dir, &node);
    let config = write_config(dir.path(), r#"{"vms": [{"name": "db-2", "exclude": true}]}"#);
    let out = daemon::run(&[
        "1",
        "--connect",
        &uri,
        "--domains",
        "web-*",
        "--domains",
        "db-*",
        "--exclude",
        "web-2",
        "--config",
        config.to_str().unwrap(),
        "--ticks",
        "6",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let once = |needle: &str| assert_eq!(stderr.matches(needle).count(), 1, "{needle:?}:\n{stderr}");
    once("web-2: not served: excluded by --exclude 'web-2'");
    once("mail: not served: excluded by --domains (it matches none of [\"web-*\", \"db-*\"])");
    once(&format!("db-2: not served: excluded by {} vms[0] ('db-2')", config.display()));
    once("web-nob: not served: it reports no free-memory figure");
    let rounds = json_lines(&out);
    assert_eq!(rounds.len(), 6);
    for r in &rounds {
        assert_eq!(vm(r, "web-nob")["not_served"], "no_stats");
        assert_eq!(vm(r, "db-2")["not_served"], "excluded");
    }
}

/// Runs the binary and returns (exit code, stderr lines, stdout).
fn usage(args: &[&str]) -> (Option<i32>, Vec<String>, String) {
    let out = daemon::run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).lines().map(str::to_owned).collect();
    (out.status.code(), stderr, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn bad_arguments_and_bad_config_files_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let malformed = dir.path().join("malformed.json");
    std::fs::write(&malformed, "{\"vms\": [\n  {\"name\": \"a\",}\n]}").unwrap();
    let bad_field = dir.path().join("bad-field.json");
    std::fs::write(&bad_field, r#"{"vms": [{"name": "db-*", "weight": 5000}]}"#).unwrap();
    let (m, b) = (malformed.to_str().unwrap(), bad_field.to_str().unwrap());
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["0"], "0 is not in 1..=3600".into()),
        (vec!["-1"], "unexpected argument '-1'".into()),
        (vec!["abc"], "invalid value 'abc' for '<INTERVAL>'".into()),
        (vec!["3601"], "3601 is not in 1..=3600".into()),
        (vec!["99999999999999999999"], "invalid value '99999999999999999999'".into()),
        (vec!["1", "--host-min-free", "99999999999"], "is not in 0..=1073741824".into()),
        (
            vec!["1", "--config", "/nonexistent/vms.json"],
            "cannot read the VM configuration file /nonexistent/vms.json".into(),
        ),
        (vec!["1", "--config", m], format!("{m}: not valid JSON: trailing comma at line 2 column 16")),
        (
            vec!["1", "--config", b],
            format!("{b}: vms[0] (\"db-*\"): weight must be a whole number from 1 to 1000, not 5000"),
        ),
        (vec!["1", "--exclude", ""], "--exclude: the pattern must not be empty".into()),
    ];
    for (args, expected) in cases {
        let (code, stderr, stdout) = usage(&args);
        assert_eq!(code, Some(2), "{args:?}: {stderr:?}");
        assert_eq!(stderr.len(), 1, "{args:?}: not one line: {stderr:?}");
        assert!(stderr[0].starts_with("error: ") && stderr[0].contains(&expected), "{args:?}: {:?}", stderr[0]);
        assert!(stdout.is_empty(), "{args:?}: {stdout:?}");
    }
    let (code, _, stdout) = usage(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("memory_coordinator 1 --qmp '/run/qemu/*.sock'"), "{stdout}");
}

#[test]
fn rounds_with_rules_allocate_nothing_after_warm_up() {
    // The rules are matched per VM only when a VM arrives, is renamed or the file is reloaded;
    // the steady state copies limits from the slot's verdict. 100 rounds, 6 domains, patterns
    // on the command line and in a file.
    let _ = env_logger::builder().filter_level(log::LevelFilter::Warn).is_test(true).try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut node = NODE.to_vec();
    node.push(TestDomain::running("big", 65536, 65536));
    let uri = node_uri(&dir, &node);
    let config = write_config(dir.path(), r#"{"defaults": {"min_mib": 300}, "vms": [{"name": "db-*", "weight": 9}]}"#);
    let rules = VmRules::new(vec!["*".into()], vec!["mail".into()], Some(config)).unwrap();
    let backend = LibvirtBackend::connect(&uri, 1).unwrap();
    let host = HostMemory::open(Path::new("/proc/meminfo")).unwrap();
    let options = LoopOptions { json: true, ..LoopOptions::default() };
    let mut c = Coordinator::new(PolicyConfig::DEFAULT, options, backend, host)
        .with_json_output(Box::new(std::io::sink()))
        .with_vm_rules(rules);
    for _ in 0..10 {
        c.tick();
    }
    let before = c.summary().shrinks;
    let (allocations, bytes, ()) = allocations_during(|| {
        for _ in 0..100 {
            c.tick();
        }
    });
    assert!(c.summary().shrinks - before >= 50, "the rounds must do real work");
    assert_eq!((allocations, bytes), (0, 0), "rounds with rules allocated");
}
