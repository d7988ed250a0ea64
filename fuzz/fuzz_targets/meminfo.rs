//! Fuzzes the host's `/proc/meminfo` parser with arbitrary bytes. Asserts: no panic, and the
//! result equals an independent reading written with `str` methods: for each of MemTotal and
//! MemAvailable the last line of that name counts, its value is the leading run of ASCII
//! digits after the colon and any whitespace, and a missing, empty or overflowing value makes
//! the whole read an error naming that field (MemTotal first).
#![no_main]

use libfuzzer_sys::fuzz_target;
use memory_coordinator::host::parse_meminfo;

fn reference(text: &[u8]) -> Result<(u64, u64), &'static str> {
    let mut total: Option<Option<u64>> = None;
    let mut available: Option<Option<u64>> = None;
    for line in text.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let value = || {
            let rest = &line[colon + 1..];
            let digits: Vec<u8> =
                rest.iter().copied().skip_while(u8::is_ascii_whitespace).take_while(u8::is_ascii_digit).collect();
            std::str::from_utf8(&digits).ok().filter(|d| !d.is_empty()).and_then(|d| d.parse::<u64>().ok())
        };
        match &line[..colon] {
            b"MemTotal" => total = Some(value()),
            b"MemAvailable" => available = Some(value()),
            _ => {}
        }
    }
    let total = total.flatten().ok_or("MemTotal")?;
    let available = available.flatten().ok_or("MemAvailable")?;
    Ok((total, available))
}

fuzz_target!(|data: &[u8]| {
    let ours = parse_meminfo(data).map(|h| (h.total_kib, h.available_kib));
    assert_eq!(ours, reference(data), "input {:?}", String::from_utf8_lossy(data));
});
