//! Batched proposals: on the leader of a group, client transactions that
//! queue while a proposal is in flight are proposed together as one log
//! entry (`GroupCommand::Batch`), so that one entry — one log record, one
//! replication message, one apply — carries many transactions. Each is
//! still validated, stored and answered on its own.
//!
//! One proposal per group is in flight at a time: under load the queue
//! fills while it commits, and the next entry takes everything queued (up
//! to `BATCH_TRANSACTIONS_MAX` transactions or about `BATCH_BYTES_MAX`); a
//! lone transaction goes out at once, alone. The queue holds at most
//! `BATCH_QUEUE_MAX` transactions: beyond that, callers wait (and so do
//! their clients). A batch is never forwarded: when this node lost the
//! leadership before proposing it, nothing was proposed, and each
//! transaction takes the ordinary path to the new leader. While this node
//! is below its disk reserve, queued transactions are refused
//! (`AXONIQ-9100`, by the reserve check where the leader proposes) instead
//! of proposed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{mpsc, oneshot};

use super::{Cluster, Proposed, WriteError};
use crate::raft::state_machine::BATCH_SLOTS;
use crate::raft::types::{GroupCommand, GroupResponse};

/// Transactions waiting for a group's next proposal, at most.
const BATCH_QUEUE_MAX: usize = 4096;
/// Transactions in one batched entry, at most.
const BATCH_TRANSACTIONS_MAX: usize = 1024;
/// Event bytes in one batched entry, about (its first transaction may be larger).
const BATCH_BYTES_MAX: usize = 1024 * 1024;

const _: () = assert!(BATCH_TRANSACTIONS_MAX <= BATCH_SLOTS);

/// One transaction waiting for its group's next proposal.
pub(super) struct Queued {
    command: GroupCommand,
    relay: bool,
    reply: Reply,
}

/// Where a queued transaction's answer goes.
pub(super) type Reply = oneshot::Sender<Result<Proposed, WriteError>>;

/// Queues by key, each drained by a task started with it: the batching
/// queue of every group this node has led (`Batchers`), and `forwarding`'s
/// queue of every leader address it has forwarded to.
pub(super) struct Queues<T> {
    queues: Mutex<HashMap<String, mpsc::Sender<T>>>,
}

impl<T> Default for Queues<T> {
    fn default() -> Self {
        Queues { queues: Mutex::new(HashMap::new()) }
    }
}

impl<T> Queues<T> {
    /// The queue of `key`, made (`capacity` items) and handed to `start`
    /// when there is none or its task has ended.
    pub(super) fn get_or_start(
        &self,
        key: &str,
        capacity: usize,
        start: impl FnOnce(mpsc::Receiver<T>),
    ) -> mpsc::Sender<T> {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(queue) = queues.get(key).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        let (sender, receiver) = mpsc::channel(capacity);
        start(receiver);
        queues.insert(key.to_owned(), sender.clone());
        sender
    }

    /// Forgets the queue of `key`: its task ends once what is queued is
    /// done.
    pub(super) fn remove(&self, key: &str) {
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// Queues the item `with` makes around its reply, and waits for the
/// answer; `Failed` when the queue's task is gone (the node stops).
pub(super) async fn ask<T>(queue: mpsc::Sender<T>, with: impl FnOnce(Reply) -> T) -> Result<Proposed, WriteError> {
    let stopping = || WriteError::Failed("the node is stopping".into());
    let (reply, answer) = oneshot::channel();
    queue.send(with(reply)).await.map_err(|_| stopping())?;
    answer.await.map_err(|_| stopping())?
}

/// Waits for the next item of `queue`, then takes what else is queued,
/// up to `items` items or about `bytes` bytes (as `size` counts them; the
/// first may be larger); `None` once the queue is closed and empty.
pub(super) async fn next_batch<T>(
    queue: &mut mpsc::Receiver<T>,
    items: usize,
    bytes: usize,
    size: impl Fn(&T) -> usize,
) -> Option<Vec<T>> {
    let first = queue.recv().await?;
    let mut taken = size(&first);
    let mut batch = vec![first];
    while batch.len() < items && taken < bytes {
        let Ok(next) = queue.try_recv() else { break };
        taken += size(&next);
        batch.push(next);
    }
    Some(batch)
}

/// The batching queue of every group this node has led; a group's is
/// removed when this node stops hosting it (what is queued is still
/// proposed).
pub(super) type Batchers = Queues<Queued>;

fn command_bytes(command: &GroupCommand) -> usize {
    match command {
        GroupCommand::AppendEvents { events, .. } => events.iter().map(|e| e.len()).sum(),
        GroupCommand::AppendSnapshot { snapshot, .. } => snapshot.len(),
        GroupCommand::Admin(_) | GroupCommand::Batch(_) => 0,
    }
}

impl Cluster {
    /// Proposes a client transaction in `group`'s next batch (this node
    /// leads the group) and waits for its own answer.
    pub(super) async fn propose_batched(
        &self,
        group: &str,
        command: GroupCommand,
        relay: bool,
    ) -> Result<Proposed, WriteError> {
        ask(self.batcher(group), |reply| Queued { command, relay, reply }).await
    }

    fn batcher(&self, group: &str) -> mpsc::Sender<Queued> {
        self.batchers.get_or_start(group, BATCH_QUEUE_MAX, |queue| {
            tokio::spawn(run_batcher(self.me.clone(), group.to_owned(), queue));
        })
    }

    /// Proposes what the batcher took from the queue, and answers each.
    async fn propose_queued(self: Arc<Self>, group: &str, mut batch: Vec<Queued>) {
        if batch.len() == 1 {
            let Some(one) = batch.pop() else { return };
            let answer = self.propose_now(group, one.command, one.relay).await;
            let _ = one.reply.send(answer);
            return;
        }
        let commands = batch.iter().map(|q| q.command.clone()).collect();
        match self.propose_now(group, GroupCommand::Batch(commands), false).await {
            Ok(Proposed { response: GroupResponse::Batch(responses), index }) if responses.len() == batch.len() => {
                for (queued, response) in batch.into_iter().zip(responses) {
                    let _ = queued.reply.send(Ok(Proposed { response, index }));
                }
            }
            Ok(Proposed { response, index }) => {
                for queued in batch {
                    let _ = queued.reply.send(Ok(Proposed { response: response.clone(), index }));
                }
            }
            // Nothing was proposed: each goes its own way to the new leader.
            Err(WriteError::NotLeader(_)) => {
                for queued in batch {
                    let cluster = self.clone();
                    let group = group.to_owned();
                    tokio::spawn(async move {
                        let answer = cluster.propose_now(&group, queued.command, queued.relay).await;
                        let _ = queued.reply.send(answer);
                    });
                }
            }
            Err(error) => {
                for queued in batch {
                    let _ = queued.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Takes what is queued, up to the batch limits, one proposal at a time.
async fn run_batcher(cluster: Weak<Cluster>, group: String, mut queue: mpsc::Receiver<Queued>) {
    while let Some(batch) =
        next_batch(&mut queue, BATCH_TRANSACTIONS_MAX, BATCH_BYTES_MAX, |q: &Queued| command_bytes(&q.command)).await
    {
        let Some(cluster) = cluster.upgrade() else { return };
        cluster.propose_queued(&group, batch).await;
    }
}
