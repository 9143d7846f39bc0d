//! The write path: a client transaction or an admin change goes to its
//! group's leader — proposed here when this node leads (transactions join
//! the leader's next batched entry, `batch`), forwarded to the leader's
//! internal port otherwise, and from a node that hosts no replica of the
//! group (MESSAGING_ONLY, or outside the group) handed to a storing
//! member, which forwards it (`relay_to_member`). Axon's commit rule is
//! kept here: Raft commits on the primaries' majority, and the leader
//! confirms a client's write only once `min-active-backups` active backups
//! hold it, refusing new writes while fewer are in sync. A leader below
//! its disk reserve takes no new transactions (AXONIQ-9100).

use super::*;

/// Attempts of a write while leadership settles.
pub(super) const WRITE_ATTEMPTS: u32 = 50;

/// A write not committed within this time is answered with a timeout (it
/// may still commit later; it was never confirmed). Bounds how long a node
/// cut off from its group's majority keeps clients waiting.
pub(super) const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause before retrying a write that a leader in transition did not take
/// (`WRITE_ATTEMPTS` of them bound the wait to about a second).
pub(super) const LEADERSHIP_SETTLE_PAUSE: Duration = Duration::from_millis(20);

/// Longest wait for the answer to a forwarded command: longer than a
/// commit (`COMMIT_TIMEOUT`) plus a leader change at the receiving end, so
/// it only ends calls that would otherwise wait forever.
pub(super) const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);

/// The Axon error code of a write refused for lack of disk space (as on a
/// single node: a data file cannot be written).
pub(super) const DISK_FULL_CODE: &str = "AXONIQ-9100";

/// What a proposal came to, and where in its group's log.
#[derive(Debug)]
pub(super) struct Proposed {
    pub(super) response: GroupResponse,
    /// The entry's log index (0 when a forwarded write does not say).
    pub(super) index: u64,
}

/// Where a write goes next (`Cluster::route`).
enum Route {
    /// To the group's leader: its id and internal address.
    Leader(u64, String),
    /// Proposed here, or refused.
    Done(Result<Proposed, WriteError>),
    /// Again after a pause: a leader in transition did not take it.
    Retry(String),
}

pub(super) fn applied(response: GroupResponse) -> Result<(), WriteError> {
    match response {
        GroupResponse::Refused { code, message } => Err(WriteError::Refused { code, message }),
        GroupResponse::Applied | GroupResponse::Appended { .. } | GroupResponse::Batch(_) => Ok(()),
    }
}

impl Cluster {
    /// Stores a client transaction through the context's group: here when
    /// this node leads, else at the leader.
    pub async fn append(&self, context: &str, events: Vec<Bytes>, snapshot: bool) -> Result<u64, WriteError> {
        let command = if snapshot {
            let event = events.into_iter().next().unwrap_or_default();
            GroupCommand::AppendSnapshot { context: context.to_owned(), snapshot: event }
        } else {
            GroupCommand::AppendEvents { context: context.to_owned(), events }
        };
        match self.propose_write(context, command, true).await?.response {
            GroupResponse::Appended { first_token } => Ok(first_token),
            GroupResponse::Refused { code, message } => Err(WriteError::Refused { code, message }),
            GroupResponse::Applied | GroupResponse::Batch(_) => {
                Err(WriteError::Failed("the entry stored nothing".into()))
            }
        }
    }

    /// Waits up to `wait` until this node's model lists `context`.
    pub(super) async fn await_context(&self, context: &str, wait: Duration) {
        let mut model = self.model.clone();
        let _ = tokio::time::timeout(wait, model.wait_for(|m| m.group_of(context).is_some())).await;
    }

    pub(super) async fn propose_write(
        &self,
        context: &str,
        command: GroupCommand,
        relay: bool,
    ) -> Result<Proposed, WriteError> {
        let model = self.model();
        let Some(group) = model.group_of(context).filter(|_| context != ADMIN) else {
            let message = format!("No eventstore found for context {context}");
            return Err(WriteError::Refused { code: "AXONIQ-6000".into(), message });
        };
        self.propose(group, command, relay).await
    }

    /// Proposes a command to `group`: on this node when it leads (client
    /// transactions in the group's next batch), else at the leader (when
    /// `relay`); from a node that hosts no replica, at a member that does.
    pub(super) async fn propose(
        &self,
        group: &str,
        command: GroupCommand,
        relay: bool,
    ) -> Result<Proposed, WriteError> {
        let transaction = matches!(command, GroupCommand::AppendEvents { .. } | GroupCommand::AppendSnapshot { .. });
        if transaction && self.leads(group) {
            return self.propose_batched(group, command, relay).await;
        }
        self.propose_now(group, command, relay).await
    }

    /// Whether this node leads `group`, as its Raft metrics say now.
    pub(super) fn leads(&self, group: &str) -> bool {
        use openraft::type_config::async_runtime::WatchReceiver;
        self.groups.get(group).is_some_and(|raft| raft.metrics().borrow_watched().current_leader == Some(self.node_id))
    }

    /// The leader of `group` and its internal address, when this node's
    /// Raft knows one that is not this node (a follower forwards there
    /// without asking its own Raft first: one task hand-off less per write).
    fn leader_elsewhere(&self, raft: &GroupRaft) -> Option<(u64, String)> {
        use openraft::type_config::async_runtime::WatchReceiver;
        let leader = raft.metrics().borrow_watched().current_leader?;
        if leader == self.node_id {
            return None;
        }
        Some((leader, self.addresses.get(leader)?))
    }

    /// `Err(AXONIQ-9100)` while this node is below its disk reserve: as a
    /// leader it then proposes no new transactions, so that what was
    /// committed before still has the reserve to land in.
    pub(super) fn check_reserve(&self, group: &str) -> Result<(), WriteError> {
        self.reserve.check().map_err(|full| WriteError::Refused {
            code: DISK_FULL_CODE.into(),
            message: format!("node {}, leader of replication group {group}: {full}", self.name()),
        })
    }

    /// [`Self::propose`] of this command alone, as one entry.
    pub(super) async fn propose_now(
        &self,
        group: &str,
        command: GroupCommand,
        relay: bool,
    ) -> Result<Proposed, WriteError> {
        let Some(raft) = self.groups.get(group) else {
            if !relay {
                return Err(WriteError::NoLeader(format!("replication group {group} is not hosted here")));
            }
            return self.relay_to_member(group, &command).await;
        };
        let mut waiting_since: Option<tokio::time::Instant> = None;
        let mut last_refusal = String::new();
        // Client data (not admin changes) is subject to the active-backup rule.
        let data = !matches!(command, GroupCommand::Admin(_));
        for _ in 0..WRITE_ATTEMPTS {
            if data {
                // Where this node leads (a follower's write goes to the
                // leader, which checks its own). One that took office so
                // lately that its metrics do not say so yet may propose an
                // entry unchecked: the reserve has room for it.
                if self.leads(group) {
                    self.check_reserve(group)?;
                }
                self.check_active_backups(group, &raft)?;
            }
            let (leader, addr) = match self.route(group, &raft, &command, relay, data).await {
                Route::Leader(leader, addr) => (leader, addr),
                Route::Done(answer) => return answer,
                Route::Retry(reason) => {
                    last_refusal = reason;
                    tokio::time::sleep(LEADERSHIP_SETTLE_PAUSE).await;
                    continue;
                }
            };
            match self.forward_to_leader(&addr, &command).await {
                // The leader it knows is gone and never got the write: wait
                // for the group's next leader (or that one back), within the
                // bound, and try again.
                Err(WriteError::Unreached(reason)) => {
                    let since = *waiting_since.get_or_insert_with(tokio::time::Instant::now);
                    self.await_another_leader(group, &raft, leader, since, &reason).await?;
                    last_refusal = reason;
                }
                answer => return answer,
            }
        }
        Err(WriteError::NoLeader(format!(
            "no leader accepted the write for replication group {group} ({last_refusal})"
        )))
    }

    /// Where a write goes next, as this node's Raft sees it: a follower
    /// that knows its leader forwards at once (when it may `relay`); else
    /// the local Raft takes the write or says where the leader is.
    async fn route(&self, group: &str, raft: &GroupRaft, command: &GroupCommand, relay: bool, data: bool) -> Route {
        if let Some((leader, addr)) = self.leader_elsewhere(raft).filter(|_| relay) {
            return Route::Leader(leader, addr);
        }
        let error = match tokio::time::timeout(COMMIT_TIMEOUT, raft.client_write(command.clone())).await {
            Ok(Ok(written)) => {
                if data && let Err(error) = self.await_active_backups(group, raft, written.log_id.index).await {
                    return Route::Done(Err(error));
                }
                return Route::Done(Ok(Proposed { response: written.data, index: written.log_id.index }));
            }
            Ok(Err(error)) => error,
            Err(_) => {
                let message = format!("not committed within {} s in group {group}", COMMIT_TIMEOUT.as_secs());
                return Route::Done(Err(WriteError::Timeout(message)));
            }
        };
        let Some(forward) = error.forward_to_leader() else {
            return Route::Done(Err(WriteError::Failed(error.to_string())));
        };
        match (&forward.leader_id, &forward.leader_node) {
            (Some(leader), Some(node)) if *leader != self.node_id => {
                if !relay {
                    return Route::Done(Err(WriteError::NotLeader(format!("this node does not lead group {group}"))));
                }
                Route::Leader(*leader, self.addresses.get(*leader).unwrap_or_else(|| node.internal_addr.clone()))
            }
            // A leader in transition did not take it.
            (Some(_), _) => Route::Retry(error.to_string()),
            (None, _) => {
                let wait = Duration::from_millis(self.settings.election_timeout_max_ms);
                let known = raft.wait(Some(wait)).metrics(|m| m.current_leader.is_some(), "a leader").await;
                if known.is_err() {
                    return Route::Done(Err(WriteError::NoLeader(format!("no leader for replication group {group}"))));
                }
                // A leader is known but did not take the write (it is still
                // taking office, or stepping down): give it a moment.
                Route::Retry(error.to_string())
            }
        }
    }

    /// Sends a write to its group's leader at internal `addr`: a client
    /// transaction in the next batch there (`forwarding`), an admin change
    /// on its own.
    async fn forward_to_leader(&self, addr: &str, command: &GroupCommand) -> Result<Proposed, WriteError> {
        match forwarded_append(command, false) {
            Some(append) => self.forward_batched(addr, append).await,
            None => self.forward(addr, command, false).await,
        }
    }

    /// After the leader `gone` could not be reached: waits for the group's
    /// next leader (or that one back), `Err` once the wait for a reachable
    /// leader that began at `since` is over.
    async fn await_another_leader(
        &self,
        group: &str,
        raft: &GroupRaft,
        gone: u64,
        since: tokio::time::Instant,
        reason: &str,
    ) -> Result<(), WriteError> {
        // By default an election (detection within the max election
        // timeout, then a vote) and a margin for a split vote.
        let leader_wait = Duration::from_millis(self.settings.wait_for_leader_ms);
        let left = (since + leader_wait).saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(WriteError::NoLeader(format!(
                "no leader of group {group} could be reached within {} ms: {reason}",
                leader_wait.as_millis()
            )));
        }
        let next =
            |m: &openraft::RaftMetrics<crate::raft::types::TypeConfig>| m.current_leader.is_some_and(|l| l != gone);
        if raft.wait(Some(left)).metrics(next, "another leader").await.is_err() {
            // None came: that leader may be back; one more try, if time is left.
            tokio::time::sleep(LEADERSHIP_SETTLE_PAUSE).await;
        }
        Ok(())
    }

    /// From a node without a replica of `group` (MESSAGING_ONLY, or not a
    /// member): hands the command to a storing member, which forwards it
    /// to the leader.
    pub(super) async fn relay_to_member(&self, group: &str, command: &GroupCommand) -> Result<Proposed, WriteError> {
        let model = self.model();
        let members = model.primaries_except(group, &self.settings.node.name);
        let mut last = WriteError::NoLeader(format!("replication group {group} has no reachable primary"));
        for member in members {
            match self.forward(&member.internal_addr, command, true).await {
                Err(error @ (WriteError::NoLeader(_) | WriteError::Unreached(_))) => last = error,
                other => return other,
            }
        }
        Err(last)
    }

    /// Active backups of `group`, as Raft node ids, and how many of them
    /// must hold a write: the group's own figure, else this node's
    /// `min-active-backups`.
    pub(super) fn active_backups(&self, group: &str) -> (Vec<u64>, usize) {
        let model = self.model();
        let Some(info) = model.groups.get(group) else { return (Vec::new(), 0) };
        let backups = info.members.iter().filter(|(_, r)| **r == Role::ActiveBackup).map(|(n, _)| node_id(n)).collect();
        let need = info.min_active_backups.map_or(self.settings.min_active_backups, |n| n as usize);
        (backups, need)
    }

    pub(super) fn backup_wait(&self) -> Duration {
        Duration::from_millis(self.settings.election_timeout_max_ms * 2)
    }

    /// On the leader: refuses a new write while fewer than
    /// `min-active-backups` active backups answered heartbeats recently.
    pub(super) fn check_active_backups(&self, group: &str, raft: &GroupRaft) -> Result<(), WriteError> {
        use openraft::Instant;
        use openraft::type_config::async_runtime::WatchReceiver;
        let (backups, need) = self.active_backups(group);
        if backups.is_empty() || need == 0 {
            return Ok(());
        }
        let metrics = raft.metrics().borrow_watched().clone();
        if metrics.current_leader != Some(self.node_id) {
            return Ok(());
        }
        // In sync: holds the whole log, or answered recently (openraft
        // refreshes the heartbeat metric lazily, so an idle group relies on
        // the first test).
        let last = metrics.last_log_index.unwrap_or(0);
        let recent = backups
            .iter()
            .filter(|id| {
                let holds_all = metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .is_some_and(|matched| matched.index >= last);
                let answered = metrics
                    .heartbeat
                    .as_ref()
                    .and_then(|h| h.get(id).cloned().flatten())
                    .is_some_and(|at| at.elapsed() <= self.backup_wait());
                // A replica below its disk reserve answers heartbeats but
                // takes no entries: it would not hold this write either.
                !self.addresses.refuses_entries(**id) && (holds_all || answered)
            })
            .count();
        if recent >= need { Ok(()) } else { Err(self.too_few_backups(group, recent, need, false)) }
    }

    /// Why a write is not confirmed: too few active backups in sync (and
    /// which are below their disk reserve). `committed`: the primaries
    /// already hold it, so it is a replication timeout (never proposed
    /// again by a relay), not a refusal.
    pub(super) fn too_few_backups(&self, group: &str, have: usize, need: usize, committed: bool) -> WriteError {
        let model = self.model();
        let full: Vec<&str> = model.groups.get(group).map_or_else(Vec::new, |g| {
            g.members
                .iter()
                .filter(|(name, role)| **role == Role::ActiveBackup && self.addresses.refuses_entries(node_id(name)))
                .map(|(name, _)| name.as_str())
                .collect()
        });
        let why = match full.is_empty() {
            true => String::new(),
            false => format!(" ({} below the disk reserve)", full.join(", ")),
        };
        let backups = match model.groups.get(group).and_then(|g| g.min_active_backups) {
            Some(_) => "required active backup(s) (the group's minActiveBackups)",
            None => "required active backup(s) (axoniq.axonserver.replication.min-active-backups)",
        };
        match committed {
            false => WriteError::NoLeader(format!(
                "replication group {group} accepts no writes: {have} of {need} {backups} are in sync{why}; \
                 writes resume when they are"
            )),
            true => WriteError::Timeout(format!(
                "the write is not confirmed: the primaries of replication group {group} hold it, but {have} \
                 of {need} {backups} do{why}"
            )),
        }
    }

    /// On the leader, after the commit: waits until `min-active-backups`
    /// active backups hold the entry before the write is confirmed.
    pub(super) async fn await_active_backups(
        &self,
        group: &str,
        raft: &GroupRaft,
        index: u64,
    ) -> Result<(), WriteError> {
        let (backups, need) = self.active_backups(group);
        if backups.is_empty() || need == 0 {
            return Ok(());
        }
        let holding = |m: &openraft::RaftMetrics<crate::raft::types::TypeConfig>| {
            let Some(replication) = m.replication.as_ref() else { return 0 };
            backups
                .iter()
                .filter(|id| replication.get(id).and_then(|l| l.as_ref()).is_some_and(|l| l.index >= index))
                .count()
        };
        let waited = raft.wait(Some(self.backup_wait())).metrics(|m| holding(m) >= need, "active backups").await;
        match waited {
            Ok(_) => Ok(()),
            Err(_) => {
                use openraft::type_config::async_runtime::WatchReceiver;
                let have = holding(&raft.metrics().borrow_watched().clone());
                Err(self.too_few_backups(group, have, need, true))
            }
        }
    }

    /// Sends a command to the node at internal `addr`, waiting at most
    /// `FORWARD_TIMEOUT` for its answer.
    pub(super) async fn forward(
        &self,
        addr: &str,
        command: &GroupCommand,
        relay: bool,
    ) -> Result<Proposed, WriteError> {
        match tokio::time::timeout(FORWARD_TIMEOUT, self.forward_once(addr, command, relay)).await {
            Ok(answer) => answer,
            Err(_) => Err(WriteError::Timeout(format!(
                "the node at {addr} did not answer within {} s; the change may or may not have been made",
                FORWARD_TIMEOUT.as_secs()
            ))),
        }
    }

    pub(super) async fn forward_once(
        &self,
        addr: &str,
        command: &GroupCommand,
        relay: bool,
    ) -> Result<Proposed, WriteError> {
        let mut client = self.transport.cluster_client(addr).map_err(|e| WriteError::Failed(e.to_string()))?;
        let unreachable = |s: Status| call_failure(addr, &s);
        if let Some(message) = forwarded_append(command, relay) {
            let reply = client.append(self.with_token(message)).await.map_err(unreachable)?.into_inner();
            return Ok(Proposed { response: rpc::append_response(reply), index: 0 });
        }
        // What is left is an admin change, or a batch (never forwarded).
        let GroupCommand::Admin(admin) = command else {
            return Err(WriteError::NotLeader("a batch is proposed where it was made".into()));
        };
        let command_json = serde_json::to_vec(admin).map_err(|e| WriteError::Failed(e.to_string()))?;
        let message = AdminProposal { command_json: command_json.into(), relay };
        let reply = client.propose(self.with_token(message)).await.map_err(unreachable)?.into_inner();
        let response = if reply.error_code.is_empty() {
            GroupResponse::Applied
        } else {
            GroupResponse::Refused { code: reply.error_code, message: reply.message }
        };
        Ok(Proposed { response, index: reply.log_index })
    }
}

/// A client transaction as it travels to another node (`relay`: the
/// receiver may forward it once more); `None` for an admin change or a
/// batch.
fn forwarded_append(command: &GroupCommand, relay: bool) -> Option<ForwardedAppend> {
    match command {
        GroupCommand::AppendEvents { context, events } => {
            Some(ForwardedAppend { context: context.clone(), events: events.clone(), snapshot: false, relay })
        }
        GroupCommand::AppendSnapshot { context, snapshot } => {
            Some(ForwardedAppend { context: context.clone(), events: vec![snapshot.clone()], snapshot: true, relay })
        }
        GroupCommand::Admin(_) | GroupCommand::Batch(_) => None,
    }
}

/// What a failed call to the node at `addr` means for the write it
/// carried. A proposal that timed out there may be stored: it stays a
/// timeout here, so that no relay proposes it again.
pub(super) fn call_failure(addr: &str, status: &Status) -> WriteError {
    match status.code() {
        tonic::Code::DeadlineExceeded => WriteError::Timeout(format!("the node at {addr}: {}", status.message())),
        tonic::Code::Unavailable if never_connected(status) => {
            WriteError::Unreached(format!("the node at {addr} could not be reached: {}", status.message()))
        }
        _ => WriteError::NoLeader(format!("the node at {addr} did not take the request: {}", status.message())),
    }
}

/// Whether a failed call provably never reached the other node: the
/// connection itself could not be made (refused, no route), so nothing was
/// sent.
fn never_connected(status: &Status) -> bool {
    let mut text = status.message().to_ascii_lowercase();
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        text.push_str(&error.to_string().to_ascii_lowercase());
        source = error.source();
    }
    text.contains("connect error") || text.contains("connection refused")
}
