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
    ("synthetic 64", 0x20c0c7295dd5da64),
    ("synthetic 256", 0xa98a97ac0a328a06),
    ("random 0", 0xf0f643286ab04259),
    ("random 1", 0x9d7d0526052f8ac6),
    ("random 2", 0xa213aede12b8ab3a),
    ("random 3", 0x767d5d01c736a7e8),
    ("random 4", 0x5d741511b9d4448c),
    ("random 5", 0x4dc0beb112b48aa2),
    ("random 6", 0xd8c9003c1b9aadb5),
    ("random 7", 0x733e2d9ed43ac137),
    ("random 8", 0x38894c0d89db55b6),
    ("random 9", 0x23c7713739e48c2c),
    ("random 10", 0x6b77494b22150693),
    ("random 11", 0xf7f323ca89094f2c),
    ("random 12", 0xf5c44683e0e54321),
    ("random 13", 0x9d02a56011b2f29e),
    ("random 14", 0x8cf54164ac86e8db),
    ("random 15", 0x1036334cf7e13ab8),
    ("random 16", 0x4fa8cad81bbc437b),
    ("random 17", 0x71077458a9034c6b),
    ("random 18", 0xbf900ac50e7b2047),
    ("random 19", 0x242d9211d12b3136),
    ("random 20", 0x9f4c85c3918782f2),
    ("random 21", 0x9101fccca4f5392d),
    ("random 22", 0x2809d2c48809d917),
    ("random 23", 0x3d9358f7e37c7f39),
    ("random 24", 0x0cf7824d4e06145a),
    ("random 25", 0xf97ff80113ea39ac),
    ("random 26", 0x669f8de8ec36ecab),
    ("random 27", 0x32f42ad70240c4a5),
    ("random 28", 0x4c036713afb79f2a),
    ("random 29", 0xf5220cbbc92e20a9),
    ("random 30", 0xad0d240da2e0081b),
    ("random 31", 0xaf819587ab95f594),
    ("random 32", 0xeccea342d3fbc24b),
    ("random 33", 0x90c2317cb432c400),
    ("random 34", 0xc2dfa52d8ee8a67c),
    ("random 35", 0xe79025b7e6ab5a4e),
    ("random 36", 0xc81baa6ca16f3192),
    ("random 37", 0x814558df11547c50),
    ("random 38", 0x36024637a6261af0),
    ("random 39", 0x1863b569f25d76cc),
    ("random 40", 0x9e556e9c9f18bab8),
    ("random 41", 0xe2c0af4b5898df60),
    ("random 42", 0x9591a90ff9281d38),
    ("random 43", 0xe0bb7bb308ec78cd),
    ("random 44", 0x9de0cfba8153e5b9),
    ("random 45", 0x55ff7a3bc30fd724),
    ("random 46", 0x533857882faf0534),
    ("random 47", 0x393aa27dad0bf670),
    ("random 48", 0x09e0f6b8fdf836df),
    ("random 49", 0xac5f56f8f65f9792),
    ("random 50", 0x2219188dcd136212),
    ("random 51", 0x7168339b52cc7e8c),
    ("random 52", 0x28cd04b2bc82f5a9),
    ("random 53", 0x35e2d2c6fc6182c3),
    ("random 54", 0xc2bba36d6699acba),
    ("random 55", 0x0245aa3b782a9eb5),
    ("random 56", 0x85815a69de51ffb9),
    ("random 57", 0x0a9252138ecbfc2d),
    ("random 58", 0xa61c0cd033e0052f),
    ("random 59", 0x5a88423e25818e5e),
    ("random 60", 0xd8264368a124bb2b),
    ("random 61", 0x824d0894e41a1a08),
    ("random 62", 0x208241964f644af8),
    ("random 63", 0xfe53b9df1d3b583b),
    ("random 64", 0xdabb1823b2f18279),
    ("random 65", 0xdb69c96b4bf9787d),
    ("random 66", 0xf78539b2b687fe60),
    ("random 67", 0x48af6f901b391f60),
    ("random 68", 0x933da7106781e3e9),
    ("random 69", 0x5b5810d058c56982),
    ("random 70", 0xc85c61300429d892),
    ("random 71", 0x3a7c43e4953c3817),
    ("random 72", 0x37d2016959986aae),
    ("random 73", 0x294eb86755350027),
    ("random 74", 0x5dbe37b7c3627619),
    ("random 75", 0xcd2056c123e01edd),
    ("random 76", 0xc953b7cf0b2ba007),
    ("random 77", 0x8bfb8924d7144aba),
    ("random 78", 0xfe216aae4f9bc796),
    ("random 79", 0x8890da3526b86774),
    ("random 80", 0xc1c0007ae2948f70),
    ("random 81", 0xb1d73a5ab5abc5ac),
    ("random 82", 0x7b9cb7816af43781),
    ("random 83", 0xfd83c28496d82fa5),
    ("random 84", 0xf943bd17caea5727),
    ("random 85", 0x1bed1ca37d58e067),
    ("random 86", 0x92ed7a4c7715fd02),
    ("random 87", 0xcdc445eedaf821a6),
    ("random 88", 0xa33eca72a184bb30),
    ("random 89", 0xfaede0844cbe6ffd),
    ("random 90", 0x43e318e650e97ee1),
    ("random 91", 0xb3fe5578360e304e),
    ("random 92", 0x75e5277b2e3efa7d),
    ("random 93", 0x74f0cfee5e23ea00),
    ("random 94", 0x90bfc63654306d74),
    ("random 95", 0x521f6aa0a31dace9),
    ("random 96", 0x8b2a45d14e09b011),
    ("random 97", 0x458927ab18237264),
    ("random 98", 0x8d703980ae8d0550),
    ("random 99", 0x87d9a18a14accc64),
    ("random 100", 0x4331973878cee744),
    ("random 101", 0x3d9ffbe9cc50a22f),
    ("random 102", 0x6742bd4f52b5ae97),
    ("random 103", 0xe4e429f387dad495),
    ("random 104", 0xbfa914ddc67f0775),
    ("random 105", 0x68a44fa337902bc6),
    ("random 106", 0x87d19634bb1e6ae9),
    ("random 107", 0x8e8c35b7debd839a),
    ("random 108", 0x6ca9176c996d3231),
    ("random 109", 0x196b200701189f1d),
    ("random 110", 0x2449b2568797fdd5),
    ("random 111", 0xbd8f850491dcc453),
    ("random 112", 0x48ffe9c0f1087fb3),
    ("random 113", 0x818f591f3c434eea),
    ("random 114", 0xed147b38a592029c),
    ("random 115", 0xfc26dab99cccdcac),
    ("random 116", 0x272ef6e9b5b83690),
    ("random 117", 0xb6bbb195fe6327f2),
    ("random 118", 0x65833c564667fb2b),
    ("random 119", 0x1edb5636cb6ff37c),
    ("random 120", 0x036112ce017db889),
    ("random 121", 0xe6b02281bebf3981),
    ("random 122", 0x9b3ed09e6ab279d1),
    ("random 123", 0x8a321e4f1188d9b6),
    ("random 124", 0x601972ec4dc628e5),
    ("random 125", 0x8a0d9b10cf135e87),
    ("random 126", 0x94c9a46486509f6b),
    ("random 127", 0x1f35b29a7098d589),
    ("random 128", 0x5c6c2f4f82c97aa1),
    ("random 129", 0x9e6f5f8c43ee00c8),
    ("random 130", 0xa3d25ec1c29381e0),
    ("random 131", 0x75bbef6553833c0c),
    ("random 132", 0x3f15f4078791acbb),
    ("random 133", 0x3f70c8c5709af934),
    ("random 134", 0xea0329ad9ab1c418),
    ("random 135", 0x272f2d71308c29e5),
    ("random 136", 0xdd701be32ec01d0a),
    ("random 137", 0x058e4c01627ee5f0),
    ("random 138", 0x89a9b3f4ba5b7db0),
    ("random 139", 0x8470214285fed058),
    ("random 140", 0x58ac543b672d39ed),
    ("random 141", 0xe3a150ef487f171c),
    ("random 142", 0x674ed07dfa853d29),
    ("random 143", 0x272b18a82bd8445f),
    ("random 144", 0x5549bda3f8cc226a),
    ("random 145", 0x7619698f9e5f1397),
    ("random 146", 0x06401d1526c0a2cb),
    ("random 147", 0x39dacee0bfe8e2cd),
    ("random 148", 0x4a5ba98a8b5c466f),
    ("random 149", 0xe83f0d223a3e5e17),
    ("random 150", 0xdca1e16654b63951),
    ("random 151", 0x606aa913e88ae6dd),
    ("random 152", 0xa3f270259016ed04),
    ("random 153", 0x8aa1f553e4d0d011),
    ("random 154", 0x34bbf9798dd86719),
    ("random 155", 0x749cf9e0db5f0709),
    ("random 156", 0xfdcc2b2480854ec9),
    ("random 157", 0x57d4a99834850213),
    ("random 158", 0xbe9f91ff3ae02621),
    ("random 159", 0xf5a067ca94fa37d2),
    ("random 160", 0x8e029e3028a21973),
    ("random 161", 0xd2a84c6754c6d3ee),
    ("random 162", 0x6290cbb8f94b50f4),
    ("random 163", 0x848f1584636b1352),
    ("random 164", 0x7564faa6774ab657),
    ("random 165", 0xf289013f40f959ca),
    ("random 166", 0x44c1602312fdb16e),
    ("random 167", 0xefceb566f12bef5a),
    ("random 168", 0x0e03d666232302b2),
    ("random 169", 0xc86204b78f65570c),
    ("random 170", 0x1a05ab5c6d550bea),
    ("random 171", 0x9c60e43aa21abdd7),
    ("random 172", 0x3e1fb3214402db5f),
    ("random 173", 0x30299a040a433fb9),
    ("random 174", 0xd01b1db471c514d1),
    ("random 175", 0x368d35a9b985233f),
    ("random 176", 0xb656fbfebaf47abf),
    ("random 177", 0x040c94dcffac6a11),
    ("random 178", 0x668b12fb01e5a8fa),
    ("random 179", 0x53192ca6d801b43b),
    ("random 180", 0xb3e01289e5223954),
    ("random 181", 0x739d3b175688f832),
    ("random 182", 0xa075d320c2cfb7ce),
    ("random 183", 0x722addcea73912e3),
    ("random 184", 0x347f52be52310861),
    ("random 185", 0xbad81cfd3883f5b8),
    ("random 186", 0x999f6df44bf1722a),
    ("random 187", 0x77d02e653c6ce138),
    ("random 188", 0xb0257a89354af3a9),
    ("random 189", 0x88839705900c96f7),
    ("random 190", 0x5283f53dd11707ad),
    ("random 191", 0x96a90f9a67a29c7b),
    ("random 192", 0xf76eb82edfc0598e),
    ("random 193", 0x778647090d7b7593),
    ("random 194", 0xb5262faac799b819),
    ("random 195", 0x78de36cceb94f105),
    ("random 196", 0xb61ac34e131d9cf3),
    ("random 197", 0xd088c59facd86aa3),
    ("random 198", 0x010c848fbdc3052c),
    ("random 199", 0x9a3cf547b8c5bd38),
    ("random 200", 0x4265cb7eeec47450),
    ("random 201", 0xf53c10bbcb1470d8),
    ("random 202", 0x7149e3cb492c0a70),
    ("random 203", 0x99d731e2927cc872),
    ("random 204", 0xa97637d2608a7978),
    ("random 205", 0xeaf41cc0cc394548),
    ("random 206", 0xe38ecb0a65aed105),
    ("random 207", 0x3140234f945b64d0),
    ("random 208", 0x092bc5e3c83f029a),
    ("random 209", 0x1a244e57845442dd),
    ("random 210", 0xd82d352761ac7572),
    ("random 211", 0xad7ac0fe57cc3a50),
    ("random 212", 0x9ffcf7336e4a1d1f),
    ("random 213", 0x4cc25abe290250f1),
    ("random 214", 0x0d1577a0e700fe16),
    ("random 215", 0x9b712b1bb79dbed8),
    ("random 216", 0x2f7f272c9b4cb38a),
    ("random 217", 0xca83c113d0b97dc3),
    ("random 218", 0xd42561b3d9374d65),
    ("random 219", 0xc4c4ba20b62baa32),
    ("random 220", 0x35ed9ee77180a017),
    ("random 221", 0x5f00a4c9a4d71a19),
    ("random 222", 0xc76bd8404a3ba018),
    ("random 223", 0xd1ac6861bfa54fa7),
    ("random 224", 0xda71c85d75a2fc3f),
    ("random 225", 0x094e298703d8fccc),
    ("random 226", 0x03944e53049c3092),
    ("random 227", 0x2a938d74adca9968),
    ("random 228", 0x99ce57b1c1e9437d),
    ("random 229", 0x7e31dd3a77441f48),
    ("random 230", 0xf5021dc2591a9e62),
    ("random 231", 0xe191f3a1ce943ed4),
    ("random 232", 0x04e5eb8534bfce80),
    ("random 233", 0x15c11d16d7632899),
    ("random 234", 0xa93bc9c45cb1e5d7),
    ("random 235", 0xc05feac1e580758e),
    ("random 236", 0xa79e4abf13c93098),
    ("random 237", 0x42a2ab0628f085e1),
    ("random 238", 0xf407c671efb36008),
    ("random 239", 0x497a625db992964a),
    ("random 240", 0x3f7e25e943b9d873),
    ("random 241", 0xc3e2a18f907f1fa9),
    ("random 242", 0xe5f94ba0ab69aef0),
    ("random 243", 0xee813d1bcf6693a8),
    ("random 244", 0x1338bd762317631e),
    ("random 245", 0x96d5b5794386f880),
    ("random 246", 0x8fbabdcefc9e16e6),
    ("random 247", 0x48b33c1e38611a53),
    ("random 248", 0xf3cca7fe3945b9b6),
    ("random 249", 0x0a8bd8d573f59830),
    ("random 250", 0xa93b8969541a5873),
    ("random 251", 0x857001a75e38bad1),
    ("random 252", 0x320b6a5dd5f3cc64),
    ("random 253", 0x5047c43ea1a08ed3),
    ("random 254", 0xab2d7cb58a29432a),
    ("random 255", 0x07a174d61f42afd9),
    ("random 256", 0xa31c443ca5e825bc),
    ("random 257", 0xc7d36d197619e34e),
    ("random 258", 0x40002838ffd4e9a5),
    ("random 259", 0x56bbe5821b1681c4),
    ("random 260", 0x1008c7c128eaf8e1),
    ("random 261", 0x1e15062ec4fc8058),
    ("random 262", 0x91970d1dd46a0144),
    ("random 263", 0x3273cee0aadcedcb),
    ("random 264", 0x3a1584c2087ff569),
    ("random 265", 0x53053a190a43a67c),
    ("random 266", 0xc20ca8b23a470b9b),
    ("random 267", 0xb852f425a68bba10),
    ("random 268", 0x500b2b43883fe7b2),
    ("random 269", 0xa29af685b3d37688),
    ("random 270", 0xf0342d40306f0417),
    ("random 271", 0xdc5e1d3673966386),
    ("random 272", 0x9fc5ce266b22b4f7),
    ("random 273", 0xca9688eabdc46f1c),
    ("random 274", 0x453de654930e40c2),
    ("random 275", 0xb181b66807730f40),
    ("random 276", 0x38bcfffd502bd0d0),
    ("random 277", 0xfa30f0c35ae5f693),
    ("random 278", 0x01153efae462f425),
    ("random 279", 0x29cb74a53c9b8581),
    ("random 280", 0x48f33caf32d09bbc),
    ("random 281", 0xf1332c9986861814),
    ("random 282", 0xddc2168702d0a618),
    ("random 283", 0x04e301e2ca11511d),
    ("random 284", 0x2936a99c58ef1743),
    ("random 285", 0x750f57a083c9a944),
    ("random 286", 0x9efa6f139b164a0f),
    ("random 287", 0x0ca62646cddea4a6),
    ("random 288", 0x036806c727018449),
    ("random 289", 0x555ab0ab28053776),
    ("random 290", 0xc5a48697cf1b92b1),
    ("random 291", 0xa1c33a3757f94a90),
    ("random 292", 0x2a99b20d48857003),
    ("random 293", 0x7053a005c0260826),
    ("random 294", 0x3d5cce28fb094d25),
    ("random 295", 0x668da9e331f56aac),
    ("random 296", 0x9cf11cd30f8e6e06),
    ("random 297", 0x9a35ad6c596b70a7),
    ("random 298", 0x141258cbcf5cbc82),
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
