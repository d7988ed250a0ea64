//! Command-line interface: clap derive options, turned into a validated [`Config`] before
//! anything starts. Sizes are MiB on the command line and KiB inside. Every usage error, from
//! clap or from validation, is one line on stderr and exit status 2 ([`parse_or_exit`]): the
//! daemon usually runs under systemd, where a multi-line usage block in the journal hides the
//! one line that matters.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::OnceLock;

use clap::{ArgAction, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{BackendChoice, Config, ConfigError};
use crate::coordinator::LoopOptions;
use crate::metrics::MetricsOptions;
use crate::policy::{FreeFigure, PolicyConfig};
use crate::qmp::QmpOptions;
use crate::units::mib_to_kib;
use crate::vmconfig::VmRules;

const D: PolicyConfig = PolicyConfig::DEFAULT;

/// Exit status of a usage or configuration error (as clap uses).
pub const USAGE_EXIT: i32 = 2;

/// One example per backend, shown after the options by `-h`, `--help` and the man page.
macro_rules! examples {
    () => {
        "\
Examples:
  libvirt (qemu:///system): every 2 s, the VMs named web-*, with per-VM limits from a file:
    memory_coordinator 2 --domains 'web-*' --config /etc/memory-coordinator/vms.json

  bare QEMU through QMP sockets: every second, all but the scratch VMs:
    memory_coordinator 1 --qmp '/run/qemu/*.sock' --exclude 'scratch-*'

  Prometheus metrics for node_exporter's textfile collector, and an SVG of a recorded run:
    memory_coordinator 2 --metrics-file /var/lib/node_exporter/memory_coordinator.prom
    memory_coordinator 2 --json > run.jsonl; memory_coordinator plot run.jsonl > run.svg"
    };
}

/// `--help` and the man page: the examples, then what an operator needs beyond the options.
const MORE_HELP: &str = concat!(
    examples!(),
    "

Configuration file:
  --config PATH names a JSON file such as
  {\"defaults\": {\"min_mib\": 512},
   \"vms\": [{\"name\": \"db-*\", \"min_mib\": 2048, \"max_mib\": 8192, \"weight\": 10},
           {\"name\": \"appliance\", \"exclude\": true}]}
  The first entry whose name (a VM name or a glob) matches a VM applies to it; defaults fill
  what it leaves out. min_mib and max_mib bound the VM's size, weight (1-1000, default 1) is
  its share when memory is short, exclude leaves it alone. --domains, --exclude and the file
  can each only exclude.

Metrics:
  --metrics-file PATH writes Prometheus metrics (text format 0.0.4) each round, to PATH.tmp
  then renamed over PATH, for node_exporter's textfile collector; --metrics-listen ADDR
  serves them at http://ADDR/metrics. Sizes in bytes; the metrics are listed in the README.

Plot:
  memory_coordinator plot FILE [--threshold MIB] > run.svg draws the --json lines in FILE
  (- for stdin): per VM, balloon size and free memory over time. Lines that are not rounds
  are skipped and counted on stderr.

Signals:
  SIGHUP reads the --config file again; a VM keeps its history. A file with an error is
  logged once and the configuration loaded before stays. SIGINT or SIGTERM stop after the
  current round (exit 0); a second one exits at once.

Exit status:
  0      stopped by a signal, --ticks, or --exit-when-idle
  1      could not start (libvirt unreachable, host memory unreadable, lock file not
         writable, --metrics-file directory not writable, --metrics-listen refused)
  2      bad arguments or configuration file
  10     another memory_coordinator already runs on this host (it holds the lock file)
  128+N  a second signal N during shutdown
  The service unit restarts after 1, never after 2 or 10 (RestartPreventExitStatus=).
  memory_coordinator plot: 1 if the file cannot be read or holds no --json round.

Files:
  /proc/meminfo                      host memory (MemAvailable, MemTotal)
  /etc/default/memory-coordinator    MEMORY_COORDINATOR_ARGS for the systemd service
  /run/memory_coordinator/memory_coordinator.lock
                                     one daemon per host: a second one exits 10 (--lock-file)"
);

/// Balances RAM between QEMU/KVM virtual machines through the virtio-balloon.
///
/// Every INTERVAL seconds it reads each VM's balloon statistics, grows the VMs that are about
/// to run out of free memory and gently takes back memory that VMs leave unused.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "memory_coordinator",
    version,
    about,
    max_term_width = 100,
    // `memory_coordinator plot FILE` needs no INTERVAL, and takes none of the daemon's options.
    subcommand_negates_reqs = true,
    args_conflicts_with_subcommands = true,
    // `plot --help` says it all; a `help` subcommand would be one more word in the synopsis.
    disable_help_subcommand = true,
    after_help = examples!(),
    after_long_help = MORE_HELP
)]
pub struct Cli {
    /// Seconds between two balancing rounds (also the guests' stats period).
    #[arg(value_name = "INTERVAL", required = true, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: Option<u64>,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// A VM with less free memory than this is starving (MiB).
    #[arg(long, value_name = "MIB", default_value_t = D.vm_min_unused_kib / 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub vm_min_unused: u64,

    /// The host never gives memory that would leave it with this much or less available (MiB).
    #[arg(long, value_name = "MIB", default_value_t = D.host_min_free_kib / 1024, value_parser = clap::value_parser!(u64).range(0..=1 << 30))]
    pub host_min_free: u64,

    /// Hysteresis band: a VM gives memory back only when its spare memory exceeds what it must
    /// keep by more than this (MiB).
    #[arg(long, value_name = "MIB", default_value_t = D.shrink_band_kib / 1024, value_parser = clap::value_parser!(u64).range(0..=1 << 20))]
    pub shrink_band: u64,

    /// At most this share of a VM's excess is taken back per interval (percent, 1-100).
    #[arg(long, value_name = "PERCENT", default_value_t = D.shrink_fraction_pct, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub shrink_fraction: u64,

    /// At most this much is taken from one VM per interval (MiB).
    #[arg(long, value_name = "MIB", default_value_t = D.shrink_step_max_kib / 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub shrink_step_max: u64,

    /// No VM is shrunk below this size (MiB).
    #[arg(long, value_name = "MIB", default_value_t = D.vm_min_size_kib / 1024, value_parser = clap::value_parser!(u64).range(0..=1 << 30))]
    pub vm_min_size: u64,

    /// Intervals of measured consumption a growing VM gets in advance.
    #[arg(long, value_name = "N", default_value_t = D.lead_ticks, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub lead_ticks: u64,

    /// Intervals without a new stats sample after which a VM's stats are stale and it is left alone.
    #[arg(long, value_name = "N", default_value_t = D.stale_ticks, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub stale_ticks: u32,

    /// Intervals after a grow, or after swap/fault pressure, during which nothing is taken back.
    #[arg(long, value_name = "N", default_value_t = D.holdoff_ticks, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub holdoff_ticks: u32,

    /// Which guest figure is a VM's free memory: `available` (MemAvailable: free plus
    /// reclaimable page cache, where the guest reports it) or `unused` (MemFree, the course's
    /// rule: page cache counts as used).
    #[arg(long, value_name = "FIGURE", default_value = "available", value_parser = ["available", "unused"])]
    pub free_figure: String,

    /// libvirt connection URI.
    #[arg(short = 'c', long, value_name = "URI", default_value = "qemu:///system")]
    pub connect: String,

    /// Serve bare QEMU VMs through their QMP sockets instead of libvirt: socket paths or glob
    /// patterns (quote them; they are expanded, and again every few rounds).
    #[arg(long, value_name = "PATTERN", num_args = 1.., conflicts_with = "connect")]
    pub qmp: Vec<String>,

    /// QOM path of the balloon device (default: found under /machine/peripheral).
    #[arg(long, value_name = "QOM_PATH", requires = "qmp")]
    pub qmp_balloon_path: Option<String>,

    /// Deadline of a QMP round, all sockets at once (milliseconds); also of setting up new
    /// sockets and of each balloon command. A QEMU slower than this is skipped that round.
    #[arg(long, value_name = "MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub qmp_timeout: u64,

    /// Expand the --qmp patterns again every N rounds.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub qmp_rescan: u32,

    /// Serve only the VMs whose name matches this glob (`*`, `?`, `[...]`; quote it).
    /// Repeatable: a VM matching any is served.
    #[arg(long = "domains", value_name = "GLOB", action = ArgAction::Append)]
    pub domains: Vec<String>,

    /// Leave alone the VMs whose name matches this glob. Repeatable.
    #[arg(long = "exclude", value_name = "GLOB", action = ArgAction::Append)]
    pub exclude: Vec<String>,

    /// Per-VM limits, weights and exclusions (JSON; see below). Read again on SIGHUP.
    #[arg(long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Decide and log, but never change a balloon.
    #[arg(long)]
    pub dry_run: bool,

    /// Exit (status 0) at the first round that finds no running VM, instead of waiting for one.
    #[arg(long)]
    pub exit_when_idle: bool,

    /// On SIGINT/SIGTERM, grow every VM back toward its max (largest shortfall first) as far
    /// as the host's reserve allows before exiting, so that stopping the daemon leaves no
    /// guest squeezed.
    #[arg(long)]
    pub restore_on_exit: bool,

    /// The one-daemon-per-host lock: a second instance finds it held and refuses to start.
    /// `--dry-run` instances take no lock.
    #[arg(long, value_name = "PATH", env = "MEMORY_COORDINATOR_LOCK_FILE", default_value = crate::instance::DEFAULT_LOCK_FILE)]
    pub lock_file: PathBuf,

    /// Print one JSON line per round on stdout (figures in KiB).
    #[arg(long)]
    pub json: bool,

    /// Write Prometheus metrics (text format 0.0.4) to this file each round, for
    /// node_exporter's textfile collector (name it *.prom). Written to PATH.tmp, then renamed.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    /// Serve Prometheus metrics over HTTP at http://ADDR/metrics (e.g. 127.0.0.1:9848). Only
    /// loopback addresses unless --metrics-allow-remote.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Let --metrics-listen bind a non-loopback address. The endpoint has no authentication
    /// nor TLS and shows VM names and sizes: firewall it.
    #[arg(long, requires = "metrics_listen")]
    pub metrics_allow_remote: bool,

    /// Stop after this many rounds.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub ticks: Option<u64>,

    /// Read host memory from this file instead of /proc/meminfo (same format; for tests).
    #[arg(long, value_name = "PATH", default_value = "/proc/meminfo", hide = true)]
    pub meminfo: PathBuf,

    /// More log output (-v: per-VM details each interval, -vv: protocol traces). RUST_LOG overrides.
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less log output (-q: warnings and errors only, -qq: errors only).
    #[arg(short, long, action = ArgAction::Count)]
    pub quiet: u8,
}

/// The command line as the binary parses it: clap's `--version` prints a version fixed at build
/// time, this one also names the libvirt library the binary runs with, which only a call can
/// tell (`memory_coordinator 0.1.0 (libvirt 9.0.0)`). The call is local: no daemon is asked.
pub fn command() -> clap::Command {
    static VERSION: OnceLock<String> = OnceLock::new();
    let version = VERSION.get_or_init(|| {
        let crate_version = env!("CARGO_PKG_VERSION");
        match crate::libvirt::library_version() {
            Ok(libvirt) => format!("{crate_version} (libvirt {libvirt})"),
            Err(e) => format!("{crate_version} (libvirt version unknown: {e})"),
        }
    });
    Cli::command().version(version.as_str())
}

/// What the binary does besides serving VMs.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Draw the --json output of a run as an SVG on stdout: per VM, balloon size and free
    /// memory over time, the starvation threshold, failed actions.
    Plot(PlotArgs),
}

#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct PlotArgs {
    /// A file of --json lines (the daemon's stdout), or - for stdin.
    #[arg(value_name = "FILE")]
    pub input: PathBuf,

    /// The starvation threshold line to draw (MiB; the daemon's --vm-min-unused).
    #[arg(long, value_name = "MIB", default_value_t = D.vm_min_unused_kib / 1024)]
    pub threshold: u64,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// Serve VMs.
    Run(Config),
    /// `memory_coordinator plot FILE`.
    Plot(PlotArgs),
}

impl Cli {
    /// Turns the parsed options into a validated configuration.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        // clap requires INTERVAL unless a subcommand is given, and a subcommand takes no
        // daemon options: this is only reached without one.
        let Some(interval) = self.interval else {
            return Err(ConfigError::Invalid("the INTERVAL argument is required"));
        };
        if let Some(addr) = self.metrics_listen
            && !addr.ip().is_loopback()
            && !self.metrics_allow_remote
        {
            return Err(ConfigError::Invalid(
                "--metrics-listen: not a loopback address; the endpoint has no authentication and shows VM \
                 names and sizes, so add --metrics-allow-remote to serve other hosts (and firewall the port)",
            ));
        }
        let metrics = MetricsOptions { file: self.metrics_file, listen: self.metrics_listen };
        let policy = PolicyConfig {
            interval_s: interval,
            vm_min_unused_kib: mib_to_kib(self.vm_min_unused),
            host_min_free_kib: mib_to_kib(self.host_min_free),
            shrink_band_kib: mib_to_kib(self.shrink_band),
            shrink_fraction_pct: self.shrink_fraction,
            shrink_step_max_kib: mib_to_kib(self.shrink_step_max),
            vm_min_size_kib: mib_to_kib(self.vm_min_size),
            lead_ticks: self.lead_ticks,
            stale_ticks: self.stale_ticks,
            holdoff_ticks: self.holdoff_ticks,
            free_figure: if self.free_figure == "unused" { FreeFigure::Unused } else { FreeFigure::Available },
        };
        let verbosity = i8::try_from(self.verbose).unwrap_or(i8::MAX) - i8::try_from(self.quiet).unwrap_or(i8::MAX);
        let options = LoopOptions {
            dry_run: self.dry_run,
            exit_when_idle: self.exit_when_idle,
            json: self.json,
            max_ticks: self.ticks,
            restore_on_exit: self.restore_on_exit,
        };
        let backend = if self.qmp.is_empty() {
            BackendChoice::Libvirt { uri: self.connect }
        } else {
            BackendChoice::Qmp(QmpOptions {
                patterns: self.qmp,
                balloon_path: self.qmp_balloon_path,
                timeout: Duration::from_millis(self.qmp_timeout),
                stats_period_s: interval,
                rescan_ticks: self.qmp_rescan,
            })
        };
        let vms = VmRules::new(self.domains, self.exclude, self.config).map_err(ConfigError::Vms)?;
        let mut config = Config::new(policy, backend, options, self.meminfo, verbosity, vms)?;
        // A dry run changes no balloon: it may run beside the daemon that does.
        config.lock_file = (!self.dry_run).then_some(self.lock_file);
        config.metrics = metrics;
        Ok(config)
    }
}

/// Parses the process's arguments into a validated [`Config`] or a subcommand, or exits:
/// `--help` and `--version` print and exit 0; any other problem is one line on stderr and
/// exit status 2.
pub fn parse_or_exit() -> Invocation {
    match parse_args(std::env::args_os()) {
        Ok(config) => config,
        Err(Exit::Print(e)) => e.exit(),
        Err(Exit::Usage(line)) => {
            eprintln!("{line}");
            std::process::exit(USAGE_EXIT);
        }
    }
}

/// Why [`parse_args`] gave no configuration.
#[derive(Debug)]
pub enum Exit {
    /// `--help` or `--version`: clap prints it.
    Print(clap::Error),
    /// A usage error, as the one line to print.
    Usage(String),
}

/// [`parse_or_exit`] without the exit, for tests.
pub fn parse_args<I, T>(args: I) -> Result<Invocation, Exit>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    // Through `command()`, so that `--version` names the libvirt the binary is linked with.
    let cli = match command().try_get_matches_from(args).and_then(|m| Cli::from_arg_matches(&m)) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => return Err(Exit::Print(e)),
        Err(e) => return Err(Exit::Usage(format!("{} (see --help)", one_line(&e.render().to_string())))),
    };
    match cli.command {
        Some(Command::Plot(args)) => Ok(Invocation::Plot(args)),
        None => cli.into_config().map(Invocation::Run).map_err(|e| Exit::Usage(format!("error: {e}"))),
    }
}

/// clap's error text without its usage block, on one line.
fn one_line(rendered: &str) -> String {
    let mut line = String::new();
    let parts = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty());
    for part in parts {
        if !line.is_empty() {
            line.push_str(if line.ends_with(':') { " " } else { "; " });
        }
        line.push_str(part);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("memory_coordinator").chain(args.iter().copied()))
    }

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_are_the_policy_defaults() {
        let config = parse(&["1"]).unwrap().into_config().unwrap();
        assert_eq!(config.policy, PolicyConfig::DEFAULT);
    }

    #[test]
    fn sizes_are_mib_on_the_command_line() {
        let config = parse(&["5", "--vm-min-unused", "150", "--host-min-free", "512"]).unwrap().into_config().unwrap();
        assert_eq!(config.policy.interval_s, 5);
        assert_eq!(config.policy.vm_min_unused_kib, 150 * 1024);
        assert_eq!(config.policy.host_min_free_kib, 512 * 1024);
    }

    #[test]
    fn qmp_takes_several_patterns_and_excludes_libvirt() {
        let config = parse(&["1", "--qmp", "/run/qemu/*.sock", "/tmp/vm.sock"]).unwrap().into_config().unwrap();
        let BackendChoice::Qmp(q) = config.backend else { panic!() };
        assert_eq!(q.patterns, ["/run/qemu/*.sock", "/tmp/vm.sock"]);
        assert_eq!(q.stats_period_s, 1);
        assert_eq!(parse(&["1", "--qmp", "a", "--connect", "qemu:///system"]).unwrap_err().exit_code(), 2);
        assert_eq!(parse(&["1", "--qmp-balloon-path", "/machine/peripheral/b"]).unwrap_err().exit_code(), 2);
    }

    fn usage_line(args: &[&str]) -> String {
        match parse_args(std::iter::once("memory_coordinator").chain(args.iter().copied())) {
            Err(Exit::Usage(line)) => line,
            other => panic!("{args:?}: not a usage error: {other:?}"),
        }
    }

    #[test]
    fn every_usage_error_is_one_line() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "error: the following required arguments were not provided: <INTERVAL> (see --help)"),
            (&["0"], "error: invalid value '0' for '<INTERVAL>': 0 is not in 1..=3600 (see --help)"),
            (&["-1"], "error: unexpected argument '-1' found"),
            (&["abc"], "error: invalid value 'abc' for '<INTERVAL>': invalid digit found in string (see --help)"),
            (&["99999999999999999999"], "error: invalid value '99999999999999999999' for '<INTERVAL>'"),
            (&["1", "--vm-min-unused", "1048577"], "1048577 is not in 1..=1048576"),
            (&["1", "--jsn"], "error: unexpected argument '--jsn' found; tip: a similar argument exists: '--json'"),
            (&["1", "--config"], "error: a value is required for '--config <PATH>' but none was supplied"),
            (
                &["1", "--config", "/nonexistent/vms.json"],
                "error: cannot read the VM configuration file /nonexistent/vms.json: No such file or directory (os error 2)",
            ),
            (&["1", "--domains", ""], "error: --domains: the pattern must not be empty"),
        ];
        for (args, expected) in cases {
            let line = usage_line(args);
            assert!(line.starts_with(expected) || line.contains(expected), "{args:?}: {line:?}");
            assert!(!line.contains('\n'), "{args:?}: {line:?}");
        }
    }

    #[test]
    fn domains_and_exclude_repeat_and_reach_the_rules() {
        let config = parse(&["1", "--domains", "web-*", "--domains", "db?", "--exclude", "web-test"]).unwrap();
        let rules = config.into_config().unwrap().vms;
        assert!(!rules.verdict("db1").is_excluded());
        assert!(!rules.verdict("web-1").is_excluded());
        assert!(rules.verdict("web-test").is_excluded());
        assert!(rules.verdict("mail").is_excluded());
    }

    #[test]
    fn help_shows_one_example_per_backend() {
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("memory_coordinator 2 --domains 'web-*' --config"), "{help}");
        assert!(help.contains("memory_coordinator 1 --qmp '/run/qemu/*.sock'"), "{help}");
        let long = Cli::command().render_long_help().to_string();
        assert!(long.contains("SIGHUP reads the --config file again"), "{long}");
        assert!(long.contains("--metrics-file <PATH>") && long.contains("--metrics-listen <ADDR>"), "{long}");
        assert!(long.contains("plot  Draw the --json output of a run as an SVG"), "{long}");
    }

    #[test]
    fn version_names_the_crate_and_the_libvirt_library_and_needs_no_interval() {
        for flag in ["--version", "-V"] {
            let err = command().try_get_matches_from(["memory_coordinator", flag]).unwrap_err();
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayVersion);
            assert_eq!(err.exit_code(), 0);
            let libvirt = crate::libvirt::library_version().unwrap();
            assert_eq!(
                err.to_string(),
                format!("memory_coordinator {} (libvirt {libvirt})\n", env!("CARGO_PKG_VERSION"))
            );
        }
    }

    #[test]
    fn plot_is_a_subcommand_that_needs_no_interval_and_takes_no_daemon_option() {
        let run = |args: &[&str]| parse_args(std::iter::once("memory_coordinator").chain(args.iter().copied()));
        match run(&["plot", "run.jsonl"]) {
            Ok(Invocation::Plot(p)) => assert_eq!((p.input, p.threshold), (PathBuf::from("run.jsonl"), 100)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(run(&["plot", "-", "--threshold", "200"]), Ok(Invocation::Plot(p)) if p.threshold == 200));
        assert!(matches!(run(&["2"]), Ok(Invocation::Run(c)) if c.policy.interval_s == 2));
        for args in [&["1", "plot", "x"][..], &["plot", "x", "--json"], &["plot"]] {
            assert!(matches!(run(args), Err(Exit::Usage(_))), "{args:?}");
        }
    }

    #[test]
    fn metrics_options_reach_the_config_and_remote_addresses_must_be_allowed() {
        let config = parse(&["1", "--metrics-file", "/tmp/m.prom", "--metrics-listen", "[::1]:9848"]).unwrap();
        let metrics = config.into_config().unwrap().metrics;
        assert_eq!(metrics.file, Some(PathBuf::from("/tmp/m.prom")));
        assert_eq!(metrics.listen, Some("[::1]:9848".parse().unwrap()));
        let remote = usage_line(&["1", "--metrics-listen", "192.0.2.1:9848"]);
        assert!(remote.contains("not a loopback address") && remote.contains("--metrics-allow-remote"), "{remote}");
        assert!(
            parse(&["1", "--metrics-listen", "192.0.2.1:9848", "--metrics-allow-remote"])
                .unwrap()
                .into_config()
                .is_ok()
        );
        assert!(usage_line(&["1", "--metrics-allow-remote"]).contains("--metrics-listen"));
        assert!(usage_line(&["1", "--metrics-listen", "localhost:80"]).contains("invalid value 'localhost:80'"));
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for args in
            [&[][..], &["0"], &["-1"], &["abc"], &["1", "--shrink-fraction", "0"], &["1", "--bogus"], &["1", "2"]]
        {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
