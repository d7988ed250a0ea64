//! The daemon loop's steady state allocates nothing on the Rust heap: 100 real rounds over
//! the libvirt backend (libvirt's test driver, 4 domains, JSON output on), after warm-up.
//! libvirt's own C allocations are not on the Rust heap and are not counted.

mod common;

use std::io::Write;
use std::path::Path;

use common::counting_alloc::{CountingAlloc, allocations_during};
use common::test_driver::{COURSE_NODE, TestDomain, node_uri};
use memory_coordinator::coordinator::{Coordinator, LoopOptions, Round};
use memory_coordinator::host::HostMemory;
use memory_coordinator::libvirt::LibvirtBackend;
use memory_coordinator::policy::PolicyConfig;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Counts what it is given; allocates nothing.
struct CountingSink(std::rc::Rc<std::cell::Cell<usize>>);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.set(self.0.get() + buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_hundred_rounds_over_libvirt_allocate_nothing_after_warm_up() {
    let _ = env_logger::builder().filter_level(log::LevelFilter::Warn).is_test(true).try_init();
    let dir = tempfile::tempdir().unwrap();
    // Large VMs so that the rounds keep shrinking them all the way through.
    let mut domains = COURSE_NODE;
    domains[1] = TestDomain::running("aos_vm2", 65536, 65536);
    domains[2] = TestDomain::running("aos_vm3", 65536, 49152);
    let uri = node_uri(&dir, &domains);
    let backend = LibvirtBackend::connect(&uri, 1).unwrap();
    let host = HostMemory::open(Path::new("/proc/meminfo")).unwrap();
    let bytes = std::rc::Rc::new(std::cell::Cell::new(0));
    let options = LoopOptions { json: true, ..LoopOptions::default() };
    let mut c = Coordinator::new(PolicyConfig::DEFAULT, options, backend, host)
        .with_json_output(Box::new(CountingSink(bytes.clone())));

    for _ in 0..10 {
        assert_eq!(c.tick(), Round::Served(4));
    }
    let shrinks_before = c.summary().shrinks;
    let (allocations, allocated, ()) = allocations_during(|| {
        for _ in 0..100 {
            c.tick();
        }
    });
    let acted = c.summary().shrinks - shrinks_before;
    assert!(acted >= 150, "the rounds must do real work: {acted} shrinks");
    assert!(bytes.get() > 100 * 400, "JSON lines were written: {} bytes", bytes.get());
    assert_eq!((allocations, allocated), (0, 0), "the steady-state loop allocated");
}
