//! Fuzzes the policy: builds a config and a run of ticks from the fuzz bytes (sizes, counters,
//! timestamps, operator limits, and which of the tick's actions the hypervisor accepted),
//! calls `decide()` on each and asserts every guarantee of `policy::invariants` (the same list
//! the property tests check), that the same sample is never acted on twice, and that the
//! `--restore-on-exit` targets never take the host's headroom to its reserve.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memory_coordinator::policy::{
    Action, Decisions, FreeFigure, History, HostStats, MAX_DOMAINS, PolicyConfig, Snapshot, VmLimits, VmStats, decide,
    invariants, restore,
};

/// Reads fields from the fuzz input; past its end every read is 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    fn raw_u64(&mut self) -> u64 {
        (0..8).fold(0u64, |acc, i| acc | u64::from(self.u8()) << (8 * i))
    }

    /// A size: mostly plausible MiB figures, sometimes any u64, to reach both the logic and
    /// the arithmetic edges.
    fn size_kib(&mut self) -> u64 {
        match self.u8() % 4 {
            0 => u64::from(self.u8()) * 16 * 1024,
            1 => u64::from(u16::from_le_bytes([self.u8(), self.u8()])) * 1024,
            2 => self.raw_u64(),
            _ => [0, 1, u64::MAX, u64::MAX - 1][usize::from(self.u8() % 4)],
        }
    }

    fn opt_size_kib(&mut self) -> Option<u64> {
        if self.u8() % 5 == 0 { None } else { Some(self.size_kib()) }
    }
}

fn config(input: &mut Input) -> PolicyConfig {
    if input.u8() % 2 == 0 {
        return PolicyConfig::DEFAULT;
    }
    // Unvalidated on purpose: decide() must keep its guarantees for any config.
    PolicyConfig {
        interval_s: u64::from(input.u8() % 12),
        vm_min_unused_kib: input.size_kib(),
        host_min_free_kib: input.size_kib(),
        shrink_band_kib: input.size_kib(),
        shrink_fraction_pct: u64::from(input.u8()),
        shrink_step_max_kib: input.size_kib(),
        vm_min_size_kib: input.size_kib(),
        lead_ticks: u64::from(input.u8() % 8),
        stale_ticks: u32::from(input.u8() % 8),
        holdoff_ticks: u32::from(input.u8() % 8),
        free_figure: if input.u8() % 2 == 0 { FreeFigure::Available } else { FreeFigure::Unused },
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let config = config(&mut input);
    let vm_count = usize::from(input.u8() % 16) + 1;
    let slots: Vec<usize> = (0..vm_count).map(|_| usize::from(input.u8()) % MAX_DOMAINS).collect();
    let mut clocks: Vec<u64> = vec![1_700_000_000; vm_count];
    let mut history = History::EMPTY;
    let mut snapshot = Snapshot::EMPTY;
    for _tick in 0..(input.u8() % 8 + 1) {
        snapshot.clear();
        snapshot.host = HostStats { available_kib: input.size_kib(), total_kib: input.size_kib() };
        for (slot, clock) in slots.iter().zip(clocks.iter_mut()) {
            let flags = input.u8();
            *clock = clock.saturating_add(u64::from(flags % 3));
            let actual_kib = input.size_kib();
            snapshot.vms[*slot] = Some(VmStats {
                actual_kib,
                max_kib: if flags & 0x80 == 0 { actual_kib.saturating_add(input.size_kib()) } else { input.size_kib() },
                unused_kib: input.opt_size_kib(),
                usable_kib: input.opt_size_kib(),
                available_kib: input.opt_size_kib(),
                swap_in_kib: input.opt_size_kib(),
                swap_out_kib: input.opt_size_kib(),
                major_faults: input.opt_size_kib(),
                last_update_s: match flags & 0x60 {
                    0x00 => None,
                    0x20 => Some(input.raw_u64()),
                    _ => Some(*clock),
                },
                rss_kib: input.opt_size_kib(),
                oom_kills: input.opt_size_kib(),
                alloc_stalls: input.opt_size_kib(),
                direct_reclaims: input.opt_size_kib(),
            });
        }
        for slot in &slots {
            let flags = input.u8();
            snapshot.limits[*slot] = VmLimits {
                min_kib: (flags & 1 != 0).then(|| input.size_kib()),
                max_kib: (flags & 2 != 0).then(|| input.size_kib()),
                weight: u32::from(input.u8()),
            };
        }
        let before = history;
        let mut decisions = Decisions::EMPTY;
        decide(&config, &snapshot, &mut history, &mut decisions);
        if let Err(v) = invariants::check(&config, &snapshot, &before, &decisions) {
            panic!("invariant broken: {v}\nconfig {config:?}\nhost {:?}", snapshot.host);
        }
        // Some actions fail to apply: only the others are recorded.
        let accepted = input.u8();
        for (i, slot) in slots.iter().enumerate() {
            if accepted & (1 << (i % 8)) != 0 {
                history.applied(*slot, &decisions.vms[*slot]);
            }
        }

        // The same sample again, balloons not moved yet: nothing that was applied on a sample
        // with a new timestamp is done again.
        let mut again_history = history;
        let mut again = Decisions::EMPTY;
        decide(&config, &snapshot, &mut again_history, &mut again);
        for (i, slot) in slots.iter().enumerate() {
            let vm = snapshot.vms[*slot].unwrap();
            let new_stamp = vm.last_update_s.is_some_and(|t| t > 0 && Some(t) != before.vms[*slot].last_update_s);
            let applied = accepted & (1 << (i % 8)) != 0 && decisions.vms[*slot].action.target_kib().is_some();
            if new_stamp && applied && matches!(again.vms[*slot].action, Action::Grow { .. } | Action::Shrink { .. }) {
                panic!("slot {slot} acted on twice on one sample: {:?} then {:?}", decisions.vms[*slot], again.vms[*slot]);
            }
        }

        let mut restored = Decisions::EMPTY;
        restore(&config, &snapshot, &history, &mut restored);
        if let Err(rule) = invariants::host_reserve_kept(&config, &snapshot, &restored) {
            panic!("restore broke the host reserve: {rule}");
        }
    }
});
