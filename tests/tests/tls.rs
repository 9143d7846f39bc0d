//! TLS against real node processes, with certificates made in the test:
//! clients, `ranvierctl` and the nodes themselves speak TLS; plain text is
//! refused; a certificate replaced on disk is served to the next
//! connection while open streams go on; a three-node cluster with access
//! control and TLS forms by autocluster and serves an application token on
//! every node.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use ranvier_proto::event::event_store_client::EventStoreClient;
use ranvier_proto::event::{GetAggregateEventsRequest, GetEventsRequest, GetLastTokenRequest};
use ranvier_tests::tls::{Pki, channel, leaf_in, served_certificate};
use ranvier_tests::{Node, error_code, event, eventually};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("axoniq-access-token", token.parse().unwrap());
    request
}

async fn append(channel: &Channel, token: Option<&str>, aggregate: &str, seq: i64) -> Result<(), tonic::Status> {
    let events = tokio_stream::iter(vec![event(aggregate, seq, 32)]);
    let request = match token {
        Some(token) => with_token(events, token),
        None => tonic::Request::new(events),
    };
    EventStoreClient::new(channel.clone()).append_event(request).await.map(|_| ())
}

async fn last_token(channel: &Channel, token: &str) -> Result<i64, tonic::Status> {
    let answer = EventStoreClient::new(channel.clone()).get_last_token(with_token(GetLastTokenRequest {}, token)).await;
    answer.map(|a| a.into_inner().token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_speaks_tls_refuses_plain_text_and_serves_a_replaced_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("tls")).unwrap();
    let (chain, _) = pki.issue("node", &["localhost", "127.0.0.1"]).unwrap();
    let mut settings = pki.node_settings("node");
    settings.push("ranvier.ssl.reload-interval=100ms".into());
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let node = Node::start(&dir.path().join("node"), &settings).unwrap();
    let ca = pki.ca_file();

    // A TLS client appends and follows the events on a stream.
    let tls = channel(&node.client_addr, "localhost", &ca).await.unwrap();
    append(&tls, None, "order-1", 0).await.unwrap();
    let (requests, receiver) = tokio::sync::mpsc::channel(1);
    requests.send(GetEventsRequest { tracking_token: 0, number_of_permits: 100, ..Default::default() }).await.unwrap();
    let mut events = EventStoreClient::new(tls.clone())
        .list_events(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(events.next().await.unwrap().unwrap().token, 0);

    // Plain text is refused on the client port and on the HTTP port.
    let plain = Channel::from_shared(format!("http://{}", node.client_addr)).unwrap().connect().await;
    let refused = match plain {
        Err(_) => true,
        Ok(plain) => append(&plain, None, "order-2", 0).await.is_err(),
    };
    assert!(refused, "a plain-text client was served on a TLS port");
    let plain_http = ranvier_tests::http_call(&node.http_addr, "GET", "/v1/public/me");
    assert!(plain_http.map(|reply| reply.code != 200).unwrap_or(true), "plain HTTP was served on a TLS port");

    // ranvierctl speaks HTTPS, checking the node's certificate against the CA.
    let server = format!("https://localhost:{}", node.http_addr.rsplit(':').next().unwrap());
    let ca_arg = ca.display().to_string();
    let (code, out, err) = ranvierctl_tls(&["cluster", "-S", &server, "--ca-file", &ca_arg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("test-node"), "{out}");
    let stranger = Pki::new(&dir.path().join("stranger")).unwrap();
    let stranger_ca = stranger.ca_file().display().to_string();
    let (code, _, err) = ranvierctl_tls(&["cluster", "-S", &server, "--ca-file", &stranger_ca]);
    assert_eq!(code, 3, "a certificate signed by another CA was accepted: {err}");
    let port = node.http_addr.rsplit(':').next().unwrap();
    let (code, out, err) = ranvierctl_tls(&["cluster", "-s", "-S", &format!("http://localhost:{port}"), "-i"]);
    assert_eq!(code, 0, "-s makes an http:// server https, -i skips the check: {out}{err}");

    // The certificate is rotated on disk: the next connection gets the new
    // one, with no restart; the open stream goes on.
    let before = served_certificate(&node.client_addr, "localhost", &ca).await.unwrap();
    assert_eq!(before, leaf_in(&chain).unwrap());
    let (chain, _) = pki.issue("node", &["localhost", "127.0.0.1"]).unwrap();
    let rotated = leaf_in(&chain).unwrap();
    assert_ne!(rotated, before);
    let address = node.client_addr.clone();
    eventually(Duration::from_secs(10), "the rotated certificate served", || {
        let (address, ca, rotated) = (address.clone(), ca.clone(), rotated.clone());
        async move { served_certificate(&address, "localhost", &ca).await.is_ok_and(|served| served == rotated) }
    })
    .await
    .unwrap();
    let http_served = served_certificate(&node.http_addr, "localhost", &ca).await.unwrap();
    assert_eq!(http_served, rotated, "the HTTP port serves the rotated certificate too");
    append(&tls, None, "order-1", 1).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), events.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(next.token, 1, "the stream opened before the rotation still delivers");
    let fresh = channel(&node.client_addr, "127.0.0.1", &ca).await.unwrap();
    append(&fresh, None, "order-1", 2).await.unwrap();
    assert!(node.log().contains("TLS files changed"), "the reload is logged");
}

fn ranvierctl_tls(args: &[&str]) -> (i32, String, String) {
    ranvier_tests::ranvierctl(args).unwrap()
}

const APP: &str = "static-app-token";
const ADMIN: &str = "admin-token-for-tls";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_access_control_and_tls_forms_and_serves_an_application_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(&dir.path().join("tls")).unwrap();
    // One certificate for the three nodes, naming each way they are called.
    pki.issue("cluster", &["localhost", "127.0.0.1"]).unwrap();
    let mut settings = pki.node_settings("cluster");
    settings.extend([
        "axoniq.axonserver.accesscontrol.enabled=true".to_owned(),
        format!("axoniq.axonserver.accesscontrol.token={APP}"),
        format!("axoniq.axonserver.accesscontrol.admin-token={ADMIN}"),
    ]);
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let nodes = ranvier_tests::start_cluster(dir.path(), 3, &settings).unwrap();
    let ca = pki.ca_file().display().to_string();
    let server = |node: &Node| format!("https://localhost:{}", node.http_addr.rsplit(':').next().unwrap());
    let ctl = |node: &Node, token: &str, args: &[&str]| {
        let server = server(node);
        let mut all = args.to_vec();
        all.extend(["-S", server.as_str(), "--ca-file", ca.as_str(), "-t", token]);
        ranvierctl_tls(&all)
    };

    // The nodes found each other over TLS (the internal port takes no
    // plain text).
    eventually(Duration::from_secs(30), "three nodes in the cluster", || async {
        ctl(&nodes[2], ADMIN, &["cluster", "-o", "json"]).1.matches("\"name\"").count() == 3
    })
    .await
    .unwrap();
    let internal = nodes[1].internal_addr().unwrap().to_owned();
    let plain = Channel::from_shared(format!("http://{internal}")).unwrap().connect().await;
    if let Ok(plain) = plain {
        // With the right internal token, so only the missing TLS can refuse it.
        let mut query = tonic::Request::new(ranvier_proto::cluster::StoreStateQuery { context: "default".into() });
        query.metadata_mut().insert("axoniq-internaltoken", "cluster-secret".parse().unwrap());
        let answer =
            ranvier_proto::cluster::cluster_service_client::ClusterServiceClient::new(plain).store_state(query).await;
        assert!(answer.is_err(), "the internal port answered plain text: {answer:?}");
    }

    // An application registered through one node writes and reads on all.
    let (code, token, err) =
        ctl(&nodes[0], ADMIN, &["register-application", "-a", "shop", "-r", "USE_CONTEXT@default"]);
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_owned();
    let ca_path = pki.ca_file();
    for (i, node) in nodes.iter().enumerate() {
        let tls = channel(&node.client_addr, "localhost", &ca_path).await.unwrap();
        eventually(Duration::from_secs(10), "the application known on every node", || async {
            last_token(&tls, &token).await.is_ok()
        })
        .await
        .unwrap();
        append(&tls, Some(&token), "cart-1", i as i64).await.unwrap();
        assert_eq!(last_token(&tls, &token).await.unwrap(), i as i64, "on {}", node.name());
        // The whole aggregate reads back on this node.
        let request = GetAggregateEventsRequest { aggregate_id: "cart-1".into(), ..Default::default() };
        let mut read = EventStoreClient::new(tls.clone())
            .list_aggregate_events(with_token(request, &token))
            .await
            .unwrap()
            .into_inner();
        let mut sequences = Vec::new();
        while let Some(event) = read.next().await {
            sequences.push(event.unwrap().aggregate_sequence_number);
        }
        assert_eq!(sequences, (0..=i as i64).collect::<Vec<_>>(), "on {}", node.name());
    }

    // An admin call without the right changes nothing.
    let (code, _, err) = ctl(&nodes[1], &token, &["register-context", "-c", "orders", "-n", "node-1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("AXONIQ-1001"), "{err}");
    let (code, _, err) = ctl(&nodes[1], APP, &["delete-context", "-c", "default"]);
    assert!(code == 1 && err.contains("AXONIQ-1001"), "{err}");
    let contexts = ctl(&nodes[2], ADMIN, &["contexts"]).1;
    assert!(!contexts.contains("orders") && contexts.contains("default"), "{contexts}");
    let tls = channel(&nodes[2].client_addr, "localhost", &ca_path).await.unwrap();
    let refused = append(&tls, Some("wrong"), "cart-1", 3).await.unwrap_err();
    assert_eq!(error_code(&refused).as_deref(), Some("AXONIQ-1001"));
    assert_eq!(last_token(&tls, APP).await.unwrap(), 2);
}
