//! The libvirt backend: bindgen declarations (`ffi`), the safe layer that owns every handle
//! and every `unsafe` block (`api`), and the backend the coordinator drives (`backend`).

#[allow(unsafe_code)]
mod api;
mod backend;
mod calls;
#[allow(unsafe_code)]
pub mod ffi;

pub use api::{
    Connection, Domain, DomainFigures, DomainInfo, DomainList, DomainStatsList, DomainStatsRecord, Keepalive,
    LibvirtError, LibvirtVersion, MemoryStats, StatsGroups, init, library_version,
};
pub use backend::{LibvirtBackend, LibvirtBackendError, Reading};
