//! QEMU Machine Protocol messages: line framing and reply parsing, with no I/O.
//!
//! QMP sends one JSON object per line (`\r\n`-terminated): a greeting (`{"QMP": ...}`), then
//! replies (`{"return": ...}` or `{"error": {"class", "desc"}}`, echoing our `id`) and, at
//! any time between them, events (`{"event": ...}`) that must be skipped. Replies are parsed
//! straight from the read buffer into borrowed structs: nothing is allocated for a well-formed
//! reply.

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::units::bytes_to_kib;

/// Longest line accepted; QEMU's replies to our commands are a few hundred bytes.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// QEMU's "not reported" value for a guest statistic (QAPI `GuestStats`, qemu/hw/virtio/virtio-balloon.c).
pub const STAT_NOT_REPORTED: u64 = u64::MAX;

/// A fixed buffer that frames bytes from a stream into lines of at most `MAX_LINE_BYTES`.
pub struct LineBuffer {
    buf: Box<[u8; MAX_LINE_BYTES]>,
    start: usize,
    end: usize,
}

/// Framing failure: the peer sent a line longer than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

impl LineBuffer {
    pub fn new() -> LineBuffer {
        LineBuffer { buf: Box::new([0; MAX_LINE_BYTES]), start: 0, end: 0 }
    }

    /// Forgets everything buffered (after a reconnect).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Whether bytes of an unfinished line are buffered (after every complete line was taken):
    /// a peer that stopped there can never continue the stream in a way we can frame again.
    pub fn has_partial_line(&self) -> bool {
        self.start < self.end
    }

    /// The free space to read into, after moving pending bytes to the front if needed.
    /// Empty only when a whole buffer holds no newline: then the line is too long.
    pub fn spare(&mut self) -> Result<&mut [u8], LineTooLong> {
        if self.end == MAX_LINE_BYTES && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == MAX_LINE_BYTES {
            return Err(LineTooLong);
        }
        Ok(&mut self.buf[self.end..])
    }

    /// Records that `n` bytes were read into `spare()`.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(MAX_LINE_BYTES);
    }

    /// The next complete line, without its `\r\n`, if one is buffered.
    pub fn next_line(&mut self) -> Option<&[u8]> {
        let pending = &self.buf[self.start..self.end];
        let newline = pending.iter().position(|&b| b == b'\n')?;
        let line_start = self.start;
        self.start += newline + 1;
        if self.start == self.end {
            // Everything consumed: the next read starts at the front again.
            let line_end = line_start + newline;
            self.start = 0;
            self.end = 0;
            return Some(trim_cr(&self.buf[line_start..line_end]));
        }
        Some(trim_cr(&self.buf[line_start..line_start + newline]))
    }
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `{"error": {"class": ..., "desc": ...}}`.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct ErrorBody<'a> {
    #[serde(borrow)]
    pub class: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub desc: std::borrow::Cow<'a, str>,
}

/// Any QMP message; `T` is the expected shape of `return`.
#[derive(Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
struct Envelope<'a, T> {
    #[serde(rename = "return")]
    ret: Option<T>,
    #[serde(borrow)]
    error: Option<ErrorBody<'a>>,
    event: Option<IgnoredAny>,
    #[serde(rename = "QMP")]
    greeting: Option<IgnoredAny>,
    id: Option<u64>,
}

/// One parsed line.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a, T> {
    Greeting,
    Event,
    Return { id: Option<u64>, value: T },
    Error { id: Option<u64>, body: ErrorBody<'a> },
}

/// Why a line could not be understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not JSON, or a reply whose `return` has the wrong shape.
    Json(serde_json::error::Category, usize),
    /// Valid JSON, but none of greeting, event, return or error.
    NotQmp,
    /// A reply to our command that lacks the field the command returns.
    MissingField(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Json(category, column) => write!(f, "malformed reply ({category:?} error at column {column})"),
            ParseError::NotQmp => f.write_str("a JSON object that is no QMP message"),
            ParseError::MissingField(field) => write!(f, "a reply without its '{field}' field"),
        }
    }
}

/// Parses one line, expecting `return` to be a `T`.
pub fn parse<'a, T: Deserialize<'a>>(line: &'a [u8]) -> Result<Message<'a, T>, ParseError> {
    let e: Envelope<'a, T> = serde_json::from_slice(line).map_err(|e| ParseError::Json(e.classify(), e.column()))?;
    Ok(match e {
        Envelope { ret: Some(value), id, .. } => Message::Return { id, value },
        Envelope { error: Some(body), id, .. } => Message::Error { id, body },
        Envelope { event: Some(_), .. } => Message::Event,
        Envelope { greeting: Some(_), .. } => Message::Greeting,
        _ => return Err(ParseError::NotQmp),
    })
}

/// `query-balloon`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct BalloonInfo {
    /// Current VM size, bytes.
    pub actual: u64,
}

/// `query-memory-size-summary`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct MemorySizeSummary {
    #[serde(rename = "base-memory")]
    pub base_memory: u64,
    #[serde(rename = "plugged-memory")]
    pub plugged_memory: Option<u64>,
}

impl MemorySizeSummary {
    /// The most the guest can be given: boot memory plus hot-plugged DIMMs, KiB.
    pub fn max_kib(&self) -> u64 {
        bytes_to_kib(self.base_memory.saturating_add(self.plugged_memory.unwrap_or(0)))
    }
}

/// `query-name` (QEMU returns `{}` when the VM has no `-name`).
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct NameInfo<'a> {
    #[serde(borrow)]
    pub name: Option<std::borrow::Cow<'a, str>>,
}

/// One `qom-list` entry.
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct ObjectProperty<'a> {
    #[serde(borrow)]
    pub name: std::borrow::Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    pub kind: std::borrow::Cow<'a, str>,
}

impl ObjectProperty<'_> {
    /// A child object that is a virtio-balloon device (`child<virtio-balloon-pci>`,
    /// `child<virtio-balloon-device>`, `child<virtio-balloon-ccw>`...).
    pub fn is_balloon(&self) -> bool {
        self.kind.starts_with("child<virtio-balloon")
    }
}

/// The `stats` object of the balloon's `guest-stats` property (bytes, faults as counts).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub struct GuestStatValues {
    #[serde(rename = "stat-swap-in")]
    pub swap_in: Option<u64>,
    #[serde(rename = "stat-swap-out")]
    pub swap_out: Option<u64>,
    #[serde(rename = "stat-major-faults")]
    pub major_faults: Option<u64>,
    /// Guest MemFree.
    #[serde(rename = "stat-free-memory")]
    pub free_memory: Option<u64>,
    /// Guest MemTotal.
    #[serde(rename = "stat-total-memory")]
    pub total_memory: Option<u64>,
    /// Guest MemAvailable.
    #[serde(rename = "stat-available-memory")]
    pub available_memory: Option<u64>,
    /// Counters that Linux 6.12 guests report and QEMU 9.1 and later pass on
    /// (`balloon_stat_names` in qemu/hw/virtio/virtio-balloon.c; VIRTIO_BALLOON_S_OOM_KILL,
    /// _ALLOC_STALL, _DIRECT_RECLAIM in linux/include/uapi/linux/virtio_balloon.h): OOM
    /// kills, allocation stalls, pages reclaimed directly by allocating tasks. Older QEMUs
    /// leave them out; older guests leave them at u64::MAX.
    #[serde(rename = "stat-oom-kills")]
    pub oom_kills: Option<u64>,
    #[serde(rename = "stat-alloc-stalls")]
    pub alloc_stalls: Option<u64>,
    #[serde(rename = "stat-direct-reclaims")]
    pub direct_reclaims: Option<u64>,
}

/// `qom-get` of `guest-stats`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
pub struct GuestStats {
    pub stats: GuestStatValues,
    /// Epoch seconds of the guest's last answer; 0 before it ever answered.
    #[serde(rename = "last-update")]
    pub last_update: u64,
}

/// The `return` of either command a round pipelines (`query-balloon`, `qom-get guest-stats`):
/// one shape, so that every reply line is parsed once, whatever it answers; the reply's `id`
/// says which command it answers and which field must be there.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub struct RoundReturn {
    /// `query-balloon`: current VM size, bytes.
    pub actual: Option<u64>,
    /// `qom-get guest-stats`.
    pub stats: Option<GuestStatValues>,
    #[serde(rename = "last-update")]
    pub last_update: Option<u64>,
}

/// A guest stat in bytes as KiB; QEMU's u64::MAX means "not reported".
pub fn stat_kib(bytes: Option<u64>) -> Option<u64> {
    bytes.filter(|b| *b != STAT_NOT_REPORTED).map(bytes_to_kib)
}

/// A guest counter as is; u64::MAX means "not reported".
pub fn stat_count(value: Option<u64>) -> Option<u64> {
    value.filter(|v| *v != STAT_NOT_REPORTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from QEMU 7.2 (Debian 1:7.2+dfsg-7+deb12u18) with the lab guest.
    const GREETING: &[u8] = br#"{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}, "capabilities": ["oob"]}}"#;
    const STATS: &[u8] = br#"{"return": {"stats": {"stat-htlb-pgalloc": 0, "stat-swap-out": 0, "stat-available-memory": 340836352, "stat-htlb-pgfail": 0, "stat-free-memory": 413499392, "stat-minor-faults": 652, "stat-major-faults": 0, "stat-total-memory": 452132864, "stat-swap-in": 0, "stat-disk-caches": 3035136}, "last-update": 1795328939}, "id": 7}"#;
    const EVENT: &[u8] = br#"{"timestamp": {"seconds": 1795328938, "microseconds": 486959}, "event": "BALLOON_CHANGE", "data": {"actual": 1114636288}}"#;

    #[test]
    fn real_qemu_messages_parse() {
        assert_eq!(parse::<IgnoredAny>(GREETING).unwrap(), Message::Greeting);
        assert_eq!(parse::<BalloonInfo>(EVENT).unwrap(), Message::Event);
        let Message::Return { id, value } = parse::<GuestStats>(STATS).unwrap() else { panic!() };
        assert_eq!(id, Some(7));
        assert_eq!(value.last_update, 1_795_328_939);
        assert_eq!(stat_kib(value.stats.free_memory), Some(413_499_392 / 1024));
        assert_eq!(stat_kib(value.stats.total_memory), Some(441_536));
        let b = parse::<BalloonInfo>(br#"{"return": {"actual": 536870912}}"#).unwrap();
        assert_eq!(b, Message::Return { id: None, value: BalloonInfo { actual: 536_870_912 } });
        let m = parse::<MemorySizeSummary>(br#"{"return": {"base-memory": 2147483648, "plugged-memory": 0}}"#);
        let Ok(Message::Return { value, .. }) = m else { panic!() };
        assert_eq!(value.max_kib(), 2 * 1024 * 1024);
    }

    #[test]
    fn one_round_shape_reads_both_replies_and_the_6_12_counters() {
        let Message::Return { id, value } = parse::<RoundReturn>(STATS).unwrap() else { panic!() };
        assert_eq!((id, value.actual, value.last_update), (Some(7), None, Some(1_795_328_939)));
        assert_eq!(value.stats.unwrap().oom_kills, None, "QEMU 7.2 has no such counters");
        let b = parse::<RoundReturn>(br#"{"return": {"actual": 536870912}, "id": 8}"#).unwrap();
        let Message::Return { value, .. } = b else { panic!() };
        assert_eq!((value.actual, value.stats), (Some(536_870_912), None));
        let line = br#"{"return": {"stats": {"stat-oom-kills": 2, "stat-alloc-stalls": 17, "stat-direct-reclaims": 4096, "stat-async-scans": 9}, "last-update": 5}, "id": 9}"#;
        let Message::Return { value, .. } = parse::<RoundReturn>(line).unwrap() else { panic!() };
        let s = value.stats.unwrap();
        assert_eq!((s.oom_kills, s.alloc_stalls, s.direct_reclaims), (Some(2), Some(17), Some(4096)));
    }

    #[test]
    fn missing_stats_are_none_never_zero() {
        let line = br#"{"return": {"stats": {"stat-swap-out": 18446744073709551615, "stat-free-memory": 18446744073709551615, "stat-total-memory": 18446744073709551615}, "last-update": 0}}"#;
        let Message::Return { value, .. } = parse::<GuestStats>(line).unwrap() else { panic!() };
        assert_eq!(stat_kib(value.stats.free_memory), None);
        assert_eq!(stat_count(value.stats.swap_out), None);
        assert_eq!(stat_kib(value.stats.available_memory), None);
        assert_eq!(value.last_update, 0);
    }

    #[test]
    fn error_replies_keep_class_and_description() {
        let line =
            br#"{"id": 3, "error": {"class": "DeviceNotActive", "desc": "No balloon device has been activated"}}"#;
        let Message::Error { id, body } = parse::<BalloonInfo>(line).unwrap() else { panic!() };
        assert_eq!(id, Some(3));
        assert_eq!(body.class, "DeviceNotActive");
        assert_eq!(body.desc, "No balloon device has been activated");
    }

    #[test]
    fn garbage_and_wrong_shapes_are_errors_not_panics() {
        assert!(matches!(parse::<BalloonInfo>(b"\xff\xfe garbage"), Err(ParseError::Json(..))));
        assert!(matches!(parse::<BalloonInfo>(br#"{"return": {"actual": "big"}}"#), Err(ParseError::Json(..))));
        assert!(matches!(parse::<BalloonInfo>(br#"{"return": {"actual": -1}}"#), Err(ParseError::Json(..))));
        assert_eq!(parse::<BalloonInfo>(br#"{"hello": 1}"#), Err(ParseError::NotQmp));
        assert!(parse::<BalloonInfo>(b"").is_err());
    }

    #[test]
    fn lines_are_framed_across_reads_and_cr_is_dropped() {
        let mut lb = LineBuffer::new();
        for chunk in [&b"{\"a\":1}\r\n{\"b\""[..], b":2}\r\n", b"{\"c\":3}\r\n"] {
            lb.spare().unwrap()[..chunk.len()].copy_from_slice(chunk);
            lb.filled(chunk.len());
        }
        assert_eq!(lb.next_line(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(lb.next_line(), Some(&b"{\"b\":2}"[..]));
        assert_eq!(lb.next_line(), Some(&b"{\"c\":3}"[..]));
        assert_eq!(lb.next_line(), None);
    }

    #[test]
    fn a_line_longer_than_the_limit_is_refused() {
        let mut lb = LineBuffer::new();
        let mut fed = 0;
        while let Ok(spare) = lb.spare() {
            let n = spare.len().min(4096);
            spare[..n].fill(b'x');
            lb.filled(n);
            fed += n;
            assert!(lb.next_line().is_none());
        }
        assert_eq!(lb.spare(), Err(LineTooLong));
        assert_eq!(fed, MAX_LINE_BYTES);
    }
}
