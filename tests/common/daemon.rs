//! Runs the real `memory_coordinator` binary and reads what it says.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_memory_coordinator");

/// The variable that moves the daemon's one-per-host lock (`--lock-file`).
pub const LOCK_ENV: &str = "MEMORY_COORDINATOR_LOCK_FILE";

/// A lock path of its own for each daemon a test starts, since tests run many daemons at once
/// on one host (tests/single_instance.rs tests the lock itself). Its directory is
/// world-writable, so that a daemon run as `nobody` (`setpriv --reuid=65534`) gets past the
/// lock to the error its test is about.
pub fn fresh_lock_file() -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("mc-locks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
    dir.join(format!("{n}.lock"))
}

/// The binary, ready to run, with a lock of its own.
pub fn command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("RUST_LOG").env(LOCK_ENV, fresh_lock_file());
    cmd
}

/// Runs the binary to completion.
pub fn run(args: &[&str]) -> Output {
    command().args(args).output().expect("the binary runs")
}

/// The JSON lines the binary printed on stdout.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// A running daemon whose stderr and stdout are read line by line on threads.
pub struct Daemon {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub stderr: Vec<String>,
    json: mpsc::Receiver<serde_json::Value>,
    /// JSON lines (`--json`) received so far.
    pub rounds: Vec<serde_json::Value>,
}

impl Daemon {
    pub fn start(args: &[&str]) -> Daemon {
        let mut command = command();
        command.args(args);
        Daemon::start_command(command)
    }

    /// Starts `command` (the binary, maybe behind a wrapper such as `setpriv`), with its own
    /// instance lock unless the command names one.
    pub fn start_command(mut command: Command) -> Daemon {
        if !command.get_envs().any(|(k, _)| k == LOCK_ENV) {
            command.env(LOCK_ENV, fresh_lock_file());
        }
        let mut child = command
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stderr = child.stderr.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (json_tx, json) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"));
                if json_tx.send(value).is_err() {
                    break;
                }
            }
        });
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Daemon { child, lines, stderr: Vec::new(), json, rounds: Vec::new() }
    }

    /// Collects the JSON lines that arrived.
    pub fn poll_rounds(&mut self) -> &[serde_json::Value] {
        while let Ok(v) = self.json.try_recv() {
            self.rounds.push(v);
        }
        &self.rounds
    }

    /// Collects the stderr lines that arrived.
    pub fn poll_stderr(&mut self) -> &[String] {
        while let Ok(l) = self.lines.try_recv() {
            self.stderr.push(l);
        }
        &self.stderr
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.stderr.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?} within {timeout:?}; got:\n{}", self.stderr.join("\n")),
            }
        }
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(i32::try_from(self.child.id()).unwrap(), signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits for the exit; returns its code and how long it took.
    pub fn wait_exit(&mut self, timeout: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.stderr.push(line);
                }
                return (status.code(), start.elapsed());
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!("still running after {timeout:?}; stderr:\n{}", self.stderr.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
