//! The daemon loop's steady state allocates nothing on the Rust heap: 100 real rounds over
//! the libvirt backend after warm-up, with JSON output on, logging at Info level through
//! env_logger as the binary sets it up (every action formats a log line), and Prometheus
//! metrics written to a file and served over HTTP to a client scraping all along (the server's
//! threads may allocate; the loop's thread is the one counted). libvirt's own C
//! allocations are not on the Rust heap and are not counted.
//!
//! - the per-domain reading: libvirt's test driver, in process, 4 domains;
//! - the bulk reading (`virConnectGetAllDomainStats`): a real guest under the system libvirtd
//!   (lab-locked; `MC_SKIP_LAB=1` skips it), the only driver here that gives bulk balloon
//!   figures.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::counting_alloc::{CountingAlloc, allocations_during, allocations_with_workers_during, info_logger_to_file};
use common::lab;
use common::test_driver::{COURSE_NODE, TestDomain, node_uri, worker_threads};
use memory_coordinator::coordinator::{Backend, Coordinator, LoopOptions, Round};
use memory_coordinator::host::HostMemory;
use memory_coordinator::libvirt::{LibvirtBackend, Reading};
use memory_coordinator::metrics::{Metrics, MetricsOptions};
use memory_coordinator::policy::PolicyConfig;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Counts what it is given; allocates nothing.
#[derive(Clone)]
struct CountingSink(Arc<AtomicUsize>);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(buf.len(), Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOG_FILE: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();

/// What the process logged from byte `from` on (to show which round allocated, and why).
fn log_since(from: u64) -> String {
    use std::os::unix::fs::FileExt;
    let file = LOG_FILE.get().unwrap();
    let mut buf = vec![0; usize::try_from(file.metadata().unwrap().len() - from).unwrap()];
    file.read_exact_at(&mut buf, from).unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// How many bytes the whole test process has logged (both tests share the logger).
fn logged_bytes() -> u64 {
    let file = LOG_FILE.get_or_init(info_logger_to_file);
    file.metadata().unwrap().len()
}

/// Warms `c` up, then runs 100 rounds counting this thread's allocations; returns the
/// (allocations, bytes) and how many shrinks and log bytes the rounds produced.
/// (allocations, bytes) of this thread, and allocations of the libvirt backend's workers.
type Allocated = (u64, u64, u64);

/// Warms `c` up, then runs 100 rounds counting allocations; returns them and how many
/// shrinks and log bytes the rounds produced.
fn hundred_rounds<B: Backend>(c: &mut Coordinator<B>, served: usize) -> (Allocated, u64, u64) {
    for _ in 0..10 {
        assert_eq!(c.tick(), Round::Served(served));
    }
    let shrinks_before = c.summary().shrinks;
    let logged_before = logged_bytes();
    let (allocations, allocated, workers, ()) = allocations_with_workers_during(|| {
        for _ in 0..100 {
            c.tick();
        }
    });
    let logged = logged_bytes() - logged_before;
    ((allocations, allocated, workers), c.summary().shrinks - shrinks_before, logged)
}

/// Scrapes `addr` until `stop`; returns how many scrapes got a whole exposition.
fn scrape_until(addr: SocketAddr, stop: Arc<std::sync::atomic::AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut whole = 0;
        while !stop.load(Ordering::Relaxed) {
            let mut answer = String::new();
            let scraped = TcpStream::connect(addr).and_then(|mut s| {
                s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
                s.read_to_string(&mut answer)
            });
            if scraped.is_ok() && answer.starts_with("HTTP/1.0 200") && answer.contains("memory_coordinator_vm_state{")
            {
                whole += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        whole
    })
}

#[test]
fn a_hundred_rounds_over_libvirt_allocate_nothing_after_warm_up() {
    logged_bytes();
    let dir = tempfile::tempdir().unwrap();
    // Large VMs so that the rounds keep shrinking them all the way through.
    let mut domains = COURSE_NODE.to_vec();
    domains[1] = TestDomain::running("aos_vm2", 65536, 65536);
    domains[2] = TestDomain::running("aos_vm3", 65536, 49152);
    // More domains than the backend has workers: reads in flight side by side.
    domains.extend(EXTRA.iter().map(|name| TestDomain::running(name, 65536, 49152)));
    let uri = node_uri(&dir, &domains);
    let backend = LibvirtBackend::connect(&uri, 1).unwrap();
    let host = HostMemory::open(Path::new("/proc/meminfo")).unwrap();
    let json = Arc::new(AtomicUsize::new(0));
    let options = LoopOptions { json: true, ..LoopOptions::default() };
    let prom = dir.path().join("mc.prom");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let metrics = Metrics::start(&MetricsOptions { file: Some(prom.clone()), listen: None })
        .unwrap()
        .with_listener(listener)
        .unwrap();
    let mut c = Coordinator::new(PolicyConfig::DEFAULT, options, backend, host)
        .with_json_output(Box::new(CountingSink(Arc::clone(&json))))
        .with_metrics(metrics);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = scrape_until(addr, Arc::clone(&stop));
    let (allocations, acted, logged) = hundred_rounds(&mut c, domains.len());
    stop.store(true, Ordering::Relaxed);
    let scrapes = scraper.join().unwrap();
    assert!(scrapes >= 3, "the metrics were scraped while the rounds ran: {scrapes} times");
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(text.contains("memory_coordinator_ticks_total 110\n"), "the file holds the last round: {text}");
    assert_eq!(c.backend().reading(), Reading::StatePerDomain);
    assert!(acted >= 150, "the rounds must do real work: {acted} shrinks");
    assert!(
        json.load(Ordering::Relaxed) > 100 * 400,
        "JSON lines were written: {} bytes",
        json.load(Ordering::Relaxed)
    );
    assert!(logged > acted * 40, "each action logged a line: {logged} bytes");
    assert!(worker_threads() > 0, "the domains were read by the backend's workers");
    assert_eq!(allocations, (0, 0, 0), "the steady-state loop allocated (this thread: count, bytes; workers: count)");
}

/// The extra domains of the libvirt test.
const EXTRA: [&str; 12] = ["x01", "x02", "x03", "x04", "x05", "x06", "x07", "x08", "x09", "x10", "x11", "x12"];

#[test]
fn a_hundred_bulk_rounds_over_a_real_guest_allocate_nothing_after_warm_up() {
    let name = format!("mc_zero_alloc_{}", std::process::id());
    // A large guest, so that it keeps being shrunk: the test driver's frozen figures are not
    // there to repeat the same sample, so the rounds are spaced for the guest to report.
    let Some(guest) = lab::booted_libvirt_guest("zero allocations, bulk", &name, 2048, 2048) else { return };
    logged_bytes();
    let backend = LibvirtBackend::connect("qemu:///system", 1).unwrap();
    let host = HostMemory::open(Path::new("/proc/meminfo")).unwrap();
    let json = Arc::new(AtomicUsize::new(0));
    let options = LoopOptions { json: true, ..LoopOptions::default() };
    // The rounds run ten times faster than the guest reports (every 100 ms against a 1 s
    // stats period), so stats are stale only after 3 s without news, as with the default
    // of 4 rounds at a 1 s interval; otherwise the VM flaps between stale and served.
    let policy = PolicyConfig { stale_ticks: 30, ..PolicyConfig::DEFAULT };
    let mut c =
        Coordinator::new(policy, options, backend, host).with_json_output(Box::new(CountingSink(Arc::clone(&json))));
    for _ in 0..3 {
        c.tick();
        std::thread::sleep(Duration::from_millis(1000));
    }
    assert_eq!(c.backend().reading(), Reading::Bulk);
    let shrinks_before = c.summary().shrinks;
    let logged_before = logged_bytes();
    let mut allocations = (0, 0);
    let mut allocating_rounds = Vec::new();
    for i in 0..100 {
        let log_before = logged_bytes();
        let (n, bytes, round) = allocations_during(|| c.tick());
        assert_eq!(round, Round::Served(1));
        allocations = (allocations.0 + n, allocations.1 + bytes);
        if n > 0 {
            allocating_rounds
                .push(format!("round {i}: {n} allocation(s), {bytes} bytes; it logged:\n{}", log_since(log_before)));
        }
        // Uncounted: the wait between rounds, so that the guest reports fresh figures.
        std::thread::sleep(Duration::from_millis(100));
    }
    let acted = c.summary().shrinks - shrinks_before;
    let logged = logged_bytes() - logged_before;
    println!("{acted} shrinks, {logged} bytes logged, {} bytes of JSON", json.load(Ordering::Relaxed));
    assert!(acted >= 2, "the rounds must act: {acted} shrinks");
    assert!(logged > 0, "action lines were logged");
    assert_eq!(allocations, (0, 0), "the steady-state bulk loop allocated:\n{}", allocating_rounds.join("\n"));
    drop(guest);
}
