//! The daemon loop. One round flows one way: the host's figures and a backend's `refresh` fill
//! the snapshot, [`decide`] turns it into targets, the backend applies them (shrinks first, so
//! memory is released before it is given), then one log line per action and, with `--json`, one
//! JSON line per round on stdout; with `--metrics-file`/`--metrics-listen` the round's
//! Prometheus exposition ([`crate::metrics`]), also for rounds the backend or host was down.
//!
//! Between `refresh` and `decide` the operator's rules ([`VmRules`]: `--domains`, `--exclude`,
//! `--config`) are applied: an excluded VM's figures are withheld from the policy and its
//! decision reported as `Hold::Excluded`; every other VM gets its limits in
//! `Snapshot::limits`. A verdict is worked out when a VM arrives, is renamed, or the rules are
//! reloaded (SIGHUP), and kept per slot in between.
//!
//! After warm-up a round allocates nothing on the Rust heap: every per-VM array is fixed, names
//! are fixed-capacity text, and the JSON line is written through a buffer that is reused.

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

use crate::host::HostMemory;
use crate::metrics::{Metrics, RoundView};
use crate::policy::{
    self, Action, Decision, Decisions, History, Hold, MAX_DOMAINS, PolicyConfig, Snapshot, VmLimits, VmStats, decide,
};
use crate::shutdown::Shutdown;
use crate::text::VmName;
use crate::units::kib_to_mib;
use crate::unserved::{self, Unserved};
use crate::vmconfig::{Verdict, VmRules};

/// Where VM figures come from and where targets go: libvirt or QMP.
pub trait Backend {
    /// A failure of the whole backend (connection lost), or of one VM's action.
    type Error: fmt::Display;

    /// For the start-up log line, e.g. "libvirt qemu:///system".
    fn describe(&self) -> String;

    /// Reads every VM into `vms[slot]` (`None` where its figures could not be read) and
    /// records in `roster` which slots hold a VM, their names, and which VMs are new to their
    /// slot. Problems with one VM are logged and skip that VM; `Err` means the backend as a
    /// whole is unavailable this round.
    fn refresh(&mut self, vms: &mut [Option<VmStats>; MAX_DOMAINS], roster: &mut Roster) -> Result<(), Self::Error>;

    /// Sets the balloon target (KiB) of the VM in `slot`.
    fn apply(&mut self, slot: usize, target_kib: u64) -> Result<(), Self::Error>;
}

/// Who is in which slot this round.
pub struct Roster {
    pub names: [VmName; MAX_DOMAINS],
    /// Seen this round.
    pub present: [bool; MAX_DOMAINS],
    /// New to its slot this round: its policy history must be forgotten.
    pub arrived: [bool; MAX_DOMAINS],
}

impl Roster {
    pub const EMPTY: Roster =
        Roster { names: [VmName::EMPTY; MAX_DOMAINS], present: [false; MAX_DOMAINS], arrived: [false; MAX_DOMAINS] };

    fn begin_round(&mut self) {
        self.present = [false; MAX_DOMAINS];
        self.arrived = [false; MAX_DOMAINS];
    }

    pub fn count(&self) -> usize {
        self.present.iter().filter(|p| **p).count()
    }
}

/// How the loop behaves, from the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopOptions {
    /// Decide and log, never change a balloon.
    pub dry_run: bool,
    /// Stop at the first round that finds no VM.
    pub exit_when_idle: bool,
    /// One JSON line per round on stdout.
    pub json: bool,
    /// Stop after this many rounds.
    pub max_ticks: Option<u64>,
    /// On stop, grow every VM back toward its max as far as the host's reserve allows.
    pub restore_on_exit: bool,
}

/// What the loop did, for the closing line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub ticks: u64,
    pub grows: u64,
    pub shrinks: u64,
    pub failed_actions: u64,
    pub granted_kib: u64,
    pub released_kib: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rounds, {} grows (+{} MiB), {} shrinks (-{} MiB), {} failed actions",
            self.ticks,
            self.grows,
            kib_to_mib(self.granted_kib),
            self.shrinks,
            kib_to_mib(self.released_kib),
            self.failed_actions
        )
    }
}

/// How one round ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    /// VMs were served (their number).
    Served(usize),
    /// The backend found no VM.
    Idle,
    /// The backend or the host figures were unavailable; nothing was decided.
    Skipped,
}

/// The outcome of applying one decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Applied {
    Nothing,
    Done,
    DryRun,
    Failed,
}

impl Applied {
    fn as_str(self) -> &'static str {
        match self {
            Applied::Nothing => "none",
            Applied::Done => "done",
            Applied::DryRun => "dry_run",
            Applied::Failed => "failed",
        }
    }
}

/// The loop's state: the backend, the host reader and the fixed arrays it reuses each round.
pub struct Coordinator<B: Backend> {
    policy: PolicyConfig,
    options: LoopOptions,
    backend: B,
    host: HostMemory,
    snapshot: Box<Snapshot>,
    history: Box<History>,
    decisions: Box<Decisions>,
    roster: Box<Roster>,
    applied: [Applied; MAX_DOMAINS],
    /// Needy VMs that did not get all they needed last round (logged on change only).
    short: [bool; MAX_DOMAINS],
    /// Which VMs are served, within which limits.
    rules: VmRules,
    /// Each slot's verdict, for the name it was worked out for; `None` until then.
    verdicts: [Option<(Verdict, VmName)>; MAX_DOMAINS],
    /// The rules changed since the slot's verdict was worked out.
    verdict_due: [bool; MAX_DOMAINS],
    /// Why each VM is not served, as last logged.
    unserved: [Unserved; MAX_DOMAINS],
    /// VMs whose last action failed: a failure that repeats is logged once.
    failing: [bool; MAX_DOMAINS],
    backend_down: bool,
    /// Times the backend became unavailable (for the metrics).
    backend_outages: u64,
    host_down: bool,
    /// The host's headroom was at or under its reserve last round (logged on change only).
    host_deficit: bool,
    summary: Summary,
    started: Instant,
    json: Vec<u8>,
    json_out: Option<Box<dyn Write>>,
    /// `--metrics-file`, `--metrics-listen`: published at the end of every round.
    metrics: Option<Metrics>,
}

impl<B: Backend> Coordinator<B> {
    pub fn new(policy: PolicyConfig, options: LoopOptions, backend: B, host: HostMemory) -> Self {
        Coordinator {
            policy,
            options,
            backend,
            host,
            snapshot: Box::new(Snapshot::EMPTY),
            history: Box::new(History::EMPTY),
            decisions: Box::new(Decisions::EMPTY),
            roster: Box::new(Roster::EMPTY),
            applied: [Applied::Nothing; MAX_DOMAINS],
            short: [false; MAX_DOMAINS],
            rules: VmRules::default(),
            verdicts: [None; MAX_DOMAINS],
            verdict_due: [false; MAX_DOMAINS],
            unserved: [Unserved::NEW; MAX_DOMAINS],
            failing: [false; MAX_DOMAINS],
            backend_down: false,
            backend_outages: 0,
            host_down: false,
            host_deficit: false,
            summary: Summary::default(),
            started: Instant::now(),
            json: Vec::with_capacity(64 * 1024),
            json_out: options.json.then(|| Box::new(std::io::stdout()) as Box<dyn Write>),
            metrics: None,
        }
    }

    /// Publishes Prometheus metrics at the end of every round.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sends the JSON lines (`--json`) to `out` instead of stdout.
    pub fn with_json_output(mut self, out: Box<dyn Write>) -> Self {
        self.json_out = Some(out);
        self
    }

    /// Serves only the VMs `rules` allow, within the limits they give.
    pub fn with_vm_rules(mut self, rules: VmRules) -> Self {
        self.rules = rules;
        self.verdict_due = [true; MAX_DOMAINS];
        self
    }

    /// Reads the `--config` file again (SIGHUP). Every VM keeps its policy history; a file
    /// with an error is logged once and the rules loaded before stay.
    pub fn reload(&mut self) {
        match self.rules.reloaded() {
            None => log::info!("reload asked for, but there is no --config file to read again"),
            Some(Ok(rules)) => {
                log::info!(
                    "reloaded {} ({} entries)",
                    rules.config_path().unwrap_or(std::path::Path::new("?")).display(),
                    rules.entries()
                );
                self.rules = rules;
                self.verdict_due = [true; MAX_DOMAINS];
            }
            Some(Err(e)) => log::warn!("{e}; keeping the configuration loaded before"),
        }
    }

    /// The snapshot the policy saw last round (for tests: the limits the rules gave).
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    pub fn summary(&self) -> Summary {
        self.summary
    }

    /// Runs rounds every `interval` until a shutdown request, `max_ticks`, or (with
    /// `exit_when_idle`) a round without VMs. Never panics on backend trouble: it is logged and
    /// the next round tries again.
    pub fn run(&mut self, shutdown: &Shutdown) -> Summary {
        let interval = Duration::from_secs(self.policy.interval_s.max(1));
        log::info!(
            "serving {} every {} s{}",
            self.backend.describe(),
            interval.as_secs(),
            if self.options.dry_run { " (dry run: no balloon is changed)" } else { "" }
        );
        if let Some(path) = self.rules.config_path() {
            log::info!(
                "per-VM configuration {} ({} entries); SIGHUP reads it again",
                path.display(),
                self.rules.entries()
            );
        }
        let mut next = Instant::now();
        while !shutdown.requested() {
            let round = self.tick();
            if self.options.exit_when_idle && round == Round::Idle {
                log::info!("no running VM: exiting (--exit-when-idle)");
                break;
            }
            if self.options.max_ticks.is_some_and(|max| self.summary.ticks >= max) {
                break;
            }
            // Fixed rate; a round that overran starts the next at once rather than drifting.
            next += interval;
            let now = Instant::now();
            if next < now {
                next = now;
            }
            // A reload (SIGHUP) is done when it arrives; the wait then goes on to the round.
            let stop = loop {
                if shutdown.wait_until(next) {
                    break true;
                }
                if !shutdown.take_reload() {
                    break false;
                }
                self.reload();
            };
            if stop {
                break;
            }
        }
        if self.options.restore_on_exit {
            self.restore();
        }
        log::info!("stopped: {}", self.summary);
        self.summary
    }

    /// `--restore-on-exit`: with fresh figures, grows every VM back toward its max (largest
    /// shortfall first) as far as the host's headroom above its reserve allows, so that
    /// stopping the daemon never leaves a guest squeezed nor the host overcommitted.
    pub fn restore(&mut self) {
        self.snapshot.vms = [None; MAX_DOMAINS];
        self.roster.begin_round();
        let read = self.host.read().map_err(|e| e.to_string()).and_then(|host| {
            self.snapshot.host = host;
            self.backend.refresh(&mut self.snapshot.vms, &mut self.roster).map_err(|e| e.to_string())
        });
        if let Err(e) = read {
            log::warn!("cannot restore the VMs' memory on exit: {e}; balloons stay where they are");
            return;
        }
        for (slot, arrived) in self.roster.arrived.iter().enumerate() {
            if *arrived {
                self.history.reset(slot);
                self.verdicts[slot] = None;
            }
        }
        // Excluded VMs are left as they are; the others get their configured maximum.
        self.apply_rules();
        policy::restore(&self.policy, &self.snapshot, &self.history, &mut self.decisions);
        let (mut restored, mut given_kib, mut short, mut short_kib) = (0, 0u64, 0, 0u64);
        for slot in 0..MAX_DOMAINS {
            let (d, Some(vm)) = (self.decisions.vms[slot], self.snapshot.vms[slot]) else { continue };
            short_kib += d.short_kib;
            short += usize::from(d.short_kib > 0);
            let Action::Grow { target_kib } = d.action else { continue };
            let name = self.roster.names[slot];
            if self.options.dry_run {
                log::info!("restore {name} {} -> {} MiB [dry run]", kib_to_mib(vm.actual_kib), kib_to_mib(target_kib));
                continue;
            }
            match self.backend.apply(slot, target_kib) {
                Ok(()) => {
                    restored += 1;
                    given_kib += target_kib - vm.actual_kib;
                    log::info!("restore {name} {} -> {} MiB", kib_to_mib(vm.actual_kib), kib_to_mib(target_kib));
                }
                Err(e) => log::warn!("restore {name} failed: {e}"),
            }
        }
        log::info!(
            "restored {restored} VM(s) (+{} MiB){}",
            kib_to_mib(given_kib),
            if short > 0 {
                format!(
                    "; {short} VM(s) left {} MiB short of their max: the host has no more above its reserve",
                    kib_to_mib(short_kib)
                )
            } else {
                String::new()
            }
        );
    }

    /// One round: read, decide, act, report.
    pub fn tick(&mut self) -> Round {
        self.summary.ticks += 1;
        self.snapshot.vms = [None; MAX_DOMAINS];
        self.roster.begin_round();
        self.applied = [Applied::Nothing; MAX_DOMAINS];

        match self.host.read() {
            Ok(host) => {
                self.snapshot.host = host;
                if std::mem::take(&mut self.host_down) {
                    log::info!("host memory figures readable again");
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut self.host_down, true) {
                    log::error!("{e}; no VM is served until host memory can be read");
                }
                self.publish_metrics(false, false);
                return Round::Skipped;
            }
        }
        if let Err(e) = self.backend.refresh(&mut self.snapshot.vms, &mut self.roster) {
            if !self.backend_down {
                log::warn!("{e}; VMs are not served until it is back");
                self.backend_down = true;
                self.backend_outages += 1;
            }
            self.publish_metrics(true, false);
            return Round::Skipped;
        }
        if self.backend_down {
            log::info!("{} is back", self.backend.describe());
            self.backend_down = false;
        }
        for (slot, arrived) in self.roster.arrived.iter().enumerate() {
            if *arrived {
                self.history.reset(slot);
                self.short[slot] = false;
                self.verdicts[slot] = None;
                self.unserved[slot] = Unserved::NEW;
                self.failing[slot] = false;
            }
        }
        self.apply_rules();

        decide(&self.policy, &self.snapshot, &mut self.history, &mut self.decisions);
        for (slot, verdict) in self.verdicts.iter().enumerate() {
            if !self.roster.present[slot] {
                continue;
            }
            if verdict.is_some_and(|(v, _)| v.is_excluded()) {
                self.decisions.vms[slot].action = Action::Hold(Hold::Excluded);
            } else if self.snapshot.vms[slot].is_none() {
                // The policy holds a slot without figures as absent, but this VM is there: its
                // backend could not read it this round (a QEMU that did not answer, a libvirt
                // call that failed). Reported as such, not as a VM served with nothing to do.
                self.decisions.vms[slot].action = Action::Hold(Hold::Unanswered);
            }
        }
        // Shrinks (and cancels) first: the memory they release is what some grows are funded
        // with.
        for grows in [false, true] {
            for slot in 0..MAX_DOMAINS {
                let d = self.decisions.vms[slot];
                if d.action.target_kib().is_some() && matches!(d.action, Action::Grow { .. }) == grows {
                    self.act(slot, &d);
                }
            }
        }
        for slot in 0..MAX_DOMAINS {
            let d = self.decisions.vms[slot];
            self.note_shortage(slot, &d);
            if self.roster.present[slot] {
                self.note_unserved(slot, &d);
            }
        }
        self.note_host_deficit();
        self.report();

        match self.roster.count() {
            0 => Round::Idle,
            n => Round::Served(n),
        }
    }

    /// Works out each present VM's verdict where it is due, withholds the figures of excluded
    /// VMs from the policy and gives the others their limits. Allocates nothing.
    fn apply_rules(&mut self) {
        for slot in 0..MAX_DOMAINS {
            if !self.roster.present[slot] {
                self.snapshot.limits[slot] = VmLimits::DEFAULT;
                continue;
            }
            let name = self.roster.names[slot];
            let verdict = match self.verdicts[slot] {
                Some((v, for_name)) if for_name == name && !self.verdict_due[slot] => v,
                before => {
                    let v = self.rules.verdict(name.as_str());
                    // Back from an exclusion: its history is from before it was left alone, and
                    // its balloon may have been moved by others meanwhile. Start afresh.
                    if before.is_some_and(|(b, _)| b.is_excluded()) && !v.is_excluded() {
                        self.history.reset(slot);
                        self.short[slot] = false;
                    }
                    self.verdicts[slot] = Some((v, name));
                    self.verdict_due[slot] = false;
                    v
                }
            };
            match verdict {
                Verdict::Excluded(_) => {
                    self.snapshot.vms[slot] = None;
                    self.snapshot.limits[slot] = VmLimits::DEFAULT;
                }
                Verdict::Served(limits, _) => self.snapshot.limits[slot] = limits,
            }
        }
    }

    /// Logs when a VM stops being served for a reason an operator should know, and when it
    /// is served again; once each, never per round.
    fn note_unserved(&mut self, slot: usize, d: &Decision) {
        let Some(change) = self.unserved[slot].observe(unserved::reason(d.action)) else { return };
        let name = &self.roster.names[slot];
        let vm = self.snapshot.vms[slot];
        match change.to {
            Some(Hold::Excluded) => {
                let rule = match self.verdicts[slot] {
                    Some((Verdict::Excluded(rule), _)) => rule,
                    _ => crate::vmconfig::Rule::Default,
                };
                log::info!("{name}: not served: excluded by {}", self.rules.describe(rule));
            }
            Some(Hold::NoStats) => log::warn!(
                "{name}: not served: it reports no free-memory figure (no virtio-balloon driver in the guest, \
                 or the guest does not answer stats requests)"
            ),
            Some(Hold::Stale) => log::warn!(
                "{name}: not served: its memory statistics stopped updating (guest paused or hung, or its \
                 balloon driver stopped)"
            ),
            Some(Hold::Inconsistent) => log::warn!(
                "{name}: not served: its figures contradict each other (size {} MiB, max {} MiB)",
                vm.map_or(0, |v| kib_to_mib(v.actual_kib)),
                vm.map_or(0, |v| kib_to_mib(v.max_kib))
            ),
            Some(Hold::AtMax) => {
                let own_max = vm.map_or(0, |v| v.max_kib);
                let limit = self.snapshot.limits[slot].max_kib.filter(|l| *l < own_max);
                log::warn!(
                    "{name}: needs more memory but is at its max of {} MiB{}",
                    kib_to_mib(limit.unwrap_or(own_max)),
                    if limit.is_some() { " (max_mib in the configuration file)" } else { "" }
                );
            }
            // The backend has logged why, once, and says when the VM is served again.
            Some(Hold::Unanswered) => log::debug!("{name}: not served: no figures for some rounds"),
            Some(other) => log::info!("{name}: not served: {}", other.as_str()),
            None if change.from == Some(Hold::Unanswered) => log::debug!("{name}: answers again"),
            None => {
                let was = match change.from {
                    Some(Hold::Excluded) => "no longer excluded",
                    Some(Hold::NoStats) => "reports its free memory now",
                    Some(Hold::Stale) => "its memory statistics update again",
                    Some(Hold::Inconsistent) => "its figures add up again",
                    Some(Hold::AtMax) => "no longer held at its max",
                    _ => "no longer held",
                };
                log::info!("{name}: {was}; served normally");
            }
        }
    }

    /// Applies one grow or shrink, logging it; a failure skips this VM for the round.
    fn act(&mut self, slot: usize, d: &Decision) {
        let Some(vm) = self.snapshot.vms[slot] else { return };
        let Some(target_kib) = d.action.target_kib() else { return };
        let name = self.roster.names[slot];
        let (from, to) = (kib_to_mib(vm.actual_kib), kib_to_mib(target_kib));
        let free = kib_to_mib(d.free_now_kib.unwrap_or(0));
        let dry = if self.options.dry_run { " [dry run]" } else { "" };
        let verb = d.action.as_str();
        let grow = matches!(d.action, Action::Grow { .. });
        match d.action {
            Action::Grow { .. } => {
                let rate = kib_to_mib(d.consumption_kib_s);
                log::info!("grow {name} {from} -> {to} MiB (free {free} MiB, consuming {rate} MiB/s){dry}");
            }
            Action::Shrink { .. } => log::info!("shrink {name} {from} -> {to} MiB (free {free} MiB){dry}"),
            _ => log::info!("{verb} {name} at {to} MiB: its balloon stalled on the way to our target{dry}"),
        }
        if self.options.dry_run {
            self.applied[slot] = Applied::DryRun;
            return;
        }
        match self.backend.apply(slot, target_kib) {
            Ok(()) => {
                if std::mem::take(&mut self.failing[slot]) {
                    log::info!("{name}: targets are applied again");
                }
                self.applied[slot] = Applied::Done;
                self.history.applied(slot, d);
                let moved = target_kib.abs_diff(vm.actual_kib);
                let (count, total) = if grow {
                    (&mut self.summary.grows, &mut self.summary.granted_kib)
                } else {
                    (&mut self.summary.shrinks, &mut self.summary.released_kib)
                };
                *count += 1;
                *total = total.saturating_add(moved);
            }
            Err(e) => {
                self.applied[slot] = Applied::Failed;
                self.summary.failed_actions += 1;
                if std::mem::replace(&mut self.failing[slot], true) {
                    log::debug!("{verb} {name} {from} -> {to} MiB failed again: {e}");
                } else {
                    log::warn!("{verb} {name} {from} -> {to} MiB failed: {e}; skipping it this round");
                }
            }
        }
    }

    /// Logs when the host's headroom (MemAvailable minus what guests hold unbacked) falls to
    /// its reserve, and when it is back above.
    fn note_host_deficit(&mut self) {
        let reserve = self.policy.host_min_free_kib;
        let deficit = self.decisions.headroom_kib <= reserve && self.roster.count() > 0;
        if deficit == self.host_deficit {
            return;
        }
        self.host_deficit = deficit;
        if deficit {
            let debt: u64 = self.decisions.vms.iter().map(|d| d.debt_kib).sum();
            log::warn!(
                "host headroom {} MiB is at or under the {} MiB reserve: MemAvailable {} MiB, of which guests may \
                 still touch {} MiB they hold; VMs now grow only on memory taken back from others",
                kib_to_mib(self.decisions.headroom_kib),
                kib_to_mib(reserve),
                kib_to_mib(self.snapshot.host.available_kib),
                kib_to_mib(debt)
            );
        } else {
            log::info!("host headroom back above the reserve: {} MiB", kib_to_mib(self.decisions.headroom_kib));
        }
    }

    /// Logs when a VM starts or stops being short of memory the host could not give.
    fn note_shortage(&mut self, slot: usize, d: &Decision) {
        let short = d.short_kib > 0;
        if short == self.short[slot] {
            return;
        }
        self.short[slot] = short;
        let name = &self.roster.names[slot];
        if short {
            log::warn!(
                "{name} needs {} MiB more than the host can give (host available {} MiB, reserve {} MiB)",
                kib_to_mib(d.short_kib),
                kib_to_mib(self.snapshot.host.available_kib),
                kib_to_mib(self.policy.host_min_free_kib)
            );
        } else {
            log::info!("{name} is no longer short of memory");
        }
    }

    fn report(&mut self) {
        let decisions = &*self.decisions;
        if log::log_enabled!(log::Level::Debug) {
            let host = &self.snapshot.host;
            log::debug!(
                "round {}: host available {} MiB of {} MiB, {} VMs, demand {} MiB, granted {} MiB, released {} MiB{}",
                self.summary.ticks,
                kib_to_mib(host.available_kib),
                kib_to_mib(host.total_kib),
                self.roster.count(),
                kib_to_mib(decisions.demand_kib),
                kib_to_mib(decisions.granted_kib),
                kib_to_mib(decisions.released_kib),
                if decisions.pressure { " (host short: band waived)" } else { "" }
            );
            for slot in (0..MAX_DOMAINS).filter(|s| self.roster.present[*s]) {
                let d = &decisions.vms[slot];
                match &self.snapshot.vms[slot] {
                    Some(vm) => log::debug!(
                        "  {}: actual {} MiB, max {} MiB, unused {}, keep {} MiB, consuming {} MiB/s: {:?}",
                        self.roster.names[slot],
                        kib_to_mib(vm.actual_kib),
                        kib_to_mib(vm.max_kib),
                        OptMib(d.unused_now_kib),
                        kib_to_mib(d.keep_kib),
                        kib_to_mib(d.consumption_kib_s),
                        d.action
                    ),
                    None => log::debug!("  {}: no figures this round", self.roster.names[slot]),
                }
            }
        }
        if self.json_out.is_some() {
            self.write_json();
        }
        self.publish_metrics(true, true);
    }

    /// Hands this round to the metrics outlets, if any. A round that could not read the host
    /// or the VMs still counts, without the figures it has not got.
    fn publish_metrics(&mut self, host_read: bool, vms_read: bool) {
        if let Some(metrics) = &mut self.metrics {
            metrics.publish(&RoundView {
                summary: &self.summary,
                backend_outages: self.backend_outages,
                backend_up: !self.backend_down,
                host_read,
                vms_read,
                snapshot: &self.snapshot,
                decisions: &self.decisions,
                roster: &self.roster,
            });
        }
    }

    fn write_json(&mut self) {
        // The buffer is taken out while the line borrows the rest of self, then put back, so
        // its capacity is reused round after round.
        let mut buf = std::mem::take(&mut self.json);
        buf.clear();
        let encoded = serde_json::to_writer(&mut buf, &JsonRound { c: self, decisions: &self.decisions });
        buf.push(b'\n');
        let written = encoded.map_err(std::io::Error::from).and_then(|()| match &mut self.json_out {
            Some(out) => out.write_all(&buf).and_then(|()| out.flush()),
            None => Ok(()),
        });
        if let Err(e) = written {
            log::warn!("cannot write the JSON line: {e}; JSON output stops");
            self.json_out = None;
        }
        self.json = buf;
    }
}

/// An optional KiB figure shown in MiB, or "unknown".
struct OptMib(Option<u64>);

impl fmt::Display for OptMib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(kib) => write!(f, "{} MiB", kib_to_mib(kib)),
            None => f.write_str("unknown"),
        }
    }
}

/// One round as a JSON object (`--json`): figures in KiB, names as reported.
struct JsonRound<'a, B: Backend> {
    c: &'a Coordinator<B>,
    decisions: &'a Decisions,
}

impl<B: Backend> Serialize for JsonRound<'_, B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.c;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("round", &c.summary.ticks)?;
        m.serialize_entry("elapsed_ms", &u64::try_from(c.started.elapsed().as_millis()).unwrap_or(u64::MAX))?;
        m.serialize_entry("host_available_kib", &c.snapshot.host.available_kib)?;
        m.serialize_entry("host_total_kib", &c.snapshot.host.total_kib)?;
        m.serialize_entry("dry_run", &c.options.dry_run)?;
        m.serialize_entry("headroom_kib", &self.decisions.headroom_kib)?;
        m.serialize_entry("pressure", &self.decisions.pressure)?;
        m.serialize_entry("vms", &JsonVms { c, decisions: self.decisions })?;
        m.end()
    }
}

struct JsonVms<'a, B: Backend> {
    c: &'a Coordinator<B>,
    decisions: &'a Decisions,
}

impl<B: Backend> Serialize for JsonVms<'_, B> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.c;
        let mut seq = s.serialize_seq(None)?;
        for slot in (0..MAX_DOMAINS).filter(|s| c.roster.present[*s]) {
            seq.serialize_element(&JsonVm {
                name: c.roster.names[slot].as_str(),
                vm: c.snapshot.vms[slot].as_ref(),
                limits: &c.snapshot.limits[slot],
                d: &self.decisions.vms[slot],
                applied: c.applied[slot],
            })?;
        }
        seq.end()
    }
}

struct JsonVm<'a> {
    name: &'a str,
    vm: Option<&'a VmStats>,
    limits: &'a VmLimits,
    d: &'a Decision,
    applied: Applied,
}

impl Serialize for JsonVm<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("name", self.name)?;
        if let Some(vm) = self.vm {
            m.serialize_entry("actual_kib", &vm.actual_kib)?;
            m.serialize_entry("max_kib", &vm.max_kib)?;
            m.serialize_entry("unused_kib", &vm.unused_kib)?;
            m.serialize_entry("usable_kib", &vm.usable_kib)?;
            m.serialize_entry("available_kib", &vm.available_kib)?;
            m.serialize_entry("last_update_s", &vm.last_update_s)?;
            m.serialize_entry("rss_kib", &vm.rss_kib)?;
        }
        m.serialize_entry("free_now_kib", &self.d.free_now_kib)?;
        m.serialize_entry("unused_now_kib", &self.d.unused_now_kib)?;
        m.serialize_entry("debt_kib", &self.d.debt_kib)?;
        m.serialize_entry("keep_kib", &self.d.keep_kib)?;
        m.serialize_entry("consumption_kib_s", &self.d.consumption_kib_s)?;
        m.serialize_entry("action", self.d.action.as_str())?;
        m.serialize_entry("target_kib", &self.d.action.target_kib())?;
        if let Action::Hold(why) = self.d.action {
            m.serialize_entry("hold", why.as_str())?;
        }
        // Always present: null while the VM is served, else why not (README "Configure per VM").
        m.serialize_entry("not_served", &unserved::reason(self.d.action).map(Hold::as_str))?;
        m.serialize_entry("weight", &self.limits.weight)?;
        m.serialize_entry("limit_min_kib", &self.limits.min_kib)?;
        m.serialize_entry("limit_max_kib", &self.limits.max_kib)?;
        m.serialize_entry("short_kib", &self.d.short_kib)?;
        m.serialize_entry("applied", self.applied.as_str())?;
        m.end()
    }
}
