//! The QMP backend: serves bare QEMU VMs through their monitor sockets.
//!
//! Patterns are expanded by the daemon every few rounds, so a QEMU started later is picked up
//! and one that went away is dropped. Each socket is one VM: connect, greeting,
//! `qmp_capabilities`, name (`query-name`, else the socket's file name), the balloon device
//! (`qom-list` under /machine/peripheral and /machine/peripheral-anon, or
//! `--qmp-balloon-path`), the stats polling interval (`qom-set`) and the maximum size
//! (`query-memory-size-summary`); its pid from SO_PEERCRED, for its RSS.
//!
//! A round costs one round trip for all sockets together: `query-balloon` and
//! `qom-get guest-stats` are written back to back to every connected QEMU first, then every
//! socket is waited on at once (`poll`) until all replies are in or one shared deadline
//! (`--qmp-timeout`) passes. Replies are matched by their `id`, which increases per connection:
//! a late reply to an earlier round's command is dropped, never taken for this round's. A
//! QEMU that misses the deadline is skipped this round and asked again after a backoff (the
//! first time, if it stopped between lines, on the same connection, so that its late replies
//! are read and dropped; if it stopped mid-line or misses again, on a new connection). So a hung QEMU adds at most one
//! timeout to a round, whatever the number of sockets or commands. Set-up of new or lost
//! connections shares one more deadline of the same length. Targets are applied with
//! `balloon` (bytes), one VM at a time, each with its own deadline. One VM's trouble is logged
//! once (`Complaint`) and skips that VM only.

use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::Serialize;
use serde::de::IgnoredAny;

use super::client::{QmpClient, QmpError};
use super::glob;
use super::protocol::{
    self, GuestStatValues, MemorySizeSummary, Message, ParseError, RoundReturn, stat_count, stat_kib,
};
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
    /// Deadline of a round (all sockets at once), of set-up, and of each `balloon` command.
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
    /// `/proc/PID/status` of the QEMU process, opened at connect: kept open, it keeps naming
    /// that process even if the pid is reused after it exits (reads then fail: no RSS).
    status: Option<File>,
    round: RoundState,
    /// Rounds in a row this peer missed the deadline on the same connection.
    missed: u32,
}

/// What one peer owes this round.
#[derive(Clone, Copy, Debug, Default)]
struct RoundState {
    /// Ids of this round's commands not answered yet.
    balloon_id: Option<u64>,
    stats_id: Option<u64>,
    /// `query-balloon`'s `actual`, bytes.
    actual: Option<u64>,
    /// `guest-stats`: the stats and their `last-update`.
    stats: Option<(GuestStatValues, u64)>,
    /// Every reply of the round arrived.
    complete: bool,
}

impl RoundState {
    fn waiting(&self) -> bool {
        self.balloon_id.is_some() || self.stats_id.is_some()
    }

    /// The first command still unanswered, for messages.
    fn waiting_for(&self) -> &'static str {
        if self.balloon_id.is_some() { "query-balloon" } else { "qom-get guest-stats" }
    }

    fn expects(&self, id: Option<u64>) -> bool {
        id.is_some() && (id == self.balloon_id || id == self.stats_id)
    }

    /// Takes one line from the peer: a reply to one of this round's commands is kept, events
    /// and replies with any other id (late answers to earlier commands) are dropped.
    fn take(&mut self, line: &[u8]) -> Result<(), QmpError> {
        match protocol::parse::<RoundReturn>(line) {
            Ok(Message::Event | Message::Greeting) => {}
            Ok(Message::Return { id, value }) if id.is_some() && id == self.balloon_id => {
                let actual =
                    value.actual.ok_or(QmpError::Protocol("query-balloon", ParseError::MissingField("actual")))?;
                self.actual = Some(actual);
                self.balloon_id = None;
            }
            Ok(Message::Return { id, value }) if id.is_some() && id == self.stats_id => {
                let (Some(stats), Some(last_update)) = (value.stats, value.last_update) else {
                    return Err(QmpError::Protocol("qom-get guest-stats", ParseError::MissingField("stats")));
                };
                self.stats = Some((stats, last_update));
                self.stats_id = None;
            }
            Ok(Message::Error { id, body }) if self.expects(id) => {
                let command = if id == self.balloon_id { "query-balloon" } else { "qom-get guest-stats" };
                return Err(QmpError::Reply {
                    command,
                    class: FixedText::new(&body.class),
                    desc: FixedText::new(&body.desc),
                });
            }
            Ok(Message::Return { id, .. } | Message::Error { id, .. }) => {
                log::trace!("dropping a reply to command {id:?}: not one of this round's");
            }
            Err(e) => {
                // A reply of another shape (e.g. to a set-up command) may still be a late one,
                // which is no concern of this round: only its id tells.
                match protocol::parse::<IgnoredAny>(line) {
                    Ok(Message::Return { id, .. } | Message::Error { id, .. }) if !self.expects(id) => {}
                    _ => return Err(QmpError::Protocol(self.waiting_for(), e)),
                }
            }
        }
        if !self.waiting() {
            self.complete = true;
        }
        Ok(())
    }
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
            status: None,
            round: RoundState::default(),
            missed: 0,
        }
    }

    fn complain(&mut self, what: &str, error: &dyn fmt::Display) {
        self.complaint.report(FixedText::new(what), &self.name, format_args!("{what}: {error}"));
    }

    /// Drops the connection after a failure; the next attempt waits for the backoff.
    fn disconnect(&mut self) {
        self.client = None;
        self.missed = 0;
        self.status = None;
        self.round = RoundState::default();
        self.backoff.failed(Instant::now());
    }

    /// Connects and learns what the VM is, before `deadline`; `true` when connected.
    fn connect(&mut self, options: &QmpOptions, deadline: Instant) -> bool {
        // Set-up that began after others had used a good part (a quarter or more) of the
        // round's set-up time, and ran out of it, says little about this QEMU: it is tried again
        // next round, unblamed. One that had (nearly) all of it is blamed and backed off.
        let cut_short = deadline.saturating_duration_since(Instant::now()) < options.timeout * 3 / 4;
        let result = QmpClient::connect_until(self.path.as_path(), options.timeout, deadline)
            .map_err(|e| ("cannot open its QMP socket", e))
            .and_then(|mut client| match self.learn(&mut client, options, deadline) {
                Ok(()) => Ok(client),
                Err(e) => Err(("QMP set-up failed", e)),
            });
        let client = match result {
            Ok(client) => client,
            Err((_, e @ QmpError::Timeout(_))) if cut_short => {
                log::debug!("{}: set-up not finished this round ({e}); trying again next round", self.name);
                return false;
            }
            Err((what, e)) => {
                self.complain(what, &e);
                self.disconnect();
                return false;
            }
        };
        // Opened once per connection (this allocates the path), read every round.
        self.status = client.peer_pid().and_then(|pid| File::open(format!("/proc/{pid}/status")).ok());
        // Announced once: a QEMU that fails again after each reconnect is under a complaint
        // already, and the complaint says when it is served again.
        let level = if self.complaint.is_active() { log::Level::Debug } else { log::Level::Info };
        log::log!(
            level,
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
    fn learn(&mut self, client: &mut QmpClient, options: &QmpOptions, deadline: Instant) -> Result<(), QmpError> {
        let reply: NameReply = client.execute_until("query-name", None::<()>, deadline)?;
        self.name = match reply.name.as_deref() {
            Some(name) if !name.is_empty() => VmName::new(name),
            _ => name_from_path(self.path.as_path()),
        };
        self.balloon = match &options.balloon_path {
            Some(path) => Some(FixedText::new(path)),
            None => find_balloon(client, deadline)?,
        };
        match &self.balloon {
            Some(path) => {
                let set = QomSet {
                    path: path.as_str(),
                    property: "guest-stats-polling-interval",
                    value: options.stats_period_s,
                };
                client.execute_until::<_, IgnoredAny>("qom-set", Some(set), deadline)?;
            }
            None => log::warn!(
                "{}: no virtio-balloon device (start QEMU with -device virtio-balloon-pci,id=balloon0); left alone",
                self.name
            ),
        }
        let summary: MemorySizeSummary = client.execute_until("query-memory-size-summary", None::<()>, deadline)?;
        self.max_kib = summary.max_kib();
        Ok(())
    }

    /// Sends this round's commands, pipelined, each with a new id.
    fn begin_round(&mut self, deadline: Instant) -> Result<(), QmpError> {
        let Some(client) = self.client.as_mut() else { return Err(QmpError::Closed) };
        let balloon_id = client.queue("query-balloon", None::<()>)?;
        let stats_id = match &self.balloon {
            Some(path) => Some(client.queue("qom-get", Some(QomGet { path: path.as_str(), property: "guest-stats" }))?),
            None => None,
        };
        client.send_queued(deadline, "query-balloon")?;
        self.round = RoundState { balloon_id: Some(balloon_id), stats_id, ..RoundState::default() };
        Ok(())
    }

    /// Takes every line already read, and reads on (without waiting) while this round's
    /// replies are still due.
    fn pump(&mut self) -> Result<(), QmpError> {
        let Peer { client, round, .. } = self;
        let Some(client) = client.as_mut() else { return Err(QmpError::Closed) };
        loop {
            while let Some(line) = client.next_line() {
                round.take(line)?;
            }
            if !round.waiting() || !client.read_some()? {
                return Ok(());
            }
        }
    }

    /// This round failed for this VM: logged once, skipped; the connection is dropped unless
    /// the stream is still in a known state.
    fn fail_round(&mut self, error: QmpError, now: Instant) {
        self.complain("cannot read its figures", &error);
        self.round = RoundState::default();
        let keep = match error {
            // Late once, between lines: keep the connection and ask again after the backoff;
            // its late replies will be read then and dropped by id. Late again: a fresh
            // connection (a QEMU that reads nothing would otherwise fill the socket buffer).
            QmpError::Timeout(_) => {
                self.missed += 1;
                self.missed == 1 && !self.client.as_ref().is_some_and(QmpClient::has_partial_line)
            }
            ref e => e.keeps_connection(),
        };
        if !keep {
            self.disconnect();
        } else if matches!(error, QmpError::Timeout(_)) {
            self.backoff.failed(now);
        }
    }

    /// This round's figures, once every reply arrived.
    fn figures(&self, status_buf: &mut [u8]) -> Option<VmStats> {
        if !self.round.complete {
            return None;
        }
        let actual = self.round.actual?;
        // QMP speaks bytes; the policy KiB. This is the one place the units change.
        let s = self.round.stats.map(|(s, _)| s).unwrap_or_default();
        Some(VmStats {
            actual_kib: bytes_to_kib(actual),
            max_kib: self.max_kib,
            unused_kib: stat_kib(s.free_memory),
            usable_kib: stat_kib(s.available_memory),
            available_kib: stat_kib(s.total_memory),
            swap_in_kib: stat_kib(s.swap_in),
            swap_out_kib: stat_kib(s.swap_out),
            major_faults: stat_count(s.major_faults),
            last_update_s: self.round.stats.map(|(_, t)| t),
            rss_kib: self.status.as_ref().and_then(|f| read_vm_rss_kib(f, status_buf)),
            oom_kills: stat_count(s.oom_kills),
            alloc_stalls: stat_count(s.alloc_stalls),
            direct_reclaims: stat_count(s.direct_reclaims),
        })
    }
}

/// Longest `/proc/PID/status` read; `VmRSS` is in its first kilobyte.
const STATUS_BUF_BYTES: usize = 4096;

/// `VmRSS` of an open `/proc/PID/status`, KiB; `None` once the process is gone.
fn read_vm_rss_kib(status: &File, buf: &mut [u8]) -> Option<u64> {
    // pread at 0 reads the file afresh each time, with no seek and no allocation.
    let n = status.read_at(buf, 0).ok()?;
    vm_rss_kib(&buf[..n])
}

/// Parses the `VmRSS:    12345 kB` line (the kernel prints it in kB, i.e. KiB).
fn vm_rss_kib(status: &[u8]) -> Option<u64> {
    let at = status.windows(7).position(|w| w == b"\nVmRSS:")? + 7;
    let rest = &status[at..];
    let digits = rest.iter().skip_while(|b| b.is_ascii_whitespace()).take_while(|b| b.is_ascii_digit());
    let mut kib: Option<u64> = None;
    for d in digits {
        kib = Some(kib.unwrap_or(0).checked_mul(10)?.checked_add(u64::from(d - b'0'))?);
    }
    kib
}

/// The QOM path of the first virtio-balloon device, if any.
fn find_balloon(client: &mut QmpClient, deadline: Instant) -> Result<Option<FixedText<200>>, QmpError> {
    for parent in PERIPHERAL_PARENTS {
        let children: Vec<QomEntry> = match client.execute_until("qom-list", Some(QomPath { path: parent }), deadline) {
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
    /// Where `/proc/PID/status` is read each round.
    status_buf: Box<[u8; STATUS_BUF_BYTES]>,
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
            status_buf: Box::new([0; STATUS_BUF_BYTES]),
        }
    }

    /// Makes every peer that failed due for a new attempt at the next round, as if its
    /// backoff had run out: the benchmark measures rounds with a hung peer in them this way.
    #[doc(hidden)]
    pub fn retry_failed_peers_now(&mut self) {
        for peer in self.peers.iter_mut().flatten() {
            peer.backoff = Backoff::new();
        }
    }

    /// Waits until every peer that owes replies has sent them, or the deadline passed; then
    /// whoever still owes one failed this round.
    fn collect(&mut self, deadline: Instant) {
        // The first pass reads whatever is there already; later passes only the sockets that
        // poll says are readable.
        let mut ready = [true; MAX_DOMAINS];
        loop {
            let mut waiting = 0usize;
            for (slot, peer) in self.peers.iter_mut().enumerate() {
                let Some(peer) = peer.as_mut().filter(|p| p.round.waiting()) else { continue };
                if ready[slot]
                    && let Err(e) = peer.pump()
                {
                    peer.fail_round(e, Instant::now());
                    continue;
                }
                waiting += usize::from(peer.round.waiting());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if waiting == 0 || left.is_zero() {
                break;
            }
            ready = [false; MAX_DOMAINS];
            if let Err(e) = wait_readable(&self.peers, left, &mut ready) {
                log::warn!("poll on the QMP sockets failed: {e}; this round's late replies are given up");
                break;
            }
        }
        let now = Instant::now();
        for peer in self.peers.iter_mut().flatten().filter(|p| p.round.waiting()) {
            let error = QmpError::Timeout(peer.round.waiting_for());
            peer.fail_round(error, now);
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
        let timeout = self.options.timeout;

        // Connections to (re)establish, all within one deadline: a QEMU that hangs during
        // set-up costs at most that, and the others wait for the next round.
        let connect_deadline = Instant::now() + timeout;
        for (slot, peer) in self.peers.iter_mut().enumerate() {
            let Some(peer) = peer else { continue };
            roster.present[slot] = true;
            let now = Instant::now();
            if peer.client.is_none()
                && peer.backoff.wait(now).is_zero()
                && now < connect_deadline
                && peer.connect(&self.options, connect_deadline)
            {
                // A (re)connected QEMU may be a new VM behind the same socket.
                roster.arrived[slot] = true;
            }
            roster.names[slot] = peer.name;
        }

        // Every connected peer gets the round's commands before any reply is waited for.
        let deadline = Instant::now() + timeout;
        for peer in self.peers.iter_mut().flatten() {
            peer.round = RoundState::default();
            let now = Instant::now();
            if peer.client.is_none() || !peer.backoff.wait(now).is_zero() {
                continue;
            }
            if let Err(e) = peer.begin_round(deadline) {
                peer.fail_round(e, now);
            }
        }
        self.collect(deadline);

        let QmpBackend { peers, status_buf, .. } = self;
        for (slot, peer) in peers.iter_mut().enumerate() {
            let Some(peer) = peer else { continue };
            if let Some(stats) = peer.figures(&mut status_buf[..]) {
                vms[slot] = Some(stats);
                peer.missed = 0;
                peer.backoff.succeeded();
                peer.complaint.resolved(&peer.name);
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

/// Polls the sockets of the peers that still owe replies, until one is readable or `left`
/// passes; marks the readable ones (or hung up, or in error: reading tells which) in `ready`.
fn wait_readable(
    peers: &[Option<Peer>; MAX_DOMAINS],
    left: Duration,
    ready: &mut [bool; MAX_DOMAINS],
) -> nix::Result<()> {
    let mut waiting = peers
        .iter()
        .enumerate()
        .filter_map(|(slot, p)| Some((slot, p.as_ref().filter(|p| p.round.waiting())?.client.as_ref()?)));
    let Some((first_slot, first)) = waiting.next() else { return Ok(()) };
    // A fixed array on the stack (no allocation); entries past `n` repeat the first socket
    // and are not passed to poll.
    let mut fds: [PollFd<'_>; MAX_DOMAINS] = std::array::from_fn(|_| PollFd::new(first.fd(), PollFlags::POLLIN));
    let mut slots = [first_slot; MAX_DOMAINS];
    let mut n = 1;
    for (slot, client) in waiting {
        fds[n] = PollFd::new(client.fd(), PollFlags::POLLIN);
        slots[n] = slot;
        n += 1;
    }
    let timeout = PollTimeout::try_from(left.as_millis().saturating_add(1)).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds[..n], timeout) {
        Ok(_) => {}
        Err(nix::errno::Errno::EINTR) => return Ok(()),
        Err(e) => return Err(e),
    }
    for (fd, slot) in fds[..n].iter().zip(slots) {
        if fd.revents().is_some_and(|r| !r.is_empty()) {
            ready[slot] = true;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_from_proc_status_in_kib() {
        let status = b"Name:\tqemu-system-x86\nVmPeak:\t 2516276 kB\nVmRSS:\t  312848 kB\nRssAnon:\t 300000 kB\n";
        assert_eq!(vm_rss_kib(status), Some(312_848));
        assert_eq!(vm_rss_kib(b"Name:\tkthreadd\nState:\tS\n"), None, "kernel threads have no VmRSS");
        assert_eq!(vm_rss_kib(b"x\nVmRSS:\t99999999999999999999999 kB\n"), None, "overflow is no figure");
        let own = File::open("/proc/self/status").unwrap();
        let mut buf = [0; STATUS_BUF_BYTES];
        assert!(read_vm_rss_kib(&own, &mut buf).is_some_and(|kib| kib > 0));
    }
}
