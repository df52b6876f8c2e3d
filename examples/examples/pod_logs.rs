//! Follow a container's log, as `kubectl logs -f`: each line is printed as it arrives, until
//! the container stops or the connection closes.
//!
//! ```text
//! cargo run -p examples --example pod_logs -- POD [--follow | --no-follow] [--namespace NS]
//!     [--container C] [--tail N] [--kubeconfig PATH] [--context NAME] [--master URL]
//! ```
//! Without `--namespace`, the kubeconfig context's namespace is used; without `--container`,
//! the pod must have a single container.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use examples::{BoxError, ClusterArgs};
use ferrokube_runtime::client::LogOptions;
use ferrokube_runtime::k8s_openapi::api::core::v1::Pod;
use futures::TryStreamExt;

/// Follow a container's log, as `kubectl logs -f POD`.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The pod.
    pod: String,
    /// The pod's namespace (default: the kubeconfig context's).
    #[arg(long, short = 'n', value_name = "NS")]
    namespace: Option<String>,
    /// The container (default: the pod's only container).
    #[arg(long, short = 'c', value_name = "NAME")]
    container: Option<String>,
    /// Start with the last N lines (default: the whole log).
    #[arg(long, value_name = "N")]
    tail: Option<i64>,
    /// Follow the log as it is written, like `kubectl logs -f` (the default).
    #[arg(long, short = 'f', conflicts_with = "no_follow")]
    follow: bool,
    /// Print what is there and exit instead of following.
    #[arg(long)]
    no_follow: bool,
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
    let namespace = cli
        .namespace
        .unwrap_or_else(|| client.default_namespace().to_owned());

    // Following is the default; `--follow` says so explicitly.
    let follow = cli.follow || !cli.no_follow;
    let mut options = LogOptions::default().follow(follow);
    if let Some(container) = &cli.container {
        options = options.container(container);
    }
    if let Some(lines) = cli.tail {
        options = options.tail_lines(lines);
    }

    let pods = client.namespaced::<Pod>(&namespace);
    let mut lines = std::pin::pin!(pods.log_stream(&cli.pod, &options).await?);
    let mut stdout = std::io::stdout();
    while let Some(line) = lines.try_next().await? {
        stdout.write_all(&line)?;
        stdout.write_all(b"\n")?;
        stdout.flush()?;
    }
    Ok(())
}
