//! The QMP backend for bare QEMU hosts: the monitor protocol (`protocol`), a client with
//! deadlines on one socket (`client`), glob expansion of `--qmp` patterns (`glob`) and the
//! backend the coordinator drives.

mod backend;
pub mod client;
pub mod glob;
pub mod protocol;

pub use backend::{QmpBackend, QmpBackendError, QmpOptions, SocketPath};
