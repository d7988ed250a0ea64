//! One daemon per host: an exclusive lock on a file under /run, held for the daemon's life.
//!
//! Two coordinators on one host would budget the same host memory twice and undo each other's
//! balloon moves every round. The second one to start therefore refuses, naming the first by
//! its pid. The lock is `flock(2)`: the kernel drops it when its holder dies, however it dies,
//! so a crashed daemon never leaves a lock that blocks the next start (the file stays; only
//! the lock matters). A `--dry-run` instance changes no balloon and takes no lock, so an
//! operator can watch what the daemon would do beside the running service. The refusal has an
//! exit status of its own ([`RUNNING_EXIT`]) that the service unit does not restart on.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Exit status when another daemon holds the lock. Its own number, so that the service unit
/// can list it in `RestartPreventExitStatus=`: restarting cannot help while the other daemon
/// runs, and every retry would log the same line. None of the names systemd gives exit
/// statuses (`systemd-analyze exit-status`: libc, LSB, BSD and its own) is 10, so `systemctl
/// status` shows no misleading one beside it.
pub const RUNNING_EXIT: u8 = 10;

/// Where the lock lives unless `--lock-file` says otherwise. The service unit's
/// `RuntimeDirectory=memory_coordinator` creates the directory writable under
/// `ProtectSystem=strict`; run by hand, the daemon creates it.
pub const DEFAULT_LOCK_FILE: &str = "/run/memory_coordinator/memory_coordinator.lock";

/// Errors of this module.
#[derive(Debug)]
pub enum InstanceError {
    /// Another daemon holds the lock.
    Running { path: PathBuf, pid: Option<u32> },
    /// The lock file cannot be created or locked.
    Lock { path: PathBuf, error: io::Error },
}

impl fmt::Display for InstanceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceError::Running { path, pid } => {
                let (who, kill) = match pid {
                    Some(p) => (format!("another memory_coordinator (pid {p})"), format!("kill {p}")),
                    None => ("another memory_coordinator".to_owned(), "end it".to_owned()),
                };
                // The refused one may be the service itself, when an operator started one by
                // hand: then stopping the service is no cure.
                write!(
                    f,
                    "{who} already runs on this host (it holds {}): two would fight over the same balloons; \
                     stop it first (systemctl stop memory-coordinator if it is the service, else {kill}), or run \
                     this one with --dry-run to watch",
                    path.display()
                )
            }
            InstanceError::Lock { path, error } => write!(
                f,
                "cannot take the one-daemon-per-host lock {}: {error}; run as root, or give --lock-file a path \
                 in a directory you can write",
                path.display()
            ),
        }
    }
}

impl std::error::Error for InstanceError {}

impl InstanceError {
    /// The exit status this error ends the daemon with: [`RUNNING_EXIT`] when another daemon
    /// holds the lock, 1 (a start that failed, worth retrying) otherwise.
    pub fn exit_status(&self) -> u8 {
        match self {
            InstanceError::Running { .. } => RUNNING_EXIT,
            InstanceError::Lock { .. } => 1,
        }
    }
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct InstanceLock {
    _lock: Flock<File>,
}

impl InstanceLock {
    /// Takes the lock at `path` without waiting, and writes this process's pid into the file
    /// so that a second instance can say who holds it.
    pub fn acquire(path: &Path) -> Result<InstanceLock, InstanceError> {
        let fail = |error: io::Error| InstanceError::Lock { path: path.to_owned(), error };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        // Not truncated on open: the holder's pid must stay readable until we hold the lock.
        let file = match OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o644).open(path) {
            Ok(file) => file,
            // A user who may not write the lock file of a daemon running as root: flock needs
            // no write permission, so find out whether that daemon runs before blaming the path.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                let file = File::open(path).map_err(|_| fail(e))?;
                return match Flock::lock(file, FlockArg::LockSharedNonblock) {
                    Err((mut file, Errno::EWOULDBLOCK)) => {
                        Err(InstanceError::Running { path: path.to_owned(), pid: read_pid(&mut file) })
                    }
                    _ => Err(fail(io::Error::from(io::ErrorKind::PermissionDenied))),
                };
            }
            Err(e) => return Err(fail(e)),
        };
        // The umask (the service's is 0077) may have narrowed the mode: others must be able to
        // read the holder's pid.
        file.set_permissions(std::fs::Permissions::from_mode(0o644)).map_err(fail)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                return Err(InstanceError::Running { path: path.to_owned(), pid: read_pid(&mut file) });
            }
            Err((_, errno)) => return Err(fail(io::Error::from(errno))),
        };
        let pid = std::process::id();
        lock.set_len(0).and_then(|()| lock.rewind()).and_then(|()| writeln!(&mut *lock, "{pid}")).map_err(fail)?;
        Ok(InstanceLock { _lock: lock })
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_file_is_refused_naming_the_holder_and_granted_once_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/mc.lock");
        let first = InstanceLock::acquire(&path).unwrap();
        // flock locks belong to the open file description, so a second open in this same
        // process conflicts exactly as another process would.
        match InstanceLock::acquire(&path) {
            Err(e @ InstanceError::Running { .. }) => {
                assert!(matches!(e, InstanceError::Running { pid, .. } if pid == Some(std::process::id())));
                assert_eq!(e.exit_status(), RUNNING_EXIT);
            }
            other => panic!("expected Running, got {other:?}"),
        }
        drop(first);
        InstanceLock::acquire(&path).expect("free again once dropped");
    }

    #[test]
    fn a_lock_file_in_an_unwritable_place_is_a_clear_error() {
        let err = InstanceLock::acquire(Path::new("/proc/mc-cannot-be-here/lock")).unwrap_err();
        assert!(matches!(err, InstanceError::Lock { .. }), "{err:?}");
        assert!(err.to_string().contains("--lock-file"), "{err}");
        assert_eq!(err.exit_status(), 1, "a start that failed, as a backend that cannot start");
    }
}
