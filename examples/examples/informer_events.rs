//! client-go's informer example: watch pods with a shared informer factory and print every
//! add, update and delete, with a periodic resync.
//!
//! ```text
//! cargo run -p examples --example informer_events -- [--namespace NS] [--resync 30s]
//!     [--kubeconfig PATH] [--context NAME] [--master URL]
//! ```
//! Stops on SIGINT or SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use examples::{BoxError, ClusterArgs};
use ferrokube_runtime::informer::{EventHandlerFuncs, SharedInformerFactory};
use ferrokube_runtime::k8s_openapi::api::core::v1::Pod;
use ferrokube_runtime::manager::shutdown_signal;

/// Watch pods with a shared informer and print every add, update, delete and resync.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// Watch this namespace only (default: all namespaces).
    #[arg(long, short = 'n', value_name = "NS")]
    namespace: Option<String>,
    /// How often every cached pod is handed to the handler again (e.g. 30s; 0: never).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = examples::parse_duration)]
    resync: Duration,
}

fn describe(pod: &Pod) -> String {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Unknown");
    format!("{ns}/{name} ({phase})")
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
    let resync = Some(cli.resync).filter(|r| !r.is_zero());
    let mut factory = SharedInformerFactory::new(client, resync);
    if let Some(ns) = &cli.namespace {
        factory = factory.namespace(ns);
    }
    let pods = factory.informer_for::<Pod>();
    let _registration = pods.add_event_handler(
        EventHandlerFuncs::default()
            .on_add(|pod: Arc<Pod>, initial| {
                let when = if initial { " (initial list)" } else { "" };
                println!("ADDED    {}{when}", describe(&pod));
            })
            .on_update(|old, new| {
                if old.metadata.resource_version == new.metadata.resource_version {
                    println!("RESYNC   {}", describe(&new));
                } else {
                    println!("UPDATED  {}", describe(&new));
                }
            })
            .on_delete(|pod| println!("DELETED  {}", describe(pod.object()))),
    );

    let shutdown = shutdown_signal()?;
    factory.start();
    let synced = factory.wait_for_cache_sync(&shutdown).await;
    if !shutdown.is_cancelled() {
        let names: Vec<&str> = synced.keys().map(String::as_str).collect();
        println!(
            "caches synced ({}); {} pods cached",
            names.join(", "),
            pods.indexer().len()
        );
    }
    shutdown.cancelled().await;
    println!("shutting down");
    factory.shutdown().await;
    Ok(())
}
