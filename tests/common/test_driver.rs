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
}

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
