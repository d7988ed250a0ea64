//! Signal-safe shutdown. SIGINT and SIGTERM set a flag and write to a self-pipe, so the loop's
//! wait between rounds ends at once instead of after the interval; a second signal while
//! shutting down exits immediately (status 128 + signal number, as a shell reports it).

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use signal_hook::consts::{SIGINT, SIGTERM};

/// The shutdown request, shared by the signal handlers and the loop.
pub struct Shutdown {
    flag: Arc<AtomicBool>,
    wake_rx: UnixStream,
    wake_tx: UnixStream,
}

impl Shutdown {
    /// A shutdown that only [`Shutdown::request`] triggers (for tests and embedding).
    pub fn new() -> io::Result<Shutdown> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        Ok(Shutdown { flag: Arc::new(AtomicBool::new(false)), wake_rx, wake_tx })
    }

    /// Installs the SIGINT and SIGTERM handlers.
    pub fn install() -> io::Result<Shutdown> {
        let shutdown = Shutdown::new()?;
        for signal in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as the previous signal left it: the
            // second signal exits at once, the first only sets the flag.
            signal_hook::flag::register_conditional_shutdown(signal, 128 + signal, Arc::clone(&shutdown.flag))?;
            signal_hook::flag::register(signal, Arc::clone(&shutdown.flag))?;
            signal_hook::low_level::pipe::register(signal, shutdown.wake_tx.try_clone()?)?;
        }
        Ok(shutdown)
    }

    /// Asks the loop to stop, as a signal would.
    pub fn request(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // A full socket already holds a wake-up; nothing is lost by ignoring that error.
        if let Err(e) = (&self.wake_tx).write(&[1]) {
            log::trace!("shutdown wake-up not written: {e}");
        }
    }

    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Sleeps until `deadline` or a shutdown request, whichever is first; true if shutdown
    /// was requested.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        while !self.requested() {
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
    fn without_a_request_the_wait_lasts_until_the_deadline() {
        let s = Shutdown::new().unwrap();
        let start = Instant::now();
        assert!(!s.wait_until(start + Duration::from_millis(120)));
        assert!(start.elapsed() >= Duration::from_millis(120));
    }
}
