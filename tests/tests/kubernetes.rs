//! The user's flow on a whole single-node Kubernetes (scripts/k8s-env.sh
//! `--node`: the real kubelet of Kubernetes 1.20 runs the pods on this
//! Docker), with the README's own commands: `helm install` the operator,
//! `kubectl apply -f examples/cluster.yaml` and the replication group, see
//! the cluster become Available, append and read through every node, move a
//! member PRIMARY → PASSIVE_BACKUP → PRIMARY by editing the group while a
//! client writes (nothing acknowledged is lost), delete a pod and see it
//! come back on its own volumes, back it up with a `Backup` and a
//! `BackupSchedule` and make a new cluster from a backup, have an unsafe
//! edit refused with its condition and Event, and delete the cluster. It prints
//! how long each step took on this machine (the README reports them).
//!
//! Needs the kubelet built (`scripts/k8s-env.sh build`), helm
//! (`scripts/install-helm.sh`), kubectl, Docker and both images
//! (`scripts/build-image.sh all`); without them it fails, unless
//! RANVIER_SKIP_K8S_TESTS=1 says to skip (`make test` reports that loudly).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use ranvier_proto::event::GetEventsRequest;
use ranvier_proto::event::event_store_client::EventStoreClient;
use ranvier_tests::event;
use ranvier_tests::kube::{KubeNode, condition, until};
use serde_json::Value;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

const NS: &str = "shop";
const PODS: [&str; 3] = ["demo-node-0", "demo-node-1", "demo-node-2"];

/// The cluster's static tokens (applications', administrators'), read from
/// the Secret the operator made: the example turns access control on.
static TOKENS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

fn read_tokens(k: &KubeNode) -> anyhow::Result<(String, String)> {
    let secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(k.kubectl_json(&["get", "secret", "demo-access-tokens", "-n", NS])?)?;
    let data = secret.data.context("the tokens Secret has no data")?;
    let text = |key: &str| -> anyhow::Result<String> {
        Ok(String::from_utf8(data.get(key).with_context(|| format!("no {key}"))?.0.clone())?)
    };
    Ok((text("token")?, text("admin-token")?))
}

type Intercept = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;
type Store = EventStoreClient<tonic::service::interceptor::InterceptedService<Channel, Intercept>>;

/// Adds the applications' token to a call, as an Axon client configured
/// with it does.
fn with_app_token(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let (token, _) = TOKENS.get().ok_or_else(|| tonic::Status::internal("tokens not read yet"))?;
    let value = token.parse().map_err(|_| tonic::Status::internal("a token that is no header value"))?;
    request.metadata_mut().insert("axoniq-access-token", value);
    Ok(request)
}

async fn event_store(ip: &str) -> anyhow::Result<Store> {
    event_store_at(&format!("{ip}:8124")).await
}

async fn event_store_at(address: &str) -> anyhow::Result<Store> {
    let channel = Channel::from_shared(format!("http://{address}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect()
        .await?;
    Ok(EventStoreClient::with_interceptor(channel, with_app_token as Intercept))
}

/// The aggregates of `wanted` that `ip` does not serve: it reads from the
/// start until it has seen them all, or no event came for 10 s.
async fn missing(ip: &str, wanted: &BTreeSet<String>) -> anyhow::Result<BTreeSet<String>> {
    let mut client = event_store(ip).await?;
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    sender.send(GetEventsRequest { tracking_token: 0, number_of_permits: 1_000_000, ..Default::default() }).await?;
    let mut stream = client.list_events(tokio_stream::wrappers::ReceiverStream::new(receiver)).await?.into_inner();
    let mut missing = wanted.clone();
    while !missing.is_empty() {
        let Ok(Some(item)) = tokio::time::timeout(Duration::from_secs(10), stream.next()).await else { break };
        missing.remove(&item?.decode_event()?.aggregate_identifier);
    }
    Ok(missing)
}

/// The host directory of the hostPath volume bound to `pod`'s events claim.
fn events_volume(k: &KubeNode, pod: &str) -> anyhow::Result<PathBuf> {
    claim_dir(k, &format!("events-{pod}"))
}

/// The host directory of the hostPath volume bound to claim `name`.
fn claim_dir(k: &KubeNode, name: &str) -> anyhow::Result<PathBuf> {
    let claim = k.kubectl_json(&["get", "pvc", name, "-n", NS])?;
    let volume = claim["spec"]["volumeName"].as_str().context("the claim is not bound")?;
    let volume = k.kubectl_json(&["get", "pv", volume])?;
    Ok(PathBuf::from(volume["spec"]["hostPath"]["path"].as_str().context("not a hostPath volume")?))
}

/// Every event segment under `dir` (any depth), with its inode.
fn segments(dir: &Path) -> anyhow::Result<BTreeMap<PathBuf, u64>> {
    use std::os::unix::fs::MetadataExt;
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "events") {
                found.insert(path, entry.metadata()?.ino());
            }
        }
    }
    Ok(found)
}

/// The pods' addresses by name.
fn pod_ips(k: &KubeNode) -> anyhow::Result<BTreeMap<String, String>> {
    let pods = k.kubectl_json(&["get", "pods", "-n", NS, "-l", "app.kubernetes.io/instance=demo"])?;
    Ok(pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["metadata"]["name"].as_str()?.to_owned(), p["status"]["podIP"].as_str()?.to_owned())))
        .collect())
}

/// The group `default` as the cluster reports it, by node: its roles.
fn roles_in_cluster(ip: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let (_, admin) = TOKENS.get().context("tokens not read yet")?;
    let headers = [("AxonIQ-Access-Token", admin.as_str())];
    let reply = ranvier_tests::http_call_with(&format!("{ip}:8024"), "GET", "/v1/public/replicationgroups", &headers)?;
    let groups: Value = serde_json::from_str(&reply.body)?;
    let group = groups.as_array().into_iter().flatten().find(|g| g["name"] == "default");
    Ok(group
        .and_then(|g| g["roles"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|m| Some((m["node"].as_str()?.to_owned(), m["role"].as_str()?.to_owned())))
        .collect())
}

/// Patches the group with the JSON patch `patch` and waits until
/// demo-node-2 is `role` both in the cluster (asked through `via`) and in
/// the group's status; prints how long that took.
async fn edit_role(k: &KubeNode, via: &str, patch: &str, role: &str) -> anyhow::Result<()> {
    let edited = Instant::now();
    k.kubectl(&["patch", "replicationgroup", "default", "-n", NS, "--type=json", "-p", patch])?;
    until(Duration::from_secs(120), &format!("demo-node-2 to be {role} in the cluster and the status"), || {
        let group = k.kubectl_json(&["get", "replicationgroup", "default", "-n", NS])?;
        let in_status = status_role(&group, "demo-node-2").as_deref() == Some(role);
        let in_cluster = roles_in_cluster(via)?.get("demo-node-2").map(String::as_str) == Some(role);
        Ok((in_status && in_cluster).then_some(()))
    })
    .await?;
    eprintln!("timing: role edit → {role} in effect: {:.1} s", edited.elapsed().as_secs_f64());
    Ok(())
}

/// The member's role in the ReplicationGroup's status, once it has no
/// other role asked of it.
fn status_role(group: &Value, node: &str) -> Option<String> {
    let member = group["status"]["members"].as_array()?.iter().find(|m| m["node"] == node)?;
    if member.get("desiredRole").is_some() {
        return None;
    }
    member["role"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_install_apply_a_cluster_change_roles_by_editing_the_group_and_delete_it() {
    let Some(k) = KubeNode::start().unwrap() else { return };
    let result = flow(&k).await;
    if let Err(error) = result {
        panic!("{error:#}\n--- state ---\n{}", k.diagnose());
    }
}

async fn flow(k: &KubeNode) -> anyhow::Result<()> {
    // The API server lists every group in discovery a little after /readyz.
    until(Duration::from_secs(30), "discovery to list apiextensions.k8s.io/v1", || {
        Ok(k.kubectl(&["api-versions"])?.lines().any(|l| l == "apiextensions.k8s.io/v1").then_some(()))
    })
    .await?;

    // helm install the operator (pods reach the API server on docker0: no
    // kube-proxy routes the `kubernetes` Service here).
    let started = Instant::now();
    let env = format!(
        r#"extraEnv=[{{"name":"KUBERNETES_SERVICE_HOST","value":"{}"}},{{"name":"KUBERNETES_SERVICE_PORT","value":"{}"}}]"#,
        k.api_host, k.api_port
    );
    k.helm(&[
        "install",
        "ranvier-operator",
        "charts/ranvier-operator",
        "--namespace",
        "ranvier-system",
        "--create-namespace",
        "--set-json",
        &env,
    ])?;
    until(Duration::from_secs(120), "the operator to be ready", || {
        let deployment = k.kubectl_json(&["get", "deployment", "ranvier-operator", "-n", "ranvier-system"])?;
        Ok((deployment["status"]["readyReplicas"] == 1).then_some(()))
    })
    .await?;
    eprintln!("timing: helm install → operator ready: {:.1} s", started.elapsed().as_secs_f64());

    // kubectl apply the cluster and its replication group.
    k.kubectl(&["create", "namespace", NS])?;
    let applied = Instant::now();
    k.kubectl(&["apply", "-n", NS, "-f", "examples/cluster.yaml", "-f", "examples/replication-group.yaml"])?;
    until(Duration::from_secs(300), "the RanvierCluster to be Available", || {
        let cluster = k.kubectl_json(&["get", "ranviercluster", "demo", "-n", NS])?;
        Ok((condition(&cluster, "Available").is_some_and(|(s, _)| s == "True")).then_some(()))
    })
    .await?;
    let to_available = applied.elapsed();
    eprintln!("timing: kubectl apply → RanvierCluster Available: {:.1} s", to_available.as_secs_f64());
    // Access control is on: a call without a token is refused; the
    // operator reads the group's status below with the admin token.
    let _ = TOKENS.set(read_tokens(k)?);
    let ips = pod_ips(k)?;
    let (code, _) = ranvier_tests::http_get(&format!("{}:8024", ips["demo-node-0"]), "/v1/public/replicationgroups")?;
    anyhow::ensure!(code == 403, "a call without a token was answered {code}");
    let group = until(Duration::from_secs(60), "the ReplicationGroup's status read from the cluster", || {
        let group = k.kubectl_json(&["get", "replicationgroup", "default", "-n", NS])?;
        let primaries = PODS.iter().filter(|p| status_role(&group, p).as_deref() == Some("PRIMARY")).count();
        let available = condition(&group, "Available").is_some_and(|(s, _)| s == "True");
        Ok((primaries == 3 && available).then_some(group))
    })
    .await?;
    anyhow::ensure!(group["status"]["leader"].is_string(), "no leader in {group}");

    // A client appends through every node and reads everything on each.
    let mut first = BTreeSet::new();
    for (seq, pod) in PODS.iter().enumerate() {
        let mut client = event_store(&ips[*pod]).await?;
        let aggregate = format!("k8s-order-{seq}");
        client.append_event(tokio_stream::iter(vec![event(&aggregate, 0, 64)])).await?;
        first.insert(aggregate);
    }
    // The README's way in: `kubectl port-forward svc/demo 8124`.
    let forward = k.port_forward(NS, "svc/demo", 8124)?;
    let mut client = event_store_at(&format!("127.0.0.1:{}", forward.local)).await?;
    client.append_event(tokio_stream::iter(vec![event("through-port-forward", 0, 64)])).await?;
    drop(forward);
    first.insert("through-port-forward".to_owned());
    for pod in PODS {
        let lacking = missing(&ips[pod], &first).await?;
        anyhow::ensure!(lacking.is_empty(), "{pod} does not serve {lacking:?}");
    }

    // Writes go on through pod 0 while demo-node-2 is demoted and promoted.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(write_until(ips["demo-node-0"].clone(), stop.clone()));
    let add = r#"[{"op":"add","path":"/spec/members/-","value":{"node":"demo-node-2","role":"PASSIVE_BACKUP"}}]"#;
    edit_role(k, &ips["demo-node-0"], add, "PASSIVE_BACKUP").await?;
    edit_role(k, &ips["demo-node-0"], r#"[{"op":"remove","path":"/spec/members/1"}]"#, "PRIMARY").await?;
    stop.store(true, Ordering::Release);
    let acknowledged = writer.await??;
    anyhow::ensure!(acknowledged.len() >= 10, "too few writes went through: {}", acknowledged.len());
    let wanted: BTreeSet<String> = acknowledged.iter().cloned().collect();
    for pod in PODS {
        let lost = missing(&ips[pod], &wanted).await?;
        anyhow::ensure!(lost.is_empty(), "{pod} lacks acknowledged writes {lost:?}");
    }
    eprintln!("writes acknowledged during the two role changes: {} (none lost)", acknowledged.len());

    // A deleted pod comes back on its own volumes: the StatefulSet makes it
    // again with the same claims, it rejoins, and serves every event.
    let volume = events_volume(k, "demo-node-2")?;
    let before = segments(&volume)?;
    anyhow::ensure!(!before.is_empty(), "no event segment in {}", volume.display());
    let old_uid = k.kubectl_json(&["get", "pod", "demo-node-2", "-n", NS])?["metadata"]["uid"].clone();
    let deleted = Instant::now();
    k.kubectl(&["delete", "pod", "demo-node-2", "-n", NS])?;
    until(Duration::from_secs(180), "demo-node-2 to be back and the cluster Available", || {
        let pod = k.kubectl_json(&["get", "pod", "demo-node-2", "-n", NS])?;
        let ready = condition(&pod, "Ready").is_some_and(|(s, _)| s == "True");
        let cluster = k.kubectl_json(&["get", "ranviercluster", "demo", "-n", NS])?;
        let all = cluster["status"]["readyNodes"] == 3;
        Ok((pod["metadata"]["uid"] != old_uid && ready && all).then_some(()))
    })
    .await?;
    eprintln!("timing: kubectl delete pod → back and ready: {:.1} s", deleted.elapsed().as_secs_f64());
    let after = segments(&volume)?;
    let kept = before.iter().filter(|(name, inode)| after.get(*name) == Some(*inode)).count();
    anyhow::ensure!(kept == before.len(), "the pod's event segments were not kept: {before:?} → {after:?}");
    let ips = pod_ips(k)?;
    let everything: BTreeSet<String> = wanted.union(&first).cloned().collect();
    let lost = missing(&ips["demo-node-2"], &everything).await?;
    anyhow::ensure!(lost.is_empty(), "the restarted pod lacks {lost:?}");

    backups(k, &everything).await?;

    // An edit that leaves no PRIMARY is refused: nothing changes in the
    // cluster, the status says why, a Warning Event is written.
    k.kubectl(&[
        "patch",
        "replicationgroup",
        "default",
        "-n",
        NS,
        "--type=merge",
        "-p",
        r#"{"spec":{"members":[{"nodeSet":"node","role":"SECONDARY"}]}}"#,
    ])?;
    let refused = until(Duration::from_secs(60), "the unsafe edit to be refused", || {
        let group = k.kubectl_json(&["get", "replicationgroup", "default", "-n", NS])?;
        let blocked = condition(&group, "Degraded") == Some(("True".into(), "RoleChangeBlocked".into()));
        Ok(blocked.then(|| group["status"]["refused"].as_str().unwrap_or_default().to_owned()))
    })
    .await?;
    anyhow::ensure!(refused.contains("no PRIMARY"), "refusal: {refused}");
    let events = k.kubectl(&["get", "events", "-n", NS, "--field-selector", "reason=RoleChangeBlocked"])?;
    anyhow::ensure!(events.contains("RoleChangeBlocked"), "no Warning Event: {events}");
    let roles = roles_in_cluster(&ips["demo-node-1"])?;
    anyhow::ensure!(roles.values().all(|r| r == "PRIMARY") && roles.len() == 3, "the cluster changed: {roles:?}");
    k.kubectl(&["apply", "-n", NS, "-f", "examples/replication-group.yaml"])?;
    until(Duration::from_secs(60), "the refusal to clear once the edit is undone", || {
        let group = k.kubectl_json(&["get", "replicationgroup", "default", "-n", NS])?;
        Ok((condition(&group, "Degraded").is_some_and(|(s, _)| s == "False")).then_some(()))
    })
    .await?;

    // Deleting the cluster removes what the operator made (the garbage
    // collector follows the owner references; the volumes' claims stay,
    // as StatefulSets leave them, so that data is never lost by accident).
    let deleted = Instant::now();
    k.kubectl(&["delete", "ranviercluster", "demo", "-n", NS])?;
    until(Duration::from_secs(180), "the cluster's objects to be gone", || {
        let left = k.kubectl(&[
            "get",
            "statefulsets,services,configmaps,secrets,pods",
            "-n",
            NS,
            "-l",
            "app.kubernetes.io/instance=demo",
            "-o",
            "name",
        ])?;
        let secret = k.kubectl(&["get", "secrets", "-n", NS, "-o", "name"])?;
        Ok((left.trim().is_empty() && !secret.contains("demo-internal-token")).then_some(()))
    })
    .await?;
    eprintln!("timing: kubectl delete → objects gone: {:.1} s", deleted.elapsed().as_secs_f64());
    Ok(())
}

/// The README's backup flow: one `Backup` completes with its figures; a
/// `BackupSchedule` every minute keeping two runs four times, and two
/// complete backups remain; a new cluster made from the newest serves
/// every aggregate in `written` (all written before the first backup).
async fn backups(k: &KubeNode, written: &BTreeSet<String>) -> anyhow::Result<()> {
    let started = Instant::now();
    k.kubectl(&["apply", "-n", NS, "-f", "examples/backup.yaml"])?;
    let backup = until(Duration::from_secs(180), "the Backup to finish", || {
        let backup = k.kubectl_json(&["get", "backup", "demo-first", "-n", NS])?;
        let phase = backup["status"]["phase"].as_str().unwrap_or_default().to_owned();
        Ok((phase == "Completed" || phase == "Failed").then_some(backup))
    })
    .await?;
    let status = &backup["status"];
    anyhow::ensure!(status["phase"] == "Completed", "the Backup failed: {status}");
    anyhow::ensure!(status["bytes"].as_u64().unwrap_or(0) > 0 && status["manifestSha256"].is_string(), "{status}");
    let default_events = status["positions"].as_array().into_iter().flatten().find(|p| p["context"] == "default");
    let covered = default_events.and_then(|p| p["nextToken"].as_u64()).unwrap_or(0);
    anyhow::ensure!(covered as usize >= written.len(), "the backup covers {covered} events: {status}");
    let first = status["backup"].as_str().context("no backup folder")?.to_owned();
    let dir = claim_dir(k, "backups")?;
    anyhow::ensure!(dir.join(&first).join("manifest.json").exists(), "{first} is not in the claim");
    eprintln!("timing: kubectl apply Backup → Completed: {:.1} s", started.elapsed().as_secs_f64());

    // Every minute, keeping two: four runs succeed, then it is suspended.
    k.kubectl(&["apply", "-n", NS, "-f", "examples/backup-schedule.yaml"])?;
    let selector = "ranvier.io/backup-schedule=demo-minutely";
    let mut succeeded = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(480);
    while succeeded.len() < 4 {
        anyhow::ensure!(Instant::now() < deadline, "only {} scheduled runs succeeded: {succeeded:?}", succeeded.len());
        let jobs = k.kubectl_json(&["get", "jobs", "-n", NS, "-l", selector])?;
        for job in jobs["items"].as_array().into_iter().flatten() {
            let name = job["metadata"]["name"].as_str().unwrap_or_default();
            anyhow::ensure!(job["status"]["failed"].as_u64().unwrap_or(0) == 0, "run {name} failed: {}", job["status"]);
            if job["status"]["succeeded"].as_u64().unwrap_or(0) > 0 {
                succeeded.insert(name.to_owned());
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    k.kubectl(&[
        "patch",
        "backupschedule",
        "demo-minutely",
        "-n",
        NS,
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ])?;
    until(Duration::from_secs(180), "the suspended schedule's last run to end", || {
        let jobs = k.kubectl_json(&["get", "jobs", "-n", NS, "-l", selector])?;
        let active = jobs["items"].as_array().into_iter().flatten().any(|j| j["status"]["active"].as_u64() > Some(0));
        Ok((!active).then_some(()))
    })
    .await?;
    let mut complete: Vec<String> = std::fs::read_dir(&dir)?
        .flatten()
        .filter(|e| e.path().join("manifest.json").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    complete.sort();
    anyhow::ensure!(complete.len() == 2, "keep: 2 left {complete:?} after {} runs", succeeded.len());
    anyhow::ensure!(!complete.contains(&first), "the oldest backup was kept: {complete:?}");
    let schedule = until(Duration::from_secs(60), "the schedule's status to name the newest backup", || {
        let schedule = k.kubectl_json(&["get", "backupschedule", "demo-minutely", "-n", NS])?;
        Ok((schedule["status"]["lastBackup"].as_str() == complete.last().map(String::as_str)).then_some(schedule))
    })
    .await?;
    anyhow::ensure!(schedule["status"]["apiVersion"] == "batch/v1beta1", "Kubernetes 1.20: {}", schedule["status"]);
    eprintln!(
        "timing: {} scheduled backups, then suspended: {:.1} s",
        succeeded.len(),
        started.elapsed().as_secs_f64()
    );

    // A new cluster from the newest backup serves what was written.
    let made = Instant::now();
    k.kubectl(&["apply", "-n", NS, "-f", "examples/restored-cluster.yaml"])?;
    until(Duration::from_secs(300), "the restored cluster to be Available", || {
        let cluster = k.kubectl_json(&["get", "ranviercluster", "restored", "-n", NS])?;
        if condition(&cluster, "Degraded").is_some_and(|(s, _)| s == "True") {
            anyhow::bail!("degraded: {}", cluster["status"]);
        }
        Ok((condition(&cluster, "Available").is_some_and(|(s, _)| s == "True")).then_some(()))
    })
    .await?;
    let restore = k.kubectl_json(&["get", "job", "restored-restore", "-n", NS])?;
    anyhow::ensure!(restore["status"]["succeeded"] == 1, "the restore Job: {}", restore["status"]);
    let pod = k.kubectl_json(&["get", "pod", "restored-node-0", "-n", NS])?;
    let ip = pod["status"]["podIP"].as_str().context("the restored pod has no address")?;
    let lacking = missing(ip, written).await?;
    anyhow::ensure!(lacking.is_empty(), "the restored cluster lacks {lacking:?}");
    eprintln!("timing: kubectl apply restored cluster → serving the backup: {:.1} s", made.elapsed().as_secs_f64());
    k.kubectl(&["delete", "ranviercluster", "restored", "-n", NS, "--wait=false"])?;
    k.kubectl(&["delete", "backupschedule", "demo-minutely", "-n", NS])?;
    Ok(())
}

/// Appends one event per aggregate through `ip` until `stop`; returns the
/// aggregates whose append was acknowledged (a failed append is retried
/// under a new aggregate: it was not acknowledged, so it may or may not be
/// stored).
async fn write_until(ip: String, stop: Arc<AtomicBool>) -> anyhow::Result<Vec<String>> {
    let mut acknowledged = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let aggregate = format!("during-role-change-{n}");
        let sent = async {
            let mut client = event_store(&ip).await?;
            client.append_event(tokio_stream::iter(vec![event(&aggregate, 0, 128)])).await?;
            anyhow::Ok(())
        };
        match sent.await {
            Ok(()) => acknowledged.push(aggregate),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    Ok(acknowledged)
}
