//! Node descriptions for libvirt's built-in `test:///` driver: real libvirt code paths (our
//! FFI, libvirt's API and driver), domains that exist only in the connecting process.

use std::fmt::Write;
use std::path::PathBuf;

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

/// Writes a node XML into `dir` and returns the `test:///...` URI that loads it.
pub fn node_uri(dir: &tempfile::TempDir, domains: &[TestDomain]) -> String {
    let mut xml = String::from("<node>\n");
    for d in domains {
        writeln!(
            xml,
            "  <domain type='test' xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>\n    <name>{}</name>\n    \
             <memory unit='MiB'>{}</memory>\n    <currentMemory unit='MiB'>{}</currentMemory>\n    <vcpu>1</vcpu>\n    \
             <os><type>hvm</type></os>\n    <devices>{}</devices>\n{}  </domain>",
            d.name,
            d.max_mib,
            d.current_mib,
            if d.balloon { "<memballoon model='virtio'/>" } else { "" },
            if d.running { "" } else { "    <test:runstate>5</test:runstate>\n" },
        )
        .unwrap();
    }
    xml.push_str("</node>\n");
    let path: PathBuf = dir.path().join("node.xml");
    std::fs::write(&path, xml).unwrap();
    format!("test://{}", path.display())
}

/// The four course VMs: one small, one large, one at max, one without a balloon driver.
pub const COURSE_NODE: [TestDomain; 4] = [
    TestDomain::running("aos_vm1", 2048, 512),
    TestDomain::running("aos_vm2", 2048, 1024),
    TestDomain::running("aos_vm3", 2048, 2048),
    TestDomain { name: "aos_vm4", max_mib: 2048, current_mib: 1024, balloon: false, running: true },
];
