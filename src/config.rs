//! The validated configuration the daemon runs with, built from the command line.

use crate::policy::{PolicyConfig, PolicyError};

/// Everything `main` needs to start, checked before anything is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub policy: PolicyConfig,
    /// Log verbosity: 0 is info, positive is more, negative is less.
    pub verbosity: i8,
}

impl Config {
    pub fn new(policy: PolicyConfig, verbosity: i8) -> Result<Config, ConfigError> {
        policy.validate().map_err(ConfigError::Policy)?;
        Ok(Config { policy, verbosity })
    }

    /// The `log` level filter `-v`/`-q` ask for.
    pub fn log_level(&self) -> log::LevelFilter {
        match self.verbosity {
            i8::MIN..=-2 => log::LevelFilter::Error,
            -1 => log::LevelFilter::Warn,
            0 => log::LevelFilter::Info,
            1 => log::LevelFilter::Debug,
            _ => log::LevelFilter::Trace,
        }
    }
}

/// Errors of this module: a setting the daemon cannot run with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    Policy(PolicyError),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Policy(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {}
