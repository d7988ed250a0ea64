//! How long one policy round takes for a full host: 256 VMs, a mix of starving, idle and
//! consuming guests whose figures change every tick. `make bench`.

#[path = "../common/synthetic.rs"]
mod synthetic;

use criterion::{Criterion, criterion_group, criterion_main};
use memory_coordinator::policy::{Decisions, History, PolicyConfig, Snapshot, decide_all_applied};
use std::hint::black_box;

fn bench_decide(c: &mut Criterion) {
    let config = PolicyConfig::DEFAULT;
    let mut snapshots = vec![Snapshot::EMPTY; 64];
    for (t, s) in snapshots.iter_mut().enumerate() {
        synthetic::fill(s, t as u64);
    }
    let mut history = Box::new(History::EMPTY);
    let mut out = Box::new(Decisions::EMPTY);
    let mut t = 0;
    c.bench_function("decide/256_vms", |b| {
        b.iter(|| {
            t = (t + 1) % snapshots.len();
            decide_all_applied(&config, black_box(&snapshots[t]), &mut history, &mut out);
            black_box(&out);
        })
    });
}

criterion_group!(benches, bench_decide);
criterion_main!(benches);
