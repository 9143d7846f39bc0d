//! The overview (`/console`): the cluster's nodes (each asked how it is:
//! up or down, version, free disk against its reserve), every replication group
//! with its leader, term and members (role, Raft place, lag, last
//! acknowledgement and disk reserve as the group's leader sees them), and
//! the contexts this node stores with their event and snapshot counts and
//! the size of their files.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use ranvier_proto::cluster::NodeStateReply;
use ranvier_wire::admin::{GroupStatus, MemberStatus};

use super::{Frame, Viewer, leader_current, leader_silence_limit_ms, or_dash, render};
use crate::api::http::HttpState;

pages!(Overview);

/// A node's row.
struct NodeRow {
    name: String,
    grpc: String,
    http: String,
    internal: String,
    groups: String,
    heard: String,
    health: Health,
}

/// How a node is, as the row shows it.
struct Health {
    /// Up (how long, how fast it answered) or down (why).
    state: String,
    up: bool,
    version: String,
    /// Free disk against the reserve.
    disk: String,
    below_reserve: bool,
}

/// `bytes` for a reader (KiB, MiB, GiB or TiB with one decimal).
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// `ms` as the longest whole unit that fits (s, min, h, d).
fn duration(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..86400 => format!("{} h", seconds / 3600),
        _ => format!("{} d", seconds / 86400),
    }
}

fn health(answer: Result<(NodeStateReply, std::time::Duration), String>) -> Health {
    match answer {
        Ok((reply, took)) => {
            let below =
                reply.reserve_bytes > 0 && reply.free_bytes < reply.reserve_bytes && reply.disk_error.is_empty();
            let disk = if !reply.disk_error.is_empty() {
                format!("unknown: {}", reply.disk_error)
            } else if reply.reserve_bytes == 0 {
                format!("{} free (no reserve)", size(reply.free_bytes))
            } else {
                format!("{} free, reserve {}", size(reply.free_bytes), size(reply.reserve_bytes))
            };
            Health {
                state: format!("up {} (answered in {} ms)", duration(reply.uptime_ms), took.as_millis()),
                up: true,
                version: reply.version,
                disk,
                below_reserve: below,
            }
        }
        Err(reason) => Health {
            state: format!("down: {reason}"),
            up: false,
            version: "—".to_owned(),
            disk: "—".to_owned(),
            below_reserve: false,
        },
    }
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
    /// Bytes of its event and snapshot files on this node.
    size: String,
    state: String,
}

/// The bytes of a context's files (events and snapshots) on this node.
fn files_size(store: &crate::store::ContextStore) -> u64 {
    [&store.events, &store.snapshots]
        .into_iter()
        .flat_map(|s| s.segment_files())
        .flat_map(|segment| segment.paths)
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|meta| meta.len())
        .sum()
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
        raft: super::raft_label(member.raft),
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
        contexts: super::list_or_dash(&group.contexts),
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

pub(super) async fn page(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let viewer = Viewer::of(&state, &headers).await;
    let groups = super::status(&state);
    let frame = Frame::new(&state, &headers, &viewer, &groups, "overview", "Overview".to_owned());
    let limit_ms = leader_silence_limit_ms(&state);
    let nodes = match &state.cluster {
        Some(cluster) if cluster.model().initialized() => {
            let model = cluster.model();
            let mut states = cluster.node_states().await;
            model
                .nodes
                .values()
                .map(|n| {
                    let listed = crate::api::http::admin::node_json(&model, n);
                    NodeRow {
                        health: health(states.remove(&listed.name).unwrap_or_else(|| Err("not asked".to_owned()))),
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
            let reply = crate::cluster::node_state(state.contexts.reserve(&[]), std::time::Duration::ZERO).await;
            let health =
                Health { state: "up (this node)".to_owned(), ..health(Ok((reply, std::time::Duration::ZERO))) };
            vec![NodeRow {
                name: node.name.clone(),
                grpc: format!("{}:{}", node.host_name, node.grpc_port),
                http: format!("{}:{}", node.host_name, node.http_port),
                internal: "— (standalone)".to_owned(),
                groups: "—".to_owned(),
                heard: "this node".to_owned(),
                health,
            }]
        }
    };
    let group_of = |context: &str| {
        groups
            .iter()
            .find(|g| g.contexts.iter().any(|c| c == context))
            .map_or_else(|| "—".to_owned(), |g| g.name.clone())
    };
    // Sizes are a stat of every segment file: off the async workers.
    let stores = state.contexts.list();
    let sized: Vec<_> = tokio::task::spawn_blocking(move || {
        stores
            .into_iter()
            .map(|(name, store)| {
                let size = store.as_ref().ok().map(files_size);
                (name, store, size)
            })
            .collect()
    })
    .await
    .unwrap_or_default();
    let mut contexts: Vec<ContextRow> = sized
        .into_iter()
        .map(|(name, store, bytes)| {
            let group = group_of(&name);
            match store {
                Ok(store) => ContextRow {
                    events: store.events.next_token().to_string(),
                    snapshots: store.snapshots.next_token().to_string(),
                    size: or_dash(bytes.map(size)),
                    state: "open".to_owned(),
                    name,
                    group,
                },
                Err(reason) => ContextRow {
                    events: "—".to_owned(),
                    snapshots: "—".to_owned(),
                    size: "—".to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_as_a_person_says_them() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(duration(59_999), "59 s");
        assert_eq!(duration(61_000), "1 min");
        assert_eq!(duration(2 * 3_600_000), "2 h");
        assert_eq!(duration(3 * 86_400_000), "3 d");
    }

    #[test]
    fn a_node_below_its_reserve_or_silent_says_so() {
        let reply = |free, reserve| NodeStateReply {
            version: "1.2.3".into(),
            uptime_ms: 5_000,
            free_bytes: free,
            reserve_bytes: reserve,
            disk_error: String::new(),
        };
        let low = health(Ok((reply(10 << 20, 1 << 30), std::time::Duration::from_millis(3))));
        assert!(low.up && low.below_reserve, "10 MiB free of a 1 GiB reserve");
        assert_eq!(low.disk, "10.0 MiB free, reserve 1.0 GiB");
        assert_eq!(low.state, "up 5 s (answered in 3 ms)");
        let fine = health(Ok((reply(2 << 30, 1 << 30), std::time::Duration::ZERO)));
        assert!(!fine.below_reserve);
        assert!(!health(Ok((reply(5, 0), std::time::Duration::ZERO))).below_reserve, "no reserve, never below it");
        let down = health(Err("no answer within 1000 ms".into()));
        assert!(!down.up && down.state == "down: no answer within 1000 ms");
    }
}
