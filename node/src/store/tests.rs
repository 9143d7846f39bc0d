//! Behaviour of the segment store as a user of the node relies on it:
//! appends are read back exactly, sequence conflicts are refused, segments
//! roll and stay readable, and recovery keeps every complete transaction.

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::test_util::event;

pub(crate) fn small_options() -> StoreOptions {
    StoreOptions { segment_size_bytes: 4096, validation_segments: 100, ..StoreOptions::default() }
}

fn open(dir: &Path, options: StoreOptions) -> Result<SegmentStore, StoreError> {
    SegmentStore::open("default", StoreKind::Events, dir, options, StoreMetrics::detached(), Arc::new(FsSpace))
}

/// Appends `count` one-event transactions to aggregate "a", closes the
/// store and returns its segment files (oldest first).
fn filled(dir: &Path, options: StoreOptions, count: i64, payload_len: usize) -> Vec<SegmentFiles> {
    let store = open(dir, options).unwrap();
    for seq in 0..count {
        store.append_blocking(vec![event("a", seq, payload_len)]).unwrap();
    }
    let files = store.segment_files();
    store.close();
    files
}

fn read_all(store: &SegmentStore, from: u64) -> Vec<(u64, Bytes)> {
    let mut cursor = Cursor::at(from);
    let mut out = Vec::new();
    loop {
        let batch = store.read_batch(&mut cursor, 7, 1 << 20).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
    }
}

#[test]
fn appends_read_back_in_token_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_options()).unwrap();
    let mut expected = Vec::new();
    for seq in 0..60 {
        let tx = vec![event("a", seq * 2, 100), event("a", seq * 2 + 1, 100)];
        let first = store.append_blocking(tx.clone()).unwrap();
        assert_eq!(first, seq as u64 * 2);
        expected.extend(tx);
    }
    assert!(store.segment_files().len() > 3, "4 KiB segments must have rolled");
    let read = read_all(&store, 0);
    assert_eq!(read.len(), 120);
    for (i, (token, bytes)) in read.iter().enumerate() {
        assert_eq!(*token, i as u64);
        assert_eq!(bytes, &expected[i]);
    }
    let tail = read_all(&store, 77);
    assert_eq!(tail.first().map(|(t, _)| *t), Some(77));
    assert_eq!(tail.len(), 43);
}

#[test]
fn sequence_numbers_must_continue_the_stored_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_options()).unwrap();
    store.append_blocking(vec![event("a", 0, 10), event("a", 1, 10)]).unwrap();
    let gap = store.append_blocking(vec![event("a", 3, 10)]).unwrap_err();
    assert!(matches!(gap, StoreError::InvalidSequence { sequence: 3, expected: 2, .. }), "{gap}");
    let duplicate = store.append_blocking(vec![event("a", 1, 10)]).unwrap_err();
    assert!(matches!(duplicate, StoreError::InvalidSequence { expected: 2, .. }));
    let new_not_zero = store.append_blocking(vec![event("b", 1, 10)]).unwrap_err();
    assert!(matches!(new_not_zero, StoreError::InvalidSequence { expected: 0, .. }));
    let inner_gap = store.append_blocking(vec![event("b", 0, 10), event("b", 2, 10)]).unwrap_err();
    assert!(matches!(inner_gap, StoreError::InvalidSequence { sequence: 2, expected: 1, .. }));
    // Nothing of the refused transactions was stored.
    assert_eq!(store.next_token(), 2);
    assert_eq!(store.highest_sequence("b").unwrap(), None);
    // Events without an aggregate type are not checked.
    store.append_blocking(vec![event("", 5, 10), event("", 5, 10)]).unwrap();
    assert_eq!(store.next_token(), 4);
}

#[test]
fn highest_sequence_and_aggregate_reads_span_closed_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_options()).unwrap();
    for seq in 0..50 {
        store.append_blocking(vec![event("a", seq, 150), event(&format!("other-{seq}"), 0, 50)]).unwrap();
    }
    assert!(store.segment_files().len() > 3);
    assert_eq!(store.highest_sequence("a").unwrap(), Some(49));
    assert_eq!(store.highest_sequence("other-3").unwrap(), Some(0));
    let plan = store.aggregate_plan("a", 10, 20).unwrap();
    let seqs: Vec<i64> = plan.iter().map(|(_, e)| e.seq).collect();
    assert_eq!(seqs, (10..20).collect::<Vec<_>>());
    let records = store.read_records("a", &plan).unwrap();
    for (record, seq) in records.iter().zip(10..) {
        assert_eq!(record, &event("a", seq, 150));
    }
    // Sequence checks find the aggregate in closed segments too.
    let stale = store.append_blocking(vec![event("other-3", 0, 10)]).unwrap_err();
    assert!(matches!(stale, StoreError::InvalidSequence { expected: 1, .. }));
}

#[test]
fn readers_never_lose_sight_of_committed_events_while_segments_roll() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), small_options()).unwrap();
    store.append_blocking(vec![event("a", 0, 100)]).unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seen = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let highest = store.highest_sequence("a").unwrap().expect("a committed aggregate vanished");
                assert!(highest >= seen, "highest sequence went back from {seen} to {highest}");
                let plan = store.aggregate_plan("a", 0, i64::MAX).unwrap();
                assert!(plan.len() as i64 > highest, "{} events planned, highest {highest}", plan.len());
                seen = highest;
            }
        })
    };
    for seq in 1..300 {
        store.append_blocking(vec![event("a", seq, 100)]).unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    reader.join().unwrap();
    assert!(store.segment_files().len() > 5);
}

#[tokio::test]
async fn replicated_transactions_record_their_log_index_with_the_events() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), small_options()).unwrap();
        assert_eq!(store.last_log_index(), 0);
        for seq in 0..30 {
            // Log indexes may skip (entries for other contexts, refused ones).
            store.append_tagged(vec![event("a", seq, 200)], 10 + seq as u64 * 2).await.unwrap();
        }
        assert_eq!(store.last_log_index(), 68);
        let again = store.append_tagged(vec![event("a", 30, 10)], 68).await.unwrap_err();
        assert!(matches!(again, StoreError::AlreadyApplied { log_index: 68, last: 68 }), "{again}");
        assert_eq!(store.next_token(), 30, "a re-applied entry writes nothing");
        store.close();
    }
    // After a restart (and several roll-overs) the store still knows.
    let store = open(dir.path(), small_options()).unwrap();
    assert!(store.segment_files().len() > 1);
    assert_eq!(store.last_log_index(), 68);
}

/// How many fsyncs the store's metrics have counted.
fn fsyncs(metrics: &StoreMetrics) -> u64 {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("probe_fsync_seconds", "fsyncs", metrics.fsync_seconds.clone());
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines().find_map(|l| l.strip_prefix("probe_fsync_seconds_count ")).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn replicated_rounds_share_one_fsync_until_a_sync_is_asked_for_while_client_rounds_fsync_each() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = StoreMetrics::detached();
    let store = SegmentStore::open(
        "default",
        StoreKind::Events,
        dir.path(),
        small_options(),
        metrics.clone(),
        Arc::new(FsSpace),
    )
    .unwrap();
    let before = fsyncs(&metrics);
    // Applied entries arriving over a few hundred milliseconds, as on a
    // replica under steady load: the log holds them, so none waits.
    for seq in 0..20 {
        store.append_tagged(vec![event("a", seq, 100)], 1 + seq as u64).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let deferred = fsyncs(&metrics) - before;
    assert!(deferred <= 1, "{deferred} fsyncs for 20 replicated rounds");
    store.sync().await.unwrap();
    assert_eq!(fsyncs(&metrics) - before, deferred + 1, "a sync request fsyncs what waits");
    // A client's own transaction is confirmed only once it is on disk.
    let at = fsyncs(&metrics);
    for seq in 20..25 {
        store.append(vec![event("a", seq, 100)]).await.unwrap();
    }
    assert_eq!(fsyncs(&metrics) - at, 5);
}

#[test]
fn a_fresh_segment_remembers_the_log_index_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    {
        let store = open(dir.path(), StoreOptions { segment_size_bytes: 600, ..small_options() }).unwrap();
        runtime.block_on(store.append_tagged(vec![event("a", 0, 400)], 7)).unwrap();
        // This one does not fit: the segment rolls first, so the new active
        // segment starts empty until the write, then holds index 9.
        runtime.block_on(store.append_tagged(vec![event("a", 1, 400)], 9)).unwrap();
        store.close();
    }
    // Cut the active segment's only frame: only the header remains.
    let newest = {
        let mut files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "events"))
            .collect();
        files.sort();
        files.pop().unwrap()
    };
    std::fs::OpenOptions::new().write(true).open(&newest).unwrap().set_len(format::HEADER_LEN + 5).unwrap();
    let store = open(dir.path(), small_options()).unwrap();
    assert_eq!(store.next_token(), 1);
    assert_eq!(store.last_log_index(), 7, "the header carries the index applied before the segment");
}

#[test]
fn token_at_finds_the_first_event_at_or_after_an_instant_across_marks_and_segments() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions { segment_size_bytes: 512 * 1024, ..small_options() };
    let store = open(dir.path(), options).unwrap();
    // Timestamps are 1000 + seq (see `event`), one event per transaction.
    for chunk in 0..50 {
        let tx: Vec<Bytes> = (0..100).map(|i| event("a", chunk * 100 + i, 200)).collect();
        store.append_blocking(tx).unwrap();
    }
    assert!(store.segment_files().len() > 1);
    for (instant, expected) in
        [(0, 0), (1000, 0), (1001, 1), (2500, 1500), (4321, 3321), (5999, 4999), (6000, 5000), (9999, 5000)]
    {
        assert_eq!(store.token_at(instant).unwrap(), expected, "instant {instant}");
    }
}

#[test]
fn reopening_recovers_everything_committed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), small_options()).unwrap();
        for seq in 0..40 {
            store.append_blocking(vec![event("a", seq, 120)]).unwrap();
        }
        store.close();
    }
    let store = open(dir.path(), small_options()).unwrap();
    assert_eq!(store.next_token(), 40);
    assert_eq!(store.highest_sequence("a").unwrap(), Some(39));
    store.append_blocking(vec![event("a", 40, 10)]).unwrap();
    assert_eq!(read_all(&store, 0).len(), 41);
}

#[test]
fn a_torn_tail_is_cut_and_the_store_continues() {
    let dir = tempfile::tempdir().unwrap();
    let active = filled(dir.path(), StoreOptions::default(), 5, 50)[0].paths[0].clone();
    // Half of a sixth transaction reached the disk before a crash.
    let mut frame = Vec::new();
    let sixth = event("a", 5, 50);
    format::encode_frame(&mut frame, 5, 0, true, std::iter::once(&sixth[..]));
    let mut bytes = std::fs::read(&active).unwrap();
    let committed_len = bytes.len();
    bytes.extend_from_slice(&frame[..frame.len() / 2]);
    std::fs::write(&active, &bytes).unwrap();

    let store = open(dir.path(), StoreOptions::default()).unwrap();
    assert_eq!(store.next_token(), 5);
    assert_eq!(std::fs::metadata(&active).unwrap().len(), committed_len as u64);
    store.append_blocking(vec![event("a", 5, 50)]).unwrap();
    assert_eq!(read_all(&store, 0).len(), 6);
}

#[test]
fn damage_to_confirmed_data_in_the_active_segment_is_not_cut_as_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    // One transaction per group commit: each frame starts a group.
    let active = filled(dir.path(), StoreOptions::default(), 5, 50)[0].paths[0].clone();
    let mut bytes = std::fs::read(&active).unwrap();
    let second_frame_record = format::HEADER_LEN as usize + (bytes.len() - format::HEADER_LEN as usize) / 5 + 40;
    bytes[second_frame_record] ^= 0x10;
    std::fs::write(&active, &bytes).unwrap();
    let error = open(dir.path(), StoreOptions::default()).err().unwrap();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains("confirmed"), "{error}");
    assert_eq!(std::fs::read(&active).unwrap(), bytes, "nothing was cut");
}

#[test]
fn a_flipped_byte_in_a_closed_segment_stops_the_open_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let closed = filled(dir.path(), small_options(), 30, 200)[0].paths[0].clone();
    let mut bytes = std::fs::read(&closed).unwrap();
    let offset = 600;
    bytes[offset] ^= 0x01;
    std::fs::write(&closed, &bytes).unwrap();
    let error = open(dir.path(), small_options()).err().unwrap();
    let message = error.to_string();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{message}");
    assert!(message.contains(&closed.display().to_string()), "{message}");
    assert!(message.contains("offset"), "{message}");
}

#[test]
fn corruption_found_while_reading_is_an_error_not_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), StoreOptions { validation_segments: 0, ..small_options() }).unwrap();
    for seq in 0..30 {
        store.append_blocking(vec![event("a", seq, 200)]).unwrap();
    }
    let closed = store.segment_files()[0].paths[0].clone();
    let mut bytes = std::fs::read(&closed).unwrap();
    let last = bytes.len() - 5;
    bytes[last] ^= 0x01;
    std::fs::write(&closed, &bytes).unwrap();
    let mut cursor = Cursor::at(0);
    let mut error = None;
    for _ in 0..100 {
        match store.read_batch(&mut cursor, 100, 1 << 20) {
            Ok(batch) if batch.is_empty() => break,
            Ok(_) => {}
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    assert!(matches!(error, Some(StoreError::Corrupt { .. })), "{error:?}");
}

#[test]
fn unfinished_temp_files_from_a_crash_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path(), small_options()).unwrap();
        store.append_blocking(vec![event("a", 0, 10)]).unwrap();
        store.close();
    }
    let stray = dir.path().join("00000000000000000000.index.temp");
    let stray_segment = dir.path().join("00000000000000000001.events.temp");
    std::fs::write(&stray, b"half").unwrap();
    std::fs::write(&stray_segment, b"RNV").unwrap();
    let store = open(dir.path(), small_options()).unwrap();
    assert!(!stray.exists() && !stray_segment.exists());
    assert_eq!(store.next_token(), 1);
}

#[test]
fn a_damaged_record_length_is_reported_not_allocated() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), StoreOptions { validation_segments: 0, ..small_options() }).unwrap();
    for seq in 0..30 {
        store.append_blocking(vec![event("a", seq, 200)]).unwrap();
    }
    let plan = store.aggregate_plan("a", 0, 1).unwrap();
    let (segment, entry) = plan[0];
    let path = format::segment_file(dir.path(), segment, "events");
    let mut bytes = std::fs::read(&path).unwrap();
    // The high byte of the record's length field.
    bytes[entry.pos as usize + 3] = 0x7f;
    std::fs::write(&path, &bytes).unwrap();
    let error = store.read_records("a", &plan).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
}

#[test]
fn missing_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let index = filled(dir.path(), small_options(), 30, 200)[0].paths[1].clone();
    std::fs::remove_file(index).unwrap();
    let store = open(dir.path(), small_options()).unwrap();
    assert_eq!(store.aggregate_plan("a", 0, i64::MAX).unwrap().len(), 30);
}

/// Free space as a test sets it.
struct Space(std::sync::atomic::AtomicU64);

impl DiskSpace for Space {
    fn available_bytes(&self, _: &Path) -> std::io::Result<u64> {
        Ok(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

#[test]
fn writes_are_refused_below_the_disk_reserve_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let space = Arc::new(Space(std::sync::atomic::AtomicU64::new(10 << 20)));
    let options = StoreOptions { disk_reserve_bytes: 1 << 20, ..StoreOptions::default() };
    let store =
        SegmentStore::open("default", StoreKind::Events, dir.path(), options, StoreMetrics::detached(), space.clone())
            .unwrap();
    store.append_blocking(vec![event("a", 0, 10)]).unwrap();
    space.0.store(1000, std::sync::atomic::Ordering::SeqCst);
    let refused = store.append_blocking(vec![event("a", 1, 10)]).unwrap_err();
    assert!(matches!(refused, StoreError::DiskFull { available_bytes: 1000, .. }), "{refused}");
    assert!(refused.to_string().contains("reserve"));
    space.0.store(10 << 20, std::sync::atomic::Ordering::SeqCst);
    store.append_blocking(vec![event("a", 1, 10)]).unwrap();
    assert_eq!(store.next_token(), 2);
}

#[tokio::test]
async fn transactions_of_committed_log_entries_are_written_below_the_disk_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let space = Arc::new(Space(std::sync::atomic::AtomicU64::new(1000)));
    let options = StoreOptions { disk_reserve_bytes: 1 << 20, ..StoreOptions::default() };
    let store =
        SegmentStore::open("default", StoreKind::Events, dir.path(), options, StoreMetrics::detached(), space.clone())
            .unwrap();
    // A replica cannot refuse what its group committed: the reserve is room for it.
    assert_eq!(store.append_tagged(vec![event("a", 0, 10)], 1).await.unwrap(), 0);
    assert_eq!(store.append_tagged(vec![event("a", 1, 10), event("a", 2, 10)], 2).await.unwrap(), 1);
    store.sync().await.unwrap();
    assert_eq!(store.next_token(), 3);
    assert_eq!(store.last_log_index(), 2);
}

#[test]
fn a_second_process_cannot_open_the_same_directory() {
    let dir = tempfile::tempdir().unwrap();
    let _store = open(dir.path(), small_options()).unwrap();
    assert!(matches!(open(dir.path(), small_options()), Err(StoreError::Locked { .. })));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Whatever the transaction sizes, everything appended reads back
        /// exactly, before and after a reopen.
        #[test]
        fn append_read_recover_round_trip(sizes in proptest::collection::vec((1usize..5, 0usize..400), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let mut expected = Vec::new();
            {
                let store = open(dir.path(), small_options()).unwrap();
                let mut seq = 0;
                for (count, len) in &sizes {
                    let tx: Vec<Bytes> = (0..*count).map(|_| { seq += 1; event("p", seq - 1, *len) }).collect();
                    store.append_blocking(tx.clone()).unwrap();
                    expected.extend(tx);
                }
                let read: Vec<Bytes> = read_all(&store, 0).into_iter().map(|(_, b)| b).collect();
                prop_assert_eq!(&read, &expected);
                store.close();
            }
            let store = open(dir.path(), small_options()).unwrap();
            let read: Vec<Bytes> = read_all(&store, 0).into_iter().map(|(_, b)| b).collect();
            prop_assert_eq!(&read, &expected);
            prop_assert_eq!(store.highest_sequence("p").unwrap(), Some(expected.len() as i64 - 1));
        }

        /// Cutting the active segment at any byte recovers to the last
        /// complete transaction before the cut.
        #[test]
        fn a_cut_at_any_offset_recovers_to_a_transaction_boundary(cut_fraction in 0.0f64..1.0) {
            let dir = tempfile::tempdir().unwrap();
            let mut ends = Vec::new();
            let path = {
                let store = open(dir.path(), StoreOptions::default()).unwrap();
                for seq in 0..12 {
                    store.append_blocking(vec![event("c", seq * 2, 30), event("c", seq * 2 + 1, 30)]).unwrap();
                    ends.push(std::fs::metadata(&store.segment_files()[0].paths[0]).unwrap().len());
                }
                let path = store.segment_files()[0].paths[0].clone();
                store.close();
                path
            };
            let full = *ends.last().unwrap();
            let cut = format::HEADER_LEN + ((full - format::HEADER_LEN) as f64 * cut_fraction) as u64;
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(cut).unwrap();
            drop(file);
            let complete = ends.iter().filter(|end| **end <= cut).count() as u64;
            let store = open(dir.path(), StoreOptions::default()).unwrap();
            prop_assert_eq!(store.next_token(), complete * 2);
            prop_assert_eq!(read_all(&store, 0).len() as u64, complete * 2);
        }
    }
}
