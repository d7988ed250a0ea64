//! Behaviour of `decide()` on small, hand-built ticks. Figures in MiB unless named otherwise.

use super::*;
use crate::units::{kib_to_mib, mib_to_kib};

const MIB: u64 = 1024;

fn cfg() -> PolicyConfig {
    PolicyConfig::DEFAULT
}

/// A VM with MemTotal equal to its balloon size (offset 0), stamped `t`.
fn vm(actual_mib: u64, max_mib: u64, unused_mib: u64, t: u64) -> VmStats {
    VmStats {
        actual_kib: mib_to_kib(actual_mib),
        max_kib: mib_to_kib(max_mib),
        unused_kib: Some(mib_to_kib(unused_mib)),
        usable_kib: Some(mib_to_kib(unused_mib)),
        available_kib: Some(mib_to_kib(actual_mib)),
        swap_in_kib: Some(0),
        swap_out_kib: Some(0),
        major_faults: Some(0),
        last_update_s: Some(t),
        rss_kib: None,
        oom_kills: None,
        alloc_stalls: None,
        direct_reclaims: None,
    }
}

fn snapshot(host_mib: u64, vms: &[VmStats]) -> Snapshot {
    let mut s = Snapshot::EMPTY;
    s.host = HostStats { available_kib: mib_to_kib(host_mib), total_kib: mib_to_kib(24 * 1024) };
    for (slot, v) in vms.iter().enumerate() {
        s.vms[slot] = Some(*v);
    }
    s
}

fn run(c: &PolicyConfig, s: &Snapshot, h: &mut History) -> Decisions {
    let before = *h;
    let mut d = Decisions::EMPTY;
    decide_all_applied(c, s, h, &mut d);
    invariants::check(c, s, &before, &d).unwrap();
    d
}

/// Runs `s` after a first look at the same VMs one second earlier (a VM seen for the first
/// time is only observed), so the tick under test sees VMs at rest.
fn run_settled(c: &PolicyConfig, s: &Snapshot, h: &mut History) -> Decisions {
    let mut first = *s;
    for vm in first.vms.iter_mut().flatten() {
        vm.last_update_s = vm.last_update_s.map(|t| t - 1);
    }
    let d = run(c, &first, h);
    for (vm, d) in first.vms.iter().zip(&d.vms) {
        if vm.is_some() {
            assert_eq!(d.action, Action::Hold(Hold::Settling), "a first look must not act");
        }
    }
    run(c, s, h)
}

fn target_mib(a: Action) -> Option<u64> {
    a.target_kib().map(kib_to_mib)
}

#[test]
fn starving_vm_without_known_consumption_grows_to_threshold_plus_half_band() {
    // 512 MiB VM with 60 MiB free, first sample: grow to 100 + 64 = 164 MiB free.
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(8192, &[vm(512, 2048, 60, 1000)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Grow { target_kib: mib_to_kib(512 + 104) });
}

#[test]
fn consuming_vm_is_given_its_lead_before_it_starves() {
    // Free memory falls 24 MiB/s: at 150 MiB free it is not starving yet but will be within
    // the 3 s lead, so it grows to 100 + 3*24 + 64 MiB free.
    let mut h = History::EMPTY;
    run(&cfg(), &snapshot(8192, &[vm(512, 2048, 174, 1000)]), &mut h);
    let d = run(&cfg(), &snapshot(8192, &[vm(512, 2048, 150, 1001)]), &mut h);
    assert_eq!(d.vms[0].consumption_kib_s, 24 * MIB);
    assert_eq!(d.vms[0].keep_kib, mib_to_kib(100 + 72));
    assert_eq!(target_mib(d.vms[0].action), Some(512 + (236 - 150)));
}

#[test]
fn consumption_is_measured_over_two_intervals_rises_at_once_and_decays_by_a_quarter() {
    let mut h = History::EMPTY;
    let c = cfg();
    run(&c, &snapshot(8192, &[vm(1024, 2048, 900, 1)]), &mut h);
    // With one interval known, it is used alone.
    run(&c, &snapshot(8192, &[vm(1024, 2048, 860, 2)]), &mut h);
    assert_eq!(h.vms[0].consumption_kib_s, 40 * MIB);
    // Over two intervals: 40 MiB in 2 s is 20 MiB/s, below the estimate: it decays by a
    // quarter of the difference.
    run(&c, &snapshot(8192, &[vm(1024, 2048, 860, 3)]), &mut h);
    assert_eq!(h.vms[0].consumption_kib_s, 35 * MIB);
    // 160 MiB over the last 3 s (a sample two seconds late) is 53 MiB/s: taken at once.
    run(&c, &snapshot(8192, &[vm(1024, 2048, 700, 5)]), &mut h);
    assert_eq!(h.vms[0].consumption_kib_s, 160 * MIB / 3);
}

#[test]
fn a_sample_that_only_looks_one_second_apart_counts_half() {
    // Steady 24 MiB/s, but samples arrive 1.5 s apart on average, so timestamps step by 1
    // and 2 in turn: 36 MiB in "1 s", then 36 MiB in "2 s". One interval alone would read
    // 36 MiB/s; two intervals read 24.
    let mut h = History::EMPTY;
    let c = cfg();
    let mut free = 1500;
    let mut t = 100;
    for step in [1, 2, 1, 2, 1, 2, 1] {
        run(&c, &snapshot(8192, &[vm(2048, 2048, free, t)]), &mut h);
        free -= 36;
        t += step;
    }
    assert!(h.vms[0].consumption_kib_s <= 30 * MIB, "{} KiB/s", h.vms[0].consumption_kib_s);
    assert!(h.vms[0].consumption_kib_s >= 20 * MIB, "{} KiB/s", h.vms[0].consumption_kib_s);
}

#[test]
fn freeing_memory_never_makes_consumption_negative() {
    let mut h = History::EMPTY;
    run(&cfg(), &snapshot(8192, &[vm(2048, 2048, 100, 1)]), &mut h);
    run(&cfg(), &snapshot(8192, &[vm(2048, 2048, 1900, 2)]), &mut h);
    assert_eq!(h.vms[0].consumption_kib_s, 0);
}

#[test]
fn vm_without_stats_is_left_alone() {
    let mut h = History::EMPTY;
    let mut no_driver = vm(512, 2048, 10, 5);
    no_driver.unused_kib = None;
    let mut never_answered = vm(512, 2048, 10, 0);
    never_answered.last_update_s = Some(0);
    let d = run(&cfg(), &snapshot(8192, &[no_driver, never_answered]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::NoStats));
    assert_eq!(d.vms[1].action, Action::Hold(Hold::NoStats));
}

#[test]
fn stats_that_stop_advancing_are_stale_after_stale_ticks() {
    let c = cfg();
    let mut h = History::EMPTY;
    run(&c, &snapshot(8192, &[vm(512, 2048, 300, 10)]), &mut h);
    run(&c, &snapshot(8192, &[vm(512, 2048, 300, 11)]), &mut h);
    for _ in 1..c.stale_ticks {
        let d = run(&c, &snapshot(8192, &[vm(512, 2048, 50, 11)]), &mut h);
        assert_ne!(d.vms[0].action, Action::Hold(Hold::Stale));
    }
    let d = run(&c, &snapshot(8192, &[vm(512, 2048, 50, 11)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::Stale));
    // Advancing again makes it live.
    let d = run(&c, &snapshot(8192, &[vm(512, 2048, 50, 12)]), &mut h);
    assert!(matches!(d.vms[0].action, Action::Grow { .. }));
}

#[test]
fn a_clock_that_never_moved_is_frozen_not_stale() {
    // libvirt's test driver: the same last_update forever. After stale_ticks ticks each tick
    // counts as a new sample, so the VM is still served.
    let c = cfg();
    let mut h = History::EMPTY;
    let mut actions = 0;
    let mut actual = 2048;
    for _ in 0..20 {
        let d = run(&c, &snapshot(8192, &[vm(actual, 8192, actual / 2, 627_319_920)]), &mut h);
        assert_ne!(d.vms[0].action, Action::Hold(Hold::Stale));
        if let Some(t) = target_mib(d.vms[0].action) {
            actions += 1;
            actual = t;
        }
    }
    assert!(actions > 5, "only {actions} actions");
    assert!(actual < 1024);
}

#[test]
fn a_sample_already_acted_on_is_not_acted_on_again() {
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(8192, &[vm(512, 2048, 60, 100)]), &mut h);
    assert!(matches!(d.vms[0].action, Action::Grow { .. }));
    // Next tick, the balloon has moved but the guest has not answered yet.
    let d = run(&cfg(), &snapshot(8192, &[vm(616, 2048, 60, 100)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::AwaitingStats));
}

#[test]
fn a_sample_taken_before_a_grow_landed_is_not_counted_twice() {
    // Offset learned at rest: balloon 1024, MemTotal 992. The VM is then shrunk from outside
    // to 880 (as the course harness did) and starves; we grow it. The next sample was taken
    // before the grow landed (MemTotal still 848, 56 MiB free) while the balloon is already
    // at 988: the guest really has 164 MiB free, so no second grow.
    let mut h = History::EMPTY;
    let mut a = vm(1024, 2048, 200, 1);
    a.available_kib = Some(mib_to_kib(992));
    run(&cfg(), &snapshot(8192, &[a]), &mut h);
    a.last_update_s = Some(2);
    run(&cfg(), &snapshot(8192, &[a]), &mut h);
    assert_eq!(h.vms[0].size_offset_kib, Some(32 * 1024));

    let mut b = vm(880, 2048, 56, 3);
    b.available_kib = Some(mib_to_kib(848));
    // The outside change is waited out for one round (the balloon moved, not to our target).
    let d = run(&cfg(), &snapshot(8192, &[b]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::Settling));
    b.last_update_s = Some(4);
    let d = run(&cfg(), &snapshot(8192, &[b]), &mut h);
    assert_eq!(d.vms[0].action, Action::Grow { target_kib: mib_to_kib(880 + 108) });

    b.actual_kib = mib_to_kib(988);
    b.last_update_s = Some(5);
    let d = run(&cfg(), &snapshot(8192, &[b]), &mut h);
    assert_eq!(d.vms[0].unused_now_kib, Some(mib_to_kib(164)));
    assert_eq!(d.vms[0].action, Action::Hold(Hold::Holdoff));
}

#[test]
fn a_balloon_moving_to_someone_elses_target_is_left_alone_until_it_rests() {
    // libvirt balloons a freshly booted guest from 2048 to 512 MiB: seen mid-way at 1969 MiB
    // with 1858 MiB free, it must not be given a target of its own until it rests.
    let mut h = History::EMPTY;
    let d = run(&cfg(), &snapshot(8192, &[vm(1969, 2048, 1858, 10)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::Settling));
    // A slow balloon, still moving: waited for up to SETTLE_TICKS rounds, then served anyway.
    for (i, size) in [1800, 1600, 1400, 1200, 1000, 800].into_iter().enumerate() {
        let d = run(&cfg(), &snapshot(8192, &[vm(size, 2048, size - 111, 11 + i as u64)]), &mut h);
        if i + 1 < SETTLE_TICKS as usize {
            assert_eq!(d.vms[0].action, Action::Hold(Hold::Settling), "round {i}");
        } else {
            assert!(matches!(d.vms[0].action, Action::Shrink { .. }), "round {i}: {:?}", d.vms[0]);
        }
    }
    // At rest, it is served at once.
    let mut h = History::EMPTY;
    run(&cfg(), &snapshot(8192, &[vm(1969, 2048, 1857, 10)]), &mut h);
    run(&cfg(), &snapshot(8192, &[vm(512, 2048, 400, 11)]), &mut h);
    let d = run(&cfg(), &snapshot(8192, &[vm(512, 2048, 400, 12)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Shrink { target_kib: mib_to_kib(512 - 75) });
}

#[test]
fn idle_vm_gives_a_quarter_of_its_excess_per_tick_at_most() {
    // The course example: a VM with 300 MiB free must not give 200 MiB in one step.
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(8192, &[vm(1024, 2048, 300, 10)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Shrink { target_kib: mib_to_kib(1024 - 50) });
}

#[test]
fn shrink_step_is_capped() {
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(8192, &[vm(2048, 2048, 1900, 10)]), &mut h);
    assert_eq!(target_mib(d.vms[0].action), Some(2048 - 256));
}

#[test]
fn vm_within_the_band_is_steady() {
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(8192, &[vm(1024, 2048, 220, 10)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::Steady));
}

#[test]
fn just_grown_vm_is_not_shrunk() {
    let c = cfg();
    let mut h = History::EMPTY;
    run_settled(&c, &snapshot(8192, &[vm(512, 2048, 60, 10)]), &mut h);
    // The guest freed everything right after the grow.
    for t in 11..(10 + u64::from(c.holdoff_ticks)) {
        let d = run(&c, &snapshot(8192, &[vm(616, 2048, 500, t)]), &mut h);
        assert_eq!(d.vms[0].action, Action::Hold(Hold::Holdoff), "tick {t}");
    }
    let d = run(&c, &snapshot(8192, &[vm(616, 2048, 500, 20)]), &mut h);
    assert!(matches!(d.vms[0].action, Action::Shrink { .. }));
}

#[test]
fn shrink_stops_at_the_minimum_size() {
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(8192, &[vm(300, 2048, 280, 10)]), &mut h);
    assert_eq!(target_mib(d.vms[0].action), Some(256));
    let d = run(&cfg(), &snapshot(8192, &[vm(256, 2048, 236, 11)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::AtFloor));
}

#[test]
fn starving_vm_at_its_max_is_held() {
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(8192, &[vm(2048, 2048, 30, 10)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::AtMax));
}

#[test]
fn growth_stops_short_of_the_host_reserve() {
    // Host has 250 MiB available: at most 49 MiB + 1023 KiB may be given.
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(250, &[vm(512, 2048, 60, 10)]), &mut h);
    let Action::Grow { target_kib } = d.vms[0].action else { panic!() };
    assert_eq!(target_kib, mib_to_kib(512 + 50) - 1);
    assert!(d.vms[0].short_kib > 0);
    let mut other = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(200, &[vm(512, 2048, 60, 10)]), &mut other);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::HostShort));
}

#[test]
fn an_idle_vm_funds_a_starving_one_when_the_host_is_at_its_reserve() {
    // Host at its reserve; vm1 needs 124 MiB, vm2 has 500 MiB of excess and gives 125 MiB in
    // its normal step, which covers vm1 without waiving the band.
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(200, &[vm(512, 2048, 40, 10), vm(1024, 2048, 600, 10)]), &mut h);
    assert!(!d.pressure);
    assert_eq!(target_mib(d.vms[1].action), Some(1024 - 125));
    assert_eq!(d.vms[0].action, Action::Grow { target_kib: mib_to_kib(512 + 124) });
}

#[test]
fn host_short_waives_the_band_to_move_memory_vm_to_vm() {
    // Host at its reserve; vm1 starving, vm2 has 120 MiB of excess, inside the band (left
    // alone in normal times). Under pressure it gives a quarter of it to vm1.
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(200, &[vm(512, 2048, 40, 10), vm(1024, 2048, 220, 10)]), &mut h);
    assert!(d.pressure);
    assert_eq!(d.vms[1].action, Action::Shrink { target_kib: mib_to_kib(1024 - 30) });
    assert_eq!(d.vms[0].action, Action::Grow { target_kib: mib_to_kib(512 + 30) - 1 });
    assert_eq!(d.vms[0].short_kib, mib_to_kib(124 - 30) + 1);
}

#[test]
fn host_under_its_reserve_takes_back_inside_the_band() {
    // No VM needs memory but the host is 100 MiB under its reserve: take from a VM whose
    // excess is inside the band (normally left alone).
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(100, &[vm(1024, 2048, 200, 10)]), &mut h);
    assert!(d.pressure);
    assert_eq!(target_mib(d.vms[0].action), Some(1024 - 25));
}

#[test]
fn short_supply_is_shared_in_proportion_to_need() {
    // Two starving VMs need 104 and 154 MiB; the host can give 129 MiB (+1023 KiB).
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(330, &[vm(512, 2048, 60, 10), vm(512, 2048, 10, 10)]), &mut h);
    let g0 = target_mib(d.vms[0].action).unwrap() - 512;
    let g1 = target_mib(d.vms[1].action).unwrap() - 512;
    assert!(g0 + g1 <= 130);
    assert!((51..=53).contains(&g0), "{g0}");
    assert!((76..=78).contains(&g1), "{g1}");
}

#[test]
fn swap_in_asks_for_memory_even_with_free_memory_above_the_threshold() {
    let mut h = History::EMPTY;
    run(&cfg(), &snapshot(8192, &[vm(1024, 2048, 150, 1)]), &mut h);
    let mut v = vm(1024, 2048, 150, 2);
    v.swap_in_kib = Some(mib_to_kib(80));
    let d = run(&cfg(), &snapshot(8192, &[v]), &mut h);
    assert_eq!(target_mib(d.vms[0].action), Some(1024 + 80));
}

#[test]
fn major_fault_storm_holds_shrinking() {
    let mut h = History::EMPTY;
    run(&cfg(), &snapshot(8192, &[vm(2048, 2048, 200, 1)]), &mut h);
    let mut v = vm(2048, 2048, 1500, 2);
    v.major_faults = Some(5000);
    let d = run(&cfg(), &snapshot(8192, &[v]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::Holdoff));
}

#[test]
fn inconsistent_figures_get_no_action() {
    let mut h = History::EMPTY;
    let mut over = vm(4096, 2048, 10, 1);
    over.max_kib = mib_to_kib(2048);
    let zero = vm(0, 2048, 0, 1);
    let d = run(&cfg(), &snapshot(8192, &[over, zero]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::Inconsistent));
    assert_eq!(d.vms[1].action, Action::Hold(Hold::Inconsistent));
}

#[test]
fn default_config_is_valid_and_bad_values_are_named() {
    assert_eq!(PolicyConfig::DEFAULT.validate(), Ok(()));
    let bad = PolicyConfig { shrink_fraction_pct: 0, ..PolicyConfig::DEFAULT };
    assert!(bad.validate().unwrap_err().to_string().contains("--shrink-fraction"));
    let bad = PolicyConfig { interval_s: 0, ..PolicyConfig::DEFAULT };
    assert!(bad.validate().is_err());
}
