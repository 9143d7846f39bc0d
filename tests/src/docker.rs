//! Real node containers on their own Docker network, for tests that need
//! separate hosts: partitions cut a node off the cluster network while the
//! test still reaches it on a port published to 127.0.0.1.
//!
//! Each node is a `ranvier:test` container (see `scripts/build-image.sh`) on
//! the default bridge (client and HTTP ports published to loopback) and on
//! a per-test cluster network, where it is known to its peers as `peer-N`.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

/// The image the containers run.
pub const IMAGE: &str = "ranvier:test";

fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("docker").args(args).output().context("failed to run docker")?;
    if !output.status.success() {
        bail!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Whether Docker and the test image are here.
pub fn available() -> bool {
    docker(&["image", "inspect", IMAGE]).is_ok()
}

/// Whether a container test can run: true with Docker and the image;
/// false (said loudly) when `RANVIER_SKIP_CONTAINER_TESTS=1` allows
/// skipping; otherwise the test fails, saying what is missing.
pub fn required() -> bool {
    crate::present_or_skipped(
        available(),
        "RANVIER_SKIP_CONTAINER_TESTS",
        "container test (no Docker or no ranvier:test image)",
        "Docker with the ranvier:test image is required (scripts/build-image.sh)",
    )
}

/// One node container.
pub struct Container {
    /// Container name.
    pub name: String,
    /// The node's name.
    pub node: String,
    /// Its client gRPC port, published on 127.0.0.1.
    pub client_addr: String,
    /// Its HTTP port, published on 127.0.0.1.
    pub http_addr: String,
    /// Names the other containers reach it by on the cluster network.
    aliases: Vec<String>,
}

/// A cluster of node containers and its network.
pub struct DockerCluster {
    network: String,
    /// The nodes, in start order (the first forms the cluster).
    pub nodes: Vec<Container>,
}

/// How one node container is started.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// The node's name (for the test's bookkeeping; the node reads its
    /// own from `settings` or `env`).
    pub node: String,
    /// The container's host name (`--hostname`), as a pod has its own.
    pub hostname: Option<String>,
    /// Names the other containers reach it by on the cluster network.
    pub aliases: Vec<String>,
    /// Environment variables (how a pod template passes settings).
    pub env: Vec<(String, String)>,
    /// The command's arguments (before any `--set` flags).
    pub args: Vec<String>,
    /// `--set key=value` flags.
    pub settings: Vec<String>,
    /// Host directories mounted read-only: (host path, container path).
    pub mounts: Vec<(String, String)>,
}

impl DockerCluster {
    /// Starts `count` nodes that form a cluster by autocluster.
    pub fn start(count: usize) -> anyhow::Result<Self> {
        let mut cluster = Self::empty(&format!("{count}"))?;
        for i in 1..=count {
            let settings = [
                format!("axoniq.axonserver.name=node-{i}"),
                "axoniq.axonserver.hostname=localhost".to_owned(),
                format!("axoniq.axonserver.internal-hostname=peer-{i}"),
                "axoniq.axonserver.autocluster.first=peer-1:8224".to_owned(),
                "axoniq.axonserver.accesscontrol.internal-token=container-secret".to_owned(),
                "axoniq.axonserver.replication.min-election-timeout=300".to_owned(),
                "axoniq.axonserver.replication.max-election-timeout=600".to_owned(),
                "axoniq.axonserver.replication.heartbeat-timeout=100".to_owned(),
            ];
            let spec = ContainerSpec {
                node: format!("node-{i}"),
                aliases: vec![format!("peer-{i}")],
                settings: settings.to_vec(),
                ..ContainerSpec::default()
            };
            cluster.add(&spec)?;
        }
        for container in &cluster.nodes {
            container.wait_ready()?;
        }
        Ok(cluster)
    }

    /// A cluster network with no node yet; `tag` tells tests apart.
    pub fn empty(tag: &str) -> anyhow::Result<Self> {
        let network = format!("ranvier-{}-{tag}-net", std::process::id());
        docker(&["network", "create", &network])?;
        Ok(DockerCluster { network, nodes: Vec::new() })
    }

    /// Creates and starts a node container on the cluster network (and on
    /// the default bridge, with its client and HTTP ports published on
    /// 127.0.0.1); returns its index. Does not wait for it.
    pub fn add(&mut self, spec: &ContainerSpec) -> anyhow::Result<usize> {
        let index = self.nodes.len();
        let name = format!("{}-{}", self.network.trim_end_matches("-net"), index + 1);
        let mut args: Vec<String> =
            ["create", "--name", &name, "-p", "127.0.0.1::8124", "-p", "127.0.0.1::8024"].map(String::from).to_vec();
        if let Some(hostname) = &spec.hostname {
            args.extend(["--hostname".to_owned(), hostname.clone()]);
        }
        for (key, value) in &spec.env {
            args.extend(["--env".to_owned(), format!("{key}={value}")]);
        }
        for (host, inside) in &spec.mounts {
            args.extend(["--volume".to_owned(), format!("{host}:{inside}:ro")]);
        }
        args.push(IMAGE.to_owned());
        args.extend(spec.args.iter().cloned());
        for setting in &spec.settings {
            args.extend(["--set".to_owned(), setting.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args)?;
        connect(&self.network, &name, &spec.aliases)?;
        docker(&["start", &name])?;
        let port = |inner: &str| -> anyhow::Result<String> {
            let mapped = docker(&["port", &name, inner])?;
            mapped.lines().find(|l| l.starts_with("127.0.0.1:")).map(str::to_owned).context("no published port")
        };
        let container = Container {
            client_addr: port("8124/tcp")?,
            http_addr: port("8024/tcp")?,
            name,
            node: spec.node.clone(),
            aliases: spec.aliases.clone(),
        };
        self.nodes.push(container);
        Ok(index)
    }

    /// Cuts node `index` off the cluster network (it stays reachable from the test).
    pub fn isolate(&self, index: usize) -> anyhow::Result<()> {
        docker(&["network", "disconnect", &self.network, &self.nodes[index].name]).map(|_| ())
    }

    /// Puts node `index` back on the cluster network.
    pub fn heal(&self, index: usize) -> anyhow::Result<()> {
        let node = &self.nodes[index];
        connect(&self.network, &node.name, &node.aliases)
    }
}

/// Puts container `name` on `network`, known there by `aliases`.
fn connect(network: &str, name: &str, aliases: &[String]) -> anyhow::Result<()> {
    let mut args = vec!["network", "connect"];
    for alias in aliases {
        args.extend(["--alias", alias.as_str()]);
    }
    args.extend([network, name]);
    docker(&args).map(|_| ())
}

impl Container {
    /// Waits for the node's `READY` line (its ports are bound).
    pub fn wait_ready(&self) -> anyhow::Result<()> {
        for _ in 0..600 {
            let logs = docker(&["logs", &self.name]).unwrap_or_default();
            if logs.lines().any(|l| l.starts_with("READY ")) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("container {} did not report ready: {}", self.name, docker(&["logs", &self.name]).unwrap_or_default())
    }

    /// GETs an HTTP path on the node; returns the body.
    pub fn http_get(&self, path: &str) -> anyhow::Result<String> {
        Ok(self.http_get_status(path)?.1)
    }

    /// GETs an HTTP path on the node; returns status code and body.
    pub fn http_get_status(&self, path: &str) -> anyhow::Result<(u16, String)> {
        crate::http_get(&self.http_addr, path)
    }

    /// `/ready`: its status code and JSON body.
    pub fn readiness(&self) -> Option<(u16, serde_json::Value)> {
        let (code, body) = self.http_get_status("/ready").ok()?;
        Some((code, serde_json::from_str(&body).ok()?))
    }

    /// The last token of `default` (-1 when empty, -2 when unreachable).
    pub async fn last_token(&self) -> i64 {
        use ranvier_proto::event::GetLastTokenRequest;
        match self.event_store().await {
            Ok(mut client) => client.get_last_token(GetLastTokenRequest {}).await.map_or(-2, |r| r.into_inner().token),
            Err(_) => -2,
        }
    }

    /// The node's output so far: its standard output, then its log
    /// (standard error).
    pub fn logs(&self) -> String {
        match Command::new("docker").args(["logs", &self.name]).output() {
            Ok(output) => {
                format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
            }
            Err(error) => format!("docker logs {}: {error}", self.name),
        }
    }

    /// The `default` group's leader as this node sees it.
    pub fn leader(&self) -> Option<String> {
        self.default_group()?["leader"].as_str().map(str::to_owned)
    }

    /// The Raft term of the `default` group, as this node sees it.
    pub fn term(&self) -> Option<u64> {
        self.default_group()?["term"].as_u64()
    }

    fn default_group(&self) -> Option<serde_json::Value> {
        let groups: serde_json::Value =
            serde_json::from_str(&self.http_get("/v1/public/replicationgroups").ok()?).ok()?;
        groups.as_array()?.iter().find(|g| g["name"] == "default").cloned()
    }

    /// How many voting members the `default` group has, as this node sees it.
    pub fn default_voters(&self) -> usize {
        self.default_group()
            .and_then(|g| g["members"].as_array().map(|m| m.iter().filter(|m| m["raft"] == "voter").count()))
            .unwrap_or(0)
    }

    /// An EventStore client.
    pub async fn event_store(
        &self,
    ) -> anyhow::Result<ranvier_proto::event::event_store_client::EventStoreClient<tonic::transport::Channel>> {
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", self.client_addr))?.connect().await?;
        Ok(ranvier_proto::event::event_store_client::EventStoreClient::new(channel))
    }
}

impl Drop for DockerCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            let _ = docker(&["rm", "-f", &node.name]);
        }
        let _ = docker(&["network", "rm", &self.network]);
    }
}
