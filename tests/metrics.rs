//! Prometheus metrics from the real daemon over in-process QEMU peers (tests/common/fake_qemu.rs):
//! the exposition parsed by the Prometheus project's own Python parser and checked against the
//! `--json` lines of the same run (tests/metrics_check.py), the HTTP endpoint over real TCP,
//! and the file replaced whole, never seen half written.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::daemon::{self, Daemon, json_lines};
use common::fake_qemu::{FakeQemu, Fault};
use memory_coordinator::coordinator::{Backend, Coordinator, LoopOptions, Roster, Summary};
use memory_coordinator::host::HostMemory;
use memory_coordinator::metrics::{Metrics, MetricsOptions, RoundView};
use memory_coordinator::policy::{Action, Decisions, MAX_DOMAINS, PolicyConfig, Snapshot, VmStats};
use memory_coordinator::text::VmName;

/// A VM name with every character the exposition format escapes in a label value.
const ODD_NAME: &str = "odd \"vm\"\\name";

/// Four peers: one to shrink, one starving (and oddly named), one excluded, one without stats.
fn peers(dir: &Path) -> Vec<FakeQemu> {
    vec![
        FakeQemu::start(dir, "a.sock", Some("web-1"), Fault::None, 2048, 100),
        FakeQemu::start(dir, "b.sock", Some(ODD_NAME), Fault::None, 600, 480),
        FakeQemu::start(dir, "c.sock", Some("scratch"), Fault::None, 1024, 100),
        FakeQemu::start(dir, "d.sock", Some("nostats"), Fault::StatsNotReported, 1024, 100),
    ]
}

/// A Python 3 that has prometheus_client (Debian: python3-prometheus-client).
fn python_with_prometheus_client() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"].into_iter().find(|python| {
        Command::new(python).args(["-c", "import prometheus_client.parser"]).output().is_ok_and(|o| o.status.success())
    })
}

#[test]
fn the_exposition_parses_with_prometheus_client_and_matches_the_json_of_the_same_round() {
    let Some(python) = python_with_prometheus_client() else {
        let msg = "SKIPPED: no python3 with prometheus_client (apt-get install python3-prometheus-client, \
                   or make deps): the exposition was NOT checked with the Prometheus parser";
        eprintln!("\n*** {msg} ***\n");
        println!("{msg}");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let _peers = peers(dir.path());
    let prom = dir.path().join("mc.prom");
    let pattern = format!("{}/*.sock", dir.path().display());
    let out = daemon::run(&[
        "1",
        "--qmp",
        &pattern,
        "--exclude",
        "scratch",
        "--ticks",
        "4",
        "--json",
        "--metrics-file",
        prom.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let rounds = json_lines(&out);
    assert_eq!(rounds.len(), 4, "{stderr}");
    // The run must show what is checked: a shrink, a grow, an exclusion, a VM without stats.
    let actions: Vec<String> = rounds
        .iter()
        .flat_map(|r| r["vms"].as_array().unwrap().iter().map(|v| format!("{} {}", v["name"], v["action"])))
        .collect();
    let last = &rounds[3]["vms"];
    let reason = |name: &str| {
        last.as_array().unwrap().iter().find(|v| v["name"] == name).map(|v| v["not_served"].clone()).unwrap()
    };
    assert!(actions.iter().any(|a| a == "\"web-1\" \"shrink\""), "{actions:?}");
    assert!(actions.iter().any(|a| a.ends_with("\"grow\"") && a.contains("odd")), "{actions:?}");
    assert_eq!(reason("scratch"), "excluded");
    assert_eq!(reason("nostats"), "no_stats");

    let text = std::fs::read_to_string(&prom).unwrap();
    let jsonl = dir.path().join("run.jsonl");
    std::fs::write(&jsonl, &out.stdout).unwrap();
    let check = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/metrics_check.py"))
        .args([&prom, &jsonl])
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(check.status.success(), "{said}\nexposition:\n{text}");
    assert!(said.contains("metrics_check: ok"), "{said}");
    assert!(text.contains(r#"memory_coordinator_vm_actual_bytes{vm="odd \"vm\"\\name"} "#), "{text}");
    println!("{said}\n{text}");
}

/// Sends `request` and returns the whole answer (HTTP/1.0: the server closes after it).
fn http(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn metrics_listen_answers_get_metrics_over_tcp_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let _peers = peers(dir.path());
    let pattern = format!("{}/*.sock", dir.path().display());
    let mut d = Daemon::start(&["1", "--qmp", &pattern, "--metrics-listen", "127.0.0.1:0"]);
    let line = d.wait_for("metrics at http://", Duration::from_secs(10));
    let addr: SocketAddr = line.split("http://").nth(1).unwrap().trim_end_matches("/metrics").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let answer = http(addr, b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
        if !answer.starts_with("HTTP/1.0 503") || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8"), "{head}");
    assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
    assert!(body.contains("memory_coordinator_vm_actual_bytes{vm=\"web-1\"} "), "{body}");
    assert!(body.contains("memory_coordinator_ticks_total "), "{body}");

    assert!(http(addr, b"GET /metrics?name=x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.0 200"));
    let head_only = http(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
    assert!(head_only.starts_with("HTTP/1.0 200") && head_only.ends_with("\r\n\r\n"), "{head_only}");
    assert!(http(addr, b"GET / HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404"));
    assert!(http(addr, b"GET /metricsx HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404"));
    let post = http(addr, b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.0 405") && post.contains("Allow: GET, HEAD"), "{post}");
    // A request head that never ends within the bound.
    let mut huge = b"GET /metrics HTTP/1.0\r\nX: ".to_vec();
    huge.resize(20_000, b'a');
    assert!(http(addr, &huge).starts_with("HTTP/1.0 431"));

    // A client that connects and says nothing does not hold up a scrape...
    let silent = TcpStream::connect(addr).unwrap();
    let started = Instant::now();
    assert!(http(addr, b"GET /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 200"));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // ...and the server hangs up on it at its deadline.
    let mut silent = silent;
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let waited = Instant::now();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    assert!(waited.elapsed() < Duration::from_secs(8), "kept open {:?}", waited.elapsed());
    // Clients beyond the bound are told to come back.
    let hogs: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    assert!(http(addr, b"GET /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 503"));
    drop(hogs);
    // Their threads see the close and end; on a loaded machine that may take a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !http(addr, b"GET /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 200") {
        assert!(Instant::now() < deadline, "still busy after the clients left");
        std::thread::sleep(Duration::from_millis(50));
    }

    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(10)).0, Some(0));
}

#[test]
fn a_non_loopback_metrics_address_needs_to_be_allowed() {
    let out = daemon::run(&["1", "--metrics-listen", "0.0.0.0:0", "-c", "test:///default", "--ticks", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--metrics-allow-remote"), "{stderr}");
    let out = daemon::run(&[
        "1",
        "--metrics-listen",
        "0.0.0.0:0",
        "--metrics-allow-remote",
        "-c",
        "test:///default",
        "--ticks",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_unwritable_metrics_directory_stops_the_start_and_an_existing_file_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir/mc.prom");
    let out = daemon::run(&["1", "-c", "test:///default", "--ticks", "1", "--metrics-file", missing.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("must exist and be writable by the daemon"), "{stderr}");

    // The check leaves an existing file alone: here libvirt is unreachable after it, so no
    // round ever replaces the file.
    let prom = dir.path().join("mc.prom");
    std::fs::write(&prom, "# the last round of an earlier run\n").unwrap();
    let nowhere = format!("test://{}/missing.xml", dir.path().display());
    let out = daemon::run(&["1", "-c", &nowhere, "--ticks", "1", "--metrics-file", prom.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(&prom).unwrap(), "# the last round of an earlier run\n");
    assert!(!dir.path().join("mc.prom.tmp").exists());
}

/// The last line of a whole exposition whose last VM is `name`, served.
fn last_line(name: &str) -> String {
    format!("memory_coordinator_vm_state{{vm=\"{name}\",reason=\"at_max\"}} 0\n")
}

#[test]
fn the_metrics_file_is_replaced_whole_while_the_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    let peers: Vec<FakeQemu> = (0..8)
        .map(|i| FakeQemu::start(dir.path(), &format!("{i}.sock"), Some(&format!("vm{i}")), Fault::None, 1024, 100))
        .collect();
    let prom = dir.path().join("mc.prom");
    let pattern = format!("{}/*.sock", dir.path().display());
    let mut d = Daemon::start(&["1", "--qmp", &pattern, "--ticks", "4", "--metrics-file", prom.to_str().unwrap()]);
    let (mut reads, mut ticks_seen) = (0u64, std::collections::BTreeSet::new());
    while d.child.try_wait().unwrap().is_none() {
        let Ok(text) = std::fs::read_to_string(&prom) else { continue };
        reads += 1;
        assert!(text.starts_with("# HELP memory_coordinator_ticks_total"), "a partial file: {text:?}");
        assert!(text.ends_with("reason=\"at_max\"} 0\n"), "a partial file: {text:?}");
        assert_eq!(text.matches("memory_coordinator_vm_state{").count(), 8 * 7, "{text}");
        ticks_seen.insert(text.lines().nth(2).unwrap().to_owned());
    }
    assert_eq!(d.wait_exit(Duration::from_secs(5)).0, Some(0));
    assert!(ticks_seen.len() >= 3, "the file was read over several rounds: {ticks_seen:?} in {reads} reads");
    drop(peers);
}

/// A round of `MAX_DOMAINS` VMs with long names: an exposition of about 0.6 MB.
fn big_round() -> (Summary, Box<Snapshot>, Box<Decisions>, Box<Roster>) {
    let mut snapshot = Box::new(Snapshot::EMPTY);
    let mut roster = Box::new(Roster::EMPTY);
    let mut decisions = Box::new(Decisions::EMPTY);
    for slot in 0..MAX_DOMAINS {
        let stats = VmStats { actual_kib: 1 << 20, max_kib: 1 << 21, unused_kib: Some(1 << 18), ..VmStats::default() };
        snapshot.vms[slot] = Some(stats);
        roster.present[slot] = true;
        roster.names[slot] = VmName::new(&format!("{slot:03}-{}", "n".repeat(VmName::CAPACITY)));
        decisions.vms[slot].action = Action::Shrink { target_kib: 1 << 19 };
    }
    (Summary::default(), snapshot, decisions, roster)
}

/// Rounds published as fast as they can be, a reader on another thread: every read is a whole
/// exposition, from its first line to its last.
#[test]
fn a_reader_never_sees_a_partial_metrics_file() {
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("mc.prom");
    let mut metrics = Metrics::start(&MetricsOptions { file: Some(prom.clone()), listen: None }).unwrap();
    let (mut summary, snapshot, decisions, roster) = big_round();
    let last = last_line(roster.names[MAX_DOMAINS - 1].as_str());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (prom, stop) = (prom.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let (mut whole, mut partial) = (0u64, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(text) = std::fs::read_to_string(&prom) else { continue };
                if text.starts_with("# HELP memory_coordinator_ticks_total") && text.ends_with(&last) {
                    whole += 1;
                } else if partial.len() < 3 {
                    partial.push(text.len());
                }
            }
            (whole, partial)
        })
    };
    for _ in 0..300 {
        summary.ticks += 1;
        metrics.publish(&healthy_round(&summary, &snapshot, &decisions, &roster));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (whole, partial) = reader.join().unwrap();
    assert!(partial.is_empty(), "partial files seen (their lengths): {partial:?}; {whole} whole");
    assert!(whole >= 10, "the reader read along: {whole} whole files");
}

/// A backend that serves one VM, or fails as a whole while `down` is set.
struct Flaky {
    down: std::rc::Rc<std::cell::Cell<bool>>,
}

impl Backend for Flaky {
    type Error = &'static str;
    fn describe(&self) -> String {
        "flaky".to_owned()
    }
    fn refresh(&mut self, vms: &mut [Option<VmStats>; MAX_DOMAINS], roster: &mut Roster) -> Result<(), Self::Error> {
        if self.down.get() {
            return Err("flaky is down");
        }
        vms[0] =
            Some(VmStats { actual_kib: 1 << 20, max_kib: 1 << 21, unused_kib: Some(1 << 19), ..VmStats::default() });
        roster.names[0] = VmName::new("vm0");
        roster.present[0] = true;
        Ok(())
    }
    fn apply(&mut self, _slot: usize, _target_kib: u64) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Rounds over a backend that goes away twice: each outage is counted once, its rounds say
/// the backend is down and show no VM, and the VM is back with the backend.
#[test]
fn backend_outages_are_counted_and_their_rounds_have_no_vm_series() {
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("mc.prom");
    let metrics = Metrics::start(&MetricsOptions { file: Some(prom.clone()), listen: None }).unwrap();
    let down = std::rc::Rc::new(std::cell::Cell::new(false));
    let host = HostMemory::open(Path::new("/proc/meminfo")).unwrap();
    let backend = Flaky { down: std::rc::Rc::clone(&down) };
    let mut c = Coordinator::new(PolicyConfig::DEFAULT, LoopOptions::default(), backend, host).with_metrics(metrics);
    let series = |name: &str| {
        let text = std::fs::read_to_string(&prom).unwrap();
        let prefix = format!("memory_coordinator_{name} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
    };
    let vm_series = || std::fs::read_to_string(&prom).unwrap().contains("{vm=\"vm0\"");
    // Up, down for two rounds, up, down, up.
    for (round, is_down, outages) in
        [(1, false, 0), (2, true, 1), (3, true, 1), (4, false, 1), (5, true, 2), (6, false, 2)]
    {
        down.set(is_down);
        c.tick();
        assert_eq!(series("ticks_total").as_deref(), Some(round.to_string().as_str()));
        assert_eq!(series("backend_up").as_deref(), Some(if is_down { "0" } else { "1" }), "round {round}");
        assert_eq!(series("backend_outages_total"), Some(outages.to_string()), "round {round}");
        assert_eq!(vm_series(), !is_down, "round {round}");
        assert!(series("host_available_bytes").is_some(), "round {round}");
    }
}

/// How a slow client fared: the bytes it got, and when (after it sent its request) the
/// server ended the connection; `None`: still open when the client gave up.
struct SlowRead {
    got: usize,
    ended_after: Option<Duration>,
}

/// Sends a scrape, then takes `chunk` bytes of the answer every half second, for at most
/// `patience`.
fn read_slowly(addr: SocketAddr, chunk: usize, patience: Duration) -> SlowRead {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let sent = Instant::now();
    stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut buf = vec![0; chunk];
    let mut got = 0;
    while sent.elapsed() < patience {
        match stream.read(&mut buf) {
            Ok(0) => return SlowRead { got, ended_after: Some(sent.elapsed()) },
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return SlowRead { got, ended_after: Some(sent.elapsed()) },
        }
        // A reset leaves what was received readable; the pending error says the server is gone.
        if stream.take_error().ok().flatten().is_some() {
            return SlowRead { got, ended_after: Some(sent.elapsed()) };
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    SlowRead { got, ended_after: None }
}

/// The deadline covers the whole exchange: a client that takes the answer a little at a time
/// (so that every single write makes some progress) is cut off once it passes, and meanwhile
/// the other threads answer scrapes.
#[test]
fn a_client_that_reads_slowly_is_cut_off_at_the_deadline_while_scrapes_are_answered() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let deadline = Duration::from_secs(1);
    let mut metrics =
        Metrics::start(&MetricsOptions::default()).unwrap().with_listener_deadline(listener, deadline).unwrap();
    let (summary, snapshot, decisions, roster) = big_round();
    metrics.publish(&healthy_round(&summary, &snapshot, &decisions, &roster));
    let patience = deadline * 8;
    let slow: Vec<_> = [1, 64 * 1024]
        .into_iter()
        .map(|chunk| (chunk, std::thread::spawn(move || read_slowly(addr, chunk, patience))))
        .collect();
    let started = Instant::now();
    let mut scrapes = 0;
    while started.elapsed() < deadline * 2 {
        let asked = Instant::now();
        let answer = http(addr, b"GET /metrics HTTP/1.0\r\n\r\n");
        assert!(answer.starts_with("HTTP/1.0 200"), "{}", &answer[..answer.len().min(200)]);
        assert!(asked.elapsed() < deadline, "a scrape took {:?} beside the slow clients", asked.elapsed());
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(scrapes >= 5, "{scrapes} scrapes");
    let reads: Vec<_> = slow.into_iter().map(|(chunk, client)| (chunk, client.join().unwrap())).collect();
    for (chunk, read) in &reads {
        eprintln!("chunk {chunk}: got {} bytes, ended after {:?}", read.got, read.ended_after);
    }
    for (chunk, read) in reads {
        let ended = read.ended_after.unwrap_or_else(|| {
            panic!(
                "a client reading {chunk} bytes every 0.5 s was still connected after {patience:?} ({} bytes read)",
                read.got
            )
        });
        assert!(
            ended < deadline + Duration::from_millis(1500),
            "a client reading {chunk} bytes every 0.5 s was cut off only after {ended:?}"
        );
    }
}

/// --metrics-listen under the stock unit: its sandbox must let the daemon open an IPv4 or IPv6
/// socket, or the opt-in endpoint fails the start (socket(2): EAFNOSUPPORT).
#[test]
fn the_stock_unit_allows_the_address_families_metrics_listen_needs() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/memory-coordinator.service")).unwrap();
    let families: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("RestrictAddressFamilies="))
        .flat_map(str::split_whitespace)
        .collect();
    for needed in ["AF_UNIX", "AF_INET", "AF_INET6"] {
        assert!(families.contains(&needed), "RestrictAddressFamilies= lacks {needed}: {families:?}");
    }
}

/// A round in which the backend and the host were read.
fn healthy_round<'a>(
    summary: &'a Summary,
    snapshot: &'a Snapshot,
    decisions: &'a Decisions,
    roster: &'a Roster,
) -> RoundView<'a> {
    RoundView {
        summary,
        backend_outages: 0,
        backend_up: true,
        host_read: true,
        vms_read: true,
        snapshot,
        decisions,
        roster,
    }
}
