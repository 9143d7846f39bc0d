//! How fast the console's pages render on a node holding a million events
//! (scaled): each page fetched over HTTP as a browser fetches it, many
//! times, one at a time; p50 and p99 beside the 200 ms goal. The node is a
//! one-node cluster, so the overview, contexts and groups pages show
//! cluster state; its store holds the events `read_figures` writes (with
//! the 100-event aggregate `hundred`, spread over the store).

use hdrhistogram::Histogram;
use ranvier_tests::Node;

/// Fetches of each page.
const FETCHES: usize = 200;

/// The goal: every page within this (ms).
const GOAL_MS: f64 = 200.0;

/// Times `FETCHES` fetches of each console page from `node`.
pub fn figures(node: &Node) {
    let pages = [
        ("overview", "/console"),
        ("contexts", "/console/contexts"),
        ("replication groups", "/console/groups"),
        ("events: last 20", "/console/events?context=default"),
        ("events: last 100", "/console/events?context=default&limit=100"),
        ("events: aggregate of 100", "/console/events?context=default&aggregate=hundred&limit=100"),
        ("clients", "/console/clients?context=default"),
    ];
    println!(
        "\n{:<44} {:>10} {:>10} {:>10}",
        "console page (node with the events above)", "p50 ms", "p99 ms", "goal ms"
    );
    for (name, path) in pages {
        let mut latency = Histogram::<u64>::new(3).unwrap();
        for _ in 0..FETCHES {
            let started = std::time::Instant::now();
            let reply = ranvier_tests::http_call(&node.http_addr, "GET", path).unwrap();
            latency.record(started.elapsed().as_micros() as u64).unwrap();
            assert_eq!(reply.code, 200, "{path}: {}", reply.body);
        }
        println!(
            "{name:<44} {:>10.2} {:>10.2} {:>10.0}",
            super::ms(latency.value_at_quantile(0.5)),
            super::ms(latency.value_at_quantile(0.99)),
            GOAL_MS
        );
    }
}
