//! Scenario tests: the policy drives simulated guests second by second, the way the daemon
//! drives real ones. The simulation keeps what makes the real problem hard: stats are sampled
//! by the guest on its own period (so they are up to one period old when read), a balloon
//! move takes time to land, and the consumer keeps consuming meanwhile.

use memory_coordinator::policy::{
    Action, Decisions, History, HostStats, PolicyConfig, Snapshot, VmStats, decide_all_applied, invariants,
};
use memory_coordinator::units::{kib_to_mib, mib_to_kib};

/// Simulation step.
const STEP_MS: u64 = 100;
const STEP_MS_USIZE: usize = 100;
/// How fast a balloon moves, KiB per second (a 512 MiB move lands in half a second).
const BALLOON_KIB_S: u64 = 1024 * 1024;
/// The course consumer: 25 MB/s.
const CONSUMER_KIB_S: u64 = 25_000_000 / 1024;
/// Memory the guest kernel keeps out of MemTotal (balloon size minus MemTotal).
const KERNEL_RESERVED_KIB: u64 = 40 * 1024;

#[derive(Clone, Copy, Debug)]
struct Guest {
    actual_kib: u64,
    target_kib: u64,
    max_kib: u64,
    used_kib: u64,
    consume_kib_s: u64,
    /// Last stats the guest reported: (MemFree, MemTotal, epoch seconds).
    sample: Option<(u64, u64, u64)>,
    /// Lowest true free memory seen while below max.
    min_free_below_max_kib: u64,
}

impl Guest {
    fn new(actual_mib: u64, max_mib: u64, used_mib: u64) -> Guest {
        Guest {
            actual_kib: mib_to_kib(actual_mib),
            target_kib: mib_to_kib(actual_mib),
            max_kib: mib_to_kib(max_mib),
            used_kib: mib_to_kib(used_mib),
            consume_kib_s: 0,
            sample: None,
            min_free_below_max_kib: u64::MAX,
        }
    }

    fn mem_total_kib(&self) -> u64 {
        self.actual_kib - KERNEL_RESERVED_KIB
    }

    fn free_kib(&self) -> u64 {
        self.mem_total_kib().saturating_sub(self.used_kib)
    }

    fn step(&mut self) {
        let move_kib = BALLOON_KIB_S * STEP_MS / 1000;
        if self.target_kib > self.actual_kib {
            self.actual_kib = (self.actual_kib + move_kib).min(self.target_kib);
        } else {
            // The guest cannot give back memory it is using.
            let floor = self.used_kib + KERNEL_RESERVED_KIB;
            self.actual_kib = self.actual_kib.saturating_sub(move_kib).max(self.target_kib).max(floor);
        }
        self.used_kib = (self.used_kib + self.consume_kib_s * STEP_MS / 1000).min(self.mem_total_kib());
        if self.actual_kib < self.max_kib {
            self.min_free_below_max_kib = self.min_free_below_max_kib.min(self.free_kib());
        }
    }

    fn stats(&self) -> VmStats {
        let (free, total, at) = self.sample.map_or((None, None, None), |(f, t, s)| (Some(f), Some(t), Some(s)));
        VmStats {
            actual_kib: self.actual_kib,
            max_kib: self.max_kib,
            unused_kib: free,
            usable_kib: free,
            available_kib: total,
            swap_in_kib: Some(0),
            swap_out_kib: Some(0),
            major_faults: Some(0),
            last_update_s: at,
            rss_kib: None,
            oom_kills: None,
            alloc_stalls: None,
            direct_reclaims: None,
        }
    }
}

struct Sim {
    config: PolicyConfig,
    guests: Vec<Guest>,
    /// Host MemAvailable when every guest is at size 0; guests' sizes count against it.
    host_base_kib: u64,
    history: History,
    now_ms: u64,
    /// Offsets inside each second at which guests sample stats and the coordinator ticks.
    sample_phase_ms: u64,
    tick_phase_ms: u64,
    log: Vec<Decisions>,
}

impl Sim {
    fn new(guests: Vec<Guest>, host_base_mib: u64, sample_phase_ms: u64, tick_phase_ms: u64) -> Sim {
        Sim {
            config: PolicyConfig::DEFAULT,
            guests,
            host_base_kib: mib_to_kib(host_base_mib),
            history: History::EMPTY,
            now_ms: 0,
            sample_phase_ms,
            tick_phase_ms,
            log: Vec::new(),
        }
    }

    fn host_available_kib(&self) -> u64 {
        self.host_base_kib.saturating_sub(self.guests.iter().map(|g| g.actual_kib).sum())
    }

    /// Advances one simulated second.
    fn second(&mut self) {
        for _ in 0..(1000 / STEP_MS) {
            self.now_ms += STEP_MS;
            for g in &mut self.guests {
                g.step();
            }
            let in_second = self.now_ms % 1000;
            if in_second == self.sample_phase_ms {
                let epoch = 1_700_000_000 + self.now_ms / 1000;
                for g in &mut self.guests {
                    g.sample = Some((g.free_kib(), g.mem_total_kib(), epoch));
                }
            }
            if in_second == self.tick_phase_ms {
                self.tick();
            }
        }
    }

    fn tick(&mut self) {
        let mut snap = Snapshot::EMPTY;
        snap.host = HostStats { available_kib: self.host_available_kib(), total_kib: mib_to_kib(24 * 1024) };
        for (slot, g) in self.guests.iter().enumerate() {
            snap.vms[slot] = Some(g.stats());
        }
        let before = self.history;
        let mut d = Decisions::EMPTY;
        decide_all_applied(&self.config, &snap, &mut self.history, &mut d);
        invariants::check(&self.config, &snap, &before, &d).unwrap();
        for (g, decision) in self.guests.iter_mut().zip(&d.vms) {
            if let Action::Grow { target_kib } | Action::Shrink { target_kib } = decision.action {
                g.target_kib = target_kib;
            }
        }
        self.log.push(d);
    }
}

#[test]
fn consumer_at_25_mb_s_from_512_mib_reaches_its_max_without_ever_starving() {
    // One guest at 512 MiB (60 MiB used), max 2048 MiB, consuming 25 MB/s from t=3 s; every
    // phase of stats sampling against the coordinator's tick.
    for sample_phase in (0..1000).step_by(STEP_MS_USIZE) {
        for tick_phase in (0..1000).step_by(STEP_MS_USIZE) {
            let mut sim = Sim::new(vec![Guest::new(512, 2048, 60)], 16 * 1024, sample_phase, tick_phase);
            for s in 0..120 {
                if s == 3 {
                    sim.guests[0].consume_kib_s = CONSUMER_KIB_S;
                }
                sim.second();
            }
            let g = sim.guests[0];
            assert_eq!(
                g.actual_kib,
                g.max_kib,
                "phases {sample_phase}/{tick_phase}: stuck at {} MiB",
                kib_to_mib(g.actual_kib)
            );
            assert!(
                g.min_free_below_max_kib >= mib_to_kib(100),
                "phases {sample_phase}/{tick_phase}: free memory fell to {} MiB",
                kib_to_mib(g.min_free_below_max_kib)
            );
        }
    }
}

#[test]
fn consumer_reaches_max_in_about_the_time_its_rate_allows() {
    // 1536 MiB to fill at 23.8 MiB/s is 64 s; the policy must not add more than a few ticks.
    let mut sim = Sim::new(vec![Guest::new(512, 2048, 60)], 16 * 1024, 300, 700);
    sim.guests[0].consume_kib_s = CONSUMER_KIB_S;
    let mut seconds = 0;
    while sim.guests[0].actual_kib < sim.guests[0].max_kib {
        sim.second();
        seconds += 1;
        assert!(seconds < 80, "not at max after {seconds} s");
    }
    assert!(seconds >= 50, "reached max after {seconds} s: grew far ahead of need");
}

#[test]
fn idle_vm_with_1_8_gib_unused_is_shrunk_gradually_to_near_the_threshold() {
    // 2048 MiB guest using 160 MiB: 1848 MiB free (1.8 GiB).
    let mut sim = Sim::new(vec![Guest::new(2048, 2048, 160)], 16 * 1024, 200, 600);
    let mut sizes = vec![sim.guests[0].actual_kib];
    for _ in 0..60 {
        sim.second();
        sizes.push(sim.guests[0].target_kib);
    }
    let shrinks: Vec<u64> = sizes.windows(2).filter(|w| w[1] < w[0]).map(|w| w[0] - w[1]).collect();
    assert!(shrinks.len() >= 8, "only {} steps: not gradual", shrinks.len());
    for (tick, d) in sim.log.iter().enumerate() {
        if let Action::Shrink { target_kib } = d.vms[0].action {
            let before = sizes[tick];
            let excess = d.vms[0].unused_now_kib.unwrap() - mib_to_kib(100);
            assert!((before - target_kib) * 4 <= excess, "tick {tick}: gave more than a quarter of {excess} KiB");
            assert!(before - target_kib <= mib_to_kib(256));
        }
    }
    let free = kib_to_mib(sim.guests[0].free_kib());
    assert!((100..=300).contains(&free), "ended with {free} MiB free");
    // Settled: no more balloon changes in the last 20 s.
    assert!(sim.log[40..].iter().all(|d| matches!(d.vms[0].action, Action::Hold(_))));
}

#[test]
fn when_the_host_is_short_an_idle_vm_funds_the_consumer() {
    // Host has 230 MiB above all guests (30 MiB over its reserve). Guest 0 consumes; guest 1 idles
    // with 1.3 GiB free. Guest 0 must grow on memory taken from guest 1, the host never
    // giving what it has not got.
    let guests = vec![Guest::new(512, 2048, 60), Guest::new(1536, 2048, 200)];
    let host_base = 512 + 1536 + 230;
    let mut sim = Sim::new(guests, host_base, 400, 900);
    sim.guests[0].consume_kib_s = CONSUMER_KIB_S;
    for _ in 0..40 {
        sim.second();
        let committed: u64 = sim.guests.iter().map(|g| g.target_kib).sum();
        assert!(mib_to_kib(host_base) - committed > mib_to_kib(200), "targets overcommit the host reserve");
    }
    assert!(
        sim.guests[0].actual_kib >= mib_to_kib(1024),
        "consumer only at {} MiB",
        kib_to_mib(sim.guests[0].actual_kib)
    );
    assert!(
        sim.guests[1].actual_kib <= mib_to_kib(1024),
        "idle guest still at {} MiB",
        kib_to_mib(sim.guests[1].actual_kib)
    );
    assert!(sim.guests[1].free_kib() >= mib_to_kib(100));
}

#[test]
fn freed_memory_goes_back_to_the_host_after_the_consumer_exits() {
    // The course harness's consumer frees everything at once at its max; within a minute the
    // guest is back within 300 MiB free, without a single release over a quarter of excess.
    let mut sim = Sim::new(vec![Guest::new(512, 2048, 60)], 16 * 1024, 500, 100);
    sim.guests[0].consume_kib_s = CONSUMER_KIB_S;
    while sim.guests[0].actual_kib < sim.guests[0].max_kib {
        sim.second();
    }
    sim.guests[0].consume_kib_s = 0;
    sim.guests[0].used_kib = mib_to_kib(60);
    let mut seconds = 0;
    while sim.guests[0].free_kib() > mib_to_kib(300) {
        sim.second();
        seconds += 1;
        assert!(seconds <= 60, "still {} MiB free after a minute", kib_to_mib(sim.guests[0].free_kib()));
    }
}
