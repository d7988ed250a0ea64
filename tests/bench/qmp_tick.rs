//! What one QMP `refresh` costs: 64 in-process QMP peers (tests/common/fake_qemu.rs, speaking
//! as QEMU 7.2 does), each asked `query-balloon` and `qom-get guest-stats` pipelined, all
//! waited on together. Then the same with a 65th peer that answers set-up and then nothing:
//! its round must cost about one timeout (50 ms here), not one per command or per peer.
//! `make bench` runs it. The peers run on threads of this process and share its cores, so the
//! figures include their side of every round trip.
//!
//! - `64_peers`: every peer answers; the floor a round costs.
//! - `64_peers_one_hung`: the hung peer is retried every round (its backoff reset), so every
//!   round waits for it until the deadline.

#[path = "../common/fake_qemu.rs"]
#[allow(dead_code)]
mod fake_qemu;

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use fake_qemu::{FakeQemu, Fault};
use memory_coordinator::coordinator::{Backend, Roster};
use memory_coordinator::policy::{MAX_DOMAINS, VmStats};
use memory_coordinator::qmp::{QmpBackend, QmpOptions};

const PEERS: usize = 64;
const TIMEOUT: Duration = Duration::from_millis(50);

/// One round; returns how many VMs got figures.
fn round(backend: &mut QmpBackend, vms: &mut [Option<VmStats>; MAX_DOMAINS], roster: &mut Roster) -> usize {
    *vms = [None; MAX_DOMAINS];
    *roster = Roster::EMPTY;
    backend.refresh(vms, roster).expect("the QMP backend never fails as a whole");
    vms.iter().flatten().count()
}

fn bench_ticks(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let _peers: Vec<FakeQemu> = (0..PEERS)
        .map(|i| FakeQemu::start(dir.path(), &format!("vm{i:02}.sock"), None, Fault::None, 2048, 100))
        .collect();
    // Sockets that have been there a while: rescans reuse the expansion, as on a real host.
    std::thread::sleep(Duration::from_millis(1100));
    let options = QmpOptions {
        patterns: vec![format!("{}/*.sock", dir.path().display())],
        balloon_path: None,
        timeout: TIMEOUT,
        stats_period_s: 1,
        rescan_ticks: 5,
    };
    let mut backend = QmpBackend::new(options);
    let mut vms = [None; MAX_DOMAINS];
    let mut roster = Roster::EMPTY;
    // Set-up shares one deadline per round too: on a loaded machine it takes a few rounds to
    // connect all 64.
    let started = Instant::now();
    while round(&mut backend, &mut vms, &mut roster) < PEERS {
        assert!(started.elapsed() < Duration::from_secs(20), "not every peer could be set up");
        backend.retry_failed_peers_now();
    }

    // A round in which a peer misses the deadline (the machine is busy) is counted, and that
    // peer retried at once, so that every measured round asks all of them.
    let mut late_rounds = 0u64;
    let mut rounds = 0u64;
    let mut served = |backend: &mut QmpBackend, vms: &mut _, roster: &mut _, want: usize| {
        rounds += 1;
        if round(backend, vms, roster) < want {
            late_rounds += 1;
            backend.retry_failed_peers_now();
        }
    };

    let mut group = c.benchmark_group("qmp_tick");
    group.sample_size(50).measurement_time(Duration::from_secs(10));
    group.bench_function("64_peers", |b| {
        b.iter(|| served(&mut backend, &mut vms, &mut roster, PEERS));
    });

    let _hung = FakeQemu::start(dir.path(), "zz-hung.sock", Some("hung"), Fault::HangAfterSetUp, 2048, 100);
    // Found at the next rescan (the directory changed, so it is read again), then set up.
    let started = Instant::now();
    while roster.count() <= PEERS {
        assert!(started.elapsed() < Duration::from_secs(5), "the hung peer was not found");
        round(&mut backend, &mut vms, &mut roster);
    }
    std::thread::sleep(Duration::from_millis(1100));
    group.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(5));
    group.bench_function("64_peers_one_hung", |b| {
        b.iter(|| {
            backend.retry_failed_peers_now();
            served(&mut backend, &mut vms, &mut roster, PEERS);
        });
    });
    group.finish();
    eprintln!("rounds in which a peer other than the hung one missed the deadline: {late_rounds} of {rounds}");
}

criterion_group!(benches, bench_ticks);
criterion_main!(benches);
