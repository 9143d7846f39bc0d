//! The log store against openraft's storage contract (its test suite), and
//! its own durability: restart, torn records, purge and truncation on disk.

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{RaftSnapshotBuilder, StorageError};
use tokio_stream::StreamExt;

use super::*;
use openraft::EntryPayload;
use openraft::entry::RaftEntry;

use crate::raft::types::{GroupCommand, GroupResponse};

/// A minimal in-memory state machine, only so that openraft's suite can
/// drive the log store (the real state machine applies to context stores).
#[derive(Clone, Default)]
struct MemoryMachine {
    state: Arc<Mutex<MachineState>>,
}

#[derive(Default)]
struct MachineState {
    applied: Option<LogId>,
    membership: StoredMembershipOf<TypeConfig>,
    snapshot: Option<(SnapshotMetaOf<TypeConfig>, Vec<u8>)>,
}

impl RaftSnapshotBuilder<TypeConfig> for MemoryMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, Cursor<Vec<u8>>>, io::Error> {
        let mut state = self.state.lock().unwrap();
        let meta =
            SnapshotMetaOf::<TypeConfig> { last_log_id: state.applied, last_membership: state.membership.clone() };
        let data = serde_json::to_vec(&state.applied).unwrap();
        state.snapshot = Some((meta.clone(), data.clone()));
        Ok(openraft::Snapshot { meta, snapshot: Cursor::new(data) })
    }
}

impl RaftStateMachine<TypeConfig> for MemoryMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = MemoryMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembershipOf<TypeConfig>), io::Error> {
        let state = self.state.lock().unwrap();
        Ok((state.applied, state.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: tokio_stream::Stream<Item = Result<openraft::storage::EntryResponder<TypeConfig>, io::Error>>
            + Unpin
            + Send,
    {
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            {
                let mut state = self.state.lock().unwrap();
                state.applied = Some(entry.log_id);
                if let EntryPayload::Membership(m) = &entry.payload {
                    state.membership = StoredMembershipOf::<TypeConfig>::new(Some(entry.log_id), m.clone());
                }
            }
            if let Some(responder) = responder {
                responder.send(GroupResponse::Appended { first_token: 0 });
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: Cursor<Vec<u8>>,
    ) -> Result<(), io::Error> {
        let mut state = self.state.lock().unwrap();
        state.applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        state.snapshot = Some((meta.clone(), snapshot.into_inner()));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<SnapshotOf<TypeConfig, Cursor<Vec<u8>>>>, io::Error> {
        let state = self.state.lock().unwrap();
        Ok(state.snapshot.clone().map(|(meta, data)| openraft::Snapshot { meta, snapshot: Cursor::new(data) }))
    }
}

/// A fresh log in a fresh directory (with small segments, so that the suite
/// also crosses segment boundaries) for every test of the suite.
struct Fresh;

impl StoreBuilder<TypeConfig, LogStore, MemoryMachine, tempfile::TempDir> for Fresh {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, MemoryMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path(), 256).unwrap();
        Ok((dir, store, MemoryMachine::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_openraft_storage_suite() {
    Suite::test_all(Fresh).await.unwrap();
}

fn entry(term: u64, index: u64, context: &str) -> Entry {
    let command = GroupCommand::AppendEvents {
        context: context.into(),
        events: vec![Bytes::from(vec![index as u8; 40]), Bytes::from_static(b"")],
    };
    Entry::new(LogId::new(CommittedLeaderId::new(term), index), EntryPayload::Normal(command))
}

async fn append(store: &mut LogStore, entries: Vec<Entry>) {
    store.append(entries, IOFlushed::noop()).await.unwrap();
}

#[tokio::test]
async fn entries_and_vote_survive_a_restart_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let written: Vec<Entry> = (1..=40).map(|i| entry(1 + i / 20, i, "orders")).collect();
    {
        let mut store = LogStore::open(dir.path(), 512).unwrap();
        append(&mut store, written[..25].to_vec()).await;
        append(&mut store, written[25..].to_vec()).await;
        store.save_vote(&Vote::new(3, 2)).await.unwrap();
    }
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log"))
        .count();
    assert!(segments > 3, "small segments rolled: {segments}");
    let mut store = LogStore::open(dir.path(), 512).unwrap();
    assert_eq!(store.read_range(..).unwrap(), written);
    assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(3, 2)));
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_log_id, Some(written[39].log_id));
}

#[tokio::test]
async fn a_log_started_after_restored_entries_takes_the_next_index_and_a_seed_cut_before_its_vote_is_redone() {
    let dir = tempfile::tempdir().unwrap();
    assert!(is_fresh(&dir.path().join("none-yet")).unwrap());
    let at = LogId::new(CommittedLeaderId::new(1), 500);
    // Cut before its vote: still fresh, so the founder writes it again.
    write_atomically(&dir.path().join("purged.json"), &serde_json::to_vec(&at).unwrap()).unwrap();
    assert!(is_fresh(dir.path()).unwrap());
    start_after(dir.path(), at, Vote::new(1, 7)).unwrap();
    assert!(!is_fresh(dir.path()).unwrap());
    {
        let mut store = LogStore::open(dir.path(), 4096).unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!((state.last_purged_log_id, state.last_log_id), (Some(at), Some(at)));
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(1, 7)));
        append(&mut store, vec![entry(2, 501, "orders")]).await;
    }
    let mut store = LogStore::open(dir.path(), 4096).unwrap();
    assert_eq!(store.read_range(..).unwrap(), vec![entry(2, 501, "orders")]);
    assert_eq!(store.get_log_state().await.unwrap().last_log_id.map(|id| id.index), Some(501));
}

#[tokio::test]
async fn a_torn_record_at_the_end_is_cut_and_earlier_damage_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = {
        let mut store = LogStore::open(dir.path(), 1 << 20).unwrap();
        append(&mut store, (1..=5).map(|i| entry(1, i, "c")).collect()).await;
        segment_path(dir.path(), 1)
    };
    let full = std::fs::read(&path).unwrap();
    // A crash during the sixth append: half a record.
    let mut torn = full.clone();
    let mut record = Vec::new();
    encode_record_into(&mut record, &entry(1, 6, "c")).unwrap();
    torn.extend_from_slice(&record[..30]);
    std::fs::write(&path, &torn).unwrap();
    {
        let mut store = LogStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(store.get_log_state().await.unwrap().last_log_id.map(|id| id.index), Some(5));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), full.len() as u64);
        append(&mut store, vec![entry(1, 6, "c")]).await;
    }
    // Damage to an entry that is followed by others is not a torn tail.
    let mut damaged = std::fs::read(&path).unwrap();
    damaged[SEGMENT_HEADER_LEN as usize + 12] ^= 1;
    std::fs::write(&path, &damaged).unwrap();
    // The damaged record is in the last segment, so it is cut there; put it
    // in an earlier segment by adding a later one.
    let later = segment_path(dir.path(), 7);
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&7u64.to_le_bytes());
    std::fs::write(&later, header).unwrap();
    let error = LogStore::open(dir.path(), 1 << 20).err().expect("damage must be reported");
    assert!(error.to_string().contains("checksum"), "{error}");
}

#[tokio::test]
async fn purge_and_truncate_delete_files_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = LogStore::open(dir.path(), 300).unwrap();
        append(&mut store, (1..=30).map(|i| entry(1, i, "c")).collect()).await;
        store.purge(LogId::new(CommittedLeaderId::new(1), 20)).await.unwrap();
        store.truncate_after(Some(LogId::new(CommittedLeaderId::new(1), 25))).await.unwrap();
        append(&mut store, (26..=28).map(|i| entry(2, i, "c")).collect()).await;
    }
    let first_files: Vec<u64> = {
        let mut v: Vec<u64> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| {
                e.unwrap().file_name().to_str().and_then(|n| n.strip_suffix(".log")).and_then(|s| s.parse().ok())
            })
            .collect();
        v.sort();
        v
    };
    assert!(first_files[0] > 1, "segments wholly before the purge point are deleted: {first_files:?}");
    let mut store = LogStore::open(dir.path(), 300).unwrap();
    let state = store.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|id| id.index), Some(20));
    assert_eq!(state.last_log_id, Some(LogId::new(CommittedLeaderId::new(2), 28)));
    let read = store.read_range(..).unwrap();
    let indexes: Vec<u64> = read.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, (21..=28).collect::<Vec<_>>());
    assert_eq!(read.last().unwrap().log_id.leader_id.term, 2, "truncated entries were replaced");
}

/// Every range read, whether the in-memory tail holds none, part or all of
/// it, returns what the files hold — also after a truncation replaced
/// entries and a purge dropped some.
#[tokio::test]
async fn reads_through_the_in_memory_tail_match_the_files() {
    let mut record = Vec::new();
    let record_len = encode_record_into(&mut record, &entry(1, 1, "c")).unwrap();
    let id = |term, index| LogId::new(CommittedLeaderId::new(term), index);
    for tail_bytes in [0, record_len * 3, 1 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open_with_tail(dir.path(), 600, tail_bytes, TailBudget::new(tail_bytes)).unwrap();
        let mut expected: Vec<Entry> = (1..=12).map(|i| entry(1, i, "c")).collect();
        append(&mut store, expected.clone()).await;
        store.truncate_after(Some(id(1, 9))).await.unwrap();
        expected.truncate(9);
        let replacing: Vec<Entry> = (10..=14).map(|i| entry(2, i, "d")).collect();
        append(&mut store, replacing.clone()).await;
        expected.extend(replacing);
        store.purge(id(1, 3)).await.unwrap();
        expected.drain(..3);
        let on_disk = LogStore::open_with_tail(dir.path(), 600, 0, TailBudget::new(0)).unwrap();
        let model = |range: &dyn Fn(u64) -> bool| -> Vec<Entry> {
            expected.iter().filter(|e| range(e.log_id.index)).cloned().collect()
        };
        for low in 0..=16u64 {
            for high in low..=16u64 {
                let want = model(&|i| (low..high).contains(&i));
                assert_eq!(store.read_range(low..high).unwrap(), want, "tail {tail_bytes}: {low}..{high}");
                assert_eq!(on_disk.read_range(low..high).unwrap(), want, "files: {low}..{high}");
                let want = model(&|i| (low..=high).contains(&i));
                assert_eq!(store.read_range(low..=high).unwrap(), want, "tail {tail_bytes}: {low}..={high}");
            }
            assert_eq!(store.read_range(low..).unwrap(), model(&|i| i >= low), "tail {tail_bytes}: {low}..");
        }
        assert_eq!(store.read_range(..).unwrap(), expected);
        assert_eq!(store.read_range((Bound::Excluded(5), Bound::Unbounded)).unwrap(), model(&|i| i > 5));
        assert!(store.lock().tail.bytes <= tail_bytes, "the tail stays within its bound");
    }
}

/// The groups of a node share one budget for their in-memory tails: however
/// many write, together they hold at most the budget, each reads back what
/// its files hold, and a closed log gives its share back.
#[tokio::test]
async fn the_tails_of_all_groups_stay_within_the_node_budget() {
    let mut record = Vec::new();
    let record_len = encode_record_into(&mut record, &entry(1, 1, "c")).unwrap();
    let budget = TailBudget::new(record_len * 5);
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut stores: Vec<LogStore> =
        dirs.iter().map(|d| LogStore::open_with_tail(d.path(), 600, record_len * 4, budget.clone()).unwrap()).collect();
    for i in 1..=10 {
        for store in stores.iter_mut() {
            append(store, vec![entry(1, i, "c")]).await;
            assert!(
                budget.used() <= record_len * 5,
                "{} bytes held over a budget of {}",
                budget.used(),
                record_len * 5
            );
        }
    }
    let held: usize = stores.iter().map(|s| s.lock().tail.bytes).sum();
    assert_eq!(budget.used(), held);
    assert!(stores.iter().all(|s| s.lock().tail.bytes <= record_len * 4), "each group within its own bound");
    let expected: Vec<Entry> = (1..=10).map(|i| entry(1, i, "c")).collect();
    for store in stores.iter_mut() {
        assert_eq!(store.read_range(..).unwrap(), expected);
    }
    let closed = stores.pop().unwrap();
    let gave_back = closed.lock().tail.bytes;
    drop(closed);
    assert_eq!(budget.used(), held - gave_back, "a closed log gives its share back");
}
