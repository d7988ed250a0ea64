//! The host's memory, from `/proc/meminfo`.
//!
//! MemAvailable is the kernel's own estimate of what can be given out without swapping (free
//! plus reclaimable cache). libvirt's `virNodeGetFreeMemory` is no substitute: it sums the NUMA
//! nodes' MemFree (leaving the page cache out) and under-reports badly on hosts whose NUMA view
//! is partial (6 GiB of 24 GiB on the lab machines).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::policy::HostStats;

/// Large enough for any /proc/meminfo (about 1.5 KiB on Linux 6.1).
const BUF_BYTES: usize = 16 * 1024;

/// Reads host memory figures, re-reading one open file each tick (no allocation).
pub struct HostMemory {
    path: PathBuf,
    file: File,
    buf: Box<[u8; BUF_BYTES]>,
}

/// Errors of this module.
#[derive(Debug)]
pub enum HostError {
    Open(PathBuf, io::Error),
    Read(PathBuf, io::Error),
    /// The file lacks a field we need.
    Missing(PathBuf, &'static str),
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostError::Open(p, e) => write!(f, "cannot open {}: {e} (is /proc mounted?)", p.display()),
            HostError::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            HostError::Missing(p, field) => {
                write!(f, "{} has no {field} line (Linux 3.14 or later is needed)", p.display())
            }
        }
    }
}

impl std::error::Error for HostError {}

impl HostMemory {
    /// Opens `/proc/meminfo`, or another file in its format (tests inject host pressure so).
    pub fn open(path: &Path) -> Result<HostMemory, HostError> {
        let file = File::open(path).map_err(|e| HostError::Open(path.to_owned(), e))?;
        let mut host = HostMemory { path: path.to_owned(), file, buf: Box::new([0; BUF_BYTES]) };
        host.read()?;
        Ok(host)
    }

    /// Current MemAvailable and MemTotal, KiB.
    pub fn read(&mut self) -> Result<HostStats, HostError> {
        let err = |e| HostError::Read(self.path.clone(), e);
        self.file.seek(SeekFrom::Start(0)).map_err(err)?;
        let mut len = 0;
        while len < BUF_BYTES {
            match self.file.read(&mut self.buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(HostError::Read(self.path.clone(), e)),
            }
        }
        parse_meminfo(&self.buf[..len]).map_err(|field| HostError::Missing(self.path.clone(), field))
    }
}

/// Parses the `MemTotal:` and `MemAvailable:` lines (values in kB, which the kernel means as
/// KiB).
pub fn parse_meminfo(text: &[u8]) -> Result<HostStats, &'static str> {
    let mut total = None;
    let mut available = None;
    for line in text.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (key, rest) = (&line[..colon], &line[colon + 1..]);
        let target = match key {
            b"MemTotal" => &mut total,
            b"MemAvailable" => &mut available,
            _ => continue,
        };
        *target = parse_kib(rest);
    }
    Ok(HostStats { total_kib: total.ok_or("MemTotal")?, available_kib: available.ok_or("MemAvailable")? })
}

/// `"   12345 kB"` -> 12345.
fn parse_kib(field: &[u8]) -> Option<u64> {
    let digits = field.iter().skip_while(|b| b.is_ascii_whitespace()).take_while(|b| b.is_ascii_digit());
    let mut value: u64 = 0;
    let mut any = false;
    for &d in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"MemTotal:       24608172 kB\nMemFree:        23012644 kB\nMemAvailable:   23788116 kB\nBuffers:           38468 kB\n";

    #[test]
    fn reads_total_and_available_in_kib() {
        assert_eq!(parse_meminfo(SAMPLE), Ok(HostStats { total_kib: 24_608_172, available_kib: 23_788_116 }));
    }

    #[test]
    fn missing_or_garbled_fields_are_named() {
        assert_eq!(parse_meminfo(b"MemTotal: 100 kB\n"), Err("MemAvailable"));
        assert_eq!(parse_meminfo(b"MemTotal: x kB\nMemAvailable: 5 kB\n"), Err("MemTotal"));
        assert_eq!(parse_meminfo(b"MemTotal: 99999999999999999999999 kB\nMemAvailable: 5 kB"), Err("MemTotal"));
        assert_eq!(parse_meminfo(b""), Err("MemTotal"));
    }

    #[test]
    fn the_real_proc_meminfo_is_read_again_each_time() {
        let mut host = HostMemory::open(Path::new("/proc/meminfo")).unwrap();
        let a = host.read().unwrap();
        let b = host.read().unwrap();
        assert!(a.total_kib > 0 && a.available_kib <= a.total_kib);
        assert_eq!(a.total_kib, b.total_kib);
    }

    #[test]
    fn a_missing_file_says_which() {
        let err = HostMemory::open(Path::new("/nonexistent/meminfo")).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/meminfo"));
    }
}
