//! The QMP backend's steady state allocates nothing on the Rust heap: 100 real rounds of the
//! loop (rescans, the pipelined round over every socket, the RSS read from /proc included)
//! against in-process QMP peers, after warm-up, with logging at Info level through env_logger
//! as the binary sets it up (every action formats a log line). The peers run on other
//! threads, whose allocations the per-thread counter leaves out.

mod common;

use common::counting_alloc::{CountingAlloc, allocations_during, info_logger_to_file};
use common::fake_qemu::{FakeQemu, Fault};
use memory_coordinator::coordinator::{Coordinator, LoopOptions, Round};
use memory_coordinator::host::HostMemory;
use memory_coordinator::policy::PolicyConfig;
use memory_coordinator::qmp::{QmpBackend, QmpOptions};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn a_hundred_rounds_over_qmp_allocate_nothing_after_warm_up() {
    let log = info_logger_to_file();
    let dir = tempfile::tempdir().unwrap();
    let peers = [
        FakeQemu::start(dir.path(), "vm1.sock", Some("aos_vm1"), Fault::None, 1024, 100),
        FakeQemu::start(dir.path(), "vm2.sock", Some("aos_vm2"), Fault::EventsBetweenReplies, 1024, 100),
        FakeQemu::start(dir.path(), "vm3.sock", None, Fault::None, 2048, 100),
    ];
    for p in &peers {
        p.guest.lock().unwrap().churn = true;
    }
    // Sockets that have been there a while: rescans reuse the expansion (a directory changed
    // within the last second is always read again).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let options = QmpOptions {
        patterns: vec![format!("{}/*.sock", dir.path().display())],
        balloon_path: None,
        timeout: std::time::Duration::from_millis(500),
        stats_period_s: 1,
        rescan_ticks: 5,
    };
    // A host with 20 GiB available, whatever the machine running the test has now (other
    // tests may hold most of it): the rounds' work must not depend on it.
    // (Not in the sockets' directory: a directory changed within the last second is read
    // again at each rescan.)
    let host_dir = tempfile::tempdir().unwrap();
    let meminfo = host_dir.path().join("meminfo");
    std::fs::write(&meminfo, "MemTotal:       24608172 kB\nMemFree:        20971520 kB\nMemAvailable:   20971520 kB\n")
        .unwrap();
    let host = HostMemory::open(&meminfo).unwrap();
    let loop_options = LoopOptions { json: true, ..LoopOptions::default() };
    let mut c = Coordinator::new(PolicyConfig::DEFAULT, loop_options, QmpBackend::new(options), host)
        .with_json_output(Box::new(std::io::sink()));
    for _ in 0..10 {
        assert_eq!(c.tick(), Round::Served(3));
    }
    let before = c.summary();
    let logged_before = log.metadata().unwrap().len();
    let (allocations, bytes, ()) = allocations_during(|| {
        for _ in 0..100 {
            c.tick();
        }
    });
    let after = c.summary();
    let logged = log.metadata().unwrap().len() - logged_before;
    let actions = (after.grows + after.shrinks) - (before.grows + before.shrinks);
    // The fakes' RSS (read through SO_PEERCRED) is this test process's, which does not follow
    // their guests: the policy sees fewer of its grants land and grows less often than it
    // would a real QEMU. 100 rounds still move balloons a few dozen times.
    assert!(actions >= 30, "the rounds must do real work: {actions} balloon changes");
    assert_eq!(after.failed_actions, 0);
    assert!(logged > actions * 40, "each action logged a line: {logged} bytes");
    assert_eq!((allocations, bytes), (0, 0), "the steady-state QMP loop allocated");
}
