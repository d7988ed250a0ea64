//! What one round (refresh + decide + apply) costs against a real libvirtd over its RPC socket:
//! 256 domains of libvirt's test driver served by the system libvirtd
//! (`test+unix:///ABS/node256.xml`). `make bench` runs it; it takes the lab lock and starts
//! libvirtd as the tests do (`tests/lab/libvirtd-up.sh`), so it needs root
//! (`MC_SKIP_LAB=1` skips it).
//!
//! - `steady`: every domain inside the band, nothing is applied: the floor a round costs.
//! - `all_shrinking`: every domain is shrunk every round (1 TiB domains, 256 MiB steps): 256
//!   `virDomainSetMemoryFlags` calls on top.

#[path = "../common/lab.rs"]
#[allow(dead_code)]
mod lab;
#[path = "../common/test_driver.rs"]
#[allow(dead_code)]
mod test_driver;

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use memory_coordinator::coordinator::{Coordinator, LoopOptions, Round};
use memory_coordinator::host::HostMemory;
use memory_coordinator::libvirt::{LibvirtBackend, Reading};
use memory_coordinator::policy::PolicyConfig;
use test_driver::{Transport, numbered_node_uri};

const DOMAINS: usize = 256;

/// The test driver reports half of a domain's size free and half resident, so each domain
/// carries half its size as debt (memory the host does not back yet): with the default
/// 100 MiB floor, 256 domains that are not short would owe the host more than 25 GiB, a
/// deficit every round on any ordinary host, and memory would be taken back round after round.
/// Smaller domains and a smaller floor keep the steady host steady (256 × 48 MiB of debt).
const CONFIG: PolicyConfig =
    PolicyConfig { vm_min_unused_kib: 32 * 1024, vm_min_size_kib: 64 * 1024, ..PolicyConfig::DEFAULT };

fn coordinator(uri: &str) -> Coordinator<LibvirtBackend> {
    let backend = LibvirtBackend::connect(uri, 1).expect("libvirtd serves the test driver");
    let host = HostMemory::open(Path::new("/proc/meminfo")).unwrap();
    Coordinator::new(CONFIG, LoopOptions::default(), backend, host)
}

fn bench_ticks(c: &mut Criterion) {
    if lab::skip_lab("libvirtd tick bench") {
        return;
    }
    lab::libvirtd_up();
    let mut group = c.benchmark_group("libvirtd_tick");
    group.sample_size(30).measurement_time(Duration::from_secs(10));

    // 96 MiB with the test driver's "half is free": 16 MiB over the 32 MiB floor, inside the
    // 64 MiB band.
    let dir = tempfile::tempdir().unwrap();
    let uri = numbered_node_uri(&dir, DOMAINS, 2048, 96, Transport::Libvirtd);
    let mut steady = coordinator(&uri);
    for _ in 0..10 {
        assert_eq!(steady.tick(), Round::Served(DOMAINS));
    }
    let acted = steady.summary().shrinks + steady.summary().grows;
    assert_eq!(acted, 0, "a steady host was acted on");
    // The test driver has no bulk balloon figures: this measures the per-domain reading.
    assert_eq!(steady.backend().reading(), Reading::StatePerDomain);
    group.bench_function("256_domains/steady", |b| b.iter(|| steady.tick()));
    assert_eq!(steady.summary().shrinks + steady.summary().grows, acted, "steady rounds acted");
    assert_eq!(steady.summary().failed_actions, 0);
    drop(steady);

    let dir = tempfile::tempdir().unwrap();
    let uri = numbered_node_uri(&dir, DOMAINS, 1 << 20, 1 << 20, Transport::Libvirtd);
    let mut shrinking = coordinator(&uri);
    // Until the policy calls the test driver's frozen stats clock frozen and acts each round.
    for _ in 0..10 {
        assert_eq!(shrinking.tick(), Round::Served(DOMAINS));
    }
    let before = shrinking.summary();
    shrinking.tick();
    assert_eq!(shrinking.summary().shrinks - before.shrinks, DOMAINS as u64, "every domain is shrunk each round");
    group.bench_function("256_domains/all_shrinking", |b| b.iter(|| shrinking.tick()));
    let s = shrinking.summary();
    assert_eq!(s.shrinks - before.shrinks, (s.ticks - before.ticks) * DOMAINS as u64, "a round did not shrink all");
    assert_eq!(s.failed_actions, 0);
    group.finish();
}

criterion_group!(benches, bench_ticks);
criterion_main!(benches);
