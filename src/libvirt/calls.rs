//! The libvirt calls that reach a guest's QEMU or libvirtd, made on worker threads under a
//! deadline.
//!
//! **A hung QEMU must not hang the daemon.** libvirt's QEMU monitor has no timeout: a call that
//! needs the monitor of a QEMU that stopped answering waits until it answers again. Measured
//! here: with one of two guests' QEMU stopped (SIGSTOP), the daemon's round waited 22 s, until
//! the QEMU was continued; the other guest was not served meanwhile and SIGTERM was not
//! obeyed. So every call that can reach a monitor (the bulk balloon listing, a domain's stats,
//! its stats period, a new balloon target) is made by a worker, and the loop waits for it at
//! most [`DEADLINE`]. A call that overruns is left to its worker; its domain (or the bulk
//! listing) is *busy* and gets no new call until that one returns. Stuck workers are not
//! replaced: libvirtd reads at most `max_client_requests` (default 5) calls of a connection at
//! once, and beyond that stops reading it at all (the keepalive included), so the workers never
//! have more than [`WORKERS`] calls in flight. With that many QEMUs hung at once, reads wait for
//! one of them to return.
//!
//! **A hung libvirtd must not hang the daemon either.** The round's listing is made by a worker
//! too: one that waits for no QEMU (the `state` group, the list of domains) and still overruns
//! means libvirtd itself is not answering (stopped, overloaded); the round is skipped and the
//! loop, and its stop, stay prompt. Before, the loop's own listing waited until keepalive closed
//! the connection: SIGTERM took 8.5 s to obey with libvirtd stopped.
//!
//! **Per-domain reads side by side.** Where a driver gives no bulk balloon figures, a round
//! costs one `virDomainMemoryStats` round trip per domain, and each waits on libvirtd's
//! wake-ups far more than on work (about 120 µs each over its socket on this 2-core host:
//! 30 ms for 256 domains one after another). libvirt's remote driver lets several threads have calls
//! in flight on one connection and libvirtd serves up to `max_client_requests` (default 5) of
//! a client's calls at once: [`WORKERS`] workers read side by side.
//!
//! Jobs are indexed by slot (a domain has at most one call outstanding), plus
//! [`BULK_LISTING`] and [`LISTING`]. A call's handles are moved into the job table and back, so a round
//! allocates nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::api::{Connection, Domain, DomainList, DomainStatsList, LibvirtError, MemoryStats, StatsGroups};
use super::ffi;
use crate::policy::MAX_DOMAINS;

/// Workers, hence calls in flight at most: one below libvirtd's default
/// `max_client_requests` (5), so that the loop's own calls still get through when every worker
/// is stuck on a hung QEMU. Measured over 256 test-driver domains (`libvirtd_tick`, same hour):
/// 1 worker 30 ms a round, 2 workers 23 ms, 4 workers 9–10 ms.
pub const WORKERS: usize = 4;

/// How long the loop waits for the calls of one batch (a round's reads, one target). A healthy
/// libvirtd answers in milliseconds; this only bounds what a hung QEMU can cost a round.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// The operation named in the error of a call that was never made: no worker was free before
/// its deadline (all stuck in calls on hung domains). Nothing was sent, so nothing is owed.
pub const NOT_STARTED: &str = "(not started)";

/// How often a wait that can be cancelled looks at its flag (a signal sets it; nothing can
/// wake a condition variable from a signal handler).
pub const CANCEL_CHECK: Duration = Duration::from_millis(50);

/// The job of the bulk listing, which waits for every QEMU (slots are `0..MAX_DOMAINS`).
pub const BULK_LISTING: usize = MAX_DOMAINS;
/// The job of a listing that only libvirtd answers (`state` group, or the list of domains):
/// one that overruns means libvirtd itself is not answering.
pub const LISTING: usize = MAX_DOMAINS + 1;
/// The job of a nudge (see [`NUDGE_EVERY`]).
const NUDGE: usize = MAX_DOMAINS + 2;
const JOBS: usize = MAX_DOMAINS + 3;

/// While calls of a batch are outstanding, a cheap call (the daemon's version) is made this
/// often, from an idle worker, to work around a lost wake-up in libvirt's client (9.0,
/// `virnetclient.c`): threads sharing a connection hand their calls to the one thread that
/// reads and writes its socket (the "buck" holder), waking it with `g_main_loop_quit`, but a
/// wake-up that arrives after the holder dropped the client's lock and before it entered
/// `g_main_loop_run` is lost, and the holder then waits only for what it polled for before
/// (a reply), not to send the new calls. Harmless while the holder's own reply is about to
/// arrive; when the holder's call is stuck on a hung QEMU, the other calls were not sent until
/// the next round's listing woke it: seen in libvirt's client log, a healthy guest's stats
/// call queued at .114 and sent two seconds later, every round, so it went unserved while
/// another QEMU hung (more often on a loaded host, where the holder is preempted inside that
/// window). Each nudge is one more wake-up, so a lost one costs this long, not a round.
pub const NUDGE_EVERY: Duration = Duration::from_millis(20);

/// The calls one domain needs this round, from what its slot already knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Want {
    /// `virDomainSetMemoryStatsPeriod` to this period: not set yet in this run.
    pub period_s: Option<i32>,
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
    /// The outcome of setting the stats period, if asked: a refusal is the domain's own
    /// problem, not a failed read.
    pub period: Option<Result<(), LibvirtError>>,
    pub max_kib: Option<u64>,
    pub stats: Option<MemoryStats>,
    /// The domain's size from `virDomainGetInfo`, for a domain without a balloon.
    pub fixed_kib: Option<u64>,
}

/// Makes the calls `want` asks for, on the calling thread. Stops at the first failed read:
/// its error is the one the caller sorts out (domain gone, connection dead, refused).
fn fetch(dom: &Domain, want: Want) -> Result<Fetched, LibvirtError> {
    let settled = |e| settle(dom, e);
    let period = want.period_s.map(|s| dom.set_memory_stats_period(s).map_err(settled));
    let max_kib = if want.max { Some(dom.max_memory_kib().map_err(settled)?) } else { None };
    let stats = if want.stats { Some(dom.memory_stats().map_err(settled)?) } else { None };
    let no_balloon = stats.is_some_and(|s| s.get(ffi::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON).is_none());
    let fixed_kib =
        if want.size_without_balloon && no_balloon { Some(dom.info().map_err(settled)?.memory_kib) } else { None };
    Ok(Fetched { period, max_kib, stats, fixed_kib })
}

/// Finds out, on the worker where a wait is allowed, whether a failed call's domain went away.
/// libvirt words both "the domain stopped" and some refusals of a running domain as "operation
/// invalid", so the domain's state is asked (one more call, on this rare path only); one that no
/// longer runs comes back as "no domain", libvirt's word for a domain that went away, with the
/// call's own message. The loop then makes no call to sort the error out.
fn settle(dom: &Domain, e: LibvirtError) -> LibvirtError {
    if !e.is_domain_inactive() {
        return e;
    }
    let gone = match dom.info() {
        // Shutting down or suspended to RAM is still a running domain refusing the call.
        Ok(info) => u32::from(info.state) == ffi::VIR_DOMAIN_SHUTOFF,
        Err(e) => e.is_no_domain(),
    };
    let mut e = e;
    if let (true, Ok(code)) = (gone, i32::try_from(ffi::VIR_ERR_NO_DOMAIN)) {
        e.code = code;
    }
    e
}

/// A call to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// The reads of one domain.
    Read(Want),
    /// `virDomainSetMemoryFlags` (live) to this many KiB.
    SetMemory(u64),
    /// `virConnectGetAllDomainStats` with these groups.
    List(StatsGroups),
    /// `virConnectListAllDomains` (active domains).
    ListAll,
    /// `virConnectGetLibVersion`: only its round trip matters (see [`NUDGE_EVERY`]).
    Nudge,
}

/// What a call returned.
pub enum Answer {
    Read(Fetched),
    SetMemory,
    List(DomainStatsList),
    ListAll(DomainList),
    Nudged,
}

/// A finished call with the handles it was lent.
pub struct Finished {
    pub domain: Option<Domain>,
    pub result: Result<Answer, LibvirtError>,
    /// How long after its batch's deadline it returned (zero if in time).
    pub late: Duration,
}

fn perform(call: Call, domain: Option<&Domain>, conn: Option<&Connection>) -> Result<Answer, LibvirtError> {
    let missing = |what| LibvirtError::new("(worker)", 0, 0, what);
    match call {
        Call::Read(want) => fetch(domain.ok_or_else(|| missing("no domain to read"))?, want).map(Answer::Read),
        // A refused target is reported as libvirt worded it (the coordinator logs it once).
        Call::SetMemory(kib) => {
            domain.ok_or_else(|| missing("no domain to resize"))?.set_memory_kib(kib).map(|()| Answer::SetMemory)
        }
        Call::List(groups) => {
            conn.ok_or_else(|| missing("no connection to list"))?.all_domain_stats(groups).map(Answer::List)
        }
        Call::ListAll => {
            conn.ok_or_else(|| missing("no connection to list"))?.list_active_domains().map(Answer::ListAll)
        }
        Call::Nudge => conn.ok_or_else(|| missing("no connection to nudge"))?.daemon_version().map(|_| Answer::Nudged),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Queued,
    Running,
    Done,
}

struct Job {
    state: State,
    call: Call,
    domain: Option<Domain>,
    conn: Option<Connection>,
    result: Option<Result<Answer, LibvirtError>>,
    /// Part of the batch the loop waits for.
    in_batch: bool,
    /// When the loop stopped waiting for it, if it overran.
    overran_at: Option<Instant>,
    late: Duration,
}

impl Job {
    // Job indices are queued as u16.
    const _FITS: () = assert!(JOBS <= u16::MAX as usize);

    const IDLE: Job = Job {
        state: State::Idle,
        call: Call::SetMemory(0),
        domain: None,
        conn: None,
        result: None,
        in_batch: false,
        overran_at: None,
        late: Duration::ZERO,
    };
}

/// What the loop and the workers share.
struct Table {
    jobs: Box<[Job; JOBS]>,
    /// Queued job indices, in order (a ring: each job is queued at most once at a time).
    queue: Box<[u16; JOBS]>,
    head: usize,
    queued: usize,
    /// Jobs of the current batch not done yet.
    outstanding: usize,
    /// Workers in a call, and those of them in a call that overran its deadline.
    running: usize,
    stuck: usize,
    workers: usize,
    stop: bool,
    /// The connection the calls are made on, for nudges; `None` while there is none.
    nudge_with: Option<Connection>,
    /// When the last nudge was queued.
    nudge_since: Option<Instant>,
}

impl Table {
    /// Workers held by calls that will not return soon: those that overran a deadline, and a
    /// nudge that has not returned after several periods (libvirtd hung, or its own wake-up
    /// lost): either way the worker is not coming back for this batch.
    fn held(&self) -> usize {
        let nudge_stuck = self.jobs[NUDGE].state == State::Running
            && self.nudge_since.is_some_and(|at| at.elapsed() > NUDGE_EVERY * 5);
        self.stuck + usize::from(nudge_stuck)
    }

    fn push(&mut self, i: usize) {
        let tail = (self.head + self.queued) % JOBS;
        self.queue[tail] = u16::try_from(i).unwrap_or(0);
        self.queued += 1;
    }

    fn pop(&mut self) -> Option<usize> {
        if self.queued == 0 {
            return None;
        }
        let i = usize::from(self.queue[self.head]);
        self.head = (self.head + 1) % JOBS;
        self.queued -= 1;
        Some(i)
    }
}

struct Shared {
    table: Mutex<Table>,
    /// Signalled when a batch of jobs is queued (or the workers must stop).
    queued: Condvar,
    /// Signalled when the last job of a batch is done.
    finished: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // Nothing panics while the lock is held; if something did, the table is still
        // consistent between two jobs: carry on rather than take the daemon down.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The workers and the job table.
pub struct Calls {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// No worker could be started: calls are made on the loop's thread, without a deadline.
    inline: bool,
}

impl Calls {
    /// Starts [`WORKERS`] workers; if the system refuses threads, calls are made inline (and a
    /// hung QEMU can hold the loop): the caller is told so by `Err`, with the inline `Calls`.
    pub fn start() -> Result<Calls, (Calls, std::io::Error)> {
        let mut calls = Calls::unstarted();
        for _ in 0..WORKERS {
            if let Err(e) = calls.add_worker()
                && calls.threads.is_empty()
            {
                calls.inline = true;
                return Err((calls, e));
            }
        }
        Ok(calls)
    }

    /// A job table without workers: calls are made inline until workers are added.
    fn unstarted() -> Calls {
        Calls {
            shared: Arc::new(Shared {
                table: Mutex::new(Table {
                    jobs: Box::new([const { Job::IDLE }; JOBS]),
                    queue: Box::new([0; JOBS]),
                    head: 0,
                    queued: 0,
                    outstanding: 0,
                    running: 0,
                    stuck: 0,
                    workers: 0,
                    stop: false,
                    nudge_with: None,
                    nudge_since: None,
                }),
                queued: Condvar::new(),
                finished: Condvar::new(),
            }),
            threads: Vec::with_capacity(WORKERS),
            inline: false,
        }
    }

    /// Calls made inline, on the caller's thread: what a backend keeps once its own `Calls`
    /// (and every handle in its job table) was handed to a thread to be released.
    pub fn inline() -> Calls {
        let mut calls = Calls::unstarted();
        calls.inline = true;
        calls
    }

    fn add_worker(&mut self) -> std::io::Result<()> {
        let shared = Arc::clone(&self.shared);
        let thread = std::thread::Builder::new()
            .name(format!("libvirt-call-{}", self.threads.len()))
            // A worker only makes libvirt calls: libvirt's client stack is shallow.
            .stack_size(256 * 1024)
            .spawn(move || work(&shared))?;
        self.threads.push(thread);
        self.shared.lock().workers += 1;
        Ok(())
    }

    /// The connection calls are made on from now on (nudges go to it), or `None` once it is
    /// lost.
    pub fn set_connection(&self, conn: Option<Connection>) {
        let old = std::mem::replace(&mut self.shared.lock().nudge_with, conn);
        // Released without the lock: the last reference closes the connection.
        drop(old);
    }

    /// Whether job `i` has a call that overran and has not returned yet.
    pub fn busy(&self, i: usize) -> bool {
        matches!(self.shared.lock().jobs.get(i).map(|j| j.state), Some(State::Queued | State::Running))
    }

    /// A call that overran an earlier deadline and has returned since: its late result, which
    /// nobody waits for any more.
    pub fn returned_late(&self, i: usize) -> Option<Finished> {
        let mut t = self.shared.lock();
        let job = t.jobs.get_mut(i)?;
        if job.state != State::Done || job.overran_at.is_none() {
            return None;
        }
        job.overran_at = None;
        job.state = State::Idle;
        Some(Finished { domain: job.domain.take(), result: job.result.take()?, late: job.late })
    }

    /// Queues `call` as job `i` (which must not be busy) for the next [`Calls::wait`]; made at
    /// once where there are no workers. Handles it is lent come back with [`Calls::take`].
    pub fn submit(&self, i: usize, call: Call, domain: Option<Domain>, conn: Option<Connection>) {
        if self.inline {
            let result = perform(call, domain.as_ref(), conn.as_ref());
            let mut t = self.shared.lock();
            let Some(job) = t.jobs.get_mut(i) else { return };
            *job = Job { state: State::Done, call, domain, result: Some(result), ..Job::IDLE };
            return;
        }
        let mut t = self.shared.lock();
        let Some(job) = t.jobs.get_mut(i) else { return };
        if matches!(job.state, State::Queued | State::Running) {
            // The caller checks `busy` first; a handle lent here would be lost to it.
            return;
        }
        // A late result nobody collected (it returned while the loop waited for another
        // call): released without the lock, like every result.
        let stale =
            std::mem::replace(job, Job { state: State::Queued, call, domain, conn, in_batch: true, ..Job::IDLE });
        t.outstanding += 1;
        t.push(i);
        drop(t);
        drop(stale);
        // The workers are woken once, by `wait`: a wake-up per call cost each its own futex
        // call and let the first workers fight the loop for the lock while it queued the rest.
    }

    /// Waits until every job submitted since the last wait is done, or until `deadline`, or
    /// until `cancel` is set (checked every [`CANCEL_CHECK`]), or at once while every worker is
    /// stuck in a call that overran. Jobs not started by then are called off; jobs still running
    /// are left to their workers (busy until they return).
    pub fn wait(&self, deadline: Instant, cancel: Option<&AtomicBool>) {
        let mut t = self.shared.lock();
        if t.queued > 0 {
            self.shared.queued.notify_all();
        }
        let mut nudge_at = Instant::now() + NUDGE_EVERY;
        while t.outstanding > 0 && !cancel.is_some_and(|c| c.load(Ordering::Relaxed)) && t.held() < t.workers {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if now >= nudge_at {
                self.nudge(&mut t);
                nudge_at = now + NUDGE_EVERY;
            }
            let mut slice = (deadline - now).min(nudge_at - now);
            if cancel.is_some() {
                slice = slice.min(CANCEL_CHECK);
            }
            t = self.shared.finished.wait_timeout(t, slice).unwrap_or_else(PoisonError::into_inner).0;
        }
        if t.outstanding == 0 {
            return;
        }
        let now = Instant::now();
        let mut overran = 0;
        for job in t.jobs.iter_mut().filter(|j| j.in_batch) {
            job.in_batch = false;
            match job.state {
                // Never started (every worker busy): nothing was sent, so nothing is owed.
                State::Queued => {
                    job.state = State::Done;
                    job.result = Some(Err(LibvirtError::new(
                        NOT_STARTED,
                        0,
                        0,
                        "no worker was free before the deadline (calls on hung domains hold them)",
                    )));
                }
                _ => {
                    job.overran_at = Some(now);
                    overran += 1;
                }
            }
        }
        t.stuck += overran;
        t.queued = 0;
        t.outstanding = 0;
        // A nudge still queued is dropped with the queue: its job must not stay "queued" (no
        // nudge would follow) holding a connection.
        let stranded = if t.jobs[NUDGE].state == State::Queued {
            t.jobs[NUDGE].state = State::Idle;
            t.jobs[NUDGE].conn.take()
        } else {
            None
        };
        drop(t);
        // Never the last reference (the table's own `nudge_with` holds one): no call to libvirtd.
        drop(stranded);
    }

    /// Queues a nudge ([`NUDGE_EVERY`]) if there is a connection, no nudge is under way and a
    /// worker is idle to make it (the batch's own calls come first). Outside the batch: nobody
    /// waits for it.
    fn nudge(&self, t: &mut MutexGuard<'_, Table>) {
        let idle = t.workers.saturating_sub(t.running) > t.queued;
        let free = !matches!(t.jobs[NUDGE].state, State::Queued | State::Running);
        if !idle || !free {
            return;
        }
        let Some(conn) = t.nudge_with.as_ref().and_then(|c| c.try_clone().ok()) else { return };
        t.jobs[NUDGE] = Job { state: State::Queued, call: Call::Nudge, conn: Some(conn), ..Job::IDLE };
        t.nudge_since = Some(Instant::now());
        t.push(NUDGE);
        self.shared.queued.notify_one();
    }

    /// Job `i`'s result, if it finished within its batch; `None` if it overran (it is then
    /// busy) or was never submitted.
    pub fn take(&self, i: usize) -> Option<Finished> {
        let mut t = self.shared.lock();
        let job = t.jobs.get_mut(i)?;
        if job.state != State::Done || job.overran_at.is_some() {
            return None;
        }
        job.state = State::Idle;
        let conn = job.conn.take();
        let finished = Finished { domain: job.domain.take(), result: job.result.take()?, late: Duration::ZERO };
        drop(t);
        // Released without the lock: the last reference closes the connection.
        drop(conn);
        Some(finished)
    }

    /// Submits one call and waits for it (at most until `deadline`, or until `cancel`).
    pub fn call(
        &self,
        i: usize,
        call: Call,
        lent: (Option<Domain>, Option<Connection>),
        deadline: Instant,
        cancel: Option<&AtomicBool>,
    ) -> Option<Finished> {
        self.submit(i, call, lent.0, lent.1);
        self.wait(deadline, cancel);
        self.take(i)
    }
}

impl Drop for Calls {
    fn drop(&mut self) {
        let running = {
            let mut t = self.shared.lock();
            t.stop = true;
            t.running
        };
        self.shared.queued.notify_all();
        // A worker stuck in a hung call cannot be joined: it ends when its call returns (or
        // with the process). The others are joined, so a dropped backend leaves no threads.
        if running == 0 {
            for thread in self.threads.drain(..) {
                // A worker that panicked has nothing left to clean up.
                let _ = thread.join();
            }
        }
    }
}

/// A worker's life: take the next queued job, make its call without the lock, put the result
/// back; sleep while nothing is queued.
fn work(shared: &Shared) {
    let mut t = shared.lock();
    loop {
        if t.stop {
            return;
        }
        let Some(i) = t.pop() else {
            t = shared.queued.wait(t).unwrap_or_else(PoisonError::into_inner);
            continue;
        };
        let job = &mut t.jobs[i];
        if job.state != State::Queued {
            continue;
        }
        job.state = State::Running;
        let (call, domain, conn) = (job.call, job.domain.take(), job.conn.take());
        t.running += 1;
        drop(t);
        let result = perform(call, domain.as_ref(), conn.as_ref());
        drop(conn);
        t = shared.lock();
        t.running -= 1;
        let job = &mut t.jobs[i];
        job.domain = domain;
        job.result = Some(result);
        job.state = State::Done;
        let overran = job.overran_at.inspect(|at| job.late = at.elapsed()).is_some();
        let in_batch = std::mem::replace(&mut job.in_batch, false);
        if overran {
            t.stuck = t.stuck.saturating_sub(1);
        }
        if in_batch {
            t.outstanding -= 1;
            if t.outstanding == 0 {
                shared.finished.notify_one();
            }
        }
    }
}
