//! A global allocator that counts this thread's allocations, so a test can prove a code path
//! allocates nothing while other test threads run; and, while asked to, the allocations of the
//! libvirt backend's worker threads, which make calls on the loop's behalf.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The name the libvirt backend gives its worker threads (`libvirt-call-N`).
const WORKER_THREAD: &[u8] = b"libvirt-call-";

static WATCH_WORKERS: AtomicBool = AtomicBool::new(false);
static WORKER_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Whether the calling thread is one of the libvirt backend's worker threads. Asked at each
/// allocation rather than remembered, so a thread is judged by the name it has now.
fn on_worker_thread() -> bool {
    let mut name = [0u8; 16];
    // SAFETY: PR_GET_NAME writes at most 16 bytes (NUL included) into the buffer it is given,
    // which has 16; it does not allocate.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::prctl(libc::PR_GET_NAME, name.as_mut_ptr()) };
    rc == 0 && name.starts_with(WORKER_THREAD)
}

pub struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn count(size: usize) {
    // try_with: the thread-local may already be gone while a thread shuts down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    let _ = BYTES.try_with(|b| b.set(b.get() + size as u64));
    if WATCH_WORKERS.load(Ordering::Relaxed) && on_worker_thread() {
        WORKER_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// (allocations, bytes) made by this thread while `f` ran.
pub fn allocations_during<T>(f: impl FnOnce() -> T) -> (u64, u64, T) {
    let a0 = ALLOCATIONS.with(Cell::get);
    let b0 = BYTES.with(Cell::get);
    let out = f();
    (ALLOCATIONS.with(Cell::get) - a0, BYTES.with(Cell::get) - b0, out)
}

/// As [`allocations_during`], plus how many allocations the libvirt backend's workers made
/// meanwhile (their calls are part of the round).
#[allow(dead_code)]
pub fn allocations_with_workers_during<T>(f: impl FnOnce() -> T) -> (u64, u64, u64, T) {
    let r0 = WORKER_ALLOCATIONS.load(Ordering::Relaxed);
    WATCH_WORKERS.store(true, Ordering::Relaxed);
    let (allocations, bytes, out) = allocations_during(f);
    WATCH_WORKERS.store(false, Ordering::Relaxed);
    (allocations, bytes, WORKER_ALLOCATIONS.load(Ordering::Relaxed) - r0, out)
}

/// The logger as main.rs builds it (level Info, millisecond timestamps, no target, writing to
/// stderr), with this process's stderr sent to a temporary file: a test harness's captured
/// output is a growing Vec, the daemon's stderr is not. Returns the file, to see what was
/// logged. Once per process: it installs the global logger.
pub fn info_logger_to_file() -> std::fs::File {
    let file = tempfile::tempfile().unwrap();
    // SAFETY: dup2 on two descriptors this process owns; fd 2 is replaced atomically.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), 2) };
    assert_eq!(rc, 2, "dup2");
    env_logger::Builder::new()
        .filter_level(log::LevelFilter::Info)
        .format_timestamp_millis()
        .format_target(false)
        .init();
    file
}
