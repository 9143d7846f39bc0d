//! The Backup controller against a mocked API server: a Backup waits for
//! its cluster, starts one Job, and takes its status from the Job's pod —
//! the summary `ranvierctl` leaves on success, the error's last lines on
//! failure — and a finished one is left alone.

// Test code: an unwrap is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

mod support;

use http::Method;
use ranvier_crds::Backup;
use ranvier_operator::controllers::backup;
use serde_json::{Value, json};
use support::{Expect, answer, event, example, expect, not_found, serve, shared_context as context};

const JOB: &str = "/apis/batch/v1/namespaces/shop/jobs/nightly-backup";
const STATUS: &str = "/apis/ranvier.io/v1alpha1/namespaces/shop/backups/nightly/status";

fn nightly() -> Backup {
    let mut backup: Backup = serde_saphyr::from_str(
        "apiVersion: ranvier.io/v1alpha1\nkind: Backup\nmetadata: {name: nightly, namespace: shop, uid: uid-b}\n\
         spec: {cluster: demo, volumeClaim: backups}\n",
    )
    .unwrap();
    backup.metadata.generation = Some(1);
    backup
}

/// The API server answers a status patch with the whole resource.
fn status_patch() -> Expect {
    Expect {
        change: |body| {
            let full = serde_json::to_value(nightly()).unwrap();
            body["metadata"] = full["metadata"].clone();
            body["spec"] = full["spec"].clone();
        },
        ..expect(Method::PATCH, STATUS)
    }
}

/// The Job as the API server holds it, with `status`.
fn job(status: Value) -> Value {
    let mut job = serde_json::to_value(ranvier_operator::builders::backup::backup_job(
        &ranvier_operator::validate::validate(&example(), "shop").unwrap(),
        "nightly",
        &nightly().spec.target,
        None,
    ))
    .unwrap();
    job["status"] = status;
    job
}

/// The Job's pods, one ended with `exit_code` and `message`.
fn pods(exit_code: i32, message: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [{
        "metadata": {"name": "nightly-backup-x1", "labels": {"job-name": "nightly-backup"}},
        "status": {"containerStatuses": [{
            "name": "backup", "image": "ranvier:test", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": exit_code, "message": message,
                                     "finishedAt": "2026-12-07T03:00:09Z"}}
        }]}
    }]})
}

#[tokio::test]
async fn a_backup_waits_for_its_cluster_then_starts_one_job_that_runs() {
    let (ctx, handle) = context();
    let script = vec![
        Expect { answer: Some(not_found()), ..expect(Method::GET, JOB) },
        Expect {
            answer: Some(not_found()),
            ..expect(Method::GET, "/apis/ranvier.io/v1alpha1/namespaces/shop/ranvierclusters/demo")
        },
        status_patch(),
    ];
    let server = tokio::spawn(serve(handle, script));
    backup::reconcile(Arc::new(nightly()), ctx.clone()).await.unwrap();
    let seen = server.await.unwrap();
    let status = &seen[2].1["status"];
    assert_eq!(
        (status["phase"].as_str(), status["error"].as_str()),
        (Some("Pending"), Some("waiting for RanvierCluster demo"))
    );

    let (ctx, handle) = context();
    let script = vec![
        Expect { answer: Some(not_found()), ..expect(Method::GET, JOB) },
        answer(
            Method::GET,
            "/apis/ranvier.io/v1alpha1/namespaces/shop/ranvierclusters/demo",
            serde_json::to_value(example()).unwrap(),
        ),
        answer(
            Method::GET,
            "/api/v1/namespaces/shop/persistentvolumeclaims/backups",
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "backups"}}),
        ),
        expect(Method::POST, "/apis/batch/v1/namespaces/shop/jobs"),
        event("shop"),
        status_patch(),
    ];
    let server = tokio::spawn(serve(handle, script));
    backup::reconcile(Arc::new(nightly()), ctx).await.unwrap();
    let seen = server.await.unwrap();
    let made = &seen[3].1;
    assert_eq!(made["metadata"]["ownerReferences"][0]["uid"], "uid-b", "the Job goes with its Backup");
    assert!(made["metadata"]["annotations"]["ranvier.io/spec-hash"].is_string());
    assert!(made["spec"]["template"]["spec"]["containers"][0]["args"].to_string().contains("--token-file"));
    let status = &seen[5].1["status"];
    assert_eq!((status["phase"].as_str(), status["job"].as_str()), (Some("Running"), Some("nightly-backup")));
    assert!(status["error"].is_null(), "{status}");
}

#[tokio::test]
async fn a_succeeded_job_s_summary_becomes_the_status_and_a_failed_one_s_error() {
    let summary = json!({"name": "backup-1765076400000", "bytes": 52_428_800u64, "copiedBytes": 1_048_576u64,
        "manifestSha256": "ab".repeat(32), "positions": [{"context": "default", "kind": "EVENT", "nextToken": 1200}]});
    let (ctx, handle) = context();
    let done = json!({"succeeded": 1, "startTime": "2026-12-07T03:00:01Z", "completionTime": "2026-12-07T03:00:10Z"});
    let script = vec![
        answer(Method::GET, JOB, job(done)),
        answer(Method::GET, "/api/v1/namespaces/shop/pods", pods(0, &summary.to_string())),
        event("shop"),
        status_patch(),
    ];
    let server = tokio::spawn(serve(handle, script));
    let action = backup::reconcile(Arc::new(nightly()), ctx).await.unwrap();
    let seen = server.await.unwrap();
    assert!(seen[1].0.contains("labelSelector=job-name%3Dnightly-backup"), "{}", seen[1].0);
    let status = &seen[3].1["status"];
    assert_eq!(status["phase"], "Completed");
    assert_eq!((status["backup"].as_str(), status["bytes"].as_u64()), (Some("backup-1765076400000"), Some(52_428_800)));
    assert_eq!(status["positions"][0]["nextToken"], 1200);
    assert_eq!(status["manifestSha256"].as_str().map(str::len), Some(64));
    assert_eq!(
        (status["startedAt"].as_str(), status["completedAt"].as_str()),
        (Some("2026-12-07T03:00:01Z"), Some("2026-12-07T03:00:10Z"))
    );
    assert_eq!(action, kube::runtime::controller::Action::await_change(), "a finished Backup is not looked at again");

    let (ctx, handle) = context();
    let failed = json!({"failed": 2, "startTime": "2026-12-07T03:00:01Z", "conditions": [{"type": "Failed", "status": "True",
        "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit",
        "lastTransitionTime": "2026-12-07T03:01:00Z"}]});
    let message = "ranvierctl: backup failed: cannot reach the server: connection refused";
    let script = vec![
        answer(Method::GET, JOB, job(failed)),
        answer(Method::GET, "/api/v1/namespaces/shop/pods", pods(1, message)),
        event("shop"),
        status_patch(),
    ];
    let server = tokio::spawn(serve(handle, script));
    backup::reconcile(Arc::new(nightly()), ctx).await.unwrap();
    let seen = server.await.unwrap();
    let status = &seen[3].1["status"];
    assert_eq!((status["phase"].as_str(), status["error"].as_str()), (Some("Failed"), Some(message)));
    assert_eq!(status["completedAt"], "2026-12-07T03:01:00Z");

    // Finished: nothing more is asked of the API server.
    let (ctx, handle) = context();
    let mut finished = nightly();
    finished.status = Some(ranvier_crds::BackupStatus {
        phase: Some(ranvier_crds::backup::BackupPhase::Completed),
        ..Default::default()
    });
    let server = tokio::spawn(serve(handle, vec![]));
    backup::reconcile(Arc::new(finished), ctx).await.unwrap();
    server.await.unwrap();
}
