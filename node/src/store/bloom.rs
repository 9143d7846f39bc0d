//! Bloom filter of the aggregate ids in one closed segment, so that reading
//! an aggregate or checking its sequence number skips segments that cannot
//! hold it. The hash is defined here (FNV-1a then a SplitMix64 finaliser) so
//! that files stay valid across Rust versions.
//!
//! File format (sealed, see `format::seal`): magic "RNVRBLM1" | hash_count u32
//! | bit_count u64 | words u64* | crc u32.

use super::format::{read_u32, read_u64, seal, unseal};

const MAGIC: [u8; 8] = *b"RNVRBLM1";
/// Bits per key for about a 3% false-positive rate (Axon's default fpp).
const BITS_PER_KEY: u64 = 8;
const HASH_COUNT: u32 = 5;

/// A fixed-size set membership filter with no false negatives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bloom {
    hash_count: u32,
    bit_count: u64,
    words: Vec<u64>,
}

/// Stable 64-bit hash of an aggregate id.
pub fn hash_id(id: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    mix(hash)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Bloom {
    /// An empty filter sized for `keys` distinct ids.
    pub fn with_capacity(keys: usize) -> Self {
        let bit_count = (keys as u64 * BITS_PER_KEY).max(64);
        let words = bit_count.div_ceil(64) as usize;
        Self { hash_count: HASH_COUNT, bit_count: words as u64 * 64, words: vec![0; words] }
    }

    fn positions(&self, id: &str) -> impl Iterator<Item = u64> + '_ {
        let h1 = hash_id(id);
        let h2 = mix(h1 ^ 0x9e37_79b9_7f4a_7c15) | 1;
        (0..u64::from(self.hash_count)).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % self.bit_count)
    }

    /// Adds an id.
    pub fn insert(&mut self, id: &str) {
        let positions: Vec<u64> = self.positions(id).collect();
        for bit in positions {
            self.words[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    /// False when the id was certainly never inserted.
    pub fn may_contain(&self, id: &str) -> bool {
        self.positions(id).all(|bit| self.words[(bit / 64) as usize] & (1 << (bit % 64)) != 0)
    }

    /// Bytes this filter holds in memory.
    pub fn memory_bytes(&self) -> usize {
        self.words.len() * 8 + std::mem::size_of::<Self>()
    }

    /// Serialises the filter with its checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(12 + self.words.len() * 8);
        body.extend_from_slice(&self.hash_count.to_le_bytes());
        body.extend_from_slice(&self.bit_count.to_le_bytes());
        for word in &self.words {
            body.extend_from_slice(&word.to_le_bytes());
        }
        seal(&MAGIC, &body)
    }

    /// Parses a serialised filter; `None` when the bytes are not one intact.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let body = unseal(&MAGIC, bytes)?;
        if body.len() < 12 || (body.len() - 12) % 8 != 0 {
            return None;
        }
        let hash_count = read_u32(body, 0);
        let bit_count = read_u64(body, 4);
        let words: Vec<u64> = body[12..].chunks_exact(8).map(|c| read_u64(c, 0)).collect();
        if bit_count == 0 || bit_count != words.len() as u64 * 64 || hash_count == 0 || hash_count > 32 {
            return None;
        }
        Some(Self { hash_count, bit_count, words })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut bloom = Bloom::with_capacity(10_000);
        for i in 0..10_000 {
            bloom.insert(&format!("aggregate-{i}"));
        }
        for i in 0..10_000 {
            assert!(bloom.may_contain(&format!("aggregate-{i}")));
        }
        let false_positives = (0..10_000).filter(|i| bloom.may_contain(&format!("other-{i}"))).count();
        assert!(false_positives < 500, "{false_positives} false positives in 10000");
    }

    #[test]
    fn encoding_round_trips_and_rejects_damage() {
        let mut bloom = Bloom::with_capacity(10);
        bloom.insert("a");
        let bytes = bloom.encode();
        assert_eq!(Bloom::decode(&bytes), Some(bloom));
        let mut damaged = bytes.clone();
        damaged[30] ^= 1;
        assert_eq!(Bloom::decode(&damaged), None);
        assert_eq!(Bloom::decode(&bytes[..bytes.len() - 1]), None);
    }

    #[test]
    fn hash_is_stable() {
        // Persisted filters depend on this value never changing.
        assert_eq!(hash_id(""), mix(0xcbf2_9ce4_8422_2325));
        assert_ne!(hash_id("a"), hash_id("b"));
    }
}
