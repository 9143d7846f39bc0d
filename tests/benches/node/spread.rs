//! Writes as users send them: three nodes formed by autocluster, every
//! client an ordinary gRPC client (tonic's `EventStoreClient`) on a
//! connection of its own, the clients spread evenly over the nodes (as
//! Axon connectors spread over a cluster), 256-byte events, fsync on every
//! replica. Figures: events/s, latency percentiles per transaction, and
//! the CPU time per event of each node (leader first) and of the load
//! generator. A single client sits on a follower, where two of every three
//! clients land; 64 × 1 runs again with every client on the leader and
//! with every client on a follower, to show what the forward costs.
//! (`RANVIER_BENCH=spread`; issue 20's own-side figures.) To profile one
//! load, `RANVIER_BENCH_ROWS` names the rows to run, comma-separated:
//! `1x1`, `1x10`, `64x1`, `64x10`, `leader`, `follower`, `nats`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use ranvier_proto::event::Event;
use ranvier_proto::event::event_store_client::EventStoreClient;
use ranvier_tests::Node;

use super::{bench_dir, bench_event, cpu_seconds, ms};

/// What one load measured.
pub struct Measured {
    pub events_per_second: f64,
    pub latency: Histogram<u64>,
    /// CPU microseconds per event of each process measured (the servers,
    /// then the load generator).
    pub cpu_per_event: Vec<f64>,
}

/// CPU time so far of `pids`, to measure a load from.
pub struct Clock {
    pids: Vec<u32>,
    cpu: Vec<f64>,
    started: Instant,
}

impl Clock {
    /// Starts measuring `pids` and this process (the load generator).
    pub fn start(pids: impl IntoIterator<Item = u32>) -> Self {
        let pids: Vec<u32> = pids.into_iter().chain(std::iter::once(std::process::id())).collect();
        let cpu = pids.iter().map(|p| cpu_seconds(*p)).collect();
        Clock { pids, cpu, started: Instant::now() }
    }

    /// Waits for the load's `tasks` (each answering its latency) and
    /// measures the `events` they did.
    pub async fn measure(self, mut tasks: tokio::task::JoinSet<Histogram<u64>>, events: &AtomicU64) -> Measured {
        let mut latency = Histogram::<u64>::new(3).unwrap();
        while let Some(part) = tasks.join_next().await {
            latency.add(part.unwrap()).unwrap();
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let events = events.load(Ordering::Relaxed);
        Measured { events_per_second: events as f64 / seconds, latency, cpu_per_event: self.cpu_per(events) }
    }

    /// CPU microseconds per unit of work (`units` done since the start) of
    /// each process measured: the servers, then the load generator.
    pub fn cpu_per(&self, units: u64) -> Vec<f64> {
        self.pids
            .iter()
            .zip(&self.cpu)
            .map(|(p, before)| (cpu_seconds(*p) - before) * 1e6 / units.max(1) as f64)
            .collect()
    }
}

/// Whether the row called `name` runs (every row, unless
/// `RANVIER_BENCH_ROWS` names some).
fn wanted(name: &str) -> bool {
    match std::env::var("RANVIER_BENCH_ROWS") {
        Ok(rows) => rows.split(',').any(|row| row.trim() == name),
        Err(_) => true,
    }
}

/// One row of the tables: label, rate, latency percentiles, CPU.
pub fn print_row(label: &str, measured: &Measured) {
    let cpu = &measured.cpu_per_event;
    let servers = cpu[..cpu.len() - 1].iter().map(|c| format!("{c:.1}")).collect::<Vec<_>>().join(" / ");
    println!(
        "{label:<34} {:>10.0} {:>8.3} {:>8.3} {:>9.3} {servers:>26} {:>10.1}",
        measured.events_per_second,
        ms(measured.latency.value_at_quantile(0.5)),
        ms(measured.latency.value_at_quantile(0.99)),
        ms(measured.latency.value_at_quantile(0.999)),
        cpu[cpu.len() - 1]
    );
}

pub async fn figures(scale: f64) {
    let dir = bench_dir();
    let nodes = ranvier_tests::start_cluster(dir.path(), 3, &[]).unwrap();
    ranvier_tests::wait_voters(&nodes[0], "default", 3).await.unwrap();
    let leader_name = ranvier_tests::leader_of(&nodes[0], "default").unwrap();
    let leader = nodes.iter().position(|n| n.name() == leader_name).unwrap();
    // Leader first, then the followers.
    let order: Vec<usize> = std::iter::once(leader).chain((0..3).filter(|i| *i != leader)).collect();
    println!("\nthree nodes, clients spread over them, one tonic client per connection (fsync on every replica)");
    println!(
        "{:<34} {:>10} {:>8} {:>8} {:>9} {:>26} {:>10}",
        "append", "events/s", "p50 ms", "p99 ms", "p99.9 ms", "CPU µs/event L / F / F", "load gen"
    );
    let mut ours = Vec::new();
    for (clients, tx) in [(1usize, 1usize), (1, 10), (64, 1), (64, 10)] {
        if !wanted(&format!("{clients}x{tx}")) {
            continue;
        }
        let total = ((if clients == 1 { 4_000.0 } else { 120_000.0 } * scale) as u64).max(100);
        // One client: on a follower. Many: round robin over the nodes.
        let targets: Vec<&Node> = (0..clients).map(|c| &nodes[order[(c + 1) % 3]]).collect();
        let spread = run(&targets, &order.iter().map(|i| &nodes[*i]).collect::<Vec<_>>(), tx, total).await;
        print_row(&format!("{clients} client(s) x {tx}-event tx"), &spread);
        ours.push(((clients, tx), spread.events_per_second, ms(spread.latency.value_at_quantile(0.99))));
    }
    // The same 64 x 1 load with every client on the leader, and with every
    // client on a follower: what the forward costs.
    let total = ((120_000.0 * scale) as u64).max(100);
    let by_order = order.iter().map(|i| &nodes[*i]).collect::<Vec<_>>();
    if wanted("leader") && wanted("follower") {
        let on_leader = run(&vec![&nodes[order[0]]; 64], &by_order, 1, total).await;
        print_row("64 x 1, every client on the leader", &on_leader);
        let followers: Vec<&Node> = (0..64).map(|c| &nodes[order[1 + c % 2]]).collect();
        let on_followers = run(&followers, &by_order, 1, total).await;
        print_row("64 x 1, every client on a follower", &on_followers);
        println!(
            "  through the followers / through the leader: {:.2} x the events/s (goal: >= 0.85)",
            on_followers.events_per_second / on_leader.events_per_second
        );
    }
    drop(nodes);
    if !wanted("nats") {
        return;
    }
    let Some(binary) = super::nats::binary() else {
        println!("  NATS JetStream: SKIPPED (install Debian's nats-server for the side-by-side figures)");
        println!("  goals (issue 20): 64 x 1 >= 2 x NATS JetStream R3 in the same run; 64 x 10 >= 100,000 events/s");
        return;
    };
    let servers = super::nats::start(&binary, dir.path()).await;
    println!(
        "\nNATS JetStream 2.9 R3, file storage, same clients (answers once a majority holds it; fsyncs every 2 min)"
    );
    println!(
        "{:<34} {:>10} {:>8} {:>8} {:>9} {:>26} {:>10}",
        "publish with last-sequence check",
        "msgs/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "CPU µs/msg per server",
        "load gen"
    );
    for clients in [1usize, 64] {
        let total = ((if clients == 1 { 4_000.0 } else { 120_000.0 } * scale) as u64).max(100);
        let measured = super::nats::publish_load(&servers, clients, total, &format!("c{clients}")).await;
        print_row(&format!("{clients} client(s) x 1 message"), &measured);
        if let Some((_, rate, p99)) = ours.iter().find(|(config, _, _)| *config == (clients, 1)) {
            println!(
                "  Ranvier / NATS, {clients} x 1: {:.2} x the events/s, p99 {:.2} x{}",
                rate / measured.events_per_second,
                p99 / ms(measured.latency.value_at_quantile(0.99)),
                if clients == 64 { " (goal: >= 2 x the events/s)" } else { "" }
            );
        }
    }
    println!("  goal (issue 20): 64 x 10 >= 100,000 events/s");
}

/// `targets.len()` clients, client `c` on `targets[c]`, append `tx`-event
/// transactions until `total` events are confirmed; `nodes` (leader first)
/// are the processes whose CPU time is read.
async fn run(targets: &[&Node], nodes: &[&Node], tx: usize, total: u64) -> Measured {
    let mut clients = Vec::with_capacity(targets.len());
    for node in targets {
        clients.push(EventStoreClient::new(node.channel().await.unwrap()));
    }
    let clock = Clock::start(nodes.iter().map(|n| n.pid()));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let run_id = clock.started.elapsed().as_nanos() ^ u128::from(std::process::id());
    for (c, mut client) in clients.into_iter().enumerate() {
        let done = done.clone();
        let aggregate = format!("spread-{run_id}-{}-{tx}-{c}", targets.len());
        tasks.spawn(async move {
            let mut latency = Histogram::<u64>::new(3).unwrap();
            let mut seq = 0i64;
            while done.load(Ordering::Relaxed) < total {
                let events: Vec<Event> = (seq..seq + tx as i64).map(|s| bench_event(&aggregate, s)).collect();
                let sent = Instant::now();
                client.append_event(tokio_stream::iter(events)).await.unwrap();
                latency.record(sent.elapsed().as_micros() as u64).unwrap();
                seq += tx as i64;
                done.fetch_add(tx as u64, Ordering::Relaxed);
            }
            latency
        });
    }
    clock.measure(tasks, &done).await
}
