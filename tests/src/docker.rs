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
}

/// A cluster of node containers and its network.
pub struct DockerCluster {
    network: String,
    /// The nodes, in start order (the first forms the cluster).
    pub nodes: Vec<Container>,
}

impl DockerCluster {
    /// Starts `count` nodes that form a cluster by autocluster.
    pub fn start(count: usize) -> anyhow::Result<Self> {
        let tag = format!("ranvier-{}-{}", std::process::id(), count);
        let network = format!("{tag}-net");
        docker(&["network", "create", &network])?;
        let mut cluster = DockerCluster { network, nodes: Vec::new() };
        for i in 1..=count {
            let name = format!("{tag}-{i}");
            let node = format!("node-{i}");
            let settings = [
                format!("axoniq.axonserver.name={node}"),
                "axoniq.axonserver.hostname=localhost".to_owned(),
                format!("axoniq.axonserver.internal-hostname=peer-{i}"),
                "axoniq.axonserver.autocluster.first=peer-1:8224".to_owned(),
                "axoniq.axonserver.accesscontrol.internal-token=container-secret".to_owned(),
                "axoniq.axonserver.replication.min-election-timeout=300".to_owned(),
                "axoniq.axonserver.replication.max-election-timeout=600".to_owned(),
                "axoniq.axonserver.replication.heartbeat-timeout=100".to_owned(),
            ];
            let mut args: Vec<String> =
                ["create", "--name", &name, "-p", "127.0.0.1::8124", "-p", "127.0.0.1::8024", IMAGE]
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
            for setting in settings {
                args.push("--set".into());
                args.push(setting);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            docker(&args)?;
            docker(&["network", "connect", "--alias", &format!("peer-{i}"), &cluster.network, &name])?;
            docker(&["start", &name])?;
            let port = |inner: &str| -> anyhow::Result<String> {
                let mapped = docker(&["port", &name, inner])?;
                mapped.lines().find(|l| l.starts_with("127.0.0.1:")).map(str::to_owned).context("no published port")
            };
            cluster.nodes.push(Container { client_addr: port("8124/tcp")?, http_addr: port("8024/tcp")?, name, node });
        }
        for container in &cluster.nodes {
            container.wait_ready()?;
        }
        Ok(cluster)
    }

    /// Cuts node `index` off the cluster network (it stays reachable from the test).
    pub fn isolate(&self, index: usize) -> anyhow::Result<()> {
        docker(&["network", "disconnect", &self.network, &self.nodes[index].name]).map(|_| ())
    }

    /// Puts node `index` back on the cluster network.
    pub fn heal(&self, index: usize) -> anyhow::Result<()> {
        let alias = format!("peer-{}", index + 1);
        docker(&["network", "connect", "--alias", &alias, &self.network, &self.nodes[index].name]).map(|_| ())
    }
}

impl Container {
    fn wait_ready(&self) -> anyhow::Result<()> {
        for _ in 0..600 {
            let logs = docker(&["logs", &self.name]).unwrap_or_default();
            if logs.lines().any(|l| l.starts_with("READY ")) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("container {} did not report ready: {}", self.name, docker(&["logs", &self.name]).unwrap_or_default())
    }

    /// GETs an HTTP path on the node.
    pub fn http_get(&self, path: &str) -> anyhow::Result<String> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&self.http_addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
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
