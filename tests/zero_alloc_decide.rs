//! `decide()` must not touch the heap: the daemon calls it every tick forever.

mod common;
use common::counting_alloc::{CountingAlloc, allocations_during};

use memory_coordinator::policy::{Action, History, HostStats, MAX_DOMAINS, PolicyConfig, Snapshot, VmStats, decide};
use memory_coordinator::units::mib_to_kib;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

#[test]
fn a_thousand_ticks_over_256_domains_allocate_nothing() {
    let config = PolicyConfig::DEFAULT;
    let mut snapshot = Box::new(Snapshot::EMPTY);
    let mut history = Box::new(History::EMPTY);
    snapshot.host = HostStats { available_kib: mib_to_kib(4096), total_kib: mib_to_kib(24 * 1024) };
    let mut actions = 0u64;
    let (allocations, bytes, ()) = allocations_during(|| {
        for tick in 0..1000u64 {
            for slot in 0..MAX_DOMAINS {
                let s = slot as u64;
                // A mix of starving, idle, consuming and stats-less VMs that changes every tick.
                let actual = mib_to_kib(512 + (s * 37 + tick * 13) % 1536);
                let unused = (s * 7919 + tick * 104_729) % actual;
                snapshot.vms[slot] = Some(VmStats {
                    actual_kib: actual,
                    max_kib: mib_to_kib(2048),
                    unused_kib: if slot % 17 == 0 { None } else { Some(unused) },
                    usable_kib: Some(unused),
                    available_kib: Some(actual - mib_to_kib(40)),
                    swap_in_kib: Some(tick * (s % 3)),
                    swap_out_kib: Some(0),
                    major_faults: Some(tick),
                    last_update_s: Some(1_700_000_000 + tick),
                });
            }
            let d = decide(&config, &snapshot, &mut history);
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
