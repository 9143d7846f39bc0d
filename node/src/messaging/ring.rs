//! Consistent hashing weighted by load factor: the handler of a routing
//! key. Each handler owns points on a ring in proportion to its load factor
//! (Axon's `load_factor`, 0 meaning 100), placed by hashing its stable
//! identity, so a key maps to the same handler while the set of handlers
//! is unchanged, and adding or removing one moves only the keys it gains
//! or loses.

/// Points per unit of load factor: enough that shares stay within a few
/// percent of the weights (the spread falls with the square root of the
/// points).
const POINTS_PER_LOAD: u32 = 4;
/// The load factor of a handler that gives 0 (Axon's default).
const DEFAULT_LOAD: u32 = 100;
/// Load factor counted at most (4,000 points, 64 KB of ring per handler).
const LOAD_MAX: u32 = 1_000;

/// A ring over handlers `K`.
#[derive(Debug, Clone)]
pub struct Ring<K> {
    points: Vec<(u64, K)>,
}

impl<K: Clone> Ring<K> {
    /// The ring of `handlers`: each with its stable identity (which places
    /// its points) and its load factor.
    pub fn new<'a>(handlers: impl IntoIterator<Item = (K, &'a str, i32)>) -> Self {
        let mut points = Vec::new();
        for (handler, identity, load_factor) in handlers {
            let load = match load_factor {
                0 => DEFAULT_LOAD,
                load => u32::try_from(load).unwrap_or(1).clamp(1, LOAD_MAX),
            };
            let count = load * POINTS_PER_LOAD;
            for point in 0..count {
                points.push((hash(&format!("{identity}#{point}")), handler.clone()));
            }
        }
        points.sort_by_key(|(position, _)| *position);
        Ring { points }
    }

    /// The handler of `key`: the owner of the first point at or after the
    /// key's position (wrapping round). `None` on an empty ring.
    pub fn pick(&self, key: &str) -> Option<&K> {
        let position = hash(key);
        let index = self.points.partition_point(|(p, _)| *p < position);
        self.points.get(index).or_else(|| self.points.first()).map(|(_, handler)| handler)
    }

    /// Whether no handler is on the ring.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

/// FNV-1a, then a final mix (splitmix64) so that nearby strings land far
/// apart on the ring.
fn hash(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.as_bytes() {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::collections::HashMap;

    fn shares(ring: &Ring<&'static str>, keys: usize) -> HashMap<&'static str, f64> {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for n in 0..keys {
            *counts.entry(ring.pick(&format!("aggregate-{n}")).unwrap()).or_default() += 1;
        }
        counts.into_iter().map(|(k, c)| (k, c as f64 / keys as f64)).collect()
    }

    #[test]
    fn a_key_stays_with_its_handler_while_the_handlers_do_not_change() {
        let ring = Ring::new([("a", "client-a", 100), ("b", "client-b", 100), ("c", "client-c", 100)]);
        let again = Ring::new([("c", "client-c", 100), ("a", "client-a", 100), ("b", "client-b", 100)]);
        for n in 0..1_000 {
            let key = format!("order-{n}");
            assert_eq!(ring.pick(&key), again.pick(&key), "the order handlers are listed in does not matter");
            assert_eq!(ring.pick(&key), ring.pick(&key));
        }
        assert!(Ring::<&str>::new([]).pick("x").is_none());
    }

    #[test]
    fn shares_follow_the_load_factors() {
        // 10,000 keys over weights 1 : 2 : 1 (load factor 0 counts as 100).
        let ring = Ring::new([("a", "client-a", 100), ("b", "client-b", 200), ("c", "client-c", 0)]);
        let shares = shares(&ring, 10_000);
        for (handler, expected) in [("a", 0.25), ("b", 0.5), ("c", 0.25)] {
            let share = shares[handler];
            assert!((share - expected).abs() < 0.06, "{handler}: {share:.3}, expected {expected} ± 0.06");
        }
    }

    #[test]
    fn a_handler_leaving_moves_only_its_own_keys() {
        let before = Ring::new([("a", "client-a", 100), ("b", "client-b", 100), ("c", "client-c", 100)]);
        let after = Ring::new([("a", "client-a", 100), ("c", "client-c", 100)]);
        for n in 0..2_000 {
            let key = format!("k{n}");
            let owner = *before.pick(&key).unwrap();
            if owner != "b" {
                assert_eq!(*after.pick(&key).unwrap(), owner, "{key} moved though its handler stayed");
            }
        }
    }
}
