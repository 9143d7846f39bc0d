//! What one client can hold of a node, against a real node process: the
//! calls open on one connection, and an idle HTTP connection's slot.

use std::time::Duration;

use ranvier_proto::event::event_store_client::EventStoreClient;
use ranvier_proto::event::{GetEventsRequest, GetLastTokenRequest};
use ranvier_tests::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_a_connections_stream_limit_wait_until_one_ends() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["ranvier.max-concurrent-streams=2"]).unwrap();
    let channel = node.channel().await.unwrap();
    let mut open = Vec::new();
    for _ in 0..2 {
        let (sender, receiver) = tokio::sync::mpsc::channel(1);
        sender.send(GetEventsRequest { number_of_permits: 10, ..Default::default() }).await.unwrap();
        let stream = EventStoreClient::new(channel.clone())
            .list_events(tokio_stream::wrappers::ReceiverStream::new(receiver))
            .await
            .unwrap()
            .into_inner();
        open.push((sender, stream));
    }
    // Both streams tail an empty store: a third call on the connection
    // waits for a free stream...
    let mut client = EventStoreClient::new(channel.clone());
    let mut third = tokio::spawn(async move { client.get_last_token(GetLastTokenRequest {}).await });
    let early = tokio::time::timeout(Duration::from_millis(500), &mut third).await;
    assert!(early.is_err(), "a third call ran beside two open streams with a limit of 2");
    // ...and runs once one of them ends.
    drop(open.pop());
    let answer = tokio::time::timeout(Duration::from_secs(10), third).await.unwrap().unwrap().unwrap();
    assert_eq!(answer.into_inner().token, -1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["ranvier.http-idle-timeout=1s"]).unwrap();
    let mut connection = tokio::net::TcpStream::connect(&node.http_addr).await.unwrap();
    let request = format!("GET /health HTTP/1.1\r\nHost: {}\r\n\r\n", node.http_addr);
    connection.write_all(request.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = connection.read(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"), "a keep-alive answer");
    // Kept alive, then silent: the node closes it.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match connection.read(&mut answer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle HTTP connection was kept open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connection_that_stops_answering_is_closed_and_frees_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &["ranvier.max-connections=1"]).unwrap();
    // An HTTP/2 client that says hello and then answers nothing, not even
    // the node's keepalive pings (a frozen or vanished client).
    let mut frozen = tokio::net::TcpStream::connect(&node.client_addr).await.unwrap();
    frozen.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    frozen.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap(); // an empty SETTINGS frame
    // It holds the only connection slot until the node gives up on it;
    // then a real client is served.
    let served = tokio::time::timeout(Duration::from_secs(30), async {
        let mut client = node.event_store().await.unwrap();
        client.get_last_token(GetLastTokenRequest {}).await.unwrap().into_inner().token
    })
    .await;
    assert_eq!(served.ok(), Some(-1), "the silent connection kept the slot");
    drop(frozen);
}
