//! Fuzzes the QMP reply path: the bytes a QEMU (or anything on its socket) might send are
//! framed by `LineBuffer` in fuzzer-chosen read sizes and every line is parsed as each reply
//! type the client expects. Asserts: no panic; framing equals a plain split on '\n' (minus a
//! trailing '\r') for as long as no line exceeds the limit, and a longer line is reported;
//! a stat of u64::MAX never becomes a figure.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memory_coordinator::qmp::protocol::{
    BalloonInfo, GuestStats, LineBuffer, MAX_LINE_BYTES, MemorySizeSummary, Message, parse, stat_kib,
};
use serde::de::IgnoredAny;

fn check_line(line: &[u8]) {
    let _ = parse::<IgnoredAny>(line);
    let _ = parse::<BalloonInfo>(line);
    let _ = parse::<MemorySizeSummary>(line).map(|m| match m {
        Message::Return { value, .. } => {
            value.max_kib();
        }
        _ => {}
    });
    if let Ok(Message::Return { value, .. }) = parse::<GuestStats>(line) {
        for raw in [value.stats.free_memory, value.stats.total_memory, value.stats.available_memory] {
            if raw == Some(u64::MAX) {
                assert_eq!(stat_kib(raw), None, "u64::MAX became a figure");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&chunk_seed, stream)) = data.split_first() else { return };
    let chunk = usize::from(chunk_seed % 64) * 97 + 1;

    // Reference framing.
    let mut expected: Vec<&[u8]> = Vec::new();
    let mut too_long = false;
    let mut rest = stream;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        if i >= MAX_LINE_BYTES {
            too_long = true;
            break;
        }
        let line = &rest[..i];
        expected.push(line.strip_suffix(b"\r").unwrap_or(line));
        rest = &rest[i + 1..];
    }
    if !too_long && rest.len() >= MAX_LINE_BYTES {
        too_long = true;
    }

    let mut lb = LineBuffer::new();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut fed = 0;
    let mut refused = false;
    'feed: while fed < stream.len() {
        let spare = match lb.spare() {
            Ok(spare) => spare,
            Err(_) => {
                refused = true;
                break 'feed;
            }
        };
        let n = spare.len().min(chunk).min(stream.len() - fed);
        spare[..n].copy_from_slice(&stream[fed..fed + n]);
        lb.filled(n);
        fed += n;
        while let Some(line) = lb.next_line() {
            assert!(line.len() < MAX_LINE_BYTES);
            assert!(!line.contains(&b'\n'));
            check_line(line);
            got.push(line.to_vec());
        }
    }
    if !refused && fed == stream.len() && lb.spare().is_err() {
        refused = true;
    }
    assert_eq!(got.len().min(expected.len()), got.len(), "more lines than the reference");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g.as_slice(), *e, "framing differs from a split on newline");
    }
    if !too_long {
        assert_eq!(got.len(), expected.len(), "lines were lost");
        assert!(!refused, "refused a stream without an over-long line");
    } else {
        assert!(refused || fed == stream.len(), "an over-long line went unnoticed");
    }
});
