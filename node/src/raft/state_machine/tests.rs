//! Applying log entries to real context stores: tokens and refusals are the
//! same on every replica, and replaying entries after a restart changes
//! nothing.

use bytes::Bytes;
use openraft::entry::RaftEntry;
use openraft::vote::leader_id_std::CommittedLeaderId;

use super::*;

struct Two(ContextStore);

impl ContextStores for Two {
    fn store(&self, context: &str) -> Result<ContextStore, String> {
        if context == "orders" { Ok(self.0.clone()) } else { Err(format!("No eventstore found for context {context}")) }
    }
}

fn open_store(dir: &Path) -> ContextStore {
    crate::test_util::context_store(dir, "orders")
}

fn event(aggregate: &str, seq: i64) -> Bytes {
    crate::test_util::event(aggregate, seq, 0)
}

fn append(index: u64, context: &str, events: Vec<Bytes>) -> Entry {
    let command = GroupCommand::AppendEvents { context: context.into(), events };
    Entry::new(LogId::new(CommittedLeaderId::new(1), index), EntryPayload::Normal(command))
}

fn entries() -> Vec<Entry> {
    vec![
        Entry::new_blank(LogId::new(CommittedLeaderId::new(1), 1)),
        append(2, "orders", vec![event("a", 0), event("a", 1)]),
        append(3, "orders", vec![event("a", 1)]),
        append(4, "billing", vec![event("b", 0)]),
        append(5, "orders", vec![event("a", 2)]),
    ]
}

#[tokio::test]
async fn entries_apply_with_the_same_tokens_and_refusals_everywhere() {
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut outcomes = Vec::new();
    for dir in [&first, &second] {
        let store = open_store(&dir.path().join("data"));
        let mut machine = GroupStateMachine::open(&dir.path().join("log"), Arc::new(Two(store.clone()))).unwrap();
        let responses = machine.apply_batch(entries()).await.unwrap();
        assert_eq!(responses[0], GroupResponse::Applied);
        assert_eq!(responses[1], GroupResponse::Appended { first_token: 0 });
        assert!(matches!(&responses[2], GroupResponse::Refused { code, .. } if code == "AXONIQ-2000"));
        assert!(matches!(&responses[3], GroupResponse::Refused { code, .. } if code == "AXONIQ-6000"));
        assert_eq!(responses[4], GroupResponse::Appended { first_token: 2 });
        assert_eq!(store.events.next_token(), 3);
        assert_eq!(store.events.last_log_index(), store_position(5, 0));
        let (applied, _) = machine.applied_state().await.unwrap();
        assert_eq!(applied.map(|id| id.index), Some(5));
        outcomes.push(responses);
    }
    assert_eq!(outcomes[0], outcomes[1], "replicas agree");
}

#[tokio::test]
async fn replaying_entries_after_a_restart_stores_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("data"));
    {
        let mut machine = GroupStateMachine::open(&dir.path().join("log"), Arc::new(Two(store.clone()))).unwrap();
        machine.apply_batch(entries()).await.unwrap();
    }
    // The applied hint was lost: openraft replays the committed entries.
    std::fs::remove_file(dir.path().join("log/applied.json")).unwrap();
    let mut machine = GroupStateMachine::open(&dir.path().join("log"), Arc::new(Two(store.clone()))).unwrap();
    assert_eq!(machine.applied_state().await.unwrap().0, None);
    machine.apply_batch(entries()).await.unwrap();
    assert_eq!(store.events.next_token(), 3, "no event was stored twice");
    machine.apply_batch(vec![append(6, "orders", vec![event("a", 3)])]).await.unwrap();
    assert_eq!(store.events.next_token(), 4);
}

fn batch(index: u64, commands: Vec<(&str, Vec<Bytes>)>) -> Entry {
    let commands = commands
        .into_iter()
        .map(|(context, events)| GroupCommand::AppendEvents { context: context.into(), events })
        .collect();
    Entry::new(LogId::new(CommittedLeaderId::new(1), index), EntryPayload::Normal(GroupCommand::Batch(commands)))
}

fn mixed_batch() -> Entry {
    batch(
        2,
        vec![
            ("orders", vec![event("a", 0), event("a", 1)]),
            ("orders", vec![event("a", 1)]),
            ("billing", vec![event("b", 0)]),
            ("orders", vec![event("a", 2)]),
        ],
    )
}

#[tokio::test]
async fn a_batched_entry_answers_each_transaction_on_its_own_alike_everywhere() {
    let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut outcomes = Vec::new();
    for dir in [&first, &second] {
        let store = open_store(&dir.path().join("data"));
        let mut machine = GroupStateMachine::open(&dir.path().join("log"), Arc::new(Two(store.clone()))).unwrap();
        let mut responses = machine.apply_batch(vec![mixed_batch()]).await.unwrap();
        let Some(GroupResponse::Batch(answers)) = responses.pop() else { panic!("not a batch answer") };
        assert_eq!(answers.len(), 4);
        assert_eq!(answers[0], GroupResponse::Appended { first_token: 0 });
        assert!(matches!(&answers[1], GroupResponse::Refused { code, .. } if code == "AXONIQ-2000"));
        assert!(matches!(&answers[2], GroupResponse::Refused { code, .. } if code == "AXONIQ-6000"));
        assert_eq!(answers[3], GroupResponse::Appended { first_token: 2 });
        assert_eq!(store.events.next_token(), 3);
        assert_eq!(store.events.last_log_index(), store_position(2, 3));
        outcomes.push(answers);
    }
    assert_eq!(outcomes[0], outcomes[1], "replicas agree");
}

#[tokio::test]
async fn a_batched_entry_replayed_after_a_restart_stores_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("data"));
    {
        let mut machine = GroupStateMachine::open(&dir.path().join("log"), Arc::new(Two(store.clone()))).unwrap();
        machine.apply_batch(vec![mixed_batch()]).await.unwrap();
    }
    std::fs::remove_file(dir.path().join("log/applied.json")).unwrap();
    let mut machine = GroupStateMachine::open(&dir.path().join("log"), Arc::new(Two(store.clone()))).unwrap();
    machine.apply_batch(vec![mixed_batch()]).await.unwrap();
    assert_eq!(store.events.next_token(), 3, "no event was stored twice");
}

#[tokio::test]
async fn an_entry_cut_by_a_crash_after_its_first_transactions_is_completed_on_replay() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("data"));
    let entry = batch(7, vec![("orders", vec![event("a", 0)]), ("orders", vec![event("c", 0), event("c", 1)])]);
    // The crash left the first transaction of entry 7 in the store, not the second.
    store.events.append_tagged(vec![event("a", 0)], store_position(7, 0)).await.unwrap();
    let mut machine = GroupStateMachine::open(&dir.path().join("log"), Arc::new(Two(store.clone()))).unwrap();
    let responses = machine.apply_batch(vec![entry]).await.unwrap();
    let GroupResponse::Batch(answers) = &responses[0] else { panic!("not a batch answer: {responses:?}") };
    assert_eq!(answers[1], GroupResponse::Appended { first_token: 1 });
    assert_eq!(store.events.next_token(), 3, "the missing transaction was stored, the stored one not again");
    let stored = store.events.read_batch(&mut crate::store::Cursor::at(0), 10, 1 << 20).unwrap();
    let ids: Vec<Bytes> = stored.into_iter().map(|(_, e)| e).collect();
    assert_eq!(ids, vec![event("a", 0), event("c", 0), event("c", 1)]);
}

#[tokio::test]
async fn a_store_closed_after_an_apply_is_not_held_open_by_the_state_machine() {
    use crate::contexts::{ContextOptions, Contexts};
    use crate::store::{FsSpace, StoreOptions};
    let dir = tempfile::tempdir().unwrap();
    let options = ContextOptions { events: StoreOptions::default(), snapshots: StoreOptions::default() };
    let contexts = Arc::new(Contexts::open(
        &[],
        &dir.path().join("events"),
        &dir.path().join("snapshots"),
        &options,
        Arc::new(crate::telemetry::Metrics::new()),
        Arc::new(FsSpace),
    ));
    let mut machine = GroupStateMachine::open(&dir.path().join("log"), contexts.clone()).unwrap();
    machine.apply_batch(vec![append(1, "orders", vec![event("a", 0)])]).await.unwrap();
    // Applied within a second of the first: no hint write (and sync) yet.
    machine.apply_batch(vec![append(2, "orders", vec![event("a", 1)])]).await.unwrap();
    // The context is deleted with its files kept, then created again (the
    // documented --preserve-event-store path): its store must open again.
    contexts.remove("orders", true).unwrap();
    let reopened = contexts.ensure("orders").unwrap();
    assert_eq!(reopened.events.next_token(), 2);
    machine.apply_batch(vec![append(3, "orders", vec![event("a", 2)])]).await.unwrap();
    assert_eq!(reopened.events.next_token(), 3);
}

#[tokio::test]
async fn a_snapshot_naming_a_path_instead_of_a_context_is_refused_before_anything_is_fetched() {
    use openraft::storage::RaftStateMachine;
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("data"));
    let mut machine = GroupStateMachine::open(&dir.path().join("log"), Arc::new(Two(store))).unwrap();
    for bad in [
        serde_json::json!({ "source": "127.0.0.1:1", "contexts": ["../../etc"] }),
        serde_json::json!({ "source": "127.0.0.1:1", "contexts": [], "model": {
            "nodes": {}, "groups": {}, "contexts": { "x/y": { "group": "orders" } },
            "departed": {}, "deleted_contexts": {} } }),
    ] {
        let meta = SnapshotMetaOf::<TypeConfig>::default();
        let data = std::io::Cursor::new(serde_json::to_vec(&bad).unwrap());
        let error = machine.install_snapshot(&meta, data).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        assert!(error.to_string().contains("not a context or group name"), "{error}");
    }
    assert!(!dir.path().join("etc").exists());
}

#[tokio::test]
async fn new_context_group_and_log_folders_are_synced_into_their_parents() {
    use crate::contexts::{ContextOptions, Contexts};
    use crate::durable::take_synced_dirs;
    use crate::raft::log_store::{LogStore, TailBudget};
    use crate::store::{FsSpace, StoreOptions};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let options = ContextOptions { events: StoreOptions::default(), snapshots: StoreOptions::default() };
    let contexts = Arc::new(Contexts::open(
        &[],
        &root.join("events"),
        &root.join("snapshots"),
        &options,
        Arc::new(crate::telemetry::Metrics::new()),
        Arc::new(FsSpace),
    ));
    take_synced_dirs();
    contexts.ensure("orders").unwrap();
    let synced = take_synced_dirs();
    for parent in [root.to_path_buf(), root.join("events"), root.join("snapshots")] {
        assert!(
            synced.contains(&parent),
            "{} not synced after a context folder was made: {synced:?}",
            parent.display()
        );
    }
    GroupStateMachine::open(&root.join("log").join("orders"), contexts.clone()).unwrap();
    let synced = take_synced_dirs();
    assert!(synced.contains(&root.join("log")) && synced.contains(&root.to_path_buf()), "{synced:?}");
    LogStore::open_with_tail(&root.join("raft").join("orders"), 1 << 20, 1 << 20, TailBudget::new(1 << 20)).unwrap();
    assert!(take_synced_dirs().contains(&root.join("raft")), "the log folder's parent was not synced");
}
