//! memory_coordinator: parse the command line into a validated config, set up logging and
//! signals, build a backend, run the loop. Everything else lives in the library.

use std::process::ExitCode;

use memory_coordinator::cli;
use memory_coordinator::config::{BackendChoice, Config};
use memory_coordinator::coordinator::Coordinator;
use memory_coordinator::host::HostMemory;
use memory_coordinator::instance::InstanceLock;
use memory_coordinator::libvirt::LibvirtBackend;
use memory_coordinator::qmp::QmpBackend;
use memory_coordinator::shutdown::Shutdown;

fn main() -> ExitCode {
    let config = cli::parse_or_exit();
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
    // Held until run() returns: before the backend starts, so a second daemon touches nothing.
    let _lock = config.lock_file.as_deref().map(InstanceLock::acquire).transpose()?;
    let host = HostMemory::open(&config.meminfo)?;
    match &config.backend {
        BackendChoice::Libvirt { uri } => {
            let backend = LibvirtBackend::connect(uri, config.policy.interval_s)?;
            Coordinator::new(config.policy, config.options, backend, host)
                .with_vm_rules(config.vms.clone())
                .run(&shutdown);
        }
        BackendChoice::Qmp(options) => {
            let backend = QmpBackend::new(options.clone());
            Coordinator::new(config.policy, config.options, backend, host)
                .with_vm_rules(config.vms.clone())
                .run(&shutdown);
        }
    }
    Ok(())
}
