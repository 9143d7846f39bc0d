//! Full disks on real file systems (small tmpfs mounts). A single node with
//! no reserve runs into ENOSPC: the failing write is refused, everything
//! confirmed before stays readable, across a restart too, and writes resume
//! once the file system grows. One replica of a three-node cluster: below
//! its disk reserve it takes no new log entries and lags, without failing
//! its store or the group, while the other two go on committing; once the
//! file system grows it catches up to identical stores.
//!
//! Mounting needs root (CAP_SYS_ADMIN): without it the test fails with that
//! message, unless RANVIER_SKIP_MOUNT_TESTS=1 says to skip it (`make test`
//! sets it, loudly, where a mount is refused).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ranvier_proto::event::{GetEventsRequest, GetLastTokenRequest};
use ranvier_tests::{Node, error_code, event, eventually, last_token};
use tokio_stream::StreamExt;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, mib: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let size = format!("size={mib}m");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| e.to_string())?;
        match output.status.success() {
            true => Ok(Tmpfs(path.to_owned())),
            false => Err(String::from_utf8_lossy(&output.stderr).trim().to_owned()),
        }
    }

    fn grow(&self, mib: u64) {
        let options = format!("remount,size={mib}m");
        let status = Command::new("mount").args(["-o", &options]).arg(&self.0).status().unwrap();
        assert!(status.success(), "remount of {} failed", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// What `node`'s own store of `default` holds (its readiness report), even
/// while it does not serve reads.
fn stored(node: &Node) -> i64 {
    let (_, body) = node.http_get("/ready").unwrap();
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    ready["contexts"]["default"]["nextToken"].as_i64().unwrap() - 1
}

/// CRC of every event `node` serves from token 0 to `last`.
async fn checksum(node: &Node, last: i64) -> u32 {
    let mut client = node.event_store().await.unwrap();
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let request = GetEventsRequest { tracking_token: 0, number_of_permits: last + 1, ..Default::default() };
    sender.send(request).await.unwrap();
    let mut stream =
        client.list_events(tokio_stream::wrappers::ReceiverStream::new(receiver)).await.unwrap().into_inner();
    let mut hasher = crc32fast::Hasher::new();
    for expected in 0..=last {
        let item = stream.next().await.unwrap().unwrap();
        assert_eq!(item.token, expected);
        hasher.update(&item.event);
    }
    hasher.finalize()
}

/// Mounts a tmpfs of `mib` at `path`, or says why the test is skipped
/// (`None`) when it may not and RANVIER_SKIP_MOUNT_TESTS=1.
fn small_disk(path: &Path, mib: u64) -> Option<Tmpfs> {
    match Tmpfs::mount(path, mib) {
        Ok(disk) => Some(disk),
        Err(error) if std::env::var("RANVIER_SKIP_MOUNT_TESTS").as_deref() == Ok("1") => {
            eprintln!("SKIPPED: mount test (cannot mount a tmpfs: {error})");
            None
        }
        Err(error) => panic!("this test mounts a tmpfs and needs root: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_out_of_space_refuses_the_write_keeps_what_it_confirmed_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = small_disk(&dir.path().join("data"), 16) else { return };
    // No reserve: the store meets ENOSPC itself.
    let mut node = Node::start(dir.path(), &["ranvier.disk-reserve=0"]).unwrap();
    let mut client = node.event_store().await.unwrap();
    let transaction = |first: i64| -> Vec<_> { (first..first + 50).map(|s| event("fill", s, 4096)).collect() };
    let mut confirmed = 0i64;
    let refused = loop {
        match client.append_event(tokio_stream::iter(transaction(confirmed))).await {
            Ok(_) => confirmed += 50,
            Err(status) => break status,
        }
        assert!(confirmed < 100_000, "a 16 MiB file system took {confirmed} events of 4 KiB");
    };
    assert!(confirmed > 0);
    assert_eq!(error_code(&refused).as_deref(), Some("AXONIQ-9100"), "{refused:?}");
    assert!(refused.message().contains("No space left"), "{refused:?}");
    // Every confirmed event is there, and nothing of the refused one.
    assert_eq!(last_token(&node).await.unwrap(), confirmed - 1);
    let before = checksum(&node, confirmed - 1).await;
    // A restart on the full disk finds the same store.
    node = node.restart().unwrap();
    assert_eq!(last_token(&node).await.unwrap(), confirmed - 1);
    assert_eq!(checksum(&node, confirmed - 1).await, before);
    // Space returns: the same transaction is taken, without a restart.
    disk.grow(64);
    let mut client = node.event_store().await.unwrap();
    client.append_event(tokio_stream::iter(transaction(confirmed))).await.unwrap();
    assert_eq!(last_token(&node).await.unwrap(), confirmed + 49);
    drop(node);
}

/// Three clustered nodes, every one keeping `reserve` free; node-3's store
/// and replication log on a tmpfs of `mib` (its own node.log beside it,
/// where a full disk does not cut it short). `None`: mounts are not allowed.
async fn cluster_with_a_small_node_3(dir: &Path, mib: u64, reserve: &str) -> Option<(Tmpfs, Vec<Node>)> {
    let disk = small_disk(&dir.join("node-3").join("disk"), mib)?;
    let reserve = format!("ranvier.disk-reserve={reserve}");
    let settings = [
        reserve.as_str(),
        "axoniq.axonserver.event.storage=./disk/data",
        "axoniq.axonserver.replication.log-storage-folder=./disk/log",
    ];
    let nodes = ranvier_tests::start_cluster(dir, 3, &settings).unwrap();
    for group in ["_admin", "default"] {
        ranvier_tests::wait_voters(&nodes[0], group, 3).await.unwrap();
    }
    Some((disk, nodes))
}

const REFUSING: &str = "takes no new log entries";
const TAKING_AGAIN: &str = "this replica takes new log entries";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_below_its_disk_reserve_lags_without_failing_and_catches_up_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    // 32 MB of the 64 MiB kept free: node-3 has room for about 16 MiB of
    // events (each is written to the log and to the store).
    let Some((disk, nodes)) = cluster_with_a_small_node_3(dir.path(), 64, "32MB").await else { return };
    // node-1 founded the groups and leads them; a leader below its reserve
    // refuses writes (the in-process cluster tests show that), so this test
    // is about a follower: node-3 must not lead.
    let leads_default = || ranvier_tests::leader_of(&nodes[0], "default");
    eventually(Duration::from_secs(30), "a leader of default other than node-3", || async {
        leads_default().is_some_and(|leader| leader != "node-3")
    })
    .await
    .unwrap();
    let mut client = nodes[0].event_store().await.unwrap();
    let mut seq = 0i64;
    let mut append = async || {
        let events: Vec<_> = (seq..seq + 50).map(|s| event("big", s, 4096)).collect();
        seq += 50;
        client.append_event(tokio_stream::iter(events)).await.map(|_| ())
    };

    // Writes go on until node-3 reaches its reserve, and after it: the
    // other two commit them.
    let mut written = 0u64;
    while !nodes[2].log().contains(REFUSING) {
        if let Err(status) = append().await {
            panic!("a write failed ({status:?}); default is led by {:?}", leads_default());
        }
        written += 50 * 4096;
        assert!(written < 256 << 20, "node-3 never reported its reserve; its log:\n{}", nodes[2].log());
    }
    for _ in 0..20 {
        append().await.unwrap();
    }
    let total = last_token(&nodes[0]).await.unwrap();
    assert_eq!(total, seq - 1);
    eventually(Duration::from_secs(30), "node-2 to hold every write", || async {
        last_token(&nodes[1]).await.unwrap() == total
    })
    .await
    .unwrap();
    let lagging = stored(&nodes[2]);
    assert!(lagging < total, "node-3 stored past its reserve ({lagging} of {total})");
    // Its store did not fail; behind its leader, it answers reads with
    // Axon's no-leader error rather than with a stale history.
    assert!(!nodes[2].log().contains("store stopped accepting writes"), "{}", nodes[2].log());
    let mut behind = nodes[2].event_store().await.unwrap();
    let refused = behind.get_last_token(GetLastTokenRequest {}).await.unwrap_err();
    assert_eq!(error_code(&refused).as_deref(), Some("AXONIQ-2100"), "{refused:?}");
    // The leader's group listing says why node-3 lags.
    let groups = || {
        let leader = leads_default().unwrap();
        let leader = nodes.iter().find(|n| n.name() == leader).unwrap();
        let (code, out, err) =
            ranvier_tests::ranvierctl(&["replication-groups", "-S", &format!("http://{}", leader.http_addr)]).unwrap();
        assert_eq!(code, 0, "{out}{err}");
        out
    };
    const WARNING: &str = "below the disk reserve, taking no entries: node-3";
    let warns = || groups().lines().any(|l| l.starts_with("default ") && l.contains(WARNING));
    eventually(Duration::from_secs(30), "the leader's listing to name node-3", || async { warns() }).await.unwrap();

    // The disk grows: node-3 takes entries again and catches up.
    disk.grow(512);
    eventually(Duration::from_secs(60), "node-3 to catch up", || async { stored(&nodes[2]) == total }).await.unwrap();
    eventually(Duration::from_secs(30), "the warning to go", || async { !warns() }).await.unwrap();
    let log = nodes[2].log();
    assert!(log.contains(TAKING_AGAIN), "{log}");
    // At no point did node-3 meet the full disk itself.
    for fatal in ["failed to apply a log entry", "the replication log stops accepting entries", "No space left"] {
        assert!(!log.contains(fatal), "node-3 logged {fatal:?}:\n{log}");
    }
    let expected = checksum(&nodes[0], total).await;
    for node in &nodes[1..] {
        assert_eq!(checksum(node, total).await, expected, "{} differs", node.name());
    }
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_without_a_reserve_that_meets_enospc_stops_and_catches_up_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // No reserve: node-3's store meets ENOSPC while applying committed entries.
    let Some((disk, mut nodes)) = cluster_with_a_small_node_3(dir.path(), 32, "0").await else { return };
    let mut client = nodes[0].event_store().await.unwrap();
    let mut seq = 0i64;
    let mut append = async || {
        let events: Vec<_> = (seq..seq + 50).map(|s| event("big", s, 4096)).collect();
        seq += 50;
        client.append_event(tokio_stream::iter(events)).await.map(|_| ())
    };
    // The other two go on committing every write.
    let mut written = 0u64;
    while !nodes[2].log().contains("No space left") {
        append().await.unwrap();
        written += 50 * 4096;
        assert!(written < 256 << 20, "node-3 never ran out of space; its log:\n{}", nodes[2].log());
    }
    for _ in 0..20 {
        append().await.unwrap();
    }
    let total = last_token(&nodes[0]).await.unwrap();
    assert_eq!(total, seq - 1);
    let stopped_at = stored(&nodes[2]);
    assert!(stopped_at < total, "node-3 stored everything on a full disk");

    // Space returns. The group stopped on node-3 (a storage error is fatal
    // to its Raft there), so it takes a restart; then it catches up, with
    // no further write, to the same events byte for byte.
    disk.grow(512);
    // It stays up like that for a while, as until an operator restarts it:
    // the leader keeps retrying it meanwhile, with no new writes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let node = nodes.remove(2).restart().unwrap();
    nodes.push(node);
    eventually(Duration::from_secs(60), "node-3 to catch up after its restart", || async {
        stored(&nodes[2]) == total
    })
    .await
    .unwrap();
    let expected = checksum(&nodes[0], total).await;
    for node in &nodes[1..] {
        assert_eq!(checksum(node, total).await, expected, "{} differs", node.name());
    }
}
