//! Signal-safe shutdown and reload. SIGINT and SIGTERM set a flag and write to a self-pipe, so
//! the loop's wait between rounds ends at once instead of after the interval; a second signal
//! while shutting down exits immediately (status 128 + signal number, as a shell reports it).
//! SIGHUP sets a reload flag and wakes the wait the same way, so a reload takes effect when it
//! is asked for, not an interval later.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// The shutdown and reload requests, shared by the signal handlers and the loop.
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
    wake_rx: UnixStream,
    wake_tx: UnixStream,
}

impl Shutdown {
    /// A shutdown that only [`Shutdown::request`] triggers (for tests and embedding).
    pub fn new() -> io::Result<Shutdown> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        Ok(Shutdown {
            flag: Arc::new(AtomicBool::new(false)),
            reload: Arc::new(AtomicBool::new(false)),
            wake_rx,
            wake_tx,
        })
    }

    /// Installs the SIGINT, SIGTERM and SIGHUP handlers.
    pub fn install() -> io::Result<Shutdown> {
        let shutdown = Shutdown::new()?;
        for signal in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as the previous signal left it: the
            // second signal exits at once, the first only sets the flag.
            signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&shutdown.flag))?;
            signal_hook::flag::register(signal, Arc::clone(&shutdown.flag))?;
            signal_hook::low_level::pipe::register(signal, shutdown.wake_tx.try_clone()?)?;
        }
        // Without a handler SIGHUP would end the process: its default action is to terminate.
        signal_hook::flag::register(SIGHUP, Arc::clone(&shutdown.reload))?;
        signal_hook::low_level::pipe::register(SIGHUP, shutdown.wake_tx.try_clone()?)?;
        Ok(shutdown)
    }

    /// Asks the loop to stop, as a signal would.
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Asks the loop to reload its configuration, as SIGHUP would.
    pub fn request_reload(&self) {
        self.reload.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        // A full socket already holds a wake-up; nothing is lost by ignoring that error.
        if let Err(e) = (&self.wake_tx).write(&[1]) {
            log::trace!("wake-up not written: {e}");
        }
    }

    /// The flag that [`Shutdown::requested`] reads, for code that must give up a wait once a
    /// stop is asked for (the libvirt backend's calls to a hung QEMU).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }

    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// True once per reload request (several SIGHUPs before the loop looks count as one).
    pub fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::SeqCst)
    }

    /// Sleeps until `deadline`, a shutdown request or a reload request, whichever is first;
    /// true if shutdown was requested. A reload request stays pending for [`take_reload`].
    ///
    /// [`take_reload`]: Shutdown::take_reload
    pub fn wait_until(&self, deadline: Instant) -> bool {
        while !self.requested() && !self.reload.load(Ordering::SeqCst) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let timeout = PollTimeout::try_from(left.as_millis().saturating_add(1)).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.wake_rx.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, timeout) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => {}
                Ok(_) => self.drain(),
                Err(e) => {
                    // Cannot wait on the pipe: fall back to short sleeps, still honouring the flag.
                    log::debug!("poll on the shutdown pipe failed: {e}");
                    std::thread::sleep(left.min(std::time::Duration::from_millis(50)));
                }
            }
        }
        self.requested()
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = (&self.wake_rx).read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_request_ends_the_wait_at_once() {
        let s = Arc::new(Shutdown::new().unwrap());
        let s2 = Arc::clone(&s);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            s2.request();
        });
        let start = Instant::now();
        assert!(s.wait_until(start + Duration::from_secs(10)));
        assert!(start.elapsed() < Duration::from_secs(2));
        t.join().unwrap();
    }

    #[test]
    fn a_reload_request_ends_the_wait_and_is_taken_once() {
        let s = Shutdown::new().unwrap();
        s.request_reload();
        s.request_reload();
        let start = Instant::now();
        assert!(!s.wait_until(start + Duration::from_secs(10)), "a reload is not a shutdown");
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(s.take_reload());
        assert!(!s.take_reload());
        assert!(!s.wait_until(Instant::now() + Duration::from_millis(50)));
    }

    #[test]
    fn without_a_request_the_wait_lasts_until_the_deadline() {
        let s = Shutdown::new().unwrap();
        let start = Instant::now();
        assert!(!s.wait_until(start + Duration::from_millis(120)));
        assert!(start.elapsed() >= Duration::from_millis(120));
    }
}
