//! An in-process QMP peer that speaks as QEMU 7.2 does (greeting, capabilities negotiation,
//! `id` echo, `\r\n` line ends, events at any time, QEMU's error classes and messages), backed
//! by a small guest model, with faults to inject: events between replies, stats QEMU has not
//! got yet (u64::MAX, last-update 0), error replies, a peer that hangs mid-reply, one that
//! closes mid-line, one that answers with a 1 MiB line of garbage, one that never greets, one
//! that answers late, one that sends malformed JSON, one whose stats stop updating, one that
//! stops answering after set-up; and a QEMU can be killed (`kill`).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;

/// What a fake QEMU does wrong, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// A BALLOON_CHANGE and a RTC_CHANGE event before every reply.
    EventsBetweenReplies,
    /// The guest never answered: every stat u64::MAX, last-update 0.
    StatsNotReported,
    /// `query-balloon` fails as with no balloon driver in the guest.
    ErrorReplies,
    /// Writes half of the reply to the first `query-balloon` it ever gets, then stays silent
    /// on that connection (later connections are served).
    HangMidReply,
    /// Writes half of the reply to the first `query-balloon` it ever gets, then closes.
    CloseMidLine,
    /// Answers the first `query-balloon` it ever gets with a 1 MiB line of garbage.
    GarbageLine,
    /// Accepts connections and never says anything.
    Silent,
    /// Answers the first `query-balloon` it ever gets `LATE` after it came, with `actual`
    /// `LATE_ACTUAL_BYTES`, a figure nothing else reports; answers normally afterwards.
    LateReply,
    /// Answers every `query-balloon` with a line that is not JSON (an unclosed object).
    MalformedJson,
    /// The guest's stats stop updating after its second sample: the same figures and
    /// `last-update` from then on, as when the guest's balloon driver is stuck.
    StatsStopUpdating,
    /// Answers set-up, then never answers `query-balloon` or `qom-get` (reads and drops them).
    HangAfterSetUp,
    /// Listens with room for one pending connection and never accepts, as a QEMU whose only
    /// monitor connection is held by another client, or whose main loop is stuck: the first
    /// connect queues, and a blocking connect after it would wait forever.
    NeverAccepts,
    /// Greets `SLOW_GREETING` after each connection (a QEMU busy at start-up), then serves.
    SlowGreeting,
}

/// How long `Fault::SlowGreeting` takes to greet.
pub const SLOW_GREETING: Duration = Duration::from_millis(120);

/// How late `Fault::LateReply` answers.
pub const LATE: Duration = Duration::from_millis(600);
/// The `actual` of the late reply: 1337 MiB.
pub const LATE_ACTUAL_BYTES: u64 = 1337 * MIB;

/// The guest behind the fake QEMU, in bytes.
#[derive(Debug)]
pub struct GuestModel {
    pub actual: u64,
    pub max: u64,
    /// Memory the guest uses (free = MemTotal - used).
    pub used: u64,
    /// Balloon size minus MemTotal.
    pub reserved: u64,
    pub polling_interval: u64,
    /// Every `balloon` value received, in order.
    pub balloon_calls: Vec<u64>,
    pub commands: Vec<String>,
    pub connections: u32,
    /// The one-off fault has happened.
    pub fault_fired: bool,
    /// A busy guest on a fast clock: every `guest-stats` read is a new sample (last-update
    /// advances by one) and its memory use moves by 30 MiB, up to 1200 MiB and back to 100.
    pub churn: bool,
    /// Samples taken in churn mode (or before the stats stopped updating).
    pub samples: u64,
    /// `last-update` of the last sample before the stats stopped updating.
    pub frozen_at: u64,
}

impl GuestModel {
    /// A guest of these sizes (bytes) that nothing has talked to yet.
    fn new(actual: u64, max: u64, used: u64, reserved: u64) -> GuestModel {
        GuestModel {
            actual,
            max,
            used,
            reserved,
            polling_interval: 0,
            balloon_calls: Vec::new(),
            commands: Vec::new(),
            connections: 0,
            fault_fired: false,
            churn: false,
            samples: 0,
            frozen_at: 0,
        }
    }

    fn total(&self) -> u64 {
        self.actual.saturating_sub(self.reserved)
    }
}

/// One fake QEMU listening on `path`.
pub struct FakeQemu {
    pub path: PathBuf,
    pub guest: Arc<Mutex<GuestModel>>,
    stop: Arc<AtomicBool>,
    /// Every accepted connection, to cut them when the QEMU is killed.
    connections: Arc<Mutex<Vec<UnixStream>>>,
}

impl FakeQemu {
    /// Listens on `dir/<name>.sock`. `name` is what `query-name` answers (None: `{}`).
    pub fn start(dir: &Path, file: &str, name: Option<&str>, fault: Fault, actual_mib: u64, used_mib: u64) -> FakeQemu {
        let path = dir.join(file);
        if fault == Fault::NeverAccepts {
            return FakeQemu::never_accepting(path);
        }
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let guest = Arc::new(Mutex::new(GuestModel::new(actual_mib * MIB, 2048 * MIB, used_mib * MIB, 80 * MIB)));
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (g, s, n, c) = (Arc::clone(&guest), Arc::clone(&stop), name.map(str::to_owned), Arc::clone(&connections));
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        g.lock().unwrap().connections += 1;
                        c.lock().unwrap().push(stream.try_clone().unwrap());
                        let (g, s, n) = (Arc::clone(&g), Arc::clone(&s), n.clone());
                        std::thread::spawn(move || serve(stream, &g, &s, n.as_deref(), fault));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeQemu { path, guest, stop, connections }
    }

    fn never_accepting(path: PathBuf) -> FakeQemu {
        use nix::sys::socket::{AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, listen, socket};
        use std::os::fd::AsRawFd;
        let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_CLOEXEC, None).unwrap();
        bind(fd.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        // A backlog of 0: Linux queues one connection, then refuses (or blocks) the next.
        listen(&fd, Backlog::new(0).unwrap()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            drop(fd);
        });
        let guest = GuestModel::new(0, 0, 0, 0);
        FakeQemu { path, guest: Arc::new(Mutex::new(guest)), stop, connections: Arc::new(Mutex::new(Vec::new())) }
    }

    /// As a QEMU killed with SIGKILL: it stops listening and every connection is cut; its
    /// socket file stays behind (QEMU has no chance to remove it) unless `remove_socket`.
    pub fn kill(&self, remove_socket: bool) {
        self.stop.store(true, Ordering::SeqCst);
        for c in self.connections.lock().unwrap().iter() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        if remove_socket {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    pub fn balloon_calls(&self) -> Vec<u64> {
        self.guest.lock().unwrap().balloon_calls.clone()
    }
}

impl Drop for FakeQemu {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::fs::remove_file(&self.path);
    }
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn send(w: &mut UnixStream, v: &Value) -> std::io::Result<()> {
    // QEMU's JSON writer puts a space after ':' and ','; serde_json's to_string does not, but
    // parsers cannot tell; lines end with \r\n as QEMU's do.
    let mut line = serde_json::to_string(v).unwrap();
    line.push_str("\r\n");
    w.write_all(line.as_bytes())
}

fn error(class: &str, desc: &str) -> Value {
    json!({"error": {"class": class, "desc": desc}})
}

fn serve(stream: UnixStream, guest: &Mutex<GuestModel>, stop: &AtomicBool, name: Option<&str>, fault: Fault) {
    if fault == Fault::Silent {
        while !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        return;
    }
    if fault == Fault::SlowGreeting {
        std::thread::sleep(SLOW_GREETING);
    }
    let mut w = stream.try_clone().unwrap();
    let greeting = json!({"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7},
        "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}});
    if send(&mut w, &greeting).is_err() {
        return;
    }
    let mut negotiated = false;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(req) = serde_json::from_str::<Value>(&line) else {
            let _ = send(&mut w, &error("GenericError", "JSON parse error, expecting value"));
            continue;
        };
        let cmd = req["execute"].as_str().unwrap_or("").to_owned();
        let args = req.get("arguments").cloned().unwrap_or(json!({}));
        guest.lock().unwrap().commands.push(cmd.clone());
        if fault == Fault::EventsBetweenReplies {
            let g = guest.lock().unwrap();
            let ts = json!({"seconds": now_s(), "microseconds": 486_959});
            let _ = send(&mut w, &json!({"timestamp": ts, "event": "BALLOON_CHANGE", "data": {"actual": g.actual}}));
            let _ = send(
                &mut w,
                &json!({"timestamp": ts, "event": "RTC_CHANGE", "data": {"offset": 0, "qom-path": "/machine/unattached/device[8]"}}),
            );
        }
        if fault == Fault::HangAfterSetUp && matches!(cmd.as_str(), "query-balloon" | "qom-get") {
            continue;
        }
        let mut reply = if cmd == "qmp_capabilities" {
            negotiated = true;
            json!({"return": {}})
        } else if !negotiated {
            error("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'")
        } else {
            let mut g = guest.lock().unwrap();
            match cmd.as_str() {
                "query-name" => match name {
                    Some(n) => json!({"return": {"name": n}}),
                    None => json!({"return": {}}),
                },
                "qom-list" => match args["path"].as_str() {
                    // The balloon here has no id: it lives under peripheral-anon, as with
                    // `-device virtio-balloon-pci` given without `id=`.
                    Some("/machine/peripheral") => json!({"return": [{"name": "type", "type": "string"}]}),
                    Some("/machine/peripheral-anon") => json!({"return": [
                        {"name": "type", "type": "string"},
                        {"name": "device[0]", "type": "child<virtio-balloon-pci>"}]}),
                    Some(p) => error("DeviceNotFound", &format!("Device '{p}' not found")),
                    None => error("GenericError", "Parameter 'path' is missing"),
                },
                "qom-set"
                    if args["path"] == "/machine/peripheral-anon/device[0]"
                        && args["property"] == "guest-stats-polling-interval" =>
                {
                    g.polling_interval = args["value"].as_u64().unwrap_or(0);
                    json!({"return": {}})
                }
                "qom-get"
                    if args["path"] == "/machine/peripheral-anon/device[0]" && args["property"] == "guest-stats" =>
                {
                    if fault == Fault::StatsNotReported || g.polling_interval == 0 {
                        let m = u64::MAX;
                        json!({"return": {"stats": {"stat-swap-in": m, "stat-swap-out": m, "stat-major-faults": m,
                            "stat-minor-faults": m, "stat-free-memory": m, "stat-total-memory": m,
                            "stat-available-memory": m, "stat-disk-caches": m, "stat-htlb-pgalloc": m,
                            "stat-htlb-pgfail": m}, "last-update": 0}})
                    } else if fault == Fault::StatsStopUpdating && g.samples >= 2 {
                        // The last sample, again.
                        let total = g.total();
                        let free = total.saturating_sub(g.used);
                        json!({"return": {"stats": {"stat-free-memory": free, "stat-total-memory": total,
                            "stat-available-memory": free, "stat-swap-in": 0, "stat-swap-out": 0,
                            "stat-major-faults": 0}, "last-update": g.frozen_at}})
                    } else {
                        let mut stamp = now_s();
                        if fault == Fault::StatsStopUpdating {
                            g.samples += 1;
                            g.frozen_at = stamp;
                        }
                        if g.churn {
                            g.samples += 1;
                            g.used = if g.used >= 1200 * MIB { 100 * MIB } else { g.used + 30 * MIB };
                            stamp = 1_700_000_000 + g.samples;
                        }
                        let total = g.total();
                        let free = total.saturating_sub(g.used);
                        json!({"return": {"stats": {"stat-swap-in": 0, "stat-swap-out": 0, "stat-major-faults": 0,
                            "stat-minor-faults": 652, "stat-free-memory": free, "stat-total-memory": total,
                            "stat-available-memory": free.saturating_sub(16 * MIB), "stat-disk-caches": 3_035_136,
                            "stat-htlb-pgalloc": 0, "stat-htlb-pgfail": 0}, "last-update": stamp}})
                    }
                }
                "qom-get" | "qom-set" => {
                    error("DeviceNotFound", &format!("Device '{}' not found", args["path"].as_str().unwrap_or("")))
                }
                "query-balloon" => {
                    let first = !std::mem::replace(&mut g.fault_fired, true);
                    match fault {
                        Fault::ErrorReplies => error("DeviceNotActive", "No balloon device has been activated"),
                        Fault::HangMidReply | Fault::CloseMidLine if first => {
                            let _ = w.write_all(br#"{"return": {"act"#);
                            let _ = w.flush();
                            drop(g);
                            if fault == Fault::CloseMidLine {
                                let _ = w.shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            while !stop.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            return;
                        }
                        Fault::LateReply if first => {
                            drop(g);
                            std::thread::sleep(LATE);
                            json!({"return": {"actual": LATE_ACTUAL_BYTES}})
                        }
                        Fault::MalformedJson => {
                            let _ = w.write_all(b"{\"return\": {\"actual\": 1073741824,\r\n");
                            continue;
                        }
                        Fault::GarbageLine if first => {
                            let mut garbage = vec![b'#'; 1024 * 1024];
                            garbage.extend_from_slice(b"\r\n");
                            let _ = w.write_all(&garbage);
                            continue;
                        }
                        _ => json!({"return": {"actual": g.actual}}),
                    }
                }
                "balloon" => match args["value"].as_u64() {
                    Some(v) if v <= g.max => {
                        g.balloon_calls.push(v);
                        // The guest reaches the target at once (free pages are plenty).
                        g.actual = v.max(g.used + g.reserved);
                        json!({"return": {}})
                    }
                    Some(_) => error("GenericError", "Parameter 'value' expects a size below maxmem"),
                    None => error("GenericError", "Parameter 'value' is missing"),
                },
                "query-memory-size-summary" => json!({"return": {"base-memory": g.max, "plugged-memory": 0}}),
                other => error("CommandNotFound", &format!("The command {other} has not been found")),
            }
        };
        if let Some(id) = req.get("id") {
            reply.as_object_mut().unwrap().insert("id".into(), id.clone());
        }
        if send(&mut w, &reply).is_err() {
            return;
        }
    }
}
