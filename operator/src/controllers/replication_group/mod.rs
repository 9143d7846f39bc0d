//! The ReplicationGroup controller: from the spec's members and roles to
//! admin API calls against the running cluster, one change per reconcile.
//!
//! A reconcile reads the group's RanvierCluster (its node sets stand for
//! their pods), reads the group as the cluster has it — from any node,
//! then from the group's leader, the only node that knows how far each
//! member is behind and when it last answered — and asks the planner
//! (`plan`) for the calls that lead to the spec. It makes the first call
//! only and comes back soon for the next, so each change is judged against
//! the group as that change left it. A plan the planner refuses (no
//! PRIMARY left, or no majority of the primaries reachable) is not
//! started: the status says why (`Degraded`, reason `RoleChangeBlocked`),
//! a Warning Event is published, and the group is looked at again later
//! (a member that comes back may make the change safe). The status is what
//! the cluster reports, never the spec copied.
//!
//! Deleting a ReplicationGroup leaves the group and its events in the
//! cluster: removing stored events is a decision for `ranvierctl`.

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use ranvier_crds::common::condition::{AVAILABLE, DEGRADED, PROGRESSING};
use ranvier_crds::replication_group::MemberStatus;
use ranvier_crds::{RanvierCluster, ReplicationGroup, ReplicationGroupStatus};
use ranvier_wire::Role;
use ranvier_wire::admin::GroupStatus;

use super::{Context, KubeCall, kube};
use crate::admin_client::{AdminClient, AdminError};
use crate::conditions::{Observed, merge};
use crate::names;
use plan::{Call, Refused};

/// This controller's name in metrics.
pub const CONTROLLER: &str = "replicationgroup";
/// How soon the next change of a plan is made.
const NEXT_STEP: Duration = Duration::from_secs(1);
/// How soon a refused or waiting group is looked at again.
const RECHECK_BLOCKED: Duration = Duration::from_secs(10);
/// How soon a group that matches its spec is looked at again (its
/// members' lag and leader change without any Kubernetes event).
const RECHECK_SETTLED: Duration = Duration::from_secs(30);

/// Why a reconcile failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A call to the API server failed.
    #[error(transparent)]
    Kube(#[from] KubeCall),
    /// A call to the cluster's admin API failed.
    #[error("{step}: {source}")]
    Admin {
        /// What was being done.
        step: String,
        /// The cause.
        #[source]
        source: AdminError,
    },
}

impl Error {
    /// A stable label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube_api",
            Error::Admin { source: AdminError::Unreachable { .. }, .. } => "admin_unreachable",
            Error::Admin { source: AdminError::Refused { .. }, .. } => "admin_refused",
            Error::Admin { source: AdminError::Malformed { .. }, .. } => "admin_malformed",
        }
    }
}

/// The cluster's nodes as the operator reaches them.
struct Nodes {
    /// `(node, admin client)` of every pod the cluster's spec asks for.
    clients: Vec<(String, AdminClient)>,
}

impl Nodes {
    fn of(ctx: &Context, cluster: &RanvierCluster, namespace: &str, token: Option<String>) -> Nodes {
        let name = cluster.name_any();
        let port = cluster.spec.ports.http;
        let clients = cluster
            .spec
            .node_sets
            .iter()
            .flat_map(|set| (0..set.replicas).map(|ordinal| names::pod(&name, &set.name, ordinal)))
            .filter_map(|pod| {
                let address = ctx.admin.address(&name, namespace, &pod, port)?;
                Some((pod, AdminClient::new(address).with_token(token.clone())))
            })
            .collect();
        Nodes { clients }
    }

    fn client(&self, node: &str) -> Option<&AdminClient> {
        self.clients.iter().find(|(name, _)| name == node).map(|(_, client)| client)
    }

    /// The group `name` as the cluster has it (`None`: no such group),
    /// and the node that answered. Any node can say whether the group
    /// exists; its leader is asked for the members' progress.
    async fn read(&self, name: &str) -> Result<(Option<GroupStatus>, &AdminClient), AdminError> {
        let mut last =
            AdminError::Unreachable { address: "(no node)".into(), reason: "the cluster has no nodes".into() };
        for (node, client) in &self.clients {
            let groups = match client.groups().await {
                Ok(groups) => groups,
                Err(error) => {
                    tracing::debug!(node, %error, "admin API did not answer; trying the next node");
                    last = error;
                    continue;
                }
            };
            let Some(group) = groups.into_iter().find(|g| g.name == name) else { return Ok((None, client)) };
            let leader = group.leader.clone().filter(|leader| leader != node);
            if let Some(leader_client) = leader.as_deref().and_then(|leader| self.client(leader))
                && let Ok(view) = leader_client.groups().await
                && let Some(led) = view.into_iter().find(|g| g.name == name)
            {
                return Ok((Some(led), leader_client));
            }
            return Ok((Some(group), client));
        }
        Err(last)
    }
}

/// The contexts the spec asks for (one named like the group by default).
fn contexts(group: &ReplicationGroup) -> Vec<String> {
    if group.spec.contexts.is_empty() { vec![group.name_any()] } else { group.spec.contexts.clone() }
}

/// Reconciles one ReplicationGroup.
pub async fn reconcile(group: Arc<ReplicationGroup>, ctx: Arc<Context>) -> Result<Action, Error> {
    super::counted(CONTROLLER, &*group, &ctx, reconcile_once(group.clone(), &ctx)).await
}

async fn reconcile_once(group: Arc<ReplicationGroup>, ctx: &Context) -> Result<Action, Error> {
    let namespace = group.namespace().unwrap_or_else(|| "default".to_owned());
    let name = group.name_any();
    let clusters: Api<RanvierCluster> = Api::namespaced(ctx.client.clone(), &namespace);
    let cluster_name = &group.spec.cluster;
    let found = clusters.get_opt(cluster_name).await.map_err(kube(format!("reading RanvierCluster {cluster_name}")))?;
    let Some(cluster) = found else {
        let message = format!("RanvierCluster {cluster_name} does not exist in namespace {namespace}");
        let outcome = Outcome::blocked("ClusterNotFound", message);
        report(ctx, &group, None, &BTreeMap::new(), outcome).await?;
        return Ok(Action::requeue(RECHECK_BLOCKED));
    };
    let sets = cluster.spec.node_sets.iter().map(|set| (set.name.clone(), set.replicas)).collect();
    let desired = match plan::desired_members(cluster_name, &group.spec, &sets) {
        Ok(desired) => desired,
        Err(refused) => {
            report(ctx, &group, None, &BTreeMap::new(), Outcome::refused(&refused)).await?;
            return Ok(Action::requeue(RECHECK_BLOCKED));
        }
    };
    let token = super::cluster::admin_token(&ctx.client, &cluster, &namespace)
        .await
        .map_err(kube(format!("reading the access tokens of RanvierCluster {cluster_name}")))?;
    let nodes = Nodes::of(ctx, &cluster, &namespace, token);
    let (actual, answering) = match nodes.read(&name).await {
        Ok(read) => read,
        Err(source) => {
            let outcome = Outcome::waiting("ClusterUnreachable", format!("no node's admin API answered: {source}"));
            report(ctx, &group, None, &desired, outcome).await?;
            return Err(Error::Admin { step: format!("reading replication group {name}"), source });
        }
    };
    let reachable = actual.as_ref().map(plan::reachable).unwrap_or_default();
    let contexts = contexts(&group);
    let wanted =
        plan::Desired { members: &desired, contexts: &contexts, min_active_backups: min_active_backups(&group) };
    let calls = match plan::plan(actual.as_ref(), &wanted, &reachable) {
        Ok(calls) => calls,
        Err(refused) => {
            report(ctx, &group, actual.as_ref(), &desired, Outcome::refused(&refused)).await?;
            return Ok(Action::requeue(RECHECK_BLOCKED));
        }
    };
    let Some(call) = calls.first() else {
        report(ctx, &group, actual.as_ref(), &desired, Outcome::Settled).await?;
        return Ok(Action::requeue(RECHECK_SETTLED));
    };
    let step = plan::describe(call);
    if let Err(source) = execute(answering, &name, call).await {
        let outcome = Outcome::failed(format!("{step} failed: {source}"));
        report(ctx, &group, actual.as_ref(), &desired, outcome).await?;
        return Err(Error::Admin { step, source });
    }
    ctx.publish(&*group, false, reason_of(call), &format!("{step}: done")).await;
    // The status after the change, as the cluster now reports it.
    let after = match nodes.read(&name).await {
        Ok((after, _)) => after,
        Err(_) => actual,
    };
    let outcome = Outcome::Applying { remaining: calls.len() - 1 };
    report(ctx, &group, after.as_ref(), &desired, outcome).await?;
    Ok(Action::requeue(NEXT_STEP))
}

/// After a failed reconcile: count it by category, log it, try again soon
/// (sooner the first time, later each time it fails again).
pub fn error_policy(group: Arc<ReplicationGroup>, error: &Error, ctx: Arc<Context>) -> Action {
    super::retry_later(CONTROLLER, &*group, error.category(), error, &ctx)
}

async fn execute(client: &AdminClient, group: &str, call: &Call) -> Result<(), AdminError> {
    match call {
        Call::CreateGroup { members } => {
            let members: Vec<(String, Role)> = members.iter().map(|(node, role)| (node.clone(), *role)).collect();
            client.create_group(group, &members).await
        }
        Call::CreateContext(context) => client.create_context(context, group).await,
        Call::SetRole { node, role } => client.set_role(group, node, *role).await,
        Call::Remove(node) => client.remove(group, node).await,
        Call::SetMinActiveBackups(n) => client.set_min_active_backups(group, *n).await,
    }
}

fn reason_of(call: &Call) -> &'static str {
    match call {
        Call::CreateGroup { .. } => "GroupCreated",
        Call::CreateContext(_) => "ContextCreated",
        Call::SetRole { .. } => "MemberRoleSet",
        Call::Remove(_) => "MemberRemoved",
        Call::SetMinActiveBackups(_) => "MinActiveBackupsSet",
    }
}

/// How a reconcile ended, for the status and Events.
enum Outcome {
    /// The group matches the spec.
    Settled,
    /// A change was made; `remaining` more follow.
    Applying { remaining: usize },
    /// Nothing can be done until something outside changes.
    Waiting { reason: &'static str, message: String },
    /// The spec cannot be applied as it stands (Warning Event).
    Blocked { reason: &'static str, message: String, refused: bool },
}

impl Outcome {
    fn refused(refused: &Refused) -> Outcome {
        let reason = if refused.is_invalid_spec() { "InvalidSpec" } else { "RoleChangeBlocked" };
        Outcome::Blocked { reason, message: refused.to_string(), refused: true }
    }

    fn blocked(reason: &'static str, message: String) -> Outcome {
        Outcome::Blocked { reason, message, refused: false }
    }

    fn failed(message: String) -> Outcome {
        Outcome::Blocked { reason: "AdminCallFailed", message, refused: false }
    }

    fn waiting(reason: &'static str, message: String) -> Outcome {
        Outcome::Waiting { reason, message }
    }
}

/// The spec's min-active-backups of `group` (`None`: the leader's).
fn min_active_backups(group: &ReplicationGroup) -> Option<u32> {
    group.spec.min_active_backups.map(|n| u32::try_from(n).unwrap_or(0))
}

/// The differences between the group and the spec, as a person reads them
/// ("demo-node-2: PRIMARY → PASSIVE_BACKUP").
fn differences(
    actual: Option<&GroupStatus>,
    desired: &BTreeMap<String, Role>,
    min_active_backups: Option<u32>,
) -> Vec<String> {
    let current: BTreeMap<&str, Role> =
        actual.map(|a| a.roles.iter().map(|m| (m.node.as_str(), m.role)).collect()).unwrap_or_default();
    let mut out: Vec<String> = desired
        .iter()
        .filter_map(|(node, role)| match current.get(node.as_str()) {
            Some(now) if now == role => None,
            Some(now) => Some(format!("{node}: {now} → {role}")),
            None => Some(format!("{node}: join as {role}")),
        })
        .collect();
    out.extend(current.keys().filter(|node| !desired.contains_key(**node)).map(|node| format!("{node}: leave")));
    if let Some(actual) = actual
        && actual.min_active_backups != min_active_backups
    {
        let shown = |n: Option<u32>| n.map_or_else(|| "the leader's".to_owned(), |n| n.to_string());
        out.push(format!("minActiveBackups: {} → {}", shown(actual.min_active_backups), shown(min_active_backups)));
    }
    out
}

/// Publishes a Warning Event for a blocked outcome and writes the status:
/// leader and members as the cluster reports them, what differs from the
/// spec, why a change is refused, and the conditions.
async fn report(
    ctx: &Context,
    group: &ReplicationGroup,
    actual: Option<&GroupStatus>,
    desired: &BTreeMap<String, Role>,
    outcome: Outcome,
) -> Result<(), Error> {
    if let Outcome::Blocked { reason, message, .. } = &outcome {
        ctx.publish(group, true, reason, message).await;
    }
    let pending = differences(actual, desired, min_active_backups(group));
    let leader = actual.and_then(|a| a.leader.clone());
    let available = match (actual, &leader) {
        (None, _) => Observed::new(AVAILABLE, false, "GroupMissing", "the cluster has no such group yet"),
        (Some(_), None) => Observed::new(AVAILABLE, false, "NoLeader", "the group has no leader"),
        (Some(a), Some(leader)) => {
            Observed::new(AVAILABLE, true, "LeaderElected", format!("{leader} leads {} members", a.roles.len()))
        }
    };
    let (progressing, degraded, refused) = match outcome {
        Outcome::Settled => (
            Observed::new(PROGRESSING, false, "Settled", "the members have the roles the spec asks for"),
            Observed::new(DEGRADED, false, "Settled", "no change is blocked"),
            None,
        ),
        Outcome::Applying { remaining } => (
            Observed::new(PROGRESSING, true, "Applying", format!("{remaining} more changes to make")),
            Observed::new(DEGRADED, false, "Applying", "no change is blocked"),
            None,
        ),
        Outcome::Waiting { reason, message } => (
            Observed::new(PROGRESSING, true, reason, message),
            Observed::new(DEGRADED, false, reason, "waiting for the cluster"),
            None,
        ),
        Outcome::Blocked { reason, message, refused } => (
            Observed::new(PROGRESSING, false, reason, "nothing was changed"),
            Observed::new(DEGRADED, true, reason, message.clone()),
            refused.then_some(message),
        ),
    };
    let members = actual
        .map(|a| {
            a.members
                .iter()
                .map(|m| MemberStatus {
                    node: m.node.clone(),
                    role: m.role,
                    desired_role: desired.get(&m.node).copied().filter(|role| *role != m.role),
                    lag: m.lag,
                })
                .collect()
        })
        .unwrap_or_default();
    let previous = group.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let generation = group.meta().generation;
    let status = ReplicationGroupStatus {
        observed_generation: generation,
        conditions: merge(&previous, vec![available, progressing, degraded], generation, Timestamp::now()),
        leader,
        members,
        pending,
        refused,
    };
    ctx.write_status(group, &status).await.map_err(kube(format!("writing the status of {}", group.name_any())))?;
    Ok(())
}
