//! `decide()` must not touch the heap: the daemon calls it every tick forever.

mod common;
use common::counting_alloc::{CountingAlloc, allocations_during};
use common::synthetic;

use memory_coordinator::policy::{Action, Decisions, History, MAX_DOMAINS, PolicyConfig, Snapshot, decide_all_applied};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn a_thousand_ticks_over_256_domains_allocate_nothing() {
    let config = PolicyConfig::DEFAULT;
    let mut snapshot = Box::new(Snapshot::EMPTY);
    let mut history = Box::new(History::EMPTY);
    let mut d = Box::new(Decisions::EMPTY);
    let mut actions = 0u64;
    let (allocations, bytes, ()) = allocations_during(|| {
        for tick in 0..1000u64 {
            synthetic::advance(&mut snapshot, &d, MAX_DOMAINS, tick);
            decide_all_applied(&config, &snapshot, &mut history, &mut d);
            actions += d.vms.iter().filter(|d| !matches!(d.action, Action::Hold(_))).count() as u64;
        }
    });
    assert!(actions > 10_000, "the workload must make decide() work: {actions} actions");
    assert_eq!((allocations, bytes), (0, 0), "decide() allocated");
}

#[test]
fn the_counting_allocator_sees_allocations() {
    // Guards the test above against a counter that cannot count.
    let (allocations, bytes, v) = allocations_during(|| vec![0u8; 4096]);
    assert_eq!(v.len(), 4096);
    assert!(allocations >= 1 && bytes >= 4096);
}
