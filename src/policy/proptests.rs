//! Property tests: each test is named after the invariant it checks, runs `decide()` over
//! generated multi-tick scenarios (so histories are the ones `decide()` itself builds) and
//! asserts that one rule of `invariants` on every tick. The `decide` fuzz target checks the
//! same rules on fuzzer-built inputs.
//!
//! Strategies:
//! - `valid_config`: any configuration `PolicyConfig::validate` accepts, around the defaults.
//! - `realistic_scenario`: 1..8 VMs in random slots over 1..12 ticks; sizes of real VMs
//!   (64 MiB..64 GiB), free memory within the VM or missing, MemTotal near the balloon size
//!   or missing, counters that grow, timestamps that advance by 0..2 s per tick.
//! - `arbitrary_*`: every field any `u64`, every `Option` either way, configs unvalidated.

use super::invariants::{self, Violation};
use super::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::subsequence;
use proptest::test_runner::FileFailurePersistence;

const GIB_KIB: u64 = 1024 * 1024;

fn valid_config() -> impl Strategy<Value = PolicyConfig> {
    (
        1u64..=30,
        (1u64..=1024).prop_map(mib_to_kib),
        (0u64..=4096).prop_map(mib_to_kib),
        (0u64..=1024).prop_map(mib_to_kib),
        1u64..=100,
        (1u64..=2048).prop_map(mib_to_kib),
        (0u64..=1024).prop_map(mib_to_kib),
        1u64..=10,
        2u32..=10,
        0u32..=20,
    )
        .prop_map(|(interval_s, t, r, b, frac, step, floor, lead, stale, hold)| PolicyConfig {
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
            free_figure: FreeFigure::Available,
        })
        .prop_filter("validates", |c| c.validate().is_ok())
}

/// One tick of one VM, before its timestamp is placed on the VM's clock.
fn realistic_tick() -> impl Strategy<Value = (VmStats, u64)> {
    (
        (64 * 1024u64)..=64 * GIB_KIB,
        0u64..=64 * GIB_KIB,
        prop::option::weighted(0.9, 0u64..=1000),
        prop::option::weighted(0.8, 0u64..=256 * 1024),
        prop::option::weighted(0.8, (0u64..=8 * GIB_KIB, 0u64..=8 * GIB_KIB, 0u64..=100_000)),
        0u64..=2,
    )
        .prop_map(|(actual, headroom, unused_permille, offset, counters, advance)| {
            let unused = unused_permille.map(|p| actual / 1000 * p);
            let vm = VmStats {
                actual_kib: actual,
                max_kib: actual.saturating_add(headroom),
                unused_kib: unused,
                usable_kib: unused,
                available_kib: offset.map(|o| actual.saturating_sub(o)),
                swap_in_kib: counters.map(|c| c.0),
                swap_out_kib: counters.map(|c| c.1),
                major_faults: counters.map(|c| c.2),
                last_update_s: None,
                rss_kib: None,
                oom_kills: None,
                alloc_stalls: None,
                direct_reclaims: None,
            };
            (vm, advance)
        })
}

#[derive(Clone, Debug)]
struct Scenario {
    slots: Vec<usize>,
    /// `ticks[t][i]`: VM `i` (in `slots[i]`) at tick `t`.
    ticks: Vec<Vec<VmStats>>,
    hosts: Vec<HostStats>,
}

fn realistic_scenario() -> impl Strategy<Value = Scenario> {
    (1usize..=8, 1usize..=12).prop_flat_map(|(n, t)| {
        (
            subsequence((0..MAX_DOMAINS).collect::<Vec<_>>(), n),
            vec(vec(realistic_tick(), n), t),
            vec((0u64..=32 * GIB_KIB, 0u64..=64 * GIB_KIB), t),
            1_600_000_000u64..1_900_000_000,
        )
            .prop_map(|(slots, raw, hosts, epoch)| {
                let mut clocks = vec![epoch; slots.len()];
                let ticks = raw
                    .into_iter()
                    .map(|row| {
                        row.into_iter()
                            .zip(clocks.iter_mut())
                            .map(|((mut vm, advance), clock)| {
                                *clock += advance;
                                vm.last_update_s = Some(*clock);
                                vm
                            })
                            .collect()
                    })
                    .collect();
                let hosts = hosts
                    .into_iter()
                    .map(|(available_kib, total_kib)| HostStats { available_kib, total_kib })
                    .collect();
                Scenario { slots, ticks, hosts }
            })
    })
}

fn snapshot_of(s: &Scenario, tick: usize) -> Snapshot {
    let mut snap = Snapshot::EMPTY;
    snap.host = s.hosts[tick];
    for (slot, vm) in s.slots.iter().zip(&s.ticks[tick]) {
        snap.vms[*slot] = Some(*vm);
    }
    snap
}

/// Runs the scenario, calling `check` after every tick with the history it started from.
fn run_scenario(
    config: &PolicyConfig,
    s: &Scenario,
    mut check: impl FnMut(&Snapshot, &History, &Decisions) -> Result<(), Violation>,
) -> Result<(), TestCaseError> {
    let mut history = History::EMPTY;
    for tick in 0..s.ticks.len() {
        let snap = snapshot_of(s, tick);
        let before = history;
        let mut d = Decisions::EMPTY;
        decide_all_applied(config, &snap, &mut history, &mut d);
        check(&snap, &before, &d).map_err(|v| TestCaseError::fail(format!("tick {tick}: {v}")))?;
    }
    Ok(())
}

fn per_vm(config: &PolicyConfig, s: &Scenario, rule: invariants::RuleFn) -> Result<(), TestCaseError> {
    run_scenario(config, s, |snap, before, d| invariants::check_each_vm(config, snap, before, d, rule))
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
    )
        .prop_map(|(actual_kib, max_kib, o)| VmStats {
            actual_kib,
            max_kib,
            unused_kib: o[0],
            usable_kib: o[1],
            available_kib: o[2],
            swap_in_kib: o[3],
            swap_out_kib: o[4],
            major_faults: o[5],
            last_update_s: o[6],
            rss_kib: None,
            oom_kills: None,
            alloc_stalls: None,
            direct_reclaims: None,
        })
}

fn arbitrary_config() -> impl Strategy<Value = PolicyConfig> {
    (
        [edgy_u64(), edgy_u64(), edgy_u64(), edgy_u64(), edgy_u64(), edgy_u64(), edgy_u64(), edgy_u64()],
        any::<[u32; 2]>(),
    )
        .prop_map(|(u, w)| PolicyConfig {
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
            free_figure: FreeFigure::Available,
        })
}

proptest! {
    // Regressions live beside this file (src/policy/proptests.proptest-regressions), not in a
    // directory of their own at the top level.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn targets_stay_within_floor_and_max(config in valid_config(), s in realistic_scenario()) {
        per_vm(&config, &s, invariants::targets_within_bounds)?;
    }

    #[test]
    fn no_shrink_leaves_predicted_unused_below_the_threshold(config in valid_config(), s in realistic_scenario()) {
        per_vm(&config, &s, invariants::shrink_keeps_threshold)?;
    }

    #[test]
    fn host_grants_never_push_the_host_to_or_below_its_reserve(config in valid_config(), s in realistic_scenario()) {
        run_scenario(&config, &s, |snap, _, d| {
            invariants::host_reserve_kept(&config, snap, d).map_err(|rule| Violation { slot: None, rule })
        })?;
    }

    #[test]
    fn per_tick_release_stays_within_the_step_cap_and_the_fraction(config in valid_config(), s in realistic_scenario()) {
        per_vm(&config, &s, invariants::release_within_limits)?;
    }

    #[test]
    fn missing_or_stale_stats_are_never_acted_on(config in valid_config(), s in realistic_scenario()) {
        per_vm(&config, &s, invariants::no_action_without_fresh_stats)?;
    }

    #[test]
    fn stats_frozen_after_advancing_get_no_action_from_stale_ticks_on(
        config in valid_config(),
        first in realistic_tick(),
        later in vec(realistic_tick(), 12),
    ) {
        let mut history = History::EMPTY;
        let mut snap = Snapshot::EMPTY;
        snap.host.available_kib = 64 * GIB_KIB;
        for (tick, (vm, _)) in std::iter::once(first).chain(later).enumerate() {
            let stamp = if tick == 0 { 100 } else { 101 };
            snap.vms[3] = Some(VmStats { last_update_s: Some(stamp), ..vm });
            let mut d = Decisions::EMPTY;
            decide_all_applied(&config, &snap, &mut history, &mut d);
            let unchanged_ticks = tick.saturating_sub(1);
            if unchanged_ticks >= config.stale_ticks as usize && vm.unused_kib.is_some() {
                prop_assert_eq!(d.vms[3].action, Action::Hold(Hold::Stale), "tick {}", tick);
            }
        }
    }

    #[test]
    fn decide_is_deterministic(config in valid_config(), s in realistic_scenario()) {
        let mut a = History::EMPTY;
        let mut b = History::EMPTY;
        for tick in 0..s.ticks.len() {
            let snap = snapshot_of(&s, tick);
            let (mut da, mut db) = (Decisions::EMPTY, Decisions::EMPTY);
            decide_all_applied(&config, &snap, &mut a, &mut da);
            decide_all_applied(&config, &snap, &mut b, &mut db);
            prop_assert_eq!(da, db);
            prop_assert_eq!(a, b);
        }
    }

    #[test]
    fn decide_never_panics_and_keeps_every_invariant_on_arbitrary_u64_inputs(
        config in arbitrary_config(),
        vms in vec((0..MAX_DOMAINS, arbitrary_vm()), 1..16),
        hosts in vec((edgy_u64(), edgy_u64()), 1..6),
    ) {
        let mut history = History::EMPTY;
        for (available_kib, total_kib) in hosts {
            let mut snap = Snapshot::EMPTY;
            snap.host = HostStats { available_kib, total_kib };
            for (slot, vm) in &vms {
                snap.vms[*slot] = Some(*vm);
            }
            let before = history;
            let mut d = Decisions::EMPTY;
            decide_all_applied(&config, &snap, &mut history, &mut d);
            invariants::check(&config, &snap, &before, &d).map_err(|v| TestCaseError::fail(v.to_string()))?;
        }
    }
}
