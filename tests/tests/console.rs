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

    let root = http_call(&asked.http_addr, "GET", "/").unwrap();
    assert!((300..400).contains(&root.code), "/ sends a browser to the console: {root:?}");
    assert!(root.headers.iter().any(|h| h == "location: /console"), "{:?}", root.headers);

    let page = http_call(&asked.http_addr, "GET", "/console").unwrap();
    assert_eq!(page.code, 200, "{}", page.body);
    assert!(page.headers.iter().any(|h| h.starts_with("content-type: text/html")), "{:?}", page.headers);
    let shown = text(&page.body);
    for node in &nodes {
        assert!(shown.contains(&format!("{} localhost:", node.name())), "node {} listed: {shown}", node.name());
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
    assert!(shown.contains("default default 5 0 open"), "node 2's context row counts its 5 events: {shown}");
    assert!(!shown.contains("knows no leader"), "no warning while every group has a leader: {shown}");

    // The style sheet the page links to is served, cacheable for good.
    let href = page.body.split("rel=\"stylesheet\" href=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap();
    let css = http_call(&asked.http_addr, "GET", href).unwrap();
    assert_eq!(css.code, 200, "{href}");
    assert!(css.headers.iter().any(|h| h.starts_with("content-type: text/css")), "{:?}", css.headers);
    assert!(css.headers.iter().any(|h| h.contains("immutable")), "{:?}", css.headers);
    assert!(css.body.contains("@media (max-width"), "one sheet for wide and narrow screens");
}
