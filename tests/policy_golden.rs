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
    ("bursts", 0x2a433fda8fd401db),
    ("64 VMs, short host", 0x7f38cfd46c550a22),
    ("weights 2:1, short host", 0x7bfd495597ac4eaf),
    ("consumer phase 0", 0xb2321aa26ef19bbe),
    ("consumer phase 300", 0xf80bb317c13221c2),
    ("consumer phase 700", 0x9405bd03a1fcd6db),
    ("synthetic 4", 0x26650134e4c5ffbe),
    ("synthetic 64", 0x4204214e998a0fa7),
    ("synthetic 256", 0xabdc72333af40aef),
    ("random 0", 0xcf36b4c7ec8e9c03),
    ("random 1", 0x1a2cf026086636bd),
    ("random 2", 0x9838b5179996a72f),
    ("random 3", 0x00885a96329c23fa),
    ("random 4", 0x2fcc6188ab6e4d14),
    ("random 5", 0xd73a914670bce93c),
    ("random 6", 0xd8c9003c1b9aadb5),
    ("random 7", 0x323ec903bcc1fae4),
    ("random 8", 0x38894c0d89db55b6),
    ("random 9", 0x23c7713739e48c2c),
    ("random 10", 0x6b77494b22150693),
    ("random 11", 0xcc3b8f945f46d8dc),
    ("random 12", 0xcfc1a53c3e7a489b),
    ("random 13", 0xc849c8ada0cbd962),
    ("random 14", 0x2075145729636997),
    ("random 15", 0x9f1a39cd94793acc),
    ("random 16", 0x4fa8cad81bbc437b),
    ("random 17", 0x71077458a9034c6b),
    ("random 18", 0xf25bf9ba14de8477),
    ("random 19", 0xfc88e0ba9c91488d),
    ("random 20", 0xf0aa064d197ccb28),
    ("random 21", 0x955696b58f39b43b),
    ("random 22", 0x2809d2c48809d917),
    ("random 23", 0x356070cf3ea9291b),
    ("random 24", 0x20d6566194821cc4),
    ("random 25", 0x6cc895cbbc3dd43d),
    ("random 26", 0x669f8de8ec36ecab),
    ("random 27", 0xb88bc04ecf6249e5),
    ("random 28", 0x4c036713afb79f2a),
    ("random 29", 0xf5220cbbc92e20a9),
    ("random 30", 0xad0d240da2e0081b),
    ("random 31", 0x1d0a6016fb2a535b),
    ("random 32", 0xeccea342d3fbc24b),
    ("random 33", 0x13478b9aaa2ebb86),
    ("random 34", 0xc2dfa52d8ee8a67c),
    ("random 35", 0x45437b5262930735),
    ("random 36", 0xd61fc8b0bfff597e),
    ("random 37", 0xa4e7e1c304a86f00),
    ("random 38", 0xaf2e38be50f4d58a),
    ("random 39", 0x398a6fd426c76fde),
    ("random 40", 0xcdf40dedbbe8ef63),
    ("random 41", 0xe2c0af4b5898df60),
    ("random 42", 0xe42eb36ba3d3e9f0),
    ("random 43", 0xe0bb7bb308ec78cd),
    ("random 44", 0x9de0cfba8153e5b9),
    ("random 45", 0x55ff7a3bc30fd724),
    ("random 46", 0xed9dd3354c90ff82),
    ("random 47", 0x8148c7ba626555f6),
    ("random 48", 0x09e0f6b8fdf836df),
    ("random 49", 0xea7af6464dd22f8e),
    ("random 50", 0xebab159cad094a03),
    ("random 51", 0x7168339b52cc7e8c),
    ("random 52", 0x5133d3aaa20dcd08),
    ("random 53", 0x35e2d2c6fc6182c3),
    ("random 54", 0xec879b8ab73cd6d9),
    ("random 55", 0x0245aa3b782a9eb5),
    ("random 56", 0x94f4651ec7da859e),
    ("random 57", 0x0a9252138ecbfc2d),
    ("random 58", 0xa61c0cd033e0052f),
    ("random 59", 0x5a88423e25818e5e),
    ("random 60", 0xd8264368a124bb2b),
    ("random 61", 0x824d0894e41a1a08),
    ("random 62", 0xece4f80f2b5b915a),
    ("random 63", 0x569be7776158eeee),
    ("random 64", 0xdabb1823b2f18279),
    ("random 65", 0x4bbcfa7089f76f69),
    ("random 66", 0x0a326f48a9c86e83),
    ("random 67", 0x48af6f901b391f60),
    ("random 68", 0x20394bb4f974162f),
    ("random 69", 0xbd791278d349b1bd),
    ("random 70", 0xa8943e0dc3b53c80),
    ("random 71", 0xea9919104bff775f),
    ("random 72", 0x37d2016959986aae),
    ("random 73", 0xe6e58968fbab65dc),
    ("random 74", 0xb1cd5e83a4273ed6),
    ("random 75", 0xcd2056c123e01edd),
    ("random 76", 0x976e0c103f2b818e),
    ("random 77", 0xdd4eb1e70f2d348b),
    ("random 78", 0xfe216aae4f9bc796),
    ("random 79", 0x8890da3526b86774),
    ("random 80", 0xd4e8a88860b6b8a4),
    ("random 81", 0x8dc67068bc0349f9),
    ("random 82", 0x7b9cb7816af43781),
    ("random 83", 0xc605ffd8e27eb6c9),
    ("random 84", 0xa803a08a5d526c6b),
    ("random 85", 0x56100afe7c90af5d),
    ("random 86", 0x92ed7a4c7715fd02),
    ("random 87", 0x352069584a3f9236),
    ("random 88", 0x3ad4ea95bdee1ff1),
    ("random 89", 0x6b3625336d891364),
    ("random 90", 0x2807e27260b9abc6),
    ("random 91", 0xfc812d5cd2817dbc),
    ("random 92", 0x75e5277b2e3efa7d),
    ("random 93", 0x179a92d3c341c06c),
    ("random 94", 0x38be342cb63cec98),
    ("random 95", 0xeb233fb4c1f058af),
    ("random 96", 0x342a9719422ab7c5),
    ("random 97", 0x458927ab18237264),
    ("random 98", 0x8d703980ae8d0550),
    ("random 99", 0x87d9a18a14accc64),
    ("random 100", 0x4331973878cee744),
    ("random 101", 0x930c4dbeaae845ab),
    ("random 102", 0x7992ffdb21cd0d15),
    ("random 103", 0x62c3cbe050df2585),
    ("random 104", 0xbfa914ddc67f0775),
    ("random 105", 0x91686027d45aaea0),
    ("random 106", 0xd2915c4f6f208f48),
    ("random 107", 0xb89b964ea03b5dc7),
    ("random 108", 0x6ca9176c996d3231),
    ("random 109", 0x196b200701189f1d),
    ("random 110", 0x2449b2568797fdd5),
    ("random 111", 0x8f84c02f8237cb00),
    ("random 112", 0x6389beff2d7996cd),
    ("random 113", 0x818f591f3c434eea),
    ("random 114", 0xed147b38a592029c),
    ("random 115", 0x191427772af31722),
    ("random 116", 0x6161a7210dece0c6),
    ("random 117", 0x12e322f30b2249ab),
    ("random 118", 0x08df1e6faea8f5af),
    ("random 119", 0x4cc3f54c4266dff8),
    ("random 120", 0x036112ce017db889),
    ("random 121", 0x3e152e6048929e97),
    ("random 122", 0x6378f892f7aa6877),
    ("random 123", 0x8a321e4f1188d9b6),
    ("random 124", 0x33f6259cae8ab29e),
    ("random 125", 0xffd9cbd221e860b2),
    ("random 126", 0x94c9a46486509f6b),
    ("random 127", 0x96ed8a35960d3fc1),
    ("random 128", 0x66673c702b4c74d6),
    ("random 129", 0xca5082f3dfe56f28),
    ("random 130", 0x0a9902af4fac1748),
    ("random 131", 0x6ae0afce668efc01),
    ("random 132", 0xaab3467d01932bad),
    ("random 133", 0x31fa72b8e882ef3e),
    ("random 134", 0x439c8b85c217d14b),
    ("random 135", 0x72098ba73ff5b6b6),
    ("random 136", 0xdd701be32ec01d0a),
    ("random 137", 0x058e4c01627ee5f0),
    ("random 138", 0x89a9b3f4ba5b7db0),
    ("random 139", 0x4b4c2d41c3aefafb),
    ("random 140", 0xf3dc901904540240),
    ("random 141", 0xe3a150ef487f171c),
    ("random 142", 0x674ed07dfa853d29),
    ("random 143", 0x19922429a7281482),
    ("random 144", 0x39d36b3ae97ea55e),
    ("random 145", 0xb837b2cec53f5fc1),
    ("random 146", 0x0363213403cf81f1),
    ("random 147", 0xaa132d3ad8524650),
    ("random 148", 0x9825aed49dd5372d),
    ("random 149", 0x583f40f1467dec30),
    ("random 150", 0xdca1e16654b63951),
    ("random 151", 0x96cfa799e4d53c62),
    ("random 152", 0xa9bc759327450201),
    ("random 153", 0x58a8976252a0aa52),
    ("random 154", 0x34bbf9798dd86719),
    ("random 155", 0x749cf9e0db5f0709),
    ("random 156", 0xfdcc2b2480854ec9),
    ("random 157", 0xde489e5c90f54360),
    ("random 158", 0xbe9f91ff3ae02621),
    ("random 159", 0xf5a067ca94fa37d2),
    ("random 160", 0x1a1f0b57e13e578a),
    ("random 161", 0x0358f3d0241991eb),
    ("random 162", 0x6290cbb8f94b50f4),
    ("random 163", 0x636544eee65aa1b0),
    ("random 164", 0x7564faa6774ab657),
    ("random 165", 0x025d63686ac07724),
    ("random 166", 0xeb3885e61bd4b397),
    ("random 167", 0xefceb566f12bef5a),
    ("random 168", 0xd2c5405063017d9d),
    ("random 169", 0x0bfd3065fb5fcbb8),
    ("random 170", 0x1a05ab5c6d550bea),
    ("random 171", 0x8c873d7d53aa0ac7),
    ("random 172", 0xa8ca9c6c84c7ba9a),
    ("random 173", 0x6c25f3a2a967d710),
    ("random 174", 0x34e4a68fc1d6d90e),
    ("random 175", 0xdf5b8e35f9b93006),
    ("random 176", 0xb656fbfebaf47abf),
    ("random 177", 0x040c94dcffac6a11),
    ("random 178", 0x38afa7760780f222),
    ("random 179", 0xdd4c2ffa423ec4bc),
    ("random 180", 0x28a9cb2460368dd2),
    ("random 181", 0x35c786c44f7cd79b),
    ("random 182", 0xd6f62b3cd2c50d7a),
    ("random 183", 0xab528a04068ffe3a),
    ("random 184", 0x347f52be52310861),
    ("random 185", 0xbad81cfd3883f5b8),
    ("random 186", 0x849c21bf00a0d16d),
    ("random 187", 0xb397aafeb5737b0f),
    ("random 188", 0x3faae6030585fb55),
    ("random 189", 0x4c0f99dbdc28132a),
    ("random 190", 0xa8aa58bb524c8088),
    ("random 191", 0x96a90f9a67a29c7b),
    ("random 192", 0x5678bf3ed4c80959),
    ("random 193", 0xa7008f3f11dcb5ed),
    ("random 194", 0xd9fb4d04e148d3d3),
    ("random 195", 0xb05fe34256a380b8),
    ("random 196", 0xfc42d4661c96b12e),
    ("random 197", 0xd088c59facd86aa3),
    ("random 198", 0x0cc3d0f13bcea4ab),
    ("random 199", 0x7d026215d7e38b6c),
    ("random 200", 0x4265cb7eeec47450),
    ("random 201", 0xc68330f15f2f516e),
    ("random 202", 0x7149e3cb492c0a70),
    ("random 203", 0x99d731e2927cc872),
    ("random 204", 0x16fe6830449695fd),
    ("random 205", 0xeaf41cc0cc394548),
    ("random 206", 0x0a35608b68dc0b4b),
    ("random 207", 0x3140234f945b64d0),
    ("random 208", 0x092bc5e3c83f029a),
    ("random 209", 0x1a244e57845442dd),
    ("random 210", 0xd82d352761ac7572),
    ("random 211", 0x3b68096d07bbcf4f),
    ("random 212", 0x9ffcf7336e4a1d1f),
    ("random 213", 0x412a29ab77d9f393),
    ("random 214", 0xe15e987c8f93a224),
    ("random 215", 0x9b712b1bb79dbed8),
    ("random 216", 0xc674d5e87f6f3abb),
    ("random 217", 0xca83c113d0b97dc3),
    ("random 218", 0x8d61f1766be7aebd),
    ("random 219", 0x9e72c8387ae458cc),
    ("random 220", 0x35ed9ee77180a017),
    ("random 221", 0x031dcc82c57b4d0f),
    ("random 222", 0x4e2e34902c0015cb),
    ("random 223", 0xfcdc4e157982fcfa),
    ("random 224", 0xda71c85d75a2fc3f),
    ("random 225", 0x21eee38d2fc58516),
    ("random 226", 0x03944e53049c3092),
    ("random 227", 0x2a938d74adca9968),
    ("random 228", 0x1df55fd342949293),
    ("random 229", 0x694ad7c330a47861),
    ("random 230", 0x88f4f959eb607460),
    ("random 231", 0xe191f3a1ce943ed4),
    ("random 232", 0x705100859fb68944),
    ("random 233", 0x215a2f40d6d95436),
    ("random 234", 0xd5d7462eb37fc085),
    ("random 235", 0xc05feac1e580758e),
    ("random 236", 0x0b6f66e976c5e50c),
    ("random 237", 0x42a2ab0628f085e1),
    ("random 238", 0xf407c671efb36008),
    ("random 239", 0x76c665baffa9d9b9),
    ("random 240", 0x93be89fb76985cab),
    ("random 241", 0xc3e2a18f907f1fa9),
    ("random 242", 0xef3608161fe62bc3),
    ("random 243", 0xee813d1bcf6693a8),
    ("random 244", 0x1338bd762317631e),
    ("random 245", 0x7e3f5f39e55b0f4a),
    ("random 246", 0x8fbabdcefc9e16e6),
    ("random 247", 0x6e8dfa1017ccd993),
    ("random 248", 0xd7b695c42d5ba54e),
    ("random 249", 0x0a8bd8d573f59830),
    ("random 250", 0xa93b8969541a5873),
    ("random 251", 0x24a7950207a098d4),
    ("random 252", 0xbfae3c495c816dde),
    ("random 253", 0x99e18f3975dda993),
    ("random 254", 0x1c2b478770c6f98a),
    ("random 255", 0xd28b6e771153723d),
    ("random 256", 0xa31c443ca5e825bc),
    ("random 257", 0x5d959e6c8ba78431),
    ("random 258", 0x40002838ffd4e9a5),
    ("random 259", 0xf1d54f47dcf72f74),
    ("random 260", 0x1008c7c128eaf8e1),
    ("random 261", 0x1e15062ec4fc8058),
    ("random 262", 0xd0e9fc9024f51878),
    ("random 263", 0xb31e456cd58bf025),
    ("random 264", 0x3a1584c2087ff569),
    ("random 265", 0x53053a190a43a67c),
    ("random 266", 0xc20ca8b23a470b9b),
    ("random 267", 0x9583318653d145b7),
    ("random 268", 0x500b2b43883fe7b2),
    ("random 269", 0xb16f93710708722c),
    ("random 270", 0xf0342d40306f0417),
    ("random 271", 0xdc5e1d3673966386),
    ("random 272", 0xeaadbe3625914072),
    ("random 273", 0xca9688eabdc46f1c),
    ("random 274", 0x3e3dcf61ca44970d),
    ("random 275", 0xae8055eb170805cf),
    ("random 276", 0x2c9f659a21f2cf63),
    ("random 277", 0x321165e02cec5531),
    ("random 278", 0x82435463e4366ea2),
    ("random 279", 0x29cb74a53c9b8581),
    ("random 280", 0xa3435cbffaae2006),
    ("random 281", 0x5135c0c3853fa161),
    ("random 282", 0x86098898c0963d50),
    ("random 283", 0xc3ddb8865986b729),
    ("random 284", 0x2936a99c58ef1743),
    ("random 285", 0x750f57a083c9a944),
    ("random 286", 0x68b55e303e59f7a9),
    ("random 287", 0x0ca62646cddea4a6),
    ("random 288", 0x3a8fa7b01419c7af),
    ("random 289", 0x555ab0ab28053776),
    ("random 290", 0x0463358c65197884),
    ("random 291", 0xa1c33a3757f94a90),
    ("random 292", 0x2a99b20d48857003),
    ("random 293", 0x62f70c2ae56e9588),
    ("random 294", 0x69076b83c2368e14),
    ("random 295", 0x668da9e331f56aac),
    ("random 296", 0x5458f504eaed2be7),
    ("random 297", 0x771a05a3e816dfd2),
    ("random 298", 0x2a9b5711baa140e2),
    ("random 299", 0x8737ff7311dc405d),
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
