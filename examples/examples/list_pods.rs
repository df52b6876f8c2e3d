//! client-go's classic first program: print how many pods the cluster has, every 10 seconds.
//!
//! ```text
//! cargo run -p examples --example list_pods -- [--once] [--namespace NS] [--interval 10s]
//!     [--kubeconfig PATH] [--context NAME] [--master URL]
//! ```
//! Without cluster flags, client-go's rules apply: in-cluster first, then `KUBECONFIG` /
//! `~/.kube/config`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use examples::{BoxError, ClusterArgs};
use ferrokube_runtime::client::ListOptions;
use ferrokube_runtime::k8s_openapi::api::core::v1::Pod;

/// Print how many pods the cluster (or one namespace) has, every 10 seconds.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Count the pods of this namespace only (default: all namespaces).
    #[arg(long, short = 'n', value_name = "NS")]
    namespace: Option<String>,
    /// Print once and exit.
    #[arg(long)]
    once: bool,
    /// How long to wait between counts (e.g. 10s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = examples::parse_duration)]
    interval: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    examples::init_tracing();
    examples::exit(run(cli).await)
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    let config = cli.cluster.config().await?;
    let client = config.build()?;
    examples::connect(&client, &config).await?;
    let pods = match &cli.namespace {
        Some(ns) => client.namespaced::<Pod>(ns),
        None => client.all::<Pod>(),
    };
    loop {
        let list = pods.list(&ListOptions::default()).await?;
        match &cli.namespace {
            Some(ns) => println!("There are {} pods in namespace {ns}", list.items.len()),
            None => println!("There are {} pods in the cluster", list.items.len()),
        }
        if cli.once {
            return Ok(());
        }
        tokio::time::sleep(cli.interval).await;
    }
}
