//! Helpers shared by the integration tests. Each test binary uses a subset.
#![allow(dead_code)]

pub mod counting_alloc;
pub mod daemon;
pub mod fake_qemu;
pub mod lab;
pub mod sim;
pub mod synthetic;
pub mod test_driver;
