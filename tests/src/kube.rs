//! A whole single-node Kubernetes for end-to-end tests, started by
//! `scripts/k8s-env.sh start DIR --node` (API server, controller manager,
//! scheduler, the kubelet running pods on this Docker, pod DNS, hostPath
//! volumes) and stopped on drop; and the user's own tools against it:
//! `kubectl` and `helm`, run as processes with the test's kubeconfig.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The repository's root (where the README's commands run).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cache(variable: &str, default: &str) -> PathBuf {
    PathBuf::from(std::env::var(variable).unwrap_or_else(|_| default.to_owned()))
}

/// helm from `scripts/install-helm.sh`, else on the PATH.
pub fn helm_binary() -> Option<PathBuf> {
    let installed = cache("RANVIER_TOOLS", "/var/cache/ranvier-tools").join("helm");
    if installed.exists() {
        return Some(installed);
    }
    Command::new("helm").arg("version").output().ok().filter(|o| o.status.success()).map(|_| PathBuf::from("helm"))
}

/// The operator's image, as the chart names it by default.
pub const OPERATOR_IMAGE: &str = "ranvier-operator:test";

fn image_here(image: &str) -> bool {
    Command::new("docker").args(["image", "inspect", image]).output().is_ok_and(|o| o.status.success())
}

/// A running single-node Kubernetes, stopped (with its pods) on drop.
pub struct KubeNode {
    dir: tempfile::TempDir,
    /// The API server's address as pods reach it.
    pub api_host: String,
    /// Its port.
    pub api_port: String,
    helm: PathBuf,
}

impl KubeNode {
    /// Starts one, or says why not: `None` (said loudly) when
    /// `RANVIER_SKIP_K8S_TESTS=1` allows skipping what is missing; a
    /// failure otherwise.
    pub fn start() -> anyhow::Result<Option<KubeNode>> {
        let bin = cache("RANVIER_K8S_CACHE", "/var/cache/ranvier-k8s").join("bin");
        let missing = if !bin.join("kubelet").exists() {
            Some("the kubelet is not built (scripts/k8s-env.sh build)")
        } else if helm_binary().is_none() {
            Some("helm is not installed (scripts/install-helm.sh)")
        } else if Command::new("kubectl").arg("version").arg("--client").output().is_err() {
            Some("kubectl is missing")
        } else if !crate::docker::available() || !image_here(OPERATOR_IMAGE) {
            Some("Docker, or the ranvier:test or ranvier-operator:test image, is missing (scripts/build-image.sh all)")
        } else {
            None
        };
        if let Some(missing) = missing {
            if std::env::var("RANVIER_SKIP_K8S_TESTS").as_deref() == Ok("1") {
                eprintln!("SKIPPED: Kubernetes end-to-end test ({missing})");
                return Ok(None);
            }
            bail!("{missing}");
        }
        let helm = helm_binary().context("helm")?;
        let dir = tempfile::tempdir()?;
        let script = root().join("scripts/k8s-env.sh");
        let status = Command::new("bash").arg(&script).arg("start").arg(dir.path()).arg("--node").status()?;
        if !status.success() {
            bail!("scripts/k8s-env.sh start --node failed");
        }
        let env = std::fs::read_to_string(dir.path().join("env"))?;
        let value = |key: &str| {
            env.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_owned).context("env file")
        };
        let (api_host, api_port) = (value("API_HOST")?, value("API_PORT")?);
        Ok(Some(KubeNode { dir, api_host, api_port, helm }))
    }

    /// The kubeconfig of the cluster's admin.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// A log of the environment (`kubelet`, `dnsmasq`, `hosts`, …).
    pub fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    fn run(&self, program: &Path, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new(program)
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .current_dir(root())
            .output()
            .with_context(|| format!("failed to run {}", program.display()))?;
        if !output.status.success() {
            bail!(
                "{} {}: {}{}",
                program.display(),
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `kubectl ARGS` in the repository's root; its standard output.
    pub fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.run(Path::new("kubectl"), args)
    }

    /// `kubectl ARGS -o json`, parsed.
    pub fn kubectl_json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        Ok(serde_json::from_str(&self.kubectl(&all)?)?)
    }

    /// `helm ARGS` in the repository's root.
    pub fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        self.run(&self.helm, args)
    }

    /// `kubectl port-forward -n NAMESPACE TARGET LOCAL:REMOTE` on a free
    /// local port, stopped on drop; ready once the port accepts.
    pub fn port_forward(&self, namespace: &str, target: &str, remote: u16) -> anyhow::Result<PortForward> {
        let local = crate::free_port()?;
        let child = Command::new("kubectl")
            .args(["port-forward", "-n", namespace, target, &format!("{local}:{remote}")])
            .env("KUBECONFIG", self.kubeconfig())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("failed to run kubectl port-forward")?;
        let forward = PortForward { child, local };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", local)).is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                bail!("kubectl port-forward {target} did not listen on {local}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(forward)
    }

    /// What a person looks at when something is stuck: every object, the
    /// recent Events, and the kubelet's last words.
    pub fn diagnose(&self) -> String {
        let all = self.kubectl(&["get", "all,pvc,rvc,rvg", "-A", "-o", "wide"]).unwrap_or_else(|e| e.to_string());
        let events = self.kubectl(&["get", "events", "-A"]).unwrap_or_else(|e| e.to_string());
        let operator = self
            .kubectl(&["logs", "-n", "ranvier-system", "deployment/ranvier-operator", "--tail", "30"])
            .unwrap_or_else(|e| e.to_string());
        let kubelet = self.file("kubelet.log");
        let kubelet: Vec<&str> = kubelet.lines().rev().take(15).collect();
        format!(
            "{all}\n{events}\noperator:\n{operator}\nkubelet (last lines first):\n{}\nhosts:\n{}",
            kubelet.join("\n"),
            self.file("hosts")
        )
    }
}

/// A running `kubectl port-forward`.
pub struct PortForward {
    child: std::process::Child,
    /// The local port.
    pub local: u16,
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for KubeNode {
    fn drop(&mut self) {
        let script = root().join("scripts/k8s-env.sh");
        let _ = Command::new("bash").arg(script).arg("stop").arg(self.dir.path()).status();
    }
}

/// Calls `check` every 250 ms until it gives a value or `limit` passes;
/// the error names `what` and the last answer.
pub async fn until<T, F>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> anyhow::Result<Option<T>>,
{
    let start = Instant::now();
    let mut last = String::new();
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last = error.to_string(),
        }
        if start.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what} (last error: {last})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The condition of `type_` in an object's status: `(status, reason)`.
pub fn condition(object: &serde_json::Value, type_: &str) -> Option<(String, String)> {
    object["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_).map(|c| {
        (c["status"].as_str().unwrap_or_default().to_owned(), c["reason"].as_str().unwrap_or_default().to_owned())
    })
}
