//! Step 1 and 2 of a tick for one VM: update its history from the new sample and classify it
//! as needy, donor, or held (and why). Everything the policy learns about a guest is here.

use super::{
    Decision, FreeFigure, GrantCheck, Hold, MAX_KIB, MAX_WEIGHT, MIN_MOVE_KIB, PolicyConfig, VmHistory, VmLimits,
    VmStats, page_down, page_up,
};

/// How fast the consumption estimate falls when a sample shows less consumption (percent of
/// the difference per sample). Rises are taken at once (within the rise cap): a guest must
/// never be caught short because the estimator was still averaging.
const RATE_DECAY_PCT: u64 = 25;

/// A rise of the consumption estimate is capped at twice the old estimate plus this, per
/// sample: a consumer starting from nothing at up to 32 MiB/s is taken at once, a faster one
/// within two or three samples, and one transient 500 MiB sample does not pass for
/// 250 MiB/s of consumption for the next ten.
const RATE_RISE_KIB_S: u64 = 32 * 1024;

/// Major page faults per second above which a guest counts as under memory pressure
/// (re-reading evicted pages), so nothing is taken from it for `holdoff_ticks`.
const PRESSURE_MAJOR_FAULTS_PER_S: u64 = 100;

/// Allocation stalls within one sample that count as a burst (Linux 6.12's
/// `VIRTIO_BALLOON_S_ALLOC_STALL`): tasks are waiting in direct reclaim, the guest is short
/// now whatever its free figure says.
const ALARM_STALLS: u64 = 10;

/// For how long (seconds) a guest that raised an alarm (OOM kill, stall burst) keeps twice
/// `vm_min_unused` on top of its lead, and is not shrunk.
const ALARM_HOLD_S: u64 = 60;

/// Rounds a VM is left alone while its balloon moves towards a target that is not ours (set
/// by libvirt at boot, or by an operator): acting on a moving balloon would override that
/// target with one computed from a size that is about to change.
const SETTLE_TICKS: u32 = 5;

/// A balloon this close to our target has reached it; a guest with 64 KiB pages lands up to
/// one of its pages away from a 4 KiB-aligned target.
pub(super) const MOVE_SLACK_KIB: u64 = 64;

/// Ticks a balloon may sit still short of our target before the move counts as stalled (the
/// guest cannot free pages fast enough).
const STALL_TICKS: u32 = 2;

/// After a stalled shrink nothing is taken from the VM for this many ticks, doubling with each
/// stall in a row, reset when a shrink lands.
pub(super) const STALL_BACKOFF_MIN_TICKS: u32 = 4;
pub(super) const STALL_BACKOFF_MAX_TICKS: u32 = 64;

/// A grant that has not landed after this many ticks is forgotten (not held against the VM).
const GRANT_LAND_TICKS: u32 = 10;

/// QEMU's overhead estimate may creep up by this much per fresh sample, so that it follows a
/// process that really grew (a TCG translation cache filling up) and errs toward counting
/// more debt, never less.
const OVERHEAD_DRIFT_KIB: u64 = 1024;

/// The least a VM that swaps in with little to spare is grown by: less does not stop the swap.
const MIN_SWAP_GROW_KIB: u64 = 16 * 1024;

/// How the policy sees one VM after observing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Class {
    Hold(Hold),
    /// Should grow by `need_kib`; `urgent_kib` of it keeps it from starving (or below its
    /// floor, or after an alarm) and is served first under shortage.
    Needy {
        urgent_kib: u64,
        need_kib: u64,
    },
    /// Can give `normal_kib` in normal times and up to `pressure_kib` under pressure.
    Donor {
        normal_kib: u64,
        pressure_kib: u64,
    },
    /// Our shrink stalled: stop the balloon where it is.
    Cancel {
        target_kib: u64,
    },
}

/// How the rest of the tick sees one VM (its figures are in its `Decision`).
#[derive(Clone, Copy, Debug)]
pub(super) struct View {
    /// Where the VM is in the snapshot, history and decisions.
    pub slot: usize,
    pub class: Class,
    pub actual_kib: u64,
    pub weight: u64,
    pub cap_kib: u64,
}

impl View {
    pub const ABSENT: View = View { slot: 0, class: Class::Hold(Hold::Absent), actual_kib: 0, weight: 1, cap_kib: 0 };
}

/// The most a VM may have: its own max, or the operator's lower maximum, in whole pages.
pub(super) fn cap_kib(vm: &VmStats, limits: &VmLimits) -> u64 {
    page_down(limits.max_kib.map_or(vm.max_kib, |m| m.min(vm.max_kib)).min(MAX_KIB))
}

/// The least a VM is shrunk to: the operator's minimum or `vm_min_size`, never above the cap.
pub(super) fn floor_kib(config: &PolicyConfig, limits: &VmLimits, cap: u64) -> u64 {
    page_up(limits.min_kib.unwrap_or(config.vm_min_size_kib).min(MAX_KIB)).min(cap)
}

/// Memory the VM was given that the host does not back yet: its balloon size minus the
/// guest memory QEMU's RSS holds. Without an RSS figure every free page of the guest is
/// assumed unbacked (the safe side).
///
/// A page the guest uses or caches has been touched, so what the host does not back yet can
/// only be among the guest's free pages it can still take: the debt is capped at MemFree, and
/// at MemAvailable where that is lower. The overhead
/// estimate is learnt at rest only, and a balloon that moves every round (under pressure) can
/// leave it stale; seen on real guests: idle guests with 105 MiB free carried 175 MiB of debt
/// each and starved a consumer while the host still had 625 MiB (lab scenario PC). The cap
/// never goes below balloon size minus RSS, what the host cannot back whatever the overhead.
pub(super) fn debt_kib(vm: &VmStats, h: &VmHistory) -> u64 {
    match vm.rss_kib {
        Some(rss) => {
            let modelled = vm.actual_kib.saturating_sub(rss.saturating_sub(h.overhead_kib.unwrap_or(0)));
            let at_least = vm.actual_kib.saturating_sub(rss);
            // MemAvailable can be below MemFree: the kernel keeps its watermark reserve free
            // for itself, and an application can never take it (an idle busybox guest here:
            // MemFree 172 MiB, MemAvailable 105 MiB). Counting that reserve as debt cost a
            // consumer its last 14 MiB with 619 MiB still on the host (lab PC on QMP).
            let takeable = vm.unused_kib.into_iter().chain(vm.usable_kib).min();
            takeable.map_or(modelled, |t| modelled.min(t)).max(at_least)
        }
        None => vm.unused_kib.unwrap_or(0).min(vm.actual_kib),
    }
}

/// The guest figure that counts as free memory.
fn free_figure(config: &PolicyConfig, vm: &VmStats) -> Option<u64> {
    match config.free_figure {
        FreeFigure::Available => vm.usable_kib.or(vm.unused_kib),
        FreeFigure::Unused => vm.unused_kib,
    }
}

/// Whether this tick brings a new sample, and how it relates to the last one.
struct Freshness {
    fresh: bool,
    /// Seconds since the previous sample.
    dt_s: u64,
    /// The timestamp went backwards (QEMU restarted behind the same identity).
    clock_back: bool,
}

/// What a fresh sample revealed besides the figures.
#[derive(Default)]
struct Signals {
    swapped_in_kib: u64,
    alarm: bool,
}

/// Updates the history of the VM in `slot` with its new sample, writes the figures its
/// decision is based on into `d`, and classifies it.
// Inlined into its one caller: returned through a call, the view was written field by field
// and read back whole, a store-forwarding stall per VM.
#[inline]
pub(super) fn observe(
    config: &PolicyConfig,
    slot: usize,
    vm: &VmStats,
    limits: &VmLimits,
    h: &mut VmHistory,
    d: &mut Decision,
) -> View {
    for ticks in
        [&mut h.ticks_since_grow, &mut h.ticks_since_pressure, &mut h.ticks_since_alarm, &mut h.ticks_since_stall]
    {
        *ticks = ticks.saturating_add(1);
    }
    let prev_actual = h.actual_kib;
    let first_sight = prev_actual.is_none();
    let moved = prev_actual.is_some_and(|p| p != vm.actual_kib);
    h.actual_kib = Some(vm.actual_kib);

    let cap = cap_kib(vm, limits);
    let floor = floor_kib(config, limits, cap);
    let mut view = View {
        slot,
        class: Class::Hold(Hold::Absent),
        actual_kib: vm.actual_kib,
        weight: u64::from(limits.weight.clamp(1, MAX_WEIGHT)),
        cap_kib: cap,
    };
    *d = Decision { sample_s: vm.last_update_s, ..Decision::ABSENT };
    let hold = |mut view: View, why| {
        view.class = Class::Hold(why);
        view
    };

    let freshness = track_freshness(config, vm.last_update_s, h);
    let free = match usable_free(config, vm, h, &freshness) {
        Ok(free) => free,
        Err(why) => {
            // Nothing is learnt from this sample: the debt is what the history knew. (It is
            // computed once per VM, here or after `learn`: it is one of the costlier figures.)
            d.debt_kib = debt_kib(vm, h);
            return hold(view, why);
        }
    };
    let total = vm.available_kib;

    let at_rest = !moved && !first_sight;
    let signals =
        if freshness.fresh { learn(config, vm, h, free, at_rest, freshness.dt_s) } else { Signals::default() };

    // The sample describes the guest at the size it had when it was taken: correct it by the
    // balloon's movement since (known once the offset between balloon size and MemTotal is).
    let size_at_sample = match (total, h.size_offset_kib) {
        (Some(total), Some(offset)) => clamp_kib(i64_of(total) + offset),
        _ => vm.actual_kib,
    };
    let correction = i64_of(vm.actual_kib) - i64_of(size_at_sample);
    let now = |figure: u64| clamp_kib(i64_of(figure) + correction).min(vm.actual_kib);
    // A guest whose last grant never showed is judged by what the host sees: a page of its
    // balloon the host has never backed (balloon size minus RSS) cannot be in use, so it is
    // free whatever the guest says.
    let untouched = match (h.unverified, vm.rss_kib) {
        (true, Some(rss)) => vm.actual_kib.saturating_sub(rss),
        _ => 0,
    };
    let free_now = now(free).max(untouched);
    let unused_now = vm.unused_kib.map(|u| now(u).max(untouched));
    let lead = h.consumption_kib_s.saturating_mul(config.lead_s());
    let alarm_recent = u64::from(h.ticks_since_alarm).saturating_mul(config.interval_s) < ALARM_HOLD_S;
    let keep = (config.vm_min_unused_kib + lead.min(MAX_KIB) + if alarm_recent { config.vm_min_unused_kib } else { 0 })
        .min(MAX_KIB);
    d.free_now_kib = Some(free_now);
    d.unused_now_kib = unused_now;
    d.keep_kib = keep;
    d.consumption_kib_s = h.consumption_kib_s;
    // With QEMU's overhead as `learn` may just have refined it.
    d.debt_kib = debt_kib(vm, h);

    check_grant(config, vm, h, free, &freshness);

    // Our own moves: reached, in flight, stalled, or overtaken by someone else's.
    let mut in_flight = false;
    let mut stalled = false;
    let mut foreign = moved;
    if let Some(target) = h.target_kib {
        if vm.actual_kib.abs_diff(target) <= MOVE_SLACK_KIB {
            if h.shrinking {
                h.stall_backoff_ticks = 0;
            }
            h.target_kib = None;
            h.ticks_still = 0;
            foreign = false;
        } else {
            let toward = prev_actual.is_some_and(|p| {
                (p > vm.actual_kib && vm.actual_kib + MOVE_SLACK_KIB >= target)
                    || (p < vm.actual_kib && vm.actual_kib <= target + MOVE_SLACK_KIB)
            });
            if !moved {
                h.ticks_still = h.ticks_still.saturating_add(1);
                if h.ticks_still < STALL_TICKS {
                    in_flight = true;
                } else if h.shrinking {
                    stalled = true;
                } else {
                    // A grow that never finished: the balloon is where the guest let it go.
                    h.target_kib = None;
                }
            } else if toward {
                in_flight = true;
                h.ticks_still = 0;
                foreign = false;
            } else {
                h.target_kib = None;
            }
        }
    }
    if foreign {
        h.ticks_settling = h.ticks_settling.saturating_add(1);
        if prev_actual.is_some_and(|p| vm.actual_kib > p) {
            // Someone gave this VM memory (an operator's setmem): do not take it straight back.
            h.ticks_since_grow = 0;
        }
    } else {
        h.ticks_settling = 0;
    }
    if first_sight {
        return hold(view, Hold::Settling);
    }
    let settling = foreign && h.ticks_settling <= SETTLE_TICKS;
    let awaiting = !freshness.fresh && h.acted_on_update_s.is_some() && h.acted_on_update_s == vm.last_update_s;

    // Needy: short of what it must keep, swapping in with little to spare, an alarm, or below
    // its configured minimum.
    let want = keep.saturating_add(config.shrink_band_kib / 2);
    let swap_pressure = signals.swapped_in_kib > 0 && free_now < keep.saturating_add(config.shrink_band_kib);
    let below_floor = vm.actual_kib < floor;
    if free_now < keep || swap_pressure || signals.alarm || below_floor {
        if h.unverified && !below_floor {
            return hold(view, Hold::Unverified);
        }
        // A grant still being checked is waited for, unless the VM is starving meanwhile and
        // the host sees it touch what it got: a fast consumer must not run dry because its
        // last grant's check is not through, and a guest that only claims to starve must not
        // collect grant after grant before the first check.
        let touching = h.grant.is_some_and(|g| {
            touched_since_grant(config, vm, &g).is_some_and(|(kib, _)| kib.saturating_mul(4) >= g.grant_kib)
        });
        let starving = free_now < config.vm_min_unused_kib && touching;
        if (awaiting || (h.grant.is_some() && !starving)) && !signals.alarm {
            return hold(view, Hold::AwaitingStats);
        }
        let room = cap.saturating_sub(vm.actual_kib);
        let mut need = want.saturating_sub(free_now);
        let mut urgent = config.vm_min_unused_kib.saturating_sub(free_now);
        if swap_pressure {
            need = need.max(MIN_SWAP_GROW_KIB);
        }
        if signals.alarm {
            need = need.max(config.vm_min_unused_kib);
            urgent = urgent.max(config.vm_min_unused_kib);
        }
        let floor_need = floor.saturating_sub(vm.actual_kib);
        need = need.max(floor_need).min(room);
        urgent = urgent.max(floor_need).min(need);
        if room == 0 {
            return hold(view, Hold::AtMax);
        }
        // A small need is no reason to move, unless it is the last step to the cap.
        if need < MIN_MOVE_KIB && need < room {
            return hold(view, Hold::Steady);
        }
        view.class = Class::Needy { urgent_kib: urgent, need_kib: need };
        return view;
    }
    if stalled {
        view.class = Class::Cancel { target_kib: page_up(vm.actual_kib).min(vm.max_kib) };
        return view;
    }

    // A potential donor.
    let why_not = if settling {
        Some(Hold::Settling)
    } else if awaiting {
        Some(Hold::AwaitingStats)
    } else if in_flight {
        Some(Hold::InFlight)
    } else if h.ticks_since_stall < h.stall_backoff_ticks {
        Some(Hold::Stalled)
    } else if h.ticks_since_grow < config.holdoff_ticks || h.ticks_since_pressure < config.holdoff_ticks || alarm_recent
    {
        Some(Hold::Holdoff)
    } else if vm.actual_kib <= floor {
        Some(Hold::AtFloor)
    } else {
        None
    };
    if let Some(why) = why_not {
        return hold(view, why);
    }
    let room = vm.actual_kib - floor;
    let share = |excess: u64| (excess * config.shrink_fraction_pct / 100).min(config.shrink_step_max_kib).min(room);
    // Under pressure a donor gives from all it can spare, page cache included; in normal
    // times only from memory that is really free (MemFree), and only beyond the band.
    let excess_all = free_now - keep;
    let excess_free = unused_now.unwrap_or(free_now).min(free_now).saturating_sub(keep);
    let pressure_kib = at_least_a_move(share(excess_all));
    let mut normal_kib = if excess_free > config.shrink_band_kib { at_least_a_move(share(excess_free)) } else { 0 };
    if vm.actual_kib > cap {
        // Above the operator's maximum: brought down as far as its free memory allows.
        normal_kib = normal_kib.max(pressure_kib.min(vm.actual_kib - cap));
    }
    if pressure_kib == 0 {
        return hold(view, Hold::Steady);
    }
    view.class = Class::Donor { normal_kib, pressure_kib };
    view
}

/// The sample's free figure, if the sample can be acted on: it has one, its figures can be
/// true together, and its timestamp is not stale.
fn usable_free(config: &PolicyConfig, vm: &VmStats, h: &VmHistory, freshness: &Freshness) -> Result<u64, Hold> {
    let Some(free) = free_figure(config, vm).filter(|_| vm.last_update_s != Some(0)) else {
        return Err(Hold::NoStats);
    };
    let size_seen = vm.available_kib.unwrap_or(vm.actual_kib).max(vm.actual_kib);
    let impossible = vm.max_kib == 0
        || vm.actual_kib == 0
        || vm.actual_kib > vm.max_kib
        || free > size_seen + MOVE_SLACK_KIB
        || vm.unused_kib.is_some_and(|u| u > size_seen + MOVE_SLACK_KIB);
    if impossible || freshness.clock_back {
        return Err(Hold::Inconsistent);
    }
    if h.update_advanced && h.ticks_unchanged >= config.stale_ticks {
        return Err(Hold::Stale);
    }
    Ok(free)
}

/// A move below the minimum is no move.
fn at_least_a_move(kib: u64) -> u64 {
    if kib < MIN_MOVE_KIB { 0 } else { kib }
}

/// Tracks the sample timestamp: is this a new sample, and how many seconds after the last?
/// A timestamp that has never moved for `stale_ticks` ticks is a frozen clock (libvirt's test
/// driver has one): each tick then counts as a new sample, as when the backend reports no
/// timestamp at all.
fn track_freshness(config: &PolicyConfig, update_s: Option<u64>, h: &mut VmHistory) -> Freshness {
    let interval_s = config.interval_s;
    let freshness = match (update_s, h.last_update_s) {
        (None, _) => Freshness { fresh: true, dt_s: interval_s, clock_back: false },
        (Some(now), Some(prev)) if now == prev => {
            h.ticks_unchanged = h.ticks_unchanged.saturating_add(1);
            let frozen = !h.update_advanced && h.ticks_unchanged >= config.stale_ticks;
            Freshness { fresh: frozen, dt_s: interval_s, clock_back: false }
        }
        (Some(now), Some(prev)) if now > prev => {
            h.update_advanced = true;
            h.ticks_unchanged = 0;
            Freshness { fresh: true, dt_s: now - prev, clock_back: false }
        }
        (Some(_), Some(_)) => {
            // Back in time: a new QEMU behind the same identity. Nothing learned before
            // describes it; act on it only from its next sample.
            h.update_advanced = false;
            h.ticks_unchanged = 0;
            h.used_kib = None;
            h.used_before_kib = None;
            h.size_offset_kib = None;
            Freshness { fresh: false, dt_s: interval_s, clock_back: true }
        }
        (Some(_), None) => {
            h.update_advanced = false;
            h.ticks_unchanged = 0;
            Freshness { fresh: true, dt_s: interval_s, clock_back: false }
        }
    };
    h.last_update_s = update_s;
    freshness
}

/// Learns consumption, the size offset, QEMU's overhead and the guest's pressure signals from a
/// fresh sample.
// Inlined (one caller, once per VM): a call here costs more than much of what it does.
#[inline]
fn learn(config: &PolicyConfig, vm: &VmStats, h: &mut VmHistory, free: u64, at_rest: bool, dt_s: u64) -> Signals {
    // Used memory from one sample's own figures is immune to balloon moves in flight; the
    // host-side size is only trusted while the balloon is at rest.
    let size = match vm.available_kib {
        Some(total) => Some(total),
        None if at_rest => Some(vm.actual_kib),
        None => None,
    };
    let used = size.map(|s| s.saturating_sub(free));
    // Measured over the last two sample intervals where possible: timestamps have 1 s
    // resolution and QEMU re-arms its stats timer after each answer, so one interval of
    // "1 s" can really be 1.9 s; over two intervals that error is halved.
    let sample = match (used, h.used_kib, h.used_before_kib) {
        (Some(used), Some(_), Some(before)) => {
            Some((i64_of(used) - i64_of(before)) / i64_of(dt_s.saturating_add(h.last_step_s).max(1)))
        }
        (Some(used), Some(prev), None) => Some((i64_of(used) - i64_of(prev)) / i64_of(dt_s.max(1))),
        _ => None,
    };
    if let Some(sample) = sample {
        let rate = h.consumption_kib_s;
        let sample = u64::try_from(sample.max(0)).unwrap_or(0);
        h.consumption_kib_s = if sample >= rate {
            // Memory that just landed from a grant under check is not consumption: a guest
            // that reports it as used must show it is, by touching it (the host sees its RSS
            // grow at that rate). A guest whose grant never showed gets no rise at all.
            let shown = match (h.unverified, h.grant) {
                (true, _) => rate,
                (false, Some(g)) => touched_since_grant(config, vm, &g).map_or(rate, |(kib, s)| rate.max(kib / s)),
                (false, None) => MAX_KIB,
            };
            sample.min(rate.saturating_mul(2) + RATE_RISE_KIB_S).min(shown).min(MAX_KIB)
        } else {
            rate - ((rate - sample) * RATE_DECAY_PCT).div_ceil(100)
        };
    }
    h.used_before_kib = h.used_kib;
    h.used_kib = used;
    h.last_step_s = dt_s;
    if let (true, Some(total)) = (at_rest, vm.available_kib) {
        h.size_offset_kib = Some(i64_of(vm.actual_kib) - i64_of(total));
    }

    // What QEMU's RSS holds besides guest memory. Every page of the balloon but the free ones
    // (MemFree) has been touched (used memory, page cache, the kernel's own), so RSS minus that
    // is an upper bound of the overhead; the lowest bound seen is the best estimate. Learned
    // at rest, where the balloon size and the sample agree. A guest that under-reports its
    // free memory only lowers the bound to 0: its debt is then balloon size minus RSS, the
    // host's own figure.
    if let (Some(rss), true) = (vm.rss_kib, at_rest) {
        let touched = vm.actual_kib.saturating_sub(vm.unused_kib.unwrap_or(free));
        let bound = rss.saturating_sub(touched);
        h.overhead_kib = Some(h.overhead_kib.map_or(bound, |o| bound.min(o + OVERHEAD_DRIFT_KIB)));
    }

    let mut signals = Signals { swapped_in_kib: counter_delta(vm.swap_in_kib, h.swap_in_kib), alarm: false };
    let swapped_out = counter_delta(vm.swap_out_kib, h.swap_out_kib);
    // faults / dt ≥ 100 per second, without a division: dt is at most 2^48 (timestamps are
    // clamped to it, the interval to 3600 s), so 100 × dt cannot overflow.
    let faulting = counter_delta(vm.major_faults, h.major_faults) >= PRESSURE_MAJOR_FAULTS_PER_S * dt_s.max(1);
    let reclaimed = counter_delta(vm.direct_reclaims, h.direct_reclaims);
    if signals.swapped_in_kib > 0 || swapped_out > 0 || faulting || reclaimed > 0 {
        h.ticks_since_pressure = 0;
    }
    if counter_delta(vm.oom_kills, h.oom_kills) > 0 || counter_delta(vm.alloc_stalls, h.alloc_stalls) >= ALARM_STALLS {
        h.ticks_since_alarm = 0;
        h.ticks_since_pressure = 0;
        signals.alarm = true;
    }
    h.swap_in_kib = vm.swap_in_kib;
    h.swap_out_kib = vm.swap_out_kib;
    h.major_faults = vm.major_faults;
    h.oom_kills = vm.oom_kills;
    h.alloc_stalls = vm.alloc_stalls;
    h.direct_reclaims = vm.direct_reclaims;
    signals
}

/// Checks the last grant once a sample taken after it landed is in: its memory must show as
/// free memory, as memory the host now backs for the guest (RSS), or as consumption at the
/// rate seen before it. Without an RSS figure nothing can be proven either way, so the check
/// then only clears; with one, a guest that shows none of it is held ([`Hold::Unverified`])
/// until it does.
// Inlined like `learn`: most VMs have no grant under check and return at once.
#[inline]
fn check_grant(config: &PolicyConfig, vm: &VmStats, h: &mut VmHistory, free: u64, freshness: &Freshness) {
    let Some(mut g) = h.grant else { return };
    g.ticks = g.ticks.saturating_add(1);
    let sample_s = vm.last_update_s.unwrap_or(0);
    if g.landed_at_s.is_none() && vm.actual_kib + MOVE_SLACK_KIB >= g.target_kib {
        g.landed_at_s = Some(sample_s);
        h.grant = Some(g);
        // The sample in hand may predate the landing; the next one cannot.
        return;
    }
    let Some(landed_at_s) = g.landed_at_s else {
        h.grant = if g.ticks > GRANT_LAND_TICKS { None } else { Some(g) };
        return;
    };
    // A newer timestamp, or any new tick where the clock is frozen or absent.
    let after_landing = freshness.fresh && (sample_s > landed_at_s || !h.update_advanced);
    if !after_landing {
        h.grant = Some(g);
        return;
    }
    let dt_s = match g.decided_at_s {
        Some(decided) if sample_s > decided => sample_s - decided,
        _ => u64::from(g.ticks).saturating_mul(config.interval_s),
    };
    let consumed = g.rate_kib_s.saturating_mul(dt_s).min(MAX_KIB);
    let touched = match (vm.rss_kib, g.rss_before_kib) {
        (Some(now), Some(before)) => Some(now.saturating_sub(before)),
        _ => None,
    };
    let shown = i64_of(free) - i64_of(g.free_before_kib) + i64_of(consumed.max(touched.unwrap_or(0)));
    if shown.saturating_mul(2) >= i64_of(g.grant_kib) || touched.is_none() {
        h.grant = None;
        h.unverified = false;
    } else {
        h.unverified = true;
        h.grant = Some(g);
    }
}

/// Guest memory the host began to back since the grant under check was decided (RSS growth),
/// and over how many seconds: the host's own evidence that the guest uses memory. `None`
/// without an RSS figure.
fn touched_since_grant(config: &PolicyConfig, vm: &VmStats, g: &GrantCheck) -> Option<(u64, u64)> {
    let (Some(now), Some(before)) = (vm.rss_kib, g.rss_before_kib) else { return None };
    let seconds = match (vm.last_update_s, g.decided_at_s) {
        (Some(sample), Some(decided)) if sample > decided => sample - decided,
        _ => u64::from(g.ticks).saturating_mul(config.interval_s),
    };
    Some((now.saturating_sub(before), seconds.max(1)))
}

/// Growth of a cumulative counter since the previous sample; 0 if unknown or reset.
fn counter_delta(now: Option<u64>, prev: Option<u64>) -> u64 {
    match (now, prev) {
        (Some(now), Some(prev)) => now.saturating_sub(prev),
        _ => 0,
    }
}

/// Inputs are clamped to [`MAX_KIB`] (2^40), so they and their differences fit an `i64`.
fn i64_of(kib: u64) -> i64 {
    i64::try_from(kib.min(MAX_KIB)).unwrap_or(i64::MAX)
}

fn clamp_kib(v: i64) -> u64 {
    u64::try_from(v.max(0)).unwrap_or(0).min(MAX_KIB)
}
