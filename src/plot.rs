//! An SVG of a run: one panel per VM with its balloon size and its free memory over time,
//! the starvation threshold, and marks for events. One renderer for two users: the real-VM lab
//! (tests/lab, which adds workload ends and OOM kills) and `memory_coordinator plot`, which
//! reads the daemon's own `--json` lines ([`from_json_lines`]).

use std::fmt::{self, Write as _};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The chart's width and its layout (SVG user units, i.e. pixels).
const WIDTH: f64 = 960.0;
const PANEL_H: f64 = 150.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
/// Time labels along the axis, at most (`time_step` picks the step for it).
const MAX_TIME_LABELS: u32 = 16;
const TOP: f64 = 58.0;
const GAP: f64 = 26.0;

const SIZE_COLOR: &str = "#1f77b4";
const FREE_COLOR: &str = "#2ca02c";
const ALERT_COLOR: &str = "#d62728";
const AVAILABLE_COLOR: &str = "#ff7f0e";
const RSS_COLOR: &str = "#9467bd";
const HOST_COLOR: &str = "#7f7f7f";

/// A polyline with more points than this is thinned ([`thin`]): a day at one round a second
/// would otherwise be 86 400 points per VM, far more than the chart's 880 pixels can show.
pub const MAX_POINTS: usize = 2000;

/// Everything the renderer draws.
#[derive(Clone, Debug, Default)]
pub struct Chart {
    pub title: String,
    pub subtitle: String,
    pub panels: Vec<Panel>,
    /// Top of every panel's scale (MiB); figures above it are drawn at the top.
    pub y_max_mib: f64,
    /// The starvation threshold line (MiB), if any.
    pub threshold_mib: Option<f64>,
    /// A dotted vertical line at this time (seconds), e.g. when a workload started.
    pub origin_s: Option<f64>,
    /// The line under the time axis.
    pub footer: String,
    /// The host's MemAvailable over time `(t_s, mib)`, drawn in every panel when present.
    pub host_available: Vec<(f64, f64)>,
}

/// One VM.
#[derive(Clone, Debug, Default)]
pub struct Panel {
    pub title: String,
    pub points: Vec<Point>,
    /// Vertical lines with a label.
    pub marks: Vec<Mark>,
    /// Times to mark with a red cross at the bottom (OOM kills, failed actions).
    pub crosses: Vec<f64>,
}

/// One round of one VM (MiB); `None` where the figure is unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    pub t_s: f64,
    pub size_mib: Option<f64>,
    pub free_mib: Option<f64>,
    /// The guest's MemAvailable, where it reports it (page cache counts as available).
    pub available_mib: Option<f64>,
    /// What the host backs for the VM: its QEMU process's RSS.
    pub rss_mib: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct Mark {
    pub at_s: f64,
    pub label: String,
    pub color: &'static str,
}

/// Writing into a String cannot fail; the renderer collects `fmt::Result`s only to use `?`.
fn draw(chart: &Chart, s: &mut String) -> fmt::Result {
    let n = chart.panels.len();
    let n_f = f64::from(u32::try_from(n).unwrap_or(u32::MAX));
    let height = TOP + n_f * (PANEL_H + GAP) + 30.0;
    let times = chart.panels.iter().flat_map(|p| p.points.iter().map(|pt| pt.t_s));
    let t0 = times.clone().fold(f64::INFINITY, f64::min);
    let t0 = if t0.is_finite() { t0 } else { 0.0 };
    let t1 = times.fold(f64::NEG_INFINITY, f64::max).max(t0 + 1.0);
    let x = |t: f64| LEFT + (t - t0) / (t1 - t0) * (WIDTH - LEFT - RIGHT);
    let y_max = if chart.y_max_mib > 0.0 { chart.y_max_mib } else { 1.0 };
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    )?;
    writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#)?;
    writeln!(s, r#"<text x="{LEFT}" y="20" font-size="15" font-weight="bold">{}</text>"#, Xml(&chart.title))?;
    writeln!(s, r#"<text x="{LEFT}" y="38">{}</text>"#, Xml(&chart.subtitle))?;
    let legend_y = 52.0;
    let threshold_label = chart.threshold_mib.map(|t| format!("{t:.0} MiB threshold"));
    let has = |f: fn(&Point) -> Option<f64>| chart.panels.iter().any(|p| p.points.iter().any(|pt| f(pt).is_some()));
    let series: Vec<Series> = SERIES.iter().copied().filter(|sr| has(sr.value)).collect();
    let host = (!chart.host_available.is_empty()).then_some(("host available", HOST_COLOR, "1,2"));
    let legend: Vec<(&str, &str, &str)> = series
        .iter()
        .map(|sr| (sr.label, sr.color, sr.dash))
        .chain(host)
        .chain(threshold_label.as_deref().map(|l| (l, ALERT_COLOR, "6,4")))
        .collect();
    let legend_w = 140.0;
    let legend_x = WIDTH - RIGHT - f64::from(u32::try_from(legend.len()).unwrap_or(0)) * legend_w;
    for (i, (label, color, dash)) in legend.into_iter().enumerate() {
        let lx = legend_x + f64::from(u32::try_from(i).unwrap_or(0)) * legend_w;
        writeln!(
            s,
            r#"<line x1="{lx}" y1="{}" x2="{}" y2="{}" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>"#,
            legend_y - 4.0,
            lx + 24.0,
            legend_y - 4.0
        )?;
        writeln!(s, r#"<text x="{}" y="{legend_y}">{label}</text>"#, lx + 30.0)?;
    }

    let grid_step = grid_step_mib(y_max);
    for (i, panel) in chart.panels.iter().enumerate() {
        let top = TOP + f64::from(u32::try_from(i).unwrap_or(u32::MAX)) * (PANEL_H + GAP) + 10.0;
        let y = |mib: f64| top + PANEL_H - mib.clamp(0.0, y_max) / y_max * PANEL_H;
        writeln!(
            s,
            r##"<rect x="{LEFT}" y="{top}" width="{}" height="{PANEL_H}" fill="#fafafa" stroke="#bbb"/>"##,
            WIDTH - LEFT - RIGHT
        )?;
        writeln!(s, r#"<text x="{}" y="{}" font-weight="bold">{}</text>"#, LEFT + 6.0, top + 14.0, Xml(&panel.title))?;
        let mut mib = 0.0;
        while mib <= y_max {
            let yy = y(mib);
            writeln!(s, r##"<line x1="{LEFT}" y1="{yy}" x2="{}" y2="{yy}" stroke="#e4e4e4"/>"##, WIDTH - RIGHT)?;
            writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{mib}</text>"#, LEFT - 6.0, yy + 4.0)?;
            mib += grid_step;
        }
        if let Some(t) = chart.threshold_mib {
            let ty = y(t);
            writeln!(
                s,
                r#"<line x1="{LEFT}" y1="{ty}" x2="{}" y2="{ty}" stroke="{ALERT_COLOR}" stroke-dasharray="6,4"/>"#,
                WIDTH - RIGHT
            )?;
        }
        if let Some(origin) = chart.origin_s {
            let xs = x(origin);
            writeln!(
                s,
                r##"<line x1="{xs}" y1="{top}" x2="{xs}" y2="{}" stroke="#555" stroke-dasharray="2,3"/>"##,
                top + PANEL_H
            )?;
        }
        if !chart.host_available.is_empty() {
            write!(s, r#"<polyline class="host" fill="none" stroke="{HOST_COLOR}" stroke-dasharray="1,2" points=""#)?;
            for (t, v) in &chart.host_available {
                write!(s, "{:.1},{:.1} ", x(*t), y(*v))?;
            }
            writeln!(s, r#""/>"#)?;
        }
        for sr in &series {
            write!(
                s,
                r#"<polyline class="{}" fill="none" stroke="{}" stroke-width="1.6" stroke-dasharray="{}" points=""#,
                sr.class, sr.color, sr.dash
            )?;
            for p in &panel.points {
                if let Some(v) = (sr.value)(p) {
                    write!(s, "{:.1},{:.1} ", x(p.t_s), y(v))?;
                }
            }
            writeln!(s, r#""/>"#)?;
        }
        for mark in &panel.marks {
            let (ex, color) = (x(mark.at_s), mark.color);
            writeln!(s, r#"<line x1="{ex}" y1="{top}" x2="{ex}" y2="{}" stroke="{color}"/>"#, top + PANEL_H)?;
            writeln!(s, r#"<text x="{}" y="{}" fill="{color}">{}</text>"#, ex + 4.0, top + 28.0, Xml(&mark.label))?;
        }
        for at in &panel.crosses {
            writeln!(
                s,
                r#"<text x="{}" y="{}" fill="{ALERT_COLOR}" font-weight="bold">✕</text>"#,
                x(*at) - 4.0,
                top + PANEL_H - 4.0
            )?;
        }
    }
    let axis_y = TOP + n_f * (PANEL_H + GAP) + 4.0;
    let (step, unit_s, unit) = time_step(t1 - t0);
    let first = (t0 / step).ceil() * step;
    // Counted, not accumulated: at times beyond 2^53 s adding the step changes nothing, and a
    // `t += step` loop would never end.
    for k in 0..=MAX_TIME_LABELS {
        let t = first + f64::from(k) * step;
        if t > t1 {
            break;
        }
        // Adding 0.0 turns -0.0 into 0.0 for the label.
        writeln!(s, r#"<text x="{}" y="{axis_y}" text-anchor="middle">{:.0} {unit}</text>"#, x(t), t / unit_s + 0.0)?;
    }
    writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
        WIDTH - RIGHT,
        axis_y + 18.0,
        Xml(&chart.footer)
    )?;
    s.push_str("</svg>\n");
    Ok(())
}

/// One line drawn per VM panel, where any point has its figure.
#[derive(Clone, Copy)]
struct Series {
    class: &'static str,
    label: &'static str,
    color: &'static str,
    dash: &'static str,
    value: fn(&Point) -> Option<f64>,
}

const SERIES: [Series; 4] = [
    Series { class: "size", label: "balloon size", color: SIZE_COLOR, dash: "", value: |p| p.size_mib },
    Series { class: "free", label: "guest free", color: FREE_COLOR, dash: "", value: |p| p.free_mib },
    Series {
        class: "available",
        label: "guest available",
        color: AVAILABLE_COLOR,
        dash: "",
        value: |p| p.available_mib,
    },
    Series { class: "rss", label: "QEMU RSS", color: RSS_COLOR, dash: "3,2", value: |p| p.rss_mib },
];

/// The chart as an SVG document.
pub fn svg(chart: &Chart) -> String {
    let mut s = String::new();
    // fmt::Write for String never fails.
    let _ = draw(chart, &mut s);
    s
}

/// The MiB between two horizontal grid lines: at most four steps up to `y_max`.
fn grid_step_mib(y_max: f64) -> f64 {
    let mut step = 64.0;
    while y_max / step > 4.0 {
        step *= 2.0;
    }
    step
}

/// The seconds between two time labels (at most 16 of them), and the unit they are shown in.
fn time_step(span_s: f64) -> (f64, f64, &'static str) {
    const STEPS_S: [f64; 14] =
        [1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0];
    let step = STEPS_S.into_iter().find(|s| span_s / s <= 16.0).unwrap_or_else(|| {
        // Longer than 32 hours: whole multiples of six hours.
        (span_s / 16.0 / 21_600.0).ceil() * 21_600.0
    });
    match step {
        s if s < 60.0 => (s, 1.0, "s"),
        s if s < 3600.0 => (s, 60.0, "min"),
        s => (s, 3600.0, "h"),
    }
}

/// Text escaped for SVG (XML) content and attribute values.
struct Xml<'a>(&'a str);

impl fmt::Display for Xml<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                // Characters XML 1.0 forbids (controls other than tab, line feed and return).
                c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => f.write_str("\u{fffd}")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Keeps at most `max` points: consecutive points are merged, each group into one at its first
/// time with its last balloon size and its lowest free memory, so that a dip toward starvation
/// still shows.
pub fn thin(points: &[Point], max: usize) -> Vec<Point> {
    if points.len() <= max || max == 0 {
        return points.to_vec();
    }
    let group = points.len().div_ceil(max);
    points
        .chunks(group)
        .map(|chunk| Point {
            t_s: chunk[0].t_s,
            size_mib: chunk.iter().rev().find_map(|p| p.size_mib),
            free_mib: chunk.iter().filter_map(|p| p.free_mib).reduce(f64::min),
            available_mib: chunk.iter().filter_map(|p| p.available_mib).reduce(f64::min),
            rss_mib: chunk.iter().rev().find_map(|p| p.rss_mib),
        })
        .collect()
}

/// Errors of `memory_coordinator plot`.
#[derive(Debug)]
pub enum PlotError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not one line of the file was a `--json` round.
    NoRounds {
        path: PathBuf,
        skipped: usize,
    },
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlotError::Read { path, source } => write!(f, "cannot read {}: {source}", path.display()),
            PlotError::NoRounds { path, skipped: 0 } => {
                write!(f, "{} is empty: give it the output of memory_coordinator --json", path.display())
            }
            PlotError::NoRounds { path, skipped } => write!(
                f,
                "{} holds no round of memory_coordinator --json output ({skipped} lines that are not); \
                 give it the daemon's stdout, one JSON object per line",
                path.display()
            ),
        }
    }
}

impl std::error::Error for PlotError {}

/// One `--json` line, as far as the plot needs it.
#[derive(Deserialize)]
struct JsonRound {
    elapsed_ms: u64,
    #[serde(default)]
    host_available_kib: Option<u64>,
    vms: Vec<JsonVm>,
}

#[derive(Deserialize)]
struct JsonVm {
    name: String,
    actual_kib: Option<u64>,
    max_kib: Option<u64>,
    free_now_kib: Option<u64>,
    /// MemAvailable (libvirt's name; `available_kib` in the JSON is MemTotal).
    #[serde(default)]
    usable_kib: Option<u64>,
    #[serde(default)]
    rss_kib: Option<u64>,
    #[serde(default)]
    applied: Option<String>,
    #[serde(default)]
    action: Option<String>,
}

/// A chart made from `--json` lines, and the lines that were not rounds.
#[derive(Debug)]
pub struct FromJson {
    pub chart: Chart,
    pub rounds: usize,
    /// Lines that were not a `--json` round (blank lines are not counted).
    pub skipped: usize,
    /// The first of them: its line number (from 1) and why.
    pub first_skipped: Option<(usize, String)>,
}

/// Exact below 2^53: every figure and time a run holds.
#[allow(clippy::cast_precision_loss)]
fn to_f64(v: u64) -> f64 {
    v as f64
}

fn kib_to_mib_f(kib: u64) -> f64 {
    to_f64(kib) / 1024.0
}

/// Reads `--json` lines: one panel per VM in the order they first appear, each with its
/// balloon size and the free memory the policy judged it by (`free_now_kib`: MemAvailable or
/// MemFree per `--free-figure`), red crosses where an action failed. Lines that are not a
/// round are skipped and counted.
pub fn from_json_lines(input: impl BufRead, threshold_mib: u64) -> std::io::Result<FromJson> {
    let mut panels: Vec<Panel> = Vec::new();
    let (mut rounds, mut skipped, mut first_skipped) = (0usize, 0usize, None);
    let (mut grows, mut shrinks, mut failed) = (0u64, 0u64, 0u64);
    let mut y_max_kib = 0u64;
    let mut last_t = 0.0;
    let mut host_available = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let round: JsonRound = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                skipped += 1;
                first_skipped.get_or_insert((i + 1, e.to_string()));
                continue;
            }
        };
        rounds += 1;
        let t_s = to_f64(round.elapsed_ms) / 1000.0;
        last_t = t_s;
        if let Some(host) = round.host_available_kib {
            host_available.push((t_s, kib_to_mib_f(host)));
        }
        for vm in round.vms {
            let at = match panels.iter().position(|p| p.title == vm.name) {
                Some(at) => at,
                None => {
                    panels.push(Panel { title: vm.name.clone(), ..Panel::default() });
                    panels.len() - 1
                }
            };
            let panel = &mut panels[at];
            y_max_kib = y_max_kib.max(vm.max_kib.unwrap_or(0)).max(vm.actual_kib.unwrap_or(0));
            panel.points.push(Point {
                t_s,
                size_mib: vm.actual_kib.filter(|a| *a > 0).map(kib_to_mib_f),
                free_mib: vm.free_now_kib.map(kib_to_mib_f),
                available_mib: vm.usable_kib.map(kib_to_mib_f),
                rss_mib: vm.rss_kib.map(kib_to_mib_f),
            });
            match (vm.action.as_deref(), vm.applied.as_deref()) {
                (Some("grow"), Some("done")) => grows += 1,
                (Some("shrink"), Some("done")) => shrinks += 1,
                (_, Some("failed")) => {
                    failed += 1;
                    panel.crosses.push(t_s);
                }
                _ => {}
            }
        }
    }
    for panel in &mut panels {
        panel.points = thin(&panel.points, MAX_POINTS);
    }
    let y_max_mib = kib_to_mib_f(y_max_kib).max(1.0);
    let step = grid_step_mib(y_max_mib);
    let chart = Chart {
        title: format!("memory_coordinator: {} VMs, {rounds} rounds over {last_t:.0} s", panels.len()),
        subtitle: format!("{grows} grows, {shrinks} shrinks, {failed} failed actions (✕)"),
        panels,
        y_max_mib: (y_max_mib / step).ceil() * step,
        threshold_mib: Some(to_f64(threshold_mib)),
        origin_s: None,
        footer: "MiB per VM; time since the daemon started; free memory as the policy judged it".to_owned(),
        // The host's figure is far above a VM's scale on a roomy host: drawn only where it
        // fits the VMs' axis (a host held short), else it would flatten every VM's lines.
        host_available: if host_available.iter().all(|(_, v)| *v <= kib_to_mib_f(y_max_kib)) {
            host_available
        } else {
            Vec::new()
        },
    };
    Ok(FromJson { chart, rounds, skipped, first_skipped })
}

/// `memory_coordinator plot FILE`: the chart of a file of `--json` lines (`-`: stdin).
pub fn from_file(path: &Path, threshold_mib: u64) -> Result<FromJson, PlotError> {
    let read = |source| PlotError::Read { path: path.to_owned(), source };
    let parsed = if path == Path::new("-") {
        from_json_lines(std::io::stdin().lock(), threshold_mib)
    } else {
        let file = std::fs::File::open(path).map_err(read)?;
        from_json_lines(std::io::BufReader::new(file), threshold_mib)
    }
    .map_err(read)?;
    if parsed.rounds == 0 {
        return Err(PlotError::NoRounds { path: path.to_owned(), skipped: parsed.skipped });
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUND_1: &str = r#"{"round":1,"elapsed_ms":0,"vms":[{"name":"a<b","actual_kib":1048576,"max_kib":2097152,"free_now_kib":524288,"action":"hold","applied":"none"}]}"#;
    const ROUND_2: &str = r#"{"round":2,"elapsed_ms":1000,"vms":[{"name":"a<b","actual_kib":1048576,"max_kib":2097152,"free_now_kib":409600,"action":"grow","applied":"failed"},{"name":"c","actual_kib":524288,"max_kib":524288,"free_now_kib":null,"action":"hold","applied":"none"}]}"#;

    #[test]
    fn malformed_lines_are_skipped_and_counted_and_the_rest_is_drawn() {
        let input =
            format!("{ROUND_1}\nnot json\n\n{{\"round\":3}}\n{ROUND_2}\n{{\"elapsed_ms\":5,\"vms\":[{{\"x\":1}}]}}\n");
        let parsed = from_json_lines(input.as_bytes(), 100).unwrap();
        assert_eq!(parsed.rounds, 2);
        assert_eq!(parsed.skipped, 3, "the blank line is not counted");
        assert_eq!(parsed.first_skipped.as_ref().map(|f| f.0), Some(2));
        let chart = &parsed.chart;
        assert_eq!(chart.panels.len(), 2);
        assert_eq!(chart.panels[0].points.len(), 2);
        assert_eq!(chart.panels[0].points[1].free_mib, Some(400.0));
        assert_eq!(chart.panels[0].crosses, [1.0], "the failed grow is marked");
        assert_eq!(chart.panels[1].points[0].free_mib, None);
        assert_eq!(chart.y_max_mib, 2048.0);
        let svg = svg(chart);
        assert!(svg.contains("a&lt;b"), "names are escaped");
        assert!(!svg.contains("a<b"));
        assert_eq!(svg.matches("<polyline").count(), 4);
    }

    #[test]
    fn a_file_without_a_round_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.jsonl");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(from_file(&empty, 100), Err(PlotError::NoRounds { skipped: 0, .. })));
        let junk = dir.path().join("junk.jsonl");
        std::fs::write(&junk, "a\nb\n").unwrap();
        let e = from_file(&junk, 100).unwrap_err();
        assert!(e.to_string().contains("(2 lines that are not)"), "{e}");
        let e = from_file(&dir.path().join("missing"), 100).unwrap_err();
        assert!(e.to_string().starts_with("cannot read "), "{e}");
    }

    #[test]
    fn thinning_keeps_the_lowest_free_memory_of_each_group() {
        let points: Vec<Point> = (0..10)
            .map(|i| Point {
                t_s: f64::from(i),
                size_mib: Some(f64::from(i)),
                free_mib: Some(if i == 7 { 1.0 } else { 50.0 }),
                available_mib: None,
                rss_mib: None,
            })
            .collect();
        let thinned = thin(&points, 5);
        assert_eq!(thinned.len(), 5);
        assert_eq!(
            thinned[3],
            Point { t_s: 6.0, size_mib: Some(7.0), free_mib: Some(1.0), available_mib: None, rss_mib: None }
        );
        assert_eq!(thin(&points, 10), points);
    }

    #[test]
    fn a_huge_elapsed_time_draws_a_finite_axis() {
        let line = br#"{"elapsed_ms":18446744073709551615,"vms":[]}"#;
        let parsed = from_json_lines(&line[..], 100).unwrap();
        let svg = svg(&parsed.chart);
        assert!(svg.len() < 100_000, "{} bytes", svg.len());
    }

    #[test]
    fn time_labels_are_at_most_sixteen() {
        for span in [1.0, 59.0, 240.0, 300.0, 3600.0, 86_400.0, 30.0 * 86_400.0] {
            let (step, _, _) = time_step(span);
            assert!(span / step <= 16.0, "{span}: {step}");
        }
    }
}
