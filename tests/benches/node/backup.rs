//! Backup and restore throughput as an operator meets it: a node holding
//! 1 GiB of events (scaled by `RANVIER_BENCH_SCALE`), `ranvierctl backup`
//! through the node's backup endpoints into another folder on the same
//! disk, and `ranvierctl restore` from it; beside the disk's own sequential
//! write and read bandwidth, measured in the same run. On one disk a backup
//! reads and writes at once, so its ceiling is about half the slower of the
//! two; both run with the node's and the copy's fsync.

use std::io::{Read, Write};
use std::time::Instant;

use ranvier_proto::event::Event;
use ranvier_tests::{Node, event};

/// Bytes of one event's payload: large events, as a store of documents.
const EVENT_BYTES: usize = 32 * 1024;
/// Events per transaction (1 MiB).
const PER_TRANSACTION: usize = 32;
/// Writers at once.
const WRITERS: usize = 4;

fn mib_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / seconds
}

/// The disk's sequential write (with a final fsync) and read bandwidth, in
/// MiB/s, over a file of `bytes` in `dir`; whether the page cache could be
/// dropped before the read (else the read may come from memory).
fn disk_bandwidth(dir: &std::path::Path, bytes: u64) -> (f64, f64, bool) {
    let path = dir.join("disk-bandwidth");
    let chunk = vec![0x5au8; 1024 * 1024];
    let started = Instant::now();
    let mut file = std::fs::File::create(&path).unwrap();
    for _ in 0..bytes / chunk.len() as u64 {
        file.write_all(&chunk).unwrap();
    }
    file.sync_all().unwrap();
    let write = mib_per_s(bytes, started.elapsed().as_secs_f64());
    drop(file);
    let dropped = std::fs::write("/proc/sys/vm/drop_caches", "1\n").is_ok();
    let started = Instant::now();
    let mut file = std::fs::File::open(&path).unwrap();
    let mut buffer = vec![0u8; 1024 * 1024];
    while file.read(&mut buffer).unwrap() > 0 {}
    let read = mib_per_s(bytes, started.elapsed().as_secs_f64());
    std::fs::remove_file(&path).unwrap();
    (write, read, dropped)
}

/// Bytes of the files under `dir`, recursively.
fn tree_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => tree_bytes(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

pub async fn figures(scale: f64, dir: &std::path::Path) {
    let target_bytes = ((1u64 << 30) as f64 * scale) as u64;
    let (write, read, dropped) = disk_bandwidth(dir, target_bytes.max(64 << 20));
    let cache = if dropped { "page cache dropped" } else { "page cache not dropped: the read may be from memory" };
    println!("\ndisk sequential: write {write:.0} MiB/s (with fsync), read {read:.0} MiB/s ({cache})");

    let node = Node::start(&dir.join("node"), &[]).unwrap();
    let transactions = (target_bytes / (EVENT_BYTES * PER_TRANSACTION) as u64).max(1);
    let started = Instant::now();
    let mut writers = Vec::new();
    for writer in 0..WRITERS as u64 {
        let mut client = node.event_store().await.unwrap();
        writers.push(tokio::spawn(async move {
            let aggregate = format!("doc-{writer}");
            let mut seq = 0i64;
            for _ in (writer..transactions).step_by(WRITERS) {
                let events: Vec<Event> =
                    (seq..seq + PER_TRANSACTION as i64).map(|s| event(&aggregate, s, EVENT_BYTES)).collect();
                client.append_event(tokio_stream::iter(events)).await.unwrap();
                seq += PER_TRANSACTION as i64;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let stored = tree_bytes(&node.dir.join("data"));
    println!(
        "store filled: {:.0} MiB in {:.1} s ({:.0} MiB/s through the node)",
        stored as f64 / 1048576.0,
        started.elapsed().as_secs_f64(),
        mib_per_s(stored, started.elapsed().as_secs_f64())
    );

    let target = dir.join("backups");
    let server = format!("http://{}", node.http_addr);
    let started = Instant::now();
    let (code, name, err) =
        ranvier_tests::ranvierctl(&["backup", "--target", &target.display().to_string(), "-S", &server]).unwrap();
    let took = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{err}");
    let backup = target.join(name.trim());
    let copied = tree_bytes(&backup);
    let half = write.min(read) / 2.0;
    println!(
        "{:<44} {:>8.0} MiB/s  ({} MiB in {took:.1} s; goal: near half the disk's slower direction, {half:.0} MiB/s)",
        "ranvierctl backup (copy, fsync, verify)",
        mib_per_s(copied, took),
        copied >> 20
    );
    drop(node);

    let restored = dir.join("restored");
    let started = Instant::now();
    let (code, _, err) = ranvierctl_restore(&backup, &restored);
    let took = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{err}");
    println!(
        "{:<44} {:>8.0} MiB/s  ({} MiB in {took:.1} s; same goal)",
        "ranvierctl restore (verify, copy, fsync)",
        mib_per_s(copied, took),
        copied >> 20
    );
}

fn ranvierctl_restore(backup: &std::path::Path, data: &std::path::Path) -> (i32, String, String) {
    let (from, to) = (backup.display().to_string(), data.display().to_string());
    ranvier_tests::ranvierctl(&["restore", "--from", &from, "--data-dir", &to]).unwrap()
}
