//! The lower tier of a store: closed segments whose data file was retired
//! because another node (a SECONDARY member of the context's replication
//! group) keeps a copy of every event.
//!
//! Retiring a closed segment writes a durable marker
//! (`<first>.retired`, `<first>.sretired` for snapshots) first and deletes
//! the data file second, so a crash in between is finished at the next
//! open. The segment's side files stay: sequence checks, aggregate plans,
//! bloom filters and token marks remain local, and only reads of the
//! events themselves go to the [`LowerTier`]. Without a tier (or when it
//! fails), such reads fail with [`StoreError::Retired`]; nothing is ever
//! answered from missing data. A retired segment is never part of a backup
//! listing, and the active segment is never retired.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::error::StoreError;
use super::format::{self, StoreKind};
use super::segments::{ClosedSegment, Shared, sync_dir, write_durably};

/// Reads events of retired segments from where they are kept.
/// Calls block (they run on the blocking pool, like every store read).
pub trait LowerTier: Send + Sync {
    /// Events of `context`'s `kind` store with tokens in `from..to`, in
    /// token order: (token, event, log position), at most `max_events`
    /// and about `max_bytes`, at least one when any exists.
    fn read(
        &self,
        context: &str,
        kind: StoreKind,
        from: u64,
        to: u64,
        max_events: usize,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes, u64)>, String>;

    /// The events of aggregate `id` with `min_seq <= seq < max_seq` among
    /// tokens `from..to`, in the order stored.
    fn aggregate(
        &self,
        context: &str,
        kind: StoreKind,
        id: &str,
        seqs: (i64, i64),
        tokens: (u64, u64),
    ) -> Result<Vec<Bytes>, String>;
}

impl Shared {
    /// Retires the closed segment starting at `first_token`: its events are
    /// then read from the lower tier. Retiring one already retired is a no-op.
    pub fn retire(&self, first_token: u64) -> Result<(), StoreError> {
        let segment = {
            let state = self.read_state();
            match state.closed.iter().find(|s| s.first_token == first_token) {
                Some(segment) => *segment,
                None => {
                    let reason = format!("segment {first_token} is not a closed segment of this store");
                    return Err(StoreError::Unavailable { context: self.context.clone(), reason });
                }
            }
        };
        if segment.retired {
            return Ok(());
        }
        if self.pinned(first_token) {
            return Err(StoreError::Pinned { segment: first_token });
        }
        let marker = self.path(first_token, self.kind.retired_suffix());
        write_durably(&marker, format!("{}\n", segment.next_token).as_bytes())?;
        sync_dir(&self.dir)?;
        {
            let mut state = self.write_state();
            if let Some(closed) = state.closed.iter_mut().find(|s| s.first_token == first_token) {
                closed.retired = true;
                closed.len = 0;
            }
        }
        // Readers that opened the file already keep reading it; new ones go
        // to the tier.
        let data = self.path(first_token, self.kind.data_suffix());
        fs::remove_file(&data).map_err(StoreError::io("remove", &data))?;
        sync_dir(&self.dir)?;
        tracing::info!(context = %self.context, store = self.kind.name(), segment = first_token, "retired a segment to the secondary tier");
        Ok(())
    }

    /// Keeps the closed segments `segments` on disk until `until` (a backup
    /// copies them); a later pin of the same segment extends it.
    pub fn pin(&self, segments: &[u64], until: std::time::Instant) {
        let mut pins = self.pins.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        pins.retain(|_, end| *end > now);
        for segment in segments {
            let end = pins.entry(*segment).or_insert(until);
            *end = (*end).max(until);
        }
    }

    /// Whether a backup still holds the segment starting at `first_token`.
    pub fn pinned(&self, first_token: u64) -> bool {
        let pins = self.pins.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        pins.get(&first_token).is_some_and(|end| *end > std::time::Instant::now())
    }

    /// The segment starting at `first_token`, when it is retired.
    pub(super) fn retired_segment(&self, first_token: u64) -> Option<ClosedSegment> {
        self.read_state().closed.iter().find(|s| s.first_token == first_token && s.retired).copied()
    }

    pub(super) fn retired_error(&self, from_token: u64, reason: String) -> StoreError {
        StoreError::Retired { context: self.context.clone(), from_token, reason }
    }

    fn lower_tier(&self, from_token: u64, tiered: bool) -> Result<Arc<dyn LowerTier>, StoreError> {
        if !tiered {
            return Err(self.retired_error(from_token, "this node retired them too".into()));
        }
        let tier = self.tier.read().unwrap_or_else(|p| p.into_inner()).clone();
        tier.ok_or_else(|| self.retired_error(from_token, "no secondary tier is known to this node".into()))
    }

    /// Events of a retired segment from `from` on (at least one).
    pub(super) fn tier_read(
        &self,
        segment: ClosedSegment,
        from: u64,
        max_events: usize,
        max_bytes: usize,
        tiered: bool,
    ) -> Result<Vec<(u64, Bytes, u64)>, StoreError> {
        let tier = self.lower_tier(from, tiered)?;
        let events = tier
            .read(&self.context, self.kind, from, segment.next_token, max_events, max_bytes)
            .map_err(|reason| self.retired_error(from, reason))?;
        // The tier must continue exactly where the reader is.
        let in_order = events.iter().enumerate().all(|(i, (token, ..))| *token == from + i as u64);
        if events.is_empty() || !in_order || events.iter().any(|(token, ..)| *token >= segment.next_token) {
            let reason = format!("it did not return the events from token {from} in order");
            return Err(self.retired_error(from, reason));
        }
        Ok(events)
    }

    /// The events of aggregate `id` in a retired segment.
    pub(super) fn tier_aggregate(
        &self,
        segment: ClosedSegment,
        id: &str,
        min_seq: i64,
        max_seq: i64,
        tiered: bool,
    ) -> Result<Vec<Bytes>, StoreError> {
        let tier = self.lower_tier(segment.first_token, tiered)?;
        tier.aggregate(&self.context, self.kind, id, (min_seq, max_seq), (segment.first_token, segment.next_token))
            .map_err(|reason| self.retired_error(segment.first_token, reason))
    }
}

/// A closed segment found retired at open: finishes a retirement that a
/// crash interrupted (the data file still there) and checks that the side
/// files, which cannot be rebuilt without the data, are all there.
pub(super) fn recover_retired(
    dir: &Path,
    kind: StoreKind,
    first: u64,
    next: u64,
    side_missing: bool,
) -> Result<ClosedSegment, StoreError> {
    let data = format::segment_file(dir, first, kind.data_suffix());
    if data.exists() {
        tracing::info!(segment = %data.display(), "finishing the retirement of a segment that a crash interrupted");
        fs::remove_file(&data).map_err(StoreError::io("remove", &data))?;
        sync_dir(dir)?;
    }
    if side_missing {
        let marker = format::segment_file(dir, first, kind.retired_suffix());
        let reason = "a retired segment lost its index files, which cannot be rebuilt without its data".into();
        return Err(StoreError::Corrupt { path: marker, offset: 0, reason });
    }
    Ok(ClosedSegment { first_token: first, next_token: next, len: 0, retired: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::metrics::StoreMetrics;
    use crate::store::tests::small_options;
    use crate::store::{Cursor, FsSpace, SegmentStore};
    use crate::test_util::event;

    fn open(dir: &Path) -> SegmentStore {
        SegmentStore::open(
            "default",
            StoreKind::Events,
            dir,
            small_options(),
            StoreMetrics::detached(),
            Arc::new(FsSpace),
        )
        .unwrap()
    }

    /// A secondary's copy of the whole history.
    struct Copy(SegmentStore);

    impl LowerTier for Copy {
        fn read(
            &self,
            _: &str,
            _: StoreKind,
            from: u64,
            to: u64,
            max_events: usize,
            max_bytes: usize,
        ) -> Result<Vec<(u64, Bytes, u64)>, String> {
            let mut batch =
                self.0.read_batch_tagged(&mut Cursor::at(from), max_events, max_bytes).map_err(|e| e.to_string())?;
            batch.retain(|(token, ..)| *token < to);
            Ok(batch)
        }

        fn aggregate(
            &self,
            _: &str,
            _: StoreKind,
            id: &str,
            seqs: (i64, i64),
            _: (u64, u64),
        ) -> Result<Vec<Bytes>, String> {
            let plan = self.0.aggregate_plan(id, seqs.0, seqs.1).map_err(|e| e.to_string())?;
            self.0.read_records(id, &plan).map_err(|e| e.to_string())
        }
    }

    /// The same 60 transactions (aggregate "a" and one-off aggregates) in two stores.
    fn twins(primary: &Path, secondary: &Path) -> (SegmentStore, SegmentStore) {
        let (a, b) = (open(primary), open(secondary));
        for seq in 0..60 {
            let tx = vec![event("a", seq, 120), event(&format!("one-{seq}"), 0, 40)];
            a.append_blocking(tx.clone()).unwrap();
            b.append_blocking(tx).unwrap();
        }
        (a, b)
    }

    fn read_all(store: &SegmentStore, from: u64) -> Result<Vec<(u64, Bytes)>, StoreError> {
        let mut cursor = Cursor::at(from);
        let mut out = Vec::new();
        loop {
            let batch = store.read_batch(&mut cursor, 7, 1 << 20)?;
            if batch.is_empty() {
                return Ok(out);
            }
            out.extend(batch);
        }
    }

    fn aggregate(store: &SegmentStore, id: &str) -> Result<Vec<Bytes>, StoreError> {
        let plan = store.aggregate_plan(id, 0, i64::MAX)?;
        store.read_records(id, &plan)
    }

    #[test]
    fn a_segment_a_backup_copies_is_not_retired_before_its_lease_ends() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for seq in 0..60 {
            store.append_blocking(vec![event("a", seq, 120)]).unwrap();
        }
        let closed = store.closed_segments();
        assert!(closed.len() >= 2, "{closed:?}");
        let (first, second) = (closed[0].first_token, closed[1].first_token);
        let now = std::time::Instant::now();
        store.pin(&[first], now + std::time::Duration::from_secs(600));
        store.pin(&[second], now);
        let refused = store.retire(first).unwrap_err();
        assert!(matches!(refused, StoreError::Pinned { segment } if segment == first), "{refused}");
        assert!(format::segment_file(dir.path(), first, "events").exists(), "the copied file stays");
        // An expired lease holds nothing.
        store.retire(second).unwrap();
        assert!(!format::segment_file(dir.path(), second, "events").exists());
    }

    #[test]
    fn a_retired_segment_keeps_its_indexes_and_its_events_are_read_from_the_tier() {
        let (dir, copy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (store, copy) = twins(dir.path(), copy_dir.path());
        let closed = store.closed_segments();
        assert!(closed.len() >= 4, "small segments must have rolled: {closed:?}");
        for segment in &closed[..2] {
            store.retire(segment.first_token).unwrap();
        }
        let first = closed[0].first_token;
        assert!(!format::segment_file(dir.path(), first, "events").exists(), "the data file is deleted");
        for suffix in ["index", "tindex", "bloom", "retired"] {
            assert!(format::segment_file(dir.path(), first, suffix).exists(), "{suffix} file kept");
        }
        assert!(store.segment_files().iter().all(|f| f.first_token != first), "backups skip retired segments");

        // Without a tier: reads of retired events fail and say why; the rest is served.
        let error = read_all(&store, 0).unwrap_err();
        assert!(matches!(error, StoreError::Retired { from_token: 0, .. }), "{error}");
        assert!(error.to_string().contains("secondary tier"), "{error}");
        assert_eq!(read_all(&store, closed[2].first_token).unwrap(), read_all(&copy, closed[2].first_token).unwrap());
        assert!(matches!(aggregate(&store, "a").unwrap_err(), StoreError::Retired { .. }));
        // Sequence checks and plans stay local, also for an aggregate all in retired segments.
        assert_eq!(store.highest_sequence("one-0").unwrap(), Some(0));
        let stale = store.append_blocking(vec![event("one-0", 0, 10)]).unwrap_err();
        assert!(matches!(stale, StoreError::InvalidSequence { expected: 1, .. }), "{stale}");

        // With the tier: every read is whole and in order.
        store.set_lower_tier(Arc::new(Copy(copy.clone())));
        assert_eq!(read_all(&store, 0).unwrap(), read_all(&copy, 0).unwrap());
        assert_eq!(read_all(&store, 3).unwrap(), read_all(&copy, 3).unwrap());
        assert_eq!(aggregate(&store, "a").unwrap(), aggregate(&copy, "a").unwrap());
        assert_eq!(aggregate(&store, "one-1").unwrap(), vec![event("one-1", 0, 40)]);
        assert_eq!(store.token_at(0).unwrap(), 0);

        // Retirement survives a restart.
        store.close();
        let store = open(dir.path());
        assert!(store.closed_segments()[..2].iter().all(|s| s.retired));
        assert!(matches!(read_all(&store, 0).unwrap_err(), StoreError::Retired { .. }));
        store.set_lower_tier(Arc::new(Copy(copy.clone())));
        assert_eq!(read_all(&store, 0).unwrap(), read_all(&copy, 0).unwrap());
    }

    #[test]
    fn a_crash_between_marker_and_delete_is_finished_and_lost_indexes_are_reported() {
        let (dir, copy_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (store, copy) = twins(dir.path(), copy_dir.path());
        let closed = store.closed_segments();
        // The active segment is never retired.
        let active = store.segment_files().last().unwrap().first_token;
        assert!(store.retire(active).is_err());
        store.close();
        copy.close();
        // The marker is on disk, the data file not deleted yet.
        let first = closed[1].first_token;
        std::fs::write(format::segment_file(dir.path(), first, "retired"), b"x\n").unwrap();
        let store = open(dir.path());
        assert!(!format::segment_file(dir.path(), first, "events").exists(), "the retirement was finished");
        assert!(store.closed_segments()[1].retired && !store.closed_segments()[0].retired);
        store.close();
        // A retired segment whose index is gone cannot be rebuilt.
        std::fs::remove_file(format::segment_file(dir.path(), first, "index")).unwrap();
        let error = SegmentStore::open(
            "default",
            StoreKind::Events,
            dir.path(),
            small_options(),
            StoreMetrics::detached(),
            Arc::new(FsSpace),
        )
        .err()
        .unwrap();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains("cannot be rebuilt"), "{error}");
    }
}
