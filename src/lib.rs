//! memory_coordinator: balances RAM between QEMU/KVM virtual machines through the
//! virtio-balloon. The library holds all logic; `main.rs` only wires it together.
//!
//! A tick flows one way: a backend (`libvirt` or `qmp`) fills a [`policy::Snapshot`], the pure
//! [`policy::decide`] turns it into targets, the backend applies them, the
//! [`coordinator`] logs. `unsafe` code is allowed only in `libvirt`'s FFI layer.
#![deny(unsafe_code)]

pub mod backoff;
pub mod cli;
pub mod complaint;
pub mod config;
pub mod coordinator;
pub mod host;
pub mod instance;
pub mod libvirt;
pub mod metrics;
pub mod plot;
pub mod policy;
pub mod qmp;
pub mod shutdown;
pub mod slots;
pub mod text;
pub mod units;
pub mod unserved;
pub mod vmconfig;
