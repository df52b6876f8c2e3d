//! client-go's classic first program: print how many pods the cluster has, every 10 seconds.
//!
//! ```text
//! cargo run -p examples --example list_pods -- [--kubeconfig PATH] [--master URL] [--once]
//! ```
//! Without flags, client-go's rules apply: in-cluster first, then `KUBECONFIG` /
//! `~/.kube/config`.

use std::time::Duration;

use ferrokube_runtime::client::k8s_openapi::api::core::v1::Pod;
use ferrokube_runtime::client::{Config, ListOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    examples::init_tracing();
    let args = examples::Flags::parse(&["--kubeconfig", "--master"], &["--once"])?;
    let config = Config::from_flags(args.value("--master"), args.value("--kubeconfig")).await?;
    let client = config.build()?;
    loop {
        let pods = client.all::<Pod>().list(&ListOptions::default()).await?;
        println!("There are {} pods in the cluster", pods.items.len());
        if args.is_set("--once") {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
