//! The web console on the HTTP port: server-rendered pages (templates in
//! `node/templates/console`, compiled into the binary by askama) and one
//! hand-written style sheet embedded in the binary, served under a path
//! that names the build so browsers may cache it for good. No JavaScript
//! framework, nothing fetched from elsewhere: the console works
//! air-gapped. Every page is read from the same state as the admin API
//! (`/v1/public`, `/v1/public/replicationgroups`), and passes the same
//! access check.
//!
//! Pages so far: the overview (`/console`, and `/` redirects there): the
//! cluster's nodes, every replication group with its leader, term and
//! members (role, Raft place, lag, last acknowledgement and disk reserve
//! as the group's leader sees them), and the contexts this node stores
//! with their event and snapshot counts. It reloads itself every few
//! seconds and says at the top when this node knows no leader for a group,
//! or has not heard from the one it knows for longer than an election
//! takes (`GroupStatus::leader_silent_ms`): it is cut off, or came back
//! alone.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use ranvier_wire::admin::{GroupStatus, MemberStatus, RaftMembership};

use super::HttpState;

/// The style sheet, as built into the binary.
const STYLE: &str = include_str!("console.css");

/// Names the build in asset paths: a new binary's assets have new paths,
/// so old ones may be cached forever.
const ASSET_VERSION: &str = env!("CARGO_PKG_VERSION");

/// How often a page reloads itself.
const REFRESH_SECONDS: u32 = 5;

/// The console's routes.
pub(super) fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/console", get(overview))
        .route(&format!("/console/assets/{ASSET_VERSION}/console.css"), get(style))
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        STYLE,
    )
        .into_response()
}

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
    title: &'static str,
    node: String,
    asset_version: &'static str,
    refresh_seconds: u32,
    generated_at: String,
    warnings: Vec<String>,
    nodes: Vec<NodeRow>,
    groups: Vec<GroupView>,
    contexts: Vec<ContextRow>,
}

/// What `value` says, or a dash where it is not known here.
fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| v.to_string())
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

/// Whether `group`'s replica here has a leader it heard from lately.
fn leader_current(group: &GroupStatus, limit_ms: u64) -> bool {
    group.leader.is_some() && group.leader_silent_ms.is_none_or(|ms| ms <= limit_ms)
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

/// What the top of a page says about groups whose replica here has no
/// current leader.
fn leader_warnings(groups: &[GroupStatus], limit_ms: u64) -> Vec<String> {
    let mut warnings = Vec::new();
    for group in groups.iter().filter(|g| g.hosted && !leader_current(g, limit_ms)) {
        warnings.push(match (&group.leader, group.leader_silent_ms) {
            (Some(leader), Some(ms)) => format!(
                "This node has not heard from {leader}, the last leader it knew of replication group {}, for {ms} ms: it is cut off from its majority, or no leader is elected. Writes through this node wait or fail until it hears from one.",
                group.name
            ),
            _ => format!(
                "This node knows no leader for replication group {}: its contexts take no writes through this node until one is elected.",
                group.name
            ),
        });
    }
    warnings
}

async fn overview(State(state): State<Arc<HttpState>>) -> Response {
    let groups = state.cluster.as_ref().map(|c| c.status()).unwrap_or_default();
    let limit_ms = state
        .cluster
        .as_ref()
        .map_or(u64::MAX, |c| u64::try_from(c.leader_silence_limit().as_millis()).unwrap_or(u64::MAX));
    let mut warnings = leader_warnings(&groups, limit_ms);
    let nodes = match &state.cluster {
        Some(cluster) if cluster.model().initialized() => {
            let model = cluster.model();
            model
                .nodes
                .values()
                .map(|n| {
                    let listed = super::admin::node_json(&model, n);
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
        Some(_) => {
            warnings.push("This node has not joined a cluster yet.".to_owned());
            Vec::new()
        }
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
    let page = Overview {
        title: "Overview",
        node: state.node.name.clone(),
        asset_version: ASSET_VERSION,
        refresh_seconds: REFRESH_SECONDS,
        generated_at: httpdate::fmt_http_date(std::time::SystemTime::now()),
        warnings,
        nodes,
        groups: groups.iter().map(|g| group_view(g, limit_ms)).collect(),
        contexts,
    };
    render(&page)
}

/// The page as HTML, or a plain 500 naming the template error.
fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => ([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response(),
        Err(error) => {
            (StatusCode::INTERNAL_SERVER_ERROR, format!("the page could not be rendered: {error}")).into_response()
        }
    }
}
