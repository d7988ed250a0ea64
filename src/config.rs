//! The validated configuration the daemon runs with, built from the command line (and the
//! per-VM configuration file it names).

use std::path::PathBuf;

use crate::coordinator::LoopOptions;
use crate::metrics::MetricsOptions;
use crate::policy::{PolicyConfig, PolicyError};
use crate::qmp::QmpOptions;
use crate::vmconfig::{VmConfigError, VmRules};

/// Which hypervisor interface serves the VMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChoice {
    /// libvirt, through the connection URI.
    Libvirt { uri: String },
    /// Bare QEMU, through QMP sockets.
    Qmp(QmpOptions),
}

/// Everything `main` needs to start, checked before anything is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub policy: PolicyConfig,
    pub backend: BackendChoice,
    pub options: LoopOptions,
    /// Host memory figures (/proc/meminfo).
    pub meminfo: PathBuf,
    /// Log verbosity: 0 is info, positive is more, negative is less.
    pub verbosity: i8,
    /// Which VMs are served and within which limits (`--domains`, `--exclude`, `--config`).
    pub vms: VmRules,
    /// The one-daemon-per-host lock to take before serving; `None` for a dry run.
    pub lock_file: Option<PathBuf>,
    /// `--metrics-file`, `--metrics-listen`.
    pub metrics: MetricsOptions,
}

impl Config {
    pub fn new(
        policy: PolicyConfig,
        backend: BackendChoice,
        options: LoopOptions,
        meminfo: PathBuf,
        verbosity: i8,
        vms: VmRules,
    ) -> Result<Config, ConfigError> {
        policy.validate().map_err(ConfigError::Policy)?;
        match &backend {
            BackendChoice::Libvirt { uri } if uri.is_empty() || uri.contains('\0') => {
                return Err(ConfigError::Invalid("--connect needs a libvirt URI such as qemu:///system"));
            }
            BackendChoice::Libvirt { .. } => {}
            BackendChoice::Qmp(q) if q.patterns.iter().any(|p| p.is_empty()) => {
                return Err(ConfigError::Invalid("--qmp needs socket paths or glob patterns, not empty strings"));
            }
            BackendChoice::Qmp(q) if q.balloon_path.as_ref().is_some_and(|p| !p.starts_with('/')) => {
                return Err(ConfigError::Invalid(
                    "--qmp-balloon-path must be an absolute QOM path like /machine/peripheral/balloon0",
                ));
            }
            BackendChoice::Qmp(_) => {}
        }
        Ok(Config {
            policy,
            backend,
            options,
            meminfo,
            verbosity,
            vms,
            lock_file: None,
            metrics: MetricsOptions::default(),
        })
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
    Invalid(&'static str),
    /// `--domains`, `--exclude` or the `--config` file.
    Vms(VmConfigError),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Policy(e) => e.fmt(f),
            ConfigError::Invalid(what) => f.write_str(what),
            ConfigError::Vms(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ConfigError {}
