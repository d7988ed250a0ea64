//! The libvirt backend: lists running domains, sets their stats period once, reads their
//! balloon statistics, applies targets with `virDomainSetMemoryFlags` (live), and survives
//! libvirtd restarts by reconnecting with backoff. No `unsafe` here: everything goes through
//! the safe layer in `api`.

use std::fmt;
use std::time::{Duration, Instant};

use super::api::{Connection, Domain, Keepalive, LibvirtError, MemoryStats};
use super::ffi;
use crate::backoff::Backoff;
use crate::complaint::Complaint;
use crate::coordinator::{Backend, Roster};
use crate::policy::{MAX_DOMAINS, VmStats};
use crate::slots::SlotTable;
use crate::text::VmName;

/// Keepalive: probe every 3 s, give up after 3 missed answers (about 12 s for a hung daemon;
/// a daemon that exits is noticed at the next call).
const KEEPALIVE_INTERVAL_S: i32 = 3;
const KEEPALIVE_COUNT: u32 = 3;

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

/// What a failed call on one domain turned out to be.
enum Failure {
    /// The domain stopped or was undefined meanwhile.
    Gone,
    /// A problem of the domain's own, logged.
    Logged,
}

/// The backend over one libvirt connection.
pub struct LibvirtBackend {
    uri: String,
    conn: Option<Connection>,
    stats_period_s: i32,
    slots: SlotTable<[u8; 16]>,
    /// The handle listed this round for each slot, for `apply`.
    domains: Box<[Option<Domain>; MAX_DOMAINS]>,
    /// The stats period is set once per domain and connection.
    period_set: [bool; MAX_DOMAINS],
    /// The last error logged at warning level per slot, so a lasting problem is logged once.
    last_complaint: [Complaint<(&'static str, i32)>; MAX_DOMAINS],
    backoff: Backoff,
    full_warned: bool,
}

impl LibvirtBackend {
    /// Connects to `uri`; guests will report stats every `stats_period_s` seconds.
    pub fn connect(uri: &str, stats_period_s: u64) -> Result<LibvirtBackend, LibvirtBackendError> {
        let conn = open(uri).map_err(LibvirtBackendError::Connect)?;
        Ok(LibvirtBackend {
            uri: uri.to_owned(),
            conn: Some(conn),
            stats_period_s: i32::try_from(stats_period_s).unwrap_or(i32::MAX),
            slots: SlotTable::new(),
            domains: Box::new(std::array::from_fn(|_| None)),
            period_set: [false; MAX_DOMAINS],
            last_complaint: [Complaint::NONE; MAX_DOMAINS],
            backoff: Backoff::new(),
            full_warned: false,
        })
    }

    /// The live connection, if any (tests look at domains through it).
    pub fn connection(&self) -> Option<&Connection> {
        self.conn.as_ref()
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
                // A restarted daemon has forgotten the periods we set.
                self.period_set = [false; MAX_DOMAINS];
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
        for d in self.domains.iter_mut() {
            *d = None;
        }
        if let Some(Err(e)) = self.conn.take().map(Connection::close) {
            log::debug!("closing the dead connection: {e}");
        }
        self.backoff.succeeded();
        self.backoff.failed(Instant::now());
    }

    /// Serves one listed domain: claims its slot, sets its stats period once, reads it.
    /// `Err` when a call failed because the connection died (not this domain's fault).
    fn serve(
        &mut self,
        dom: Domain,
        vms: &mut [Option<VmStats>; MAX_DOMAINS],
        roster: &mut Roster,
    ) -> Result<(), LibvirtError> {
        let uuid = match dom.uuid() {
            Ok(uuid) => uuid,
            Err(e) => {
                log::debug!("skipping a domain that went away while listed: {e}");
                return Ok(());
            }
        };
        let Some(claim) = self.slots.claim(uuid) else {
            if !self.full_warned {
                log::warn!("more than {MAX_DOMAINS} running domains: the others are not served");
                self.full_warned = true;
            }
            return Ok(());
        };
        let slot = claim.slot;
        let name = match dom.name() {
            Ok(n) => VmName::from_bytes_lossy(n.to_bytes()),
            Err(_) => VmName::new("(unnamed)"),
        };
        roster.names[slot] = name;
        roster.present[slot] = true;
        if claim.new {
            roster.arrived[slot] = true;
            self.period_set[slot] = false;
            self.last_complaint[slot] = Complaint::NONE;
            log::info!("serving {name}");
        }
        // A problem logged for this VM is reported solved only after a round without any.
        let mut clean = true;
        if !self.period_set[slot] {
            match dom.set_memory_stats_period(self.stats_period_s) {
                Ok(()) => {
                    self.period_set[slot] = true;
                    log::debug!("{name}: stats period set to {} s", self.stats_period_s);
                }
                Err(e) => match self.domain_failure(slot, &name, e)? {
                    Failure::Gone => return Ok(()),
                    Failure::Logged => clean = false,
                },
            }
        }
        match read_vm(&dom) {
            Ok(stats) => vms[slot] = Some(stats),
            Err(e) => match self.domain_failure(slot, &name, e)? {
                Failure::Gone => return Ok(()),
                Failure::Logged => clean = false,
            },
        }
        if clean {
            self.last_complaint[slot].resolved(&name);
        }
        self.domains[slot] = Some(dom);
        Ok(())
    }

    /// Sorts out a failed call on one domain: it went away (debug line), or it has a problem
    /// of its own (logged once); `Err` when it is the connection that died.
    fn domain_failure(&mut self, slot: usize, name: &VmName, e: LibvirtError) -> Result<Failure, LibvirtError> {
        if e.is_no_domain() || e.is_domain_inactive() {
            log::debug!("{name} went away: {e}");
            return Ok(Failure::Gone);
        }
        if !self.conn.as_ref().is_some_and(Connection::is_alive) {
            return Err(e);
        }
        self.last_complaint[slot].report((e.operation, e.code), name, format_args!("{e}"));
        Ok(Failure::Logged)
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

/// One domain's figures in the policy's terms. libvirt reports memory stats in KiB already;
/// this is the one place its tags become `VmStats` fields.
fn read_vm(dom: &Domain) -> Result<VmStats, LibvirtError> {
    let stats: MemoryStats = dom.memory_stats()?;
    let max_kib = dom.max_memory_kib()?;
    let actual_kib = match stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON) {
        Some(kib) => kib,
        None => dom.info()?.memory_kib,
    };
    Ok(VmStats {
        actual_kib,
        max_kib,
        unused_kib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_UNUSED),
        usable_kib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_USABLE),
        available_kib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_AVAILABLE),
        swap_in_kib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_SWAP_IN),
        swap_out_kib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_SWAP_OUT),
        major_faults: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT),
        last_update_s: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE),
        rss_kib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_RSS),
        // libvirt 9.0 has no tags for Linux 6.12's OOM and stall counters.
        oom_kills: None,
        alloc_stalls: None,
        direct_reclaims: None,
    })
}

impl Backend for LibvirtBackend {
    type Error = LibvirtBackendError;

    fn describe(&self) -> String {
        format!("libvirt {}", self.uri)
    }

    fn refresh(&mut self, vms: &mut [Option<VmStats>; MAX_DOMAINS], roster: &mut Roster) -> Result<(), Self::Error> {
        self.ensure_connected()?;
        let Some(conn) = &self.conn else { return Err(LibvirtBackendError::Reconnecting(Duration::ZERO)) };
        let list = match conn.list_active_domains() {
            Ok(list) => list,
            Err(e) if !conn.is_alive() => {
                self.lose_connection();
                return Err(LibvirtBackendError::ConnectionLost(e));
            }
            Err(e) => return Err(LibvirtBackendError::List(e)),
        };
        self.slots.begin_round();
        for dom in list {
            if let Err(e) = self.serve(dom, vms, roster) {
                // No end_round: no slot is freed, so histories survive the reconnect.
                self.lose_connection();
                return Err(LibvirtBackendError::ConnectionLost(e));
            }
        }
        let domains = &mut self.domains;
        self.slots.end_round(|slot, _| {
            domains[slot] = None;
            log::info!("{} is gone", roster.names[slot]);
        });
        Ok(())
    }

    fn apply(&mut self, slot: usize, target_kib: u64) -> Result<(), Self::Error> {
        let dom = self.domains.get(slot).and_then(Option::as_ref).ok_or(LibvirtBackendError::NoDomain(slot))?;
        dom.set_memory_kib(target_kib).map_err(LibvirtBackendError::Domain)
    }
}
