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
//! Per-domain calls of a round (from [`SHARE_FROM`] on) are made by [`readers::READERS`] threads side
//! by side (`readers.rs`): a round of 256 per-domain reads costs about a quarter of reading
//! them one after another. Everything else (slots, logs, errors) stays on the loop's thread.
//!
//! Nothing that cannot have changed is read again. A domain's name, UUID and ID come with its
//! handle (no round trip). Its stats period is set once per domain run and connection. Its
//! maximum memory (per-domain reading) is read when it is first seen, after it restarted (a new
//! ID under the same UUID), after a reconnect and after a target was rejected: a running
//! domain's maximum changes only by memory hot-plug, which the bulk reading sees every round
//! and the per-domain reading sees at the first rejected grow. A domain without a balloon
//! keeps the size it started with and is not read again until it restarts.

use std::fmt;
use std::time::{Duration, Instant};

use super::api::{
    Connection, Domain, DomainFigures, DomainList, DomainStatsList, Keepalive, LibvirtError, MemoryStats, StatsGroups,
};
use super::ffi;
use super::readers::{self, Fetched, Job, Readers, SHARE_FROM, Want};
use crate::backoff::Backoff;
use crate::complaint::Complaint;
use crate::coordinator::{Backend, Roster};
use crate::policy::{MAX_DOMAINS, VmStats};
use crate::slots::SlotTable;
use crate::text::VmName;

/// Keepalive: probe every 3 s, give up after 3 missed answers (a hung daemon is noticed within
/// about 12 s, even in the middle of a call; a daemon that exits is noticed at the next call).
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
    /// Listing domains failed on a live connection.
    List(LibvirtError),
    /// A call on one domain failed.
    Domain(LibvirtError),
    /// No domain in this slot (it went away this round).
    NoDomain(usize),
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
            Self::List(e) => write!(f, "cannot list domains: {e}"),
            Self::Domain(e) => e.fmt(f),
            Self::NoDomain(slot) => write!(f, "no domain in slot {slot} any more"),
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
    };

    /// Forgets everything learnt of the domain's previous run or connection.
    fn forget_run(&mut self) {
        self.period = Period::Unset;
        self.max_kib = None;
        self.fixed_kib = None;
    }
}

/// A domain admitted to this round, waiting for its calls (its handle is in the job of the
/// same index).
#[derive(Clone, Copy, Debug)]
struct Pending {
    slot: usize,
    /// Its figures from the bulk listing, if the driver gives them.
    bulk: Option<VmStats>,
    paused: bool,
}

impl Pending {
    const EMPTY: Pending = Pending { slot: 0, bulk: None, paused: false };
}

/// The backend over one libvirt connection.
pub struct LibvirtBackend {
    uri: String,
    conn: Option<Connection>,
    reading: Reading,
    stats_period_s: i32,
    slots: SlotTable<[u8; 16]>,
    state: Box<[SlotState; MAX_DOMAINS]>,
    backoff: Backoff,
    full_warned: bool,
    /// This round's admitted domains and their calls, by index.
    pending: Box<[Pending; MAX_DOMAINS]>,
    jobs: Box<[Job; MAX_DOMAINS]>,
    /// Threads that read domains side by side, started the first time a round needs them.
    readers: Option<Readers>,
    /// The system refused those threads: read one domain at a time.
    readers_failed: bool,
    /// Fault injection for tests: runs after the domains are listed, before any is read.
    after_listing: Option<Box<dyn FnMut()>>,
}

impl LibvirtBackend {
    /// Connects to `uri`; guests will report stats every `stats_period_s` seconds.
    pub fn connect(uri: &str, stats_period_s: u64) -> Result<LibvirtBackend, LibvirtBackendError> {
        let conn = open(uri).map_err(LibvirtBackendError::Connect)?;
        Ok(LibvirtBackend {
            uri: uri.to_owned(),
            conn: Some(conn),
            reading: Reading::Unknown,
            stats_period_s: i32::try_from(stats_period_s).unwrap_or(i32::MAX),
            slots: SlotTable::new(),
            state: Box::new([const { SlotState::EMPTY }; MAX_DOMAINS]),
            backoff: Backoff::with_max(RECONNECT_MAX),
            full_warned: false,
            pending: Box::new([Pending::EMPTY; MAX_DOMAINS]),
            jobs: Box::new([const { Job::EMPTY }; MAX_DOMAINS]),
            readers: None,
            readers_failed: false,
            after_listing: None,
        })
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
        let now = Instant::now();
        let wait = self.backoff.wait(now);
        if !wait.is_zero() {
            return Err(LibvirtBackendError::Reconnecting(wait));
        }
        match open(&self.uri) {
            Ok(conn) => {
                log::info!("reconnected to {}", self.uri);
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
                let wait = self.backoff.failed(now);
                log::debug!("reconnecting to {} failed: {e}; next attempt in {} s", self.uri, wait.as_secs());
                Err(LibvirtBackendError::Reconnecting(wait))
            }
        }
    }

    fn lose_connection(&mut self) {
        for s in self.state.iter_mut() {
            s.domain = None;
        }
        for job in self.jobs.iter_mut() {
            *job = Job::EMPTY;
        }
        if let Some(Err(e)) = self.conn.take().map(Connection::close) {
            log::debug!("closing the dead connection: {e}");
        }
        self.backoff.succeeded();
        self.backoff.failed(Instant::now());
    }

    /// This round's domains, finding out on a fresh connection which reading works.
    fn list(&mut self) -> Result<Listing, LibvirtError> {
        let Some(conn) = &self.conn else {
            return Err(LibvirtError::new("virConnectOpen", 0, 0, "not connected"));
        };
        if self.reading != Reading::Unknown {
            return fetch(conn, self.reading);
        }
        for candidate in [Reading::Bulk, Reading::StatePerDomain] {
            match fetch(conn, candidate) {
                Ok(listing) => {
                    self.reading = candidate;
                    log::debug!("{}: {}", self.uri, candidate.describe());
                    return Ok(listing);
                }
                Err(e) if e.is_unsupported_stats() => log::trace!("{}: {e}", self.uri),
                Err(e) => return Err(e),
            }
        }
        let listing = fetch(conn, Reading::ListPerDomain)?;
        self.reading = Reading::ListPerDomain;
        log::debug!("{}: {}", self.uri, Reading::ListPerDomain.describe());
        Ok(listing)
    }

    /// Admits one listed domain to this round: claims its slot, sets its stats period once,
    /// and says which calls read it (see [`Want`]). `None` when it is not served (it went away
    /// while listed, or every slot is taken). `Err` when a call failed because the connection
    /// died (not this domain's fault).
    fn admit(
        &mut self,
        dom: &Domain,
        figures: Option<&DomainFigures>,
        roster: &mut Roster,
    ) -> Result<Option<(Pending, Want)>, LibvirtError> {
        let uuid = match dom.uuid() {
            Ok(uuid) => uuid,
            Err(e) => {
                log::debug!("skipping a domain that went away while listed: {e}");
                return Ok(None);
            }
        };
        let Some(claim) = self.slots.claim(uuid) else {
            if !self.full_warned {
                log::warn!("more than {MAX_DOMAINS} running domains: the others are not served");
                self.full_warned = true;
            }
            return Ok(None);
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

        let paused = figures.and_then(|f| f.state) == Some(ffi::VIR_DOMAIN_PAUSED);
        if paused != s.paused {
            s.paused = paused;
            if paused {
                log::info!("{name} is paused: left alone until it runs again");
            } else {
                log::info!("{name} runs again");
            }
        }

        if s.period == Period::Unset {
            match dom.set_memory_stats_period(self.stats_period_s) {
                Ok(()) => {
                    self.state[slot].period = Period::Set;
                    log::debug!("{name}: stats period set to {} s", self.stats_period_s);
                }
                Err(e) => match self.domain_failure(dom, slot, &name, e)? {
                    Failure::Gone => return Ok(None),
                    Failure::Logged => self.state[slot].period = Period::Refused,
                },
            }
        }
        let s = &self.state[slot];
        let bulk = figures.and_then(from_bulk);
        let want = match bulk {
            Some(_) => Want { stats: s.live_reads > 0, ..Want::default() },
            None => Want { max: s.max_kib.is_none(), stats: s.fixed_kib.is_none(), size_without_balloon: true },
        };
        Ok(Some((Pending { slot, bulk, paused }, want)))
    }

    /// Turns what the calls of an admitted domain returned into its figures for the policy.
    fn finish(
        &mut self,
        dom: Domain,
        p: Pending,
        fetched: Result<Fetched, LibvirtError>,
        vms: &mut [Option<VmStats>; MAX_DOMAINS],
    ) -> Result<(), LibvirtError> {
        let slot = p.slot;
        let s = &mut self.state[slot];
        let name = s.name;
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
            Err(e) => match self.domain_failure(&dom, slot, &name, e)? {
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

    /// Sorts out a failed call on one domain: it went away (debug line), or it has a problem
    /// of its own (logged once); `Err` when it is the connection that died.
    fn domain_failure(
        &mut self,
        dom: &Domain,
        slot: usize,
        name: &VmName,
        e: LibvirtError,
    ) -> Result<Failure, LibvirtError> {
        if !self.conn.as_ref().is_some_and(Connection::is_alive) {
            return Err(e);
        }
        if is_gone(dom, &e) {
            log::debug!("{name} went away: {e}");
            return Ok(Failure::Gone);
        }
        self.state[slot].complaint.report((e.operation, e.code), name, format_args!("{e}"));
        Ok(Failure::Logged)
    }

    /// Reads every listed domain. `Err` when the connection died meanwhile.
    fn serve_all(
        &mut self,
        listing: Listing,
        vms: &mut [Option<VmStats>; MAX_DOMAINS],
        roster: &mut Roster,
    ) -> Result<(), LibvirtError> {
        if let Some(hook) = &mut self.after_listing {
            hook();
        }
        let mut n = 0;
        let mut admit = |this: &mut Self, dom: Domain, figures: Option<&DomainFigures>| {
            if n == MAX_DOMAINS {
                return Ok(());
            }
            if let Some((pending, want)) = this.admit(&dom, figures, roster)? {
                this.pending[n] = pending;
                this.jobs[n] = Job { domain: Some(dom), want, result: None };
                n += 1;
            }
            Ok::<(), LibvirtError>(())
        };
        match listing {
            Listing::Stats(list) => {
                for record in list.iter() {
                    match record.domain() {
                        Ok(dom) => admit(self, dom, Some(&record.figures()))?,
                        Err(e) => log::debug!("skipping a listed domain: {e}"),
                    }
                }
            }
            Listing::Domains(list) => {
                for dom in list {
                    admit(self, dom, None)?;
                }
            }
        }
        self.read(n);
        for i in 0..n {
            let job = &mut self.jobs[i];
            let (Some(dom), Some(fetched)) = (job.domain.take(), job.result.take()) else { continue };
            self.finish(dom, self.pending[i], fetched, vms)?;
        }
        Ok(())
    }

    /// Makes the calls of this round's first `n` jobs: on the reading threads when there are
    /// enough of them to share, else here.
    fn read(&mut self, n: usize) {
        let jobs = &mut self.jobs[..n];
        let calls = jobs.iter().filter(|j| j.want != Want::default()).count();
        if calls >= SHARE_FROM && self.readers.is_none() && !self.readers_failed {
            match Readers::start() {
                Ok(readers) => self.readers = Some(readers),
                Err(e) => {
                    log::warn!("cannot start the libvirt reading threads ({e}): reading one domain at a time");
                    self.readers_failed = true;
                }
            }
        }
        match &self.readers {
            Some(readers) if calls >= SHARE_FROM => readers.run(jobs),
            _ => {
                for job in jobs.iter_mut() {
                    job.result = job.domain.as_ref().map(|dom| readers::fetch(dom, job.want));
                }
            }
        }
    }
}

fn open(uri: &str) -> Result<Connection, LibvirtError> {
    let conn = Connection::open(uri)?;
    match conn.set_keepalive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT) {
        Ok(Keepalive::Enabled) => {}
        Ok(Keepalive::Unsupported) => log::debug!("{uri}: no keepalive on this driver"),
        Err(e) => log::warn!("{uri}: keepalive not enabled, a hung daemon will be noticed late: {e}"),
    }
    Ok(conn)
}

/// Whether `e`, from a call on `dom`, means that the domain stopped or was undefined: "not
/// found", or "operation invalid" (which is also how some refusals of a running domain are
/// worded, so its state is asked: one more call, on this rare path only).
fn is_gone(dom: &Domain, e: &LibvirtError) -> bool {
    if e.is_no_domain() {
        return true;
    }
    if !e.is_domain_inactive() {
        return false;
    }
    match dom.info() {
        Ok(info) => {
            ![ffi::VIR_DOMAIN_RUNNING, ffi::VIR_DOMAIN_PAUSED, ffi::VIR_DOMAIN_BLOCKED].contains(&u32::from(info.state))
        }
        Err(e) => e.is_no_domain(),
    }
}

/// The domains as `reading` lists them.
fn fetch(conn: &Connection, reading: Reading) -> Result<Listing, LibvirtError> {
    match reading {
        Reading::Unknown | Reading::Bulk => conn.all_domain_stats(StatsGroups::StateAndBalloon).map(Listing::Stats),
        Reading::StatePerDomain => conn.all_domain_stats(StatsGroups::State).map(Listing::Stats),
        Reading::ListPerDomain => conn.list_active_domains().map(Listing::Domains),
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
        self.ensure_connected()?;
        let listing = match self.list() {
            Ok(listing) => listing,
            Err(e) if !self.conn.as_ref().is_some_and(Connection::is_alive) => {
                self.lose_connection();
                return Err(LibvirtBackendError::ConnectionLost(e));
            }
            Err(e) => return Err(LibvirtBackendError::List(e)),
        };
        self.slots.begin_round();
        if let Err(e) = self.serve_all(listing, vms, roster) {
            // No end_round: no slot is freed, so histories survive the reconnect.
            self.lose_connection();
            return Err(LibvirtBackendError::ConnectionLost(e));
        }
        let state = &mut self.state;
        self.slots.end_round(|slot, _| {
            log::info!("{} is gone", state[slot].name);
            state[slot] = SlotState::EMPTY;
        });
        Ok(())
    }

    fn apply(&mut self, slot: usize, target_kib: u64) -> Result<(), Self::Error> {
        let s = self.state.get_mut(slot).ok_or(LibvirtBackendError::NoDomain(slot))?;
        let dom = s.domain.as_ref().ok_or(LibvirtBackendError::NoDomain(slot))?;
        match dom.set_memory_kib(target_kib) {
            Ok(()) => {
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
