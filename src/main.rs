//! memory_coordinator: parse the command line into a validated config, set up logging and
//! signals, build a backend, run the loop. Everything else lives in the library.

use std::process::ExitCode;

use clap::FromArgMatches;
use memory_coordinator::cli::{self, Cli};
use memory_coordinator::config::{BackendChoice, Config};
use memory_coordinator::coordinator::Coordinator;
use memory_coordinator::host::HostMemory;
use memory_coordinator::libvirt::LibvirtBackend;
use memory_coordinator::qmp::QmpBackend;
use memory_coordinator::shutdown::Shutdown;

fn main() -> ExitCode {
    let mut command = cli::command();
    let parsed = Cli::from_arg_matches(&command.get_matches_mut()).map_err(|e| e.format(&mut command));
    let config = match parsed.map(Cli::into_config) {
        Ok(Ok(config)) => config,
        Ok(Err(e)) => command.error(clap::error::ErrorKind::ValueValidation, e).exit(),
        Err(e) => e.exit(),
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
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = Shutdown::install()?;
    let host = HostMemory::open(&config.meminfo)?;
    match &config.backend {
        BackendChoice::Libvirt { uri } => {
            let backend = LibvirtBackend::connect(uri, config.policy.interval_s)?;
            Coordinator::new(config.policy, config.options, backend, host).run(&shutdown);
        }
        BackendChoice::Qmp(options) => {
            let backend = QmpBackend::new(options.clone());
            Coordinator::new(config.policy, config.options, backend, host).run(&shutdown);
        }
    }
    Ok(())
}
