//! Behaviour of `decide()` on small, hand-built ticks. Figures in MiB unless named otherwise.
//! Defaults: threshold 100, band 64, lead 3 ticks of 1 s, reserve 200, fraction 25 %, step 256.

use super::*;
use crate::units::{kib_to_mib, mib_to_kib};

const MIB: u64 = 1024;

fn cfg() -> PolicyConfig {
    PolicyConfig::DEFAULT
}

/// A VM with MemTotal equal to its balloon size (offset 0), MemAvailable equal to MemFree,
/// no RSS figure, stamped `t`.
fn vm(actual_mib: u64, max_mib: u64, free_mib: u64, t: u64) -> VmStats {
    VmStats {
        actual_kib: mib_to_kib(actual_mib),
        max_kib: mib_to_kib(max_mib),
        unused_kib: Some(mib_to_kib(free_mib)),
        usable_kib: Some(mib_to_kib(free_mib)),
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

/// The same VM with a host-side RSS: `touched_mib` of guest memory backed plus 50 MiB of
/// QEMU overhead.
fn backed(mut v: VmStats, touched_mib: u64) -> VmStats {
    v.rss_kib = Some(mib_to_kib(touched_mib + 50));
    v
}

fn snapshot(host_mib: u64, vms: &[VmStats]) -> Snapshot {
    let mut s = Snapshot::EMPTY;
    s.host = HostStats { available_kib: mib_to_kib(host_mib), total_kib: mib_to_kib(24 * 1024) };
    for (slot, v) in vms.iter().enumerate() {
        s.vms[slot] = Some(*v);
    }
    s
}

/// One tick, every action applied, every invariant checked.
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

fn grow_mib(d: &Decision, actual_mib: u64) -> u64 {
    match d.action {
        Action::Grow { target_kib } => kib_to_mib(target_kib) - actual_mib,
        other => panic!("expected a grow, got {other:?}"),
    }
}

#[test]
fn starving_vm_without_known_consumption_grows_to_threshold_plus_half_band() {
    // 60 MiB free: grow to 100 + 32 = 132 MiB free.
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(8192, &[vm(512, 2048, 60, 1000)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Grow { target_kib: mib_to_kib(512 + 72) });
}

#[test]
fn consuming_vm_is_given_its_lead_before_it_starves() {
    // Free memory falls 24 MiB/s: at 150 MiB free it is not starving yet but will be within
    // the 3 s lead, so it grows to 100 + 3*24 + 32 MiB free.
    let mut h = History::EMPTY;
    run(&cfg(), &snapshot(8192, &[vm(512, 2048, 174, 1000)]), &mut h);
    let d = run(&cfg(), &snapshot(8192, &[vm(512, 2048, 150, 1001)]), &mut h);
    assert_eq!(d.vms[0].consumption_kib_s, 24 * MIB);
    assert_eq!(d.vms[0].keep_kib, mib_to_kib(100 + 72));
    assert_eq!(target_mib(d.vms[0].action), Some(512 + (204 - 150)));
}

#[test]
fn consumption_is_measured_over_two_intervals_rises_at_once_and_decays_by_a_quarter() {
    let mut h = History::EMPTY;
    let c = cfg();
    run(&c, &snapshot(8192, &[vm(1024, 2048, 900, 1)]), &mut h);
    // With one interval known, it is used alone.
    run(&c, &snapshot(8192, &[vm(1024, 2048, 880, 2)]), &mut h);
    assert_eq!(h.vms[0].consumption_kib_s, 20 * MIB);
    // Over two intervals: 20 MiB in 2 s is 10 MiB/s, below the estimate: it decays by a
    // quarter of the difference.
    run(&c, &snapshot(8192, &[vm(1024, 2048, 880, 3)]), &mut h);
    assert_eq!(h.vms[0].consumption_kib_s, 20 * MIB - (10 * MIB).div_ceil(4));
    // 90 MiB over the last 3 s (a sample two seconds late) is 30 MiB/s: taken at once.
    run(&c, &snapshot(8192, &[vm(1024, 2048, 790, 5)]), &mut h);
    assert_eq!(h.vms[0].consumption_kib_s, 30 * MIB);
}

#[test]
fn a_transient_spike_cannot_pass_for_a_fast_consumer() {
    // 500 MiB allocated in one second from nothing reads as at most 32 MiB/s (twice 0 plus
    // 32), not 500; a sustained fast consumer is believed within a few samples.
    let mut h = History::EMPTY;
    let c = cfg();
    run(&c, &snapshot(8192, &[vm(2048, 2048, 1800, 1)]), &mut h);
    run(&c, &snapshot(8192, &[vm(2048, 2048, 1800, 2)]), &mut h);
    run(&c, &snapshot(8192, &[vm(2048, 2048, 1300, 3)]), &mut h);
    assert_eq!(h.vms[0].consumption_kib_s, 32 * MIB);
    let mut free = 1300;
    for t in 4..8 {
        free -= 100;
        run(&c, &snapshot(8192, &[vm(2048, 2048, free, t)]), &mut h);
    }
    assert_eq!(h.vms[0].consumption_kib_s, 100 * MIB, "a real 100 MiB/s consumer");
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
    no_driver.usable_kib = None;
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
fn a_clock_that_goes_back_is_a_new_guest_and_is_not_acted_on_that_tick() {
    let mut h = History::EMPTY;
    run_settled(&cfg(), &snapshot(8192, &[vm(1024, 2048, 300, 100)]), &mut h);
    let d = run(&cfg(), &snapshot(8192, &[vm(1024, 2048, 40, 50)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::Inconsistent));
    let d = run(&cfg(), &snapshot(8192, &[vm(1024, 2048, 40, 51)]), &mut h);
    assert!(matches!(d.vms[0].action, Action::Grow { .. }));
}

#[test]
fn a_sample_already_acted_on_is_not_acted_on_again() {
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(8192, &[vm(512, 2048, 60, 100)]), &mut h);
    assert!(matches!(d.vms[0].action, Action::Grow { .. }));
    // Next tick, the balloon has moved but the guest has not answered yet.
    let d = run(&cfg(), &snapshot(8192, &[vm(584, 2048, 60, 100)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::AwaitingStats));
}

#[test]
fn an_action_that_was_not_applied_leaves_no_trace() {
    // A failed (or dry-run) grow is not waited for: the next tick decides afresh.
    let c = cfg();
    let mut h = History::EMPTY;
    let s = snapshot(8192, &[vm(512, 2048, 60, 100)]);
    let mut first = s;
    first.vms[0].as_mut().unwrap().last_update_s = Some(99);
    run(&c, &first, &mut h);
    let mut d = Decisions::EMPTY;
    decide(&c, &s, &mut h, &mut d);
    assert!(matches!(d.vms[0].action, Action::Grow { .. }));
    assert_eq!(h.vms[0].target_kib, None);
    assert_eq!(h.vms[0].grant, None);
    let mut again = Decisions::EMPTY;
    decide(&c, &s, &mut h, &mut again);
    assert_eq!(again.vms[0].action, d.vms[0].action);
}

#[test]
fn a_sample_taken_before_a_grow_landed_is_not_counted_twice() {
    // Offset learned at rest: balloon 1024, MemTotal 992. The VM is then shrunk from outside
    // to 880 (as the course harness did) and starves; we grow it at once (an outside move
    // holds only donations). The next sample was taken before the grow landed (MemTotal still
    // 848, 56 MiB free) while the balloon is already at 956: the guest really has 132 MiB
    // free, so no second grow.
    let mut h = History::EMPTY;
    let mut a = vm(1024, 2048, 200, 1);
    a.available_kib = Some(mib_to_kib(992));
    a.usable_kib = a.unused_kib;
    run(&cfg(), &snapshot(8192, &[a]), &mut h);
    a.last_update_s = Some(2);
    run(&cfg(), &snapshot(8192, &[a]), &mut h);
    assert_eq!(h.vms[0].size_offset_kib, Some(32 * 1024));

    let mut b = vm(880, 2048, 56, 3);
    b.available_kib = Some(mib_to_kib(848));
    let d = run(&cfg(), &snapshot(8192, &[b]), &mut h);
    assert_eq!(d.vms[0].action, Action::Grow { target_kib: mib_to_kib(880 + 76) });

    b.actual_kib = mib_to_kib(956);
    b.last_update_s = Some(4);
    let d = run(&cfg(), &snapshot(8192, &[b]), &mut h);
    assert_eq!(d.vms[0].free_now_kib, Some(mib_to_kib(132)));
    assert_eq!(d.vms[0].action, Action::Hold(Hold::Holdoff));
}

#[test]
fn a_balloon_moving_to_someone_elses_target_is_not_shrunk_until_it_rests() {
    // libvirt balloons a freshly booted guest from 2048 to 512 MiB: seen mid-way at 1969 MiB
    // with 1858 MiB free, it must not be given a target of its own until it rests.
    let mut h = History::EMPTY;
    let d = run(&cfg(), &snapshot(8192, &[vm(1969, 2048, 1858, 10)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::Settling));
    // A slow balloon, still moving: waited for up to SETTLE_TICKS rounds, then served anyway.
    for (i, size) in [1800, 1600, 1400, 1200, 1000, 800].into_iter().enumerate() {
        let d = run(&cfg(), &snapshot(8192, &[vm(size, 2048, size - 111, 11 + i as u64)]), &mut h);
        if i < 5 {
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
fn an_outside_grow_is_not_taken_straight_back() {
    // The course harness sets every guest to 512 MiB: an idle guest at 341 MiB is grown by
    // someone else. That memory is not taken back for holdoff_ticks.
    let c = cfg();
    let mut h = History::EMPTY;
    run_settled(&c, &snapshot(8192, &[vm(341, 2048, 160, 10)]), &mut h);
    for t in 11..11 + u64::from(c.holdoff_ticks) {
        let d = run(&c, &snapshot(8192, &[vm(512, 2048, 331, t)]), &mut h);
        assert!(matches!(d.vms[0].action, Action::Hold(Hold::Settling | Hold::Holdoff)), "{:?}", d.vms[0]);
    }
    let d = run(&c, &snapshot(8192, &[vm(512, 2048, 331, 30)]), &mut h);
    assert!(matches!(d.vms[0].action, Action::Shrink { .. }));
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
    let d = run_settled(&cfg(), &snapshot(8192, &[vm(1024, 2048, 160, 10)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::Steady));
}

#[test]
fn just_grown_vm_is_not_shrunk() {
    let c = cfg();
    let mut h = History::EMPTY;
    run_settled(&c, &snapshot(8192, &[vm(512, 2048, 60, 10)]), &mut h);
    // The guest freed everything right after the grow.
    for t in 11..(10 + u64::from(c.holdoff_ticks)) {
        let d = run(&c, &snapshot(8192, &[vm(584, 2048, 500, t)]), &mut h);
        assert_eq!(d.vms[0].action, Action::Hold(Hold::Holdoff), "tick {t}");
    }
    let d = run(&c, &snapshot(8192, &[vm(584, 2048, 500, 20)]), &mut h);
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
fn targets_are_whole_pages_and_our_own_move_is_recognised_as_ours() {
    // A grow from an odd size lands on a page boundary; the next tick sees the balloon at our
    // target and treats it as ours (no settling).
    let mut h = History::EMPTY;
    let mut v = vm(512, 2048, 60, 10);
    v.actual_kib += 3;
    v.available_kib = Some(v.actual_kib);
    let d = run_settled(&cfg(), &snapshot(8192, &[v]), &mut h);
    let target = d.vms[0].action.target_kib().unwrap();
    assert_eq!(target % PAGE_KIB, 0);
    v.actual_kib = target;
    v.available_kib = Some(target);
    v.unused_kib = Some(mib_to_kib(128));
    v.usable_kib = v.unused_kib;
    v.last_update_s = Some(11);
    let d = run(&cfg(), &snapshot(8192, &[v]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::Holdoff));
    assert_eq!(h.vms[0].ticks_settling, 0);
    assert_eq!(h.vms[0].target_kib, None, "reached");
}

#[test]
fn page_cache_is_not_hunger_and_is_not_taken_in_normal_times() {
    // MemFree 60 MiB, MemAvailable 1300 MiB: a guest full of page cache. It is not grown, and
    // with the host comfortable its cache is left alone.
    let mut h = History::EMPTY;
    let mut v = vm(2048, 4096, 60, 10);
    v.usable_kib = Some(mib_to_kib(1300));
    let d = run_settled(&cfg(), &snapshot(8192, &[v]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::Steady));
    assert_eq!(d.vms[0].free_now_kib, Some(mib_to_kib(1300)));
    // The course's rule sees the same guest as starving.
    let unused = PolicyConfig { free_figure: FreeFigure::Unused, ..cfg() };
    let mut h = History::EMPTY;
    let d = run_settled(&unused, &snapshot(8192, &[v]), &mut h);
    assert!(matches!(d.vms[0].action, Action::Grow { .. }));
}

#[test]
fn under_pressure_page_cache_funds_a_starving_guest() {
    // Host at its reserve (its 200 MiB plus the guests' free memory, which counts as debt).
    // The consumer starves and needs 92 MiB; the cache guest gives them from its page cache
    // (its MemFree is only 60 MiB), no more than is needed.
    let mut h = History::EMPTY;
    let mut cache = vm(2048, 4096, 60, 10);
    cache.usable_kib = Some(mib_to_kib(1300));
    let consumer = vm(512, 2048, 40, 10);
    let d = run_settled(&cfg(), &snapshot(200 + 60 + 40, &[cache, consumer]), &mut h);
    assert!(d.pressure);
    let released = mib_to_kib(2048) - d.vms[0].action.target_kib().unwrap();
    assert!((mib_to_kib(92)..mib_to_kib(93)).contains(&released), "{released} KiB");
    assert_eq!(grow_mib(&d.vms[1], 512), 92);
}

#[test]
fn growth_is_budgeted_against_memory_the_host_will_have_to_back() {
    // The host has 1000 MiB available, but guest A holds 600 MiB it has never touched
    // (balloon 1024, 400 touched): the host will pay that when A touches it. Guest B starves
    // and needs 72 MiB: the headroom is 1000 - 600 - 60 (B's own free memory) = 340 MiB,
    // 139 above the reserve line: B gets its 72 MiB. With 100 MiB less on the host, it gets
    // only what is left above the line.
    let a = backed(vm(1024, 2048, 600, 10), 424);
    let b = backed(vm(512, 2048, 60, 10), 452);
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(1000, &[a, b]), &mut h);
    assert_eq!(d.vms[0].debt_kib, mib_to_kib(600));
    assert_eq!(d.vms[1].debt_kib, mib_to_kib(60));
    assert_eq!(d.headroom_kib, mib_to_kib(340));
    assert_eq!(grow_mib(&d.vms[1], 512), 72);
    // A has 600 MiB free but is inside its holdoff? No: it gives normally, which also funds.
    let mut h = History::EMPTY;
    let d = run_settled(&cfg(), &snapshot(760, &[a, b]), &mut h);
    assert_eq!(d.headroom_kib, mib_to_kib(100));
    assert!(d.vms[0].action.target_kib().is_some_and(|t| t < mib_to_kib(1024)), "A gives: {:?}", d.vms[0]);
    let (granted, released) = (d.granted_kib, d.released_kib);
    assert!(granted <= released, "in a deficit growth is paid by releases: {granted} > {released}");
}

#[test]
fn a_deficit_is_paid_back_from_excess_even_with_nobody_needy() {
    // The host's 250 MiB minus the VM's 160 MiB of untouched free memory leaves a headroom
    // 111 MiB under the reserve line: take from the VM although its excess (60 MiB) is inside
    // the band, a quarter of it.
    let mut h = History::EMPTY;
    let v = backed(vm(1024, 2048, 160, 10), 864);
    let d = run_settled(&cfg(), &snapshot(250, &[v]), &mut h);
    assert!(d.pressure);
    assert_eq!(target_mib(d.vms[0].action), Some(1024 - 15));
}

#[test]
fn memory_a_guest_freed_but_the_host_still_backs_is_no_debt() {
    // A guest that touched 1800 MiB and freed it again: RSS still holds it, so its free memory
    // costs the host nothing more (once QEMU's overhead is known from an earlier sample).
    let mut h = History::EMPTY;
    let busy = backed(vm(2048, 2048, 200, 10), 1848);
    run_settled(&cfg(), &snapshot(8192, &[busy]), &mut h);
    assert_eq!(h.vms[0].overhead_kib, Some(mib_to_kib(50)));
    let freed = backed(vm(2048, 2048, 1900, 12), 1848);
    let d = run(&cfg(), &snapshot(8192, &[freed]), &mut h);
    // 200 MiB never touched, plus the 1 MiB the overhead estimate may creep up per sample.
    assert_eq!(d.vms[0].debt_kib, mib_to_kib(201));
}

#[test]
fn a_debt_is_never_more_than_the_guests_free_memory() {
    // An overhead learnt at 512 MiB (95 MiB) gone stale while the balloon kept moving: the
    // model alone says 285 - (211 - 95) = 169 MiB untouched, but only free pages can be
    // untouched and the guest has 105 MiB free. Never below balloon size minus RSS, though.
    let mut h = History::EMPTY;
    let idle = backed(vm(285, 2048, 105, 10), 211);
    run_settled(&cfg(), &snapshot(8192, &[idle]), &mut h);
    h.vms[0].overhead_kib = Some(mib_to_kib(95));
    let d = run(&cfg(), &snapshot(8192, &[backed(vm(285, 2048, 105, 11), 211)]), &mut h);
    assert_eq!(d.vms[0].debt_kib, mib_to_kib(105));
    let d = run(&cfg(), &snapshot(8192, &[backed(vm(285, 2048, 105, 12), 100)]), &mut h);
    assert_eq!(d.vms[0].debt_kib, mib_to_kib(135), "balloon size minus RSS is the floor");
}

#[test]
fn short_supply_is_shared_urgent_needs_first_then_equally() {
    // Two needy VMs, the host can give 100 MiB above its reserve line. VM0 starves at 20 MiB
    // free (urgent 80), VM1 has 90 MiB free (urgent 10): urgent needs come first (90 MiB),
    // then the last 10 MiB go half and half.
    let mut h = History::EMPTY;
    let host = 200 + 100 + 20 + 90;
    let d = run_settled(&cfg(), &snapshot(host, &[vm(512, 2048, 20, 10), vm(512, 2048, 90, 10)]), &mut h);
    let (g0, g1) = (grow_mib(&d.vms[0], 512), grow_mib(&d.vms[1], 512));
    assert!(g0 + g1 <= 100);
    assert!((84..=85).contains(&g0), "{g0}");
    assert!((14..=15).contains(&g1), "{g1}");
    assert!(d.vms[0].short_kib > 0 && d.vms[1].short_kib > 0);
}

#[test]
fn under_shortage_weight_scales_the_share() {
    // Two VMs with the same need beyond the urgent part; weight 2 gets twice the grant.
    let mut h = History::EMPTY;
    let host = 200 + 90 + 100 + 100;
    let mut s = snapshot(host, &[vm(512, 2048, 100, 10), vm(512, 2048, 100, 10)]);
    s.vms[0].as_mut().unwrap().unused_kib = Some(mib_to_kib(100));
    s.limits[0].weight = 2;
    // Make both consume 20 MiB/s so that each needs 100 + 60 + 32 - 80 = 112 MiB.
    let mut first = s;
    for vm in first.vms.iter_mut().flatten() {
        vm.last_update_s = Some(9);
        vm.unused_kib = Some(mib_to_kib(100));
        vm.usable_kib = vm.unused_kib;
    }
    run(&cfg(), &first, &mut h);
    for vm in s.vms.iter_mut().flatten() {
        vm.unused_kib = Some(mib_to_kib(80));
        vm.usable_kib = vm.unused_kib;
    }
    s.host.available_kib = mib_to_kib(200 + 160 + 90);
    let d = run(&cfg(), &s, &mut h);
    let (g0, g1) = (grow_mib(&d.vms[0], 512), grow_mib(&d.vms[1], 512));
    // 20 MiB of urgent need each (100 - 80) first, then 50 MiB shared 2:1.
    assert!((52..=54).contains(&g0), "{g0}");
    assert!((35..=37).contains(&g1), "{g1}");
}

#[test]
fn a_guest_that_lies_about_being_short_gets_one_grant_then_nothing() {
    // It reports 0 free forever. Its grant lands (the balloon is at the target) but neither
    // its free memory nor its RSS shows it: no further grant. An honest guest beside it keeps
    // being served.
    let c = cfg();
    let mut h = History::EMPTY;
    let mut liar = backed(vm(1024, 4096, 0, 10), 1024);
    let mut honest = backed(vm(1024, 4096, 60, 10), 964);
    let mut s = snapshot(8192, &[liar, honest]);
    s.vms[0].as_mut().unwrap().last_update_s = Some(9);
    s.vms[1].as_mut().unwrap().last_update_s = Some(9);
    run(&c, &s, &mut h);
    let mut grants = [0u64; 2];
    for t in 10..40 {
        let d = run(&c, &snapshot(8192, &[liar, honest]), &mut h);
        for (i, v) in [&mut liar, &mut honest].into_iter().enumerate() {
            if let Action::Grow { target_kib } = d.vms[i].action {
                grants[i] += 1;
                let g = target_kib - v.actual_kib;
                v.actual_kib = target_kib;
                v.available_kib = Some(target_kib);
                if i == 1 {
                    // The honest guest touches half of it and shows the rest as free.
                    v.unused_kib = Some(v.unused_kib.unwrap() + g / 2);
                    v.rss_kib = Some(v.rss_kib.unwrap() + g / 2);
                }
            }
            // The honest guest keeps consuming 10 MiB/s.
            if i == 1 {
                let free = v.unused_kib.unwrap().saturating_sub(10 * MIB);
                v.unused_kib = Some(free);
                v.rss_kib = Some(v.rss_kib.unwrap() + 10 * MIB);
            }
            v.usable_kib = v.unused_kib;
            v.last_update_s = Some(t + 1);
        }
        if t > 14 {
            assert!(matches!(d.vms[0].action, Action::Hold(Hold::Unverified)), "t={t}: {:?}", d.vms[0]);
        }
    }
    assert_eq!(grants[0], 1, "the liar got {} grants", grants[0]);
    assert!(grants[1] >= 5, "the honest guest got only {} grants", grants[1]);
}

#[test]
fn a_shrink_that_stalls_is_cancelled_and_backed_off() {
    let c = cfg();
    let mut h = History::EMPTY;
    let d = run_settled(&c, &snapshot(8192, &[vm(2048, 2048, 1900, 10)]), &mut h);
    assert_eq!(target_mib(d.vms[0].action), Some(1792));
    // The balloon gets to 1900 and stops there.
    let d = run(&c, &snapshot(8192, &[vm(1900, 2048, 1752, 11)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::InFlight));
    let d = run(&c, &snapshot(8192, &[vm(1900, 2048, 1752, 12)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::InFlight));
    let d = run(&c, &snapshot(8192, &[vm(1900, 2048, 1752, 13)]), &mut h);
    assert_eq!(d.vms[0].action, Action::Cancel { target_kib: mib_to_kib(1900) });
    // Backed off: not pushed again every tick.
    for t in 14..17 {
        let d = run(&c, &snapshot(8192, &[vm(1900, 2048, 1752, t)]), &mut h);
        assert_eq!(d.vms[0].action, Action::Hold(Hold::Stalled), "t={t}");
    }
}

#[test]
fn an_own_shrink_in_flight_does_not_hold_a_vm_that_becomes_needy() {
    let c = cfg();
    let mut h = History::EMPTY;
    run_settled(&c, &snapshot(8192, &[vm(1024, 2048, 400, 10)]), &mut h);
    assert!(h.vms[0].shrinking);
    // Mid-way, a consumer starts: 40 MiB free.
    let d = run(&c, &snapshot(8192, &[vm(1000, 2048, 40, 11)]), &mut h);
    assert!(matches!(d.vms[0].action, Action::Grow { .. }), "{:?}", d.vms[0]);
}

#[test]
fn swap_in_with_plenty_free_asks_for_nothing_and_with_little_free_asks_for_a_real_step() {
    let mut h = History::EMPTY;
    run(&cfg(), &snapshot(8192, &[vm(2048, 4096, 1500, 1)]), &mut h);
    let mut v = vm(2048, 4096, 1500, 2);
    v.swap_in_kib = Some(4);
    let d = run(&cfg(), &snapshot(8192, &[v]), &mut h);
    assert_eq!(d.vms[0].action, Action::Hold(Hold::Holdoff));
    let mut h = History::EMPTY;
    run(&cfg(), &snapshot(8192, &[vm(1024, 2048, 120, 1)]), &mut h);
    let mut v = vm(1024, 2048, 120, 2);
    v.swap_in_kib = Some(4);
    let d = run(&cfg(), &snapshot(8192, &[v]), &mut h);
    assert_eq!(grow_mib(&d.vms[0], 1024), 16);
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
fn an_oom_kill_in_the_guest_grows_it_at_once_and_raises_what_it_keeps_for_a_minute() {
    let c = cfg();
    let mut h = History::EMPTY;
    let mut v = vm(1024, 2048, 150, 10);
    v.oom_kills = Some(3);
    v.alloc_stalls = Some(100);
    run_settled(&c, &snapshot(8192, &[v]), &mut h);
    // 150 MiB free is fine... until the guest reports an OOM kill.
    v.oom_kills = Some(4);
    v.last_update_s = Some(11);
    let d = run(&c, &snapshot(8192, &[v]), &mut h);
    assert_eq!(d.vms[0].keep_kib, mib_to_kib(200));
    // At least vm_min_unused at once (more than the 232 - 150 = 82 it would need otherwise).
    assert_eq!(grow_mib(&d.vms[0], 1024), 100);
    // For a minute it keeps 200 MiB and is not shrunk, even with plenty free.
    v.actual_kib = mib_to_kib(1124);
    v.available_kib = v.actual_kib.into();
    v.unused_kib = Some(mib_to_kib(900));
    v.usable_kib = v.unused_kib;
    for t in 12..71 {
        v.last_update_s = Some(t);
        let d = run(&c, &snapshot(8192, &[v]), &mut h);
        assert_eq!(d.vms[0].action, Action::Hold(Hold::Holdoff), "t={t}");
    }
    // After the minute it can give again.
    v.last_update_s = Some(80);
    let d = run(&c, &snapshot(8192, &[v]), &mut h);
    assert!(matches!(d.vms[0].action, Action::Shrink { .. }), "{:?}", d.vms[0]);
    // A burst of allocation stalls is the other alarm: grown at once, whatever it has free.
    v.actual_kib = d.vms[0].action.target_kib().unwrap();
    v.alloc_stalls = Some(120);
    v.last_update_s = Some(81);
    let d = run(&c, &snapshot(8192, &[v]), &mut h);
    assert!(matches!(d.vms[0].action, Action::Grow { .. }), "{:?}", d.vms[0]);
    assert_eq!(h.vms[0].ticks_since_alarm, 0);
}

#[test]
fn operator_limits_bound_the_vm_and_bring_it_inside() {
    // Max 1024 on a 2048 MiB VM at 1500 with 900 free: brought down toward 1024 even inside
    // the band; a min of 768 on a VM at 512: grown to it.
    let mut h = History::EMPTY;
    let mut s = snapshot(8192, &[vm(1500, 2048, 900, 10), vm(512, 2048, 300, 10)]);
    s.limits[0].max_kib = Some(mib_to_kib(1024));
    s.limits[1].min_kib = Some(mib_to_kib(768));
    let d = run_settled(&cfg(), &s, &mut h);
    assert_eq!(target_mib(d.vms[0].action), Some(1500 - 200));
    assert_eq!(target_mib(d.vms[1].action), Some(768));
}

#[test]
fn restore_gives_largest_shortfall_first_within_the_headroom() {
    let c = cfg();
    let mut h = History::EMPTY;
    let s = snapshot(200 + 1 + 300, &[vm(1900, 2048, 0, 10), vm(512, 2048, 0, 10), vm(1024, 2048, 0, 10)]);
    run_settled(&c, &s, &mut h);
    let mut out = Decisions::EMPTY;
    restore(&c, &s, &h, &mut out);
    // 301 MiB above the reserve minus the 1 KiB line, in whole pages, all to the largest
    // shortfall.
    assert_eq!(out.vms[1].action, Action::Grow { target_kib: page_down(mib_to_kib(512 + 301) - 1) });
    assert_eq!(out.vms[0].action, Action::Hold(Hold::HostShort));
    assert_eq!(out.vms[2].action, Action::Hold(Hold::HostShort));
}

#[test]
fn inconsistent_figures_get_no_action() {
    let mut h = History::EMPTY;
    let over = vm(4096, 2048, 10, 1);
    let zero = vm(0, 2048, 0, 1);
    let more_free_than_memory = vm(1024, 2048, 1500, 1);
    let d = run(&cfg(), &snapshot(8192, &[over, zero, more_free_than_memory]), &mut h);
    for slot in 0..3 {
        assert_eq!(d.vms[slot].action, Action::Hold(Hold::Inconsistent), "slot {slot}");
    }
}

#[test]
fn extreme_inputs_are_clamped_not_overflowed() {
    // Host and guests near u64::MAX: what wrapped in release builds before.
    let c = cfg();
    let mut h = History::EMPTY;
    let mut s = Snapshot::EMPTY;
    s.host.available_kib = u64::MAX;
    for slot in 0..MAX_DOMAINS {
        let mut v = vm(512, 2048, 0, 10);
        v.max_kib = u64::MAX;
        v.actual_kib = u64::MAX / 2;
        v.available_kib = Some(u64::MAX / 2);
        v.unused_kib = Some(0);
        v.usable_kib = Some(0);
        s.vms[slot] = Some(v);
    }
    run(&c, &s, &mut h);
    for vm in s.vms.iter_mut().flatten() {
        vm.last_update_s = Some(11);
    }
    let d = run(&c, &s, &mut h);
    assert!(d.vms.iter().all(|d| matches!(d.action, Action::Grow { .. } | Action::Hold(_))));
}

#[test]
fn default_config_is_valid_and_bad_values_are_named() {
    assert_eq!(PolicyConfig::DEFAULT.validate(), Ok(()));
    assert_eq!(PolicyConfig::DEFAULT.sanitized(), PolicyConfig::DEFAULT);
    let bad = PolicyConfig { shrink_fraction_pct: 0, ..PolicyConfig::DEFAULT };
    assert!(bad.validate().unwrap_err().to_string().contains("--shrink-fraction"));
    assert!(bad.sanitized().validate().is_ok());
    let bad = PolicyConfig { interval_s: 0, ..PolicyConfig::DEFAULT };
    assert!(bad.validate().is_err());
}

#[test]
fn weighted_fill_is_max_min_fair() {
    let mut caps = [0u64; MAX_DOMAINS];
    let mut weights = [1u64; MAX_DOMAINS];
    let mut grants = [0u64; MAX_DOMAINS];
    caps[0] = 10;
    caps[1] = 1000;
    caps[2] = 1000;
    weights[2] = 3;
    let spent = share::weighted_fill(&[0, 1, 2], &caps, &weights, 410, &mut grants);
    assert_eq!(spent, 410);
    assert_eq!(&grants[..3], &[10, 100, 300]);
}
