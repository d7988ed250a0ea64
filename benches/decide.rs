//! How long one policy round takes for a full host: 256 VMs, a mix of starving, idle and
//! consuming guests whose figures change every tick. `make bench`.

use criterion::{Criterion, criterion_group, criterion_main};
use memory_coordinator::policy::{History, HostStats, MAX_DOMAINS, PolicyConfig, Snapshot, VmStats, decide};
use memory_coordinator::units::mib_to_kib;
use std::hint::black_box;

fn tick(snapshot: &mut Snapshot, tick: u64) {
    snapshot.host = HostStats { available_kib: mib_to_kib(4096), total_kib: mib_to_kib(24 * 1024) };
    for slot in 0..MAX_DOMAINS {
        let s = slot as u64;
        let actual = mib_to_kib(512 + (s * 37 + tick * 13) % 1536);
        let unused = (s * 7919 + tick * 104_729) % actual;
        snapshot.vms[slot] = Some(VmStats {
            actual_kib: actual,
            max_kib: mib_to_kib(2048),
            unused_kib: Some(unused),
            usable_kib: Some(unused),
            available_kib: Some(actual - mib_to_kib(40)),
            swap_in_kib: Some(0),
            swap_out_kib: Some(0),
            major_faults: Some(tick),
            last_update_s: Some(1_700_000_000 + tick),
        });
    }
}

fn bench_decide(c: &mut Criterion) {
    let config = PolicyConfig::DEFAULT;
    let mut snapshots = vec![Snapshot::EMPTY; 64];
    for (t, s) in snapshots.iter_mut().enumerate() {
        tick(s, t as u64);
    }
    let mut history = Box::new(History::EMPTY);
    let mut t = 0;
    c.bench_function("decide/256_vms", |b| {
        b.iter(|| {
            t = (t + 1) % snapshots.len();
            black_box(decide(&config, black_box(&snapshots[t]), &mut history))
        })
    });
}

criterion_group!(benches, bench_decide);
criterion_main!(benches);
