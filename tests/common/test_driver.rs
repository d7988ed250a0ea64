//! Node descriptions for libvirt's built-in `test:///` driver: real libvirt code paths (our
//! FFI, libvirt's API and driver), domains that exist only in the connecting process, or (with
//! [`Transport::Libvirtd`]) only in the connection a running libvirtd keeps for us, so every
//! call crosses libvirtd's RPC socket as it would on a real host.

use std::fmt::Write;
use std::path::{Path, PathBuf};

/// One domain of a test node.
#[derive(Clone, Copy, Debug)]
pub struct TestDomain {
    pub name: &'static str,
    pub max_mib: u64,
    pub current_mib: u64,
    /// Without a balloon device the driver returns no memory stats.
    pub balloon: bool,
    pub running: bool,
}

impl TestDomain {
    pub const fn running(name: &'static str, max_mib: u64, current_mib: u64) -> TestDomain {
        TestDomain { name, max_mib, current_mib, balloon: true, running: true }
    }
}

/// Where the test driver runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// In our own process (`test:///PATH`): no daemon, no RPC.
    InProcess,
    /// Inside the system libvirtd, over its unix socket (`test+unix:///PATH`). The caller must
    /// hold the lab lock and have started libvirtd (`lab::libvirtd_up`).
    Libvirtd,
    /// Inside the system libvirtd, through an external command that relays to its socket
    /// (`test+ext:///PATH?command=RELAY`, socat): a transport that reaches the daemon the way a
    /// network does, so keepalive is on. Same requirements as `Libvirtd`, plus socat.
    Relayed,
}

/// libvirtd's read-write socket when it runs as root.
const LIBVIRTD_SOCKET: &str = "/var/run/libvirt/libvirt-sock";

/// One `<domain type='test'>` element.
pub fn domain_xml(name: &str, max_mib: u64, current_mib: u64, balloon: bool, running: bool) -> String {
    format!(
        "  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\n    <name>{name}</name>\n    \
         <memory unit='MiB'>{max_mib}</memory>\n    <currentMemory unit='MiB'>{current_mib}</currentMemory>\n    \
         <vcpu>1</vcpu>\n    <os><type>hvm</type></os>\n    <devices>{}</devices>\n{}  </domain>\n",
        if balloon { "<memballoon model='virtio'/>" } else { "" },
        if running { "" } else { "    <test:runstate>5</test:runstate>\n" },
    )
}

/// Writes `<node>` around `domains` to `path` and returns the URI that loads it.
fn write_node(path: &Path, domains: &str, transport: Transport) -> String {
    std::fs::write(path, format!("<node>\n{domains}</node>\n")).unwrap();
    match transport {
        Transport::InProcess => format!("test://{}", path.display()),
        Transport::Libvirtd => format!("test+unix://{}", path.display()),
        Transport::Relayed => {
            use std::os::unix::fs::PermissionsExt;
            assert!(
                std::process::Command::new("socat").arg("-V").output().is_ok(),
                "socat is missing: apt-get install socat (make deps)"
            );
            let relay = path.with_file_name("relay");
            std::fs::write(&relay, format!("#!/bin/sh\nexec socat - UNIX-CONNECT:{LIBVIRTD_SOCKET}\n")).unwrap();
            std::fs::set_permissions(&relay, std::fs::Permissions::from_mode(0o755)).unwrap();
            format!("test+ext://{}?command={}", path.display(), relay.display())
        }
    }
}

/// Writes a node XML into `dir` and returns the `test:///...` URI that loads it.
pub fn node_uri(dir: &tempfile::TempDir, domains: &[TestDomain]) -> String {
    node_uri_over(dir, domains, Transport::InProcess)
}

/// As [`node_uri`], through `transport`.
pub fn node_uri_over(dir: &tempfile::TempDir, domains: &[TestDomain], transport: Transport) -> String {
    let mut xml = String::new();
    for d in domains {
        xml.push_str(&domain_xml(d.name, d.max_mib, d.current_mib, d.balloon, d.running));
    }
    let path: PathBuf = dir.path().join("node.xml");
    write_node(&path, &xml, transport)
}

/// A node of `count` running domains `vm000`, `vm001`, ... with a balloon, each `max_mib` large
/// and at `current_mib`.
pub fn numbered_node_uri(
    dir: &tempfile::TempDir,
    count: usize,
    max_mib: u64,
    current_mib: u64,
    transport: Transport,
) -> String {
    let mut xml = String::new();
    for i in 0..count {
        write!(xml, "{}", domain_xml(&format!("vm{i:03}"), max_mib, current_mib, true, true)).unwrap();
    }
    let path: PathBuf = dir.path().join(format!("node{count}.xml"));
    write_node(&path, &xml, transport)
}

/// The four course VMs: one small, one large, one at max, one without a balloon driver.
pub const COURSE_NODE: [TestDomain; 4] = [
    TestDomain::running("aos_vm1", 2048, 512),
    TestDomain::running("aos_vm2", 2048, 1024),
    TestDomain::running("aos_vm3", 2048, 2048),
    TestDomain { name: "aos_vm4", max_mib: 2048, current_mib: 1024, balloon: false, running: true },
];

/// Log records of this test process, kept in memory so a test can count what was logged
/// (debug level and up). Tests in one binary share it: look for names unique to the test.
pub struct CapturedLog {
    lines: std::sync::Mutex<Vec<String>>,
}

static CAPTURED: CapturedLog = CapturedLog { lines: std::sync::Mutex::new(Vec::new()) };

impl log::Log for CapturedLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Debug
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let line = format!("{} {}", record.level(), record.args());
            self.lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
        }
    }

    fn flush(&self) {}
}

impl CapturedLog {
    /// Installs the capture as the process's logger (once) and returns it.
    pub fn install() -> &'static CapturedLog {
        if log::set_logger(&CAPTURED).is_ok() {
            log::set_max_level(log::LevelFilter::Debug);
        }
        &CAPTURED
    }

    /// The lines logged so far that contain every one of `needles`, as "LEVEL message".
    pub fn lines_with(&self, needles: &[&str]) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        lines.iter().filter(|l| needles.iter().all(|n| l.contains(n))).cloned().collect()
    }
}

/// JSON lines (`--json`) written by an in-process coordinator, shared with the test.
#[derive(Clone, Default)]
pub struct JsonSink(pub std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

impl std::io::Write for JsonSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl JsonSink {
    /// Every round written so far.
    pub fn rounds(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.0.borrow()).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    /// The entry of VM `name` in the last round written.
    pub fn last_vm(&self, name: &str) -> Option<serde_json::Value> {
        let rounds = self.rounds();
        rounds.last()?["vms"].as_array()?.iter().find(|v| v["name"] == name).cloned()
    }
}

/// The test driver's shared node inside the system libvirtd: every client of the daemon sees
/// the same domains as long as one of them stays connected, so `virsh` can destroy, pause and
/// resize what the coordinator under test serves. Callers hold the lab lock.
pub const SHARED_NODE: &str = "test+unix:///default";

/// Runs `virsh -c test+unix:///default ARGS`, asserting success.
pub fn virsh_shared(args: &[&str]) -> String {
    let out = std::process::Command::new("virsh").args(["-c", SHARED_NODE]).args(args).output().unwrap();
    assert!(out.status.success(), "virsh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Domains created in [`SHARED_NODE`] (transient, or defined and started); destroyed (and
/// undefined) on drop. Create them only while a connection of the test holds the node: the
/// daemon forgets it when its last client leaves.
pub struct SharedDomains {
    names: Vec<String>,
    defined: Vec<String>,
    dir: tempfile::TempDir,
}

impl SharedDomains {
    pub fn new() -> SharedDomains {
        SharedDomains { names: Vec::new(), defined: Vec::new(), dir: tempfile::tempdir().unwrap() }
    }

    fn write_xml(&self, name: &str, max_mib: u64, current_mib: u64, uuid: Option<&str>) -> PathBuf {
        let mut xml = domain_xml(name, max_mib, current_mib, true, true);
        if let Some(uuid) = uuid {
            xml = xml.replacen("<name>", &format!("<uuid>{uuid}</uuid><name>"), 1);
        }
        let path = self.dir.path().join(format!("{name}.xml"));
        std::fs::write(&path, xml).unwrap();
        path
    }

    /// Creates and starts `name` (with a balloon), transient, with a fixed UUID if given.
    pub fn create(&mut self, name: &str, max_mib: u64, current_mib: u64, uuid: Option<&str>) {
        let path = self.write_xml(name, max_mib, current_mib, uuid);
        virsh_shared(&["create", path.to_str().unwrap()]);
        if !self.names.iter().any(|n| n == name) {
            self.names.push(name.to_owned());
        }
    }

    /// Defines and starts `name`: once destroyed it still exists, stopped, so calls on it fail
    /// as "operation invalid" (domain not running) rather than "not found".
    pub fn define_and_start(&mut self, name: &str, max_mib: u64, current_mib: u64) {
        let path = self.write_xml(name, max_mib, current_mib, None);
        virsh_shared(&["define", path.to_str().unwrap()]);
        self.defined.push(name.to_owned());
        virsh_shared(&["start", name]);
        self.names.push(name.to_owned());
    }
}

impl Default for SharedDomains {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SharedDomains {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = std::process::Command::new("virsh").args(["-c", SHARED_NODE, "destroy", name]).output();
        }
        for name in &self.defined {
            let _ = std::process::Command::new("virsh").args(["-c", SHARED_NODE, "undefine", name]).output();
        }
    }
}

/// The pid of the system libvirtd (there must be exactly one). Callers hold the lab lock.
pub fn libvirtd_pid() -> i32 {
    let out = std::process::Command::new("pgrep").args(["-x", "libvirtd"]).output().unwrap();
    let pids: Vec<i32> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(pids.len(), 1, "expected one libvirtd, found {pids:?}");
    pids[0]
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) with plain integers; no memory is involved.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
}

/// A libvirtd stopped with SIGSTOP; continued on drop, whatever happens to the test.
pub struct StoppedLibvirtd {
    pub pid: i32,
}

impl StoppedLibvirtd {
    pub fn stop() -> StoppedLibvirtd {
        let pid = libvirtd_pid();
        signal(pid, libc::SIGSTOP);
        StoppedLibvirtd { pid }
    }

    /// Lets it run again.
    pub fn resume(self) {}
}

impl Drop for StoppedLibvirtd {
    fn drop(&mut self) {
        // SAFETY: kill(2) with plain integers; a process that is gone is harmless.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.pid, libc::SIGCONT)
        };
    }
}

/// CPU time (user + system) process `pid` has used so far.
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let per_s = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap();
    std::time::Duration::from_millis(ticks * 1000 / per_s)
}

/// The libvirt backend's worker threads in this process (the backend names them).
pub fn worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
        .filter(|comm| comm.starts_with("libvirt-call-"))
        .count()
}
