//! The web console in a real browser (headless Chromium over WebDriver)
//! against a three-node cluster with access control on: sign in, see the
//! nodes, browse the events a client appended, move a member PRIMARY →
//! PASSIVE_BACKUP → PRIMARY and see the cluster follow, see a refused
//! action's AXONIQ code and message, create and delete contexts with and
//! without their files, and a token that may not change things sees the
//! controls disabled with the reason. Each step is asserted on the page and
//! on the cluster; every page is saved as a screenshot in
//! `target/console-screenshots` (or `RANVIER_SCREENSHOTS`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use ranvier_proto::common::{MetaDataValue, SerializedObject, meta_data_value::Data};
use ranvier_proto::event::Event;
use ranvier_tests::browser::{self, Browser};
use ranvier_tests::{HttpReply, Node, eventually, http_call_with, start_cluster};

const ADMIN: &str = "console-admin-token";
const APP: &str = "console-app-token";

fn screenshots() -> PathBuf {
    std::env::var_os("RANVIER_SCREENSHOTS")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots"), PathBuf::from)
}

/// A REST call with the administrators' token.
fn rest(node: &Node, method: &str, path: &str) -> HttpReply {
    http_call_with(&node.http_addr, method, path, &[("AxonIQ-Access-Token", ADMIN)]).unwrap()
}

/// `group` as `node` reports it in `/v1/public/replicationgroups`.
fn group(node: &Node, group: &str) -> serde_json::Value {
    let groups: serde_json::Value =
        serde_json::from_str(&rest(node, "GET", "/v1/public/replicationgroups").body).unwrap();
    groups.as_array().and_then(|g| g.iter().find(|g| g["name"] == group).cloned()).unwrap_or_default()
}

/// `member`'s (role, Raft place) in `name` as `node` reports it.
fn member(node: &Node, name: &str, member: &str) -> (String, String) {
    let found = group(node, name)["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["node"] == member).cloned())
        .unwrap_or_default();
    (found["role"].as_str().unwrap_or("").to_owned(), found["raft"].as_str().unwrap_or("").to_owned())
}

/// The contexts each node has a store open for.
fn stores(node: &Node) -> Vec<String> {
    let me: serde_json::Value = serde_json::from_str(&rest(node, "GET", "/v1/public/me").body).unwrap();
    me["storageContextNames"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect()
}

fn order_event(seq: i64) -> Event {
    let text = |value: &str| MetaDataValue { data: Some(Data::TextValue(value.to_owned())) };
    Event {
        message_identifier: format!("order-7/{seq}"),
        aggregate_identifier: "order-7".into(),
        aggregate_sequence_number: seq,
        aggregate_type: "Order".into(),
        timestamp: 1_765_000_000_000 + seq,
        payload: Some(SerializedObject {
            r#type: "com.example.OrderPlaced".into(),
            revision: "2".into(),
            data: format!("{{\"orderId\":\"order-7\",\"line\":{seq}}}").into_bytes().into(),
        }),
        meta_data: [("traceId".to_owned(), text(&format!("trace-{seq}")))].into_iter().collect(),
        snapshot: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_runs_the_cluster_from_the_console() {
    if !browser::required() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        "axoniq.axonserver.accesscontrol.enabled=true".to_owned(),
        format!("axoniq.axonserver.accesscontrol.token={APP}"),
        format!("axoniq.axonserver.accesscontrol.admin-token={ADMIN}"),
    ];
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let mut nodes = start_cluster(dir.path(), 3, &settings).unwrap();
    for node in &nodes {
        eventually(Duration::from_secs(30), "three voters in default with a leader", || async {
            let found = group(node, "default");
            let voters = found["members"].as_array().map_or(0, |m| m.iter().filter(|m| m["raft"] == "voter").count());
            voters == 3 && found["leader"].is_string()
        })
        .await
        .unwrap();
    }
    let mut client = nodes[0].event_store().await.unwrap();
    let mut append = tonic::Request::new(tokio_stream::iter((0..3).map(order_event).collect::<Vec<_>>()));
    append.metadata_mut().insert("axoniq-access-token", APP.parse().unwrap());
    client.append_event(append).await.unwrap();

    let browser = Browser::start(&screenshots()).await.unwrap();
    // Any node serves the console; this one need not lead anything.
    let base = format!("http://{}", nodes[1].http_addr);

    // Signing in: without a token the console sends the browser to its
    // sign-in page; an unknown token is refused there.
    browser.open(&format!("{base}/console")).unwrap();
    assert!(browser.url().unwrap().ends_with("/console/login"), "{}", browser.url().unwrap());
    assert!(browser.text("#flash").unwrap().contains("Sign in with a token"), "{}", browser.page_text().unwrap());
    browser.screenshot("login").unwrap();
    browser.type_into("#token", "not-a-token").unwrap();
    browser.follow("form[action=\"/console/login\"] button[type=submit]").await.unwrap();
    assert!(browser.text("#flash").unwrap().contains("does not know that token"), "{}", browser.page_text().unwrap());
    browser.type_into("#token", ADMIN).unwrap();
    browser.follow("form[action=\"/console/login\"] button[type=submit]").await.unwrap();
    assert!(browser.url().unwrap().ends_with("/console"), "{}", browser.url().unwrap());
    let overview = browser.page_text().unwrap();
    assert!(overview.contains("Signed in with the administrators' token"), "{overview}");
    for node in &nodes {
        assert!(browser.text("#nodes-live").unwrap().contains(node.name()), "{} listed: {overview}", node.name());
    }
    browser.screenshot("overview").unwrap();
    browser.open(&format!("{base}/console/login")).unwrap();
    assert!(!browser.text("#allowances").unwrap().contains(" no"), "the administrators' token may do anything");

    // The events a client appended, then one aggregate's.
    browser.open(&format!("{base}/console/events?context=default")).unwrap();
    let events = browser.text("#events-live").unwrap();
    for seq in 0..3 {
        assert!(events.contains(&format!("{{\"orderId\":\"order-7\",\"line\":{seq}}}")), "payload {seq}: {events}");
        assert!(events.contains(&format!("traceId = trace-{seq}")), "metadata {seq}: {events}");
    }
    assert!(events.contains("com.example.OrderPlaced") && events.contains("Revision 2"), "{events}");
    let newest = events.find("\"line\":2").unwrap();
    assert!(newest < events.find("\"line\":0").unwrap(), "newest first: {events}");
    browser.follow("#events-live a[href*=\"aggregate=order-7\"]").await.unwrap();
    assert!(
        browser.text("#shown").unwrap().contains("aggregate order-7 in default"),
        "{}",
        browser.page_text().unwrap()
    );
    browser.screenshot("events").unwrap();

    // PRIMARY → PASSIVE_BACKUP → PRIMARY through the page; the cluster
    // follows: a passive backup replicates as a Raft learner.
    for (role, raft) in [("PASSIVE_BACKUP", "learner"), ("PRIMARY", "voter")] {
        browser.open(&format!("{base}/console/groups")).unwrap();
        browser.choose("#member-default-node-3 select[name=role]", role).unwrap();
        browser.follow("#member-default-node-3 button[type=submit]").await.unwrap();
        assert_eq!(browser.text("#flash").unwrap(), format!("node-3 is {role} in default"));
        eventually(Duration::from_secs(20), &format!("node-3 is a {role} {raft} of default"), || async {
            nodes.iter().all(|n| member(n, "default", "node-3") == (role.to_owned(), raft.to_owned()))
        })
        .await
        .unwrap();
        eventually(Duration::from_secs(10), "the page shows the new role", || async {
            browser.open(&format!("{base}/console/groups")).unwrap();
            browser.text("#member-default-node-3").unwrap().starts_with(&format!("node-3 {role} {raft}"))
        })
        .await
        .unwrap();
        if role == "PASSIVE_BACKUP" {
            browser.screenshot("groups").unwrap();
        }
    }

    // A refused action shows the server's code and message; nothing changes.
    browser.open(&format!("{base}/console/groups")).unwrap();
    browser.choose("#member-_admin-node-2 select[name=role]", "PASSIVE_BACKUP").unwrap();
    browser.follow("#member-_admin-node-2 button[type=submit]").await.unwrap();
    let refusal = browser.text("#flash").unwrap();
    assert_eq!(refusal, "Refused: AXONIQ-2309 every member of _admin is a PRIMARY");
    assert_eq!(member(&nodes[0], "_admin", "node-2").0, "PRIMARY");
    browser.screenshot("refused").unwrap();

    // Create a context in a new group of the three nodes; delete it keeping
    // its files, then another without keeping them.
    for (context, keep) in [("orders", true), ("audit", false)] {
        browser.open(&format!("{base}/console/contexts")).unwrap();
        browser.type_into("#new-context", context).unwrap();
        for node in &nodes {
            browser.choose(&format!("#role-{}", node.name()), "PRIMARY").unwrap();
        }
        browser.follow("form[action=\"/console/contexts\"] button[type=submit]").await.unwrap();
        assert_eq!(browser.text("#flash").unwrap(), format!("Context {context} created"));
        assert!(browser.text(&format!("#context-{context}")).unwrap().starts_with(&format!("{context} {context} ")));
        eventually(Duration::from_secs(20), &format!("every node stores {context}"), || async {
            nodes.iter().all(|n| stores(n).contains(&context.to_owned()))
        })
        .await
        .unwrap();
        if keep {
            eventually(Duration::from_secs(20), "the page names the new group's leader", || async {
                browser.open(&format!("{base}/console/contexts")).unwrap();
                !browser.text(&format!("#context-{context}")).unwrap().contains("none known")
            })
            .await
            .unwrap();
            browser.screenshot("contexts").unwrap();
        }

        browser.follow(&format!("#context-{context} a.danger")).await.unwrap();
        let confirm = browser.page_text().unwrap();
        assert!(confirm.contains(&format!("Delete context {context}?")), "{confirm}");
        assert!(confirm.contains(&format!("its replication group {context} stays")), "{confirm}");
        if keep {
            browser.click_on("#preserve").unwrap();
            browser.screenshot("delete-context").unwrap();
        }
        browser.follow("form.confirm button.danger").await.unwrap();
        let said = if keep {
            format!("Context {context} deleted; its event store files are kept")
        } else {
            format!("Context {context} deleted with its event store files")
        };
        assert_eq!(browser.text("#flash").unwrap(), said);
        assert!(browser.find(&format!("#context-{context}")).is_err(), "{context} is no longer listed");
        eventually(Duration::from_secs(20), &format!("no node serves {context}"), || async {
            nodes.iter().all(|n| !stores(n).contains(&context.to_owned()))
        })
        .await
        .unwrap();
        for node in &nodes {
            let files = node.dir.join("data").join(context);
            assert_eq!(files.exists(), keep, "{}'s files of {context} at {}", node.name(), files.display());
        }
    }

    // Remove a member, keeping its files, after a page that says what it
    // means; then add it back with a role.
    browser.open(&format!("{base}/console/groups")).unwrap();
    browser.follow("#member-default-node-3 a.danger").await.unwrap();
    let confirm = browser.page_text().unwrap();
    assert!(confirm.contains("Remove node-3 from default?"), "{confirm}");
    assert!(confirm.contains("the group keeps node-1 PRIMARY, node-2 PRIMARY: 2 PRIMARY members"), "{confirm}");
    browser.click_on("#preserve").unwrap();
    browser.screenshot("remove-member").unwrap();
    browser.follow("form.confirm button.danger").await.unwrap();
    assert_eq!(browser.text("#flash").unwrap(), "node-3 removed from default; its event store files are kept");
    eventually(Duration::from_secs(20), "node-3 is no member of default", || async {
        nodes.iter().all(|n| member(n, "default", "node-3").0.is_empty())
    })
    .await
    .unwrap();
    assert!(nodes[2].dir.join("data/default").exists(), "node-3 kept its files of default");
    browser.choose("#add-default", "node-3").unwrap();
    browser.choose("#group-default form.add select[name=role]", "PRIMARY").unwrap();
    browser.follow("#group-default form.add button[type=submit]").await.unwrap();
    assert_eq!(browser.text("#flash").unwrap(), "node-3 is PRIMARY in default");
    eventually(Duration::from_secs(20), "node-3 is a PRIMARY voter of default again", || async {
        nodes.iter().all(|n| member(n, "default", "node-3") == ("PRIMARY".to_owned(), "voter".to_owned()))
    })
    .await
    .unwrap();

    // The applications' shared token may look but not change: each control
    // is disabled, with the reason beside it.
    browser.follow("form.who button[type=submit]").await.unwrap();
    assert_eq!(browser.text("#flash").unwrap(), "Signed out.");
    browser.type_into("#token", APP).unwrap();
    browser.follow("form[action=\"/console/login\"] button[type=submit]").await.unwrap();
    // The sign-in page says what the token may do.
    browser.follow("form.who a").await.unwrap();
    let may = browser.text("#allowances").unwrap();
    for (what, allowed) in [
        ("Change the cluster: create contexts, add, move and remove members (ADMIN)", "no"),
        ("See default's state, clients and processors (MONITOR)", "yes"),
        ("Browse default's events (READ_EVENTS)", "yes"),
        ("Delete default, pause, start, split and merge its processors (CONTEXT_ADMIN)", "no"),
    ] {
        assert!(may.contains(&format!("{what} {allowed}")), "{what}: {allowed} in {may}");
    }
    browser.screenshot("signed-in").unwrap();
    browser.open(&format!("{base}/console/contexts")).unwrap();
    assert!(!browser.enabled("form[action=\"/console/contexts\"] button[type=submit]").unwrap());
    assert!(!browser.enabled("#context-default button").unwrap(), "delete is disabled");
    let why = browser.text("#context-default .why").unwrap();
    assert_eq!(why, "Needs the CONTEXT_ADMIN role in default; you are signed in with the applications' shared token.");
    browser.open(&format!("{base}/console/groups")).unwrap();
    assert!(!browser.enabled("#member-default-node-1 button[type=submit]").unwrap());
    assert!(browser.page_text().unwrap().contains("Changing groups: Needs administrator rights"));

    // A phone's width: every page fits, tables scroll inside their boxes.
    browser.resize(390, 844).unwrap();
    for page in [
        "/console/contexts",
        "/console/groups",
        "/console/events?context=default",
        "/console/clients?context=default",
        "/console/login",
        "/console",
    ] {
        browser.open(&format!("{base}{page}")).unwrap();
        let overflow = browser.execute("return document.documentElement.scrollWidth - window.innerWidth").unwrap();
        assert!(overflow.as_i64().unwrap() <= 0, "no sideways scrolling of {page}: {overflow}");
    }
    browser.screenshot("overview-phone").unwrap();

    // Live: a page keeps itself current without a reload. The page of a
    // node that dies says it lost contact; the page of a node left alone
    // says it has no current leader.
    browser.resize(1280, 800).unwrap();
    browser.open(&format!("http://{}/console", nodes[2].http_addr)).unwrap();
    browser.execute("window.__ranvierStayed = true").unwrap();
    nodes[2].kill9().unwrap();
    eventually(Duration::from_secs(20), "the page says it lost contact with node-3", || async {
        browser.execute("return !document.getElementById('lost').hidden").is_ok_and(|shown| shown == true)
    })
    .await
    .unwrap();
    assert_eq!(browser.execute("return window.__ranvierStayed === true").unwrap(), true, "no reload");
    browser.open(&format!("http://{}/console", nodes[0].http_addr)).unwrap();
    browser.execute("window.__ranvierStayed = true").unwrap();
    assert_eq!(browser.text("#warnings").unwrap(), "", "no warning while a majority is up");
    nodes[1].kill9().unwrap();
    eventually(Duration::from_secs(30), "the page of the node left alone warns", || async {
        browser.text("#warnings").is_ok_and(|w| w.contains("replication group default"))
    })
    .await
    .unwrap();
    assert_eq!(browser.execute("return window.__ranvierStayed === true").unwrap(), true, "no reload");
    browser.screenshot("alone").unwrap();
}

/// The clients page of a context: the application connected to the node,
/// its command handler, and its event processor with its segment; split
/// goes to the client that runs it and is answered with its ack, and a
/// client's refusal of pause is shown with the client's own error code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_page_shows_handlers_and_processors_and_relays_their_actions() {
    use ranvier_proto::command::command_provider_outbound::Request as CommandRequest;
    use ranvier_proto::command::command_service_client::CommandServiceClient;
    use ranvier_proto::command::{CommandProviderOutbound, CommandSubscription};
    use ranvier_proto::control::platform_outbound_instruction::Request as Outbound;

    if !browser::required() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 1, &[]).unwrap();
    ranvier_tests::wait_voters(&nodes[0], "default", 1).await.unwrap();
    let channel = nodes[0].channel().await.unwrap();
    let mut app = ranvier_tests::processors::App::connect(&channel, "app-1", &[(0, 1)]).await;
    let (commands, outbound) = tokio::sync::mpsc::channel(4);
    let mut handler = CommandServiceClient::new(channel.clone())
        .open_stream(tokio_stream::wrappers::ReceiverStream::new(outbound))
        .await
        .unwrap()
        .into_inner();
    let subscription = CommandSubscription {
        message_id: "sub-1".into(),
        command: "PlaceOrder".into(),
        component_name: "shop".into(),
        client_id: "app-1".into(),
        load_factor: 100,
    };
    let subscribe = CommandRequest::Subscribe(subscription);
    commands.send(CommandProviderOutbound { request: Some(subscribe), instruction_id: "s1".into() }).await.unwrap();
    handler.message().await.unwrap().expect("the subscription's ack");

    let browser = Browser::start(&screenshots()).await.unwrap();
    let page = format!("http://{}/console/clients?context=default", nodes[0].http_addr);
    browser.open(&page).unwrap();
    assert!(browser.text("#clients-live").unwrap().contains("app-1 shop"), "{}", browser.page_text().unwrap());
    assert_eq!(browser.text("#component-shop").unwrap(), "shop PlaceOrder (load 100) — app-1 on node-1");
    let processor = browser.text("#processor-0").unwrap();
    assert!(processor.starts_with("orders component shop · token store store-1"), "{processor}");
    assert!(
        processor.contains("app-1 node-1 Tracking running 1 active, 2 free 0 (1/1) at 41, caught up"),
        "{processor}"
    );

    // Split reaches the client; its ack is the page's answer.
    let answering = tokio::spawn(async move {
        let instruction = app.next().await;
        assert!(
            matches!(&instruction.request, Some(Outbound::SplitEventProcessorSegment(s)) if s.segment_identifier == 0),
            "{instruction:?}"
        );
        app.answer(&instruction, None).await;
        app
    });
    browser.follow("#processor-0 button[value=split]").await.unwrap();
    let mut app = answering.await.unwrap();
    assert_eq!(browser.text("#flash").unwrap(), "split of orders acknowledged: split app-1 on node-1 (segment 0)");
    browser.screenshot("clients").unwrap();

    // A client that refuses: its code and message are the page's answer.
    let answering = tokio::spawn(async move {
        let instruction = app.next().await;
        assert!(matches!(&instruction.request, Some(Outbound::PauseEventProcessor(_))), "{instruction:?}");
        app.answer(&instruction, Some(("APP-0042", "busy replaying"))).await;
        app
    });
    browser.follow("#processor-0 button[value=pause]").await.unwrap();
    let _app = answering.await.unwrap();
    assert_eq!(browser.text("#flash").unwrap(), "Refused: APP-0042 client app-1 refused: busy replaying");
    drop(commands);
}
