//! One scenario on one backend: boot the guests (with a disk where the scenario reads one),
//! hold the host short where the scenario says so, start the coordinator, let it settle, set
//! every guest to 512 MiB (as the course's runtest did), start the workloads, watch every second
//! until they end plus a cool-down, then stop the coordinator with SIGINT (or, in RE, with
//! SIGTERM under `--restore-on-exit`, and watch the guests grow back).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::daemon::Daemon;
use crate::guests::{BackendKind, Guests, MAX_MIB, START_MIB, Sample};
use crate::hold::{HoldReport, HostHold, host_available_mib};
use crate::lab::GuestImage;

/// Seconds the coordinator runs before the workloads start.
const WARMUP_S: u64 = 15;
/// PC: the cache guest's disk, a sparse raw file. Larger than the guest's start size, so that
/// reading it fills every free page with cache (MemFree falls to tens of MiB) whatever the
/// guest's size up to its max.
const DISK_MIB: u64 = 2048;
/// PC: what the cache guest runs. It keeps /dev/vda open (fd 3) while it sleeps: closing the
/// last opener of a block device drops its page cache (LAB.md).
const CACHE_CMD: &str = "exec 3</dev/vda; cat /dev/vda >/dev/null; echo cache: read the disk; sleep 999999";
/// RE: how often, and how long, the lab samples the guests after SIGTERM.
const RESTORE_SAMPLE: Duration = Duration::from_millis(250);
const RESTORE_WATCH: Duration = Duration::from_secs(5);
/// RE: the score's moment, "N of M guests at max 2 s after SIGTERM".
const RESTORE_SCORE_AFTER_S: f64 = 2.0;
/// A run stops after this many seconds of workload, ended or not.
const MAX_WORKLOAD_S: u64 = 420;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ScenarioName {
    T1,
    T2,
    T3,
    /// Host short: every guest consumes at once on a host held to ~3 GiB available.
    HS,
    /// Page cache: one guest fills its page cache from a disk, another consumes.
    PC,
    /// Restore on exit: a short workload, then SIGTERM under `--restore-on-exit`.
    RE,
}

/// Every scenario, in the order `e2e` runs them.
pub const ALL: [ScenarioName; 6] =
    [ScenarioName::T1, ScenarioName::T2, ScenarioName::T3, ScenarioName::HS, ScenarioName::PC, ScenarioName::RE];

impl ScenarioName {
    pub fn parse(s: &str) -> Option<ScenarioName> {
        match s.to_ascii_uppercase().as_str() {
            "T1" => Some(ScenarioName::T1),
            "T2" => Some(ScenarioName::T2),
            "T3" => Some(ScenarioName::T3),
            "HS" => Some(ScenarioName::HS),
            "PC" => Some(ScenarioName::PC),
            "RE" => Some(ScenarioName::RE),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ScenarioName::T1 => "T1",
            ScenarioName::T2 => "T2",
            ScenarioName::T3 => "T3",
            ScenarioName::HS => "HS",
            ScenarioName::PC => "PC",
            ScenarioName::RE => "RE",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            ScenarioName::T1 => "one guest runs the course consumer, the others idle",
            ScenarioName::T2 => "every guest runs the course consumer",
            ScenarioName::T3 => {
                "guest A consumes up to 512 MiB and frees, guest B runs the course consumer, the others idle"
            }
            ScenarioName::HS => "every guest runs the course consumer on a host held to ~3 GiB available",
            ScenarioName::PC => {
                "guest A fills its page cache from its disk and keeps it, guest B runs the course consumer, host held short"
            }
            ScenarioName::RE => "guest A consumes 256 MiB and frees; then SIGTERM with --restore-on-exit",
        }
    }

    /// Host MemAvailable the scenario holds the host to before the workloads start (`None`: no
    /// hold). HS: ~3 GiB, which four consumers use up long before their max (LAB.md saw a host
    /// with ~3 GiB go under 200 MiB with four consumers and no debt accounting). PC, from real
    /// runs with two guests: the consumer's growth to its max costs the host ~1850 MiB (QEMU
    /// RSS 220 -> 2070 MiB), filling the cache guest ~330 MiB more (RSS 228 -> 558 MiB, until
    /// the coordinator takes the cache back), plus the 200 MiB reserve. Held to 2238 MiB, the
    /// coordinator took the cache guest down to what it must keep and the consumer was still
    /// OOM-killed 23 MiB short of its max; held to 2106 MiB the other load on the shared
    /// machine fired the valve. 2432 MiB leaves ~130 MiB of margin while the consumer still
    /// needs part of the cache guest's memory. Each further guest adds 128 MiB: an idle guest
    /// near its 256 MiB minimum has touched only ~50 MiB, and the policy counts the untouched
    /// rest as debt the host may still have to pay (a 4-guest run held to 2173 MiB left the
    /// consumer short at 1489 MiB with 500-700 MiB available; held to 2949 MiB, no pressure).
    pub fn host_leave_mib(self, guests: usize) -> Option<u64> {
        match self {
            ScenarioName::HS => Some(3072),
            ScenarioName::PC => Some(2432 + 128 * (guests as u64).saturating_sub(2)),
            _ => None,
        }
    }

    /// The guest that fills its page cache (PC).
    pub fn cache_guest(self) -> Option<usize> {
        (self == ScenarioName::PC).then_some(0)
    }

    /// Seconds watched after the last workload ended: long enough in T1-T3 to score recovery;
    /// shorter where nothing is scored after the end.
    fn cooldown_s(self) -> u64 {
        match self {
            ScenarioName::T1 | ScenarioName::T2 | ScenarioName::T3 => 45,
            ScenarioName::HS | ScenarioName::PC => 20,
            ScenarioName::RE => 10,
        }
    }

    /// (guest index, command) for each workload.
    pub fn workloads(self, guests: usize) -> Vec<(usize, &'static str)> {
        match self {
            ScenarioName::T1 => vec![(0, "consumer course")],
            ScenarioName::T2 => (0..guests).map(|i| (i, "consumer course")).collect(),
            ScenarioName::T3 => vec![(0, "consumer grow 512 0 0"), (1.min(guests - 1), "consumer course")],
            ScenarioName::HS => (0..guests).map(|i| (i, "consumer course")).collect(),
            ScenarioName::PC => vec![(0, CACHE_CMD), (1.min(guests - 1), "consumer course")],
            ScenarioName::RE => vec![(0, "consumer grow 256 0 0")],
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

/// RE: what the guests did after SIGTERM under `--restore-on-exit`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreReport {
    /// Guests at their max (within 1 MiB) 2 s after SIGTERM.
    pub at_max_after_2s: usize,
    pub guests: usize,
    /// Seconds after SIGTERM when every guest was at its max, if within the 5 s watched.
    pub all_at_max_after_s: Option<f64>,
    /// Balloon sizes just before SIGTERM and 5 s after it.
    pub before_mib: Vec<u64>,
    pub after_mib: Vec<u64>,
    /// The coordinator's own summary line ("restored N VM(s) ...").
    pub coordinator_says: Option<String>,
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
    /// HS, PC: the host hold and its valve.
    pub hold: Option<HoldReport>,
    /// Rounds (from the coordinator's JSON lines) in which it took memory under pressure
    /// (`"pressure": true`), and in which some VM was left short (`short_kib` > 0).
    pub pressure_rounds: usize,
    pub short_rounds: usize,
    /// Seconds of the first such round.
    pub first_pressure_s: Option<f64>,
    /// PC: the guest that holds page cache, and the coordinator's own JSON for every grow it
    /// gave that guest (with the round's `pressure` and `headroom_kib` and the run time), so a
    /// grow the score counts can be read as the coordinator saw it.
    pub cache_guest: Option<usize>,
    pub cache_grow_decisions: Vec<serde_json::Value>,
    /// RE: the restore phase.
    pub restore: Option<RestoreReport>,
    /// Every JSON line the coordinator printed (its decisions, figures in KiB).
    pub coordinator_rounds: Vec<serde_json::Value>,
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

/// Prints one table line: time, host, then per guest balloon/free/available, the QEMU's RSS
/// and the last action.
fn table_line(t: f64, host: u64, names: &[String], samples: &[Sample], last: &BTreeMap<String, String>) {
    let mut line = format!("{t:>6.0}s host {host:>6} |");
    let mib = |v: Option<u64>| v.map_or("   -".to_owned(), |u| format!("{u:>4}"));
    for (name, s) in names.iter().zip(samples) {
        let action = last.get(name).map_or("", String::as_str);
        line.push_str(&format!(
            " {name} {:>4}/{}/{} {} {action:<12}|",
            s.actual_mib,
            mib(s.unused_mib),
            mib(s.available_mib),
            mib(s.rss_mib)
        ));
    }
    println!("{line}");
}

/// RE: after SIGTERM, samples the guests every 250 ms for 5 s and scores how far they grew back.
fn watch_restore(guests: &mut Guests, before: Vec<u64>, signalled: Instant) -> RestoreReport {
    let mut report = RestoreReport { guests: before.len(), before_mib: before, ..RestoreReport::default() };
    let mut scored = false;
    while signalled.elapsed() < RESTORE_WATCH {
        std::thread::sleep(RESTORE_SAMPLE);
        let samples = guests.sample();
        let at_max = samples.iter().filter(|s| s.actual_mib + 1 >= MAX_MIB).count();
        let after = signalled.elapsed().as_secs_f64();
        if !scored && after >= RESTORE_SCORE_AFTER_S {
            report.at_max_after_2s = at_max;
            scored = true;
        }
        if at_max == samples.len() && report.all_at_max_after_s.is_none() {
            report.all_at_max_after_s = Some(after);
        }
        report.after_mib = samples.iter().map(|s| s.actual_mib).collect();
    }
    report
}

/// Runs `scenario` with `count` guests on `backend`. `table`: print the live table.
pub fn run(image: &GuestImage, scenario: ScenarioName, backend: BackendKind, count: usize, table: bool) -> Run {
    let names: Vec<String> = (1..=count).map(|i| format!("aos_vm{i}")).collect();
    println!("== {} on {} with {count} guests: {}", scenario.name(), backend.name(), scenario.description());
    // PC: the cache guest's disk, a sparse file (costs nothing on the host until read).
    let disk_dir = tempfile::Builder::new().prefix("mc-lab-disk-").tempdir().unwrap();
    let disks: Vec<Option<std::path::PathBuf>> = (0..count)
        .map(|i| {
            (scenario.cache_guest() == Some(i)).then(|| {
                let path = disk_dir.path().join(format!("{}.img", names[i]));
                std::fs::File::create(&path).unwrap().set_len(DISK_MIB * 1024 * 1024).unwrap();
                path
            })
        })
        .collect();
    let mut guests = Guests::boot(backend, image, &names, &disks);
    // Held after the guests booted, so that what they cost is counted in what stays.
    let hold = scenario.host_leave_mib(count).map(HostHold::start);
    let workloads = scenario.workloads(count);
    let mut busy = vec![false; count];
    for (i, _) in &workloads {
        busy[*i] = true;
    }

    let mut daemon = match backend {
        BackendKind::None => None,
        _ => {
            let mut args: Vec<String> = vec!["1".into(), "--json".into()];
            if scenario == ScenarioName::RE {
                args.push("--restore-on-exit".into());
            }
            args.extend(guests.coordinator_args());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            Some(Daemon::start(&args))
        }
    };
    if table {
        println!("  time  host MiB | per guest: balloon/free/available MiB, QEMU RSS MiB, last action");
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
        // Only the consumers end; the cache reader (PC) keeps its cache until the guest stops.
        ends: workloads
            .iter()
            .filter(|(_, cmd)| cmd.starts_with("consumer"))
            .map(|(i, _)| WorkloadEnd { guest: names[*i].clone(), ..WorkloadEnd::default() })
            .collect(),
        oom_kills: Vec::new(),
        coordinator_cpu_s: None,
        coordinator_peak_rss_kib: None,
        exit_code: None,
        exit_after_sigint_ms: None,
        timed_out: false,
        hold: None,
        pressure_rounds: 0,
        short_rounds: 0,
        first_pressure_s: None,
        cache_guest: scenario.cache_guest(),
        cache_grow_decisions: Vec::new(),
        restore: None,
        coordinator_rounds: Vec::new(),
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
                    if let Some(end) = run.ends.iter_mut().find(|e| e.guest == names[i] && e.at_s.is_none())
                        && ended
                        && workloads_started
                    {
                        end.at_s = Some(t);
                        end.oom_killed = oom;
                        end.actual_mib_at_end = Some(samples[i].actual_mib);
                    }
                }
            }
        }

        // The coordinator's decisions since the last second.
        if let Some(d) = daemon.as_mut() {
            let rounds = d.poll_rounds();
            for round in &rounds[rounds_seen..] {
                let at = round["elapsed_ms"].as_f64().unwrap_or(0.0) / 1000.0 - WARMUP_S as f64;
                // The pressure path: the host could not fund every need from its headroom and
                // normal releases, so the band was waived (pressure), or some VM was left short.
                let pressure = round["pressure"].as_bool() == Some(true);
                let short = round["vms"].as_array().into_iter().flatten().any(|vm| vm["short_kib"].as_u64() > Some(0));
                run.pressure_rounds += usize::from(pressure);
                run.short_rounds += usize::from(short);
                if (pressure || short) && run.first_pressure_s.is_none() {
                    run.first_pressure_s = Some(at);
                }
                for vm in round["vms"].as_array().into_iter().flatten() {
                    let (Some(action), Some(name)) = (vm["action"].as_str(), vm["name"].as_str()) else { continue };
                    if action == "hold" || vm["applied"] != "done" {
                        continue;
                    }
                    if action == "grow" && scenario.cache_guest().is_some_and(|c| names[c] == name) {
                        let mut noted = vm.clone();
                        noted["t_s"] = serde_json::json!(at);
                        noted["round_pressure"] = round["pressure"].clone();
                        noted["round_headroom_kib"] = round["headroom_kib"].clone();
                        println!("  >> the cache guest was grown: {noted}");
                        run.cache_grow_decisions.push(noted);
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
            println!("  >> every workload ended at {t:.0} s; watching {} s more", scenario.cooldown_s());
        }
        if all_ended_at.is_some_and(|end| t >= end + scenario.cooldown_s() as f64) {
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
        let restore = scenario == ScenarioName::RE;
        let before: Vec<u64> = guests.sample().iter().map(|s| s.actual_mib).collect();
        let signalled = Instant::now();
        d.signal(if restore { libc::SIGTERM } else { libc::SIGINT });
        // The coordinator restores before it exits, so the guests are watched from the signal on
        // once it has gone: what they do then is what its last commands did.
        let (code, took) = d.wait_exit(Duration::from_secs(10));
        let watched = restore.then(|| watch_restore(&mut guests, before, signalled));
        run.exit_code = code;
        run.exit_after_sigint_ms = Some(u64::try_from(took.as_millis()).unwrap_or(u64::MAX));
        let said = |needle: &str| {
            d.stderr.iter().rev().find(|l| l.contains(needle)).map(|l| l.split("] ").nth(1).unwrap_or(l).to_owned())
        };
        if let Some(mut r) = watched {
            r.coordinator_says = said("restored ");
            println!(
                "  >> restore: {} of {} guests at max {RESTORE_SCORE_AFTER_S:.0} s after SIGTERM ({:?} -> {:?} MiB); coordinator: {}",
                r.at_max_after_2s,
                r.guests,
                r.before_mib,
                r.after_mib,
                r.coordinator_says.as_deref().unwrap_or("-")
            );
            run.restore = Some(r);
        }
        if let Some(last) = said("stopped:") {
            println!("  >> coordinator: {last}");
        }
        run.coordinator_rounds = std::mem::take(&mut d.rounds);
    }
    run.hold = hold.as_ref().map(|h| h.report(workload_start));
    drop(hold);
    drop(guests);
    run
}
