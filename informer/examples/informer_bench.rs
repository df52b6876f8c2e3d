//! Sync benchmark: start one informer, wait until `--expect` objects are cached, print one
//! `RESULT` line. Measure the whole process from outside (e.g. `/usr/bin/time -v`) to compare
//! with a client-go informer on the same API server and data (`../shared/bench/load.py`).
//!
//! ```text
//! cargo run --release -p ferrokube-informer --example informer_bench -- \
//!     --resource pods|configmaps --namespace NS --expect N \
//!     [--keep-managed-fields] [--streaming] [--compact] [--kubeconfig PATH]
//! ```

use std::time::{Duration, Instant};

use ferrokube_client::Config;
use ferrokube_informer::compact::{Compact, CompactInformer};
use ferrokube_informer::reflector::InitialList;
use ferrokube_informer::{InformerConfig, SharedIndexInformer};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

struct Args {
    resource: String,
    namespace: String,
    expect: usize,
    keep_managed_fields: bool,
    streaming: bool,
    compact: bool,
    kubeconfig: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        resource: String::new(),
        namespace: "default".into(),
        expect: 0,
        keep_managed_fields: false,
        streaming: false,
        compact: false,
        kubeconfig: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--resource" => args.resource = value("--resource")?,
            "--namespace" => args.namespace = value("--namespace")?,
            "--expect" => {
                let v = value("--expect")?;
                args.expect = v.parse().map_err(|e| format!("--expect {v:?}: {e}"))?;
            }
            "--kubeconfig" => args.kubeconfig = Some(value("--kubeconfig")?),
            "--keep-managed-fields" => args.keep_managed_fields = true,
            "--streaming" => args.streaming = true,
            "--compact" => args.compact = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !matches!(args.resource.as_str(), "pods" | "configmaps") {
        return Err("--resource must be pods or configmaps".into());
    }
    Ok(args)
}

/// Peak resident set size of this process in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn config<K>(args: &Args) -> InformerConfig<K> {
    let config = InformerConfig::default().keep_managed_fields(args.keep_managed_fields);
    if args.streaming {
        config.initial_list(InitialList::Streaming)
    } else {
        config
    }
}

async fn wait_for<K>(
    informer: &SharedIndexInformer<K>,
    expect: usize,
) -> Result<usize, Box<dyn std::error::Error>>
where
    K: kube::Resource + DeserializeOwned + Send + Sync + 'static,
{
    let cancel = CancellationToken::new();
    let run = {
        let (informer, cancel) = (informer.clone(), cancel.clone());
        tokio::spawn(async move { informer.run(cancel).await })
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    while !(informer.has_synced() && informer.indexer().len() >= expect) {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {expect} objects after 300 s",
                informer.indexer().len()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let objects = informer.indexer().len();
    cancel.cancel();
    let _ = run.await;
    // Like the Go program, exit without tearing the cache down: freeing every object is not
    // part of syncing it (the process exits right after printing).
    std::mem::forget(informer.clone());
    Ok(objects)
}

async fn sync<K>(
    client: ferrokube_client::Client,
    args: &Args,
) -> Result<usize, Box<dyn std::error::Error>>
where
    K: kube::Resource<DynamicType = ()> + DeserializeOwned + Send + Sync + 'static,
{
    if args.compact {
        let informer =
            CompactInformer::<K>::new(&client, Some(&args.namespace), config::<Compact<K>>(args));
        wait_for(informer.compact(), args.expect).await
    } else {
        let informer =
            SharedIndexInformer::new(client.namespaced::<K>(&args.namespace), config::<K>(args));
        wait_for(&informer, args.expect).await
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse()?;
    let start = Instant::now();
    let config = match &args.kubeconfig {
        Some(path) => Config::from_kubeconfig(path, None).await?,
        None => Config::infer().await?,
    };
    // Like client-go's benchmark program: no client-side throttling in the way.
    let client = config.with_qps(-1.0).build()?;
    let objects = match args.resource.as_str() {
        "pods" => sync::<Pod>(client, &args).await?,
        _ => sync::<ConfigMap>(client, &args).await?,
    };
    println!(
        "RESULT resource={} objects={} sync_ms={} streaming={} compact={} keep_managed_fields={} peak_rss_kib={}",
        args.resource,
        objects,
        start.elapsed().as_millis(),
        args.streaming,
        args.compact,
        args.keep_managed_fields,
        peak_rss_kib()
    );
    Ok(())
}
