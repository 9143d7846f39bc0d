//! The SECONDARY tier: once a replication group has SECONDARY members
//! (which store every event), its primaries keep only recent segments on
//! their own disk.
//!
//! Every `ranvier.tier.check-interval`, each PRIMARY of such a group
//! retires the closed event segments of the group's contexts, oldest
//! first, that (a) every secondary holds (its store reaches past the
//! segment's last token) and (b) are older than
//! `axoniq.axonserver.event.retention-time` — judged by the first event of
//! the next segment, which is newer than every event of this one. Nothing
//! retires while a secondary cannot be asked. Retired events stay readable
//! through the primary: its stores read them from a secondary, or from any
//! other member that still holds them (a secondary made a primary again),
//! ([`SecondaryTier`]), so clients still see the whole history. A member
//! asked this way answers from its own segments only, never from its own
//! tier, so requests never go round in circles. Snapshot stores are not
//! tiered.

use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use ranvier_proto::cluster::cluster_service_client::ClusterServiceClient;
use ranvier_proto::cluster::{AggregateRequest, FetchRequest, StoreStateQuery};
use tokio::sync::watch;

use super::Cluster;
use super::model::ADMIN;
use super::roles::Role;
use crate::store::error::StoreError;
use crate::store::format::StoreKind;
use crate::store::segments::ClosedSegment;
use crate::store::tier::LowerTier;

/// Longest wait for a secondary's answer to a read.
const TIER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for a secondary's store state.
const TIER_STATE_TIMEOUT: Duration = Duration::from_secs(2);

/// Which closed segments (oldest first) may retire now: not retired yet,
/// held by every secondary (`held`: the least next token among them), and
/// `older` than the retention (asked with the first token of the segment
/// after it). Stops at the first segment that may not.
pub(super) fn retirements(closed: &[ClosedSegment], held: u64, mut older: impl FnMut(u64) -> bool) -> Vec<u64> {
    let mut out = Vec::new();
    for segment in closed.iter().filter(|s| !s.retired) {
        if segment.next_token > held || !older(segment.next_token) {
            break;
        }
        out.push(segment.first_token);
    }
    out
}

/// Reads events of retired segments from a SECONDARY of the context's group.
pub(super) struct SecondaryTier {
    cluster: Weak<Cluster>,
    runtime: tokio::runtime::Handle,
}

impl SecondaryTier {
    pub(super) fn new(cluster: Weak<Cluster>, runtime: tokio::runtime::Handle) -> Self {
        Self { cluster, runtime }
    }

    /// Runs `call` against each secondary of `context` in turn until one answers.
    fn ask<T>(
        &self,
        context: &str,
        kind: StoreKind,
        call: impl AsyncFn(ClusterServiceClient<tonic::transport::Channel>, &Cluster) -> Result<T, String>,
    ) -> Result<T, String> {
        if kind != StoreKind::Events {
            return Err("snapshot stores are not tiered".into());
        }
        let cluster = self.cluster.upgrade().ok_or_else(|| "the node is stopping".to_owned())?;
        let sources = cluster.tier_sources(context);
        let mut last = format!("no other member of the replication group of {context} holds them");
        for addr in sources {
            let client = match cluster.transport.cluster_client(&addr) {
                Ok(client) => client,
                Err(error) => {
                    last = error.to_string();
                    continue;
                }
            };
            let answer = self.runtime.block_on(async {
                tokio::time::timeout(TIER_READ_TIMEOUT, call(client, &cluster))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {} s", TIER_READ_TIMEOUT.as_secs())))
            });
            match answer {
                Ok(value) => return Ok(value),
                Err(error) => last = format!("the member at {addr}: {error}"),
            }
        }
        Err(last)
    }
}

impl LowerTier for SecondaryTier {
    fn read(
        &self,
        context: &str,
        kind: StoreKind,
        from: u64,
        to: u64,
        max_events: usize,
        _max_bytes: usize,
    ) -> Result<Vec<(u64, Bytes, u64)>, String> {
        let to = to.min(from.saturating_add(max_events as u64));
        self.ask(context, kind, async |mut client, cluster| {
            let query = FetchRequest {
                context: context.to_owned(),
                snapshots: false,
                from_token: from,
                to_token: to,
                local_only: true,
            };
            let mut stream =
                client.fetch_transactions(cluster.with_token(query)).await.map_err(|s| s.message().to_owned())?;
            // The first chunk is bounded (~4 MiB); the reader asks again for more.
            let chunk = stream.get_mut().message().await.map_err(|s| s.message().to_owned())?.unwrap_or_default();
            Ok(chunk
                .events
                .into_iter()
                .zip(chunk.log_indexes)
                .enumerate()
                .map(|(i, (e, l))| (from + i as u64, e, l))
                .collect())
        })
    }

    fn aggregate(
        &self,
        context: &str,
        kind: StoreKind,
        id: &str,
        seqs: (i64, i64),
        _tokens: (u64, u64),
    ) -> Result<Vec<Bytes>, String> {
        self.ask(context, kind, async |mut client, cluster| {
            let query = AggregateRequest {
                context: context.to_owned(),
                aggregate_id: id.to_owned(),
                min_seq: seqs.0,
                max_seq: seqs.1,
            };
            let reply = client.fetch_aggregate(cluster.with_token(query)).await.map_err(|s| s.message().to_owned())?;
            Ok(reply.into_inner().events)
        })
    }
}

impl Cluster {
    /// Internal addresses of the SECONDARY members of `context`'s group.
    pub(super) fn secondaries_of(&self, context: &str) -> Vec<String> {
        self.members_of(context, |role| role == Role::Secondary)
    }

    /// Where retired events of `context` can be read: its secondaries
    /// first, then every other member that stores events (a former
    /// secondary that is a primary again holds them; one that retired them
    /// too says so, as it is asked for its own segments only).
    fn tier_sources(&self, context: &str) -> Vec<String> {
        let me = self.model().nodes.get(&self.settings.node.name).map(|n| n.internal_addr.clone());
        let others = self.members_of(context, |role| role != Role::Secondary && role.stores_events());
        let mut sources = self.secondaries_of(context);
        sources.extend(others.into_iter().filter(|addr| Some(addr) != me.as_ref()));
        sources
    }

    fn members_of(&self, context: &str, wanted: impl Fn(Role) -> bool) -> Vec<String> {
        let model = self.model();
        let Some(group) = model.group_of(context) else { return Vec::new() };
        model.member_nodes(group, wanted).into_iter().map(|node| node.internal_addr.clone()).collect()
    }

    /// Retires old segments every check interval until `stopping`.
    pub(super) async fn run_tier(&self, mut stopping: watch::Receiver<bool>) {
        let interval = Duration::from_millis(self.settings.tier_check_interval_ms.max(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
            self.retire_old_segments().await;
        }
    }

    /// One round: where this node is a PRIMARY of a group with secondaries.
    async fn retire_old_segments(&self) {
        let model = self.model();
        let me = self.settings.node.name.clone();
        for group in model.groups.keys().filter(|g| *g != ADMIN) {
            if model.role(group, &me) != Some(Role::Primary) {
                continue;
            }
            for context in model.contexts_of(group) {
                let secondaries = self.secondaries_of(&context);
                if secondaries.is_empty() {
                    continue;
                }
                let Some(held) = self.held_by_all(&context, &secondaries).await else { continue };
                let Some(Ok(store)) = self.contexts.get(&context) else { continue };
                let events = store.events;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64);
                let cutoff = now.saturating_sub(self.settings.event_retention_ms as i64);
                let retired = tokio::task::spawn_blocking(move || {
                    let closed = events.closed_segments();
                    let due = retirements(&closed, held, |next| {
                        events.first_timestamp(next).ok().flatten().is_some_and(|at| at < cutoff)
                    });
                    let mut retired = 0;
                    for first in &due {
                        match events.retire(*first) {
                            Ok(()) => retired += 1,
                            Err(StoreError::Pinned { .. }) => {
                                tracing::debug!(context = events.context(), segment = first, "a backup copies the segment: retired later");
                                break;
                            }
                            Err(error) => {
                                tracing::error!(context = events.context(), segment = first, %error, "failed to retire a segment");
                                break;
                            }
                        }
                    }
                    retired
                })
                .await;
                if let Ok(count) = retired
                    && count > 0
                {
                    tracing::info!(%context, segments = count, "segments retired to the secondary tier");
                }
            }
        }
    }

    /// The least next token of `context` over every secondary; `None` when
    /// one cannot be asked or does not store the context.
    async fn held_by_all(&self, context: &str, secondaries: &[String]) -> Option<u64> {
        let mut held = u64::MAX;
        for addr in secondaries {
            let mut client = self.transport.cluster_client(addr).ok()?;
            let query = StoreStateQuery { context: context.to_owned() };
            let call = client.store_state(self.with_token(query));
            let reply = tokio::time::timeout(TIER_STATE_TIMEOUT, call).await.ok()?.ok()?.into_inner();
            if !reply.stored {
                return None;
            }
            held = held.min(reply.next_token);
        }
        Some(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(first: u64, next: u64, retired: bool) -> ClosedSegment {
        ClosedSegment { first_token: first, next_token: next, len: 10, retired }
    }

    #[test]
    fn only_old_segments_every_secondary_holds_retire_oldest_first() {
        let closed = [segment(0, 10, true), segment(10, 20, false), segment(20, 30, false), segment(30, 40, false)];
        // Every segment is old enough: the secondaries' progress decides.
        assert_eq!(retirements(&closed, 40, |_| true), vec![10, 20, 30]);
        assert_eq!(retirements(&closed, 35, |_| true), vec![10, 20]);
        assert_eq!(retirements(&closed, 19, |_| true), Vec::<u64>::new());
        // Age decides next, judged by the segment after: 30 is too young.
        assert_eq!(retirements(&closed, 40, |next| next < 30), vec![10]);
        // A young segment stops the round even if a later one looks old.
        assert_eq!(retirements(&closed, 40, |next| next != 20), Vec::<u64>::new());
        assert!(retirements(&[], 100, |_| true).is_empty());
    }
}
