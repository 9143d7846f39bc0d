//! `ranvier-operator`: prints the CRDs (`crd`), or the Kubernetes objects a
//! RanvierCluster manifest becomes (`render -f cluster.yaml`), without an
//! API server.

use std::io::Read;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ranvier_crds::RanvierCluster;
use ranvier_operator::controllers;
use ranvier_operator::serve::{self, Health};
use ranvier_operator::{render, validate};
use std::sync::Arc;
use std::sync::atomic::Ordering;

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
        /// Address of `/healthz`, `/readyz` and `/metrics`.
        #[arg(long, default_value = "0.0.0.0:8080")]
        listen: String,
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
        Command::Run { namespace, listen } => {
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
                let health = Arc::new(Health::default());
                let listener = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("failed to listen on {listen}"))?;
                let endpoints = health.clone();
                tokio::spawn(async move {
                    if let Err(error) = serve::serve(listener, endpoints).await {
                        tracing::error!(%error, "health and metrics endpoints stopped");
                    }
                });
                let client = kube::Client::try_default().await.context("no Kubernetes API server configured")?;
                let mut ctx = controllers::Context::new(client, std::env::var("POD_NAME").ok());
                ctx.metrics = health.metrics.clone();
                tracing::info!(namespace = namespace.as_deref().unwrap_or("(all)"), %listen, "ranvier-operator started");
                health.ready.store(true, Ordering::Release);
                controllers::run(Arc::new(ctx), namespace.as_deref()).await;
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
