//! Forwarded transactions, batched: on a node that does not lead a group,
//! client transactions bound for the same leader travel together, in one
//! `AppendBatch` call, as the leader batches its own proposals (`batch`).
//! Under load a batch fills while the previous ones travel: one call, one
//! set of HTTP/2 frames and one task wake-up per batch instead of per
//! transaction. A lone transaction goes out at once, alone.
//!
//! Per leader address: one queue of at most `FORWARD_QUEUE_MAX`
//! transactions (beyond that, callers wait, and so do their clients), and
//! at most `FORWARD_CALLS_IN_FLIGHT` calls under way. Each transaction gets
//! its own outcome, and the kind of a failure is kept, because the
//! caller's retry rules depend on it: a batch that provably never reached
//! the leader is `Unreached` for each (retried at the next leader), one the
//! leader did not answer in time is `Timeout` for each (it may be stored:
//! never proposed again), and the leader's per-transaction `NoLeader` /
//! `Failed` come back as they were.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use ranvier_proto::cluster::{ForwardedAppend, ForwardedBatch, ForwardedFailure, ForwardedOutcome};
use tokio::sync::{Semaphore, mpsc};

use super::batch::{Queues, Reply, ask, next_batch};
use super::writes::{FORWARD_TIMEOUT, call_failure};
use super::{Cluster, Proposed, WriteError, rpc};

/// Transactions waiting for a call to one leader, at most.
const FORWARD_QUEUE_MAX: usize = 4096;
/// Transactions in one call, at most.
const FORWARD_BATCH_MAX: usize = 1024;
/// Event bytes in one call, about (its first transaction may be larger;
/// well under the internal message limit).
const FORWARD_BATCH_BYTES: usize = 1024 * 1024;
/// Calls under way to one leader, at most.
const FORWARD_CALLS_IN_FLIGHT: usize = 2;

const _: () = assert!(FORWARD_BATCH_BYTES * 4 <= crate::transport::INTERNAL_MESSAGE_MAX);

/// One transaction waiting for its call.
pub(super) struct Waiting {
    append: ForwardedAppend,
    reply: Reply,
}

/// The queue of every leader address this node has forwarded to.
#[derive(Default)]
pub(super) struct Forwarders {
    queues: Queues<Waiting>,
    /// Calls made, and the transactions they carried.
    calls: AtomicU64,
    transactions: AtomicU64,
}

impl Forwarders {
    /// Calls made to leaders so far, and the transactions they carried.
    #[cfg(test)]
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.calls.load(Ordering::Relaxed), self.transactions.load(Ordering::Relaxed))
    }
}

fn append_bytes(append: &ForwardedAppend) -> usize {
    append.events.iter().map(|e| e.len()).sum()
}

impl Cluster {
    /// Sends a client transaction to the leader at internal `addr` in the
    /// next call there, and waits for its own outcome.
    pub(super) async fn forward_batched(&self, addr: &str, append: ForwardedAppend) -> Result<Proposed, WriteError> {
        ask(self.forwarder(addr), |reply| Waiting { append, reply }).await
    }

    fn forwarder(&self, addr: &str) -> mpsc::Sender<Waiting> {
        self.forwarders.queues.get_or_start(addr, FORWARD_QUEUE_MAX, |queue| {
            tokio::spawn(run_forwarder(self.me.clone(), addr.to_owned(), queue));
        })
    }

    /// One call with `batch` to the leader at `addr`; answers each.
    async fn send_batch(&self, addr: &str, batch: Vec<Waiting>) {
        let (appends, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|w| (w.append, w.reply)).unzip();
        let sent = appends.len();
        self.forwarders.calls.fetch_add(1, Ordering::Relaxed);
        self.forwarders.transactions.fetch_add(sent as u64, Ordering::Relaxed);
        let outcomes: Vec<Result<Proposed, WriteError>> = match self.call_batch(addr, ForwardedBatch { appends }).await
        {
            Ok(outcomes) if outcomes.len() == sent => outcomes.into_iter().map(outcome).collect(),
            // The leader ran them but its answer does not match: each may
            // be stored.
            Ok(outcomes) => {
                let reason = format!("the node at {addr} answered {} of {sent} forwarded transactions", outcomes.len());
                (0..sent).map(|_| Err(WriteError::Timeout(reason.clone()))).collect()
            }
            Err(error) => (0..sent).map(|_| Err(error.clone())).collect(),
        };
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
    }

    async fn call_batch(&self, addr: &str, batch: ForwardedBatch) -> Result<Vec<ForwardedOutcome>, WriteError> {
        let mut client = self.transport.cluster_client(addr).map_err(|e| WriteError::Failed(e.to_string()))?;
        let call = client.append_batch(self.with_token(batch));
        match tokio::time::timeout(FORWARD_TIMEOUT, call).await {
            Ok(Ok(reply)) => Ok(reply.into_inner().outcomes),
            Ok(Err(status)) => Err(call_failure(addr, &status)),
            Err(_) => Err(WriteError::Timeout(format!(
                "the node at {addr} did not answer within {} s; the transactions may or may not be stored",
                FORWARD_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// What one transaction's outcome in a batch means here.
fn outcome(outcome: ForwardedOutcome) -> Result<Proposed, WriteError> {
    let reason = outcome.reason;
    match ForwardedFailure::try_from(outcome.failure) {
        Ok(ForwardedFailure::Answered) => match outcome.reply {
            Some(reply) => Ok(Proposed { response: rpc::append_response(reply), index: 0 }),
            None => Err(WriteError::Timeout("the leader's answer is missing; it may be stored".into())),
        },
        Ok(ForwardedFailure::TimedOut) => Err(WriteError::Timeout(reason)),
        Ok(ForwardedFailure::NoLeader) => Err(WriteError::NoLeader(reason)),
        Ok(ForwardedFailure::Failed) => Err(WriteError::Failed(reason)),
        // A newer node's kind this one does not know: it may be stored.
        Err(_) => Err(WriteError::Timeout(reason)),
    }
}

/// Takes what is queued for `addr`, up to the batch limits, with at most
/// `FORWARD_CALLS_IN_FLIGHT` calls under way.
async fn run_forwarder(cluster: Weak<Cluster>, addr: String, mut queue: mpsc::Receiver<Waiting>) {
    let calls = Arc::new(Semaphore::new(FORWARD_CALLS_IN_FLIGHT));
    loop {
        let Ok(call) = calls.clone().acquire_owned().await else { return };
        let size = |w: &Waiting| append_bytes(&w.append);
        let Some(batch) = next_batch(&mut queue, FORWARD_BATCH_MAX, FORWARD_BATCH_BYTES, size).await else { return };
        let Some(cluster) = cluster.upgrade() else { return };
        let addr = addr.clone();
        tokio::spawn(async move {
            cluster.send_batch(&addr, batch).await;
            drop(call);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kinds a follower's retry rules depend on survive the trip: what
    /// the leader's `run` came to is what the follower's caller sees.
    #[test]
    fn each_outcome_keeps_its_kind_across_a_batch() {
        let cases = [
            Ok(ranvier_proto::cluster::ForwardedReply { first_token: 42, ..Default::default() }),
            Err(WriteError::Refused { code: "AXONIQ-2000".into(), message: "taken".into() }),
            Err(WriteError::Timeout("slow".into())),
            Err(WriteError::NoLeader("none".into())),
            Err(WriteError::NotLeader("moved".into())),
            Err(WriteError::Unreached("gone".into())),
            Err(WriteError::Failed("broken".into())),
        ];
        let seen: Vec<_> = cases.into_iter().map(|case| outcome(rpc::batch_outcome(case))).collect();
        assert!(matches!(
            &seen[0],
            Ok(Proposed { response: crate::raft::types::GroupResponse::Appended { first_token: 42 }, .. })
        ));
        assert!(
            matches!(&seen[1], Ok(Proposed { response: crate::raft::types::GroupResponse::Refused { code, .. }, .. }) if code == "AXONIQ-2000")
        );
        // May be stored: never proposed again.
        assert!(matches!(&seen[2], Err(WriteError::Timeout(m)) if m == "slow"));
        // Not stored: the caller may try the next leader.
        for (i, reason) in [(3, "none"), (4, "moved"), (5, "gone")] {
            assert!(matches!(&seen[i], Err(WriteError::NoLeader(m)) if m == reason), "{:?}", seen[i]);
        }
        assert!(matches!(&seen[6], Err(WriteError::Failed(m)) if m == "broken"));
        // An outcome of a kind this node does not know may be stored.
        let unknown = ForwardedOutcome { reply: None, failure: 99, reason: "new".into() };
        assert!(matches!(outcome(unknown), Err(WriteError::Timeout(_))));
    }
}
