//! Holding the host short of memory, safely (../shared/LAB.md, "Host memory is paid when the
//! guest touches it"): a helper process (this lab binary run as `__hold MIB`) maps and touches
//! MIB of anonymous memory and keeps it, with `oom_score_adj` 1000 so that the host's OOM
//! killer takes it first; and a valve, a thread in the harness, that kills the helper the
//! moment host MemAvailable falls below [`VALVE_MIB`]. Without the valve a swapless host
//! thrashes for minutes before its OOM killer acts, and the machine (shared with others)
//! freezes. A fired valve fails the run: the coordinator let the host run out.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The valve: below this host MemAvailable the hold is killed at once.
pub const VALVE_MIB: u64 = 150;
/// How often the valve reads /proc/meminfo. Four guests consuming at ~23 MB/s each take about
/// 5 MB in this time, so the valve acts well before the host is out.
const VALVE_PERIOD: Duration = Duration::from_millis(50);
/// A hold smaller than this is not worth a process: the host is already as short as wanted.
const MIN_HOLD_MIB: u64 = 64;

pub fn host_available_mib() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    memory_coordinator::host::parse_meminfo(meminfo.as_bytes()).map_or(0, |h| h.available_kib / 1024)
}

/// The child side (`lab __hold MIB`): maps, touches and keeps MIB until killed.
pub fn child_main(mib: &str) -> ExitCode {
    let Ok(mib) = mib.parse::<usize>() else {
        eprintln!("lab __hold: {mib:?} is not a number of MiB");
        return ExitCode::from(2);
    };
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and changes nothing else. If the
    // harness dies (even by SIGKILL), the kernel kills the hold: it must never outlive the run.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
    }
    // The parent may have died before prctl took effect: then init is our parent.
    // SAFETY: getppid has no preconditions.
    #[allow(unsafe_code)]
    if unsafe { libc::getppid() } == 1 {
        return ExitCode::FAILURE;
    }
    // The host's OOM killer takes this process before anything else, guests included.
    if let Err(e) = std::fs::write("/proc/self/oom_score_adj", "1000") {
        eprintln!("lab __hold: cannot set oom_score_adj: {e}");
        return ExitCode::FAILURE;
    }
    let len = mib * 1024 * 1024;
    // SAFETY: an anonymous private mapping of `len` bytes, not aliased by anything; it is
    // touched below only within its length and kept until the process ends.
    #[allow(unsafe_code)]
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        eprintln!("lab __hold: mmap of {mib} MiB failed");
        return ExitCode::FAILURE;
    }
    let page = 4096;
    for off in (0..len).step_by(page) {
        // SAFETY: off < len, inside the mapping made above. A non-zero write so that the page
        // is really allocated (a read would map the shared zero page).
        #[allow(unsafe_code)]
        unsafe {
            ptr.cast::<u8>().add(off).write_volatile(1);
        }
    }
    // With swap on the host, touched pages could still be paged out; locked they stay. Without
    // swap (the lab's machines) touching is enough, so a failure here is not fatal.
    // SAFETY: the range is the mapping made above.
    #[allow(unsafe_code)]
    let locked = unsafe { libc::mlock(ptr, len) } == 0;
    println!("held {mib} MiB{}", if locked { ", locked" } else { "" });
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// What the hold and its valve did, for the run's record.
#[derive(Clone, Debug, Default, Serialize)]
pub struct HoldReport {
    /// Host MemAvailable the hold aimed to leave.
    pub leave_mib: u64,
    /// What the helper held (0: the host was already short enough).
    pub held_mib: u64,
    /// Host MemAvailable once the hold was in place.
    pub host_after_hold_mib: u64,
    /// The lowest host MemAvailable the valve saw (every 50 ms) while the hold was in place.
    pub host_min_mib: u64,
    /// Seconds (on the run's clock) when the valve fired, and the MemAvailable it saw.
    pub valve_fired_at_s: Option<f64>,
    pub valve_fired_host_mib: Option<u64>,
}

#[derive(Default)]
struct Valve {
    pid: Option<i32>,
    fired: Option<(Instant, u64)>,
    min_mib: Option<u64>,
}

/// A running hold with its valve; dropping it ends both.
pub struct HostHold {
    child: Option<Child>,
    state: Arc<Mutex<Valve>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    leave_mib: u64,
    held_mib: u64,
    host_after_hold_mib: u64,
}

impl HostHold {
    /// Holds what the host has above `leave_mib` of MemAvailable, waits until the helper has
    /// touched it all, and keeps the valve running until dropped.
    pub fn start(leave_mib: u64) -> HostHold {
        let available = host_available_mib();
        let hold_mib = available.saturating_sub(leave_mib);
        let state = Arc::new(Mutex::new(Valve::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut hold = HostHold {
            child: None,
            state: Arc::clone(&state),
            stop: Arc::clone(&stop),
            thread: None,
            leave_mib,
            held_mib: 0,
            host_after_hold_mib: available,
        };
        if hold_mib < MIN_HOLD_MIB {
            println!("  >> host MemAvailable {available} MiB: no hold needed to leave {leave_mib} MiB");
        } else {
            // /proc/self/exe rather than the binary's path: it still names this very binary
            // when cargo has rebuilt (replaced) the file meanwhile.
            let mut child = Command::new("/proc/self/exe")
                .args(["__hold", &hold_mib.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("the hold helper starts");
            state.lock().unwrap().pid = i32::try_from(child.id()).ok();
            hold.thread = Some(std::thread::spawn(move || valve(&state, &stop)));
            // The valve already watches while the helper touches its memory.
            let mut line = String::new();
            let _ = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
            hold.child = Some(child);
            hold.held_mib = hold_mib;
            hold.host_after_hold_mib = host_available_mib();
            println!(
                "  >> holding {hold_mib} MiB of host memory ({}): host MemAvailable {available} -> {} MiB; valve at {VALVE_MIB} MiB",
                line.trim(),
                hold.host_after_hold_mib
            );
        }
        if hold.thread.is_none() {
            // No helper, but the valve still records the host's minimum (and has nothing to kill).
            let (state, stop) = (Arc::clone(&hold.state), Arc::clone(&hold.stop));
            hold.thread = Some(std::thread::spawn(move || valve(&state, &stop)));
        }
        hold
    }

    /// The hold's record so far; `since` is the run clock's zero (the workload start).
    pub fn report(&self, since: Instant) -> HoldReport {
        let v = self.state.lock().unwrap();
        let at = |i: Instant| {
            if i >= since { i.duration_since(since).as_secs_f64() } else { -since.duration_since(i).as_secs_f64() }
        };
        HoldReport {
            leave_mib: self.leave_mib,
            held_mib: self.held_mib,
            host_after_hold_mib: self.host_after_hold_mib,
            host_min_mib: v.min_mib.unwrap_or(self.host_after_hold_mib),
            valve_fired_at_s: v.fired.map(|(i, _)| at(i)),
            valve_fired_host_mib: v.fired.map(|(_, m)| m),
        }
    }
}

/// The valve's loop: records the host minimum, kills the helper below [`VALVE_MIB`].
fn valve(state: &Mutex<Valve>, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let available = host_available_mib();
        let mut v = state.lock().unwrap();
        v.min_mib = Some(v.min_mib.map_or(available, |m| m.min(available)));
        if available < VALVE_MIB
            && v.fired.is_none()
            && let Some(pid) = v.pid.take()
        {
            // SAFETY: kill(2) on our own child's pid, not yet reaped (the HostHold that
            // owns the Child reaps it only after this thread has stopped).
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            v.fired = Some((Instant::now(), available));
            println!("  >> VALVE FIRED: host MemAvailable {available} MiB < {VALVE_MIB} MiB: killed the hold");
        }
        drop(v);
        std::thread::sleep(VALVE_PERIOD);
    }
}

impl Drop for HostHold {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
