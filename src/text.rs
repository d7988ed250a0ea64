//! A fixed-capacity string for VM names and error messages: `Copy`, no heap, so the daemon's
//! steady state can carry them without allocating.

use std::fmt;

/// UTF-8 text of at most `N` bytes; longer input is cut at a character boundary.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FixedText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> FixedText<N> {
    pub const EMPTY: Self = FixedText { buf: [0; N], len: 0 };
    /// The most bytes the text holds.
    pub const CAPACITY: usize = N;

    /// `s`, cut to the longest prefix of at most `N` bytes that ends on a char boundary.
    pub fn new(s: &str) -> Self {
        let mut end = s.len().min(N);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        let mut t = Self::EMPTY;
        t.buf[..end].copy_from_slice(&s.as_bytes()[..end]);
        t.len = end;
        t
    }

    /// Bytes from C (names, messages): invalid UTF-8 is cut where it starts.
    pub fn from_bytes_lossy(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(s) => Self::new(s),
            // Everything before valid_up_to() is valid UTF-8 by definition.
            Err(e) => Self::new(std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or("")),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ever filled from whole &str prefixes ending on char boundaries.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> Default for FixedText<N> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<const N: usize> fmt::Display for FixedText<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for FixedText<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A VM's name as shown in logs: long names are cut at 64 bytes.
pub type VmName = FixedText<64>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let t = FixedText::<5>::new("aéééé");
        assert_eq!(t.as_str(), "aéé");
        assert_eq!(FixedText::<8>::new("aos_vm1").as_str(), "aos_vm1");
    }

    #[test]
    fn invalid_utf8_is_cut_where_it_starts() {
        assert_eq!(FixedText::<16>::from_bytes_lossy(b"vm\xff\xfe1").as_str(), "vm");
    }
}
