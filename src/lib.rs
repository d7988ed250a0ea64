//! memory_coordinator: balances RAM between QEMU/KVM virtual machines through the
//! virtio-balloon. The library holds all logic; `main.rs` only wires it together.

pub mod cli;
pub mod config;
pub mod libvirt;
pub mod policy;
pub mod units;
