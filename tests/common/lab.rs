//! Real guests for the tests: the lab guest image (tests/lab/guest/build.sh), a system libvirtd
//! (tests/lab/libvirtd-up.sh), and guests started through libvirt or as bare QEMU processes.
//!
//! These tests need root, KVM-less TCG QEMU and libvirt from `make deps`. Where that is
//! impossible, `MC_SKIP_LAB=1` skips them, saying so; otherwise a missing piece fails the test.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The guest image: kernel and initramfs.
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

fn run_script(script: &str, args: &[&str]) {
    let out = Command::new(Path::new(ROOT).join(script)).args(args).current_dir(ROOT).output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The machine-wide lock every real-guest test holds (for the rest of its process): real
/// guests share one libvirtd and two cores, so two such tests at once would balloon each
/// other's guests or miss their timing.
const LAB_LOCK: &str = "/tmp/memory-coordinator-lab.lock";

fn hold_lab_lock(test: &str) {
    static HELD: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    HELD.get_or_init(|| {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(LAB_LOCK).unwrap();
        let started = Instant::now();
        // SAFETY: flock on a descriptor we own; it blocks until the lock is ours.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {LAB_LOCK}");
        if started.elapsed() > Duration::from_secs(1) {
            eprintln!("{test}: waited {:.0} s for another real-guest test to finish", started.elapsed().as_secs_f64());
        }
        file
    });
}

/// True (after saying so) when the lab is explicitly skipped; otherwise asserts root and takes
/// the machine-wide lab lock.
pub fn skip_lab(test: &str) -> bool {
    if std::env::var_os("MC_SKIP_LAB").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED {test}: MC_SKIP_LAB=1");
        return true;
    }
    // SAFETY: geteuid has no preconditions.
    #[allow(unsafe_code)]
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "{test} boots real guests and needs root (or set MC_SKIP_LAB=1 to skip it)");
    hold_lab_lock(test);
    let others = other_coordinators();
    assert!(
        others.is_empty(),
        "{test}: another memory_coordinator is running ({others:?}) and would fight the one under test"
    );
    false
}

/// Pids of memory_coordinator processes already running (their comm is cut to 15 bytes) that
/// could touch the lab's guests: those on qemu:///system (the default) or on the lab's QMP
/// sockets. Ones on libvirt's test driver or on another test's QMP sockets are harmless.
fn other_coordinators() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "memory_coordina"))
        // The crate's own unit tests (target/*/deps/memory_coordinator-HASH) share the name
        // but never touch a guest.
        .filter(|pid| {
            !std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.to_string_lossy().contains("/deps/memory_coordinator-"))
        })
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<String> =
                cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
            let elsewhere = args.iter().any(|a| a.starts_with("test:") || a.starts_with("test+"))
                || (args.iter().any(|a| a == "--qmp") && !args.iter().any(|a| a.contains("mc-lab")));
            !elsewhere
        })
        .collect()
}

/// Builds (or finds cached) the guest image.
pub fn guest_image() -> GuestImage {
    let out = Path::new(ROOT).join("target/lab/guest");
    run_script("tests/lab/guest/build.sh", &[out.to_str().unwrap()]);
    GuestImage { kernel: out.join("vmlinuz"), initrd: out.join("initrd.gz") }
}

pub fn libvirtd_up() {
    run_script("tests/lab/libvirtd-up.sh", &[]);
}

pub fn virsh(args: &[&str]) -> String {
    let out = Command::new("virsh").arg("-c").arg("qemu:///system").args(args).output().unwrap();
    assert!(out.status.success(), "virsh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What the guest printed on its console.
fn read_console(path: &Path) -> String {
    std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

fn wait_console(path: &Path, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if read_console(path).contains(needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("guest console never showed {needle:?}; console:\n{}", read_console(path));
}

/// Sends one command line to the guest's command port (its second serial port) and waits for
/// the guest to confirm it on the console. The connection stays open until then: QEMU feeds
/// the guest's 16-byte UART FIFO as it drains and drops what is unread when the client hangs up.
fn send_command(socket: &Path, console: &Path, command: &str) {
    let confirmations = read_console(console).matches(&format!("lab-guest: run: {command}")).count();
    let mut s = UnixStream::connect(socket).unwrap();
    s.write_all(command.as_bytes()).unwrap();
    s.write_all(b"\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while read_console(console).matches(&format!("lab-guest: run: {command}")).count() == confirmations {
        assert!(Instant::now() < deadline, "the guest never confirmed {command:?}:\n{}", read_console(console));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A transient libvirt domain running the lab guest; destroyed on drop.
pub struct LibvirtGuest {
    pub name: String,
    pub dir: tempfile::TempDir,
}

impl LibvirtGuest {
    /// Starts `name` with `max_mib` of memory and `current_mib` ballooned in.
    pub fn start(image: &GuestImage, name: &str, max_mib: u64, current_mib: u64) -> LibvirtGuest {
        LibvirtGuest::start_with_disk(image, name, max_mib, current_mib, None)
    }

    /// As [`LibvirtGuest::start`], with `disk` (a raw image file) as the guest's `/dev/vda`.
    pub fn start_with_disk(
        image: &GuestImage,
        name: &str,
        max_mib: u64,
        current_mib: u64,
        disk: Option<&Path>,
    ) -> LibvirtGuest {
        LibvirtGuest::start_custom(image, name, max_mib, current_mib, disk, "")
    }

    /// As [`LibvirtGuest::start_with_disk`], with `cmdline` added to the kernel command line
    /// (e.g. `module_blacklist=virtio_balloon` for a guest without a balloon driver).
    pub fn start_custom(
        image: &GuestImage,
        name: &str,
        max_mib: u64,
        current_mib: u64,
        disk: Option<&Path>,
        cmdline: &str,
    ) -> LibvirtGuest {
        let dir = tempfile::Builder::new().prefix("mc-lab-").tempdir().unwrap();
        let disk = disk.map_or(String::new(), |d| {
            format!(
                "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>\n    ",
                d.display()
            )
        });
        let xml = format!(
            "<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{max_mib}</memory>
  <currentMemory unit='MiB'>{current_mib}</currentMemory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 panic=-1 {cmdline}</cmdline>
  </os>
  <on_reboot>destroy</on_reboot>
  <devices>
    {disk}<serial type='file'><source path='{dir}/console.log'/><target port='0'/></serial>
    <serial type='unix'><source mode='bind' path='{dir}/cmd.sock'/><target port='1'/></serial>
    <memballoon model='virtio'/>
  </devices>
</domain>",
            kernel = image.kernel.display(),
            initrd = image.initrd.display(),
            dir = dir.path().display(),
        );
        let xml_path = dir.path().join("domain.xml");
        std::fs::write(&xml_path, xml).unwrap();
        virsh(&["create", xml_path.to_str().unwrap()]);
        LibvirtGuest { name: name.to_owned(), dir }
    }

    pub fn console(&self) -> String {
        read_console(&self.dir.path().join("console.log"))
    }

    pub fn wait_console(&self, needle: &str, timeout: Duration) {
        wait_console(&self.dir.path().join("console.log"), needle, timeout);
    }

    pub fn send(&self, command: &str) {
        send_command(&self.dir.path().join("cmd.sock"), &self.dir.path().join("console.log"), command);
    }

    /// `virsh dommemstat` as (tag, value) pairs.
    pub fn memstat(&self, tag: &str) -> Option<u64> {
        virsh(&["dommemstat", &self.name])
            .lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(k, _)| *k == tag)
            .and_then(|(_, v)| v.trim().parse().ok())
    }
}

impl Drop for LibvirtGuest {
    fn drop(&mut self) {
        let _ = Command::new("virsh").args(["-c", "qemu:///system", "destroy", &self.name]).output();
    }
}

/// Running domains on qemu:///system.
pub fn running_domains() -> Vec<String> {
    virsh(&["list", "--name"]).lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect()
}

/// Refuses to go on beside guests that are not the tests' (`mc_*`) or in `ours`: the
/// coordinator under test would balloon them too.
pub fn assert_no_foreign_guests(ours: &[String]) {
    let others: Vec<String> =
        running_domains().into_iter().filter(|d| !d.starts_with("mc_") && !ours.contains(d)).collect();
    assert!(others.is_empty(), "refusing to run: the coordinator would also balloon {others:?}");
}

/// For a test that drives the system libvirtd: `None` under MC_SKIP_LAB=1; otherwise builds
/// the image, starts libvirtd, checks no foreign guest runs, starts `name` and waits until it
/// has booted.
/// The lab's guest image, libvirtd running, and no guest of another test in the way; `None`
/// when the lab is skipped.
pub fn lab_ready(test: &str) -> Option<GuestImage> {
    if skip_lab(test) {
        return None;
    }
    let image = guest_image();
    libvirtd_up();
    assert_no_foreign_guests(&[]);
    Some(image)
}

pub fn booted_libvirt_guest(test: &str, name: &str, max_mib: u64, current_mib: u64) -> Option<LibvirtGuest> {
    if skip_lab(test) {
        return None;
    }
    let image = guest_image();
    libvirtd_up();
    assert_no_foreign_guests(&[]);
    let guest = LibvirtGuest::start(&image, name, max_mib, current_mib);
    guest.wait_console("lab-guest: ready", Duration::from_secs(60));
    // libvirt balloons the guest from <memory> down to <currentMemory> once its balloon driver
    // loads, which can be after "ready" on a loaded machine: a test must start from the size
    // it asked for, not from a balloon still on its way there.
    let target_kib = current_mib * 1024;
    let deadline = Instant::now() + Duration::from_secs(60);
    while guest.memstat("actual").is_none_or(|kib| kib.abs_diff(target_kib) > 4096) {
        assert!(
            Instant::now() < deadline,
            "{name}: the balloon never reached {current_mib} MiB: {:?}",
            guest.memstat("actual")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Some(guest)
}

/// A bare QEMU process running the lab guest, with QMP sockets; killed on drop.
pub struct QemuGuest {
    pub name: String,
    pub child: Child,
    pub dir: PathBuf,
}

impl QemuGuest {
    /// Starts `name` with `-m max_mib`, a balloon device `id=balloon0`, one QMP socket per entry
    /// of `qmp_sockets` (paths), console and command port in `dir`. The caller balloons it
    /// down to its start size.
    pub fn start(image: &GuestImage, name: &str, max_mib: u64, dir: &Path, qmp_sockets: &[PathBuf]) -> QemuGuest {
        QemuGuest::start_with_disk(image, name, max_mib, dir, qmp_sockets, None)
    }

    /// As [`QemuGuest::start`], with `disk` (a raw image file) as the guest's `/dev/vda`.
    pub fn start_with_disk(
        image: &GuestImage,
        name: &str,
        max_mib: u64,
        dir: &Path,
        qmp_sockets: &[PathBuf],
        disk: Option<&Path>,
    ) -> QemuGuest {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-accel",
            "tcg",
            "-name",
            name,
            "-m",
            &max_mib.to_string(),
            "-smp",
            "1",
            "-nographic",
            "-nodefaults",
        ])
        .arg("-kernel")
        .arg(&image.kernel)
        .arg("-initrd")
        .arg(&image.initrd)
        .args(["-append", "console=ttyS0 panic=-1", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", dir.join(format!("{name}.console")).display()))
        .arg("-chardev")
        .arg(format!("socket,id=cmd,path={},server=on,wait=off", dir.join(format!("{name}.cmd")).display()))
        .args(["-serial", "chardev:cmd", "-device", "virtio-balloon-pci,id=balloon0"]);
        if let Some(disk) = disk {
            cmd.arg("-drive").arg(format!("file={},format=raw,if=virtio", disk.display()));
        }
        for s in qmp_sockets {
            cmd.arg("-qmp").arg(format!("unix:{},server=on,wait=off", s.display()));
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while qmp_sockets.iter().any(|s| !s.exists()) {
            assert!(Instant::now() < deadline, "QEMU did not create its QMP sockets");
            std::thread::sleep(Duration::from_millis(50));
        }
        QemuGuest { name: name.to_owned(), child, dir: dir.to_owned() }
    }

    pub fn console(&self) -> String {
        read_console(&self.dir.join(format!("{}.console", self.name)))
    }

    pub fn wait_console(&self, needle: &str, timeout: Duration) {
        wait_console(&self.dir.join(format!("{}.console", self.name)), needle, timeout);
    }

    pub fn send(&self, command: &str) {
        send_command(
            &self.dir.join(format!("{}.cmd", self.name)),
            &self.dir.join(format!("{}.console", self.name)),
            command,
        );
    }
}

impl Drop for QemuGuest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
