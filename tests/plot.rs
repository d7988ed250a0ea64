//! `memory_coordinator plot`: the `--json` output of a real daemon run (over in-process QEMU
//! peers) drawn as an SVG with every VM's series; bad input reported, not drawn.

mod common;

use std::process::Command;

use common::daemon::{self, BIN, json_lines};
use common::fake_qemu::{FakeQemu, Fault};

fn plot(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(BIN).arg("plot").args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The points of the polyline of `class` ("size" or "free") in the panel titled `title`.
fn series(svg: &str, title: &str, class: &str) -> Vec<(f64, f64)> {
    let panel = svg.split(&format!(">{title}</text>")).nth(1).unwrap_or_else(|| panic!("no panel {title}: {svg}"));
    let line = panel.split(&format!("<polyline class=\"{class}\"")).nth(1).unwrap();
    let points = line.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
    points
        .split_whitespace()
        .map(|p| {
            let (x, y) = p.split_once(',').unwrap();
            (x.parse().unwrap(), y.parse().unwrap())
        })
        .collect()
}

#[test]
fn a_real_runs_json_becomes_an_svg_with_each_vms_series() {
    let dir = tempfile::tempdir().unwrap();
    let _a = FakeQemu::start(dir.path(), "a.sock", Some("web-1"), Fault::None, 2048, 100);
    let _b = FakeQemu::start(dir.path(), "b.sock", Some("db<1>"), Fault::None, 600, 480);
    let pattern = format!("{}/*.sock", dir.path().display());
    let out = daemon::run(&["1", "--qmp", &pattern, "--ticks", "4", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json_lines(&out).len(), 4);
    let jsonl = dir.path().join("run.jsonl");
    // What a log collector may add: a truncated last line and a stray message.
    let mut text = out.stdout.clone();
    text.extend_from_slice(b"note: restarted\n{\"round\":5,\"elapsed_ms\":40");
    std::fs::write(&jsonl, &text).unwrap();

    let (code, svg, stderr) = plot(&[jsonl.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("skipped 2 line(s)") && stderr.contains("line 5"), "{stderr}");
    assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>\n"), "{svg}");
    assert!(svg.contains("2 VMs, 4 rounds"), "{svg}");
    for title in ["web-1", "db&lt;1&gt;"] {
        for class in ["size", "free"] {
            let points = series(&svg, title, class);
            assert_eq!(points.len(), 4, "{title} {class}: {points:?}");
            assert!(points.windows(2).all(|w| w[0].0 < w[1].0), "time goes right: {points:?}");
        }
    }
    // web-1 is shrunk: its balloon line goes down the chart (SVG y grows downward).
    let size = series(&svg, "web-1", "size");
    assert!(size.last().unwrap().1 > size[0].1, "{size:?}");
    // db<1> is starving and grown: its balloon line goes up.
    let size = series(&svg, "db&lt;1&gt;", "size");
    assert!(size.last().unwrap().1 < size[0].1, "{size:?}");
}

#[test]
fn an_empty_or_unreadable_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let (code, svg, stderr) = plot(&[empty.to_str().unwrap()]);
    assert_eq!((code, svg.as_str()), (Some(1), ""), "{stderr}");
    assert!(stderr.contains("is empty: give it the output of memory_coordinator --json"), "{stderr}");
    let (code, _, stderr) = plot(&[dir.path().join("missing.jsonl").to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot read") && stderr.contains("No such file"), "{stderr}");
    let (code, _, stderr) = plot(&[]);
    assert_eq!(code, Some(2), "{stderr}");
}
