//! The scores of one run, computed from what the lab itself saw (its own samples and the
//! guests' consoles) and from the coordinator's JSON lines (for the sizes of its moves).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::guests::MAX_MIB;
use crate::scenario::Run;

/// The course's starvation threshold.
const STARVING_MIB: u64 = 100;
/// "Back within 300 MiB unused" after the consumer freed.
const RECOVERED_MIB: u64 = 300;

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
        writeln!(
            s,
            "  SIGINT                    exit {} after {} ms",
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
        if self.oom_kills_before_max > 0 {
            f.push(format!("{} OOM kill(s) before a guest reached its max", self.oom_kills_before_max));
        }
        if self.consumers_at_max < self.course_consumers {
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
        if self.largest_release_share_pct > 25.0 + 0.5 {
            f.push(format!("a release of {:.1} % of a guest's excess (at most 25 %)", self.largest_release_share_pct));
        }
        if self.timed_out {
            f.push("the workloads did not end in time".into());
        }
        f
    }
}
