//! The libvirt backend: reads every running domain's balloon figures, sets each domain's stats
//! period once, applies targets with `virDomainSetMemoryFlags` (live), and survives libvirtd
//! restarts by reconnecting with backoff. No `unsafe` here: everything goes through the safe
//! layer in `api`.
//!
//! # What a round costs
//! Each connection finds out once, on its first round, how the driver gives figures:
//! - **bulk** (the QEMU driver): one `virConnectGetAllDomainStats` call (groups `state` and
//!   `balloon`) carries every domain's state, balloon size, maximum and guest statistics: one
//!   round trip to libvirtd per round, whatever the number of domains, plus one
//!   `virDomainMemoryStats` for each domain whose balloon we moved in the last rounds (bulk
//!   figures show a balloon's move up to a second late, see [`LIVE_READS_AFTER_APPLY`]);
//! - **per domain** (libvirt 9.0's test driver gives bulk `state` only): the bulk call lists
//!   the domains with their state, then one `virDomainMemoryStats` per domain;
//! - **list** (a driver without bulk statistics): `virConnectListAllDomains`, then one
//!   `virDomainMemoryStats` per domain.
//!
//! Every call that can reach a guest's QEMU (the bulk balloon listing, a domain's stats, its
//! stats period, a new target) is made on worker threads under a deadline (`calls.rs`): a
//! hung QEMU costs one round at most [`DEADLINE`], then only its own domain goes unserved
//! (busy until its stuck call returns) while the others are served; a bulk listing stuck on
//! it gives way to per-domain reading until it returns. Per-domain reads run side by side on
//! those workers: 256 of them cost about a quarter of reading one after another.
//!
//! Nothing that cannot have changed is read again. A domain's name, UUID and ID come with its
//! handle (no round trip). Its stats period is set once per domain run and connection. Its
//! maximum memory (per-domain reading) is read when it is first seen, after it restarted (a new
//! ID under the same UUID), after a reconnect and after a target was rejected: a running
//! domain's maximum changes only by memory hot-plug, which the bulk reading sees every round
//! and the per-domain reading sees at the first rejected grow. A domain without a balloon
//! keeps the size it started with and is not read again until it restarts.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use super::api::{
    Connection, Domain, DomainFigures, DomainList, DomainStatsList, Keepalive, LibvirtError, MemoryStats, StatsGroups,
};
use super::calls::{
    Answer, BULK_LISTING, CANCEL_CHECK, Call, Calls, DEADLINE, Fetched, Finished, LISTING, NOT_STARTED, Want,
};
use super::ffi;
use crate::backoff::Backoff;
use crate::complaint::Complaint;
use crate::coordinator::{Backend, Roster};
use crate::policy::{MAX_DOMAINS, VmStats};
use crate::slots::SlotTable;
use crate::text::VmName;

/// Keepalive on connections over a network: probe every 3 s, give up after 3 missed answers (a
/// lost peer is noticed within about 12 s, even in the middle of a call; a daemon that exits is
/// noticed at the next call).
const KEEPALIVE_INTERVAL_S: i32 = 3;
const KEEPALIVE_COUNT: u32 = 3;

/// Reconnection attempts wait at most this long (1 s, 2 s, then 3 s apart): against a daemon
/// that is down an attempt costs one refused connect(), and a daemon that is back must be
/// served again within a few seconds.
const RECONNECT_MAX: Duration = Duration::from_secs(3);

/// Rounds after a target was set during which the bulk reading reads that domain's balloon
/// size live (one `virDomainMemoryStats`), unless it is there sooner. Bulk `balloon.current` is
/// libvirt's copy, updated from QEMU's BALLOON_CHANGE events, which QEMU sends at most once a
/// second: measured on a lab guest, it showed a new size 1.0 s after the move, the live size
/// 0.2 s after. The policy must see its own moves as they land.
const LIVE_READS_AFTER_APPLY: u8 = 3;

/// Errors of the libvirt backend.
#[derive(Debug, Clone, Copy)]
pub enum LibvirtBackendError {
    /// The first connection failed: the daemon cannot start.
    Connect(LibvirtError),
    /// The connection died; reconnection is under way.
    ConnectionLost(LibvirtError),
    /// Not connected; the next attempt is due in this long.
    Reconnecting(Duration),
    /// Not connected; an attempt has waited this long for the daemon to answer.
    Opening(Duration),
    /// Listing domains failed on a live connection.
    List(LibvirtError),
    /// A call on one domain failed.
    Domain(LibvirtError),
    /// No domain in this slot (it went away this round).
    NoDomain(usize),
    /// A call on this domain did not return within the deadline (its QEMU is probably hung).
    Unanswered(VmName),
    /// The domain listing, which no QEMU can hold, did not return within the deadline.
    DaemonUnanswered,
    /// Every worker is held by a call libvirt has not answered: nothing can be asked.
    WorkersHeld,
}

impl fmt::Display for LibvirtBackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) if e.is_permission_denied() => write!(
                f,
                "cannot connect to libvirt: {e} (this user may not manage VMs there: run as root or as a \
                 member of the libvirt group, or see --connect)"
            ),
            Self::Connect(e) => write!(f, "cannot connect to libvirt: {e} (is libvirtd running? see --connect)"),
            Self::ConnectionLost(e) => write!(f, "lost the libvirt connection ({e}); reconnecting"),
            Self::Reconnecting(d) => write!(f, "not connected to libvirt; next attempt in {} s", d.as_secs()),
            Self::Opening(d) => write!(
                f,
                "not connected to libvirt: a connection attempt has not been answered for {} s (libvirtd is \
                 probably hung)",
                d.as_secs()
            ),
            Self::List(e) => write!(f, "cannot list domains: {e}"),
            Self::Domain(e) => e.fmt(f),
            Self::NoDomain(slot) => write!(f, "no domain in slot {slot} any more"),
            Self::Unanswered(name) => write!(
                f,
                "libvirt did not answer within {} s for {name} (its QEMU is probably hung): not served until it answers",
                DEADLINE.as_secs()
            ),
            Self::DaemonUnanswered => {
                write!(f, "libvirt has not answered the domain listing (libvirtd is probably hung or overloaded)")
            }
            Self::WorkersHeld => write!(
                f,
                "every libvirt call in flight ({}) is stuck (hung QEMUs, or libvirtd itself): nothing more is asked \
                 until one returns",
                super::calls::WORKERS
            ),
        }
    }
}

impl std::error::Error for LibvirtBackendError {}

/// How this connection reads the domains' figures; found out on its first round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// Not known yet: a fresh connection.
    Unknown,
    /// One `virConnectGetAllDomainStats` (state and balloon) per round.
    Bulk,
    /// Bulk state, then one `virDomainMemoryStats` per domain.
    StatePerDomain,
    /// `virConnectListAllDomains`, then one `virDomainMemoryStats` per domain.
    ListPerDomain,
}

impl Reading {
    fn describe(self) -> &'static str {
        match self {
            Reading::Unknown => "not known yet",
            Reading::Bulk => "every domain's balloon figures in one virConnectGetAllDomainStats call per round",
            Reading::StatePerDomain => {
                "no bulk balloon figures on this driver: bulk state, then one virDomainMemoryStats per domain"
            }
            Reading::ListPerDomain => {
                "no bulk statistics on this driver: virConnectListAllDomains, then one virDomainMemoryStats per domain"
            }
        }
    }
}

/// One round's domains as the driver listed them.
enum Listing {
    Stats(DomainStatsList),
    Domains(DomainList),
}

/// What became of a round's bulk call.
enum Bulk {
    Answered(DomainStatsList),
    /// Not made this round: the call of an earlier round has not returned yet, or every worker
    /// is held by a stuck call.
    NotMade,
    /// It did not return within the deadline (or a stop cut the wait).
    Overran,
}

/// Why a round has no listing.
enum NoListing {
    Failed(LibvirtError),
    /// A listing that waits for no QEMU did not return in time (libvirtd hangs), or a stop
    /// cut the wait.
    Unanswered,
    /// Every worker is held by a call libvirt has not answered.
    WorkersHeld,
}

impl From<LibvirtError> for NoListing {
    fn from(e: LibvirtError) -> NoListing {
        NoListing::Failed(e)
    }
}

/// What a failed call on one domain turned out to be.
enum Failure {
    /// The domain stopped or was undefined meanwhile.
    Gone,
    /// A problem of the domain's own, logged.
    Logged,
}

/// Where a domain's stats period stands in its current run and connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Period {
    Unset,
    Set,
    /// Refused (no balloon device, most likely): logged once, not tried again this run.
    Refused,
}

/// What the backend knows of the domain in one slot.
struct SlotState {
    /// The handle listed this round, for `apply`.
    domain: Option<Domain>,
    /// The ID of the domain's current run.
    id: Option<u32>,
    name: VmName,
    period: Period,
    /// Maximum memory, for per-domain reading (bulk figures carry it).
    max_kib: Option<u64>,
    /// The size of a domain without a balloon: it cannot change while the domain runs.
    fixed_kib: Option<u64>,
    paused: bool,
    /// The target last set, and how many more rounds the bulk reading reads the size live.
    target_kib: Option<u64>,
    live_reads: u8,
    /// The last problem logged at warning level, so a lasting one is logged once.
    complaint: Complaint<(&'static str, i32)>,
    /// Since when a call on it has overrun its deadline without returning (a hung QEMU).
    hung_since: Option<Instant>,
}

impl SlotState {
    const EMPTY: SlotState = SlotState {
        domain: None,
        id: None,
        name: VmName::EMPTY,
        period: Period::Unset,
        max_kib: None,
        fixed_kib: None,
        paused: false,
        target_kib: None,
        live_reads: 0,
        complaint: Complaint::NONE,
        hung_since: None,
    };

    /// Forgets everything learnt of the domain's previous run or connection.
    fn forget_run(&mut self) {
        self.period = Period::Unset;
        self.max_kib = None;
        self.fixed_kib = None;
    }
}

/// A domain admitted to this round.
struct Pending {
    slot: usize,
    /// Its figures from the bulk listing, if the driver gives them.
    bulk: Option<VmStats>,
    paused: bool,
    /// Its handle, when it needs no call this round (else the handle is lent to its call).
    domain: Option<Domain>,
}

impl Pending {
    const EMPTY: Pending = Pending { slot: 0, bulk: None, paused: false, domain: None };
}

/// A connection being opened on a thread of its own: a daemon that accepts and then does not
/// answer (stopped, or a tunnel to one) would hold `virConnectOpen`, and with it the loop and
/// its stop, for as long as it hangs. The daemon's first connection and every reconnection are
/// made so; a reconnection that overruns is looked at again each round, and no other is started
/// meanwhile.
struct Opening {
    answer: mpsc::Receiver<Result<Connection, LibvirtError>>,
    since: Instant,
}

impl Opening {
    fn start(uri: &str) -> std::io::Result<Opening> {
        let (tx, answer) = mpsc::channel();
        let uri = uri.to_owned();
        std::thread::Builder::new().name("libvirt-connect".into()).spawn(move || {
            // The receiver may be gone (the daemon stopped): the connection is then dropped.
            let _ = tx.send(open(&uri));
        })?;
        Ok(Opening { answer, since: Instant::now() })
    }

    /// The attempt's outcome, waiting for it until `until` or until `cancel` is set. `None`
    /// while it is still under way.
    fn wait(&self, until: Instant, cancel: Option<&AtomicBool>) -> Option<Result<Connection, LibvirtError>> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.answer.recv_timeout(left.min(CANCEL_CHECK)) {
                Ok(answer) => return Some(answer),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Some(Err(LibvirtError::new("virConnectOpen", 0, 0, "the connecting thread ended")));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if left.is_zero() || cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                        return None;
                    }
                }
            }
        }
    }
}

/// The backend over one libvirt connection.
pub struct LibvirtBackend {
    uri: String,
    conn: Option<Connection>,
    /// A reconnection under way, while the connection is lost.
    opening: Option<Opening>,
    reading: Reading,
    stats_period_s: i32,
    slots: SlotTable<[u8; 16]>,
    state: Box<[SlotState; MAX_DOMAINS]>,
    backoff: Backoff,
    full_warned: bool,
    /// This round's admitted domains.
    pending: Box<[Pending; MAX_DOMAINS]>,
    /// The workers that make calls which can reach a QEMU.
    calls: Calls,
    /// Set when the daemon is asked to stop.
    stop: Option<Arc<AtomicBool>>,
    /// Whether a stop cuts this round's waits short: only in a round begun before the stop.
    /// A round begun after it (the last reading, for `--restore-on-exit`) waits for answers.
    cancellable: bool,
    /// Fault injection for tests: runs after the domains are listed, before any is read.
    after_listing: Option<Box<dyn FnMut()>>,
}

impl LibvirtBackend {
    /// Connects to `uri`; guests will report stats every `stats_period_s` seconds.
    pub fn connect(uri: &str, stats_period_s: u64) -> Result<LibvirtBackend, LibvirtBackendError> {
        let conn = open(uri).map_err(LibvirtBackendError::Connect)?;
        Ok(Self::over(uri, conn, stats_period_s))
    }

    /// Connects as the daemon does: like [`LibvirtBackend::connect`], but a daemon that accepts
    /// the connection and does not answer (stopped, or still starting) is waited for as long as
    /// it takes, with one warning, and `stop` (SIGINT, SIGTERM) ends the wait at once: `None`.
    /// Once connected, `stop` also cuts a round's waits short
    /// ([`LibvirtBackend::give_up_reads_on`]).
    pub fn connect_or_stop(
        uri: &str,
        stats_period_s: u64,
        stop: Arc<AtomicBool>,
    ) -> Result<Option<LibvirtBackend>, LibvirtBackendError> {
        let opening = match Opening::start(uri) {
            Ok(opening) => opening,
            // No thread to spare: connect on this one, as tests do.
            Err(_) => {
                let mut backend = Self::connect(uri, stats_period_s)?;
                backend.give_up_reads_on(stop);
                return Ok(Some(backend));
            }
        };
        let mut warned = false;
        let conn = loop {
            if let Some(answer) = opening.wait(Instant::now() + DEADLINE, Some(&stop)) {
                break answer.map_err(LibvirtBackendError::Connect)?;
            }
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            if !std::mem::replace(&mut warned, true) {
                log::warn!(
                    "{uri}: the connection to libvirt has not completed within {} s (libvirtd is probably hung \
                     or still starting, or its host unreachable): waiting for it",
                    DEADLINE.as_secs()
                );
            }
        };
        if warned {
            log::info!("{uri}: libvirt answered after {:.1} s", opening.since.elapsed().as_secs_f64());
        }
        let mut backend = Self::over(uri, conn, stats_period_s);
        backend.give_up_reads_on(stop);
        Ok(Some(backend))
    }

    fn over(uri: &str, conn: Connection, stats_period_s: u64) -> LibvirtBackend {
        let calls = Calls::start().unwrap_or_else(|(inline, e)| {
            log::warn!("cannot start libvirt worker threads ({e}): calls are made one at a time, and a hung QEMU can hold every round");
            inline
        });
        calls.set_connection(conn.try_clone().ok());
        LibvirtBackend {
            uri: uri.to_owned(),
            conn: Some(conn),
            opening: None,
            reading: Reading::Unknown,
            stats_period_s: i32::try_from(stats_period_s).unwrap_or(i32::MAX),
            slots: SlotTable::new(),
            state: Box::new([const { SlotState::EMPTY }; MAX_DOMAINS]),
            backoff: Backoff::with_max(RECONNECT_MAX),
            full_warned: false,
            pending: Box::new([const { Pending::EMPTY }; MAX_DOMAINS]),
            calls,
            stop: None,
            cancellable: false,
            after_listing: None,
        }
    }

    /// The live connection, if any (tests look at domains through it).
    pub fn connection(&self) -> Option<&Connection> {
        self.conn.as_ref()
    }

    /// How this connection reads figures (`Unknown` until its first round).
    pub fn reading(&self) -> Reading {
        self.reading
    }

    /// The slot of the domain named `name`, as the last round found it.
    pub fn slot_of(&self, name: &str) -> Option<usize> {
        self.state.iter().position(|s| s.domain.is_some() && s.name.as_str() == name)
    }

    /// Once `stop` is set (a SIGINT or SIGTERM), the round's reads are not waited for any more:
    /// a call stuck on a hung QEMU must not delay the exit by its deadline.
    pub fn give_up_reads_on(&mut self, stop: Arc<AtomicBool>) {
        self.stop = Some(stop);
    }

    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// The flag that cuts this round's waits short, if any.
    fn cancel(&self) -> Option<&AtomicBool> {
        self.stop.as_deref().filter(|_| self.cancellable)
    }

    /// Fault injection for tests: `hook` runs in every round after the domains are listed and
    /// before any of them is read (e.g. to destroy one in between).
    #[doc(hidden)]
    pub fn inject_after_listing(&mut self, hook: Box<dyn FnMut()>) {
        self.after_listing = Some(hook);
    }

    /// Makes sure there is a live connection, reconnecting when due.
    fn ensure_connected(&mut self) -> Result<(), LibvirtBackendError> {
        if let Some(conn) = &self.conn {
            if conn.is_alive() {
                return Ok(());
            }
            let e = LibvirtError::new(
                "virConnectIsAlive",
                0,
                0,
                "the connection is dead (daemon gone or keepalive timed out)",
            );
            self.lose_connection();
            return Err(LibvirtBackendError::ConnectionLost(e));
        }
        let fresh = self.opening.is_none();
        let opening = match self.opening.take() {
            Some(opening) => opening,
            None => {
                let now = Instant::now();
                let wait = self.backoff.wait(now);
                if !wait.is_zero() {
                    return Err(LibvirtBackendError::Reconnecting(wait));
                }
                match Opening::start(&self.uri) {
                    Ok(opening) => opening,
                    Err(e) => {
                        let wait = self.backoff.failed(now);
                        log::warn!(
                            "cannot start a thread to reconnect to {} ({e}); next attempt in {} s",
                            self.uri,
                            wait.as_secs()
                        );
                        return Err(LibvirtBackendError::Reconnecting(wait));
                    }
                }
            }
        };
        // A new attempt is waited for up to the deadline; one still pending from an earlier
        // round is only looked at.
        let until = if fresh { Instant::now() + DEADLINE } else { Instant::now() };
        let Some(answer) = opening.wait(until, self.cancel()) else {
            if fresh {
                log::debug!(
                    "{}: the connection attempt has not been answered within {} s: looked at again each round",
                    self.uri,
                    DEADLINE.as_secs()
                );
            }
            let waited = opening.since.elapsed();
            self.opening = Some(opening);
            return Err(LibvirtBackendError::Opening(waited));
        };
        match answer {
            Ok(conn) => {
                log::info!("reconnected to {}", self.uri);
                self.calls.set_connection(conn.try_clone().ok());
                self.conn = Some(conn);
                self.backoff.succeeded();
                // The daemon may have restarted (forgetting the periods we set) or changed.
                self.reading = Reading::Unknown;
                for s in self.state.iter_mut() {
                    s.forget_run();
                }
                Ok(())
            }
            Err(e) => {
                let wait = self.backoff.failed(Instant::now());
                log::debug!("reconnecting to {} failed: {e}; next attempt in {} s", self.uri, wait.as_secs());
                Err(LibvirtBackendError::Reconnecting(wait))
            }
        }
    }

    fn lose_connection(&mut self) {
        for s in self.state.iter_mut() {
            s.domain = None;
        }
        for p in self.pending.iter_mut() {
            p.domain = None;
        }
        self.calls.set_connection(None);
        if let Some(Err(e)) = self.conn.take().map(Connection::close) {
            log::debug!("closing the dead connection: {e}");
        }
        self.backoff.succeeded();
        self.backoff.failed(Instant::now());
    }

    /// This round's domains, finding out on a fresh connection which reading works.
    fn list(&mut self) -> Result<Listing, NoListing> {
        if let Some(late) = self.calls.returned_late(BULK_LISTING) {
            match &late.result {
                Ok(_) => log::info!(
                    "{}: the bulk statistics call returned {} s after its deadline: reading in bulk again",
                    self.uri,
                    late.late.as_secs()
                ),
                Err(e) => {
                    log::info!(
                        "{}: the bulk statistics call ended {} s after its deadline: {e}",
                        self.uri,
                        late.late.as_secs()
                    )
                }
            }
            if late.result.as_ref().is_err_and(LibvirtError::is_unsupported_stats) {
                self.reading = Reading::Unknown;
            }
        }
        if let Some(late) = self.calls.returned_late(LISTING) {
            match late.result {
                Ok(_) => {
                    log::info!("{}: libvirtd answered again, {} s after the deadline", self.uri, late.late.as_secs())
                }
                Err(e) => log::info!("{}: the listing libvirtd did not answer ended: {e}", self.uri),
            }
        }
        let Some(conn) = &self.conn else {
            return Err(NoListing::Failed(LibvirtError::new("virConnectOpen", 0, 0, "not connected")));
        };
        let full = Instant::now() + DEADLINE;
        match self.reading {
            Reading::StatePerDomain | Reading::ListPerDomain => return self.plain_listing(conn, self.reading, full),
            Reading::Bulk => {
                return match self.bulk_listing(conn) {
                    Ok(Bulk::Answered(list)) => Ok(Listing::Stats(list)),
                    Ok(bulk) => self.after_bulk(conn, bulk),
                    Err(e) if e.is_unsupported_stats() => {
                        // The driver changed under the same URI (a reconnect): find out again.
                        self.reading = Reading::Unknown;
                        Err(NoListing::Failed(e))
                    }
                    Err(e) => Err(NoListing::Failed(e)),
                };
            }
            Reading::Unknown => {}
        }
        match self.bulk_listing(conn) {
            Ok(Bulk::Answered(list)) => {
                self.reading = Reading::Bulk;
                log::debug!("{}: {}", self.uri, Reading::Bulk.describe());
                return Ok(Listing::Stats(list));
            }
            // No answer from the bulk call this round: undecided, read domain by domain.
            Ok(bulk) => return self.after_bulk(conn, bulk),
            Err(e) if e.is_unsupported_stats() => log::trace!("{}: {e}", self.uri),
            Err(e) => return Err(NoListing::Failed(e)),
        }
        let mut reading = Reading::StatePerDomain;
        let listing = match self.plain_listing(conn, reading, full) {
            Err(NoListing::Failed(e)) if e.is_unsupported_stats() => {
                log::trace!("{}: {e}", self.uri);
                reading = Reading::ListPerDomain;
                self.plain_listing(conn, reading, Instant::now() + DEADLINE)?
            }
            other => other?,
        };
        self.reading = reading;
        log::debug!("{}: {}", self.uri, reading.describe());
        Ok(listing)
    }

    /// Every domain's figures in one bulk call, made by a worker, unless an earlier one is
    /// still stuck. It waits for every QEMU, so an answer that does not come says nothing yet
    /// of libvirtd: the caller finds out with a listing that waits for none.
    fn bulk_listing(&self, conn: &Connection) -> Result<Bulk, LibvirtError> {
        if self.calls.busy(BULK_LISTING) {
            return Ok(Bulk::NotMade);
        }
        let call = Call::List(StatsGroups::StateAndBalloon);
        let lent = (None, Some(conn.try_clone()?));
        match self.calls.call(BULK_LISTING, call, lent, Instant::now() + DEADLINE, self.cancel()) {
            Some(Finished { result: Ok(Answer::List(list)), .. }) => Ok(Bulk::Answered(list)),
            Some(Finished { result: Err(e), .. }) if e.operation == NOT_STARTED => Ok(Bulk::NotMade),
            Some(Finished { result: Err(e), .. }) => Err(e),
            Some(Finished { result: Ok(_), .. }) => {
                Err(LibvirtError::new("(worker)", 0, 0, "a listing answered as another call"))
            }
            None => Ok(Bulk::Overran),
        }
    }

    /// A round whose bulk call gave no answer lists with the `state` group and reads domain by
    /// domain, so that only a hung domain goes unserved. After an overrun, that listing gets a
    /// short deadline (it needs no QEMU: a libvirtd that answers does so in milliseconds), and
    /// only once it answered is a QEMU blamed; if it does not answer either, libvirtd is.
    fn after_bulk(&self, conn: &Connection, bulk: Bulk) -> Result<Listing, NoListing> {
        let overran = matches!(bulk, Bulk::Overran);
        let until = Instant::now() + if overran { DEADLINE / 4 } else { DEADLINE };
        let listing = self.plain_listing(conn, Reading::StatePerDomain, until)?;
        if overran && !self.stopping() {
            log::warn!(
                "{}: the bulk statistics call has not returned within {} s (a guest's QEMU is probably hung): \
                 reading domain by domain until it returns",
                self.uri,
                DEADLINE.as_secs()
            );
        }
        Ok(listing)
    }

    /// The domains as `reading` lists them without any QEMU (the `state` group, or the list of
    /// domains), made by a worker under a deadline: a hung libvirtd must not hold the loop,
    /// whose stop must stay prompt. Never made on the loop's thread, even when every worker is
    /// held by a stuck call: that may be libvirtd's own hang.
    fn plain_listing(&self, conn: &Connection, reading: Reading, until: Instant) -> Result<Listing, NoListing> {
        if self.calls.busy(LISTING) {
            return Err(NoListing::Unanswered);
        }
        let call = match reading {
            Reading::ListPerDomain => Call::ListAll,
            _ => Call::List(StatsGroups::State),
        };
        let lent = (None, Some(conn.try_clone()?));
        match self.calls.call(LISTING, call, lent, until, self.cancel()) {
            Some(Finished { result: Ok(Answer::List(list)), .. }) => Ok(Listing::Stats(list)),
            Some(Finished { result: Ok(Answer::ListAll(list)), .. }) => Ok(Listing::Domains(list)),
            Some(Finished { result: Err(e), .. }) if e.operation == NOT_STARTED => Err(NoListing::WorkersHeld),
            Some(Finished { result: Err(e), .. }) => Err(NoListing::Failed(e)),
            Some(Finished { result: Ok(_), .. }) => {
                Err(NoListing::Failed(LibvirtError::new("(worker)", 0, 0, "a listing answered as another call")))
            }
            None => Err(NoListing::Unanswered),
        }
    }

    /// Admits one listed domain to this round: claims its slot and says which calls it needs
    /// (see [`Want`]). `None` when it gets no call and no figures this round (it went away
    /// while listed, every slot is taken, or a call on it is still stuck).
    fn admit(&mut self, dom: &Domain, figures: Option<&DomainFigures>, roster: &mut Roster) -> Option<(Pending, Want)> {
        let uuid = match dom.uuid() {
            Ok(uuid) => uuid,
            Err(e) => {
                log::debug!("skipping a domain that went away while listed: {e}");
                return None;
            }
        };
        let Some(claim) = self.slots.claim(uuid) else {
            if !self.full_warned {
                log::warn!("more than {MAX_DOMAINS} running domains: the others are not served");
                self.full_warned = true;
            }
            return None;
        };
        let slot = claim.slot;
        let id = dom.id();
        let s = &mut self.state[slot];
        if claim.new || s.id != id {
            // A new ID under a known UUID: the domain was restarted between two rounds; its
            // guest, stats period and maybe its name and maximum are new.
            let restarted = !claim.new;
            *s = SlotState { id, ..SlotState::EMPTY };
            s.name = match dom.name() {
                Ok(n) => VmName::from_bytes_lossy(n.to_bytes()),
                Err(_) => VmName::new("(unnamed)"),
            };
            roster.arrived[slot] = true;
            if restarted {
                log::info!("{} was restarted: serving it afresh", s.name);
            } else {
                log::info!("serving {}", s.name);
            }
        }
        let name = s.name;
        roster.names[slot] = name;
        roster.present[slot] = true;
        if self.calls.busy(slot) {
            // Its last call has not returned (a hung QEMU): no new call until it does.
            s.domain = None;
            return None;
        }
        if let Some(late) = self.calls.returned_late(slot) {
            // A call that gave up (libvirt's own 30 s wait for the domain's job, which a stuck
            // call holds) says nothing of the QEMU: only an answer ends the hang.
            if late.result.is_ok() {
                log::info!("{name}: libvirt answered again, {} s after the deadline", late.late.as_secs());
                s.hung_since = None;
            } else {
                s.hung_since.get_or_insert_with(Instant::now);
            }
        }

        let paused = figures.and_then(|f| f.state) == Some(ffi::VIR_DOMAIN_PAUSED);
        if paused != s.paused {
            s.paused = paused;
            if paused {
                log::info!("{name} is paused: left alone until it runs again");
            } else {
                log::info!("{name} runs again");
            }
        }

        let period_s = (s.period == Period::Unset).then_some(self.stats_period_s);
        let bulk = figures.and_then(from_bulk);
        let want = match bulk {
            Some(_) => Want { period_s, stats: s.live_reads > 0, ..Want::default() },
            None => {
                Want { period_s, max: s.max_kib.is_none(), stats: s.fixed_kib.is_none(), size_without_balloon: true }
            }
        };
        Some((Pending { slot, bulk, paused, domain: None }, want))
    }

    /// Turns what the calls of an admitted domain returned into its figures for the policy.
    /// `Err` when a call failed because the connection died (not this domain's fault).
    fn finish(
        &mut self,
        dom: Domain,
        p: &Pending,
        fetched: Result<Fetched, LibvirtError>,
        vms: &mut [Option<VmStats>; MAX_DOMAINS],
    ) -> Result<(), LibvirtError> {
        let slot = p.slot;
        let name = self.state[slot].name;
        if let Ok(Fetched { period: Some(outcome), .. }) = fetched {
            match outcome {
                Ok(()) => {
                    self.state[slot].period = Period::Set;
                    log::debug!("{name}: stats period set to {} s", self.stats_period_s);
                }
                Err(e) => match self.domain_failure(slot, &name, e)? {
                    Failure::Gone => return Ok(()),
                    // No balloon device, most likely: not tried again this run.
                    Failure::Logged => self.state[slot].period = Period::Refused,
                },
            }
        }
        let s = &mut self.state[slot];
        let read = fetched.map(|f| match p.bulk {
            Some(bulk) => match f.stats {
                Some(live) => read_live(bulk, &live, s),
                None => bulk,
            },
            None => read_one(&f, s),
        });
        // A problem logged for this VM is reported solved only after a round without any.
        let mut clean = s.period == Period::Set;
        match read {
            // A paused guest's figures are frozen and its balloon cannot move: it gets no
            // free-memory figure, so the policy holds it.
            Ok(stats) if p.paused => vms[slot] = Some(without_guest_figures(stats)),
            Ok(stats) => vms[slot] = Some(stats),
            Err(e) if e.operation == NOT_STARTED => {
                log::debug!("{name}: not read this round: {e}");
                clean = false;
            }
            Err(e) => match self.domain_failure(slot, &name, e)? {
                Failure::Gone => return Ok(()),
                Failure::Logged => clean = false,
            },
        }
        let s = &mut self.state[slot];
        if clean {
            s.complaint.resolved(&name);
        }
        s.domain = Some(dom);
        Ok(())
    }

    /// A call on the domain in `slot` overran its deadline: it is busy until that call returns.
    fn overran(&mut self, slot: usize) {
        let stopping = self.stopping();
        let s = &mut self.state[slot];
        s.domain = None;
        if s.hung_since.is_none() && !stopping {
            s.hung_since = Some(Instant::now());
            log::warn!(
                "{}: libvirt has not answered within {} s (its QEMU is probably hung): not served until it answers",
                s.name,
                DEADLINE.as_secs()
            );
        }
    }

    /// Sorts out a failed call on one domain: it went away (debug line), or it has a problem
    /// of its own (logged once); `Err` when it is the connection that died.
    fn domain_failure(&mut self, slot: usize, name: &VmName, e: LibvirtError) -> Result<Failure, LibvirtError> {
        if !self.conn.as_ref().is_some_and(Connection::is_alive) {
            return Err(e);
        }
        // A domain that stopped comes back from the worker as "no domain" (`calls::settle`).
        if e.is_no_domain() {
            log::debug!("{name} went away: {e}");
            return Ok(Failure::Gone);
        }
        self.state[slot].complaint.report((e.operation, e.code), name, format_args!("{e}"));
        Ok(Failure::Logged)
    }

    /// Reads every listed domain, the calls of all side by side on the workers. `Err` when the
    /// connection died meanwhile.
    fn serve_all(
        &mut self,
        listing: Listing,
        vms: &mut [Option<VmStats>; MAX_DOMAINS],
        roster: &mut Roster,
    ) -> Result<(), LibvirtError> {
        if let Some(hook) = &mut self.after_listing {
            hook();
        }
        let deadline = Instant::now() + DEADLINE;
        let mut n = 0;
        let mut admit = |this: &mut Self, dom: Domain, figures: Option<&DomainFigures>| {
            if n == MAX_DOMAINS {
                return;
            }
            let Some((mut pending, want)) = this.admit(&dom, figures, roster) else { return };
            if want == Want::default() {
                pending.domain = Some(dom);
            } else {
                this.calls.submit(pending.slot, Call::Read(want), Some(dom), None);
            }
            this.pending[n] = pending;
            n += 1;
        };
        match listing {
            Listing::Stats(list) => {
                for record in list.iter() {
                    match record.domain() {
                        Ok(dom) => admit(self, dom, Some(&record.figures())),
                        Err(e) => log::debug!("skipping a listed domain: {e}"),
                    }
                }
            }
            Listing::Domains(list) => {
                for dom in list {
                    admit(self, dom, None);
                }
            }
        }
        self.calls.wait(deadline, self.cancel());
        let mut died = None;
        for i in 0..n {
            let mut p = std::mem::replace(&mut self.pending[i], Pending::EMPTY);
            let (dom, fetched) = match p.domain.take() {
                Some(dom) => (dom, Ok(Fetched::default())),
                None => match self.calls.take(p.slot) {
                    Some(Finished { domain: Some(dom), result, .. }) => (dom, result.and_then(fetched_of)),
                    Some(Finished { domain: None, .. }) => continue,
                    None => {
                        self.overran(p.slot);
                        continue;
                    }
                },
            };
            // Once the connection died, the remaining handles are only released.
            if died.is_none()
                && let Err(e) = self.finish(dom, &p, fetched, vms)
            {
                died = Some(e);
            }
        }
        died.map_or(Ok(()), Err)
    }
}

/// How long the daemon's exit waits for its libvirt handles to be released.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

impl Drop for LibvirtBackend {
    /// The last reference to a connection through libvirtd is released with a call to it
    /// (`CONNECT_CLOSE`), which a hung libvirtd never answers, and every domain handle holds a
    /// reference: they are released on a thread of their own, waited for at most
    /// [`CLOSE_WAIT`], so that a daemon stopped while libvirtd hangs still exits.
    fn drop(&mut self) {
        let conn = self.conn.take();
        let mut domains: Vec<Domain> = self.state.iter_mut().filter_map(|s| s.domain.take()).collect();
        domains.extend(self.pending.iter_mut().filter_map(|p| p.domain.take()));
        // The job table holds handles too (late results, a queued nudge's connection, the
        // workers' own reference), and a reconnection may have finished unseen.
        let calls = std::mem::replace(&mut self.calls, Calls::inline());
        let opening = self.opening.take();
        let (done, finished) = mpsc::channel();
        let closing = std::thread::Builder::new().name("libvirt-close".into()).spawn(move || {
            drop(opening);
            drop(calls);
            drop(domains);
            drop(conn);
            let _ = done.send(());
        });
        // Without a thread, the closure (and the handles) were dropped here already.
        if closing.is_ok() && finished.recv_timeout(CLOSE_WAIT).is_err() {
            log::debug!(
                "{}: libvirt did not answer the close within {} ms; exiting anyway",
                self.uri,
                CLOSE_WAIT.as_millis()
            );
        }
    }
}

/// A read's answer.
fn fetched_of(answer: Answer) -> Result<Fetched, LibvirtError> {
    match answer {
        Answer::Read(fetched) => Ok(fetched),
        _ => Err(LibvirtError::new("(worker)", 0, 0, "a read answered as another call")),
    }
}

fn open(uri: &str) -> Result<Connection, LibvirtError> {
    // A local daemon that dies closes its socket, which fails every call at once, and one that
    // hangs is noticed by the calls' deadline: no keepalive, no event loop (which would cost
    // every call two wake-ups of its thread).
    let keepalive = over_network(uri)
        && super::api::start_event_loop()
            .inspect_err(|e| log::warn!("{uri}: keepalive not possible, a lost peer will be noticed late: {e}"))
            .is_ok();
    let conn = Connection::open(uri)?;
    if keepalive {
        match conn.set_keepalive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT) {
            Ok(Keepalive::Enabled) => {}
            Ok(Keepalive::Unsupported) => log::debug!("{uri}: no keepalive on this driver"),
            Err(e) => log::warn!("{uri}: keepalive not enabled, a lost peer will be noticed late: {e}"),
        }
    }
    Ok(conn)
}

/// Whether `uri` reaches its daemon through something that can vanish without closing the
/// connection (a network, a tunnel, an external command), so that only keepalive notices a
/// lost peer. A local URI (`qemu:///system`, `test+unix:///…`, `test:///default`) names no
/// host and no such transport. Anything not understood counts as remote (an alias from
/// libvirt.conf, libvirt's default URI): keepalive then costs time, never safety.
pub fn over_network(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else { return true };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    match scheme.split_once('+').map(|(_, transport)| transport) {
        Some("unix") => false,
        Some(_) => true,
        None => !host.is_empty(),
    }
}

/// A domain's figures from its bulk record, if the record has its balloon size and maximum.
/// libvirt reports memory in KiB already; this and [`read_one`] are where its figures become
/// `VmStats` fields.
pub fn from_bulk(f: &DomainFigures) -> Option<VmStats> {
    Some(VmStats {
        actual_kib: f.current_kib?,
        max_kib: f.maximum_kib?,
        unused_kib: f.unused_kib,
        usable_kib: f.usable_kib,
        available_kib: f.available_kib,
        swap_in_kib: f.swap_in_kib,
        swap_out_kib: f.swap_out_kib,
        major_faults: f.major_faults,
        last_update_s: f.last_update_s,
        rss_kib: f.rss_kib,
        // libvirt 9.0 has no fields for Linux 6.12's OOM and stall counters.
        oom_kills: None,
        alloc_stalls: None,
        direct_reclaims: None,
    })
}

/// One domain's figures from its own calls (per-domain reading), with what the slot already
/// knows: its maximum, and the size of a domain without a balloon.
fn read_one(f: &Fetched, s: &mut SlotState) -> VmStats {
    if let Some(kib) = f.max_kib {
        s.max_kib = Some(kib);
    }
    if let Some(kib) = f.fixed_kib {
        // No balloon size: no balloon device, so the size it started with stays.
        s.fixed_kib = Some(kib);
    }
    let max_kib = s.max_kib.unwrap_or(0);
    let (Some(stats), None) = (f.stats, s.fixed_kib) else {
        return VmStats { actual_kib: s.fixed_kib.unwrap_or(0), max_kib, ..VmStats::default() };
    };
    VmStats {
        actual_kib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON).unwrap_or(0),
        max_kib,
        unused_kib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_UNUSED),
        usable_kib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_USABLE),
        available_kib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_AVAILABLE),
        swap_in_kib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_SWAP_IN),
        swap_out_kib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_SWAP_OUT),
        major_faults: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT),
        last_update_s: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE),
        rss_kib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_RSS),
        oom_kills: None,
        alloc_stalls: None,
        direct_reclaims: None,
    }
}

/// A domain's bulk figures with its balloon size (and guest figures) read live, for a domain
/// whose balloon we just moved.
fn read_live(bulk: VmStats, stats: &MemoryStats, s: &mut SlotState) -> VmStats {
    s.live_reads = s.live_reads.saturating_sub(1);
    let actual_kib = stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON).unwrap_or(bulk.actual_kib);
    if s.target_kib.is_some_and(|t| t.abs_diff(actual_kib) <= crate::policy::PAGE_KIB) {
        s.live_reads = 0;
    }
    let live = |tag| stats.get(tag);
    VmStats {
        actual_kib,
        unused_kib: live(ffi::VIR_DOMAIN_MEMORY_STAT_UNUSED).or(bulk.unused_kib),
        usable_kib: live(ffi::VIR_DOMAIN_MEMORY_STAT_USABLE).or(bulk.usable_kib),
        available_kib: live(ffi::VIR_DOMAIN_MEMORY_STAT_AVAILABLE).or(bulk.available_kib),
        last_update_s: live(ffi::VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE).or(bulk.last_update_s),
        rss_kib: live(ffi::VIR_DOMAIN_MEMORY_STAT_RSS).or(bulk.rss_kib),
        ..bulk
    }
}

/// Sizes and host-side figures only.
fn without_guest_figures(stats: VmStats) -> VmStats {
    VmStats { actual_kib: stats.actual_kib, max_kib: stats.max_kib, rss_kib: stats.rss_kib, ..VmStats::default() }
}

impl Backend for LibvirtBackend {
    type Error = LibvirtBackendError;

    fn describe(&self) -> String {
        format!("libvirt {}", self.uri)
    }

    fn refresh(&mut self, vms: &mut [Option<VmStats>; MAX_DOMAINS], roster: &mut Roster) -> Result<(), Self::Error> {
        self.cancellable = !self.stopping();
        self.ensure_connected()?;
        let listing = match self.list() {
            Ok(listing) => listing,
            // No slot is freed, so histories survive the wait.
            Err(NoListing::Unanswered) => return Err(LibvirtBackendError::DaemonUnanswered),
            Err(NoListing::WorkersHeld) => return Err(LibvirtBackendError::WorkersHeld),
            Err(NoListing::Failed(e)) if !self.conn.as_ref().is_some_and(Connection::is_alive) => {
                self.lose_connection();
                return Err(LibvirtBackendError::ConnectionLost(e));
            }
            Err(NoListing::Failed(e)) => return Err(LibvirtBackendError::List(e)),
        };
        self.slots.begin_round();
        if let Err(e) = self.serve_all(listing, vms, roster) {
            // No end_round: no slot is freed, so histories survive the reconnect.
            self.lose_connection();
            return Err(LibvirtBackendError::ConnectionLost(e));
        }
        let (state, calls) = (&mut self.state, &self.calls);
        self.slots.end_round(|slot, _| {
            log::info!("{} is gone", state[slot].name);
            state[slot] = SlotState::EMPTY;
            // A call on it that returned late holds a handle of the old connection: release it.
            drop(calls.returned_late(slot));
        });
        Ok(())
    }

    fn apply(&mut self, slot: usize, target_kib: u64) -> Result<(), Self::Error> {
        let s = self.state.get_mut(slot).ok_or(LibvirtBackendError::NoDomain(slot))?;
        let dom = s.domain.take().ok_or(LibvirtBackendError::NoDomain(slot))?;
        let name = s.name;
        // Made by a worker: a QEMU that hung since this round's reads holds the round at most
        // the deadline (less, after a stop: `--restore-on-exit` applies in a round of its own).
        let call = Call::SetMemory(target_kib);
        let deadline = Instant::now() + DEADLINE;
        let Some(done) = self.calls.call(slot, call, (Some(dom), None), deadline, self.cancel()) else {
            self.overran(slot);
            return Err(LibvirtBackendError::Unanswered(name));
        };
        let s = &mut self.state[slot];
        s.domain = done.domain;
        match done.result {
            // Never sent (every worker stuck on hung QEMUs): nothing to learn about the domain.
            Err(e) if e.operation == NOT_STARTED => Err(LibvirtBackendError::Unanswered(name)),
            Ok(_) => {
                s.target_kib = Some(target_kib);
                s.live_reads = LIVE_READS_AFTER_APPLY;
                Ok(())
            }
            Err(e) => {
                // The maximum we hold may be out of date (memory unplugged): read it again.
                s.max_kib = None;
                Err(LibvirtBackendError::Domain(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::over_network;

    #[test]
    fn keepalive_is_on_for_uris_that_reach_their_daemon_through_a_network_a_tunnel_or_an_unknown_alias() {
        for local in [
            "qemu:///system",
            "qemu:///session",
            "qemu+unix:///system",
            "qemu+unix:///system?socket=/run/libvirt/libvirt-sock",
            "test:///default",
            "test+unix:///tmp/node.xml",
            "qemu:///embed?root=/tmp/x",
        ] {
            assert!(!over_network(local), "{local} is local");
        }
        for remote in [
            "qemu://host.example/system",
            "qemu+ssh://root@host/system",
            "qemu+tcp://10.0.0.1:16509/system",
            "qemu+tls://host/system?no_verify=1",
            "qemu+libssh2://user@host/system",
            "test+ext:///tmp/node.xml?command=/usr/local/bin/relay",
            "qemu+ssh://localhost/system",
            "myhost",
            "",
        ] {
            assert!(over_network(remote), "{remote} reaches its daemon over something that can vanish silently");
        }
    }
}
