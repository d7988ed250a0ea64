//! memory_coordinator: parse the command line into a validated config, set up logging and
//! signals, build a backend, run the loop. Everything else lives in the library.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use memory_coordinator::cli::Cli;
use memory_coordinator::config::{BackendChoice, Config};
use memory_coordinator::coordinator::Coordinator;
use memory_coordinator::host::HostMemory;
use memory_coordinator::libvirt::LibvirtBackend;
use memory_coordinator::qmp::QmpBackend;
use memory_coordinator::shutdown::Shutdown;

fn main() -> ExitCode {
    let config = match Cli::parse().into_config() {
        Ok(config) => config,
        Err(e) => Cli::command().error(clap::error::ErrorKind::ValueValidation, e).exit(),
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
