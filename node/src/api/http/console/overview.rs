//! The overview (`/console`): the cluster's nodes, every replication group
//! with its leader, term and members (role, Raft place, lag, last
//! acknowledgement and disk reserve as the group's leader sees them), and
//! the contexts this node stores with their event and snapshot counts.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use ranvier_wire::admin::{GroupStatus, MemberStatus, RaftMembership};

use super::{Frame, Page, Viewer, leader_current, leader_silence_limit_ms, or_dash, render};
use crate::api::http::HttpState;

/// A node's row.
struct NodeRow {
    name: String,
    grpc: String,
    http: String,
    internal: String,
    groups: String,
    heard: String,
}

/// A member's row in its group.
struct MemberRow {
    node: String,
    role: String,
    raft: &'static str,
    lag: String,
    last_ack: String,
    disk: &'static str,
    below_reserve: bool,
}

/// A replication group.
struct GroupView {
    name: String,
    leader: String,
    term: String,
    contexts: String,
    members: Vec<MemberRow>,
}

/// A context this node stores.
struct ContextRow {
    name: String,
    group: String,
    events: String,
    snapshots: String,
    state: String,
}

#[derive(Template)]
#[template(path = "console/overview.html")]
struct Overview {
    frame: Frame,
    nodes: Vec<NodeRow>,
    groups: Vec<GroupView>,
    contexts: Vec<ContextRow>,
}

fn member_row(member: &MemberStatus) -> MemberRow {
    let below = member.below_disk_reserve.unwrap_or(false);
    MemberRow {
        node: member.node.clone(),
        role: member.role.to_string(),
        raft: match member.raft {
            Some(RaftMembership::Voter) => "voter",
            Some(RaftMembership::Learner) => "learner",
            Some(RaftMembership::None) => "not in the group's Raft",
            None => "—",
        },
        lag: or_dash(member.lag),
        last_ack: or_dash(member.last_ack_ms.map(|ms| format!("{ms} ms ago"))),
        disk: match member.below_disk_reserve {
            Some(true) => "below its reserve",
            Some(false) => "ok",
            None => "—",
        },
        below_reserve: below,
    }
}

fn group_view(group: &GroupStatus, limit_ms: u64) -> GroupView {
    let leader = match (&group.leader, group.leader_silent_ms) {
        (None, _) => "none known".to_owned(),
        (Some(leader), Some(ms)) if ms > limit_ms => format!("{leader}? (not heard from for {ms} ms)"),
        (Some(leader), Some(ms)) => format!("{leader} (heard {ms} ms ago)"),
        (Some(leader), None) => leader.clone(),
    };
    GroupView {
        name: group.name.clone(),
        leader,
        term: or_dash(group.term),
        contexts: if group.contexts.is_empty() { "—".to_owned() } else { group.contexts.join(", ") },
        members: group.members.iter().map(member_row).collect(),
    }
}

/// When each node was last heard from, as the `_admin` group's leader
/// knows it (nothing where this node does not lead it, or its leader is
/// stale).
fn heard_from(groups: &[GroupStatus], node: &str, limit_ms: u64) -> String {
    let admin = groups.iter().find(|g| g.name == crate::cluster::model::ADMIN && leader_current(g, limit_ms));
    let member = admin.and_then(|g| g.members.iter().find(|m| m.node == node));
    match (admin.and_then(|g| g.leader.as_deref()), member.and_then(|m| m.last_ack_ms)) {
        (Some(leader), _) if leader == node => "leads _admin".to_owned(),
        (_, Some(ms)) => format!("{ms} ms ago"),
        _ => "—".to_owned(),
    }
}

impl Page for Overview {
    fn frame(&self) -> &Frame {
        &self.frame
    }
}

pub(super) async fn page(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let viewer = Viewer::of(&state, &headers).await;
    let frame = Frame::new(&state, &headers, &viewer, "overview", "Overview".to_owned());
    let groups = state.cluster.as_ref().map(|c| c.status()).unwrap_or_default();
    let limit_ms = leader_silence_limit_ms(&state);
    let nodes = match &state.cluster {
        Some(cluster) if cluster.model().initialized() => {
            let model = cluster.model();
            model
                .nodes
                .values()
                .map(|n| {
                    let listed = crate::api::http::admin::node_json(&model, n);
                    NodeRow {
                        heard: heard_from(&groups, &listed.name, limit_ms),
                        name: listed.name,
                        grpc: format!("{}:{}", listed.host_name, listed.grpc_port),
                        http: format!("{}:{}", listed.host_name, listed.http_port),
                        internal: format!("{}:{}", listed.internal_host_name, or_dash(listed.internal_grpc_port)),
                        groups: listed.replication_groups.join(", "),
                    }
                })
                .collect()
        }
        Some(_) => Vec::new(),
        None => {
            let node = &state.node;
            vec![NodeRow {
                name: node.name.clone(),
                grpc: format!("{}:{}", node.host_name, node.grpc_port),
                http: format!("{}:{}", node.host_name, node.http_port),
                internal: "— (standalone)".to_owned(),
                groups: "—".to_owned(),
                heard: "this node".to_owned(),
            }]
        }
    };
    let group_of = |context: &str| {
        groups
            .iter()
            .find(|g| g.contexts.iter().any(|c| c == context))
            .map_or_else(|| "—".to_owned(), |g| g.name.clone())
    };
    let mut contexts: Vec<ContextRow> = state
        .contexts
        .list()
        .into_iter()
        .map(|(name, store)| {
            let group = group_of(&name);
            match store {
                Ok(store) => ContextRow {
                    events: store.events.next_token().to_string(),
                    snapshots: store.snapshots.next_token().to_string(),
                    state: "open".to_owned(),
                    name,
                    group,
                },
                Err(reason) => ContextRow {
                    events: "—".to_owned(),
                    snapshots: "—".to_owned(),
                    state: format!("not served: {reason}"),
                    name,
                    group,
                },
            }
        })
        .collect();
    contexts.sort_by(|a, b| a.name.cmp(&b.name));
    let page = Overview { frame, nodes, groups: groups.iter().map(|g| group_view(g, limit_ms)).collect(), contexts };
    render(&page)
}
