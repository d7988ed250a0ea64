//! Generates the libvirt FFI declarations with bindgen and links libvirt.
//!
//! Only the functions, types and constants the daemon calls are allowlisted, so the binding
//! stays small and a libvirt upgrade cannot silently pull new symbols in.

use std::env;
use std::path::{Path, PathBuf};

/// What to install when the build cannot find its inputs (README "Build").
const DEBIAN_HINT: &str = "apt-get install libvirt-dev libclang-dev (or: make deps)";

const FUNCTIONS: &[&str] = &[
    "virConnectOpen",
    "virConnectClose",
    "virConnectRef",
    "virConnectGetAllDomainStats",
    "virConnectListAllDomains",
    "virConnectSetKeepAlive",
    "virConnectIsAlive",
    "virConnectGetLibVersion",
    "virDomainFree",
    "virDomainRef",
    "virDomainStatsRecordListFree",
    "virDomainGetID",
    "virDomainGetName",
    "virDomainGetUUID",
    "virDomainGetInfo",
    "virDomainGetMaxMemory",
    "virDomainMemoryStats",
    "virDomainSetMemoryStatsPeriod",
    "virDomainSetMemoryFlags",
    "virEventRegisterDefaultImpl",
    "virEventRunDefaultImpl",
    "virGetLastError",
    "virGetVersion",
    "virResetLastError",
    "virSetErrorFunc",
];

/// Structs, and the C enums whose constants we use (bindgen emits an enum's constants with
/// its type; `prepend_enum_name(false)` keeps their C names).
const TYPES: &[&str] = &[
    "virDomainInfo",
    "virDomainMemoryStatStruct",
    "virError",
    "virErrorNumber",
    "virErrorDomain",
    "virErrorLevel",
    "virDomainMemoryStatTags",
    "virConnectListAllDomainsFlags",
    "virDomainModificationImpact",
    "virDomainMemoryModFlags",
    "virDomainState",
    "virDomainStatsRecord",
    "virDomainStatsTypes",
    "virConnectGetAllDomainStatsFlags",
    "virTypedParameterType",
];

/// `#define` constants.
const CONSTANTS: &[&str] = &["VIR_UUID_BUFLEN", "VIR_UUID_STRING_BUFLEN", "VIR_TYPED_PARAM_FIELD_LENGTH"];

fn fail(message: &str) -> ! {
    // `cargo::error` shows as one line in cargo's output, without a backtrace.
    println!("cargo::error={message}");
    std::process::exit(1);
}

/// Where `libvirt/libvirt.h` lives: `LIBVIRT_INCLUDE_DIR`, or the system include paths.
fn find_headers() -> Option<PathBuf> {
    let explicit = env::var_os("LIBVIRT_INCLUDE_DIR").map(PathBuf::from);
    let candidates = explicit.into_iter().chain(["/usr/include", "/usr/local/include"].map(PathBuf::from));
    candidates.into_iter().find(|dir| dir.join("libvirt/libvirt.h").is_file())
}

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIBVIRT_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=LIBVIRT_LIB_DIR");

    let Some(include_dir) = find_headers() else {
        fail(&format!("libvirt headers (libvirt/libvirt.h) not found: {DEBIAN_HINT}"));
    };
    if let Some(lib_dir) = env::var_os("LIBVIRT_LIB_DIR") {
        println!("cargo:rustc-link-search=native={}", Path::new(&lib_dir).display());
    }
    println!("cargo:rustc-link-lib=dylib=virt");

    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_arg(format!("-I{}", include_dir.display()))
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .rust_edition(bindgen::RustEdition::Edition2024)
        .prepend_enum_name(false)
        .layout_tests(true)
        .generate_comments(false);
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in TYPES {
        builder = builder.allowlist_type(t);
    }
    for c in CONSTANTS {
        builder = builder.allowlist_var(c);
    }

    // bindgen panics when it cannot load libclang; turn that into the one-line hint.
    std::panic::set_hook(Box::new(|_| {}));
    // The builder is consumed inside the closure, so nothing observes it after a panic.
    let generated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || builder.generate()));
    drop(std::panic::take_hook());
    let bindings = match generated {
        Ok(Ok(bindings)) => bindings,
        Ok(Err(e)) => fail(&format!("bindgen could not read wrapper.h ({e}): {DEBIAN_HINT}")),
        Err(_) => fail(&format!("libclang not found, bindgen needs it: {DEBIAN_HINT}")),
    };
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("libvirt_bindings.rs");
    if let Err(e) = bindings.write_to_file(&out) {
        fail(&format!("cannot write {}: {e}", out.display()));
    }
}
