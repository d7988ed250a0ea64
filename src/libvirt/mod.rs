//! libvirt backend: FFI bindings and the safe layer over them.

pub mod ffi;
