//! One scenario on one backend: boot the guests, start the coordinator, let it settle, set every
//! guest to 512 MiB (as the course's runtest did), start the workloads, watch every second until
//! they end plus a cool-down, then stop the coordinator with SIGINT.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::daemon::Daemon;
use crate::guests::{BackendKind, Guests, START_MIB, Sample};
use crate::lab::GuestImage;

/// Seconds the coordinator runs before the workloads start.
const WARMUP_S: u64 = 15;
/// Seconds watched after the last workload ended (reclaiming memory).
const COOLDOWN_S: u64 = 45;
/// A run stops after this many seconds of workload, ended or not.
const MAX_WORKLOAD_S: u64 = 420;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ScenarioName {
    T1,
    T2,
    T3,
}

impl ScenarioName {
    pub fn parse(s: &str) -> Option<ScenarioName> {
        match s.to_ascii_uppercase().as_str() {
            "T1" => Some(ScenarioName::T1),
            "T2" => Some(ScenarioName::T2),
            "T3" => Some(ScenarioName::T3),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ScenarioName::T1 => "T1",
            ScenarioName::T2 => "T2",
            ScenarioName::T3 => "T3",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            ScenarioName::T1 => "one guest runs the course consumer, the others idle",
            ScenarioName::T2 => "every guest runs the course consumer",
            ScenarioName::T3 => {
                "guest A consumes up to 512 MiB and frees, guest B runs the course consumer, the others idle"
            }
        }
    }

    /// (guest index, command) for each workload.
    pub fn workloads(self, guests: usize) -> Vec<(usize, &'static str)> {
        match self {
            ScenarioName::T1 => vec![(0, "consumer course")],
            ScenarioName::T2 => (0..guests).map(|i| (i, "consumer course")).collect(),
            ScenarioName::T3 => vec![(0, "consumer grow 512 0 0"), (1.min(guests - 1), "consumer course")],
        }
    }
}

/// What happened to a workload.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkloadEnd {
    pub guest: String,
    /// Seconds after the workload start.
    pub at_s: Option<f64>,
    pub oom_killed: bool,
    /// The guest's balloon size when it ended.
    pub actual_mib_at_end: Option<u64>,
}

/// One second of the run.
#[derive(Clone, Debug, Serialize)]
pub struct Tick {
    /// Seconds relative to the workload start (negative during warm-up).
    pub t_s: f64,
    pub host_available_mib: u64,
    pub guests: Vec<Sample>,
}

/// A balloon change the coordinator made, from its JSON lines.
#[derive(Clone, Debug, Serialize)]
pub struct Action {
    pub t_s: f64,
    pub guest: String,
    pub grow: bool,
    pub from_kib: u64,
    pub to_kib: u64,
    /// Free memory the decision was based on.
    pub unused_kib: u64,
}

/// Everything recorded in one run.
#[derive(Debug, Serialize)]
pub struct Run {
    pub scenario: ScenarioName,
    pub backend: BackendKind,
    pub names: Vec<String>,
    /// Guests that ran a workload.
    pub busy: Vec<bool>,
    pub ticks: Vec<Tick>,
    pub actions: Vec<Action>,
    pub ends: Vec<WorkloadEnd>,
    /// (seconds, guest, text) of OOM kills seen on consoles.
    pub oom_kills: Vec<(f64, String, u64)>,
    pub coordinator_cpu_s: Option<f64>,
    pub coordinator_peak_rss_kib: Option<u64>,
    pub exit_code: Option<i32>,
    pub exit_after_sigint_ms: Option<u64>,
    pub timed_out: bool,
}

fn proc_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks as f64 / hz.max(1) as f64)
}

fn proc_peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn host_available_mib() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    memory_coordinator::host::parse_meminfo(meminfo.as_bytes()).map_or(0, |h| h.available_kib / 1024)
}

/// Prints one table line: time, host, then per guest balloon/free and the last action.
fn table_line(t: f64, host: u64, names: &[String], samples: &[Sample], last: &BTreeMap<String, String>) {
    let mut line = format!("{t:>6.0}s host {host:>6} |");
    for (name, s) in names.iter().zip(samples) {
        let unused = s.unused_mib.map_or("   -".to_owned(), |u| format!("{u:>4}"));
        let action = last.get(name).map_or("", String::as_str);
        line.push_str(&format!(" {name} {:>4}/{unused} {action:<12}|", s.actual_mib));
    }
    println!("{line}");
}

/// Runs `scenario` with `count` guests on `backend`. `table`: print the live table.
pub fn run(image: &GuestImage, scenario: ScenarioName, backend: BackendKind, count: usize, table: bool) -> Run {
    let names: Vec<String> = (1..=count).map(|i| format!("aos_vm{i}")).collect();
    println!("== {} on {} with {count} guests: {}", scenario.name(), backend.name(), scenario.description());
    let mut guests = Guests::boot(backend, image, &names);
    let workloads = scenario.workloads(count);
    let mut busy = vec![false; count];
    for (i, _) in &workloads {
        busy[*i] = true;
    }

    let mut daemon = match backend {
        BackendKind::None => None,
        _ => {
            let mut args: Vec<String> = vec!["1".into(), "--json".into()];
            args.extend(guests.coordinator_args());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Some(Daemon::start(&args))
        }
    };
    if table {
        println!("  time  host MiB | per guest: balloon/free MiB, last action");
    }

    let started = Instant::now();
    let workload_start = started + Duration::from_secs(WARMUP_S);
    let mut run = Run {
        scenario,
        backend,
        names: names.clone(),
        busy,
        ticks: Vec::new(),
        actions: Vec::new(),
        ends: workloads
            .iter()
            .map(|(i, _)| WorkloadEnd { guest: names[*i].clone(), ..WorkloadEnd::default() })
            .collect(),
        oom_kills: Vec::new(),
        coordinator_cpu_s: None,
        coordinator_peak_rss_kib: None,
        exit_code: None,
        exit_after_sigint_ms: None,
        timed_out: false,
    };
    let mut console_seen: Vec<usize> = (0..count).map(|i| guests.console(i).len()).collect();
    let mut workloads_started = false;
    let mut all_ended_at: Option<f64> = None;
    let mut last_action: BTreeMap<String, String> = BTreeMap::new();
    let mut rounds_seen = 0;
    let mut next = Instant::now();

    loop {
        let now = Instant::now();
        let t = if now >= workload_start {
            now.duration_since(workload_start).as_secs_f64()
        } else {
            -workload_start.duration_since(now).as_secs_f64()
        };

        if !workloads_started && now >= workload_start {
            guests.set_all(START_MIB);
            println!("  >> every guest set to {START_MIB} MiB; starting the workloads");
            for (i, cmd) in &workloads {
                guests.send(*i, cmd);
            }
            workloads_started = true;
        }

        // Consoles: workload progress, ends and OOM kills.
        let samples = guests.sample();
        for i in 0..count {
            let console = guests.console(i);
            let new = console.get(console_seen[i]..).unwrap_or("").to_owned();
            console_seen[i] = console.len();
            for line in new.lines() {
                let oom = line.contains("Out of memory: Killed process");
                if oom {
                    run.oom_kills.push((t, names[i].clone(), samples[i].actual_mib));
                }
                if line.contains("consumer: ") || oom {
                    if table {
                        println!("  >> {}: {}", names[i], line.trim());
                    }
                    let ended = oom || line.contains("consumer: freed");
                    if let Some(end) = run.ends.iter_mut().find(|e| e.guest == names[i] && e.at_s.is_none()) {
                        if ended && workloads_started {
                            end.at_s = Some(t);
                            end.oom_killed = oom;
                            end.actual_mib_at_end = Some(samples[i].actual_mib);
                        }
                    }
                }
            }
        }

        // The coordinator's decisions since the last second.
        if let Some(d) = daemon.as_mut() {
            let rounds = d.poll_rounds();
            for round in &rounds[rounds_seen..] {
                let at = round["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0 - WARMUP_S as f64;
                for vm in round["vms"].as_array().into_iter().flatten() {
                    let (Some(action), Some(name)) = (vm["action"].as_str(), vm["name"].as_str()) else { continue };
                    if action == "hold" || vm["applied"] != "done" {
                        continue;
                    }
                    let from = vm["actual_kib"].as_u64().unwrap_or(0);
                    let to = vm["target_kib"].as_u64().unwrap_or(0);
                    last_action.insert(name.to_owned(), format!("{action}>{}", to / 1024));
                    run.actions.push(Action {
                        t_s: at,
                        guest: name.to_owned(),
                        grow: action == "grow",
                        from_kib: from,
                        to_kib: to,
                        unused_kib: vm["unused_now_kib"].as_u64().unwrap_or(0),
                    });
                }
            }
            rounds_seen = rounds.len();
        }

        let host = host_available_mib();
        if table {
            table_line(t, host, &names, &samples, &last_action);
            last_action.clear();
        }
        run.ticks.push(Tick { t_s: t, host_available_mib: host, guests: samples });

        if workloads_started && all_ended_at.is_none() && run.ends.iter().all(|e| e.at_s.is_some()) {
            all_ended_at = Some(t);
            println!("  >> every workload ended at {t:.0} s; watching {COOLDOWN_S} s more");
        }
        if all_ended_at.is_some_and(|end| t >= end + COOLDOWN_S as f64) {
            break;
        }
        if t >= MAX_WORKLOAD_S as f64 {
            println!("  >> workloads still running after {MAX_WORKLOAD_S} s: stopping");
            run.timed_out = true;
            break;
        }
        next += Duration::from_secs(1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }

    if let Some(mut d) = daemon {
        let pid = d.child.id();
        run.coordinator_cpu_s = proc_cpu_s(pid);
        run.coordinator_peak_rss_kib = proc_peak_rss_kib(pid);
        d.signal(libc::SIGINT);
        let (code, took) = d.wait_exit(Duration::from_secs(10));
        run.exit_code = code;
        run.exit_after_sigint_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
        if let Some(last) = d.stderr.iter().rev().find(|l| l.contains("stopped:")) {
            println!("  >> coordinator: {}", last.split("] ").nth(1).unwrap_or(last));
        }
    }
    drop(guests);
    run
}
