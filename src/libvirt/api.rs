//! The safe layer over libvirt's C API. Every `unsafe` block of the crate's libvirt support is
//! in this file, each with the reason it is sound.
//!
//! Handles own their libvirt references: `Drop` releases them and never panics; `close()`
//! releases them and reports failure. Every return code is checked; errors carry what
//! `virGetLastError()` said, copied into a fixed buffer (no heap), or a fallback when libvirt
//! left no error behind.

use std::ffi::{CStr, CString, c_int, c_ulong, c_void};
use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::OnceLock;

use super::ffi;
use crate::text::FixedText;

/// A libvirt failure: what we were doing, and what libvirt said.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct LibvirtError {
    /// The call that failed, e.g. "virDomainSetMemoryFlags".
    pub operation: &'static str,
    /// `virErrorNumber` (0 when libvirt reported nothing).
    pub code: i32,
    /// `virErrorDomain`: which part of libvirt raised it.
    pub domain: i32,
    /// The `errno` behind a system error (a socket that could not be reached), else 0.
    pub os_errno: i32,
    message: FixedText<320>,
}

impl LibvirtError {
    /// The thread's last libvirt error, for a call that just failed.
    fn last(operation: &'static str) -> LibvirtError {
        // SAFETY: virGetLastError takes no arguments and returns a pointer to this thread's
        // error object, or null; libvirt owns it and keeps it valid until the next libvirt
        // call on this thread, and we copy what we need before making one.
        let err = unsafe { ffi::virGetLastError() };
        // SAFETY: err is either null (as_ref gives None) or points to a valid virError.
        let Some(err) = (unsafe { err.as_ref() }) else {
            return LibvirtError::new(operation, 0, 0, "libvirt reported a failure but left no error message");
        };
        let message = if err.message.is_null() {
            FixedText::new("(no message)")
        } else {
            // SAFETY: message is non-null and libvirt keeps it a NUL-terminated string for the
            // lifetime of the error object, which outlives this copy.
            FixedText::from_bytes_lossy(unsafe { CStr::from_ptr(err.message) }.to_bytes())
        };
        // libvirt puts the errno of a system error in int1 (virReportSystemError).
        let system = u32::try_from(err.code).is_ok_and(|c| c == ffi::VIR_ERR_SYSTEM_ERROR);
        let os_errno = if system { err.int1 } else { 0 };
        LibvirtError { operation, code: err.code, domain: err.domain, os_errno, message }
    }

    pub fn new(operation: &'static str, code: i32, domain: i32, message: &str) -> LibvirtError {
        LibvirtError { operation, code, domain, os_errno: 0, message: FixedText::new(message) }
    }

    /// libvirt's message, e.g. "Domain not found: no domain with matching uuid ...".
    pub fn message(&self) -> &str {
        self.message.as_str()
    }

    /// The domain is gone (stopped or undefined between two calls).
    pub fn is_no_domain(&self) -> bool {
        u32::try_from(self.code).is_ok_and(|c| c == ffi::VIR_ERR_NO_DOMAIN)
    }

    /// The driver does not implement this call.
    pub fn is_unsupported(&self) -> bool {
        u32::try_from(self.code).is_ok_and(|c| c == ffi::VIR_ERR_NO_SUPPORT)
    }

    /// The domain is not running (so its balloon cannot be driven).
    pub fn is_domain_inactive(&self) -> bool {
        u32::try_from(self.code).is_ok_and(|c| c == ffi::VIR_ERR_OPERATION_INVALID)
    }

    /// The daemon, or its socket, refused us: a permission or authentication failure, or a
    /// failure of the machinery that decides (a daemon that cannot reach polkit over D-Bus
    /// refuses a user who is not root so).
    pub fn is_permission_denied(&self) -> bool {
        let refusals = [
            ffi::VIR_ERR_AUTH_FAILED,
            ffi::VIR_ERR_AUTH_CANCELLED,
            ffi::VIR_ERR_AUTH_UNAVAILABLE,
            ffi::VIR_ERR_ACCESS_DENIED,
        ];
        let deciders = [ffi::VIR_FROM_AUTH, ffi::VIR_FROM_DBUS, ffi::VIR_FROM_POLKIT];
        u32::try_from(self.code).is_ok_and(|c| refusals.contains(&c))
            || u32::try_from(self.domain).is_ok_and(|d| deciders.contains(&d))
            || self.os_errno == libc::EACCES
            || self.os_errno == libc::EPERM
    }

    /// The driver cannot give the statistics groups asked for (or bulk statistics at all).
    pub fn is_unsupported_stats(&self) -> bool {
        self.is_unsupported() || u32::try_from(self.code).is_ok_and(|c| c == ffi::VIR_ERR_ARGUMENT_UNSUPPORTED)
    }
}

impl fmt::Display for LibvirtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed: {} (libvirt error {})", self.operation, self.message, self.code)
    }
}

impl fmt::Debug for LibvirtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for LibvirtError {}

/// Checks a libvirt `int` return: negative is failure.
fn check(rc: c_int, operation: &'static str) -> Result<c_int, LibvirtError> {
    if rc < 0 { Err(LibvirtError::last(operation)) } else { Ok(rc) }
}

/// A libvirt error callback that drops the error: without it libvirt prints every error to
/// stderr itself, behind our logging.
unsafe extern "C" fn ignore_error(_user_data: *mut c_void, _error: ffi::virErrorPtr) {}

/// Process-wide libvirt set-up, done once before the first connection: silence libvirt's own
/// error printing. Idempotent.
pub fn init() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        // SAFETY: a null user-data pointer and a handler that never touches its arguments;
        // virSetErrorFunc only stores both.
        unsafe { ffi::virSetErrorFunc(ptr::null_mut(), Some(ignore_error)) };
    });
}

/// Registers libvirt's default event loop and runs it on a thread of its own, once per
/// process: keepalive needs it. Only connections opened after this take part in it.
///
/// Not done for every connection: with an event loop, libvirt's client wakes the loop's
/// thread twice per call (it stops and resumes watching the socket around each call), which
/// measured as half of a 256-domain per-domain round (`libvirtd_tick`: 23 ms with the loop,
/// 11 ms without).
pub fn start_event_loop() -> Result<(), LibvirtError> {
    static STARTED: OnceLock<Result<(), LibvirtError>> = OnceLock::new();
    *STARTED.get_or_init(|| {
        init();
        // SAFETY: no arguments; registers libvirt's built-in event loop implementation.
        check(unsafe { ffi::virEventRegisterDefaultImpl() }, "virEventRegisterDefaultImpl")?;
        std::thread::Builder::new()
            .name("libvirt-events".into())
            .spawn(|| {
                loop {
                    // SAFETY: no arguments; the default implementation was registered above.
                    let rc = unsafe { ffi::virEventRunDefaultImpl() };
                    if rc < 0 {
                        log::error!("{}", LibvirtError::last("virEventRunDefaultImpl"));
                        std::thread::sleep(std::time::Duration::from_secs(1));
                    }
                }
            })
            .map_err(|_| LibvirtError::new("spawn libvirt event thread", 0, 0, "could not start a thread"))?;
        Ok(())
    })
}

/// A libvirt version, as `virGetVersion` encodes it (major * 1,000,000 + minor * 1,000 +
/// release).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LibvirtVersion {
    pub major: u64,
    pub minor: u64,
    pub release: u64,
}

impl LibvirtVersion {
    fn decode(encoded: u64) -> LibvirtVersion {
        LibvirtVersion { major: encoded / 1_000_000, minor: encoded / 1_000 % 1_000, release: encoded % 1_000 }
    }
}

impl fmt::Display for LibvirtVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.release)
    }
}

/// The version of the libvirt library this process runs with (no connection, no daemon).
pub fn library_version() -> Result<LibvirtVersion, LibvirtError> {
    let mut encoded: c_ulong = 0;
    // SAFETY: `encoded` is a valid out-pointer; a null type and type-version pointer ask for
    // the library's version only, which libvirt documents as allowed.
    let rc = unsafe { ffi::virGetVersion(&mut encoded, ptr::null(), ptr::null_mut()) };
    check(rc, "virGetVersion")?;
    Ok(LibvirtVersion::decode(encoded))
}

/// An open connection to a hypervisor (`virConnectPtr`).
pub struct Connection {
    ptr: NonNull<ffi::virConnect>,
}

// SAFETY: a `virConnectPtr` may be used from any thread, by several at once (libvirt's objects
// are thread-safe since 0.6.0; the remote driver lets calls of several threads be in flight),
// and each handle releases its own reference once. Errors are per thread, read by the thread
// that made the call.
unsafe impl Send for Connection {}

/// Whether the peer takes part in keepalive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keepalive {
    Enabled,
    /// Local drivers (test:///, qemu:///embed) and old daemons have none.
    Unsupported,
}

impl Connection {
    /// Opens `uri` (e.g. `qemu:///system`, `test:///default`) read-write.
    pub fn open(uri: &str) -> Result<Connection, LibvirtError> {
        init();
        let c_uri =
            CString::new(uri).map_err(|_| LibvirtError::new("virConnectOpen", 0, 0, "the URI contains a NUL byte"))?;
        // SAFETY: c_uri is a valid NUL-terminated string that outlives the call; libvirt
        // copies what it keeps.
        let raw = unsafe { ffi::virConnectOpen(c_uri.as_ptr()) };
        NonNull::new(raw).map(|ptr| Connection { ptr }).ok_or_else(|| LibvirtError::last("virConnectOpen"))
    }

    /// Asks the daemon to check the connection every `interval_s`, declaring it dead after
    /// `count` unanswered probes.
    pub fn set_keepalive(&self, interval_s: i32, count: u32) -> Result<Keepalive, LibvirtError> {
        // SAFETY: self.ptr is a live connection for as long as self exists.
        let rc = unsafe { ffi::virConnectSetKeepAlive(self.ptr.as_ptr(), interval_s, count) };
        match check(rc, "virConnectSetKeepAlive") {
            Ok(0) => Ok(Keepalive::Enabled),
            Ok(_) => Ok(Keepalive::Unsupported),
            Err(e) if e.is_unsupported() => Ok(Keepalive::Unsupported),
            Err(e) => Err(e),
        }
    }

    /// The version of the daemon's libvirt: one cheap round trip that touches no guest.
    pub fn daemon_version(&self) -> Result<LibvirtVersion, LibvirtError> {
        let mut encoded: c_ulong = 0;
        // SAFETY: self.ptr is a live connection; `encoded` is a valid out-pointer.
        let rc = unsafe { ffi::virConnectGetLibVersion(self.ptr.as_ptr(), &mut encoded) };
        check(rc, "virConnectGetLibVersion")?;
        Ok(LibvirtVersion::decode(encoded))
    }

    /// False once libvirt knows the connection is dead (daemon gone, keepalive timeout).
    pub fn is_alive(&self) -> bool {
        // SAFETY: self.ptr is a live connection.
        let rc = unsafe { ffi::virConnectIsAlive(self.ptr.as_ptr()) };
        rc == 1
    }

    /// The running domains. The list owns one reference per domain.
    pub fn list_active_domains(&self) -> Result<DomainList, LibvirtError> {
        let mut array: *mut ffi::virDomainPtr = ptr::null_mut();
        // SAFETY: self.ptr is live; `array` is a valid out-pointer that libvirt fills with a
        // malloc'ed array of `rc` domain references, which DomainList takes over.
        let rc = unsafe {
            ffi::virConnectListAllDomains(self.ptr.as_ptr(), &mut array, ffi::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
        };
        let count = check(rc, "virConnectListAllDomains")?;
        Ok(DomainList { array, len: usize::try_from(count).unwrap_or(0), next: 0 })
    }

    /// Every running or paused domain with the figures of `groups`, in one call (one round
    /// trip to the daemon). A driver that cannot give every group asked for fails, and
    /// [`LibvirtError::is_unsupported_stats`] says so.
    pub fn all_domain_stats(&self, groups: StatsGroups) -> Result<DomainStatsList, LibvirtError> {
        let stats = match groups {
            StatsGroups::StateAndBalloon => ffi::VIR_DOMAIN_STATS_STATE | ffi::VIR_DOMAIN_STATS_BALLOON,
            StatsGroups::State => ffi::VIR_DOMAIN_STATS_STATE,
        };
        // ENFORCE_STATS: a group the driver lacks is an error, not a silently missing figure.
        // NOWAIT (balloon only: the state group never waits): a domain busy with another call
        // (one of ours stuck on a hung QEMU, or another client's) is reported without its
        // guest figures at once, instead of after libvirt's 30 s wait for that domain.
        let nowait = match groups {
            StatsGroups::StateAndBalloon => ffi::VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT,
            StatsGroups::State => 0,
        };
        let flags = ffi::VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
            | ffi::VIR_CONNECT_GET_ALL_DOMAINS_STATS_ENFORCE_STATS
            | nowait;
        let mut records: *mut ffi::virDomainStatsRecordPtr = ptr::null_mut();
        // SAFETY: self.ptr is live; `records` is a valid out-pointer that libvirt fills with a
        // NULL-terminated array of `rc` records, which DomainStatsList takes over and frees.
        let rc = unsafe { ffi::virConnectGetAllDomainStats(self.ptr.as_ptr(), stats, &mut records, flags) };
        // Owned before the check, so whatever libvirt returned is freed on every path.
        let mut list = DomainStatsList { records, len: 0 };
        list.len = usize::try_from(check(rc, "virConnectGetAllDomainStats")?).unwrap_or(0);
        Ok(list)
    }

    /// A second handle to the same connection (one more reference, released on drop), for a
    /// call made on another thread.
    pub fn try_clone(&self) -> Result<Connection, LibvirtError> {
        // SAFETY: self.ptr is live; virConnectRef adds a reference that the new handle owns.
        check(unsafe { ffi::virConnectRef(self.ptr.as_ptr()) }, "virConnectRef")?;
        Ok(Connection { ptr: self.ptr })
    }

    /// Closes the connection, reporting failure.
    pub fn close(self) -> Result<(), LibvirtError> {
        let ptr = self.ptr;
        std::mem::forget(self);
        // SAFETY: ptr was a live connection owned by the forgotten `self`, so it is released
        // exactly once, here.
        unsafe { release(ptr, ffi::virConnectClose, "virConnectClose") }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // SAFETY: we own this reference; nothing uses it after drop.
        if let Err(e) = unsafe { release(self.ptr, ffi::virConnectClose, "virConnectClose") } {
            log::debug!("{e}");
        }
    }
}

/// Releases one libvirt reference with its free function (`virConnectClose`, `virDomainFree`).
///
/// # Safety
/// `ptr` must be a reference the caller owns and never uses again.
unsafe fn release<T>(
    ptr: NonNull<T>,
    free: unsafe extern "C" fn(*mut T) -> c_int,
    operation: &'static str,
) -> Result<(), LibvirtError> {
    // SAFETY: per this function's contract, ptr is an owned, live reference of the kind
    // `free` releases.
    check(unsafe { free(ptr.as_ptr()) }, operation).map(|_| ())
}

/// Domains returned by one listing; yields each as an owned [`Domain`].
pub struct DomainList {
    array: *mut ffi::virDomainPtr,
    len: usize,
    next: usize,
}

// SAFETY: the array is memory libvirt allocated for the caller alone, holding one domain
// reference per element; it may be read and freed on any thread, and is freed once.
unsafe impl Send for DomainList {}

impl DomainList {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Iterator for DomainList {
    type Item = Domain;

    fn next(&mut self) -> Option<Domain> {
        while self.next < self.len {
            // SAFETY: array holds `len` elements (libvirt's contract for the returned count)
            // and next < len. Taking the element leaves null behind so Drop skips it.
            let slot = unsafe { self.array.add(self.next) };
            self.next += 1;
            // SAFETY: slot points into the array (see above).
            let raw = unsafe { ptr::replace(slot, ptr::null_mut()) };
            if let Some(ptr) = NonNull::new(raw) {
                return Some(Domain { ptr });
            }
        }
        None
    }
}

impl Drop for DomainList {
    fn drop(&mut self) {
        for domain in self.by_ref() {
            drop(domain);
        }
        if !self.array.is_null() {
            // SAFETY: libvirt allocated the array with malloc; every element has been taken
            // and released above, and the array is freed exactly once.
            unsafe { libc::free(self.array.cast()) };
        }
    }
}

/// Which statistics groups [`Connection::all_domain_stats`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsGroups {
    /// `state` and `balloon`: what the QEMU driver gives.
    StateAndBalloon,
    /// `state` only: all libvirt 9.0's test driver gives.
    State,
}

/// The records of one `virConnectGetAllDomainStats` call, freed with
/// `virDomainStatsRecordListFree` (which also releases the records' domain references).
pub struct DomainStatsList {
    records: *mut ffi::virDomainStatsRecordPtr,
    len: usize,
}

// SAFETY: the list is memory libvirt allocated for the caller alone (records and the domain
// references they hold); it may be read and freed on any thread, and is freed once.
unsafe impl Send for DomainStatsList {}

impl DomainStatsList {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `index`th record.
    pub fn get(&self, index: usize) -> Option<DomainStatsRecord<'_>> {
        if index >= self.len {
            return None;
        }
        // SAFETY: the array holds `len` record pointers (libvirt's contract for the returned
        // count) and index < len.
        let record = unsafe { *self.records.add(index) };
        // SAFETY: libvirt fills every entry below the count with a valid record, which lives
        // until the list is freed, i.e. at least as long as the borrow of self.
        unsafe { record.as_ref() }.map(|record| DomainStatsRecord { record })
    }

    pub fn iter(&self) -> impl Iterator<Item = DomainStatsRecord<'_>> {
        (0..self.len).filter_map(|i| self.get(i))
    }
}

impl Drop for DomainStatsList {
    fn drop(&mut self) {
        if !self.records.is_null() {
            // SAFETY: the array came from virConnectGetAllDomainStats and is freed exactly once,
            // here; no record borrowed from it outlives self.
            unsafe { ffi::virDomainStatsRecordListFree(self.records) };
        }
    }
}

/// One domain's record in a [`DomainStatsList`].
#[derive(Clone, Copy)]
pub struct DomainStatsRecord<'a> {
    record: &'a ffi::virDomainStatsRecord,
}

impl DomainStatsRecord<'_> {
    /// A reference of our own to the record's domain (the list keeps and frees its own).
    pub fn domain(&self) -> Result<Domain, LibvirtError> {
        let ptr = NonNull::new(self.record.dom)
            .ok_or_else(|| LibvirtError::new("virConnectGetAllDomainStats", 0, 0, "a record without a domain"))?;
        // SAFETY: ptr is the record's live domain reference; virDomainRef adds one that the
        // returned Domain owns and releases.
        check(unsafe { ffi::virDomainRef(ptr.as_ptr()) }, "virDomainRef")?;
        Ok(Domain { ptr })
    }

    /// The record's typed parameters.
    pub fn params(&self) -> &[ffi::virTypedParameter] {
        let len = usize::try_from(self.record.nparams).unwrap_or(0);
        if self.record.params.is_null() || len == 0 {
            return &[];
        }
        // SAFETY: libvirt's record holds `nparams` initialised parameters at `params`, alive
        // as long as the list, which outlives this borrow.
        unsafe { std::slice::from_raw_parts(self.record.params, len) }
    }

    /// The figures this driver gave for the domain.
    pub fn figures(&self) -> DomainFigures {
        DomainFigures::parse(self.params())
    }
}

/// A domain's state and balloon figures from bulk statistics; `None` for what the record did
/// not carry. Field names and units are libvirt's (`virsh domstats --balloon`, checked against
/// a QEMU 7.2 guest under libvirt 9.0): memory in KiB, faults as counts, `last-update` in epoch
/// seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DomainFigures {
    /// `state.state`: a `virDomainState`.
    pub state: Option<u32>,
    /// `balloon.current`: the balloon size now.
    pub current_kib: Option<u64>,
    /// `balloon.maximum`: the domain's maximum memory.
    pub maximum_kib: Option<u64>,
    /// `balloon.unused`: guest MemFree.
    pub unused_kib: Option<u64>,
    /// `balloon.available`: guest MemTotal.
    pub available_kib: Option<u64>,
    /// `balloon.usable`: guest MemAvailable.
    pub usable_kib: Option<u64>,
    /// `balloon.rss`: the QEMU process's resident set.
    pub rss_kib: Option<u64>,
    /// `balloon.last-update`.
    pub last_update_s: Option<u64>,
    /// `balloon.swap_in`, `balloon.swap_out`.
    pub swap_in_kib: Option<u64>,
    pub swap_out_kib: Option<u64>,
    /// `balloon.major_fault`.
    pub major_faults: Option<u64>,
}

impl DomainFigures {
    /// Picks the fields we use out of a record's parameters; others, and values of a type
    /// that cannot be a count (double, string, negative), are ignored.
    pub fn parse(params: &[ffi::virTypedParameter]) -> DomainFigures {
        let mut figures = DomainFigures::default();
        for param in params {
            let mut name = [0u8; ffi::VIR_TYPED_PARAM_FIELD_LENGTH as usize];
            for (byte, c) in name.iter_mut().zip(&param.field) {
                *byte = c.to_ne_bytes()[0];
            }
            let len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
            let target = match &name[..len] {
                b"state.state" => {
                    figures.state = typed_u64(param).and_then(|v| u32::try_from(v).ok());
                    continue;
                }
                b"balloon.current" => &mut figures.current_kib,
                b"balloon.maximum" => &mut figures.maximum_kib,
                b"balloon.unused" => &mut figures.unused_kib,
                b"balloon.available" => &mut figures.available_kib,
                b"balloon.usable" => &mut figures.usable_kib,
                b"balloon.rss" => &mut figures.rss_kib,
                b"balloon.last-update" => &mut figures.last_update_s,
                b"balloon.swap_in" => &mut figures.swap_in_kib,
                b"balloon.swap_out" => &mut figures.swap_out_kib,
                b"balloon.major_fault" => &mut figures.major_faults,
                _ => continue,
            };
            *target = typed_u64(param);
        }
        figures
    }
}

/// A typed parameter's value as an unsigned integer, if it is one.
fn typed_u64(param: &ffi::virTypedParameter) -> Option<u64> {
    let kind = u32::try_from(param.type_).ok()?;
    // SAFETY: libvirt writes the union member that `type` names, and each arm reads only the
    // member of its own type; every bit pattern of these integer members is a valid value.
    unsafe {
        match kind {
            ffi::VIR_TYPED_PARAM_ULLONG => Some(param.value.ul),
            ffi::VIR_TYPED_PARAM_UINT => Some(u64::from(param.value.ui)),
            ffi::VIR_TYPED_PARAM_LLONG => u64::try_from(param.value.l).ok(),
            ffi::VIR_TYPED_PARAM_INT => u64::try_from(param.value.i).ok(),
            _ => None,
        }
    }
}

/// A domain reference (`virDomainPtr`).
pub struct Domain {
    ptr: NonNull<ffi::virDomain>,
}

// SAFETY: libvirt's public objects are thread-safe since 0.6.0: a `virDomainPtr` may be
// used from any thread, by several at once (its calls lock what they touch), and its reference
// is released once, by whichever thread drops the owning `Domain`. Errors are per thread
// (`virGetLastError`), and every call here reads its error on the thread that made it.
unsafe impl Send for Domain {}

/// `virDomainInfo`, in the daemon's units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainInfo {
    pub state: u8,
    pub max_memory_kib: u64,
    pub memory_kib: u64,
    pub vcpus: u16,
}

/// The values one `virDomainMemoryStats` call reported, by tag; `None` for a tag the guest
/// (or driver) did not report. Memory figures are KiB, faults are counts, LAST_UPDATE is epoch
/// seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    values: [Option<u64>; ffi::VIR_DOMAIN_MEMORY_STAT_NR as usize],
}

impl MemoryStats {
    pub fn get(&self, tag: ffi::virDomainMemoryStatTags) -> Option<u64> {
        self.values.get(usize::try_from(tag).ok()?).copied().flatten()
    }
}

impl Domain {
    /// The domain's name; borrowed from libvirt for as long as the handle lives.
    pub fn name(&self) -> Result<&CStr, LibvirtError> {
        // SAFETY: self.ptr is live; the returned string belongs to the domain object, which
        // our reference keeps alive for the lifetime of the borrow of self.
        let raw = unsafe { ffi::virDomainGetName(self.ptr.as_ptr()) };
        if raw.is_null() {
            return Err(LibvirtError::last("virDomainGetName"));
        }
        // SAFETY: non-null, NUL-terminated, valid while self lives (see above).
        Ok(unsafe { CStr::from_ptr(raw) })
    }

    /// The domain's UUID: its identity across renames, restarts of libvirtd and reconnects.
    pub fn uuid(&self) -> Result<[u8; 16], LibvirtError> {
        let mut uuid = [0u8; ffi::VIR_UUID_BUFLEN as usize];
        // SAFETY: self.ptr is live and uuid has the VIR_UUID_BUFLEN bytes libvirt writes.
        check(unsafe { ffi::virDomainGetUUID(self.ptr.as_ptr(), uuid.as_mut_ptr()) }, "virDomainGetUUID")?;
        Ok(uuid)
    }

    /// The running domain's ID. It changes each time the domain starts, so a new ID under
    /// the same UUID means the guest was restarted. Local to the handle: no round trip.
    pub fn id(&self) -> Option<u32> {
        // SAFETY: self.ptr is live.
        let id = unsafe { ffi::virDomainGetID(self.ptr.as_ptr()) };
        // (unsigned int)-1 is libvirt's "no ID": an inactive domain or an error.
        (id != u32::MAX).then_some(id)
    }

    pub fn info(&self) -> Result<DomainInfo, LibvirtError> {
        let mut info = ffi::virDomainInfo { state: 0, maxMem: 0, memory: 0, nrVirtCpu: 0, cpuTime: 0 };
        // SAFETY: self.ptr is live; info is a valid, writable virDomainInfo.
        check(unsafe { ffi::virDomainGetInfo(self.ptr.as_ptr(), &mut info) }, "virDomainGetInfo")?;
        Ok(DomainInfo {
            state: info.state,
            max_memory_kib: info.maxMem,
            memory_kib: info.memory,
            vcpus: info.nrVirtCpu,
        })
    }

    /// The most memory the domain may be given (KiB).
    pub fn max_memory_kib(&self) -> Result<u64, LibvirtError> {
        // SAFETY: self.ptr is live.
        let kib = unsafe { ffi::virDomainGetMaxMemory(self.ptr.as_ptr()) };
        if kib == 0 { Err(LibvirtError::last("virDomainGetMaxMemory")) } else { Ok(kib) }
    }

    /// The guest's balloon statistics.
    pub fn memory_stats(&self) -> Result<MemoryStats, LibvirtError> {
        const NR: usize = ffi::VIR_DOMAIN_MEMORY_STAT_NR as usize;
        let mut raw = [ffi::virDomainMemoryStatStruct { tag: 0, val: 0 }; NR];
        // SAFETY: self.ptr is live; raw has room for NR entries and we pass NR.
        let rc = unsafe {
            ffi::virDomainMemoryStats(self.ptr.as_ptr(), raw.as_mut_ptr(), ffi::VIR_DOMAIN_MEMORY_STAT_NR, 0)
        };
        let filled = usize::try_from(check(rc, "virDomainMemoryStats")?).unwrap_or(0).min(NR);
        let mut stats = MemoryStats::default();
        for entry in &raw[..filled] {
            if let Some(v) = usize::try_from(entry.tag).ok().and_then(|i| stats.values.get_mut(i)) {
                *v = Some(entry.val);
            }
        }
        Ok(stats)
    }

    /// Makes the guest report balloon statistics every `period_s` seconds (0 stops it), on the
    /// running domain only.
    pub fn set_memory_stats_period(&self, period_s: i32) -> Result<(), LibvirtError> {
        // SAFETY: self.ptr is live; plain integer arguments.
        let rc =
            unsafe { ffi::virDomainSetMemoryStatsPeriod(self.ptr.as_ptr(), period_s, ffi::VIR_DOMAIN_AFFECT_LIVE) };
        check(rc, "virDomainSetMemoryStatsPeriod").map(|_| ())
    }

    /// Sets the running domain's balloon target (KiB).
    pub fn set_memory_kib(&self, kib: u64) -> Result<(), LibvirtError> {
        // SAFETY: self.ptr is live; plain integer arguments.
        let rc = unsafe { ffi::virDomainSetMemoryFlags(self.ptr.as_ptr(), kib, ffi::VIR_DOMAIN_AFFECT_LIVE) };
        check(rc, "virDomainSetMemoryFlags").map(|_| ())
    }

    /// Releases the reference, reporting failure.
    pub fn close(self) -> Result<(), LibvirtError> {
        let ptr = self.ptr;
        std::mem::forget(self);
        // SAFETY: ptr was owned by the forgotten `self`, so it is released exactly once, here.
        unsafe { release(ptr, ffi::virDomainFree, "virDomainFree") }
    }
}

impl Drop for Domain {
    fn drop(&mut self) {
        // SAFETY: we own this reference; nothing uses it after drop.
        if let Err(e) = unsafe { release(self.ptr, ffi::virDomainFree, "virDomainFree") } {
            log::debug!("{e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// libvirt's built-in test driver: one running domain "test", 8 GiB max, 2 GiB current.
    fn default_test_driver() -> Connection {
        Connection::open("test:///default").unwrap()
    }

    fn the_test_domain(conn: &Connection) -> Domain {
        conn.list_active_domains().unwrap().find(|d| d.name().unwrap().to_bytes() == b"test").unwrap()
    }

    #[test]
    fn a_bad_uri_gives_libvirts_own_message() {
        let err = Connection::open("nosuchdriver:///x").err().unwrap();
        assert_eq!(err.operation, "virConnectOpen");
        assert_ne!(err.code, 0);
        assert!(!err.message().is_empty(), "{err}");
    }

    #[test]
    fn domains_are_listed_with_name_uuid_and_memory() {
        let conn = default_test_driver();
        assert!(conn.is_alive());
        let list = conn.list_active_domains().unwrap();
        assert!(!list.is_empty());
        let dom = the_test_domain(&conn);
        assert_eq!(dom.uuid().unwrap().len(), 16);
        assert_eq!(dom.max_memory_kib().unwrap(), 8 * 1024 * 1024);
        let info = dom.info().unwrap();
        assert_eq!(info.max_memory_kib, 8 * 1024 * 1024);
        dom.close().unwrap();
        conn.close().unwrap();
    }

    #[test]
    fn memory_stats_come_back_by_tag_in_kib() {
        let conn = default_test_driver();
        let dom = the_test_domain(&conn);
        dom.set_memory_stats_period(1).unwrap();
        let stats = dom.memory_stats().unwrap();
        let actual = stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON).unwrap();
        assert_eq!(stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_UNUSED), Some(actual / 2));
        assert!(stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE).is_some());
        assert_eq!(stats.get(999), None);
    }

    #[test]
    fn set_memory_changes_what_get_info_sees_and_over_max_fails() {
        let conn = Connection::open("test:///default").unwrap();
        let dom = the_test_domain(&conn);
        let before = dom.info().unwrap().memory_kib;
        let target = if before == 1024 * 1024 { 1536 * 1024 } else { 1024 * 1024 };
        dom.set_memory_kib(target).unwrap();
        assert_eq!(dom.info().unwrap().memory_kib, target);
        let err = dom.set_memory_kib(64 * 1024 * 1024).unwrap_err();
        assert_eq!(err.operation, "virDomainSetMemoryFlags");
        assert!(!err.message().is_empty());
        dom.set_memory_kib(before).unwrap();
    }

    fn param(name: &str, kind: u32, value: ffi::_virTypedParameter__bindgen_ty_1) -> ffi::virTypedParameter {
        let mut field = [0; ffi::VIR_TYPED_PARAM_FIELD_LENGTH as usize];
        for (c, b) in field.iter_mut().zip(name.bytes()) {
            *c = std::ffi::c_char::from_ne_bytes([b]);
        }
        ffi::virTypedParameter { field, type_: i32::try_from(kind).unwrap(), value }
    }

    fn ull(name: &str, v: u64) -> ffi::virTypedParameter {
        param(name, ffi::VIR_TYPED_PARAM_ULLONG, ffi::_virTypedParameter__bindgen_ty_1 { ul: v })
    }

    #[test]
    fn bulk_balloon_figures_are_picked_by_name_and_type() {
        // As the QEMU driver sends them (virsh domstats --state --balloon on a lab guest).
        let params = [
            param("state.state", ffi::VIR_TYPED_PARAM_INT, ffi::_virTypedParameter__bindgen_ty_1 { i: 1 }),
            param("state.reason", ffi::VIR_TYPED_PARAM_INT, ffi::_virTypedParameter__bindgen_ty_1 { i: 1 }),
            ull("balloon.current", 524_288),
            ull("balloon.maximum", 2_097_152),
            ull("balloon.swap_in", 0),
            ull("balloon.swap_out", 0),
            ull("balloon.major_fault", 140),
            ull("balloon.minor_fault", 43_811),
            ull("balloon.unused", 404_352),
            ull("balloon.available", 450_612),
            ull("balloon.usable", 391_004),
            ull("balloon.last-update", 1_763_870_000),
            ull("balloon.disk_caches", 9_636),
            ull("balloon.rss", 183_904),
        ];
        let f = DomainFigures::parse(&params);
        assert_eq!(
            f,
            DomainFigures {
                state: Some(ffi::VIR_DOMAIN_RUNNING),
                current_kib: Some(524_288),
                maximum_kib: Some(2_097_152),
                unused_kib: Some(404_352),
                available_kib: Some(450_612),
                usable_kib: Some(391_004),
                rss_kib: Some(183_904),
                last_update_s: Some(1_763_870_000),
                swap_in_kib: Some(0),
                swap_out_kib: Some(0),
                major_faults: Some(140),
            }
        );
    }

    #[test]
    fn figures_of_a_type_that_cannot_be_a_count_are_left_out() {
        let params = [
            param("balloon.current", ffi::VIR_TYPED_PARAM_DOUBLE, ffi::_virTypedParameter__bindgen_ty_1 { d: 1.5 }),
            param("balloon.unused", ffi::VIR_TYPED_PARAM_LLONG, ffi::_virTypedParameter__bindgen_ty_1 { l: -1 }),
            param("balloon.usable", ffi::VIR_TYPED_PARAM_UINT, ffi::_virTypedParameter__bindgen_ty_1 { ui: 7 }),
            // A name that fills the whole field, without a NUL.
            ull(&"b".repeat(80), 1),
            ull("balloon.currentx", 3),
        ];
        let f = DomainFigures::parse(&params);
        assert_eq!(f, DomainFigures { usable_kib: Some(7), ..DomainFigures::default() });
    }

    #[test]
    fn the_test_driver_gives_bulk_state_but_refuses_bulk_balloon_figures() {
        let conn = default_test_driver();
        let err = conn.all_domain_stats(StatsGroups::StateAndBalloon).err().unwrap();
        assert!(err.is_unsupported_stats(), "{err}");
        let list = conn.all_domain_stats(StatsGroups::State).unwrap();
        assert_eq!(list.len(), 1);
        let record = list.get(0).unwrap();
        assert_eq!(
            record.figures(),
            DomainFigures { state: Some(ffi::VIR_DOMAIN_RUNNING), ..DomainFigures::default() }
        );
        let dom = record.domain().unwrap();
        drop(list);
        // Our reference outlives the list's.
        assert_eq!(dom.name().unwrap().to_bytes(), b"test");
        assert!(dom.id().is_some());
        assert!(list_is_none_past_the_end(&conn));
    }

    fn list_is_none_past_the_end(conn: &Connection) -> bool {
        let list = conn.all_domain_stats(StatsGroups::State).unwrap();
        list.get(list.len()).is_none() && list.iter().count() == list.len()
    }

    #[test]
    fn the_library_version_is_the_one_linked() {
        let v = library_version().unwrap();
        assert!(v.major >= 9, "{v}");
        assert_eq!(LibvirtVersion::decode(9_000_000).to_string(), "9.0.0");
        assert_eq!(LibvirtVersion::decode(10_010_003).to_string(), "10.10.3");
    }

    #[test]
    fn keepalive_on_a_local_driver_is_reported_unsupported_not_an_error() {
        let conn = default_test_driver();
        assert_eq!(conn.set_keepalive(3, 3), Ok(Keepalive::Unsupported));
    }
}
