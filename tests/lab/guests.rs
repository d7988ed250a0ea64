//! The lab's guests on either backend, and the lab's own view of them: every second it samples
//! each guest (balloon size, free and available memory, the QEMU's RSS) on a channel of its own (its own libvirt connection,
//! or a second QMP monitor per QEMU), independent of the coordinator under test.

use std::path::PathBuf;
use std::time::Duration;

use memory_coordinator::libvirt::{Connection, ffi};
use memory_coordinator::qmp::client::QmpClient;
use memory_coordinator::qmp::protocol::{BalloonInfo, GuestStats, stat_kib};
use serde::Serialize;
use serde::de::IgnoredAny;

use crate::lab::{self, GuestImage, LibvirtGuest, QemuGuest};

pub const MAX_MIB: u64 = 2048;
pub const START_MIB: u64 = 512;
const MIB: u64 = 1024 * 1024;

/// How the guests run and how the coordinator reaches them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A real libvirtd, qemu:///system; the coordinator runs as `memory_coordinator 1`.
    Libvirt,
    /// Bare QEMU processes; the coordinator runs with `--qmp 'DIR/*.sock'`.
    Qmp,
    /// libvirt guests and no coordinator at all: the baseline.
    None,
}

impl BackendKind {
    pub fn parse(s: &str) -> Option<BackendKind> {
        match s {
            "libvirt" => Some(BackendKind::Libvirt),
            "qmp" => Some(BackendKind::Qmp),
            "none" => Some(BackendKind::None),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Libvirt => "libvirt",
            BackendKind::Qmp => "qmp",
            BackendKind::None => "none",
        }
    }
}

/// One guest as the lab sees it at one instant.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Sample {
    pub actual_mib: u64,
    /// Guest MemFree; `None` until the guest reported stats.
    pub unused_mib: Option<u64>,
    /// Guest MemAvailable (free plus reclaimable page cache): libvirt's `usable`, QMP's
    /// `stat-available-memory`; `None` until the guest reported it.
    pub available_mib: Option<u64>,
    /// What the host backs for this guest: the QEMU process's RSS (libvirt's `rss` stat, or
    /// VmRSS in /proc/PID/status of the bare QEMU).
    pub rss_mib: Option<u64>,
}

/// The guests of one run.
pub enum Guests {
    Libvirt { guests: Vec<LibvirtGuest>, watch: Connection },
    Qmp { guests: Vec<QemuGuest>, watch: Vec<QmpClient>, dir: tempfile::TempDir },
}

#[derive(Serialize)]
struct Value {
    value: u64,
}

#[derive(Serialize)]
struct QomSet<'a> {
    path: &'a str,
    property: &'a str,
    value: u64,
}

#[derive(Serialize)]
struct QomGet<'a> {
    path: &'a str,
    property: &'a str,
}

impl Guests {
    /// Boots `names` (max 2048 MiB, started at 512 MiB) and waits until each is up. `disks[i]`,
    /// where given, is guest i's `/dev/vda` (a raw image file).
    pub fn boot(kind: BackendKind, image: &GuestImage, names: &[String], disks: &[Option<PathBuf>]) -> Guests {
        let disk = |i: usize| disks.get(i).and_then(Option::as_deref);
        let guests = match kind {
            BackendKind::Libvirt | BackendKind::None => {
                lab::libvirtd_up();
                for stale in lab::running_domains().iter().filter(|d| names.contains(d)) {
                    lab::virsh(&["destroy", stale]);
                }
                lab::assert_no_foreign_guests(names);
                let guests = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| LibvirtGuest::start_with_disk(image, n, MAX_MIB, START_MIB, disk(i)))
                    .collect();
                let watch = Connection::open("qemu:///system").expect("the lab's own libvirt connection");
                Guests::Libvirt { guests, watch }
            }
            BackendKind::Qmp => {
                let dir = tempfile::Builder::new().prefix("mc-lab-qmp-").tempdir().unwrap();
                std::fs::create_dir(dir.path().join("vms")).unwrap();
                std::fs::create_dir(dir.path().join("watch")).unwrap();
                let guests: Vec<QemuGuest> = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        let sockets = [
                            dir.path().join("vms").join(format!("{n}.sock")),
                            dir.path().join("watch").join(format!("{n}.mon")),
                        ];
                        QemuGuest::start_with_disk(image, n, MAX_MIB, dir.path(), &sockets, disk(i))
                    })
                    .collect();
                let watch = names
                    .iter()
                    .map(|n| {
                        let path = dir.path().join("watch").join(format!("{n}.mon"));
                        QmpClient::connect(&path, Duration::from_secs(5)).expect("the lab's own QMP monitor")
                    })
                    .collect();
                Guests::Qmp { guests, watch, dir }
            }
        };
        for i in 0..names.len() {
            guests.wait_console(i, "lab-guest: ready", Duration::from_secs(90));
        }
        let mut guests = guests;
        guests.enable_stats();
        if matches!(guests, Guests::Qmp { .. }) {
            // Bare QEMU boots at -m; its users balloon it down to the start size.
            guests.set_all(START_MIB);
        }
        guests
    }

    /// Asks every guest for stats each second (the coordinator sets the same period).
    fn enable_stats(&mut self) {
        match self {
            Guests::Libvirt { guests, watch } => {
                for g in guests.iter() {
                    if let Some(d) = find_domain(watch, &g.name) {
                        d.set_memory_stats_period(1).expect("stats period");
                    }
                }
            }
            Guests::Qmp { watch, .. } => {
                for w in watch.iter_mut() {
                    let set = QomSet {
                        path: "/machine/peripheral/balloon0",
                        property: "guest-stats-polling-interval",
                        value: 1,
                    };
                    w.execute::<_, IgnoredAny>("qom-set", Some(set)).expect("qom-set polling interval");
                }
            }
        }
    }

    pub fn console(&self, i: usize) -> String {
        match self {
            Guests::Libvirt { guests, .. } => guests[i].console(),
            Guests::Qmp { guests, .. } => guests[i].console(),
        }
    }

    fn wait_console(&self, i: usize, needle: &str, timeout: Duration) {
        match self {
            Guests::Libvirt { guests, .. } => guests[i].wait_console(needle, timeout),
            Guests::Qmp { guests, .. } => guests[i].wait_console(needle, timeout),
        }
    }

    /// Starts a workload command in guest `i`.
    pub fn send(&self, i: usize, command: &str) {
        match self {
            Guests::Libvirt { guests, .. } => guests[i].send(command),
            Guests::Qmp { guests, .. } => guests[i].send(command),
        }
    }

    /// Sets every guest's balloon target, as the course's runtest did before each test.
    pub fn set_all(&mut self, mib: u64) {
        match self {
            Guests::Libvirt { guests, watch } => {
                for g in guests.iter() {
                    if let Some(d) = find_domain(watch, &g.name) {
                        d.set_memory_kib(mib * 1024).expect("set memory");
                    }
                }
            }
            Guests::Qmp { watch, .. } => {
                for w in watch.iter_mut() {
                    w.execute::<_, IgnoredAny>("balloon", Some(Value { value: mib * MIB })).expect("balloon");
                }
            }
        }
    }

    /// Balloon size and free memory of every guest, now.
    pub fn sample(&mut self) -> Vec<Sample> {
        match self {
            Guests::Libvirt { guests, watch } => guests
                .iter()
                .map(|g| {
                    let Some(d) = find_domain(watch, &g.name) else { return Sample::default() };
                    let Ok(stats) = d.memory_stats() else { return Sample::default() };
                    Sample {
                        actual_mib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON).unwrap_or(0) / 1024,
                        unused_mib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_UNUSED).map(|k| k / 1024),
                        available_mib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_USABLE).map(|k| k / 1024),
                        rss_mib: stats.get(ffi::VIR_DOMAIN_MEMORY_STAT_RSS).map(|k| k / 1024),
                    }
                })
                .collect(),
            Guests::Qmp { watch, guests, .. } => watch
                .iter_mut()
                .zip(guests.iter())
                .map(|(w, g)| {
                    let actual = w.execute::<_, BalloonInfo>("query-balloon", None::<()>).map(|b| b.actual / MIB);
                    let get = QomGet { path: "/machine/peripheral/balloon0", property: "guest-stats" };
                    let stats = w.execute::<_, GuestStats>("qom-get", Some(get)).ok();
                    let stats = stats.filter(|s| s.last_update > 0);
                    Sample {
                        actual_mib: actual.unwrap_or(0),
                        unused_mib: stats.and_then(|s| stat_kib(s.stats.free_memory)).map(|k| k / 1024),
                        available_mib: stats.and_then(|s| stat_kib(s.stats.available_memory)).map(|k| k / 1024),
                        rss_mib: vm_rss_kib(g.child.id()).map(|k| k / 1024),
                    }
                })
                .collect(),
        }
    }

    /// The coordinator's command line for this backend (after `INTERVAL`).
    pub fn coordinator_args(&self) -> Vec<String> {
        match self {
            // Only the lab's guests: a guest of another test left on the same libvirtd (the
            // lab lock keeps them apart, but a hung test can leave one running) is not ours.
            Guests::Libvirt { .. } => vec!["--domains".into(), "aos_vm*".into()],
            Guests::Qmp { dir, .. } => vec!["--qmp".into(), format!("{}/vms/*.sock", dir.path().display())],
        }
    }
}

/// VmRSS of process `pid` in KiB, from /proc/PID/status.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn find_domain(conn: &Connection, name: &str) -> Option<memory_coordinator::libvirt::Domain> {
    conn.list_active_domains().ok()?.find(|d| d.name().is_ok_and(|n| n.to_bytes() == name.as_bytes()))
}
