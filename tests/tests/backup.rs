//! The event store's backup endpoints against a real node process: the
//! files to copy (all, then only what is new), each file streamed
//! byte-identical to the node's own (the active segment up to its committed
//! length), administrators only.

use ranvier_tests::{Node, event, http_get_bytes};
use serde_json::Value;

const ADMIN: &str = "backup-admin-token";
const APP: &str = "backup-app-token";

fn encode(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

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
