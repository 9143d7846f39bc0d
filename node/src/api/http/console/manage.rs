//! The console's contexts and replication groups pages, and their actions:
//! create and delete a context (keeping its files or not), add a node to a
//! group with a role, change a member's role, remove a member. Deleting
//! and removing first show a page that names the consequences, with the
//! keep-the-files check-box. Names travel in form fields and in
//! percent-encoded query values, never in a form's path, so that no name
//! can steer a form to another route. Each action is the admin API's own
//! (`admin::*_action`) and lands back on its page with the server's answer,
//! its AXONIQ code included when refused. A control the viewer's token
//! does not allow is disabled, with the reason beside it.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::{Form, Router};
use ranvier_wire::Role;
use ranvier_wire::admin::{ContextRequest, RoleRequest};
use ranvier_wire::http::encode;

use super::{Frame, Viewer, after_action, cross_site, list_or_dash, or_dash, render, same_origin};
use crate::access::Need;
use crate::api::http::HttpState;
use crate::api::http::admin::{
    Refused, create_context_action, delete_context_action, remove_member_action, set_member_action,
};
use crate::cluster::model::{ADMIN, ClusterModel};

pages!(ContextsPage, DeleteContextPage, GroupsPage, RemoveMemberPage);

/// The routes of this module.
pub(super) fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/console/contexts", get(contexts_page).post(create_context))
        .route("/console/contexts/delete", get(delete_context_page).post(delete_context))
        .route("/console/groups", get(groups_page))
        .route("/console/groups/members", axum::routing::post(set_member))
        .route("/console/groups/remove", get(remove_member_page).post(remove_member))
}

/// Every role's name, in the order the product documents them.
fn role_names() -> Vec<&'static str> {
    Role::ALL.iter().map(|r| r.name()).collect()
}

/// The cluster model, or an empty one on a standalone node.
fn model(state: &HttpState) -> Arc<ClusterModel> {
    state.cluster.as_ref().map(|c| c.model()).unwrap_or_default()
}

/// `node ROLE, node ROLE` for a group's members.
fn members_text(model: &ClusterModel, group: &str) -> String {
    model.groups.get(group).map_or_else(
        || "—".to_owned(),
        |g| g.members.iter().map(|(node, role)| format!("{node} {role}")).collect::<Vec<_>>().join(", "),
    )
}

/// The events this node stores of `context`, if it stores it.
fn events_here(state: &HttpState, context: &str) -> Option<u64> {
    match state.contexts.get(context)? {
        Ok(store) => Some(store.events.next_token()),
        Err(_) => None,
    }
}

/// A context's row.
struct ContextRow {
    name: String,
    group: String,
    leader: String,
    members: String,
    events: String,
    /// Its event browser, and its delete page (names go into links
    /// percent-encoded, never as they are).
    events_url: String,
    delete_url: String,
    /// Why the viewer may not delete it (`None`: it may).
    delete_barred: Option<String>,
}

#[derive(Template)]
#[template(path = "console/contexts.html")]
struct ContextsPage {
    frame: Frame,
    clustered: bool,
    contexts: Vec<ContextRow>,
    groups: Vec<String>,
    /// The registered nodes, for the members of a new group.
    nodes: Vec<String>,
    roles: Vec<&'static str>,
    create_barred: Option<String>,
}

async fn contexts_page(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let viewer = Viewer::of(&state, &headers).await;
    let status = super::status(&state);
    let frame = Frame::new(&state, &headers, &viewer, &status, "contexts", "Contexts".to_owned());
    let model = model(&state);
    let leader_of = |group: &str| status.iter().find(|g| g.name == group).and_then(|g| g.leader.clone());
    let mut contexts = Vec::new();
    for (name, info) in model.contexts.iter().filter(|(name, _)| name.as_str() != ADMIN) {
        contexts.push(ContextRow {
            name: name.clone(),
            group: info.group.clone(),
            leader: leader_of(&info.group).unwrap_or_else(|| "none known".to_owned()),
            members: members_text(&model, &info.group),
            events: or_dash(events_here(&state, name)),
            events_url: format!("/console/events?context={}", encode(name)),
            delete_url: format!("/console/contexts/delete?context={}", encode(name)),
            delete_barred: viewer.barred(&state, &Need::ContextAdmin { context: name.clone() }).await,
        });
    }
    let page = ContextsPage {
        frame,
        clustered: state.cluster.is_some(),
        contexts,
        groups: model.groups.keys().filter(|g| g.as_str() != ADMIN).cloned().collect(),
        nodes: model.nodes.keys().cloned().collect(),
        roles: role_names(),
        create_barred: viewer.barred(&state, &Need::Admin).await,
    };
    render(&page)
}

/// Reads the create form: `context`, `group`, and `role:<node>` for each
/// node that is to be a member of a new group (empty: not a member).
fn context_request(form: Vec<(String, String)>) -> ContextRequest {
    let mut request = ContextRequest::default();
    for (key, value) in form {
        let value = value.trim().to_owned();
        match key.as_str() {
            "context" => request.context = Some(value),
            "group" => request.replication_group = Some(value).filter(|g| !g.is_empty()),
            _ => {
                if let Some(node) = key.strip_prefix("role:")
                    && !value.is_empty()
                {
                    request.roles.push(RoleRequest { node: node.to_owned(), role: Some(value) });
                }
            }
        }
    }
    request
}

async fn create_context(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    if !same_origin(&headers) {
        return cross_site("/console/contexts");
    }
    after_action("/console/contexts", create_context_action(&state, context_request(form)).await)
}

#[derive(Template)]
#[template(path = "console/delete_context.html")]
struct DeleteContextPage {
    frame: Frame,
    context: String,
    /// Where the form posts.
    action: String,
    group: String,
    members: String,
    events: String,
    barred: Option<String>,
}

#[derive(serde::Deserialize)]
struct ContextQuery {
    context: Option<String>,
}

/// The context a query names, or the refusal of one that names none.
fn named_context(query: ContextQuery) -> Result<String, Refused> {
    query.context.filter(|c| !c.is_empty()).ok_or_else(|| Refused::new("AXONIQ-2308", "no context named"))
}

async fn delete_context_page(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(query): Query<ContextQuery>,
) -> Response {
    let name = match named_context(query) {
        Ok(name) => name,
        Err(refusal) => return after_action("/console/contexts", Err(refusal)),
    };
    let viewer = Viewer::of(&state, &headers).await;
    let model = model(&state);
    let Some(info) = model.contexts.get(&name) else {
        return after_action(
            "/console/contexts",
            Err(Refused::new("AXONIQ-1302", format!("context {name} not found"))),
        );
    };
    let frame =
        Frame::new(&state, &headers, &viewer, &super::status(&state), "contexts", format!("Delete context {name}?"));
    let page = DeleteContextPage {
        frame,
        action: format!("/console/contexts/delete?context={}", encode(&name)),
        group: info.group.clone(),
        members: members_text(&model, &info.group),
        events: or_dash(events_here(&state, &name)),
        barred: viewer.barred(&state, &Need::ContextAdmin { context: name.clone() }).await,
        context: name,
    };
    render(&page)
}

#[derive(serde::Deserialize)]
struct PreserveForm {
    /// A check-box: present ("on") when ticked.
    preserve: Option<String>,
}

async fn delete_context(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(query): Query<ContextQuery>,
    Form(form): Form<PreserveForm>,
) -> Response {
    if !same_origin(&headers) {
        return cross_site("/console/contexts");
    }
    let outcome = match named_context(query) {
        Ok(name) => delete_context_action(&state, name, form.preserve.is_some()).await,
        Err(refusal) => Err(refusal),
    };
    after_action("/console/contexts", outcome)
}

/// A member's row on the groups page.
struct MemberRow {
    node: String,
    role: String,
    raft: &'static str,
    lag: String,
    /// Its remove page.
    remove_url: String,
}

/// A group on the groups page.
struct GroupView {
    name: String,
    leader: String,
    contexts: String,
    /// Active backups that must hold a write, as the group sets it.
    min_active_backups: String,
    members: Vec<MemberRow>,
    /// Registered nodes that are not members.
    others: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/groups.html")]
struct GroupsPage {
    frame: Frame,
    groups: Vec<GroupView>,
    roles: Vec<&'static str>,
    barred: Option<String>,
}

async fn groups_page(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let viewer = Viewer::of(&state, &headers).await;
    let status = super::status(&state);
    let frame = Frame::new(&state, &headers, &viewer, &status, "groups", "Replication groups".to_owned());
    let model = model(&state);
    let groups = model
        .groups
        .iter()
        .map(|(name, info)| {
            let seen = status.iter().find(|g| &g.name == name);
            let members = info
                .members
                .iter()
                .map(|(node, role)| {
                    let known = seen.and_then(|g| g.members.iter().find(|m| &m.node == node));
                    MemberRow {
                        node: node.clone(),
                        role: role.name().to_owned(),
                        raft: super::raft_label(known.and_then(|m| m.raft)),
                        lag: or_dash(known.and_then(|m| m.lag)),
                        remove_url: format!("/console/groups/remove?group={}&node={}", encode(name), encode(node)),
                    }
                })
                .collect();
            GroupView {
                name: name.clone(),
                leader: seen.and_then(|g| g.leader.clone()).unwrap_or_else(|| "none known".to_owned()),
                contexts: list_or_dash(&model.contexts_of(name)),
                min_active_backups: match info.min_active_backups {
                    Some(n) => format!("{n}, set for this group"),
                    None => "min-active-backups of the leading node".to_owned(),
                },
                members,
                others: model.nodes.keys().filter(|n| !info.members.contains_key(*n)).cloned().collect(),
            }
        })
        .collect();
    let page = GroupsPage { frame, groups, roles: role_names(), barred: viewer.barred(&state, &Need::Admin).await };
    render(&page)
}

#[derive(serde::Deserialize)]
struct MemberForm {
    group: String,
    node: String,
    role: String,
}

/// Adds a node to a group with a role, or changes a member's role.
async fn set_member(State(state): State<Arc<HttpState>>, headers: HeaderMap, Form(form): Form<MemberForm>) -> Response {
    if !same_origin(&headers) {
        return cross_site("/console/groups");
    }
    let outcome = set_member_action(&state, form.group, form.node, Some(form.role.as_str())).await;
    after_action("/console/groups", outcome)
}

#[derive(Template)]
#[template(path = "console/remove_member.html")]
struct RemoveMemberPage {
    frame: Frame,
    group: String,
    node: String,
    role: String,
    contexts: String,
    remaining: String,
    primaries_left: usize,
    barred: Option<String>,
}

#[derive(serde::Deserialize)]
struct MemberQuery {
    group: String,
    node: String,
}

async fn remove_member_page(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(MemberQuery { group, node }): Query<MemberQuery>,
) -> Response {
    let viewer = Viewer::of(&state, &headers).await;
    let model = model(&state);
    let Some(role) = model.groups.get(&group).and_then(|g| g.members.get(&node)) else {
        let refusal = Refused::new("AXONIQ-1301", format!("node {node} is not a member of {group}"));
        return after_action("/console/groups", Err(refusal));
    };
    let others: Vec<(&String, &Role)> =
        model.groups.get(&group).map(|g| g.members.iter().filter(|(n, _)| **n != node).collect()).unwrap_or_default();
    let contexts = model.contexts_of(&group);
    let frame =
        Frame::new(&state, &headers, &viewer, &super::status(&state), "groups", format!("Remove {node} from {group}?"));
    let page = RemoveMemberPage {
        frame,
        role: role.name().to_owned(),
        contexts: if contexts.is_empty() { "none".to_owned() } else { contexts.join(", ") },
        remaining: if others.is_empty() {
            "no member".to_owned()
        } else {
            others.iter().map(|(n, r)| format!("{n} {r}")).collect::<Vec<_>>().join(", ")
        },
        primaries_left: others.iter().filter(|(_, r)| **r == Role::Primary).count(),
        barred: viewer.barred(&state, &Need::Admin).await,
        group,
        node,
    };
    render(&page)
}

#[derive(serde::Deserialize)]
struct RemoveForm {
    group: String,
    node: String,
    /// A check-box: present ("on") when ticked.
    preserve: Option<String>,
}

async fn remove_member(
    State(state): State<Arc<HttpState>>,
    headers: HeaderMap,
    Form(form): Form<RemoveForm>,
) -> Response {
    if !same_origin(&headers) {
        return cross_site("/console/groups");
    }
    let outcome = remove_member_action(&state, form.group, form.node, form.preserve.is_some()).await;
    after_action("/console/groups", outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_create_form_names_the_members_of_a_new_group() {
        let form = vec![
            ("context".to_owned(), " orders ".to_owned()),
            ("group".to_owned(), "".to_owned()),
            ("role:n1".to_owned(), "PRIMARY".to_owned()),
            ("role:n2".to_owned(), "".to_owned()),
            ("role:n3".to_owned(), "PASSIVE_BACKUP".to_owned()),
        ];
        let request = context_request(form);
        assert_eq!(request.context.as_deref(), Some("orders"));
        assert_eq!(request.replication_group, None, "an empty group is the context's own");
        assert_eq!(
            request.roles,
            vec![
                RoleRequest { node: "n1".into(), role: Some("PRIMARY".into()) },
                RoleRequest { node: "n3".into(), role: Some("PASSIVE_BACKUP".into()) },
            ],
            "a node left at '—' is not a member"
        );
    }
}
