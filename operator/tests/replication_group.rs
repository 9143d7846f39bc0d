//! The ReplicationGroup controller against a mocked API server (kube
//! `Client` over `tower-test`) and a fake cluster: one HTTP listener per
//! node speaking the admin REST API the way a node does (any node lists the
//! groups; only the leader knows its members' lag; changes update the
//! group). Each test checks the exact admin calls, in order, and the status
//! and Events the API server receives.

// Test code: an unwrap is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use http::Method;
use kube::runtime::controller::Action;
use ranvier_crds::ReplicationGroup;
use ranvier_operator::controllers::{AdminEndpoints, Context, replication_group};
use ranvier_wire::Role;
use ranvier_wire::admin::{GroupRequest, GroupSettings, GroupStatus, MemberRole, MemberStatus};
use serde_json::{Value, json};
use support::{Expect, answer, condition, example, expect, scripted};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GROUP_EXAMPLE: &str = include_str!("../../examples/replication-group.yaml");
const NODES: [&str; 3] = ["demo-node-0", "demo-node-1", "demo-node-2"];

/// The group as the fake cluster holds it.
struct Group {
    name: String,
    exists: bool,
    leader: String,
    roles: BTreeMap<String, Role>,
    contexts: Vec<String>,
    min_active_backups: Option<u32>,
}

/// The fake cluster's state and the changes it was asked for.
struct State {
    group: Group,
    /// Nodes that do not answer (their port is closed).
    down: BTreeSet<String>,
    /// While set, every change is refused with this status and code.
    refuse: Option<(u16, &'static str)>,
    /// `(answering node, method, path and query, body)` of each change.
    changes: Vec<(String, String, String, String)>,
}

type Shared = Arc<Mutex<State>>;

/// Three nodes, all PRIMARY in `default`, `demo-node-1` leading.
fn healthy() -> State {
    State {
        group: Group {
            name: "default".into(),
            exists: true,
            leader: "demo-node-1".into(),
            roles: NODES.iter().map(|n| ((*n).to_owned(), Role::Primary)).collect(),
            contexts: vec!["default".into()],
            min_active_backups: None,
        },
        down: BTreeSet::new(),
        refuse: None,
        changes: Vec::new(),
    }
}

/// The groups as `node` reports them: only the leader has its members'
/// progress (and only for members that answer).
fn listing(state: &State, node: &str) -> Vec<GroupStatus> {
    if !state.group.exists {
        return vec![];
    }
    let group = &state.group;
    let leads = group.leader == node;
    let members = group
        .roles
        .iter()
        .map(|(n, role)| {
            let known = leads && !state.down.contains(n);
            MemberStatus {
                node: n.clone(),
                role: *role,
                raft: None,
                match_index: known.then_some(42),
                lag: known.then_some(0),
                last_ack_ms: known.then_some(40),
                below_disk_reserve: None,
            }
        })
        .collect();
    vec![GroupStatus {
        name: group.name.clone(),
        leader: Some(group.leader.clone()),
        hosted: true,
        term: Some(3),
        last_log_index: Some(42),
        applied_index: Some(42),
        roles: group.roles.iter().map(|(n, r)| MemberRole { node: n.clone(), role: *r }).collect(),
        members,
        contexts: group.contexts.clone(),
        min_active_backups: group.min_active_backups,
        leader_silent_ms: Some(20),
    }]
}

/// Applies one admin call to the fake cluster: `(status, code, body)`.
fn handle(state: &mut State, node: &str, method: &str, target: &str, body: &str) -> (u16, Option<&'static str>, Value) {
    if method == "GET" && target == "/v1/public/replicationgroups" {
        return (200, None, serde_json::to_value(listing(state, node)).unwrap());
    }
    state.changes.push((node.to_owned(), method.to_owned(), target.to_owned(), body.to_owned()));
    if let Some((status, code)) = state.refuse {
        return (status, Some(code), json!({"success": false, "message": "the leader is busy"}));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let group = &mut state.group;
    match (method, parts.as_slice()) {
        ("POST", ["v1", "replicationgroups"]) => {
            let request: GroupRequest = serde_json::from_str(body).unwrap();
            group.exists = true;
            group.name = request.name.unwrap();
            group.roles =
                request.roles.iter().map(|r| (r.node.clone(), r.role.as_deref().unwrap().parse().unwrap())).collect();
            group.leader = request.roles[0].node.clone();
            group.contexts.clear();
        }
        ("POST", ["v1", "context"]) => {
            let request: Value = serde_json::from_str(body).unwrap();
            group.contexts.push(request["context"].as_str().unwrap().to_owned());
        }
        ("POST", ["v1", "replicationgroups", name, member]) if *name == group.name => {
            let role = query.strip_prefix("role=").unwrap().parse().unwrap();
            group.roles.insert((*member).to_owned(), role);
        }
        ("DELETE", ["v1", "replicationgroups", name, member]) if *name == group.name => {
            group.roles.remove(*member);
        }
        ("PATCH", ["v1", "replicationgroups", name]) if *name == group.name => {
            let settings: GroupSettings = serde_json::from_str(body).unwrap();
            group.min_active_backups = settings.min_active_backups;
        }
        _ => return (404, Some("AXONIQ-1002"), json!({"success": false, "message": "no such call"})),
    }
    (200, None, json!({"success": true, "message": "done"}))
}

/// Serves one node's admin API on an ephemeral port.
async fn node(state: Shared, name: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let state = state.clone();
            tokio::spawn(async move {
                let mut raw = Vec::new();
                let mut buf = [0u8; 4096];
                let (head, body) = loop {
                    let n = stream.read(&mut buf).await.unwrap();
                    raw.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&raw).into_owned();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if body.len() >= length {
                            break (head.to_owned(), body.to_owned());
                        }
                    }
                    assert!(n > 0, "the request ended early");
                };
                let mut words = head.split_whitespace();
                let (method, target) = (words.next().unwrap(), words.next().unwrap());
                let (status, code, answer) = {
                    let mut state = state.lock().unwrap();
                    if state.down.contains(name) {
                        return; // dropped: the caller sees no answer
                    }
                    if !head.lines().any(|l| l == format!("AxonIQ-Access-Token: {ADMIN_TOKEN}")) {
                        (403, Some("AXONIQ-1000"), serde_json::json!({"success": false, "message": "no admin token"}))
                    } else {
                        handle(&mut state, name, method, target, &body)
                    }
                };
                let body = serde_json::to_vec(&answer).unwrap();
                let code = code.map(|c| format!("AxonIQ-ErrorCode: {c}\r\n")).unwrap_or_default();
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{code}Content-Length: {}\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).await.unwrap();
                stream.write_all(&body).await.unwrap();
            });
        }
    });
    address
}

/// A context whose admin calls reach the fake cluster's nodes.
async fn fake_cluster(state: State) -> (Arc<Context>, support::Handle, Shared) {
    let shared = Arc::new(Mutex::new(state));
    let mut addresses = BTreeMap::new();
    for name in NODES {
        addresses.insert(name.to_owned(), node(shared.clone(), name).await);
    }
    let (ctx, handle) = support::context();
    (Arc::new(ctx.with_admin(AdminEndpoints::Fixed(addresses))), handle, shared)
}

/// The example group, as the API server holds it, with `extra` members.
fn group(extra: Value) -> ReplicationGroup {
    let mut group: ReplicationGroup = serde_saphyr::from_str(GROUP_EXAMPLE).unwrap();
    group.metadata.namespace = Some("shop".into());
    group.metadata.generation = Some(2);
    if let Value::Array(extra) = extra {
        for member in extra {
            group.spec.members.push(serde_json::from_value(member).unwrap());
        }
    }
    group
}

fn get_cluster() -> Expect {
    answer(
        Method::GET,
        "/apis/ranvier.io/v1alpha1/namespaces/shop/ranvierclusters/demo",
        serde_json::to_value(example()).unwrap(),
    )
}

/// The administrators' token the fake nodes want (the example cluster has
/// access control on).
const ADMIN_TOKEN: &str = "admin-secret";

/// The cluster's access tokens Secret, as the API server holds it.
fn get_tokens() -> Expect {
    answer(
        Method::GET,
        "/api/v1/namespaces/shop/secrets/demo-access-tokens",
        serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "demo-access-tokens", "namespace": "shop"},
            "data": {"token": "YXBwLXNlY3JldA==", "admin-token": "YWRtaW4tc2VjcmV0"}
        }),
    )
}

fn event() -> Expect {
    support::event("shop")
}

fn status_of(group: &ReplicationGroup) -> Expect {
    answer(
        Method::PATCH,
        "/apis/ranvier.io/v1alpha1/namespaces/shop/replicationgroups/default/status",
        serde_json::to_value(group).unwrap(),
    )
}

fn changes(state: &Shared) -> Vec<(String, String, String)> {
    state.lock().unwrap().changes.drain(..).map(|(node, method, target, _)| (node, method, target)).collect()
}

fn change(node: &str, method: &str, target: &str) -> (String, String, String) {
    (node.to_owned(), method.to_owned(), target.to_owned())
}

fn member<'a>(status: &'a Value, node: &str) -> &'a Value {
    status["status"]["members"].as_array().unwrap().iter().find(|m| m["node"] == node).unwrap()
}

#[tokio::test]
async fn a_role_edit_is_one_call_to_the_leader_and_the_status_is_read_back_from_the_cluster() {
    let (ctx, mut handle, state) = fake_cluster(healthy()).await;

    // demo-node-2: PRIMARY → PASSIVE_BACKUP.
    let demoted = group(json!([{"node": "demo-node-2", "role": "PASSIVE_BACKUP"}]));
    let script = vec![get_cluster(), get_tokens(), event(), status_of(&demoted)];
    let (result, seen) =
        scripted(&mut handle, script, replication_group::reconcile(Arc::new(demoted.clone()), ctx.clone())).await;
    assert_eq!(result.unwrap(), Action::requeue(std::time::Duration::from_secs(1)), "the next step comes soon");
    assert_eq!(
        changes(&state),
        vec![change("demo-node-1", "POST", "/v1/replicationgroups/default/demo-node-2?role=PASSIVE_BACKUP")],
        "one call, made through the group's leader"
    );
    assert_eq!((seen[2].1["type"].as_str(), seen[2].1["reason"].as_str()), (Some("Normal"), Some("MemberRoleSet")));
    let status = &seen[3].1;
    assert_eq!(status["status"]["observedGeneration"], 2);
    assert_eq!(status["status"]["leader"], "demo-node-1");
    assert_eq!(member(status, "demo-node-2")["role"], "PASSIVE_BACKUP", "read back after the change: {status}");
    assert_eq!(member(status, "demo-node-2")["lag"], 0, "the leader's view, with lag");
    assert!(member(status, "demo-node-2").get("desiredRole").is_none());
    assert!(status["status"].get("pending").is_none(), "nothing left to do: {status}");

    // The same spec again: nothing to call, the status says it is settled.
    let script = vec![get_cluster(), get_tokens(), status_of(&demoted)];
    let (result, seen) =
        scripted(&mut handle, script, replication_group::reconcile(Arc::new(demoted), ctx.clone())).await;
    assert_eq!(result.unwrap(), Action::requeue(std::time::Duration::from_secs(30)));
    assert_eq!(changes(&state), vec![]);
    assert_eq!(condition(&seen[2].1, "Progressing")["reason"], "Settled");
    assert_eq!(condition(&seen[2].1, "Available")["status"], "True");

    // Back to PRIMARY: the example as it stands.
    let promoted = group(json!([]));
    let script = vec![get_cluster(), get_tokens(), event(), status_of(&promoted)];
    let (result, _) = scripted(&mut handle, script, replication_group::reconcile(Arc::new(promoted), ctx)).await;
    result.unwrap();
    assert_eq!(
        changes(&state),
        vec![change("demo-node-1", "POST", "/v1/replicationgroups/default/demo-node-2?role=PRIMARY")]
    );
}

#[tokio::test]
async fn min_active_backups_is_set_on_the_group_after_its_members_and_cleared_when_dropped() {
    let (ctx, mut handle, state) = fake_cluster(healthy()).await;

    // demo-node-2 as ACTIVE_BACKUP, one of which must hold every write.
    let mut guarded = group(json!([{"node": "demo-node-2", "role": "ACTIVE_BACKUP"}]));
    guarded.spec.min_active_backups = Some(1);
    let script = vec![get_cluster(), get_tokens(), event(), status_of(&guarded)];
    let (result, seen) =
        scripted(&mut handle, script, replication_group::reconcile(Arc::new(guarded.clone()), ctx.clone())).await;
    result.unwrap();
    assert_eq!(
        changes(&state),
        vec![change("demo-node-1", "POST", "/v1/replicationgroups/default/demo-node-2?role=ACTIVE_BACKUP")],
        "the member first"
    );
    assert_eq!(seen[3].1["status"]["pending"], json!(["minActiveBackups: the leader's → 1"]));

    let script = vec![get_cluster(), get_tokens(), event(), status_of(&guarded)];
    let (result, seen) =
        scripted(&mut handle, script, replication_group::reconcile(Arc::new(guarded.clone()), ctx.clone())).await;
    result.unwrap();
    let calls: Vec<_> = state.lock().unwrap().changes.drain(..).collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let (node, method, target, body) = &calls[0];
    assert_eq!(
        (node.as_str(), method.as_str(), target.as_str()),
        ("demo-node-1", "PATCH", "/v1/replicationgroups/default")
    );
    assert_eq!(serde_json::from_str::<Value>(body).unwrap(), json!({"minActiveBackups": 1}));
    assert_eq!(
        (seen[2].1["reason"].as_str(), seen[2].1["type"].as_str()),
        (Some("MinActiveBackupsSet"), Some("Normal"))
    );
    assert!(seen[3].1["status"].get("pending").is_none(), "settled: {}", seen[3].1);

    // Settled: no call.
    let script = vec![get_cluster(), get_tokens(), status_of(&guarded)];
    let (result, _) =
        scripted(&mut handle, script, replication_group::reconcile(Arc::new(guarded.clone()), ctx.clone())).await;
    assert_eq!(result.unwrap(), Action::requeue(std::time::Duration::from_secs(30)));
    assert_eq!(changes(&state), vec![]);

    // Dropped from the spec: the group follows its leader's setting again.
    guarded.spec.min_active_backups = None;
    let script = vec![get_cluster(), get_tokens(), event(), status_of(&guarded)];
    let (result, _) = scripted(&mut handle, script, replication_group::reconcile(Arc::new(guarded), ctx)).await;
    result.unwrap();
    let calls: Vec<_> = state.lock().unwrap().changes.drain(..).collect();
    assert_eq!(serde_json::from_str::<Value>(&calls[0].3).unwrap(), json!({"minActiveBackups": null}));
    assert_eq!(state.lock().unwrap().group.min_active_backups, None);
}

#[tokio::test]
async fn an_unsafe_edit_is_refused_with_no_admin_call_and_says_why() {
    let mut state = healthy();
    state.down.insert("demo-node-2".into());
    let (ctx, mut handle, state) = fake_cluster(state).await;
    // With demo-node-2 down, demoting demo-node-0 would leave one of two
    // primaries reachable.
    let unsafe_edit = group(json!([{"node": "demo-node-0", "role": "PASSIVE_BACKUP"}]));
    let script = vec![get_cluster(), get_tokens(), event(), status_of(&unsafe_edit)];
    let (result, seen) =
        scripted(&mut handle, script, replication_group::reconcile(Arc::new(unsafe_edit), ctx.clone())).await;
    assert_eq!(result.unwrap(), Action::requeue(std::time::Duration::from_secs(10)), "looked at again later");
    assert_eq!(changes(&state), vec![], "nothing was applied");
    let warning = &seen[2].1;
    assert_eq!((warning["type"].as_str(), warning["reason"].as_str()), (Some("Warning"), Some("RoleChangeBlocked")));
    let status = &seen[3].1;
    let refused = status["status"]["refused"].as_str().unwrap();
    assert!(refused.contains("making demo-node-0 PASSIVE_BACKUP would leave 1 of 2 PRIMARY members"), "{refused}");
    assert_eq!(condition(status, "Degraded")["status"], "True");
    assert_eq!(condition(status, "Degraded")["reason"], "RoleChangeBlocked");
    assert_eq!(status["status"]["pending"], json!(["demo-node-0: PRIMARY → PASSIVE_BACKUP"]));
    assert_eq!(member(status, "demo-node-0")["desiredRole"], "PASSIVE_BACKUP");
    assert!(member(status, "demo-node-2").get("lag").is_none(), "the leader has no progress for a silent member");

    // Once demo-node-2 answers again the same spec goes through.
    state.lock().unwrap().down.clear();
    let script = vec![get_cluster(), get_tokens(), event(), status_of(&group(json!([])))];
    let edit = group(json!([{"node": "demo-node-0", "role": "PASSIVE_BACKUP"}]));
    let (result, seen) = scripted(&mut handle, script, replication_group::reconcile(Arc::new(edit), ctx)).await;
    result.unwrap();
    assert_eq!(
        changes(&state),
        vec![change("demo-node-1", "POST", "/v1/replicationgroups/default/demo-node-0?role=PASSIVE_BACKUP")]
    );
    assert!(seen[3].1["status"].get("refused").is_none(), "the refusal no longer stands");
}

#[tokio::test]
async fn a_refused_admin_call_fails_the_reconcile_counted_by_category_and_is_retried() {
    let mut state = healthy();
    state.refuse = Some((503, "AXONIQ-2100"));
    let (ctx, mut handle, state) = fake_cluster(state).await;
    let edit = Arc::new(group(json!([{"node": "demo-node-2", "role": "SECONDARY"}])));
    let script = vec![get_cluster(), get_tokens(), event(), status_of(&edit)];
    let (result, seen) = scripted(&mut handle, script, replication_group::reconcile(edit.clone(), ctx.clone())).await;
    let error = result.unwrap_err();
    assert_eq!(error.category(), "admin_refused");
    assert!(error.to_string().contains("AXONIQ-2100"), "{error}");
    assert_eq!(
        replication_group::error_policy(edit.clone(), &error, ctx.clone()),
        Action::requeue(std::time::Duration::from_secs(5))
    );
    assert_eq!(ctx.metrics.failures("replicationgroup", "admin_refused"), 1);
    assert!(ctx.metrics.render().contains("category=\"admin_refused\"} 1"));
    assert_eq!((seen[2].1["type"].as_str(), seen[2].1["reason"].as_str()), (Some("Warning"), Some("AdminCallFailed")));
    assert_eq!(condition(&seen[3].1, "Degraded")["reason"], "AdminCallFailed");

    // The retry, once the cluster accepts changes, makes the same call.
    state.lock().unwrap().refuse = None;
    let script = vec![get_cluster(), get_tokens(), event(), status_of(&edit)];
    let (result, _) = scripted(&mut handle, script, replication_group::reconcile(edit, ctx)).await;
    result.unwrap();
    let target = "/v1/replicationgroups/default/demo-node-2?role=SECONDARY";
    assert_eq!(changes(&state), vec![change("demo-node-1", "POST", target), change("demo-node-1", "POST", target)]);
}

#[tokio::test]
async fn a_new_group_is_created_then_its_contexts_one_call_per_reconcile() {
    let mut state = healthy();
    state.group.exists = false;
    let (ctx, mut handle, state) = fake_cluster(state).await;
    let mut orders = group(json!([{"node": "demo-node-2", "role": "ACTIVE_BACKUP"}]));
    orders.metadata.name = Some("orders".into());
    orders.spec.contexts = vec!["orders".into(), "billing".into()];
    let orders = Arc::new(orders);
    let status_path = "/apis/ranvier.io/v1alpha1/namespaces/shop/replicationgroups/orders/status";
    for _ in 0..4 {
        let script = vec![
            get_cluster(),
            get_tokens(),
            event(),
            answer(Method::PATCH, status_path, serde_json::to_value(&*orders).unwrap()),
        ];
        let (result, _) =
            scripted(&mut handle, script, replication_group::reconcile(orders.clone(), ctx.clone())).await;
        if result.unwrap() == Action::requeue(std::time::Duration::from_secs(30)) {
            panic!("settled before every call was made");
        }
        if state.lock().unwrap().changes.len() == 3 {
            break;
        }
    }
    let made = state.lock().unwrap().changes.clone();
    let targets: Vec<(&str, &str)> = made.iter().map(|(_, m, t, _)| (m.as_str(), t.as_str())).collect();
    assert_eq!(targets, vec![("POST", "/v1/replicationgroups"), ("POST", "/v1/context"), ("POST", "/v1/context")]);
    let request: Value = serde_json::from_str(&made[0].3).unwrap();
    assert_eq!(request["name"], "orders");
    assert_eq!(
        request["roles"],
        json!([
            {"node": "demo-node-0", "role": "PRIMARY"},
            {"node": "demo-node-1", "role": "PRIMARY"},
            {"node": "demo-node-2", "role": "ACTIVE_BACKUP"}
        ])
    );
    let contexts: Vec<Value> = made[1..].iter().map(|(_, _, _, body)| serde_json::from_str(body).unwrap()).collect();
    assert_eq!(
        contexts
            .iter()
            .map(|c| (c["context"].as_str().unwrap(), c["replicationGroup"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        vec![("orders", "orders"), ("billing", "orders")]
    );
}

#[tokio::test]
async fn a_cluster_whose_nodes_do_not_answer_is_reported_and_retried() {
    let mut state = healthy();
    state.down.extend(NODES.iter().map(|n| (*n).to_owned()));
    let (ctx, mut handle, _state) = fake_cluster(state).await;
    let example_group = Arc::new(group(json!([])));
    let script = vec![get_cluster(), get_tokens(), status_of(&example_group)];
    let (result, seen) = scripted(&mut handle, script, replication_group::reconcile(example_group, ctx)).await;
    assert_eq!(result.unwrap_err().category(), "admin_unreachable");
    assert_eq!(condition(&seen[2].1, "Progressing")["reason"], "ClusterUnreachable");
    assert_eq!(condition(&seen[2].1, "Available")["status"], "False");
}

#[tokio::test]
async fn a_group_of_a_missing_cluster_says_so() {
    let (ctx, mut handle, state) = fake_cluster(healthy()).await;
    let example_group = Arc::new(group(json!([])));
    let script = vec![
        Expect {
            answer: Some(support::not_found()),
            ..expect(Method::GET, "/apis/ranvier.io/v1alpha1/namespaces/shop/ranvierclusters/demo")
        },
        event(),
        status_of(&example_group),
    ];
    let (result, seen) = scripted(&mut handle, script, replication_group::reconcile(example_group, ctx)).await;
    result.unwrap();
    assert_eq!(changes(&state), vec![]);
    assert_eq!(condition(&seen[2].1, "Degraded")["reason"], "ClusterNotFound");
}
