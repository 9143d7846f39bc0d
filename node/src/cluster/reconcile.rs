//! The reconciler: makes this node follow the cluster model, one step at a
//! time, on every model change and once a second (so an interrupted step is
//! retried, and a leader that changes picks up where the old one stopped).
//!
//! - Groups: a node opens the Raft of every group it stores (any role but
//!   MESSAGING_ONLY) and the stores of the group's contexts; a founding
//!   member initialises the group's Raft with the founding primaries — or,
//!   where the stores of its contexts hold transactions already (a
//!   restore), starts the group's log after them. A
//!   node that left a group (or whose group was deleted) closes it once the
//!   group's Raft no longer counts it, and deletes its files unless the
//!   removal asked to preserve them.
//! - Membership: where this node leads a group, it changes the group's Raft
//!   membership towards the roles — one change at a time: add a missing
//!   member as a learner; promote a caught-up learner that should be a
//!   PRIMARY; demote a voter whose role is now a backup or secondary (it
//!   stays a learner with all its files: a role change in place); remove a
//!   member the model no longer lists. A leader about to demote or remove
//!   itself hands leadership to a caught-up primary first.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::type_config::async_runtime::WatchReceiver;
use ranvier_proto::cluster::MembershipQuery;
use tokio::sync::watch;

use super::model::{ADMIN, ClusterModel};
use super::roles::{RaftOf, RaftShape};
use super::{Cluster, node_id};
use crate::raft::GroupRaft;
use crate::raft::log_store;
use crate::raft::state_machine;
use crate::raft::types::MemberNode;

/// How often the reconciler runs without a model change.
const TICK: Duration = Duration::from_secs(1);
/// Longest wait for one membership change.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A learner this close to the leader's log may become a voter.
const PROMOTE_LAG_ENTRIES: u64 = 256;

impl Cluster {
    pub(super) async fn run_reconciler(&self, mut stopping: watch::Receiver<bool>) {
        let mut model = self.model.clone();
        loop {
            // After a membership step, the next one follows at once.
            if self.reconcile().await {
                continue;
            }
            tokio::select! {
                _ = model.changed() => {}
                _ = tokio::time::sleep(TICK) => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
        }
    }

    /// One pass over the model; true when a membership change was made.
    pub(super) async fn reconcile(&self) -> bool {
        let model = self.model();
        if !model.initialized() {
            return false;
        }
        super::record_addresses(&self.addresses, &model);
        let me = self.settings.node.name.clone();
        for (group, info) in &model.groups {
            if group == ADMIN || !info.members.get(&me).is_some_and(|role| role.stores_events()) {
                continue;
            }
            if let Err(error) = self.host_group(&model, group).await {
                tracing::warn!(%group, %error, "failed to open a replication group; retrying");
            }
        }
        self.close_deleted_contexts(&model).await;
        for group in self.groups.names() {
            if group == ADMIN {
                continue;
            }
            let stores = model.role(&group, &me).is_some_and(|role| role.stores_events());
            if !stores {
                self.leave_group(&model, &group).await;
            }
        }
        let mut changed = false;
        for group in self.groups.names() {
            let Some(raft) = self.groups.get(&group) else { continue };
            match self.reconcile_membership(&model, &group, &raft).await {
                Ok(step) => changed |= step,
                Err(error) => tracing::info!(%group, %error, "membership change not done yet; retrying"),
            }
        }
        changed
    }

    async fn host_group(&self, model: &ClusterModel, group: &str) -> Result<(), String> {
        let raft = match self.groups.get(group) {
            Some(raft) => raft,
            None => {
                self.found_over_stores(model, group).await?;
                self.open_group(group).await.map_err(|e| e.to_string())?
            }
        };
        let Some(info) = model.groups.get(group) else { return Ok(()) };
        if info.initial.contains(&self.settings.node.name) && !raft.is_initialized().await.map_err(|e| e.to_string())? {
            let members: BTreeMap<u64, MemberNode> = info
                .initial
                .iter()
                .filter_map(|name| model.nodes.get(name))
                .map(|node| (node_id(&node.name), Cluster::member_node(node)))
                .collect();
            raft.initialize(members).await.map_err(|e| e.to_string())?;
            tracing::info!(%group, "initialised replication group with its founding primaries");
        }
        let mut hosted = self.hosted.lock().await;
        let contexts = hosted.entry(group.to_owned()).or_default();
        for context in model.contexts_of(group) {
            if contexts.insert(context.clone()) {
                let opener = self.contexts.clone();
                let name = context.clone();
                let opened = tokio::task::spawn_blocking(move || opener.ensure(&name)).await;
                match opened {
                    Ok(Ok(store)) => {
                        let tier = super::tier::SecondaryTier::new(self.me.clone(), tokio::runtime::Handle::current());
                        store.events.set_lower_tier(std::sync::Arc::new(tier));
                    }
                    Ok(Err(reason)) => tracing::error!(%context, %reason, "context store is stopped"),
                    Err(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Where this node founds `group` and the stores of its contexts hold
    /// transactions already (restored from a backup, or kept when their
    /// context was deleted), starts the group's log after them instead of
    /// at an empty log (see [`state_machine::found_over_stores`]); the
    /// members that join later catch up from these stores.
    async fn found_over_stores(&self, model: &ClusterModel, group: &str) -> Result<(), String> {
        let Some(info) = model.groups.get(group) else { return Ok(()) };
        if !info.initial.contains(&self.settings.node.name) {
            return Ok(());
        }
        let dir = self.settings.log_dir.join(group);
        let contexts = model.contexts_of(group);
        let (opener, names, at) = (self.contexts.clone(), contexts.clone(), dir.clone());
        let held = tokio::task::spawn_blocking(move || -> Result<u64, String> {
            if !log_store::is_fresh(&at).map_err(|e| e.to_string())? {
                return Ok(0);
            }
            let mut highest = 0;
            for name in &names {
                let store = opener.ensure(name)?;
                highest = highest.max(store.events.last_log_index()).max(store.snapshots.last_log_index());
            }
            Ok(highest)
        })
        .await
        .map_err(|e| e.to_string())??;
        if held == 0 {
            return Ok(());
        }
        if info.initial.len() != 1 {
            return Err(format!(
                "the stores of {group} hold transactions here already (restored or kept), so this node must found \
                 the group alone, not with {:?}",
                info.initial
            ));
        }
        let index = state_machine::log_index_of(held);
        let members = BTreeMap::from([(self.node_id, Cluster::member_node(&self.settings.node))]);
        let (me, source) = (self.node_id, self.settings.node.internal_addr.clone());
        let contexts: BTreeSet<String> = contexts.into_iter().collect();
        tokio::task::spawn_blocking(move || {
            state_machine::found_over_stores(&dir, index, me, members, contexts, source)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        tracing::info!(%group, index, "founded the group over stores that hold transactions: its log starts after them");
        Ok(())
    }

    async fn close_deleted_contexts(&self, model: &ClusterModel) {
        let mut hosted = self.hosted.lock().await;
        for contexts in hosted.values_mut() {
            let gone: Vec<String> = contexts.iter().filter(|c| !model.contexts.contains_key(*c)).cloned().collect();
            for context in gone {
                contexts.remove(&context);
                let preserve = model.deleted_contexts.get(&context).is_none_or(|d| d.preserve);
                self.close_context(context, preserve).await;
            }
        }
    }

    async fn close_context(&self, context: String, preserve: bool) {
        let contexts = self.contexts.clone();
        let name = context.clone();
        match tokio::task::spawn_blocking(move || contexts.remove(&name, preserve)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%context, %error, "failed to delete the context's files"),
            Err(error) => tracing::error!(%context, %error, "failed to close the context"),
        }
    }

    /// Closes a group this node no longer stores, once its Raft no longer
    /// counts this node (or the group is gone).
    async fn leave_group(&self, model: &ClusterModel, group: &str) {
        let Some(raft) = self.groups.get(group) else { return };
        if model.groups.contains_key(group) && self.still_counted(group, &raft).await {
            return;
        }
        let preserve =
            model.departed.get(group).and_then(|d| d.get(&self.settings.node.name)).is_none_or(|d| d.preserve);
        if let Err(error) = raft.shutdown().await {
            tracing::warn!(%group, %error, "replication group did not stop cleanly");
        }
        self.groups.remove(group);
        self.batchers.remove(group);
        let contexts = self.hosted.lock().await.remove(group).unwrap_or_default();
        for context in contexts {
            self.close_context(context, preserve).await;
        }
        if !preserve {
            let dir = self.settings.log_dir.join(group);
            if let Err(error) = tokio::fs::remove_dir_all(&dir).await
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::error!(%group, %error, "failed to delete the replication log");
            }
        }
        tracing::info!(%group, preserve, "left replication group");
    }

    /// Whether `group`'s Raft still counts this node: its own membership
    /// does, unless the leader (which stops replicating to a removed member,
    /// so its own view can stay stale) says otherwise.
    async fn still_counted(&self, group: &str, raft: &GroupRaft) -> bool {
        let metrics = raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        if membership.get_node(&self.node_id).is_none() {
            return false;
        }
        if metrics.current_leader == Some(self.node_id) {
            return true;
        }
        let model = self.model();
        let Some(info) = model.groups.get(group) else { return false };
        for (name, _) in info.members.iter().filter(|(_, role)| role.raft_shape() == RaftShape::Voter) {
            let Some(node) = model.nodes.get(name) else { continue };
            let Ok(mut client) = self.transport.cluster_client(&node.internal_addr) else { continue };
            // Only the members matter here, not a read index.
            let query = MembershipQuery { group: group.to_owned(), skip_read_index: true };
            if let Ok(Ok(reply)) = tokio::time::timeout(TICK, client.membership(self.with_token(query))).await {
                let reply = reply.into_inner();
                if reply.leader {
                    return reply.members.contains(&self.settings.node.name);
                }
            }
        }
        true
    }

    /// Where this node leads `group`: one step of its Raft membership
    /// towards the model's roles.
    async fn reconcile_membership(&self, model: &ClusterModel, group: &str, raft: &GroupRaft) -> Result<bool, String> {
        let metrics = raft.metrics().borrow_watched().clone();
        if metrics.current_leader != Some(self.node_id) {
            return Ok(false);
        }
        let Some(info) = model.groups.get(group) else { return Ok(false) };
        let membership = metrics.membership_config.membership().clone();
        let change = |what: String| async move {
            tracing::info!(%group, change = %what, "changing replication group membership");
        };
        // A change whose second step was lost with a leader change leaves
        // the group in a joint config: finish it towards the newer half,
        // keeping removed voters as learners (the next pass removes those
        // the model no longer lists).
        if let [.., newer] = membership.get_joint_config().as_slice()
            && membership.get_joint_config().len() > 1
        {
            let target = newer.clone();
            change(format!("finish the joint membership towards voters {target:?}")).await;
            timed(raft.change_membership(ChangeMembers::ReplaceAllVoters(target), true)).await?;
            return Ok(true);
        }
        let mut desired: BTreeMap<u64, (MemberNode, RaftShape)> = BTreeMap::new();
        for (name, role) in &info.members {
            let Some(node) = model.nodes.get(name) else { continue };
            let shape = role.raft_shape();
            if shape != RaftShape::None {
                desired.insert(node_id(name), (Cluster::member_node(node), shape));
            }
        }
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let present: BTreeSet<u64> = membership.nodes().map(|(id, _)| *id).collect();
        let last = metrics.last_log_index.unwrap_or(0);
        let matched =
            |id: &u64| metrics.replication.as_ref().and_then(|r| r.get(id).cloned().flatten()).map_or(0, |l| l.index);

        // 0. Members that moved: their membership entry takes the model's
        //    address (the links already follow `addresses`).
        let moved: BTreeMap<u64, MemberNode> = desired
            .iter()
            .filter(|(id, (node, _))| membership.get_node(id).is_some_and(|known| known != node))
            .map(|(id, (node, _))| (*id, node.clone()))
            .collect();
        if !moved.is_empty() {
            let names: Vec<&str> = moved.values().map(|n| n.name.as_str()).collect();
            change(format!("record the new address of {}", names.join(", "))).await;
            timed(raft.change_membership(ChangeMembers::SetNodes(moved), false)).await?;
            return Ok(true);
        }
        // 1. Add missing members as learners (they catch up from the log).
        if let Some((id, (node, _))) = desired.iter().find(|(id, _)| !present.contains(id)) {
            change(format!("add {} as a learner", node.name)).await;
            timed(raft.add_learner(*id, node.clone(), false)).await?;
            return Ok(true);
        }
        // 2. Promote caught-up learners that should vote.
        if let Some((id, (node, _))) = desired
            .iter()
            .find(|(id, (_, shape))| *shape == RaftShape::Voter && !voters.contains(id))
            .filter(|(id, _)| matched(id) + PROMOTE_LAG_ENTRIES >= last)
        {
            change(format!("make {} a voter", node.name)).await;
            timed(raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([*id])), false)).await?;
            return Ok(true);
        }
        // 3. Demote voters whose role no longer votes, keeping them as learners.
        let demote = voters.iter().find(|id| desired.get(id).is_some_and(|(_, shape)| *shape == RaftShape::Learner));
        // 4. Remove members the model no longer lists (or lists as MESSAGING_ONLY).
        let remove = present.iter().find(|id| !desired.contains_key(id));
        for (id, keep) in [(demote, true), (remove, false)] {
            let Some(id) = id.copied() else { continue };
            if id == self.node_id {
                return self.hand_over(raft, &desired, &voters, &matched, last).await.map(|()| false);
            }
            let name = membership.get_node(&id).map(|n| n.name.clone()).unwrap_or_default();
            if voters.contains(&id) {
                let what = if keep { "make {} a learner" } else { "remove voter {}" };
                change(what.replace("{}", &name)).await;
                timed(raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), keep)).await?;
            } else {
                change(format!("remove learner {name}")).await;
                timed(raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)).await?;
            }
            return Ok(true);
        }
        Ok(false)
    }

    /// Hands leadership to a caught-up voter that stays a voter, so that
    /// it can demote or remove this node.
    async fn hand_over(
        &self,
        raft: &GroupRaft,
        desired: &BTreeMap<u64, (MemberNode, RaftShape)>,
        voters: &BTreeSet<u64>,
        matched: &impl Fn(&u64) -> u64,
        last: u64,
    ) -> Result<(), String> {
        let successor = voters
            .iter()
            .filter(|id| **id != self.node_id)
            .filter(|id| desired.get(id).is_some_and(|(_, shape)| *shape == RaftShape::Voter))
            .max_by_key(|id| matched(id));
        let Some(successor) = successor.copied() else {
            return Err("no other primary can take over the leadership yet".into());
        };
        if matched(&successor) < last {
            return Err("the next leader is still catching up".into());
        }
        tracing::info!(to = successor, "handing leadership over before this node's role changes");
        raft.trigger().transfer_leader(successor).await.map_err(|e| e.to_string())
    }
}

async fn timed<T, E: std::fmt::Display>(change: impl Future<Output = Result<T, E>>) -> Result<(), String> {
    match tokio::time::timeout(CHANGE_TIMEOUT, change).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("not done within {} s", CHANGE_TIMEOUT.as_secs())),
    }
}
