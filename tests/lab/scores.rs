//! The scores of one run, computed from what the lab itself saw (its own samples and the
//! guests' consoles) and from the coordinator's JSON lines (for the sizes of its moves).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::guests::MAX_MIB;
use crate::hold::VALVE_MIB;
use crate::scenario::{RestoreReport, Run, ScenarioName};

/// The course's starvation threshold.
const STARVING_MIB: u64 = 100;
/// "Back within 300 MiB unused" after the consumer freed.
const RECOVERED_MIB: u64 = 300;
/// HS: the host's MemAvailable must stay at or above the coordinator's default reserve.
const HOST_MIN_TARGET_MIB: u64 = 200;
/// HS: every consumer's peak balloon within this share of the largest peak.
const PEAK_SPREAD_MAX_PCT: f64 = 25.0;
/// PC: the most the cache guest may be given before pressure: one grow to what it must keep
/// plus half the band after a one-sample dip, not a climb toward its max.
const CACHE_GROWN_MAX_MIB: u64 = 128;

/// PC: a tick where the cache guest shows its cache: MemFree below the starvation threshold
/// (the course's rule would call it starving) while MemAvailable is at least this much higher.
const CACHE_MARGIN_MIB: u64 = 100;
/// PC: ticks of that kind needed to call the scenario's path reached.
const CACHE_TICKS_MIN: usize = 3;

/// HS: sharing a host that is short.
#[derive(Debug, Serialize)]
pub struct HostShortScores {
    /// What the hold left, and the lowest host MemAvailable the valve saw (every 50 ms).
    pub host_after_hold_mib: u64,
    pub host_min_mib: u64,
    pub valve_fired: bool,
    pub valve_fired_at_s: Option<f64>,
    /// Peaks are taken until the first consumer ended or the valve fired (after that, memory
    /// set free by an ended consumer or the hold is no longer a share of the same shortage).
    pub peaks_until_s: Option<f64>,
    pub peak_mib: BTreeMap<String, u64>,
    /// (largest peak - smallest peak) / largest peak.
    pub peak_spread_pct: f64,
}

/// PC: a guest full of page cache beside a consumer.
#[derive(Debug, Serialize)]
pub struct CacheScores {
    pub cache_guest: String,
    /// Grows of the cache guest before the coordinator's first pressure round (or in the whole
    /// run without one): it has cache to give, so it never needs more.
    pub grows_before_pressure: usize,
    pub grows_total: usize,
    /// Grows of the cache guest decided while the MemAvailable it reported was at or above
    /// what the coordinator said it must keep (`usable_kib >= keep_kib` in that round's JSON):
    /// growing a guest for its page cache. Must be 0.
    pub grows_with_available_above_keep: usize,
    /// MiB the cache guest was given before the first pressure round: a grow for a brief
    /// dip of MemAvailable while the cache fills (readahead in flight looks like consumption
    /// for one sample) is one step, never a climb toward its max.
    pub grown_before_pressure_mib: u64,
    /// Ticks with MemFree < 100 MiB and MemAvailable >= MemFree + 100 MiB in the cache guest.
    pub cached_ticks: usize,
    pub min_free_mib: Option<u64>,
    pub max_available_mib: Option<u64>,
    /// The cache guest's balloon at the workload start and its smallest size after.
    pub start_mib: Option<u64>,
    pub min_actual_mib: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Scores {
    pub scenario: String,
    pub backend: String,
    pub guests: usize,
    /// OOM kills in a guest whose balloon was below its max: the coordinator's failures.
    pub oom_kills_before_max: usize,
    pub oom_kills_total: usize,
    /// Guest-seconds with free memory below 100 MiB while below max (after the workload start).
    pub starve_seconds: u64,
    /// Lowest free memory any guest reported while below max.
    pub min_unused_below_max_mib: Option<u64>,
    pub peak_actual_mib: BTreeMap<String, u64>,
    /// Guests that ran the course consumer and reached their max.
    pub consumers_at_max: usize,
    pub course_consumers: usize,
    /// Mean free memory over guests and seconds (after the workload start).
    pub mean_unused_mib: f64,
    /// Lowest guest MemAvailable while below max, and its mean (as the two above).
    pub min_available_below_max_mib: Option<u64>,
    pub mean_available_mib: Option<f64>,
    /// Each guest's largest QEMU RSS (what the host backed for it), where reported.
    pub peak_rss_mib: BTreeMap<String, u64>,
    /// Seconds from the last workload's end until every guest was within 300 MiB free.
    pub recovery_s: Option<f64>,
    /// The largest single release, as a share of that guest's excess (free minus 100 MiB).
    pub largest_release_share_pct: f64,
    /// Balloon changes per idle guest per minute (after the workload start).
    pub idle_changes_per_min: f64,
    pub host_available_min_mib: u64,
    pub coordinator_cpu_s: Option<f64>,
    pub coordinator_peak_rss_kib: Option<u64>,
    pub exit_code: Option<i32>,
    pub exit_after_sigint_ms: Option<u64>,
    pub workload_seconds: f64,
    pub timed_out: bool,
    /// Rounds in which the coordinator took memory under pressure / left a VM short.
    pub pressure_rounds: usize,
    pub short_rounds: usize,
    pub host_short: Option<HostShortScores>,
    /// Any held scenario: the hold and its valve.
    pub valve_fired_at_s: Option<f64>,
    pub hold: Option<crate::hold::HoldReport>,
    pub page_cache: Option<CacheScores>,
    pub restore: Option<RestoreReport>,
}

pub fn compute(run: &Run, course_consumers: &[usize]) -> Scores {
    let during: Vec<_> = run.ticks.iter().filter(|t| t.t_s >= 0.0).collect();
    let mut starve = 0;
    let mut min_unused: Option<u64> = None;
    let mut unused_sum = 0u64;
    let mut unused_n = 0u64;
    for tick in &during {
        for s in &tick.guests {
            if let Some(u) = s.unused_mib {
                unused_sum += u;
                unused_n += 1;
                if s.actual_mib < MAX_MIB {
                    min_unused = Some(min_unused.map_or(u, |m| m.min(u)));
                    if u < STARVING_MIB {
                        starve += 1;
                    }
                }
            }
        }
    }
    let mut avail_min: Option<u64> = None;
    let (mut avail_sum, mut avail_n) = (0u64, 0u64);
    for s in during.iter().flat_map(|t| &t.guests) {
        if let Some(a) = s.available_mib {
            avail_sum += a;
            avail_n += 1;
            if s.actual_mib < MAX_MIB {
                avail_min = Some(avail_min.map_or(a, |m| m.min(a)));
            }
        }
    }
    let mut peak_rss = BTreeMap::new();
    for (i, name) in run.names.iter().enumerate() {
        if let Some(r) = run.ticks.iter().filter_map(|t| t.guests[i].rss_mib).max() {
            peak_rss.insert(name.clone(), r);
        }
    }
    let mut peak = BTreeMap::new();
    for (i, name) in run.names.iter().enumerate() {
        let p = run.ticks.iter().filter(|t| t.t_s >= 0.0).map(|t| t.guests[i].actual_mib).max().unwrap_or(0);
        peak.insert(name.clone(), p);
    }
    let consumers_at_max = course_consumers.iter().filter(|i| peak[&run.names[**i]] >= MAX_MIB).count();

    let last_end =
        run.ends.iter().filter_map(|e| e.at_s).fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
    // From the last end, wait for the freed memory to show (some guest above 300 MiB free),
    // then for every guest to be back within 300 MiB.
    let recovery_s = last_end.and_then(|end| {
        let after: Vec<_> = during.iter().filter(|t| t.t_s > end).collect();
        let within =
            |t: &crate::scenario::Tick| t.guests.iter().all(|s| s.unused_mib.is_some_and(|u| u <= RECOVERED_MIB));
        let freed_at = after.iter().position(|t| !within(t)).unwrap_or(0);
        after[freed_at..].iter().find(|t| within(t)).map(|t| t.t_s - end)
    });
    let mut largest_share: f64 = 0.0;
    for a in run.actions.iter().filter(|a| !a.grow) {
        let excess = a.unused_kib.saturating_sub(STARVING_MIB * 1024);
        if excess > 0 {
            largest_share = largest_share.max((a.from_kib - a.to_kib) as f64 / excess as f64 * 100.0);
        }
    }
    let idle: Vec<&String> = run.names.iter().zip(&run.busy).filter(|(_, b)| !**b).map(|(n, _)| n).collect();
    let workload_seconds = during.last().map_or(0.0, |t| t.t_s);
    let idle_changes = run.actions.iter().filter(|a| a.t_s >= 0.0 && idle.contains(&&a.guest)).count();
    let idle_changes_per_min = if idle.is_empty() || workload_seconds <= 0.0 {
        0.0
    } else {
        idle_changes as f64 / idle.len() as f64 / (workload_seconds / 60.0)
    };
    Scores {
        scenario: run.scenario.name().to_owned(),
        backend: run.backend.name().to_owned(),
        guests: run.names.len(),
        oom_kills_before_max: run.oom_kills.iter().filter(|(_, _, actual)| *actual < MAX_MIB).count(),
        oom_kills_total: run.oom_kills.len(),
        starve_seconds: starve,
        min_unused_below_max_mib: min_unused,
        peak_actual_mib: peak,
        consumers_at_max,
        course_consumers: course_consumers.len(),
        mean_unused_mib: if unused_n == 0 { 0.0 } else { unused_sum as f64 / unused_n as f64 },
        recovery_s,
        largest_release_share_pct: largest_share,
        idle_changes_per_min,
        host_available_min_mib: run.ticks.iter().map(|t| t.host_available_mib).min().unwrap_or(0),
        coordinator_cpu_s: run.coordinator_cpu_s,
        coordinator_peak_rss_kib: run.coordinator_peak_rss_kib,
        exit_code: run.exit_code,
        exit_after_sigint_ms: run.exit_after_sigint_ms,
        workload_seconds,
        timed_out: run.timed_out,
        min_available_below_max_mib: avail_min,
        mean_available_mib: (avail_n > 0).then(|| avail_sum as f64 / avail_n as f64),
        peak_rss_mib: peak_rss,
        pressure_rounds: run.pressure_rounds,
        short_rounds: run.short_rounds,
        host_short: (run.scenario == ScenarioName::HS).then(|| host_short(run, course_consumers)),
        valve_fired_at_s: run.hold.as_ref().and_then(|h| h.valve_fired_at_s),
        hold: run.hold.clone(),
        page_cache: run.cache_guest.map(|i| page_cache(run, i)),
        restore: run.restore.clone(),
    }
}

fn host_short(run: &Run, consumers: &[usize]) -> HostShortScores {
    let hold = run.hold.clone().unwrap_or_default();
    let first_end =
        run.ends.iter().filter_map(|e| e.at_s).fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.min(t))));
    let until = match (first_end, hold.valve_fired_at_s) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let mut peak_mib = BTreeMap::new();
    for &i in consumers {
        let p = run
            .ticks
            .iter()
            .filter(|t| t.t_s >= 0.0 && until.is_none_or(|u| t.t_s <= u))
            .map(|t| t.guests[i].actual_mib)
            .max()
            .unwrap_or(0);
        peak_mib.insert(run.names[i].clone(), p);
    }
    let hi = peak_mib.values().copied().max().unwrap_or(0);
    let lo = peak_mib.values().copied().min().unwrap_or(0);
    HostShortScores {
        host_after_hold_mib: hold.host_after_hold_mib,
        host_min_mib: hold.host_min_mib,
        valve_fired: hold.valve_fired_at_s.is_some(),
        valve_fired_at_s: hold.valve_fired_at_s,
        peaks_until_s: until,
        peak_mib,
        peak_spread_pct: if hi == 0 { 0.0 } else { (hi - lo) as f64 / hi as f64 * 100.0 },
    }
}

fn page_cache(run: &Run, i: usize) -> CacheScores {
    let name = &run.names[i];
    let grows: Vec<f64> =
        run.actions.iter().filter(|a| a.grow && &a.guest == name && a.t_s >= 0.0).map(|a| a.t_s).collect();
    let during: Vec<_> = run.ticks.iter().filter(|t| t.t_s >= 0.0).map(|t| t.guests[i]).collect();
    CacheScores {
        cache_guest: name.clone(),
        grows_before_pressure: grows.iter().filter(|t| run.first_pressure_s.is_none_or(|p| **t < p)).count(),
        grows_total: grows.len(),
        grows_with_available_above_keep: run
            .cache_grow_decisions
            .iter()
            .filter(|d| match (d["usable_kib"].as_u64(), d["keep_kib"].as_u64()) {
                (Some(available), Some(keep)) => available >= keep,
                _ => false,
            })
            .count(),
        grown_before_pressure_mib: run
            .cache_grow_decisions
            .iter()
            .filter(|d| run.first_pressure_s.is_none_or(|p| d["t_s"].as_f64().is_some_and(|t| t < p)))
            .map(|d| d["target_kib"].as_u64().unwrap_or(0).saturating_sub(d["actual_kib"].as_u64().unwrap_or(0)) / 1024)
            .sum(),
        cached_ticks: during
            .iter()
            .filter(|s| match (s.unused_mib, s.available_mib) {
                (Some(f), Some(a)) => f < STARVING_MIB && a >= f + CACHE_MARGIN_MIB,
                _ => false,
            })
            .count(),
        min_free_mib: during.iter().filter_map(|s| s.unused_mib).min(),
        max_available_mib: during.iter().filter_map(|s| s.available_mib).max(),
        start_mib: during.first().map(|s| s.actual_mib),
        min_actual_mib: during.iter().map(|s| s.actual_mib).filter(|a| *a > 0).min(),
    }
}

impl Scores {
    /// A few lines for the terminal.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let opt = |v: Option<f64>, unit: &str| v.map_or("never".to_owned(), |v| format!("{v:.0} {unit}"));
        writeln!(
            s,
            "scores {} on {} ({} guests, {:.0} s of workload):",
            self.scenario, self.backend, self.guests, self.workload_seconds
        )
        .unwrap();
        writeln!(s, "  OOM kills before max      {} (of {})", self.oom_kills_before_max, self.oom_kills_total).unwrap();
        writeln!(s, "  starve-seconds            {}", self.starve_seconds).unwrap();
        writeln!(
            s,
            "  lowest free below max     {}",
            self.min_unused_below_max_mib.map_or("-".into(), |m| format!("{m} MiB"))
        )
        .unwrap();
        writeln!(s, "  consumers at max          {} of {}", self.consumers_at_max, self.course_consumers).unwrap();
        let peaks: Vec<String> = self.peak_actual_mib.iter().map(|(n, p)| format!("{n} {p}")).collect();
        writeln!(s, "  peak balloon (MiB)        {}", peaks.join(", ")).unwrap();
        writeln!(s, "  mean free                 {:.0} MiB", self.mean_unused_mib).unwrap();
        writeln!(
            s,
            "  guest available           mean {}, lowest below max {}",
            self.mean_available_mib.map_or("-".into(), |m| format!("{m:.0} MiB")),
            self.min_available_below_max_mib.map_or("-".into(), |m| format!("{m} MiB"))
        )
        .unwrap();
        let rss: Vec<String> = self.peak_rss_mib.iter().map(|(n, p)| format!("{n} {p}")).collect();
        writeln!(s, "  peak QEMU RSS (MiB)       {}", if rss.is_empty() { "-".into() } else { rss.join(", ") })
            .unwrap();
        writeln!(s, "  pressure rounds           {} (a VM left short in {})", self.pressure_rounds, self.short_rounds)
            .unwrap();
        writeln!(s, "  back within 300 MiB free  {} after the last workload ended", opt(self.recovery_s, "s")).unwrap();
        writeln!(s, "  largest release           {:.1} % of that guest's excess", self.largest_release_share_pct)
            .unwrap();
        writeln!(s, "  idle guest changes        {:.2} per guest per minute", self.idle_changes_per_min).unwrap();
        writeln!(s, "  host MemAvailable min     {} MiB", self.host_available_min_mib).unwrap();
        writeln!(
            s,
            "  coordinator               {} CPU s, peak RSS {}",
            self.coordinator_cpu_s.map_or("-".into(), |c| format!("{c:.2}")),
            self.coordinator_peak_rss_kib.map_or("-".into(), |r| format!("{} KiB", r))
        )
        .unwrap();
        if let Some(h) = &self.host_short {
            writeln!(
                s,
                "  host short                held to {} MiB; host MemAvailable min {} MiB (every 50 ms); valve {}",
                h.host_after_hold_mib,
                h.host_min_mib,
                h.valve_fired_at_s.map_or("not fired".into(), |t| format!("FIRED at {t:.0} s"))
            )
            .unwrap();
            let peaks: Vec<String> = h.peak_mib.iter().map(|(n, p)| format!("{n} {p}")).collect();
            writeln!(
                s,
                "  consumer peaks (MiB)      {} until {}: spread {:.0} %",
                peaks.join(", "),
                h.peaks_until_s.map_or("the end".into(), |t| format!("{t:.0} s")),
                h.peak_spread_pct
            )
            .unwrap();
        }
        if let (None, Some(h)) = (&self.host_short, &self.hold) {
            writeln!(
                s,
                "  host held                 to {} MiB; host MemAvailable min {} MiB (every 50 ms); valve {}",
                h.host_after_hold_mib,
                h.host_min_mib,
                h.valve_fired_at_s.map_or("not fired".into(), |t| format!("FIRED at {t:.0} s"))
            )
            .unwrap();
        }
        if let Some(c) = &self.page_cache {
            writeln!(
                s,
                "  cache guest               {}: {} grows before pressure (+{} MiB; {} in all, {} with available >= keep); {} s with free < 100 MiB and available >= free + 100 MiB",
                c.cache_guest, c.grows_before_pressure, c.grown_before_pressure_mib, c.grows_total, c.grows_with_available_above_keep, c.cached_ticks
            )
            .unwrap();
            writeln!(
                s,
                "  cache guest figures       free min {}, available max {}, balloon {} -> min {}",
                c.min_free_mib.map_or("-".into(), |m| format!("{m} MiB")),
                c.max_available_mib.map_or("-".into(), |m| format!("{m} MiB")),
                c.start_mib.map_or("-".into(), |m| format!("{m} MiB")),
                c.min_actual_mib.map_or("-".into(), |m| format!("{m} MiB"))
            )
            .unwrap();
        }
        if let Some(r) = &self.restore {
            writeln!(
                s,
                "  restore                   {} of {} guests at max 2 s after SIGTERM; all at max {}",
                r.at_max_after_2s,
                r.guests,
                r.all_at_max_after_s.map_or("not within 5 s".into(), |t| format!("after {t:.2} s"))
            )
            .unwrap();
        }
        writeln!(
            s,
            "  {:<25} exit {} after {} ms",
            if self.restore.is_some() { "SIGTERM" } else { "SIGINT" },
            self.exit_code.map_or("-".into(), |c| c.to_string()),
            self.exit_after_sigint_ms.map_or("-".into(), |m| m.to_string())
        )
        .unwrap();
        s
    }

    /// The e2e assertions; each failure named.
    pub fn failures(&self, coordinated: bool) -> Vec<String> {
        let mut f = Vec::new();
        if !coordinated {
            return f;
        }
        // A held host whose valve fired ran out of memory (whoever took the last of it): the
        // run proves nothing about sharing a short host.
        if let (None, Some(t)) = (&self.host_short, self.valve_fired_at_s) {
            f.push(format!("the valve fired (host MemAvailable under {VALVE_MIB} MiB) at {t:.0} s"));
        }
        // HS: consumers are expected to be OOM-killed once the fair shares are used up, so
        // neither OOM kills nor consumers at max are asserted; the host and the fairness are.
        let hs = self.host_short.is_some();
        if self.oom_kills_before_max > 0 && !hs {
            f.push(format!("{} OOM kill(s) before a guest reached its max", self.oom_kills_before_max));
        }
        if let Some(h) = &self.host_short {
            if h.valve_fired {
                f.push(format!(
                    "the valve fired (host MemAvailable under {VALVE_MIB} MiB) at {:?} s",
                    h.valve_fired_at_s
                ));
            }
            if h.host_min_mib < HOST_MIN_TARGET_MIB {
                f.push(format!("host MemAvailable fell to {} MiB (at least {HOST_MIN_TARGET_MIB})", h.host_min_mib));
            }
            if h.peak_spread_pct > PEAK_SPREAD_MAX_PCT {
                f.push(format!(
                    "consumer peaks {:?} differ by {:.0} % (at most {PEAK_SPREAD_MAX_PCT} %)",
                    h.peak_mib, h.peak_spread_pct
                ));
            }
            // The scenario must have reached the path it is about.
            if self.pressure_rounds + self.short_rounds == 0 {
                f.push("the coordinator never reached its pressure path (no pressure or short VM in its JSON)".into());
            }
        }
        if let Some(c) = &self.page_cache {
            // The target: not grown while its MemAvailable is above what it must keep.
            // One step for a sample in which MemAvailable really dropped (the cache filling)
            // is the price of reacting to a burst in one sample; a climb is not.
            if c.grows_with_available_above_keep > 0 {
                f.push(format!(
                    "the cache guest {} was grown {} time(s) while its MemAvailable was above what it must keep",
                    c.cache_guest, c.grows_with_available_above_keep
                ));
            }
            if c.grown_before_pressure_mib > CACHE_GROWN_MAX_MIB {
                f.push(format!(
                    "the cache guest {} was given {} MiB before pressure (at most {CACHE_GROWN_MAX_MIB})",
                    c.cache_guest, c.grown_before_pressure_mib
                ));
            }
            if c.cached_ticks < CACHE_TICKS_MIN {
                f.push(format!(
                    "the cache guest showed its cache (free < {STARVING_MIB} MiB, available >= free + {CACHE_MARGIN_MIB} MiB) in {} s only (at least {CACHE_TICKS_MIN})",
                    c.cached_ticks
                ));
            }
        }
        // "Within a few seconds": the coordinator sends every target before it exits (tens of
        // ms), but a TCG guest takes about 2.5 s to deflate 1.7 GiB (measured on QMP), so all
        // guests must be at max within the 5 s watched; the 2 s figure is reported.
        if let Some(r) = &self.restore
            && r.all_at_max_after_s.is_none()
        {
            f.push(format!(
                "restore: not every guest at max 5 s after SIGTERM ({:?} -> {:?} MiB)",
                r.before_mib, r.after_mib
            ));
        }
        if self.consumers_at_max < self.course_consumers && !hs {
            f.push(format!(
                "only {} of {} course consumers reached {MAX_MIB} MiB",
                self.consumers_at_max, self.course_consumers
            ));
        }
        if self.exit_code != Some(0) {
            f.push(format!("the coordinator exited {:?} on SIGINT", self.exit_code));
        }
        if self.exit_after_sigint_ms.is_none_or(|ms| ms > 1000) {
            f.push(format!("the coordinator took {:?} ms to exit after SIGINT", self.exit_after_sigint_ms));
        }
        // Under pressure the policy waives its band and may take more: asserted where the host
        // is not held short.
        if self.largest_release_share_pct > 25.0 + 0.5 && !hs && self.page_cache.is_none() {
            f.push(format!("a release of {:.1} % of a guest's excess (at most 25 %)", self.largest_release_share_pct));
        }
        // HS asks for more than the host has (4 x 2 GiB on ~3 GiB): a consumer still rationed
        // below its max when the time is up is the reserve holding, not a hang; its scores
        // (host minimum, valve, peaks, pressure path) are asserted above.
        if self.timed_out && !hs {
            f.push("the workloads did not end in time".into());
        }
        f
    }
}
