//! Per-domain reads, several in flight at once.
//!
//! Where a driver gives no bulk balloon figures, a round costs one `virDomainMemoryStats`
//! round trip per domain, and each waits on libvirtd's wake-ups far more than on work: over
//! its RPC socket, 110–170 µs each on a 2-core host, so 256 domains read one after another
//! cost about 37 ms. libvirt's remote driver lets several threads have calls in flight on one
//! connection (it drops its lock during the RPC) and libvirtd serves up to
//! `max_client_requests` (5 by default) of one client's calls at once: [`READERS`] threads
//! reading side by side cut that round to a quarter.
//!
//! The threads are started once, the first time a round has enough reads to share, and live
//! as long as the backend: a round hands them the domains by moving the handles into a table
//! they share, so it allocates nothing.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use super::api::{Domain, LibvirtError, MemoryStats};
use super::ffi;
use crate::policy::MAX_DOMAINS;

/// Reading threads. libvirtd serves at most `max_client_requests` (default 5) calls of one
/// client at once, and the keepalive needs one of them: more threads would only queue there.
pub const READERS: usize = 4;

/// Below this many reads a round reads on its own thread: waking the readers costs more than
/// it saves.
pub const SHARE_FROM: usize = 8;

/// The calls one domain needs this round, from what its slot already knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Want {
    /// `virDomainGetMaxMemory`: the maximum is not known yet.
    pub max: bool,
    /// `virDomainMemoryStats`.
    pub stats: bool,
    /// `virDomainGetInfo` if the stats carry no balloon size (no balloon device): the size it
    /// started with is then its size for the whole run.
    pub size_without_balloon: bool,
}

/// What the calls of one domain returned.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fetched {
    pub max_kib: Option<u64>,
    pub stats: Option<MemoryStats>,
    /// The domain's size from `virDomainGetInfo`, for a domain without a balloon.
    pub fixed_kib: Option<u64>,
}

/// Makes the calls `want` asks for, on the calling thread. Stops at the first failure: its
/// error is the one the caller sorts out (domain gone, connection dead, refused).
pub fn fetch(dom: &Domain, want: Want) -> Result<Fetched, LibvirtError> {
    let max_kib = if want.max { Some(dom.max_memory_kib()?) } else { None };
    let stats = if want.stats { Some(dom.memory_stats()?) } else { None };
    let no_balloon = stats.is_some_and(|s| s.get(ffi::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON).is_none());
    let fixed_kib = if want.size_without_balloon && no_balloon { Some(dom.info()?.memory_kib) } else { None };
    Ok(Fetched { max_kib, stats, fixed_kib })
}

/// One domain's read: the handle is lent to a reader and given back with the result.
pub struct Job {
    pub domain: Option<Domain>,
    pub want: Want,
    pub result: Option<Result<Fetched, LibvirtError>>,
}

impl Job {
    pub const EMPTY: Job =
        Job { domain: None, want: Want { max: false, stats: false, size_without_balloon: false }, result: None };
}

/// The round the readers share.
struct Round {
    jobs: Box<[Job; MAX_DOMAINS]>,
    /// Jobs of this round: `jobs[..len]`.
    len: usize,
    /// The next job nobody has taken.
    next: usize,
    /// Jobs finished.
    done: usize,
    stop: bool,
}

struct Shared {
    round: Mutex<Round>,
    /// Signalled when a round begins (or the readers must stop).
    begun: Condvar,
    /// Signalled when the last job of a round is done.
    finished: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Round> {
        // A reader never panics while holding the lock (nothing in it can), but if one did, the
        // table is still consistent between jobs: carry on rather than take the daemon down.
        self.round.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The reading threads and the job table they share.
pub struct Readers {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Readers {
    /// Starts [`READERS`] threads. `Err` if the system refuses a thread (the caller then reads
    /// on its own thread).
    pub fn start() -> std::io::Result<Readers> {
        let shared = Arc::new(Shared {
            round: Mutex::new(Round {
                jobs: Box::new([const { Job::EMPTY }; MAX_DOMAINS]),
                len: 0,
                next: 0,
                done: 0,
                stop: false,
            }),
            begun: Condvar::new(),
            finished: Condvar::new(),
        });
        let mut readers = Readers { shared, threads: Vec::with_capacity(READERS) };
        for i in 0..READERS {
            let shared = Arc::clone(&readers.shared);
            let thread = std::thread::Builder::new()
                .name(format!("libvirt-read-{i}"))
                // Each reader only makes libvirt calls: libvirt's client stack is shallow.
                .stack_size(256 * 1024)
                .spawn(move || read_until_stopped(&shared))?;
            readers.threads.push(thread);
        }
        Ok(readers)
    }

    /// Runs `jobs` (at most [`MAX_DOMAINS`]) on the readers and returns when every one is
    /// done, each with its handle and result back in place.
    pub fn run(&self, jobs: &mut [Job]) {
        let len = jobs.len().min(MAX_DOMAINS);
        let mut round = self.shared.lock();
        for (shared, job) in round.jobs.iter_mut().zip(jobs.iter_mut()) {
            std::mem::swap(shared, job);
        }
        round.len = len;
        round.next = 0;
        round.done = 0;
        self.shared.begun.notify_all();
        while round.done < round.len {
            round = self.shared.finished.wait(round).unwrap_or_else(PoisonError::into_inner);
        }
        round.len = 0;
        for (shared, job) in round.jobs.iter_mut().zip(jobs.iter_mut()) {
            std::mem::swap(shared, job);
        }
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.begun.notify_all();
        for thread in self.threads.drain(..) {
            // A reader that panicked has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

/// A reader's life: take the next job of the round, make its calls without the lock, put the
/// result back; sleep between rounds.
fn read_until_stopped(shared: &Shared) {
    let mut round = shared.lock();
    loop {
        if round.stop {
            return;
        }
        if round.next >= round.len {
            round = shared.begun.wait(round).unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        let i = round.next;
        round.next += 1;
        let job = &mut round.jobs[i];
        let (domain, want) = (job.domain.take(), job.want);
        drop(round);
        let result = domain.as_ref().map(|dom| fetch(dom, want));
        round = shared.lock();
        let job = &mut round.jobs[i];
        job.domain = domain;
        job.result = result;
        round.done += 1;
        if round.done == round.len {
            shared.finished.notify_one();
        }
    }
}
