//! Command round trips as an Axon application meets them: one handler
//! client (one command stream, answering everything), dispatching clients
//! on their own connections, real gRPC on loopback. Figures: throughput
//! and latency with 64 concurrent callers, handler and callers on one node;
//! and cross-node latency (handler on node 3, callers on node 1) at a paced
//! 1,000 commands/s.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ranvier_proto::command::command_provider_inbound::Request as Inbound;
use ranvier_proto::command::command_provider_outbound::Request as Outbound;
use ranvier_proto::command::command_service_client::CommandServiceClient;
use ranvier_proto::command::{Command, CommandProviderOutbound, CommandResponse, CommandSubscription};
use ranvier_proto::common::{FlowControl, SerializedObject};
use ranvier_tests::Node;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::spread::Clock;

const COMMAND: &str = "BenchCommand";
const CALLERS: usize = 64;

/// A handler client on `channel` that answers every command at once;
/// returns when it is subscribed.
async fn answering_handler(channel: Channel) {
    let (to_server, outbound) = mpsc::channel(1024);
    let mut client = CommandServiceClient::new(channel);
    let mut inbound =
        client.open_stream(tokio_stream::wrappers::ReceiverStream::new(outbound)).await.unwrap().into_inner();
    let subscription = CommandSubscription {
        message_id: "bench-sub".into(),
        command: COMMAND.into(),
        component_name: "bench-handler".into(),
        client_id: "bench-handler".into(),
        load_factor: 100,
    };
    let send = |request, id: &str| CommandProviderOutbound { request: Some(request), instruction_id: id.to_owned() };
    to_server.send(send(Outbound::Subscribe(subscription), "sub-1")).await.unwrap();
    let flow = FlowControl { client_id: "bench-handler".into(), permits: i64::MAX / 2 };
    to_server.send(send(Outbound::FlowControl(flow), "")).await.unwrap();
    // The subscription's ack.
    inbound.message().await.unwrap();
    tokio::spawn(async move {
        while let Ok(Some(message)) = inbound.message().await {
            if let Some(Inbound::Command(command)) = message.request {
                let response = CommandResponse {
                    message_identifier: format!("answer-{}", command.message_identifier),
                    request_identifier: command.message_identifier,
                    payload: Some(SerializedObject {
                        r#type: "Done".into(),
                        revision: String::new(),
                        data: b"ok".to_vec().into(),
                    }),
                    ..Default::default()
                };
                if to_server.send(send(Outbound::CommandResponse(response), "")).await.is_err() {
                    return;
                }
            }
        }
    });
}

fn command(id: String) -> Command {
    Command {
        message_identifier: id,
        name: COMMAND.into(),
        payload: Some(SerializedObject {
            r#type: COMMAND.into(),
            revision: String::new(),
            data: vec![b'x'; 128].into(),
        }),
        client_id: "bench-caller".into(),
        component_name: "bench-app".into(),
        ..Default::default()
    }
}

/// `total` round trips by `CALLERS` concurrent callers spread over
/// `channels`: commands/s and the latency histogram (µs).
async fn round_trips(channels: &[Channel], total: u64) -> (f64, Histogram<u64>) {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut callers = Vec::new();
    for caller in 0..CALLERS {
        let (channel, next) = (channels[caller % channels.len()].clone(), next.clone());
        callers.push(tokio::spawn(async move {
            let mut client = CommandServiceClient::new(channel);
            let mut latency = Histogram::<u64>::new(3).unwrap();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return latency;
                }
                let sent = Instant::now();
                let response = client.dispatch(command(format!("bench-{n}"))).await.unwrap().into_inner();
                assert_eq!(response.error_code, "", "{response:?}");
                latency.record(sent.elapsed().as_micros() as u64).unwrap();
            }
        }));
    }
    let mut latency = Histogram::<u64>::new(3).unwrap();
    for caller in callers {
        latency.add(caller.await.unwrap()).unwrap();
    }
    (total as f64 / started.elapsed().as_secs_f64(), latency)
}

/// Round trips at a steady `rate` per second for `seconds`, one caller
/// task per command: the latency histogram (µs).
async fn paced(channel: &Channel, rate: u64, seconds: u64) -> Histogram<u64> {
    let (results, mut collected) = mpsc::channel(1024);
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    for n in 0..rate * seconds {
        tick.tick().await;
        let (mut client, results) = (CommandServiceClient::new(channel.clone()), results.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let response = client.dispatch(command(format!("paced-{n}"))).await.unwrap().into_inner();
            assert_eq!(response.error_code, "", "{response:?}");
            let _ = results.send(sent.elapsed().as_micros() as u64).await;
        });
    }
    drop(results);
    let mut latency = Histogram::<u64>::new(3).unwrap();
    while let Some(us) = collected.recv().await {
        latency.record(us).unwrap();
    }
    latency
}

/// "node [+ node] / load generator": CPU µs per command since `clock`
/// started (this process holds the callers and the handler).
fn cpu_per_command(clock: &Clock, commands: u64) -> String {
    let used = clock.cpu_per(commands);
    let (load, nodes) = used.split_last().unwrap_or((&0.0, &[]));
    let nodes = nodes.iter().map(|c| format!("{c:.1}")).collect::<Vec<_>>().join(" + ");
    format!("{nodes} / {load:.1}")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Prints the command figures beside their goals.
pub async fn figures(scale: f64) {
    println!(
        "\n{:<52} {:>12} {:>10} {:>10} {:>24}",
        "commands (64 callers, one handler)", "commands/s", "p50 ms", "p99 ms", "CPU µs/cmd node / load"
    );
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]).unwrap();
    answering_handler(node.channel().await.unwrap()).await;
    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(node.channel().await.unwrap());
    }
    round_trips(&channels, 5_000).await;
    let total = ((200_000.0 * scale) as u64).max(1_000);
    let cpu = Clock::start([node.pid()]);
    let (rate, latency) = round_trips(&channels, total).await;
    println!(
        "{:<52} {rate:>12.0} {:>10.3} {:>10.3} {:>24}",
        "handler and callers on one node",
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.99)),
        cpu_per_command(&cpu, total)
    );
    println!("  goal: >= 50,000 commands/s on one node");
    drop(node);

    let dir = tempfile::tempdir().unwrap();
    let nodes = ranvier_tests::start_cluster(dir.path(), 3, &[]).unwrap();
    for node in &nodes {
        ranvier_tests::wait_voters(node, "default", 3).await.unwrap();
    }
    answering_handler(nodes[2].channel().await.unwrap()).await;
    let caller = nodes[0].channel().await.unwrap();
    // Until node 1 routes to node 3's handler.
    let mut client = CommandServiceClient::new(caller.clone());
    while !client.dispatch(command("warm".into())).await.unwrap().into_inner().error_code.is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut channels = Vec::new();
    for _ in 0..8 {
        channels.push(nodes[0].channel().await.unwrap());
    }
    let total = ((100_000.0 * scale) as u64).max(1_000);
    let cpu = Clock::start([nodes[0].pid(), nodes[2].pid()]);
    let (rate, latency) = round_trips(&channels, total).await;
    println!(
        "{:<52} {rate:>12.0} {:>10.3} {:>10.3} {:>24}",
        "callers on node 1, handler on node 3",
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.99)),
        cpu_per_command(&cpu, total)
    );
    let latency = paced(&caller, 1_000, 5).await;
    println!(
        "{:<52} {:>12} {:>10.3} {:>10.3}",
        "the same, paced at 1,000 commands/s",
        "1000",
        ms(latency.value_at_quantile(0.5)),
        ms(latency.value_at_quantile(0.99))
    );
    println!("  goal: cross-node p99 <= 2 ms at 1,000 commands/s");
}
