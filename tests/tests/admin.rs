//! The cluster formed and administered by hand with `ranvierctl` against
//! real node processes: init-cluster, register-node, contexts in their own
//! replication groups, member roles and role changes in place, the
//! active-backup commit rule and a passive backup's catch-up.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use ranvier_proto::event::GetLastTokenRequest;
use ranvier_tests::{Node, error_code, event, eventually, in_context, ranvierctl, start_nodes, wait_voters};

/// Runs ranvierctl against `node`'s HTTP API.
fn ctl(node: &Node, args: &[&str]) -> (i32, String, String) {
    let server = format!("http://{}", node.http_addr);
    let mut all = vec![args[0], "-S", &server];
    all.extend_from_slice(&args[1..]);
    ranvierctl(&all).unwrap()
}

fn ok(node: &Node, args: &[&str]) -> String {
    let (code, out, err) = ctl(node, args);
    assert_eq!(code, 0, "ranvierctl {args:?} failed: {out}{err}");
    out
}

/// Appends one event of `aggregate` at `seq` to `context` through `node`.
async fn append(node: &Node, context: &str, aggregate: &str, seq: i64) -> Result<(), tonic::Status> {
    let mut client = node.event_store().await.unwrap();
    client.append_event(in_context(tokio_stream::iter(vec![event(aggregate, seq, 64)]), context)).await.map(|_| ())
}

/// Appends to `context` through `node` until `answered` accepts the
/// outcome (within 30 s), each attempt on a new aggregate `prefix-N` at
/// sequence 0: a refused write was never confirmed, but may still have
/// been stored.
async fn append_until(
    node: &Node,
    context: &str,
    prefix: &str,
    what: &str,
    answered: impl Fn(&Result<(), tonic::Status>) -> bool,
) {
    let attempt = std::sync::atomic::AtomicUsize::new(0);
    eventually(Duration::from_secs(30), what, || async {
        let n = attempt.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        answered(&append(node, context, &format!("{prefix}-{n}"), 0).await)
    })
    .await
    .unwrap();
}

async fn last_token(node: &Node, context: &str) -> Option<i64> {
    let mut client = node.event_store().await.ok()?;
    let reply = client.get_last_token(in_context(GetLastTokenRequest {}, context)).await.ok()?;
    Some(reply.into_inner().token)
}

/// Waits until `node`'s own replica of `context` (not one it would pass
/// calls on to) holds events up to `token`.
async fn holds(node: &Node, context: &str, token: i64) {
    eventually(Duration::from_secs(30), &format!("{} to hold {context} up to {token}", node.name()), || async {
        stores_locally(node, context) && last_token(node, context).await == Some(token)
    })
    .await
    .unwrap();
}

/// True when `node` has its own store of `context` open (readiness lists it).
fn stores_locally(node: &Node, context: &str) -> bool {
    let Ok((_, body)) = node.http_get("/ready") else { return false };
    serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|ready| ready["contexts"][context].is_object())
}

/// What GetPlatformServer tells a client of `context` connected to `node`.
async fn platform_server(node: &Node, context: &str) -> ranvier_proto::control::PlatformInfo {
    use ranvier_proto::control::ClientIdentification;
    use ranvier_proto::control::platform_service_client::PlatformServiceClient;
    let mut client = PlatformServiceClient::new(node.channel().await.unwrap());
    let identification =
        ClientIdentification { client_id: "c1".into(), component_name: "test".into(), ..Default::default() };
    client.get_platform_server(in_context(identification, context)).await.unwrap().into_inner()
}

/// (file name, inode) of every event segment of `context` on a node.
fn segment_inodes(node_dir: &Path, context: &str) -> Vec<(String, u64)> {
    let dir = node_dir.join("data").join(context);
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".events"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().ino()))
        .collect();
    files.sort();
    files
}

/// Forms the cluster by hand: init-cluster on node-1, register-node on the others.
async fn formed_by_hand(dir: &Path) -> Vec<Node> {
    // Without access control register-node is refused unless a setting
    // says, in its name, that this is insecure.
    let nodes = start_nodes(dir, 3, false, &[]).unwrap();
    let port_text = nodes[0].internal_addr().unwrap().rsplit_once(':').unwrap().1.to_owned();
    let out = ok(&nodes[0], &["init-cluster"]);
    assert!(out.contains("initialised"), "{out}");
    let (code, _, err) = ctl(&nodes[1], &["register-node", "-h", "127.0.0.1", "-p", &port_text]);
    assert!(code == 1 && err.contains("AXONIQ-1001") && err.contains("insecure-register-node"), "{err}");
    let nodes: Vec<Node> =
        nodes.into_iter().map(|node| node.restart_with(&["ranvier.insecure-register-node=true"]).unwrap()).collect();
    let (code, _, err) = ctl(&nodes[0], &["init-cluster"]);
    assert_eq!(code, 1, "a second init-cluster is refused");
    assert!(err.contains("AXONIQ-2306"), "{err}");
    for node in &nodes[1..] {
        let out = ok(node, &["register-node", "-h", "127.0.0.1", "-p", &port_text]);
        assert!(out.contains("Accepted"), "{out}");
    }
    for group in ["_admin", "default"] {
        wait_voters(&nodes[0], group, 3).await.unwrap();
    }
    nodes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_formed_and_administered_with_ranvierctl() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = formed_by_hand(dir.path()).await;
    let listing = ok(&nodes[2], &["cluster"]);
    for name in ["node-1", "node-2", "node-3"] {
        assert!(listing.contains(name), "{listing}");
    }

    // A context in its own group: two primaries and a passive backup.
    ok(&nodes[1], &["register-context", "-c", "orders", "-n", "node-1,node-2", "-p", "node-3"]);
    let contexts = ok(&nodes[0], &["contexts"]);
    assert!(contexts.contains("orders") && contexts.contains("node-3:PASSIVE_BACKUP"), "{contexts}");
    wait_voters(&nodes[0], "orders", 2).await.unwrap();
    for seq in 0..10 {
        append(&nodes[0], "orders", "order-1", seq).await.unwrap();
    }
    holds(&nodes[2], "orders", 9).await;
    let groups = ok(&nodes[0], &["replication-groups", "-o", "json"]);
    let groups: serde_json::Value = serde_json::from_str(&groups).unwrap();
    let orders = groups.as_array().unwrap().iter().find(|g| g["name"] == "orders").unwrap();
    let third = orders["members"].as_array().unwrap().iter().find(|m| m["node"] == "node-3").unwrap().clone();
    assert_eq!(third["raft"], "learner", "a passive backup does not vote: {orders}");

    // Clear errors and exit codes for bad requests.
    let (code, _, err) = ctl(&nodes[0], &["add-node-to-replication-group", "-g", "orders", "-n", "nobody"]);
    assert_eq!((code, err.contains("AXONIQ-1301")), (1, true), "{err}");
    let (code, _, err) = ctl(&nodes[0], &["change-role", "-g", "orders", "-n", "node-3", "-r", "LEADER"]);
    assert_eq!((code, err.contains("unknown role")), (1, true), "{err}");
    let (code, _, err) = ctl(&nodes[0], &["delete-context", "-c", "_admin"]);
    assert_eq!((code, err.contains("AXONIQ-2304")), (1, true), "{err}");
    let (code, _, err) = ctl(&nodes[0], &["change-role", "-g", "orders", "-n", "node-3"]);
    assert_eq!((code, err.contains("-r <role> is required")), (2, true), "{err}");
    let (code, _, err) = ranvierctl(&["cluster", "-S", "http://127.0.0.1:1"]).unwrap();
    assert_eq!((code, err.contains("cannot reach")), (3, true), "{err}");

    // Role changes in place under writes: the store's files stay the same.
    let before = segment_inodes(&nodes[2].dir, "orders");
    let mut seq = 10;
    for role in ["PRIMARY", "SECONDARY", "PRIMARY", "ACTIVE_BACKUP", "PASSIVE_BACKUP"] {
        ok(&nodes[0], &["change-role", "-g", "orders", "-n", "node-3", "-r", role]);
        for _ in 0..5 {
            eventually(Duration::from_secs(20), "a write during role changes", || async {
                append(&nodes[1], "orders", "order-1", seq).await.is_ok()
            })
            .await
            .unwrap();
            seq += 1;
        }
    }
    holds(&nodes[2], "orders", seq - 1).await;
    assert_eq!(segment_inodes(&nodes[2].dir, "orders"), before, "role changes copied no file");

    // The documented path: delete with --preserve-event-store, add with a new role.
    ok(&nodes[0], &["delete-node-from-replication-group", "-g", "orders", "-n", "node-3", "--preserve-event-store"]);
    let left = nodes[2].dir.join("node.log");
    eventually(Duration::from_secs(20), "node-3 to leave orders", || async {
        std::fs::read_to_string(&left).unwrap_or_default().contains("left replication group")
    })
    .await
    .unwrap();
    append(&nodes[0], "orders", "order-1", seq).await.unwrap();
    ok(&nodes[0], &["add-node-to-replication-group", "-g", "orders", "-n", "node-3", "-r", "SECONDARY"]);
    holds(&nodes[2], "orders", seq).await;
    assert_eq!(segment_inodes(&nodes[2].dir, "orders")[0], before[0], "the preserved store was reused");

    // Deleting the context deletes its files everywhere.
    ok(&nodes[0], &["delete-context", "-c", "orders"]);
    for node in &nodes {
        let events = node.dir.join("data").join("orders");
        eventually(Duration::from_secs(20), "the context's files to go", || async { !events.exists() }).await.unwrap();
    }
    ok(&nodes[0], &["delete-replication-group", "-g", "orders"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_backup_down_blocks_writes_and_a_passive_backup_never_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = formed_by_hand(dir.path()).await;
    ok(&nodes[0], &["register-context", "-c", "ledger", "-n", "node-1", "-a", "node-2", "-p", "node-3"]);
    wait_voters(&nodes[0], "ledger", 1).await.unwrap();
    eventually(Duration::from_secs(20), "the first write", || async {
        append(&nodes[0], "ledger", "acct", 0).await.is_ok()
    })
    .await
    .unwrap();

    // Backups send their clients to the primary; the primary keeps them.
    for (node, same) in [(&nodes[0], true), (&nodes[1], false), (&nodes[2], false)] {
        let info = platform_server(node, "ledger").await;
        assert_eq!(info.same_connection, same, "{}: {info:?}", node.name());
        let primary = info.primary.unwrap();
        assert_eq!(primary.node_name, "node-1", "{}", node.name());
        let port = nodes[0].client_addr.rsplit_once(':').unwrap().1;
        assert_eq!(primary.grpc_port.to_string(), port);
    }

    // The passive backup stops: writes go on.
    let mut passive = nodes.remove(2);
    passive.stop().unwrap();
    for seq in 1..20 {
        append(&nodes[0], "ledger", "acct", seq).await.unwrap();
    }
    // It comes back and catches up.
    let passive = passive.restart().unwrap();
    holds(&passive, "ledger", 19).await;
    nodes.push(passive);

    // The active backup stops (min-active-backups = 1): writes are refused, clearly.
    let mut active = nodes.remove(1);
    active.kill9().unwrap();
    // A write under way as it died is not confirmed (AXONIQ-10003: the
    // primaries may hold it); after that, writes are refused up front.
    let unconfirmed = append(&nodes[0], "ledger", "acct", 20).await.unwrap_err();
    let code = error_code(&unconfirmed);
    assert!(matches!(code.as_deref(), Some("AXONIQ-2100" | "AXONIQ-10003")), "{unconfirmed:?}");
    assert!(unconfirmed.message().contains("active backup"), "{}", unconfirmed.message());
    let refused = append(&nodes[0], "ledger", "refused", 0).await.unwrap_err();
    assert_eq!(error_code(&refused).as_deref(), Some("AXONIQ-2100"), "{refused:?}");
    assert!(refused.message().contains("accepts no writes"), "{}", refused.message());
    // Back: writes resume.
    let active = active.restart().unwrap();
    append_until(&nodes[0], "ledger", "after", "writes to resume", Result::is_ok).await;
    let last = last_token(&nodes[0], "ledger").await.unwrap();
    holds(&active, "ledger", last).await;

    // The group's own min-active-backups wins over the nodes' setting: with
    // 0 required, losing the active backup stops no write.
    let (code, _, err) = ctl(&nodes[0], &["set-min-active-backups", "-g", "ledger", "-n", "some"]);
    assert_eq!(code, 2, "a count that is not one is a usage error: {err}");
    let (code, out, err) = ctl(&nodes[0], &["set-min-active-backups", "-g", "nope", "-n", "0"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("AXONIQ-1302"), "an unknown group: {out}{err}");
    ok(&nodes[0], &["set-min-active-backups", "-g", "ledger", "-n", "0"]);
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&ok(&nodes[0], &["replication-groups", "-o", "json"])).unwrap();
    let ledger = listed.iter().find(|g| g["name"] == "ledger").unwrap();
    assert_eq!(ledger["minActiveBackups"], 0, "{ledger}");
    assert!(ok(&nodes[0], &["replication-groups"]).contains("[min-active-backups 0]"));
    let mut active = active;
    active.kill9().unwrap();
    // Every node applies the setting from the _admin log at its own pace.
    append_until(&nodes[0], "ledger", "alone", "writes without the active backup", Result::is_ok).await;
    for seq in 0..9 {
        append(&nodes[0], "ledger", "alone-steady", seq).await.unwrap();
    }
    // Back to the nodes' setting (1): refused again while it is down.
    ok(&nodes[0], &["set-min-active-backups", "-g", "ledger", "-n", "default"]);
    append_until(
        &nodes[0],
        "ledger",
        "again",
        "writes to be refused again",
        |answer| matches!(answer, Err(refused) if error_code(refused).as_deref() == Some("AXONIQ-2100")),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_messaging_only_node_stores_nothing_and_serves_its_clients() {
    use ranvier_proto::event::GetAggregateEventsRequest;
    use tokio_stream::StreamExt;

    let dir = tempfile::tempdir().unwrap();
    let nodes = formed_by_hand(dir.path()).await;
    ok(&nodes[0], &["register-context", "-c", "shop", "-n", "node-1,node-2", "-m", "node-3"]);
    wait_voters(&nodes[0], "shop", 2).await.unwrap();
    // node-3's replica of the model learns of the group a moment later.
    eventually(Duration::from_secs(10), "node-3 to list its MESSAGING_ONLY role", || async {
        ok(&nodes[2], &["replication-groups", "-o", "json"]).contains("MESSAGING_ONLY")
    })
    .await
    .unwrap();

    // A client of node-3 appends and reads; node-3 holds no event files.
    let messaging = &nodes[2];
    eventually(Duration::from_secs(20), "a write through the messaging-only node", || async {
        append(messaging, "shop", "cart-1", 0).await.is_ok()
    })
    .await
    .unwrap();
    append(messaging, "shop", "cart-1", 1).await.unwrap();
    let conflict = append(messaging, "shop", "cart-1", 1).await.unwrap_err();
    assert_eq!(error_code(&conflict).as_deref(), Some("AXONIQ-2000"), "errors pass through unchanged");
    assert_eq!(last_token(messaging, "shop").await, Some(1));
    let mut client = messaging.event_store().await.unwrap();
    let request = GetAggregateEventsRequest { aggregate_id: "cart-1".into(), ..Default::default() };
    let events: Vec<_> =
        client.list_aggregate_events(in_context(request, "shop")).await.unwrap().into_inner().collect().await;
    let sequences: Vec<i64> = events.into_iter().map(|e| e.unwrap().aggregate_sequence_number).collect();
    assert_eq!(sequences, vec![0, 1]);
    holds(&nodes[1], "shop", 1).await;
    assert!(!messaging.dir.join("data").join("shop").exists(), "a messaging-only node stores no events");
    assert!(!messaging.dir.join("log").join("shop").exists(), "and keeps no replication log");

    // Commands route through it as through any node: a handler on the
    // messaging-only node answers a caller on node-1, and the reverse.
    let _on_messaging = answer_commands(messaging, "shop", "Checkout").await;
    let _on_primary = answer_commands(&nodes[0], "shop", "Restock").await;
    assert_eq!(dispatched(&nodes[0], "shop", "Checkout").await, "handled on node-3");
    assert_eq!(dispatched(messaging, "shop", "Restock").await, "handled on node-1");

    // Its clients are not sent elsewhere: it serves them itself.
    let info = platform_server(messaging, "shop").await;
    assert!(info.same_connection, "{info:?}");
}

/// A command handler of `command` in `context` on `node` that answers
/// every command with where it ran; it stops when dropped.
async fn answer_commands(node: &Node, context: &str, command: &str) -> tokio::task::JoinHandle<()> {
    use ranvier_proto::command::command_provider_inbound::Request as Inbound;
    use ranvier_proto::command::command_provider_outbound::Request as Outbound;
    use ranvier_proto::command::command_service_client::CommandServiceClient;
    use ranvier_proto::command::{CommandProviderOutbound, CommandResponse, CommandSubscription};
    use ranvier_proto::common::{FlowControl, SerializedObject};
    let (to_server, outbound) = tokio::sync::mpsc::channel(16);
    let stream = tokio_stream::wrappers::ReceiverStream::new(outbound);
    let mut client = CommandServiceClient::new(node.channel().await.unwrap());
    let mut inbound = client.open_stream(in_context(stream, context)).await.unwrap().into_inner();
    let name = node.name().to_owned();
    let subscription = CommandSubscription {
        message_id: format!("{name}-sub"),
        command: command.to_owned(),
        component_name: "shop-app".into(),
        client_id: format!("{name}-client"),
        load_factor: 100,
    };
    let send = |request| CommandProviderOutbound { request: Some(request), instruction_id: String::new() };
    to_server.send(send(Outbound::Subscribe(subscription))).await.unwrap();
    let permits = FlowControl { client_id: format!("{name}-client"), permits: 1000 };
    to_server.send(send(Outbound::FlowControl(permits))).await.unwrap();
    tokio::spawn(async move {
        while let Ok(Some(message)) = inbound.message().await {
            let Some(Inbound::Command(command)) = message.request else { continue };
            let data = format!("handled on {name}").into_bytes().into();
            let response = CommandResponse {
                message_identifier: format!("{}-answer", command.message_identifier),
                request_identifier: command.message_identifier,
                payload: Some(SerializedObject { r#type: "Done".into(), revision: String::new(), data }),
                ..Default::default()
            };
            if to_server.send(send(Outbound::CommandResponse(response))).await.is_err() {
                return;
            }
        }
    })
}

/// Dispatches `command` in `context` through `node` until a handler
/// answers (handlers are announced across the cluster within a second);
/// the answer's payload.
async fn dispatched(node: &Node, context: &str, command: &str) -> String {
    use ranvier_proto::command::Command;
    use ranvier_proto::command::command_service_client::CommandServiceClient;
    let mut client = CommandServiceClient::new(node.channel().await.unwrap());
    let started = std::time::Instant::now();
    for attempt in 0.. {
        let request = Command {
            message_identifier: format!("{command}-{attempt}"),
            name: command.to_owned(),
            ..Default::default()
        };
        let response = client.dispatch(in_context(request, context)).await.unwrap().into_inner();
        if response.error_code.is_empty() {
            return String::from_utf8(response.payload.unwrap_or_default().data.to_vec()).unwrap();
        }
        assert_eq!(response.error_code, "AXONIQ-4000", "{response:?}");
        assert!(started.elapsed() < Duration::from_secs(10), "no handler of {command} reached from {}", node.name());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_cluster_killed_and_restarted_keeps_its_model_roles_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = formed_by_hand(dir.path()).await;
    ok(&nodes[0], &["register-context", "-c", "orders", "-n", "node-1,node-2", "-p", "node-3"]);
    wait_voters(&nodes[0], "orders", 2).await.unwrap();
    for seq in 0..10 {
        eventually(Duration::from_secs(20), "a write", || async {
            append(&nodes[seq as usize % 2], "orders", "order-1", seq).await.is_ok()
        })
        .await
        .unwrap();
    }
    holds(&nodes[2], "orders", 9).await;
    // The contexts and their members' roles (leaders may change on restart).
    let model_of = |node: &Node| {
        let mut contexts: serde_json::Value = serde_json::from_str(&ok(node, &["contexts", "-o", "json"])).unwrap();
        for context in contexts.as_array_mut().unwrap() {
            context.as_object_mut().unwrap().remove("leader");
        }
        contexts
    };
    let groups_before = model_of(&nodes[0]);
    let initialised = |node: &Node| node.log().matches("initialised replication group").count();
    let inits_before: Vec<usize> = nodes.iter().map(initialised).collect();
    assert!(inits_before.iter().sum::<usize>() >= 2, "the founding members initialised default and orders");

    // Power loss of every node at once, then all come back.
    let mut restarted = Vec::new();
    for mut node in nodes {
        node.kill9().unwrap();
        restarted.push(node);
    }
    let nodes: Vec<Node> = restarted.into_iter().map(|node| node.restart().unwrap()).collect();
    for group in ["_admin", "default", "orders"] {
        let voters = if group == "orders" { 2 } else { 3 };
        wait_voters(&nodes[0], group, voters).await.unwrap();
    }
    assert_eq!(model_of(&nodes[0]), groups_before, "the model survived the restart");
    for node in &nodes {
        holds(node, "orders", 9).await;
    }
    let inits_after: Vec<usize> = nodes.iter().map(initialised).collect();
    assert_eq!(inits_after, inits_before, "a restart initialises no group again");
    eventually(Duration::from_secs(20), "writes after the restart", || async {
        append(&nodes[1], "orders", "order-1", 10).await.is_ok()
    })
    .await
    .unwrap();
    holds(&nodes[2], "orders", 10).await;
}
