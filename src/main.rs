//! memory_coordinator: parse the command line into a validated config, set up logging and
//! signals, build a backend, run the loop. Everything else lives in the library.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use memory_coordinator::cli::Cli;

fn main() -> ExitCode {
    let config = match Cli::parse().into_config() {
        Ok(config) => config,
        Err(e) => Cli::command().error(clap::error::ErrorKind::ValueValidation, e).exit(),
    };
    env_logger::Builder::new().filter_level(config.log_level()).parse_default_env().format_timestamp_millis().init();
    log::error!("no backend is built yet: this build only validates its arguments");
    ExitCode::from(1)
}
