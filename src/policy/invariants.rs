//! The guarantees `decide()` gives for every input, as checks shared by the property tests
//! (`cargo test`) and the `decide` fuzz target, so both hold the policy to the same list:
//!
//! 1. [`no_action_without_fresh_stats`]: empty slots, VMs seen for the first time, VMs without
//!    stats (no free-memory figure or `last_update` 0) and VMs whose stats stopped advancing for
//!    `stale_ticks` ticks get no action.
//! 2. [`targets_within_bounds`]: a grow ends within `(actual, max]`, a shrink within
//!    `[vm_min_size, actual)`.
//! 3. [`shrink_keeps_threshold`]: no shrink leaves the VM's predicted free memory below what
//!    it must keep (threshold plus lead), hence never below `vm_min_unused`.
//! 4. [`release_within_limits`]: a shrink takes at most `shrink_step_max` and at most
//!    `shrink_fraction` of the excess.
//! 5. [`host_reserve_kept`]: growth never leaves the host at or below `host_min_free`,
//!    counting this tick's shrinks.
//! 6. [`totals_match`]: the totals in `Decisions` are the sums of the per-VM actions.

use super::{Action, Decision, Decisions, History, Hold, PolicyConfig, Snapshot, VmHistory, VmStats};

/// A broken guarantee: which slot (if any) and which rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    pub slot: Option<usize>,
    pub rule: &'static str,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.slot {
            Some(slot) => write!(f, "slot {slot}: {}", self.rule),
            None => write!(f, "{}", self.rule),
        }
    }
}

/// A per-VM rule: config, the VM's stats, its history before the tick, its decision.
pub type RuleFn = fn(&PolicyConfig, &VmStats, &VmHistory, &Decision) -> Result<(), &'static str>;

/// Checks every guarantee for one tick; `before` is the history as passed to `decide()`.
pub fn check(
    config: &PolicyConfig,
    snapshot: &Snapshot,
    before: &History,
    decisions: &Decisions,
) -> Result<(), Violation> {
    const RULES: [RuleFn; 4] =
        [no_action_without_fresh_stats, targets_within_bounds, shrink_keeps_threshold, release_within_limits];
    for rule in RULES {
        check_each_vm(config, snapshot, before, decisions, rule)?;
    }
    host_reserve_kept(config, snapshot, decisions).map_err(|rule| Violation { slot: None, rule })?;
    totals_match(snapshot, decisions).map_err(|rule| Violation { slot: None, rule })
}

/// Applies one per-VM rule to every slot; an empty slot must hold with `Hold::Absent`.
pub fn check_each_vm(
    config: &PolicyConfig,
    snapshot: &Snapshot,
    before: &History,
    decisions: &Decisions,
    rule: RuleFn,
) -> Result<(), Violation> {
    for (slot, (vm, d)) in snapshot.vms.iter().zip(&decisions.vms).enumerate() {
        let result = match vm {
            None if d.action != Action::Hold(Hold::Absent) => Err("an empty slot got an action"),
            None => Ok(()),
            Some(vm) => rule(config, vm, &before.vms[slot], d),
        };
        result.map_err(|rule| Violation { slot: Some(slot), rule })?;
    }
    Ok(())
}

fn acts(d: &Decision) -> bool {
    !matches!(d.action, Action::Hold(_))
}

pub fn no_action_without_fresh_stats(
    config: &PolicyConfig,
    vm: &VmStats,
    h: &VmHistory,
    d: &Decision,
) -> Result<(), &'static str> {
    if (vm.unused_kib.is_none() || vm.last_update_s == Some(0)) && acts(d) {
        return Err("a VM without stats got an action");
    }
    if h.actual_kib.is_none() && acts(d) {
        return Err("a VM seen for the first time got an action");
    }
    let same_stamp = vm.last_update_s.is_some() && vm.last_update_s == h.last_update_s;
    if h.update_advanced && same_stamp && h.ticks_unchanged.saturating_add(1) >= config.stale_ticks && acts(d) {
        return Err("a VM with stale stats got an action");
    }
    Ok(())
}

pub fn targets_within_bounds(
    config: &PolicyConfig,
    vm: &VmStats,
    _: &VmHistory,
    d: &Decision,
) -> Result<(), &'static str> {
    match d.action {
        Action::Grow { target_kib } if target_kib <= vm.actual_kib || target_kib > vm.max_kib => {
            Err("a grow target outside (actual, max]")
        }
        Action::Shrink { target_kib } if target_kib >= vm.actual_kib || target_kib < config.vm_min_size_kib => {
            Err("a shrink target outside [vm_min_size, actual)")
        }
        _ => Ok(()),
    }
}

/// How much a shrink decision takes, or `None` for any other decision.
fn release_kib(vm: &VmStats, d: &Decision) -> Option<u64> {
    match d.action {
        Action::Shrink { target_kib } => Some(vm.actual_kib.saturating_sub(target_kib)),
        _ => None,
    }
}

pub fn shrink_keeps_threshold(
    config: &PolicyConfig,
    vm: &VmStats,
    _: &VmHistory,
    d: &Decision,
) -> Result<(), &'static str> {
    let Some(release) = release_kib(vm, d) else { return Ok(()) };
    let Some(unused_now) = d.unused_now_kib else { return Err("a shrink without a free-memory estimate") };
    if vm.available_kib.is_none() && Some(unused_now) != vm.unused_kib.map(|u| u.min(vm.actual_kib)) {
        return Err("without MemTotal the estimate must be the reported free memory");
    }
    let left = unused_now.checked_sub(release).ok_or("a shrink larger than the free memory")?;
    if left < d.keep_kib || left < config.vm_min_unused_kib {
        return Err("a shrink leaves predicted free memory below the threshold");
    }
    Ok(())
}

pub fn release_within_limits(
    config: &PolicyConfig,
    vm: &VmStats,
    _: &VmHistory,
    d: &Decision,
) -> Result<(), &'static str> {
    let Some(release) = release_kib(vm, d) else { return Ok(()) };
    if release > config.shrink_step_max_kib {
        return Err("a shrink larger than the step cap");
    }
    let excess = d.unused_now_kib.unwrap_or(0).saturating_sub(d.keep_kib);
    if u128::from(release) * 100 > u128::from(excess) * u128::from(config.shrink_fraction_pct) {
        return Err("a shrink larger than the allowed fraction of the excess");
    }
    Ok(())
}

/// Growth and release of one tick, summed without overflow.
fn flows(snapshot: &Snapshot, decisions: &Decisions) -> (u128, u128) {
    let mut granted = 0u128;
    let mut released = 0u128;
    for (vm, d) in snapshot.vms.iter().zip(&decisions.vms) {
        let actual = vm.map_or(0, |vm| vm.actual_kib);
        match d.action {
            Action::Grow { target_kib } => granted += u128::from(target_kib.saturating_sub(actual)),
            Action::Shrink { target_kib } => released += u128::from(actual.saturating_sub(target_kib)),
            Action::Hold(_) | Action::Cancel { .. } => {}
        }
    }
    (granted, released)
}

pub fn host_reserve_kept(
    config: &PolicyConfig,
    snapshot: &Snapshot,
    decisions: &Decisions,
) -> Result<(), &'static str> {
    let (granted, released) = flows(snapshot, decisions);
    let host = u128::from(snapshot.host.available_kib);
    if granted > 0 && host + released < granted + u128::from(config.host_min_free_kib) + 1 {
        return Err("growth leaves the host at or below its reserve");
    }
    Ok(())
}

pub fn totals_match(snapshot: &Snapshot, decisions: &Decisions) -> Result<(), &'static str> {
    let (granted, released) = flows(snapshot, decisions);
    let saturated = |sum: u128| u64::try_from(sum).unwrap_or(u64::MAX);
    if decisions.granted_kib != saturated(granted) || decisions.released_kib != saturated(released) {
        return Err("the totals do not match the actions");
    }
    Ok(())
}
