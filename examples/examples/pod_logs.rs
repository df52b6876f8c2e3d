//! Follow a container's log, as `kubectl logs -f`: each line is printed as it arrives, until
//! the container stops or the connection closes.
//!
//! ```text
//! cargo run -p examples --example pod_logs -- POD [--namespace NS] [--container C] [--tail N]
//!     [--kubeconfig PATH] [--master URL]
//! ```
//! Without `--namespace`, the kubeconfig context's namespace is used; without `--container`,
//! the pod must have a single container.

use std::io::Write;

use ferrokube_runtime::client::k8s_openapi::api::core::v1::Pod;
use ferrokube_runtime::client::{Config, LogOptions};
use futures::TryStreamExt;

const USAGE: &str = "usage: pod_logs POD [--namespace NS] [--container C] [--tail N] \
                     [--kubeconfig PATH] [--master URL]";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    examples::init_tracing();
    let args = examples::Flags::parse(
        &[
            "--namespace",
            "--container",
            "--tail",
            "--kubeconfig",
            "--master",
        ],
        &[],
    )?;
    let [pod] = args.positional() else {
        return Err(USAGE.into());
    };
    let config = Config::from_flags(args.value("--master"), args.value("--kubeconfig")).await?;
    let client = config.build()?;
    let namespace = match args.value("--namespace") {
        "" => client.default_namespace().to_owned(),
        ns => ns.to_owned(),
    };

    let mut options = LogOptions::default().follow(true);
    let container = args.value("--container");
    if !container.is_empty() {
        options = options.container(container);
    }
    let tail = args.value("--tail");
    if !tail.is_empty() {
        let lines: i64 = tail.parse().map_err(|e| format!("--tail {tail:?}: {e}"))?;
        options = options.tail_lines(lines);
    }

    let pods = client.namespaced::<Pod>(&namespace);
    let mut lines = std::pin::pin!(pods.log_stream(pod, &options).await?);
    let mut stdout = std::io::stdout();
    while let Some(line) = lines.try_next().await? {
        stdout.write_all(&line)?;
        stdout.write_all(b"\n")?;
        stdout.flush()?;
    }
    Ok(())
}
