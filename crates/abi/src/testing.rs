//! The one seeded generator every test of the workspace draws its "random"
//! numbers from (SplitMix64: tiny, no dependency, any seed works), so a
//! failing run replays from its seed. Behind the `testing` feature, which
//! only tests and test devices enable.
//!
//! Not here: anything random for real (keys, sequence numbers, MACs): that
//! comes from the platform's entropy (`atoll_rt::random`, `/dev/urandom` on
//! the host). Not a `rand` dependency either: tests need a replayable
//! sequence, not quality.

/// SplitMix64 (Steele, Lea and Flood, 2014): the state advances by a fixed
/// odd constant and each output is a mix of it.
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next number of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (0 if `bound` is 0). Slightly biased towards
    /// small numbers when `bound` does not divide 2^64, which tests do not
    /// mind.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }

    /// An index into something of `len` items: `below(len)` as a `usize`.
    pub fn index(&mut self, len: usize) -> usize {
        // `usize` is at most 64 bits on every target Atoll builds for.
        self.below(len as u64) as usize
    }

    /// Fills `bytes` with the next numbers of the sequence.
    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes()[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_splitmix64() {
        // The first outputs for seed 1234567, from the reference C code.
        let mut rng = SplitMix64(1_234_567);
        assert_eq!(rng.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(rng.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn below_and_fill_stay_in_range() {
        let mut rng = SplitMix64(0);
        assert_eq!(rng.below(0), 0);
        assert!((0..1000).all(|_| rng.below(7) < 7 && rng.index(3) < 3));
        let mut bytes = [0u8; 13];
        rng.fill(&mut bytes);
        assert_ne!(bytes, [0; 13]);
    }
}
