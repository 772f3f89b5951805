//! Randomness: bytes from the platform's entropy source (`rdrand` on hvt,
//! `getrandom` on unix), good for keys, nonces and TCP initial sequence
//! numbers. Every call goes to the source; this is not a seeded generator
//! for simulations (on the host's simulated platform it is deterministic,
//! so tests replay).

/// Fills `buf` with random bytes. A platform without a working source
/// aborts the program rather than return weak randomness.
pub fn fill(buf: &mut [u8]) {
    crate::platform::fill_entropy(buf);
}

/// A random `u64`.
pub fn u64() -> u64 {
    let mut bytes = [0; 8];
    fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_differ_and_fill_every_byte() {
        let (a, b) = (super::u64(), super::u64());
        assert_ne!(a, b);
        let mut buf = [0u8; 13];
        super::fill(&mut buf);
        assert!(buf.iter().filter(|&&b| b == 0).count() < 4, "{buf:?}");
    }
}
