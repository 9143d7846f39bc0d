//! QueryService against a real node process, with real gRPC clients as an
//! Axon application's query handlers and callers: fan-out to one handler
//! per component with every response streamed, permits, errors held back
//! unless nothing succeeded, no handler, timeout, duplicate id, and a
//! handler leaving mid-query.

use std::time::Duration;

use ranvier_proto::common::meta_data_value::Data;
use ranvier_proto::common::{FlowControl, MetaDataValue, ProcessingInstruction, ProcessingKey, SerializedObject};
use ranvier_proto::query::query_provider_inbound::Request as Inbound;
use ranvier_proto::query::query_provider_outbound::Request as Outbound;
use ranvier_proto::query::query_service_client::QueryServiceClient;
use ranvier_proto::query::{
    QueryComplete, QueryProviderInbound, QueryProviderOutbound, QueryRequest, QueryResponse, QuerySubscription,
};
use ranvier_tests::Node;
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// A query handler client.
struct Handler {
    name: String,
    to_server: mpsc::Sender<QueryProviderOutbound>,
    from_server: tonic::Streaming<QueryProviderInbound>,
}

impl Handler {
    /// Opens a query stream as client `name` of `component`, subscribed to
    /// `query` (waiting for the ack).
    async fn open(channel: &Channel, name: &str, component: &str, query: &str) -> Handler {
        let (to_server, outbound) = mpsc::channel(64);
        let mut client = QueryServiceClient::new(channel.clone());
        let from_server =
            client.open_stream(tokio_stream::wrappers::ReceiverStream::new(outbound)).await.unwrap().into_inner();
        let mut handler = Handler { name: name.to_owned(), to_server, from_server };
        let subscription = QuerySubscription {
            message_id: format!("{name}-sub"),
            query: query.to_owned(),
            result_name: "Result".into(),
            component_name: component.to_owned(),
            client_id: name.to_owned(),
        };
        handler.send(Outbound::Subscribe(subscription), "sub-1").await;
        match handler.next().await {
            Inbound::Ack(ack) => assert!(ack.success && ack.instruction_id == "sub-1", "{ack:?}"),
            other => panic!("expected the subscription's ack, got {other:?}"),
        }
        handler
    }

    async fn send(&self, request: Outbound, id: &str) {
        let message = QueryProviderOutbound { request: Some(request), instruction_id: id.to_owned() };
        self.to_server.send(message).await.unwrap();
    }

    async fn grant(&self, permits: i64) {
        self.send(Outbound::FlowControl(FlowControl { client_id: self.name.clone(), permits }), "").await;
    }

    async fn next(&mut self) -> Inbound {
        let message = tokio::time::timeout(Duration::from_secs(10), self.from_server.message())
            .await
            .expect("nothing from the server within 10 s")
            .unwrap()
            .expect("the stream ended");
        message.request.unwrap()
    }

    async fn next_query(&mut self) -> QueryRequest {
        match self.next().await {
            Inbound::Query(query) => query,
            other => panic!("expected a query, got {other:?}"),
        }
    }

    async fn respond(&self, query: &QueryRequest, text: &str, error: bool) {
        let response = QueryResponse {
            message_identifier: format!("{}-{}", self.name, text),
            request_identifier: query.message_identifier.clone(),
            error_code: if error { "HANDLER-ERROR".into() } else { String::new() },
            payload: Some(SerializedObject {
                r#type: "Result".into(),
                revision: String::new(),
                data: text.as_bytes().to_vec().into(),
            }),
            ..Default::default()
        };
        self.send(Outbound::QueryResponse(response), "").await;
    }

    async fn complete(&self, query: &QueryRequest) {
        let complete =
            QueryComplete { message_id: format!("{}-done", self.name), request_id: query.message_identifier.clone() };
        self.send(Outbound::QueryComplete(complete), "").await;
    }
}

fn query(id: &str, name: &str, instructions: Vec<ProcessingInstruction>) -> QueryRequest {
    QueryRequest {
        message_identifier: id.to_owned(),
        query: name.to_owned(),
        payload: Some(SerializedObject {
            r#type: name.to_owned(),
            revision: String::new(),
            data: b"{}".to_vec().into(),
        }),
        processing_instructions: instructions,
        client_id: "caller".into(),
        component_name: "caller-app".into(),
        ..Default::default()
    }
}

/// Every response of a query, until its stream ends.
async fn ask(channel: &Channel, request: QueryRequest) -> Vec<QueryResponse> {
    let mut stream = QueryServiceClient::new(channel.clone()).query(request).await.unwrap().into_inner();
    let mut out = Vec::new();
    while let Some(response) =
        tokio::time::timeout(Duration::from_secs(20), stream.message()).await.expect("the query hung").unwrap()
    {
        out.push(response);
    }
    out
}

/// The next message of a subscription's stream.
async fn next(
    updates: &mut tonic::Streaming<ranvier_proto::query::SubscriptionQueryResponse>,
) -> ranvier_proto::query::SubscriptionQueryResponse {
    tokio::time::timeout(Duration::from_secs(10), updates.message()).await.expect("no update").unwrap().unwrap()
}

fn text(response: &QueryResponse) -> String {
    String::from_utf8(response.payload.clone().unwrap_or_default().data.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_goes_to_one_handler_per_component_and_every_response_streams_back() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]).unwrap();
    let channel = node.channel().await.unwrap();
    // Two components; the first has two instances that take turns.
    let mut a1 = Handler::open(&channel, "a1", "inventory", "FindStock").await;
    let mut a2 = Handler::open(&channel, "a2", "inventory", "FindStock").await;
    let mut b = Handler::open(&channel, "b", "pricing", "FindStock").await;
    b.grant(10).await;
    // No query reaches a handler without a permit: a1 and a2 get theirs
    // only once the query is under way.
    let call = tokio::spawn({
        let channel = channel.clone();
        async move { ask(&channel, query("q-1", "FindStock", vec![])).await }
    });
    let at_b = b.next_query().await;
    assert_eq!(at_b.message_identifier, "q-1");
    let streaming =
        at_b.processing_instructions.iter().find(|i| i.key == ProcessingKey::ServerSupportsStreaming as i32);
    assert_eq!(
        streaming.and_then(|i| i.value.clone()).and_then(|v| v.data),
        Some(Data::BooleanValue(false)),
        "handlers are told to answer whole"
    );
    a1.grant(10).await;
    a2.grant(10).await;
    // Exactly one of a1, a2 receives it.
    let (inventory, other) = tokio::select! {
        q = a1.next_query() => (q, &mut a2),
        q = a2.next_query() => (q, &mut a1),
    };
    assert!(
        tokio::time::timeout(Duration::from_millis(300), other.from_server.message()).await.is_err(),
        "both instances of one component received the query"
    );
    b.respond(&at_b, "price-1", false).await;
    b.respond(&at_b, "price-2", false).await;
    b.complete(&at_b).await;
    // A handler's error is held back: another succeeded.
    let inventory_handler = if inventory.message_identifier == "q-1" { &a1 } else { &a2 };
    inventory_handler.respond(&inventory, "broken", true).await;
    inventory_handler.respond(&inventory, "stock-7", false).await;
    inventory_handler.complete(&inventory).await;
    let responses = call.await.unwrap();
    let mut texts: Vec<String> = responses.iter().map(text).collect();
    texts.sort();
    assert_eq!(texts, ["price-1", "price-2", "stock-7"], "every success, no held error: {responses:?}");
    // The node counts the query, its time, and each handler's answer.
    let context = ["context=\"default\""];
    assert_eq!(node.metric("ranvier_queries_dispatched_total", &context), Some(1.0));
    assert_eq!(node.metric("ranvier_query_seconds_count", &context), Some(1.0));
    assert_eq!(node.metric("ranvier_queries_active", &[]), Some(0.0));
    assert_eq!(node.metric("ranvier_queries_failed_total", &context), None, "nothing failed");
    let b_series = ["kind=\"query\"", "client=\"b\""];
    assert_eq!(node.metric("ranvier_handler_answered_total", &b_series), Some(1.0));
    let connected = ["context=\"default\"", "kind=\"query\""];
    assert_eq!(node.metric("ranvier_handlers_connected", &connected), Some(3.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_query_ends_with_its_answer_even_when_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]).unwrap();
    let channel = node.channel().await.unwrap();

    let none = ask(&channel, query("n-1", "Nobody", vec![])).await;
    assert_eq!(none.len(), 1);
    assert_eq!((none[0].error_code.as_str(), none[0].request_identifier.as_str()), ("AXONIQ-5000", "n-1"));

    // Only an error: it is passed on once the handler completes.
    let mut failing = Handler::open(&channel, "f", "failing", "Fails").await;
    failing.grant(10).await;
    let call = tokio::spawn({
        let channel = channel.clone();
        async move { ask(&channel, query("e-1", "Fails", vec![])).await }
    });
    let received = failing.next_query().await;
    failing.respond(&received, "bad", true).await;
    failing.complete(&received).await;
    let responses = call.await.unwrap();
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].error_code, "HANDLER-ERROR");

    // A handler that never completes: the TIMEOUT instruction ends it.
    let timeout = vec![ProcessingInstruction {
        key: ProcessingKey::Timeout as i32,
        value: Some(MetaDataValue { data: Some(Data::NumberValue(300)) }),
    }];
    let started = std::time::Instant::now();
    let call = tokio::spawn({
        let channel = channel.clone();
        async move { ask(&channel, query("t-1", "Fails", timeout)).await }
    });
    let received = failing.next_query().await;
    assert_eq!(received.message_identifier, "t-1");
    // The same id while it is in flight.
    let again = ask(&channel, query("t-1", "Fails", vec![])).await;
    assert_eq!(again[0].error_code, "AXONIQ-5007");
    let responses = call.await.unwrap();
    assert_eq!(responses.last().map(|r| r.error_code.as_str()), Some("AXONIQ-5006"));
    assert!(started.elapsed() < Duration::from_secs(5));

    // The handler leaves mid-query: the query ends with AXONIQ-5002.
    let call = tokio::spawn({
        let channel = channel.clone();
        async move { ask(&channel, query("l-1", "Fails", vec![])).await }
    });
    assert_eq!(failing.next_query().await.message_identifier, "l-1");
    drop(failing);
    let responses = call.await.unwrap();
    assert_eq!(responses.len(), 1);
    assert_eq!(responses[0].error_code, "AXONIQ-5002");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_the_cluster_a_query_reaches_every_component_and_a_killed_node_does_not_hang_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = ranvier_tests::start_cluster(dir.path(), 3, &[]).unwrap();
    for node in &nodes {
        ranvier_tests::wait_voters(node, "default", 3).await.unwrap();
    }
    let caller = nodes[1].channel().await.unwrap();
    let mut near = Handler::open(&nodes[0].channel().await.unwrap(), "near", "inventory", "Where").await;
    let mut far = Handler::open(&nodes[2].channel().await.unwrap(), "far", "pricing", "Where").await;
    near.grant(100).await;
    far.grant(100).await;

    // Both components answer a query sent to node 2 (once node 2 has
    // heard of both).
    let mut round = 0;
    let texts = loop {
        round += 1;
        let id = format!("w-{round}");
        let call = tokio::spawn({
            let caller = caller.clone();
            async move { ask(&caller, query(&id, "Where", vec![])).await }
        });
        let mut answered = 0;
        for handler in [&mut near, &mut far] {
            if let Ok(Ok(Some(message))) =
                tokio::time::timeout(Duration::from_millis(500), handler.from_server.message()).await
                && let Some(Inbound::Query(q)) = message.request
            {
                handler.respond(&q, &handler.name.clone(), false).await;
                handler.complete(&q).await;
                answered += 1;
            }
        }
        let responses = call.await.unwrap();
        let mut texts: Vec<String> = responses.iter().map(text).collect();
        texts.sort();
        if answered == 2 {
            break texts;
        }
        assert!(round < 20, "node 2 never routed to both components");
    };
    assert_eq!(texts, ["far", "near"]);

    // Node 3 is killed while its handler holds the query: the query still
    // ends, with the answer that came.
    let call = tokio::spawn({
        let caller = caller.clone();
        async move { ask(&caller, query("k-1", "Where", vec![])).await }
    });
    let at_far = far.next_query().await;
    assert_eq!(at_far.message_identifier, "k-1");
    let at_near = near.next_query().await;
    near.respond(&at_near, "near", false).await;
    near.complete(&at_near).await;
    let killed = std::time::Instant::now();
    nodes[2].kill9().unwrap();
    let responses = tokio::time::timeout(Duration::from_secs(20), call).await.expect("the query hung").unwrap();
    assert_eq!(responses.iter().map(text).collect::<Vec<_>>(), ["near"], "{responses:?}");
    eprintln!("the query ended {:?} after its far handler's node was killed", killed.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_query_gets_its_initial_result_and_updates_within_its_permits_until_it_unsubscribes() {
    use ranvier_proto::query::subscription_query_request::Request as Control;
    use ranvier_proto::query::subscription_query_response::Response as Update;
    use ranvier_proto::query::{QueryUpdate, SubscriptionQuery, SubscriptionQueryRequest, SubscriptionQueryResponse};

    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]).unwrap();
    let channel = node.channel().await.unwrap();
    let mut handler = Handler::open(&channel, "h", "orders", "WatchOrder").await;
    handler.grant(10).await;

    let (to_server, requests) = mpsc::channel(8);
    let mut updates = QueryServiceClient::new(channel.clone())
        .subscription(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
        .unwrap()
        .into_inner();
    let subscription = |permits| SubscriptionQuery {
        subscription_identifier: "sub-1".into(),
        number_of_permits: permits,
        query_request: Some(query("initial-1", "WatchOrder", vec![])),
        update_response_type: None,
    };
    // Two permits: the initial result and one update.
    to_server.send(SubscriptionQueryRequest { request: Some(Control::Subscribe(subscription(2))) }).await.unwrap();
    to_server
        .send(SubscriptionQueryRequest { request: Some(Control::GetInitialResult(subscription(0))) })
        .await
        .unwrap();

    // The handler is told of the subscription, and asked for the initial result.
    let mut told = false;
    let mut initial = None;
    while !(told && initial.is_some()) {
        match handler.next().await {
            Inbound::SubscriptionQueryRequest(request) => {
                assert!(
                    matches!(request.request, Some(Control::Subscribe(ref q)) if q.subscription_identifier == "sub-1")
                );
                told = true;
            }
            Inbound::Query(q) => initial = Some(q),
            other => panic!("unexpected {other:?}"),
        }
    }
    let initial = initial.unwrap();
    handler.respond(&initial, "order-42", false).await;
    handler.complete(&initial).await;
    let update = |n: u32| QueryProviderOutbound {
        request: Some(Outbound::SubscriptionQueryResponse(SubscriptionQueryResponse {
            message_identifier: format!("u-{n}"),
            subscription_identifier: "sub-1".into(),
            response: Some(Update::Update(QueryUpdate {
                message_identifier: format!("u-{n}"),
                payload: Some(SerializedObject {
                    r#type: "Order".into(),
                    revision: String::new(),
                    data: format!("update-{n}").into_bytes().into(),
                }),
                ..Default::default()
            })),
        })),
        instruction_id: String::new(),
    };
    let first = next(&mut updates).await;
    match first.response {
        Some(Update::InitialResult(result)) => assert_eq!(text(&result), "order-42"),
        other => panic!("expected the initial result, got {other:?}"),
    }
    for n in 1..=3 {
        handler.to_server.send(update(n)).await.unwrap();
    }
    let second = next(&mut updates).await;
    assert!(matches!(second.response, Some(Update::Update(ref u)) if u.message_identifier == "u-1"), "{second:?}");
    // Two permits used: update 2 waits for more.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), updates.message()).await.is_err(),
        "an update came beyond the permits"
    );
    let more = SubscriptionQuery { number_of_permits: 5, ..subscription(0) };
    to_server.send(SubscriptionQueryRequest { request: Some(Control::FlowControl(more)) }).await.unwrap();
    for n in 2..=3 {
        let update = next(&mut updates).await;
        assert!(matches!(update.response, Some(Update::Update(ref u)) if u.message_identifier == format!("u-{n}")));
    }
    // Unsubscribing tells the handler.
    to_server.send(SubscriptionQueryRequest { request: Some(Control::Unsubscribe(subscription(0))) }).await.unwrap();
    match handler.next().await {
        Inbound::SubscriptionQueryRequest(request) => {
            assert!(
                matches!(request.request, Some(Control::Unsubscribe(ref q)) if q.subscription_identifier == "sub-1")
            )
        }
        other => panic!("expected the unsubscribe, got {other:?}"),
    }

    // A query nobody handles ends at once, exceptionally.
    let nobody = SubscriptionQuery {
        subscription_identifier: "sub-2".into(),
        number_of_permits: 1,
        query_request: Some(query("n-2", "Nobody", vec![])),
        update_response_type: None,
    };
    to_server.send(SubscriptionQueryRequest { request: Some(Control::Subscribe(nobody)) }).await.unwrap();
    let ended = next(&mut updates).await;
    assert!(
        matches!(ended.response, Some(Update::CompleteExceptionally(ref e)) if e.error_code == "AXONIQ-5000"),
        "{ended:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_on_one_node_gets_the_updates_of_a_handler_on_another() {
    use ranvier_proto::query::subscription_query_request::Request as Control;
    use ranvier_proto::query::subscription_query_response::Response as Update;
    use ranvier_proto::query::{QueryUpdate, SubscriptionQuery, SubscriptionQueryRequest, SubscriptionQueryResponse};

    let dir = tempfile::tempdir().unwrap();
    let nodes = ranvier_tests::start_cluster(dir.path(), 3, &[]).unwrap();
    for node in &nodes {
        ranvier_tests::wait_voters(node, "default", 3).await.unwrap();
    }
    let mut handler = Handler::open(&nodes[2].channel().await.unwrap(), "far", "orders", "WatchFar").await;
    handler.grant(10).await;
    let subscriber = nodes[1].channel().await.unwrap();
    // Node 2 routes queries to node 3's handler once it has heard of it.
    ranvier_tests::eventually(Duration::from_secs(5), "node 2 to know node 3's handler", || async {
        let (_, body) = nodes[1].http_get("/v1/components?context=default").unwrap();
        body.contains("WatchFar")
    })
    .await
    .unwrap();

    let (to_server, requests) = mpsc::channel(8);
    let mut updates = QueryServiceClient::new(subscriber)
        .subscription(tokio_stream::wrappers::ReceiverStream::new(requests))
        .await
        .unwrap()
        .into_inner();
    let subscription = SubscriptionQuery {
        subscription_identifier: "far-sub".into(),
        number_of_permits: 10,
        query_request: Some(query("far-initial", "WatchFar", vec![])),
        update_response_type: None,
    };
    to_server.send(SubscriptionQueryRequest { request: Some(Control::Subscribe(subscription.clone())) }).await.unwrap();
    match handler.next().await {
        Inbound::SubscriptionQueryRequest(request) => {
            assert!(
                matches!(request.request, Some(Control::Subscribe(ref q)) if q.subscription_identifier == "far-sub")
            )
        }
        other => panic!("expected the subscription, got {other:?}"),
    }
    let update = QueryProviderOutbound {
        request: Some(Outbound::SubscriptionQueryResponse(SubscriptionQueryResponse {
            message_identifier: "far-u-1".into(),
            subscription_identifier: "far-sub".into(),
            response: Some(Update::Update(QueryUpdate { message_identifier: "far-u-1".into(), ..Default::default() })),
        })),
        instruction_id: String::new(),
    };
    handler.to_server.send(update).await.unwrap();
    let relayed = next(&mut updates).await;
    assert!(
        matches!(relayed.response, Some(Update::Update(ref u)) if u.message_identifier == "far-u-1"),
        "{relayed:?}"
    );

    // Unsubscribing on node 2 reaches the handler on node 3.
    to_server.send(SubscriptionQueryRequest { request: Some(Control::Unsubscribe(subscription)) }).await.unwrap();
    match handler.next().await {
        Inbound::SubscriptionQueryRequest(request) => {
            assert!(
                matches!(request.request, Some(Control::Unsubscribe(ref q)) if q.subscription_identifier == "far-sub")
            )
        }
        other => panic!("expected the unsubscribe, got {other:?}"),
    }
}

fn streaming() -> ProcessingInstruction {
    ProcessingInstruction {
        key: ProcessingKey::ClientSupportsStreaming as i32,
        value: Some(MetaDataValue { data: Some(Data::BooleanValue(true)) }),
    }
}

/// Whether the server told the handler it may stream its results.
fn server_streams(query: &QueryRequest) -> bool {
    query.processing_instructions.iter().any(|i| {
        i.key == ProcessingKey::ServerSupportsStreaming as i32
            && matches!(i.value.as_ref().and_then(|v| v.data.as_ref()), Some(Data::BooleanValue(true)))
    })
}

impl Handler {
    /// The next message, which must be a streaming query's flow control:
    /// its permits.
    async fn next_demand(&mut self, request_id: &str) -> i64 {
        match self.next().await {
            Inbound::QueryFlowControl(flow) => {
                assert_eq!(flow.query_reference.unwrap().request_id, request_id);
                flow.permits
            }
            other => panic!("expected flow control for {request_id}, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_query_gets_results_as_its_caller_takes_them_and_a_caller_that_leaves_cancels_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]).unwrap();
    let channel = node.channel().await.unwrap();
    let mut handler = Handler::open(&channel, "lister", "catalog", "List").await;
    let mut other = Handler::open(&channel, "other", "search", "List").await;
    handler.grant(10).await;
    other.grant(10).await;

    // A caller that cannot take a stream gets the query answered whole,
    // by every component.
    let call = tokio::spawn({
        let channel = channel.clone();
        async move { ask(&channel, query("whole-1", "List", vec![])).await }
    });
    for h in [&mut handler, &mut other] {
        let q = h.next_query().await;
        assert!(!server_streams(&q), "{q:?}");
        h.respond(&q, &h.name.clone(), false).await;
        h.complete(&q).await;
    }
    assert_eq!(call.await.unwrap().len(), 2);

    // A streaming query goes to one handler (of the first component by
    // name), which may stream; the
    // caller's first demand follows the query.
    let mut stream = QueryServiceClient::new(channel.clone())
        .query(query("stream-1", "List", vec![streaming()]))
        .await
        .unwrap()
        .into_inner();
    let streamer = handler.next_query().await;
    assert_eq!(streamer.message_identifier, "stream-1");
    assert!(server_streams(&streamer), "{streamer:?}");
    let mut streamer_handler = handler;
    let first = streamer_handler.next_demand("stream-1").await;
    assert!(first > 0);

    // It sends what it was allowed; as the results are taken, the handler
    // is allowed as many more (in parts), no more.
    for n in 0..first {
        streamer_handler.respond(&streamer, &format!("r{n}"), false).await;
    }
    for n in 0..first {
        let response = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
        assert_eq!(text(&response), format!("r{n}"));
    }
    let mut granted = 0;
    while granted < first {
        let more = streamer_handler.next_demand("stream-1").await;
        assert!(more > 0 && more < first, "demand is granted in parts, got {more}");
        granted += more;
    }
    assert_eq!(granted, first);

    // The caller goes away: the handler is told to stop.
    drop(stream);
    match streamer_handler.next().await {
        Inbound::QueryCancel(reference) => assert_eq!(reference.request_id, "stream-1"),
        other => panic!("expected the query's cancel, got {other:?}"),
    }

    // The handler's later results are dropped, and the next query is
    // answered as usual.
    streamer_handler.respond(&streamer, "late", false).await;
    streamer_handler.complete(&streamer).await;
    let call = tokio::spawn({
        let channel = channel.clone();
        async move { ask(&channel, query("stream-2", "List", vec![streaming()])).await }
    });
    let q = streamer_handler.next_query().await;
    assert_eq!(q.message_identifier, "stream-2");
    assert!(streamer_handler.next_demand("stream-2").await > 0);
    streamer_handler.respond(&q, "only", false).await;
    streamer_handler.complete(&q).await;
    let texts: Vec<String> = call.await.unwrap().iter().map(text).collect();
    assert_eq!(texts, ["only"]);

    // The other component never saw the streaming queries: its next query
    // is the next whole one.
    let call = tokio::spawn({
        let channel = channel.clone();
        async move { ask(&channel, query("whole-2", "List", vec![])).await }
    });
    let q = other.next_query().await;
    assert_eq!(q.message_identifier, "whole-2");
    other.respond(&q, "whole", false).await;
    other.complete(&q).await;
    let q = streamer_handler.next_query().await;
    streamer_handler.complete(&q).await;
    assert_eq!(call.await.unwrap().iter().map(text).collect::<Vec<_>>(), ["whole"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_query_to_a_handler_on_another_node_is_cancelled_there_when_its_caller_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = ranvier_tests::start_cluster(dir.path(), 3, &[]).unwrap();
    for node in &nodes {
        ranvier_tests::wait_voters(node, "default", 3).await.unwrap();
    }
    let caller = nodes[0].channel().await.unwrap();
    let mut far = Handler::open(&nodes[2].channel().await.unwrap(), "far", "catalog", "List").await;
    far.grant(100).await;

    // Once node 1 has heard of the handler, the query reaches it.
    let mut round = 0;
    let (mut stream, q) = loop {
        round += 1;
        let id = format!("s-{round}");
        let mut stream = QueryServiceClient::new(caller.clone())
            .query(query(&id, "List", vec![streaming()]))
            .await
            .unwrap()
            .into_inner();
        let reached = tokio::time::timeout(Duration::from_millis(500), far.next_query()).await;
        if let Ok(q) = reached {
            break (stream, q);
        }
        // No handler known yet: AXONIQ-5000, then the end.
        let response = stream.message().await.unwrap().unwrap();
        assert_eq!(response.error_code, "AXONIQ-5000");
        assert!(round < 20, "node 1 never heard of the handler");
    };
    assert!(server_streams(&q));
    let demand = far.next_demand(&q.message_identifier).await;
    assert!(demand > 0);
    far.respond(&q, "first", false).await;
    let response = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(text(&response), "first");

    drop(stream);
    match far.next().await {
        Inbound::QueryCancel(reference) => assert_eq!(reference.request_id, q.message_identifier),
        other => panic!("expected the query's cancel, got {other:?}"),
    }
}
