//! `ranvier-operator`: prints the CRDs (`crd`), or the Kubernetes objects a
//! RanvierCluster manifest becomes (`render -f cluster.yaml`), without an
//! API server.

use std::io::Read;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ranvier_crds::RanvierCluster;
use ranvier_operator::{render, validate};

#[derive(Parser)]
#[command(name = "ranvier-operator", about = "The Ranvier Kubernetes operator")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the controllers against the API server of the kubeconfig (or
    /// the pod's service account).
    Run {
        /// Watch only this namespace (every namespace when absent).
        #[arg(long, env = "RANVIER_OPERATOR_NAMESPACE")]
        namespace: Option<String>,
    },
    /// Prints the CustomResourceDefinitions as YAML.
    Crd,
    /// Prints the objects a RanvierCluster manifest becomes, as YAML.
    Render {
        /// The manifest (`-` for standard input).
        #[arg(short = 'f', long = "filename")]
        file: String,
        /// Namespace of a manifest that names none.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Run { namespace } => {
            // kube's TLS needs one crypto provider chosen before any client;
            // ring's (deprecated in rustls 0.23.48 for lacking post-quantum
            // key exchange) is the one this workspace builds.
            #[allow(deprecated)]
            let _ = rustls::crypto::ring::default_provider().install_default();
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("RANVIER_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
            runtime.block_on(async {
                let client = kube::Client::try_default().await.context("no Kubernetes API server configured")?;
                tracing::info!(namespace = namespace.as_deref().unwrap_or("(all)"), "ranvier-operator started");
                ranvier_operator::controllers::run(client, namespace.as_deref(), std::env::var("POD_NAME").ok()).await;
                anyhow::Ok(())
            })?;
        }
        Command::Crd => print!("{}", ranvier_crds::crd_yaml()?),
        Command::Render { file, namespace } => {
            let text = if file == "-" {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text).context("failed to read standard input")?;
                text
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("failed to read {file}"))?
            };
            let cluster: RanvierCluster =
                serde_saphyr::from_str(&text).with_context(|| format!("{file} is not a RanvierCluster manifest"))?;
            let valid = validate::validate(&cluster, &namespace)?;
            print!("{}", render::render(&valid, b"").to_yaml()?);
        }
    }
    Ok(())
}
