//! The QMP backend: serves bare QEMU VMs through their monitor sockets.
//!
//! Patterns are expanded by the daemon every few rounds, so a QEMU started later is picked up
//! and one that went away is dropped. Each socket is one VM: connect, greeting,
//! `qmp_capabilities`, name (`query-name`, else the socket's file name), the balloon device
//! (`qom-list` under /machine/peripheral and /machine/peripheral-anon, or
//! `--qmp-balloon-path`), the stats polling interval (`qom-set`) and the maximum size
//! (`query-memory-size-summary`). Each round: `query-balloon` and `qom-get guest-stats`; targets
//! are applied with `balloon` (bytes). One VM's trouble (timeout, error reply, garbage, closed
//! socket) is logged and skips that VM only; its socket is reconnected with backoff.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::IgnoredAny;

use super::client::{QmpClient, QmpError};
use super::glob;
use super::protocol::{BalloonInfo, GuestStats, MemorySizeSummary, stat_count, stat_kib};
use crate::backoff::Backoff;
use crate::complaint::Complaint;
use crate::coordinator::{Backend, Roster};
use crate::policy::{MAX_DOMAINS, VmStats};
use crate::slots::SlotTable;
use crate::text::{FixedText, VmName};
use crate::units::{bytes_to_kib, kib_to_bytes};

/// Where QOM children of interest live (QEMU's /machine/peripheral for devices with an `id`,
/// /machine/peripheral-anon for those without).
const PERIPHERAL_PARENTS: [&str; 2] = ["/machine/peripheral", "/machine/peripheral-anon"];

/// How the QMP backend runs, from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QmpOptions {
    /// Socket paths or glob patterns.
    pub patterns: Vec<String>,
    /// QOM path of the balloon device, when discovery should be skipped.
    pub balloon_path: Option<String>,
    /// Deadline for each command.
    pub timeout: Duration,
    /// `guest-stats-polling-interval`, seconds.
    pub stats_period_s: u64,
    /// Patterns are expanded again every this many rounds.
    pub rescan_ticks: u32,
}

/// A unix socket path as a fixed-size key (`sun_path` holds at most 107 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SocketPath {
    buf: [u8; 108],
    len: usize,
}

impl SocketPath {
    pub fn new(path: &Path) -> Option<SocketPath> {
        let bytes = path.as_os_str().as_bytes();
        if bytes.len() >= 108 {
            return None;
        }
        let mut buf = [0; 108];
        buf[..bytes.len()].copy_from_slice(bytes);
        Some(SocketPath { buf, len: bytes.len() })
    }

    pub fn as_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.buf[..self.len]))
    }
}

impl fmt::Debug for SocketPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_path().display().fmt(f)
    }
}

/// Errors of the QMP backend.
#[derive(Debug)]
pub enum QmpBackendError {
    Vm {
        name: VmName,
        error: QmpError,
    },
    NotConnected(usize),
    /// A target too large to express in bytes.
    TargetTooLarge(u64),
}

impl fmt::Display for QmpBackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QmpBackendError::Vm { name, error } => write!(f, "{name}: {error}"),
            QmpBackendError::NotConnected(slot) => write!(f, "the VM in slot {slot} is not connected"),
            QmpBackendError::TargetTooLarge(kib) => write!(f, "target {kib} KiB does not fit in bytes"),
        }
    }
}

impl std::error::Error for QmpBackendError {}

/// One QEMU behind one socket.
struct Peer {
    path: SocketPath,
    name: VmName,
    client: Option<QmpClient>,
    /// QOM path of its virtio-balloon device; `None` when it has none.
    balloon: Option<FixedText<200>>,
    max_kib: u64,
    /// Reconnection after a failure, per socket.
    backoff: Backoff,
    complaint: Complaint<FixedText<64>>,
}

#[derive(Serialize)]
struct QomPath<'a> {
    path: &'a str,
}

#[derive(Serialize)]
struct QomGet<'a> {
    path: &'a str,
    property: &'static str,
}

#[derive(Serialize)]
struct QomSet<'a> {
    path: &'a str,
    property: &'static str,
    value: u64,
}

#[derive(Serialize)]
struct BalloonTarget {
    value: u64,
}

#[derive(serde::Deserialize)]
struct NameReply {
    name: Option<String>,
}

#[derive(serde::Deserialize)]
struct QomEntry {
    name: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The name shown when QEMU has no `-name`: the socket's file name without extension.
fn name_from_path(path: &Path) -> VmName {
    let stem = path.file_stem().unwrap_or(path.as_os_str());
    VmName::from_bytes_lossy(stem.as_bytes())
}

impl Peer {
    fn new(path: SocketPath) -> Peer {
        Peer {
            path,
            name: name_from_path(path.as_path()),
            client: None,
            balloon: None,
            max_kib: 0,
            backoff: Backoff::new(),
            complaint: Complaint::NONE,
        }
    }

    fn complain(&mut self, what: &str, error: &dyn fmt::Display) {
        self.complaint.report(FixedText::new(what), &self.name, format_args!("{what}: {error}"));
    }

    /// Drops the connection after a failure; the next attempt waits for the backoff.
    fn disconnect(&mut self) {
        self.client = None;
        self.backoff.failed(Instant::now());
    }

    /// Connects and learns what the VM is; `true` when connected.
    fn connect(&mut self, options: &QmpOptions) -> bool {
        let mut client = match QmpClient::connect(self.path.as_path(), options.timeout) {
            Ok(client) => client,
            Err(e) => {
                self.complain("cannot open its QMP socket", &e);
                self.disconnect();
                return false;
            }
        };
        if let Err(e) = self.learn(&mut client, options) {
            self.complain("QMP set-up failed", &e);
            self.disconnect();
            return false;
        }
        log::info!(
            "serving {} ({}), max {} MiB{}",
            self.name,
            self.path.as_path().display(),
            self.max_kib / 1024,
            match &self.balloon {
                Some(p) => format!(", balloon {p}"),
                None => String::new(),
            }
        );
        self.client = Some(client);
        self.backoff.succeeded();
        true
    }

    /// Name, balloon device, stats polling and maximum size.
    fn learn(&mut self, client: &mut QmpClient, options: &QmpOptions) -> Result<(), QmpError> {
        let reply: NameReply = client.execute("query-name", None::<()>)?;
        self.name = match reply.name.as_deref() {
            Some(name) if !name.is_empty() => VmName::new(name),
            _ => name_from_path(self.path.as_path()),
        };
        self.balloon = match &options.balloon_path {
            Some(path) => Some(FixedText::new(path)),
            None => find_balloon(client)?,
        };
        match &self.balloon {
            Some(path) => {
                let set = QomSet {
                    path: path.as_str(),
                    property: "guest-stats-polling-interval",
                    value: options.stats_period_s,
                };
                client.execute::<_, IgnoredAny>("qom-set", Some(set))?;
            }
            None => log::warn!(
                "{}: no virtio-balloon device (start QEMU with -device virtio-balloon-pci,id=balloon0); left alone",
                self.name
            ),
        }
        let summary: MemorySizeSummary = client.execute("query-memory-size-summary", None::<()>)?;
        self.max_kib = summary.max_kib();
        Ok(())
    }

    /// This round's figures.
    fn read(&mut self) -> Result<VmStats, QmpError> {
        let Some(client) = self.client.as_mut() else { return Err(QmpError::Closed) };
        let balloon: BalloonInfo = client.execute("query-balloon", None::<()>)?;
        let stats = match &self.balloon {
            Some(path) => {
                let get = QomGet { path: path.as_str(), property: "guest-stats" };
                Some(client.execute::<_, GuestStats>("qom-get", Some(get))?)
            }
            None => None,
        };
        // QMP speaks bytes; the policy KiB. This is the one place the units change.
        let s = stats.map(|s| s.stats).unwrap_or_default();
        Ok(VmStats {
            actual_kib: bytes_to_kib(balloon.actual),
            max_kib: self.max_kib,
            unused_kib: stat_kib(s.free_memory),
            usable_kib: stat_kib(s.available_memory),
            available_kib: stat_kib(s.total_memory),
            swap_in_kib: stat_kib(s.swap_in),
            swap_out_kib: stat_kib(s.swap_out),
            major_faults: stat_count(s.major_faults),
            last_update_s: stats.map(|s| s.last_update),
            rss_kib: None,
            oom_kills: None,
            alloc_stalls: None,
            direct_reclaims: None,
        })
    }
}

/// The QOM path of the first virtio-balloon device, if any.
fn find_balloon(client: &mut QmpClient) -> Result<Option<FixedText<200>>, QmpError> {
    for parent in PERIPHERAL_PARENTS {
        let children: Vec<QomEntry> = match client.execute("qom-list", Some(QomPath { path: parent })) {
            Ok(children) => children,
            // A machine without anonymous devices has no peripheral-anon container.
            Err(e @ QmpError::Reply { .. }) => {
                log::debug!("qom-list {parent}: {e}");
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(child) = children.iter().find(|c| c.kind.starts_with("child<virtio-balloon")) {
            return Ok(Some(FixedText::new(&format!("{parent}/{}", child.name))));
        }
    }
    Ok(None)
}

/// The backend over every QEMU whose socket matches the patterns.
pub struct QmpBackend {
    options: QmpOptions,
    slots: SlotTable<SocketPath>,
    peers: Box<[Option<Peer>; MAX_DOMAINS]>,
    rounds: u64,
    globs: Vec<glob::Glob>,
    /// Per pattern: did it match something at the last scan (warn on change only).
    matched: Vec<bool>,
    full_warned: bool,
}

impl QmpBackend {
    pub fn new(options: QmpOptions) -> QmpBackend {
        let matched = vec![true; options.patterns.len()];
        let globs = options.patterns.iter().map(|p| glob::Glob::new(p)).collect();
        QmpBackend {
            options,
            globs,
            slots: SlotTable::new(),
            peers: Box::new(std::array::from_fn(|_| None)),
            rounds: 0,
            matched,
            full_warned: false,
        }
    }

    /// Expands the patterns: new sockets get a slot, vanished ones lose theirs.
    fn rescan(&mut self, roster: &mut Roster) {
        let QmpBackend { globs, slots, peers, matched, full_warned, .. } = self;
        slots.begin_round();
        for (glob, matched) in globs.iter_mut().zip(matched.iter_mut()) {
            let mut found = 0;
            for path in glob.matches() {
                let is_socket = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket());
                if !is_socket {
                    log::debug!("{} matches but is not a socket", path.display());
                    continue;
                }
                found += 1;
                let Some(key) = SocketPath::new(path) else {
                    log::warn!("{}: socket path too long (107 bytes at most)", path.display());
                    continue;
                };
                match slots.claim(key) {
                    Some(claim) if claim.new => {
                        log::debug!("found QMP socket {}", path.display());
                        peers[claim.slot] = Some(Peer::new(key));
                        roster.arrived[claim.slot] = true;
                    }
                    Some(_) => {}
                    None if !*full_warned => {
                        log::warn!("more than {MAX_DOMAINS} QMP sockets: the others are not served");
                        *full_warned = true;
                    }
                    None => {}
                }
            }
            if found == 0 && *matched {
                log::warn!("--qmp {} matches no socket (yet); looking again every few rounds", glob.pattern());
            } else if found > 0 && !*matched {
                log::info!("--qmp {} matches {found} socket(s)", glob.pattern());
            }
            *matched = found > 0;
        }
        slots.end_round(|slot, key| {
            let name = peers[slot].as_ref().map_or_else(|| name_from_path(key.as_path()), |p| p.name);
            log::info!("{name} is gone ({} disappeared)", key.as_path().display());
            peers[slot] = None;
        });
    }
}

impl Backend for QmpBackend {
    type Error = QmpBackendError;

    fn describe(&self) -> String {
        format!("QMP {}", self.options.patterns.join(" "))
    }

    fn refresh(&mut self, vms: &mut [Option<VmStats>; MAX_DOMAINS], roster: &mut Roster) -> Result<(), Self::Error> {
        if self.rounds.is_multiple_of(u64::from(self.options.rescan_ticks.max(1))) {
            self.rescan(roster);
        }
        self.rounds += 1;
        let now = Instant::now();
        for (slot, peer) in self.peers.iter_mut().enumerate() {
            let Some(peer) = peer else { continue };
            roster.present[slot] = true;
            if peer.client.is_none() {
                if !peer.backoff.wait(now).is_zero() || !peer.connect(&self.options) {
                    roster.names[slot] = peer.name;
                    continue;
                }
                // A (re)connected QEMU may be a new VM behind the same socket.
                roster.arrived[slot] = true;
            }
            roster.names[slot] = peer.name;
            match peer.read() {
                Ok(stats) => {
                    vms[slot] = Some(stats);
                    peer.complaint.resolved(&peer.name);
                }
                Err(e) => {
                    peer.complain("cannot read its figures", &e);
                    if !e.keeps_connection() {
                        peer.disconnect();
                    }
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, slot: usize, target_kib: u64) -> Result<(), Self::Error> {
        let peer = self.peers.get_mut(slot).and_then(Option::as_mut).ok_or(QmpBackendError::NotConnected(slot))?;
        let value = kib_to_bytes(target_kib).ok_or(QmpBackendError::TargetTooLarge(target_kib))?;
        let client = peer.client.as_mut().ok_or(QmpBackendError::NotConnected(slot))?;
        match client.execute::<_, IgnoredAny>("balloon", Some(BalloonTarget { value })) {
            Ok(_) => Ok(()),
            Err(error) => {
                if !error.keeps_connection() {
                    peer.disconnect();
                }
                Err(QmpBackendError::Vm { name: peer.name, error })
            }
        }
    }
}
