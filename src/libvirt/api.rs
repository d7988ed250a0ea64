//! The safe layer over libvirt's C API. Every `unsafe` block of the crate's libvirt support is
//! in this file, each with the reason it is sound.
//!
//! Handles own their libvirt references: `Drop` releases them and never panics; `close()`
//! releases them and reports failure. Every return code is checked; errors carry what
//! `virGetLastError()` said, copied into a fixed buffer (no heap), or a fallback when libvirt
//! left no error behind.

use std::ffi::{CStr, CString, c_int, c_void};
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
        LibvirtError { operation, code: err.code, domain: err.domain, message }
    }

    pub fn new(operation: &'static str, code: i32, domain: i32, message: &str) -> LibvirtError {
        LibvirtError { operation, code, domain, message: FixedText::new(message) }
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
/// error printing, register its default event loop and run that loop on a thread (keepalive
/// needs one). Idempotent.
pub fn init() -> Result<(), LibvirtError> {
    static INIT: OnceLock<Result<(), LibvirtError>> = OnceLock::new();
    *INIT.get_or_init(|| {
        // SAFETY: a null user-data pointer and a handler that never touches its arguments;
        // virSetErrorFunc only stores both.
        unsafe { ffi::virSetErrorFunc(ptr::null_mut(), Some(ignore_error)) };
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

/// An open connection to a hypervisor (`virConnectPtr`).
pub struct Connection {
    ptr: NonNull<ffi::virConnect>,
}

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
        init()?;
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

/// A domain reference (`virDomainPtr`).
pub struct Domain {
    ptr: NonNull<ffi::virDomain>,
}

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

    #[test]
    fn keepalive_on_a_local_driver_is_reported_unsupported_not_an_error() {
        let conn = default_test_driver();
        assert_eq!(conn.set_keepalive(3, 3), Ok(Keepalive::Unsupported));
    }
}
