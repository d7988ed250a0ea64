//! memory_coordinator: parse the command line into a validated config, set up logging and
//! signals, build a backend, run the loop (or draw a plot: `memory_coordinator plot`).
//! Everything else lives in the library.

use std::io::Write;
use std::process::ExitCode;

use memory_coordinator::cli::{self, Invocation, PlotArgs};
use memory_coordinator::config::{BackendChoice, Config};
use memory_coordinator::coordinator::Coordinator;
use memory_coordinator::host::HostMemory;
use memory_coordinator::instance::{InstanceError, InstanceLock};
use memory_coordinator::libvirt::LibvirtBackend;
use memory_coordinator::metrics::Metrics;
use memory_coordinator::plot;
use memory_coordinator::qmp::QmpBackend;
use memory_coordinator::shutdown::Shutdown;

fn main() -> ExitCode {
    let config = match cli::parse_or_exit() {
        Invocation::Run(config) => config,
        Invocation::Plot(args) => return draw(&args),
    };
    env_logger::Builder::new()
        .filter_level(config.log_level())
        .parse_default_env()
        .format_timestamp_millis()
        .format_target(false)
        .init();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            // Another daemon holding the lock has a status of its own (the unit does not
            // restart on it); any other start that failed is 1.
            ExitCode::from(e.downcast_ref::<InstanceError>().map_or(1, InstanceError::exit_status))
        }
    }
}

fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = Shutdown::install()?;
    // Held until run() returns: before the backend starts, so a second daemon touches nothing.
    let _lock = config.lock_file.as_deref().map(InstanceLock::acquire).transpose()?;
    let host = HostMemory::open(&config.meminfo)?;
    let metrics = config.metrics.enabled().then(|| Metrics::start(&config.metrics)).transpose()?;
    match &config.backend {
        BackendChoice::Libvirt { uri } => {
            let Some(backend) = LibvirtBackend::connect_or_stop(uri, config.policy.interval_s, shutdown.flag())? else {
                log::info!("stopped before libvirt answered");
                return Ok(());
            };
            let mut c =
                Coordinator::new(config.policy, config.options, backend, host).with_vm_rules(config.vms.clone());
            if let Some(m) = metrics {
                c = c.with_metrics(m);
            }
            c.run(&shutdown);
        }
        BackendChoice::Qmp(options) => {
            let backend = QmpBackend::new(options.clone());
            let mut c =
                Coordinator::new(config.policy, config.options, backend, host).with_vm_rules(config.vms.clone());
            if let Some(m) = metrics {
                c = c.with_metrics(m);
            }
            c.run(&shutdown);
        }
    }
    Ok(())
}

/// `memory_coordinator plot FILE`: the SVG on stdout; lines that are not rounds are counted on
/// stderr; a file without a round, or one that cannot be read, is exit status 1.
fn draw(args: &PlotArgs) -> ExitCode {
    let parsed = match plot::from_file(&args.input, args.threshold) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some((line, why)) = &parsed.first_skipped {
        eprintln!(
            "warning: skipped {} line(s) of {} that are not --json rounds (the first, line {line}: {why})",
            parsed.skipped,
            args.input.display()
        );
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(plot::svg(&parsed.chart).as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the SVG: {e}");
            ExitCode::FAILURE
        }
    }
}
