//! The real-VM lab: boots real QEMU guests on this machine (TCG; the Debian kernel, a busybox
//! initramfs with the balloon driver, our consumer program) and runs the coordinator against
//! them through libvirt or bare QEMU + QMP, scoring what happens.
//!
//! ```text
//! cargo test --release --test lab -- demo              T1 on libvirt, 4 guests, live table, plot
//! cargo test --release --test lab -- e2e               T1, T2, T3, HS, PC, RE on libvirt and QMP, asserted
//! cargo test --release --test lab -- e2e HS PC         only the scenarios named, on both backends
//! cargo test --release --test lab -- e2e --backend qmp HS   ... and only on that backend
//! cargo test --release --test lab -- e2e --short       T1 with 2 guests on each backend, PC on libvirt (CI)
//! cargo test --release --test lab -- run T3 qmp [--guests N] [--table]
//! cargo test --release --test lab -- publish           copy plots and scores into tests/lab/results
//! ```
//! Options: `--out DIR` (default target/lab/results). Every run writes
//! `<scenario>-<backend>.json` (scores and the recorded run) and `.svg` (the plot) there.
//! Backends: `libvirt`, `qmp`, and `none` (libvirt guests, no coordinator: the baseline).
//! Needs root; `make deps` installs QEMU and libvirt. `make demo` and `make e2e` call this.

// Shared with the integration tests; the lab uses part of each.
#[allow(dead_code)]
#[path = "../common/daemon.rs"]
mod daemon;
mod guests;
mod hold;
#[allow(dead_code)]
#[path = "../common/lab.rs"]
mod lab;
mod plot;
mod scenario;
mod scores;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use guests::BackendKind;
use scenario::ScenarioName;

struct Args {
    command: String,
    rest: Vec<String>,
    out: PathBuf,
    guests: Option<usize>,
    table: bool,
    short: bool,
    /// `e2e --backend B`: only that backend.
    backend: Option<BackendKind>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        command: String::new(),
        rest: Vec::new(),
        out: Path::new(lab::ROOT).join("target/lab/results"),
        guests: None,
        table: false,
        short: false,
        backend: None,
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => parsed.out = PathBuf::from(args.next().ok_or("--out needs a directory")?),
            "--guests" => {
                let n = args.next().ok_or("--guests needs a number")?;
                let n: usize = n.parse().map_err(|_| format!("--guests {n}: not a number"))?;
                if !(2..=8).contains(&n) {
                    return Err("--guests must be between 2 and 8".into());
                }
                parsed.guests = Some(n);
            }
            "--table" => parsed.table = true,
            "--backend" => {
                let b = args.next().ok_or("--backend needs libvirt or qmp")?;
                parsed.backend = Some(BackendKind::parse(&b).ok_or(format!("--backend {b}: libvirt, qmp or none"))?);
            }
            "--short" => parsed.short = true,
            // What cargo's test runner may pass along.
            "--nocapture" | "--quiet" | "-q" | "--test-threads" => {}
            _ if parsed.command.is_empty() => parsed.command = a,
            _ => parsed.rest.push(a),
        }
    }
    Ok(parsed)
}

/// Runs, scores, plots and saves one scenario; returns its failures.
fn run_one(
    image: &lab::GuestImage,
    args: &Args,
    scenario: ScenarioName,
    backend: BackendKind,
    guests: usize,
    table: bool,
) -> Vec<String> {
    let run = scenario::run(image, scenario, backend, guests, table);
    let course: Vec<usize> =
        scenario.workloads(guests).iter().filter(|(_, c)| *c == "consumer course").map(|(i, _)| *i).collect();
    let scores = scores::compute(&run, &course);
    print!("{}", scores.report());
    std::fs::create_dir_all(&args.out).unwrap();
    let stem = args.out.join(format!("{}-{}", scenario.name(), backend.name()));
    let json = serde_json::json!({ "scores": &scores, "run": &run });
    std::fs::write(stem.with_extension("json"), serde_json::to_string_pretty(&json).unwrap()).unwrap();
    std::fs::write(stem.with_extension("svg"), plot::svg(&run, &scores)).unwrap();
    println!("  wrote {}.json and .svg", stem.display());
    let failures = scores.failures(backend != BackendKind::None);
    for f in &failures {
        println!("  FAILED: {} on {}: {f}", scenario.name(), backend.name());
    }
    failures
}

/// Copies the plots of the last runs and their scores (not the recorded runs, which are large)
/// into tests/lab/results, for the README.
fn publish(from: &Path) -> ExitCode {
    let to = Path::new(lab::ROOT).join("tests/lab/results");
    std::fs::create_dir_all(&to).unwrap();
    let mut all = serde_json::Map::new();
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(from).map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default();
    entries.sort();
    for path in entries.iter().filter(|p| p.extension().is_some_and(|e| e == "json")) {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let run: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        all.insert(stem.clone(), run["scores"].clone());
        std::fs::copy(path.with_extension("svg"), to.join(format!("{stem}.svg"))).unwrap();
        println!("published {stem}");
    }
    if all.is_empty() {
        eprintln!("lab: no results in {}; run the lab first", from.display());
        return ExitCode::FAILURE;
    }
    let scores = serde_json::to_string_pretty(&serde_json::Value::Object(all)).unwrap();
    std::fs::write(to.join("scores.json"), scores + "\n").unwrap();
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("lab: {e}");
            return ExitCode::from(2);
        }
    };
    let plan: Vec<(ScenarioName, BackendKind, usize, bool)> = match args.command.as_str() {
        "demo" => vec![(ScenarioName::T1, BackendKind::Libvirt, args.guests.unwrap_or(4), true)],
        "e2e" => {
            // `e2e HS PC`: only the scenarios named (an unknown name is a usage error).
            let mut only = Vec::new();
            for name in &args.rest {
                let Some(s) = ScenarioName::parse(name) else {
                    eprintln!("lab: unknown scenario {name:?}: T1 T2 T3 HS PC RE");
                    return ExitCode::from(2);
                };
                only.push(s);
            }
            let wanted = |s: ScenarioName| only.is_empty() || only.contains(&s);
            let plan: Vec<_> = if args.short {
                // What CI runs, within about 10 minutes: T1 on each backend, PC on libvirt.
                let n = args.guests.unwrap_or(2);
                vec![
                    (ScenarioName::T1, BackendKind::Libvirt, n, args.table),
                    (ScenarioName::T1, BackendKind::Qmp, n, args.table),
                    (ScenarioName::PC, BackendKind::Libvirt, n, args.table),
                ]
            } else {
                let n = args.guests.unwrap_or(4);
                [BackendKind::Libvirt, BackendKind::Qmp]
                    .into_iter()
                    .flat_map(|b| scenario::ALL.into_iter().map(move |s| (s, b, n, args.table)))
                    .collect()
            };
            plan.into_iter().filter(|(s, b, ..)| wanted(*s) && args.backend.is_none_or(|w| w == *b)).collect()
        }
        "run" => {
            let scenario = args.rest.first().and_then(|s| ScenarioName::parse(s));
            let backend = args.rest.get(1).and_then(|s| BackendKind::parse(s));
            let (Some(scenario), Some(backend)) = (scenario, backend) else {
                eprintln!("lab: usage: run T1|T2|T3|HS|PC|RE libvirt|qmp|none [--guests N] [--table]");
                return ExitCode::from(2);
            };
            vec![(scenario, backend, args.guests.unwrap_or(4), args.table)]
        }
        "publish" => return publish(&args.out),
        // The host hold's helper process (hold.rs), started by the lab itself.
        "__hold" => return hold::child_main(args.rest.first().map_or("", String::as_str)),
        "" => {
            // `cargo test` with no arguments (this target is not run by default): say how.
            println!("lab: nothing to do; see tests/lab/main.rs (demo, e2e, run)");
            return ExitCode::SUCCESS;
        }
        other => {
            eprintln!("lab: unknown command {other:?}: demo, e2e [--short], run SCENARIO BACKEND");
            return ExitCode::from(2);
        }
    };
    if lab::skip_lab("the lab") {
        return ExitCode::SUCCESS;
    }
    let image = lab::guest_image();
    let mut failures = Vec::new();
    for (scenario, backend, guests, table) in plan {
        failures.extend(run_one(&image, &args, scenario, backend, guests, table));
    }
    if failures.is_empty() {
        println!("lab: all runs passed");
        ExitCode::SUCCESS
    } else {
        println!("lab: {} failure(s)", failures.len());
        ExitCode::FAILURE
    }
}
