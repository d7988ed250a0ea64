//! How long one policy round takes: `decide()` over 4, 64 and 256 VMs of the synthetic host
//! (tests/common/synthetic.rs: consumers, idle and page-cache guests, roomy and short phases,
//! so grows, shrinks, pressure and rationing all run). `make bench`.

#[path = "../common/synthetic.rs"]
mod synthetic;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use memory_coordinator::policy::{Decisions, History, PolicyConfig, Snapshot, decide, decide_all_applied};
use std::hint::black_box;

/// Two minutes of the synthetic host, each snapshot following the decisions before it.
fn recorded_run(vms: usize) -> Vec<Snapshot> {
    let config = PolicyConfig::DEFAULT;
    let mut snapshot = Box::new(Snapshot::EMPTY);
    let mut history = Box::new(History::EMPTY);
    let mut out = Box::new(Decisions::EMPTY);
    let mut run = Vec::new();
    for tick in 0..120 {
        synthetic::advance(&mut snapshot, &out, vms, tick);
        decide_all_applied(&config, &snapshot, &mut history, &mut out);
        run.push(*snapshot);
    }
    run
}

fn bench_decide(c: &mut Criterion) {
    let config = PolicyConfig::DEFAULT;
    let mut group = c.benchmark_group("decide");
    for vms in [4, 64, 256] {
        let run = recorded_run(vms);
        let mut history = Box::new(History::EMPTY);
        let mut out = Box::new(Decisions::EMPTY);
        let mut t = 0;
        group.bench_function(BenchmarkId::new("vms", vms), |b| {
            b.iter(|| {
                t = (t + 1) % run.len();
                decide(&config, black_box(&run[t]), &mut history, &mut out);
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_decide);
criterion_main!(benches);
