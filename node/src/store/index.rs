//! Per-segment lookup structures: the aggregate index (aggregate id → the
//! sequence numbers and file positions of its events in that segment) and the
//! sparse token index (a token → file position mark about every
//! [`TOKEN_MARK_SPACING_BYTES`], with the timestamp of the frame's first event).
//!
//! The active segment keeps both in memory and grows them as it is written;
//! closing a segment writes them to `.index` and `.tindex` files (sealed with
//! a checksum, see `format::seal`), from which they are loaded on demand into
//! the bounded [`super::cache::IndexCache`].
//!
//! `.index` body: count u32 | (id_len u32 | id | n u32 | (seq i64 | pos u32)*)*
//! `.tindex` body: count u32 | (token u64 | pos u32 | timestamp i64)*

use std::collections::HashMap;

use super::format::{read_u32, read_u64, seal, unseal};

const INDEX_MAGIC: [u8; 8] = *b"RNVRIDX1";
const TOKEN_INDEX_MAGIC: [u8; 8] = *b"RNVRTIX1";

/// Distance in bytes between two marks of the sparse token index: finding a
/// token scans at most this much of a segment past the mark.
pub const TOKEN_MARK_SPACING_BYTES: u32 = 64 * 1024;

/// Where one event of an aggregate sits in a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    /// The event's aggregate sequence number.
    pub seq: i64,
    /// File offset of the event's record.
    pub pos: u32,
}

/// One aggregate's entries in a segment and their highest sequence number
/// (kept so that sequence checks cost O(1) however long the aggregate is).
#[derive(Debug, Default, Clone, PartialEq)]
struct Run {
    highest: i64,
    entries: Vec<IndexEntry>,
}

/// Aggregate id → its entries in one segment, in the order written (which is
/// sequence order for events; snapshots may repeat or skip numbers).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AggregateIndex {
    entries: HashMap<Box<str>, Run>,
    entry_count: usize,
    id_bytes: usize,
}

impl AggregateIndex {
    /// Records one event.
    pub fn add(&mut self, id: &str, seq: i64, pos: u32) {
        self.add_run(id, std::iter::once(IndexEntry { seq, pos }));
    }

    /// Records consecutive events of one aggregate (one lookup for all).
    pub fn add_run(&mut self, id: &str, events: impl Iterator<Item = IndexEntry>) {
        let mut events = events.peekable();
        if events.peek().is_none() {
            return;
        }
        let run = match self.entries.get_mut(id) {
            Some(run) => run,
            None => {
                self.id_bytes += id.len();
                // Sized to the run: most aggregates have few events per segment.
                let entries = Vec::with_capacity(events.size_hint().0.max(1));
                self.entries.entry(id.into()).or_insert(Run { highest: i64::MIN, entries })
            }
        };
        for entry in events {
            self.entry_count += 1;
            run.highest = run.highest.max(entry.seq);
            run.entries.push(entry);
        }
    }

    /// The entries of an aggregate, if it has any in this segment.
    pub fn get(&self, id: &str) -> Option<&[IndexEntry]> {
        self.entries.get(id).map(|run| run.entries.as_slice())
    }

    /// The highest sequence number of an aggregate in this segment.
    pub fn highest(&self, id: &str) -> Option<i64> {
        self.entries.get(id).map(|run| run.highest)
    }

    /// Number of distinct aggregates.
    pub fn aggregate_count(&self) -> usize {
        self.entries.len()
    }

    /// The aggregate ids.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|k| &**k)
    }

    /// Approximate heap bytes held, for the cache's budget.
    pub fn memory_bytes(&self) -> usize {
        self.entry_count * std::mem::size_of::<IndexEntry>() + self.entries.len() * 64 + self.id_bytes
    }

    /// Serialises the index, sealed with its checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(4 + self.id_bytes + self.entries.len() * 8 + self.entry_count * 12);
        body.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        let mut ids: Vec<&Box<str>> = self.entries.keys().collect();
        ids.sort();
        for id in ids {
            let list = &self.entries[id].entries;
            body.extend_from_slice(&(id.len() as u32).to_le_bytes());
            body.extend_from_slice(id.as_bytes());
            body.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for entry in list {
                body.extend_from_slice(&entry.seq.to_le_bytes());
                body.extend_from_slice(&entry.pos.to_le_bytes());
            }
        }
        seal(&INDEX_MAGIC, &body)
    }

    /// Parses a serialised index; `None` when the bytes are not one intact.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let body = unseal(&INDEX_MAGIC, bytes)?;
        let mut cursor = Cursor { bytes: body, at: 0 };
        let count = cursor.u32()? as usize;
        // Bounded by what the body can hold, whatever the count claims.
        let mut index =
            AggregateIndex { entries: HashMap::with_capacity(count.min(body.len() / 8)), ..Default::default() };
        for _ in 0..count {
            let id_len = cursor.u32()? as usize;
            let id = std::str::from_utf8(cursor.take(id_len)?).ok()?;
            let n = cursor.u32()? as usize;
            let mut list = Vec::with_capacity(n.min(body.len() / 12));
            for _ in 0..n {
                let seq = cursor.u64()? as i64;
                let pos = cursor.u32()?;
                list.push(IndexEntry { seq, pos });
            }
            index.entry_count += list.len();
            index.id_bytes += id.len();
            let highest = list.iter().map(|e| e.seq).max()?;
            if index.entries.insert(id.into(), Run { highest, entries: list }).is_some() {
                return None;
            }
        }
        (cursor.at == body.len()).then_some(index)
    }
}

/// One mark of the sparse token index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenMark {
    /// First token of the frame at `pos`.
    pub token: u64,
    /// File offset of a frame header.
    pub pos: u32,
    /// Timestamp (epoch ms, as the client sent it) of that frame's first event.
    pub timestamp: i64,
}

/// Marks into a segment, ascending by token and position.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TokenIndex {
    marks: Vec<TokenMark>,
}

impl TokenIndex {
    /// Offers the frame at `pos`; it becomes a mark when it is the first or
    /// lies far enough past the last mark.
    pub fn offer(&mut self, token: u64, pos: u32, timestamp: i64) {
        let due = self.marks.last().is_none_or(|last| pos - last.pos >= TOKEN_MARK_SPACING_BYTES);
        if due {
            self.marks.push(TokenMark { token, pos, timestamp });
        }
    }

    /// The last mark at or before `token`.
    pub fn mark_for(&self, token: u64) -> Option<TokenMark> {
        let after = self.marks.partition_point(|m| m.token <= token);
        after.checked_sub(1).map(|i| self.marks[i])
    }

    /// All marks.
    pub fn marks(&self) -> &[TokenMark] {
        &self.marks
    }

    /// Approximate heap bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.marks.len() * std::mem::size_of::<TokenMark>() + 32
    }

    /// Serialises the marks, sealed with their checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(4 + self.marks.len() * 20);
        body.extend_from_slice(&(self.marks.len() as u32).to_le_bytes());
        for mark in &self.marks {
            body.extend_from_slice(&mark.token.to_le_bytes());
            body.extend_from_slice(&mark.pos.to_le_bytes());
            body.extend_from_slice(&mark.timestamp.to_le_bytes());
        }
        seal(&TOKEN_INDEX_MAGIC, &body)
    }

    /// Parses serialised marks; `None` when the bytes are not intact.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let body = unseal(&TOKEN_INDEX_MAGIC, bytes)?;
        let mut cursor = Cursor { bytes: body, at: 0 };
        let count = cursor.u32()?;
        let mut marks = Vec::with_capacity(count.min(1 << 20) as usize);
        for _ in 0..count {
            let token = cursor.u64()?;
            let pos = cursor.u32()?;
            let timestamp = cursor.u64()? as i64;
            marks.push(TokenMark { token, pos, timestamp });
        }
        (cursor.at == body.len()).then_some(Self { marks })
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| read_u32(b, 0))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| read_u64(b, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregate_index_round_trips() {
        let mut index = AggregateIndex::default();
        index.add("a", 0, 24);
        index.add("b", 5, 100);
        index.add("a", 1, 200);
        let decoded = AggregateIndex::decode(&index.encode()).unwrap();
        assert_eq!(decoded.get("a").unwrap(), index.get("a").unwrap());
        assert_eq!(decoded.get("b").unwrap(), &[IndexEntry { seq: 5, pos: 100 }]);
        assert!(decoded.get("c").is_none());
        assert_eq!(decoded.aggregate_count(), 2);
        let mut damaged = index.encode();
        damaged[12] ^= 1;
        assert!(AggregateIndex::decode(&damaged).is_none());
    }

    #[test]
    fn token_marks_are_sparse_and_searchable() {
        let mut index = TokenIndex::default();
        index.offer(0, 24, 10);
        index.offer(10, 1000, 11);
        index.offer(20, 24 + TOKEN_MARK_SPACING_BYTES, 12);
        assert_eq!(index.marks().len(), 2);
        assert_eq!(index.mark_for(15).unwrap().pos, 24);
        assert_eq!(index.mark_for(20).unwrap().token, 20);
        assert_eq!(index.mark_for(1000).unwrap().token, 20);
        let decoded = TokenIndex::decode(&index.encode()).unwrap();
        assert_eq!(decoded, index);
    }
}
