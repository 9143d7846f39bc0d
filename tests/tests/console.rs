//! The web console's pages, as a browser gets them from any node: the
//! overview shows the cluster's nodes, every replication group with its
//! leader and members' roles, and the contexts with their event counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ranvier_tests::{event, eventually, http_call, last_token, leader_of, start_cluster, wait_voters};

/// The text of `html` with tags and runs of whitespace collapsed, so that a
/// table row reads as its cells in order.
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_nodes_groups_roles_and_contexts_from_any_node() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 3, &[]).unwrap();
    for node in &nodes {
        wait_voters(node, "default", 3).await.unwrap();
    }
    let mut client = nodes[0].event_store().await.unwrap();
    client.append_event(tokio_stream::iter((0..5).map(|s| event("console", s, 40)).collect::<Vec<_>>())).await.unwrap();
    let asked = &nodes[1];
    eventually(Duration::from_secs(10), "node 2 holds the 5 events", || async {
        last_token(asked).await.is_ok_and(|t| t == 4)
    })
    .await
    .unwrap();
    let leader = leader_of(asked, "default").unwrap();

    // Idle for longer than a leader may stay silent (1.2 s: twice the test
    // cluster's 600 ms election timeout): heartbeats keep every node, the
    // leader included, from taking its leader as stale.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for node in &nodes {
        let shown = text(&http_call(&node.http_addr, "GET", "/console").unwrap().body);
        assert!(!shown.contains("This node"), "an idle, whole cluster gives {} no warning: {shown}", node.name());
    }

    let root = http_call(&asked.http_addr, "GET", "/").unwrap();
    assert!((300..400).contains(&root.code), "/ sends a browser to the console: {root:?}");
    assert!(root.headers.iter().any(|h| h == "location: /console"), "{:?}", root.headers);

    let page = http_call(&asked.http_addr, "GET", "/console").unwrap();
    assert_eq!(page.code, 200, "{}", page.body);
    assert!(page.headers.iter().any(|h| h.starts_with("content-type: text/html")), "{:?}", page.headers);
    let shown = text(&page.body);
    for node in &nodes {
        // Each node answered for itself: up, its version, its free disk.
        let row = format!("{} up ", node.name());
        let row = shown.split(&row).nth(1).unwrap_or_else(|| panic!("node {} listed as up: {shown}", node.name()));
        let row = row.split(" node-").next().unwrap_or(row);
        assert!(row.contains(env!("CARGO_PKG_VERSION")), "{}'s version: {row}", node.name());
        assert!(row.contains(" free, reserve 256.0 MiB") && row.contains("localhost:"), "{}: {row}", node.name());
    }
    assert!(shown.contains(&format!("Leader {leader} ")), "the default group's leader is named: {shown}");
    let group = shown.split("default Leader").nth(1).expect("the default group has its own box");
    let group = group.split("Contexts on this node").next().unwrap_or(group);
    for node in &nodes {
        assert!(
            group.contains(&format!("{} PRIMARY", node.name())),
            "{} is a PRIMARY of default: {group}",
            node.name()
        );
    }
    let row = shown.split("default default 5 0 ").nth(1).expect("node 2's context row counts its 5 events");
    let bytes: u64 = row.strip_suffix(" B open").or_else(|| row.split(" B open").next()).unwrap().parse().unwrap();
    assert!(bytes > 5 * 40, "and the size of its files, at least its payloads: {row}");
    assert!(!shown.contains("knows no leader"), "no warning while every group has a leader: {shown}");

    // The style sheet the page links to is served, cacheable for good.
    let href = page.body.split("rel=\"stylesheet\" href=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap();
    let css = http_call(&asked.http_addr, "GET", href).unwrap();
    assert_eq!(css.code, 200, "{href}");
    assert!(css.headers.iter().any(|h| h.starts_with("content-type: text/css")), "{:?}", css.headers);
    assert!(css.headers.iter().any(|h| h.contains("immutable")), "{:?}", css.headers);
    assert!(css.body.contains("@media (max-width"), "one sheet for wide and narrow screens");

    // The groups page says how many active backups each group requires:
    // its own figure once it sets one, on every node's page.
    let groups = || text(&http_call(&asked.http_addr, "GET", "/console/groups").unwrap().body);
    assert!(groups().contains("hold each write: min-active-backups of the leading node"), "{}", groups());
    let server = format!("http://{}", nodes[0].http_addr);
    let (code, _, err) =
        ranvier_tests::ranvierctl(&["set-min-active-backups", "-S", &server, "-g", "default", "-n", "2"]).unwrap();
    assert_eq!(code, 0, "{err}");
    eventually(Duration::from_secs(10), "node 2's page to show the group's own figure", || async {
        groups().contains("hold each write: 2, set for this group")
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_or_back_alone_says_at_the_top_that_it_has_no_current_leader() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(dir.path(), 3, &[]).unwrap();
    for node in &nodes {
        wait_voters(node, "default", 3).await.unwrap();
    }
    let page = http_call(&nodes[2].http_addr, "GET", "/console").unwrap();
    let shown = text(&page.body);
    assert!(!shown.contains("This node"), "no warning while the cluster is whole: {shown}");
    assert!(shown.contains("ms ago)"), "the leader was heard from lately: {shown}");
    let warned = |node: &ranvier_tests::Node| {
        let shown = text(&http_call(&node.http_addr, "GET", "/console").map(|p| p.body).unwrap_or_default());
        ["_admin", "default"].iter().all(|group| {
            shown.contains(&format!("the last leader it knew of replication group {group}"))
                || shown.contains(&format!("knows no leader for replication group {group}"))
        })
    };
    // The other two stop: the survivor's Raft still names the last leader
    // it knew, but it hears from none.
    nodes[0].kill9().unwrap();
    nodes[1].kill9().unwrap();
    eventually(Duration::from_secs(20), "the survivor warns of both groups", || async { warned(&nodes[2]) })
        .await
        .unwrap();
    // It comes back alone after a restart: the same.
    let survivor = nodes.pop().unwrap().restart().unwrap();
    eventually(Duration::from_secs(20), "the restarted node warns of both groups", || async { warned(&survivor) })
        .await
        .unwrap();
    let shown = text(&http_call(&survivor.http_addr, "GET", "/console").unwrap().body);
    for name in ["node-1", "node-2"] {
        assert!(shown.contains(&format!("{name} down: ")), "the model it holds still lists {name}, down: {shown}");
    }
    assert!(shown.contains("node-3 up "), "{shown}");
    assert!(!shown.contains("leads _admin"), "a stale leader is not shown as leading: {shown}");
}

/// A one-node cluster's node is the whole majority of each of its groups:
/// nothing has to answer its leader, and an idle one is no stale leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_leads_its_groups_without_a_warning_however_long_it_idles() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 1, &[]).unwrap();
    wait_voters(&nodes[0], "default", 1).await.unwrap();
    // Longer than twice the test cluster's 600 ms election timeout.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shown = text(&http_call(&nodes[0].http_addr, "GET", "/console").unwrap().body);
    assert!(!shown.contains("This node"), "a lone, idle leader gives no warning: {shown}");
    assert!(shown.contains("Leader node-1 (heard 0 ms ago)"), "{shown}");
}
