//! Memory units. The daemon works in KiB internally (libvirt's native unit);
//! QMP speaks bytes and people speak MiB, so every conversion lives here.

/// KiB in one MiB.
pub const KIB_PER_MIB: u64 = 1024;
/// Bytes in one KiB.
pub const BYTES_PER_KIB: u64 = 1024;

/// MiB to KiB, saturating (a config value can never wrap into a small number).
pub const fn mib_to_kib(mib: u64) -> u64 {
    mib.saturating_mul(KIB_PER_MIB)
}

/// KiB to whole MiB, rounded down (for display).
pub const fn kib_to_mib(kib: u64) -> u64 {
    kib / KIB_PER_MIB
}

/// Bytes (QMP) to KiB, rounded down: a balloon target must never exceed what was asked.
pub const fn bytes_to_kib(bytes: u64) -> u64 {
    bytes / BYTES_PER_KIB
}

/// KiB to bytes for QMP's `balloon`; `None` if it does not fit in u64.
pub const fn kib_to_bytes(kib: u64) -> Option<u64> {
    kib.checked_mul(BYTES_PER_KIB)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_down_and_never_wrap() {
        assert_eq!(mib_to_kib(100), 102_400);
        assert_eq!(mib_to_kib(u64::MAX), u64::MAX);
        assert_eq!(kib_to_mib(2047), 1);
        assert_eq!(bytes_to_kib(1023), 0);
        assert_eq!(bytes_to_kib(536_870_912), 524_288);
        assert_eq!(kib_to_bytes(524_288), Some(536_870_912));
        assert_eq!(kib_to_bytes(u64::MAX), None);
    }
}
