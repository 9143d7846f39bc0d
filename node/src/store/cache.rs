//! A least-recently-used cache, bounded in bytes, for the side files of closed
//! segments (bloom filters, aggregate indexes, token indexes). Loading happens
//! outside the lock; two readers that miss together may both load, and the
//! second insert simply replaces the first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::bloom::Bloom;
use super::index::{AggregateIndex, TokenIndex};

/// Which side file of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// `.bloom`
    Bloom,
    /// `.index`
    Aggregates,
    /// `.tindex`
    Tokens,
}

/// A loaded side file.
#[derive(Debug, Clone)]
pub enum Cached {
    /// A bloom filter.
    Bloom(Arc<Bloom>),
    /// An aggregate index.
    Aggregates(Arc<AggregateIndex>),
    /// A sparse token index.
    Tokens(Arc<TokenIndex>),
}

impl Cached {
    fn memory_bytes(&self) -> usize {
        match self {
            Cached::Bloom(b) => b.memory_bytes(),
            Cached::Aggregates(a) => a.memory_bytes(),
            Cached::Tokens(t) => t.memory_bytes(),
        }
    }
}

struct Slot {
    value: Cached,
    bytes: usize,
    last_used: u64,
}

struct Inner {
    slots: HashMap<(u64, Part), Slot>,
    used_bytes: usize,
    tick: u64,
}

/// The cache shared by every reader of one store.
pub struct IndexCache {
    capacity_bytes: usize,
    inner: Mutex<Inner>,
}

impl IndexCache {
    /// A cache that holds at most `capacity_bytes` (one entry larger than that
    /// is still returned to its caller, just not kept).
    pub fn new(capacity_bytes: usize) -> Self {
        Self { capacity_bytes, inner: Mutex::new(Inner { slots: HashMap::new(), used_bytes: 0, tick: 0 }) }
    }

    /// The cached entry for `(segment, part)`, loading it with `load` on a miss.
    pub fn get_or_load<E>(
        &self,
        segment: u64,
        part: Part,
        load: impl FnOnce() -> Result<Cached, E>,
    ) -> Result<Cached, E> {
        if let Some(found) = self.lookup(segment, part) {
            return Ok(found);
        }
        let value = load()?;
        self.insert(segment, part, value.clone());
        Ok(value)
    }

    fn lookup(&self, segment: u64, part: Part) -> Option<Cached> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.tick += 1;
        let tick = inner.tick;
        let slot = inner.slots.get_mut(&(segment, part))?;
        slot.last_used = tick;
        Some(slot.value.clone())
    }

    fn insert(&self, segment: u64, part: Part, value: Cached) {
        let bytes = value.memory_bytes();
        if bytes > self.capacity_bytes {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(old) = inner.slots.remove(&(segment, part)) {
            inner.used_bytes -= old.bytes;
        }
        while inner.used_bytes + bytes > self.capacity_bytes {
            let Some(victim) = inner.slots.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| *k) else {
                break;
            };
            if let Some(old) = inner.slots.remove(&victim) {
                inner.used_bytes -= old.bytes;
            }
        }
        inner.tick += 1;
        let last_used = inner.tick;
        inner.used_bytes += bytes;
        inner.slots.insert((segment, part), Slot { value, bytes, last_used });
    }

    /// Drops every entry of a segment (its files were rewritten or removed).
    pub fn forget(&self, segment: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for part in [Part::Bloom, Part::Aggregates, Part::Tokens] {
            if let Some(old) = inner.slots.remove(&(segment, part)) {
                inner.used_bytes -= old.bytes;
            }
        }
    }

    /// Bytes currently held.
    pub fn used_bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).used_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bloom(keys: usize) -> Cached {
        Cached::Bloom(Arc::new(Bloom::with_capacity(keys)))
    }

    #[test]
    fn stays_within_budget_and_evicts_least_recent() {
        let one = bloom(1000).memory_bytes();
        let cache = IndexCache::new(one * 2 + one / 2);
        let ok = |v: Cached| -> Result<Cached, ()> { Ok(v) };
        cache.get_or_load(1, Part::Bloom, || ok(bloom(1000))).unwrap();
        cache.get_or_load(2, Part::Bloom, || ok(bloom(1000))).unwrap();
        // Touch 1 so that 2 is the least recently used.
        cache.get_or_load(1, Part::Bloom, || Err(())).unwrap();
        cache.get_or_load(3, Part::Bloom, || ok(bloom(1000))).unwrap();
        assert!(cache.used_bytes() <= one * 2 + one / 2);
        assert!(cache.get_or_load(1, Part::Bloom, || Err(())).is_ok(), "1 was used recently");
        assert!(cache.get_or_load(2, Part::Bloom, || Err(())).is_err(), "2 should be evicted");
    }

    #[test]
    fn oversized_entries_are_returned_not_kept() {
        let cache = IndexCache::new(10);
        cache.get_or_load(1, Part::Bloom, || Ok::<_, ()>(bloom(1000))).unwrap();
        assert_eq!(cache.used_bytes(), 0);
    }
}
