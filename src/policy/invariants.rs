//! The guarantees `decide()` gives for every input, as checks shared by the property tests
//! (`cargo test`) and the `decide` fuzz target, so both hold the policy to the same list.
//! Each check recomputes what it needs from the raw snapshot and the history as it was before
//! the tick; it never trusts a figure `decide()` reports about itself where an independent
//! one exists (the free-memory estimate is recomputed; a VM's debt is checked against the
//! host-side lower bound balloon size minus RSS).
//!
//! 1. [`no_action_without_fresh_stats`]: empty slots, VMs seen for the first time, VMs without
//!    stats, with impossible figures, or whose stats stopped advancing get no action.
//! 2. [`targets_within_bounds`]: a grow ends within `(actual, cap]`, a shrink within
//!    `[floor, actual)`, both on whole pages and at least `MIN_MOVE_KIB` away; a cancel stops
//!    the balloon within a page of where it is.
//! 3. [`shrink_keeps_threshold`]: no shrink leaves the VM's free memory (recomputed) below
//!    what it must keep, hence never below `vm_min_unused`; in normal times a shrink takes
//!    only MemFree, never page cache.
//! 4. [`release_within_limits`]: a shrink takes at most `shrink_step_max` and at most
//!    `shrink_fraction` of the excess.
//! 5. [`unverified_gets_no_grant`]: a VM whose last grant did not show gets nothing more
//!    (unless it is below its configured minimum).
//! 6. [`host_reserve_kept`]: growth never takes the host's headroom (MemAvailable minus every
//!    VM's debt) to or below `host_min_free`, counting this tick's shrinks; in a deficit,
//!    growth never exceeds what is released. Debts are at least balloon size minus RSS.
//! 7. [`shortage_caps_each_grant`]: while any VM is left short, no VM grows by more than
//!    `shrink_step_max` in one tick.
//! 8. [`totals_match`]: the totals in `Decisions` are the sums of the per-VM actions.

use super::observe::{MOVE_SLACK_KIB, cap_kib, floor_kib};
use super::{
    Action, Decision, Decisions, FreeFigure, History, Hold, MAX_KIB, MIN_MOVE_KIB, PAGE_KIB, PolicyConfig, Snapshot,
    VmHistory, VmLimits, VmStats,
};

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

/// What a per-VM rule sees: the (sanitized) config, the VM's clamped stats and limits, its
/// history before the tick, its decision, and whether the tick was under pressure.
pub struct VmCase<'a> {
    pub config: &'a PolicyConfig,
    pub vm: &'a VmStats,
    pub limits: &'a VmLimits,
    pub before: &'a VmHistory,
    pub d: &'a Decision,
    pub pressure: bool,
}

/// A per-VM rule.
pub type RuleFn = fn(&VmCase) -> Result<(), &'static str>;

/// Every per-VM rule, in the order of the module documentation.
pub const VM_RULES: [RuleFn; 5] = [
    no_action_without_fresh_stats,
    targets_within_bounds,
    shrink_keeps_threshold,
    release_within_limits,
    unverified_gets_no_grant,
];

/// Checks every guarantee for one tick; `before` is the history as passed to `decide()`.
pub fn check(
    config: &PolicyConfig,
    snapshot: &Snapshot,
    before: &History,
    decisions: &Decisions,
) -> Result<(), Violation> {
    for rule in VM_RULES {
        check_each_vm(config, snapshot, before, decisions, rule)?;
    }
    let global = |rule| Violation { slot: None, rule };
    host_reserve_kept(config, snapshot, decisions).map_err(global)?;
    shortage_caps_each_grant(config, snapshot, decisions).map_err(global)?;
    totals_match(snapshot, decisions).map_err(global)
}

/// Applies one per-VM rule to every slot; an empty slot must hold with `Hold::Absent`.
pub fn check_each_vm(
    config: &PolicyConfig,
    snapshot: &Snapshot,
    before: &History,
    decisions: &Decisions,
    rule: RuleFn,
) -> Result<(), Violation> {
    let config = config.sanitized();
    for (slot, (vm, d)) in snapshot.vms.iter().zip(&decisions.vms).enumerate() {
        let result = match vm {
            None if d.action != Action::Hold(Hold::Absent) => Err("an empty slot got an action"),
            None => Ok(()),
            Some(vm) => rule(&VmCase {
                config: &config,
                vm: &vm.clamped(),
                limits: &snapshot.limits[slot],
                before: &before.vms[slot],
                d,
                pressure: decisions.pressure,
            }),
        };
        result.map_err(|rule| Violation { slot: Some(slot), rule })?;
    }
    Ok(())
}

fn acts(d: &Decision) -> bool {
    d.action.target_kib().is_some()
}

fn free_figure(c: &VmCase) -> Option<u64> {
    match c.config.free_figure {
        FreeFigure::Available => c.vm.usable_kib.or(c.vm.unused_kib),
        FreeFigure::Unused => c.vm.unused_kib,
    }
}

/// Whether this tick's sample is new, recomputed from the timestamps.
fn fresh(c: &VmCase) -> bool {
    match (c.vm.last_update_s, c.before.last_update_s) {
        (None, _) | (Some(_), None) => true,
        (Some(now), Some(prev)) if now > prev => true,
        (Some(now), Some(prev)) if now == prev => {
            !c.before.update_advanced && c.before.ticks_unchanged.saturating_add(1) >= c.config.stale_ticks
        }
        _ => false,
    }
}

pub fn no_action_without_fresh_stats(c: &VmCase) -> Result<(), &'static str> {
    if !acts(c.d) {
        return Ok(());
    }
    if free_figure(c).is_none() || c.vm.last_update_s == Some(0) {
        return Err("a VM without stats got an action");
    }
    if c.before.actual_kib.is_none() {
        return Err("a VM seen for the first time got an action");
    }
    let same_stamp = c.vm.last_update_s.is_some() && c.vm.last_update_s == c.before.last_update_s;
    if c.before.update_advanced && same_stamp && c.before.ticks_unchanged.saturating_add(1) >= c.config.stale_ticks {
        return Err("a VM with stale stats got an action");
    }
    if c.vm.last_update_s.zip(c.before.last_update_s).is_some_and(|(now, prev)| now < prev) {
        return Err("a VM whose stats went back in time got an action");
    }
    let size = c.vm.available_kib.unwrap_or(c.vm.actual_kib).max(c.vm.actual_kib);
    if c.vm.max_kib == 0
        || c.vm.actual_kib == 0
        || c.vm.actual_kib > c.vm.max_kib
        || free_figure(c).is_some_and(|f| f > size + MOVE_SLACK_KIB)
    {
        return Err("a VM with impossible figures got an action");
    }
    Ok(())
}

pub fn targets_within_bounds(c: &VmCase) -> Result<(), &'static str> {
    let cap = cap_kib(c.vm, c.limits);
    let floor = floor_kib(c.config, c.limits, cap);
    let actual = c.vm.actual_kib;
    match c.d.action {
        Action::Grow { target_kib } if target_kib > cap || target_kib <= actual => {
            Err("a grow target outside (actual, cap]")
        }
        Action::Grow { target_kib } if target_kib < actual + MIN_MOVE_KIB && target_kib != cap => {
            Err("a grow smaller than the minimum move that does not reach the cap")
        }
        Action::Shrink { target_kib } if target_kib < floor || target_kib + MIN_MOVE_KIB > actual => {
            Err("a shrink target outside [floor, actual - min move)")
        }
        Action::Grow { target_kib } | Action::Shrink { target_kib } if target_kib % PAGE_KIB != 0 => {
            Err("a target that is not a whole number of pages")
        }
        Action::Cancel { target_kib } if target_kib.abs_diff(actual) >= PAGE_KIB || target_kib > c.vm.max_kib => {
            Err("a cancel that does not stop the balloon where it is")
        }
        _ => Ok(()),
    }
}

/// The VM's free memory now, recomputed: the free figure of the sample, corrected by the
/// balloon's movement since the sample was taken (balloon size minus MemTotal is learned
/// while the balloon rests). Returns (free figure now, MemFree now).
fn free_now(c: &VmCase) -> Option<(u64, Option<u64>)> {
    let free = free_figure(c)?;
    let at_rest = c.before.actual_kib == Some(c.vm.actual_kib);
    let offset = match c.vm.available_kib {
        Some(total) if at_rest && fresh(c) => Some(i128::from(c.vm.actual_kib) - i128::from(total)),
        _ => c.before.size_offset_kib.map(i128::from),
    };
    let size_at_sample = match (c.vm.available_kib, offset) {
        (Some(total), Some(offset)) => (i128::from(total) + offset).clamp(0, i128::from(MAX_KIB)),
        _ => i128::from(c.vm.actual_kib),
    };
    let now = |figure: u64| {
        let v = (i128::from(figure) + i128::from(c.vm.actual_kib) - size_at_sample).clamp(0, i128::from(MAX_KIB));
        u64::try_from(v).unwrap_or(0).min(c.vm.actual_kib)
    };
    // A guest whose last grant never showed is judged by the host-side bound (balloon size
    // minus RSS: untouched pages are free).
    let untouched = match (c.before.unverified, c.vm.rss_kib) {
        (true, Some(rss)) => c.vm.actual_kib.saturating_sub(rss),
        _ => 0,
    };
    Some((now(free).max(untouched), c.vm.unused_kib.map(|u| now(u).max(untouched))))
}

fn release_kib(c: &VmCase) -> Option<u64> {
    match c.d.action {
        Action::Shrink { target_kib } => Some(c.vm.actual_kib.saturating_sub(target_kib)),
        _ => None,
    }
}

pub fn shrink_keeps_threshold(c: &VmCase) -> Result<(), &'static str> {
    let Some(release) = release_kib(c) else { return Ok(()) };
    let (free, unused) = free_now(c).ok_or("a shrink without a free-memory figure")?;
    let keep = c.d.keep_kib.max(c.config.vm_min_unused_kib);
    let left = free.checked_sub(release).ok_or("a shrink larger than the free memory")?;
    if left < keep {
        return Err("a shrink leaves free memory below what the VM must keep");
    }
    let above_cap = c.vm.actual_kib > cap_kib(c.vm, c.limits);
    if !c.pressure && !above_cap {
        let really_free = unused.unwrap_or(free).min(free);
        if really_free.saturating_sub(release) < keep {
            return Err("in normal times a shrink took page cache, not only free memory");
        }
    }
    Ok(())
}

pub fn release_within_limits(c: &VmCase) -> Result<(), &'static str> {
    let Some(release) = release_kib(c) else { return Ok(()) };
    if release > c.config.shrink_step_max_kib {
        return Err("a shrink larger than the step cap");
    }
    let (free, _) = free_now(c).ok_or("a shrink without a free-memory figure")?;
    let excess = free.saturating_sub(c.d.keep_kib.max(c.config.vm_min_unused_kib));
    if release * 100 > excess * c.config.shrink_fraction_pct {
        return Err("a shrink larger than the allowed fraction of the excess");
    }
    Ok(())
}

pub fn unverified_gets_no_grant(c: &VmCase) -> Result<(), &'static str> {
    let below_floor = c.vm.actual_kib < floor_kib(c.config, c.limits, cap_kib(c.vm, c.limits));
    if c.before.unverified && !below_floor && matches!(c.d.action, Action::Grow { .. }) {
        return Err("a VM whose last grant never showed got another one");
    }
    Ok(())
}

/// Growth and release of one tick, summed.
fn flows(snapshot: &Snapshot, decisions: &Decisions) -> (u64, u64) {
    let mut granted = 0u64;
    let mut released = 0u64;
    for (vm, d) in snapshot.vms.iter().zip(&decisions.vms) {
        let actual = vm.map_or(0, |vm| vm.actual_kib.min(MAX_KIB));
        match d.action {
            Action::Grow { target_kib } => granted += target_kib.saturating_sub(actual),
            Action::Shrink { target_kib } => released += actual.saturating_sub(target_kib),
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
    let config = config.sanitized();
    let (granted, released) = flows(snapshot, decisions);
    let mut debt = 0u64;
    let mut lower_bound = 0u64;
    for (vm, d) in snapshot.vms.iter().zip(&decisions.vms) {
        let Some(vm) = vm.map(|vm| vm.clamped()) else { continue };
        let bound = vm.rss_kib.map_or(0, |rss| vm.actual_kib.saturating_sub(rss));
        if d.debt_kib < bound || d.debt_kib > vm.actual_kib {
            return Err("a debt outside [balloon size - RSS, balloon size]");
        }
        debt += d.debt_kib;
        lower_bound += bound;
    }
    let host = snapshot.host.available_kib.min(MAX_KIB);
    if decisions.headroom_kib != host.saturating_sub(debt) {
        return Err("the headroom is not host MemAvailable minus the debts");
    }
    let line = config.host_min_free_kib + 1;
    if granted > host.saturating_sub(debt + line) + released {
        return Err("growth takes the host's headroom to or below its reserve");
    }
    if granted > host.saturating_sub(lower_bound + line) + released {
        return Err("growth exceeds even the host-side bound on the headroom");
    }
    Ok(())
}

pub fn shortage_caps_each_grant(
    config: &PolicyConfig,
    snapshot: &Snapshot,
    decisions: &Decisions,
) -> Result<(), &'static str> {
    let config = config.sanitized();
    if decisions.vms.iter().all(|d| d.short_kib == 0) {
        return Ok(());
    }
    for (vm, d) in snapshot.vms.iter().zip(&decisions.vms) {
        if let (Some(vm), Action::Grow { target_kib }) = (vm, d.action)
            && target_kib.saturating_sub(vm.actual_kib.min(MAX_KIB)) > config.shrink_step_max_kib
        {
            return Err("under shortage a VM grew by more than the step cap");
        }
    }
    Ok(())
}

pub fn totals_match(snapshot: &Snapshot, decisions: &Decisions) -> Result<(), &'static str> {
    let (granted, released) = flows(snapshot, decisions);
    if decisions.granted_kib != granted || decisions.released_kib != released {
        return Err("the totals do not match the actions");
    }
    Ok(())
}
