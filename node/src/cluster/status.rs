//! The status of every replication group as this node sees it (the
//! `/v1/public/replicationgroups` shapes of `ranvier-wire`): leader, term,
//! indexes, and each member's role, Raft place and progress — lag and last
//! acknowledgement are known on the group's leader only — and what each
//! node says of itself (`NodeState`: version, uptime, free disk against its
//! reserve), asked of every node at once for the console's overview.

use ranvier_proto::cluster::{NodeStateQuery, NodeStateReply};

use super::*;

/// `id`'s place in the group's Raft membership as `metrics` know it.
pub(super) fn raft_place(metrics: &openraft::RaftMetrics<crate::raft::types::TypeConfig>, id: u64) -> roles::RaftShape {
    let membership = metrics.membership_config.membership();
    if membership.voter_ids().any(|v| v == id) {
        roles::RaftShape::Voter
    } else if membership.learner_ids().any(|l| l == id) {
        roles::RaftShape::Learner
    } else {
        roles::RaftShape::None
    }
}

/// The name of the group's leader, as these metrics know it.
pub(super) fn leader_name(metrics: &openraft::RaftMetrics<crate::raft::types::TypeConfig>) -> Option<String> {
    let membership = metrics.membership_config.membership();
    metrics.current_leader.and_then(|id| membership.get_node(&id).map(|n| n.name.clone()))
}

/// What a node with disk rule `reserve`, up for `uptime`, says of itself
/// (a standalone node's console asks itself this way too).
pub async fn node_state(reserve: crate::store::DiskReserve, uptime: Duration) -> NodeStateReply {
    let reserve_bytes = reserve.reserve_bytes();
    // statvfs is a system call on the file system: off the async workers.
    let (free_bytes, disk_error) = match tokio::task::spawn_blocking(move || reserve.least_free()).await {
        Ok(Ok(free)) => (free, String::new()),
        Ok(Err(error)) => (0, error.to_string()),
        Err(error) => (0, error.to_string()),
    };
    NodeStateReply {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_ms: u64::try_from(uptime.as_millis()).unwrap_or(u64::MAX),
        free_bytes,
        reserve_bytes,
        disk_error,
    }
}

/// How long the overview waits for a node to say how it is.
const NODE_STATE_TIMEOUT: Duration = Duration::from_secs(1);

impl Cluster {
    /// What this node says of itself (the NodeState call).
    pub async fn node_state(&self) -> NodeStateReply {
        node_state(self.reserve.clone(), self.started.elapsed()).await
    }

    /// What every node of the model says of itself, each asked at once with
    /// the time it took to answer; a node that does not answer within
    /// [`NODE_STATE_TIMEOUT`] is `Err` with why.
    pub async fn node_states(&self) -> BTreeMap<String, Result<(NodeStateReply, Duration), String>> {
        let model = self.model();
        let asks: Vec<_> = model
            .nodes
            .values()
            .map(|node| {
                let name = node.name.clone();
                if name == self.settings.node.name {
                    return (name, None);
                }
                let client = self.transport.cluster_client(&node.internal_addr);
                let request = self.with_token(NodeStateQuery {});
                let ask = tokio::spawn(async move {
                    let started = std::time::Instant::now();
                    let mut client = client.map_err(|e| e.to_string())?;
                    match tokio::time::timeout(NODE_STATE_TIMEOUT, client.node_state(request)).await {
                        Ok(Ok(reply)) => Ok((reply.into_inner(), started.elapsed())),
                        Ok(Err(status)) => Err(status.message().to_owned()),
                        Err(_) => Err(format!("no answer within {} ms", NODE_STATE_TIMEOUT.as_millis())),
                    }
                });
                (name, Some(ask))
            })
            .collect();
        let mut out = BTreeMap::new();
        for (name, ask) in asks {
            let state = match ask {
                None => Ok((self.node_state().await, Duration::ZERO)),
                Some(ask) => ask.await.unwrap_or_else(|e| Err(e.to_string())),
            };
            out.insert(name, state);
        }
        out
    }

    /// How long a group's replica here may go without word from its leader
    /// before the leader it names is taken as stale: two of the longest
    /// election timeouts.
    pub fn leader_silence_limit(&self) -> Duration {
        Duration::from_millis(2 * self.settings.election_timeout_max_ms)
    }

    /// Milliseconds without word from `group`'s leader (see
    /// `GroupStatus::leader_silent_ms`).
    fn leader_silence(
        &self,
        group: &str,
        metrics: Option<&openraft::RaftMetrics<crate::raft::types::TypeConfig>>,
        leads: bool,
    ) -> Option<u64> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if leads {
            // A sole voter is its own majority: nothing has to answer it.
            let sole = metrics.is_some_and(|m| m.membership_config.membership().voter_ids().count() == 1);
            if sole {
                return Some(0);
            }
            let acked = metrics.and_then(|m| m.last_quorum_acked.as_ref());
            return acked.map(|at| millis(openraft::Instant::elapsed(&**at)));
        }
        self.groups.leader_silence(group).map(millis)
    }

    /// Every replication group of the model as this node sees it: leader,
    /// members with roles (Axon's `/v1/public/replicationgroups` shape),
    /// contexts and, where this node hosts a replica, its Raft state; where
    /// it leads, each member's match index and lag.
    pub fn status(&self) -> Vec<GroupStatus> {
        use openraft::type_config::async_runtime::WatchReceiver;
        let model = self.model();
        let mut out = Vec::new();
        for (group, info) in &model.groups {
            let raft = self.groups.get(group);
            let metrics = raft.as_ref().map(|r| r.metrics().borrow_watched().clone());
            let leader = metrics.as_ref().and_then(leader_name);
            let last = metrics.as_ref().and_then(|m| m.last_log_index);
            // What this node's links learnt as the group's leader
            // (`_admin` entries pass a full disk).
            let leads = metrics.as_ref().is_some_and(|m| m.current_leader == Some(self.node_id));
            let members = info
                .members
                .iter()
                .map(|(node, role)| {
                    let id = node_id(node);
                    let raft = metrics.as_ref().map(|m| raft_place(m, id));
                    let match_index = metrics
                        .as_ref()
                        .and_then(|m| m.replication.as_ref())
                        .and_then(|r| r.get(&id).cloned().flatten())
                        .map(|l| l.index);
                    let last_ack_ms = metrics
                        .as_ref()
                        .and_then(|m| m.heartbeat.as_ref())
                        .and_then(|h| h.get(&id).cloned().flatten())
                        .map(|at| u64::try_from(openraft::Instant::elapsed(&*at).as_millis()).unwrap_or(u64::MAX));
                    MemberStatus {
                        node: node.clone(),
                        role: *role,
                        raft,
                        match_index,
                        lag: match_index.zip(last).map(|(m, l)| l.saturating_sub(m)),
                        last_ack_ms,
                        below_disk_reserve: (leads && group != ADMIN && id != self.node_id)
                            .then(|| self.addresses.refuses_entries(id)),
                    }
                })
                .collect();
            out.push(GroupStatus {
                name: group.clone(),
                leader,
                hosted: raft.is_some(),
                term: metrics.as_ref().map(|m| m.current_term),
                last_log_index: last,
                applied_index: metrics.as_ref().and_then(|m| m.last_applied.map(|id| id.index)),
                roles: info.members.iter().map(|(node, role)| MemberRole { node: node.clone(), role: *role }).collect(),
                members,
                contexts: model.contexts_of(group),
                min_active_backups: info.min_active_backups,
                leader_silent_ms: self.leader_silence(group, metrics.as_ref(), leads),
            });
        }
        out
    }
}
