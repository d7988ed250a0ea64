//! Prometheus metrics: each round, the loop formats the text exposition format (version 0.0.4)
//! and hands it to up to two outlets:
//!
//! - `--metrics-file PATH`, for node_exporter's textfile collector: written to `PATH.tmp` in the
//!   same directory, then renamed over `PATH`, so a reader sees the previous round or this one,
//!   never half a file (rename(2) within one filesystem is atomic; the collector only reads
//!   `*.prom`, so it never sees the `.tmp`).
//! - `--metrics-listen ADDR`: a minimal HTTP/1.0 server on a thread of its own answers
//!   `GET /metrics` with the latest exposition.
//!
//! The loop thread allocates nothing here: it formats into a buffer allocated once with room
//! for [`MAX_DOMAINS`] VMs with the longest names (a writer that refuses to grow it), then
//! swaps that buffer with the one the server reads, under a mutex held only for the swap. The
//! server thread copies the exposition out before writing to a client, so a slow client never
//! holds the lock; it may allocate.
//!
//! Sizes are bytes (Prometheus's base unit), converted from the KiB the daemon works in.

use std::fmt::{self, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::socket::{setsockopt, sockopt};

use crate::coordinator::{Roster, Summary};
use crate::policy::{Decisions, Hold, MAX_DOMAINS, Snapshot};
use crate::text::VmName;
use crate::unserved;

/// The media type of the text exposition format, version 0.0.4 (Prometheus documentation,
/// "Exposition formats").
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Every metric's name starts with this.
const PREFIX: &str = "memory_coordinator_";

const BYTES_PER_KIB: u64 = 1024;

/// The values of `memory_coordinator_vm_state`'s `reason` label: `served`, then every reason
/// [`unserved::reason`] gives for a VM not being served. One series per state, 1 for the VM's
/// current one, so that a query can select `{reason!="served"} == 1`.
const STATES: [Option<Hold>; 7] = [
    None,
    Some(Hold::Excluded),
    Some(Hold::Unanswered),
    Some(Hold::NoStats),
    Some(Hold::Stale),
    Some(Hold::Inconsistent),
    Some(Hold::AtMax),
];

fn state_label(state: Option<Hold>) -> &'static str {
    state.map_or("served", Hold::as_str)
}

/// Bytes one VM can take in the exposition at most: [`VM_SERIES`] lines, each with the
/// longest metric name (48), a name of `VmName`'s capacity where every byte is escaped (2 per
/// byte), the longest reason label (25), a u64 (20) and punctuation. Six gauges and the
/// states, plus one line to spare for a gauge added later; the unit test
/// `the_largest_exposition_fits_the_buffer_allocated_at_start` checks the sum.
const VM_SERIES: usize = 7 + STATES.len();
const MAX_VM_BYTES: usize = VM_SERIES * (48 + 2 * VmName::CAPACITY + 25 + 20 + 16);
/// The header lines (HELP and TYPE of every family) and the host-wide series.
const MAX_HEADER_BYTES: usize = 8 * 1024;
/// What the formatting buffer is allocated with: room for every VM the loop can hold.
pub const CAPACITY_BYTES: usize = MAX_HEADER_BYTES + MAX_DOMAINS * MAX_VM_BYTES;

/// A whole HTTP request head larger than this is refused (431): a scrape is one short line.
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A client gets this long in all to send its request, take the answer and close; then its
/// connection is reset.
const CLIENT_DEADLINE: Duration = Duration::from_secs(5);
/// A client beyond [`MAX_CLIENTS`] gets this long to take its 503: it holds up the accepting
/// thread meanwhile.
const BUSY_DEADLINE: Duration = Duration::from_millis(200);
/// Clients answered at once, each on a thread of its own, so that a slow one does not hold up
/// a scrape; a client beyond these is told 503 at once.
const MAX_CLIENTS: usize = 8;

/// Where the metrics go, from the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsOptions {
    /// `--metrics-file`: node_exporter textfile collector file.
    pub file: Option<PathBuf>,
    /// `--metrics-listen`: address of the HTTP endpoint.
    pub listen: Option<SocketAddr>,
}

impl MetricsOptions {
    pub fn enabled(&self) -> bool {
        self.file.is_some() || self.listen.is_some()
    }
}

/// Errors of this module: what stops the metrics outlets from starting.
#[derive(Debug)]
pub enum MetricsError {
    /// `--metrics-file` names a directory, or no file.
    NotAFile(PathBuf),
    /// The directory of `--metrics-file` does not take new files.
    Directory { tmp: PathBuf, source: io::Error },
    /// `--metrics-listen` could not be bound.
    Listen { addr: SocketAddr, source: io::Error },
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsError::NotAFile(path) => {
                write!(
                    f,
                    "--metrics-file {}: not a file name; give a path such as /var/lib/node_exporter/memory_coordinator.prom",
                    path.display()
                )
            }
            MetricsError::Directory { tmp, source } => write!(
                f,
                "--metrics-file: cannot create {} ({source}); the file is written there and renamed over the target \
                 each round, so its directory must exist and be writable by the daemon",
                tmp.display()
            ),
            MetricsError::Listen { addr, source } => {
                let (family, ip) = if addr.is_ipv4() { ("AF_INET", "IPv4") } else { ("AF_INET6", "IPv6") };
                match source.raw_os_error() {
                    // What socket(2) says when a seccomp filter refuses the family (systemd's
                    // RestrictAddressFamilies=), or when the kernel has no IPv6 at all.
                    Some(libc::EAFNOSUPPORT) => write!(
                        f,
                        "--metrics-listen {addr}: cannot open an {ip} socket ({source}): this process may not use \
                         {family}. Under systemd, the unit's RestrictAddressFamilies= must list {family}: add it in \
                         a drop-in (systemctl edit memory-coordinator: [Service] RestrictAddressFamilies=AF_UNIX \
                         AF_INET AF_INET6){}",
                        if addr.is_ipv4() { "" } else { "; or the kernel runs without IPv6: listen on 127.0.0.1" }
                    ),
                    Some(libc::EACCES) if addr.port() < 1024 => write!(
                        f,
                        "--metrics-listen {addr}: cannot listen ({source}): ports below 1024 need \
                         CAP_NET_BIND_SERVICE, which the service unit does not keep; choose a port above 1023"
                    ),
                    _ => write!(f, "--metrics-listen {addr}: cannot listen ({source}); choose a free port or address"),
                }
            }
        }
    }
}

impl std::error::Error for MetricsError {}

/// The exposition the HTTP server serves, swapped in by the loop each round.
#[derive(Clone)]
pub struct Shared(Arc<Mutex<Vec<u8>>>);

impl Shared {
    fn new() -> Shared {
        Shared(Arc::new(Mutex::new(Vec::with_capacity(CAPACITY_BYTES))))
    }

    /// Copies the latest exposition into `out` (the server's own buffer).
    fn copy_into(&self, out: &mut Vec<u8>) {
        // A poisoned lock only means another thread panicked while holding it; the buffer is
        // still a whole exposition (it is swapped, never written in place).
        let text = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        out.clear();
        out.extend_from_slice(&text);
    }
}

/// The `--metrics-file` target and the temporary file beside it.
struct FileTarget {
    path: PathBuf,
    tmp: PathBuf,
}

impl FileTarget {
    /// Checks that the file's directory takes new files, by creating and removing `PATH.tmp`;
    /// an existing `PATH` is left as it is (an empty file would look like "no metrics").
    fn check(path: &Path) -> Result<FileTarget, MetricsError> {
        if path.is_dir() || path.file_name().is_none() {
            return Err(MetricsError::NotAFile(path.to_owned()));
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .and_then(|_| std::fs::remove_file(&tmp))
            .map_err(|source| MetricsError::Directory { tmp: tmp.clone(), source })?;
        if path.extension().is_none_or(|e| e != "prom") {
            log::warn!(
                "--metrics-file {}: node_exporter's textfile collector reads only files ending in .prom",
                path.display()
            );
        }
        Ok(FileTarget { path: path.to_owned(), tmp })
    }

    /// Writes `text` to the temporary file and renames it over the target. Without fsync: a
    /// crash loses at most a round's figures, which the next round writes again, while a
    /// flush to disk every round would cost the host I/O for nothing.
    fn write(&self, text: &[u8]) -> io::Result<()> {
        // Paths shorter than 384 bytes are turned into C strings on the stack by std: no
        // allocation.
        let mut file = File::create(&self.tmp)?;
        // Readable by node_exporter, which does not run as root, whatever the umask (the
        // service's is 0077). fchmod: no allocation.
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
        file.write_all(text)?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)
    }
}

/// One round, as the coordinator saw it, for [`Metrics::publish`].
pub struct RoundView<'a> {
    pub summary: &'a Summary,
    /// Times the backend became unavailable.
    pub backend_outages: u64,
    pub backend_up: bool,
    /// The host's figures were read this round (`snapshot.host` is this round's).
    pub host_read: bool,
    /// The VMs were read and decided on this round (`roster`, `snapshot.vms` and `decisions`
    /// are this round's).
    pub vms_read: bool,
    pub snapshot: &'a Snapshot,
    pub decisions: &'a Decisions,
    pub roster: &'a Roster,
}

/// The metrics outlets and the buffer the loop formats into.
pub struct Metrics {
    text: Vec<u8>,
    file: Option<FileTarget>,
    shared: Option<Shared>,
    /// The last file write failed (a failure that repeats is logged once).
    file_failing: bool,
}

impl Metrics {
    /// Checks the file's directory and binds the listening socket; starts the server thread.
    /// Nothing is written to the file before the first round.
    pub fn start(options: &MetricsOptions) -> Result<Metrics, MetricsError> {
        let file = options.file.as_deref().map(FileTarget::check).transpose()?;
        let shared = match options.listen {
            Some(addr) => {
                let listener = TcpListener::bind(addr).map_err(|source| MetricsError::Listen { addr, source })?;
                let shared = Shared::new();
                let bound = listener.local_addr().unwrap_or(addr);
                serve(listener, shared.clone(), CLIENT_DEADLINE)
                    .map_err(|source| MetricsError::Listen { addr, source })?;
                log::info!("metrics at http://{bound}/metrics");
                Some(shared)
            }
            None => None,
        };
        if let Some(f) = &file {
            log::info!("metrics written to {} each round", f.path.display());
        }
        Ok(Metrics { text: Vec::with_capacity(CAPACITY_BYTES), file, shared, file_failing: false })
    }

    /// Serves the metrics on an already bound listener (tests bind port 0 and read the port).
    pub fn with_listener(self, listener: TcpListener) -> io::Result<Metrics> {
        self.with_listener_deadline(listener, CLIENT_DEADLINE)
    }

    /// [`Metrics::with_listener`] with another deadline per client than the daemon's 5 s, so
    /// that a test of the deadline need not wait that long.
    #[doc(hidden)]
    pub fn with_listener_deadline(mut self, listener: TcpListener, deadline: Duration) -> io::Result<Metrics> {
        let shared = Shared::new();
        serve(listener, shared.clone(), deadline)?;
        self.shared = Some(shared);
        Ok(self)
    }

    /// Formats this round's exposition and hands it to the outlets. Allocates nothing.
    pub fn publish(&mut self, round: &RoundView) {
        self.text.clear();
        if render(&mut self.text, round).is_err() {
            // Cannot happen: the buffer has room for MAX_DOMAINS VMs with the longest names.
            log::error!("metrics: the exposition outgrew its buffer; this round's metrics are not published");
            return;
        }
        if let Some(target) = &self.file {
            match target.write(&self.text) {
                Ok(()) => {
                    if std::mem::take(&mut self.file_failing) {
                        log::info!("metrics written to {} again", target.path.display());
                    }
                }
                Err(e) => {
                    if !std::mem::replace(&mut self.file_failing, true) {
                        log::warn!(
                            "cannot write the metrics file {}: {e}; the file keeps an older round until this is fixed",
                            target.tmp.display()
                        );
                    }
                }
            }
        }
        if let Some(shared) = &self.shared {
            // Both buffers were allocated with CAPACITY_BYTES: swapping keeps each its room.
            let mut served = shared.0.lock().unwrap_or_else(PoisonError::into_inner);
            std::mem::swap(&mut *served, &mut self.text);
        }
    }
}

/// A `fmt::Write` over a `Vec<u8>` that never grows it: a write that does not fit fails.
struct Bounded<'a>(&'a mut Vec<u8>);

impl fmt::Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.0.capacity() - self.0.len() < s.len() {
            return Err(fmt::Error);
        }
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl Bounded<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) -> fmt::Result {
        write!(self, "# HELP {PREFIX}{name} {help}\n# TYPE {PREFIX}{name} {kind}\n")
    }

    fn sample(&mut self, name: &str, value: u64) -> fmt::Result {
        writeln!(self, "{PREFIX}{name} {value}")
    }

    fn vm_sample(&mut self, name: &str, vm: &str, reason: Option<&str>, value: u64) -> fmt::Result {
        write!(self, "{PREFIX}{name}{{vm=\"")?;
        escape_label_value(self, vm)?;
        if let Some(reason) = reason {
            write!(self, "\",reason=\"{reason}")?;
        }
        writeln!(self, "\"}} {value}")
    }
}

/// Writes `value` as a label value of the text format: backslash, double quote and line feed
/// are escaped (`\\`, `\"`, `\n`); everything else is written as it is (UTF-8).
fn escape_label_value(w: &mut impl fmt::Write, value: &str) -> fmt::Result {
    let mut rest = value;
    while let Some(at) = rest.find(['\\', '"', '\n']) {
        w.write_str(&rest[..at])?;
        w.write_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        })?;
        rest = &rest[at + 1..];
    }
    w.write_str(rest)
}

fn bytes(kib: u64) -> u64 {
    kib.saturating_mul(BYTES_PER_KIB)
}

/// One VM's figure in a round (its slot), in bytes; `None`: no series this round.
type VmFigure = fn(&RoundView, usize) -> Option<u64>;

/// The exposition of one round, appended to `out` without growing it.
fn render(out: &mut Vec<u8>, r: &RoundView) -> fmt::Result {
    let w = &mut Bounded(out);
    let s = r.summary;
    w.family("ticks_total", "counter", "Balancing rounds run since the daemon started.")?;
    w.sample("ticks_total", s.ticks)?;
    w.family("backend_up", "gauge", "1 if the backend (libvirt or the QMP sockets) answered this round, else 0.")?;
    w.sample("backend_up", u64::from(r.backend_up))?;
    w.family("backend_outages_total", "counter", "Times the backend as a whole became unavailable.")?;
    w.sample("backend_outages_total", r.backend_outages)?;
    for (name, help, value) in [
        ("grows_total", "Balloon grows applied.", s.grows),
        ("shrinks_total", "Balloon shrinks applied.", s.shrinks),
        ("failed_actions_total", "Grows, shrinks and cancels the backend refused.", s.failed_actions),
        ("granted_bytes_total", "Memory given to VMs by applied grows.", bytes(s.granted_kib)),
        ("released_bytes_total", "Memory taken back from VMs by applied shrinks.", bytes(s.released_kib)),
    ] {
        w.family(name, "counter", help)?;
        w.sample(name, value)?;
    }
    if r.host_read {
        w.family("host_available_bytes", "gauge", "Host MemAvailable (/proc/meminfo).")?;
        w.sample("host_available_bytes", bytes(r.snapshot.host.available_kib))?;
        w.family("host_total_bytes", "gauge", "Host MemTotal (/proc/meminfo).")?;
        w.sample("host_total_bytes", bytes(r.snapshot.host.total_kib))?;
    }
    if !r.vms_read {
        return Ok(());
    }
    w.family(
        "host_headroom_bytes",
        "gauge",
        "Host MemAvailable minus what guests hold and may still touch: what the policy may give.",
    )?;
    w.sample("host_headroom_bytes", bytes(r.decisions.headroom_kib))?;
    w.family("vms", "gauge", "VMs found this round, served or not.")?;
    w.sample("vms", u64::try_from(r.roster.count()).unwrap_or(u64::MAX))?;

    let slots = || (0..MAX_DOMAINS).filter(|s| r.roster.present[*s]);
    let name = |slot: usize| r.roster.names[slot].as_str();
    let vm_families: [(&str, &str, VmFigure); 6] = [
        ("vm_actual_bytes", "Balloon size: the memory the guest has now.", |r, s| {
            r.snapshot.vms[s].map(|v| bytes(v.actual_kib))
        }),
        ("vm_max_bytes", "The most memory the VM may be given (its configured maximum).", |r, s| {
            r.snapshot.vms[s].map(|v| bytes(v.max_kib))
        }),
        ("vm_free_bytes", "Guest MemFree, as the balloon driver last reported it.", |r, s| {
            r.snapshot.vms[s].and_then(|v| v.unused_kib).map(bytes)
        }),
        ("vm_available_bytes", "Guest MemAvailable (free plus reclaimable cache), as last reported.", |r, s| {
            r.snapshot.vms[s].and_then(|v| v.usable_kib).map(bytes)
        }),
        ("vm_consumption_bytes_per_second", "Measured rate at which the guest uses up its free memory.", |r, s| {
            r.snapshot.vms[s].map(|_| r.decisions.vms[s].consumption_kib_s.saturating_mul(BYTES_PER_KIB))
        }),
        ("vm_target_bytes", "Balloon target set this round; absent in rounds without an action.", |r, s| {
            r.decisions.vms[s].action.target_kib().map(bytes)
        }),
    ];
    for (family, help, value) in vm_families {
        w.family(family, "gauge", help)?;
        for slot in slots() {
            if let Some(v) = value(r, slot) {
                w.vm_sample(family, name(slot), None, v)?;
            }
        }
    }
    w.family(
        "vm_state",
        "gauge",
        "1 for the VM's state this round: served, or the reason it is not (excluded, unanswered, no_stats, \
         stale, inconsistent, at_max); 0 for the others.",
    )?;
    for slot in slots() {
        let now = unserved::reason(r.decisions.vms[slot].action);
        for state in STATES {
            w.vm_sample("vm_state", name(slot), Some(state_label(state)), u64::from(now == state))?;
        }
    }
    Ok(())
}

/// Starts the server thread. It runs until the process exits. Each client has `deadline` in
/// all, from its connection to its close.
fn serve(listener: TcpListener, shared: Shared, deadline: Duration) -> io::Result<()> {
    std::thread::Builder::new().name("metrics-http".into()).spawn(move || {
        let clients = Arc::new(AtomicUsize::new(0));
        for conn in listener.incoming() {
            match conn {
                Ok(stream) => {
                    if clients.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                        clients.fetch_sub(1, Ordering::AcqRel);
                        // Briefly: this holds up the accepting thread.
                        let mut busy = Exchange::new(&stream, BUSY_DEADLINE);
                        let told = respond(&mut busy, "503 Service Unavailable", "text/plain", b"busy\n", false);
                        busy.close(told);
                        continue;
                    }
                    let (shared, mine) = (shared.clone(), Arc::clone(&clients));
                    let spawned = std::thread::Builder::new().name("metrics-client".into()).spawn(move || {
                        let mut exchange = Exchange::new(&stream, deadline);
                        let answered = answer(&mut exchange, &shared, &mut Vec::new());
                        if let Err(e) = &answered {
                            log::debug!("metrics: a client's request failed: {e}");
                        }
                        exchange.close(answered);
                        mine.fetch_sub(1, Ordering::AcqRel);
                    });
                    if let Err(e) = spawned {
                        clients.fetch_sub(1, Ordering::AcqRel);
                        log::debug!("metrics: cannot start a thread for a client: {e}");
                    }
                }
                Err(e) => {
                    log::debug!("metrics: accept failed: {e}");
                    // Out of descriptors, say: wait rather than spin.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    })?;
    Ok(())
}

/// One client's connection and the one deadline its whole exchange must meet. Each read and
/// each write is given only the time left: a timeout set once on the socket (SO_SNDTIMEO)
/// applies to every write() anew, so a client that takes a little of the answer now and then
/// would keep a thread, and the connection, for as long as it likes.
struct Exchange<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl<'a> Exchange<'a> {
    fn new(stream: &'a TcpStream, deadline: Duration) -> Exchange<'a> {
        Exchange { stream, deadline: Instant::now() + deadline }
    }

    fn left(&self) -> io::Result<Duration> {
        match self.deadline.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => Err(past_deadline()),
        }
    }

    /// Ends the connection. After an answer, the sending side is shut and what the client
    /// still sends is read and dropped until it closes (closing a socket with unread input
    /// sends a reset, which may destroy the answer before the client has read it), within the
    /// deadline. Past the deadline, or after a failed exchange, the connection is reset: a
    /// plain close would leave the kernel to go on feeding the rest of the answer to a client
    /// that reads too slowly, long after this thread gave up on it.
    fn close(mut self, answered: io::Result<()>) {
        if answered.is_ok() && self.stream.shutdown(std::net::Shutdown::Write).is_ok() {
            let mut sink = [0u8; 4096];
            loop {
                match self.read(&mut sink) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        // SO_LINGER with a zero timeout: close(2) discards what is unsent and resets.
        let reset = libc::linger { l_onoff: 1, l_linger: 0 };
        if let Err(e) = setsockopt(self.stream, sockopt::Linger, &reset) {
            log::debug!("metrics: cannot reset a client's connection: {e}");
        }
    }
}

fn past_deadline() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the client's deadline passed")
}

/// A socket timeout shows as EAGAIN: said as what it means here.
fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock { past_deadline() } else { e }
}

impl Read for Exchange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        let mut stream = self.stream;
        stream.read(buf).map_err(timed_out)
    }
}

impl Write for Exchange<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        let mut stream = self.stream;
        stream.write(buf).map_err(timed_out)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads one request (head only: a GET has no body) and answers it.
fn answer(exchange: &mut Exchange, shared: &Shared, body: &mut Vec<u8>) -> io::Result<()> {
    let mut request = [0u8; MAX_REQUEST_BYTES];
    let mut len = 0;
    let complete = loop {
        if head_complete(&request[..len]) {
            break true;
        }
        if len == request.len() {
            break false;
        }
        match exchange.read(&mut request[len..]) {
            Ok(0) => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the client closed before its request ended"));
            }
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    if !complete {
        return respond(exchange, "431 Request Header Fields Too Large", "text/plain", b"request too large\n", true);
    }
    let line = request[..len].split(|b| *b == b'\n').next().unwrap_or_default();
    let mut words = line.split(|b| *b == b' ').filter(|w| !w.is_empty());
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split(|b| *b == b'?').next().unwrap_or_default();
    let head = method == b"HEAD";
    if method != b"GET" && !head {
        return respond(exchange, "405 Method Not Allowed", "text/plain", b"only GET /metrics\n", false);
    }
    if path != b"/metrics" {
        return respond(exchange, "404 Not Found", "text/plain", b"not found: the metrics are at /metrics\n", head);
    }
    shared.copy_into(body);
    if body.is_empty() {
        return respond(exchange, "503 Service Unavailable", "text/plain", b"no round has finished yet\n", head);
    }
    respond(exchange, "200 OK", CONTENT_TYPE, body, head)
}

/// The request head has ended (an empty line), with or without carriage returns.
fn head_complete(request: &[u8]) -> bool {
    request.windows(4).any(|w| w == b"\r\n\r\n") || request.windows(2).any(|w| w == b"\n\n")
}

fn respond(out: &mut Exchange, status: &str, content_type: &str, body: &[u8], head_only: bool) -> io::Result<()> {
    let allow = if status.starts_with("405") { "Allow: GET, HEAD\r\n" } else { "" };
    // Formatted on the stack and sent whole: write! straight to the socket would make a
    // write() of every piece.
    let mut head = [0u8; 256];
    let mut cursor = io::Cursor::new(&mut head[..]);
    write!(
        cursor,
        "HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )?;
    let len = usize::try_from(cursor.position()).unwrap_or(head.len());
    out.write_all(&head[..len])?;
    if !head_only {
        out.write_all(body)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Action, VmStats};

    fn escaped(s: &str) -> String {
        let mut out = String::new();
        escape_label_value(&mut out, s).unwrap();
        out
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline_only() {
        assert_eq!(escaped("web-1"), "web-1");
        assert_eq!(escaped(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escaped("two\nlines"), r"two\nlines");
        assert_eq!(escaped("é{}=,"), "é{}=,");
        assert_eq!(escaped("\\\\\""), r#"\\\\\""#);
    }

    fn stats(actual_kib: u64) -> VmStats {
        VmStats {
            actual_kib,
            max_kib: actual_kib,
            unused_kib: Some(u64::MAX),
            usable_kib: Some(u64::MAX),
            ..VmStats::default()
        }
    }

    /// A round with every slot full, names of the longest length made only of characters
    /// that are escaped, and the largest figures: the worst case for the buffer.
    #[test]
    fn the_largest_exposition_fits_the_buffer_allocated_at_start() {
        let mut snapshot = Box::new(Snapshot::EMPTY);
        let mut roster = Box::new(Roster::EMPTY);
        let mut decisions = Box::new(Decisions::EMPTY);
        let name = "\"".repeat(VmName::CAPACITY);
        for slot in 0..MAX_DOMAINS {
            snapshot.vms[slot] = Some(stats(u64::MAX));
            roster.present[slot] = true;
            roster.names[slot] = VmName::new(&name);
            decisions.vms[slot].action = Action::Grow { target_kib: u64::MAX };
            decisions.vms[slot].consumption_kib_s = u64::MAX;
        }
        snapshot.host.available_kib = u64::MAX;
        let summary = Summary { ticks: u64::MAX, ..Summary::default() };
        let round = RoundView {
            summary: &summary,
            backend_outages: u64::MAX,
            backend_up: true,
            host_read: true,
            vms_read: true,
            snapshot: &snapshot,
            decisions: &decisions,
            roster: &roster,
        };
        let mut out = Vec::with_capacity(CAPACITY_BYTES);
        assert!(render(&mut out, &round).is_ok(), "the worst case did not fit in {CAPACITY_BYTES} bytes");
        assert_eq!(out.capacity(), CAPACITY_BYTES, "the buffer grew");
        // And the bound is not wildly loose: within a factor of two of the worst case.
        assert!(out.len() * 2 > CAPACITY_BYTES, "{} of {CAPACITY_BYTES}", out.len());
    }

    #[test]
    fn a_write_that_does_not_fit_fails_instead_of_growing_the_buffer() {
        let mut out = Vec::with_capacity(8);
        let mut w = Bounded(&mut out);
        assert!(w.write_str("12345678").is_ok());
        assert!(w.write_str("9").is_err());
        assert_eq!(out.capacity(), 8);
    }

    #[test]
    fn a_request_head_ends_at_an_empty_line() {
        assert!(head_complete(b"GET /metrics HTTP/1.0\r\n\r\n"));
        assert!(head_complete(b"GET /metrics HTTP/1.0\n\n"));
        assert!(!head_complete(b"GET /metrics HTTP/1.0\r\nHost: x\r\n"));
    }

    /// Each write is given only the time left: a reader that takes a little at a time, so
    /// that every write() makes some progress, still sees the exchange end at its deadline.
    #[test]
    fn an_answer_read_a_little_at_a_time_still_ends_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        // Small buffers: the answer cannot wait in the kernel, each write waits for the reader.
        setsockopt(&server, sockopt::SndBuf, &4096).unwrap();
        setsockopt(&client, sockopt::RcvBuf, &4096).unwrap();
        let reader = std::thread::spawn(move || {
            let (mut client, mut buf, mut got) = (client, [0u8; 2048], 0);
            let started = Instant::now();
            // Gives up after a while, so that a broken deadline fails the test instead of
            // hanging it.
            while started.elapsed() < Duration::from_secs(5) {
                match client.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got += n,
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            got
        });
        let body = vec![b'x'; 16 << 20];
        let deadline = Duration::from_millis(500);
        let started = Instant::now();
        let mut exchange = Exchange::new(&server, deadline);
        let written = exchange.write_all(&body);
        let took = started.elapsed();
        assert!(matches!(&written, Err(e) if e.kind() == io::ErrorKind::TimedOut), "{written:?}");
        exchange.close(written);
        drop(server);
        let got = reader.join().unwrap();
        assert!(took < deadline + Duration::from_millis(400), "the writes went on for {took:?}");
        assert!(got > 8192 && got < body.len(), "the reader took {got} bytes");
    }

    /// Under the stock unit's old RestrictAddressFamilies=AF_UNIX, socket(2) fails with
    /// EAFNOSUPPORT, whose own text ("Address family not supported by protocol") does not say
    /// that the sandbox refused it nor where to allow it.
    #[test]
    fn a_refused_address_family_names_the_unit_setting_to_change() {
        let refused = |addr: &str, errno| {
            MetricsError::Listen { addr: addr.parse().unwrap(), source: io::Error::from_raw_os_error(errno) }
                .to_string()
        };
        let v4 = refused("127.0.0.1:9848", libc::EAFNOSUPPORT);
        assert!(v4.starts_with("--metrics-listen 127.0.0.1:9848: cannot open an IPv4 socket ("), "{v4}");
        assert!(v4.contains("may not use AF_INET."), "{v4}");
        assert!(v4.contains("RestrictAddressFamilies= must list AF_INET"), "{v4}");
        assert!(v4.contains("systemctl edit memory-coordinator"), "{v4}");
        assert!(!v4.contains("free port"), "{v4}");
        let v6 = refused("[::1]:9848", libc::EAFNOSUPPORT);
        assert!(v6.contains("IPv6 socket") && v6.contains("must list AF_INET6"), "{v6}");
        assert!(v6.contains("kernel runs without IPv6"), "{v6}");
        let low = refused("127.0.0.1:80", libc::EACCES);
        assert!(low.contains("CAP_NET_BIND_SERVICE") && low.contains("above 1023"), "{low}");
        let busy = refused("127.0.0.1:9848", libc::EADDRINUSE);
        assert!(busy.contains("choose a free port"), "{busy}");
    }

    #[test]
    fn every_state_label_is_distinct() {
        let mut labels: Vec<_> = STATES.iter().map(|s| state_label(*s)).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), STATES.len());
    }
}
