//! A QMP client on one unix socket: greeting, `qmp_capabilities`, then commands, either one at
//! a time (`execute`) or pipelined (`queue` several, `send_queued`, then the caller reads the
//! replies with `read_some`/`next_line` while it waits on many sockets at once).
//!
//! Every read and write has a deadline (a QEMU that accepts but never answers costs at most the
//! timeout); events between replies are skipped; replies are matched by `id`, which increases
//! with every command on a connection; lines are bounded by `protocol::MAX_LINE_BYTES`.
//! Commands are encoded into a fixed buffer and replies parsed from the fixed line buffer, so a
//! steady-state command allocates nothing.

use std::fmt;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, getsockopt, socket, sockopt};
use serde::Serialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use super::protocol::{self, LineBuffer, Message, ParseError};
use crate::text::FixedText;

/// Longest command we send (a `qom-get` with a long device path is about 150 bytes).
const MAX_COMMAND_BYTES: usize = 4096;

/// Errors of the QMP client.
#[derive(Debug)]
pub enum QmpError {
    /// connect(2) failed (no QEMU behind the socket, or no permission).
    Connect(io::Error),
    /// The socket's queue of connections not yet accepted is full: QEMU does not accept (its
    /// monitor serves another client, or QEMU is hung).
    NotAccepting,
    /// A read or write failed.
    Io(io::ErrorKind),
    /// No complete reply before the deadline.
    Timeout(&'static str),
    /// The peer closed the connection.
    Closed,
    /// The peer sent a line longer than the limit.
    LineTooLong,
    /// A line that is not a QMP message, or a reply of the wrong shape.
    Protocol(&'static str, ParseError),
    /// The first message was not a QMP greeting.
    NoGreeting,
    /// QEMU answered with an error.
    Reply { command: &'static str, class: FixedText<48>, desc: FixedText<240> },
    /// The command did not fit the command buffer.
    CommandTooLong(&'static str),
}

impl QmpError {
    /// Whether the connection can go on after this error: only a well-formed error reply
    /// leaves the stream in a known state.
    pub fn keeps_connection(&self) -> bool {
        matches!(self, QmpError::Reply { .. } | QmpError::CommandTooLong(_))
    }
}

impl fmt::Display for QmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QmpError::Connect(e) => write!(f, "cannot connect: {e}"),
            QmpError::NotAccepting => f.write_str(
                "QEMU accepts no connection on this socket (another client holds its monitor, or QEMU is hung)",
            ),
            QmpError::Io(kind) => write!(f, "socket error: {kind}"),
            QmpError::Timeout(cmd) => write!(f, "no reply to {cmd} in time (QEMU hung?)"),
            QmpError::Closed => f.write_str("QEMU closed the connection"),
            QmpError::LineTooLong => {
                write!(f, "QEMU sent a line longer than {} KiB", protocol::MAX_LINE_BYTES / 1024)
            }
            QmpError::Protocol(cmd, e) => write!(f, "{e} while waiting for the reply to {cmd}"),
            QmpError::NoGreeting => f.write_str("no QMP greeting: is this a QMP socket (-qmp unix:PATH,server=on)?"),
            QmpError::Reply { command, class, desc } => write!(f, "{command} failed: {desc} ({class})"),
            QmpError::CommandTooLong(cmd) => write!(f, "the {cmd} command is too long to send"),
        }
    }
}

impl std::error::Error for QmpError {}

#[derive(Serialize)]
struct Command<'a, A: Serialize> {
    execute: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    arguments: Option<A>,
    id: u64,
}

/// A `Write` into a fixed slice that fails instead of growing.
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl Write for SliceWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let end = self.len.checked_add(bytes.len()).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| io::Error::from(io::ErrorKind::WriteZero))?;
        self.buf[self.len..end].copy_from_slice(bytes);
        self.len = end;
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One QMP connection in command mode.
pub struct QmpClient {
    stream: UnixStream,
    lines: LineBuffer,
    out: Box<[u8; MAX_COMMAND_BYTES]>,
    /// Bytes of `out` queued and not sent yet.
    queued: usize,
    next_id: u64,
    timeout: Duration,
    /// The QEMU process at the other end (SO_PEERCRED at connect), if the kernel told us.
    peer_pid: Option<i32>,
}

impl QmpClient {
    /// Connects, reads the greeting and enters command mode, within `timeout` per step (two
    /// steps: the greeting, `qmp_capabilities`).
    pub fn connect(path: &Path, timeout: Duration) -> Result<QmpClient, QmpError> {
        QmpClient::connect_until(path, timeout, Instant::now() + timeout * 2)
    }

    /// Connects, reads the greeting and enters command mode, all before `deadline`; later
    /// `execute` calls get `timeout` each.
    pub fn connect_until(path: &Path, timeout: Duration, deadline: Instant) -> Result<QmpClient, QmpError> {
        let stream = connect_nonblocking(path)?;
        // The QEMU process, for its RSS; a peer in another PID namespace reads as pid 0.
        let peer_pid = getsockopt(&stream, sockopt::PeerCredentials).ok().map(|c| c.pid()).filter(|p| *p > 0);
        let mut client = QmpClient {
            stream,
            lines: LineBuffer::new(),
            out: Box::new([0; MAX_COMMAND_BYTES]),
            queued: 0,
            next_id: 1,
            timeout,
            peer_pid,
        };
        client.read_greeting(deadline)?;
        client.execute_until::<_, IgnoredAny>("qmp_capabilities", None::<()>, deadline)?;
        Ok(client)
    }

    /// The pid of the QEMU behind the socket, from SO_PEERCRED at connect time.
    pub fn peer_pid(&self) -> Option<i32> {
        self.peer_pid
    }

    /// The socket, to wait on it together with others.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }

    /// Encodes `command` after those already queued and returns its id; nothing is sent before
    /// `send_queued`.
    pub fn queue<A: Serialize>(&mut self, command: &'static str, arguments: Option<A>) -> Result<u64, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut w = SliceWriter { buf: &mut self.out[..], len: self.queued };
        serde_json::to_writer(&mut w, &Command { execute: command, arguments, id })
            .map_err(|_| QmpError::CommandTooLong(command))?;
        w.write_all(b"\n").map_err(|_| QmpError::CommandTooLong(command))?;
        self.queued = w.len;
        Ok(id)
    }

    /// Sends every queued command, completely, before `deadline`.
    pub fn send_queued(&mut self, deadline: Instant, what: &'static str) -> Result<(), QmpError> {
        let len = std::mem::take(&mut self.queued);
        self.send(len, deadline, what)
    }

    /// One non-blocking read into the line buffer: `Ok(true)` when bytes came, `Ok(false)` when
    /// none are there yet.
    pub fn read_some(&mut self) -> Result<bool, QmpError> {
        let spare = self.lines.spare().map_err(|_| QmpError::LineTooLong)?;
        match self.stream.read(spare) {
            Ok(0) => Err(QmpError::Closed),
            Ok(n) => {
                self.lines.filled(n);
                Ok(true)
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Err(QmpError::Closed),
            Err(e) => Err(QmpError::Io(e.kind())),
        }
    }

    /// The next complete line read, if any.
    pub fn next_line(&mut self) -> Option<&[u8]> {
        self.lines.next_line()
    }

    /// Whether the peer stopped in the middle of a line.
    pub fn has_partial_line(&self) -> bool {
        self.lines.has_partial_line()
    }

    fn read_greeting(&mut self, deadline: Instant) -> Result<(), QmpError> {
        loop {
            if let Some(line) = self.lines.next_line() {
                return match protocol::parse::<IgnoredAny>(line) {
                    Ok(Message::Greeting) => Ok(()),
                    Ok(Message::Event) => continue,
                    Ok(_) | Err(_) => Err(QmpError::NoGreeting),
                };
            }
            self.fill(deadline, "the greeting")?;
        }
    }

    /// Runs `command` with `arguments` and returns its `return` value, within the timeout.
    pub fn execute<A: Serialize, T: DeserializeOwned>(
        &mut self,
        command: &'static str,
        arguments: Option<A>,
    ) -> Result<T, QmpError> {
        self.execute_until(command, arguments, Instant::now() + self.timeout)
    }

    /// Runs `command` with `arguments` and returns its `return` value, before `deadline`.
    pub fn execute_until<A: Serialize, T: DeserializeOwned>(
        &mut self,
        command: &'static str,
        arguments: Option<A>,
        deadline: Instant,
    ) -> Result<T, QmpError> {
        // Anything left queued belongs to no one now: this command goes alone.
        self.queued = 0;
        let id = self.queue(command, arguments)?;
        self.send_queued(deadline, command)?;
        loop {
            if let Some(line) = self.lines.next_line() {
                match protocol::parse::<T>(line) {
                    Ok(Message::Return { id: Some(got), .. } | Message::Error { id: Some(got), .. }) if got != id => {
                        // A late reply to an earlier command: not ours.
                        continue;
                    }
                    Ok(Message::Return { value, .. }) => return Ok(value),
                    Ok(Message::Error { body, .. }) => {
                        return Err(QmpError::Reply {
                            command,
                            class: FixedText::new(&body.class),
                            desc: FixedText::new(&body.desc),
                        });
                    }
                    Ok(Message::Event | Message::Greeting) => continue,
                    Err(e) => return Err(QmpError::Protocol(command, e)),
                }
            }
            self.fill(deadline, command)?;
        }
    }

    /// Writes `out[..len]` completely before the deadline.
    fn send(&mut self, len: usize, deadline: Instant, command: &'static str) -> Result<(), QmpError> {
        let mut sent = 0;
        while sent < len {
            match self.stream.write(&self.out[sent..len]) {
                Ok(0) => return Err(QmpError::Closed),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait(&self.stream, PollFlags::POLLOUT, deadline, command)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Err(QmpError::Closed),
                Err(e) => return Err(QmpError::Io(e.kind())),
            }
        }
        Ok(())
    }

    /// Reads more bytes into the line buffer, waiting until the deadline.
    fn fill(&mut self, deadline: Instant, command: &'static str) -> Result<(), QmpError> {
        loop {
            let spare = self.lines.spare().map_err(|_| QmpError::LineTooLong)?;
            match self.stream.read(spare) {
                Ok(0) => return Err(QmpError::Closed),
                Ok(n) => {
                    self.lines.filled(n);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait(&self.stream, PollFlags::POLLIN, deadline, command)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Err(QmpError::Closed),
                Err(e) => return Err(QmpError::Io(e.kind())),
            }
        }
    }
}

/// A non-blocking connect: a blocking one waits, without end, while the listener's queue of
/// connections not yet accepted is full, which is the case when a QEMU does not accept (its
/// monitor serves another client, or it is hung, and an earlier attempt of ours is still
/// queued). On a unix socket a non-blocking connect completes at once or fails with EAGAIN.
fn connect_nonblocking(path: &Path) -> Result<UnixStream, QmpError> {
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC, None)
        .map_err(|e| QmpError::Connect(e.into()))?;
    let address = UnixAddr::new(path).map_err(|e| QmpError::Connect(e.into()))?;
    match connect(fd.as_raw_fd(), &address) {
        Ok(()) => Ok(UnixStream::from(fd)),
        Err(Errno::EAGAIN) => Err(QmpError::NotAccepting),
        Err(e) => Err(QmpError::Connect(e.into())),
    }
}

/// Waits until the socket is ready for `what` or the deadline passes.
fn wait(stream: &UnixStream, what: PollFlags, deadline: Instant, command: &'static str) -> Result<(), QmpError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(QmpError::Timeout(command));
        }
        let timeout = PollTimeout::try_from(left.as_millis().saturating_add(1)).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(stream.as_fd(), what)];
        match poll(&mut fds, timeout) {
            Ok(0) => return Err(QmpError::Timeout(command)),
            // Readable, writable, or hung up / in error: the next read or write tells which.
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(QmpError::Io(io::Error::from(e).kind())),
        }
    }
}
