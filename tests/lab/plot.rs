//! The SVG of one run, drawn by the library's renderer (`memory_coordinator::plot`, which
//! `memory_coordinator plot` uses too): per guest, balloon size, free and available memory and
//! the QEMU's RSS over time, the 100 MiB starvation threshold, the workload start, workload
//! ends and OOM kills; the host's MemAvailable where a scenario holds the host short.

use memory_coordinator::plot::{self, Chart, Mark, Panel, Point};

use crate::guests::MAX_MIB;
use crate::scenario::Run;
use crate::scores::Scores;

pub fn svg(run: &Run, scores: &Scores) -> String {
    let panels = run
        .names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let role = if run.busy[i] { "workload" } else { "idle" };
            let points = run
                .ticks
                .iter()
                .map(|t| {
                    let g = &t.guests[i];
                    Point {
                        t_s: t.t_s,
                        size_mib: Some(g.actual_mib as f64).filter(|v| *v > 0.0),
                        free_mib: g.unused_mib.map(|v| v as f64),
                        available_mib: g.available_mib.map(|v| v as f64),
                        rss_mib: g.rss_mib.map(|v| v as f64),
                    }
                })
                .collect();
            let marks = run
                .ends
                .iter()
                .filter(|e| e.guest == *name)
                .filter_map(|end| {
                    let (label, color) =
                        if end.oom_killed { ("OOM kill", "#d62728") } else { ("workload freed", "#555") };
                    end.at_s.map(|at_s| Mark { at_s, label: label.to_owned(), color })
                })
                .collect();
            let crosses = run.oom_kills.iter().filter(|(_, guest, _)| guest == name).map(|(at, _, _)| *at).collect();
            Panel { title: format!("{name} ({role})"), points, marks, crosses }
        })
        .collect();
    let chart = Chart {
        title: format!("{} on {}: {} guests, interval 1 s", run.scenario.name(), run.backend.name(), run.names.len()),
        subtitle: format!(
            "OOM kills before max {} · starve-seconds {} · lowest free below max {} · mean free {:.0} MiB · largest release {:.0} % of excess",
            scores.oom_kills_before_max,
            scores.starve_seconds,
            scores.min_unused_below_max_mib.map_or("-".into(), |m| format!("{m} MiB")),
            scores.mean_unused_mib,
            scores.largest_release_share_pct
        ),
        panels,
        y_max_mib: MAX_MIB as f64,
        threshold_mib: Some(100.0),
        origin_s: Some(0.0),
        footer: "MiB per guest; time from the workload start (dotted line), when every guest was set to 512 MiB"
            .to_owned(),
        // Host MemAvailable, on the guests' MiB scale, where a scenario holds the host short.
        host_available: if run.hold.is_some() {
            run.ticks.iter().map(|t| (t.t_s, t.host_available_mib as f64)).collect()
        } else {
            Vec::new()
        },
    };
    plot::svg(&chart)
}
