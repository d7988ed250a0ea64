//! A synthetic full host for the zero-allocation test and the benchmark: up to 256 VMs whose
//! balloons follow the policy's targets, a mix of consumers (that free everything when they
//! reach 3 GiB), idle guests, guests full of page cache and guests without stats, on a host
//! that is roomy for 30 ticks and short for the next 30, so that every path of `decide()`
//! (grows, shrinks, pressure, rationing) runs.

use memory_coordinator::policy::{Decisions, HostStats, MAX_DOMAINS, Snapshot, VmStats};
use memory_coordinator::units::mib_to_kib;

const KERNEL_KIB: u64 = 40 * 1024;

/// Fills `snapshot` with round `tick` of the synthetic host for `vms` VMs: balloons moved to
/// `last`'s targets, guests' use at that tick.
pub fn advance(snapshot: &mut Snapshot, last: &Decisions, vms: usize, tick: u64) {
    let roomy = tick % 60 < 30;
    snapshot.host = HostStats {
        available_kib: if roomy { mib_to_kib(vms as u64 * 1024) } else { mib_to_kib(600) },
        total_kib: mib_to_kib(vms as u64 * 4096),
    };
    for (slot, entry) in snapshot.vms.iter_mut().enumerate().take(vms.min(MAX_DOMAINS)) {
        let s = slot as u64;
        let mut actual = entry.map_or(mib_to_kib(1024), |vm| vm.actual_kib);
        if let Some(target) = last.vms[slot].action.target_kib() {
            actual = target;
        }
        let total = actual.saturating_sub(KERNEL_KIB);
        let (used, cache) = match slot % 4 {
            // Consumers at 20 MiB/s, each at its own phase.
            0 => (mib_to_kib(100 + (tick * 20 + s * 37) % 3000), 0),
            // Idle.
            1 => (mib_to_kib(150), 0),
            // Full of page cache.
            2 => (mib_to_kib(200), mib_to_kib(800)),
            // Bursts of 400 MiB every 20 ticks.
            _ => (mib_to_kib(if (tick + s) % 20 < 4 { 500 } else { 100 }), 0),
        };
        let used = used.min(total.saturating_sub(8 * 1024));
        let cache = cache.min(total - used);
        let free = total - used - cache;
        *entry = Some(VmStats {
            actual_kib: actual,
            max_kib: mib_to_kib(4096),
            unused_kib: if slot % 17 == 0 { None } else { Some(free) },
            usable_kib: Some(free + cache),
            available_kib: Some(total),
            swap_in_kib: Some(0),
            swap_out_kib: Some(0),
            major_faults: Some(tick),
            last_update_s: Some(1_700_000_000 + tick),
            rss_kib: Some(KERNEL_KIB + used + cache + mib_to_kib(60)),
            oom_kills: Some(0),
            alloc_stalls: Some(0),
            direct_reclaims: Some(0),
        });
    }
}
