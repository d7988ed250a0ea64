//! Property tests: each test is named after the invariant it checks, runs `decide()` over
//! generated multi-tick scenarios (so histories are the ones `decide()` itself builds, and
//! balloons move to the targets it sets) and asserts one rule of `invariants` on every tick,
//! which recomputes what it needs independently. The `decide` fuzz target checks the same
//! rules on fuzzer-built inputs. `make test` also runs these in a debug build, with overflow
//! checks on.
//!
//! Strategies:
//! - `valid_config`: any configuration `PolicyConfig::validate` accepts, around the defaults.
//! - `guest_world`: 1..8 VMs in random slots with operator limits, over 2..16 ticks. Each VM
//!   has a constant offset between balloon size and MemTotal, uses memory that moves by a
//!   random step each tick, has page cache on top (so MemAvailable exceeds MemFree), touched
//!   memory the host backs (RSS is at least used memory plus QEMU's overhead), counters that
//!   only grow, a timestamp that advances by 0..2 s a tick (sometimes frozen or absent). The
//!   balloon rests unless `decide()` moved it (then it lands, fully or part-way) or, rarely,
//!   someone else does. Host MemAvailable shrinks by what guests touch.
//! - `arbitrary_*`: every field any `u64`, every `Option` either way, configs unvalidated.

use super::invariants::{self, RuleFn, Violation};
use super::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::subsequence;
use proptest::test_runner::FileFailurePersistence;

const GIB_KIB: u64 = 1024 * 1024;

fn valid_config() -> impl Strategy<Value = PolicyConfig> {
    (
        (1u64..=30, (1u64..=1024).prop_map(mib_to_kib), (0u64..=4096).prop_map(mib_to_kib)),
        ((0u64..=1024).prop_map(mib_to_kib), 1u64..=100, (1u64..=2048).prop_map(mib_to_kib)),
        ((0u64..=1024).prop_map(mib_to_kib), 1u64..=10, 2u32..=10, 0u32..=20),
        any::<bool>(),
    )
        .prop_map(|((interval_s, t, r), (b, frac, step), (floor, lead, stale, hold), unused)| PolicyConfig {
            interval_s,
            vm_min_unused_kib: t,
            host_min_free_kib: r,
            shrink_band_kib: b,
            shrink_fraction_pct: frac,
            shrink_step_max_kib: step,
            vm_min_size_kib: floor,
            lead_ticks: lead,
            stale_ticks: stale,
            holdoff_ticks: hold,
            free_figure: if unused { FreeFigure::Unused } else { FreeFigure::Available },
        })
        .prop_filter("validates", |c| c.validate().is_ok())
}

/// How one VM behaves over the scenario.
#[derive(Clone, Debug)]
struct Guest {
    slot: usize,
    max_kib: u64,
    start_kib: u64,
    /// Balloon size minus MemTotal (kernel reserved).
    offset_kib: u64,
    used_kib: u64,
    cache_kib: u64,
    overhead_kib: u64,
    limits: VmLimits,
    /// How the sample clock moves: 0 frozen, 1 advancing, 2 absent.
    clock: u8,
    /// Reports RSS.
    rss: bool,
}

/// One tick's random events for one VM.
#[derive(Clone, Copy, Debug)]
struct Step {
    /// Change of used memory, KiB (may be negative).
    used_delta: i64,
    cache_delta: i64,
    clock_advance: u64,
    /// Share (percent) of a move that lands by the next tick.
    landing_pct: u64,
    /// Someone else sets the balloon to this share (percent) of max.
    outside_move: Option<u64>,
    swap_in: u64,
    faults: u64,
}

#[derive(Clone, Debug)]
struct World {
    guests: Vec<Guest>,
    steps: Vec<Vec<Step>>,
    host_base_kib: u64,
}

fn guest() -> impl Strategy<Value = Guest> {
    (
        ((256 * 1024u64)..=16 * GIB_KIB, 0u64..=100, 0u64..=128 * 1024),
        (0u64..=100, 0u64..=100, (16 * 1024u64)..=256 * 1024),
        (prop::option::weighted(0.2, 0u64..=100), prop::option::weighted(0.2, 0u64..=100), 1u32..=4),
        (0u8..=9, any::<bool>()),
    )
        .prop_map(
            |((max, start_pct, offset), (used_pct, cache_pct, overhead), (min_pct, cap_pct, weight), (clock, rss))| {
                let start = (max / 100 * start_pct.max(10)).max(128 * 1024);
                let total = start - offset.min(start / 2);
                let used = total / 100 * used_pct;
                Guest {
                    slot: 0,
                    max_kib: max,
                    start_kib: start,
                    offset_kib: start - total,
                    used_kib: used,
                    cache_kib: (total - used) / 100 * cache_pct,
                    overhead_kib: overhead,
                    limits: VmLimits {
                        min_kib: min_pct.map(|p| max / 100 * p),
                        max_kib: cap_pct.map(|p| max / 100 * p),
                        weight,
                    },
                    clock: match clock {
                        0 => 0,
                        9 => 2,
                        _ => 1,
                    },
                    rss,
                }
            },
        )
}

fn step() -> impl Strategy<Value = Step> {
    (
        (-64 * 1024i64..=64 * 1024, -32 * 1024i64..=32 * 1024, 0u64..=2),
        (0u64..=100, prop::option::weighted(0.03, 10u64..=100)),
        (prop::option::weighted(0.1, 1u64..=64 * 1024), prop::option::weighted(0.1, 1u64..=1000)),
    )
        .prop_map(|((used_delta, cache_delta, clock_advance), (landing_pct, outside_move), (swap_in, faults))| {
            Step {
                used_delta,
                cache_delta,
                clock_advance,
                landing_pct: if landing_pct > 20 { 100 } else { landing_pct * 5 },
                outside_move,
                swap_in: swap_in.unwrap_or(0),
                faults: faults.unwrap_or(0),
            }
        })
}

fn guest_world() -> impl Strategy<Value = World> {
    (1usize..=8, 2usize..=16).prop_flat_map(|(n, t)| {
        (
            subsequence((0..MAX_DOMAINS).collect::<Vec<_>>(), n),
            vec(guest(), n),
            vec(vec(step(), n), t),
            (0u64..=48 * GIB_KIB),
        )
            .prop_map(|(slots, mut guests, steps, host_base_kib)| {
                for (g, slot) in guests.iter_mut().zip(slots) {
                    g.slot = slot;
                }
                World { guests, steps, host_base_kib }
            })
    })
}

/// A guest's state while the scenario runs.
#[derive(Clone, Copy, Debug)]
struct Live {
    actual_kib: u64,
    target_kib: u64,
    used_kib: u64,
    cache_kib: u64,
    touched_kib: u64,
    clock_s: u64,
    swap_in_kib: u64,
    faults: u64,
}

fn stats_of(g: &Guest, l: &Live) -> VmStats {
    let total = l.actual_kib.saturating_sub(g.offset_kib);
    let used = l.used_kib.min(total);
    let free = total - used;
    let cache = l.cache_kib.min(free);
    VmStats {
        actual_kib: l.actual_kib,
        max_kib: g.max_kib,
        unused_kib: Some(free - cache),
        usable_kib: Some(free),
        available_kib: Some(total),
        swap_in_kib: Some(l.swap_in_kib),
        swap_out_kib: Some(0),
        major_faults: Some(l.faults),
        last_update_s: match g.clock {
            2 => None,
            _ => Some(l.clock_s),
        },
        rss_kib: g.rss.then_some(l.touched_kib + g.overhead_kib),
        oom_kills: None,
        alloc_stalls: None,
        direct_reclaims: None,
    }
}

/// Runs the world, calling `check` after every tick with the history it started from.
fn run_world(
    config: &PolicyConfig,
    w: &World,
    mut check: impl FnMut(&Snapshot, &History, &Decisions) -> Result<(), Violation>,
) -> Result<(), TestCaseError> {
    let mut history = History::EMPTY;
    let mut decisions = Decisions::EMPTY;
    let mut live: Vec<Live> = w
        .guests
        .iter()
        .map(|g| Live {
            actual_kib: g.start_kib,
            target_kib: g.start_kib,
            used_kib: g.used_kib,
            cache_kib: g.cache_kib,
            touched_kib: g.used_kib + g.cache_kib,
            clock_s: 1_700_000_000,
            swap_in_kib: 0,
            faults: 0,
        })
        .collect();
    for (tick, steps) in w.steps.iter().enumerate() {
        let mut snap = Snapshot::EMPTY;
        let touched: u64 = live.iter().map(|l| l.touched_kib).sum();
        snap.host = HostStats { available_kib: w.host_base_kib.saturating_sub(touched), total_kib: 64 * GIB_KIB };
        for (g, l) in w.guests.iter().zip(&live) {
            snap.vms[g.slot] = Some(stats_of(g, l));
            snap.limits[g.slot] = g.limits;
        }
        let before = history;
        decide_all_applied(config, &snap, &mut history, &mut decisions);
        check(&snap, &before, &decisions).map_err(|v| TestCaseError::fail(format!("tick {tick}: {v}")))?;
        // The world moves on: balloons toward their targets, guests use memory, clocks tick.
        for ((g, l), s) in w.guests.iter().zip(live.iter_mut()).zip(steps) {
            if let Some(target) = decisions.vms[g.slot].action.target_kib() {
                l.target_kib = target;
            }
            if let Some(pct) = s.outside_move {
                l.target_kib = (g.max_kib / 100 * pct).max(64 * 1024);
            }
            let moved = l.target_kib.abs_diff(l.actual_kib) / 100 * s.landing_pct;
            l.actual_kib = if l.target_kib > l.actual_kib { l.actual_kib + moved } else { l.actual_kib - moved };
            // A guest cannot give back what it uses.
            l.actual_kib = l.actual_kib.max(l.used_kib + g.offset_kib);
            let total = l.actual_kib.saturating_sub(g.offset_kib);
            l.used_kib = l.used_kib.saturating_add_signed(s.used_delta).min(total);
            l.cache_kib = l.cache_kib.saturating_add_signed(s.cache_delta).min(total - l.used_kib);
            l.touched_kib = l.touched_kib.max(l.used_kib + l.cache_kib).min(l.actual_kib);
            if g.clock == 1 {
                l.clock_s += s.clock_advance;
            }
            l.swap_in_kib += s.swap_in;
            l.faults += s.faults;
        }
    }
    Ok(())
}

fn per_vm(config: &PolicyConfig, w: &World, rule: RuleFn) -> Result<(), TestCaseError> {
    run_world(config, w, |snap, before, d| invariants::check_each_vm(config, snap, before, d, rule))
}

/// Any u64, with the edges (0, 1, small, u64::MAX) as likely as the rest.
fn edgy_u64() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(1), Just(u64::MAX), Just(u64::MAX - 1), 0u64..=1 << 24, any::<u64>()]
}

fn edgy_option() -> impl Strategy<Value = Option<u64>> {
    prop::option::of(edgy_u64())
}

fn arbitrary_vm() -> impl Strategy<Value = VmStats> {
    (
        edgy_u64(),
        edgy_u64(),
        [edgy_option(), edgy_option(), edgy_option(), edgy_option(), edgy_option(), edgy_option(), edgy_option()],
        [edgy_option(), edgy_option(), edgy_option(), edgy_option()],
    )
        .prop_map(|(actual_kib, max_kib, o, p)| VmStats {
            actual_kib,
            max_kib,
            unused_kib: o[0],
            usable_kib: o[1],
            available_kib: o[2],
            swap_in_kib: o[3],
            swap_out_kib: o[4],
            major_faults: o[5],
            last_update_s: o[6],
            rss_kib: p[0],
            oom_kills: p[1],
            alloc_stalls: p[2],
            direct_reclaims: p[3],
        })
}

fn arbitrary_limits() -> impl Strategy<Value = VmLimits> {
    (edgy_option(), edgy_option(), any::<u32>()).prop_map(|(min_kib, max_kib, weight)| VmLimits {
        min_kib,
        max_kib,
        weight,
    })
}

fn arbitrary_config() -> impl Strategy<Value = PolicyConfig> {
    (
        [edgy_u64(), edgy_u64(), edgy_u64(), edgy_u64(), edgy_u64(), edgy_u64(), edgy_u64(), edgy_u64()],
        any::<[u32; 2]>(),
        any::<bool>(),
    )
        .prop_map(|(u, w, unused)| PolicyConfig {
            interval_s: u[0],
            vm_min_unused_kib: u[1],
            host_min_free_kib: u[2],
            shrink_band_kib: u[3],
            shrink_fraction_pct: u[4],
            shrink_step_max_kib: u[5],
            vm_min_size_kib: u[6],
            lead_ticks: u[7],
            stale_ticks: w[0],
            holdoff_ticks: w[1],
            free_figure: if unused { FreeFigure::Unused } else { FreeFigure::Available },
        })
}

proptest! {
    // Regressions live beside this file (src/policy/proptests.proptest-regressions), not in a
    // directory of their own at the top level.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        cases: 512,
        ..ProptestConfig::default()
    })]

    #[test]
    fn targets_stay_within_floor_and_cap_on_whole_pages(config in valid_config(), w in guest_world()) {
        per_vm(&config, &w, invariants::targets_within_bounds)?;
    }

    #[test]
    fn no_shrink_leaves_recomputed_free_memory_below_what_the_vm_must_keep(config in valid_config(), w in guest_world()) {
        per_vm(&config, &w, invariants::shrink_keeps_threshold)?;
    }

    #[test]
    fn growth_never_takes_the_host_headroom_to_or_below_its_reserve(config in valid_config(), w in guest_world()) {
        run_world(&config, &w, |snap, _, d| {
            invariants::host_reserve_kept(&config, snap, d).map_err(|rule| Violation { slot: None, rule })
        })?;
    }

    #[test]
    fn per_tick_release_stays_within_the_step_cap_and_the_fraction(config in valid_config(), w in guest_world()) {
        per_vm(&config, &w, invariants::release_within_limits)?;
    }

    #[test]
    fn missing_stale_or_impossible_stats_are_never_acted_on(config in valid_config(), w in guest_world()) {
        per_vm(&config, &w, invariants::no_action_without_fresh_stats)?;
    }

    #[test]
    fn under_shortage_no_vm_grows_by_more_than_the_step_cap(config in valid_config(), w in guest_world()) {
        run_world(&config, &w, |snap, _, d| {
            invariants::shortage_caps_each_grant(&config, snap, d).map_err(|rule| Violation { slot: None, rule })
        })?;
    }

    #[test]
    fn the_same_sample_is_never_acted_on_twice(config in valid_config(), w in guest_world()) {
        // After a tick whose actions all applied, the same sample again (timestamps unchanged,
        // balloons not moved yet) gets no new grow or shrink.
        run_world(&config, &w, |snap, before, _| {
            let mut again = *snap;
            let mut history = *before;
            let mut d = Decisions::EMPTY;
            decide_all_applied(&config, snap, &mut history, &mut d);
            let acted: Vec<usize> = (0..MAX_DOMAINS).filter(|s| d.vms[*s].action.target_kib().is_some()).collect();
            for vm in again.vms.iter_mut().flatten() {
                vm.rss_kib = vm.rss_kib.map(|r| r + 1);
            }
            let mut second = Decisions::EMPTY;
            decide_all_applied(&config, &again, &mut history, &mut second);
            for slot in acted {
                let stamped = snap.vms[slot].is_some_and(|vm| vm.last_update_s.is_some_and(|t| Some(t) != before.vms[slot].last_update_s));
                if stamped && matches!(second.vms[slot].action, Action::Grow { .. } | Action::Shrink { .. }) {
                    return Err(Violation { slot: Some(slot), rule: "acted twice on one sample" });
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn weighted_fill_gives_no_vm_more_per_weight_than_one_left_below_its_cap(
        items in vec((0u64..=1 << 30, 1u64..=1000), 1..40),
        budget in 0u64..=1 << 36,
    ) {
        let mut caps = [0u64; MAX_DOMAINS];
        let mut weights = [1u64; MAX_DOMAINS];
        let slots: Vec<u16> = (0..items.len()).map(|i| u16::try_from(i).unwrap()).collect();
        for (i, (cap, w)) in items.iter().enumerate() {
            caps[i] = *cap;
            weights[i] = *w;
        }
        let mut grants = [0u64; MAX_DOMAINS];
        let spent = share::weighted_fill(&slots, &caps, &weights, budget, &mut grants);
        let total_cap: u64 = caps.iter().sum();
        prop_assert_eq!(spent, grants.iter().sum::<u64>());
        prop_assert!(spent <= budget);
        // Work-conserving up to one KiB of rounding per VM.
        prop_assert!(spent + items.len() as u64 >= budget.min(total_cap));
        for i in 0..items.len() {
            prop_assert!(grants[i] <= caps[i]);
            if grants[i] < caps[i] {
                for j in 0..items.len() {
                    // grants[j] / w[j] <= grants[i] / w[i], within the rounding: each share is
                    // rounded down to a KiB and the remainders go to those served last.
                    let slack = items.len() as u64;
                    prop_assert!(grants[j].saturating_sub(slack) * weights[i] <= (grants[i] + 1) * weights[j],
                        "VM {} got {} (weight {}), VM {} left below its cap got {} (weight {})",
                        j, grants[j], weights[j], i, grants[i], weights[i]);
                }
            }
        }
    }

    #[test]
    fn decide_never_panics_and_keeps_every_invariant_on_arbitrary_u64_inputs(
        config in arbitrary_config(),
        vms in vec((0..MAX_DOMAINS, arbitrary_vm(), arbitrary_limits()), 1..16),
        hosts in vec((edgy_u64(), edgy_u64()), 1..6),
    ) {
        let mut history = History::EMPTY;
        for (available_kib, total_kib) in hosts {
            let mut snap = Snapshot::EMPTY;
            snap.host = HostStats { available_kib, total_kib };
            for (slot, vm, limits) in &vms {
                snap.vms[*slot] = Some(*vm);
                snap.limits[*slot] = *limits;
            }
            let before = history;
            let mut d = Decisions::EMPTY;
            decide_all_applied(&config, &snap, &mut history, &mut d);
            invariants::check(&config, &snap, &before, &d).map_err(|v| TestCaseError::fail(v.to_string()))?;
            let mut out = Decisions::EMPTY;
            restore(&config, &snap, &history, &mut out);
        }
    }
}
