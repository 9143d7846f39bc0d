//! CommandService against a real node process, with real gRPC clients as
//! an Axon application's handlers and dispatchers: the round trip, permits,
//! priority, routing-key stickiness and load-factor shares, and each error
//! answer (no handler, handler gone, timeout, duplicate id, full queue).

use std::collections::HashMap;
use std::time::Duration;

use ranvier_proto::command::command_provider_inbound::Request as Inbound;
use ranvier_proto::command::command_provider_outbound::Request as Outbound;
use ranvier_proto::command::command_service_client::CommandServiceClient;
use ranvier_proto::command::{
    Command, CommandProviderInbound, CommandProviderOutbound, CommandResponse, CommandSubscription,
};
use ranvier_proto::common::meta_data_value::Data;
use ranvier_proto::common::{FlowControl, MetaDataValue, ProcessingInstruction, ProcessingKey, SerializedObject};
use ranvier_tests::Node;
use tokio::sync::mpsc;
use tonic::transport::Channel;

/// A handler client: its outbound messages and the server's.
struct Handler {
    name: String,
    to_server: mpsc::Sender<CommandProviderOutbound>,
    from_server: tonic::Streaming<CommandProviderInbound>,
    next_instruction: u64,
}

impl Handler {
    /// Opens a command stream as client `name` and subscribes to
    /// `commands` with `load_factor`, waiting for each ack.
    async fn open(channel: &Channel, name: &str, commands: &[&str], load_factor: i32) -> Handler {
        let (to_server, outbound) = mpsc::channel(64);
        let mut client = CommandServiceClient::new(channel.clone());
        let stream = tokio_stream::wrappers::ReceiverStream::new(outbound);
        let from_server = client.open_stream(stream).await.unwrap().into_inner();
        let mut handler = Handler { name: name.to_owned(), to_server, from_server, next_instruction: 0 };
        for command in commands {
            let subscription = CommandSubscription {
                message_id: format!("{name}-sub-{command}"),
                command: (*command).to_owned(),
                component_name: format!("{name}-component"),
                client_id: name.to_owned(),
                load_factor,
            };
            let ack = handler.send_acked(Outbound::Subscribe(subscription)).await;
            assert!(ack.success, "subscribe refused: {ack:?}");
        }
        handler
    }

    async fn send_acked(&mut self, request: Outbound) -> ranvier_proto::common::InstructionAck {
        self.next_instruction += 1;
        let id = format!("{}-{}", self.name, self.next_instruction);
        self.to_server
            .send(CommandProviderOutbound { request: Some(request), instruction_id: id.clone() })
            .await
            .unwrap();
        match self.next().await {
            Inbound::Ack(ack) => {
                assert_eq!(ack.instruction_id, id);
                ack
            }
            other => panic!("expected the ack of {id}, got {other:?}"),
        }
    }

    async fn grant(&mut self, permits: i64) {
        let flow = FlowControl { client_id: self.name.clone(), permits };
        self.to_server
            .send(CommandProviderOutbound { request: Some(Outbound::FlowControl(flow)), instruction_id: String::new() })
            .await
            .unwrap();
    }

    async fn next(&mut self) -> Inbound {
        let message = tokio::time::timeout(Duration::from_secs(10), self.from_server.message())
            .await
            .expect("nothing from the server within 10 s")
            .unwrap()
            .expect("the stream ended");
        message.request.unwrap()
    }

    async fn next_command(&mut self) -> Command {
        match self.next().await {
            Inbound::Command(command) => command,
            other => panic!("expected a command, got {other:?}"),
        }
    }

    /// Whether a command arrives within `wait` (to show one does not).
    async fn receives_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.from_server.message()).await.is_ok()
    }

    async fn answer(&mut self, command: &Command, text: &str) {
        let response = CommandResponse {
            message_identifier: format!("{}-answer-{}", self.name, command.message_identifier),
            request_identifier: command.message_identifier.clone(),
            payload: Some(SerializedObject {
                r#type: "Answer".into(),
                revision: String::new(),
                data: text.as_bytes().to_vec().into(),
            }),
            ..Default::default()
        };
        self.to_server
            .send(CommandProviderOutbound {
                request: Some(Outbound::CommandResponse(response)),
                instruction_id: String::new(),
            })
            .await
            .unwrap();
    }
}

fn command(id: &str, name: &str, instructions: Vec<ProcessingInstruction>) -> Command {
    Command {
        message_identifier: id.to_owned(),
        name: name.to_owned(),
        payload: Some(SerializedObject {
            r#type: name.to_owned(),
            revision: String::new(),
            data: b"{}".to_vec().into(),
        }),
        processing_instructions: instructions,
        client_id: "dispatcher".into(),
        component_name: "dispatcher-app".into(),
        ..Default::default()
    }
}

fn instruction(key: ProcessingKey, data: Data) -> ProcessingInstruction {
    ProcessingInstruction { key: key as i32, value: Some(MetaDataValue { data: Some(data) }) }
}

async fn dispatch(channel: &Channel, command: Command) -> CommandResponse {
    CommandServiceClient::new(channel.clone()).dispatch(command).await.unwrap().into_inner()
}

fn start(dir: &std::path::Path, settings: &[&str]) -> Node {
    Node::start(dir, settings).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_reaches_its_handler_and_its_answer_comes_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &[]);
    let channel = node.channel().await.unwrap();
    let mut handler = Handler::open(&channel, "h1", &["PlaceOrder"], 100).await;
    handler.grant(10).await;
    let dispatched = tokio::spawn({
        let channel = channel.clone();
        async move { dispatch(&channel, command("c-1", "PlaceOrder", vec![])).await }
    });
    let received = handler.next_command().await;
    assert_eq!((received.message_identifier.as_str(), received.name.as_str()), ("c-1", "PlaceOrder"));
    assert_eq!(received.client_id, "dispatcher", "the command travels as it was sent");
    handler.answer(&received, "placed").await;
    let response = dispatched.await.unwrap();
    assert_eq!(response.request_identifier, "c-1");
    assert_eq!(response.error_code, "");
    assert_eq!(&response.payload.unwrap().data[..], b"placed");
    // Its round trip is in the latency histogram.
    let (_, metrics) = node.http_get("/metrics").unwrap();
    assert!(metrics.contains("ranvier_command_seconds_count{context=\"default\"} 1"), "{metrics}");

    // Unknown request cases are acked as unsupported.
    let ack = handler.send_acked_raw_none().await;
    assert!(!ack.success);
    assert_eq!(ack.error.unwrap().error_code, "AXONIQ-1002");
}

impl Handler {
    async fn send_acked_raw_none(&mut self) -> ranvier_proto::common::InstructionAck {
        self.to_server.send(CommandProviderOutbound { request: None, instruction_id: "odd-1".into() }).await.unwrap();
        match self.next().await {
            Inbound::Ack(ack) => ack,
            other => panic!("expected an ack, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_goes_beyond_the_permits_and_higher_priority_goes_first() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &[]);
    let channel = node.channel().await.unwrap();
    let mut handler = Handler::open(&channel, "h1", &["Ship"], 100).await;
    let mut calls = Vec::new();
    for (n, priority) in [(1, 0), (2, 0), (3, 5), (4, 0), (5, 9)] {
        let channel = channel.clone();
        let with = vec![instruction(ProcessingKey::Priority, Data::NumberValue(priority))];
        calls.push(tokio::spawn(async move { dispatch(&channel, command(&format!("s-{n}"), "Ship", with)).await }));
        // One at a time, so that their order of arrival is known.
        ranvier_tests::eventually(Duration::from_secs(10), "the command to be queued", || async {
            node_pending(&node) == n
        })
        .await
        .unwrap();
    }
    // No command before the first permit.
    assert!(!handler.receives_within(Duration::from_millis(300)).await, "a command came without a permit");
    handler.grant(2).await;
    let first = handler.next_command().await;
    let second = handler.next_command().await;
    assert_eq!((first.message_identifier.as_str(), second.message_identifier.as_str()), ("s-5", "s-3"), "by priority");
    assert!(!handler.receives_within(Duration::from_millis(300)).await, "a third command came on two permits");
    handler.grant(3).await;
    let mut rest = Vec::new();
    for _ in 0..3 {
        rest.push(handler.next_command().await.message_identifier);
    }
    assert_eq!(rest, ["s-1", "s-2", "s-4"], "equal priority: oldest first");
    for id in ["s-1", "s-2", "s-3", "s-4", "s-5"] {
        handler.answer(&command(id, "Ship", vec![]), "ok").await;
    }
    for call in calls {
        assert_eq!(call.await.unwrap().error_code, "");
    }
}

/// Dispatches waiting for their answer on the node (`/metrics`).
fn node_pending(node: &Node) -> i64 {
    let (_, metrics) = node.http_get("/metrics").unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("ranvier_commands_pending "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dispatch_gets_one_answer_even_when_it_fails() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &["axoniq.axonserver.command-queue-capacity-per-client=2"]);
    let channel = node.channel().await.unwrap();

    let none = dispatch(&channel, command("n-1", "Nobody", vec![])).await;
    assert_eq!((none.error_code.as_str(), none.request_identifier.as_str()), ("AXONIQ-4000", "n-1"));
    assert!(none.error_message.unwrap().message.contains("Nobody"));

    // A handler that never answers: the TIMEOUT instruction ends the wait.
    let mut silent = Handler::open(&channel, "silent", &["Slow"], 100).await;
    silent.grant(10).await;
    let timeout = vec![instruction(ProcessingKey::Timeout, Data::NumberValue(300))];
    let started = std::time::Instant::now();
    let timed_out = dispatch(&channel, command("t-1", "Slow", timeout)).await;
    assert_eq!(timed_out.error_code, "AXONIQ-4002");
    assert!(started.elapsed() < Duration::from_secs(5), "the TIMEOUT instruction was not used");
    assert_eq!(silent.next_command().await.message_identifier, "t-1");

    // The same id twice while the first is in flight.
    let first = tokio::spawn({
        let channel = channel.clone();
        async move { dispatch(&channel, command("d-1", "Slow", vec![])).await }
    });
    assert_eq!(silent.next_command().await.message_identifier, "d-1");
    let again = dispatch(&channel, command("d-1", "Slow", vec![])).await;
    assert_eq!(again.error_code, "AXONIQ-4005");

    // The handler goes away with d-1 unanswered: 4001.
    drop(silent);
    let lost = first.await.unwrap();
    assert_eq!((lost.error_code.as_str(), lost.request_identifier.as_str()), ("AXONIQ-4001", "d-1"));

    // A full queue refuses at once (capacity 2, no permits).
    let _waiting = Handler::open(&channel, "waiting", &["Queue"], 100).await;
    let mut queued = Vec::new();
    for n in 0..2 {
        let channel = channel.clone();
        queued.push(tokio::spawn(async move { dispatch(&channel, command(&format!("q-{n}"), "Queue", vec![])).await }));
    }
    ranvier_tests::eventually(Duration::from_secs(10), "two commands queued", || async { node_pending(&node) == 2 })
        .await
        .unwrap();
    let full = dispatch(&channel, command("q-over", "Queue", vec![])).await;
    assert_eq!(full.error_code, "AXONIQ-1900");
    assert!(full.error_message.unwrap().message.contains("full"), "the reason is given");
    // The handler leaves with its two commands queued and no other
    // handler of theirs: each gets its answer, 4001.
    drop(_waiting);
    for call in queued {
        assert_eq!(call.await.unwrap().error_code, "AXONIQ-4001");
    }
    let (_, metrics) = node.http_get("/metrics").unwrap();
    assert!(metrics.contains("ranvier_commands_failed_total{context=\"default\"} 7"), "{metrics}");
    assert!(metrics.contains("ranvier_commands_pending 0"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routing_key_stays_with_one_handler_and_shares_follow_load_factors() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &[]);
    let channel = node.channel().await.unwrap();
    let mut handlers = Vec::new();
    for (name, load) in [("light", 100), ("heavy", 300)] {
        let mut handler = Handler::open(&channel, name, &["Route"], load).await;
        handler.grant(1_000_000).await;
        handlers.push(handler);
    }
    // Each handler answers with its own name.
    let mut answering = Vec::new();
    for mut handler in handlers {
        answering.push(tokio::spawn(async move {
            while let Ok(Ok(Some(message))) =
                tokio::time::timeout(Duration::from_secs(30), handler.from_server.message()).await
            {
                if let Some(Inbound::Command(command)) = message.request {
                    let name = handler.name.clone();
                    handler.answer(&command, &name).await;
                }
            }
        }));
    }
    const COMMANDS: usize = 10_000;
    let (results, mut collected) = mpsc::channel(COMMANDS);
    let per_caller = COMMANDS / 50;
    for caller in 0..50 {
        let (channel, results) = (channel.clone(), results.clone());
        tokio::spawn(async move {
            for n in 0..per_caller {
                let key = format!("order-{}", (caller * per_caller + n) % 2_500);
                let with = vec![instruction(ProcessingKey::RoutingKey, Data::TextValue(key.clone()))];
                let response = dispatch(&channel, command(&format!("r-{caller}-{n}"), "Route", with)).await;
                let _ = results
                    .send((key, String::from_utf8(response.payload.unwrap_or_default().data.to_vec()).unwrap()))
                    .await;
            }
        });
    }
    drop(results);
    let mut owner: HashMap<String, String> = HashMap::new();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    while let Some((key, handler)) = collected.recv().await {
        total += 1;
        *counts.entry(handler.clone()).or_default() += 1;
        let first = owner.entry(key.clone()).or_insert_with(|| handler.clone());
        assert_eq!(*first, handler, "routing key {key} went to two handlers");
    }
    assert_eq!(total, COMMANDS);
    let heavy = counts.get("heavy").copied().unwrap_or(0) as f64 / COMMANDS as f64;
    eprintln!("shares over {COMMANDS} commands: {counts:?}");
    assert!(
        (heavy - 0.75).abs() < 0.05,
        "load factors 100 : 300 gave the heavy handler {heavy:.3}, expected 0.75 ± 0.05"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_the_cluster_a_command_reaches_a_handler_on_another_node_and_a_killed_node_answers_for_its_commands() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = ranvier_tests::start_cluster(dir.path(), 3, &[]).unwrap();
    // Every node knows the others (the cluster has formed).
    for node in &nodes {
        ranvier_tests::wait_voters(node, "default", 3).await.unwrap();
    }
    let caller = nodes[0].channel().await.unwrap();
    let far = nodes[2].channel().await.unwrap();

    // A handler on node 3 is usable from node 1 within a second of its
    // subscription.
    let mut handler = Handler::open(&far, "far", &["Remote"], 100).await;
    let subscribed = std::time::Instant::now();
    handler.grant(1_000).await;
    let call = tokio::spawn({
        let caller = caller.clone();
        async move {
            loop {
                let response = dispatch(&caller, command(&format!("probe-{}", rand_id()), "Remote", vec![])).await;
                if response.error_code != "AXONIQ-4000" {
                    return (response, std::time::Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let received = handler.next_command().await;
    handler.answer(&received, "from node 3").await;
    let (response, at) = call.await.unwrap();
    assert_eq!(response.error_code, "");
    assert_eq!(&response.payload.unwrap().data[..], b"from node 3");
    // Node 1 lists the component and where its handler is.
    let (code, body) = nodes[0].http_get("/v1/components?context=default").unwrap();
    assert_eq!(code, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        listed,
        serde_json::json!([{
            "component": "far-component",
            "clients": {"node-3": ["far"]},
            "commands": {"Remote": 100},
            "queries": []
        }])
    );
    let visible = at.duration_since(subscribed);
    eprintln!("a subscription on node 3 was usable from node 1 after {visible:?}");
    assert!(visible < Duration::from_secs(1), "took {visible:?}");

    // 100 commands in flight to node 3's handler (received, unanswered);
    // node 3 is killed: each gets exactly one answer, well within its
    // 60 s TIMEOUT.
    let mut calls = Vec::new();
    for n in 0..100 {
        let caller = caller.clone();
        let with = vec![instruction(ProcessingKey::Timeout, Data::NumberValue(60_000))];
        calls.push(tokio::spawn(async move { dispatch(&caller, command(&format!("k-{n}"), "Remote", with)).await }));
    }
    for _ in 0..100 {
        handler.next_command().await;
    }
    let killed = std::time::Instant::now();
    nodes[2].kill9().unwrap();
    let mut codes: HashMap<String, usize> = HashMap::new();
    for call in calls {
        let response = tokio::time::timeout(Duration::from_secs(30), call).await.expect("a dispatch hung").unwrap();
        *codes.entry(response.error_code).or_default() += 1;
    }
    eprintln!("answers after node 3 was killed: {codes:?} within {:?}", killed.elapsed());
    assert_eq!(codes.get("AXONIQ-4001"), Some(&100), "{codes:?}");
    assert!(killed.elapsed() < Duration::from_secs(15), "answers took {:?}", killed.elapsed());

    // Once its announcement expires, node 3's handler is out of routing.
    ranvier_tests::eventually(Duration::from_secs(10), "node 3's handler to leave routing", || async {
        dispatch(&caller, command(&format!("after-{}", rand_id()), "Remote", vec![])).await.error_code == "AXONIQ-4000"
    })
    .await
    .unwrap();
}

fn rand_id() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_in_flight_to_a_node_cut_off_by_a_partition_are_answered_not_left_hanging() {
    use ranvier_tests::docker::{self, DockerCluster};
    if !docker::required() {
        return;
    }
    let cluster = DockerCluster::start(3).unwrap();
    let channel_to =
        |i: usize| Channel::from_shared(format!("http://{}", cluster.nodes[i].client_addr)).unwrap().connect_lazy();
    let caller = channel_to(0);
    let mut handler = Handler::open(&channel_to(2), "cut", &["Partitioned"], 100).await;
    handler.grant(1_000).await;
    ranvier_tests::eventually(Duration::from_secs(10), "node 1 to route to node 3's handler", || async {
        let (_, body) = cluster.nodes[0].http_get_status("/v1/components?context=default").unwrap();
        body.contains("Partitioned")
    })
    .await
    .unwrap();
    let mut calls = Vec::new();
    for n in 0..20 {
        let caller = caller.clone();
        let with = vec![instruction(ProcessingKey::Timeout, Data::NumberValue(120_000))];
        calls.push(tokio::spawn(
            async move { dispatch(&caller, command(&format!("p-{n}"), "Partitioned", with)).await },
        ));
    }
    for _ in 0..20 {
        handler.next_command().await;
    }
    // Node 3 is cut off from the cluster network: its connections hang
    // rather than close. Keepalive must end the forwarded calls.
    let cut = std::time::Instant::now();
    cluster.isolate(2).unwrap();
    let mut codes: HashMap<String, usize> = HashMap::new();
    for call in calls {
        let response = tokio::time::timeout(Duration::from_secs(60), call).await.expect("a dispatch hung").unwrap();
        *codes.entry(response.error_code).or_default() += 1;
    }
    eprintln!("answers after node 3 was cut off: {codes:?} within {:?}", cut.elapsed());
    assert_eq!(codes.get("AXONIQ-4001"), Some(&20), "{codes:?}");
    assert!(cut.elapsed() < Duration::from_secs(30), "answers took {:?}", cut.elapsed());
}

/// A platform stream that registers as `client` and heartbeats every
/// `every` until `beating` is dropped; the server's messages come back.
async fn platform(
    channel: &Channel,
    client: &str,
    every: Duration,
) -> (tokio::sync::oneshot::Sender<()>, tonic::Streaming<ranvier_proto::control::PlatformOutboundInstruction>) {
    use ranvier_proto::control::platform_inbound_instruction::Request as Up;
    use ranvier_proto::control::{Heartbeat, PlatformInboundInstruction};
    let ranvier_tests::Platform { to_server, mut from_server } =
        ranvier_tests::Platform::open(channel, client, "app").await.unwrap();
    // The registration's ack.
    from_server.message().await.unwrap().unwrap();
    let (beating, mut stop) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let beat =
            || PlatformInboundInstruction { instruction_id: String::new(), request: Some(Up::Heartbeat(Heartbeat {})) };
        loop {
            if to_server.send(beat()).await.is_err() {
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                // Stopped beating; the stream itself stays open.
                _ = &mut stop => {
                    std::future::pending::<()>().await;
                }
            }
        }
    });
    (beating, from_server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_heartbeats_stop_is_cut_off_and_its_handlers_leave_routing() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(
        dir.path(),
        &[
            "axoniq.axonserver.heartbeat.enabled=true",
            "axoniq.axonserver.client-heartbeat-timeout=1000",
            "axoniq.axonserver.client-heartbeat-frequency=200",
        ],
    );
    let channel = node.channel().await.unwrap();
    let (silent_beat, mut silent_platform) = platform(&channel, "silent", Duration::from_millis(200)).await;
    let (_live_beat, mut live_platform) = platform(&channel, "live", Duration::from_millis(200)).await;
    let mut silent = Handler::open(&channel, "silent", &["Ship"], 100).await;
    let mut live = Handler::open(&channel, "live", &["Bill"], 100).await;
    silent.grant(10).await;
    live.grant(10).await;

    // While it beats, the server beats back and routes to it.
    let beat = tokio::time::timeout(Duration::from_secs(5), silent_platform.message()).await.unwrap().unwrap().unwrap();
    assert!(matches!(beat.request, Some(ranvier_proto::control::platform_outbound_instruction::Request::Heartbeat(_))));
    let call = tokio::spawn({
        let channel = channel.clone();
        async move { dispatch(&channel, command("ship-1", "Ship", vec![])).await }
    });
    let shipped = silent.next_command().await;
    silent.answer(&shipped, "shipped").await;
    assert!(call.await.unwrap().error_code.is_empty());

    // It stops beating: its platform stream fails, its command stream ends,
    // and its command has no handler any more.
    let stopped = std::time::Instant::now();
    drop(silent_beat);
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), silent_platform.message()).await.expect("never cut off") {
            Ok(Some(_)) => continue,
            Ok(None) => break None,
            Err(status) => break Some(status),
        }
    };
    let status = ended.expect("the stream ends with an error");
    assert!(status.message().contains("heartbeat"), "{status:?}");
    let waited = stopped.elapsed();
    assert!(waited >= Duration::from_millis(800), "cut off after {waited:?}, before its timeout");
    // Its command stream ends (after anything already on its way).
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_secs(10), silent.from_server.message()).await.expect("stream kept")
    {}
    let response = dispatch(&channel, command("ship-2", "Ship", vec![])).await;
    assert_eq!(response.error_code, "AXONIQ-4000", "{response:?}");

    // The client that kept beating keeps its streams and its handler.
    let beat = tokio::time::timeout(Duration::from_secs(5), live_platform.message()).await.unwrap().unwrap().unwrap();
    assert!(matches!(beat.request, Some(ranvier_proto::control::platform_outbound_instruction::Request::Heartbeat(_))));
    let call = tokio::spawn({
        let channel = channel.clone();
        async move { dispatch(&channel, command("bill-1", "Bill", vec![])).await }
    });
    let billed = live.next_command().await;
    live.answer(&billed, "billed").await;
    assert!(call.await.unwrap().error_code.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_that_reconnects_keeps_one_metric_series_and_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path(), &[]);
    let channel = node.channel().await.unwrap();
    let mut first = Handler::open(&channel, "billing-1", &["Bill"], 100).await;
    first.grant(10).await;
    for n in 0..2 {
        let call = tokio::spawn({
            let channel = channel.clone();
            async move { dispatch(&channel, command(&format!("b-{n}"), "Bill", vec![])).await }
        });
        let bill = first.next_command().await;
        first.answer(&bill, "billed").await;
        assert!(call.await.unwrap().error_code.is_empty());
    }
    let client = ["kind=\"command\"", "client=\"billing-1\""];
    assert_eq!(node.metric("ranvier_handler_answered_total", &client), Some(2.0));
    assert!(node.metric("ranvier_handler_seconds_count", &client).is_some_and(|n| n == 2.0));

    // The client reconnects (a second stream, the first not yet gone):
    // one client connected, one series.
    let mut second = Handler::open(&channel, "billing-1", &["Bill"], 100).await;
    second.grant(10).await;
    let connected = ["context=\"default\"", "kind=\"command\""];
    assert_eq!(node.metric("ranvier_handlers_connected", &connected), Some(1.0));
    let unsubscribe = ranvier_proto::command::CommandSubscription {
        message_id: "unsub".into(),
        command: "Bill".into(),
        component_name: "billing-1-component".into(),
        client_id: "billing-1".into(),
        load_factor: 100,
    };
    assert!(first.send_acked(Outbound::Unsubscribe(unsubscribe)).await.success);
    drop(first);

    let call = tokio::spawn({
        let channel = channel.clone();
        async move { dispatch(&channel, command("b-2", "Bill", vec![])).await }
    });
    let bill = second.next_command().await;
    second.answer(&bill, "billed").await;
    assert!(call.await.unwrap().error_code.is_empty());
    assert_eq!(node.metric("ranvier_handler_answered_total", &client), Some(3.0));
    assert_eq!(node.metric("ranvier_handlers_connected", &connected), Some(1.0));

    // Once the client has no stream left, its series go (the node does not
    // keep one per client it ever saw).
    drop(second);
    ranvier_tests::eventually(Duration::from_secs(10), "the client's series to go", || async {
        node.metric("ranvier_handlers_connected", &connected) == Some(0.0)
            && node.metric("ranvier_handler_answered_total", &client).is_none()
    })
    .await
    .unwrap();
}
