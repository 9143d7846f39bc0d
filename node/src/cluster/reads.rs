//! Reads: where a context's clients should connect (`redirect_clients`:
//! backups and secondaries send them to a primary), and read-your-writes
//! on any replica (`await_current`: a replica that does not lead waits
//! until it has applied what its leader had when asked).

use super::*;

/// Longest wait of a read on a replica for being as current as its leader.
pub(super) const READ_CURRENT_TIMEOUT: Duration = Duration::from_secs(5);

/// On a group's leader: the log index a read must see applied to include
/// every confirmed write (openraft's read index, at least the leader's
/// first entry of its term), with leadership confirmed by its lease, else
/// by a round of heartbeats. `None` when this node does not lead.
pub(super) async fn read_index(raft: &GroupRaft) -> Option<u64> {
    use openraft::ReadPolicy;
    match raft.get_read_log_id(ReadPolicy::LeaseRead).await {
        Ok((read, _)) => Some(read.index()),
        Err(_) => raft.get_read_log_id(ReadPolicy::ReadIndex).await.ok().map(|(read, _)| read.index()),
    }
}

impl Cluster {
    /// Where clients of `context` should connect instead of this node: a
    /// PRIMARY of the context's group (its leader when known here), when
    /// this node's role there does not serve clients (a backup or a
    /// secondary). `None`: this node serves them (as a primary, a
    /// messaging-only member, or a node outside the group that passes
    /// their calls on).
    pub fn redirect_clients(&self, context: &str) -> Option<NodeInfo> {
        use openraft::type_config::async_runtime::WatchReceiver;
        let model = self.model();
        let group = model.group_of(context)?;
        let role = model.role(group, &self.settings.node.name)?;
        if role.serves_clients() {
            return None;
        }
        let leader = self.groups.get(group).and_then(|raft| leader_name(&raft.metrics().borrow_watched()));
        let primaries = model.groups.get(group)?.members.iter().filter(|(_, r)| **r == Role::Primary);
        let chosen = leader
            .filter(|name| model.role(group, name) == Some(Role::Primary))
            .or_else(|| primaries.map(|(name, _)| name.clone()).next())?;
        model.nodes.get(&chosen).cloned()
    }

    /// Waits until this node's replica of `context` is as current as its
    /// group's leader: it has applied what the leader had applied when
    /// asked, so a client reads its own confirmed writes on any replica.
    /// The leader waits for its own read index (see [`read_index`]); a
    /// node without a replica (its reads are passed on to one) answers at
    /// once. Fails when no leader answers, or
    /// this replica does not catch up, within `READ_CURRENT_TIMEOUT`.
    pub async fn await_current(&self, context: &str) -> Result<(), WriteError> {
        let model = self.model();
        let Some(group) = model.group_of(context).filter(|_| context != ADMIN) else { return Ok(()) };
        let Some(raft) = self.groups.get(group) else { return Ok(()) };
        let behind = |what: String| WriteError::NoLeader(format!("reads of {context} wait for {what}"));
        let deadline = tokio::time::Instant::now() + READ_CURRENT_TIMEOUT;
        // Leadership may move while asking (a new election, a restarted
        // node's higher term): ask again whoever leads then, until the deadline.
        let applied = loop {
            let (leader, addr, term) = {
                use openraft::type_config::async_runtime::WatchReceiver;
                let watched = raft.metrics();
                let metrics = watched.borrow_watched();
                let leader = metrics.current_leader;
                let addr = leader.and_then(|id| {
                    let listed = metrics.membership_config.membership().get_node(&id).map(|n| n.internal_addr.clone());
                    self.addresses.get(id).or(listed)
                });
                (leader, addr, metrics.current_term)
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let failed = match (leader, addr) {
                // This node leads: its own read index (a new leader may not
                // have applied its predecessor's last confirmed writes yet).
                (Some(id), _) if id == self.node_id => match read_index(&raft).await {
                    Some(index) => break index,
                    None => format!("this node to confirm it leads replication group {group}"),
                },
                (Some(_), Some(addr)) => {
                    let mut client =
                        self.transport.cluster_client(&addr).map_err(|e| WriteError::Failed(e.to_string()))?;
                    let query = MembershipQuery { group: group.to_owned(), skip_read_index: false };
                    match tokio::time::timeout(left, client.membership(self.with_token(query))).await {
                        Ok(Ok(reply)) if reply.get_ref().leader => break reply.into_inner().read_index,
                        _ => format!("an answer from the leader of replication group {group}"),
                    }
                }
                _ => format!("a leader of replication group {group}"),
            };
            // Wait for the leadership to change (or a short while, for a
            // leader that could not reach its quorum for a moment).
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(behind(failed));
            }
            let pause = left.min(Duration::from_millis(self.settings.election_timeout_max_ms));
            let changed = |m: &openraft::RaftMetrics<crate::raft::types::TypeConfig>| {
                m.current_leader.is_some() && (m.current_leader != leader || m.current_term != term)
            };
            let _ = raft.wait(Some(pause)).metrics(changed, "a change of leader").await;
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match raft.wait(Some(left)).applied_index_at_least(Some(applied), "the leader's read index").await {
            Ok(_) => Ok(()),
            Err(_) => Err(behind(format!("this replica to catch up with its leader (log index {applied})"))),
        }
    }
}
