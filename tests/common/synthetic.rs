//! A synthetic full host for the zero-allocation test and the benchmark: 256 VMs, a mix of
//! starving, idle, consuming, swapping and stats-less ones, whose figures change every tick.

use memory_coordinator::policy::{HostStats, MAX_DOMAINS, Snapshot, VmStats};
use memory_coordinator::units::mib_to_kib;

/// Fills `snapshot` with round `tick` of the synthetic host.
pub fn fill(snapshot: &mut Snapshot, tick: u64) {
    snapshot.host = HostStats { available_kib: mib_to_kib(4096), total_kib: mib_to_kib(24 * 1024) };
    for (slot, vm) in snapshot.vms.iter_mut().enumerate().take(MAX_DOMAINS) {
        let s = slot as u64;
        let actual = mib_to_kib(512 + (s * 37 + tick * 13) % 1536);
        let unused = (s * 7919 + tick * 104_729) % actual;
        *vm = Some(VmStats {
            actual_kib: actual,
            max_kib: mib_to_kib(2048),
            unused_kib: if slot % 17 == 0 { None } else { Some(unused) },
            usable_kib: Some(unused),
            available_kib: Some(actual - mib_to_kib(40)),
            swap_in_kib: Some(tick * (s % 3)),
            swap_out_kib: Some(0),
            major_faults: Some(tick),
            last_update_s: Some(1_700_000_000 + tick),
            rss_kib: None,
            oom_kills: None,
            alloc_stalls: None,
            direct_reclaims: None,
        });
    }
}
