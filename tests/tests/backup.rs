//! The event store's backup endpoints against a real node process: the
//! files to copy (all, then only what is new), each file streamed
//! byte-identical to the node's own (the active segment up to its committed
//! length), administrators only.

use ranvier_tests::{Node, event, http_get_bytes, last_token};
use ranvier_wire::http::encode;
use serde_json::Value;

const ADMIN: &str = "backup-admin-token";
const APP: &str = "backup-app-token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_lists_the_segment_files_and_streams_each_as_the_node_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        dir.path(),
        &[
            "axoniq.axonserver.event.segment-size=64KB",
            "ranvier.max-transaction-size=32KB",
            "axoniq.axonserver.accesscontrol.enabled=true",
            &format!("axoniq.axonserver.accesscontrol.token={APP}"),
            &format!("axoniq.axonserver.accesscontrol.admin-token={ADMIN}"),
        ],
    )
    .unwrap();
    let channel = node.channel().await.unwrap();
    let append = |seq: i64| {
        let channel = channel.clone();
        async move {
            let mut request =
                tonic::Request::new(tokio_stream::iter((seq..seq + 10).map(|s| event("backup", s, 1000))));
            request.metadata_mut().insert("axoniq-access-token", APP.parse().unwrap());
            ranvier_proto::event::event_store_client::EventStoreClient::new(channel)
                .append_event(request)
                .await
                .unwrap();
        }
    };
    for first in (0..300).step_by(10) {
        append(first).await;
    }
    let admin = [("AxonIQ-Access-Token", ADMIN)];
    let list = |after: i64| {
        let path = format!("/v1/backup/eventstore?targetContext=default&type=EVENT&lastClosedSegmentBackedUp={after}");
        let answer = http_get_bytes(&node.http_addr, &path, &admin).unwrap();
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
        serde_json::from_slice::<Value>(&answer.body).unwrap()
    };
    let listed = list(-1);
    let last_closed = listed["lastClosedSegment"].as_i64().unwrap();
    let files: Vec<String> =
        listed["filenames"].as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_owned()).collect();
    assert!(last_closed > 0, "300 KB of events in 64 KB segments closed some: {listed}");
    let data_files = files.iter().filter(|f| f.ends_with(".events")).count();
    assert!(data_files >= 4, "closed segments and the active one: {files:?}");

    // Every file comes back as the node holds it.
    for file in &files {
        let answer =
            http_get_bytes(&node.http_addr, &format!("/v1/backup/file?path={}", encode(file)), &admin).unwrap();
        assert_eq!(answer.status, 200, "{file}");
        let on_disk = std::fs::read(file).unwrap();
        assert!(on_disk.starts_with(&answer.body), "{file}: the copy is not the node's bytes");
        if !file.ends_with(&format!("{:020}.events", files_active(&files))) {
            assert_eq!(answer.body.len(), on_disk.len(), "{file}: a closed file is sent whole");
        }
    }

    // Incremental: after the newest closed segment, only the active one.
    let newer = list(last_closed);
    let again: Vec<&str> = newer["filenames"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(again.len(), 1, "{again:?}");
    assert!(again[0].ends_with(".events"), "{again:?}");

    // Administrators only; and only the stores' own files.
    let path = format!("/v1/backup/file?path={}", encode(&files[0]));
    for (token, code) in [(None, "AXONIQ-1000"), (Some(APP), "AXONIQ-1001")] {
        let headers: Vec<(&str, &str)> = token.map(|t| ("AxonIQ-Access-Token", t)).into_iter().collect();
        let answer = http_get_bytes(&node.http_addr, &path, &headers).unwrap();
        assert_eq!((answer.status, answer.error_code.as_deref()), (403, Some(code)));
    }
    let outside = http_get_bytes(&node.http_addr, "/v1/backup/file?path=/etc/passwd", &admin).unwrap();
    assert_eq!(outside.status, 404);
    let sideways = format!(
        "/v1/backup/file?path={}",
        encode(&format!("{}/../../node.log", dir.path().join("data/default").display()))
    );
    assert_eq!(http_get_bytes(&node.http_addr, &sideways, &admin).unwrap().status, 404);
}

/// The first token of the active segment: the highest-named data file.
fn files_active(files: &[String]) -> u64 {
    files.iter().filter_map(|f| f.rsplit('/').next()?.strip_suffix(".events")?.parse().ok()).max().unwrap()
}

fn ctl(args: &[&str]) -> (i32, String, String) {
    ranvier_tests::ranvierctl(args).unwrap()
}

/// `ctl` on a blocking thread (the node under test answers on this runtime).
async fn ctl_off_thread(args: &[&str]) -> (i32, String, String) {
    let owned: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || ctl(&owned.iter().map(String::as_str).collect::<Vec<_>>())).await.unwrap()
}

fn manifest(dir: &std::path::Path, name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(dir.join(name).join("manifest.json")).unwrap()).unwrap()
}

/// Bytes the backup `name` copied itself (not referred to an earlier one).
fn own_bytes(manifest: &Value) -> u64 {
    let name = manifest["name"].as_str().unwrap();
    let stores = manifest["stores"].as_array().unwrap();
    let files = stores.iter().flat_map(|s| s["files"].as_array().unwrap());
    files.filter(|f| f["storedIn"] == name).map(|f| f["size"].as_u64().unwrap()).sum()
}

fn events_next_token(manifest: &Value) -> i64 {
    let stores = manifest["stores"].as_array().unwrap();
    let events = stores.iter().find(|s| s["context"] == "default" && s["kind"] == "EVENT").unwrap();
    events["nextToken"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writing_restores_into_a_node_that_serves_every_event_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let small = ["axoniq.axonserver.event.segment-size=64KB", "ranvier.max-transaction-size=32KB"];
    let node = Node::start(&dir.path().join("source"), &small).unwrap();
    let target = dir.path().join("backups");
    let server = format!("http://{}", node.http_addr);

    // A client writes all along.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (channel, stop) = (node.channel().await.unwrap(), stop.clone());
        tokio::spawn(async move {
            let mut client = ranvier_proto::event::event_store_client::EventStoreClient::new(channel);
            let mut seq = 0i64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let events: Vec<_> = (seq..seq + 5).map(|s| event("written-during-backup", s, 700)).collect();
                client.append_event(tokio_stream::iter(events)).await.unwrap();
                seq += 5;
            }
            seq
        })
    };
    let wait_for_events = |at_least: i64| {
        let node = &node;
        async move {
            ranvier_tests::eventually(std::time::Duration::from_secs(30), "events written", || async {
                last_token(node).await.unwrap() >= at_least
            })
            .await
            .unwrap();
        }
    };
    wait_for_events(300).await;
    let full = {
        let (server, target) = (server.clone(), target.display().to_string());
        tokio::task::spawn_blocking(move || ctl(&["backup", "--target", &target, "-S", &server])).await.unwrap()
    };
    assert_eq!(full.0, 0, "{}{}", full.1, full.2);
    let first = full.1.trim().to_owned();
    assert!(full.2.contains("complete"), "progress and a summary: {}", full.2);
    let first_manifest = manifest(&target, &first);
    wait_for_events(events_next_token(&first_manifest) + 300).await;
    let more = {
        let (server, target) = (server.clone(), target.display().to_string());
        tokio::task::spawn_blocking(move || ctl(&["backup", "--target", &target, "-S", &server, "--incremental"]))
            .await
            .unwrap()
    };
    assert_eq!(more.0, 0, "{}{}", more.1, more.2);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap();
    let second = more.1.trim().to_owned();
    let second_manifest = manifest(&target, &second);
    assert_eq!(second_manifest["previous"].as_str(), Some(first.as_str()));
    assert!(events_next_token(&second_manifest) > events_next_token(&first_manifest));
    // Incremental: the closed segments of the first are referred to, not
    // copied again; only what is new was copied.
    let files = |m: &Value| -> Vec<Value> {
        m["stores"].as_array().unwrap().iter().flat_map(|s| s["files"].as_array().unwrap().clone()).collect()
    };
    let first_closed: Vec<Value> = files(&first_manifest).into_iter().filter(|f| f["closed"] == true).collect();
    assert!(!first_closed.is_empty());
    for file in &first_closed {
        let kept = files(&second_manifest).into_iter().find(|f| f["name"] == file["name"]).unwrap();
        assert_eq!(kept["storedIn"].as_str(), Some(first.as_str()), "{file} copied again");
        assert_eq!(kept["sha256"], file["sha256"]);
    }
    let total: u64 = files(&second_manifest).iter().map(|f| f["size"].as_u64().unwrap()).sum();
    let referred: u64 = first_closed.iter().map(|f| f["size"].as_u64().unwrap()).sum();
    assert_eq!(own_bytes(&second_manifest), total - referred, "copied: what the first backup did not hold");
    assert!(!target.join(format!("{second}.partial")).exists());
    assert_eq!(ctl(&["backup", "verify", &target.join(&second).display().to_string()]).0, 0);

    // Restored into a fresh node: every event the backup covers, identical.
    let restored_dir = dir.path().join("restored");
    let data = restored_dir.join("data").display().to_string();
    let (code, out, err) =
        ctl(&["restore", "--from", &target.join(&second).display().to_string(), "--data-dir", &data]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = ctl(&["restore", "--from", &target.join(&second).display().to_string(), "--data-dir", &data]);
    assert!(code == 1 && err.contains("already"), "a restore never overwrites: {err}");
    let restored = Node::start(&restored_dir, &small).unwrap();
    let covered = events_next_token(&second_manifest);
    let original = ranvier_tests::read_events(&node, covered).await.unwrap();
    let copy = ranvier_tests::read_events(&restored, covered).await.unwrap();
    assert_eq!(copy.len() as i64, covered);
    assert!(original == copy, "the restored events differ from the originals");

    // A damaged file: verify and restore refuse, naming it.
    let stores = first_manifest["stores"].as_array().unwrap();
    let closed = stores[0]["files"].as_array().unwrap().iter().find(|f| f["closed"] == true).unwrap();
    let damaged = target.join(&first).join("default").join("EVENT").join(closed["name"].as_str().unwrap());
    let mut bytes = std::fs::read(&damaged).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&damaged, bytes).unwrap();
    let (code, _, err) = ctl(&["backup", "verify", &target.join(&first).display().to_string()]);
    assert!(code == 1 && err.contains(closed["name"].as_str().unwrap()) && err.contains("damaged"), "{err}");
    let elsewhere = dir.path().join("elsewhere").display().to_string();
    let (code, _, err) =
        ctl(&["restore", "--from", &target.join(&second).display().to_string(), "--data-dir", &elsewhere]);
    assert!(code == 1 && err.contains("damaged"), "the incremental backup refers to the damaged file: {err}");

    // Prune keeps the newest and what it refers to.
    let third = {
        let (server, target) = (server.clone(), target.display().to_string());
        tokio::task::spawn_blocking(move || ctl(&["backup", "--target", &target, "-S", &server])).await.unwrap()
    };
    assert_eq!(third.0, 0, "{}", third.2);
    let (code, out, err) = ctl(&["backup", "prune", &target.display().to_string(), "--keep", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(&first) && !out.contains(&second), "the second and what it needs are kept: {out}");
    let (code, out, _) = ctl(&["backup", "prune", &target.display().to_string(), "--keep", "1"]);
    assert_eq!(code, 0);
    assert!(out.contains(&first) && out.contains(&second), "{out}");
    assert!(target.join(third.1.trim()).join("manifest.json").exists(), "the newest stays");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_backup_holds_the_cluster_state_first_and_every_store_of_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        "axoniq.axonserver.accesscontrol.enabled=true".to_owned(),
        format!("axoniq.axonserver.accesscontrol.token={APP}"),
        format!("axoniq.axonserver.accesscontrol.admin-token={ADMIN}"),
        "axoniq.axonserver.autocluster.contexts=orders".to_owned(),
    ];
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let nodes = ranvier_tests::start_cluster(dir.path(), 3, &settings).unwrap();
    let server = format!("http://{}", nodes[1].http_addr);
    ranvier_tests::eventually(std::time::Duration::from_secs(30), "three nodes in the cluster", || async {
        ctl(&["cluster", "-o", "json", "-S", &server, "-t", ADMIN]).1.matches("\"name\"").count() == 3
    })
    .await
    .unwrap();
    let (code, secret, err) =
        ctl(&["register-application", "-a", "shop", "-r", "USE_CONTEXT@orders", "-S", &server, "-t", ADMIN]);
    assert_eq!(code, 0, "{err}");
    let target = dir.path().join("backups");
    let target_arg = target.display().to_string();
    let refused = ctl(&["backup", "--target", &target_arg, "-S", &server, "-t", APP]);
    assert!(refused.0 == 1 && refused.2.contains("AXONIQ-1001"), "only administrators back up: {}", refused.2);
    let (code, name, err) = ctl(&["backup", "--target", &target_arg, "-S", &server, "-t", ADMIN]);
    assert_eq!(code, 0, "{err}");
    assert!(err.find("cluster state") < err.find("default EVENT"), "the cluster state comes first: {err}");
    let manifest = manifest(&target, name.trim());
    let control = manifest["control"]["name"].as_str().unwrap();
    let state: Value =
        serde_json::from_slice(&std::fs::read(target.join(name.trim()).join("control").join(control)).unwrap())
            .unwrap();
    for node in ["node-1", "node-2", "node-3"] {
        assert!(state["model"]["nodes"].to_string().contains(node), "{state}");
    }
    assert!(state["model"]["applications"]["shop"].is_object(), "{state}");
    assert!(!state.to_string().contains(secret.trim()), "a token in clear in the backup");
    // Then the logs of the node's groups, each a whole folder.
    let logs: Vec<&str> = manifest["logs"].as_array().unwrap().iter().map(|l| l["group"].as_str().unwrap()).collect();
    assert_eq!(logs, ["_admin", "default", "orders"]);
    let admin_files = manifest["logs"][0]["files"].to_string();
    assert!(admin_files.contains(".log") && admin_files.contains("vote.json"), "{admin_files}");
    assert!(err.find("the log of _admin") < err.find("default EVENT"), "logs before the stores: {err}");
    let contexts: Vec<&str> =
        manifest["stores"].as_array().unwrap().iter().map(|s| s["context"].as_str().unwrap()).collect();
    assert!(contexts.contains(&"default") && contexts.contains(&"orders"), "{contexts:?}");
    assert_eq!(ctl(&["backup", "verify", &target.join(name.trim()).display().to_string()]).0, 0);

    // Given several nodes (as the operator's Jobs are), the first ready one
    // is backed up: a node that is down is passed over, and when none
    // answers the run fails naming each.
    // A node that does not store the context asked for (MESSAGING_ONLY in
    // it) is passed over too.
    let (code, _, err) =
        ctl(&["register-context", "-c", "shop", "-n", "node-1,node-2", "-m", "node-3", "-S", &server, "-t", ADMIN]);
    assert_eq!(code, 0, "{err}");
    let third = format!("http://{}", nodes[2].http_addr);
    let both = format!("{third},{server}");
    let said = std::sync::Mutex::new(String::new());
    ranvier_tests::eventually(std::time::Duration::from_secs(20), "node 2 to store shop", || async {
        let (code, _, err) =
            ctl_off_thread(&["backup", "--target", &target_arg, "-c", "shop", "-S", &both, "-t", ADMIN]).await;
        *said.lock().unwrap() = err;
        code == 0
    })
    .await
    .unwrap();
    let passed = said.lock().unwrap().clone();
    assert!(passed.contains(&format!("{server} is ready (passed over: {third}: does not store shop")), "{passed}");

    let mut nodes = nodes;
    let down = format!("http://{}", nodes[0].http_addr);
    nodes[0].kill9().unwrap();
    let servers = format!("{down},{server}");
    let (code, name, err) = ctl_off_thread(&["backup", "--target", &target_arg, "-S", &servers, "-t", ADMIN]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("{server} is ready (passed over: {down}")), "{err}");
    assert_eq!(ctl(&["backup", "verify", &target.join(name.trim()).display().to_string()]).0, 0);
    let nowhere = format!("{down},http://127.0.0.1:1");
    let (code, _, err) = ctl_off_thread(&["backup", "--target", &target_arg, "-S", &nowhere, "-t", ADMIN]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no node is ready") && err.contains(&down) && err.contains("127.0.0.1:1"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_file_a_backup_listed_survives_the_purge_that_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let settings = ["ranvier.replication.snapshot-interval=10", "ranvier.replication.log-entries-kept=2"];
    let nodes = ranvier_tests::start_cluster(dir.path(), 1, &settings).unwrap();
    let node = &nodes[0];
    ranvier_tests::wait_voters(node, "default", 1).await.unwrap();
    let listed = http_get_bytes(&node.http_addr, "/v1/backup/log/filenames?context=default", &[]).unwrap();
    assert_eq!(listed.status, 200, "{}", String::from_utf8_lossy(&listed.body));
    let listed: Vec<String> = serde_json::from_slice(&listed.body).unwrap();
    let log_dir = node.dir.join("log").join("default");
    let first_segment = listed.iter().find(|f| f.ends_with(".log")).unwrap().rsplit('/').next().unwrap().to_owned();
    assert!(log_dir.join(&first_segment).exists());

    // 24 MB through the group: its log rolls past the first 16 MB segment,
    // and the purge behind the snapshots deletes that segment.
    let mut client = node.event_store().await.unwrap();
    for seq in (0..384).step_by(8) {
        let events: Vec<_> = (seq..seq + 8).map(|s| event("bulk", s, 64 * 1024)).collect();
        client.append_event(tokio_stream::iter(events)).await.unwrap();
    }
    ranvier_tests::eventually(std::time::Duration::from_secs(60), "the first log segment purged", || async {
        !log_dir.join(&first_segment).exists()
    })
    .await
    .unwrap();

    // What the backup listed is still there, whole.
    for file in &listed {
        let copy = http_get_bytes(&node.http_addr, &format!("/v1/backup/file?path={}", encode(file)), &[]).unwrap();
        assert_eq!(copy.status, 200, "{file} vanished");
        assert_eq!(copy.body.len() as u64, std::fs::metadata(file).unwrap().len(), "{file}");
    }
    let outside = format!("/v1/backup/file?path={}", encode(&log_dir.join("vote.json").display().to_string()));
    assert_eq!(http_get_bytes(&node.http_addr, &outside, &[]).unwrap().status, 404, "only what was listed is served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_backed_up_while_writing_restores_into_a_fresh_cluster_whose_every_node_serves_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let small = ["axoniq.axonserver.event.segment-size=64KB", "ranvier.max-transaction-size=32KB"];
    let source = ranvier_tests::start_cluster(&dir.path().join("source"), 3, &small).unwrap();
    ranvier_tests::wait_voters(&source[0], "default", 3).await.unwrap();

    // A client on every node writes 5-event transactions all along.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (i, node) in source.iter().enumerate() {
        let (channel, stop) = (node.channel().await.unwrap(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut client = ranvier_proto::event::event_store_client::EventStoreClient::new(channel);
            let aggregate = format!("writer-{i}");
            let mut seq = 0i64;
            while !stop.load(Ordering::SeqCst) {
                let events: Vec<_> = (seq..seq + 5).map(|s| event(&aggregate, s, 700)).collect();
                client.append_event(tokio_stream::iter(events)).await.unwrap();
                seq += 5;
            }
        }));
    }
    let wait_for = |at_least: i64| {
        let node = &source[0];
        async move {
            ranvier_tests::eventually(std::time::Duration::from_secs(60), "events written", || async {
                last_token(node).await.unwrap() >= at_least
            })
            .await
            .unwrap();
        }
    };
    wait_for(600).await;
    let target = dir.path().join("backups");
    let (code, name, err) = {
        let (server, target) = (format!("http://{}", source[1].http_addr), target.display().to_string());
        tokio::task::spawn_blocking(move || ctl(&["backup", "--target", &target, "-S", &server])).await.unwrap()
    };
    assert_eq!(code, 0, "{err}");
    let manifest = manifest(&target, name.trim());
    let covered = events_next_token(&manifest);
    wait_for(covered + 300).await;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }

    // Restored onto the node that founds a fresh cluster; the others join it.
    let fresh = dir.path().join("restored");
    let data = fresh.join("node-1").join("data").display().to_string();
    let (code, out, err) =
        ctl(&["restore", "--from", &target.join(name.trim()).display().to_string(), "--data-dir", &data]);
    assert_eq!(code, 0, "{out}{err}");
    let restored = ranvier_tests::start_cluster(&fresh, 3, &small).unwrap();
    ranvier_tests::wait_voters(&restored[0], "default", 3).await.unwrap();
    let held = last_token(&restored[0]).await.unwrap();
    assert!(held + 1 >= covered, "the restored cluster holds {} events, the backup covers {covered}", held + 1);
    let original = ranvier_tests::read_events(&source[0], held + 1).await.unwrap();
    for node in &restored {
        let copy = tokio::time::timeout(std::time::Duration::from_secs(60), ranvier_tests::read_events(node, held + 1))
            .await
            .unwrap_or_else(|_| panic!("{} does not serve the restored events", node.name()))
            .unwrap();
        assert!(copy == original, "{}: the restored events differ from the originals", node.name());
    }
    // Whole transactions only: each writer's events end with a transaction's last.
    for i in 0..3 {
        let aggregate = format!("writer-{i}");
        let mine: Vec<i64> = original
            .iter()
            .map(|e| e.decode_event().unwrap())
            .filter(|e| e.aggregate_identifier == aggregate)
            .map(|e| e.aggregate_sequence_number)
            .collect();
        assert_eq!(mine, (0..mine.len() as i64).collect::<Vec<_>>(), "{aggregate}: a gap");
        assert_eq!(mine.len() % 5, 0, "{aggregate}: a transaction cut in half");
    }

    // The restored cluster takes writes through any node, after what it holds.
    let mut client = restored[2].event_store().await.unwrap();
    let taken = original.iter().filter(|e| e.decode_event().unwrap().aggregate_identifier == "writer-0").count() as i64;
    let stale = client.append_event(tokio_stream::iter(vec![event("writer-0", taken - 1, 10)])).await;
    assert!(stale.is_err(), "a sequence the restored store holds is refused");
    client.append_event(tokio_stream::iter(vec![event("writer-0", taken, 10)])).await.unwrap();
    assert_eq!(last_token(&restored[1]).await.unwrap(), held + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_keep_two_leave_a_summary_and_a_failed_run_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&dir.path().join("source"), &[]).unwrap();
    let mut client = node.event_store().await.unwrap();
    for seq in (0..40).step_by(4) {
        client.append_event(tokio_stream::iter((seq..seq + 4).map(|s| event("kept", s, 300)))).await.unwrap();
    }
    let target = dir.path().join("backups");
    let (server, target_arg) = (format!("http://{}", node.http_addr), target.display().to_string());
    let summary_path = dir.path().join("summary.json");
    let summary_arg = summary_path.display().to_string();
    // What a killed run left an hour ago goes with the next pruning run.
    std::fs::create_dir_all(target.join("backup-1000.partial/default")).unwrap();
    let mut names = Vec::new();
    for _ in 0..3 {
        let args = ["backup", "--target", &target_arg, "-S", &server, "--keep", "2", "--summary", &summary_arg];
        let (code, out, err) = ctl_off_thread(&args).await;
        assert_eq!(code, 0, "{err}");
        names.push(out.trim().to_owned());
    }
    let mut left: Vec<String> =
        std::fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, names[1..], "the newest two, and nothing else");
    let summary: Value = serde_json::from_slice(&std::fs::read(&summary_path).unwrap()).unwrap();
    assert_eq!(summary["name"].as_str(), names.last().map(String::as_str));
    let position = summary["positions"].as_array().unwrap().iter().find(|p| p["kind"] == "EVENT").unwrap();
    assert_eq!((position["context"].as_str(), position["nextToken"].as_u64()), (Some("default"), Some(40)));
    let manifest_text = std::fs::read(target.join(names.last().unwrap()).join("manifest.json")).unwrap();
    let files = manifest(&target, names.last().unwrap())["stores"].to_string();
    assert!(summary["bytes"].as_u64().unwrap() > 40 * 300 && files.contains(".events"), "{summary}");
    assert_eq!(summary["manifestSha256"].as_str().map(str::len), Some(64), "{summary}");
    assert!(summary.to_string().len() < 4096, "fits a termination message");
    assert!(!manifest_text.is_empty());

    // A run that fails half-way leaves no folder that could pass for a backup.
    let args = ["backup", "--target", &target_arg, "-S", &server, "-c", "default,no-such-context"];
    let (code, _, err) = ctl_off_thread(&args).await;
    assert!(code == 1 && err.contains("no-such-context"), "{err}");
    let after: Vec<String> =
        std::fs::read_dir(&target).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(after.len(), 2, "the failed run's folder stayed: {after:?}");

    // `--from` a folder of backups restores the newest.
    let restored_dir = dir.path().join("restored");
    let data = restored_dir.join("data").display().to_string();
    let (code, _, err) = ctl(&["restore", "--from", &target_arg, "--data-dir", &data]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(names.last().unwrap()), "says which backup: {err}");
    let restored = Node::start(&restored_dir, &[]).unwrap();
    assert!(
        ranvier_tests::read_events(&restored, 40).await.unwrap()
            == ranvier_tests::read_events(&node, 40).await.unwrap()
    );
}
