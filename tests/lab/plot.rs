//! An SVG of one run: per guest, balloon size, free and available memory and the QEMU's RSS
//! over time, the 100 MiB starvation threshold, the workload start, workload ends and OOM
//! kills; the host's MemAvailable where a scenario holds the host short.

use std::fmt::Write;

use crate::guests::MAX_MIB;
use crate::scenario::Run;
use crate::scores::Scores;

const WIDTH: f64 = 960.0;
const PANEL_H: f64 = 150.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 58.0;
const GAP: f64 = 26.0;

pub fn svg(run: &Run, scores: &Scores) -> String {
    let n = run.names.len();
    let height = TOP + n as f64 * (PANEL_H + GAP) + 30.0;
    let t0 = run.ticks.first().map_or(0.0, |t| t.t_s);
    let t1 = run.ticks.last().map_or(1.0, |t| t.t_s).max(t0 + 1.0);
    let x = |t: f64| LEFT + (t - t0) / (t1 - t0) * (WIDTH - LEFT - RIGHT);
    let mut s = String::new();
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    )
    .unwrap();
    writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#).unwrap();
    writeln!(
        s,
        r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{} on {}: {} guests, interval 1 s</text>"#,
        run.scenario.name(),
        run.backend.name(),
        n
    )
    .unwrap();
    writeln!(
        s,
        r#"<text x="{LEFT}" y="38">OOM kills before max {} · starve-seconds {} · lowest free below max {} · mean free {:.0} MiB · largest release {:.0} % of excess</text>"#,
        scores.oom_kills_before_max,
        scores.starve_seconds,
        scores.min_unused_below_max_mib.map_or("-".into(), |m| format!("{m} MiB")),
        scores.mean_unused_mib,
        scores.largest_release_share_pct
    )
    .unwrap();
    let legend_y = 52.0;
    let held = run.hold.is_some();
    let mut legend = vec![
        ("balloon", "#1f77b4", ""),
        ("guest free", "#2ca02c", ""),
        ("guest available", "#ff7f0e", ""),
        ("QEMU RSS", "#9467bd", "3,2"),
        ("100 MiB", "#d62728", "6,4"),
    ];
    if held {
        legend.push(("host available", "#7f7f7f", "1,2"));
    }
    for (i, (label, color, dash)) in legend.iter().enumerate() {
        let lx = WIDTH - RIGHT - 780.0 + i as f64 * 130.0;
        writeln!(
            s,
            r#"<line x1="{lx}" y1="{}" x2="{}" y2="{}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
            legend_y - 4.0,
            lx + 24.0,
            legend_y - 4.0
        )
        .unwrap();
        writeln!(s, r#"<text x="{}" y="{legend_y}">{label}</text>"#, lx + 30.0).unwrap();
    }

    for (i, name) in run.names.iter().enumerate() {
        let top = TOP + i as f64 * (PANEL_H + GAP) + 10.0;
        let y = |mib: f64| top + PANEL_H - mib.min(MAX_MIB as f64) / MAX_MIB as f64 * PANEL_H;
        writeln!(
            s,
            r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL_H}" fill="#fafafa" stroke="#bbb"/>"##,
            WIDTH - LEFT - RIGHT
        )
        .unwrap();
        let role = if run.busy[i] { "workload" } else { "idle" };
        writeln!(s, r#"<text x="{}" y="{}" font-weight="bold">{name} ({role})</text>"#, LEFT + 6.0, top + 14.0)
            .unwrap();
        for mib in [0u64, 512, 1024, 1536, 2048] {
            let yy = y(mib as f64);
            writeln!(s, r##"<line x1="{LEFT}" y1="{yy}" x2="{}" y2="{yy}" stroke="#e4e4e4"/>"##, WIDTH - RIGHT)
                .unwrap();
            writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{mib}</text>"#, LEFT - 6.0, yy + 4.0).unwrap();
        }
        let ty = y(100.0);
        writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{ty}" x2="{}" y2="{ty}" stroke="#d62728" stroke-dasharray="6,4"/>"##,
            WIDTH - RIGHT
        )
        .unwrap();
        let xs = x(0.0);
        writeln!(
            s,
            r##"<line x1="{xs}" y1="{top}" x2="{xs}" y2="{}" stroke="#555" stroke-dasharray="2,3"/>"##,
            top + PANEL_H
        )
        .unwrap();
        // Host MemAvailable (held scenarios) is drawn on the same MiB scale, clipped at 2048.
        for (series, color, dash) in
            [(0, "#1f77b4", ""), (1, "#2ca02c", ""), (2, "#ff7f0e", ""), (3, "#9467bd", "3,2"), (4, "#7f7f7f", "1,2")]
        {
            if series == 4 && !held {
                continue;
            }
            let mut points = String::new();
            for t in &run.ticks {
                let g = &t.guests[i];
                let v = match series {
                    0 => Some(g.actual_mib).filter(|v| *v > 0),
                    1 => g.unused_mib,
                    2 => g.available_mib,
                    3 => g.rss_mib,
                    _ => Some(t.host_available_mib),
                };
                if let Some(v) = v {
                    write!(points, "{:.1},{:.1} ", x(t.t_s), y(v as f64)).unwrap();
                }
            }
            writeln!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.4" stroke-dasharray="{dash}" points="{points}"/>"#
            )
            .unwrap();
        }
        for end in run.ends.iter().filter(|e| e.guest == *name) {
            if let Some(at) = end.at_s {
                let (label, color) = if end.oom_killed { ("OOM kill", "#d62728") } else { ("workload freed", "#555") };
                let ex = x(at);
                writeln!(s, r#"<line x1="{ex}" y1="{top}" x2="{ex}" y2="{}" stroke="{color}"/>"#, top + PANEL_H)
                    .unwrap();
                writeln!(s, r#"<text x="{}" y="{}" fill="{color}">{label}</text>"#, ex + 4.0, top + 28.0).unwrap();
            }
        }
        for (at, guest, _) in &run.oom_kills {
            if guest == name {
                writeln!(
                    s,
                    r##"<text x="{}" y="{}" fill="#d62728" font-weight="bold">✕</text>"##,
                    x(*at) - 4.0,
                    top + PANEL_H - 4.0
                )
                .unwrap();
            }
        }
    }
    let axis_y = TOP + n as f64 * (PANEL_H + GAP) + 4.0;
    let step = if t1 - t0 > 240.0 { 30.0 } else { 15.0 };
    let mut t = (t0 / step).ceil() * step;
    while t <= t1 {
        // Adding 0.0 turns -0.0 into 0.0 for the label.
        writeln!(s, r#"<text x="{}" y="{axis_y}" text-anchor="middle">{:.0} s</text>"#, x(t), t + 0.0).unwrap();
        t += step;
    }
    writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">MiB per guest; time from the workload start (dotted line), when every guest was set to 512 MiB</text>"#,
        WIDTH - RIGHT,
        axis_y + 18.0
    )
    .unwrap();
    s.push_str("</svg>\n");
    s
}
