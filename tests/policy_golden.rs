//! Golden outputs of the policy: `decide()` (and `restore()`) must give bit-identical
//! decisions and histories to the recorded ones, tick after tick. This pins the policy's
//! behaviour while its implementation is optimized: a change that alters any figure of any
//! decision or any field of any history on any tick fails here, with the run it diverged in.
//!
//! Each run's fingerprint is a 64-bit FNV-1a hash, chained over every tick, of the `Debug`
//! text of the tick's `Decisions` and the `History` after it (every slot, every field). Runs:
//! - every simulator scenario (`tests/common/sim.rs`), plus the lone consumer at a few
//!   sampling phases;
//! - the synthetic host of the benchmark (`tests/common/synthetic.rs`) at 4, 64 and 256 VMs;
//! - seeded random worlds: random configs (valid ones and unvalidated ones), 1..=256 VMs with
//!   random limits, plausible figures that evolve from tick to tick with now and then an
//!   extreme one (0, `u64::MAX`, beyond `MAX_KIB`), clocks that advance, freeze, vanish or go
//!   back, balloons that follow the targets (some actions not applied, some slots reset), and
//!   `restore()` on the last tick.
//!
//! After an intended change of behaviour, print the new fingerprints with
//! `GOLDEN_PRINT=1 cargo test --release --test policy_golden -- --nocapture` and paste them.

// Every cast is of a random draw below a small bound (`Rng::below`).
#![allow(clippy::cast_possible_truncation)]

mod common;

use common::{sim, synthetic};
use memory_coordinator::policy::{
    Decisions, FreeFigure, History, HostStats, MAX_DOMAINS, PolicyConfig, Snapshot, VmLimits, VmStats, decide,
    decide_all_applied, restore,
};
use std::fmt::Write;

/// 64-bit FNV-1a: stable across Rust releases (unlike `DefaultHasher`), fed by `write!`.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Write for Fnv {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for b in s.bytes() {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Ok(())
    }
}

fn feed(h: &mut Fnv, decisions: &Decisions, history: &History) {
    write!(h, "{decisions:?}{history:?}").unwrap();
}

fn sim_run(name: &str, mut s: sim::Sim, seconds: u64) -> (String, u64) {
    let mut h = Fnv::new();
    s.log = Some(Vec::new());
    for _ in 0..seconds {
        s.run(1);
        let log = s.log.as_mut().unwrap();
        for d in log.drain(..) {
            feed(&mut h, &d, &s.history);
        }
    }
    (name.to_owned(), h.0)
}

fn synthetic_run(vms: usize) -> (String, u64) {
    let config = PolicyConfig::DEFAULT;
    let mut snapshot = Box::new(Snapshot::EMPTY);
    let mut history = Box::new(History::EMPTY);
    let mut out = Box::new(Decisions::EMPTY);
    let mut h = Fnv::new();
    for tick in 0..300 {
        synthetic::advance(&mut snapshot, &out, vms, tick);
        decide_all_applied(&config, &snapshot, &mut history, &mut out);
        feed(&mut h, &out, &history);
    }
    (format!("synthetic {vms}"), h.0)
}

/// xorshift64*: a fixed, seeded stream (in a `Cell`, so that draws can nest in arguments).
struct Rng(std::cell::Cell<u64>);

impl Rng {
    fn next(&self) -> u64 {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&self, pct: u64) -> bool {
        self.below(100) < pct
    }
    /// Now and then an extreme figure instead of `plausible`.
    fn wild(&self, plausible: u64) -> u64 {
        if self.chance(2) {
            [0, 1, u64::MAX, u64::MAX - 1, 1 << 40, (1 << 40) + 7][self.below(6) as usize]
        } else {
            plausible
        }
    }
    fn opt(&self, missing_pct: u64, v: u64) -> Option<u64> {
        if self.chance(missing_pct) { None } else { Some(v) }
    }
}

fn random_config(r: &Rng) -> PolicyConfig {
    let mib = |v: u64| v * 1024;
    let mut c = PolicyConfig {
        interval_s: 1 + r.below(5),
        vm_min_unused_kib: mib(16 + r.below(256)),
        host_min_free_kib: mib(r.below(512)),
        shrink_band_kib: mib(r.below(128)),
        shrink_fraction_pct: 1 + r.below(100),
        shrink_step_max_kib: mib(1 + r.below(512)),
        vm_min_size_kib: mib(r.below(1024)),
        lead_ticks: 1 + r.below(5),
        stale_ticks: 2 + r.below(5) as u32,
        holdoff_ticks: r.below(8) as u32,
        free_figure: if r.chance(50) { FreeFigure::Available } else { FreeFigure::Unused },
    };
    if r.chance(10) {
        c = PolicyConfig::DEFAULT;
    }
    if r.chance(10) {
        // Unvalidated: decide() sanitizes it.
        c.interval_s = r.wild(r.below(8));
        c.shrink_fraction_pct = r.wild(r.below(300));
        c.lead_ticks = r.wild(r.below(200));
        c.stale_ticks = r.below(4) as u32;
        c.vm_min_unused_kib = r.wild(c.vm_min_unused_kib);
        c.shrink_step_max_kib = r.wild(c.shrink_step_max_kib);
        c.host_min_free_kib = r.wild(c.host_min_free_kib);
    }
    c
}

/// One random VM's state between ticks.
#[derive(Clone, Copy)]
struct Guest {
    slot: usize,
    actual: u64,
    max: u64,
    used: u64,
    cache: u64,
    clock: u64,
    swap_in: u64,
    faults: u64,
    ooms: u64,
    stalls: u64,
    reclaims: u64,
}

fn random_run(seed: u64) -> (String, u64) {
    let r = Rng(std::cell::Cell::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1));
    let config = random_config(&r);
    let n = match r.below(10) {
        0 => 1 + r.below(256) as usize,
        1 => MAX_DOMAINS,
        _ => 1 + r.below(12) as usize,
    };
    let mut slots: Vec<usize> = (0..MAX_DOMAINS).collect();
    for i in (1..slots.len()).rev() {
        slots.swap(i, r.below(i as u64 + 1) as usize);
    }
    let mib = |v: u64| v * 1024;
    let mut snapshot = Box::new(Snapshot::EMPTY);
    let mut guests: Vec<Guest> = slots[..n]
        .iter()
        .map(|&slot| {
            let max = mib(256 + r.below(8192));
            let actual = (max / 100 * (10 + r.below(91))).max(mib(128));
            snapshot.limits[slot] = VmLimits {
                min_kib: if r.chance(20) { Some(r.wild(max / 100 * r.below(100))) } else { None },
                max_kib: if r.chance(20) { Some(r.wild(max / 100 * r.below(101))) } else { None },
                weight: if r.chance(70) { 1 } else { r.wild(r.below(1200)) as u32 },
            };
            Guest {
                slot,
                actual,
                max,
                used: actual / 100 * r.below(100),
                cache: 0,
                clock: 1_700_000_000,
                swap_in: 0,
                faults: 0,
                ooms: 0,
                stalls: 0,
                reclaims: 0,
            }
        })
        .collect();
    let host_base = mib(r.below(4096)) + guests.iter().map(|g| g.actual).sum::<u64>() / 100 * r.below(120);
    let mut history = Box::new(History::EMPTY);
    let mut out = Box::new(Decisions::EMPTY);
    let mut h = Fnv::new();
    let ticks = 10 + r.below(50);
    for tick in 0..ticks {
        let mut touched = 0u64;
        for g in &mut guests {
            // The balloon follows our last target (fully, part-way, or not), or someone else's.
            if let Some(target) = out.vms[g.slot].action.target_kib() {
                g.actual = match r.below(10) {
                    0 => g.actual,
                    1 => (g.actual + target) / 2,
                    _ => target,
                };
            }
            if r.chance(3) {
                g.actual = g.max / 100 * (10 + r.below(91));
            }
            g.actual = g.actual.clamp(mib(64), g.max);
            let total = g.actual.saturating_sub(mib(40));
            let delta = r.below(mib(200)).cast_signed() - mib(80).cast_signed();
            g.used = g.used.saturating_add_signed(delta).min(total);
            g.cache = (g.cache + r.below(mib(64))).min(total - g.used);
            if r.chance(10) {
                g.cache /= 2;
            }
            g.clock = match r.below(20) {
                0 => g.clock.saturating_sub(r.below(5)),
                1..=4 => g.clock,
                5 => g.clock + 2,
                _ => g.clock + 1,
            };
            g.swap_in += if r.chance(5) { r.below(mib(32)) } else { 0 };
            g.faults += if r.chance(10) { r.below(1000) } else { r.below(5) };
            g.ooms += u64::from(r.chance(2));
            g.stalls += if r.chance(3) { r.below(30) } else { 0 };
            g.reclaims += u64::from(r.chance(5));
            let free = total - g.used - g.cache;
            touched += g.used + g.cache;
            let liar = r.chance(3);
            snapshot.vms[g.slot] = if r.chance(2) {
                None
            } else {
                Some(VmStats {
                    actual_kib: r.wild(g.actual),
                    max_kib: r.wild(g.max),
                    unused_kib: r.opt(5, r.wild(if liar { 0 } else { free })),
                    usable_kib: r.opt(10, r.wild(free + g.cache)),
                    available_kib: r.opt(5, r.wild(total)),
                    swap_in_kib: r.opt(5, g.swap_in),
                    swap_out_kib: r.opt(5, g.swap_in / 2),
                    major_faults: r.opt(5, g.faults),
                    last_update_s: if r.chance(5) { None } else { Some(r.wild(g.clock)) },
                    rss_kib: r.opt(20, r.wild(g.used + g.cache + mib(60))),
                    oom_kills: r.opt(30, g.ooms),
                    alloc_stalls: r.opt(30, g.stalls),
                    direct_reclaims: r.opt(30, g.reclaims),
                })
            };
        }
        snapshot.host = HostStats {
            available_kib: r.wild(host_base.saturating_sub(touched / 2) + r.below(mib(64))),
            total_kib: host_base * 2,
        };
        decide(&config, &snapshot, &mut history, &mut out);
        for g in &guests {
            if r.chance(90) {
                history.applied(g.slot, &out.vms[g.slot]);
            }
            if r.chance(1) {
                history.reset(g.slot);
            }
        }
        feed(&mut h, &out, &history);
        if tick + 1 == ticks {
            restore(&config, &snapshot, &history, &mut out);
            feed(&mut h, &out, &history);
        }
    }
    (format!("random {seed}"), h.0)
}

fn fingerprints() -> Vec<(String, u64)> {
    let mut runs = Vec::new();
    for name in sim::SCENARIOS {
        let (s, seconds) = sim::scenario(name);
        runs.push(sim_run(name, s, seconds));
    }
    for phase in [0, 300, 700] {
        let guest = sim::Guest::new("vm", 512, 2048, 60).with(sim::Workload::Consumer {
            kib_s: sim::COURSE_KIB_S,
            start_s: 3.0,
            limit_kib: None,
            free_after_s: None,
        });
        let mut s = sim::Sim::new(vec![guest], 16 * 1024);
        s.sample_phase_ms = phase;
        runs.push(sim_run(&format!("consumer phase {phase}"), s, 100));
    }
    for vms in [4, 64, 256] {
        runs.push(synthetic_run(vms));
    }
    for seed in 0..RANDOM_RUNS {
        runs.push(random_run(seed));
    }
    runs
}

const RANDOM_RUNS: u64 = 300;

/// The recorded fingerprints, in the order `fingerprints()` makes them.
const GOLDEN: &[(&str, u64)] = &[
    ("T1 (roomy host)", 0x45fd5107ea1199b8),
    ("host short, 4 consumers", 0x626fe414ade16689),
    ("page cache funds consumer", 0xe99d628949ff9cfe),
    ("liar beside consumer", 0xf140b87f092a7e7f),
    ("bursts", 0xf6cf63f9267ac9bf),
    ("64 VMs, short host", 0x900ade640617df19),
    ("weights 2:1, short host", 0x7bfd495597ac4eaf),
    ("consumer phase 0", 0xb2321aa26ef19bbe),
    ("consumer phase 300", 0xf80bb317c13221c2),
    ("consumer phase 700", 0x9405bd03a1fcd6db),
    ("synthetic 4", 0x26650134e4c5ffbe),
    ("synthetic 64", 0x20c0c7295dd5da64),
    ("synthetic 256", 0xa98a97ac0a328a06),
    ("random 0", 0xcb1dca22bb1c5a95),
    ("random 1", 0x3c79adeae91e5d41),
    ("random 2", 0x55017887029f62b9),
    ("random 3", 0xa086fe4724463ba3),
    ("random 4", 0x5d741511b9d4448c),
    ("random 5", 0x35121c91d73344b1),
    ("random 6", 0x027c5adcaf9d6783),
    ("random 7", 0x54f4564c64e825d3),
    ("random 8", 0x913d4fb53542f3a6),
    ("random 9", 0xec9522cd948a9f65),
    ("random 10", 0x0c7b4789538d712f),
    ("random 11", 0x4b1621b40b22de5a),
    ("random 12", 0xa06295218c0b6a85),
    ("random 13", 0x1e2c29195b753748),
    ("random 14", 0x27946c0a8f53689a),
    ("random 15", 0x2e8d89a997bfdcd4),
    ("random 16", 0x4fa8cad81bbc437b),
    ("random 17", 0x71077458a9034c6b),
    ("random 18", 0x48c7295332542283),
    ("random 19", 0x5a5aaa4c5cc05a2e),
    ("random 20", 0x1469d14b70be9665),
    ("random 21", 0xc4057bdab76b8b33),
    ("random 22", 0x2809d2c48809d917),
    ("random 23", 0x9f3f148bbf518c87),
    ("random 24", 0x1248ff9c27b74dca),
    ("random 25", 0x607960339c710273),
    ("random 26", 0xfcb5710aa53d7bb1),
    ("random 27", 0x48081862d5a14bbb),
    ("random 28", 0x4c036713afb79f2a),
    ("random 29", 0x516aea2743767f07),
    ("random 30", 0xad0d240da2e0081b),
    ("random 31", 0x267c6e0fe8615b6f),
    ("random 32", 0xeccea342d3fbc24b),
    ("random 33", 0x6a9cddada4b23240),
    ("random 34", 0xfe0b86a218f16a0b),
    ("random 35", 0x26cb9eab476a424a),
    ("random 36", 0x7c1589fbf1580bf7),
    ("random 37", 0x403827b1692b19fe),
    ("random 38", 0xd2610eb516fc5f74),
    ("random 39", 0xbbd689256e344a9c),
    ("random 40", 0x932a23eddee3235e),
    ("random 41", 0xe2c0af4b5898df60),
    ("random 42", 0x35dac6ae2b0eae3e),
    ("random 43", 0x2ec1f40d70404546),
    ("random 44", 0xb333d0814877e939),
    ("random 45", 0x3d9ec72bf0323f7d),
    ("random 46", 0x944f7ccded1343ca),
    ("random 47", 0x149f1220bcd7139f),
    ("random 48", 0x12c1bac217d317fc),
    ("random 49", 0x8f706352edea181a),
    ("random 50", 0x21054638df98c33e),
    ("random 51", 0xbedc76c026e7a270),
    ("random 52", 0xb0242017d126d48a),
    ("random 53", 0xd3014a81a2c7ea35),
    ("random 54", 0xd30b115b5e96f083),
    ("random 55", 0x0245aa3b782a9eb5),
    ("random 56", 0x98f5e80989c552a8),
    ("random 57", 0xed34885794b13e4e),
    ("random 58", 0x8dbfe723d64dfc1d),
    ("random 59", 0x161f3ce2c0fcfdcb),
    ("random 60", 0xd8264368a124bb2b),
    ("random 61", 0x9681ba7c9520aa5d),
    ("random 62", 0x7cd697b9d48137f8),
    ("random 63", 0xaec87c6c00ee4212),
    ("random 64", 0x39c7b96cadaa1ca7),
    ("random 65", 0x33fc92ec04be7c45),
    ("random 66", 0x7a74d318da10a59b),
    ("random 67", 0x3865dfd2758001cc),
    ("random 68", 0x867280f8cea2d749),
    ("random 69", 0x4219422dfcd04352),
    ("random 70", 0xadee013301b78dd5),
    ("random 71", 0x81216ec5f5d34a34),
    ("random 72", 0x7d563a6f913c70ab),
    ("random 73", 0x93512076e15072f8),
    ("random 74", 0xd7fb3775ab283324),
    ("random 75", 0x694bf7d4e1ea8b90),
    ("random 76", 0x4fcb207edb1d118f),
    ("random 77", 0xb8c7ddd16c9189cd),
    ("random 78", 0x583ceddb85b8d47e),
    ("random 79", 0xdeec3bdaa5e78fab),
    ("random 80", 0x2f507a5c66fc038c),
    ("random 81", 0xb1d73a5ab5abc5ac),
    ("random 82", 0x88278b71cf19c650),
    ("random 83", 0x4aaf719843317ca0),
    ("random 84", 0xf943bd17caea5727),
    ("random 85", 0x5077b29c346c2c7e),
    ("random 86", 0xfe5414a841e86ed4),
    ("random 87", 0x7f81e1e8c5ec5c2b),
    ("random 88", 0xb6e33e53c1f3e7ca),
    ("random 89", 0x4885a55de08865c0),
    ("random 90", 0xb897d57d0d3a796a),
    ("random 91", 0xdaaa4b80efdde65f),
    ("random 92", 0x161738ea061699e8),
    ("random 93", 0x5f2e4142bb597155),
    ("random 94", 0x18e7cff98d846377),
    ("random 95", 0xcb5d32d72b3d0766),
    ("random 96", 0x8999150b5768e5f2),
    ("random 97", 0x458927ab18237264),
    ("random 98", 0xef222177f5f125d0),
    ("random 99", 0xfd868bd6f5339b15),
    ("random 100", 0x4331973878cee744),
    ("random 101", 0xf2b3b489a29cd85f),
    ("random 102", 0xdb611091a6ec9591),
    ("random 103", 0x4051b1fde6443deb),
    ("random 104", 0x088f16c7f3d2fb49),
    ("random 105", 0xc3a17c547bef3d0c),
    ("random 106", 0x3cca41148ffb72d5),
    ("random 107", 0xd3ae28764d897b73),
    ("random 108", 0x6ca9176c996d3231),
    ("random 109", 0xce8510374018b129),
    ("random 110", 0xfeab59665bab51bd),
    ("random 111", 0x63e658c75a7c4da3),
    ("random 112", 0x9998338512d1c2fb),
    ("random 113", 0x0f18739eee97ebd1),
    ("random 114", 0x5173c08a07d1f84e),
    ("random 115", 0x5ef888209ccbaf8f),
    ("random 116", 0x1a370c0454eab272),
    ("random 117", 0xae6735a35ef6b3c0),
    ("random 118", 0x148a1c7896038d6d),
    ("random 119", 0xab399bb79fac9d47),
    ("random 120", 0x60e60ae8ed4eebbf),
    ("random 121", 0x6946d01d3f083ba5),
    ("random 122", 0x3004fe567beee1fe),
    ("random 123", 0x4f479687b360abb2),
    ("random 124", 0x50cd31f7aa02d3eb),
    ("random 125", 0x04bef887ad0277e4),
    ("random 126", 0x97a50f7dfbb4a72a),
    ("random 127", 0x80f447488c20a5a9),
    ("random 128", 0xde50cb8ae2fb0a2b),
    ("random 129", 0xa6ad9297b8dd0435),
    ("random 130", 0xf595e131fd84b8a5),
    ("random 131", 0x80c6e837d12a6466),
    ("random 132", 0xc3b4c82ba345b16c),
    ("random 133", 0x7c8666b650b202e1),
    ("random 134", 0x9ff49282d4344d20),
    ("random 135", 0x3bc94933c0f234b9),
    ("random 136", 0xf6402c8492ccd083),
    ("random 137", 0xdeeaeb570066cd2d),
    ("random 138", 0xdd9b4805e38122d9),
    ("random 139", 0xede6e6d88163b676),
    ("random 140", 0x4f24dfbb8a603d27),
    ("random 141", 0x5e48c0eb217a755c),
    ("random 142", 0xf32735273cc43549),
    ("random 143", 0x3c4663fd5dc83f21),
    ("random 144", 0x5549bda3f8cc226a),
    ("random 145", 0x59558902905371c7),
    ("random 146", 0x640933b229053e4a),
    ("random 147", 0x7ead4760200392d4),
    ("random 148", 0x99a9a05aecb5af42),
    ("random 149", 0x94e5a30cb4f5cb3d),
    ("random 150", 0xaf666bebd65a9850),
    ("random 151", 0x1b57ec4207e7933c),
    ("random 152", 0xc18f03a5f1a197f5),
    ("random 153", 0xf12e6ae653dc9a52),
    ("random 154", 0x34bbf9798dd86719),
    ("random 155", 0x38911b67f1a74df1),
    ("random 156", 0xfdcc2b2480854ec9),
    ("random 157", 0x0948051c526ca95b),
    ("random 158", 0xacf9c8c4eb773547),
    ("random 159", 0xf2cc67ebdb16cb26),
    ("random 160", 0x839b6abfbb03f8e6),
    ("random 161", 0x95b5b5c433517bcc),
    ("random 162", 0x57f38f53e30ef167),
    ("random 163", 0xd24c1871b239aecf),
    ("random 164", 0x80fcf3f31856f3ae),
    ("random 165", 0x9335745b3b0dd200),
    ("random 166", 0x1089eaae69e6d5ab),
    ("random 167", 0xd03c47e3891a3774),
    ("random 168", 0x4f40b8a233a920aa),
    ("random 169", 0xe9b561e2f90e22ef),
    ("random 170", 0x9c1846f1cc9b0f9f),
    ("random 171", 0x0e3a17ff20f88b27),
    ("random 172", 0xfb1a6c74801aa33b),
    ("random 173", 0xbc49de3c084a21bc),
    ("random 174", 0xdf03f64ec886cf65),
    ("random 175", 0x6a4f23e699ace32e),
    ("random 176", 0x4102325a67a6e79c),
    ("random 177", 0x040c94dcffac6a11),
    ("random 178", 0x03c2ccc688ca3c55),
    ("random 179", 0xcbcdf8dd11afcf55),
    ("random 180", 0xd45df4dd2ad211e1),
    ("random 181", 0x79e91c107d88a790),
    ("random 182", 0x3fa534597eb8cc2c),
    ("random 183", 0x614b36cfb82c37aa),
    ("random 184", 0xfebbee55b4a5b3c7),
    ("random 185", 0xbad81cfd3883f5b8),
    ("random 186", 0x45e2ca3e3946e5d7),
    ("random 187", 0x4c8d1e03bdbdf219),
    ("random 188", 0x0df3bc1d6187c0d5),
    ("random 189", 0xf3f15944c5de4008),
    ("random 190", 0x29209247939ede4a),
    ("random 191", 0xc26971ae9fa1dfdd),
    ("random 192", 0xdbd695c00dc9c11c),
    ("random 193", 0x1b6d3e9e6c2d2403),
    ("random 194", 0xcc090c4f74559ca9),
    ("random 195", 0x78de36cceb94f105),
    ("random 196", 0x1779ad43457158ce),
    ("random 197", 0x6be248a1ce4d1bfc),
    ("random 198", 0xe3c308e5dc4a4963),
    ("random 199", 0xd0cd0a8bdfafc4ee),
    ("random 200", 0xe23269c9f1399174),
    ("random 201", 0x679a801e2a6aa46f),
    ("random 202", 0x1f81f690c63ec838),
    ("random 203", 0x99d731e2927cc872),
    ("random 204", 0xa7c68373fa957ea2),
    ("random 205", 0xeaf41cc0cc394548),
    ("random 206", 0x93b8fbea0edd3100),
    ("random 207", 0x3140234f945b64d0),
    ("random 208", 0x4bc60f88c6591f33),
    ("random 209", 0x69c62f064f38959a),
    ("random 210", 0x0368d19af9990edc),
    ("random 211", 0x4ec44d9b47713953),
    ("random 212", 0x74a88726e621b362),
    ("random 213", 0x2086fdab574d22ee),
    ("random 214", 0x1ee70bc1ef7e7799),
    ("random 215", 0x7d1ac7580d3d06a3),
    ("random 216", 0xa1c123653b35a4ac),
    ("random 217", 0xdde2699db2ffd990),
    ("random 218", 0xd257633f87cce41c),
    ("random 219", 0x7a6cb1b7bfee2181),
    ("random 220", 0x6b3c2234515d0c62),
    ("random 221", 0x862bc3e5f427d8dc),
    ("random 222", 0x1f6b4933b32e3ad6),
    ("random 223", 0x2922fd3083b068e4),
    ("random 224", 0x0d7af02e3589ce88),
    ("random 225", 0x7974ddafd8ea648b),
    ("random 226", 0x1a7b0c01fdfc4e2e),
    ("random 227", 0x1a14ad5beb456530),
    ("random 228", 0xcf44412a96203194),
    ("random 229", 0x3e96b542338e5ac3),
    ("random 230", 0x6e595deda70ef9df),
    ("random 231", 0x3f6abbeab813c381),
    ("random 232", 0xd6738f4e81c16fb4),
    ("random 233", 0x33672ad38267f154),
    ("random 234", 0x421fcfc6bf8c7ee3),
    ("random 235", 0x9a832872a6d61204),
    ("random 236", 0x5cd73156fa1087dc),
    ("random 237", 0x125d78300cabddc1),
    ("random 238", 0xf407c671efb36008),
    ("random 239", 0xceb887a3e10e096e),
    ("random 240", 0xf1fe91987ca9e57e),
    ("random 241", 0x9fabd1dbb9da0e4b),
    ("random 242", 0x2db8b4600d817fe7),
    ("random 243", 0x44a864ce20ccdfbb),
    ("random 244", 0x6c69c93f039d7dfc),
    ("random 245", 0xcfc9d0a202c293f8),
    ("random 246", 0x07f9e9021cc8ed75),
    ("random 247", 0x35322542ef15afd2),
    ("random 248", 0xba63c13630ab7f22),
    ("random 249", 0x12378571f7404df8),
    ("random 250", 0xa93b8969541a5873),
    ("random 251", 0x857001a75e38bad1),
    ("random 252", 0x69eb1551854f59bf),
    ("random 253", 0xd55c6e82ee229082),
    ("random 254", 0x4637df04a6d72f03),
    ("random 255", 0x9ba373bb1101765f),
    ("random 256", 0xa31c443ca5e825bc),
    ("random 257", 0x3ee5ce16c50dd7cd),
    ("random 258", 0x40002838ffd4e9a5),
    ("random 259", 0xa60ddc12dd4ea7df),
    ("random 260", 0x46b3c44856d0489b),
    ("random 261", 0x507016adc4bf7b59),
    ("random 262", 0x1de4026f15b6cb49),
    ("random 263", 0x281ca6add05bee03),
    ("random 264", 0x3a1584c2087ff569),
    ("random 265", 0x41705048dd8f96f3),
    ("random 266", 0x01de1471660d7d4b),
    ("random 267", 0x246c44bf499ca4b4),
    ("random 268", 0xb28def34f5ede576),
    ("random 269", 0x49eb77581e6351fc),
    ("random 270", 0x3457995b38aae47e),
    ("random 271", 0xfb5e110302337c19),
    ("random 272", 0xabcf103101fd3bd2),
    ("random 273", 0xe18ded53a70b3050),
    ("random 274", 0x965f5c6cb0d3a688),
    ("random 275", 0xe5ba3614020b7310),
    ("random 276", 0x10d04c1723c717f6),
    ("random 277", 0xd99187456e5b5a91),
    ("random 278", 0x01153efae462f425),
    ("random 279", 0x6dd0bf2cd021f438),
    ("random 280", 0xf9a7c8ba80919731),
    ("random 281", 0xe1cf3d7e5173a601),
    ("random 282", 0xbbc66b98ac21b3fe),
    ("random 283", 0x562db12cddcb5ed1),
    ("random 284", 0xae8a6e6ccf42793c),
    ("random 285", 0x8a472b8d445440fd),
    ("random 286", 0xa290b7698b2afce3),
    ("random 287", 0xa78450be3ab00be5),
    ("random 288", 0xb19542511c15119d),
    ("random 289", 0x555ab0ab28053776),
    ("random 290", 0xebbf7a107f907409),
    ("random 291", 0x63b679784a5e7577),
    ("random 292", 0x2a99b20d48857003),
    ("random 293", 0x5dbe3bc851e76d83),
    ("random 294", 0xad82292cdee426c8),
    ("random 295", 0x668da9e331f56aac),
    ("random 296", 0xc22a8c52701f4660),
    ("random 297", 0xc726463dc6216690),
    ("random 298", 0xcddc20686f8b754e),
    ("random 299", 0x6b3a3e114d626939),
];

#[test]
fn decisions_and_histories_match_the_recorded_ones_on_every_tick() {
    let runs = fingerprints();
    if std::env::var_os("GOLDEN_PRINT").is_some() {
        for (name, hash) in &runs {
            println!("    ({name:?}, {hash:#018x}),");
        }
    }
    assert_eq!(runs.len(), GOLDEN.len(), "the list of runs changed");
    for ((name, hash), (golden_name, golden)) in runs.iter().zip(GOLDEN) {
        assert_eq!(name, golden_name);
        assert_eq!(hash, golden, "{name}: decisions or history differ from the recorded ones");
    }
}
