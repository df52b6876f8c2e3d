//! client-go's informer example: watch pods with a shared informer factory and print every
//! add, update and delete, with a periodic resync.
//!
//! ```text
//! cargo run -p examples --example informer_events -- [--namespace NS] [--resync SECONDS]
//!     [--kubeconfig PATH] [--master URL]
//! ```

use std::time::Duration;

use ferrokube_runtime::client::Config;
use ferrokube_runtime::client::k8s_openapi::api::core::v1::Pod;
use ferrokube_runtime::informer::{EventHandlerFuncs, SharedInformerFactory};
use tokio_util::sync::CancellationToken;

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
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    examples::init_tracing();
    let args = examples::Flags::parse(
        &["--kubeconfig", "--master", "--namespace", "--resync"],
        &[],
    )?;
    let client = Config::from_flags(args.value("--master"), args.value("--kubeconfig"))
        .await?
        .build()?;
    let resync = match args.value("--resync") {
        "" => Duration::from_secs(30),
        s => Duration::from_secs(s.parse().map_err(|e| format!("--resync {s:?}: {e}"))?),
    };
    let mut factory = SharedInformerFactory::new(client, Some(resync));
    if !args.value("--namespace").is_empty() {
        factory = factory.namespace(args.value("--namespace"));
    }
    let pods = factory.informer_for::<Pod>();
    let _registration = pods.add_event_handler(
        EventHandlerFuncs::default()
            .on_add(|pod: std::sync::Arc<Pod>, initial| {
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

    let cancel = CancellationToken::new();
    factory.start();
    let synced = factory.wait_for_cache_sync(&cancel).await;
    println!(
        "caches synced: {synced:?}; {} pods cached",
        pods.indexer().len()
    );

    tokio::signal::ctrl_c().await?;
    println!("shutting down");
    factory.shutdown().await;
    Ok(())
}
