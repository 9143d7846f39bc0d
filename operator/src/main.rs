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
