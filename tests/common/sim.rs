//! A host with guests, simulated in 100 ms steps, driven by the real policy the way the daemon
//! drives real guests. It keeps what makes the problem hard on a real host:
//! - guests sample their stats on their own period, so a sample is up to a period old;
//! - balloons take time to move, and an inflating balloon needs free pages: it takes free
//!   memory first, then page cache, and stalls when only used memory is left;
//! - the host pays for guest memory when the guest touches it: a grant is free for the host
//!   until the guest uses it, and memory a guest freed stays backed until the balloon takes it;
//!   QEMU's RSS is touched guest memory plus its own overhead;
//! - page cache fills free memory down to a watermark and goes first when memory is needed;
//! - a guest whose free memory and cache run out kills its consumer (the OOM killer);
//! - a guest can lie about its free memory.
//!
//! Scores are measured on the guests' true state every step, not on what they reported.

use memory_coordinator::policy::{
    Action, Decisions, History, HostStats, MAX_DOMAINS, PolicyConfig, Snapshot, VmLimits, VmStats, decide, invariants,
};
use memory_coordinator::units::mib_to_kib;

/// Simulation step.
pub const STEP_MS: u64 = 100;
/// How fast a balloon moves, KiB per second (a 512 MiB move lands in half a second).
const BALLOON_KIB_S: u64 = 1024 * 1024;
/// Memory the guest kernel keeps out of MemTotal (balloon size minus MemTotal).
const KERNEL_RESERVED_KIB: u64 = 40 * 1024;
/// QEMU's own memory per VM, on top of the guest's touched memory.
const QEMU_OVERHEAD_KIB: u64 = 60 * 1024;
/// Page cache does not push MemFree below this (the guest's low watermark).
const CACHE_WATERMARK_KIB: u64 = 60 * 1024;
/// A guest kills its consumer when its free memory plus cache falls below this.
const OOM_FLOOR_KIB: u64 = 8 * 1024;
/// The starvation threshold the scores use (the course's).
pub const STARVING_KIB: u64 = 100 * 1024;

/// What a guest runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Workload {
    Idle,
    /// Touches new memory at this rate from `start_s` until it is OOM-killed or holds `limit`
    /// (then, if `free_after_s` is set, frees everything that long after reaching it).
    Consumer {
        kib_s: u64,
        start_s: f64,
        limit_kib: Option<u64>,
        free_after_s: Option<f64>,
    },
    /// Reads a disk: page cache grows at `kib_s` up to `cache_kib` from `start_s`, kept.
    CacheReader {
        kib_s: u64,
        cache_kib: u64,
        start_s: f64,
    },
    /// Allocates `kib` at `kib_s` from `start_s`, holds it `hold_s`, frees it, repeatedly every
    /// `period_s`.
    Burst {
        kib: u64,
        kib_s: u64,
        start_s: f64,
        hold_s: f64,
        period_s: f64,
    },
}

/// A guest and what the host sees of it.
#[derive(Clone, Debug)]
pub struct Guest {
    pub name: String,
    pub actual_kib: u64,
    pub target_kib: u64,
    pub max_kib: u64,
    /// Process memory (anonymous).
    pub anon_kib: u64,
    /// Page cache (reclaimable).
    pub cache_kib: u64,
    /// Free guest pages the host backs (touched before) and free pages it does not.
    pub free_touched_kib: u64,
    pub free_untouched_kib: u64,
    pub workload: Workload,
    /// Reports 0 free memory whatever it has.
    pub liar: bool,
    pub limits: VmLimits,
    /// Last reported stats: (MemFree, MemAvailable, MemTotal, epoch seconds).
    sample: Option<(u64, u64, u64, u64)>,
    burst_held_kib: u64,
    consumer_done: bool,
    reached_limit_at_s: Option<f64>,
    // Scores.
    pub oom_kills: u32,
    pub oom_kills_below_max: u32,
    pub starve_steps: u64,
    pub peak_kib: u64,
    pub granted_kib: u64,
    pub changes: u32,
    pub free_sum_kib: u128,
    pub available_sum_kib: u128,
    pub grows_while_available_above_keep: u32,
    /// Lowest true MemAvailable while below max.
    pub min_available_below_max_kib: u64,
}

impl Guest {
    /// A guest of `actual_mib` (max `max_mib`) using `used_mib`, every page of which was
    /// touched; the rest of its memory never was.
    pub fn new(name: &str, actual_mib: u64, max_mib: u64, used_mib: u64) -> Guest {
        let actual = mib_to_kib(actual_mib);
        let used = mib_to_kib(used_mib);
        Guest {
            name: name.to_owned(),
            actual_kib: actual,
            target_kib: actual,
            max_kib: mib_to_kib(max_mib),
            anon_kib: used,
            cache_kib: 0,
            free_touched_kib: 0,
            free_untouched_kib: actual - KERNEL_RESERVED_KIB - used,
            workload: Workload::Idle,
            liar: false,
            limits: VmLimits::DEFAULT,
            sample: None,
            burst_held_kib: 0,
            consumer_done: false,
            reached_limit_at_s: None,
            oom_kills: 0,
            oom_kills_below_max: 0,
            starve_steps: 0,
            peak_kib: actual,
            granted_kib: 0,
            changes: 0,
            free_sum_kib: 0,
            available_sum_kib: 0,
            grows_while_available_above_keep: 0,
            min_available_below_max_kib: u64::MAX,
        }
    }

    pub fn with(mut self, workload: Workload) -> Guest {
        self.workload = workload;
        self
    }

    /// Starts with `mib` of page cache (touched), taken from its free memory.
    pub fn with_cache(mut self, mib: u64) -> Guest {
        let kib = mib_to_kib(mib).min(self.free_untouched_kib);
        self.free_untouched_kib -= kib;
        self.cache_kib = kib;
        self
    }

    pub fn lying(mut self) -> Guest {
        self.liar = true;
        self
    }

    pub fn mem_total_kib(&self) -> u64 {
        self.actual_kib - KERNEL_RESERVED_KIB
    }

    pub fn free_kib(&self) -> u64 {
        self.free_touched_kib + self.free_untouched_kib
    }

    /// MemAvailable: free plus reclaimable cache.
    pub fn available_kib(&self) -> u64 {
        self.free_kib() + self.cache_kib
    }

    /// Guest memory the host backs (touched pages), kernel reserve included.
    pub fn touched_kib(&self) -> u64 {
        KERNEL_RESERVED_KIB + self.anon_kib + self.cache_kib + self.free_touched_kib
    }

    pub fn rss_kib(&self) -> u64 {
        self.touched_kib() + QEMU_OVERHEAD_KIB
    }

    /// Takes `kib` of free pages for a new use: touched ones first (the allocator hands out
    /// hot pages), then untouched ones, which the host now has to back. Returns what it got.
    fn take_free(&mut self, kib: u64) -> u64 {
        let from_touched = kib.min(self.free_touched_kib);
        self.free_touched_kib -= from_touched;
        let from_untouched = (kib - from_touched).min(self.free_untouched_kib);
        self.free_untouched_kib -= from_untouched;
        from_touched + from_untouched
    }

    /// Finds `kib` of pages for an allocation: free memory, then page cache. Returns what it
    /// found.
    fn allocate(&mut self, kib: u64) -> u64 {
        let free = self.take_free(kib);
        let from_cache = (kib - free).min(self.cache_kib);
        self.cache_kib -= from_cache;
        free + from_cache
    }

    fn oom_kill(&mut self, now_s: f64) {
        self.oom_kills += 1;
        if self.actual_kib < self.max_kib {
            self.oom_kills_below_max += 1;
        }
        self.free_touched_kib += self.anon_kib + self.burst_held_kib;
        self.anon_kib = 0;
        self.burst_held_kib = 0;
        self.consumer_done = true;
        self.reached_limit_at_s.get_or_insert(now_s);
    }

    fn step(&mut self, now_s: f64) {
        // The balloon.
        let move_kib = BALLOON_KIB_S * STEP_MS / 1000;
        if self.target_kib > self.actual_kib {
            let up = move_kib.min(self.target_kib - self.actual_kib);
            self.actual_kib += up;
            // QEMU discarded these pages when they were ballooned: the guest gets untouched ones.
            self.free_untouched_kib += up;
        } else if self.target_kib < self.actual_kib {
            let want = move_kib.min(self.actual_kib - self.target_kib);
            // Inflating takes free pages (untouched first: they cost the host nothing), then
            // page cache; used memory cannot be taken.
            let untouched = want.min(self.free_untouched_kib);
            self.free_untouched_kib -= untouched;
            let touched = (want - untouched).min(self.free_touched_kib);
            self.free_touched_kib -= touched;
            let cache = (want - untouched - touched).min(self.cache_kib);
            self.cache_kib -= cache;
            self.actual_kib -= untouched + touched + cache;
        }

        // The workload.
        let per_step = |kib_s: u64| kib_s * STEP_MS / 1000;
        match self.workload {
            Workload::Idle => {}
            Workload::Consumer { kib_s, start_s, limit_kib, free_after_s } if now_s >= start_s => {
                if !self.consumer_done {
                    let want = per_step(kib_s).min(limit_kib.map_or(u64::MAX, |l| l.saturating_sub(self.anon_kib)));
                    if self.free_kib() + self.cache_kib < want + OOM_FLOOR_KIB {
                        self.oom_kill(now_s);
                    } else {
                        let got = self.allocate(want);
                        self.anon_kib += got;
                        if limit_kib.is_some_and(|l| self.anon_kib >= l) {
                            self.consumer_done = true;
                            self.reached_limit_at_s = Some(now_s);
                        }
                    }
                } else if let (Some(after), Some(at)) = (free_after_s, self.reached_limit_at_s)
                    && now_s >= at + after
                    && self.anon_kib > 0
                {
                    self.free_touched_kib += self.anon_kib;
                    self.anon_kib = 0;
                }
            }
            Workload::CacheReader { kib_s, cache_kib, start_s } if now_s >= start_s => {
                let room = self.free_kib().saturating_sub(CACHE_WATERMARK_KIB);
                let grow = per_step(kib_s).min(room).min(cache_kib.saturating_sub(self.cache_kib));
                let got = self.take_free(grow);
                self.cache_kib += got;
            }
            Workload::Burst { kib, kib_s, start_s, hold_s, period_s } if now_s >= start_s => {
                let phase = (now_s - start_s) % period_s;
                let ramp_s = kib as f64 / kib_s as f64;
                if phase < ramp_s {
                    let want = per_step(kib_s).min(kib - self.burst_held_kib);
                    if self.free_kib() + self.cache_kib < want + OOM_FLOOR_KIB {
                        self.oom_kill(now_s);
                    } else {
                        let got = self.allocate(want);
                        self.burst_held_kib += got;
                    }
                } else if phase >= ramp_s + hold_s && self.burst_held_kib > 0 {
                    self.free_touched_kib += self.burst_held_kib;
                    self.burst_held_kib = 0;
                }
            }
            _ => {}
        }

        // Scores on the true state.
        self.peak_kib = self.peak_kib.max(self.actual_kib);
        self.free_sum_kib += u128::from(self.free_kib());
        self.available_sum_kib += u128::from(self.available_kib());
        if self.actual_kib < self.max_kib && !self.liar {
            self.min_available_below_max_kib = self.min_available_below_max_kib.min(self.available_kib());
            if self.available_kib() < STARVING_KIB {
                self.starve_steps += 1;
            }
        }
    }

    /// A guest that used `mib` more memory before and freed it: free pages the host still backs.
    pub fn freed(mut self, mib: u64) -> Guest {
        let kib = mib_to_kib(mib).min(self.free_untouched_kib);
        self.free_untouched_kib -= kib;
        self.free_touched_kib += kib;
        self
    }

    fn take_sample(&mut self, epoch_s: u64) {
        let (free, available) = if self.liar { (0, 0) } else { (self.free_kib(), self.available_kib()) };
        self.sample = Some((free, available, self.mem_total_kib(), epoch_s));
    }

    fn stats(&self) -> VmStats {
        let (free, available, total, at) = match self.sample {
            Some((f, a, t, s)) => (Some(f), Some(a), Some(t), Some(s)),
            None => (None, None, None, None),
        };
        VmStats {
            actual_kib: self.actual_kib,
            max_kib: self.max_kib,
            unused_kib: free,
            usable_kib: available,
            available_kib: total,
            swap_in_kib: Some(0),
            swap_out_kib: Some(0),
            major_faults: Some(0),
            last_update_s: at,
            rss_kib: Some(self.rss_kib()),
            oom_kills: None,
            alloc_stalls: None,
            direct_reclaims: None,
        }
    }
}

/// The host, its guests and the policy driving them.
pub struct Sim {
    pub config: PolicyConfig,
    pub guests: Vec<Guest>,
    /// Host memory left for guests when none has touched anything.
    pub host_base_kib: u64,
    /// Host processes' own use over time: (from second, KiB).
    pub host_use: Vec<(f64, u64)>,
    pub history: Box<History>,
    decisions: Box<Decisions>,
    pub now_ms: u64,
    pub sample_phase_ms: u64,
    pub tick_phase_ms: u64,
    /// Lowest host MemAvailable seen, KiB (can be "negative": saturates at 0).
    pub host_min_kib: u64,
    pub host_min_at_s: f64,
    pub ticks: u64,
    pub pressure_ticks: u64,
    /// Every tick's decisions, if kept.
    pub log: Option<Vec<Decisions>>,
    /// Check `policy::invariants` after every tick (on by default; a test that judges a run
    /// only by its outcome turns it off).
    pub check_invariants: bool,
}

impl Sim {
    pub fn new(guests: Vec<Guest>, host_base_mib: u64) -> Sim {
        Sim {
            config: PolicyConfig::DEFAULT,
            guests,
            host_base_kib: mib_to_kib(host_base_mib),
            host_use: Vec::new(),
            history: Box::new(History::EMPTY),
            decisions: Box::new(Decisions::EMPTY),
            now_ms: 0,
            sample_phase_ms: 300,
            tick_phase_ms: 700,
            host_min_kib: u64::MAX,
            host_min_at_s: 0.0,
            ticks: 0,
            pressure_ticks: 0,
            log: None,
            check_invariants: true,
        }
    }

    pub fn keep_log(mut self) -> Sim {
        self.log = Some(Vec::new());
        self
    }

    /// Host MemAvailable now: its base minus what guests have touched and QEMU's overhead,
    /// minus the host's own processes.
    pub fn host_available_kib(&self) -> u64 {
        let guests: u64 = self.guests.iter().map(Guest::rss_kib).sum();
        let now_s = self.now_ms as f64 / 1000.0;
        let own = self.host_use.iter().rev().find(|(from, _)| now_s >= *from).map_or(0, |(_, kib)| *kib);
        self.host_base_kib.saturating_sub(guests + own)
    }

    /// Runs `seconds` of simulated time.
    pub fn run(&mut self, seconds: u64) {
        for _ in 0..seconds * 1000 / STEP_MS {
            self.step();
        }
    }

    pub fn step(&mut self) {
        self.now_ms += STEP_MS;
        let now_s = self.now_ms as f64 / 1000.0;
        for g in &mut self.guests {
            g.step(now_s);
        }
        let host = self.host_available_kib();
        if host < self.host_min_kib {
            self.host_min_kib = host;
            self.host_min_at_s = now_s;
        }
        let in_second = self.now_ms % 1000;
        if in_second == self.sample_phase_ms {
            for g in &mut self.guests {
                g.take_sample(1_700_000_000 + self.now_ms / 1000);
            }
        }
        if in_second == self.tick_phase_ms {
            self.tick();
        }
    }

    fn tick(&mut self) {
        let mut snap = Snapshot::EMPTY;
        snap.host = HostStats { available_kib: self.host_available_kib(), total_kib: mib_to_kib(64 * 1024) };
        for (slot, g) in self.guests.iter().enumerate().take(MAX_DOMAINS) {
            snap.vms[slot] = Some(g.stats());
            snap.limits[slot] = g.limits;
        }
        let before = *self.history;
        decide(&self.config, &snap, &mut self.history, &mut self.decisions);
        if self.check_invariants {
            invariants::check(&self.config, &snap, &before, &self.decisions).unwrap();
        }
        self.ticks += 1;
        if self.decisions.pressure {
            self.pressure_ticks += 1;
        }
        for (slot, g) in self.guests.iter_mut().enumerate() {
            let d = self.decisions.vms[slot];
            if let Action::Grow { target_kib } = d.action {
                g.granted_kib += target_kib.saturating_sub(g.actual_kib);
                if d.free_now_kib.is_some_and(|f| f > d.keep_kib) {
                    g.grows_while_available_above_keep += 1;
                }
            }
            if let Some(target) = d.action.target_kib() {
                g.target_kib = target;
                g.changes += 1;
                self.history.applied(slot, &d);
            }
        }
        if let Some(log) = &mut self.log {
            log.push(*self.decisions);
        }
    }

    /// The scores of the run so far.
    pub fn scores(&self, name: &str) -> Scores {
        let steps = (self.now_ms / STEP_MS).max(1) as u128;
        let n = self.guests.len().max(1) as u128;
        let consumers: Vec<&Guest> =
            self.guests.iter().filter(|g| matches!(g.workload, Workload::Consumer { .. }) && !g.liar).collect();
        let peaks_kib: Vec<u64> = consumers.iter().map(|g| g.peak_kib).collect();
        let peaks: Vec<f64> = peaks_kib.iter().map(|p| *p as f64).collect();
        Scores {
            scenario: name.to_owned(),
            host_min_mib: self.host_min_kib / 1024,
            starve_s: self.guests.iter().map(|g| g.starve_steps).sum::<u64>() as f64 * STEP_MS as f64 / 1000.0,
            oom_below_max: self.guests.iter().map(|g| g.oom_kills_below_max).sum(),
            mean_free_mib: mib_of(self.guests.iter().map(|g| g.free_sum_kib).sum::<u128>() / steps / n),
            mean_available_mib: mib_of(self.guests.iter().map(|g| g.available_sum_kib).sum::<u128>() / steps / n),
            peak_min_mib: peaks_kib.iter().min().map_or(0, |p| p / 1024),
            peak_max_mib: peaks_kib.iter().max().map_or(0, |p| p / 1024),
            jain: jain(&peaks),
            changes: self.guests.iter().map(|g| u64::from(g.changes)).sum(),
            pressure_ticks: self.pressure_ticks,
            min_available_mib: self.guests.iter().map(|g| g.min_available_below_max_kib).min().unwrap_or(0) / 1024,
        }
    }
}

fn mib_of(kib: u128) -> u64 {
    u64::try_from(kib / 1024).unwrap_or(u64::MAX)
}

/// Jain's fairness index of the values: 1 when all are equal, 1/n when one has everything.
pub fn jain(values: &[f64]) -> f64 {
    let sum: f64 = values.iter().sum();
    let squares: f64 = values.iter().map(|v| v * v).sum();
    if squares == 0.0 { 1.0 } else { sum * sum / (values.len() as f64 * squares) }
}

/// One row of `make bench-policy`.
#[derive(Clone, Debug)]
pub struct Scores {
    pub scenario: String,
    pub host_min_mib: u64,
    pub starve_s: f64,
    pub oom_below_max: u32,
    pub mean_free_mib: u64,
    pub mean_available_mib: u64,
    /// Lowest and highest peak balloon among the (honest) consumers.
    pub peak_min_mib: u64,
    pub peak_max_mib: u64,
    /// Jain's index of the consumers' peaks.
    pub jain: f64,
    pub changes: u64,
    pub pressure_ticks: u64,
    /// Lowest true MemAvailable of any guest while below its max.
    pub min_available_mib: u64,
}

impl Scores {
    pub const HEADER: &'static str = "scenario                   host min  starve-s  OOM<max  min avail  mean free  mean avail  peaks (MiB)    Jain  changes  pressure";

    pub fn row(&self) -> String {
        format!(
            "{:<26} {:>5} MiB {:>9.1} {:>8} {:>6} MiB {:>6} MiB {:>7} MiB {:>5}-{:<6} {:>6.3} {:>8} {:>9}",
            self.scenario,
            self.host_min_mib,
            self.starve_s,
            self.oom_below_max,
            self.min_available_mib,
            self.mean_free_mib,
            self.mean_available_mib,
            self.peak_min_mib,
            self.peak_max_mib,
            self.jain,
            self.changes,
            self.pressure_ticks
        )
    }
}

/// The course consumer: ~23 MB/s (one page per ~100 µs plus overhead), until OOM-killed.
pub const COURSE_KIB_S: u64 = 23_000_000 / 1024;

fn consumer(start_s: f64) -> Workload {
    Workload::Consumer { kib_s: COURSE_KIB_S, start_s, limit_kib: None, free_after_s: None }
}

/// Host base memory for `guests` plus `spare_mib` of MemAvailable once they are up.
fn host_for(guests: &[Guest], spare_mib: u64) -> u64 {
    guests.iter().map(Guest::rss_kib).sum::<u64>() / 1024 + spare_mib
}

/// The named scenarios of `make bench-policy` and `tests/policy_scenarios.rs`, with the
/// seconds each runs.
pub fn scenario(name: &str) -> (Sim, u64) {
    match name {
        // The course's T1: one guest runs the consumer from 512 MiB, three idle, a roomy host.
        "T1 (roomy host)" => {
            let mut guests: Vec<Guest> = (1..=4).map(|i| Guest::new(&format!("vm{i}"), 512, 2048, 60)).collect();
            guests[0].workload = consumer(5.0);
            (Sim::new(guests, 24 * 1024), 120)
        }
        // Four consumers at once, host MemAvailable held to about 3 GiB, and two idle guests
        // whose spare memory is all there is once the host's is promised.
        "host short, 4 consumers" => {
            let mut guests: Vec<Guest> =
                (1..=4).map(|i| Guest::new(&format!("vm{i}"), 512, 2048, 60).with(consumer(5.0))).collect();
            guests.extend((5..=6).map(|i| Guest::new(&format!("vm{i}"), 1024, 2048, 100)));
            let host = host_for(&guests, 3072);
            (Sim::new(guests, host), 150)
        }
        // A guest full of page cache beside a consumer on a host too short for the consumer to
        // reach its max unless the cache goes.
        "page cache funds consumer" => {
            let cache = Guest::new("cache", 2048, 2048, 60).with_cache(1300).with(Workload::CacheReader {
                kib_s: 200 * 1024,
                cache_kib: 1300 * 1024,
                start_s: 0.0,
            });
            let consumer = Guest::new("consumer", 512, 2048, 60).with(consumer(10.0));
            // 1600 MiB to spare, 1060 of which the guests' untouched free memory may claim: the
            // consumer needs 1536 MiB more to reach its max, so it gets there only if the cache
            // guest gives page cache, not only its free memory.
            let host = host_for(&[cache.clone(), consumer.clone()], 1600);
            (Sim::new(vec![cache, consumer], host), 150)
        }
        // A guest that reports 0 free memory forever beside an honest consumer.
        "liar beside consumer" => {
            let liar = Guest::new("liar", 1024, 4096, 200).lying();
            let honest = Guest::new("honest", 512, 2048, 60).with(consumer(5.0));
            let host = host_for(&[liar.clone(), honest.clone()], 3000);
            (Sim::new(vec![liar, honest], host), 120)
        }
        // A guest allocating 300 MiB at 50 MB/s, holding it 2 s and freeing it, every 20 s.
        "bursts" => {
            let bursty = Guest::new("bursty", 1024, 2048, 100).with(Workload::Burst {
                kib: 300 * 1024,
                kib_s: 50_000_000 / 1024,
                start_s: 20.0,
                hold_s: 2.0,
                period_s: 20.0,
            });
            let idle = Guest::new("idle", 1024, 2048, 100);
            (Sim::new(vec![bursty, idle], 24 * 1024), 120)
        }
        // 64 guests of 1 GiB, 16 of which consume 1.5 GiB each, one after another, on a host
        // that can back every guest's current size and 2 GiB more: the consumers are funded by
        // what the idle ones give back.
        "64 VMs, short host" => {
            let guests: Vec<Guest> = (0..64u8)
                .map(|i| {
                    let g = Guest::new(&format!("vm{i}"), 1024, 4096, 60);
                    let start_s = 5.0 + f64::from(i) / 4.0;
                    let limit_kib = Some(mib_to_kib(1536));
                    let w = Workload::Consumer { kib_s: COURSE_KIB_S, start_s, limit_kib, free_after_s: None };
                    if i % 4 == 0 { g.with(w) } else { g }
                })
                .collect();
            let host = guests.iter().map(|g| g.actual_kib / 1024 + 60).sum::<u64>() + 2048;
            (Sim::new(guests, host), 240)
        }
        // Two consumers, one with weight 2, on a host with nothing to spare, funded only by an
        // idle guest that gives at most 24 MiB a tick (step cap), while they ask for twice that.
        "weights 2:1, short host" => {
            let mut heavy = Guest::new("heavy", 512, 4096, 60).with(consumer(5.0));
            heavy.limits.weight = 2;
            let light = Guest::new("light", 512, 4096, 60).with(consumer(5.0));
            let donor = Guest::new("donor", 4096, 4096, 100);
            let guests = vec![heavy, light, donor];
            let host = guests.iter().map(|g| g.rss_kib() + g.free_kib()).sum::<u64>() / 1024 + 201;
            let mut sim = Sim::new(guests, host);
            sim.config.shrink_step_max_kib = mib_to_kib(24);
            (sim, 60)
        }
        other => panic!("no scenario {other:?}"),
    }
}

/// Every scenario, in the order `make bench-policy` prints them.
pub const SCENARIOS: [&str; 7] = [
    "T1 (roomy host)",
    "host short, 4 consumers",
    "page cache funds consumer",
    "liar beside consumer",
    "bursts",
    "64 VMs, short host",
    "weights 2:1, short host",
];
